//! End to end through the InfluxDB v2 API: simulated meters → pqwatch →
//! VictoriaMetrics (which speaks `/api/v2/write`), read back with
//! `/api/v1/export`.
//!
//! Expected values come from physics and from the configuration, never from
//! pqwatch's output: a 10 kV three-phase system has phase voltages of
//! 10000/√3 V on the primary side, P = Σ(U·I)·PF, a 1 s interval stamps
//! readings at whole seconds.

mod common;
mod e2e;

use common::{ExportedSeries, TestConfig, VictoriaMetrics, find_series, free_port};
use e2e::{Daemon, Sim, check_aligned, close, instants, now_ms};
use std::time::Duration;

const SQRT3: f64 = 1.732_050_807_568_877_2;

fn fleet_config(gw1: u16, gw2: u16, influx_url: &str, gzip: bool) -> String {
    TestConfig::new()
        .state_dir("state")
        .influx_v2(influx_url)
        .influx("api", "v2")
        .influx("org", "test-org")
        .influx("bucket", "test-bucket")
        .influx("token", "test-token")
        .influx("gzip", gzip)
        .polling("1s", "300ms")
        .push(&format!(
            r#"
[[customers]]
id = "C-STEEL"
name = "Steel works"
tags = {{ region = "north" }}

[[customers]]
id = "C-DATA"
name = "Data centre"

# Gateway 1: a 10 kV meter on PT/CT secondaries and a 0.38 kV meter.
[[meters]]
id = "STEEL-10KV"
customer = "C-STEEL"
address = "127.0.0.1:{gw1}"
unit = 1
profile = "janitza-umg96rm"
nominal_voltage = 10000
pt_ratio = "10000/100"
ct_ratio = "300/5"
# Tag values with every character line protocol escapes, and more.
tags = {{ substation = "east", feeder = "F12, bank=east\\2 华东" }}

[[meters]]
id = "DATA-EM24"
customer = "C-DATA"
address = "127.0.0.1:{gw1}"
unit = 2
profile = "carlo-gavazzi-em24"
nominal_voltage = 380
ct_ratio = "1000/5"

# Gateway 2.
[[meters]]
id = "DATA-SDM"
customer = "C-DATA"
address = "127.0.0.1:{gw2}"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 380
ct_ratio = "1500/5"
tags = {{ panel = "LV-2" }}
"#
        ))
        .to_string()
}

/// The `feeder` tag as configured (TOML `\\` is one backslash).
const FEEDER: &str = "F12, bank=east\\2 华东";

const METERS: [&str; 3] = ["STEEL-10KV", "DATA-EM24", "DATA-SDM"];

fn of_meter<'a>(all: &'a [ExportedSeries], meter: &str) -> Vec<&'a ExportedSeries> {
    all.iter()
        .filter(|s| s.label("meter") == Some(meter))
        .collect()
}

fn series<'a>(all: &'a [ExportedSeries], meter: &str, field: &str) -> &'a ExportedSeries {
    let name = format!("meter_{field}");
    find_series(all, &name, &[("meter", meter)])
        .unwrap_or_else(|| panic!("no series {name}{{meter=\"{meter}\"}}"))
}

/// Value of `field` of `meter` at instant `t`.
fn at(all: &[ExportedSeries], meter: &str, field: &str, t: i64) -> f64 {
    let s = series(all, meter, field);
    s.points()
        .into_iter()
        .find(|p| p.0 == t)
        .unwrap_or_else(|| panic!("{field} of {meter}: no sample at {t}: {:?}", s.points()))
        .1
}

async fn simulated_fleet(gzip: bool) -> anyhow::Result<()> {
    e2e::init_tracing();
    let vm = VictoriaMetrics::start()?;
    let (gw1, gw2) = (free_port(), free_port());
    let cfg = e2e::config(&fleet_config(gw1, gw2, &vm.url(), gzip));
    let sim = Sim::start(&cfg, "").await;

    let daemon = Daemon::start(cfg);
    daemon.run_until(3500).await;
    let run = daemon.stop().await;
    sim.stop().await;

    // Every whole second from shortly after start to shortly before the stop
    // must have been polled and stored, exactly once.
    let want = instants(run.started_ms + 300, run.stopped_ms - 300, 1000);
    assert!(
        want.len() >= 2,
        "test window too short: {want:?} ({} → {})",
        run.started_ms,
        run.stopped_ms
    );
    let all = vm
        .wait_for_series(
            r#"{__name__=~"meter_.*"}"#,
            |s| {
                METERS.iter().all(|m| {
                    find_series(s, "meter_voltage_l1_n", &[("meter", m)])
                        .is_some_and(|v| want.iter().all(|t| v.timestamps.contains(t)))
                })
            },
            Duration::from_secs(10),
        )
        .await
        .into_result()?;

    assert_eq!(
        run.get(|m| &m.sink.batches_failed),
        0,
        "no write should fail"
    );
    assert_eq!(run.get(|m| &m.sink.points_dropped), 0);
    assert_eq!(
        run.get(|m| &m.polling.fields_dropped),
        0,
        "the simulator sends no bad values"
    );

    // No gaps, no duplicates, wall-clock aligned: every series of every meter.
    for m in METERS {
        let ss = of_meter(&all, m);
        assert!(ss.len() >= 20, "{m}: only {} series", ss.len());
        for s in ss {
            check_aligned(s, 1000, &want).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    // Everything pqwatch says it wrote is stored, and nothing more (window
    // aggregates, `pq_*`, count too when the run crosses a window boundary).
    let derived = vm.export(r#"{__name__=~"pq_.*"}"#).await?;
    let stored: usize = all.iter().chain(&derived).map(|s| s.values.len()).sum();
    assert_eq!(
        stored as u64,
        run.get(|m| &m.sink.points_written),
        "samples in VictoriaMetrics vs points_written"
    );

    // Primary-side voltages: within 1 % of the nominal phase voltage.
    for (meter, nominal_ll) in [
        ("STEEL-10KV", 10_000.0),
        ("DATA-EM24", 380.0),
        ("DATA-SDM", 380.0),
    ] {
        let u_ph = nominal_ll / SQRT3;
        for field in ["voltage_l1_n", "voltage_l2_n", "voltage_l3_n"] {
            for (t, v) in series(&all, meter, field).points() {
                assert!(
                    close(v, u_ph, 0.01),
                    "{meter} {field} at {t} = {v} V, want {u_ph:.1} V ± 1 %"
                );
            }
        }
        for (t, v) in series(&all, meter, "voltage_l1_l2").points() {
            assert!(
                close(v, nominal_ll, 0.01),
                "{meter} voltage_l1_l2 at {t} = {v} V, want {nominal_ll} V ± 1 %"
            );
        }
        // P = Σ U·I × PF: catches a power scaled by the wrong ratio (PT×CT).
        for &t in &want {
            let s: f64 = (1..=3)
                .map(|p| {
                    at(&all, meter, &format!("voltage_l{p}_n"), t)
                        * at(&all, meter, &format!("current_l{p}"), t)
                })
                .sum();
            let pf = at(&all, meter, "power_factor_total", t);
            let p = at(&all, meter, "active_power_total", t);
            assert!(
                close(p, s * pf, 0.01),
                "{meter} at {t}: P = {p} W but Σ U·I × PF = {} W",
                s * pf
            );
            assert!(p > 0.0, "{meter} at {t}: P = {p}");
        }
    }
    // Primary current of the 10 kV feeder: more than a secondary current
    // (≤ 5 A) and within the CT's primary rating (300 A).
    for (t, i) in series(&all, "STEEL-10KV", "current_l1").points() {
        assert!(
            i > 5.0 && i <= 300.0,
            "STEEL-10KV current_l1 at {t} = {i} A"
        );
    }

    // Harmonics: % of the fundamental, plausible for a supply.
    let h5 = series(&all, "STEEL-10KV", "harmonic_voltage_l1_n_h5");
    assert!(!h5.values.is_empty());
    for (t, v) in h5.points() {
        assert!(v > 0.0 && v < 10.0, "h5 at {t} = {v} %");
    }
    // Energy counters, kWh, positive and never decreasing.
    for meter in ["STEEL-10KV", "DATA-SDM"] {
        let e = series(&all, meter, "energy_active_import_total");
        assert!(e.values.iter().all(|v| *v > 0.0), "{meter}: {:?}", e.values);
        assert!(
            e.values.windows(2).all(|w| w[1] >= w[0]),
            "{meter} energy decreased: {:?}",
            e.values
        );
    }

    // Tags: the meter's own, its customer's, and meter/customer; nothing
    // leaks from one meter or customer to another.
    let v = series(&all, "STEEL-10KV", "voltage_l1_n");
    assert!(
        v.has_labels(&[
            ("customer", "C-STEEL"),
            ("substation", "east"),
            ("feeder", FEEDER),
            ("region", "north"),
        ]),
        "{:?}",
        v.metric
    );
    let v = series(&all, "DATA-SDM", "voltage_l1_n");
    let labels: Vec<&str> = v.metric.keys().map(String::as_str).collect();
    assert_eq!(labels, ["__name__", "customer", "meter", "panel"]);
    assert!(v.has_labels(&[("customer", "C-DATA"), ("panel", "LV-2")]));
    let v = series(&all, "DATA-EM24", "voltage_l1_n");
    let labels: Vec<&str> = v.metric.keys().map(String::as_str).collect();
    assert_eq!(labels, ["__name__", "customer", "meter"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_fleet_with_gzip() -> anyhow::Result<()> {
    simulated_fleet(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_fleet_without_gzip() -> anyhow::Result<()> {
    simulated_fleet(false).await
}

/// InfluxDB is down when pqwatch starts and comes up ~2 s later: the
/// readings polled meanwhile are kept in memory and delivered, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_polled_while_influxdb_is_down_arrive_once_it_is_up() -> anyhow::Result<()> {
    e2e::init_tracing();
    let vm_port = free_port();
    let gw = free_port();
    let text = TestConfig::new()
        .state_dir("state")
        .influx_v2(&format!("http://127.0.0.1:{vm_port}"))
        .polling("1s", "300ms")
        .push(&format!(
            r#"
[[customers]]
id = "C"

[[meters]]
id = "LATE-DB"
customer = "C"
address = "127.0.0.1:{gw}"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400
fields = ["voltage_l1_n", "current_l1", "frequency"]
"#
        ))
        .to_string();
    let cfg = e2e::config(&text);
    let sim = Sim::start(&cfg, "").await;
    let daemon = Daemon::start(cfg);

    daemon.run_until(2000).await;
    assert_eq!(
        daemon
            .metrics()
            .sink
            .points_written
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "nothing can have been written before the database exists"
    );
    let vm = tokio::task::spawn_blocking(move || VictoriaMetrics::start_on_port(vm_port)).await??;
    let vm_up_ms = now_ms();
    daemon.run_until(5000).await;
    let run = daemon.stop().await;
    sim.stop().await;

    assert!(
        run.get(|m| &m.sink.batches_failed) >= 1,
        "the first writes must have failed (was the database really down?)"
    );
    assert_eq!(run.get(|m| &m.sink.points_dropped), 0);

    let want = instants(run.started_ms + 300, run.stopped_ms - 300, 1000);
    let early: Vec<i64> = want
        .iter()
        .copied()
        .filter(|t| *t < vm_up_ms - 500)
        .collect();
    assert!(
        !early.is_empty(),
        "no instant polled before the database came up: {want:?}, up at {vm_up_ms}"
    );
    let all = vm
        .wait_for_series(
            r#"{__name__=~"meter_.*",meter="LATE-DB"}"#,
            |s| {
                s.len() == 3
                    && s.iter()
                        .all(|x| want.iter().all(|t| x.timestamps.contains(t)))
            },
            Duration::from_secs(10),
        )
        .await
        .into_result()?;
    for s in &all {
        check_aligned(s, 1000, &want).unwrap_or_else(|e| panic!("{e}"));
    }
    let derived = vm.export(r#"{__name__=~"pq_.*",meter="LATE-DB"}"#).await?;
    let stored: usize = all.iter().chain(&derived).map(|s| s.values.len()).sum();
    assert_eq!(
        stored as u64,
        run.get(|m| &m.sink.points_written),
        "each point stored once"
    );
    Ok(())
}

/// The binary, as systemd runs it: SIGTERM stops polling, delivers what was
/// polled, and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_delivers_what_was_polled_and_exits_0() -> anyhow::Result<()> {
    e2e::init_tracing();
    let vm = VictoriaMetrics::start()?;
    let gw = free_port();
    let text = TestConfig::new()
        .state_dir("state")
        .influx_v2(&vm.url())
        .polling("1s", "300ms")
        .push(&format!(
            r#"
[[customers]]
id = "C"

[[meters]]
id = "BIN-1"
customer = "C"
address = "127.0.0.1:{gw}"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400
fields = ["voltage_l1_n", "frequency"]
"#
        ))
        .to_string();
    let sim = Sim::start(&e2e::config(&text), "").await;
    let dir = tempfile::tempdir()?;
    let path = common::write_file(dir.path(), "pqwatch.toml", &text)?;
    let started_ms = now_ms();
    let mut bin = e2e::Running::spawn(
        e2e::pqwatch_cmd(&["run", "-c", path.to_str().unwrap()]),
        dir.path(),
    );
    // Running and writing: two readings stored.
    vm.wait_for_series(
        r#"meter_voltage_l1_n{meter="BIN-1"}"#,
        |s| s.first().is_some_and(|x| x.values.len() >= 2),
        Duration::from_secs(10),
    )
    .await
    .into_result()
    .map_err(|e| e.context(format!("pqwatch stderr:\n{}", bin.stderr())))?;

    let term_ms = now_ms();
    bin.signal("TERM");
    let status = tokio::task::block_in_place(|| bin.wait_exit(Duration::from_secs(15)));
    let stderr = bin.stderr();
    sim.stop().await;
    let status = status.unwrap_or_else(|| panic!("no exit within 15 s of SIGTERM:\n{stderr}"));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");

    let all = vm.export(r#"{__name__=~"meter_.*",meter="BIN-1"}"#).await?;
    assert_eq!(all.len(), 2, "{all:?}");
    // From its first reading until the signal, no instant is missing (the
    // process's own start-up time decides the first one).
    let first = all[0].timestamps[0];
    assert!(
        first <= started_ms + 3000,
        "first reading at {first}, started {started_ms}"
    );
    let want = instants(first, term_ms - 300, 1000);
    for s in &all {
        check_aligned(s, 1000, &want).unwrap_or_else(|e| panic!("{e}\n{stderr}"));
        let last = *s.timestamps.last().unwrap();
        assert!(
            last <= term_ms,
            "a reading stamped after SIGTERM: {last} > {term_ms}"
        );
    }
    Ok(())
}
