//! The InfluxDB sink and its outbox against a fault-injecting HTTP stub:
//! 5xx and 429 (with Retry-After) are retried until the data arrive, 413
//! splits a batch, 400 moves only the bad batch to the dead-letter table,
//! the outbox bound drops the oldest batches (counted) and the sink lives,
//! and what is not delivered at shutdown is replayed by the next sink.
//!
//! The stub is in addition to the real-server tests (pipeline_*.rs,
//! durability.rs); it exists to produce statuses a real server will not
//! produce on demand.

use pqwatch::config::{Api, Durability, Influx};
use pqwatch::metrics::Metrics;
use pqwatch::reading::{MeterMeta, Reading};
use pqwatch::secret::Secret;
use pqwatch::sink::Sink;
use pqwatch::sink::outbox::Outbox;
use pqwatch::state::StateDb;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

type Decide = dyn Fn(usize, &str) -> (u16, String) + Send + Sync;

/// An HTTP server that answers each request with `decide(request_no, body)`
/// and records the bodies it answered 204.
struct Stub {
    url: String,
    accepted: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<usize>>,
    /// Most requests being answered at once.
    peak: Arc<AtomicUsize>,
}

async fn stub(decide: Box<Decide>) -> Stub {
    slow_stub(decide, Duration::ZERO).await
}

/// [`stub`] that takes `delay` over each answer (one task per connection,
/// so concurrent requests wait side by side).
async fn slow_stub(decide: Box<Decide>, delay: Duration) -> Stub {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let requests = Arc::new(Mutex::new(0usize));
    let decide: Arc<Decide> = Arc::from(decide);
    let peak = Arc::new(AtomicUsize::new(0));
    let now = Arc::new(AtomicUsize::new(0));
    let (acc, req, pk) = (accepted.clone(), requests.clone(), peak.clone());
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let (acc, req, decide) = (acc.clone(), req.clone(), decide.clone());
            let (pk, now) = (pk.clone(), now.clone());
            tokio::spawn(async move {
                let mut r = BufReader::new(sock);
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0u8; len];
                    r.read_exact(&mut body).await.unwrap();
                    let body = String::from_utf8(body).unwrap();
                    let n = {
                        let mut g = req.lock().unwrap();
                        *g += 1;
                        *g
                    };
                    let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
                    pk.fetch_max(at_once, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    let (status, extra) = decide(n, &body);
                    if status == 204 {
                        acc.lock().unwrap().push(body);
                    }
                    let msg = "{\"error\":\"stub says no\"}";
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n{extra}\r\n{msg}",
                        msg.len()
                    );
                    if r.get_mut().write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Stub {
        url,
        accepted,
        requests,
        peak,
    }
}

/// Answer the first statuses from `script` in turn, then 204.
fn script(statuses: Vec<(u16, &'static str)>) -> Box<Decide> {
    Box::new(move |n, _| match statuses.get(n - 1) {
        Some((s, extra)) => (*s, extra.to_string()),
        None => (204, String::new()),
    })
}

fn influx(url: &str, batch_size: usize, durability: Durability) -> Influx {
    Influx {
        url: url.to_string(),
        api: Api::V1 {
            database: "pq".into(),
            retention_policy: None,
            username: None,
            password: Secret::default(),
        },
        batch_size,
        flush_interval: Duration::from_millis(50),
        timeout: Duration::from_secs(2),
        gzip: false,
        max_buffered_points: 100_000,
        durability,
        max_outbox_bytes: 1 << 30,
        max_in_flight: 1,
    }
}

fn outbox(dir: &Path) -> Outbox {
    Outbox::new(StateDb::open(dir).unwrap()).unwrap()
}

fn meta() -> Arc<MeterMeta> {
    let tags = BTreeMap::from([
        ("meter".to_string(), "M1".to_string()),
        ("customer".to_string(), "C1".to_string()),
    ]);
    Arc::new(MeterMeta::new("M1", "C1", &tags))
}

fn reading(meta: &Arc<MeterMeta>, ts: i64) -> Reading {
    Reading {
        meter: meta.clone(),
        ts_ms: ts,
        values: vec![("voltage_l1_n".into(), 230.0 + ts as f64)].into(),
    }
}

/// Timestamps of every line the stub accepted, sorted.
fn accepted_ts(s: &Stub) -> Vec<i64> {
    let mut v: Vec<i64> = s
        .accepted
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| {
            b.lines()
                .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    v.sort();
    v
}

async fn wait_until(mut f: impl FnMut() -> bool, limit: Duration) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// Send `ts` readings into a running sink, wait until the stub has `expect`
/// points, then close the input and wait for the sink to finish.
async fn feed(sink: Sink, ts: impl IntoIterator<Item = i64>, s: &Stub, expect: usize) {
    let (tx, rx) = mpsc::channel(1024);
    let task = tokio::spawn(sink.run(rx));
    let m = meta();
    for t in ts {
        tx.send(reading(&m, t)).await.unwrap();
    }
    let ok = wait_until(|| accepted_ts(s).len() >= expect, Duration::from_secs(20)).await;
    drop(tx);
    task.await.unwrap();
    assert!(ok, "stub accepted only {:?}", accepted_ts(s));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_throttling_are_retried_until_the_data_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let s = stub(script(vec![
        (500, ""),
        (503, ""),
        (429, "retry-after: 1\r\n"),
    ]))
    .await;
    let metrics = Arc::new(Metrics::default());
    let sink = Sink::new(
        influx(&s.url, 1000, Durability::Always),
        metrics.clone(),
        Some(outbox(dir.path())),
    )
    .unwrap();
    feed(sink, 1..=5, &s, 5).await;
    assert_eq!(accepted_ts(&s), vec![1, 2, 3, 4, 5], "every point once");
    assert_eq!(
        *s.requests.lock().unwrap(),
        4,
        "three failures, one success"
    );
    assert_eq!(Metrics::get(&metrics.sink.batches_retried), 3);
    assert_eq!(Metrics::get(&metrics.sink.points_written), 5);
    assert_eq!(
        outbox(dir.path()).depth().batches,
        0,
        "acknowledged batches are deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_batch_goes_to_the_dead_letter_table_and_the_rest_arrives() {
    let dir = tempfile::tempdir().unwrap();
    // Reject any body holding the point at ts 2; accept the rest.
    let s = stub(Box::new(|_, body: &str| {
        if body.lines().any(|l| l.ends_with(" 2")) {
            (400, String::new())
        } else {
            (204, String::new())
        }
    }))
    .await;
    let metrics = Arc::new(Metrics::default());
    // One point per batch, so the 400 hits exactly one point.
    let sink = Sink::new(
        influx(&s.url, 1, Durability::Always),
        metrics.clone(),
        Some(outbox(dir.path())),
    )
    .unwrap();
    feed(sink, 1..=4, &s, 3).await;
    assert_eq!(accepted_ts(&s), vec![1, 3, 4]);
    assert_eq!(Metrics::get(&metrics.sink.points_rejected), 1);
    let o = outbox(dir.path());
    assert_eq!(o.depth().batches, 0);
    assert_eq!(o.dead_letters().unwrap(), (1, 1));
    let msg: String = o
        .db()
        .conn
        .query_row("SELECT message FROM dead_letter", [], |r| r.get(0))
        .unwrap();
    assert!(msg.contains("400") && msg.contains("stub says no"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_batches_are_split_until_they_fit() {
    let dir = tempfile::tempdir().unwrap();
    // 413 for any body of more than 2 lines.
    let s = stub(Box::new(|_, body: &str| {
        if body.lines().count() > 2 {
            (413, String::new())
        } else {
            (204, String::new())
        }
    }))
    .await;
    let metrics = Arc::new(Metrics::default());
    let sink = Sink::new(
        influx(&s.url, 1000, Durability::Always),
        metrics.clone(),
        Some(outbox(dir.path())),
    )
    .unwrap();
    feed(sink, 1..=7, &s, 7).await;
    assert_eq!(accepted_ts(&s), (1..=7).collect::<Vec<_>>());
    for body in s.accepted.lock().unwrap().iter() {
        assert!(body.lines().count() <= 2, "{body}");
    }
    assert_eq!(Metrics::get(&metrics.sink.points_rejected), 0);
    assert_eq!(Metrics::get(&metrics.sink.points_written), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_bound_drops_the_oldest_batches_counts_them_and_lives() {
    let dir = tempfile::tempdir().unwrap();
    // A server that is down: bind and close a port so connects are refused.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let metrics = Arc::new(Metrics::default());
    let mut cfg = influx(&dead, 1, Durability::Always);
    // Room for a handful of one-point batches (~60 compressed bytes each).
    cfg.max_outbox_bytes = 600;
    let mut sink = Sink::new(cfg, metrics.clone(), Some(outbox(dir.path()))).unwrap();
    sink.grace = Duration::from_millis(200);
    let (tx, rx) = mpsc::channel(1024);
    let task = tokio::spawn(sink.run(rx));
    let m = meta();
    for ts in 1..=100 {
        tx.send(reading(&m, ts)).await.unwrap();
    }
    assert!(
        wait_until(
            || Metrics::get(&metrics.sink.points_dropped) >= 80,
            Duration::from_secs(10)
        )
        .await,
        "dropped only {}",
        Metrics::get(&metrics.sink.points_dropped)
    );
    assert!(!task.is_finished(), "the sink lives on");
    drop(tx);
    task.await.unwrap();
    let o = outbox(dir.path());
    let kept = o.depth().points;
    let dropped = Metrics::get(&metrics.sink.points_dropped);
    assert_eq!(
        kept + dropped,
        100,
        "every point is either kept or counted as dropped"
    );
    assert!(o.depth().bytes <= 600 + 100, "{:?}", o.depth());
    assert_eq!(
        o.db().counter("points_dropped").unwrap() as u64,
        dropped,
        "the drop count survives restarts"
    );
    // The newest data are the ones kept.
    let newest = o.newest().unwrap().unwrap();
    let body = String::from_utf8(pqwatch::sink::outbox::gunzip(&newest.body).unwrap()).unwrap();
    assert!(body.trim_end().ends_with(" 100"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_durability_keeps_undelivered_data_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let metrics = Arc::new(Metrics::default());
    let mut sink = Sink::new(
        influx(&dead, 10, Durability::Memory),
        metrics.clone(),
        Some(outbox(dir.path())),
    )
    .unwrap();
    sink.grace = Duration::from_millis(200);
    let (tx, rx) = mpsc::channel(1024);
    let task = tokio::spawn(sink.run(rx));
    let m = meta();
    for ts in 1..=30 {
        tx.send(reading(&m, ts)).await.unwrap();
    }
    // While running, "memory" writes nothing to the outbox.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        outbox(dir.path()).depth().batches,
        0,
        "no disk writes while running"
    );
    drop(tx);
    task.await.unwrap();
    assert_eq!(
        outbox(dir.path()).depth().points,
        30,
        "persisted at shutdown"
    );
    assert_eq!(Metrics::get(&metrics.sink.points_dropped), 0);

    // The next start replays them to a live server.
    let s = stub(script(vec![])).await;
    let sink = Sink::new(
        influx(&s.url, 10, Durability::Memory),
        Arc::new(Metrics::default()),
        Some(outbox(dir.path())),
    )
    .unwrap();
    feed(sink, [], &s, 30).await;
    assert_eq!(accepted_ts(&s), (1..=30).collect::<Vec<_>>());
    assert_eq!(outbox(dir.path()).depth().batches, 0);
}

/// 400 one-point batches in a fresh outbox, written while the server was
/// down: more than REPLAY_MAX_BATCHES, so a replay needs several requests.
async fn backlog_of_400(dir: &Path) {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let mut sink = Sink::new(
        influx(&dead, 1, Durability::Always),
        Arc::new(Metrics::default()),
        Some(outbox(dir)),
    )
    .unwrap();
    sink.grace = Duration::from_millis(100);
    let (tx, rx) = mpsc::channel(1024);
    let task = tokio::spawn(sink.run(rx));
    let m = meta();
    for ts in 1..=400 {
        tx.send(reading(&m, ts)).await.unwrap();
    }
    drop(tx);
    task.await.unwrap();
    assert_eq!(outbox(dir).depth().batches, 400);
}

/// A backlog drains through up to `max_in_flight` requests at once, each
/// batch in one request only: every point arrives exactly once, live data
/// among it, and the outbox empties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_drains_through_several_requests_at_once_exactly_once() {
    for max_in_flight in [1usize, 3] {
        let dir = tempfile::tempdir().unwrap();
        backlog_of_400(dir.path()).await;
        let s = slow_stub(script(vec![]), Duration::from_millis(150)).await;
        let mut cfg = influx(&s.url, 1, Durability::Always);
        cfg.max_in_flight = max_in_flight;
        let sink = Sink::new(cfg, Arc::new(Metrics::default()), Some(outbox(dir.path()))).unwrap();
        // Live readings arrive while the backlog drains.
        let live: Vec<i64> = (1001..=1020).collect();
        feed(sink, live.clone(), &s, 400 + live.len()).await;
        let mut want: Vec<i64> = (1..=400).collect();
        want.extend(&live);
        assert_eq!(accepted_ts(&s), want, "every point exactly once");
        assert_eq!(outbox(dir.path()).depth().batches, 0);
        let peak = s.peak.load(Ordering::SeqCst);
        match max_in_flight {
            1 => assert_eq!(peak, 1, "one request at a time"),
            n => assert!(
                (2..=n).contains(&peak),
                "{peak} requests at once, limit {n}"
            ),
        }
    }
}
