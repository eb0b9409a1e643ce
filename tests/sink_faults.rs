//! The InfluxDB sink against a fault-injecting HTTP stub: 5xx and 429 are
//! retried until the data arrive, a 400 drops only the bad batch, a dead
//! server loses nothing within the bound, and the bound drops the oldest
//! batch (counted) rather than growing without limit.
//!
//! The stub is in addition to the real-server tests (pipeline_*.rs); it
//! exists to produce the statuses a real server will not produce on demand.

use pqwatch::config::{Api, Influx};
use pqwatch::metrics::Metrics;
use pqwatch::reading::{MeterMeta, Reading};
use pqwatch::secret::Secret;
use pqwatch::sink::Sink;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Answers each request with the next scripted status (then 204), and
/// records the bodies of the requests it answered 204.
struct Stub {
    url: String,
    accepted: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<usize>>,
}

async fn stub(script: Vec<(u16, &'static str)>) -> Stub {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let requests = Arc::new(Mutex::new(0usize));
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    let (acc, req) = (accepted.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let (acc, req, script) = (acc.clone(), req.clone(), script.clone());
            tokio::spawn(async move {
                let mut r = BufReader::new(sock);
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    // Request line and headers.
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
                    *req.lock().unwrap() += 1;
                    let (status, extra) = script.lock().unwrap().pop_front().unwrap_or((204, ""));
                    if status == 204 {
                        acc.lock().unwrap().push(String::from_utf8(body).unwrap());
                    }
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 17\r\n{extra}\r\n{{\"error\":\"stub\"}}"
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
    }
}

fn influx(url: &str, batch_size: usize, max_buffered_points: usize) -> Influx {
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
        max_buffered_points,
    }
}

fn reading(meta: &Arc<MeterMeta>, ts: i64) -> Reading {
    Reading {
        meter: meta.clone(),
        ts_ms: ts,
        values: vec![("voltage_l1_n".into(), 230.0 + ts as f64)],
    }
}

fn meta() -> Arc<MeterMeta> {
    let tags = BTreeMap::from([
        ("meter".to_string(), "M1".to_string()),
        ("customer".to_string(), "C1".to_string()),
    ]);
    Arc::new(MeterMeta::new("M1", "C1", &tags))
}

/// Timestamps of every line the stub accepted, in arrival order.
fn accepted_ts(s: &Stub) -> Vec<i64> {
    s.accepted
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| {
            b.lines()
                .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
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

#[tokio::test]
async fn server_errors_and_throttling_are_retried_until_the_data_arrive() {
    let s = stub(vec![(500, ""), (503, ""), (429, "retry-after: 1\r\n")]).await;
    let metrics = Arc::new(Metrics::default());
    let sink = Sink::new(influx(&s.url, 1000, 100_000), metrics.clone()).unwrap();
    let (tx, rx) = mpsc::channel(16);
    let task = tokio::spawn(sink.run(rx));
    let m = meta();
    for ts in 1..=5 {
        tx.send(reading(&m, ts)).await.unwrap();
    }
    assert!(
        wait_until(|| accepted_ts(&s).len() == 5, Duration::from_secs(15)).await,
        "accepted {:?}",
        accepted_ts(&s)
    );
    drop(tx);
    task.await.unwrap();
    assert_eq!(
        accepted_ts(&s),
        vec![1, 2, 3, 4, 5],
        "every point once, in order"
    );
    assert_eq!(
        *s.requests.lock().unwrap(),
        4,
        "three failures, one success"
    );
    assert_eq!(Metrics::get(&metrics.batches_failed), 3);
    assert_eq!(Metrics::get(&metrics.points_written), 5);
    assert_eq!(Metrics::get(&metrics.points_dropped), 0);
}

#[tokio::test]
async fn a_rejected_batch_does_not_block_the_ones_behind_it() {
    let s = stub(vec![(400, "")]).await;
    let metrics = Arc::new(Metrics::default());
    // One point per batch, so the 400 hits exactly the first point.
    let sink = Sink::new(influx(&s.url, 1, 100_000), metrics.clone()).unwrap();
    let (tx, rx) = mpsc::channel(16);
    let task = tokio::spawn(sink.run(rx));
    let m = meta();
    for ts in 1..=3 {
        tx.send(reading(&m, ts)).await.unwrap();
    }
    drop(tx);
    task.await.unwrap();
    assert_eq!(accepted_ts(&s), vec![2, 3]);
    assert_eq!(Metrics::get(&metrics.points_rejected), 1);
    assert_eq!(Metrics::get(&metrics.points_dropped), 0);
}

#[tokio::test]
async fn the_memory_bound_drops_the_oldest_batches_and_counts_them() {
    // A server that is down: bind and close a port so connects are refused.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let metrics = Arc::new(Metrics::default());
    let mut sink = Sink::new(influx(&dead, 10, 50), metrics.clone()).unwrap();
    sink.grace = Duration::from_millis(300);
    let (tx, rx) = mpsc::channel(1024);
    let task = tokio::spawn(sink.run(rx));
    let m = meta();
    for ts in 1..=200 {
        tx.send(reading(&m, ts)).await.unwrap();
    }
    // While still running: at most 50 buffered plus the batch in flight.
    assert!(
        wait_until(
            || Metrics::get(&metrics.points_dropped) >= 140,
            Duration::from_secs(5)
        )
        .await,
        "dropped only {}",
        Metrics::get(&metrics.points_dropped)
    );
    drop(tx);
    task.await.unwrap();
    // 200 points in batches of 10 against a bound of 50 points: at most 50
    // (plus the batch in flight) are kept; everything else was counted as
    // dropped, including what was still buffered when the grace period ended.
    assert_eq!(Metrics::get(&metrics.points_dropped), 200);
    assert_eq!(Metrics::get(&metrics.points_written), 0);
}
