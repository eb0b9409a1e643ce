//! A sample report with every section filled, for tests, benches and the
//! property tests (`fixtures` feature); not compiled into the daemon.

use super::long_totals;
use crate::calendar::PeriodKind;
use crate::config::sections::Language;
use crate::report::ledger::Peak;
use crate::report::model::{
    DistortionRow, LongVoltageRow, MeterReport, Report, Verdict, VoltageRow,
};

/// A realistic report for tests and screenshots: 华北钢铁 (C001), October
/// 2026 in Asia/Shanghai; a 10 kV meter judged on GB/T 12325 (line-to-line,
/// failing: ten days of overvoltage, two harmonic orders over) and a 0.4 kV
/// meter judged per EN 50160 on 10-minute means (passing); three events
/// (one still open), a failed suspension (with a hostile note: `<script>`
/// and CR/LF), and demand within its limit.
#[doc(hidden)]
pub fn sample(language: Language) -> Report {
    use crate::calendar::Period;
    use crate::quality::rules::Kind;
    use crate::report::model::{
        DayPhase, DayRow, DemandSection, EventRow, SuspensionRow, Verdicts,
    };

    /// A small deterministic generator (64-bit LCG).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn range(&mut self, a: f64, b: f64) -> f64 {
            a + (b - a) * self.next()
        }
        fn minute(&mut self) -> i64 {
            (self.next() * 1440.0) as i64 * 60_000
        }
    }

    struct Spec {
        id: &'static str,
        profile: &'static str,
        nominal: f64,
        refs: [&'static str; 3],
        reference: f64,
        band: (f64, f64),
        band_note: &'static str,
        voltage_standard: &'static str,
        harmonic_standard: &'static str,
        long: bool,
        pt: f64,
        ct: f64,
        /// THDu limit, odd and even order limits.
        thd_limit: f64,
        odd: f64,
        even: f64,
        thd_base: [f64; 3],
        /// Days (0-based) with sustained overvoltage.
        high: std::ops::Range<usize>,
        /// A day with a dip below the band.
        low: usize,
        /// A day with a partial outage (fewer minutes).
        gap: usize,
        /// Failing orders: (phase index, order, CP95).
        failing: &'static [(usize, u16, f64)],
        thdi: bool,
        load: (f64, f64),
    }

    let tz = jiff::tz::TimeZone::get("Asia/Shanghai").expect("bundled tzdb");
    let period = Period::parse("2026-10").expect("a month");
    let from_ms = period.start_ms(&tz);
    let to_ms = period.end_ms(&tz);
    let target = 95.0;
    let dates: Vec<jiff::civil::Date> = period.days().collect();
    let day_start: Vec<i64> = dates
        .iter()
        .map(|d| Period::containing(PeriodKind::Day, *d).start_ms(&tz))
        .collect();
    let local = |d: usize, h: i64, m: i64| day_start[d] + (h * 60 + m) * 60_000;

    let specs = [
        Spec {
            id: "HB-10KV-IN1",
            profile: "siemens-pac3200",
            nominal: 10_000.0,
            refs: ["l1_l2", "l2_l3", "l3_l1"],
            reference: 10_000.0,
            band: (-7.0, 7.0),
            band_note: "10 kV: ±7 %",
            voltage_standard: "GB/T 12325-2008",
            harmonic_standard: "GB/T 14549-1993",
            long: false,
            pt: 100.0,
            ct: 60.0,
            thd_limit: 4.0,
            odd: 3.2,
            even: 1.6,
            thd_base: [3.55, 2.7, 3.1],
            high: 4..14,
            low: 19,
            gap: 16,
            failing: &[(0, 5, 3.41), (2, 5, 3.27)],
            thdi: true,
            load: (4200.0, 5900.0),
        },
        Spec {
            id: "HB-0.4KV-LV2",
            profile: "janitza-umg96rm",
            nominal: 400.0,
            refs: ["l1", "l2", "l3"],
            // IEC 60038: the phases of 230/400 V are judged against 230 V.
            reference: 230.0,
            band: (-10.0, 10.0),
            band_note: "LV: ±10 % for 95 % of each week's 10-minute means; +10 / -15 % for all",
            voltage_standard: "EN 50160:2010",
            harmonic_standard: "EN 50160:2010",
            long: true,
            pt: 1.0,
            ct: 200.0,
            thd_limit: 8.0,
            odd: 5.0,
            even: 1.0,
            thd_base: [2.1, 2.4, 1.9],
            high: 0..0,
            low: 22,
            gap: 99,
            failing: &[],
            thdi: false,
            load: (380.0, 610.0),
        },
    ];

    let mut rng = Rng(20_261_001);
    let mut meters = Vec::new();
    for s in &specs {
        let upper = s.reference * (1.0 + s.band.1 / 100.0);
        let lower = s.reference * (1.0 + s.band.0 / 100.0);
        let mut daily = Vec::new();
        for (d, date) in dates.iter().enumerate() {
            let mut phases = Vec::new();
            for (pi, ph) in s.refs.iter().enumerate() {
                let monitored = if d == s.gap { 1440 - 97 } else { 1440 };
                let high = s.high.contains(&d);
                let mean = s.reference
                    * if high {
                        1.0 + rng.range(0.058, 0.066)
                    } else {
                        1.0 + rng.range(0.012, 0.03)
                    };
                let max = if high {
                    s.reference * (1.0 + rng.range(0.078, 0.088))
                } else {
                    mean + s.reference * rng.range(0.012, 0.028)
                };
                let min = if d == s.low {
                    s.reference * (1.0 + s.band.0 / 100.0 - rng.range(0.005, 0.012))
                } else {
                    mean - s.reference * rng.range(0.015, 0.03)
                };
                let above = if high {
                    rng.range(380.0, 700.0) as u32
                } else {
                    0
                };
                let below = if d == s.low {
                    rng.range(12.0, 48.0) as u32
                } else {
                    0
                };
                let thd = s.thd_base[pi] + rng.range(-0.35, 0.55);
                phases.push(DayPhase {
                    phase: ph.to_string(),
                    monitored,
                    above,
                    below,
                    rate: Some((1.0 - f64::from(above + below) / f64::from(monitored)) * 100.0),
                    min: Some(min),
                    mean: Some(mean),
                    max: Some(max),
                    thd_cp95: Some(thd),
                    thd_max: Some(thd + rng.range(0.2, 0.7)),
                });
            }
            let ap = rng.range(s.load.0, s.load.1);
            daily.push(DayRow {
                date: *date,
                expected: 1440,
                phases,
                active_power_peak: Some(Peak {
                    value: ap,
                    at_ms: day_start[d] + rng.minute(),
                    unit: "kW".into(),
                }),
                demand_peak: Some(Peak {
                    value: ap * 0.93,
                    at_ms: day_start[d] + rng.minute(),
                    unit: "kW".into(),
                }),
                outage: 0,
            });
        }
        let expected = dates.len() as u64 * 1440;
        // Period rows from the days, the way the ledger merges them.
        let mut voltage = Vec::new();
        let mut totals = (0u32, 0u32, 0u32, 0.0f64);
        let mut tmax: Option<(f64, i64)> = None;
        let mut tmin: Option<(f64, i64)> = None;
        for (pi, ph) in s.refs.iter().enumerate() {
            let (mut mon, mut above, mut below, mut sum) = (0u32, 0u32, 0u32, 0.0);
            let mut max: Option<(f64, i64)> = None;
            let mut min: Option<(f64, i64)> = None;
            for (d, day) in daily.iter().enumerate() {
                let p = &day.phases[pi];
                mon += p.monitored;
                above += p.above;
                below += p.below;
                sum += p.mean.unwrap_or(0.0) * f64::from(p.monitored);
                let hi = (
                    p.max.unwrap_or(0.0),
                    day_start[d] + (d as i64 * 37 + 600) % 1440 * 60_000,
                );
                let lo = (
                    p.min.unwrap_or(0.0),
                    day_start[d] + (d as i64 * 53 + 240) % 1440 * 60_000,
                );
                if max.is_none_or(|m| hi.0 > m.0) {
                    max = Some(hi);
                }
                if min.is_none_or(|m| lo.0 < m.0) {
                    min = Some(lo);
                }
            }
            totals = (
                totals.0 + mon,
                totals.1 + above,
                totals.2 + below,
                totals.3 + sum,
            );
            if tmax.is_none_or(|m| max.is_some_and(|x| x.0 > m.0)) {
                tmax = max;
            }
            if tmin.is_none_or(|m| min.is_some_and(|x| x.0 < m.0)) {
                tmin = min;
            }
            let m = f64::from(mon);
            voltage.push(VoltageRow {
                phase: ph.to_string(),
                reference_v: s.reference,
                upper_v: upper,
                lower_v: lower,
                monitored: mon,
                above,
                below,
                rate: Some((1.0 - f64::from(above + below) / m) * 100.0),
                above_pct: Some(f64::from(above) / m * 100.0),
                below_pct: Some(f64::from(below) / m * 100.0),
                max,
                min,
                mean: Some(sum / m),
                completeness: Some(m / expected as f64 * 100.0),
            });
        }
        let (mon, above, below, sum) = totals;
        let m = f64::from(mon);
        voltage.push(VoltageRow {
            phase: "total".into(),
            reference_v: s.reference,
            upper_v: f64::NAN,
            lower_v: f64::NAN,
            monitored: mon,
            above,
            below,
            rate: Some((1.0 - f64::from(above + below) / m) * 100.0),
            above_pct: Some(f64::from(above) / m * 100.0),
            below_pct: Some(f64::from(below) / m * 100.0),
            max: tmax,
            min: tmin,
            mean: Some(sum / m),
            completeness: Some(m / (expected * 3) as f64 * 100.0),
        });
        let voltage_long: Vec<LongVoltageRow> = if s.long {
            s.refs
                .iter()
                .enumerate()
                .map(|(pi, ph)| {
                    let intervals = voltage[pi].monitored / 10;
                    let outside = (voltage[pi].below / 10).max(1) + pi as u32;
                    LongVoltageRow {
                        phase: ph.to_string(),
                        intervals,
                        outside,
                        within_pct: Some((1.0 - f64::from(outside) / f64::from(intervals)) * 100.0),
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        // EN 50160 weeks of October 2026: W40 (1–4, part) … W44 (26–31, part).
        let weekly: Vec<crate::report::model::WeekRow> = if s.long {
            [
                (40, 1, 4),
                (41, 5, 11),
                (42, 12, 18),
                (43, 19, 25),
                (44, 26, 31),
            ]
            .iter()
            .flat_map(|&(wk, a, z)| {
                s.refs.iter().enumerate().map(move |(pi, ph)| {
                    let n = (z - a + 1) as u32 * 144;
                    let n1 = 2 + pi as u32 + (wk % 3) as u32;
                    crate::report::model::WeekRow {
                        week: format!("2026-W{wk}"),
                        from: jiff::civil::date(2026, 10, a),
                        to: jiff::civil::date(2026, 10, z),
                        partial: z - a < 6,
                        phase: ph.to_string(),
                        intervals: n,
                        outside: n1,
                        outside_range2: 0,
                        within_pct: Some((1.0 - f64::from(n1) / f64::from(n)) * 100.0),
                        required_pct: 95.0,
                        verdict: Verdict::Pass,
                    }
                })
            })
            .collect()
        } else {
            Vec::new()
        };
        let share = if s.long {
            let (n, o) = long_totals(&voltage_long);
            (1.0 - f64::from(o) / f64::from(n)) * 100.0
        } else {
            voltage.last().and_then(|r| r.rate).unwrap_or(0.0)
        };
        let voltage_verdict = if share + 1e-9 >= target {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        let distortion = |field: String,
                          phase: &str,
                          order: u16,
                          cp95: f64,
                          limit: Option<f64>,
                          rng: &mut Rng| {
            let verdict = match limit {
                Some(l) if cp95 > l => Verdict::Fail,
                Some(_) => Verdict::Pass,
                None => Verdict::NoData,
            };
            let max = cp95 * rng.range(1.12, 1.4);
            DistortionRow {
                field,
                phase: phase.into(),
                order,
                minutes: (expected - 97) as u32,
                cp95: Some(cp95),
                max: Some((max, from_ms + rng.minute() * 20)),
                min: Some((cp95 * rng.range(0.2, 0.5), from_ms + rng.minute() * 20)),
                mean: Some(cp95 * rng.range(0.7, 0.85)),
                over: match limit {
                    Some(l) if cp95 > l => rng.range(2300.0, 4100.0) as u32,
                    Some(l) if max > l => rng.range(10.0, 300.0) as u32,
                    _ => 0,
                },
                limit,
                verdict,
                samples: 0,
                assessed: None,
            }
        };
        let phases_n = ["l1", "l2", "l3"];
        let thd: Vec<DistortionRow> = phases_n
            .iter()
            .enumerate()
            .map(|(pi, ph)| {
                let cp95 = s.thd_base[pi] + 0.5 + if pi == 0 && !s.long { 0.3 } else { 0.0 };
                distortion(
                    format!("thd_voltage_{ph}_n"),
                    ph,
                    0,
                    cp95,
                    Some(s.thd_limit),
                    &mut rng,
                )
            })
            .collect();
        let mut harmonics = Vec::new();
        for (pi, ph) in phases_n.iter().enumerate() {
            for order in 2..=25u16 {
                let limit = if order % 2 == 1 { s.odd } else { s.even };
                let cp95 = s
                    .failing
                    .iter()
                    .find(|(p, o, _)| *p == pi && *o == order)
                    .map_or_else(|| limit * rng.range(0.08, 0.55), |f| f.2);
                harmonics.push(distortion(
                    format!("harmonic_voltage_{ph}_n_h{order}"),
                    ph,
                    order,
                    (cp95 * 100.0).round() / 100.0,
                    Some(limit),
                    &mut rng,
                ));
            }
        }
        let thd_current = if s.thdi {
            phases_n
                .iter()
                .map(|ph| {
                    let c = rng.range(8.0, 14.0);
                    distortion(format!("thd_current_{ph}"), ph, 0, c, None, &mut rng)
                })
                .collect()
        } else {
            Vec::new()
        };
        let harmonic_verdict = Verdict::combine(thd.iter().chain(&harmonics).map(|r| r.verdict));
        let highest = |f: fn(&DayRow) -> Option<&Peak>| {
            daily
                .iter()
                .filter_map(f)
                .max_by(|a, b| a.value.total_cmp(&b.value))
                .cloned()
        };
        meters.push(MeterReport {
            id: s.id.into(),
            profile: s.profile.into(),
            nominal_voltage: s.nominal,
            phases: 3,
            pt_ratio: s.pt,
            ct_ratio: s.ct,
            voltage_standard: s.voltage_standard.into(),
            harmonic_standard: s.harmonic_standard.into(),
            band_pct: Some(s.band),
            band_note: s.band_note.into(),
            judged_on_10min: s.long,
            voltage_share: Some(share),
            window_ms: 60_000,
            expected,
            outage_minutes: 0,
            data_completeness: None,
            active_power_peak: highest(|d| d.active_power_peak.as_ref()),
            demand_peak: highest(|d| d.demand_peak.as_ref()),
            voltage,
            voltage_long,
            weekly,
            thd,
            harmonics,
            thd_current,
            tdd_current: Vec::new(),
            harmonic_currents: Vec::new(),
            unbalance: Some(crate::report::model::UnbalanceRow {
                minutes: (expected - 97) as u32,
                cp95: Some(if s.long { 0.62 } else { 1.34 }),
                max: Some((
                    if s.long { 1.05 } else { 2.71 },
                    day_start[9] + 11 * 3_600_000,
                )),
                mean: Some(if s.long { 0.41 } else { 0.88 }),
                limit: 2.0,
                short_limit: 4.0,
                verdict: Verdict::Pass,
            }),
            frequency: Some(crate::report::model::FrequencyRow {
                standard: s.voltage_standard.replace("12325-2008", "15945-2008"),
                nominal_hz: 50.0,
                deviation_hz: if s.long { 0.5 } else { 0.2 },
                required_pct: if s.long { 99.5 } else { 100.0 },
                monitored: (expected - 97) as u32,
                outside: 0,
                within_pct: Some(100.0),
                max: Some((50.07, day_start[3] + 9 * 3_600_000)),
                min: Some((49.93, day_start[21] + 19 * 3_600_000)),
                verdict: Verdict::Pass,
            }),
            // No sample meter computes flicker (the profiled meters do not).
            flicker: Vec::new(),
            flicker_limit: None,
            daily,
            voltage_verdict,
            harmonic_verdict,
        });
    }

    // The voltage event's peak is that day's highest L1-L2 minute.
    let high_peak = meters[0].daily[4].phases[0].max.unwrap_or(10_873.0);
    let events = vec![
        EventRow {
            meter: "HB-10KV-IN1".into(),
            kind: Kind::VoltageHigh,
            phase: "l1_l2".into(),
            order: 0,
            start_ms: local(4, 9, 12),
            end_ms: local(4, 17, 40),
            open: false,
            peak: high_peak,
            limit: 10_700.0,
            unit: "V",
            source: "GB/T 12325-2008 (10 kV: ±7 %)".into(),
        },
        EventRow {
            meter: "HB-10KV-IN1".into(),
            kind: Kind::SuspensionLoad,
            phase: String::new(),
            order: 0,
            start_ms: local(14, 10, 20),
            end_ms: local(14, 11, 5),
            open: false,
            peak: 6_312.4,
            limit: 6_000.0,
            unit: "kVA",
            source: "suspension of 2000 kVA (8000 kVA contracted × 1.00)".into(),
        },
        EventRow {
            meter: "HB-10KV-IN1".into(),
            kind: Kind::HarmonicVoltage,
            phase: "l1".into(),
            order: 5,
            start_ms: local(27, 20, 5),
            end_ms: to_ms,
            open: true,
            peak: 3.58,
            limit: 3.2,
            unit: "%",
            source: "GB/T 14549-1993 (10 kV: odd orders 3.2 %)".into(),
        },
    ];
    let suspensions = vec![SuspensionRow {
        from: "2026-10-12".into(),
        to: "2026-10-19".into(),
        from_ms: day_start[11],
        to_ms: day_start[18],
        kva: 2000.0,
        note: Some(
            "减容暂停 1# 主变 <script>alert(\"pq\")</script>\r\nBcc: attacker@evil.example".into(),
        ),
        allowed: Some(6000.0),
        peak: Some(Peak {
            value: 6_312.4,
            at_ms: local(14, 10, 47),
            unit: "kVA".into(),
        }),
        instant_peak: Some(Peak {
            value: 7_020.9,
            at_ms: local(14, 10, 39),
            unit: "kVA".into(),
        }),
        basis_ms: 900_000,
        violations: 1,
        verdict: Verdict::Fail,
    }];
    let demand_peak = meters
        .iter()
        .filter_map(|m| m.demand_peak.clone())
        .max_by(|a, b| a.value.total_cmp(&b.value));
    let demand = DemandSection {
        contracted_kw: 6000.0,
        factor: 1.05,
        limit_kw: 6300.0,
        peak: demand_peak,
        period_ms: 900_000,
        slide_ms: 60_000,
        exceedances: 0,
        verdict: Verdict::Pass,
    };
    let voltage = Verdict::combine(meters.iter().map(|m| m.voltage_verdict));
    let harmonics = Verdict::combine(meters.iter().map(|m| m.harmonic_verdict));
    let overall = Verdict::combine([voltage, harmonics, Verdict::Fail, demand.verdict]);
    Report {
        customer_id: "C001".into(),
        customer_name: "华北钢铁有限公司".into(),
        contracted_kva: Some(8000.0),
        language,
        period,
        tz: tz.clone(),
        tz_name: "Asia/Shanghai".into(),
        from_ms,
        to_ms,
        // 2026-11-01 08:00 +08:00, when the default schedule fires.
        generated_ms: to_ms + 8 * 3_600_000,
        voltage_target: target,
        min_completeness: 90.0,
        worst_phase: false,
        meters,
        events,
        suspensions,
        demand: Some(demand),
        verdicts: Verdicts {
            voltage,
            harmonics,
            unbalance: Some(Verdict::Pass),
            frequency: Some(Verdict::Pass),
            flicker: None,
            suspension: Some(Verdict::Fail),
            demand: Some(Verdict::Pass),
            overall,
        },
        unreadable_rows: 0,
    }
}
