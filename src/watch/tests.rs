//! Tests of `watch`.

use super::window_name;

#[test]
fn window_names() {
    assert_eq!(window_name(60_000), "1m");
    assert_eq!(window_name(600_000), "10m");
    assert_eq!(window_name(900_000), "15m");
    assert_eq!(window_name(2_000), "2s");
    assert_eq!(window_name(1_500), "1500ms");
}

use super::*;
use crate::config::Config;
use crate::report::store::LedgerStore;
use crate::state::StateDb;

/// 2030-10-05 00:00 in Asia/Shanghai (a quarter hour; far enough in
/// the future that the silent-meter timer never closes a window early).
fn t0(cfg: &Config) -> i64 {
    crate::config::sections::local_ms("2030-10-05", &cfg.timezone, false).unwrap()
}

const MIN: i64 = 60_000;

/// Runs a watch over 5-second readings of `load(meter, minute)` (kW and
/// kVA) for `minutes`, and returns what it wrote and stored.
async fn run_watch(
    cfg: &Config,
    dir: &std::path::Path,
    minutes: i64,
    load: &dyn Fn(&str, i64, i64) -> (f64, f64),
) -> (Vec<Point>, Vec<Event>) {
    run_watch_with(cfg, dir, minutes, load, &|_, _| Vec::new()).await
}

/// More fields of a reading: `extra(meter, poll)`.
type Extra = dyn Fn(&str, i64) -> Vec<(&'static str, f64)>;

/// [`run_watch`] with more fields per reading: `extra(meter, poll)`.
async fn run_watch_with(
    cfg: &Config,
    dir: &std::path::Path,
    minutes: i64,
    load: &dyn Fn(&str, i64, i64) -> (f64, f64),
    extra: &Extra,
) -> (Vec<Point>, Vec<Event>) {
    let store = EventStore::new(StateDb::open(dir).unwrap());
    let (sink_tx, mut sink_rx) = mpsc::channel(1 << 20);
    let settings = crate::config::reload::fixed(Settings::of(cfg));
    let watch = Watch::new(
        &settings.borrow(),
        store,
        sink_tx,
        None,
        Arc::new(Metrics::default()),
    )
    .unwrap()
    .with_ledger(LedgerFeed::new(
        LedgerStore::new(StateDb::open(dir).unwrap()),
        cfg.timezone.clone(),
        cfg.reports.keep_days,
    ));
    let (tx, rx) = mpsc::channel(1024);
    let task = tokio::spawn(watch.run(rx, settings));
    let metas: Vec<Arc<MeterMeta>> = cfg
        .meters
        .iter()
        .map(|m| Arc::new(MeterMeta::new(&m.id, &m.customer, &m.tags)))
        .collect();
    let start = t0(cfg);
    for k in 0..minutes * 12 {
        let ts = start + k * 5_000;
        for meta in &metas {
            let (kw, kva) = load(&meta.id, k / 12, k % 12);
            let mut values: Vec<(Arc<str>, f64)> = vec![
                (Arc::from("voltage_l1_n"), 230.0),
                (Arc::from("active_power_total"), kw * 1000.0),
                (Arc::from("apparent_power_total"), kva * 1000.0),
            ];
            values.extend(
                extra(&meta.id, k)
                    .into_iter()
                    .map(|(f, v)| (Arc::from(f), v)),
            );
            tx.send(Reading {
                meter: meta.clone(),
                ts_ms: ts,
                values: values.into(),
            })
            .await
            .unwrap();
        }
    }
    drop(tx);
    task.await.unwrap();
    let mut points = Vec::new();
    while let Ok(r) = sink_rx.try_recv() {
        if let Record::Point(p) = r {
            points.push(p);
        }
    }
    let db = StateDb::open(dir).unwrap();
    let events = crate::events::between(&db, 0, i64::MAX).unwrap();
    (points, events)
}

fn config(extra: &str) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[daemon]
profile_dir = "/nonexistent"
timezone = "Asia/Shanghai"
state_dir = "{}"

[polling]
interval = "5s"

[[meters]]
id = "A"
customer = "C1"
address = "127.0.0.1:502"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400

[[meters]]
id = "B"
customer = "C1"
address = "127.0.0.1:502"
unit = 2
profile = "eastron-sdm630"
nominal_voltage = 400
{extra}
"#,
        dir.path().display()
    );
    let cfg = crate::config::from_str(&text, dir.path()).unwrap();
    (dir, cfg)
}

/// Customer C1 on two lines: minutes 0..30 A 221 kW + B 220 kW (441 kW
/// together); then B off and A at 300 kW, 345 kW in minutes 70..80.
fn two_lines(meter: &str, minute: i64, _poll: i64) -> (f64, f64) {
    let kw = match (meter, minute) {
        ("A", 0..30) => 221.0,
        ("B", 0..30) => 220.0,
        ("B", _) => 0.0,
        (_, 70..80) => 345.0,
        _ => 300.0,
    };
    (kw, kw * 1.1)
}

/// The sliding 15-minute means of `kw(minute)` ending at each minute,
/// worked out directly (the second method).
fn sliding(kw: &dyn Fn(i64) -> f64, minutes: i64) -> Vec<(i64, f64)> {
    (15..=minutes)
        .map(|end| (end, (end - 15..end).map(kw).sum::<f64>() / 15.0))
        .collect()
}

#[tokio::test]
async fn a_customer_on_two_lines_is_judged_on_its_sliding_total_and_each_line() {
    let (dir, cfg) =
        config("[[customers]]\nid = \"C1\"\nmax_demand_kw = 300\ncontracted_kva = 2000\n");
    let (points, events) = run_watch(&cfg, dir.path(), 100, &two_lines).await;
    let t0 = t0(&cfg);
    // pq_demand of the total ("*") equals the sliding means of A + B.
    let total = |m: i64| two_lines("A", m, 0).0 + two_lines("B", m, 0).0;
    // Minute 99 is still open when the readings stop.
    let expected = sliding(&total, 99);
    let got: Vec<(i64, f64)> = points
        .iter()
        .filter(|p| p.measurement == "pq_demand" && p.meter.id == "*")
        .map(|p| {
            let kw = p.fields.iter().find(|f| f.0 == "kw").unwrap().1;
            ((p.ts_ms - t0) / MIN, kw)
        })
        .collect();
    assert_eq!(got.len(), expected.len());
    for ((a, x), (b, y)) in got.iter().zip(&expected) {
        assert_eq!(a, b);
        assert!((x - y).abs() < 1e-6, "minute {a}: {x} vs {y}");
    }
    // 300 kW × 1.05 = 315 kW. The total: 441 kW from the first value,
    // then A alone (330 kW sliding peak); each line: only A, in
    // minutes 70..80 (no line exceeds 315 kW in minutes 0..30).
    let demand: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == Kind::DemandExceeded)
        .collect();
    let of = |m: &str| demand.iter().filter(|e| e.meter == m).collect::<Vec<_>>();
    let star = of("*");
    assert_eq!(star.len(), 2, "{demand:#?}");
    assert_eq!(star[0].customer, "C1");
    assert_eq!((star[0].limit, star[0].peak), (315.0, 441.0));
    assert_eq!(star[0].start_ms, t0);
    assert_eq!(
        star[0].source,
        "contracted maximum demand 300 kW × 1.05 = 315 kW"
    );
    // Peak of A's sliding mean: 5 × 300 + 10 × 345 over 15 = 330 kW,
    // first reached by the period ending at minute 80.
    let a = of("A");
    assert_eq!(a.len(), 1, "{demand:#?}");
    assert!((a[0].peak - 330.0).abs() < 1e-6, "{}", a[0].peak);
    assert_eq!(a[0].peak_ms, t0 + 80 * MIN);
    // Violating periods hold ≥ 6 of the 10 high minutes: ending 76..=89.
    assert_eq!((a[0].start_ms, a[0].end_ms), (t0 + 61 * MIN, t0 + 89 * MIN));
    assert!(of("B").is_empty());
    assert!((star[1].peak - 330.0).abs() < 1e-6);
}

#[tokio::test]
async fn demand_is_computed_from_the_energy_counter_where_the_meter_has_one() {
    // Line A's load bursts between polls: every poll reads 100 kW, but
    // its import counter rises at 160 kW (2.667 kWh a minute), as a
    // meter integrating the bursts records. Line B is off, its counter
    // still. Contract: 140 kW × 1.05 = 147 kW.
    let (dir, cfg) = config("[[customers]]\nid = \"C1\"\nmax_demand_kw = 140\n");
    let load = |m: &str, _: i64, _: i64| if m == "A" { (100.0, 110.0) } else { (0.0, 0.0) };
    // kWh at poll k (every 5 s); minutes 40..45: the counter is missing.
    let counter = |m: &str, k: i64| -> Vec<(&'static str, f64)> {
        match (m, k / 12) {
            (_, 40..45) => Vec::new(),
            ("A", _) => vec![(ENERGY_FIELD, 5000.0 + 160.0 * (k * 5) as f64 / 3600.0)],
            _ => vec![(ENERGY_FIELD, 7.0)],
        }
    };
    let (points, events) = run_watch_with(&cfg, dir.path(), 70, &load, &counter).await;
    let t0 = t0(&cfg);
    let demand = |meter: &str| -> Vec<(i64, f64, f64)> {
        points
            .iter()
            .filter(|p| p.measurement == "pq_demand" && p.meter.id == meter)
            .map(|p| {
                let f = |n: &str| p.fields.iter().find(|f| f.0 == n).unwrap().1;
                ((p.ts_ms - t0) / MIN, f("kw"), f("from_energy"))
            })
            .collect()
    };
    // Second method: the counter's increment over each period ending
    // at minute e (from the last poll of minute e−16 to that of e−1),
    // × 60 / 15; minute 0 has no minute before it, so the first
    // period on the counter ends at 16.
    let kwh = |k: i64| 5000.0 + 160.0 * (k * 5) as f64 / 3600.0;
    for (end, kw, from_energy) in demand("A") {
        let on_counter = (16..=40).contains(&end) || end >= 61;
        assert_eq!(from_energy == 1.0, on_counter, "minute {end}");
        let want = if on_counter {
            (kwh(12 * end - 1) - kwh(12 * (end - 15) - 1)) * 60.0 / 15.0
        } else {
            // Periods holding a polled minute (0, which has no minute
            // before it, and 40..=45: no counter, then no counter
            // before): the polls' 100 kW there, the counter's 160 else.
            let polled = (end - 15..end)
                .filter(|m| *m == 0 || (40..=45).contains(m))
                .count() as f64;
            (polled * 100.0 + (15.0 - polled) * 160.0) / 15.0
        };
        assert!((kw - want).abs() < 1e-6, "minute {end}: {kw} vs {want}");
    }
    // The customer's total is on the counters too, and exceeds 147 kW
    // where polled power (100 kW) never would.
    let star = demand("*");
    assert!(
        star.iter()
            .any(|d| d.2 == 1.0 && (d.1 - 160.0).abs() < 1e-6)
    );
    let exceeded: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == Kind::DemandExceeded && e.meter == "*")
        .collect();
    assert!(!exceeded.is_empty(), "{events:#?}");
    assert!(
        (exceeded[0].peak - 160.0).abs() < 1e-6,
        "{}",
        exceeded[0].peak
    );
    // With `demand_basis = "power"` the counter is ignored: 100 kW.
    let (dir3, cfg3) = config(
        "[rules]\ndemand_basis = \"power\"\n[[customers]]\nid = \"C1\"\nmax_demand_kw = 140\n",
    );
    let (points, _) = run_watch_with(&cfg3, dir3.path(), 20, &load, &counter).await;
    assert!(
        points
            .iter()
            .filter(|p| p.measurement == "pq_demand" && p.meter.id == "A")
            .all(|p| p
                .fields
                .iter()
                .any(|f| f.0 == "kw" && (f.1 - 100.0).abs() < 1e-9))
    );
    // Without the counter the same load is 100 kW and passes.
    let dir2 = tempfile::tempdir().unwrap();
    let (points, events) = run_watch(&cfg, dir2.path(), 30, &load).await;
    assert!(events.iter().all(|e| e.kind != Kind::DemandExceeded));
    assert!(
        points
            .iter()
            .filter(|p| p.measurement == "pq_demand")
            .all(|p| p.fields.iter().any(|f| f.0 == "from_energy" && f.1 == 0.0))
    );
}

#[tokio::test]
async fn block_demand_misses_what_sliding_demand_catches() {
    // The same load in block mode: every fixed quarter hour of A in
    // minutes 60..90 is (10 × 300 + 5 × 345) / 15 = 315 kW: not above.
    let (dir, cfg) = config(
        "[rules]\ndemand_mode = \"block\"\n[[customers]]\nid = \"C1\"\nmax_demand_kw = 300\n",
    );
    let (points, events) = run_watch(&cfg, dir.path(), 100, &two_lines).await;
    let ends: Vec<i64> = points
        .iter()
        .filter(|p| p.measurement == "pq_demand" && p.meter.id == "A")
        .map(|p| (p.ts_ms - t0(&cfg)) / MIN)
        .collect();
    assert_eq!(ends, vec![15, 30, 45, 60, 75, 90]);
    let a: Vec<_> = events.iter().filter(|e| e.meter == "A").collect();
    assert!(a.is_empty(), "{a:#?}");
    assert_eq!(events.iter().filter(|e| e.meter == "*").count(), 1);
}

#[tokio::test]
async fn one_high_sample_during_a_suspension_is_information_not_a_violation() {
    // 2000 kVA contracted, 1250 suspended on 2030-10-05: 750 kVA allowed.
    // Meter A draws 740 kVA with one 5-second poll at 1 200 kVA; B is off.
    let (dir, cfg) = config(
        "[[customers]]\nid = \"C1\"\ncontracted_kva = 2000\nsuspensions = [{ from = \"2030-10-05\", to = \"2030-10-05\", kva = 1250 }]\n",
    );
    let load = |m: &str, minute: i64, poll: i64| match (m, minute, poll) {
        ("B", _, _) => (0.0, 0.0),
        (_, 20, 6) => (1_000.0, 1_200.0),
        _ => (600.0, 740.0),
    };
    let (points, events) = run_watch(&cfg, dir.path(), 60, &load).await;
    assert!(
        !events.iter().any(|e| e.kind == Kind::SuspensionLoad),
        "{events:#?}"
    );
    let last = points
        .iter()
        .rfind(|p| p.measurement == "pq_suspension")
        .unwrap();
    let f = |k: &str| last.fields.iter().find(|f| f.0 == k).unwrap().1;
    // The basis: 15 minutes of 180 polls, one at 1 200: 740 + 460/180.
    let basis = 740.0 + 460.0 / 180.0;
    assert!((f("peak") - basis).abs() < 1e-6, "{}", f("peak"));
    assert!(f("peak") < 750.0);
    assert_eq!(f("instant_peak"), 1_200.0);
    assert_eq!(f("allowed"), 750.0);
    assert_eq!(last.meter.id, "*");
    // After a restart, a smaller load never writes a smaller peak: the
    // peak so far comes back from the ledger.
    let (points, _) = run_watch(&cfg, dir.path(), 20, &|_, _, _| (100.0, 100.0)).await;
    let p = points
        .iter()
        .rfind(|p| p.measurement == "pq_suspension")
        .unwrap();
    let g = |k: &str| p.fields.iter().find(|f| f.0 == k).unwrap().1;
    assert!((g("peak") - basis).abs() < 1e-6, "{}", g("peak"));
    assert_eq!(g("instant_peak"), 1_200.0);
    // The report judges the same basis: a pass, with the sample shown.
    let db = StateDb::open(dir.path()).unwrap();
    let period = crate::calendar::Period::parse("2030-10-05").unwrap();
    let r = crate::report::assemble(
        &crate::report::Settings::of(&cfg),
        &db,
        &cfg.customers[0],
        &period,
        t0(&cfg) + 86_400_000,
    )
    .unwrap();
    let s = &r.suspensions[0];
    assert_eq!(s.verdict, crate::report::model::Verdict::Pass);
    assert!((s.peak.as_ref().unwrap().value - basis).abs() < 1e-6);
    assert_eq!(s.instant_peak.as_ref().unwrap().value, 1_200.0);
    assert_eq!(s.allowed, Some(750.0));
}

#[tokio::test]
async fn a_sustained_excess_during_a_suspension_opens_one_event_of_the_total() {
    // Both lines at 400 kVA (800 together) from minute 10 to 40: above
    // 750 kVA on the customer's total although each line is far below.
    let (dir, cfg) = config(
        "[[customers]]\nid = \"C1\"\ncontracted_kva = 2000\nsuspensions = [{ from = \"2030-10-05\", to = \"2030-10-05\", kva = 1250 }]\n",
    );
    let load = |_: &str, minute: i64, _| {
        if (10..40).contains(&minute) {
            (350.0, 400.0)
        } else {
            (300.0, 300.0)
        }
    };
    let (_, events) = run_watch(&cfg, dir.path(), 80, &load).await;
    let s: Vec<_> = events
        .iter()
        .filter(|e| e.kind == Kind::SuspensionLoad)
        .collect();
    assert_eq!(s.len(), 1, "{events:#?}");
    assert_eq!(
        (s[0].meter.as_str(), s[0].limit, s[0].unit),
        ("*", 750.0, "kVA")
    );
    assert!((s[0].peak - 800.0).abs() < 1e-6);
}
