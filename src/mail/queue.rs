//! The mail queue: formatted messages in the state database until the SMTP
//! server (or the .eml directory) accepted them.
//!
//! A message is stored before any attempt to send it, as the exact bytes
//! that go on the wire (so its Message-ID and Date survive retries and
//! restarts), with its envelope. It is deleted only after the server
//! accepted it; a crash between acceptance and deletion sends it again on
//! the next start (at least once, never lost; the repeated Message-ID lets
//! a mail client spot the duplicate). A message the server rejects for good
//! is kept with `failed_ms` set, for inspection, and never retried.
//!
//! Synchronous. The sender task ([`super::sender`]) owns the delivery side;
//! producers (the notifier, the report scheduler, `pqwatch report --send`)
//! only store messages, each through its own state-database connection.

use crate::state::{StateDb, StateError};
use lettre::Address;
use lettre::address::Envelope;
use rusqlite::{OptionalExtension, params};

/// A stored message, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Queued {
    pub id: i64,
    pub created_ms: i64,
    pub subject: String,
    pub from: String,
    pub to: Vec<String>,
    pub body: Vec<u8>,
    pub attempts: u32,
}

impl Queued {
    /// The envelope as stored; an address that no longer parses is an
    /// error for this message alone.
    pub(crate) fn envelope(&self) -> Result<Envelope, String> {
        let from: Address = self
            .from
            .parse()
            .map_err(|e| format!("stored sender \"{}\": {e}", self.from))?;
        let to = self
            .to
            .iter()
            .map(|a| {
                a.parse::<Address>()
                    .map_err(|e| format!("stored recipient \"{a}\": {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Envelope::new(Some(from), to).map_err(|e| e.to_string())
    }
}

/// Insert a message row on `conn` (also inside another writer's
/// transaction: the report send log queues its mail that way). Returns its
/// row id; the message is due at once.
pub(crate) fn insert(
    conn: &rusqlite::Connection,
    now_ms: i64,
    subject: &str,
    envelope: &Envelope,
    body: &[u8],
) -> rusqlite::Result<i64> {
    let from = envelope.from().map(|a| a.to_string()).unwrap_or_default();
    let to: Vec<String> = envelope.to().iter().map(|a| a.to_string()).collect();
    conn.execute(
        "INSERT INTO mail_queue(created_ms, subject, env_from, env_to, body, next_attempt_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?1)",
        params![now_ms, subject, from, to.join("\n"), body],
    )?;
    Ok(conn.last_insert_rowid())
}

pub(crate) struct MailQueue {
    db: StateDb,
}

impl MailQueue {
    pub(crate) fn new(db: StateDb) -> Self {
        MailQueue { db }
    }

    fn err(&self, e: rusqlite::Error) -> StateError {
        StateError::Sqlite {
            path: self.db.path.clone(),
            source: e,
        }
    }

    /// Store a message; it is due at once. Returns its row id.
    pub(crate) fn push(
        &self,
        now_ms: i64,
        subject: &str,
        envelope: &Envelope,
        body: &[u8],
    ) -> Result<i64, StateError> {
        insert(&self.db.conn, now_ms, subject, envelope, body).map_err(|e| self.err(e))
    }

    /// The oldest pending message due at `now_ms`, skipping ids in `skip`.
    pub(crate) fn next_due(&self, now_ms: i64, skip: &[i64]) -> Result<Option<Queued>, StateError> {
        let mut st = self
            .db
            .conn
            .prepare_cached(
                "SELECT id, created_ms, subject, env_from, env_to, body, attempts FROM mail_queue
                 WHERE failed_ms IS NULL AND next_attempt_ms <= ?1
                 ORDER BY id LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![now_ms, skip.len() as i64 + 1], |r| {
                let to: String = r.get(4)?;
                Ok(Queued {
                    id: r.get(0)?,
                    created_ms: r.get(1)?,
                    subject: r.get(2)?,
                    from: r.get(3)?,
                    to: to.lines().map(str::to_string).collect(),
                    body: r.get(5)?,
                    attempts: r.get::<_, i64>(6)? as u32,
                })
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            let q = row.map_err(|e| self.err(e))?;
            if !skip.contains(&q.id) {
                return Ok(Some(q));
            }
        }
        Ok(None)
    }

    /// When the earliest pending message is due (None: nothing pending).
    pub(crate) fn next_attempt_ms(&self) -> Result<Option<i64>, StateError> {
        self.db
            .conn
            .query_row(
                "SELECT min(next_attempt_ms) FROM mail_queue WHERE failed_ms IS NULL",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Make every pending message due by `now_ms` (at start-up: the
    /// backoff of a previous run should not delay a fixed server).
    pub(crate) fn wake_all(&self, now_ms: i64) -> Result<(), StateError> {
        self.db
            .conn
            .execute(
                "UPDATE mail_queue SET next_attempt_ms = ?1
                 WHERE failed_ms IS NULL AND next_attempt_ms > ?1",
                [now_ms],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The server accepted it: forget it.
    pub(crate) fn sent(&self, id: i64) -> Result<(), StateError> {
        self.db
            .conn
            .execute("DELETE FROM mail_queue WHERE id = ?1", [id])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Count a failed attempt and set when to try again.
    pub(crate) fn retry_at(&self, id: i64, at_ms: i64, error: &str) -> Result<(), StateError> {
        self.db
            .conn
            .execute(
                "UPDATE mail_queue SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3
                 WHERE id = ?1",
                params![id, at_ms, error],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Rejected for good: keep it, never retry it.
    pub(crate) fn give_up(&self, id: i64, now_ms: i64, error: &str) -> Result<(), StateError> {
        self.db
            .conn
            .execute(
                "UPDATE mail_queue SET attempts = attempts + 1, failed_ms = ?2, last_error = ?3
                 WHERE id = ?1",
                params![id, now_ms, error],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Messages waiting to be sent.
    pub(crate) fn pending(&self) -> Result<u64, StateError> {
        self.count("SELECT count(*) FROM mail_queue WHERE failed_ms IS NULL")
    }

    /// Messages given up on.
    #[cfg(test)]
    pub(crate) fn failed(&self) -> Result<u64, StateError> {
        self.count("SELECT count(*) FROM mail_queue WHERE failed_ms IS NOT NULL")
    }

    fn count(&self, sql: &str) -> Result<u64, StateError> {
        self.db
            .conn
            .query_row(sql, [], |r| r.get::<_, i64>(0))
            .optional()
            .map(|n| n.unwrap_or(0) as u64)
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope::new(
            Some("pq@grid.example".parse().unwrap()),
            vec![
                "a@grid.example".parse().unwrap(),
                "b@grid.example".parse().unwrap(),
            ],
        )
        .unwrap()
    }

    #[test]
    fn stored_messages_survive_a_reopen_and_leave_only_when_sent() {
        let dir = tempfile::tempdir().unwrap();
        let q = MailQueue::new(StateDb::open(dir.path()).unwrap());
        let a = q.push(1000, "first", &envelope(), b"raw 1").unwrap();
        let b = q.push(1001, "second", &envelope(), b"raw 2").unwrap();
        assert_eq!(q.next_attempt_ms().unwrap(), Some(1000));
        drop(q);

        let q = MailQueue::new(StateDb::open(dir.path()).unwrap());
        assert_eq!(q.pending().unwrap(), 2);
        let first = q.next_due(5000, &[]).unwrap().unwrap();
        assert_eq!(
            (first.id, first.subject.as_str(), first.body.as_slice()),
            (a, "first", &b"raw 1"[..])
        );
        assert_eq!(first.envelope().unwrap(), envelope());
        assert_eq!(q.next_due(5000, &[a]).unwrap().unwrap().id, b);
        assert_eq!(q.next_due(999, &[]).unwrap(), None, "not due yet");

        q.retry_at(a, 9000, "connection refused").unwrap();
        assert_eq!(q.next_due(5000, &[]).unwrap().unwrap().id, b);
        assert_eq!(q.next_attempt_ms().unwrap(), Some(1001));
        q.sent(b).unwrap();
        assert_eq!(q.next_due(5000, &[]).unwrap(), None);
        let again = q.next_due(9000, &[]).unwrap().unwrap();
        assert_eq!((again.id, again.attempts), (a, 1));

        q.give_up(a, 9500, "550 no such user").unwrap();
        assert_eq!((q.pending().unwrap(), q.failed().unwrap()), (0, 1));
        assert_eq!(q.next_due(i64::MAX, &[]).unwrap(), None);
        assert_eq!(q.next_attempt_ms().unwrap(), None);
    }
}
