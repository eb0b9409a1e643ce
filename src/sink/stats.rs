//! The sink's counters and gauges: points and batches written, retried,
//! dropped; the outbox's depth; InfluxDB's last success and failure; the
//! sink task's heartbeat. With the `/metrics` families they make.

use crate::metrics::exposition::{Family, counter, gauge, secs, value};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct SinkStats {
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
    /// Points generated with no database configured.
    pub points_discarded: AtomicU64,
    /// Points in sends that failed and will be retried (each retry counts).
    pub points_retried: AtomicU64,
    /// When InfluxDB last acknowledged a batch (Unix ms, 0 = not yet).
    pub influx_last_ok_ms: AtomicU64,
    /// When a send last failed (Unix ms, 0 = never), and why
    /// ([`SinkStats::influx_last_error`]).
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
}

impl SinkStats {
    /// A batch was acknowledged by InfluxDB at `now_ms`.
    pub(crate) fn influx_ok(&self, now_ms: i64) {
        self.influx_last_ok_ms.store(now_ms.max(0) as u64, Relaxed);
        self.influx_failures.store(0, Relaxed);
        self.influx_refused.lock().expect("refused lock").clear();
    }

    /// InfluxDB refused a write for a reason an operator must fix
    /// (`reason` names the status and the setting).
    pub(crate) fn influx_refused(&self, reason: String) {
        *self.influx_refused.lock().expect("refused lock") = reason;
    }

    /// Why InfluxDB refuses our writes; "" when it does not.
    pub(crate) fn influx_refused_reason(&self) -> String {
        self.influx_refused.lock().expect("refused lock").clone()
    }

    /// A send failed at `now_ms`; `consecutive` is the sink's count of
    /// failures in a row that it retries (0 for a rejected batch: the
    /// server answered).
    pub(crate) fn influx_error(
        &self,
        now_ms: i64,
        error: &dyn std::fmt::Display,
        consecutive: u64,
    ) {
        self.influx_last_error_ms
            .store(now_ms.max(0) as u64, Relaxed);
        self.influx_failures.store(consecutive, Relaxed);
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
    pub(crate) fn outbox_unwritable(&self, now_ms: i64, error: &dyn std::fmt::Display) {
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
    pub(crate) fn outbox_writable(&self) {
        self.outbox_unwritable_since_ms.store(0, Relaxed);
    }

    /// Why the outbox cannot be written ("" when it can).
    pub(crate) fn outbox_last_error(&self) -> String {
        match self.outbox_unwritable_since_ms.load(Relaxed) {
            0 => String::new(),
            _ => self
                .outbox_last_error
                .lock()
                .expect("outbox error lock")
                .clone(),
        }
    }

    /// The last failed send's error ("" when none failed).
    pub(crate) fn influx_last_error(&self) -> String {
        self.influx_last_error
            .lock()
            .expect("last error lock")
            .clone()
    }

    /// The sink's families at `now_ms`; the outbox bound when InfluxDB is
    /// configured.
    pub(crate) fn families(&self, now_ms: i64, max_outbox_bytes: Option<u64>) -> Vec<Family> {
        let oldest = self.outbox_oldest_ms.load(Relaxed);
        let age = if oldest == 0 {
            0.0
        } else {
            (now_ms.max(0) as u64).saturating_sub(oldest) as f64 / 1000.0
        };
        let mut f = vec![
            gauge(
                "pqwatch_outbox_batches",
                "Batches waiting for InfluxDB (outbox and memory).",
                value(&self.outbox_batches),
            ),
            gauge(
                "pqwatch_outbox_points",
                "Points waiting for InfluxDB.",
                value(&self.outbox_points),
            ),
            gauge(
                "pqwatch_outbox_bytes",
                "Compressed bytes waiting for InfluxDB.",
                value(&self.outbox_bytes),
            ),
            gauge(
                "pqwatch_outbox_oldest_age_seconds",
                "Age of the oldest waiting batch; 0 when none waits.",
                age,
            ),
            gauge(
                "pqwatch_outbox_write_failing",
                "1 while writes to the outbox fail (disk full, I/O errors): batches are held in memory.",
                f64::from(u8::from(self.outbox_unwritable_since_ms.load(Relaxed) > 0)),
            ),
            counter(
                "pqwatch_outbox_write_errors_total",
                "Writes to the outbox (store, delete, counters) that failed.",
                &self.outbox_write_errors,
            ),
        ];
        if let Some(max) = max_outbox_bytes {
            f.push(gauge(
            "pqwatch_outbox_max_bytes",
            "The outbox bound (influxdb.max_outbox_bytes); beyond it the oldest batches are dropped.",
            max as f64,
        ));
        }
        f.extend([
        counter(
            "pqwatch_points_written_total",
            "Points InfluxDB acknowledged.",
            &self.points_written,
        ),
        counter(
            "pqwatch_points_retried_total",
            "Points in sends that failed and are retried (each retry counts).",
            &self.points_retried,
        ),
        counter(
            "pqwatch_points_dropped_total",
            "Points lost: the outbox or the memory bound was full, or shutdown ended with no outbox.",
            &self.points_dropped,
        ),
        counter(
            "pqwatch_points_rejected_total",
            "Points in batches InfluxDB rejected as invalid (moved to the dead-letter table).",
            &self.points_rejected,
        ),
        counter(
            "pqwatch_points_discarded_total",
            "Points not stored because no [influxdb] is configured.",
            &self.points_discarded,
        ),
        counter(
            "pqwatch_batches_written_total",
            "Batches InfluxDB acknowledged.",
            &self.batches_written,
        ),
        counter(
            "pqwatch_batches_failed_total",
            "Sends that failed, for any reason.",
            &self.batches_failed,
        ),
        counter(
            "pqwatch_batches_retried_total",
            "Sends that failed and are retried.",
            &self.batches_retried,
        ),
        gauge(
            "pqwatch_influxdb_last_success_timestamp_seconds",
            "When InfluxDB last acknowledged a batch, Unix seconds; 0 when not yet.",
            secs(self.influx_last_ok_ms.load(Relaxed)),
        ),
        gauge(
            "pqwatch_influxdb_last_failure_timestamp_seconds",
            "When a send last failed, Unix seconds; 0 when none did.",
            secs(self.influx_last_error_ms.load(Relaxed)),
        ),
        gauge(
            "pqwatch_influxdb_consecutive_failures",
            "Failed sends in a row (network, 5xx, 401/403/404); 0 once a batch is acknowledged.",
            value(&self.influx_failures),
        ),
        gauge(
            "pqwatch_sink_heartbeat_timestamp_seconds",
            "When the sink task last turned its loop (at least once a second), Unix seconds.",
            secs(self.sink_heartbeat_ms.load(Relaxed)),
        ),
    ]);
        f
    }
}
