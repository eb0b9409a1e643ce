//! Customer voltage-quality reports.
//!
//! ```text
//! 1-minute windows (watch) ──▶ ledger (per meter and local day, state DB)
//!                                   │
//! calendar (cron, local time) ─▶ scheduler ──▶ model ──▶ render ──▶ send log + mail_queue ──▶ notifier ──▶ SMTP
//!                                  (due periods)  (pure)    (pure)     (one transaction)
//! ```
//!
//! - [`ledger`]: what a day of minutes adds up to (pure, mergeable);
//! - [`feed`]: the watch's windows into the ledger (stored within a second);
//! - [`store`]: the ledger and the send log in the state database;
//! - [`model`]: one customer and period → every figure and verdict (pure);
//! - [`render`]: HTML, plain text and CSV in zh-CN or en (pure);
//! - [`scheduler`]: the task that queues each due report exactly once.
//!
//! Cron expressions and report periods are the [`calendar`]'s.
//!
//! Delivery is the notifier's (`notify`): the same mail queue, SMTP
//! settings and retry with backoff as alerts.

pub mod feed;
pub mod ledger;
pub mod model;
pub mod render;
pub mod scheduler;
pub mod stats;
pub mod store;

use crate::calendar::{self, Period};
use crate::config::{Config, Customer};
use crate::state::{StateDb, StateError};

/// Read what a report needs from the state database and build it.
pub fn assemble(
    cfg: &Config,
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
