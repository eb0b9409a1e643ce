//! Process-wide counters, shared by the tasks that count and the code that
//! reports (periodic log summaries now, `/metrics` later).
//!
//! Each failure is logged and counted by one helper in the module where it
//! happens, so logs and counters always agree.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Meter polls that returned at least one value.
    pub polls_ok: AtomicU64,
    /// Meter polls that returned nothing (every read failed).
    pub polls_failed: AtomicU64,
    /// Polls with some reads failed and some succeeded.
    pub polls_partial: AtomicU64,
    /// Scheduled polls skipped because the previous cycle overran.
    pub cycles_skipped: AtomicU64,
    /// Scheduled polls skipped while a dead meter is backed off.
    pub polls_backed_off: AtomicU64,
    pub reads_ok: AtomicU64,
    pub read_timeouts: AtomicU64,
    pub read_exceptions: AtomicU64,
    pub read_transport_errors: AtomicU64,
    pub connects_failed: AtomicU64,
    /// Values dropped because they were NaN, ±inf, "not available", …
    pub fields_dropped: AtomicU64,
    pub points_written: AtomicU64,
    pub batches_written: AtomicU64,
    pub batches_failed: AtomicU64,
    /// Points lost because the in-memory buffer was full or shutdown
    /// ended before they were delivered.
    pub points_dropped: AtomicU64,
    /// Points in batches the server rejected as invalid (400/422). A 1.x
    /// server may have stored the valid lines of such a batch.
    pub points_rejected: AtomicU64,
    /// Sends that failed and will be retried.
    pub batches_retried: AtomicU64,
    /// Outbox depth (gauges): batches, points, stored bytes, and the
    /// creation time (Unix ms) of the oldest batch, 0 when empty.
    pub outbox_batches: AtomicU64,
    pub outbox_points: AtomicU64,
    pub outbox_bytes: AtomicU64,
    pub outbox_oldest_ms: AtomicU64,
    pub events_opened: AtomicU64,
    pub events_closed: AtomicU64,
    /// Points generated with no database configured.
    pub points_discarded: AtomicU64,
    /// Operator e-mail (`notify`): messages stored in the mail queue.
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

impl Metrics {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub fn set(c: &AtomicU64, v: u64) {
        c.store(v, Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
}
