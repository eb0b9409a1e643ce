//! Tests of `ledger`.

use super::*;

#[test]
fn cp95_by_hand() {
    // 20 values 1..=20: drop the top ⌊0.05·20⌋ = 1 → 19.
    let v: Vec<f64> = (1..=20).map(f64::from).collect();
    assert_eq!(cp95_sorted(&v), Some(19.0));
    // 10 values: ⌊0.5⌋ = 0 dropped → the maximum.
    assert_eq!(cp95_sorted(&v[..10]), Some(10.0));
    // 100 values: drop 5 → the 95th smallest.
    let v: Vec<f64> = (1..=100).map(|x| f64::from(x) / 10.0).collect();
    assert_eq!(cp95_sorted(&v), Some(9.5));
}

#[test]
fn histogram_cp95_equals_the_sorted_method_to_its_resolution() {
    // A month of minutes (43 200) of pseudo-random THD between 1 % and 7 %,
    // spread over 30 daily histograms that are then merged.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut all = Vec::new();
    let mut month = Hist::default();
    for _day in 0..30 {
        let mut day = Hist::default();
        for _ in 0..1440 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = 1.0 + 6.0 * (x % 1_000_000) as f64 / 1_000_000.0;
            // Values as the ledger stores them: at the histogram resolution.
            let q = (v / HIST_RESOLUTION).round() * HIST_RESOLUTION;
            all.push(q);
            day.add(v);
        }
        month.merge(&day);
    }
    let a = month.cp95().unwrap();
    let b = cp95_sorted(&all).unwrap();
    assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    assert_eq!(month.count(), 43_200);
}

#[test]
fn qualification_rate_three_minutes_above_in_sixty() {
    // The example: 3 minutes above the band in 60 → 95.0 %.
    let v = |m: i64| {
        if (10..13).contains(&m) {
            10_800.0
        } else {
            10_000.0
        }
    };
    let mut d = VoltageDay::default();
    for m in 0..60 {
        d.add(v(m), m * 60_000, 10_700.0, 9_300.0);
    }
    assert_eq!((d.monitored, d.above, d.below), (60, 3, 0));
    assert_eq!(d.qualification_rate(), Some(95.0));
    // The first of the three equal maxima, and the first minimum.
    assert_eq!(d.max, Some((10_800.0, 10 * 60_000)));
    assert_eq!(d.min, Some((10_000.0, 0)));
    // Mean: (57 × 10 000 + 3 × 10 800) / 60 = 10 040.
    assert!((d.mean().unwrap() - 10_040.0).abs() < 1e-9);
    // Merging two halves, in either order, gives the same day.
    let (mut a, mut b) = (VoltageDay::default(), VoltageDay::default());
    for m in 0..60 {
        let t = if m < 30 { &mut a } else { &mut b };
        t.add(v(m), m * 60_000, 10_700.0, 9_300.0);
    }
    let mut ab = a.clone();
    ab.merge(&b);
    let mut ba = b.clone();
    ba.merge(&a);
    assert_eq!(ab, d);
    assert_eq!(ba, d);
}

fn window(start_ms: i64, fields: &[(&str, f64)]) -> Window {
    use crate::quality::aggregate::Stat;
    Window {
        start_ms,
        len_ms: 60_000,
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
                        min: v - 1.0,
                        max: v + 1.0,
                        min_ms: start_ms + 5_000,
                        max_ms: start_ms + 10_000,
                    },
                )
            })
            .collect(),
    }
}

fn spec() -> LedgerSpec {
    LedgerSpec {
        voltage: vec![(
            "l1".into(),
            "voltage_l1_n".into(),
            220.0 * 0.9,
            220.0 * 1.07,
        )],
        thd_voltage: [("thd_voltage_l1_n".to_string(), 5.0)].into(),
        harmonic_limits: [(5, 4.0), (2, 2.0)].into(),
        thd_current: None,
        unbalance: Some(2.0),
        tdd: None,
        harmonic_current: BTreeMap::new(),
        suspensions: vec![(120_000, 240_000)],
        interruption: vec![("voltage_l1_n".into(), 22.0)],
        range2: BTreeMap::new(),
        frequency: Some((49.8, 50.2)),
        samples: false,
        distortion_long: false,
        flicker: None,
    }
}

#[test]
fn one_minute_windows_become_a_day_ledger() {
    let mut day = DayLedger::default();
    // Minute 0: 240 V (above 235.4), THD 5.5 (over 5), h5 3.0, h2 2.5
    // (over 2), THDi 30 (kept, no limit), 100 kW. Minute 2 (inside the
    // suspension): 230 V, 80 kW. The unbalance is kept like a
    // distortion (GB/T 15543 assesses its 95 % value and maximum).
    let m0 = window(
        0,
        &[
            ("voltage_l1_n", 240.0),
            ("thd_voltage_l1_n", 5.5),
            ("harmonic_voltage_l1_n_h5", 3.0),
            ("harmonic_voltage_l1_n_h2", 2.5),
            ("thd_current_l1", 30.0),
            ("active_power_total", 100_000.0),
            ("voltage_unbalance", 1.0),
        ],
    );
    let m2 = window(
        120_000,
        &[("voltage_l1_n", 230.0), ("active_power_total", 80_000.0)],
    );
    for w in [&m0, &m2] {
        day.merge(&from_short_window(w, &spec()));
    }
    let v = &day.voltage["l1"];
    assert_eq!((v.monitored, v.above, v.below), (2, 1, 0));
    assert_eq!(v.qualification_rate(), Some(50.0));
    assert_eq!((v.upper_v, v.lower_v), (220.0 * 1.07, 198.0));
    let thd = &day.distortion["thd_voltage_l1_n"];
    assert_eq!((thd.minutes, thd.over, thd.limit), (1, 1, Some(5.0)));
    assert_eq!(day.distortion["harmonic_voltage_l1_n_h2"].over, 1);
    assert_eq!(day.distortion["harmonic_voltage_l1_n_h5"].over, 0);
    assert_eq!(day.distortion["thd_current_l1"].limit, None);
    let u = &day.distortion["voltage_unbalance"];
    assert_eq!((u.minutes, u.over, u.limit), (1, 0, Some(2.0)));
    // Active power peak is the highest sample (mean + 1 W here), in kW.
    let p = day.active_power.clone().unwrap();
    assert_eq!((p.value, p.at_ms, p.unit.as_str()), (100.001, 10_000, "kW"));
    // Only minute 2 lies in the suspension; no apparent power → kW.
    let s = day.suspension.clone().unwrap();
    assert_eq!((s.value, s.at_ms, s.unit.as_str()), (80.001, 130_000, "kW"));
    // The stored form round-trips exactly.
    assert_eq!(DayLedger::decode(&day.encode()).unwrap(), day);
    assert!(
        DayLedger::decode(&[9, 1, 2])
            .unwrap_err()
            .contains("unknown encoding 9")
    );
}
