//! The sink's queue: sealed batches in the outbox (the state database) and
//! in memory, which of them to send next, and the bounds that keep both
//! finite. Owned by the sink task; it sends nothing itself.

use super::outbox::{Outbox, Stored, gzip, halves};
use super::{REPLAY_MAX_BATCHES, REPLAY_MAX_BYTES, REPLAY_MAX_POINTS};
use crate::config::Durability;
use crate::metrics::Metrics;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use tracing::{error, warn};

/// A sealed batch held in memory.
#[derive(Debug, Clone)]
pub(super) struct MemBatch {
    pub(super) seq: u64,
    pub(super) created_ms: i64,
    pub(super) points: usize,
    pub(super) raw_bytes: usize,
    pub(super) body: Bytes,
}

/// Which queued batch a send carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Key {
    Db(i64),
    Mem(u64),
}

/// A batch taken for sending.
#[derive(Debug, Clone)]
pub(super) struct Taken {
    pub(super) key: Key,
    pub(super) created_ms: i64,
    pub(super) points: usize,
    pub(super) body: Bytes,
}

/// The outbox ids among `keys`.
pub(super) fn db_ids(keys: &[Key]) -> Vec<i64> {
    keys.iter()
        .filter_map(|k| match k {
            Key::Db(id) => Some(*id),
            Key::Mem(_) => None,
        })
        .collect()
}

/// The keys of every batch being sent.
pub(super) fn busy(inflight: &[(tokio::task::Id, Vec<Taken>)]) -> Vec<Key> {
    inflight
        .iter()
        .flat_map(|(_, g)| g.iter().map(|t| t.key))
        .collect()
}

/// Run a synchronous SQLite call from the sink task without stalling the
/// runtime's other tasks (on a multi-thread runtime).
pub(super) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// A stretch of time during which the outbox could not be written (disk
/// full, I/O errors): what it cost, for the one line logged at its end.
#[derive(Debug)]
pub(super) struct Unwritable {
    pub(super) since_ms: i64,
    pub(super) errors: u64,
    pub(super) held_batches: u64,
    pub(super) held_points: u64,
    pub(super) dropped_points: u64,
}

/// The queue: the outbox (if any) plus batches held in memory.
pub(super) struct Queue {
    pub(super) outbox: Option<Outbox>,
    pub(super) mem: VecDeque<MemBatch>,
    pub(super) mem_points: usize,
    pub(super) next_seq: u64,
    pub(super) durability: Durability,
    pub(super) max_mem_points: usize,
    pub(super) max_outbox_bytes: u64,
    pub(super) metrics: Arc<Metrics>,
    /// Set while writes to the outbox fail.
    pub(super) unwritable: Option<Unwritable>,
    /// Dropped points not yet added to the persistent counter (the disk
    /// refused that write too).
    pub(super) unpersisted_dropped: u64,
}

impl Queue {
    pub(super) fn batches(&self) -> u64 {
        self.outbox.as_ref().map_or(0, |o| o.depth().batches) + self.mem.len() as u64
    }

    pub(super) fn publish_depth(&self) {
        let d = self.outbox.as_ref().map(|o| o.depth()).unwrap_or_default();
        let m = &self.metrics;
        let mem_bytes: usize = self.mem.iter().map(|b| b.body.len()).sum();
        Metrics::set(&m.sink.outbox_batches, d.batches + self.mem.len() as u64);
        Metrics::set(&m.sink.outbox_points, d.points + self.mem_points as u64);
        Metrics::set(&m.sink.outbox_bytes, d.bytes + mem_bytes as u64);
        let oldest = [d.oldest_ms, self.mem.front().map(|b| b.created_ms)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(0);
        Metrics::set(&m.sink.outbox_oldest_ms, oldest.max(0) as u64);
    }

    /// Store a batch in the outbox, noting whether the disk took it.
    pub(super) fn store(
        &mut self,
        created_ms: i64,
        points: usize,
        raw_bytes: usize,
        body: &[u8],
    ) -> bool {
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
    pub(super) fn unwritable(&mut self, e: &crate::state::StateError) {
        let now = crate::clock::now_ms();
        Metrics::inc(&self.metrics.sink.outbox_write_errors);
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
        self.metrics.sink.outbox_unwritable(now, e);
    }

    /// An outbox write succeeded: end a streak of failures (one line with
    /// its totals), persist the drops the disk refused to count, and delete
    /// acknowledged batches whose delete failed.
    pub(super) fn writable(&mut self) {
        if let Some(u) = self.unwritable.take() {
            let now = crate::clock::now_ms();
            self.metrics.sink.outbox_writable();
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
    pub(super) fn dropped(&mut self, points: u64) {
        Metrics::add(&self.metrics.sink.points_dropped, points);
        self.unpersisted_dropped += points;
        if let Some(u) = &mut self.unwritable {
            u.dropped_points += points;
        }
    }

    /// `durability = "always"`: batches held in memory while the disk
    /// failed go to the outbox once it takes writes again (oldest first;
    /// never the one being sent, whose acknowledgement removes it from
    /// memory).
    pub(super) fn return_held(&mut self, inflight: &[Key]) {
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
    pub(super) fn push(
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
    pub(super) fn enforce_mem_bound(&mut self, inflight: &[Key]) {
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

    pub(super) fn enforce_outbox_bound(&mut self, inflight: &[Key]) {
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
    pub(super) fn take(&mut self, newest: bool, busy: &[Key]) -> Option<Taken> {
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
    pub(super) fn idle_db(&self, newest: bool, n: usize, busy: &[Key]) -> Vec<Taken> {
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
    pub(super) fn take_oldest_group(&mut self, busy: &[Key]) -> Vec<Taken> {
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

    pub(super) fn remove_mem(&mut self, seq: u64) -> Option<MemBatch> {
        let idx = self.mem.iter().position(|b| b.seq == seq)?;
        let b = self.mem.remove(idx)?;
        self.mem_points -= b.points;
        Some(b)
    }

    pub(super) fn ack(&mut self, key: Key) {
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

    pub(super) fn reject(&mut self, t: &Taken, status: u16, message: &str) {
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
    pub(super) fn split(&mut self, t: &Taken) -> bool {
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
    pub(super) fn persist_memory(&mut self) -> (usize, usize) {
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
