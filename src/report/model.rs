//! The report model: one customer, one period → every figure the report
//! shows, with a verdict per section. Pure: the ledger days, the events and
//! the configuration come in, a [`Report`] goes out; rendering
//! (`report::render`) only formats it.
//!
//! How each figure is computed is documented in `docs/reports.md`; in short:
//! - qualification rate = (1 − (minutes above + minutes below) / monitored
//!   minutes) × 100 %, per phase, and overall over the phases' minutes
//!   summed (each phase-minute counts once);
//! - completeness = monitored minutes / minutes in the period (up to now
//!   for a period still running);
//! - CP95 = the 95 % value of the 1-minute means (GB/T 14549's method:
//!   drop the top 5 %, take the largest of the rest), exact to 0.01;
//! - a harmonic verdict fails when a CP95 is above its limit;
//! - the voltage verdict passes when the overall qualification rate (or,
//!   for presets judged on 10-minute means such as EN 50160, the share of
//!   10-minute means inside the band) reaches `[reports] voltage_target`;
//! - outage minutes (supply interruption: every judged voltage below
//!   `[rules] interruption_threshold`) are not monitored time;
//! - a verdict needs `[reports] min_completeness` of the period's minutes
//!   with data (monitored or outage), else it is "insufficient data";
//! - a suspension fails when the peak of its basis (the customer's total
//!   load averaged over `[rules] suspension_window`, 15-minute sliding by
//!   default) exceeded what the customer may still draw, or a
//!   `suspension_load` event overlapped it; the instantaneous maximum is
//!   shown beside it for information;
//! - demand is the customer's total (sliding 15-minute means by default),
//!   with each meter's own beside it; it fails when a `demand_exceeded`
//!   event (of the total or of one meter) overlapped the period.

use super::ledger::{DayLedger, DistortionDay, Peak, VoltageDay, keep_peak};
use crate::calendar::Period;
use crate::config::sections::Language;
use crate::config::{Config, Customer, Meter};
use crate::quality::limits::Span;
use crate::quality::rules::{Event, Kind, State};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Nothing was measured to judge by.
    NoData,
    /// Too little of the period was measured for a verdict (below
    /// `[reports] min_completeness`): never a pass.
    Insufficient,
}

impl Verdict {
    /// Fail wins; then Insufficient (a pass cannot stand beside a part
    /// that could not be judged); then Pass; NoData only when everything
    /// is NoData.
    pub fn combine(items: impl IntoIterator<Item = Verdict>) -> Verdict {
        let mut out = Verdict::NoData;
        for v in items {
            match v {
                Verdict::Fail => return Verdict::Fail,
                Verdict::Insufficient => out = Verdict::Insufficient,
                Verdict::Pass if out != Verdict::Insufficient => out = Verdict::Pass,
                Verdict::Pass | Verdict::NoData => {}
            }
        }
        out
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::NoData => "no_data",
            Verdict::Insufficient => "insufficient_data",
        }
    }
}

/// A percentage cut (never rounded up) to two decimals: 99.995 % with
/// minutes outside the band must not read "100.00 %".
pub fn truncate2(v: f64) -> f64 {
    if !v.is_finite() {
        return v;
    }
    // The epsilon keeps exact figures (95.00) from dropping a hundredth
    // through binary representation (94.999999…).
    (v * 100.0 + 1e-7).floor() / 100.0
}

/// Voltage of one phase (or "total") over the period.
#[derive(Debug, Clone, PartialEq)]
pub struct VoltageRow {
    pub phase: String,
    /// Nominal reference (V) and the band (V).
    pub reference_v: f64,
    pub upper_v: f64,
    pub lower_v: f64,
    pub monitored: u32,
    pub above: u32,
    pub below: u32,
    /// Qualification rate, % (None without monitored minutes).
    pub rate: Option<f64>,
    /// Minutes above / below as % of monitored minutes.
    pub above_pct: Option<f64>,
    pub below_pct: Option<f64>,
    /// Highest and lowest 1-minute mean, with the minute's start.
    pub max: Option<(f64, i64)>,
    pub min: Option<(f64, i64)>,
    pub mean: Option<f64>,
    /// Monitored / expected minutes, %.
    pub completeness: Option<f64>,
}

/// THDu, an individual harmonic order or THDi of one phase over the period.
#[derive(Debug, Clone, PartialEq)]
pub struct DistortionRow {
    pub field: String,
    pub phase: String,
    /// Harmonic order; 0 for THD.
    pub order: u16,
    pub minutes: u32,
    pub cp95: Option<f64>,
    pub max: Option<(f64, i64)>,
    pub min: Option<(f64, i64)>,
    pub mean: Option<f64>,
    /// Minutes whose mean was above the limit.
    pub over: u32,
    pub limit: Option<f64>,
    pub verdict: Verdict,
    /// Polled samples the CP95 is of (meters polled every 3 s or faster);
    /// 0: the CP95 is of the 1-minute means.
    pub samples: u64,
    /// The weekly and daily percentiles the verdict is on, where the
    /// preset assesses so (EN 50160, IEEE 519); `None`: the verdict is on
    /// the CP95 (GB/T 14549).
    pub assessed: Option<Assessed>,
}

/// One distortion figure under EN 50160's or IEEE 519's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessed {
    pub kind: crate::quality::limits::Assessment,
    /// Weeks (ISO, the part inside the period) with 10-minute values.
    pub weeks: u32,
    /// The worst week's 95th percentile of 10-minute means, and the week
    /// ("2026-W41"); judged against the limit.
    pub weekly_p95: Option<(f64, String)>,
    /// IEEE 519 currents: the worst week's 99th percentile of 10-minute
    /// means; judged against 1.5 × the limit.
    pub weekly_p99: Option<(f64, String)>,
    /// IEEE 519: the worst day's 99th percentile of very short values,
    /// judged against `daily_factor` × the limit (1.5 voltages, 2 currents).
    pub daily_p99: Option<(f64, jiff::civil::Date)>,
    pub daily_factor: f64,
    /// The daily values are polled samples of 3 s or less; otherwise the
    /// 1-minute means, the shortest values pqwatch has.
    pub daily_on_samples: bool,
}

/// IEEE 519-2014 §5.2: currents' weekly 99th percentile of 10-minute
/// values is judged against this multiple of the limit.
pub const WEEKLY_P99_FACTOR: f64 = 1.5;

/// Whether a distortion field is a current's (IEEE 519 §5.2) rather than
/// a voltage's (§5.1).
fn is_current(field: &str) -> bool {
    field.starts_with("tdd_current_")
        || field.starts_with("thd_current_")
        || field.starts_with("current_")
}

/// EN 50160 §4.2.4 / IEEE 519-2014 §5: the weekly percentiles of the
/// 10-minute means and (IEEE 519) the daily 99th percentile of very short
/// values of one field over the period, with the verdict they give.
fn assess(
    kind: crate::quality::limits::Assessment,
    field: &str,
    limit: Option<f64>,
    days: &BTreeMap<String, DayLedger>,
    period: &Period,
) -> (Assessed, Verdict) {
    use crate::quality::limits::Assessment;
    let current = is_current(field);
    let ieee = kind == Assessment::Ieee519;
    let mut weeks: BTreeMap<(i16, i8), super::ledger::Hist> = BTreeMap::new();
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

/// Voltage unbalance over the period, GB/T 15543-2008: the 95 % value
/// against the normal limit, the maximum against the short-time one.
#[derive(Debug, Clone, PartialEq)]
pub struct UnbalanceRow {
    pub minutes: u32,
    pub cp95: Option<f64>,
    pub max: Option<(f64, i64)>,
    pub mean: Option<f64>,
    /// Normal limit (2 % at the PCC; 1.3 % for one customer's share).
    pub limit: f64,
    /// Short-time limit: twice the normal one (4 %; 2.6 %).
    pub short_limit: f64,
    pub verdict: Verdict,
}

/// Frequency over the period (GB/T 15945, EN 50160): 1-minute means inside
/// nominal ± the allowed deviation, for the share of minutes required.
#[derive(Debug, Clone, PartialEq)]
pub struct FrequencyRow {
    pub standard: String,
    pub nominal_hz: f64,
    pub deviation_hz: f64,
    /// Required share of minutes inside, %.
    pub required_pct: f64,
    pub monitored: u32,
    pub outside: u32,
    pub within_pct: Option<f64>,
    pub max: Option<(f64, i64)>,
    pub min: Option<(f64, i64)>,
    pub verdict: Verdict,
}

/// One phase of one day, for the daily table, chart and CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct DayPhase {
    pub phase: String,
    pub monitored: u32,
    pub above: u32,
    pub below: u32,
    pub rate: Option<f64>,
    pub min: Option<f64>,
    pub mean: Option<f64>,
    pub max: Option<f64>,
    pub thd_cp95: Option<f64>,
    pub thd_max: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DayRow {
    pub date: jiff::civil::Date,
    /// Minutes in that local day (1440, or 1380/1500 on DST days).
    pub expected: u32,
    pub phases: Vec<DayPhase>,
    pub active_power_peak: Option<Peak>,
    pub demand_peak: Option<Peak>,
    /// Minutes of supply interruption that day.
    pub outage: u32,
}

/// EN 50160-style counters over the 10-minute means.
#[derive(Debug, Clone, PartialEq)]
pub struct LongVoltageRow {
    pub phase: String,
    pub intervals: u32,
    pub outside: u32,
    /// Share of 10-minute means inside the band, %.
    pub within_pct: Option<f64>,
}

/// EN 50160's assessment of one phase over one week (ISO, Monday to
/// Sunday; the part of it inside the period).
#[derive(Debug, Clone, PartialEq)]
pub struct WeekRow {
    /// "2026-W41".
    pub week: String,
    /// First and last day of the week inside the period.
    pub from: jiff::civil::Date,
    pub to: jiff::civil::Date,
    /// Fewer than seven days of the week lie in the period.
    pub partial: bool,
    pub phase: String,
    /// N: valid 10-minute intervals (interruptions excluded).
    pub intervals: u32,
    /// N1: outside range 1 (the band).
    pub outside: u32,
    /// N2: outside range 2.
    pub outside_range2: u32,
    /// Share of N inside range 1, %.
    pub within_pct: Option<f64>,
    /// The share range 1 must hold (95 LV, 99 MV).
    pub required_pct: f64,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MeterReport {
    pub id: String,
    pub profile: String,
    pub nominal_voltage: f64,
    pub phases: u8,
    pub pt_ratio: f64,
    pub ct_ratio: f64,
    pub voltage_standard: String,
    pub harmonic_standard: String,
    /// The band as configured: % of nominal, and its note.
    pub band_pct: Option<(f64, f64)>,
    pub band_note: String,
    /// Whether the voltage verdict is on 10-minute means (EN 50160).
    pub judged_on_10min: bool,
    /// The share the voltage verdict compares with the target, %: pooled
    /// over the phases or the worst phase's (`[reports] phase_rule`).
    pub voltage_share: Option<f64>,
    pub window_ms: i64,
    /// Minutes the period holds (up to now while it runs).
    pub expected: u64,
    /// Minutes of supply interruption: not monitored time.
    pub outage_minutes: u32,
    /// Minutes with data (monitored or outage) / expected, %.
    pub data_completeness: Option<f64>,
    /// Per phase, then a "total" row when there is more than one phase.
    pub voltage: Vec<VoltageRow>,
    pub voltage_long: Vec<LongVoltageRow>,
    /// EN 50160 per phase and week, where the preset assesses so.
    pub weekly: Vec<WeekRow>,
    pub thd: Vec<DistortionRow>,
    /// Every individual order the meter provides, ascending by phase and order.
    pub harmonics: Vec<DistortionRow>,
    pub thd_current: Vec<DistortionRow>,
    /// IEEE 519 TDD per phase, judged where the customer's short-circuit
    /// ratio selects a limit (`short_circuit_mva`, `max_demand_current_a`).
    pub tdd_current: Vec<DistortionRow>,
    /// Harmonic currents in A (GB/T 14549 Table 2 scaled to the PCC and
    /// shared), judged where the customer gives `short_circuit_mva`.
    pub harmonic_currents: Vec<DistortionRow>,
    /// Where the meter measures the voltage unbalance.
    pub unbalance: Option<UnbalanceRow>,
    /// Where the meter measures the frequency and the preset limits it.
    pub frequency: Option<FrequencyRow>,
    /// Flicker where the meter computes it (IEC 61000-4-15): Plt per phase
    /// judged against the preset's row (GB/T 12326: every value of the
    /// period; EN 50160: 95 % of each week's 10-minute values), Pst shown.
    pub flicker: Vec<DistortionRow>,
    /// The flicker limit's standard and note, where one applies.
    pub flicker_limit: Option<crate::quality::limits::FlickerLimit>,
    pub active_power_peak: Option<Peak>,
    pub demand_peak: Option<Peak>,
    pub daily: Vec<DayRow>,
    pub voltage_verdict: Verdict,
    pub harmonic_verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub meter: String,
    pub kind: Kind,
    pub phase: String,
    pub order: u16,
    pub start_ms: i64,
    pub end_ms: i64,
    pub open: bool,
    pub peak: f64,
    pub limit: f64,
    pub unit: &'static str,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SuspensionRow {
    /// As configured (local date or date-time).
    pub from: String,
    pub to: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub kva: f64,
    pub note: Option<String>,
    /// What the customer may still draw (kVA, or kW where the meter has no
    /// apparent power), None without a contracted capacity.
    pub allowed: Option<f64>,
    /// Highest value of the suspension basis (the customer's total load
    /// averaged over `[rules] suspension_window`) during the suspension,
    /// within the period, at the end of its averaging period.
    pub peak: Option<Peak>,
    /// Highest instantaneous total (sum of the meters' largest samples of
    /// one minute), for information: not the basis of the verdict.
    pub instant_peak: Option<Peak>,
    /// Length of the averaging behind `peak` (ms).
    pub basis_ms: i64,
    /// `suspension_load` events that overlapped it.
    pub violations: u32,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DemandSection {
    pub contracted_kw: f64,
    /// `[rules] demand_factor` (1.05: max-demand billing charges above 105 %).
    pub factor: f64,
    /// contracted × factor.
    pub limit_kw: f64,
    /// The customer's total demand peak (sum of its billing meters).
    pub peak: Option<Peak>,
    /// Demand period and slide (ms); slide == period is block mode.
    pub period_ms: i64,
    pub slide_ms: i64,
    pub exceedances: u32,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdicts {
    pub voltage: Verdict,
    pub harmonics: Verdict,
    /// None where no meter measures the unbalance.
    pub unbalance: Option<Verdict>,
    /// None where no meter's frequency is judged.
    pub frequency: Option<Verdict>,
    /// None where no meter's Plt is judged.
    pub flicker: Option<Verdict>,
    pub suspension: Option<Verdict>,
    pub demand: Option<Verdict>,
    pub overall: Verdict,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub customer_id: String,
    pub customer_name: String,
    pub contracted_kva: Option<f64>,
    pub language: Language,
    pub period: Period,
    pub tz: jiff::tz::TimeZone,
    /// The time zone's IANA name, for the header.
    pub tz_name: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub generated_ms: i64,
    /// The qualification-rate target the voltage verdict uses, %.
    pub voltage_target: f64,
    /// The data completeness a verdict needs, %.
    pub min_completeness: f64,
    /// Voltage verdicts on the worst phase (`[reports] phase_rule`).
    pub worst_phase: bool,
    pub meters: Vec<MeterReport>,
    pub events: Vec<EventRow>,
    pub suspensions: Vec<SuspensionRow>,
    pub demand: Option<DemandSection>,
    pub verdicts: Verdicts,
    /// Ledger rows that could not be read (left out; the report says so).
    pub unreadable_rows: usize,
}

/// What the model needs besides the configuration.
pub struct Inputs<'a> {
    pub period: &'a Period,
    pub now_ms: i64,
    /// meter id → local day ("YYYY-MM-DD") → ledger.
    pub ledger: &'a BTreeMap<String, BTreeMap<String, DayLedger>>,
    /// Events overlapping the period (any meter; filtered here).
    pub events: &'a [Event],
    pub unreadable_rows: usize,
}

fn pct(part: u32, whole: u32) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64 * 100.0)
}

fn voltage_row(phase: &str, reference_v: f64, v: &VoltageDay, expected: u64) -> VoltageRow {
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
        completeness: (expected > 0).then(|| v.monitored as f64 / expected as f64 * 100.0),
    }
}

/// ("l1", 5) from "harmonic_voltage_l1_n_h5"; ("l1", 0) from "thd_voltage_l1_n".
fn phase_order(field: &str) -> (String, u16) {
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

fn distortion_row(
    field: &str,
    d: &DistortionDay,
    samples: Option<&super::ledger::Hist>,
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
fn flicker_row(
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
fn windows(from_ms: i64, to_ms: i64, window_ms: i64) -> u64 {
    if to_ms <= from_ms || window_ms <= 0 {
        0
    } else {
        ((to_ms - from_ms) / window_ms) as u64
    }
}

fn meter_report(
    cfg: &Config,
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
    let voltage_long: Vec<LongVoltageRow> = m
        .voltage_refs
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
        .collect();
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
    let worst = cfg.reports.phase_rule == crate::config::sections::PhaseRule::WorstPhase;
    let voltage_share = match (judged_on_10min, worst) {
        (true, false) => {
            let (n, out) = voltage_long
                .iter()
                .fold((0, 0), |(n, o), r| (n + r.intervals, o + r.outside));
            (n > 0).then(|| (1.0 - out as f64 / n as f64) * 100.0)
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
    };
    let voltage_verdict = match voltage_share {
        // EN 50160: every phase of every week meets its own rule.
        _ if !weekly.is_empty() => Verdict::combine(weekly.iter().map(|w| w.verdict)),
        None if expected > 0 => Verdict::Insufficient,
        None => Verdict::NoData,
        Some(_) if !sufficient => Verdict::Insufficient,
        Some(s) if s + 1e-9 >= voltage_target => Verdict::Pass,
        Some(_) => Verdict::Fail,
    };
    let mut thd = Vec::new();
    let mut harmonics = Vec::new();
    let mut thd_current = Vec::new();
    let mut tdd_current = Vec::new();
    let mut harmonic_currents = Vec::new();
    let mut flicker = Vec::new();
    let mut unbalance = None;
    for (field, d) in &total.distortion {
        if field == "voltage_unbalance" {
            let limit = m.limits.unbalance;
            let cp95 = d.cp95();
            let verdict = match (cp95, d.max) {
                (None, _) => Verdict::NoData,
                _ if !sufficient => Verdict::Insufficient,
                (Some(c), _) if c > limit => Verdict::Fail,
                (_, Some((x, _))) if x > 2.0 * limit => Verdict::Fail,
                _ => Verdict::Pass,
            };
            unbalance = Some(UnbalanceRow {
                minutes: d.minutes,
                cp95,
                max: d.max,
                mean: d.mean(),
                limit,
                short_limit: 2.0 * limit,
                verdict,
            });
            continue;
        }
        if field.starts_with("flicker_") {
            flicker.push(flicker_row(field, d, m, days, period, sufficient));
            continue;
        }
        let kind = m.limits.harmonic_assessment;
        let assessed = kind
            .weekly()
            .then(|| assess(kind, field, d.limit, days, period));
        let row = distortion_row(field, d, total.samples.get(field), assessed);
        if field.starts_with("thd_voltage_") {
            thd.push(row);
        } else if field.starts_with("thd_current_") {
            thd_current.push(row);
        } else if field.starts_with("tdd_current_") {
            tdd_current.push(row);
        } else if field.starts_with("current_") {
            harmonic_currents.push(row);
        } else {
            harmonics.push(row);
        }
    }
    let frequency = match (&m.limits.frequency, &total.frequency) {
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
    };
    harmonics.sort_by(|a, b| (&a.phase, a.order).cmp(&(&b.phase, b.order)));
    harmonic_currents.sort_by(|a, b| (&a.phase, a.order).cmp(&(&b.phase, b.order)));
    let harmonic_verdict = match Verdict::combine(
        thd.iter()
            .chain(&harmonics)
            .chain(&tdd_current)
            .chain(&harmonic_currents)
            .map(|r| r.verdict),
    ) {
        Verdict::NoData => Verdict::NoData,
        _ if !sufficient => Verdict::Insufficient,
        v => v,
    };
    let daily = period
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
                .map(|(ph, _, _)| {
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
                        phase: ph.clone(),
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
                })
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
        .collect();
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
        thd,
        harmonics,
        thd_current,
        tdd_current,
        harmonic_currents,
        unbalance,
        frequency,
        flicker,
        flicker_limit: m.limits.flicker.clone(),
        active_power_peak: total.active_power.clone(),
        demand_peak: total.demand.clone(),
        daily,
        voltage_verdict,
        harmonic_verdict,
    }
}

/// EN 50160 per phase per ISO week: N valid 10-minute intervals, N1
/// outside range 1, N2 outside range 2; a week passes when N1 ≤ (100 −
/// share) % of N and N2 = 0, and is insufficient when N is below
/// `min_completeness` of the week's intervals inside the period (up to now).
fn weekly_rows(
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
            let within = (n > 0).then(|| (1.0 - n1 as f64 / n as f64) * 100.0);
            let sufficient = acc.expected > 0
                && n as f64 + 1e-9 >= acc.expected as f64 * min_completeness / 100.0;
            let verdict = match within {
                None if acc.expected == 0 => Verdict::NoData,
                _ if !sufficient => Verdict::Insufficient,
                // N1 ≤ (100 − share) % of N, with N2 = 0.
                Some(_) if n2 == 0 && n1 as f64 <= n as f64 * (100.0 - w.share) / 100.0 + 1e-9 => {
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

fn event_row(e: &Event) -> EventRow {
    EventRow {
        meter: e.meter.clone(),
        kind: e.kind,
        phase: e.phase.clone(),
        order: e.order,
        start_ms: e.start_ms,
        end_ms: e.end_ms,
        open: e.state == State::Open,
        peak: e.peak,
        limit: e.limit,
        unit: e.unit,
        source: e.source.clone(),
    }
}

/// Build the report of `customer` for `inputs.period`.
pub fn build(cfg: &Config, customer: &Customer, voltage_target: f64, inputs: &Inputs) -> Report {
    let tz = &cfg.timezone;
    let period = inputs.period;
    let from_ms = period.start_ms(tz);
    let to_ms = period.end_ms(tz);
    let meters: Vec<&Meter> = cfg
        .meters
        .iter()
        .filter(|m| m.customer == customer.id)
        .map(|m| &**m)
        .collect();
    let meter_reports: Vec<MeterReport> = meters
        .iter()
        .map(|m| {
            meter_report(
                cfg,
                m,
                inputs.ledger.get(&m.id),
                period,
                inputs.now_ms,
                voltage_target,
            )
        })
        .collect();
    let events: Vec<EventRow> = inputs
        .events
        .iter()
        .filter(|e| e.customer == customer.id && e.start_ms < to_ms && e.end_ms >= from_ms)
        .map(event_row)
        .collect();

    // Suspensions overlapping the period, with the peak of the customer's
    // total the ledger saw on the days they cover (days are the ledger's
    // grain; a suspension starts and ends on whole local days in practice).
    let total_days = inputs
        .ledger
        .get(&super::ledger::customer_key(&customer.id));
    let suspensions: Vec<SuspensionRow> = customer
        .suspensions
        .iter()
        .filter(|s| s.from_ms < to_ms && s.to_ms > from_ms)
        .map(|s| {
            let mut peak: Option<Peak> = None;
            let mut instant_peak: Option<Peak> = None;
            for (day, d) in total_days.into_iter().flatten() {
                let Ok(date) = day.parse::<jiff::civil::Date>() else {
                    continue;
                };
                if !period.contains_day(date) {
                    continue;
                }
                // The basis is stamped at the end of its averaging period.
                let inside = |p: &Peak| p.at_ms > s.from_ms && p.at_ms <= s.to_ms;
                if let Some(p) = d.suspension.as_ref().filter(|p| inside(p)) {
                    keep_peak(&mut peak, p);
                }
                if let Some(p) = d.suspension_instant.as_ref().filter(|p| inside(p)) {
                    keep_peak(&mut instant_peak, p);
                }
            }
            let allowed = customer.contracted_kva.map(|c| {
                crate::quality::rules::allowed_load(
                    c,
                    s.kva,
                    cfg.rules.suspension_factor,
                    cfg.rules.noise_floor_kw,
                )
            });
            let violations = events
                .iter()
                .filter(|e| {
                    e.kind == Kind::SuspensionLoad && e.start_ms < s.to_ms && e.end_ms > s.from_ms
                })
                .count() as u32;
            let verdict = match (&peak, allowed) {
                _ if violations > 0 => Verdict::Fail,
                (Some(p), Some(a)) if p.value > a => Verdict::Fail,
                (Some(_), _) => Verdict::Pass,
                (None, _) => Verdict::NoData,
            };
            SuspensionRow {
                from: s.from.clone(),
                to: s.to.clone(),
                from_ms: s.from_ms,
                to_ms: s.to_ms,
                kva: s.kva,
                note: s.note.clone(),
                allowed,
                peak,
                instant_peak,
                basis_ms: cfg.rules.suspension_window.as_millis() as i64,
                violations,
                verdict,
            }
        })
        .collect();

    let demand = customer.max_demand_kw.map(|md| {
        let mut peak = None;
        for (day, d) in total_days.into_iter().flatten() {
            if let (Ok(date), Some(p)) = (day.parse::<jiff::civil::Date>(), &d.demand)
                && period.contains_day(date)
            {
                keep_peak(&mut peak, p);
            }
        }
        let exceedances = events
            .iter()
            .filter(|e| e.kind == Kind::DemandExceeded)
            .count() as u32;
        let any_meter = meter_reports.iter().any(|m| m.demand_peak.is_some());
        let verdict = if exceedances > 0 {
            Verdict::Fail
        } else if peak.is_some() || any_meter {
            Verdict::Pass
        } else {
            Verdict::NoData
        };
        DemandSection {
            contracted_kw: md,
            factor: cfg.rules.demand_factor,
            limit_kw: md * cfg.rules.demand_factor,
            peak,
            period_ms: cfg.rules.demand_window.as_millis() as i64,
            slide_ms: cfg.rules.demand_slide.as_millis() as i64,
            exceedances,
            verdict,
        }
    });

    let voltage = Verdict::combine(meter_reports.iter().map(|m| m.voltage_verdict));
    let harmonics = Verdict::combine(meter_reports.iter().map(|m| m.harmonic_verdict));
    // Sections only some meters have: None where no meter has one.
    let section = |of: &dyn Fn(&MeterReport) -> Option<Verdict>| {
        let rows: Vec<Verdict> = meter_reports.iter().filter_map(of).collect();
        (!rows.is_empty()).then(|| Verdict::combine(rows))
    };
    let unbalance = section(&|m| m.unbalance.as_ref().map(|u| u.verdict));
    let frequency = section(&|m| m.frequency.as_ref().map(|f| f.verdict));
    let flicker = section(&|m| {
        let judged: Vec<Verdict> = m
            .flicker
            .iter()
            .filter(|r| r.limit.is_some())
            .map(|r| r.verdict)
            .collect();
        (!judged.is_empty()).then(|| Verdict::combine(judged))
    });
    let suspension =
        (!suspensions.is_empty()).then(|| Verdict::combine(suspensions.iter().map(|s| s.verdict)));
    let demand_v = demand.as_ref().map(|d| d.verdict);
    let overall = Verdict::combine(
        [voltage, harmonics]
            .into_iter()
            .chain(unbalance)
            .chain(frequency)
            .chain(flicker)
            .chain(suspension)
            .chain(demand_v),
    );
    Report {
        customer_id: customer.id.clone(),
        customer_name: customer.name.clone(),
        contracted_kva: customer.contracted_kva,
        language: customer.language,
        period: period.clone(),
        tz: tz.clone(),
        tz_name: tz.iana_name().unwrap_or("UTC").to_string(),
        from_ms,
        to_ms,
        generated_ms: inputs.now_ms,
        voltage_target,
        min_completeness: cfg.reports.min_completeness,
        worst_phase: cfg.reports.phase_rule == crate::config::sections::PhaseRule::WorstPhase,
        meters: meter_reports,
        events,
        suspensions,
        demand,
        verdicts: Verdicts {
            voltage,
            harmonics,
            unbalance,
            frequency,
            flicker,
            suspension,
            demand: demand_v,
            overall,
        },
        unreadable_rows: inputs.unreadable_rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn lv_day(
        cfg: &Config,
        l1: &dyn Fn(i64) -> f64,
    ) -> BTreeMap<String, BTreeMap<String, DayLedger>> {
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

    #[test]
    fn harmonic_currents_in_amperes_against_gb14549_table_2_scaled_and_shared() {
        // 0.38 kV, Sk 10 MVA (the table's reference), a 500 kVA customer of
        // a 5 MVA supply: h5 limit 62 A × (0.5/5)^(1/1.2) = 9.10 A.
        let dir = tempfile::tempdir().unwrap();
        let text = LV.replace(
            "id = \"C1\"",
            "id = \"C1\"\ncontracted_kva = 500\nshort_circuit_mva = 10\nsupply_capacity_mva = 5",
        );
        let cfg = crate::config::from_str(&text, dir.path()).unwrap();
        let m = &cfg.meters[0];
        let limit = 62.0 * 0.1f64.powf(1.0 / 1.2);
        let hc = m.limits.harmonic_current.clone().unwrap();
        assert!((hc.amps[&5] - limit).abs() < 1e-9 && (limit - 9.10).abs() < 0.01);
        let spec = LedgerSpec::from_config(m, cfg.customers.first(), cfg.rules.interruption_pct);
        let tz = &cfg.timezone;
        let start = Period::parse("2026-10-05").unwrap().start_ms(tz);
        let run = |h5_pct: f64| {
            let mut day = DayLedger::default();
            for i in 0..1440i64 {
                let mut w = window(
                    start + i * 60_000,
                    60_000,
                    &[
                        ("voltage_l1_n", 220.0),
                        ("current_l1", 100.0),
                        ("thd_current_l1", 30.0),
                        ("harmonic_current_l1_h5", h5_pct),
                    ],
                );
                crate::quality::aggregate::with_harmonic_amperes(&mut w);
                day.merge(&ledger::from_short_window(&w, &spec));
            }
            let ledger = [(
                "LV1".to_string(),
                [(day_key(local_date(start, tz)), day)].into(),
            )]
            .into();
            lv_report(&cfg, &ledger)
        };
        // By hand: I1 = 100 / √(1 + 0.3²) = 95.78 A; 10 % of it = 9.58 A.
        let i1 = 100.0 / (1.0f64 + 0.09).sqrt();
        let r = run(10.0);
        let row = r.meters[0]
            .harmonic_currents
            .iter()
            .find(|h| h.order == 5 && h.phase == "l1")
            .unwrap()
            .clone();
        assert!((row.cp95.unwrap() - crate::report::ledger::quantize(0.10 * i1)).abs() < 1e-9);
        assert!((row.limit.unwrap() - limit).abs() < 1e-9);
        assert_eq!(row.verdict, Verdict::Fail);
        assert_eq!(r.meters[0].harmonic_verdict, Verdict::Fail);
        // 9 % → 8.62 A: within.
        let r = run(9.0);
        assert_eq!(r.meters[0].harmonic_currents[0].verdict, Verdict::Pass);
        // Without the short-circuit capacity: shown in A, not judged.
        let cfg2 = crate::config::from_str(LV, dir.path()).unwrap();
        assert!(cfg2.meters[0].limits.harmonic_current.is_none());
    }

    /// A fortnight of a 400 V meter's THDu, one value per 10 minutes (and
    /// the same value for each of its minutes): `thd(k)` for interval k.
    fn fortnight(
        cfg: &Config,
        thd: &dyn Fn(i64) -> f64,
        samples: Option<&dyn Fn(i64) -> Vec<f64>>,
    ) -> (Report, Period) {
        fortnight_of(cfg, "thd_voltage_l1_n", thd, samples)
    }

    /// [`fortnight`] of any field.
    fn fortnight_of(
        cfg: &Config,
        field: &str,
        thd: &dyn Fn(i64) -> f64,
        samples: Option<&dyn Fn(i64) -> Vec<f64>>,
    ) -> (Report, Period) {
        let m = &cfg.meters[0];
        let spec = LedgerSpec::from_config(m, cfg.customers.first(), cfg.rules.interruption_pct);
        let tz = &cfg.timezone;
        let period = Period::parse("2026-10-05..2026-10-18").unwrap();
        let start = period.start_ms(tz);
        let mut ledger: BTreeMap<String, BTreeMap<String, DayLedger>> = BTreeMap::new();
        for k in 0..2016i64 {
            let t = start + k * 600_000;
            let day = ledger
                .entry("LV1".into())
                .or_default()
                .entry(day_key(local_date(t, tz)))
                .or_default();
            let fields = [("voltage_l1_n", 230.0), (field, thd(k))];
            day.merge(&ledger::from_long_window(
                &window(t, 600_000, &fields),
                &spec,
            ));
            for i in 0..10 {
                day.merge(&ledger::from_short_window(
                    &window(t + i * 60_000, 60_000, &fields),
                    &spec,
                ));
            }
            if let Some(f) = samples {
                for v in f(k) {
                    let values: Vec<(std::sync::Arc<str>, f64)> = vec![
                        (std::sync::Arc::from("voltage_l1_n"), 230.0),
                        (std::sync::Arc::from(field), v),
                    ];
                    day.merge(&ledger::from_samples(&values, &spec));
                }
            }
        }
        let r = ended_report(cfg, &period, &ledger, 95.0);
        (r, period)
    }

    fn lv400(preset: &str, extra: &str) -> String {
        LV.replace(
            "id = \"C1\"",
            &format!("id = \"C1\"\nlimits = {{ preset = \"{preset}\" }}"),
        )
        .replace(
            "nominal_voltage = 380",
            &format!("nominal_voltage = 400{extra}"),
        )
    }

    #[test]
    fn en50160_harmonics_are_judged_per_week_on_10_minute_values() {
        // EN 50160 §4.2.4: each week, 95 % of the 10-min THDu means ≤ 8 %.
        // Week 41 has 51 intervals at 9 % (more than ⌊0.05 × 1008⌋ = 50):
        // it fails, although over the pooled fortnight 51 of 2016 is well
        // under 5 % and the period's CP95 passes.
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::from_str(&lv400("en50160", ""), dir.path()).unwrap();
        let hot = |k: i64| (200..251).contains(&k);
        let thd = |k: i64| if hot(k) { 9.0 } else { 3.0 };
        let (r, _) = fortnight(&cfg, &thd, None);
        let row = &r.meters[0].thd[0];
        let a = row.assessed.as_ref().expect("weekly assessment");
        // Second method: sort each week's 1008 values, drop the top 50.
        let week = |w: i64| -> Vec<f64> { (w * 1008..(w + 1) * 1008).map(thd).collect() };
        let p41 = ledger::percentile_sorted(&week(0), 95).unwrap();
        let p42 = ledger::percentile_sorted(&week(1), 95).unwrap();
        assert_eq!((p41, p42), (9.0, 3.0));
        assert_eq!(a.weekly_p95, Some((p41, "2026-W41".to_string())));
        assert_eq!(a.weeks, 2);
        assert!(a.daily_p99.is_none(), "EN 50160 has no daily statistic");
        assert_eq!(row.verdict, Verdict::Fail);
        // The pooled CP95 (GB/T 14549's method) would have passed.
        let pooled: Vec<f64> = (0..2016).map(thd).collect();
        assert_eq!(ledger::cp95_sorted(&pooled), Some(3.0));
        assert!(row.cp95.unwrap() < 8.0);
        // 50 hot intervals: exactly the 5 % allowed, a pass.
        let thd50 = |k: i64| if (200..250).contains(&k) { 9.0 } else { 3.0 };
        let (r, _) = fortnight(&cfg, &thd50, None);
        assert_eq!(r.meters[0].thd[0].verdict, Verdict::Pass);
    }

    #[test]
    fn ieee519_judges_weekly_95th_and_daily_99th_percentiles() {
        // IEEE 519-2014 §5.1 at ≤ 1 kV: THD 8 %; the weekly 95th percentile
        // of 10-min values ≤ 8 % and the daily 99th percentile of 3-s
        // values ≤ 1.5 × 8 = 12 %.
        let dir = tempfile::tempdir().unwrap();
        let cfg =
            crate::config::from_str(&lv400("ieee519", "\ninterval = \"3s\""), dir.path()).unwrap();
        assert_eq!(
            cfg.meters[0].limits.harmonic_assessment,
            crate::quality::limits::Assessment::Ieee519
        );
        // Every 10-min mean 4 %, so the weekly figure passes; on 2026-10-07
        // (intervals 288..432) 2 of every 100 3-s samples spike to 13 %:
        // more than the 1 % the daily 99th percentile drops.
        let spiky = |k: i64| (288..432).contains(&k);
        let samples = |k: i64| -> Vec<f64> {
            (0..200)
                .map(|i| if spiky(k) && i % 50 == 0 { 13.0 } else { 4.0 })
                .collect()
        };
        let (r, _) = fortnight(&cfg, &|_| 4.0, Some(&samples));
        let row = &r.meters[0].thd[0];
        let a = row.assessed.as_ref().unwrap();
        assert_eq!(a.weekly_p95.as_ref().map(|x| x.0), Some(4.0));
        assert!(a.daily_on_samples);
        assert_eq!(a.daily_factor, 1.5);
        // Second method: the day's 144 × 200 samples, sorted, top 1 % dropped.
        let day: Vec<f64> = (288..432).flat_map(samples).collect();
        let p99 = ledger::percentile_sorted(&day, 99).unwrap();
        assert_eq!(p99, 13.0, "2 % of the day above: the 99th is a spike");
        let jiff_day = jiff::civil::date(2026, 10, 7);
        assert_eq!(a.daily_p99, Some((p99, jiff_day)));
        assert_eq!(row.verdict, Verdict::Fail, "13 % > 12 %");
        // The report shows the figures the verdict is on, and their basis.
        let mut en = r.clone();
        en.language = Language::En;
        let text = super::super::render::render(&en).text;
        for w in [
            "Weekly 95th percentile (10-min, worst week)",
            "Daily 99th percentile (3-s samples, worst day; limit × 1.5)",
            "13.00",
        ] {
            assert!(text.contains(w), "{w:?} missing in:\n{text}");
        }
        // Spikes of 11 % stay within 1.5 × the limit.
        let mild = |k: i64| -> Vec<f64> {
            (0..200)
                .map(|i| if spiky(k) && i % 50 == 0 { 11.0 } else { 4.0 })
                .collect()
        };
        let (r, _) = fortnight(&cfg, &|_| 4.0, Some(&mild));
        assert_eq!(r.meters[0].thd[0].verdict, Verdict::Pass);
        // The weekly 95th percentile alone fails it as well: 60 of week
        // 42's 1008 10-min means at 9 %.
        let (r, _) = fortnight(
            &cfg,
            &|k| if (1100..1160).contains(&k) { 9.0 } else { 4.0 },
            None,
        );
        let a = r.meters[0].thd[0].assessed.clone().unwrap();
        assert_eq!(a.weekly_p95, Some((9.0, "2026-W42".to_string())));
        assert!(
            !a.daily_on_samples,
            "no samples: the 1-min means are the shortest values"
        );
        assert_eq!(r.meters[0].thd[0].verdict, Verdict::Fail);
        // GB/T 14549's preset keeps its CP95 and no weekly figures.
        let gb = crate::config::from_str(&lv400("gb", ""), dir.path()).unwrap();
        let (r, _) = fortnight(&gb, &|_| 4.0, None);
        assert!(r.meters[0].thd[0].assessed.is_none());
    }

    #[test]
    fn flicker_plt_is_judged_on_every_value_by_gb_and_weekly_by_en50160() {
        let dir = tempfile::tempdir().unwrap();
        // GB/T 12326-2008 at 400 V: every Plt of the period ≤ 1.0. One
        // 10-minute stretch at 1.05 fails it.
        let gb = crate::config::from_str(&lv400("gb", ""), dir.path()).unwrap();
        assert_eq!(gb.meters[0].limits.flicker.as_ref().unwrap().plt, 1.0);
        let plt = |k: i64| if k == 700 { 1.05 } else { 0.6 };
        let (r, _) = fortnight_of(&gb, "flicker_plt_l1_n", &plt, None);
        let row = r.meters[0]
            .flicker
            .iter()
            .find(|f| f.field == "flicker_plt_l1_n")
            .unwrap();
        assert_eq!((row.phase.as_str(), row.limit), ("l1", Some(1.0)));
        // Second method: the largest value written.
        let max = (0..2016).map(plt).fold(f64::MIN, f64::max);
        assert_eq!(row.max.map(|x| x.0), Some(max));
        assert_eq!(row.verdict, Verdict::Fail);
        assert_eq!(r.verdicts.flicker, Some(Verdict::Fail));
        assert_eq!(r.verdicts.overall, Verdict::Fail);
        // The report says so, in the customer's language and in English.
        let mut r = r;
        for (lang, words) in [
            (
                Language::ZhCn,
                ["闪变", "长时间闪变 Plt 最大 1.05", "GB/T 12326-2008"],
            ),
            (Language::En, ["Flicker", "Plt max 1.05", "GB/T 12326-2008"]),
        ] {
            r.language = lang;
            let text = super::super::render::render(&r).text;
            for w in words {
                assert!(text.contains(w), "{w:?} missing in:\n{text}");
            }
        }
        // EN 50160: 95 % of each week's 10-minute Plt ≤ 1; one value at
        // 1.05 is within the 5 % (50 of 1008), 51 in week 41 are not.
        let en = crate::config::from_str(&lv400("en50160", ""), dir.path()).unwrap();
        let (r, _) = fortnight_of(&en, "flicker_plt_l1_n", &plt, None);
        assert_eq!(r.meters[0].flicker[0].verdict, Verdict::Pass);
        let many = |k: i64| if (100..151).contains(&k) { 1.2 } else { 0.6 };
        let (r, _) = fortnight_of(&en, "flicker_plt_l1_n", &many, None);
        let a = r.meters[0].flicker[0].assessed.clone().unwrap();
        let week41: Vec<f64> = (0..1008).map(many).collect();
        let p95 = ledger::percentile_sorted(&week41, 95).unwrap();
        assert_eq!(a.weekly_p95, Some((p95, "2026-W41".to_string())));
        assert_eq!(p95, 1.2);
        assert_eq!(r.meters[0].flicker[0].verdict, Verdict::Fail);
        // Pst is shown, never judged; no flicker data, no flicker verdict.
        let (r, _) = fortnight_of(&gb, "flicker_pst_l1_n", &|_| 3.0, None);
        assert_eq!(r.meters[0].flicker[0].limit, None);
        assert_eq!(r.meters[0].flicker[0].verdict, Verdict::NoData);
        assert_eq!(r.verdicts.flicker, None);
        let (r, _) = fortnight(&gb, &|_| 2.0, None);
        assert!(r.meters[0].flicker.is_empty() && r.verdicts.flicker.is_none());
    }

    #[test]
    fn an_encoding_2_ledger_row_is_still_read() {
        // Encoding 2 is encoding 3 without `distortion_long`: a row written
        // by the previous release decodes with that map empty.
        let mut d = DayLedger {
            outage: 3,
            ..Default::default()
        };
        d.samples
            .entry("thd_voltage_l1_n".into())
            .or_default()
            .add(2.5);
        let v3 = d.encode();
        assert_eq!(v3[0], 3);
        assert_eq!(*v3.last().unwrap(), 0, "an empty map is its length, 0");
        let mut v2 = v3[..v3.len() - 1].to_vec();
        v2[0] = 2;
        assert_eq!(DayLedger::decode(&v2).unwrap(), d);
    }
}
