//! A meter that rejects reads spanning registers it does not define
//! (exception 0x02) is read without gaps from the next poll on: after one
//! poll with holes, every field arrives, and the other meter on the same
//! gateway is unaffected throughout.

mod common;

use common::{TestConfig, free_port};
use pqwatch::app::{Handles, Options};
use pqwatch::metrics::Metrics;
use pqwatch::sim::scenario::Scenario;
use pqwatch::sim::{SimMeter, Simulator};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_meter_is_replanned_without_gaps() {
    let port = free_port();
    let text = TestConfig::new()
        .polling("1s", "300ms")
        .push(&format!(
            r#"
[[customers]]
id = "C"
[[meters]]
id = "STRICT"
customer = "C"
address = "127.0.0.1:{port}"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400
[[meters]]
id = "LAX"
customer = "C"
address = "127.0.0.1:{port}"
unit = 2
profile = "eastron-sdm630"
nominal_voltage = 400
"#
        ))
        .to_string();
    let mut cfg = pqwatch::config::from_str(&text, std::path::Path::new(".")).unwrap();
    let state = tempfile::tempdir().unwrap();
    cfg.daemon.state_dir = state.path().to_path_buf();
    let strict = &cfg.meters[0];
    assert!(
        strict.plan.bridges_gaps(),
        "the SDM630 plan bridges gaps, or this test proves nothing"
    );
    let full = strict.plan.field_count();

    let scenario =
        Scenario::parse("[[event]]\nmeter = \"STRICT\"\nat = \"0\"\nkind = \"strict_addresses\"\n")
            .unwrap();
    let sim = Simulator::bind(SimMeter::from_config(&cfg), scenario, Duration::ZERO)
        .await
        .unwrap();
    let stop_sim = CancellationToken::new();
    let sim_task = tokio::spawn(sim.serve(stop_sim.clone()));

    let handles = Handles::default();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(pqwatch::app::run(
        cfg,
        shutdown.clone(),
        Options::default(),
        handles.clone(),
    ));

    // Wait for a complete reading of the strict meter (second poll on).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let mut got = 0;
    while tokio::time::Instant::now() < deadline {
        got = handles
            .latest
            .lock()
            .unwrap()
            .get("STRICT")
            .map(|r| r.values.len())
            .unwrap_or(0);
        if got == full {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    run.await.unwrap().unwrap();
    stop_sim.cancel();
    sim_task.await.unwrap();

    assert_eq!(
        got, full,
        "strict meter delivers every field once re-planned"
    );
    let exceptions = Metrics::get(&handles.metrics.polling.read_exceptions);
    assert!(exceptions >= 1, "the first poll met the 0x02 exceptions");
    let lax = handles.latest.lock().unwrap()["LAX"].values.len();
    assert_eq!(lax, full, "the neighbour is unaffected");
}
