//! A reload closes what it removes, end to end with the `pqwatch` binary,
//! pqwatch's simulator and VictoriaMetrics: the open events of a meter
//! removed by SIGHUP close with `meter_removed`, those of a removed
//! customer's total (`*`) with `customer_removed`, both stored with the
//! reason and written as `pq_event` with `open=0`; adding the meter back
//! opens each event once, never a duplicate; dropping the contract closes
//! the demand events with `limits_changed` and leaves the voltage events
//! open.

mod common;
mod e2e;

use common::{TestConfig, VictoriaMetrics, free_port};
use e2e::{Running, Sim, pqwatch_cmd};
use pqwatch::events::EventStore;
use pqwatch::quality::rules::{Event, Kind, State};
use pqwatch::state::StateDb;
use std::path::Path;
use std::time::{Duration, Instant};

/// `with_m1`: customer HV and its meter M1 (at +9 %); `demand`: HV's
/// contracted maximum demand (tiny, so its total and M1 exceed it). M2
/// of customer LV is always there.
fn config(state: &Path, vm: &str, port: u16, with_m1: bool, demand: bool) -> String {
    let mut t = TestConfig::fast(vm)
        .state_dir(state)
        .daemon("shutdown_grace", "3s")
        .push(&format!(
            r#"
[rules]
short_window = "2s"
long_window = "6s"
demand_window = "6s"
demand_slide = "2s"
voltage_min_duration = "2s"
voltage_clear_after = "4s"

[[customers]]
id = "LV"

[[meters]]
id = "M2"
customer = "LV"
address = "127.0.0.1:{port}"
unit = 2
profile = "eastron-sdm630"
nominal_voltage = 400
"#
        ))
        .to_string();
    if with_m1 {
        t += &format!(
            r#"
[[customers]]
id = "HV"
{}

[[meters]]
id = "M1"
customer = "HV"
address = "127.0.0.1:{port}"
unit = 1
profile = "janitza-umg96rm"
nominal_voltage = 10000
pt_ratio = "10000/100"
"#,
            if demand { "max_demand_kw = 0.001" } else { "" }
        );
    }
    t
}

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

fn events(state: &Path) -> Vec<Event> {
    StateDb::open_readonly(state)
        .map(|db| EventStore::new(db).recent(false, 1000).unwrap_or_default())
        .unwrap_or_default()
}

fn reason(state: &Path, id: &str) -> Option<String> {
    StateDb::open_readonly(state)
        .ok()
        .and_then(|db| EventStore::new(db).close_reason(id).ok().flatten())
}

fn open_of(state: &Path, meter: &str, customer: &str, kind: Kind) -> Vec<Event> {
    events(state)
        .into_iter()
        .filter(|e| {
            e.meter == meter && e.customer == customer && e.kind == kind && e.state == State::Open
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_closes_the_events_of_what_it_removes_and_never_duplicates() -> anyhow::Result<()>
{
    e2e::init_tracing();
    let vm = VictoriaMetrics::start()?;
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    let port = free_port();
    let path = dir.path().join("pqwatch.toml");
    let write = |m1: bool, demand: bool| {
        std::fs::write(&path, config(&state, &vm.url(), port, m1, demand)).unwrap();
    };
    write(true, true);
    let sim = Sim::start(
        &e2e::config(&config(&state, &vm.url(), port, true, true)),
        SCENARIO,
    )
    .await;
    let mut cmd = pqwatch_cmd(&["run", "-c", path.to_str().unwrap()]);
    cmd.env("RUST_LOG", "info");
    let mut d = Running::spawn(cmd, dir.path());

    // M1: three line-voltage events and its own demand; HV's total: demand.
    wait_for("M1's and HV's events", Duration::from_secs(40), &d, || {
        open_of(&state, "M1", "HV", Kind::VoltageHigh).len() == 3
            && open_of(&state, "M1", "HV", Kind::DemandExceeded).len() == 1
            && open_of(&state, "*", "HV", Kind::DemandExceeded).len() == 1
    })
    .await;
    let first: Vec<Event> = events(&state)
        .into_iter()
        .filter(|e| e.customer == "HV" && e.state == State::Open)
        .collect();
    assert_eq!(first.len(), 5, "{first:#?}");

    // Remove M1 and its customer.
    write(false, false);
    d.signal("HUP");
    wait_for(
        "the events closed by the reload",
        Duration::from_secs(20),
        &d,
        || {
            events(&state)
                .iter()
                .filter(|e| e.customer == "HV")
                .all(|e| e.state == State::Closed)
        },
    )
    .await;
    for e in &first {
        let want = if e.meter == "*" {
            "customer_removed"
        } else {
            "meter_removed"
        };
        assert_eq!(reason(&state, &e.id).as_deref(), Some(want), "{e:?}");
    }
    // Written as pq_event with open=0 (at the event's start, like every
    // change of it: InfluxDB keeps the last write, VictoriaMetrics both).
    let closed = vm
        .wait_for_series(
            r#"pq_event_open{customer="HV"}"#,
            |s| s.len() == 5 && s.iter().all(|s| s.values.contains(&0.0)),
            Duration::from_secs(20),
        )
        .await;
    assert!(
        closed.ok,
        "pq_event open=0 for every closed event: {closed}"
    );
    assert!(
        d.stderr().contains("reason=\"meter_removed\"")
            || d.stderr().contains("reason=meter_removed")
    );

    // Back again: each event opens once, however long it runs.
    write(true, true);
    d.signal("HUP");
    wait_for("M1's events again", Duration::from_secs(40), &d, || {
        open_of(&state, "M1", "HV", Kind::VoltageHigh).len() == 3
            && open_of(&state, "*", "HV", Kind::DemandExceeded).len() == 1
    })
    .await;
    let settle = Instant::now() + Duration::from_secs(4);
    while Instant::now() < settle {
        let v = open_of(&state, "M1", "HV", Kind::VoltageHigh);
        assert!(v.len() <= 3, "duplicate open events: {v:#?}");
        let t = open_of(&state, "*", "HV", Kind::DemandExceeded);
        assert!(t.len() <= 1, "duplicate open events: {t:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The contract's maximum demand dropped: the demand events close with
    // limits_changed, the voltage events stay open.
    wait_for("M1's own demand event", Duration::from_secs(30), &d, || {
        open_of(&state, "M1", "HV", Kind::DemandExceeded).len() == 1
    })
    .await;
    let demand: Vec<Event> = open_of(&state, "M1", "HV", Kind::DemandExceeded)
        .into_iter()
        .chain(open_of(&state, "*", "HV", Kind::DemandExceeded))
        .collect();
    let voltage = open_of(&state, "M1", "HV", Kind::VoltageHigh);
    write(true, false);
    d.signal("HUP");
    wait_for(
        "the demand events closed",
        Duration::from_secs(20),
        &d,
        || {
            let ev = events(&state);
            demand
                .iter()
                .all(|x| ev.iter().any(|e| e.id == x.id && e.state == State::Closed))
        },
    )
    .await;
    for e in &demand {
        assert_eq!(reason(&state, &e.id).as_deref(), Some("limits_changed"));
    }
    let still = open_of(&state, "M1", "HV", Kind::VoltageHigh);
    assert_eq!(
        still.iter().map(|e| &e.id).collect::<Vec<_>>(),
        voltage.iter().map(|e| &e.id).collect::<Vec<_>>(),
        "the voltage events go on"
    );

    d.signal("TERM");
    let status = d.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(status.success(), "{}", d.stderr());
    sim.stop().await;
    Ok(())
}
