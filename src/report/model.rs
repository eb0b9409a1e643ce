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

mod customer;
mod meter;

use super::ledger::{DayLedger, Peak};
use crate::calendar::Period;
use crate::config::sections::Language;
use crate::config::{Customer, Meter};
use crate::quality::rules::{Event, Kind, State};
use crate::report::Settings;
use customer::{demand_section, suspension_rows};
use meter::meter_report;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
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
    pub(crate) fn combine(items: impl IntoIterator<Item = Verdict>) -> Verdict {
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
    pub(crate) phase: String,
    /// Nominal reference (V) and the band (V).
    pub reference_v: f64,
    pub(crate) upper_v: f64,
    pub(crate) lower_v: f64,
    pub(crate) monitored: u32,
    pub(crate) above: u32,
    pub(crate) below: u32,
    /// Qualification rate, % (None without monitored minutes).
    pub rate: Option<f64>,
    /// Minutes above / below as % of monitored minutes.
    pub above_pct: Option<f64>,
    pub(crate) below_pct: Option<f64>,
    /// Highest and lowest 1-minute mean, with the minute's start.
    pub max: Option<(f64, i64)>,
    pub(crate) min: Option<(f64, i64)>,
    pub(crate) mean: Option<f64>,
    /// Monitored / expected minutes, %.
    pub completeness: Option<f64>,
}

/// THDu, an individual harmonic order or THDi of one phase over the period.
#[derive(Debug, Clone, PartialEq)]
pub struct DistortionRow {
    pub(crate) field: String,
    pub(crate) phase: String,
    /// Harmonic order; 0 for THD.
    pub order: u16,
    pub(crate) minutes: u32,
    pub(crate) cp95: Option<f64>,
    pub(crate) max: Option<(f64, i64)>,
    pub(crate) min: Option<(f64, i64)>,
    pub(crate) mean: Option<f64>,
    /// Minutes whose mean was above the limit.
    pub over: u32,
    pub(crate) limit: Option<f64>,
    pub(crate) verdict: Verdict,
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
    pub(crate) kind: crate::quality::limits::Assessment,
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
    pub(crate) daily_factor: f64,
    /// The daily values are polled samples of 3 s or less; otherwise the
    /// 1-minute means, the shortest values pqwatch has.
    pub daily_on_samples: bool,
}

/// IEEE 519-2014 §5.2: currents' weekly 99th percentile of 10-minute
/// values is judged against this multiple of the limit.
pub const WEEKLY_P99_FACTOR: f64 = 1.5;

/// Voltage unbalance over the period, GB/T 15543-2008: the 95 % value
/// against the normal limit, the maximum against the short-time one.
#[derive(Debug, Clone, PartialEq)]
pub struct UnbalanceRow {
    pub(crate) minutes: u32,
    pub(crate) cp95: Option<f64>,
    pub(crate) max: Option<(f64, i64)>,
    pub(crate) mean: Option<f64>,
    /// Normal limit (2 % at the PCC; 1.3 % for one customer's share).
    pub limit: f64,
    /// Short-time limit: twice the normal one (4 %; 2.6 %).
    pub short_limit: f64,
    pub(crate) verdict: Verdict,
}

/// Frequency over the period (GB/T 15945, EN 50160): 1-minute means inside
/// nominal ± the allowed deviation, for the share of minutes required.
#[derive(Debug, Clone, PartialEq)]
pub struct FrequencyRow {
    pub(crate) standard: String,
    pub(crate) nominal_hz: f64,
    pub(crate) deviation_hz: f64,
    /// Required share of minutes inside, %.
    pub required_pct: f64,
    pub(crate) monitored: u32,
    pub(crate) outside: u32,
    pub(crate) within_pct: Option<f64>,
    pub(crate) max: Option<(f64, i64)>,
    pub(crate) min: Option<(f64, i64)>,
    pub(crate) verdict: Verdict,
}

/// One phase of one day, for the daily table, chart and CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct DayPhase {
    pub phase: String,
    pub(crate) monitored: u32,
    pub(crate) above: u32,
    pub(crate) below: u32,
    pub(crate) rate: Option<f64>,
    pub(crate) min: Option<f64>,
    pub(crate) mean: Option<f64>,
    pub(crate) max: Option<f64>,
    pub(crate) thd_cp95: Option<f64>,
    pub(crate) thd_max: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DayRow {
    pub(crate) date: jiff::civil::Date,
    /// Minutes in that local day (1440, or 1380/1500 on DST days).
    pub expected: u32,
    pub phases: Vec<DayPhase>,
    pub(crate) active_power_peak: Option<Peak>,
    pub(crate) demand_peak: Option<Peak>,
    /// Minutes of supply interruption that day.
    pub outage: u32,
}

/// EN 50160-style counters over the 10-minute means.
#[derive(Debug, Clone, PartialEq)]
pub struct LongVoltageRow {
    pub(crate) phase: String,
    pub(crate) intervals: u32,
    pub(crate) outside: u32,
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
    pub(crate) to: jiff::civil::Date,
    /// Fewer than seven days of the week lie in the period.
    pub partial: bool,
    pub(crate) phase: String,
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
    pub(crate) verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MeterReport {
    pub id: String,
    pub profile: String,
    pub(crate) nominal_voltage: f64,
    pub(crate) phases: u8,
    pub(crate) pt_ratio: f64,
    pub(crate) ct_ratio: f64,
    pub(crate) voltage_standard: String,
    pub(crate) harmonic_standard: String,
    /// The band as configured: % of nominal, and its note.
    pub band_pct: Option<(f64, f64)>,
    pub(crate) band_note: String,
    /// Whether the voltage verdict is on 10-minute means (EN 50160).
    pub judged_on_10min: bool,
    /// The share the voltage verdict compares with the target, %: pooled
    /// over the phases or the worst phase's (`[reports] phase_rule`).
    pub voltage_share: Option<f64>,
    pub(crate) window_ms: i64,
    /// Minutes the period holds (up to now while it runs).
    pub expected: u64,
    /// Minutes of supply interruption: not monitored time.
    pub outage_minutes: u32,
    /// Minutes with data (monitored or outage) / expected, %.
    pub data_completeness: Option<f64>,
    /// Per phase, then a "total" row when there is more than one phase.
    pub voltage: Vec<VoltageRow>,
    pub(crate) voltage_long: Vec<LongVoltageRow>,
    /// EN 50160 per phase and week, where the preset assesses so.
    pub weekly: Vec<WeekRow>,
    pub(crate) thd: Vec<DistortionRow>,
    /// Every individual order the meter provides, ascending by phase and order.
    pub harmonics: Vec<DistortionRow>,
    pub(crate) thd_current: Vec<DistortionRow>,
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
    pub(crate) active_power_peak: Option<Peak>,
    pub(crate) demand_peak: Option<Peak>,
    pub daily: Vec<DayRow>,
    pub(crate) voltage_verdict: Verdict,
    pub(crate) harmonic_verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub meter: String,
    pub(crate) kind: Kind,
    pub(crate) phase: String,
    pub(crate) order: u16,
    pub(crate) start_ms: i64,
    pub(crate) end_ms: i64,
    pub(crate) open: bool,
    pub(crate) peak: f64,
    pub(crate) limit: f64,
    pub(crate) unit: &'static str,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SuspensionRow {
    /// As configured (local date or date-time).
    pub from: String,
    pub(crate) to: String,
    pub(crate) from_ms: i64,
    pub(crate) to_ms: i64,
    pub(crate) kva: f64,
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
    pub(crate) verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DemandSection {
    pub(crate) contracted_kw: f64,
    /// `[rules] demand_factor` (1.05: max-demand billing charges above 105 %).
    pub factor: f64,
    /// contracted × factor.
    pub limit_kw: f64,
    /// The customer's total demand peak (sum of its billing meters).
    pub peak: Option<Peak>,
    /// Demand period and slide (ms); slide == period is block mode.
    pub period_ms: i64,
    pub(crate) slide_ms: i64,
    pub(crate) exceedances: u32,
    pub(crate) verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdicts {
    pub(crate) voltage: Verdict,
    pub(crate) harmonics: Verdict,
    /// None where no meter measures the unbalance.
    pub unbalance: Option<Verdict>,
    /// None where no meter's frequency is judged.
    pub frequency: Option<Verdict>,
    /// None where no meter's Plt is judged.
    pub flicker: Option<Verdict>,
    pub(crate) suspension: Option<Verdict>,
    pub(crate) demand: Option<Verdict>,
    pub(crate) overall: Verdict,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub customer_id: String,
    pub customer_name: String,
    pub(crate) contracted_kva: Option<f64>,
    pub(crate) language: Language,
    pub(crate) period: Period,
    pub(crate) tz: jiff::tz::TimeZone,
    /// The time zone's IANA name, for the header.
    pub tz_name: String,
    pub(crate) from_ms: i64,
    pub(crate) to_ms: i64,
    pub(crate) generated_ms: i64,
    /// The qualification-rate target the voltage verdict uses, %.
    pub voltage_target: f64,
    /// The data completeness a verdict needs, %.
    pub min_completeness: f64,
    /// Voltage verdicts on the worst phase (`[reports] phase_rule`).
    pub worst_phase: bool,
    pub meters: Vec<MeterReport>,
    pub events: Vec<EventRow>,
    pub suspensions: Vec<SuspensionRow>,
    pub(crate) demand: Option<DemandSection>,
    pub(crate) verdicts: Verdicts,
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
pub fn build(cfg: &Settings, customer: &Customer, voltage_target: f64, inputs: &Inputs) -> Report {
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

    let total_days = inputs
        .ledger
        .get(&super::ledger::customer_key(&customer.id));
    let suspensions = suspension_rows(cfg, customer, period, total_days, &events, (from_ms, to_ms));
    let demand = demand_section(cfg, customer, period, total_days, &events, &meter_reports);
    let verdicts = verdicts(&meter_reports, &suspensions, demand.as_ref());
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
        worst_phase: cfg.reports.phase_rule == crate::config::reports::PhaseRule::WorstPhase,
        meters: meter_reports,
        events,
        suspensions,
        demand,
        verdicts,
        unreadable_rows: inputs.unreadable_rows,
    }
}

/// Each section's verdict over the meters and the customer's sections,
/// and the overall one; a section no meter has stays None and takes no
/// part in the overall verdict.
fn verdicts(
    meter_reports: &[MeterReport],
    suspensions: &[SuspensionRow],
    demand: Option<&DemandSection>,
) -> Verdicts {
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
    let demand_v = demand.map(|d| d.verdict);
    let overall = Verdict::combine(
        [voltage, harmonics]
            .into_iter()
            .chain(unbalance)
            .chain(frequency)
            .chain(flicker)
            .chain(suspension)
            .chain(demand_v),
    );
    Verdicts {
        voltage,
        harmonics,
        unbalance,
        frequency,
        flicker,
        suspension,
        demand: demand_v,
        overall,
    }
}

#[cfg(test)]
mod tests;
