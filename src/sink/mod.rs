//! The InfluxDB sink: readings in, acknowledged batches out, nothing lost.
//!
//! One task owns the whole path. It receives readings from a bounded
//! channel, appends them to the batch being assembled, and seals the batch
//! when it reaches `batch_size` points or `flush_interval` passes. A sealed
//! batch is gzip-compressed once and, with `durability = "always"`,
//! committed to the outbox (the state database) before anything is sent; a
//! crash then loses at most the batch being assembled. With
//! `durability = "memory"` sealed batches stay in memory and reach the
//! outbox only at shutdown or when the memory bound is reached.
//!
//! Sending: up to `max_in_flight` requests outstanding (one while writes
//! fail). When a backlog exists, starts alternate between the newest batch
//! and the oldest ones, merged into one request up to
//! [`REPLAY_MAX_POINTS`], so live data keeps flowing while the backlog
//! drains at the server's pace in points, however long each request takes,
//! and a WAN round trip is hidden behind the requests in flight. A batch
//! is in at most one request at a time; it leaves the
//! queue only when the server acknowledged it. Failures are classified in
//! one place (`writer::WriteError::class`): retried with capped, jittered
//! exponential backoff honouring `Retry-After`; 413 splits the batch; 400/422
//! moves it to the dead-letter table with the server's message;
//! 401/403/404 keep it and retry slowly while the log names the setting.
//!
//! Bounds: `max_outbox_bytes` on disk (oldest batches dropped, counted,
//! logged loudly) and `max_buffered_points` in memory (spilled to the
//! outbox; dropped only without one). Re-sending a batch is idempotent:
//! its points carry fixed timestamps, so the server overwrites them.
//!
//! When the outbox cannot be written (disk full, I/O errors) sealed
//! batches stay in memory up to `max_buffered_points` and are sent from
//! there; beyond it the oldest are dropped and counted (the persistent
//! counter is written once the disk allows). The streak is logged once when
//! it starts and once, with its totals, when it ends; meanwhile the
//! metrics say so and `/readyz` is not ready. Every new batch tries the
//! outbox first, so data reach it again as soon as space returns, and the
//! batches held meanwhile follow. An acknowledged batch whose delete
//! failed is never sent again (`outbox::Outbox::ack`).
//!
//! Shutdown: when every sender is gone the task seals what it has, keeps
//! sending until the queue is empty or the grace period ends, and leaves
//! the rest in the outbox for the next start.
//!
//! For `/metrics`, `/readyz` and the watchdog the task publishes the queue's
//! depth, when the server last acknowledged a batch, the last failure and
//! the count of failures in a row, and a heartbeat on every turn of its
//! loop, which turns at least once a second.

pub mod line;
pub mod outbox;
mod queue;
pub(crate) mod stats;
pub(crate) mod writer;

use crate::backoff;
use crate::config::Influx;
use crate::metrics::Metrics;
use crate::reading::Record;
use bytes::Bytes;
use outbox::{Outbox, gzip};
use queue::{Queue, Taken, busy};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

/// Replaying a backlog, one request carries the oldest batches merged (gzip
/// members concatenated, which InfluxDB and VictoriaMetrics read as one
/// stream) up to these bounds: a server that takes seconds per request is
/// then drained at its pace in points, not held to one batch per round trip.
pub const REPLAY_MAX_POINTS: usize = 50_000;
pub(crate) const REPLAY_MAX_BYTES: usize = 4 << 20;
const REPLAY_MAX_BATCHES: usize = 64;

/// The longest the sink loop sleeps: its heartbeat's period.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Failed sends are logged at the first failure of a streak, then at most
/// once per this period (every failure is counted in the metrics).
pub(crate) const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Whether to log this failure: the first of a streak, or the first after
/// [`FAILURE_LOG_EVERY`] since the last one logged.
fn log_failure_now(failures: u32, last_logged: Option<Instant>, now: Instant) -> bool {
    failures == 1 || last_logged.is_none_or(|t| now.duration_since(t) >= FAILURE_LOG_EVERY)
}
use tracing::{error, info, warn};
pub use writer::{Class, WriteError, Writer};

/// Backoff after consecutive failures ([`backoff::SINK`]), or what the
/// server asked for in `Retry-After`. Misconfiguration (401/403/404) waits
/// at least 30 s: an operator must act.
fn backoff(failures: u32, retry_after: Option<Duration>, class: Class) -> Duration {
    let floor = if class == Class::Misconfigured {
        Duration::from_secs(30)
    } else {
        Duration::ZERO
    };
    backoff::SINK.delay_after(failures, retry_after, floor)
}

/// The requests outstanding and the state that decides the next ones.
struct Sends {
    /// Requests outstanding, each with the batches it carries; at most
    /// `max_in_flight` (one while writes fail, so a struggling server is
    /// probed, not flooded).
    inflight: Vec<(tokio::task::Id, Vec<Taken>)>,
    tasks: tokio::task::JoinSet<Result<(), WriteError>>,
    /// Off once a merged request was refused as too large or invalid:
    /// batches then go one by one, where 413 and 400 are handled.
    merge: bool,
    /// Whether the next start takes the newest batch (else the oldest group).
    newest_next: bool,
    /// Failed sends in a row that are retried, when the last was logged,
    /// and when the next may start.
    failures: u32,
    logged_at: Option<Instant>,
    retry_at: Option<Instant>,
}

impl Default for Sends {
    fn default() -> Self {
        Sends {
            inflight: Vec::new(),
            tasks: tokio::task::JoinSet::new(),
            merge: true,
            newest_next: true,
            failures: 0,
            logged_at: None,
            retry_at: None,
        }
    }
}

pub struct Sink {
    cfg: Influx,
    writer: Arc<Writer>,
    metrics: Arc<Metrics>,
    outbox: Option<Outbox>,
    /// How long to keep delivering after the input closes.
    pub grace: Duration,
}

impl Sink {
    /// A sink with an outbox (the daemon), or without (tests, tools): then
    /// everything is held in memory within `max_buffered_points`.
    pub fn new(cfg: Influx, metrics: Arc<Metrics>, outbox: Option<Outbox>) -> Result<Self, String> {
        let writer = Arc::new(Writer::new(&cfg)?);
        Ok(Sink {
            cfg,
            writer,
            metrics,
            outbox,
            grace: Duration::from_secs(10),
        })
    }

    /// Run until every sender of `rx` is gone (readings, or records of any
    /// measurement), then drain as described in the module docs.
    pub async fn run<R: Into<Record> + std::marker::Send>(mut self, rx: mpsc::Receiver<R>) {
        let dialect = match self.cfg.api {
            crate::config::Api::V1 { .. } => line::Dialect::V1,
            crate::config::Api::V2 { .. } => line::Dialect::V2,
        };
        let probe = self.spawn_probe();
        let mut q = self.open_queue();

        let mut current = String::with_capacity(64 * 1024);
        let mut current_points = 0usize;
        let mut sends = Sends::default();
        let mut flush_at = Instant::now() + self.cfg.flush_interval;
        let mut input_open = true;
        let mut deadline: Option<Instant> = None;
        let mut rx = crate::gather::Gather::new(rx, crate::gather::PERIOD);
        // Received but not yet encoded: a batch is sealed at `batch_size`
        // points even when more records arrived at once.
        let mut received: VecDeque<R> = VecDeque::new();
        let mut gathered: Vec<R> = Vec::new();

        loop {
            while current_points < self.cfg.batch_size
                && let Some(record) = received.pop_front()
            {
                current_points += line::encode_record(&record.into(), dialect, &mut current);
            }
            Metrics::set(
                &self.metrics.sink.sink_heartbeat_ms,
                crate::clock::now_ms() as u64,
            );
            // Seal when full, when the flush timer fires, or at shutdown.
            if current_points >= self.cfg.batch_size
                || (current_points > 0 && (Instant::now() >= flush_at || !input_open))
            {
                let raw = std::mem::replace(&mut current, String::with_capacity(64 * 1024));
                let body = Bytes::from(gzip(raw.as_bytes()));
                let keys = busy(&sends.inflight);
                q.push(
                    crate::clock::now_ms(),
                    current_points,
                    raw.len(),
                    body,
                    &keys,
                );
                current_points = 0;
                q.publish_depth();
            }
            if current_points == 0 {
                flush_at = Instant::now() + self.cfg.flush_interval;
            }

            self.start_sends(&mut q, &mut sends);

            if !input_open && current_points == 0 && sends.inflight.is_empty() {
                if q.batches() == 0 {
                    break; // everything delivered
                }
                // Waiting for a retry that falls after the deadline is pointless.
                if let (Some(r), Some(d)) = (sends.retry_at, deadline)
                    && r >= d
                {
                    break;
                }
            }
            if let Some(d) = deadline
                && Instant::now() >= d
            {
                break;
            }

            let wake = [Some(flush_at), sends.retry_at, deadline]
                .into_iter()
                .flatten()
                .min()
                .expect("flush_at is always set")
                .min(Instant::now() + HEARTBEAT);
            // Records left over from a sealed batch go into the next at once.
            let wake = match received.is_empty() {
                true => wake,
                false => Instant::now(),
            };

            tokio::select! {
                n = rx.next(&mut gathered, crate::gather::MAX), if input_open && received.is_empty() => {
                    if n == 0 {
                        input_open = false;
                        deadline = Some(Instant::now() + self.grace);
                        // One more attempt now rather than after a long backoff.
                        sends.retry_at = None;
                    }
                    received.extend(gathered.drain(..));
                },
                Some(joined) = sends.tasks.join_next_with_id(), if !sends.tasks.is_empty() => {
                    self.on_joined(&mut q, &mut sends, joined);
                    q.publish_depth();
                },
                _ = sleep_until(wake) => {}
            }
        }

        probe.abort();
        self.finish(q, sends);
    }

    /// The readiness probe runs beside the sink, never in front of it: a
    /// server that accepts and never answers must not keep readings out of
    /// the outbox for the probe's timeout.
    fn spawn_probe(&self) -> tokio::task::JoinHandle<()> {
        let (w, url) = (
            self.writer.clone(),
            crate::secret::redact_url(&self.cfg.url),
        );
        tokio::spawn(async move {
            match w.probe().await {
                Some(Ok(())) => info!(url = %url, "InfluxDB is ready"),
                Some(Err(e)) => {
                    warn!(url = %url, error = %e, "InfluxDB readiness probe failed; writing anyway (the outbox holds data until it accepts)");
                }
                None => {}
            }
        })
    }

    /// The queue over the outbox (taken from `self`) and memory, its depth
    /// published; a backlog from the previous run is logged.
    fn open_queue(&mut self) -> Queue {
        let q = Queue {
            outbox: self.outbox.take(),
            mem: VecDeque::new(),
            mem_points: 0,
            next_seq: 0,
            durability: self.cfg.durability,
            max_mem_points: self.cfg.max_buffered_points,
            max_outbox_bytes: self.cfg.max_outbox_bytes,
            metrics: self.metrics.clone(),
            unwritable: None,
            unpersisted_dropped: 0,
        };
        if let Some(o) = &q.outbox {
            let d = o.depth();
            if d.batches > 0 {
                info!(
                    batches = d.batches,
                    points = d.points,
                    bytes = d.bytes,
                    "replaying the outbox from the previous run"
                );
            }
        }
        q.publish_depth();
        q
    }

    /// Start sends while a slot is free, the backoff has passed and work
    /// waits. Starts alternate between the newest batch and the oldest
    /// group, so live data is never starved by a backlog.
    fn start_sends(&self, q: &mut Queue, s: &mut Sends) {
        let limit = if s.failures > 0 {
            1
        } else {
            self.cfg.max_in_flight
        };
        while s.inflight.len() < limit && s.retry_at.is_none_or(|t| Instant::now() >= t) {
            s.retry_at = None;
            let keys = busy(&s.inflight);
            let idle = q.batches().saturating_sub(keys.len() as u64);
            if idle == 0 {
                break;
            }
            let newest = s.newest_next || idle == 1;
            let group: Vec<Taken> = if newest || !s.merge {
                q.take(newest, &keys).into_iter().collect()
            } else {
                q.take_oldest_group(&keys)
            };
            if group.is_empty() {
                break;
            }
            s.newest_next = !newest;
            let w = self.writer.clone();
            let body = match group.as_slice() {
                [one] => one.body.clone(),
                many => {
                    let mut b = Vec::with_capacity(many.iter().map(|t| t.body.len()).sum());
                    for t in many {
                        b.extend_from_slice(&t.body);
                    }
                    Bytes::from(b)
                }
            };
            let id = s.tasks.spawn(async move { w.write(body).await }).id();
            s.inflight.push((id, group));
        }
    }

    /// A send finished: record the outcome of each batch it carried.
    fn on_joined(
        &self,
        q: &mut Queue,
        s: &mut Sends,
        joined: Result<(tokio::task::Id, Result<(), WriteError>), tokio::task::JoinError>,
    ) {
        let (id, res) = match joined {
            Ok((id, res)) => (id, res),
            // A panicked send: its batches stay queued and go again.
            Err(e) => {
                error!(error = %e, "an InfluxDB write task failed; its batches stay queued");
                let id = e.id();
                s.inflight.retain(|(i, _)| *i != id);
                return;
            }
        };
        let Some(pos) = s.inflight.iter().position(|(i, _)| *i == id) else {
            return;
        };
        let (_, group) = s.inflight.swap_remove(pos);
        match (group.as_slice(), res) {
            ([t], res) => self.handle_result(q, t, res, s),
            (many, Ok(())) => {
                for t in many {
                    self.handle_result(q, t, Ok(()), s);
                }
            }
            (many, Err(e)) if matches!(e.class(), Class::Reject | Class::TooLarge) => {
                s.merge = false;
                Metrics::inc(&self.metrics.sink.batches_failed);
                warn!(error = %e, batches = many.len(), "InfluxDB refused a request of merged batches; sending them one by one from now on");
            }
            (many, Err(e)) => {
                // Counted as one failed send of all its points.
                let all = Taken {
                    key: many[0].key,
                    created_ms: many[0].created_ms,
                    points: many.iter().map(|t| t.points).sum(),
                    body: Bytes::new(),
                };
                self.handle_result(q, &all, Err(e), s);
            }
        }
    }

    /// Exit: requests still out at the deadline are abandoned; their
    /// batches stay queued (a server that stored them meanwhile is sent
    /// them again at the next start: the same timestamps overwrite), and
    /// whatever is not delivered stays in the outbox.
    fn finish(&self, mut q: Queue, mut sends: Sends) {
        sends.tasks.abort_all();
        let (kept_mem, lost) = q.persist_memory();
        if lost > 0 {
            error!(
                points = lost,
                "no outbox (or it cannot be written) to keep undelivered points: they are lost"
            );
        }
        let d = q.outbox.as_ref().map(|o| o.depth()).unwrap_or_default();
        if d.points > 0 {
            info!(
                points = d.points,
                batches = d.batches,
                from_memory = kept_mem,
                "undelivered points kept in the outbox for the next start"
            );
        }
        q.publish_depth();
    }

    fn handle_result(&self, q: &mut Queue, t: &Taken, res: Result<(), WriteError>, s: &mut Sends) {
        let Sends {
            failures,
            retry_at,
            logged_at,
            ..
        } = s;
        let m = &self.metrics;
        let e = match res {
            Ok(()) => {
                if *failures > 0 {
                    info!(after_failures = *failures, "InfluxDB writes succeed again");
                }
                *failures = 0;
                m.sink.influx_ok(crate::clock::now_ms());
                Metrics::add(&m.sink.points_written, t.points as u64);
                Metrics::inc(&m.sink.batches_written);
                q.ack(t.key);
                return;
            }
            Err(e) => e,
        };
        Metrics::inc(&m.sink.batches_failed);
        if !e.retryable() {
            // The server answered: it is reachable, the batch was bad.
            m.sink
                .influx_error(crate::clock::now_ms(), &e, u64::from(*failures));
        }
        match e.class() {
            Class::Reject => {
                Metrics::add(&m.sink.points_rejected, t.points as u64);
                error!(
                    error = %e,
                    points = t.points,
                    "InfluxDB rejected a batch as invalid; moved it to the dead-letter table (a 1.x server may have stored its valid lines)"
                );
                q.reject(t, e.status(), &e.to_string());
            }
            Class::TooLarge => {
                if q.split(t) {
                    warn!(
                        points = t.points,
                        "InfluxDB says the batch is too large (413); split it in two; consider a smaller influxdb.batch_size"
                    );
                } else {
                    Metrics::add(&m.sink.points_rejected, t.points as u64);
                    error!(error = %e, "a single line is too large for InfluxDB; moved it to the dead-letter table");
                    q.reject(t, e.status(), &e.to_string());
                }
            }
            class @ (Class::Retry | Class::Misconfigured) => {
                *failures += 1;
                m.sink
                    .influx_error(crate::clock::now_ms(), &e, u64::from(*failures));
                Metrics::inc(&m.sink.batches_retried);
                Metrics::add(&m.sink.points_retried, t.points as u64);
                let wait = backoff(*failures, e.retry_after(), class);
                let now = Instant::now();
                *retry_at = Some(now + wait);
                if class == Class::Misconfigured {
                    m.sink.influx_refused(format!(
                        "InfluxDB refuses our writes ({e}); {}",
                        e.hint().unwrap_or("check the [influxdb] settings")
                    ));
                }
                // The first failure, then once a minute: an outage or a
                // wrong setting is visible without flooding the journal.
                if log_failure_now(*failures, *logged_at, now) {
                    *logged_at = Some(now);
                    let retry_in_ms = wait.as_millis() as u64;
                    let queued = q.batches();
                    if class == Class::Misconfigured {
                        error!(error = %e, hint = e.hint().unwrap_or(""), failures = *failures, retry_in_ms, queued_batches = queued, "InfluxDB refuses our writes; data is kept");
                    } else {
                        warn!(error = %e, failures = *failures, retry_in_ms, queued_batches = queued, "InfluxDB write failed; will retry");
                    }
                }
            }
        }
    }
}

/// Sink used when no database is configured: counts what would have been
/// written so the operator can see the poller works.
/// It beats the sink heartbeat like [`Sink::run`].
pub(crate) async fn run_discard(rx: mpsc::Receiver<Record>, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut rx = crate::gather::Gather::new(rx, crate::gather::PERIOD);
    let mut batch = Vec::new();
    loop {
        Metrics::set(
            &metrics.sink.sink_heartbeat_ms,
            crate::clock::now_ms() as u64,
        );
        tokio::select! {
            n = rx.next(&mut batch, crate::gather::MAX) => if n == 0 {
                break;
            },
            _ = tick.tick() => continue,
        };
        let n: usize = batch
            .drain(..)
            .map(|r| match r {
                Record::Reading(r) => r.values.len(),
                Record::Point(p) => p.fields.len(),
            })
            .sum();
        Metrics::add(&metrics.sink.points_discarded, n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_logged_first_then_once_a_minute() {
        let t0 = Instant::now();
        assert!(log_failure_now(1, Some(t0), t0), "first of a streak");
        assert!(!log_failure_now(2, Some(t0), t0 + Duration::from_secs(30)));
        assert!(log_failure_now(3, Some(t0), t0 + FAILURE_LOG_EVERY));
        assert!(log_failure_now(5, None, t0));
    }

    #[test]
    fn backoff_is_capped_and_honours_retry_after() {
        let d1 = backoff(1, None, Class::Retry);
        assert!(d1 >= Duration::from_millis(800) && d1 <= Duration::from_millis(1200));
        let d10 = backoff(10, None, Class::Retry);
        assert!(d10 <= Duration::from_secs(72) && d10 >= Duration::from_secs(48));
        assert_eq!(
            backoff(3, Some(Duration::from_secs(7)), Class::Retry),
            Duration::from_secs(7)
        );
        assert_eq!(
            backoff(3, Some(Duration::from_secs(99999)), Class::Retry),
            Duration::from_secs(600)
        );
        assert!(backoff(1, None, Class::Misconfigured) >= Duration::from_secs(24));
    }
}
