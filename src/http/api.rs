//! The JSON of `/readyz`, `/api/meters` and `/api/events`.
//!
//! Each document is built by a plain function from values the handler
//! gathered (counters, the latest readings, rows of the state database),
//! so the rules (when a meter is stale, when readiness fails) are tested
//! without a server. The one query here, [`query_events`], runs on the
//! handler's blocking thread against its own read-only connection.

use super::Settings;
use crate::metrics::Metrics;
use crate::reading::Reading;
use crate::state::{StateDb, StateError};
use serde_json::{Value, json};
use std::collections::HashMap;

/// `/api/events` returns at most this many events, whatever `limit` says.
pub(crate) const MAX_EVENTS: usize = 1000;
/// … and this many without a `limit`.
pub(crate) const DEFAULT_EVENTS: usize = 100;

/// A meter is stale when its latest reading is older than this many of
/// its poll intervals.
pub(crate) const STALE_INTERVALS: i64 = 3;

/// Local time for people, as `pqwatch events` prints it.
fn local(ms: i64, tz: &jiff::tz::TimeZone) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| {
            t.to_zoned_datetime(tz.clone())
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// /readyz
// ---------------------------------------------------------------------------

/// What the InfluxDB check looks at: the sink's own record of its writes,
/// never a request of ours.
#[derive(Debug, Clone, Default)]
pub(crate) struct Writes {
    /// `[influxdb] max_outbox_bytes`; `None` without `[influxdb]`.
    pub max_outbox_bytes: Option<u64>,
    pub outbox_bytes: u64,
    pub last_ok_ms: u64,
    pub last_error_ms: u64,
    pub last_error: String,
    pub failures: u64,
    /// Why InfluxDB refuses our writes (401/403/404), "" when it does not.
    pub refused: String,
    pub now_ms: i64,
}

impl Writes {
    pub(crate) fn from_metrics(m: &Metrics, max_outbox_bytes: Option<u64>, now_ms: i64) -> Writes {
        Writes {
            max_outbox_bytes,
            outbox_bytes: Metrics::get(&m.sink.outbox_bytes),
            last_ok_ms: Metrics::get(&m.sink.influx_last_ok_ms),
            last_error_ms: Metrics::get(&m.sink.influx_last_error_ms),
            last_error: m.sink.influx_last_error(),
            failures: Metrics::get(&m.sink.influx_failures),
            refused: m.sink.influx_refused_reason(),
            now_ms,
        }
    }
}

/// InfluxDB reachable (no failed send since the last acknowledged one) or
/// the outbox below its bound: while the outbox has room nothing is lost,
/// so an outage alone does not make the daemon unready. A server that
/// refuses our writes (401/403/404) does: that lasts until an operator
/// fixes a setting, so the detail gives the reason. Not configured: passes,
/// saying so.
pub(crate) fn influx_check(w: &Writes) -> (bool, Value) {
    let Some(max) = w.max_outbox_bytes else {
        return (true, json!({ "ok": true, "status": "not configured" }));
    };
    let age =
        |ms: u64| (ms > 0).then(|| (w.now_ms.max(0) as u64).saturating_sub(ms) as f64 / 1000.0);
    let reachable = w.failures == 0;
    let below = w.outbox_bytes < max;
    let refused = w.failures > 0 && !w.refused.is_empty();
    let ok = !refused && (reachable || below);
    let status = match (reachable, w.last_ok_ms > 0) {
        _ if refused => "refused",
        (true, true) => "writing",
        (true, false) => "no write yet",
        (false, _) => "failing",
    };
    let mut d = json!({
        "ok": ok,
        "status": status,
        "consecutive_failures": w.failures,
        "outbox_bytes": w.outbox_bytes,
        "max_outbox_bytes": max,
        "outbox_below_bound": below,
        "last_success_ms": (w.last_ok_ms > 0).then_some(w.last_ok_ms),
        "last_success_age_s": age(w.last_ok_ms),
    });
    if refused {
        d["reason"] = json!(w.refused);
    }
    if w.last_error_ms > 0 {
        d["last_error"] = json!(w.last_error);
        d["last_error_ms"] = json!(w.last_error_ms);
        d["last_error_age_s"] = json!(age(w.last_error_ms));
    }
    (ok, d)
}

/// The outbox takes writes. While it does not (disk full), batches are
/// held in memory and the oldest are dropped beyond the memory bound:
/// the promise is at risk, so the daemon is not ready.
pub(crate) fn outbox_check(m: &Metrics, now_ms: i64) -> (bool, Value) {
    match Metrics::get(&m.sink.outbox_unwritable_since_ms) {
        0 => (true, json!({ "ok": true, "status": "writable" })),
        since => (
            false,
            json!({
                "ok": false,
                "status": "not writable: batches are held in memory",
                "error": m.sink.outbox_last_error(),
                "since_ms": since,
                "since_age_s": (now_ms.max(0) as u64).saturating_sub(since) as f64 / 1000.0,
                "write_errors": Metrics::get(&m.sink.outbox_write_errors),
                "points_dropped": Metrics::get(&m.sink.points_dropped),
            }),
        ),
    }
}

/// The state database answers a read-only query (its schema version).
pub(crate) fn state_db_check(db: Result<i64, StateError>) -> (bool, Value) {
    match db {
        Ok(v) => (true, json!({ "ok": true, "schema_version": v })),
        Err(e) => (false, json!({ "ok": false, "error": e.to_string() })),
    }
}

/// The `/readyz` document: ready when every check passed.
pub(crate) fn readiness(checks: Vec<(&'static str, (bool, Value))>) -> (bool, Value) {
    let ready = checks.iter().all(|(_, (ok, _))| *ok);
    let map: serde_json::Map<String, Value> = checks
        .into_iter()
        .map(|(name, (_, detail))| (name.to_string(), detail))
        .collect();
    (
        ready,
        json!({ "status": if ready { "ready" } else { "not ready" }, "checks": map }),
    )
}

// ---------------------------------------------------------------------------
// /api/meters
// ---------------------------------------------------------------------------

/// "ok", "stale" (latest reading older than [`STALE_INTERVALS`] intervals)
/// or "never_polled" (no reading yet: not polled, or never answered).
pub(crate) fn meter_status(last_ms: Option<i64>, interval_ms: i64, now_ms: i64) -> &'static str {
    match last_ms {
        None => "never_polled",
        Some(t) if now_ms - t > STALE_INTERVALS * interval_ms => "stale",
        Some(_) => "ok",
    }
}

/// Every meter of `cfg`, in config order, with its latest reading.
/// Part of the `/api/meters` body: the JSON objects of `meters`, each
/// preceded by a comma unless it is the array's first (`first`). The
/// handler streams the array in such chunks, so a scrape of 10,000 meters
/// holds a chunk, not a tree of every meter's values (that was +146 MB of
/// peak RSS, BENCHMARKS.md).
pub(crate) fn meters_json_chunk(
    cfg: &Settings,
    meters: &[std::sync::Arc<crate::config::Meter>],
    first: bool,
    latest: &HashMap<String, Reading>,
    metrics: &Metrics,
    now_ms: i64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(meters.len() * 2048);
    for (i, m) in meters.iter().enumerate() {
        if i > 0 || !first {
            out.push(b',');
        }
        let v = meter_json(cfg, m, latest.get(&m.id), metrics, now_ms);
        serde_json::to_writer(&mut out, &v).expect("a JSON value serialises into a Vec");
    }
    out
}

fn meter_json(
    cfg: &Settings,
    m: &crate::config::Meter,
    r: Option<&Reading>,
    metrics: &Metrics,
    now_ms: i64,
) -> Value {
    let interval_ms = m.interval.as_millis() as i64;
    let last = r.map(|r| r.ts_ms);
    let values: serde_json::Map<String, Value> = r
        .map(|r| {
            r.values
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect()
        })
        .unwrap_or_default();
    let stats = metrics.polling.meter_stats(&m.id);
    let n = |f: fn(&crate::modbus::stats::MeterStats) -> &std::sync::atomic::AtomicU64| {
        stats.as_deref().map_or(0, |s| Metrics::get(f(s)))
    };
    json!({
        "id": m.id,
        "customer": m.customer,
        "gateway": m.address,
        "unit": m.unit,
        "profile": m.profile.name,
        "interval_s": m.interval.as_secs_f64(),
        "status": meter_status(last, interval_ms, now_ms),
        "last_reading_ms": last,
        "last_reading": last.map(|t| local(t, &cfg.timezone)),
        "age_s": last.map(|t| (now_ms - t).max(0) as f64 / 1000.0),
        "values": values,
        "polls": {
            "ok": n(|s| &s.polls_ok),
            "partial": n(|s| &s.polls_partial),
            "failed": n(|s| &s.polls_failed),
            "backed_off": n(|s| &s.polls_backed_off),
        },
        "fail_streak": n(|s| &s.fail_streak),
        "last_poll_ms": Some(n(|s| &s.last_poll_ms)).filter(|t| *t > 0),
    })
}

// ---------------------------------------------------------------------------
// /api/events
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateFilter {
    Open,
    Closed,
    All,
}

impl StateFilter {
    pub(crate) fn parse(s: &str) -> Option<StateFilter> {
        match s {
            "open" => Some(StateFilter::Open),
            "closed" => Some(StateFilter::Closed),
            "all" => Some(StateFilter::All),
            _ => None,
        }
    }
}

/// A validated `/api/events` query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventQuery {
    pub state: StateFilter,
    /// 1 … [`MAX_EVENTS`].
    pub limit: usize,
    pub meter: Option<String>,
}

impl EventQuery {
    /// From the query parameters; `Err` names the bad one.
    pub(crate) fn new(
        state: Option<&str>,
        limit: Option<usize>,
        meter: Option<String>,
    ) -> Result<EventQuery, String> {
        let state = match state {
            None => StateFilter::All,
            Some(s) => StateFilter::parse(s)
                .ok_or_else(|| format!("state: \"{s}\" is not one of open, closed, all"))?,
        };
        Ok(EventQuery {
            state,
            limit: limit.unwrap_or(DEFAULT_EVENTS).clamp(1, MAX_EVENTS),
            meter: meter.filter(|m| !m.is_empty()),
        })
    }
}

/// The events `q` selects, newest first, as `pqwatch events --json` prints
/// them (times local to `tz`).
pub(crate) fn query_events(
    db: &StateDb,
    q: &EventQuery,
    tz: &jiff::tz::TimeZone,
) -> Result<Value, StateError> {
    let mut sql = String::from(
        "SELECT id, meter, customer, kind, phase, harmonic, open, start_ms, end_ms,
                value, peak, peak_ms, limit_value, unit, source, close_reason
         FROM events WHERE 1",
    );
    match q.state {
        StateFilter::Open => sql.push_str(" AND open = 1"),
        StateFilter::Closed => sql.push_str(" AND open = 0"),
        StateFilter::All => {}
    }
    if q.meter.is_some() {
        sql.push_str(" AND meter = ?2");
    } else {
        sql.push_str(" AND ?2 IS NULL");
    }
    sql.push_str(" ORDER BY start_ms DESC LIMIT ?1");
    let mut st = db.conn.prepare(&sql).map_err(|e| db.err(e))?;
    let rows = st
        .query_map(rusqlite::params![q.limit as i64, q.meter], |r| {
            let start_ms: i64 = r.get("start_ms")?;
            let end_ms: i64 = r.get("end_ms")?;
            let peak_ms: i64 = r.get("peak_ms")?;
            Ok(json!({
                "id": r.get::<_, String>("id")?,
                "meter": r.get::<_, String>("meter")?,
                "customer": r.get::<_, String>("customer")?,
                "kind": r.get::<_, String>("kind")?,
                "phase": r.get::<_, String>("phase")?,
                "order": r.get::<_, i64>("harmonic")?,
                "open": r.get::<_, i64>("open")? == 1,
                "start": local(start_ms, tz),
                "end": local(end_ms, tz),
                "start_ms": start_ms,
                "end_ms": end_ms,
                "duration_s": (end_ms - start_ms) / 1000,
                "value": r.get::<_, f64>("value")?,
                "peak": r.get::<_, f64>("peak")?,
                "peak_time": local(peak_ms, tz),
                "limit": r.get::<_, f64>("limit_value")?,
                "unit": r.get::<_, String>("unit")?,
                "source": r.get::<_, String>("source")?,
                "close_reason": r.get::<_, Option<String>>("close_reason")?,
            }))
        })
        .map_err(|e| db.err(e))?;
    let list = rows.collect::<Result<Vec<_>, _>>().map_err(|e| db.err(e))?;
    Ok(Value::Array(list))
}

/// Open events per kind (`/metrics`): one indexed query.
pub(crate) fn open_events_by_kind(
    db: &StateDb,
) -> Result<std::collections::BTreeMap<String, u64>, StateError> {
    let mut st = db
        .conn
        .prepare("SELECT kind, count(*) FROM events WHERE open = 1 GROUP BY kind")
        .map_err(|e| db.err(e))?;
    let rows = st
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .map_err(|e| db.err(e))?;
    rows.collect::<Result<_, _>>().map_err(|e| db.err(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_status_is_stale_after_three_intervals() {
        assert_eq!(meter_status(None, 5_000, 100_000), "never_polled");
        assert_eq!(meter_status(Some(85_000), 5_000, 100_000), "ok");
        assert_eq!(meter_status(Some(84_999), 5_000, 100_000), "stale");
    }

    fn writes(failures: u64, outbox: u64) -> Writes {
        Writes {
            max_outbox_bytes: Some(1000),
            outbox_bytes: outbox,
            last_ok_ms: 50_000,
            last_error_ms: if failures > 0 { 60_000 } else { 0 },
            last_error: if failures > 0 {
                "transport: connection refused".into()
            } else {
                String::new()
            },
            failures,
            refused: String::new(),
            now_ms: 70_000,
        }
    }

    #[test]
    fn a_refusing_server_is_not_ready_whatever_the_outbox() {
        let mut w = writes(1, 10);
        w.refused =
            "InfluxDB refuses our writes (HTTP 401: unauthorized); check influxdb.token".into();
        let (ok, d) = influx_check(&w);
        assert!(!ok, "{d}");
        assert_eq!(d["status"], "refused");
        assert!(d["reason"].as_str().unwrap().contains("influxdb.token"));
    }

    #[test]
    fn influx_outage_is_ready_while_the_outbox_has_room() {
        let (ok, d) = influx_check(&writes(0, 5_000));
        assert!(ok, "reachable: ready even over the bound");
        assert_eq!(d["status"], "writing");
        assert_eq!(d["last_success_age_s"], 20.0);

        let (ok, d) = influx_check(&writes(3, 999));
        assert!(ok, "failing but below the bound");
        assert_eq!(d["status"], "failing");
        assert_eq!(d["last_error"], "transport: connection refused");
        assert_eq!(d["consecutive_failures"], 3);

        let (ok, d) = influx_check(&writes(3, 1000));
        assert!(!ok, "failing and full");
        assert_eq!(d["outbox_below_bound"], false);

        let none = Writes::default();
        let (ok, d) = influx_check(&none);
        assert!(ok);
        assert_eq!(d["status"], "not configured");
    }

    #[test]
    fn readiness_fails_when_any_check_does() {
        let (ready, d) = readiness(vec![
            ("config", (true, json!({"ok": true}))),
            ("state_db", (false, json!({"ok": false, "error": "x"}))),
        ]);
        assert!(!ready);
        assert_eq!(d["status"], "not ready");
        assert_eq!(d["checks"]["state_db"]["error"], "x");
    }

    #[test]
    fn event_queries_are_bounded() {
        let q = EventQuery::new(Some("open"), Some(1_000_000), Some("M1".into())).unwrap();
        assert_eq!(q.limit, MAX_EVENTS);
        assert_eq!(q.state, StateFilter::Open);
        assert_eq!(
            EventQuery::new(None, None, None).unwrap().limit,
            DEFAULT_EVENTS
        );
        assert_eq!(EventQuery::new(None, Some(0), None).unwrap().limit, 1);
        assert!(EventQuery::new(Some("opne"), None, None).is_err());
    }

    #[test]
    fn events_come_newest_first_filtered_by_state_and_meter() {
        use crate::quality::rules::{Event, Kind, State};
        let dir = tempfile::tempdir().unwrap();
        let store = crate::events::EventStore::new(StateDb::open(dir.path()).unwrap());
        let ev = |meter: &str, start: i64, state: State| Event {
            id: format!("{meter}/{start}"),
            meter: meter.into(),
            customer: "C1".into(),
            kind: Kind::VoltageHigh,
            phase: "l1".into(),
            order: 0,
            state,
            start_ms: start,
            end_ms: start + 60_000,
            value: 251.0,
            peak: 253.5,
            peak_ms: start + 1_000,
            limit: 246.0,
            unit: "V",
            source: "GB/T 12325-2008".into(),
        };
        store.upsert(&ev("M1", 1_000, State::Closed), 1).unwrap();
        store.upsert(&ev("M1", 2_000, State::Open), 1).unwrap();
        store.upsert(&ev("M2", 3_000, State::Open), 1).unwrap();
        let db = StateDb::open_readonly(dir.path()).unwrap();
        let tz = jiff::tz::TimeZone::UTC;
        let q = |s, m: Option<&str>| {
            let q = EventQuery::new(Some(s), Some(10), m.map(String::from)).unwrap();
            let v = query_events(&db, &q, &tz).unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(q("all", None), ["M2/3000", "M1/2000", "M1/1000"]);
        assert_eq!(q("open", None), ["M2/3000", "M1/2000"]);
        assert_eq!(q("closed", None), ["M1/1000"]);
        assert_eq!(q("open", Some("M1")), ["M1/2000"]);
        let one = query_events(&db, &EventQuery::new(None, Some(1), None).unwrap(), &tz).unwrap();
        assert_eq!(one.as_array().unwrap().len(), 1);
        assert_eq!(one[0]["duration_s"], 60);
        assert_eq!(one[0]["start"], "1970-01-01 00:00:03");
        let by_kind = open_events_by_kind(&db).unwrap();
        assert_eq!(by_kind.get("voltage_high"), Some(&2));
    }
}
