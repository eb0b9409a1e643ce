//! Live reload on SIGHUP, end to end with the `pqwatch` binary: a valid new
//! config adds a meter (polled and stored in VictoriaMetrics from then on)
//! and changes a customer, without losing the open event of another meter
//! or restarting its gateway; an invalid one is rejected with its key path
//! and the running config keeps polling.

mod common;
mod e2e;

use common::{TestConfig, VictoriaMetrics, free_port};
use e2e::{Running, Sim, pqwatch_cmd};
use pqwatch::events::EventStore;
use pqwatch::quality::rules::{Kind, State};
use pqwatch::state::StateDb;
use std::path::Path;
use std::time::{Duration, Instant};

fn config(state: &Path, vm: &str, port: u16, with_m2: bool, extra: &str) -> String {
    let mut t = TestConfig::fast(vm)
        .state_dir(state)
        .daemon("shutdown_grace", "3s")
        .push(&format!(
            r#"
[rules]
short_window = "2s"
long_window = "6s"
demand_window = "6s"
voltage_min_duration = "2s"
voltage_clear_after = "4s"

[[customers]]
id = "HV"
{extra}

[[meters]]
id = "M1"
customer = "HV"
address = "127.0.0.1:{port}"
unit = 1
profile = "janitza-umg96rm"
nominal_voltage = 10000
pt_ratio = "10000/100"
"#
        ))
        .to_string();
    if with_m2 {
        t += &format!(
            r#"
[[meters]]
id = "M2"
customer = "HV"
address = "127.0.0.1:{port}"
unit = 2
profile = "eastron-sdm630"
nominal_voltage = 400
"#
        );
    }
    t
}

/// M1 stays at +9 % (above the 10 kV band) for the whole test.
const SCENARIO: &str = r#"
[[event]]
meter = "M1"
at = "0s"
kind = "voltage"
factor = 1.09
"#;

async fn wait_for(what: &str, limit: Duration, d: &Running, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            panic!(
                "timed out waiting for {what}\n--- daemon log ---\n{}",
                d.stderr()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn events(state: &Path) -> Vec<pqwatch::quality::rules::Event> {
    StateDb::open_readonly(state)
        .map(|db| EventStore::new(db).recent(false, 100).unwrap_or_default())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_valid_config_and_rejects_an_invalid_one() -> anyhow::Result<()> {
    e2e::init_tracing();
    let vm = VictoriaMetrics::start()?;
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    let port = free_port();
    let path = dir.path().join("pqwatch.toml");
    std::fs::write(&path, config(&state, &vm.url(), port, false, ""))?;
    // The simulator serves both meters from the start.
    let full = e2e::config(&config(&state, &vm.url(), port, true, ""));
    let sim = Sim::start(&full, SCENARIO).await;

    let mut cmd = pqwatch_cmd(&["run", "-c", path.to_str().unwrap()]);
    cmd.env("RUST_LOG", "info");
    let mut d = Running::spawn(cmd, dir.path());
    // All three line-to-line voltages are +9 %: three events.
    wait_for("M1's voltage events", Duration::from_secs(30), &d, || {
        events(&state)
            .iter()
            .filter(|e| e.meter == "M1" && e.kind == Kind::VoltageHigh && e.state == State::Open)
            .count()
            == 3
    })
    .await;
    let before: Vec<String> = events(&state).iter().map(|e| e.id.clone()).collect();

    // A valid new config: M2 added, the customer gets a contract.
    std::fs::write(
        &path,
        config(&state, &vm.url(), port, true, "contracted_kva = 2000"),
    )?;
    d.signal("HUP");
    wait_for("the reload", Duration::from_secs(20), &d, || {
        d.stderr().contains("config reloaded")
    })
    .await;
    let log = d.stderr();
    assert!(log.contains("meters=2"), "{log}");
    // M1's gateway is also M2's: it restarts (its meter list changed), so
    // the reload must log it; the watch keeps M1's open event.
    let m2 = vm
        .wait_for_series(
            r#"meter_voltage_l1_n{meter="M2"}"#,
            |s| s.iter().any(|s| s.points().len() >= 3),
            Duration::from_secs(20),
        )
        .await;
    assert!(m2.ok, "M2 polled after the reload: {m2}");

    // Let M1's event run across the reload: still one event, same id, open.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = events(&state);
    let m1: Vec<_> = after
        .iter()
        .filter(|e| e.meter == "M1" && e.kind == Kind::VoltageHigh)
        .collect();
    assert!(!m1.is_empty());
    for e in &m1 {
        assert!(before.contains(&e.id), "no new event for M1: {e:?}");
        assert_eq!(e.state, State::Open, "{e:?}");
        assert!(e.end_ms > e.start_ms + 4_000, "it went on: {e:?}");
    }

    // An invalid config: rejected with its key path; polling goes on.
    std::fs::write(
        &path,
        config(&state, &vm.url(), port, true, "contracted_kva = -5"),
    )?;
    d.signal("HUP");
    wait_for("the rejection", Duration::from_secs(20), &d, || {
        d.stderr().contains("config reload rejected")
    })
    .await;
    let log = d.stderr();
    assert!(
        log.contains("customers[0].contracted_kva: must be positive"),
        "{log}"
    );
    let count = |s: &[common::ExportedSeries]| s.iter().map(|s| s.points().len()).sum::<usize>();
    let now = vm.export(r#"meter_voltage_l1_n{meter="M2"}"#).await?;
    let n0 = count(&now);
    let more = vm
        .wait_for_series(
            r#"meter_voltage_l1_n{meter="M2"}"#,
            |s| count(s) >= n0 + 4,
            Duration::from_secs(20),
        )
        .await;
    assert!(more.ok, "still polling with the previous config: {more}");
    assert!(d.exited().is_none(), "the daemon is still running");

    d.signal("TERM");
    let status = d.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(status.success(), "{}", d.stderr());
    sim.stop().await;
    Ok(())
}
