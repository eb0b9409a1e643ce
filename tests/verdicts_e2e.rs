//! Verdicts as the standards give them, end to end: the simulator serves a
//! customer on two lines, pqwatch polls them and writes to VictoriaMetrics,
//! and the figures are checked against a second method worked out in the
//! test from the raw window points pqwatch wrote.
//!
//! Windows are shortened (2 s minutes, 6 s demand periods sliding by 2 s) so
//! the test runs in seconds; the demand logic is the same at 1 and 15
//! minutes.

mod common;
mod e2e;

use common::{VictoriaMetrics, free_port};
use e2e::{Daemon, Sim};
use pqwatch::events::EventStore;
use pqwatch::quality::rules::Kind;
use pqwatch::state::StateDb;
use std::collections::BTreeMap;
use std::time::Duration;

fn config(vm: &str, port: u16) -> String {
    let head = e2e::fast_daemon(vm);
    format!(
        r#"
{head}
[rules]
short_window = "2s"
long_window = "6s"
demand_window = "6s"
# The second method below is from the polled power windows (pq_2s); the
# energy-counter basis, the default, is checked in watch's unit tests (a
# float32 kWh register cannot resolve 2-second minutes).
demand_basis = "power"

[[customers]]
id = "TWO"
max_demand_kw = 300

[[meters]]
id = "LINE-A"
customer = "TWO"
address = "127.0.0.1:{port}"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400

[[meters]]
id = "LINE-B"
customer = "TWO"
address = "127.0.0.1:{port}"
unit = 2
profile = "eastron-sdm630"
nominal_voltage = 400
"#
    )
}

/// Each line draws well under the 315 kW limit (300 × 1.05); together 441.
const SCENARIO: &str = r#"
[[event]]
meter = "LINE-A"
at = "0"
kind = "load"
value = 221.0

[[event]]
meter = "LINE-B"
at = "0"
kind = "load"
value = 220.0
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_on_two_lines_exceeds_on_its_sliding_total_only() -> anyhow::Result<()> {
    e2e::init_tracing();
    let vm = VictoriaMetrics::start()?;
    let port = free_port();
    let cfg = e2e::config(&config(&vm.url(), port));
    let state_dir = cfg.daemon.state_dir.clone();
    let sim = Sim::start(&cfg, SCENARIO).await;
    let daemon = Daemon::start(cfg.clone());
    let open = || {
        StateDb::open_readonly(&state_dir)
            .map(|db| EventStore::new(db).recent(false, 100).unwrap_or_default())
            .unwrap_or_default()
    };
    // The first demand value of the total needs three whole 2-s minutes of
    // both lines: wait for the event, then for a few more values.
    let opened = e2e::wait_until(Duration::from_secs(30), || {
        open().iter().any(|e| e.kind == Kind::DemandExceeded)
    })
    .await;
    let demand = vm
        .wait_for_series(
            "{__name__=\"pq_demand_kw\",meter=\"*\"}",
            |s| s.iter().map(|s| s.points().len()).sum::<usize>() >= 4,
            Duration::from_secs(30),
        )
        .await
        .into_result()?;
    daemon.stop().await;
    sim.stop().await;
    assert!(opened, "no demand event: {:#?}", open());

    // Second method: the mean of the two lines' 2-s window means over the
    // three windows before each demand value's end, from what pqwatch
    // wrote as pq_2s.
    let windows = vm
        .wait_for_series(
            "{__name__=\"pq_2s_active_power_total_mean\"}",
            |s| s.len() >= 2,
            Duration::from_secs(10),
        )
        .await
        .into_result()?;
    let mut by_start: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for s in &windows {
        assert!(s.label("meter").is_some_and(|m| m.starts_with("LINE-")));
        for (ts, v) in s.points() {
            by_start.entry(ts).or_default().push(v / 1000.0);
        }
    }
    let total: Vec<(i64, f64)> = demand[0].points();
    let mut checked = 0;
    for (end, kw) in &total {
        let starts = [end - 6_000, end - 4_000, end - 2_000];
        let sums: Option<Vec<f64>> = starts
            .iter()
            .map(|t| {
                by_start
                    .get(t)
                    .filter(|v| v.len() == 2)
                    .map(|v| v.iter().sum())
            })
            .collect();
        let Some(sums) = sums else { continue };
        let by_hand = sums.iter().sum::<f64>() / 3.0;
        assert!(
            e2e::close(*kw, by_hand, 1e-9),
            "demand of the total ending {end}: {kw} vs {by_hand}"
        );
        checked += 1;
    }
    assert!(checked >= 3, "{checked} demand values checked: {total:?}");
    assert!(
        total.iter().all(|(_, kw)| e2e::close(*kw, 441.0, 0.01)),
        "{total:?}"
    );

    // The contract's limit applies to the customer's total, with its factor;
    // neither line on its own exceeds it.
    let events = open();
    let demand_events: Vec<_> = events
        .iter()
        .filter(|e| e.kind == Kind::DemandExceeded)
        .collect();
    assert_eq!(demand_events.len(), 1, "{demand_events:#?}");
    let e = demand_events[0];
    assert_eq!((e.meter.as_str(), e.customer.as_str()), ("*", "TWO"));
    assert_eq!(e.limit, 315.0);
    assert!(e2e::close(e.peak, 441.0, 0.01), "{e:?}");
    assert_eq!(e.source, "contracted maximum demand 300 kW × 1.05 = 315 kW");
    // pq_event of the total carries meter="*".
    vm.wait_for_series(
        "{__name__=\"pq_event_limit\",meter=\"*\",kind=\"demand_exceeded\"}",
        |s| s.len() == 1,
        Duration::from_secs(10),
    )
    .await
    .into_result()?;
    // And each line's own demand (221 / 220 kW) is written too.
    for line in ["LINE-A", "LINE-B"] {
        let s = vm
            .wait_for_series(
                &format!("{{__name__=\"pq_demand_kw\",meter=\"{line}\"}}"),
                |s| !s.is_empty(),
                Duration::from_secs(10),
            )
            .await
            .into_result()?;
        let want = if line == "LINE-A" { 221.0 } else { 220.0 };
        assert!(
            s[0].points()
                .iter()
                .all(|(_, v)| e2e::close(*v, want, 0.01)),
            "{line}: {:?}",
            s[0].points()
        );
    }
    Ok(())
}
