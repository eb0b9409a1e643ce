//! The outbox: line-protocol batches stored in the state database until
//! InfluxDB acknowledges them.
//!
//! One row per batch (never per point), gzip-compressed once when stored;
//! the compressed body is what goes on the wire, so a batch is compressed
//! exactly once however often it is retried. Rows are taken oldest first
//! (or newest first, so live data is not starved behind a backlog) and
//! deleted only after the server accepted them. A batch the server rejects
//! as invalid moves to `dead_letter` with the server's message.
//!
//! The size bound counts stored (compressed) bytes. Running totals are kept
//! in memory, loaded at open, so enforcing the bound costs nothing per
//! push. They change only after SQLite confirmed a statement (every
//! statement runs to its end, so a commit that fails on a full disk is an
//! error, never a dropped one), never go below zero, and are read again
//! from the file after any error. A batch the server acknowledged whose
//! delete failed is remembered as delivered: it is not counted, never
//! sent again, and deleted once the disk allows.
//!
//! This type is synchronous and owned by the sink task alone.

use crate::state::{StateDb, StateError};
use bytes::Bytes;
use rusqlite::{OptionalExtension, params};
use std::collections::BTreeSet;
use std::io::{Read, Write};

/// A stored batch, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub id: i64,
    pub(crate) created_ms: i64,
    pub(crate) points: usize,
    /// gzip-compressed line protocol.
    pub body: Bytes,
}

/// Outbox depth, for logs, metrics and `pqwatch status`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Depth {
    pub batches: u64,
    pub points: u64,
    pub bytes: u64,
    pub oldest_ms: Option<i64>,
}

pub struct Outbox {
    db: StateDb,
    /// What SQLite confirmed, less `acked`: changed only after a statement
    /// succeeded, re-derived from the file after any error.
    depth: Depth,
    /// Batches the server acknowledged whose delete failed (disk full).
    acked: BTreeSet<i64>,
}

pub fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(raw.len() / 6),
        flate2::Compression::fast(),
    );
    enc.write_all(raw).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

pub fn gunzip(z: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(z.len() * 6);
    // Every member: merged requests concatenate stored batches.
    flate2::read::MultiGzDecoder::new(z).read_to_end(&mut out)?;
    Ok(out)
}

/// Raw line protocol and the number of points it holds.
pub(crate) type Half = (Vec<u8>, usize);

/// A compressed batch cut in two halves by line (raw line protocol and the
/// points each holds), or `None` when it is a single line. Points per line
/// are not stored, so they are shared out by line count.
pub(crate) fn halves(body_gz: &[u8], points: usize) -> std::io::Result<Option<[Half; 2]>> {
    let raw = gunzip(body_gz)?;
    let lines: Vec<&[u8]> = raw.split_inclusive(|&c| c == b'\n').collect();
    if lines.len() < 2 {
        return Ok(None);
    }
    let mid = lines.len() / 2;
    let first = points * mid / lines.len();
    Ok(Some([
        (lines[..mid].concat(), first),
        (lines[mid..].concat(), points - first),
    ]))
}

impl Outbox {
    pub fn new(db: StateDb) -> Result<Self, StateError> {
        let mut o = Outbox {
            db,
            depth: Depth::default(),
            acked: BTreeSet::new(),
        };
        o.depth = o.query_depth()?;
        Ok(o)
    }

    fn err(&self, e: rusqlite::Error) -> StateError {
        self.db.err(e)
    }

    pub fn db(&self) -> &StateDb {
        &self.db
    }

    /// `WHERE` clause leaving out the acknowledged rows whose delete failed
    /// (ids are integers we hold: nothing from outside goes into the SQL).
    fn not_acked(&self, keyword: &str) -> String {
        if self.acked.is_empty() {
            return String::new();
        }
        let ids: Vec<String> = self.acked.iter().map(|id| id.to_string()).collect();
        format!(" {keyword} id NOT IN ({})", ids.join(","))
    }

    fn query_depth(&self) -> Result<Depth, StateError> {
        let sql = format!(
            "SELECT count(*), coalesce(sum(points), 0), coalesce(sum(length(body)), 0), min(created_ms) FROM outbox{}",
            self.not_acked("WHERE")
        );
        self.db
            .conn
            .query_row(&sql, [], |r| {
                Ok(Depth {
                    batches: r.get::<_, i64>(0)? as u64,
                    points: r.get::<_, i64>(1)? as u64,
                    bytes: r.get::<_, i64>(2)? as u64,
                    oldest_ms: r.get(3)?,
                })
            })
            .map_err(|e| self.err(e))
    }

    /// After a failed statement: end any transaction SQLite left open and
    /// take the depth from what the file holds, not from what we hoped.
    fn recover(&mut self) {
        if !self.db.conn.is_autocommit() {
            // Fails harmlessly when SQLite already rolled back (disk full).
            let _ = self.db.conn.execute_batch("ROLLBACK");
        }
        if let Ok(d) = self.query_depth() {
            self.depth = d;
        }
    }

    /// What waits to be sent: batches, points, bytes, oldest. Acknowledged
    /// batches whose delete failed are not counted.
    pub fn depth(&self) -> Depth {
        self.depth
    }

    /// Acknowledged batches still in the file because their delete failed
    /// (they are never sent again and are deleted once the disk allows).
    pub(crate) fn undeleted(&self) -> usize {
        self.acked.len()
    }

    /// Store a batch (already compressed) and return its id. Committed when
    /// this returns: a crash after it loses nothing. On an error nothing was
    /// stored and the depth is unchanged.
    pub fn push(
        &mut self,
        created_ms: i64,
        points: usize,
        raw_bytes: usize,
        body: &[u8],
    ) -> Result<i64, StateError> {
        let r = self
            .db
            .conn
            .prepare_cached(
                "INSERT INTO outbox(created_ms, points, raw_bytes, body) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut st| {
                st.execute(params![created_ms, points as i64, raw_bytes as i64, body])
            });
        if let Err(e) = r {
            let e = self.err(e);
            self.recover();
            return Err(e);
        }
        let id = self.db.conn.last_insert_rowid();
        self.depth.batches = self.depth.batches.saturating_add(1);
        self.depth.points = self.depth.points.saturating_add(points as u64);
        self.depth.bytes = self.depth.bytes.saturating_add(body.len() as u64);
        self.depth.oldest_ms = Some(
            self.depth
                .oldest_ms
                .map_or(created_ms, |o| o.min(created_ms)),
        );
        Ok(id)
    }

    fn one(&self, order: &str) -> Result<Option<Stored>, StateError> {
        let sql = format!(
            "SELECT id, created_ms, points, body FROM outbox{} ORDER BY id {order} LIMIT 1",
            self.not_acked("WHERE")
        );
        self.db
            .conn
            .prepare_cached(&sql)
            .and_then(|mut st| {
                st.query_row([], |r| {
                    Ok(Stored {
                        id: r.get(0)?,
                        created_ms: r.get(1)?,
                        points: r.get::<_, i64>(2)? as usize,
                        body: Bytes::from(r.get::<_, Vec<u8>>(3)?),
                    })
                })
                .optional()
            })
            .map_err(|e| self.err(e))
    }

    /// Up to `n` batches waiting to be sent, oldest (or newest) first,
    /// passing over those in `skip` (being sent) without reading their
    /// bodies.
    pub(crate) fn first_idle(
        &self,
        newest: bool,
        n: usize,
        skip: &[i64],
    ) -> Result<Vec<Stored>, StateError> {
        let sql = format!(
            "SELECT id, created_ms, points, body FROM outbox{} ORDER BY id {} LIMIT ?1",
            self.not_acked("WHERE"),
            if newest { "DESC" } else { "ASC" }
        );
        (|| {
            let mut st = self.db.conn.prepare_cached(&sql)?;
            // Each skipped batch is among the first rows at most once.
            let mut rows = st.query([(n + skip.len()) as i64])?;
            let mut out = Vec::with_capacity(n);
            while out.len() < n
                && let Some(r) = rows.next()?
            {
                let id: i64 = r.get(0)?;
                if skip.contains(&id) {
                    continue;
                }
                out.push(Stored {
                    id,
                    created_ms: r.get(1)?,
                    points: r.get::<_, i64>(2)? as usize,
                    body: Bytes::from(r.get::<_, Vec<u8>>(3)?),
                });
            }
            Ok(out)
        })()
        .map_err(|e: rusqlite::Error| self.err(e))
    }

    /// The oldest batch waiting to be sent.
    pub fn oldest(&self) -> Result<Option<Stored>, StateError> {
        self.one("ASC")
    }

    /// The newest batch waiting to be sent.
    pub fn newest(&self) -> Result<Option<Stored>, StateError> {
        self.one("DESC")
    }

    /// Remove a batch. The depth changes only once SQLite confirmed the
    /// delete: `execute` steps the statement to its end, so a failed
    /// commit (disk full) is an error here, not lost in a dropped
    /// statement. Returns whether a row was deleted.
    fn remove(&mut self, id: i64) -> Result<bool, StateError> {
        let r = (|| {
            let row: Option<(i64, i64)> = self
                .db
                .conn
                .prepare_cached("SELECT points, length(body) FROM outbox WHERE id = ?1")?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let n = self
                .db
                .conn
                .prepare_cached("DELETE FROM outbox WHERE id = ?1")?
                .execute([id])?;
            Ok::<_, rusqlite::Error>(row.filter(|_| n == 1))
        })();
        let row = match r {
            Ok(row) => row,
            Err(e) => {
                let e = self.err(e);
                self.recover();
                return Err(e);
            }
        };
        let Some((points, bytes)) = row else {
            self.acked.remove(&id);
            return Ok(false);
        };
        if self.acked.remove(&id) {
            // Already left out of the depth when its delete first failed.
            return Ok(true);
        }
        self.depth.batches = self.depth.batches.saturating_sub(1);
        self.depth.points = self.depth.points.saturating_sub(points as u64);
        self.depth.bytes = self.depth.bytes.saturating_sub(bytes as u64);
        if self.depth.batches == 0 {
            self.depth.oldest_ms = None;
        } else if self.depth.oldest_ms.is_some() {
            let sql = format!(
                "SELECT min(created_ms) FROM outbox{}",
                self.not_acked("WHERE")
            );
            match self.db.conn.query_row(&sql, [], |r| r.get(0)) {
                Ok(t) => self.depth.oldest_ms = t,
                Err(e) => {
                    let e = self.err(e);
                    self.recover();
                    return Err(e);
                }
            }
        }
        Ok(true)
    }

    /// Remove a batch (an operator's or a benchmark's delete).
    pub fn delete(&mut self, id: i64) -> Result<(), StateError> {
        self.remove(id).map(|_| ())
    }

    /// The server acknowledged batch `id`: delete it. When the delete
    /// fails (disk full) the batch is remembered as delivered: it leaves
    /// the depth, is never taken again, and is deleted by
    /// [`Outbox::retry_deletes`] once the disk allows (a restart before
    /// that sends it once more, which the server overwrites).
    pub(crate) fn ack(&mut self, id: i64) -> Result<(), StateError> {
        match self.remove(id) {
            Ok(_) => Ok(()),
            Err(e) => {
                self.acked.insert(id);
                self.recover();
                Err(e)
            }
        }
    }

    /// Delete the acknowledged batches whose delete failed before.
    pub(crate) fn retry_deletes(&mut self) -> Result<(), StateError> {
        let ids: Vec<i64> = self.acked.iter().copied().collect();
        for id in ids {
            self.remove(id)?;
        }
        Ok(())
    }

    /// Run `f` in one transaction; on any error roll back and re-derive
    /// the depth.
    fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        if let Err(e) = self.db.conn.execute_batch("BEGIN IMMEDIATE") {
            let e = self.err(e);
            self.recover();
            return Err(e);
        }
        let r = f(self).and_then(|v| {
            self.db
                .conn
                .execute_batch("COMMIT")
                .map(|_| v)
                .map_err(|e| self.err(e))
        });
        if r.is_err() {
            self.recover();
        }
        r
    }

    /// Move a batch the server will never accept out of the queue, keeping
    /// it (and why) for an operator. Both in one transaction: a failure
    /// leaves the batch queued and no dead letter behind.
    pub(crate) fn dead_letter(
        &mut self,
        b: &Stored,
        status: u16,
        message: &str,
        now_ms: i64,
    ) -> Result<(), StateError> {
        self.transaction(|o| {
            o.db
                .conn
                .execute(
                    "INSERT INTO dead_letter(created_ms, failed_ms, points, status, message, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![b.created_ms, now_ms, b.points as i64, status, message, &b.body[..]],
                )
                .map_err(|e| o.err(e))?;
            o.remove(b.id).map(|_| ())
        })
    }

    /// Replace a batch by two halves (the server said 413: too large).
    /// Returns false when it cannot be split further (one line).
    pub(crate) fn split(&mut self, b: &Stored) -> Result<bool, StateError> {
        let Some(parts) = halves(&b.body, b.points).map_err(|e| StateError::Sqlite {
            path: self.db.path.clone(),
            source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
        })?
        else {
            return Ok(false);
        };
        self.transaction(|o| {
            for (part, points) in &parts {
                let z = gzip(part);
                o.push(b.created_ms, *points, part.len(), &z)?;
            }
            o.remove(b.id).map(|_| ())
        })?;
        Ok(true)
    }

    /// Drop the oldest batches until the outbox fits `max_bytes`. Returns
    /// (batches, points) dropped.
    pub(crate) fn enforce_bound(
        &mut self,
        max_bytes: u64,
        keep: &[i64],
    ) -> Result<(u64, u64), StateError> {
        let (mut batches, mut points) = (0, 0);
        // Never drop a batch being sent; take the next oldest (ids are
        // integers we hold: nothing from outside goes into the SQL).
        let kept = match keep {
            [] => String::new(),
            ids => format!(
                " AND id NOT IN ({})",
                ids.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        while self.depth.bytes > max_bytes && self.depth.batches > keep.len().max(1) as u64 {
            let sql = format!(
                "SELECT id, points FROM outbox WHERE 1{kept}{} ORDER BY id LIMIT 1",
                self.not_acked("AND")
            );
            let victim = self
                .db
                .conn
                .query_row(&sql, [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                .optional()
                .map_err(|e| self.err(e))?;
            let Some((id, p)) = victim else { break };
            if self.remove(id)? {
                batches += 1;
                points += p as u64;
            }
        }
        Ok((batches, points))
    }

    pub fn dead_letters(&self) -> Result<(u64, u64), StateError> {
        self.db
            .conn
            .query_row(
                "SELECT count(*), coalesce(sum(points), 0) FROM dead_letter",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> (tempfile::TempDir, Outbox) {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        (dir, Outbox::new(db).unwrap())
    }

    fn push(o: &mut Outbox, ts: i64, lines: usize) -> i64 {
        let raw: String = (0..lines).map(|k| format!("m v={k} {ts}\n")).collect();
        o.push(ts, lines, raw.len(), &gzip(raw.as_bytes())).unwrap()
    }

    #[test]
    fn fifo_lifo_delete_and_depth() {
        let (_d, mut o) = outbox();
        let a = push(&mut o, 100, 3);
        let b = push(&mut o, 200, 2);
        assert_eq!(o.depth().batches, 2);
        assert_eq!(o.depth().points, 5);
        assert_eq!(o.depth().oldest_ms, Some(100));
        assert_eq!(o.oldest().unwrap().unwrap().id, a);
        assert_eq!(o.newest().unwrap().unwrap().id, b);
        o.delete(a).unwrap();
        assert_eq!(o.depth().oldest_ms, Some(200));
        assert_eq!(o.depth().points, 2);
        o.delete(b).unwrap();
        assert_eq!(o.depth(), Depth::default());
        assert!(o.oldest().unwrap().is_none());
    }

    #[test]
    fn survives_reopen_and_depth_is_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut o = Outbox::new(StateDb::open(dir.path()).unwrap()).unwrap();
            push(&mut o, 1, 4);
            push(&mut o, 2, 4);
        }
        let o = Outbox::new(StateDb::open(dir.path()).unwrap()).unwrap();
        assert_eq!(o.depth().batches, 2);
        assert_eq!(o.depth().points, 8);
        let first = o.oldest().unwrap().unwrap();
        assert_eq!(
            gunzip(&first.body).unwrap(),
            b"m v=0 1\nm v=1 1\nm v=2 1\nm v=3 1\n"
        );
    }

    #[test]
    fn split_halves_keep_every_line() {
        let (_d, mut o) = outbox();
        push(&mut o, 5, 5);
        let b = o.oldest().unwrap().unwrap();
        assert!(o.split(&b).unwrap());
        let first = o.oldest().unwrap().unwrap();
        let second = o.newest().unwrap().unwrap();
        let all = [gunzip(&first.body).unwrap(), gunzip(&second.body).unwrap()].concat();
        assert_eq!(
            String::from_utf8(all).unwrap(),
            "m v=0 5\nm v=1 5\nm v=2 5\nm v=3 5\nm v=4 5\n"
        );
        assert_eq!(first.points + second.points, 5);
        assert_eq!(o.depth().batches, 2);
        // A single line cannot be split.
        push(&mut o, 6, 1);
        let single = o.newest().unwrap().unwrap();
        assert!(!o.split(&single).unwrap());
    }

    #[test]
    fn dead_letters_leave_the_queue() {
        let (_d, mut o) = outbox();
        push(&mut o, 1, 2);
        let b = o.oldest().unwrap().unwrap();
        o.dead_letter(&b, 400, "unable to parse", 99).unwrap();
        assert_eq!(o.depth().batches, 0);
        assert_eq!(o.dead_letters().unwrap(), (1, 2));
    }

    #[test]
    fn bound_drops_oldest_but_never_the_one_in_flight() {
        let (_d, mut o) = outbox();
        let ids: Vec<i64> = (0..10).map(|k| push(&mut o, k, 50)).collect();
        let one = o.depth().bytes / 10;
        let (batches, points) = o.enforce_bound(one * 4, &[ids[0]]).unwrap();
        assert!(o.depth().bytes <= one * 4 + one, "{:?}", o.depth());
        assert_eq!(points, batches * 50);
        assert!(batches >= 5);
        assert_eq!(
            o.oldest().unwrap().unwrap().id,
            ids[0],
            "in-flight batch kept"
        );
    }
}
