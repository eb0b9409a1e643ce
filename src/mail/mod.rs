//! Mail, for everyone who sends it: the durable queue, the transport
//! (SMTP or `.eml` files), the escaping and shared wording of mail text,
//! the start of every MIME message, and the one sender task.
//!
//! ```text
//! notifier (operator digests) ──┐
//! report scheduler ─────────────┼─▶ mail_queue (state DB) ──▶ Sender ──▶ SMTP / .eml
//! pqwatch report --send ────────┘   stored before sending      retried with backoff
//! ```
//!
//! Producers render their own messages, store them with `queue` (each
//! through its own state-database connection) and nudge the sender's
//! [`Sender::waker`]. A message leaves the queue only after the server
//! accepted it (`sender`).
//!
//! Not here: what a message says (`notify::render`, `report::render`) or
//! when it is due (`notify::digest`, `report::scheduler`).

pub(crate) mod queue;
pub(crate) mod sender;
pub(crate) mod stats;
pub mod text;
pub(crate) mod transport;

pub use sender::Sender;

use crate::config::Config;
use crate::config::mail::Smtp;
use crate::metrics::Metrics;
use lettre::message::Mailbox;
use lettre::message::header::{HeaderName, HeaderValue};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// How soon to retry a state-database write (storing a message, recording
/// an outcome) that failed.
pub(crate) const DB_RETRY_MS: i64 = 5_000;

/// What the sender reads of the config: `[smtp]`, the state directory
/// (the queue, and the default `.eml` directory) and the shutdown grace.
#[derive(Debug, Clone)]
pub struct Settings {
    pub(crate) smtp: Smtp,
    pub(crate) state_dir: PathBuf,
    pub(crate) shutdown_grace: Duration,
}

impl Settings {
    /// The sender's slice of `cfg`.
    pub fn of(cfg: &Config) -> Settings {
        Settings {
            smtp: cfg.smtp.clone(),
            state_dir: cfg.daemon.state_dir.clone(),
            shutdown_grace: cfg.daemon.shutdown_grace,
        }
    }
}

/// A message from pqwatch: sender, subject, date, and `Auto-Submitted:
/// auto-generated` so auto-responders stay quiet (alerts and reports).
pub(crate) fn automated(
    from: &Mailbox,
    subject: &str,
    date: SystemTime,
) -> lettre::message::MessageBuilder {
    lettre::Message::builder()
        .from(from.clone())
        .subject(subject)
        .date(date)
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".into(),
        ))
}

/// Set `mails_pending` from the queue and return it.
pub(crate) fn update_gauge(queue: &queue::MailQueue, metrics: &Metrics) -> u64 {
    let n = queue.pending().unwrap_or(0);
    Metrics::set(&metrics.mail.mails_pending, n);
    n
}
