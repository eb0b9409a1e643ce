//! A gateway that accepts every connection and closes it at once (a
//! crashed serial server, a firewall resetting): it is reported as a reset
//! storm, reconnects back off, and "gateway connected again" is logged only
//! once it really answers a read. Regression test: a successful TCP connect
//! after refused ones was logged as "connected again" although nothing was
//! ever read, and every poll reconnected at once.

mod common;
mod e2e;

use common::{TestConfig, free_port, write_file};
use e2e::{Running, Sim, pqwatch_cmd, wait_until};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Accepts on `port` and closes every connection at once, counting them.
struct Resetter {
    stop: Arc<AtomicBool>,
    accepts: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Resetter {
    fn start(port: u16) -> Resetter {
        let l = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the resetter");
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepts = Arc::new(AtomicU64::new(0));
        let (s, a) = (stop.clone(), accepts.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Relaxed) {
                match l.accept() {
                    Ok((sock, _)) => {
                        a.fetch_add(1, Relaxed);
                        drop(sock);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Resetter {
            stop,
            accepts,
            thread: Some(thread),
        }
    }
}

impl Drop for Resetter {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_resetting_every_connection_is_a_reset_storm_not_a_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let gw = free_port();
    let text = TestConfig::new()
        .state_dir(dir.path().join("state"))
        .polling("500ms", "300ms")
        .set("polling", "reconnect_max", "2s")
        .push(&format!(
            r#"
[[customers]]
id = "C1"

[[meters]]
id = "R1"
customer = "C1"
address = "127.0.0.1:{gw}"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400

[[meters]]
id = "R2"
customer = "C1"
address = "127.0.0.1:{gw}"
unit = 2
profile = "eastron-sdm630"
nominal_voltage = 400
"#
        ))
        .to_string();
    let path = write_file(dir.path(), "pqwatch.toml", &text).unwrap();
    let bin = Running::spawn(
        pqwatch_cmd(&["run", "-c", path.to_str().unwrap()]),
        dir.path(),
    );
    // 1. Nothing listens: connects are refused.
    assert!(
        wait_until(Duration::from_secs(10), || bin
            .stderr()
            .contains("cannot connect to gateway"))
        .await,
        "{}",
        bin.stderr()
    );

    // 2. It accepts and resets every connection.
    let resetter = Resetter::start(gw);
    assert!(
        wait_until(Duration::from_secs(10), || bin
            .stderr()
            .contains("reset storm"))
        .await,
        "no reset storm reported:\n{}",
        bin.stderr()
    );
    let storm_logged = bin.stderr();
    let at_storm = resetter.accepts.load(Relaxed);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = resetter.accepts.load(Relaxed) - at_storm;
    let stderr = bin.stderr();
    eprintln!("{during} connections in the 4 s after the storm was reported");
    assert!(
        !stderr.contains("gateway connected again"),
        "a connect that never answered is no recovery:\n{stderr}"
    );
    assert_eq!(
        stderr.matches("reset storm").count(),
        1,
        "reported once:\n{stderr}"
    );
    // Two meters every 500 ms would reconnect up to 16 times in 4 s.
    assert!(
        during <= 8,
        "{during} connections in 4 s: reconnects do not back off\n{stderr}"
    );
    drop(resetter);

    // 3. A real device answers: now it is connected again.
    let cfg = pqwatch::config::from_str(&text, std::path::Path::new("/nonexistent")).unwrap();
    let sim = Sim::start(&cfg, "").await;
    assert!(
        wait_until(Duration::from_secs(15), || bin
            .stderr()
            .contains("gateway connected again"))
        .await,
        "no recovery logged:\n{}",
        bin.stderr()
    );
    assert!(storm_logged.len() < bin.stderr().len());
    bin.signal("TERM");
    let mut bin = bin;
    let _ = tokio::task::block_in_place(|| bin.wait_exit(Duration::from_secs(20)));
    sim.stop().await;
}
