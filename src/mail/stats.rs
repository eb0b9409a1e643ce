//! The mail room's counters: messages queued, sent, failed, given up,
//! suppressed by the rate limit, changes the notifier missed, and the
//! queue's depth, with the `/metrics` families they make.

use crate::metrics::exposition::{Family, counter, gauge, value};
use std::sync::atomic::AtomicU64;

#[derive(Debug, Default)]
pub struct MailStats {
    /// Messages stored in the mail queue (operator alerts; reports are
    /// counted in `reports_queued`).
    pub mails_queued: AtomicU64,
    /// Messages the SMTP server (or the .eml directory) accepted.
    pub mails_sent: AtomicU64,
    /// Delivery attempts that failed; the message stays queued and is retried.
    pub mails_failed: AtomicU64,
    /// Messages the server rejected for good (5xx, retried a few times):
    /// kept in the queue table with `failed_ms` set, never retried.
    pub mails_given_up: AtomicU64,
    /// Events not mailed because their meter hit the hourly rate limit
    /// (each is counted in the next message to the same recipients).
    pub mails_suppressed: AtomicU64,
    /// Event changes the notifier never saw because its channel was full.
    pub mail_changes_dropped: AtomicU64,
    /// Gauge: messages waiting in the mail queue.
    pub mails_pending: AtomicU64,
}

impl MailStats {
    /// The mail families.
    pub(crate) fn families(&self) -> Vec<Family> {
        vec![
            counter(
                "pqwatch_mails_queued_total",
                "Messages stored in the mail queue.",
                &self.mails_queued,
            ),
            counter(
                "pqwatch_mails_sent_total",
                "Messages the SMTP server (or the .eml directory) accepted.",
                &self.mails_sent,
            ),
            counter(
                "pqwatch_mails_failed_total",
                "Delivery attempts that failed (the message stays queued).",
                &self.mails_failed,
            ),
            counter(
                "pqwatch_mails_given_up_total",
                "Messages the server rejected for good.",
                &self.mails_given_up,
            ),
            counter(
                "pqwatch_mails_suppressed_total",
                "Event alerts held back by the per-meter hourly limit.",
                &self.mails_suppressed,
            ),
            counter(
                "pqwatch_mail_changes_dropped_total",
                "Event changes the notifier missed because its channel was full.",
                &self.mail_changes_dropped,
            ),
            gauge(
                "pqwatch_mails_pending",
                "Messages waiting in the mail queue.",
                value(&self.mails_pending),
            ),
        ]
    }
}
