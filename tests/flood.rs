//! Resource bounds under a flood: a fleet whose every meter violates every
//! limit at once (voltage, THDu and harmonics, THDi, unbalance, load during
//! a suspension, demand). Events are all stored, alert mail stays a few
//! readable messages (rate limit per meter, long digests summarised),
//! every channel stays bounded, and memory stays flat.

mod common;
mod e2e;

use common::TestConfig;
use e2e::{Daemon, Sim};
use pqwatch::metrics::Metrics;
use std::fmt::Write as _;
use std::time::Duration;

const METERS_PER_PORT: usize = 60;

fn config(ports: &[u16], mail: &std::path::Path) -> String {
    let mut t = TestConfig::new()
        .polling("500ms", "400ms")
        .smtp("eml_dir", mail)
        .smtp("from", "pq <pq@localhost>")
        .push(
            r#"
[rules]
short_window = "1s"
long_window = "2s"
demand_window = "2s"
voltage_min_duration = "1s"
harmonic_min_duration = "2s"
suspension_min_duration = "1s"

[alerts]
min_delay = "1s"
max_delay = "3s"
recipients = ["dispatch@grid.example"]
"#,
        )
        .to_string();
    for (g, port) in ports.iter().enumerate() {
        for u in 1..=METERS_PER_PORT {
            let id = format!("G{g}-M{u:03}");
            let _ = write!(
                t,
                r#"
[[customers]]
id = "C-{id}"
contracted_kva = 1000
max_demand_kw = 100
suspensions = [{{ from = "2020-01-01", to = "2099-01-01", kva = 900 }}]
limits = {{ thd_current = 10.0 }}

[[meters]]
id = "{id}"
customer = "C-{id}"
address = "127.0.0.1:{port}"
unit = {u}
profile = "janitza-umg96rm"
nominal_voltage = 10000
pt_ratio = "10000/100"
ct_ratio = "300/5"
"#
            );
        }
    }
    t
}

/// Everything at once, on every meter, for the whole run.
const SCENARIO: &str = r#"
[[event]]
meter = "*"
at = "0s"
kind = "voltage"
factor = 1.15

[[event]]
meter = "*"
at = "0s"
kind = "thd_voltage"
value = 9.0

[[event]]
meter = "*"
at = "0s"
kind = "thd_current"
value = 40.0

[[event]]
meter = "*"
at = "0s"
kind = "unbalance"
value = 5.0

[[event]]
meter = "*"
at = "0s"
kind = "load"
value = 800.0
"#;

fn peak_rss_kib() -> u64 {
    // No silent 0: a missing figure would make the memory bound pass.
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_meter_violating_every_limit_stays_bounded() {
    e2e::init_tracing();
    let mail = tempfile::tempdir().unwrap();
    let ports = [common::free_port(), common::free_port()];
    let cfg = e2e::config(&config(&ports, mail.path()));
    let meters = cfg.meters.len();
    let state = cfg.daemon.state_dir.clone();
    let sim = Sim::start(&cfg, SCENARIO).await;
    let before = peak_rss_kib();
    let daemon = Daemon::start(cfg);
    let m = daemon.handles.metrics.clone();
    // Every meter opens several events (3 phases × voltage, THDu, THDi, the
    // 5th harmonic, unbalance, suspension, demand).
    let opened = e2e::wait_until(Duration::from_secs(40), || {
        Metrics::get(&m.events.events_opened) >= (meters * 8) as u64
    })
    .await;
    // Let the digests go out (max_delay 3 s).
    let mailed = e2e::wait_until(Duration::from_secs(20), || {
        Metrics::get(&m.mail.mails_sent) >= 1 && Metrics::get(&m.mail.mails_pending) == 0
    })
    .await;
    let run = daemon.stop().await;
    sim.stop().await;
    let after = peak_rss_kib();
    assert!(
        opened,
        "events opened: {}",
        run.get(|m| &m.events.events_opened)
    );
    assert!(mailed, "mails sent: {}", run.get(|m| &m.mail.mails_sent));

    // Every event is in the store (the notifier may drop changes when its
    // channel is full, never the event).
    let store =
        pqwatch::events::EventStore::new(pqwatch::state::StateDb::open_readonly(&state).unwrap());
    let stored = store.recent(false, 100_000).unwrap();
    assert!(stored.len() >= meters * 8, "{} events stored", stored.len());

    // A handful of messages, each readable: 50 events in full, the rest
    // counted; the per-meter hourly limit holds back the excess.
    let emls: Vec<_> = std::fs::read_dir(mail.path())
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .collect();
    assert!(
        !emls.is_empty() && emls.len() <= 10,
        "{} messages",
        emls.len()
    );
    for e in &emls {
        let len = e.metadata().unwrap().len();
        assert!(len < 512 * 1024, "{} is {len} bytes", e.path().display());
    }
    assert!(
        run.get(|m| &m.mail.mails_suppressed) > 0,
        "the rate limit held back the excess"
    );

    // Memory: the whole test process (simulator included) grows by well
    // under 200 MiB for 120 meters each with ~15 open events.
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!(
        "flood: {meters} meters, {} events stored, {} messages (largest {} bytes), {} suppressed, {} changes dropped, peak RSS +{grown_mib} MiB",
        stored.len(),
        emls.len(),
        emls.iter()
            .map(|e| e.metadata().unwrap().len())
            .max()
            .unwrap_or(0),
        run.get(|m| &m.mail.mails_suppressed),
        run.get(|m| &m.mail.mail_changes_dropped),
    );
    assert!(grown_mib < 200, "peak RSS grew by {grown_mib} MiB");
}
