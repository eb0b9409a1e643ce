//! Tests of a whole report: the scripted month of an HV customer (worked
//! out by hand, with a suspension and demand) and a period still running.

use super::*;

const CONFIG: &str = r#"
[daemon]
profile_dir = "/nonexistent"
timezone = "Asia/Shanghai"

# The scripted month holds two hours of data: judge it anyway (the
# sufficiency rule has its own test).
[reports]
min_completeness = 0

[[customers]]
id = "C1"
name = "华北钢铁"
contracted_kva = 1000
max_demand_kw = 500
recipients = ["boss@steel.example"]
suspensions = [{ from = "2026-10-10", to = "2026-10-20", kva = 600 }]

[[customers]]
id = "C2"

[[meters]]
id = "M1"
customer = "C1"
address = "127.0.0.1:502"
unit = 1
profile = "janitza-umg96rm"
nominal_voltage = 10000
"#;

#[test]
fn a_scripted_month_gives_the_figures_worked_out_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::config::from_str(CONFIG, dir.path()).unwrap();
    let tz = &cfg.timezone;
    let m = &cfg.meters[0];
    let spec = LedgerSpec::from_config(m, cfg.customers.first(), 10.0);
    // 2026-10-03 10:00 local is 02:00 UTC.
    let oct3 = jiff::civil::date(2026, 10, 3)
        .at(10, 0, 0, 0)
        .to_zoned_datetime(tz.clone())
        .unwrap()
        .timestamp()
        .as_millisecond();
    assert_eq!(oct3 % 3_600_000, 0);
    let day = 86_400_000;
    let mut ledger: BTreeMap<String, BTreeMap<String, DayLedger>> = BTreeMap::new();
    let mut feed_key = |key: &str, start: i64, d: DayLedger| {
        ledger
            .entry(key.into())
            .or_default()
            .entry(day_key(local_date(start, tz)))
            .or_default()
            .merge(&d);
    };
    let total = ledger::customer_key("C1");
    // Oct 3, 10:00–10:59: l1_l2 at 10 800 V in minutes 10–12 (3 above
    // 10 700), l3_l1 at 9 200 V in minute 30 (1 below 9 300). THDu l1
    // = 1.0 + (i mod 40) × 0.1; h3 l1 3.5 % (limit 3.2), h5 l1 2.0 %.
    // Oct 4, same hour: l1_l2 at 10 750 V in minute 0 (1 above).
    for (d, base) in [(0, oct3), (1, oct3 + day)] {
        for i in 0..60i64 {
            let t = base + i * 60_000;
            let l12 = match (d, i) {
                (0, 10..=12) => 10_800.0,
                (1, 0) => 10_750.0,
                _ => 10_000.0,
            };
            let l31 = if (d, i) == (0, 30) { 9_200.0 } else { 10_000.0 };
            let thd = 1.0 + ((d * 60 + i) % 40) as f64 * 0.1;
            let w = window(
                t,
                60_000,
                &[
                    ("voltage_l1_l2", l12),
                    ("voltage_l2_l3", 10_000.0),
                    ("voltage_l3_l1", l31),
                    ("thd_voltage_l1_n", thd),
                    ("harmonic_voltage_l1_n_h3", 3.5),
                    ("harmonic_voltage_l1_n_h5", 2.0),
                    ("active_power_total", 300_000.0),
                ],
            );
            feed_key("M1", t, ledger::from_short_window(&w, &spec));
        }
    }
    let demand = |start: i64, kw: f64, kva: f64, max: f64| crate::quality::demand::Demand {
        start_ms: start,
        end_ms: start + 900_000,
        kw,
        kva: Some(kva),
        max_load: max,
        max_load_ms: start + 300_000,
        from_energy: false,
    };
    // The customer's total demand peaked at 450 kW on Oct 3.
    feed_key(
        &total,
        oct3,
        ledger::from_demand(&demand(oct3, 450.0, 500.0, 600.0)),
    );
    // Oct 12 (suspended: 400 kVA allowed): the 15-minute basis reached
    // 500 kVA, with one sample of the total at 1 200 kVA.
    let oct12 = oct3 + 9 * day;
    feed_key(
        &total,
        oct12,
        ledger::from_suspension_basis(&demand(oct12, 420.0, 500.0, 1_200.0)),
    );
    let ev = |customer: &str, kind: Kind| Event {
        id: format!("{customer}-{}", kind.as_str()),
        meter: "M1".into(),
        customer: customer.into(),
        kind,
        phase: "l1_l2".into(),
        order: 0,
        state: State::Closed,
        start_ms: oct3 + 600_000,
        end_ms: oct3 + 780_000,
        value: 10_800.0,
        peak: 10_800.0,
        peak_ms: oct3 + 600_000,
        limit: 10_700.0,
        unit: "V",
        source: "GB/T 12325-2008".into(),
    };
    let events = [ev("C1", Kind::VoltageHigh), ev("C2", Kind::VoltageHigh)];
    let period = Period::parse("2026-10").unwrap();
    let now = period.end_ms(tz) + 8 * 3_600_000;
    let r = build(
        &crate::report::Settings::of(&cfg),
        &cfg.customers[0],
        95.0,
        &Inputs {
            period: &period,
            now_ms: now,
            ledger: &ledger,
            events: &events,
            unreadable_rows: 0,
        },
    );
    let mr = &r.meters[0];
    assert_eq!(mr.expected, 31 * 1440);
    let row = |ph: &str| mr.voltage.iter().find(|v| v.phase == ph).unwrap().clone();
    let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-9;
    let l12 = row("l1_l2");
    assert_eq!((l12.monitored, l12.above, l12.below), (120, 4, 0));
    // (1 − 4/120) × 100 = 96.666…
    assert!(
        close(l12.rate, 100.0 * (1.0 - 4.0 / 120.0)),
        "{:?}",
        l12.rate
    );
    assert_eq!(
        l12.max,
        Some((10_800.0, oct3 + 10 * 60_000)),
        "first of equal maxima"
    );
    assert_eq!((l12.upper_v, l12.lower_v), (10_700.0, 9_300.0));
    assert!(close(l12.completeness, 120.0 / 44_640.0 * 100.0));
    let l31 = row("l3_l1");
    assert_eq!((l31.monitored, l31.above, l31.below), (120, 0, 1));
    assert_eq!(l31.min, Some((9_200.0, oct3 + 30 * 60_000)));
    assert!(close(l31.rate, 100.0 * (1.0 - 1.0 / 120.0)));
    let total = row("total");
    assert_eq!((total.monitored, total.above, total.below), (360, 4, 1));
    // (1 − 5/360) × 100 = 98.6111…
    assert!(close(total.rate, 100.0 * (1.0 - 5.0 / 360.0)));
    assert_eq!(mr.voltage_verdict, Verdict::Pass, "98.61 % ≥ 95 %");

    // THDu l1: 120 values, each of 1.0…4.9 three times. CP95 drops
    // ⌊0.05 × 120⌋ = 6 → the 114th smallest = group 38 = 4.7 %.
    let thd = &mr.thd[0];
    assert_eq!((thd.phase.as_str(), thd.minutes), ("l1", 120));
    assert!(close(thd.cp95, 4.7), "{:?}", thd.cp95);
    assert_eq!(thd.limit, Some(4.0), "GB/T 14549, 10 kV");
    assert_eq!(thd.verdict, Verdict::Fail);
    // Above 4.0: 4.1…4.9 → 9 values × 3 = 27 minutes.
    assert_eq!(thd.over, 27);
    assert!(close(thd.max.map(|m| m.0), 4.9));
    let h3 = mr.harmonics.iter().find(|h| h.order == 3).unwrap();
    let h5 = mr.harmonics.iter().find(|h| h.order == 5).unwrap();
    assert_eq!((h3.verdict, h5.verdict), (Verdict::Fail, Verdict::Pass));
    assert_eq!(mr.harmonic_verdict, Verdict::Fail);

    // Daily rows: every day of October; Oct 3 has 60 monitored minutes.
    assert_eq!(mr.daily.len(), 31);
    let d3 = &mr.daily[2];
    assert_eq!(d3.date, jiff::civil::date(2026, 10, 3));
    assert_eq!((d3.phases[0].monitored, d3.phases[0].above), (60, 3));
    assert_eq!(d3.expected, 1440);
    assert_eq!(mr.daily[0].phases[0].monitored, 0);

    // Suspension: 1000 − 600 = 400 kVA allowed; 500 kVA seen on Oct 12.
    let s = &r.suspensions[0];
    assert_eq!(s.allowed, Some(400.0));
    let p = s.peak.clone().unwrap();
    assert_eq!(
        (p.value, p.at_ms, p.unit.as_str()),
        (500.0, oct12 + 900_000, "kVA"),
        "the basis at the end of its period"
    );
    let i = s.instant_peak.clone().unwrap();
    assert_eq!((i.value, i.at_ms), (1_200.0, oct12 + 300_000));
    assert_eq!(s.verdict, Verdict::Fail);
    // Demand: 450 kW peak against 500 × 1.05, no exceedance events.
    let d = r.demand.clone().unwrap();
    assert_eq!((d.limit_kw, d.exceedances), (525.0, 0));
    assert_eq!(d.peak.unwrap().value, 450.0);
    assert_eq!(d.verdict, Verdict::Pass);
    // Only this customer's events.
    assert_eq!(r.events.len(), 1);
    assert_eq!(
        (
            r.verdicts.voltage,
            r.verdicts.harmonics,
            r.verdicts.suspension,
            r.verdicts.demand,
            r.verdicts.overall
        ),
        (
            Verdict::Pass,
            Verdict::Fail,
            Some(Verdict::Fail),
            Some(Verdict::Pass),
            Verdict::Fail
        )
    );
    assert_eq!(r.tz_name, "Asia/Shanghai");
}

#[test]
fn a_running_period_expects_minutes_up_to_now_only() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::config::from_str(CONFIG, dir.path()).unwrap();
    let period = Period::parse("2026-10").unwrap();
    // Two days and 90 minutes into the month.
    let now = period.start_ms(&cfg.timezone) + 2 * 86_400_000 + 90 * 60_000;
    let empty = BTreeMap::new();
    let r = build(
        &crate::report::Settings::of(&cfg),
        &cfg.customers[0],
        95.0,
        &Inputs {
            period: &period,
            now_ms: now,
            ledger: &empty,
            events: &[],
            unreadable_rows: 0,
        },
    );
    assert_eq!(r.meters[0].expected, 2 * 1440 + 90);
    // Two days and a half with nothing measured: never a pass.
    assert_eq!(r.meters[0].voltage_verdict, Verdict::Insufficient);
    assert_eq!(r.verdicts.overall, Verdict::Insufficient);
    assert_eq!(r.meters[0].voltage[0].rate, None);
}
