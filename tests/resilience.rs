//! Dead and misbehaving devices must not cost the healthy ones a reading:
//! a silent meter beside healthy ones on one gateway, a gateway that
//! accepts connections and never answers, a closed port, and a meter that
//! answers every request with a Modbus exception.

mod common;
mod e2e;

use common::{ExportedSeries, TestConfig, VictoriaMetrics, find_series, free_port};
use e2e::{Daemon, Sim, check_aligned, instants};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

fn meter(id: &str, address: &str, unit: u8, profile: &str, fields: &str) -> String {
    format!(
        r#"
[[meters]]
id = "{id}"
customer = "C"
address = "{address}"
unit = {unit}
profile = "{profile}"
nominal_voltage = 400
fields = {fields}
"#
    )
}

fn config(influx_url: &str, meters: &[String]) -> String {
    TestConfig::new()
        .influx_v2(influx_url)
        .polling("1s", "250ms")
        .set("polling", "connect_timeout", "250ms")
        .push("[[customers]]\nid = \"C\"\n")
        .push(&meters.concat())
        .to_string()
}

fn series_of<'a>(all: &'a [ExportedSeries], meter: &str) -> Vec<&'a ExportedSeries> {
    all.iter()
        .filter(|s| s.label("meter") == Some(meter))
        .collect()
}

/// A gateway that accepts TCP connections and never says a word.
async fn black_hole() -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind black hole");
    let addr = l.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let n = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = l.accept().await {
            n.fetch_add(1, Ordering::Relaxed);
            held.push(sock); // keep it open, never read or write
        }
    });
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_meters_keep_every_reading_beside_dead_ones() -> anyhow::Result<()> {
    e2e::init_tracing();
    let vm = VictoriaMetrics::start()?;
    let sim_addr = format!("127.0.0.1:{}", free_port());
    let (hole_addr, accepted) = black_hole().await;
    // Reserved and released: nothing listens there.
    let closed_addr = format!("127.0.0.1:{}", free_port());

    let f3 = r#"["voltage_l1_n", "current_l1", "frequency"]"#;
    let cfg = e2e::config(&config(
        &vm.url(),
        &[
            meter("SIM-A", &sim_addr, 1, "janitza-umg96rm", f3),
            // The silent one sits between the healthy ones on the same bus.
            meter("SIM-S", &sim_addr, 2, "eastron-sdm630", f3),
            meter("SIM-B", &sim_addr, 3, "carlo-gavazzi-em24", f3),
            meter("HOLE", &hole_addr, 1, "eastron-sdm630", f3),
            meter("GONE", &closed_addr, 1, "eastron-sdm630", f3),
        ],
    ));
    let sim = Sim::start_at(
        &cfg,
        "[[event]]\nmeter = \"SIM-S\"\nat = \"0\"\nkind = \"silent\"\n",
        std::slice::from_ref(&sim_addr),
    )
    .await;

    let daemon = Daemon::start(cfg);
    daemon.run_until(4500).await;
    let run = daemon.stop().await;
    sim.stop().await;

    // A poll of SIM-B may wait out SIM-S's 250 ms timeout first.
    let want = instants(run.started_ms + 300, run.stopped_ms - 700, 1000);
    assert!(want.len() >= 3, "window too short: {want:?}");
    let all = vm
        .wait_for_series(
            r#"{__name__=~"meter_.*"}"#,
            |s| {
                ["SIM-A", "SIM-B"].iter().all(|m| {
                    let ss = series_of(s, m);
                    ss.len() == 3
                        && ss
                            .iter()
                            .all(|x| want.iter().all(|t| x.timestamps.contains(t)))
                })
            },
            Duration::from_secs(10),
        )
        .await
        .into_result()?;

    for m in ["SIM-A", "SIM-B"] {
        for s in series_of(&all, m) {
            check_aligned(s, 1000, &want).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    for m in ["SIM-S", "HOLE", "GONE"] {
        assert!(series_of(&all, m).is_empty(), "{m} cannot have readings");
    }
    assert!(
        find_series(&all, "meter_voltage_l1_n", &[("meter", "SIM-A")]).is_some(),
        "sanity"
    );

    assert!(
        accepted.load(Ordering::Relaxed) >= 1,
        "pqwatch never connected to the black hole"
    );
    // SIM-S and HOLE each time out on their first three polls before being
    // backed off.
    let timeouts = run.get(|m| &m.polling.read_timeouts);
    assert!(timeouts >= 4, "read_timeouts = {timeouts}");
    let refused = run.get(|m| &m.polling.connects_failed);
    assert!(refused >= 1, "connects_failed = {refused}");
    assert!(run.get(|m| &m.polling.polls_failed) >= 3);
    assert_eq!(run.get(|m| &m.sink.points_dropped), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modbus_exception_is_counted_and_harms_no_other_meter() -> anyhow::Result<()> {
    e2e::init_tracing();
    let vm = VictoriaMetrics::start()?;
    let sim_addr = format!("127.0.0.1:{}", free_port());
    let f3 = r#"["voltage_l1_n", "current_l1", "frequency"]"#;
    let cfg = e2e::config(&config(
        &vm.url(),
        &[
            meter("EX-A", &sim_addr, 1, "eastron-sdm630", f3),
            meter("EX-E", &sim_addr, 2, "janitza-umg96rm", f3),
            meter("EX-B", &sim_addr, 3, "eastron-sdm630", f3),
        ],
    ));
    let sim = Sim::start(
        &cfg,
        "[[event]]\nmeter = \"EX-E\"\nat = \"0\"\nkind = \"exception\"\ncode = 2\n",
    )
    .await;
    let daemon = Daemon::start(cfg);
    daemon.run_until(3500).await;
    let run = daemon.stop().await;
    sim.stop().await;

    let want = instants(run.started_ms + 300, run.stopped_ms - 300, 1000);
    assert!(want.len() >= 2, "window too short: {want:?}");
    let all = vm
        .wait_for_series(
            r#"{__name__=~"meter_.*"}"#,
            |s| {
                ["EX-A", "EX-B"].iter().all(|m| {
                    let ss = series_of(s, m);
                    ss.len() == 3
                        && ss
                            .iter()
                            .all(|x| want.iter().all(|t| x.timestamps.contains(t)))
                })
            },
            Duration::from_secs(10),
        )
        .await
        .into_result()?;
    for m in ["EX-A", "EX-B"] {
        for s in series_of(&all, m) {
            check_aligned(s, 1000, &want).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    assert!(series_of(&all, "EX-E").is_empty());

    assert!(run.get(|m| &m.polling.read_exceptions) >= 1);
    assert!(run.get(|m| &m.polling.polls_failed) >= 1);
    // An exception is an answer: not a timeout, not a broken connection.
    assert_eq!(run.get(|m| &m.polling.read_timeouts), 0);
    assert_eq!(run.get(|m| &m.polling.read_transport_errors), 0);
    assert_eq!(run.get(|m| &m.polling.connects_failed), 0);
    Ok(())
}
