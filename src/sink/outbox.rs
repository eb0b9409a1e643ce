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
//! in memory, loaded once at open, so enforcing the bound costs nothing per
//! push. This type is synchronous and owned by the sink task alone.

use crate::state::{StateDb, StateError};
use bytes::Bytes;
use rusqlite::{OptionalExtension, params};
use std::io::{Read, Write};

/// A stored batch, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub id: i64,
    pub created_ms: i64,
    pub points: usize,
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
    depth: Depth,
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
    flate2::read::GzDecoder::new(z).read_to_end(&mut out)?;
    Ok(out)
}

/// Raw line protocol and the number of points it holds.
pub type Half = (Vec<u8>, usize);

/// A compressed batch cut in two halves by line (raw line protocol and the
/// points each holds), or `None` when it is a single line. Points per line
/// are not stored, so they are shared out by line count.
pub fn halves(body_gz: &[u8], points: usize) -> std::io::Result<Option<[Half; 2]>> {
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
        };
        o.depth = o.query_depth()?;
        Ok(o)
    }

    fn err(&self, e: rusqlite::Error) -> StateError {
        StateError::Sqlite {
            path: self.db.path.clone(),
            source: e,
        }
    }

    pub fn db(&self) -> &StateDb {
        &self.db
    }

    fn query_depth(&self) -> Result<Depth, StateError> {
        self.db
            .conn
            .query_row(
                "SELECT count(*), coalesce(sum(points), 0), coalesce(sum(length(body)), 0), min(created_ms) FROM outbox",
                [],
                |r| {
                    Ok(Depth {
                        batches: r.get::<_, i64>(0)? as u64,
                        points: r.get::<_, i64>(1)? as u64,
                        bytes: r.get::<_, i64>(2)? as u64,
                        oldest_ms: r.get(3)?,
                    })
                },
            )
            .map_err(|e| self.err(e))
    }

    pub fn depth(&self) -> Depth {
        self.depth
    }

    /// Store a batch (already compressed) and return its id. Committed when
    /// this returns: a crash after it loses nothing.
    pub fn push(
        &mut self,
        created_ms: i64,
        points: usize,
        raw_bytes: usize,
        body: &[u8],
    ) -> Result<i64, StateError> {
        self.db
            .conn
            .prepare_cached(
                "INSERT INTO outbox(created_ms, points, raw_bytes, body) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut st| {
                st.execute(params![created_ms, points as i64, raw_bytes as i64, body])
            })
            .map_err(|e| self.err(e))?;
        let id = self.db.conn.last_insert_rowid();
        self.depth.batches += 1;
        self.depth.points += points as u64;
        self.depth.bytes += body.len() as u64;
        self.depth.oldest_ms = Some(
            self.depth
                .oldest_ms
                .map_or(created_ms, |o| o.min(created_ms)),
        );
        Ok(id)
    }

    fn one(&self, order: &str) -> Result<Option<Stored>, StateError> {
        let sql =
            format!("SELECT id, created_ms, points, body FROM outbox ORDER BY id {order} LIMIT 1");
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

    pub fn oldest(&self) -> Result<Option<Stored>, StateError> {
        self.one("ASC")
    }

    pub fn newest(&self) -> Result<Option<Stored>, StateError> {
        self.one("DESC")
    }

    /// Remove a batch the server acknowledged.
    pub fn delete(&mut self, id: i64) -> Result<(), StateError> {
        let row: Option<(i64, i64)> = self
            .db
            .conn
            .query_row(
                "DELETE FROM outbox WHERE id = ?1 RETURNING points, length(body)",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        if let Some((points, bytes)) = row {
            self.depth.batches -= 1;
            self.depth.points -= points as u64;
            self.depth.bytes -= bytes as u64;
            if self.depth.batches == 0 {
                self.depth.oldest_ms = None;
            } else if self.depth.oldest_ms.is_some() {
                self.depth.oldest_ms = self
                    .db
                    .conn
                    .query_row("SELECT min(created_ms) FROM outbox", [], |r| r.get(0))
                    .map_err(|e| self.err(e))?;
            }
        }
        Ok(())
    }

    /// Move a batch the server will never accept out of the queue, keeping
    /// it (and why) for an operator.
    pub fn dead_letter(
        &mut self,
        b: &Stored,
        status: u16,
        message: &str,
        now_ms: i64,
    ) -> Result<(), StateError> {
        self.db
            .conn
            .execute(
                "INSERT INTO dead_letter(created_ms, failed_ms, points, status, message, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![b.created_ms, now_ms, b.points as i64, status, message, &b.body[..]],
            )
            .map_err(|e| self.err(e))?;
        self.delete(b.id)
    }

    /// Replace a batch by two halves (the server said 413: too large).
    /// Returns false when it cannot be split further (one line).
    pub fn split(&mut self, b: &Stored) -> Result<bool, StateError> {
        let Some(parts) = halves(&b.body, b.points).map_err(|e| StateError::Sqlite {
            path: self.db.path.clone(),
            source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
        })?
        else {
            return Ok(false);
        };
        self.db
            .conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.err(e))?;
        let result = (|| {
            for (part, points) in &parts {
                let z = gzip(part);
                self.push(b.created_ms, *points, part.len(), &z)?;
            }
            self.delete(b.id)
        })();
        match result {
            Ok(()) => self
                .db
                .conn
                .execute_batch("COMMIT")
                .map_err(|e| self.err(e))?,
            Err(e) => {
                let _ = self.db.conn.execute_batch("ROLLBACK");
                self.depth = self.query_depth()?;
                return Err(e);
            }
        }
        Ok(true)
    }

    /// Drop the oldest batches until the outbox fits `max_bytes`. Returns
    /// (batches, points) dropped.
    pub fn enforce_bound(
        &mut self,
        max_bytes: u64,
        keep: Option<i64>,
    ) -> Result<(u64, u64), StateError> {
        let (mut batches, mut points) = (0, 0);
        while self.depth.bytes > max_bytes && self.depth.batches > 1 {
            let Some(old) = self.oldest()? else { break };
            let victim = if Some(old.id) == keep {
                // Never drop the batch being sent; take the next oldest.
                match self
                    .db
                    .conn
                    .query_row(
                        "SELECT id, points FROM outbox WHERE id > ?1 ORDER BY id LIMIT 1",
                        [old.id],
                        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
                    )
                    .optional()
                    .map_err(|e| self.err(e))?
                {
                    Some((id, p)) => (id, p as u64),
                    None => break,
                }
            } else {
                (old.id, old.points as u64)
            };
            self.delete(victim.0)?;
            batches += 1;
            points += victim.1;
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
        let (batches, points) = o.enforce_bound(one * 4, Some(ids[0])).unwrap();
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
