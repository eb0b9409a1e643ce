//! One daemon per state directory: a second `pqwatch run` on the same
//! `state_dir` exits 1 naming the first one's pid, without touching the
//! state; read-only commands keep working while the daemon runs, and the
//! lock is free again once it stopped.

mod common;
mod e2e;

use common::{TestConfig, free_port, write_file};
use e2e::{Running, pqwatch_cmd, run_to_end, status_json};
use std::time::{Duration, Instant};

#[test]
fn a_second_daemon_on_the_same_state_directory_exits_1_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // InfluxDB nowhere (nothing listens): the outbox keeps what is polled.
    let text = TestConfig::new()
        .state_dir(&state)
        .influx("url", format!("http://127.0.0.1:{}", free_port()))
        .influx("org", "o")
        .influx("bucket", "b")
        .influx("token_file", "/dev/null")
        .set("polling", "interval", "1s")
        .push(&format!(
            r#"
[[customers]]
id = "C1"

[[meters]]
id = "M1"
customer = "C1"
address = "127.0.0.1:{gw}"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400
"#,
            gw = free_port(),
        ))
        .to_string();
    let path = write_file(dir.path(), "pqwatch.toml", &text).unwrap();
    let path = path.to_str().unwrap();
    let first = Running::spawn_logging_to(
        pqwatch_cmd(&["run", "-c", path]),
        dir.path().join("first.stderr"),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while !first.stderr().contains("polling started") {
        assert!(
            Instant::now() < deadline,
            "first daemon did not start:\n{}",
            first.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let lock = std::fs::read_to_string(state.join("pqwatch.lock")).unwrap();
    assert_eq!(
        lock.trim(),
        first.pid().to_string(),
        "the lock file holds the pid"
    );

    let second = run_to_end(pqwatch_cmd(&["run", "-c", path]), Duration::from_secs(10));
    assert_eq!(second.code, Some(1), "{second}");
    let want = format!(
        "state directory {} is in use by another pqwatch (pid {})",
        state.display(),
        first.pid()
    );
    assert!(second.stderr.contains(&want), "want {want:?} in\n{second}");
    assert!(
        !second.stderr.contains("polling started")
            && !second.stderr.contains("state database open"),
        "the second instance started nothing:\n{second}"
    );
    let mut first = first;
    assert!(first.exited().is_none(), "the first daemon runs on");

    // Read-only commands work beside the daemon.
    let status = status_json(dir.path().join("pqwatch.toml").as_path()).expect("status");
    assert!(status["schema_version"].as_i64().unwrap() > 0, "{status}");
    let events = run_to_end(
        pqwatch_cmd(&["events", "-c", path, "--json"]),
        Duration::from_secs(10),
    );
    assert_eq!(events.code, Some(0), "{events}");

    // Once the first stopped, the directory is free again.
    first.signal("TERM");
    assert!(first.wait_exit(Duration::from_secs(20)).is_some());
    let third = Running::spawn_logging_to(
        pqwatch_cmd(&["run", "-c", path]),
        dir.path().join("third.stderr"),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while !third.stderr().contains("polling started") {
        assert!(
            Instant::now() < deadline,
            "a daemon after the first stopped did not start:\n{}",
            third.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
