//! The ledger and the report send log in the state database.
//!
//! [`LedgerStore::append`] stores one partial [`DayLedger`] per meter and
//! minute as it comes (so a restart loses at most the minute in progress);
//! `LedgerStore::compact` merges a meter-day's rows into one (merging is
//! exact, see `ledger`), which the watch task does every hour of rows and
//! for every finished day. Readers merge whatever rows they find, so they
//! never care whether a day was compacted yet.
//!
//! The send log ([`SendLog`]) holds one row per (customer, period) whose
//! report was put in the mail queue; the row and the queued message are
//! written in one transaction, so a report is queued exactly once whatever
//! the restarts (delivery is then the mail queue's business).
//!
//! Synchronous; each user owns its own connection.

use super::ledger::DayLedger;
use crate::state::{StateDb, StateError};
use rusqlite::{OptionalExtension, params};
use std::collections::BTreeMap;

pub struct LedgerStore {
    db: StateDb,
}

impl LedgerStore {
    pub fn new(db: StateDb) -> Self {
        LedgerStore { db }
    }

    /// The merged ledger of one key for days in `[from_day, to_day)`.
    pub(crate) fn read_days(
        &self,
        key: &str,
        from_day: &str,
        to_day: &str,
    ) -> Result<BTreeMap<String, DayLedger>, StateError> {
        let (mut l, _) = read(&self.db, &[key], from_day, to_day)?;
        Ok(l.remove(key).unwrap_or_default())
    }

    /// Append partial ledgers in one transaction.
    pub fn append<'a>(
        &mut self,
        rows: impl IntoIterator<Item = (&'a str, &'a str, &'a DayLedger)>,
    ) -> Result<usize, StateError> {
        let StateDb { conn, path } = &mut self.db;
        let e = crate::state::sqlite_err(path);
        let tx = conn.transaction().map_err(e)?;
        let mut n = 0;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO ledger(meter, day, seq, data) VALUES (?1, ?2,
                       (SELECT coalesce(max(seq), 0) + 1 FROM ledger WHERE meter = ?1 AND day = ?2),
                     ?3)",
                )
                .map_err(e)?;
            for (meter, day, d) in rows {
                st.execute(params![meter, day, d.encode()]).map_err(e)?;
                n += 1;
            }
        }
        tx.commit().map_err(e)?;
        Ok(n)
    }

    /// Merge a meter-day's rows into one. Returns the rows it replaced.
    pub(crate) fn compact(&mut self, meter: &str, day: &str) -> Result<usize, StateError> {
        let StateDb { conn, path } = &mut self.db;
        let e = crate::state::sqlite_err(path);
        let tx = conn.transaction().map_err(e)?;
        let (merged, n) = {
            let mut st = tx
                .prepare_cached("SELECT data FROM ledger WHERE meter = ?1 AND day = ?2")
                .map_err(e)?;
            let mut rows = st.query(params![meter, day]).map_err(e)?;
            let mut merged = DayLedger::default();
            let mut n = 0;
            while let Some(r) = rows.next().map_err(e)? {
                let b: Vec<u8> = r.get(0).map_err(e)?;
                match DayLedger::decode(&b) {
                    Ok(d) => merged.merge(&d),
                    // Keep what cannot be read rather than delete it.
                    Err(e) => {
                        tracing::error!(%meter, %day, error = %e, "ledger row unreadable; day not compacted");
                        return Ok(0);
                    }
                }
                n += 1;
            }
            (merged, n)
        };
        if n <= 1 {
            return Ok(0);
        }
        tx.execute(
            "DELETE FROM ledger WHERE meter = ?1 AND day = ?2",
            params![meter, day],
        )
        .map_err(e)?;
        tx.execute(
            "INSERT INTO ledger(meter, day, seq, data) VALUES (?1, ?2, 1, ?3)",
            params![meter, day, merged.encode()],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(n)
    }

    /// Compact every meter-day before `day` that has more than one row.
    pub(crate) fn compact_before(&mut self, day: &str) -> Result<usize, StateError> {
        let todo: Vec<(String, String)> = {
            let mut st = self
                .db
                .conn
                .prepare(
                    "SELECT meter, day FROM ledger WHERE day < ?1
                     GROUP BY meter, day HAVING count(*) > 1",
                )
                .map_err(|e| self.db.err(e))?;
            st.query_map([day], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| self.db.err(e))?
                .collect::<Result<_, _>>()
                .map_err(|e| self.db.err(e))?
        };
        let mut n = 0;
        for (m, d) in &todo {
            n += self.compact(m, d)?;
        }
        Ok(n)
    }

    /// Delete the days before `day` (retention).
    pub(crate) fn prune_before(&mut self, day: &str) -> Result<usize, StateError> {
        self.db
            .conn
            .execute("DELETE FROM ledger WHERE day < ?1", [day])
            .map_err(|e| self.db.err(e))
    }
}

/// meter id → local day ("YYYY-MM-DD") → merged ledger.
pub(crate) type Ledgers = BTreeMap<String, BTreeMap<String, DayLedger>>;

/// Read the ledger of `meters` for days in `[from_day, to_day)`: meter →
/// day → merged ledger. Rows that cannot be decoded are skipped and
/// counted in the second value.
pub fn read(
    db: &StateDb,
    meters: &[&str],
    from_day: &str,
    to_day: &str,
) -> Result<(Ledgers, usize), StateError> {
    let mut out = Ledgers::new();
    let mut bad = 0;
    let mut st = db
        .conn
        .prepare_cached(
            "SELECT day, data FROM ledger WHERE meter = ?1 AND day >= ?2 AND day < ?3 ORDER BY day, seq",
        )
        .map_err(|e| db.err(e))?;
    for m in meters {
        let mut rows = st
            .query(params![m, from_day, to_day])
            .map_err(|e| db.err(e))?;
        let days = out.entry(m.to_string()).or_default();
        while let Some(r) = rows.next().map_err(|e| db.err(e))? {
            let day: String = r.get(0).map_err(|e| db.err(e))?;
            let b: Vec<u8> = r.get(1).map_err(|e| db.err(e))?;
            match DayLedger::decode(&b) {
                Ok(d) => days.entry(day).or_default().merge(&d),
                Err(e) => {
                    tracing::error!(meter = %m, %day, error = %e, "ledger row unreadable; left out of the report");
                    bad += 1;
                }
            }
        }
    }
    Ok((out, bad))
}

/// The first instant reports are kept for (the database's migration to
/// schema 5, or its creation).
pub(crate) fn reports_since_ms(db: &StateDb) -> Result<i64, StateError> {
    Ok(db
        .meta("reports_since_ms")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// One report put in the mail queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub(crate) customer: String,
    pub(crate) period: String,
    pub(crate) from_day: String,
    pub(crate) to_day: String,
    pub(crate) queued_ms: i64,
    pub(crate) mail_id: Option<i64>,
    pub recipients: Vec<String>,
    pub subject: String,
}

/// The report send log (exactly once per customer and period).
pub struct SendLog;

impl SendLog {
    pub fn get(db: &StateDb, customer: &str, period: &str) -> Result<Option<Logged>, StateError> {
        db.conn
            .query_row(
                "SELECT customer, period, from_day, to_day, queued_ms, mail_id, recipients, subject
                 FROM report_log WHERE customer = ?1 AND period = ?2",
                params![customer, period],
                row_logged,
            )
            .optional()
            .map_err(|e| db.err(e))
    }

    pub fn list(db: &StateDb, limit: usize) -> Result<Vec<Logged>, StateError> {
        let mut st = db
            .conn
            .prepare(
                "SELECT customer, period, from_day, to_day, queued_ms, mail_id, recipients, subject
                 FROM report_log ORDER BY queued_ms DESC LIMIT ?1",
            )
            .map_err(|e| db.err(e))?;
        st.query_map([limit as i64], row_logged)
            .map_err(|e| db.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| db.err(e))
    }

    /// Queue a report's message and log it, in one transaction. With
    /// `replace` false, a period already logged is left alone and false is
    /// returned (the scheduler's exactly-once); with `replace` true (an
    /// operator's `pqwatch report --send`) the message is queued again and
    /// the log row updated.
    pub(crate) fn queue(
        db: &mut StateDb,
        now_ms: i64,
        entry: &Logged,
        envelope: &lettre::address::Envelope,
        body: &[u8],
        replace: bool,
    ) -> Result<bool, StateError> {
        let StateDb { conn, path } = db;
        let e = crate::state::sqlite_err(path);
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
        let exists: bool = tx
            .query_row(
                "SELECT 1 FROM report_log WHERE customer = ?1 AND period = ?2",
                params![entry.customer, entry.period],
                |_| Ok(true),
            )
            .optional()
            .map_err(e)?
            .unwrap_or(false);
        if exists && !replace {
            return Ok(false);
        }
        let mail_id =
            crate::mail::queue::insert(&tx, now_ms, &entry.subject, envelope, body).map_err(e)?;
        tx.execute(
            "INSERT INTO report_log(customer, period, from_day, to_day, queued_ms, mail_id, recipients, subject)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(customer, period) DO UPDATE SET
               from_day = ?3, to_day = ?4, queued_ms = ?5, mail_id = ?6, recipients = ?7, subject = ?8",
            params![
                entry.customer,
                entry.period,
                entry.from_day,
                entry.to_day,
                now_ms,
                mail_id,
                entry.recipients.join("\n"),
                entry.subject
            ],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(true)
    }
}

fn row_logged(r: &rusqlite::Row<'_>) -> rusqlite::Result<Logged> {
    let to: String = r.get(6)?;
    Ok(Logged {
        customer: r.get(0)?,
        period: r.get(1)?,
        from_day: r.get(2)?,
        to_day: r.get(3)?,
        queued_ms: r.get(4)?,
        mail_id: r.get(5)?,
        recipients: to.lines().map(str::to_string).collect(),
        subject: r.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ledger::VoltageDay;

    fn minute(v: f64, at: i64) -> DayLedger {
        let mut d = DayLedger {
            window_ms: 60_000,
            ..Default::default()
        };
        let mut vd = VoltageDay::default();
        vd.add(v, at, 235.4, 198.0);
        d.voltage.insert("l1".into(), vd);
        d
    }

    #[test]
    fn appended_minutes_read_back_merged_before_and_after_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = LedgerStore::new(StateDb::open(dir.path()).unwrap());
        let a = minute(240.0, 0);
        let b = minute(230.0, 60_000);
        let c = minute(190.0, 120_000);
        s.append([("m1", "2026-10-01", &a), ("m1", "2026-10-01", &b)])
            .unwrap();
        s.append([("m1", "2026-10-01", &c), ("m2", "2026-10-02", &a)])
            .unwrap();
        drop(s);
        // A reopened database (a restart) still has every minute.
        let db = StateDb::open(dir.path()).unwrap();
        let (got, bad) = read(&db, &["m1", "m2"], "2026-10-01", "2026-10-03").unwrap();
        assert_eq!(bad, 0);
        let v = &got["m1"]["2026-10-01"].voltage["l1"];
        assert_eq!((v.monitored, v.above, v.below), (3, 1, 1));
        assert_eq!(got["m2"].len(), 1);
        let before = got["m1"]["2026-10-01"].clone();

        let mut s = LedgerStore::new(db);
        assert_eq!(s.compact_before("2026-10-02").unwrap(), 3);
        assert_eq!(s.compact("m1", "2026-10-01").unwrap(), 0, "already one row");
        let db = StateDb::open(dir.path()).unwrap();
        let rows: i64 = db
            .conn
            .query_row("SELECT count(*) FROM ledger WHERE meter = 'm1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(rows, 1);
        let (got, _) = read(&db, &["m1"], "2026-10-01", "2026-10-02").unwrap();
        assert_eq!(got["m1"]["2026-10-01"], before);
        // The end day is exclusive.
        let (got, _) = read(&db, &["m2"], "2026-10-01", "2026-10-02").unwrap();
        assert!(got["m2"].is_empty());
        let mut s = LedgerStore::new(db);
        assert_eq!(s.prune_before("2026-10-02").unwrap(), 1);
    }

    #[test]
    fn a_report_is_queued_once_per_customer_and_period() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(dir.path()).unwrap();
        assert!(reports_since_ms(&db).unwrap() > 1_700_000_000_000);
        let env = lettre::address::Envelope::new(
            Some("pq@grid.example".parse().unwrap()),
            vec!["boss@factory.example".parse().unwrap()],
        )
        .unwrap();
        let entry = Logged {
            customer: "c1".into(),
            period: "2026-10".into(),
            from_day: "2026-10-01".into(),
            to_day: "2026-11-01".into(),
            queued_ms: 0,
            mail_id: None,
            recipients: vec!["boss@factory.example".into()],
            subject: "report".into(),
        };
        assert!(SendLog::queue(&mut db, 1000, &entry, &env, b"m1", false).unwrap());
        assert!(!SendLog::queue(&mut db, 2000, &entry, &env, b"m2", false).unwrap());
        let queued: i64 = db
            .conn
            .query_row("SELECT count(*) FROM mail_queue", [], |r| r.get(0))
            .unwrap();
        assert_eq!(queued, 1, "the second attempt queued nothing");
        let got = SendLog::get(&db, "c1", "2026-10").unwrap().unwrap();
        assert_eq!((got.queued_ms, got.recipients.len()), (1000, 1));
        // An operator's resend queues it again.
        assert!(SendLog::queue(&mut db, 3000, &entry, &env, b"m3", true).unwrap());
        let got = SendLog::get(&db, "c1", "2026-10").unwrap().unwrap();
        assert_eq!(got.queued_ms, 3000);
        assert_eq!(SendLog::list(&db, 10).unwrap().len(), 1);
    }
}
