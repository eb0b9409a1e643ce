//! Tests of `model`.

mod distortion;

use super::meter::phase_order;
use super::*;
use crate::report::ledger::VoltageDay;

#[test]
fn verdicts_combine_fail_first() {
    use Verdict::*;
    assert_eq!(Verdict::combine([Pass, NoData, Fail]), Fail);
    assert_eq!(Verdict::combine([NoData, Pass]), Pass);
    assert_eq!(Verdict::combine([NoData, NoData]), NoData);
    assert_eq!(Verdict::combine([]), NoData);
}

#[test]
fn phases_and_orders_from_field_names() {
    assert_eq!(phase_order("harmonic_voltage_l1_n_h5"), ("l1".into(), 5));
    assert_eq!(phase_order("harmonic_voltage_l3_n_h25"), ("l3".into(), 25));
    assert_eq!(phase_order("thd_voltage_l2_n"), ("l2".into(), 0));
    assert_eq!(phase_order("thd_current_l1"), ("l1".into(), 0));
}

use crate::calendar::{day_key, local_date};
use crate::quality::aggregate::{Stat, Window};
use crate::report::ledger::{self, LedgerSpec};

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

fn window(start_ms: i64, len_ms: i64, fields: &[(&str, f64)]) -> Window {
    Window {
        start_ms,
        len_ms,
        polls: 12,
        expected: 12,
        complete: true,
        stats: fields
            .iter()
            .map(|(k, v)| {
                (
                    std::sync::Arc::from(*k),
                    Stat {
                        n: 12,
                        mean: *v,
                        min: *v,
                        max: *v,
                        min_ms: start_ms,
                        max_ms: start_ms + 1_000,
                    },
                )
            })
            .collect(),
    }
}

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
        &cfg,
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
        &cfg,
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

/// A 0.38 kV customer (220/380 V) on an SDM630, one day in Asia/Shanghai.
const LV: &str = r#"
[daemon]
profile_dir = "/nonexistent"
timezone = "Asia/Shanghai"

[[customers]]
id = "C1"

[[meters]]
id = "LV1"
customer = "C1"
address = "127.0.0.1:502"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 380
"#;

/// The LV1 ledger of 2026-10-05 from one L1 value per minute (L2 and
/// L3 follow L1 during an outage, else stay at 220 V).
fn lv_day(cfg: &Config, l1: &dyn Fn(i64) -> f64) -> BTreeMap<String, BTreeMap<String, DayLedger>> {
    let tz = &cfg.timezone;
    let m = &cfg.meters[0];
    let spec = LedgerSpec::from_config(m, cfg.customers.first(), cfg.rules.interruption_pct);
    let start = Period::parse("2026-10-05").unwrap().start_ms(tz);
    let mut day = DayLedger::default();
    for i in 0..1440i64 {
        let v = l1(i);
        let other = if v < 22.0 { v } else { 220.0 };
        let w = window(
            start + i * 60_000,
            60_000,
            &[
                ("voltage_l1_n", v),
                ("voltage_l2_n", other),
                ("voltage_l3_n", other),
            ],
        );
        day.merge(&ledger::from_short_window(&w, &spec));
    }
    let key = day_key(local_date(start, tz));
    [("LV1".to_string(), [(key, day)].into())].into()
}

/// The report of a period that has ended, on `ledger`.
fn ended_report(
    cfg: &Config,
    period: &Period,
    ledger: &BTreeMap<String, BTreeMap<String, DayLedger>>,
    target: f64,
) -> Report {
    build(
        cfg,
        &cfg.customers[0],
        target,
        &Inputs {
            period,
            now_ms: period.end_ms(&cfg.timezone) + 1,
            ledger,
            events: &[],
            unreadable_rows: 0,
        },
    )
}

fn lv_report(cfg: &Config, ledger: &BTreeMap<String, BTreeMap<String, DayLedger>>) -> Report {
    let period = Period::parse("2026-10-05").unwrap();
    build(
        cfg,
        &cfg.customers[0],
        95.0,
        &Inputs {
            period: &period,
            now_ms: period.end_ms(&cfg.timezone) + 3_600_000,
            ledger,
            events: &[],
            unreadable_rows: 0,
        },
    )
}

#[test]
fn phase_voltages_on_220_v_with_an_outage_hour_pass_as_the_standard_says() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::config::from_str(LV, dir.path()).unwrap();
    // Minutes 0..60: outage (0 V on every phase). Then 20 minutes at
    // 235.6 V, 40 at 235.0 V, 39 at 204.5 V and 10 at 203.9 V; the rest
    // at 220 V.
    let l1 = |i: i64| match i {
        0..60 => 0.0,
        60..80 => 235.6,
        80..120 => 235.0,
        120..159 => 204.5,
        159..169 => 203.9,
        _ => 220.0,
    };
    let ledger = lv_day(&cfg, &l1);
    let r = lv_report(&cfg, &ledger);
    let m = &r.meters[0];
    let row = m.voltage.iter().find(|v| v.phase == "l1").unwrap();
    // GB/T 156: the phase reference of 220/380 V is 220 V, so the
    // GB/T 12325 band is 204.6 … 235.4 V (not 204.03 … 234.75 V).
    assert_eq!(row.reference_v, 220.0);
    assert!((row.upper_v - 235.4).abs() < 1e-9 && (row.lower_v - 204.6).abs() < 1e-9);
    // Second method: classify the minutes directly against 220 V ± 7 %.
    let (mut above, mut below, mut monitored, mut outage) = (0, 0, 0, 0);
    for i in 0..1440 {
        let v = l1(i);
        if v < 22.0 {
            outage += 1;
            continue;
        }
        monitored += 1;
        if v > 220.0 * 1.07 {
            above += 1;
        } else if v < 220.0 * 0.93 {
            below += 1;
        }
    }
    assert_eq!(
        (monitored, above, below, outage),
        (1380, 20, 49, 60),
        "by hand"
    );
    assert_eq!(
        (row.monitored, row.above, row.below),
        (monitored, above, below)
    );
    assert_eq!(m.outage_minutes, outage);
    // (1 − 69/1380) × 100 = 95.00 % exactly: a pass at 95 %.
    let rate = 100.0 * (1.0 - (above + below) as f64 / monitored as f64);
    assert!((row.rate.unwrap() - rate).abs() < 1e-9 && (rate - 95.0).abs() < 1e-9);
    assert_eq!(m.voltage_verdict, Verdict::Pass);
    assert_eq!(m.data_completeness, Some(100.0), "outage minutes are data");
    // Judged against 380/√3 = 219.39 V (the old method) the same day
    // has 60 minutes above and 10 below, and fails: 94.93 %.
    let old = 380.0 / 3f64.sqrt();
    let old_bad = (0..1440)
        .map(l1)
        .filter(|v| *v >= 22.0 && (*v > old * 1.07 || *v < old * 0.93))
        .count();
    assert_eq!(old_bad, 70);
    let old_rate = 100.0 * (1.0 - old_bad as f64 / 1380.0);
    assert!(old_rate < 95.0, "{old_rate}");
}

#[test]
fn the_worst_phase_rule_judges_the_worst_phase_alone() {
    // L1 as in the 220 V scenario (95.00 %), L2 and L3 clean: pooled
    // (1 − 69 / 4140) = 98.33 % passes a 97 % target, L1 alone fails.
    let dir = tempfile::tempdir().unwrap();
    let l1 = |i: i64| match i {
        0..20 => 235.6,
        20..69 => 204.5,
        _ => 220.0,
    };
    for (rule, verdict) in [("pooled", Verdict::Pass), ("worst_phase", Verdict::Fail)] {
        let text = format!("{LV}\n[reports]\nphase_rule = \"{rule}\"\n");
        let cfg = crate::config::from_str(&text, dir.path()).unwrap();
        let ledger = lv_day(&cfg, &l1);
        let period = Period::parse("2026-10-05").unwrap();
        let r = ended_report(&cfg, &period, &ledger, 97.0);
        let m = &r.meters[0];
        let want = if rule == "pooled" {
            100.0 * (1.0 - 69.0 / (3.0 * 1440.0))
        } else {
            100.0 * (1.0 - 69.0 / 1440.0)
        };
        assert!((m.voltage_share.unwrap() - want).abs() < 1e-9, "{rule}");
        assert_eq!(m.voltage_verdict, verdict, "{rule}");
    }
    let e = crate::config::from_str(
        &format!("{LV}\n[reports]\nphase_rule = \"mean\"\n"),
        dir.path(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("reports.phase_rule: \"mean\" is not \"pooled\" or \"worst_phase\""),
        "{e}"
    );
}

#[test]
fn a_day_with_almost_no_data_is_insufficient_never_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::config::from_str(LV, dir.path()).unwrap();
    assert_eq!(cfg.reports.min_completeness, 90.0, "the documented default");
    // One complete minute in the day (0.07 %), inside the band.
    let mut ledger = lv_day(&cfg, &|_| 220.0);
    let day = ledger.get_mut("LV1").unwrap().values_mut().next().unwrap();
    let one = day.voltage.values().next().unwrap().clone();
    let mut single = DayLedger::default();
    let mut v = VoltageDay::default();
    v.add(220.0, one.band_at, one.upper_v, one.lower_v);
    single.voltage.insert("l1".into(), v);
    *day = single;
    let r = lv_report(&cfg, &ledger);
    let m = &r.meters[0];
    assert_eq!(m.voltage[0].rate, Some(100.0));
    assert!((m.data_completeness.unwrap() - 100.0 / 1440.0).abs() < 1e-9);
    assert_eq!(m.voltage_verdict, Verdict::Insufficient);
    assert_eq!(r.verdicts.overall, Verdict::Insufficient);
    // 90 % of the day measured (1296 minutes) is enough.
    let mut ledger = lv_day(&cfg, &|_| 220.0);
    let day = ledger.get_mut("LV1").unwrap().values_mut().next().unwrap();
    for v in day.voltage.values_mut() {
        v.monitored = 1296;
    }
    assert_eq!(
        lv_report(&cfg, &ledger).meters[0].voltage_verdict,
        Verdict::Pass
    );
    for v in ledger
        .get_mut("LV1")
        .unwrap()
        .values_mut()
        .next()
        .unwrap()
        .voltage
        .values_mut()
    {
        v.monitored = 1295;
    }
    assert_eq!(
        lv_report(&cfg, &ledger).meters[0].voltage_verdict,
        Verdict::Insufficient,
        "89.93 %"
    );
}

#[test]
fn insufficient_beats_pass_but_not_fail() {
    use Verdict::*;
    assert_eq!(Verdict::combine([Pass, Insufficient]), Insufficient);
    assert_eq!(Verdict::combine([Insufficient, Pass, NoData]), Insufficient);
    assert_eq!(Verdict::combine([Insufficient, Fail]), Fail);
    assert_eq!(truncate2(99.995), 99.99);
    assert_eq!(truncate2(95.0), 95.0);
    assert_eq!(truncate2(100.0 * (1.0 - 69.0 / 1380.0)), 95.0);
}

#[test]
fn en50160_is_judged_per_phase_per_week_with_range_2() {
    let dir = tempfile::tempdir().unwrap();
    let text = LV
        .replace(
            "id = \"C1\"",
            "id = \"C1\"\nlimits = { preset = \"en50160\" }",
        )
        .replace("nominal_voltage = 380", "nominal_voltage = 400");
    let cfg = crate::config::from_str(&text, dir.path()).unwrap();
    let m = &cfg.meters[0];
    let spec = LedgerSpec::from_config(m, cfg.customers.first(), cfg.rules.interruption_pct);
    let tz = &cfg.timezone;
    let period = Period::parse("2026-10-05..2026-10-18").unwrap();
    let start = period.start_ms(tz);
    // 10-minute interval k of the fortnight (2016 of them) → (L1, L2, L3).
    let v = |k: i64| -> (f64, f64, f64) {
        match k {
            3 => (0.0, 0.0, 0.0), // an interruption: flagged, left out
            // LV range 1 is 207 … 253 V, range 2 195.5 … 253 V.
            100..150 => (200.0, 230.0, 230.0), // W41: 50 outside range 1 only
            1100..1151 => (200.0, 230.0, 230.0), // W42: 51 outside range 1 only
            1500 => (230.0, 194.0, 254.0),     // W42: L2 below, L3 above range 2
            _ => (230.0, 230.0, 230.0),
        }
    };
    let mut ledger: BTreeMap<String, BTreeMap<String, DayLedger>> = BTreeMap::new();
    for k in 0..2016i64 {
        let t = start + k * 600_000;
        let (a, b, c) = v(k);
        let w = window(
            t,
            600_000,
            &[
                ("voltage_l1_n", a),
                ("voltage_l2_n", b),
                ("voltage_l3_n", c),
            ],
        );
        ledger
            .entry("LV1".into())
            .or_default()
            .entry(day_key(local_date(t, tz)))
            .or_default()
            .merge(&ledger::from_long_window(&w, &spec));
    }
    let r = ended_report(&cfg, &period, &ledger, 95.0);
    let mr = &r.meters[0];
    assert_eq!(mr.weekly.len(), 6, "two weeks × three phases");
    // Second method: count each week's intervals directly.
    for w in &mr.weekly {
        let (base, pi) = match (w.week.as_str(), w.phase.as_str()) {
            ("2026-W41", p) => (0, p),
            ("2026-W42", p) => (1008, p),
            other => panic!("{other:?}"),
        };
        let pick = |t: (f64, f64, f64)| match pi {
            "l1" => t.0,
            "l2" => t.1,
            _ => t.2,
        };
        let (mut n, mut n1, mut n2) = (0, 0, 0);
        for k in base..base + 1008 {
            let x = pick(v(k));
            if v(k) == (0.0, 0.0, 0.0) {
                continue;
            }
            n += 1;
            if !(230.0 * 0.9..=230.0 * 1.1).contains(&x) {
                n1 += 1;
            }
            if !(230.0 * 0.85..=230.0 * 1.1).contains(&x) {
                n2 += 1;
            }
        }
        assert_eq!(
            (w.intervals, w.outside, w.outside_range2),
            (n, n1, n2),
            "{w:?}"
        );
        let pass = n2 == 0 && n1 as f64 <= 0.05 * n as f64;
        assert_eq!(w.verdict == Verdict::Pass, pass, "{w:?}");
        assert!(!w.partial);
    }
    let get = |wk: &str, ph: &str| {
        mr.weekly
            .iter()
            .find(|w| w.week == wk && w.phase == ph)
            .unwrap()
            .clone()
    };
    // By hand: W41 L1 50 of 1007 (4.97 %) passes; W42 L1 51 of 1008
    // (5.06 %) fails; W42 L2 and L3 have one interval outside range 2
    // (LV's range 2 ends at +10 % too) and fail.
    assert_eq!(
        (
            get("2026-W41", "l1").intervals,
            get("2026-W41", "l1").outside
        ),
        (1007, 50)
    );
    assert_eq!(get("2026-W41", "l1").verdict, Verdict::Pass);
    assert_eq!(get("2026-W42", "l1").verdict, Verdict::Fail);
    assert_eq!(
        (
            get("2026-W42", "l2").outside,
            get("2026-W42", "l2").outside_range2
        ),
        (1, 1)
    );
    assert_eq!(get("2026-W42", "l2").verdict, Verdict::Fail);
    assert_eq!(get("2026-W42", "l3").outside_range2, 1);
    assert_eq!(get("2026-W42", "l3").verdict, Verdict::Fail);
    assert_eq!(get("2026-W41", "l3").verdict, Verdict::Pass);
    assert_eq!(mr.voltage_verdict, Verdict::Fail);
    // The pooled fortnight (the old method) would have passed:
    // (50 + 51 + 1 + 1) outside of 3 × 2015 intervals = 1.7 %.
    let pooled = mr.voltage_long.iter().map(|l| l.outside).sum::<u32>();
    assert_eq!(pooled, 103);
}

#[test]
fn unbalance_is_judged_on_its_95_percent_value_and_maximum() {
    // GB/T 15543-2008: ε95 ≤ 2 %, maximum ≤ 4 % (short-time).
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::config::from_str(LV, dir.path()).unwrap();
    let m = &cfg.meters[0];
    let spec = LedgerSpec::from_config(m, cfg.customers.first(), cfg.rules.interruption_pct);
    let tz = &cfg.timezone;
    let period = Period::parse("2026-10-05").unwrap();
    let start = period.start_ms(tz);
    let judge = |eps: &dyn Fn(i64) -> f64| {
        let mut day = DayLedger::default();
        for i in 0..1440i64 {
            let w = window(
                start + i * 60_000,
                60_000,
                &[
                    ("voltage_l1_n", 220.0),
                    ("voltage_l2_n", 220.0),
                    ("voltage_l3_n", 220.0),
                    ("voltage_unbalance", eps(i)),
                ],
            );
            day.merge(&ledger::from_short_window(&w, &spec));
        }
        let ledger = [(
            "LV1".to_string(),
            [(day_key(local_date(start, tz)), day)].into(),
        )]
        .into();
        let r = lv_report(&cfg, &ledger);
        // Second method: sort the minutes, drop the top ⌊0.05 n⌋.
        let values: Vec<f64> = (0..1440).map(eps).collect();
        let cp95 = ledger::cp95_sorted(&values).unwrap();
        let max = values.iter().cloned().fold(f64::MIN, f64::max);
        let u = r.meters[0].unbalance.clone().unwrap();
        assert!((u.cp95.unwrap() - cp95).abs() < 0.006, "{u:?} vs {cp95}");
        assert_eq!(u.max.unwrap().0, max);
        assert_eq!((u.limit, u.short_limit), (2.0, 4.0));
        (u.verdict, r.verdicts.unbalance, r.verdicts.overall)
    };
    // 0.5 … 1.94 % in steps of 0.01 (each value 10 times): CP95 1.87 %.
    let ok = |i: i64| 0.5 + (i / 10) as f64 * 0.01;
    assert_eq!(
        judge(&ok),
        (Verdict::Pass, Some(Verdict::Pass), Verdict::Pass)
    );
    // The same with 20 minutes at 4.5 %: CP95 still below 2 %, but the
    // maximum is above the 4 % short-time limit.
    let spike = |i: i64| if i < 20 { 4.5 } else { ok(i) };
    assert_eq!(judge(&spike).0, Verdict::Fail);
    // 100 minutes at 2.5 %: more than 5 % of the day above 2 %.
    let high = |i: i64| if i < 100 { 2.5 } else { ok(i) };
    let (v, section, overall) = judge(&high);
    assert_eq!(
        (v, section, overall),
        (Verdict::Fail, Some(Verdict::Fail), Verdict::Fail)
    );
}

#[test]
fn frequency_is_judged_against_nominal_plus_minus_the_allowed_deviation() {
    // GB/T 15945: 50 Hz ± 0.2 Hz, every minute.
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::config::from_str(LV, dir.path()).unwrap();
    let m = &cfg.meters[0];
    let spec = LedgerSpec::from_config(m, cfg.customers.first(), cfg.rules.interruption_pct);
    let tz = &cfg.timezone;
    let start = Period::parse("2026-10-05").unwrap().start_ms(tz);
    let feed = |f: &dyn Fn(i64) -> f64| {
        let mut day = DayLedger::default();
        for i in 0..1440i64 {
            let w = window(
                start + i * 60_000,
                60_000,
                &[("voltage_l1_n", 220.0), ("frequency", f(i))],
            );
            day.merge(&ledger::from_short_window(&w, &spec));
        }
        let ledger = [(
            "LV1".to_string(),
            [(day_key(local_date(start, tz)), day)].into(),
        )]
        .into();
        lv_report(&cfg, &ledger)
    };
    let r = feed(&|i| 50.0 + ((i % 21) as f64 - 10.0) * 0.02); // 49.80 … 50.20
    let f = r.meters[0].frequency.clone().unwrap();
    assert_eq!(
        (f.nominal_hz, f.deviation_hz, f.required_pct),
        (50.0, 0.2, 100.0)
    );
    assert_eq!(
        (f.monitored, f.outside),
        (1440, 0),
        "the band's edges are inside"
    );
    assert_eq!(f.verdict, Verdict::Pass);
    assert_eq!(f.standard, "GB/T 15945-2008");
    // Three minutes at 49.75 Hz: outside; by hand 1437 / 1440.
    let r = feed(&|i| if i < 3 { 49.75 } else { 50.01 });
    let f = r.meters[0].frequency.clone().unwrap();
    assert_eq!(f.outside, 3);
    assert!((f.within_pct.unwrap() - 100.0 * 1437.0 / 1440.0).abs() < 1e-9);
    assert_eq!(f.min.unwrap().0, 49.75);
    assert_eq!(
        (f.verdict, r.verdicts.frequency),
        (Verdict::Fail, Some(Verdict::Fail))
    );
    // A small system: ±0.5 Hz by override.
    let text = LV.replace(
        "id = \"C1\"",
        "id = \"C1\"\nlimits = { frequency_deviation = 0.5 }",
    );
    let cfg2 = crate::config::from_str(&text, dir.path()).unwrap();
    assert_eq!(
        cfg2.meters[0]
            .limits
            .frequency
            .as_ref()
            .unwrap()
            .deviation_hz,
        0.5
    );
    // EN 50160: ±1 % (0.5 Hz) for 99.5 %.
    let text = LV.replace(
        "id = \"C1\"",
        "id = \"C1\"\nlimits = { preset = \"en50160\" }",
    );
    let cfg3 = crate::config::from_str(&text, dir.path()).unwrap();
    let fl = cfg3.meters[0].limits.frequency.clone().unwrap();
    assert_eq!((fl.deviation_hz, fl.share), (0.5, 99.5));
}

#[test]
fn a_meter_polled_every_3_s_is_judged_on_its_3_second_values() {
    // GB/T 14549 assesses the CP95 of 3-second values. One hour of
    // THDu polled every 3 s: 1 139 samples at 3 % and 61 at 6 %, one
    // more than the 5 % the CP95 drops, so the samples' CP95 is 6 %
    // (a fail at 0.38 kV), where every 1-minute mean is below 3.5 %.
    let dir = tempfile::tempdir().unwrap();
    let text = LV.replace(
        "nominal_voltage = 380",
        "nominal_voltage = 380\ninterval = \"3s\"",
    );
    let cfg = crate::config::from_str(&text, dir.path()).unwrap();
    let m = &cfg.meters[0];
    let spec = LedgerSpec::from_config(m, cfg.customers.first(), cfg.rules.interruption_pct);
    assert!(spec.samples);
    let tz = &cfg.timezone;
    let start = Period::parse("2026-10-05").unwrap().start_ms(tz);
    let mut day = DayLedger::default();
    let mut values_seen = Vec::new();
    for k in 0..1200i64 {
        // 61 samples at 6 % (one more than 5 %), spread over the hour.
        let thd = if k % 20 == 0 || k == 1 { 6.0 } else { 3.0 };
        values_seen.push(thd);
        let values: Vec<(std::sync::Arc<str>, f64)> = vec![
            (std::sync::Arc::from("voltage_l1_n"), 220.0),
            (std::sync::Arc::from("thd_voltage_l1_n"), thd),
        ];
        day.merge(&ledger::from_samples(&values, &spec));
    }
    // The minute means of the same hour (20 samples each: 1 or 2 at 6 %).
    for i in 0..60i64 {
        let slice = &values_seen[(i * 20) as usize..((i + 1) * 20) as usize];
        let mean = slice.iter().sum::<f64>() / 20.0;
        let w = window(
            start + i * 60_000,
            60_000,
            &[("voltage_l1_n", 220.0), ("thd_voltage_l1_n", mean)],
        );
        day.merge(&ledger::from_short_window(&w, &spec));
    }
    let ledger = [(
        "LV1".to_string(),
        [(day_key(local_date(start, tz)), day)].into(),
    )]
    .into();
    let r = lv_report(&cfg, &ledger);
    let thd = &r.meters[0].thd[0];
    assert_eq!(thd.samples, 1200);
    // Second method: sort the 1 200 samples, drop ⌊0.05 × 1200⌋ = 60.
    let by_hand = ledger::cp95_sorted(&values_seen).unwrap();
    assert_eq!(by_hand, 6.0, "61 samples at 6 %: one survives the drop");
    assert!((thd.cp95.unwrap() - by_hand).abs() < 1e-9);
    assert_eq!(
        thd.verdict,
        Verdict::Fail,
        "above the 0.38 kV THDu limit of 5 %"
    );
    // The 1-minute means alone (3.15 % or 3.3 %) would have passed.
    assert!(thd.max.unwrap().0 < 5.0);
    // A 5-second meter keeps no samples.
    let cfg5 = crate::config::from_str(
        &LV.replace(
            "nominal_voltage = 380",
            "nominal_voltage = 380\ninterval = \"5s\"",
        ),
        dir.path(),
    )
    .unwrap();
    let spec5 = LedgerSpec::from_config(&cfg5.meters[0], None, 10.0);
    let values: Vec<(std::sync::Arc<str>, f64)> =
        vec![(std::sync::Arc::from("thd_voltage_l1_n"), 6.0)];
    assert!(ledger::from_samples(&values, &spec5).is_empty());
}
