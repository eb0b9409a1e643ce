//! Customer voltage-quality reports.
//!
//! ```text
//! 1-minute windows (watch) ──▶ ledger (per meter and local day, state DB)
//!                                   │
//! calendar (cron, local time) ─▶ scheduler ──▶ model ──▶ render ──▶ send log + mail_queue ──▶ mail sender ──▶ SMTP
//!                                  (due periods)  (pure)    (pure)     (one transaction)
//! ```
//!
//! - [`ledger`]: what a day of minutes adds up to (pure, mergeable);
//! - `feed`: the watch's windows into the ledger (stored within a second);
//! - [`store`]: the ledger and the send log in the state database;
//! - [`model`]: one customer and period → every figure and verdict (pure);
//! - [`render`]: HTML, plain text and CSV in zh-CN or en (pure);
//! - [`scheduler`]: the task that queues each due report exactly once.
//!
//! Cron expressions and report periods are the [`calendar`]'s.
//!
//! Delivery is the mail room's (`mail`): the same mail queue, sender task,
//! SMTP settings and retry with backoff as alerts.

pub(crate) mod feed;
pub mod ledger;
pub mod model;
pub mod render;
pub mod scheduler;
pub(crate) mod stats;
pub mod store;

use crate::calendar::{self, Period};
use crate::config::reports::Reports;
use crate::config::rules::RulesCfg;
use crate::config::{Config, Customer, Meter};
use crate::state::{StateDb, StateError};
use std::path::PathBuf;
use std::sync::Arc;

/// What reports read of the config: the fleet, `[rules]` (limits and
/// windows), `[reports]`, the sender address, the time zone and the state
/// directory.
#[derive(Debug, Clone)]
pub struct Settings {
    pub(crate) customers: Vec<Customer>,
    pub(crate) meters: Vec<Arc<Meter>>,
    pub(crate) rules: RulesCfg,
    pub(crate) reports: Reports,
    /// `[smtp] from`.
    pub from: String,
    pub(crate) timezone: jiff::tz::TimeZone,
    pub(crate) state_dir: PathBuf,
}

impl Settings {
    /// The reports' slice of `cfg`.
    pub fn of(cfg: &Config) -> Settings {
        Settings {
            customers: cfg.customers.clone(),
            meters: cfg.meters.clone(),
            rules: cfg.rules.clone(),
            reports: cfg.reports.clone(),
            from: cfg.smtp.from.clone(),
            timezone: cfg.timezone.clone(),
            state_dir: cfg.daemon.state_dir.clone(),
        }
    }
}

/// Read what a report needs from the state database and build it.
pub fn assemble(
    cfg: &Settings,
    db: &StateDb,
    customer: &Customer,
    period: &Period,
    now_ms: i64,
) -> Result<model::Report, StateError> {
    let total = ledger::customer_key(&customer.id);
    let mut meters: Vec<&str> = cfg
        .meters
        .iter()
        .filter(|m| m.customer == customer.id)
        .map(|m| m.id.as_str())
        .collect();
    meters.push(&total);
    let (ledger, unreadable_rows) = store::read(
        db,
        &meters,
        &calendar::day_key(period.from),
        &calendar::day_key(period.to),
    )?;
    let tz = &cfg.timezone;
    let events = crate::events::between_for_customer(
        db,
        &customer.id,
        period.start_ms(tz),
        period.end_ms(tz),
    )?;
    Ok(model::build(
        cfg,
        customer,
        cfg.reports.voltage_target,
        &model::Inputs {
            period,
            now_ms,
            ledger: &ledger,
            events: &events,
            unreadable_rows,
        },
    ))
}
