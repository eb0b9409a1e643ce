//! The report scheduler: finds the reports that are due and queues each
//! exactly once.
//!
//! For every customer with recipients and a schedule, the firings of its
//! cron expression since the last check (at start-up: since `[reports]
//! catch_up` ago, but never before the state database started keeping a
//! ledger) name a period each: the last complete one before the firing's
//! local date. A period is queued once its last minute had time to reach
//! the ledger (its end + the short window + `SETTLE`): the report is
//! built from the ledger and events, rendered, and its message written to
//! the mail queue in the same transaction as its send-log row
//! (`store::SendLog`). The send log's key (customer, period) is what makes
//! it exactly once: a restart, a crash or a second firing for the same
//! period finds the row and queues nothing. A period the daemon was down
//! for is queued when it comes back (within `catch_up`).
//!
//! Delivery is the notifier's: the mail queue is retried with backoff until
//! the SMTP server takes the message, across restarts. (A crash between the
//! server's acceptance and the queue's deletion sends it once more with the
//! same Message-ID; that is the one duplicate possible.)
//!
//! Not here: the figures (`model`), the layout (`render`), SMTP (`notify`).

use super::render;
use super::store::{self, Logged, SendLog};
use crate::calendar::Period;
use crate::config::Customer;
use crate::metrics::Metrics;
use crate::report::Settings;
use crate::state::{StateDb, StateError};
use lettre::address::Envelope;
use lettre::message::Mailbox;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// Margin after a period's last window closes before its report is built
/// (the watch closes windows 10 s after their end and stores the ledger
/// within a second).
pub(crate) const SETTLE: Duration = Duration::from_secs(30);

/// Check at least this often (clock steps, missed wake-ups).
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// A report that is due: who, which period.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Due {
    pub customer: String,
    pub period: Period,
}

/// The reports due at `now_ms`, given when reporting started and how far
/// back to catch up; pure (the send log filters them afterwards).
pub(crate) fn due(cfg: &Settings, since_ms: i64, now_ms: i64) -> Vec<Due> {
    let tz = &cfg.timezone;
    let settle = (cfg.rules.short_window + SETTLE).as_millis() as i64;
    let from_ms = since_ms.max(now_ms - cfg.reports.catch_up.as_millis() as i64);
    let (Ok(after), Ok(until)) = (
        jiff::Timestamp::from_millisecond(from_ms),
        jiff::Timestamp::from_millisecond(now_ms),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for c in &cfg.customers {
        let Some(s) = &c.report else { continue };
        if c.recipients.is_empty() {
            continue;
        }
        for fire in s.cron.fires_between(tz, after, until) {
            let period = Period::last_complete_before(s.period, fire.date());
            let end = period.end_ms(tz);
            // Nothing of it was ever recorded, or its last minute is not in yet.
            if end <= since_ms || now_ms < end + settle {
                continue;
            }
            if seen.insert((c.id.clone(), period.clone())) {
                out.push(Due {
                    customer: c.id.clone(),
                    period,
                });
            }
        }
    }
    out
}

/// Build, render and queue one report. `replace`: queue it even if the
/// period was queued before (an operator's resend). Returns the send-log
/// entry, or None when it had already been queued.
pub fn queue_report(
    cfg: &Settings,
    db: &mut StateDb,
    customer: &Customer,
    period: &Period,
    now_ms: i64,
    replace: bool,
) -> Result<Option<Logged>, String> {
    if !replace
        && SendLog::get(db, &customer.id, &period.label())
            .map_err(|e| e.to_string())?
            .is_some()
    {
        return Ok(None);
    }
    let report = super::assemble(cfg, db, customer, period, now_ms).map_err(|e| e.to_string())?;
    let rendered = render::render(&report);
    let from: Mailbox = cfg
        .from
        .parse()
        .map_err(|e| format!("smtp.from \"{}\": {e}", cfg.from))?;
    let to = parse_all(&customer.recipients)?;
    if to.is_empty() {
        return Err(format!(
            "customer \"{}\" has no report recipients",
            customer.id
        ));
    }
    let bcc = parse_all(&cfg.reports.bcc)?;
    let message_id = format!(
        "<pqwatch.report.{}.{}.{}@{}>",
        msgid_part(&customer.id),
        msgid_part(&period.label()),
        now_ms,
        msgid_part(from.email.domain())
    );
    let msg = render::email(
        &from,
        &to,
        &rendered,
        &message_id,
        SystemTime::UNIX_EPOCH + Duration::from_millis(now_ms.max(0) as u64),
    )?;
    // Bcc copies travel in the envelope only.
    let mut rcpt: Vec<lettre::Address> = msg.envelope().to().to_vec();
    rcpt.extend(bcc.into_iter().map(|m| m.email));
    let envelope = Envelope::new(Some(from.email.clone()), rcpt).map_err(|e| e.to_string())?;
    let entry = Logged {
        customer: customer.id.clone(),
        period: period.label(),
        from_day: crate::calendar::day_key(period.from),
        to_day: crate::calendar::day_key(period.to),
        queued_ms: now_ms,
        mail_id: None,
        recipients: customer.recipients.clone(),
        subject: rendered.subject.clone(),
    };
    let queued = SendLog::queue(db, now_ms, &entry, &envelope, &msg.formatted(), replace)
        .map_err(|e| e.to_string())?;
    Ok(queued.then_some(entry))
}

fn parse_all(list: &[String]) -> Result<Vec<Mailbox>, String> {
    list.iter()
        .map(|a| {
            a.parse::<Mailbox>()
                .map_err(|e| format!("\"{a}\" is not an e-mail address: {e}"))
        })
        .collect()
}

/// Characters safe in a Message-ID's left or right part.
fn msgid_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub(crate) struct Scheduler {
    cfg: Arc<Settings>,
    db: StateDb,
    metrics: Arc<Metrics>,
    /// Wakes the notifier when a report was queued.
    wake_mail: Arc<Notify>,
    since_ms: i64,
    /// Periods that failed to build, with when to retry.
    retry_at: std::collections::HashMap<(String, String), i64>,
    /// (customer, period) known to be in the send log: not looked up again.
    logged: HashSet<(String, String)>,
}

impl Scheduler {
    pub(crate) fn new(
        cfg: Arc<Settings>,
        metrics: Arc<Metrics>,
        wake_mail: Arc<Notify>,
    ) -> Result<Scheduler, StateError> {
        let db = StateDb::open(&cfg.state_dir)?;
        let since_ms = store::reports_since_ms(&db)?;
        Ok(Scheduler {
            cfg,
            db,
            metrics,
            wake_mail,
            since_ms,
            retry_at: Default::default(),
            logged: HashSet::new(),
        })
    }

    /// Check now, then at every firing (and at least every minute), until
    /// `shutdown`, applying every config sent on `configs` after the first
    /// (new customers, recipients and schedules take effect at once).
    pub(crate) async fn run(
        mut self,
        shutdown: CancellationToken,
        mut configs: tokio::sync::watch::Receiver<Arc<Settings>>,
    ) {
        let with: Vec<&Customer> = self
            .cfg
            .customers
            .iter()
            .filter(|c| c.report.is_some() && !c.recipients.is_empty())
            .collect();
        let without: Vec<&str> = self
            .cfg
            .customers
            .iter()
            .filter(|c| c.report.is_some() && c.recipients.is_empty())
            .map(|c| c.id.as_str())
            .collect();
        if !without.is_empty() {
            warn!(customers = ?without, "no report recipients: these customers get no reports (set [[customers]] recipients)");
        }
        info!(customers = with.len(), "report scheduler started");
        loop {
            let now = crate::clock::now_ms();
            self.check(now);
            let sleep = self.next_check(now);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(sleep) => {}
                Ok(()) = configs.changed() => {
                    self.cfg = configs.borrow_and_update().clone();
                    self.retry_at.clear();
                    info!("report scheduler: config reloaded");
                }
            }
        }
        debug!("report scheduler stopped");
    }

    /// Queue every due report not queued before.
    pub(crate) fn check(&mut self, now_ms: i64) {
        let cfg = self.cfg.clone();
        for d in due(&cfg, self.since_ms, now_ms) {
            let key = (d.customer.clone(), d.period.label());
            if self.logged.contains(&key) || self.retry_at.get(&key).is_some_and(|t| now_ms < *t) {
                continue;
            }
            let Some(c) = cfg.customers.iter().find(|c| c.id == d.customer) else {
                continue;
            };
            match queue_report(&cfg, &mut self.db, c, &d.period, now_ms, false) {
                Ok(Some(entry)) => {
                    self.retry_at.remove(&key);
                    Metrics::inc(&self.metrics.reports.reports_queued);
                    info!(customer = %c.id, period = %entry.period, to = ?entry.recipients, subject = %entry.subject, "report queued for delivery");
                    self.wake_mail.notify_one();
                    self.logged.insert(key);
                }
                Ok(None) => {
                    self.logged.insert(key);
                }
                Err(e) => {
                    Metrics::inc(&self.metrics.reports.reports_failed);
                    error!(customer = %c.id, period = %d.period, error = %e, "cannot queue this report; retrying in a minute");
                    self.retry_at.insert(key, now_ms + 60_000);
                }
            }
        }
    }

    /// Until the next firing's report may be due, at most a minute.
    fn next_check(&self, now_ms: i64) -> Duration {
        let tz = &self.cfg.timezone;
        let Ok(now) = jiff::Timestamp::from_millisecond(now_ms) else {
            return MAX_SLEEP;
        };
        let next = self
            .cfg
            .customers
            .iter()
            .filter_map(|c| c.report.as_ref())
            .filter_map(|s| s.cron.next_after(tz, now))
            .map(|z| z.timestamp().as_millisecond())
            .min();
        match next {
            Some(t) if t > now_ms => Duration::from_millis((t - now_ms) as u64).min(MAX_SLEEP),
            _ => MAX_SLEEP,
        }
    }
}
