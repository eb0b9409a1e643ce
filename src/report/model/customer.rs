//! The customer's own sections of a report: suspensions and demand, judged
//! on the customer's total ledger (its meters summed, kept under
//! [`customer_key`](crate::report::ledger::customer_key)) and on the events
//! that overlapped them. Per-meter figures are `meter`'s. Pure; the types
//! are the model's.

use super::{DemandSection, EventRow, MeterReport, SuspensionRow, Verdict};
use crate::calendar::Period;
use crate::config::Customer;
use crate::config::sections::SuspensionPeriod;
use crate::quality::rules::Kind;
use crate::report::Settings;
use crate::report::ledger::{DayLedger, Peak, keep_peak};
use std::collections::BTreeMap;

/// Suspensions overlapping the period, with the peak of the customer's
/// total the ledger saw on the days they cover (days are the ledger's
/// grain; a suspension starts and ends on whole local days in practice).
pub(super) fn suspension_rows(
    cfg: &Settings,
    customer: &Customer,
    period: &Period,
    total_days: Option<&BTreeMap<String, DayLedger>>,
    events: &[EventRow],
    (from_ms, to_ms): (i64, i64),
) -> Vec<SuspensionRow> {
    customer
        .suspensions
        .iter()
        .filter(|s| s.from_ms < to_ms && s.to_ms > from_ms)
        .map(|s| suspension_row(cfg, customer, s, period, total_days, events))
        .collect()
}

/// One suspension: its basis peak and instantaneous peak inside it, the
/// load the customer may still draw, and the `suspension_load` events
/// that overlapped it.
fn suspension_row(
    cfg: &Settings,
    customer: &Customer,
    s: &SuspensionPeriod,
    period: &Period,
    total_days: Option<&BTreeMap<String, DayLedger>>,
    events: &[EventRow],
) -> SuspensionRow {
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
        .filter(|e| e.kind == Kind::SuspensionLoad && e.start_ms < s.to_ms && e.end_ms > s.from_ms)
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
}

/// The demand section, for a customer with a contracted maximum demand:
/// the period's peak of the total, failed by any `demand_exceeded` event
/// (of the total or of one meter).
pub(super) fn demand_section(
    cfg: &Settings,
    customer: &Customer,
    period: &Period,
    total_days: Option<&BTreeMap<String, DayLedger>>,
    events: &[EventRow],
    meter_reports: &[MeterReport],
) -> Option<DemandSection> {
    customer.max_demand_kw.map(|md| {
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
    })
}
