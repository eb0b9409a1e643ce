//! Tests of the voltage unbalance and frequency rows.

use super::*;

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
        let max = values.iter().copied().fold(f64::MIN, f64::max);
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
