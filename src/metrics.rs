//! Process-wide counters, shared by the tasks that count and the code that
//! reports (periodic log summaries, `/metrics` and the HTTP API in
//! `http`, the systemd watchdog).
//!
//! Each failure is logged and counted by one helper in the module where it
//! happens, so logs and counters always agree.
//!
//! Per-gateway and per-meter statistics live in registries keyed by
//! address and meter id. A gateway task looks its entries up once, when it
//! starts, and holds the `Arc`s: on the polling path every update is an
//! atomic add or store, with no lock and no allocation. The registries'
//! locks are taken only to add an entry and to take a snapshot.
//!
//! Heartbeats (Unix ms, 0 = never) show that a task keeps turning its loop:
//! each gateway task's [`GatewayStats::heartbeat_ms`], [`Metrics::sink_heartbeat_ms`]
//! and [`Metrics::watch_heartbeat_ms`]. A stale heartbeat means a hung task,
//! not a failing device: a gateway whose meters never answer still beats.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

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
    /// Values dropped as implausible (`modbus::plausible`).
    pub fields_implausible: AtomicU64,
    /// Energy counters seen going backwards (stored, flagged).
    pub counters_backwards: AtomicU64,
    /// Gateway tasks that ended unexpectedly (a panic) and were restarted.
    pub gateway_restarts: AtomicU64,
    /// Wall-clock steps (either way, more than 1 s) seen (`clock`).
    pub clock_steps: AtomicU64,
    /// HTTP connections closed because they were too slow to send a
    /// request, idle too long, or the oldest waiting at the bound.
    pub http_connections_dropped: AtomicU64,
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
    /// Outbox writes (insert, delete, counter) that failed: disk full, I/O.
    pub outbox_write_errors: AtomicU64,
    /// Gauge: since when (Unix ms) outbox writes fail; 0 while they work.
    pub outbox_unwritable_since_ms: AtomicU64,
    outbox_last_error: Mutex<String>,
    pub events_opened: AtomicU64,
    pub events_closed: AtomicU64,
    /// Points generated with no database configured.
    pub points_discarded: AtomicU64,
    /// Customer reports queued for delivery (`report::scheduler`).
    pub reports_queued: AtomicU64,
    /// Reports that could not be built or queued (retried each minute).
    pub reports_failed: AtomicU64,
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
    /// Points in sends that failed and will be retried (each retry counts).
    pub points_retried: AtomicU64,
    /// When InfluxDB last acknowledged a batch (Unix ms, 0 = not yet).
    pub influx_last_ok_ms: AtomicU64,
    /// When a send last failed (Unix ms, 0 = never), and why
    /// ([`Metrics::influx_last_error`]).
    pub influx_last_error_ms: AtomicU64,
    /// Gauge: consecutive failed sends that are retried (network, 5xx,
    /// 401/403/404); 0 once a batch is acknowledged.
    pub influx_failures: AtomicU64,
    influx_last_error: Mutex<String>,
    /// Why InfluxDB refuses our writes (401/403/404: a setting is wrong),
    /// "" while it does not; cleared by an acknowledged batch.
    influx_refused: Mutex<String>,
    /// Heartbeat of the sink task: set on every turn of its loop (at least
    /// once a second), Unix ms.
    pub sink_heartbeat_ms: AtomicU64,
    /// Heartbeat of the watch task: set on its 1 s tick, Unix ms.
    pub watch_heartbeat_ms: AtomicU64,
    gateways: Mutex<BTreeMap<String, Arc<GatewayStats>>>,
    meters: Mutex<BTreeMap<String, Arc<MeterStats>>>,
}

/// Upper bounds (seconds) of the Modbus request-latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A fixed-bucket histogram of durations, updated with atomics only.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

/// A histogram's values at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, cumulative count), without `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// All observations (the `+Inf` bucket).
    pub count: u64,
    /// Sum of the observations, seconds.
    pub sum: f64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// Cumulative buckets; the count is their total, so `count` always
    /// equals the `+Inf` bucket even while observations arrive.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut acc = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len());
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            acc += self.counts[i].load(Relaxed);
            buckets.push((*le, acc));
        }
        acc += self.counts[LATENCY_BUCKETS.len()].load(Relaxed);
        HistogramSnapshot {
            buckets,
            count: acc,
            sum: self.sum_us.load(Relaxed) as f64 / 1e6,
        }
    }
}

/// One gateway address: its polls, reads, request latency and heartbeat.
#[derive(Debug, Default)]
pub struct GatewayStats {
    pub polls_ok: AtomicU64,
    pub polls_partial: AtomicU64,
    pub polls_failed: AtomicU64,
    pub reads_ok: AtomicU64,
    pub read_timeouts: AtomicU64,
    pub read_exceptions: AtomicU64,
    pub read_transport_errors: AtomicU64,
    pub connects_failed: AtomicU64,
    /// Round trip of every read request sent (answered, exception, timed
    /// out or broken), seconds.
    pub latency: Histogram,
    /// Set each time the gateway task wakes for a cycle (even when all its
    /// meters are backed off) and after each meter's poll, Unix ms.
    pub heartbeat_ms: AtomicU64,
    /// Gateway tasks running for this address: 0 once a reload removed it
    /// (its counters stay, its heartbeat no longer matters).
    pub tasks: AtomicU64,
}

/// One meter's polls (the HTTP API's `/api/meters`).
#[derive(Debug, Default)]
pub struct MeterStats {
    pub polls_ok: AtomicU64,
    pub polls_partial: AtomicU64,
    pub polls_failed: AtomicU64,
    /// Scheduled polls skipped while the meter was backed off.
    pub polls_backed_off: AtomicU64,
    /// When it was last polled (Unix ms, 0 = never).
    pub last_poll_ms: AtomicU64,
    /// Failed polls in a row now.
    pub fail_streak: AtomicU64,
}

/// The process's start (Unix ms): fixed the first time it is asked for,
/// which the daemon does as it starts.
pub fn process_start_ms() -> u64 {
    static START: OnceLock<u64> = OnceLock::new();
    *START.get_or_init(|| crate::clock::now_ms().max(0) as u64)
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

    /// The statistics of the gateway at `address`, created on first use.
    /// Called once per gateway task, not per poll.
    pub fn gateway(&self, address: &str) -> Arc<GatewayStats> {
        let mut g = self.gateways.lock().expect("gateway stats lock");
        if let Some(s) = g.get(address) {
            return s.clone();
        }
        let s = Arc::new(GatewayStats::default());
        g.insert(address.to_string(), s.clone());
        s
    }

    /// Every gateway seen, by address.
    pub fn gateways(&self) -> Vec<(String, Arc<GatewayStats>)> {
        let g = self.gateways.lock().expect("gateway stats lock");
        g.iter().map(|(a, s)| (a.clone(), s.clone())).collect()
    }

    /// (address, heartbeat Unix ms) of every gateway with a running task:
    /// what a watchdog checks.
    pub fn gateway_heartbeats(&self) -> Vec<(String, u64)> {
        let g = self.gateways.lock().expect("gateway stats lock");
        g.iter()
            .filter(|(_, s)| Self::get(&s.tasks) > 0)
            .map(|(a, s)| (a.clone(), Self::get(&s.heartbeat_ms)))
            .collect()
    }

    /// The statistics of meter `id`, created on first use (once per
    /// gateway task start).
    pub fn meter(&self, id: &str) -> Arc<MeterStats> {
        let mut m = self.meters.lock().expect("meter stats lock");
        if let Some(s) = m.get(id) {
            return s.clone();
        }
        let s = Arc::new(MeterStats::default());
        m.insert(id.to_string(), s.clone());
        s
    }

    /// Meter `id`'s statistics, if it was ever polled.
    pub fn meter_stats(&self, id: &str) -> Option<Arc<MeterStats>> {
        self.meters
            .lock()
            .expect("meter stats lock")
            .get(id)
            .cloned()
    }

    /// A batch was acknowledged by InfluxDB at `now_ms`.
    pub fn influx_ok(&self, now_ms: i64) {
        Self::set(&self.influx_last_ok_ms, now_ms.max(0) as u64);
        Self::set(&self.influx_failures, 0);
        self.influx_refused.lock().expect("refused lock").clear();
    }

    /// InfluxDB refused a write for a reason an operator must fix
    /// (`reason` names the status and the setting).
    pub fn influx_refused(&self, reason: String) {
        *self.influx_refused.lock().expect("refused lock") = reason;
    }

    /// Why InfluxDB refuses our writes; "" when it does not.
    pub fn influx_refused_reason(&self) -> String {
        self.influx_refused.lock().expect("refused lock").clone()
    }

    /// A send failed at `now_ms`; `consecutive` is the sink's count of
    /// failures in a row that it retries (0 for a rejected batch: the
    /// server answered).
    pub fn influx_error(&self, now_ms: i64, error: &dyn std::fmt::Display, consecutive: u64) {
        Self::set(&self.influx_last_error_ms, now_ms.max(0) as u64);
        Self::set(&self.influx_failures, consecutive);
        let mut e = self.influx_last_error.lock().expect("last error lock");
        e.clear();
        use std::fmt::Write as _;
        let _ = write!(e, "{error}");
        // Server messages can be long; a readiness probe needs the gist.
        if e.len() > 300 {
            let mut cut = 300;
            while !e.is_char_boundary(cut) {
                cut -= 1;
            }
            e.truncate(cut);
            e.push('…');
        }
    }

    /// An outbox write failed at `now_ms`. The streak's start is kept.
    pub fn outbox_unwritable(&self, now_ms: i64, error: &dyn std::fmt::Display) {
        let _ = self.outbox_unwritable_since_ms.compare_exchange(
            0,
            now_ms.max(1) as u64,
            Relaxed,
            Relaxed,
        );
        let mut e = self.outbox_last_error.lock().expect("outbox error lock");
        e.clear();
        use std::fmt::Write as _;
        let _ = write!(e, "{error}");
    }

    /// Outbox writes work (again).
    pub fn outbox_writable(&self) {
        Self::set(&self.outbox_unwritable_since_ms, 0);
    }

    /// Why the outbox cannot be written ("" when it can).
    pub fn outbox_last_error(&self) -> String {
        match Self::get(&self.outbox_unwritable_since_ms) {
            0 => String::new(),
            _ => self
                .outbox_last_error
                .lock()
                .expect("outbox error lock")
                .clone(),
        }
    }

    /// The last failed send's error ("" when none failed).
    pub fn influx_last_error(&self) -> String {
        self.influx_last_error
            .lock()
            .expect("last error lock")
            .clone()
    }
}

/// Log the one-line status summary (every `status_every`, and at exit).
pub fn log_status(m: &Metrics) {
    let g = Metrics::get;
    tracing::info!(
        polls_ok = g(&m.polls_ok),
        polls_partial = g(&m.polls_partial),
        polls_failed = g(&m.polls_failed),
        cycles_skipped = g(&m.cycles_skipped),
        read_timeouts = g(&m.read_timeouts),
        read_exceptions = g(&m.read_exceptions),
        fields_dropped = g(&m.fields_dropped),
        fields_implausible = g(&m.fields_implausible),
        points_written = g(&m.points_written),
        points_dropped = g(&m.points_dropped),
        points_rejected = g(&m.points_rejected),
        batches_retried = g(&m.batches_retried),
        outbox_batches = g(&m.outbox_batches),
        outbox_points = g(&m.outbox_points),
        outbox_bytes = g(&m.outbox_bytes),
        outbox_oldest_age_s = match g(&m.outbox_oldest_ms) {
            0 => 0,
            t => (crate::clock::now_ms() as u64).saturating_sub(t) / 1000,
        },
        points_not_stored = g(&m.points_discarded),
        events_opened = g(&m.events_opened),
        events_closed = g(&m.events_closed),
        "status"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_count_is_their_total() {
        let h = Histogram::default();
        for ms in [1, 5, 7, 300, 300, 20_000] {
            h.observe(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(s.buckets[0], (0.005, 2), "1 ms and 5 ms (le is inclusive)");
        assert_eq!(s.buckets[1], (0.01, 3));
        assert_eq!(s.buckets.iter().find(|b| b.0 == 0.5).unwrap().1, 5);
        assert_eq!(s.buckets.last().unwrap(), &(10.0, 5), "20 s only in +Inf");
        assert_eq!(s.count, 6);
        assert!((s.sum - 20.613).abs() < 1e-9, "{}", s.sum);
    }

    #[test]
    fn registries_hand_out_one_entry_per_key_and_heartbeats_only_of_running_gateways() {
        let m = Metrics::default();
        let a = m.gateway("10.0.0.1:502");
        Metrics::inc(&a.polls_ok);
        assert_eq!(Metrics::get(&m.gateway("10.0.0.1:502").polls_ok), 1);
        Metrics::set(&a.heartbeat_ms, 42);
        assert!(m.gateway_heartbeats().is_empty(), "no task runs");
        Metrics::inc(&a.tasks);
        assert_eq!(
            m.gateway_heartbeats(),
            vec![("10.0.0.1:502".to_string(), 42)]
        );
        assert!(Arc::ptr_eq(&m.meter("M1"), &m.meter("M1")));
        assert!(m.meter_stats("M2").is_none());
    }

    #[test]
    fn last_write_error_is_kept_short() {
        let m = Metrics::default();
        m.influx_error(5, &"x".repeat(1000), 3);
        assert_eq!(Metrics::get(&m.influx_failures), 3);
        assert!(m.influx_last_error().chars().count() <= 301);
        m.influx_ok(9);
        assert_eq!(Metrics::get(&m.influx_failures), 0);
        assert_eq!(Metrics::get(&m.influx_last_ok_ms), 9);
    }
}
