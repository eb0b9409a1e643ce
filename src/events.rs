//! The event store: power-quality events in the state database.
//!
//! Every change the rules report is upserted by event id, so the table
//! always holds each event's latest state; open events are loaded at
//! start-up and handed back to the rules, so a restart neither loses an
//! open event nor opens a duplicate. [`Change`] tells callers (the
//! notifier, the InfluxDB writer) whether a change opened, updated or
//! closed an event. An event a reload closed (its meter or customer
//! removed, its rule no longer judged) keeps why in `close_reason`.

use crate::quality::rules::{Event, Kind, State};
use crate::state::{StateDb, StateError};
use rusqlite::{OptionalExtension, params};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Opened,
    Updated,
    Closed,
}

/// An event change, as passed to the notifier.
#[derive(Debug, Clone, PartialEq)]
pub struct EventChange {
    pub change: Change,
    pub event: Event,
}

/// Why an open event was closed by a reload rather than by its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Its meter is no longer in the config.
    MeterRemoved,
    /// Its customer is no longer in the config (the total's events, `*`).
    CustomerRemoved,
    /// Its meter stays, but the new limits no longer judge this kind,
    /// phase or harmonic order (or the contract or suspension it was
    /// judged against is gone).
    LimitsChanged,
}

impl CloseReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CloseReason::MeterRemoved => "meter_removed",
            CloseReason::CustomerRemoved => "customer_removed",
            CloseReason::LimitsChanged => "limits_changed",
        }
    }
}

pub struct EventStore {
    db: StateDb,
}

fn unit_static(u: &str) -> &'static str {
    match u {
        "V" => "V",
        "%" => "%",
        "kW" => "kW",
        "kVA" => "kVA",
        "A" => "A",
        _ => "",
    }
}

fn row_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let kind: String = r.get("kind")?;
    let unit: String = r.get("unit")?;
    Ok(Event {
        id: r.get("id")?,
        meter: r.get("meter")?,
        customer: r.get("customer")?,
        kind: Kind::parse(&kind).unwrap_or(Kind::VoltageHigh),
        phase: r.get("phase")?,
        order: r.get::<_, i64>("harmonic")? as u16,
        state: if r.get::<_, i64>("open")? == 1 {
            State::Open
        } else {
            State::Closed
        },
        start_ms: r.get("start_ms")?,
        end_ms: r.get("end_ms")?,
        value: r.get("value")?,
        peak: r.get("peak")?,
        peak_ms: r.get("peak_ms")?,
        limit: r.get("limit_value")?,
        unit: unit_static(&unit),
        source: r.get("source")?,
    })
}

/// Events that overlap `[from_ms, to_ms)`, oldest first, on any connection.
pub fn between(db: &StateDb, from_ms: i64, to_ms: i64) -> Result<Vec<Event>, StateError> {
    query(
        db,
        "SELECT * FROM events WHERE start_ms < ?2 AND end_ms >= ?1 ORDER BY start_ms",
        rusqlite::params![from_ms, to_ms],
    )
}

/// One customer's events that overlap `[from_ms, to_ms)`, oldest first.
pub fn between_for_customer(
    db: &StateDb,
    customer: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<Event>, StateError> {
    query(
        db,
        "SELECT * FROM events WHERE customer = ?3 AND start_ms < ?2 AND end_ms >= ?1
         ORDER BY start_ms",
        rusqlite::params![from_ms, to_ms, customer],
    )
}

fn query<P: rusqlite::Params>(db: &StateDb, sql: &str, p: P) -> Result<Vec<Event>, StateError> {
    let mut st = db.conn.prepare_cached(sql).map_err(|e| db.err(e))?;
    let rows = st.query_map(p, row_event).map_err(|e| db.err(e))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(|e| db.err(e))
}

impl EventStore {
    pub fn new(db: StateDb) -> Self {
        EventStore { db }
    }

    fn err(&self, e: rusqlite::Error) -> StateError {
        StateError::Sqlite {
            path: self.db.path.clone(),
            source: e,
        }
    }

    /// Store an event's latest state; says whether it opened, changed or closed.
    pub fn upsert(&self, e: &Event, now_ms: i64) -> Result<Change, StateError> {
        self.upsert_with(e, None, now_ms)
    }

    /// Close an open event its rule did not close, keeping why
    /// ([`CloseReason`]).
    pub fn close(&self, e: &Event, reason: CloseReason, now_ms: i64) -> Result<Change, StateError> {
        debug_assert_eq!(e.state, State::Closed);
        self.upsert_with(e, Some(reason), now_ms)
    }

    /// Why an event closed, when it was not its rule ([`EventStore::close`]).
    pub fn close_reason(&self, id: &str) -> Result<Option<String>, StateError> {
        self.db
            .conn
            .query_row("SELECT close_reason FROM events WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map(Option::flatten)
            .map_err(|x| self.err(x))
    }

    /// The open events of one meter (`*` for customers' totals).
    pub fn open_events_of(&self, meter: &str, customer: &str) -> Result<Vec<Event>, StateError> {
        self.query(
            "SELECT * FROM events WHERE open = 1 AND meter = ?1 AND customer = ?2 ORDER BY start_ms",
            [meter, customer],
        )
    }

    fn upsert_with(
        &self,
        e: &Event,
        reason: Option<CloseReason>,
        now_ms: i64,
    ) -> Result<Change, StateError> {
        let prev: Option<i64> = self
            .db
            .conn
            .query_row("SELECT open FROM events WHERE id = ?1", [&e.id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|x| self.err(x))?;
        let open = i64::from(e.state == State::Open);
        self.db
            .conn
            .execute(
                "INSERT INTO events(id, meter, customer, kind, phase, harmonic, open, start_ms, end_ms,
                                    value, peak, peak_ms, limit_value, unit, source, updated_ms,
                                    close_reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
                 ON CONFLICT(id) DO UPDATE SET open = ?7, end_ms = ?9, value = ?10, peak = ?11,
                     peak_ms = ?12, updated_ms = ?16, close_reason = ?17",
                params![
                    e.id,
                    e.meter,
                    e.customer,
                    e.kind.as_str(),
                    e.phase,
                    i64::from(e.order),
                    open,
                    e.start_ms,
                    e.end_ms,
                    e.value,
                    e.peak,
                    e.peak_ms,
                    e.limit,
                    e.unit,
                    e.source,
                    now_ms,
                    reason.map(CloseReason::as_str)
                ],
            )
            .map_err(|x| self.err(x))?;
        Ok(match (prev, e.state) {
            (None, State::Open) => Change::Opened,
            (_, State::Closed) => Change::Closed,
            (Some(_), State::Open) => Change::Updated,
        })
    }

    pub fn open_events(&self) -> Result<Vec<Event>, StateError> {
        self.query("SELECT * FROM events WHERE open = 1 ORDER BY start_ms", [])
    }

    /// Events that overlap `[from_ms, to_ms)`, oldest first (reports, CLI).
    pub fn between(&self, from_ms: i64, to_ms: i64) -> Result<Vec<Event>, StateError> {
        between(&self.db, from_ms, to_ms)
    }

    pub fn recent(&self, open_only: bool, limit: usize) -> Result<Vec<Event>, StateError> {
        let sql = if open_only {
            "SELECT * FROM events WHERE open = 1 ORDER BY start_ms DESC LIMIT ?1"
        } else {
            "SELECT * FROM events ORDER BY start_ms DESC LIMIT ?1"
        };
        self.query(sql, [limit as i64])
    }

    fn query<P: rusqlite::Params>(&self, sql: &str, p: P) -> Result<Vec<Event>, StateError> {
        query(&self.db, sql, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(state: State, end: i64) -> Event {
        Event {
            id: "M1/voltage_high/l1/0/60000".into(),
            meter: "M1".into(),
            customer: "C1".into(),
            kind: Kind::VoltageHigh,
            phase: "l1".into(),
            order: 0,
            state,
            start_ms: 60_000,
            end_ms: end,
            value: 251.0,
            peak: 253.5,
            peak_ms: 61_000,
            limit: 246.0,
            unit: "V",
            source: "GB/T 12325-2008".into(),
        }
    }

    #[test]
    fn upsert_reports_open_update_close_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = EventStore::new(StateDb::open(dir.path()).unwrap());
        assert_eq!(
            s.upsert(&ev(State::Open, 180_000), 1).unwrap(),
            Change::Opened
        );
        assert_eq!(
            s.upsert(&ev(State::Open, 240_000), 2).unwrap(),
            Change::Updated
        );
        let s = EventStore::new(StateDb::open(dir.path()).unwrap());
        let open = s.open_events().unwrap();
        assert_eq!(open, vec![ev(State::Open, 240_000)]);
        assert_eq!(
            s.upsert(&ev(State::Closed, 300_000), 3).unwrap(),
            Change::Closed
        );
        assert!(s.open_events().unwrap().is_empty());
        assert_eq!(s.between(0, 70_000).unwrap().len(), 1);
        assert_eq!(s.between(400_000, 500_000).unwrap().len(), 0);
        assert_eq!(s.recent(false, 10).unwrap()[0].end_ms, 300_000);
    }

    #[test]
    fn a_customers_events_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        let s = EventStore::new(StateDb::open(dir.path()).unwrap());
        let mut other = ev(State::Closed, 120_000);
        other.id = "M2/voltage_high/l1/0/60000".into();
        other.customer = "C2".into();
        s.upsert(&ev(State::Closed, 120_000), 1).unwrap();
        s.upsert(&other, 1).unwrap();
        assert_eq!(between(&db, 0, 200_000).unwrap().len(), 2);
        let c1 = between_for_customer(&db, "C1", 0, 200_000).unwrap();
        assert_eq!(c1, vec![ev(State::Closed, 120_000)]);
        assert!(
            between_for_customer(&db, "C1", 130_000, 200_000)
                .unwrap()
                .is_empty()
        );
    }
}
