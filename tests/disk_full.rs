//! The outbox on a disk that fills up: a small tmpfs mounted as the state
//! directory, filled with a filler file until the kernel says ENOSPC, and
//! freed again. Mounting needs root (CAP_SYS_ADMIN); where it is not
//! permitted the tests say so and return without checking anything.
//!
//! 1. The sink alone against an HTTP stub that records every body it
//!    acknowledges: no acknowledged batch is sent twice, the depth never
//!    wraps, what exceeds `max_buffered_points` is counted (and the count
//!    persisted once the disk allows), and once space returns new batches
//!    reach the outbox again.
//! 2. `pqwatch run` against VictoriaMetrics: while the disk is full
//!    readings keep arriving (sent from memory), `/readyz` is 503 naming the
//!    outbox, the log says so once; when space returns `/readyz` is 200
//!    again and new data reach the outbox.

mod common;
mod e2e;

use common::{TestConfig, VictoriaMetrics, free_port, write_file};
use e2e::{Running, Sim, now_ms, pqwatch_cmd, status_json};
use pqwatch::config::{Api, Durability, Influx};
use pqwatch::metrics::Metrics;
use pqwatch::reading::{MeterMeta, Reading};
use pqwatch::secret::Secret;
use pqwatch::sink::Sink;
use pqwatch::sink::outbox::Outbox;
use pqwatch::state::StateDb;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

// ---------------------------------------------------------------------------
// A small tmpfs
// ---------------------------------------------------------------------------

/// A tmpfs of `size` mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (after saying why) when this process may not mount.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::Builder::new()
            .prefix("pqwatch-tmpfs-")
            .tempdir()
            .expect("temp dir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write a filler file until the file system is full.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.path().join("filler")).expect("create filler");
        let chunk = vec![0x5au8; 4096];
        loop {
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = f.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).expect("remove filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

// ---------------------------------------------------------------------------
// 1. The sink against a recording stub
// ---------------------------------------------------------------------------

/// An HTTP server that answers 503 while `down`, else 204, recording every
/// body it acknowledged.
struct Stub {
    url: String,
    down: Arc<AtomicBool>,
    accepted: Arc<Mutex<Vec<String>>>,
}

async fn stub() -> Stub {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let down = Arc::new(AtomicBool::new(true));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let (d, acc) = (down.clone(), accepted.clone());
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let (d, acc) = (d.clone(), acc.clone());
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
                    let status = if d.load(Relaxed) { 503 } else { 204 };
                    if status == 204 {
                        acc.lock().unwrap().push(String::from_utf8(body).unwrap());
                    }
                    let resp = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                    if r.get_mut().write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Stub {
        url,
        down,
        accepted,
    }
}

/// Timestamps of every line the stub acknowledged, sorted (duplicates kept).
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

fn duplicates(ts: &[i64]) -> Vec<i64> {
    ts.windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect()
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

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Samples the queue-depth gauge in the background and keeps the maximum:
/// a depth that wrapped below zero shows as ~1.8e19.
fn watch_depth(metrics: Arc<Metrics>) -> Arc<AtomicU64> {
    let max = Arc::new(AtomicU64::new(0));
    let m = max.clone();
    tokio::spawn(async move {
        loop {
            m.fetch_max(Metrics::get(&metrics.sink.outbox_batches), Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_never_resends_an_acknowledged_batch_and_counts_every_loss() {
    let Some(fs) = Tmpfs::mount("2m") else { return };
    let s = stub().await;
    let metrics = Arc::new(Metrics::default());
    let cfg = Influx {
        url: s.url.clone(),
        api: Api::V1 {
            database: "pq".into(),
            retention_policy: None,
            username: None,
            password: Secret::default(),
        },
        // One point per batch: every reading is a batch of its own.
        batch_size: 1,
        flush_interval: Duration::from_millis(20),
        timeout: Duration::from_secs(2),
        gzip: false,
        max_buffered_points: 20,
        durability: Durability::Always,
        max_outbox_bytes: 1 << 30,
        // The default: acknowledgements arrive out of order while the disk fails.
        max_in_flight: pqwatch::config::DEFAULT_MAX_IN_FLIGHT,
    };
    let mut sink = Sink::new(
        cfg,
        metrics.clone(),
        Some(Outbox::new(StateDb::open(fs.path()).unwrap()).unwrap()),
    )
    .unwrap();
    sink.grace = Duration::from_secs(3);
    let max_depth = watch_depth(metrics.clone());
    let (tx, rx) = mpsc::channel(1024);
    let task = tokio::spawn(sink.run(rx));
    let m = meta();
    let mut next = 1i64;
    let mut feed = async |n: i64| {
        for _ in 0..n {
            tx.send(reading(&m, next)).await.unwrap();
            next += 1;
        }
        next - 1
    };

    // The server is down: ten batches wait in the outbox.
    let sent = feed(10).await;
    wait_until("10 batches in the outbox", Duration::from_secs(10), || {
        Metrics::get(&metrics.sink.outbox_batches) == 10
    })
    .await;

    // The disk fills up; the server comes back. The ten stored batches are
    // acknowledged but cannot be deleted; new readings cannot be stored and
    // are sent from memory.
    fs.fill();
    s.down.store(false, Relaxed);
    let sent = sent.max(feed(10).await);
    wait_until(
        "every reading acknowledged while the disk is full",
        Duration::from_secs(15),
        || accepted_ts(&s).len() >= sent as usize,
    )
    .await;
    // Long enough for a re-send of the same batch to happen if it would.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = accepted_ts(&s);
    assert_eq!(duplicates(&got), Vec::<i64>::new(), "re-sent: {got:?}");
    assert_eq!(got, (1..=sent).collect::<Vec<_>>());
    assert!(
        Metrics::get(&metrics.sink.outbox_unwritable_since_ms) > 0,
        "the metrics say the outbox is not writable"
    );
    assert!(Metrics::get(&metrics.sink.outbox_write_errors) > 0);
    assert_eq!(
        Metrics::get(&metrics.sink.outbox_batches),
        0,
        "nothing waits"
    );

    // The server goes down again, the disk is still full: memory holds 20
    // points, the rest of 60 readings is dropped and counted.
    s.down.store(true, Relaxed);
    let before = sent;
    feed(60).await;
    wait_until("drops counted", Duration::from_secs(10), || {
        Metrics::get(&metrics.sink.points_dropped) >= 40
    })
    .await;
    let dropped = Metrics::get(&metrics.sink.points_dropped);
    assert!(
        Metrics::get(&metrics.sink.outbox_points) <= 20 + 1,
        "memory bound: {}",
        Metrics::get(&metrics.sink.outbox_points)
    );

    // Space returns: the next batch reaches the outbox, the ones held in
    // memory follow, the drop count is persisted.
    fs.free();
    let sent = feed(5).await;
    wait_until("the outbox writable again", Duration::from_secs(10), || {
        Metrics::get(&metrics.sink.outbox_unwritable_since_ms) == 0
    })
    .await;
    // The first stored batch ends the streak; the held ones follow it into
    // the outbox one commit each, so the depth is polled, not read once.
    wait_until(
        "held batches back in the outbox",
        Duration::from_secs(10),
        || {
            Outbox::new(StateDb::open_readonly(fs.path()).unwrap())
                .unwrap()
                .depth()
                .points
                >= 20
        },
    )
    .await;
    {
        let ro = StateDb::open_readonly(fs.path()).unwrap();
        let o = Outbox::new(StateDb::open_readonly(fs.path()).unwrap()).unwrap();
        assert_eq!(
            ro.counter("points_dropped").unwrap() as u64,
            dropped,
            "the drop count reached the disk"
        );
        assert!(
            o.depth().points >= 20,
            "held and new batches are in the outbox: {:?}",
            o.depth()
        );
    }

    // The server comes back: everything not dropped arrives, once.
    s.down.store(false, Relaxed);
    let delivered_before = before as u64;
    wait_until("the rest delivered", Duration::from_secs(15), || {
        accepted_ts(&s).len() as u64 + dropped >= sent as u64
    })
    .await;
    drop(tx);
    task.await.unwrap();
    let got = accepted_ts(&s);
    assert_eq!(duplicates(&got), Vec::<i64>::new(), "re-sent: {got:?}");
    assert_eq!(
        got.len() as u64 + dropped,
        sent as u64,
        "every reading delivered or counted as dropped ({delivered_before} before the drops)"
    );
    assert_eq!(
        *got.last().unwrap(),
        sent,
        "the newest reading is delivered"
    );
    let max = max_depth.load(Relaxed);
    assert!(max <= 100, "queue depth gauge reached {max} (wrapped?)");
    let o = Outbox::new(StateDb::open(fs.path()).unwrap()).unwrap();
    assert_eq!(o.depth().batches, 0, "{:?}", o.depth());
    assert_eq!(
        o.db().counter("points_dropped").unwrap() as u64,
        dropped,
        "counted once"
    );
}

// ---------------------------------------------------------------------------
// 2. The daemon against VictoriaMetrics
// ---------------------------------------------------------------------------

const MATCH: &str = r#"{__name__="meter_voltage_l1_n",customer="C-DISK"}"#;

/// A GET on a throwaway current-thread runtime in its own thread (the
/// test's runtime keeps serving the simulator meanwhile).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let url = format!("http://127.0.0.1:{port}{path}");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let c = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .ok()?;
            let r = c.get(&url).send().await.ok()?;
            let code = r.status().as_u16();
            Some((code, r.text().await.ok()?))
        })
    })
    .join()
    .ok()?
}

async fn wait_http(
    port: u16,
    path: &str,
    limit: Duration,
    what: &str,
    bin: &Running,
    pred: impl Fn(u16, &str) -> bool,
) -> String {
    let end = Instant::now() + limit;
    loop {
        let got = http_get(port, path);
        if let Some((c, b)) = &got
            && pred(*c, b)
        {
            return b.clone();
        }
        if Instant::now() >= end {
            panic!(
                "{what}: not within {limit:?}; last {path}: {got:?}\n--- stderr ---\n{}",
                bin.stderr()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn gauge(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_on_a_full_disk_keeps_sending_is_unready_and_recovers() {
    let Some(fs) = Tmpfs::mount("4m") else { return };
    let mut vm = VictoriaMetrics::start().expect("VictoriaMetrics");
    let dir = tempfile::tempdir().unwrap();
    let state: PathBuf = fs.path().join("state");
    let gw = free_port();
    let http = free_port();
    let text = TestConfig::fast(&vm.url())
        .state_dir(&state)
        .reports("enabled", false)
        .push(&format!(
            r#"
[[customers]]
id = "C-DISK"

[[meters]]
id = "DISK-1"
customer = "C-DISK"
address = "127.0.0.1:{gw}"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400
fields = ["voltage_l1_n", "current_l1", "frequency"]
"#
        ))
        .to_string();
    let path = write_file(dir.path(), "pqwatch.toml", &text).unwrap();
    let cfg = pqwatch::config::from_str(&text, Path::new("/nonexistent")).unwrap();
    let sim = Sim::start(&cfg, "").await;
    let mut cmd = pqwatch_cmd(&["run", "-c", path.to_str().unwrap()]);
    cmd.env("PQWATCH__HTTP__LISTEN", format!("127.0.0.1:{http}"));
    let mut bin = Running::spawn(cmd, dir.path());
    wait_http(
        http,
        "/readyz",
        Duration::from_secs(15),
        "ready",
        &bin,
        |c, _| c == 200,
    )
    .await;
    vm.wait_for_series(MATCH, |s| !s.is_empty(), Duration::from_secs(10))
        .await
        .into_result()
        .expect("first readings in VictoriaMetrics");

    // The disk fills up.
    fs.fill();
    let full_ms = now_ms();
    let ready = wait_http(
        http,
        "/readyz",
        Duration::from_secs(10),
        "/readyz 503 naming the outbox",
        &bin,
        |c, b| c == 503 && b.contains("\"outbox\""),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&ready).unwrap();
    let outbox = &v["checks"]["outbox"];
    assert_eq!(outbox["ok"], false, "{v}");
    assert!(
        outbox["error"].as_str().unwrap().contains("full"),
        "the reason: {v}"
    );
    // Readings polled well after the disk filled still arrive (from memory).
    let after = full_ms + 2000;
    vm.wait_for_series(
        MATCH,
        |s| s.iter().any(|s| s.timestamps.iter().any(|t| *t > after)),
        Duration::from_secs(15),
    )
    .await
    .into_result()
    .unwrap_or_else(|e| panic!("{e}\n--- stderr ---\n{}", bin.stderr()));
    let metrics = wait_http(
        http,
        "/metrics",
        Duration::from_secs(5),
        "metrics",
        &bin,
        |c, _| c == 200,
    )
    .await;
    assert_eq!(gauge(&metrics, "pqwatch_outbox_write_failing"), 1.0);
    assert!(
        gauge(&metrics, "pqwatch_outbox_batches") < 1000.0,
        "{metrics}"
    );
    assert_eq!(
        bin.stderr().matches("OUTBOX NOT WRITABLE").count(),
        1,
        "logged once per streak:\n{}",
        bin.stderr()
    );
    assert!(bin.exited().is_none(), "still running:\n{}", bin.stderr());

    // Space returns: ready again; with the database down, new batches
    // pile up in the outbox.
    fs.free();
    wait_http(
        http,
        "/readyz",
        Duration::from_secs(10),
        "/readyz 200 once space returned",
        &bin,
        |c, _| c == 200,
    )
    .await;
    assert!(bin.stderr().contains("the outbox is writable again"));
    vm.stop().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = tokio::task::block_in_place(|| status_json(&path));
        if let Ok(v) = &v
            && v["outbox"]["batches"].as_u64().unwrap_or(0) >= 3
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new batches do not reach the outbox: {v:?}\n--- stderr ---\n{}",
            bin.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bin.signal("TERM");
    let status = tokio::task::block_in_place(|| bin.wait_exit(Duration::from_secs(20)));
    sim.stop().await;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", bin.stderr());
}
