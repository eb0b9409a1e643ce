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
//! one place ([`writer::WriteError::class`]): retried with capped, jittered
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
//! failed is never sent again ([`outbox::Outbox::ack`]).
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
pub mod writer;

use crate::backoff;
use crate::config::{Durability, Influx};
use crate::metrics::Metrics;
use crate::reading::Record;
use bytes::Bytes;
use outbox::{Outbox, Stored, gzip, halves};
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
pub const REPLAY_MAX_BYTES: usize = 4 << 20;
const REPLAY_MAX_BATCHES: usize = 64;

/// The longest the sink loop sleeps: its heartbeat's period.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Failed sends are logged at the first failure of a streak, then at most
/// once per this period (every failure is counted in the metrics).
pub const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Whether to log this failure: the first of a streak, or the first after
/// [`FAILURE_LOG_EVERY`] since the last one logged.
fn log_failure_now(failures: u32, last_logged: Option<Instant>, now: Instant) -> bool {
    failures == 1 || last_logged.is_none_or(|t| now.duration_since(t) >= FAILURE_LOG_EVERY)
}
use tracing::{error, info, warn};
pub use writer::{Class, WriteError, Writer};

/// A sealed batch held in memory.
#[derive(Debug, Clone)]
struct MemBatch {
    seq: u64,
    created_ms: i64,
    points: usize,
    raw_bytes: usize,
    body: Bytes,
}

/// Which queued batch a send carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Db(i64),
    Mem(u64),
}

/// A batch taken for sending.
#[derive(Debug, Clone)]
struct Taken {
    key: Key,
    created_ms: i64,
    points: usize,
    body: Bytes,
}

/// The outbox ids among `keys`.
fn db_ids(keys: &[Key]) -> Vec<i64> {
    keys.iter()
        .filter_map(|k| match k {
            Key::Db(id) => Some(*id),
            Key::Mem(_) => None,
        })
        .collect()
}

/// The keys of every batch being sent.
fn busy(inflight: &[(tokio::task::Id, Vec<Taken>)]) -> Vec<Key> {
    inflight
        .iter()
        .flat_map(|(_, g)| g.iter().map(|t| t.key))
        .collect()
}

/// Run a synchronous SQLite call from the sink task without stalling the
/// runtime's other tasks (on a multi-thread runtime).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

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

/// A stretch of time during which the outbox could not be written (disk
/// full, I/O errors): what it cost, for the one line logged at its end.
#[derive(Debug)]
struct Unwritable {
    since_ms: i64,
    errors: u64,
    held_batches: u64,
    held_points: u64,
    dropped_points: u64,
}

/// The queue: the outbox (if any) plus batches held in memory.
struct Queue {
    outbox: Option<Outbox>,
    mem: VecDeque<MemBatch>,
    mem_points: usize,
    next_seq: u64,
    durability: Durability,
    max_mem_points: usize,
    max_outbox_bytes: u64,
    metrics: Arc<Metrics>,
    /// Set while writes to the outbox fail.
    unwritable: Option<Unwritable>,
    /// Dropped points not yet added to the persistent counter (the disk
    /// refused that write too).
    unpersisted_dropped: u64,
}

impl Queue {
    fn batches(&self) -> u64 {
        self.outbox.as_ref().map_or(0, |o| o.depth().batches) + self.mem.len() as u64
    }

    fn publish_depth(&self) {
        let d = self.outbox.as_ref().map(|o| o.depth()).unwrap_or_default();
        let m = &self.metrics;
        let mem_bytes: usize = self.mem.iter().map(|b| b.body.len()).sum();
        Metrics::set(&m.outbox_batches, d.batches + self.mem.len() as u64);
        Metrics::set(&m.outbox_points, d.points + self.mem_points as u64);
        Metrics::set(&m.outbox_bytes, d.bytes + mem_bytes as u64);
        let oldest = [d.oldest_ms, self.mem.front().map(|b| b.created_ms)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(0);
        Metrics::set(&m.outbox_oldest_ms, oldest.max(0) as u64);
    }

    /// Store a batch in the outbox, noting whether the disk took it.
    fn store(&mut self, created_ms: i64, points: usize, raw_bytes: usize, body: &[u8]) -> bool {
        let Some(o) = self.outbox.as_mut() else {
            return false;
        };
        match blocking(|| o.push(created_ms, points, raw_bytes, body)) {
            Ok(_) => {
                self.writable();
                true
            }
            Err(e) => {
                self.unwritable(&e);
                false
            }
        }
    }

    /// An outbox write failed: the first failure of a streak is logged
    /// (and turns `/readyz` unready), the others only counted.
    fn unwritable(&mut self, e: &crate::state::StateError) {
        let now = crate::clock::now_ms();
        Metrics::inc(&self.metrics.outbox_write_errors);
        match &mut self.unwritable {
            Some(u) => u.errors += 1,
            None => {
                error!(
                    error = %e,
                    max_buffered_points = self.max_mem_points,
                    "OUTBOX NOT WRITABLE: cannot write to the state database (disk full?); batches are held in memory (up to influxdb.max_buffered_points) and sent from there; logged again when it is writable"
                );
                self.unwritable = Some(Unwritable {
                    since_ms: now,
                    errors: 1,
                    held_batches: 0,
                    held_points: 0,
                    dropped_points: 0,
                });
            }
        }
        self.metrics.outbox_unwritable(now, e);
    }

    /// An outbox write succeeded: end a streak of failures (one line with
    /// its totals), persist the drops the disk refused to count, and delete
    /// acknowledged batches whose delete failed.
    fn writable(&mut self) {
        if let Some(u) = self.unwritable.take() {
            let now = crate::clock::now_ms();
            self.metrics.outbox_writable();
            warn!(
                after_s = (now - u.since_ms).max(0) / 1000,
                write_errors = u.errors,
                batches_held_in_memory = u.held_batches,
                points_held_in_memory = u.held_points,
                points_dropped = u.dropped_points,
                "the outbox is writable again; batches held in memory go back to it"
            );
        }
        let Some(o) = self.outbox.as_mut() else {
            return;
        };
        if self.unpersisted_dropped > 0
            && blocking(|| {
                o.db()
                    .add_counter("points_dropped", self.unpersisted_dropped as i64)
            })
            .is_ok()
        {
            self.unpersisted_dropped = 0;
        }
        if o.undeleted() > 0 {
            let _ = blocking(|| o.retry_deletes());
        }
    }

    /// Points lost for good: counted now, persisted when the disk allows.
    fn dropped(&mut self, points: u64) {
        Metrics::add(&self.metrics.points_dropped, points);
        self.unpersisted_dropped += points;
        if let Some(u) = &mut self.unwritable {
            u.dropped_points += points;
        }
    }

    /// `durability = "always"`: batches held in memory while the disk
    /// failed go to the outbox once it takes writes again (oldest first;
    /// never the one being sent, whose acknowledgement removes it from
    /// memory).
    fn return_held(&mut self, inflight: &[Key]) {
        if self.durability != Durability::Always {
            return;
        }
        while let Some(idx) = self
            .mem
            .iter()
            .position(|b| !inflight.contains(&Key::Mem(b.seq)))
        {
            let b = self.mem[idx].clone();
            if !self.store(b.created_ms, b.points, b.raw_bytes, &b.body) {
                return;
            }
            self.mem.remove(idx);
            self.mem_points -= b.points;
        }
    }

    /// Queue a sealed batch.
    fn push(
        &mut self,
        created_ms: i64,
        points: usize,
        raw_bytes: usize,
        body: Bytes,
        inflight: &[Key],
    ) {
        if self.durability == Durability::Always && self.outbox.is_some() {
            if self.store(created_ms, points, raw_bytes, &body) {
                self.return_held(inflight);
                self.enforce_outbox_bound(inflight);
                return;
            }
            // Keep the data in memory; the outbox may recover (disk full).
            if let Some(u) = &mut self.unwritable {
                u.held_batches += 1;
                u.held_points += points as u64;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.mem_points += points;
        self.mem.push_back(MemBatch {
            seq,
            created_ms,
            points,
            raw_bytes,
            body,
        });
        self.enforce_mem_bound(inflight);
    }

    /// Over the memory bound: move the oldest idle batches to the outbox, or
    /// drop them when there is none.
    fn enforce_mem_bound(&mut self, inflight: &[Key]) {
        while self.mem_points > self.max_mem_points && self.mem.len() > 1 {
            // The oldest batch not being sent (several may be in flight).
            let Some(idx) = self
                .mem
                .iter()
                .position(|b| !inflight.contains(&Key::Mem(b.seq)))
            else {
                return;
            };
            let b = self.mem.remove(idx).expect("found above");
            self.mem_points -= b.points;
            if self.store(b.created_ms, b.points, b.raw_bytes, &b.body) {
                self.enforce_outbox_bound(inflight);
                continue;
            }
            let first = self
                .unwritable
                .as_ref()
                .is_none_or(|u| u.dropped_points == 0);
            self.dropped(b.points as u64);
            match (&self.outbox, first) {
                (None, _) => error!(
                    points = b.points,
                    limit = self.max_mem_points,
                    "in-memory buffer full and no outbox: dropped the oldest batch"
                ),
                // Once per streak; its end logs the total.
                (Some(_), true) => error!(
                    points = b.points,
                    limit = self.max_mem_points,
                    "in-memory buffer full and the outbox cannot be written: dropping the oldest batches (counted in points_dropped)"
                ),
                (Some(_), false) => {}
            }
        }
    }

    fn enforce_outbox_bound(&mut self, inflight: &[Key]) {
        let Some(o) = self.outbox.as_mut() else {
            return;
        };
        if o.depth().bytes <= self.max_outbox_bytes {
            return;
        }
        let keep = db_ids(inflight);
        match blocking(|| o.enforce_bound(self.max_outbox_bytes, &keep)) {
            Ok((batches, points)) if batches > 0 => {
                self.dropped(points);
                let o = self.outbox.as_mut().expect("checked above");
                if blocking(|| {
                    o.db()
                        .add_counter("points_dropped", self.unpersisted_dropped as i64)
                })
                .is_ok()
                {
                    self.unpersisted_dropped = 0;
                }
                error!(
                    batches,
                    points,
                    limit_bytes = self.max_outbox_bytes,
                    "OUTBOX FULL: dropped the oldest batches; raise influxdb.max_outbox_bytes or restore InfluxDB"
                );
            }
            Ok(_) => {}
            Err(e) => self.unwritable(&e),
        }
    }

    /// The next batch to send, the newest or the oldest, of those not
    /// already being sent (`busy`).
    fn take(&mut self, newest: bool, busy: &[Key]) -> Option<Taken> {
        let from_mem = |b: &MemBatch| Taken {
            key: Key::Mem(b.seq),
            created_ms: b.created_ms,
            points: b.points,
            body: b.body.clone(),
        };
        let idle_mem = |b: &&MemBatch| !busy.contains(&Key::Mem(b.seq));
        // Memory holds the most recent batches; the outbox older ones (from
        // this run in "always" mode, from earlier runs in both modes).
        if newest {
            if let Some(b) = self.mem.iter().rev().find(idle_mem) {
                return Some(from_mem(b));
            }
            self.idle_db(true, 1, busy).into_iter().next()
        } else {
            if let Some(t) = self.idle_db(false, 1, busy).into_iter().next() {
                return Some(t);
            }
            self.mem.iter().find(idle_mem).map(from_mem)
        }
    }

    /// Up to `n` outbox batches not being sent, from the oldest or newest.
    fn idle_db(&self, newest: bool, n: usize, busy: &[Key]) -> Vec<Taken> {
        let Some(o) = self.outbox.as_ref() else {
            return Vec::new();
        };
        let skip = db_ids(busy);
        blocking(|| o.first_idle(newest, n, &skip))
            .unwrap_or_else(|e| {
                error!(error = %e, "cannot read the outbox");
                Vec::new()
            })
            .into_iter()
            .map(|s| Taken {
                key: Key::Db(s.id),
                created_ms: s.created_ms,
                points: s.points,
                body: s.body,
            })
            .collect()
    }

    /// The oldest idle batches of the outbox, merged into one request up
    /// to [`REPLAY_MAX_POINTS`] and [`REPLAY_MAX_BYTES`] (at least one
    /// batch; empty when nothing waits). Memory batches go one by one.
    fn take_oldest_group(&mut self, busy: &[Key]) -> Vec<Taken> {
        let mut out: Vec<Taken> = Vec::new();
        let (mut points, mut bytes) = (0usize, 0usize);
        for t in self.idle_db(false, REPLAY_MAX_BATCHES, busy) {
            if !out.is_empty()
                && (points + t.points > REPLAY_MAX_POINTS
                    || bytes + t.body.len() > REPLAY_MAX_BYTES)
            {
                break;
            }
            points += t.points;
            bytes += t.body.len();
            out.push(t);
        }
        if out.is_empty() {
            return self.take(false, busy).into_iter().collect();
        }
        out
    }

    fn remove_mem(&mut self, seq: u64) -> Option<MemBatch> {
        let idx = self.mem.iter().position(|b| b.seq == seq)?;
        let b = self.mem.remove(idx)?;
        self.mem_points -= b.points;
        Some(b)
    }

    fn ack(&mut self, key: Key) {
        match key {
            Key::Mem(seq) => {
                self.remove_mem(seq);
            }
            Key::Db(id) => {
                let Some(o) = self.outbox.as_mut() else {
                    return;
                };
                // A failed delete leaves the batch marked as delivered: it
                // is not sent again, and deleted once the disk allows.
                match blocking(|| o.ack(id)) {
                    Err(e) => self.unwritable(&e),
                    Ok(()) if o.undeleted() > 0 => {
                        let _ = blocking(|| o.retry_deletes());
                    }
                    Ok(()) => {}
                }
            }
        }
    }

    fn reject(&mut self, t: &Taken, status: u16, message: &str) {
        let now = crate::clock::now_ms();
        let stored = Stored {
            id: match t.key {
                Key::Db(id) => id,
                Key::Mem(_) => -1,
            },
            created_ms: t.created_ms,
            points: t.points,
            body: t.body.clone(),
        };
        if let Key::Mem(seq) = t.key {
            self.remove_mem(seq);
        }
        if let Some(o) = self.outbox.as_mut() {
            if let Err(e) = blocking(|| o.dead_letter(&stored, status, message, now)) {
                error!(error = %e, "cannot move a rejected batch to the dead-letter table");
                if let Key::Db(id) = t.key {
                    // Never send it again: it would be rejected again, at once.
                    let _ = blocking(|| o.ack(id));
                }
                self.unwritable(&e);
            }
        } else if let Key::Db(_) = t.key {
            unreachable!("a Db key implies an outbox");
        }
    }

    /// 413: split the batch in two. Returns false when it is one line.
    fn split(&mut self, t: &Taken) -> bool {
        match t.key {
            Key::Db(id) => {
                let Some(o) = self.outbox.as_mut() else {
                    return false;
                };
                let stored = Stored {
                    id,
                    created_ms: t.created_ms,
                    points: t.points,
                    body: t.body.clone(),
                };
                blocking(|| o.split(&stored)).unwrap_or_else(|e| {
                    error!(error = %e, "cannot split a batch in the outbox");
                    false
                })
            }
            Key::Mem(seq) => {
                let Ok(Some(parts)) = halves(&t.body, t.points) else {
                    return false;
                };
                let Some(b) = self.remove_mem(seq) else {
                    return false;
                };
                for (part, points) in parts {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    self.mem_points += points;
                    self.mem.push_front(MemBatch {
                        seq,
                        created_ms: b.created_ms,
                        points,
                        raw_bytes: part.len(),
                        body: Bytes::from(gzip(&part)),
                    });
                }
                true
            }
        }
    }

    /// At exit: what is still in memory goes to the outbox for the next run.
    fn persist_memory(&mut self) -> (usize, usize) {
        let mut kept = 0;
        let mut lost = 0;
        while let Some(b) = self.mem.pop_front() {
            self.mem_points -= b.points;
            match self.store(b.created_ms, b.points, b.raw_bytes, &b.body) {
                true => kept += b.points,
                false => lost += b.points,
            }
        }
        if lost > 0 {
            self.dropped(lost as u64);
        }
        if self.unpersisted_dropped > 0
            && let Some(o) = self.outbox.as_mut()
            && blocking(|| {
                o.db()
                    .add_counter("points_dropped", self.unpersisted_dropped as i64)
            })
            .is_ok()
        {
            self.unpersisted_dropped = 0;
        }
        if let Some(u) = &self.unwritable {
            error!(
                write_errors = u.errors,
                points_dropped = u.dropped_points,
                unpersisted_drops = self.unpersisted_dropped,
                "stopping while the outbox cannot be written"
            );
        }
        (kept, lost)
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
        // The readiness probe runs beside the sink, never in front of it: a
        // server that accepts and never answers must not keep readings out
        // of the outbox for the probe's timeout.
        let probe = {
            let (w, url) = (
                self.writer.clone(),
                crate::secret::redact_url(&self.cfg.url),
            );
            tokio::spawn(async move {
                match w.probe().await {
                    Some(Ok(())) => info!(url = %url, "InfluxDB is ready"),
                    Some(Err(e)) => {
                        warn!(url = %url, error = %e, "InfluxDB readiness probe failed; writing anyway (the outbox holds data until it accepts)")
                    }
                    None => {}
                }
            })
        };
        let mut q = Queue {
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

        let mut current = String::with_capacity(64 * 1024);
        let mut current_points = 0usize;
        // Requests outstanding, each with the batches it carries; at most
        // `max_in_flight` (one while writes fail, so a struggling server
        // is probed, not flooded).
        let mut inflight: Vec<(tokio::task::Id, Vec<Taken>)> = Vec::new();
        let mut sends: tokio::task::JoinSet<Result<(), WriteError>> = tokio::task::JoinSet::new();
        // Off once a merged request was refused as too large or invalid:
        // batches then go one by one, where 413 and 400 are handled.
        let mut merge = true;
        let mut failures = 0u32;
        let mut logged_at: Option<Instant> = None;
        let mut retry_at: Option<Instant> = None;
        let mut flush_at = Instant::now() + self.cfg.flush_interval;
        let mut input_open = true;
        let mut deadline: Option<Instant> = None;
        let mut newest_next = true;
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
                &self.metrics.sink_heartbeat_ms,
                crate::clock::now_ms() as u64,
            );
            // Seal when full, when the flush timer fires, or at shutdown.
            if current_points >= self.cfg.batch_size
                || (current_points > 0 && (Instant::now() >= flush_at || !input_open))
            {
                let raw = std::mem::replace(&mut current, String::with_capacity(64 * 1024));
                let body = Bytes::from(gzip(raw.as_bytes()));
                let keys = busy(&inflight);
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

            // Start sends while a slot is free, the backoff has passed and
            // work waits. Starts alternate between the newest batch and the
            // oldest group, so live data is never starved by a backlog.
            let limit = if failures > 0 {
                1
            } else {
                self.cfg.max_in_flight
            };
            while inflight.len() < limit && retry_at.is_none_or(|t| Instant::now() >= t) {
                retry_at = None;
                let keys = busy(&inflight);
                let idle = q.batches().saturating_sub(keys.len() as u64);
                if idle == 0 {
                    break;
                }
                let newest = newest_next || idle == 1;
                let group: Vec<Taken> = if newest || !merge {
                    q.take(newest, &keys).into_iter().collect()
                } else {
                    q.take_oldest_group(&keys)
                };
                if group.is_empty() {
                    break;
                }
                newest_next = !newest;
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
                let id = sends.spawn(async move { w.write(body).await }).id();
                inflight.push((id, group));
            }

            if !input_open && current_points == 0 && inflight.is_empty() {
                if q.batches() == 0 {
                    break; // everything delivered
                }
                // Waiting for a retry that falls after the deadline is pointless.
                if let (Some(r), Some(d)) = (retry_at, deadline)
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

            let wake = [Some(flush_at), retry_at, deadline]
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
                        retry_at = None;
                    }
                    received.extend(gathered.drain(..));
                },
                Some(joined) = sends.join_next_with_id(), if !sends.is_empty() => {
                    let (id, res) = match joined {
                        Ok((id, res)) => (id, res),
                        // A panicked send: its batches stay queued and go again.
                        Err(e) => {
                            error!(error = %e, "an InfluxDB write task failed; its batches stay queued");
                            let id = e.id();
                            inflight.retain(|(i, _)| *i != id);
                            continue;
                        }
                    };
                    let Some(pos) = inflight.iter().position(|(i, _)| *i == id) else {
                        continue;
                    };
                    let (_, group) = inflight.swap_remove(pos);
                    match (group.as_slice(), res) {
                        ([t], res) => self.handle_result(&mut q, t, res, &mut failures, &mut retry_at, &mut logged_at),
                        (many, Ok(())) => {
                            for t in many {
                                self.handle_result(&mut q, t, Ok(()), &mut failures, &mut retry_at, &mut logged_at);
                            }
                        }
                        (many, Err(e)) if matches!(e.class(), Class::Reject | Class::TooLarge) => {
                            merge = false;
                            Metrics::inc(&self.metrics.batches_failed);
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
                            self.handle_result(&mut q, &all, Err(e), &mut failures, &mut retry_at, &mut logged_at);
                        }
                    }
                    q.publish_depth();
                },
                _ = sleep_until(wake) => {}
            }
        }

        probe.abort();
        // Requests still out at the deadline are abandoned; their batches
        // stay queued (a server that stored them meanwhile is sent them
        // again at the next start: the same timestamps overwrite).
        sends.abort_all();
        // Exit: whatever is not delivered stays in the outbox.
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

    fn handle_result(
        &self,
        q: &mut Queue,
        t: &Taken,
        res: Result<(), WriteError>,
        failures: &mut u32,
        retry_at: &mut Option<Instant>,
        logged_at: &mut Option<Instant>,
    ) {
        let m = &self.metrics;
        let e = match res {
            Ok(()) => {
                if *failures > 0 {
                    info!(after_failures = *failures, "InfluxDB writes succeed again");
                }
                *failures = 0;
                m.influx_ok(crate::clock::now_ms());
                Metrics::add(&m.points_written, t.points as u64);
                Metrics::inc(&m.batches_written);
                q.ack(t.key);
                return;
            }
            Err(e) => e,
        };
        Metrics::inc(&m.batches_failed);
        if !e.retryable() {
            // The server answered: it is reachable, the batch was bad.
            m.influx_error(crate::clock::now_ms(), &e, *failures as u64);
        }
        match e.class() {
            Class::Reject => {
                Metrics::add(&m.points_rejected, t.points as u64);
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
                    Metrics::add(&m.points_rejected, t.points as u64);
                    error!(error = %e, "a single line is too large for InfluxDB; moved it to the dead-letter table");
                    q.reject(t, e.status(), &e.to_string());
                }
            }
            class @ (Class::Retry | Class::Misconfigured) => {
                *failures += 1;
                m.influx_error(crate::clock::now_ms(), &e, *failures as u64);
                Metrics::inc(&m.batches_retried);
                Metrics::add(&m.points_retried, t.points as u64);
                let wait = backoff(*failures, e.retry_after(), class);
                let now = Instant::now();
                *retry_at = Some(now + wait);
                if class == Class::Misconfigured {
                    m.influx_refused(format!(
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
pub async fn run_discard(rx: mpsc::Receiver<Record>, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut rx = crate::gather::Gather::new(rx, crate::gather::PERIOD);
    let mut batch = Vec::new();
    loop {
        Metrics::set(&metrics.sink_heartbeat_ms, crate::clock::now_ms() as u64);
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
        Metrics::add(&metrics.points_discarded, n as u64);
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
