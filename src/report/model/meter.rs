//! One meter's section of a report: its voltage rows (daily, 10-minute,
//! weekly), distortion and flicker rows with their assessments, and the
//! completeness of its data. Pure; the types are the model's.

use super::{
    Assessed, DayPhase, DayRow, DistortionRow, FrequencyRow, LongVoltageRow, MeterReport,
    UnbalanceRow, Verdict, VoltageRow, WEEKLY_P99_FACTOR, WeekRow,
};
use crate::calendar::Period;
use crate::config::Meter;
use crate::quality::limits::Span;
use crate::report::Settings;
use crate::report::ledger::{DayLedger, DistortionDay, VoltageDay};
use std::collections::BTreeMap;

/// Whether a distortion field is a current's (IEEE 519 §5.2) rather than
/// a voltage's (§5.1).
pub(super) fn is_current(field: &str) -> bool {
    field.starts_with("tdd_current_")
        || field.starts_with("thd_current_")
        || field.starts_with("current_")
}

/// EN 50160 §4.2.4 / IEEE 519-2014 §5: the weekly percentiles of the
/// 10-minute means and (IEEE 519) the daily 99th percentile of very short
/// values of one field over the period, with the verdict they give.
pub(super) fn assess(
    kind: crate::quality::limits::Assessment,
    field: &str,
    limit: Option<f64>,
    days: &BTreeMap<String, DayLedger>,
    period: &Period,
) -> (Assessed, Verdict) {
    use crate::quality::limits::Assessment;
    let current = is_current(field);
    let ieee = kind == Assessment::Ieee519;
    let mut weeks: BTreeMap<(i16, i8), crate::report::ledger::Hist> = BTreeMap::new();
    let mut a = Assessed {
        kind,
        weeks: 0,
        weekly_p95: None,
        weekly_p99: None,
        daily_p99: None,
        daily_factor: if current { 2.0 } else { 1.5 },
        daily_on_samples: false,
    };
    let worse = |slot: &mut Option<(f64, String)>, v: f64, label: String| {
        if slot.as_ref().is_none_or(|(w, _)| v > *w) {
            *slot = Some((v, label));
        }
    };
    for date in period.days() {
        let Some(day) = days.get(&crate::calendar::day_key(date)) else {
            continue;
        };
        let iw = date.iso_week_date();
        if let Some(h) = day.distortion_long.get(field) {
            weeks.entry((iw.year(), iw.week())).or_default().merge(h);
        }
        if ieee {
            let samples = day.samples.get(field).filter(|h| h.count() > 0);
            let short = samples.or_else(|| day.distortion.get(field).map(|d| &d.hist));
            if let Some(p) = short.and_then(|h| h.percentile(99)) {
                a.daily_on_samples |= samples.is_some();
                if a.daily_p99.is_none_or(|(w, _)| p > w) {
                    a.daily_p99 = Some((p, date));
                }
            }
        }
    }
    for ((year, week), h) in &weeks {
        let label = format!("{year}-W{week:02}");
        if let Some(p) = h.percentile(95) {
            a.weeks += 1;
            worse(&mut a.weekly_p95, p, label.clone());
        }
        if ieee
            && current
            && let Some(p) = h.percentile(99)
        {
            worse(&mut a.weekly_p99, p, label);
        }
    }
    let verdict = match (limit, &a.weekly_p95) {
        (_, None) => Verdict::NoData,
        // Shown, not judged: no limit applies.
        (None, Some(_)) => Verdict::NoData,
        (Some(l), Some((p95, _))) => {
            let fail = *p95 > l
                || a.weekly_p99
                    .as_ref()
                    .is_some_and(|(p, _)| *p > WEEKLY_P99_FACTOR * l)
                || a.daily_p99.is_some_and(|(p, _)| p > a.daily_factor * l);
            if fail { Verdict::Fail } else { Verdict::Pass }
        }
    };
    (a, verdict)
}

pub(super) fn pct(part: u32, whole: u32) -> Option<f64> {
    (whole > 0).then(|| f64::from(part) / f64::from(whole) * 100.0)
}

pub(super) fn voltage_row(
    phase: &str,
    reference_v: f64,
    v: &VoltageDay,
    expected: u64,
) -> VoltageRow {
    VoltageRow {
        phase: phase.to_string(),
        reference_v,
        upper_v: v.upper_v,
        lower_v: v.lower_v,
        monitored: v.monitored,
        above: v.above,
        below: v.below,
        rate: v.qualification_rate(),
        above_pct: pct(v.above, v.monitored),
        below_pct: pct(v.below, v.monitored),
        max: v.max,
        min: v.min,
        mean: v.mean(),
        completeness: (expected > 0).then(|| f64::from(v.monitored) / expected as f64 * 100.0),
    }
}

/// ("l1", 5) from "harmonic_voltage_l1_n_h5"; ("l1", 0) from "thd_voltage_l1_n".
pub(super) fn phase_order(field: &str) -> (String, u16) {
    let rest = field
        .strip_prefix("harmonic_voltage_")
        .or_else(|| field.strip_prefix("thd_voltage_"))
        .or_else(|| field.strip_prefix("thd_current_"))
        .or_else(|| field.strip_prefix("tdd_current_"))
        .or_else(|| field.strip_prefix("current_"))
        .or_else(|| field.strip_prefix("flicker_plt_"))
        .or_else(|| field.strip_prefix("flicker_pst_"))
        .unwrap_or(field);
    let (ph, order) = match rest.rsplit_once("_h") {
        Some((ph, n)) if n.parse::<u16>().is_ok() => (ph, n.parse().unwrap_or(0)),
        _ => (rest, 0),
    };
    (ph.trim_end_matches("_n").to_string(), order)
}

pub(super) fn distortion_row(
    field: &str,
    d: &DistortionDay,
    samples: Option<&crate::report::ledger::Hist>,
    assessed: Option<(Assessed, Verdict)>,
) -> DistortionRow {
    let (phase, order) = phase_order(field);
    // GB/T 14549 assesses 3-second values: the polled samples' CP95 where
    // the meter was polled that fast, else the 1-minute means'.
    let on_samples = samples.filter(|h| h.count() > 0);
    let cp95 = on_samples.map_or_else(|| d.cp95(), |h| h.cp95());
    let verdict = match (cp95, d.limit, &assessed) {
        (None, _, _) => Verdict::NoData,
        (Some(_), _, Some((_, v))) => *v,
        (Some(c), Some(l), None) if c > l => Verdict::Fail,
        (Some(_), Some(_), None) => Verdict::Pass,
        // Shown, not judged: no limit applies.
        (Some(_), None, None) => Verdict::NoData,
    };
    DistortionRow {
        field: field.to_string(),
        phase,
        order,
        minutes: d.minutes,
        cp95,
        max: d.max,
        min: d.min,
        mean: d.mean(),
        over: d.over,
        limit: d.limit,
        verdict,
        samples: on_samples.map_or(0, |h| h.count()),
        assessed: assessed.map(|(a, _)| a),
    }
}

/// One phase's Pst or Plt over the period. Plt is judged: GB/T 12326-2008
/// §4 on every value (the period's maximum 1-minute mean within the
/// limit), EN 50160 on 95 % of each week's 10-minute means; Pst is shown.
pub(super) fn flicker_row(
    field: &str,
    d: &DistortionDay,
    m: &Meter,
    days: &BTreeMap<String, DayLedger>,
    period: &Period,
    sufficient: bool,
) -> DistortionRow {
    use crate::quality::limits::Assessment;
    let weekly = m.limits.flicker.as_ref().filter(|f| f.share < 100.0);
    let assessed = weekly.map(|_| assess(Assessment::Weekly95, field, d.limit, days, period));
    let mut row = distortion_row(field, d, None, assessed);
    if weekly.is_none() {
        row.verdict = match (row.max, d.limit) {
            (None, _) | (_, None) => Verdict::NoData,
            (Some((x, _)), Some(l)) if x > l => Verdict::Fail,
            _ => Verdict::Pass,
        };
    }
    if row.verdict != Verdict::NoData && !sufficient {
        row.verdict = Verdict::Insufficient;
    }
    row
}

/// Whole windows between two instants.
pub(super) fn windows(from_ms: i64, to_ms: i64, window_ms: i64) -> u64 {
    if to_ms <= from_ms || window_ms <= 0 {
        0
    } else {
        ((to_ms - from_ms) / window_ms) as u64
    }
}

/// One meter's section of the report: its ledger days merged over the
/// period, then each part of the section from the helpers below.
pub(super) fn meter_report(
    cfg: &Settings,
    m: &Meter,
    days: Option<&BTreeMap<String, DayLedger>>,
    period: &Period,
    now_ms: i64,
    voltage_target: f64,
) -> MeterReport {
    let min_completeness = cfg.reports.min_completeness;
    let tz = &cfg.timezone;
    let window_ms = cfg.rules.short_window.as_millis() as i64;
    let from_ms = period.start_ms(tz);
    let to_ms = period.end_ms(tz).min(now_ms.max(from_ms));
    let expected = windows(from_ms, to_ms, window_ms);
    let empty = BTreeMap::new();
    let days = days.unwrap_or(&empty);
    let mut total = DayLedger::default();
    for d in days.values() {
        total.merge(d);
    }
    let (voltage, all) = voltage_rows(m, &total, expected);
    let voltage_long = voltage_long_rows(m, &total);
    let judged_on_10min = m.limits.voltage_window == Span::Long;
    let monitored_max = total
        .voltage
        .values()
        .map(|v| v.monitored)
        .max()
        .unwrap_or(0);
    let with_data = u64::from(monitored_max) + u64::from(total.outage);
    let data_completeness =
        (expected > 0).then(|| (with_data.min(expected)) as f64 / expected as f64 * 100.0);
    let sufficient = data_completeness.is_some_and(|c| c + 1e-9 >= min_completeness);
    let weekly = match m.limits.voltage.as_ref().and_then(|b| b.weekly) {
        Some(w) if judged_on_10min => {
            weekly_rows(&w, m, days, period, tz, now_ms, min_completeness)
        }
        _ => Vec::new(),
    };
    let worst = cfg.reports.phase_rule == crate::config::reports::PhaseRule::WorstPhase;
    let voltage_share = voltage_share(judged_on_10min, worst, &voltage_long, &voltage, &all);
    let voltage_verdict = match voltage_share {
        // EN 50160: every phase of every week meets its own rule.
        _ if !weekly.is_empty() => Verdict::combine(weekly.iter().map(|w| w.verdict)),
        None if expected > 0 => Verdict::Insufficient,
        None => Verdict::NoData,
        Some(_) if !sufficient => Verdict::Insufficient,
        Some(s) if s + 1e-9 >= voltage_target => Verdict::Pass,
        Some(_) => Verdict::Fail,
    };
    let dist = distortion_rows(m, &total, days, period, sufficient);
    let frequency = frequency_row(m, &total, sufficient);
    let harmonic_verdict = dist.harmonic_verdict(sufficient);
    let daily = daily_rows(m, days, period, tz);
    MeterReport {
        id: m.id.clone(),
        profile: m.profile.name.clone(),
        nominal_voltage: m.nominal_voltage,
        phases: m.phases,
        pt_ratio: m.pt_ratio,
        ct_ratio: m.ct_ratio,
        voltage_standard: m.limits.voltage_standard.clone(),
        harmonic_standard: m.limits.harmonic_standard.clone(),
        band_pct: m
            .limits
            .voltage
            .as_ref()
            .map(|b| (b.lower_pct, b.upper_pct)),
        band_note: m
            .limits
            .voltage
            .as_ref()
            .map(|b| b.note.clone())
            .unwrap_or_default(),
        judged_on_10min,
        voltage_share,
        window_ms,
        expected,
        outage_minutes: total.outage,
        data_completeness,
        voltage,
        voltage_long,
        weekly,
        thd: dist.thd,
        harmonics: dist.harmonics,
        thd_current: dist.thd_current,
        tdd_current: dist.tdd_current,
        harmonic_currents: dist.harmonic_currents,
        unbalance: dist.unbalance,
        frequency,
        flicker: dist.flicker,
        flicker_limit: m.limits.flicker.clone(),
        active_power_peak: total.active_power.clone(),
        demand_peak: total.demand.clone(),
        daily,
        voltage_verdict,
        harmonic_verdict,
    }
}

/// The period's 1-minute voltage rows, one per phase plus a "total" row
/// where there are several phases; also returns the phases merged, which
/// the overall qualification rate is computed from.
fn voltage_rows(m: &Meter, total: &DayLedger, expected: u64) -> (Vec<VoltageRow>, VoltageDay) {
    let refs: BTreeMap<&str, f64> = m
        .voltage_refs
        .iter()
        .map(|(ph, _, r)| (ph.as_str(), *r))
        .collect();
    let mut voltage = Vec::new();
    let mut all = VoltageDay::default();
    for (ph, _, reference) in &m.voltage_refs {
        let v = total.voltage.get(ph).cloned().unwrap_or_default();
        all.merge(&v);
        let mut row = voltage_row(ph, *reference, &v, expected);
        if v.monitored == 0 {
            // No minute carried the band: show the configured one.
            if let Some(b) = &m.limits.voltage {
                (row.lower_v, row.upper_v) = b.volts(*reference);
            }
        }
        voltage.push(row);
    }
    if m.voltage_refs.len() > 1 {
        let reference = refs.values().next().copied().unwrap_or(m.nominal_voltage);
        let mut row = voltage_row(
            "total",
            reference,
            &all,
            expected * m.voltage_refs.len() as u64,
        );
        row.upper_v = f64::NAN;
        row.lower_v = f64::NAN;
        voltage.push(row);
    }
    (voltage, all)
}

/// The period's 10-minute voltage rows, one per phase.
fn voltage_long_rows(m: &Meter, total: &DayLedger) -> Vec<LongVoltageRow> {
    m.voltage_refs
        .iter()
        .map(|(ph, _, _)| {
            let v = total.voltage_long.get(ph).cloned().unwrap_or_default();
            LongVoltageRow {
                phase: ph.clone(),
                intervals: v.monitored,
                outside: v.above + v.below,
                within_pct: v.qualification_rate(),
            }
        })
        .collect()
}

/// The share of voltage values inside the band that the voltage verdict
/// compares with its target: on 10-minute or 1-minute values as the preset
/// says, over all phases' values or on the worst phase (`phase_rule`).
fn voltage_share(
    judged_on_10min: bool,
    worst: bool,
    voltage_long: &[LongVoltageRow],
    voltage: &[VoltageRow],
    all: &VoltageDay,
) -> Option<f64> {
    match (judged_on_10min, worst) {
        (true, false) => {
            let (n, out) = voltage_long
                .iter()
                .fold((0, 0), |(n, o), r| (n + r.intervals, o + r.outside));
            (n > 0).then(|| (1.0 - f64::from(out) / f64::from(n)) * 100.0)
        }
        (true, true) => voltage_long
            .iter()
            .filter_map(|r| r.within_pct)
            .reduce(f64::min),
        (false, false) => all.qualification_rate(),
        (false, true) => voltage
            .iter()
            .filter(|r| r.phase != "total")
            .filter_map(|r| r.rate)
            .reduce(f64::min),
    }
}

/// A meter's distortion fields over the period, sorted into the report's
/// sections.
struct Distortion {
    thd: Vec<DistortionRow>,
    harmonics: Vec<DistortionRow>,
    thd_current: Vec<DistortionRow>,
    tdd_current: Vec<DistortionRow>,
    harmonic_currents: Vec<DistortionRow>,
    flicker: Vec<DistortionRow>,
    unbalance: Option<UnbalanceRow>,
}

impl Distortion {
    /// The harmonic verdict: voltage THD, voltage orders, current TDD and
    /// current orders together; the current THD rows take no part in it.
    fn harmonic_verdict(&self, sufficient: bool) -> Verdict {
        match Verdict::combine(
            self.thd
                .iter()
                .chain(&self.harmonics)
                .chain(&self.tdd_current)
                .chain(&self.harmonic_currents)
                .map(|r| r.verdict),
        ) {
            Verdict::NoData => Verdict::NoData,
            _ if !sufficient => Verdict::Insufficient,
            v => v,
        }
    }
}

/// Every distortion field the ledger holds, judged and filed by its name's
/// prefix (THD, harmonic orders, currents, flicker, unbalance); harmonic
/// orders sorted by phase then order.
fn distortion_rows(
    m: &Meter,
    total: &DayLedger,
    days: &BTreeMap<String, DayLedger>,
    period: &Period,
    sufficient: bool,
) -> Distortion {
    let mut out = Distortion {
        thd: Vec::new(),
        harmonics: Vec::new(),
        thd_current: Vec::new(),
        tdd_current: Vec::new(),
        harmonic_currents: Vec::new(),
        flicker: Vec::new(),
        unbalance: None,
    };
    for (field, d) in &total.distortion {
        if field == "voltage_unbalance" {
            out.unbalance = Some(unbalance_row(m, d, sufficient));
            continue;
        }
        if field.starts_with("flicker_") {
            out.flicker
                .push(flicker_row(field, d, m, days, period, sufficient));
            continue;
        }
        let kind = m.limits.harmonic_assessment;
        let assessed = kind
            .weekly()
            .then(|| assess(kind, field, d.limit, days, period));
        let row = distortion_row(field, d, total.samples.get(field), assessed);
        if field.starts_with("thd_voltage_") {
            out.thd.push(row);
        } else if field.starts_with("thd_current_") {
            out.thd_current.push(row);
        } else if field.starts_with("tdd_current_") {
            out.tdd_current.push(row);
        } else if field.starts_with("current_") {
            out.harmonic_currents.push(row);
        } else {
            out.harmonics.push(row);
        }
    }
    out.harmonics
        .sort_by(|a, b| (&a.phase, a.order).cmp(&(&b.phase, b.order)));
    out.harmonic_currents
        .sort_by(|a, b| (&a.phase, a.order).cmp(&(&b.phase, b.order)));
    out
}

/// Voltage unbalance over the period: its CP95 against the limit, and its
/// maximum against twice the limit.
fn unbalance_row(m: &Meter, d: &DistortionDay, sufficient: bool) -> UnbalanceRow {
    let limit = m.limits.unbalance;
    let cp95 = d.cp95();
    let verdict = match (cp95, d.max) {
        (None, _) => Verdict::NoData,
        _ if !sufficient => Verdict::Insufficient,
        (Some(c), _) if c > limit => Verdict::Fail,
        (_, Some((x, _))) if x > 2.0 * limit => Verdict::Fail,
        _ => Verdict::Pass,
    };
    UnbalanceRow {
        minutes: d.minutes,
        cp95,
        max: d.max,
        mean: d.mean(),
        limit,
        short_limit: 2.0 * limit,
        verdict,
    }
}

/// Frequency over the period, where the meter has a frequency limit and
/// the ledger monitored any: the share within the allowed deviation
/// against the required share.
fn frequency_row(m: &Meter, total: &DayLedger, sufficient: bool) -> Option<FrequencyRow> {
    match (&m.limits.frequency, &total.frequency) {
        (Some(f), Some(d)) if d.monitored > 0 => {
            let outside = d.above + d.below;
            let within = d.qualification_rate();
            let verdict = match within {
                _ if !sufficient => Verdict::Insufficient,
                Some(w) if w + 1e-9 >= f.share => Verdict::Pass,
                Some(_) => Verdict::Fail,
                None => Verdict::NoData,
            };
            Some(FrequencyRow {
                standard: f.standard.clone(),
                nominal_hz: m.nominal_frequency,
                deviation_hz: f.deviation_hz,
                required_pct: f.share,
                monitored: d.monitored,
                outside,
                within_pct: within,
                max: d.max,
                min: d.min,
                verdict,
            })
        }
        _ => None,
    }
}

/// One row per day of the period, with each phase's voltage and THD
/// figures and the day's peaks and outage.
fn daily_rows(
    m: &Meter,
    days: &BTreeMap<String, DayLedger>,
    period: &Period,
    tz: &jiff::tz::TimeZone,
) -> Vec<DayRow> {
    period
        .days()
        .map(|date| {
            let key = crate::calendar::day_key(date);
            let day = days.get(&key);
            let one = Period {
                kind: None,
                from: date,
                to: date.tomorrow().unwrap_or(date),
            };
            let phases = m
                .voltage_refs
                .iter()
                .map(|(ph, _, _)| day_phase(ph, day))
                .collect();
            DayRow {
                date,
                expected: one.minutes(tz) as u32,
                phases,
                active_power_peak: day.and_then(|d| d.active_power.clone()),
                demand_peak: day.and_then(|d| d.demand.clone()),
                outage: day.map_or(0, |d| d.outage),
            }
        })
        .collect()
}

/// One phase's figures for one day of the daily table.
fn day_phase(ph: &str, day: Option<&DayLedger>) -> DayPhase {
    let v = day.and_then(|d| d.voltage.get(ph));
    // A line voltage's own THD where the meter has it,
    // else the first phase's.
    let t = day.and_then(|d| {
        d.distortion
            .get(&format!("thd_voltage_{ph}"))
            .filter(|_| ph.contains('_'))
            .or_else(|| {
                d.distortion.get(&format!(
                    "thd_voltage_{}_n",
                    ph.split('_').next().unwrap_or(ph)
                ))
            })
    });
    DayPhase {
        phase: ph.to_string(),
        monitored: v.map_or(0, |v| v.monitored),
        above: v.map_or(0, |v| v.above),
        below: v.map_or(0, |v| v.below),
        rate: v.and_then(|v| v.qualification_rate()),
        min: v.and_then(|v| v.min.map(|m| m.0)),
        mean: v.and_then(|v| v.mean()),
        max: v.and_then(|v| v.max.map(|m| m.0)),
        thd_cp95: t.and_then(|t| t.cp95()),
        thd_max: t.and_then(|t| t.max.map(|m| m.0)),
    }
}

/// EN 50160 per phase per ISO week: N valid 10-minute intervals, N1
/// outside range 1, N2 outside range 2; a week passes when N1 ≤ (100 −
/// share) % of N and N2 = 0, and is insufficient when N is below
/// `min_completeness` of the week's intervals inside the period (up to now).
pub(super) fn weekly_rows(
    w: &crate::quality::limits::Weekly,
    m: &Meter,
    days: &BTreeMap<String, DayLedger>,
    period: &Period,
    tz: &jiff::tz::TimeZone,
    now_ms: i64,
    min_completeness: f64,
) -> Vec<WeekRow> {
    struct Acc {
        from: jiff::civil::Date,
        to: jiff::civil::Date,
        days: u32,
        expected: i64,
        per_phase: BTreeMap<String, (u32, u32, u32)>,
    }
    let mut weeks: BTreeMap<(i16, i8), Acc> = BTreeMap::new();
    for date in period.days() {
        let iw = date.iso_week_date();
        let one = Period {
            kind: None,
            from: date,
            to: date.tomorrow().unwrap_or(date),
        };
        let start = one.start_ms(tz);
        let end = one.end_ms(tz).min(now_ms.max(start));
        let acc = weeks.entry((iw.year(), iw.week())).or_insert(Acc {
            from: date,
            to: date,
            days: 0,
            expected: 0,
            per_phase: BTreeMap::new(),
        });
        acc.to = date;
        acc.days += 1;
        acc.expected += (end - start) / 600_000;
        let day = days.get(&crate::calendar::day_key(date));
        for (ph, _, _) in &m.voltage_refs {
            let e = acc.per_phase.entry(ph.clone()).or_insert((0, 0, 0));
            if let Some(d) = day {
                if let Some(v) = d.voltage_long.get(ph) {
                    e.0 += v.monitored;
                    e.1 += v.above + v.below;
                }
                e.2 += d.range2.get(ph).copied().unwrap_or(0);
            }
        }
    }
    let mut out = Vec::new();
    for ((year, week), acc) in weeks {
        for (phase, (n, n1, n2)) in acc.per_phase {
            let within = (n > 0).then(|| (1.0 - f64::from(n1) / f64::from(n)) * 100.0);
            let sufficient = acc.expected > 0
                && f64::from(n) + 1e-9 >= acc.expected as f64 * min_completeness / 100.0;
            let verdict = match within {
                None if acc.expected == 0 => Verdict::NoData,
                _ if !sufficient => Verdict::Insufficient,
                // N1 ≤ (100 − share) % of N, with N2 = 0.
                Some(_)
                    if n2 == 0
                        && f64::from(n1) <= f64::from(n) * (100.0 - w.share) / 100.0 + 1e-9 =>
                {
                    Verdict::Pass
                }
                Some(_) => Verdict::Fail,
                None => Verdict::Insufficient,
            };
            out.push(WeekRow {
                week: format!("{year}-W{week:02}"),
                from: acc.from,
                to: acc.to,
                partial: acc.days < 7,
                phase,
                intervals: n,
                outside: n1,
                outside_range2: n2,
                within_pct: within,
                required_pct: w.share,
                verdict,
            });
        }
    }
    out
}
