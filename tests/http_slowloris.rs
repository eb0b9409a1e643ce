//! The HTTP endpoint under a slowloris: 100 raw TCP sockets that each send
//! a request's headers one byte every 2 s (and reconnect when closed)
//! must not keep `/metrics` or `/healthz` from answering. The daemon runs
//! in-process with the simulator and VictoriaMetrics; the slow clients are
//! plain sockets, the fast one reqwest. Every wait polls under a deadline.

mod common;
mod e2e;

use common::{TestConfig, VictoriaMetrics};
use e2e::{Daemon, Sim};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

const SLOW_CLIENTS: usize = 100;
const BYTE_EVERY: Duration = Duration::from_secs(2);

/// One slow client: connect, trickle a request's headers, reconnect when
/// the server closes the socket. Counts connects and closes seen.
async fn slow_client(
    addr: SocketAddr,
    connects: Arc<AtomicU64>,
    closed: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let request = b"GET /metrics HTTP/1.1\r\nHost: pqwatch\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    while !stop.is_cancelled() {
        let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        connects.fetch_add(1, Ordering::Relaxed);
        for b in request.iter().cycle() {
            if s.write_all(&[*b]).await.is_err() {
                closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(BYTE_EVERY) => {}
            }
        }
    }
}

/// GET `path` with a fresh connection, retried until `limit` passes.
/// Returns the status and how long it took, or the last error.
async fn get_within(base: &str, path: &str, limit: Duration) -> Result<(u16, Duration), String> {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(limit.saturating_sub(start.elapsed()))
            .pool_max_idle_per_host(0)
            .build()
            .expect("reqwest client");
        match client.get(format!("{base}{path}")).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                match r.text().await {
                    Ok(_) => return Ok((status, start.elapsed())),
                    Err(e) => last = format!("body: {e}"),
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{path}: no answer within {limit:?}: {last}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_slow_sockets_do_not_starve_metrics_or_healthz() -> anyhow::Result<()> {
    e2e::init_tracing();
    let vm = VictoriaMetrics::start()?;
    let port = common::free_port();
    let cfg = e2e::config(
        &TestConfig::fast(&vm.url())
            .push(&format!(
                r#"
[[customers]]
id = "C1"

[[meters]]
id = "M1"
customer = "C1"
address = "127.0.0.1:{port}"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400
"#
            ))
            .to_string(),
    );
    let sim = Sim::start(&cfg, "").await;
    let d = Daemon::start(cfg);
    assert!(
        e2e::wait_until(Duration::from_secs(10), || d
            .handles
            .http_addr
            .get()
            .is_some())
        .await,
        "the HTTP endpoint did not start"
    );
    let addr = *d.handles.http_addr.get().expect("bound");
    let base = format!("http://{addr}");
    get_within(&base, "/healthz", Duration::from_secs(5))
        .await
        .map_err(anyhow::Error::msg)?;

    let stop = CancellationToken::new();
    let connects = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let slow: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| {
            tokio::spawn(slow_client(
                addr,
                connects.clone(),
                closed.clone(),
                stop.clone(),
            ))
        })
        .collect();
    assert!(
        e2e::wait_until(Duration::from_secs(10), || {
            connects.load(Ordering::Relaxed) >= SLOW_CLIENTS as u64
        })
        .await,
        "the slow clients did not connect"
    );

    // For ~16 s, across several header deadlines and byte intervals, a
    // scrape and a liveness probe answer within 3 s each, every time.
    let mut worst = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(16);
    let mut rounds = 0;
    while Instant::now() < until {
        for path in ["/metrics", "/healthz"] {
            let (status, took) = get_within(&base, path, Duration::from_secs(3))
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "round {rounds}: {e} ({} slow connects, {} closed)",
                        connects.load(Ordering::Relaxed),
                        closed.load(Ordering::Relaxed)
                    )
                })?;
            assert_eq!(status, 200, "{path}");
            worst = worst.max(took);
        }
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "{rounds} rounds, worst answer {worst:?}; slow clients: {} connects, {} closed",
        connects.load(Ordering::Relaxed),
        closed.load(Ordering::Relaxed)
    );
    // The slow ones were dropped (header deadline or eviction), and counted.
    assert!(closed.load(Ordering::Relaxed) >= SLOW_CLIENTS as u64 / 2);
    let (_, text) = {
        let r = reqwest::Client::builder()
            .no_proxy()
            .build()?
            .get(format!("{base}/metrics"))
            .send()
            .await?;
        (r.status(), r.text().await?)
    };
    let dropped: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("pqwatch_http_connections_dropped_total "))
        .expect("pqwatch_http_connections_dropped_total in /metrics")
        .trim()
        .parse()?;
    assert!(dropped >= SLOW_CLIENTS as f64 / 2.0, "{dropped}");

    stop.cancel();
    for t in slow {
        let _ = t.await;
    }
    d.stop().await;
    sim.stop().await;
    Ok(())
}
