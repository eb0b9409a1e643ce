//! `[reports]` and each customer's report schedule, checked with every
//! problem's key path.

use super::mail::addresses;
use super::problems::{Problems, duration, section};
use super::raw;
use std::time::Duration;

/// When a customer's report is sent and what it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportSchedule {
    pub period: crate::calendar::PeriodKind,
    pub cron: crate::calendar::Cron,
}

/// Validated `[reports]`.
/// How a three-phase meter's voltage verdict is made from its phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PhaseRule {
    /// The phases' minutes summed: (1 − Σ outside / Σ monitored) — the
    /// "total" row, as DL/T 645 meters keep it.
    #[default]
    Pooled,
    /// The worst phase's own rate.
    WorstPhase,
}

#[derive(Debug, Clone)]
pub struct Reports {
    pub enabled: bool,
    pub schedule: ReportSchedule,
    pub voltage_target: f64,
    /// Share (%) of the period's minutes with data (monitored or outage)
    /// a verdict needs; below it the verdict is "insufficient data".
    pub min_completeness: f64,
    /// How the phases of a meter make its voltage verdict.
    pub phase_rule: PhaseRule,
    pub catch_up: Duration,
    pub keep_days: u32,
    pub bcc: Vec<String>,
}

/// A period kind and a cron expression; the expression defaults to the
/// kind's (`0 8 1 * *` for a month).
pub(super) fn report_schedule(
    period: Option<&str>,
    cron: Option<&str>,
    base: Option<&ReportSchedule>,
    key: &str,
    p: &mut Problems,
) -> ReportSchedule {
    use crate::calendar::{Cron, PeriodKind};
    let kind = match period {
        None => base.map_or(PeriodKind::Month, |b| b.period),
        Some(s) => s.parse::<PeriodKind>().unwrap_or_else(|e| {
            p.push(&format!("{key}.period"), e);
            PeriodKind::Month
        }),
    };
    let cron = match cron {
        Some(c) => c.parse::<Cron>().unwrap_or_else(|e| {
            p.push(&format!("{key}.schedule"), e);
            kind.default_cron()
                .parse()
                .expect("default schedules parse")
        }),
        // A period set here without a schedule takes the period's default.
        None => match base {
            Some(b) if period.is_none() => b.cron.clone(),
            _ => kind
                .default_cron()
                .parse()
                .expect("default schedules parse"),
        },
    };
    ReportSchedule { period: kind, cron }
}

pub(super) fn reports(p: &mut Problems) -> Reports {
    let r: raw::Reports = section("reports", p);
    let schedule = report_schedule(
        r.period.as_deref(),
        r.schedule.as_deref(),
        None,
        "reports",
        p,
    );
    let voltage_target = r.voltage_target.unwrap_or(95.0);
    if !(0.0..=100.0).contains(&voltage_target) {
        p.push(
            "reports.voltage_target",
            "must be a percentage between 0 and 100",
        );
    }
    let min_completeness = r.min_completeness.unwrap_or(90.0);
    if !(0.0..=100.0).contains(&min_completeness) {
        p.push(
            "reports.min_completeness",
            "must be a percentage between 0 and 100",
        );
    }
    let phase_rule = match r.phase_rule.as_deref() {
        None | Some("pooled") => PhaseRule::Pooled,
        Some("worst_phase") => PhaseRule::WorstPhase,
        Some(other) => {
            p.push(
                "reports.phase_rule",
                format!("\"{other}\" is not \"pooled\" or \"worst_phase\""),
            );
            PhaseRule::Pooled
        }
    };
    let catch_up = duration(
        r.catch_up.as_deref(),
        Duration::from_secs(93 * 86_400),
        "reports.catch_up",
        p,
    );
    let keep_days = r.keep_days.unwrap_or(800);
    if keep_days < 62 {
        p.push(
            "reports.keep_days",
            "must be at least 62 (two months of reports)",
        );
    }
    Reports {
        enabled: r.enabled.unwrap_or(true),
        schedule,
        voltage_target,
        min_completeness,
        phase_rule,
        catch_up,
        keep_days,
        bcc: addresses(&r.bcc, "reports.bcc", p),
    }
}

/// A customer's report recipients and schedule (None: no reports).
pub(super) fn customer_report(
    recipients: &[String],
    r: Option<&raw::CustomerReport>,
    base: &Reports,
    key: &str,
    p: &mut Problems,
) -> (Vec<String>, Option<ReportSchedule>) {
    let addrs = addresses(recipients, &format!("{key}.recipients"), p);
    let k = format!("{key}.report");
    let schedule = report_schedule(
        r.and_then(|r| r.period.as_deref()),
        r.and_then(|r| r.schedule.as_deref()),
        Some(&base.schedule),
        &k,
        p,
    );
    let enabled = r.and_then(|r| r.enabled).unwrap_or(true) && base.enabled;
    (addrs, enabled.then_some(schedule))
}
