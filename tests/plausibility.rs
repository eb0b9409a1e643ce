//! Implausible values are not stored: a 400 V meter that starts reporting
//! 40 kV on one phase (a firmware scale change) keeps its other fields
//! flowing to VictoriaMetrics, the bad phase is dropped and counted, and an
//! energy counter that goes backwards is stored but flagged.

mod common;
mod e2e;

use common::{TestConfig, VictoriaMetrics, free_port};
use e2e::{Daemon, Sim};
use std::time::Duration;

fn config(vm: &str, port: u16) -> String {
    TestConfig::fast(vm)
        .push(&format!(
            r#"
[[customers]]
id = "C1"
contracted_kva = 630

[[meters]]
id = "M1"
customer = "C1"
address = "127.0.0.1:{port}"
unit = 1
profile = "janitza-umg96rm"
nominal_voltage = 400
"#
        ))
        .to_string()
}

/// From 2 s on: phase 1 reads 40 kV; the import counter reads 1000 kWh
/// until 3 s, then 10 kWh (backwards).
const SCENARIO: &str = r#"
[[event]]
meter = "M1"
at = "2s"
kind = "value"
field = "voltage_l1_n"
value = 40000.0

[[event]]
meter = "M1"
at = "0s"
duration = "3s"
kind = "value"
field = "energy_active_import_total"
value = 1000.0

[[event]]
meter = "M1"
at = "3s"
kind = "value"
field = "energy_active_import_total"
value = 10.0
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implausible_values_are_dropped_and_counted_the_rest_flows() -> anyhow::Result<()> {
    e2e::init_tracing();
    let vm = VictoriaMetrics::start()?;
    let port = free_port();
    let cfg = e2e::config(&config(&vm.url(), port));
    let sim = Sim::start(&cfg, SCENARIO).await;
    let daemon = Daemon::start(cfg);
    let m = &daemon.handles.metrics;
    let seen = e2e::wait_until(Duration::from_secs(20), || {
        pqwatch::metrics::Metrics::get(&m.polling.fields_implausible) >= 6
            && pqwatch::metrics::Metrics::get(&m.polling.counters_backwards) >= 1
    })
    .await;
    // Phase 2 keeps flowing after the change.
    let l2 = vm
        .wait_for_series(
            r#"meter_voltage_l2_n{meter="M1"}"#,
            |s| s.iter().map(|s| s.points().len()).sum::<usize>() >= 12,
            Duration::from_secs(20),
        )
        .await;
    let run = daemon.stop().await;
    sim.stop().await;
    assert!(
        seen,
        "implausible {} backwards {}",
        run.get(|m| &m.polling.fields_implausible),
        run.get(|m| &m.polling.counters_backwards)
    );
    assert!(l2.ok, "{l2}");
    let l1 = vm.export(r#"meter_voltage_l1_n{meter="M1"}"#).await?;
    let values: Vec<f64> = l1.iter().flat_map(|s| s.points()).map(|(_, v)| v).collect();
    assert!(!values.is_empty(), "phase 1 was stored before the change");
    assert!(
        values.iter().all(|v| *v < 800.0),
        "no implausible voltage stored: {values:?}"
    );
    // The backward counter is stored as read (10 after 1000).
    let e = vm
        .export(r#"meter_energy_active_import_total{meter="M1"}"#)
        .await?;
    let ev: Vec<f64> = e.iter().flat_map(|s| s.points()).map(|(_, v)| v).collect();
    assert!(ev.contains(&1000.0) && ev.contains(&10.0), "{ev:?}");
    Ok(())
}
