//! A server that refuses our writes (InfluxDB 1.x with authentication and
//! a wrong password: 401) is loud: `/readyz` turns 503 with the reason
//! (the status and the setting to check) as soon as the first write was
//! refused, and the log says so within the first seconds, not only at the
//! 10th failure. The data stay in the outbox.

mod common;
mod e2e;

use common::{InfluxDb1, TestConfig, free_port, write_file};
use e2e::{Running, pqwatch_cmd, wait_until};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_makes_readyz_503_with_the_reason_and_is_logged_at_once() {
    let db = InfluxDb1::start_with_auth("admin", "the-right-one").expect("influxd");
    db.create_database("pq").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let text = TestConfig::new()
        .state_dir(dir.path().join("state"))
        .influx_v1(&db.url(), "pq")
        .influx("username", "admin")
        .influx(
            "password_file",
            write_file(dir.path(), "pw", "a-wrong-one\n").unwrap(),
        )
        .polling("500ms", "300ms")
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
    let cfg = pqwatch::config::from_str(&text, std::path::Path::new("/nonexistent")).unwrap();
    // A simulator, so there are readings to write.
    let sim = e2e::Sim::start(&cfg, "").await;
    let path = write_file(dir.path(), "pqwatch.toml", &text).unwrap();
    let mut cmd = pqwatch_cmd(&["run", "-c", path.to_str().unwrap()]);
    cmd.env("PQWATCH__HTTP__LISTEN", format!("127.0.0.1:{http}"));
    let started = std::time::Instant::now();
    let mut bin = Running::spawn(cmd, dir.path());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut last = None;
    let deadline = started + Duration::from_secs(10);
    let ready = loop {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{http}/readyz"))
            .send()
            .await
        {
            let code = r.status().as_u16();
            let v: serde_json::Value = r.json().await.unwrap();
            if code == 503 && v["checks"]["influxdb"]["status"] == "refused" {
                break v;
            }
            last = Some((code, v));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz never 503; last {last:?}\n{}",
            bin.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let influx = &ready["checks"]["influxdb"];
    assert_eq!(influx["status"], "refused", "{ready}");
    let reason = influx["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("401") && reason.contains("influxdb.username/password"),
        "the reason names the status and the setting: {ready}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || bin
            .stderr()
            .contains("InfluxDB refuses our writes; data is kept"))
        .await,
        "logged at the first failure:\n{}",
        bin.stderr()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "within the first seconds: {:?}",
        started.elapsed()
    );
    bin.signal("TERM");
    let _ = tokio::task::block_in_place(|| bin.wait_exit(Duration::from_secs(20)));
    sim.stop().await;
}
