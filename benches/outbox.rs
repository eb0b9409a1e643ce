//! Benchmark of the durable store-and-forward path: `Sink`, SQLite `Outbox`
//! and a real VictoriaMetrics on loopback (started by the test harness,
//! `tests/common/mod.rs`, on a free port in a temp dir).
//!
//! Run: `cargo bench --bench outbox` (release build; ~6 min on 2 idle cores).
//! Results and their interpretation are in `BENCHMARKS.md`; this run's
//! summary is also written to `target/bench-outbox.md`.
//!
//! Sections (`PQWATCH_BENCH_SECTIONS`, default all of them):
//!
//! * `commit`: batch shape (raw and gzip bytes/point, encode+gzip cost) and
//!   **commit alone**: `Outbox::push` of pre-compressed 5000-point batches,
//!   one fsync'd commit each as the sink does, no network.
//! * `feed`: **commit + send**: 1000 meters × 60 float fields (tags
//!   meter/customer, 5 s grid) fed into a real `Sink` (durability "always",
//!   batch_size 5000, gzip, v2 API) as fast as the channel takes them;
//!   points/s from the first send until `points_written` reaches the total
//!   and the outbox is empty; stored bytes/point at the peak depth.
//! * `drain`: **backlog drain** of an outbox pre-filled with `Outbox::push`
//!   (real line encoder, `outbox::gzip`, 5000-point batches): N minutes of a
//!   1000-meter fleet × the SDM630's 72 fields at 5 s, drained by a `Sink`
//!   with no input (input open) until empty; then VictoriaMetrics' sample
//!   count (PromQL `count_over_time`) must equal what was pushed, and three
//!   series are compared sample by sample.
//! * `hour`: the same for the full hour (51.84 M points), `PQWATCH_BENCH_HOUR_RUNS`
//!   times (default 3; 1 against a schema without the created_ms index).
//! * `wan`: the `drain` backlog drained through [`Link`], a loopback proxy
//!   adding `PQWATCH_BENCH_WAN_MS` (30) ms to every request, with 1, 2 and
//!   the default `max_in_flight` requests outstanding.
//! * `slow`: live data (`PQWATCH_BENCH_SLOW_METERS` (100) meters × 72
//!   fields every 5 s, for `PQWATCH_BENCH_SLOW_SECS` (160) s) through a
//!   link adding 2.5 s to every request: the outbox depth and its oldest
//!   batch's age over time, with 1 and the default `max_in_flight`.
//! * `diag`: where the time goes: the `min(created_ms)` scan every
//!   `Outbox::delete` runs; the SQLite side of a drain alone; the HTTP +
//!   VictoriaMetrics side alone (`Writer::write`, 1/2/4 in flight, 5000 and
//!   20000-point batches); and, against a schema older than v4 only,
//!   what-ifs that change no code in src/: an index on `outbox(created_ms)`
//!   created in the copied database.
//!
//! Every measured run also reports CPU seconds of this process, of the
//! VictoriaMetrics process, and of everything else on the machine (from
//! /proc/stat), so interference from other work shows.
//!
//! Knobs (environment): PQWATCH_BENCH_REPS (3), PQWATCH_BENCH_METERS (1000),
//! PQWATCH_BENCH_FEED_INTERVALS (60 = 5 min), PQWATCH_BENCH_DRAIN_MINUTES
//! (15), PQWATCH_BENCH_HOUR_RUNS (3 with schema v4's index on
//! outbox(created_ms), else 1), PQWATCH_BENCH_HTTP_BATCHES (400),
//! PQWATCH_BENCH_SECTIONS (commit,feed,drain,hour,diag; wan and slow only
//! when named), PQWATCH_BENCH_LOG
//! (tracing filter, default warn).

#[path = "../tests/common/mod.rs"]
mod common;

use anyhow::{Context, anyhow, bail, ensure};
use bytes::Bytes;
use common::VictoriaMetrics;
use futures::StreamExt as _;
use pqwatch::config::{Api, Durability, Influx};
use pqwatch::metrics::Metrics;
use pqwatch::reading::{MeterMeta, Reading};
use pqwatch::secret::Secret;
use pqwatch::sink::line::{self, Dialect};
use pqwatch::sink::outbox::{self, Outbox};
use pqwatch::sink::{Sink, Writer};
use pqwatch::state::{self, StateDb};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// 2025-01-01T00:00:00Z: a fixed historical grid (the harness's
/// VictoriaMetrics keeps 100 years).
const T0_MS: i64 = 1_735_689_600_000;
const STEP_MS: i64 = 5_000;
const BATCH: usize = 5_000;
/// The daemon's channel capacity (src/app.rs).
const CHANNEL: usize = 8192;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------
// Synthetic fleet
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Kind {
    Level(f64),
    PowerFactor,
    Angle,
    Energy,
}

fn kind(name: &str) -> Kind {
    if name.starts_with("energy") {
        Kind::Energy
    } else if name.starts_with("thd") {
        Kind::Level(3.0)
    } else if name.starts_with("power_factor") {
        Kind::PowerFactor
    } else if name.starts_with("phase_angle") {
        Kind::Angle
    } else if name == "frequency" {
        Kind::Level(50.0)
    } else if name.starts_with("voltage") && (name.ends_with("_n") || name.contains("_ln_")) {
        Kind::Level(230.0)
    } else if name.starts_with("voltage") {
        Kind::Level(400.0)
    } else if name.starts_with("current") {
        Kind::Level(40.0)
    } else {
        Kind::Level(9_000.0) // powers, W / var / VA
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Deterministic value of field `f` of meter `m` at interval `k`, shaped
/// like what the daemon writes: an f32 register widened to f64 (so most
/// values print with 10–17 significant digits).
fn value(kind: Kind, m: usize, f: usize, k: usize) -> f64 {
    let h = splitmix(((m as u64) << 40) ^ ((f as u64) << 24) ^ k as u64);
    let n = (h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0; // [-1, 1)
    let v = match kind {
        Kind::Level(base) => base * (1.0 + 0.02 * n),
        Kind::PowerFactor => 0.95 + 0.04 * n,
        Kind::Angle => 15.0 * (1.0 + 0.5 * n),
        Kind::Energy => 10_000.0 + m as f64 * 37.0 + f as f64 * 3.0 + k as f64 * 0.0139,
    };
    f64::from(v as f32)
}

struct Fleet {
    metas: Vec<Arc<MeterMeta>>,
    fields: Vec<Arc<str>>,
    kinds: Vec<Kind>,
}

impl Fleet {
    fn new(meters: usize, fields: &[&str]) -> Self {
        let metas = (0..meters)
            .map(|m| {
                let id = format!("M{:04}", m + 1);
                let customer = format!("C{:03}", m / 10 + 1);
                let tags = BTreeMap::from([
                    ("meter".to_string(), id.clone()),
                    ("customer".to_string(), customer.clone()),
                ]);
                Arc::new(MeterMeta::new(&id, &customer, &tags))
            })
            .collect();
        Fleet {
            metas,
            fields: fields.iter().map(|f| Arc::from(*f)).collect(),
            kinds: fields.iter().map(|f| kind(f)).collect(),
        }
    }

    fn meters(&self) -> usize {
        self.metas.len()
    }

    /// Reading number `i` in send order: interval-major, meter-minor.
    fn reading(&self, i: usize) -> Reading {
        let (k, m) = (i / self.meters(), i % self.meters());
        Reading {
            meter: self.metas[m].clone(),
            ts_ms: T0_MS + k as i64 * STEP_MS,
            values: (0..self.fields.len())
                .map(|f| (self.fields[f].clone(), value(self.kinds[f], m, f, k)))
                .collect(),
        }
    }

    /// Readings per sealed batch: the sink seals once a batch holds at
    /// least `batch` points, i.e. after this many whole readings.
    fn readings_per_batch(&self, batch: usize) -> usize {
        batch.div_ceil(self.fields.len())
    }
}

/// A sealed batch as the sink builds it (line encoder + outbox::gzip).
struct Built {
    created_ms: i64,
    points: usize,
    raw_len: usize,
    body: Vec<u8>,
}

fn build_batch(fleet: &Fleet, readings: std::ops::Range<usize>) -> Built {
    let mut raw = String::with_capacity(64 * 1024);
    let mut points = 0;
    let mut last_ts = T0_MS;
    for i in readings {
        let r = fleet.reading(i);
        last_ts = r.ts_ms;
        points += line::encode(&r, Dialect::V2, &mut raw);
    }
    Built {
        created_ms: last_ts,
        points,
        raw_len: raw.len(),
        body: outbox::gzip(raw.as_bytes()),
    }
}

/// Batches `range` of a fleet's reading stream, built on two threads.
fn build_batches(
    fleet: &Fleet,
    total_readings: usize,
    range: std::ops::Range<usize>,
) -> Vec<Built> {
    let rpb = fleet.readings_per_batch(BATCH);
    let one = |b: usize| build_batch(fleet, b * rpb..((b + 1) * rpb).min(total_readings));
    let mid = range.start + (range.end - range.start) / 2;
    std::thread::scope(|s| {
        let h = s.spawn(|| (mid..range.end).map(one).collect::<Vec<_>>());
        let mut v: Vec<Built> = (range.start..mid).map(one).collect();
        v.extend(h.join().expect("builder thread"));
        v
    })
}

// ---------------------------------------------------------------------------
// Measurement helpers
// ---------------------------------------------------------------------------

fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    let rest = &s[s.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
    ticks / clk_tck()
}

/// The pid of the VictoriaMetrics listening on `port` (the harness keeps
/// its child private; find it by its command line).
fn vm_pid(port: u16) -> Option<u32> {
    let needle = format!("-httpListenAddr=127.0.0.1:{port}");
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline"))
            && cmd.split(|&b| b == 0).any(|a| a == needle.as_bytes())
        {
            return Some(pid);
        }
    }
    None
}

/// Busy CPU seconds of the whole machine (all processes, all namespaces),
/// from the `cpu` line of /proc/stat: to see whether anything else competed.
fn machine_busy_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return f64::NAN;
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest* are in user)
    let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v.get(7).copied().unwrap_or(0.0);
    busy / clk_tck()
}

struct Cpu {
    vm_pid: u32,
    me0: f64,
    vm0: f64,
    all0: f64,
}

impl Cpu {
    fn start(vm: &VictoriaMetrics) -> anyhow::Result<Self> {
        let vm_pid = vm_pid(vm.port()).context("find the VictoriaMetrics pid")?;
        Ok(Cpu {
            vm_pid,
            me0: cpu_secs(std::process::id()),
            vm0: cpu_secs(vm_pid),
            all0: machine_busy_secs(),
        })
    }
    /// (this process, VictoriaMetrics) CPU seconds since start; logs what
    /// other processes used meanwhile (interference).
    fn stop(&self) -> (f64, f64) {
        let me = cpu_secs(std::process::id()) - self.me0;
        let vm = cpu_secs(self.vm_pid) - self.vm0;
        let other = machine_busy_secs() - self.all0 - me - vm;
        *OTHER_CPU.lock().unwrap() += other.max(0.0);
        (me, vm)
    }
}

/// CPU seconds used by processes other than this one and VictoriaMetrics
/// during the measured runs since the last `take_other_cpu`.
static OTHER_CPU: std::sync::Mutex<f64> = std::sync::Mutex::new(0.0);

fn take_other_cpu() -> f64 {
    std::mem::replace(&mut *OTHER_CPU.lock().unwrap(), 0.0)
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

fn fmt_stats(v: &[f64], unit: &str) -> String {
    let (med, min, max) = stats(v);
    format!(
        "**{}** {unit} (min {}, max {}; n={})",
        human(med),
        human(min),
        human(max),
        v.len()
    )
}

fn human(x: f64) -> String {
    if x.abs() >= 100.0 {
        let s = format!("{x:.0}");
        // thousands separators
        let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn influx(url: String) -> Influx {
    Influx {
        url,
        api: Api::V2 {
            org: "pqwatch".into(),
            bucket: "bench".into(),
            token: Secret::default(),
        },
        batch_size: BATCH,
        flush_interval: Duration::from_secs(1),
        timeout: Duration::from_secs(60),
        gzip: true,
        max_buffered_points: 50_000_000,
        durability: Durability::Always,
        max_outbox_bytes: 1 << 40,
        max_in_flight: 1,
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("http client")
}

/// Samples stored in VictoriaMetrics for the grid `intervals` × 5 s from
/// T0 (PromQL count_over_time over every `meter_*` series). Polls until the
/// count is stable, as freshly ingested samples may take a moment.
async fn vm_count(vm: &VictoriaMetrics, intervals: usize, expect: u64) -> anyhow::Result<u64> {
    let t = (T0_MS + (intervals as i64 - 1) * STEP_MS) as f64 / 1000.0;
    let q = format!(
        "sum(count_over_time({{__name__=~\"meter_.*\"}}[{}s]))",
        intervals as i64 * STEP_MS / 1000
    );
    let c = http();
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        vm.force_flush().await?;
        let resp = c
            .get(format!("{}/api/v1/query", vm.url()))
            .query(&[("query", q.as_str()), ("time", &t.to_string())])
            .send()
            .await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await?;
        ensure!(status.is_success(), "query {q}: HTTP {status}: {body}");
        let n = body["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
        if n == expect || Instant::now() >= end {
            return Ok(n);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Compare three series sample by sample with what was generated.
async fn check_series(vm: &VictoriaMetrics, fleet: &Fleet, intervals: usize) -> anyhow::Result<()> {
    let (nm, nf) = (fleet.meters(), fleet.fields.len());
    for (m, f) in [(0, 0), (nm / 2, nf / 2), (nm - 1, nf - 1)] {
        let name = format!("meter_{}", fleet.fields[f]);
        let id = &fleet.metas[m].id;
        let sel = format!("{name}{{meter=\"{id}\"}}");
        let series = vm.export(&sel).await?;
        ensure!(series.len() == 1, "{sel}: {} series", series.len());
        let pts = series[0].points();
        ensure!(
            pts.len() == intervals,
            "{sel}: {} samples, expected {intervals}",
            pts.len()
        );
        for (k, (ts, v)) in pts.iter().enumerate() {
            let want = value(fleet.kinds[f], m, f, k);
            ensure!(
                *ts == T0_MS + k as i64 * STEP_MS && (v - want).abs() <= 1e-9 * want.abs(),
                "{sel} sample {k}: got ({ts}, {v}), want ({}, {want})",
                T0_MS + k as i64 * STEP_MS
            );
        }
    }
    Ok(())
}

fn copy_dir_files(from: &Path, to: &Path) -> anyhow::Result<()> {
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 1. Commit + send
// ---------------------------------------------------------------------------

struct FeedRun {
    secs: f64,
    points: u64,
    feed_secs: f64,
    max_depth_points: u64,
    max_depth_bytes: u64,
    bytes_per_point_at_max: f64,
    cpu_me: f64,
    cpu_vm: f64,
    stored: u64,
}

fn feed_once(
    rt: &tokio::runtime::Runtime,
    fleet: &Fleet,
    intervals: usize,
) -> anyhow::Result<FeedRun> {
    let vm = VictoriaMetrics::start()?;
    let dir = tempfile::tempdir()?;
    let total_readings = intervals * fleet.meters();
    let readings: Vec<Reading> = (0..total_readings).map(|i| fleet.reading(i)).collect();
    let total: u64 = readings.iter().map(|r| r.values.len() as u64).sum();
    rt.block_on(async {
        let metrics = Arc::new(Metrics::default());
        let o = Outbox::new(StateDb::open(dir.path())?)?;
        let mut sink =
            Sink::new(influx(vm.url()), metrics.clone(), Some(o)).map_err(|e| anyhow!(e))?;
        sink.grace = Duration::from_secs(3600);
        let (tx, rx) = mpsc::channel(CHANNEL);
        let cpu = Cpu::start(&vm)?;
        let t0 = Instant::now();
        let task = tokio::spawn(sink.run(rx));
        let feeder = tokio::spawn(async move {
            for r in readings {
                if tx.send(r).await.is_err() {
                    break;
                }
            }
            Instant::now()
        });
        let (mut max_p, mut max_b) = (0u64, 0u64);
        let limit = t0 + Duration::from_secs(600);
        loop {
            let p = Metrics::get(&metrics.sink.outbox_points);
            if p > max_p {
                max_p = p;
                max_b = Metrics::get(&metrics.sink.outbox_bytes);
            }
            if Metrics::get(&metrics.sink.points_written) >= total
                && Metrics::get(&metrics.sink.outbox_batches) == 0
            {
                break;
            }
            if Instant::now() > limit {
                bail!(
                    "feed: not drained after 600 s: written {} of {total}",
                    Metrics::get(&metrics.sink.points_written)
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let secs = t0.elapsed().as_secs_f64();
        let (cpu_me, cpu_vm) = cpu.stop();
        let fed = feeder.await?;
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .context("sink did not stop")??;
        ensure!(
            Metrics::get(&metrics.sink.points_written) == total,
            "written {} != {total}",
            Metrics::get(&metrics.sink.points_written)
        );
        let stored = vm_count(&vm, intervals, total).await?;
        Ok(FeedRun {
            secs,
            points: total,
            feed_secs: (fed - t0).as_secs_f64(),
            max_depth_points: max_p,
            max_depth_bytes: max_b,
            bytes_per_point_at_max: if max_p > 0 {
                max_b as f64 / max_p as f64
            } else {
                f64::NAN
            },
            cpu_me,
            cpu_vm,
            stored,
        })
    })
}

// ---------------------------------------------------------------------------
// 3. Backlog drain
// ---------------------------------------------------------------------------

struct Prefilled {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    batches: u64,
    points: u64,
    raw_bytes: u64,
    stored_bytes: u64,
    file_bytes: u64,
    build_secs: f64,
}

fn prefill(fleet: &Fleet, intervals: usize) -> anyhow::Result<Prefilled> {
    let dir = tempfile::tempdir()?;
    let t0 = Instant::now();
    let total_readings = intervals * fleet.meters();
    let nbatches = total_readings.div_ceil(fleet.readings_per_batch(BATCH));
    let (mut points, mut raw) = (0u64, 0u64);
    {
        let mut o = Outbox::new(StateDb::open(dir.path())?)?;
        const CHUNK: usize = 256;
        for start in (0..nbatches).step_by(CHUNK) {
            let built = build_batches(fleet, total_readings, start..(start + CHUNK).min(nbatches));
            o.db().conn.execute_batch("BEGIN")?;
            for b in &built {
                o.push(b.created_ms, b.points, b.raw_len, &b.body)?;
                points += b.points as u64;
                raw += b.raw_len as u64;
            }
            o.db().conn.execute_batch("COMMIT")?;
        }
        ensure!(o.depth().points == points && o.depth().batches == nbatches as u64);
    } // closed: WAL checkpointed into the main file
    let file = dir.path().join(state::FILE);
    let o = Outbox::new(StateDb::open(dir.path())?)?;
    let d = o.depth();
    drop(o);
    Ok(Prefilled {
        path: dir.path().to_path_buf(),
        _dir: dir,
        batches: d.batches,
        points,
        raw_bytes: raw,
        stored_bytes: d.bytes,
        file_bytes: std::fs::metadata(file)?.len(),
        build_secs: t0.elapsed().as_secs_f64(),
    })
}

struct DrainRun {
    secs: f64,
    open_secs: f64,
    cpu_me: f64,
    cpu_vm: f64,
    /// points/s over the first and the last quarter of the points.
    rate_first_q: f64,
    rate_last_q: f64,
    stored: u64,
}

/// How the sink reaches VictoriaMetrics in a drain.
#[derive(Clone, Copy)]
struct Via {
    /// Latency added to every byte the sink sends ([`Link`]); zero: direct.
    delay: Duration,
    max_in_flight: usize,
}

const DIRECT: Via = Via {
    delay: Duration::ZERO,
    max_in_flight: 1,
};

fn drain_once(
    rt: &tokio::runtime::Runtime,
    pre: &Prefilled,
    fleet: &Fleet,
    intervals: usize,
    what_if_index: bool,
) -> anyhow::Result<DrainRun> {
    drain_via(rt, pre, fleet, intervals, what_if_index, DIRECT)
}

fn drain_via(
    rt: &tokio::runtime::Runtime,
    pre: &Prefilled,
    fleet: &Fleet,
    intervals: usize,
    what_if_index: bool,
    via: Via,
) -> anyhow::Result<DrainRun> {
    let dir = copy_outbox(pre, what_if_index)?;
    let vm = VictoriaMetrics::start()?;
    rt.block_on(async {
        let link = match via.delay.is_zero() {
            true => None,
            false => Some(Link::start(&vm.url(), via.delay).await?),
        };
        let mut cfg = influx(link.as_ref().map_or(vm.url(), |l| l.url.clone()));
        cfg.max_in_flight = via.max_in_flight;
        let t_open = Instant::now();
        let o = Outbox::new(StateDb::open(dir.path())?)?;
        let open_secs = t_open.elapsed().as_secs_f64();
        let total = pre.points;
        ensure!(o.depth().points == total);
        let metrics = Arc::new(Metrics::default());
        let mut sink = Sink::new(cfg, metrics.clone(), Some(o)).map_err(|e| anyhow!(e))?;
        sink.grace = Duration::from_secs(3600);
        // Input stays open (a live daemon with no new readings).
        let (tx, rx) = mpsc::channel::<Reading>(CHANNEL);
        let cpu = Cpu::start(&vm)?;
        let t0 = Instant::now();
        let task = tokio::spawn(sink.run(rx));
        let (mut t_q1, mut t_q3) = (None, None);
        let limit = t0 + Duration::from_secs(1800);
        loop {
            let w = Metrics::get(&metrics.sink.points_written);
            if t_q1.is_none() && w >= total / 4 {
                t_q1 = Some((t0.elapsed().as_secs_f64(), w));
            }
            if t_q3.is_none() && w >= total * 3 / 4 {
                t_q3 = Some((t0.elapsed().as_secs_f64(), w));
            }
            if w >= total && Metrics::get(&metrics.sink.outbox_batches) == 0 {
                break;
            }
            if Instant::now() > limit {
                bail!("drain: not empty after 1800 s: written {w} of {total}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let secs = t0.elapsed().as_secs_f64();
        let (cpu_me, cpu_vm) = cpu.stop();
        drop(tx);
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .context("sink did not stop")??;
        ensure!(Metrics::get(&metrics.sink.points_written) == total);
        ensure!(
            Metrics::get(&metrics.sink.batches_failed) == 0,
            "failed sends"
        );
        let (q1t, q1w) = t_q1.expect("q1");
        let (q3t, q3w) = t_q3.expect("q3");
        let stored = vm_count(&vm, intervals, total).await?;
        check_series(&vm, fleet, intervals).await?;
        Ok(DrainRun {
            secs,
            open_secs,
            cpu_me,
            cpu_vm,
            rate_first_q: q1w as f64 / q1t,
            rate_last_q: (total - q3w) as f64 / (secs - q3t),
            stored,
        })
    })
}

/// A TCP proxy on loopback that delivers every byte the client sends
/// `delay` after it arrived (a delay line, not a queue: bytes arriving
/// together leave together), so each request reaches the server `delay`
/// late, as over a WAN link with that one-way latency towards the
/// server. Answers come back at once. One task pair per connection.
struct Link {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    async fn start(target_url: &str, delay: Duration) -> anyhow::Result<Link> {
        let target = target_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", l.local_addr()?);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = l.accept().await {
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let (tx, mut rx) = mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
                    let up_read = tokio::spawn(async move {
                        use tokio::io::AsyncReadExt as _;
                        let mut buf = vec![0u8; 256 * 1024];
                        loop {
                            match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    let due = tokio::time::Instant::now() + delay;
                                    if tx.send((due, buf[..n].to_vec())).is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    });
                    let up_write = tokio::spawn(async move {
                        use tokio::io::AsyncWriteExt as _;
                        while let Some((due, bytes)) = rx.recv().await {
                            tokio::time::sleep_until(due).await;
                            if sw.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        let _ = sw.shutdown().await;
                    });
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    up_read.abort();
                    up_write.abort();
                });
            }
        });
        Ok(Link { url, task })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A live fleet written through a slow link: readings of `meters` ×
/// `fields` every 5 s fed in real time for `secs`, the outbox depth and
/// its oldest batch's age sampled every second.
struct SlowRun {
    /// (second, batches queued, age of the oldest queued batch in s)
    samples: Vec<(u64, u64, f64)>,
    drained_secs: f64,
    points: u64,
    stored: u64,
    failed: u64,
}

fn slow_server_once(
    rt: &tokio::runtime::Runtime,
    fleet: &Fleet,
    secs: u64,
    delay: Duration,
    via: Via,
) -> anyhow::Result<SlowRun> {
    let dir = tempfile::tempdir()?;
    let vm = VictoriaMetrics::start()?;
    rt.block_on(async {
        let link = Link::start(&vm.url(), delay).await?;
        let mut cfg = influx(link.url.clone());
        cfg.max_in_flight = via.max_in_flight;
        let metrics = Arc::new(Metrics::default());
        let o = Outbox::new(StateDb::open(dir.path())?)?;
        let mut sink = Sink::new(cfg, metrics.clone(), Some(o)).map_err(|e| anyhow!(e))?;
        sink.grace = Duration::from_secs(600);
        let (tx, rx) = mpsc::channel::<Reading>(CHANNEL);
        let task = tokio::spawn(sink.run(rx));
        let t0 = tokio::time::Instant::now();
        let intervals = (secs / 5) as usize;
        let per_interval = fleet.meters();
        let mut samples = Vec::new();
        let mut next_sample = 1u64;
        let mut points = 0u64;
        for k in 0..intervals {
            let due = t0 + Duration::from_secs(5 * k as u64);
            while next_sample * 1000 <= (5 * k as u64) * 1000 {
                tokio::time::sleep_until(t0 + Duration::from_secs(next_sample)).await;
                samples.push(sample(&metrics, next_sample));
                next_sample += 1;
            }
            tokio::time::sleep_until(due).await;
            for m in 0..per_interval {
                let r = fleet.reading(k * per_interval + m);
                points += r.values.len() as u64;
                tx.send(r).await.map_err(|_| anyhow!("sink gone"))?;
            }
        }
        while next_sample <= secs {
            tokio::time::sleep_until(t0 + Duration::from_secs(next_sample)).await;
            samples.push(sample(&metrics, next_sample));
            next_sample += 1;
        }
        let t_end = Instant::now();
        // Drain what is left (input still open), then stop.
        let limit = t_end + Duration::from_secs(900);
        while Metrics::get(&metrics.sink.points_written) < points
            || Metrics::get(&metrics.sink.outbox_batches) > 0
        {
            ensure!(
                Instant::now() < limit,
                "slow server: not drained after 900 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let drained_secs = t_end.elapsed().as_secs_f64();
        drop(tx);
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .context("sink did not stop")??;
        let stored = vm_count(&vm, intervals, points).await?;
        Ok(SlowRun {
            samples,
            drained_secs,
            points,
            stored,
            failed: Metrics::get(&metrics.sink.batches_failed),
        })
    })
}

fn sample(m: &Metrics, second: u64) -> (u64, u64, f64) {
    let oldest = Metrics::get(&m.sink.outbox_oldest_ms);
    let age = match oldest {
        0 => 0.0,
        t => (pqwatch::clock::now_ms() as f64 - t as f64).max(0.0) / 1000.0,
    };
    (second, Metrics::get(&m.sink.outbox_batches), age)
}

// ---------------------------------------------------------------------------
// 4. Diagnostics
// ---------------------------------------------------------------------------

/// The what-if index: lets `SELECT min(created_ms) FROM outbox`, which
/// `Outbox::delete` runs after every acknowledged batch, use an index
/// instead of scanning the table. pqwatch's own schema has one since
/// schema v4 (commit f3a6329); the what-if runs only against older schemas.
const WHAT_IF_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS bench_outbox_created_ms ON outbox(created_ms)";

/// Whether pqwatch's own schema (a fresh state database) already indexes
/// `outbox(created_ms)`.
fn schema_indexes_created_ms() -> anyhow::Result<bool> {
    let dir = tempfile::tempdir()?;
    let db = StateDb::open(dir.path())?;
    let n: i64 = db.conn.query_row(
        "SELECT count(*) FROM sqlite_master m, pragma_index_info(m.name) i
         WHERE m.type = 'index' AND m.tbl_name = 'outbox' AND i.seqno = 0 AND i.name = 'created_ms'",
        [],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// A private copy of a pre-filled outbox, optionally with the what-if index.
fn copy_outbox(pre: &Prefilled, what_if_index: bool) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    copy_dir_files(&pre.path, dir.path())?;
    if what_if_index {
        let db = StateDb::open(dir.path())?;
        db.conn.execute_batch(WHAT_IF_INDEX)?;
    }
    Ok(dir)
}

/// Mean ms of the statement `Outbox::delete` runs after each delete, at
/// full depth.
fn min_scan_ms(pre: &Prefilled, what_if_index: bool) -> anyhow::Result<f64> {
    let dir = copy_outbox(pre, what_if_index)?;
    let db = StateDb::open(dir.path())?;
    let n = 20;
    let t = Instant::now();
    for _ in 0..n {
        let v: Option<i64> = db
            .conn
            .query_row("SELECT min(created_ms) FROM outbox", [], |r| r.get(0))?;
        std::hint::black_box(v);
    }
    Ok(t.elapsed().as_secs_f64() * 1e3 / f64::from(n))
}

struct SqliteDrain {
    secs: f64,
    /// Mean ms per batch (oldest + delete) per tenth of the drain, from
    /// full depth down to empty.
    ms_by_tenth: Vec<f64>,
    read_ms: f64,
    delete_ms: f64,
    cpu_me: f64,
    other: f64,
}

/// The SQLite side of a drain alone: `oldest()` + `delete()` until empty.
fn sqlite_drain(pre: &Prefilled, what_if_index: bool) -> anyhow::Result<SqliteDrain> {
    let dir = copy_outbox(pre, what_if_index)?;
    let mut o = Outbox::new(StateDb::open(dir.path())?)?;
    let n = o.depth().batches as usize;
    let (mut read, mut del) = (Duration::ZERO, Duration::ZERO);
    let mut tenths = vec![(Duration::ZERO, 0usize); 10];
    let me0 = cpu_secs(std::process::id());
    let all0 = machine_busy_secs();
    let t0 = Instant::now();
    let mut i = 0;
    loop {
        let a = Instant::now();
        let Some(b) = o.oldest()? else { break };
        let r = a.elapsed();
        std::hint::black_box(&b.body);
        let c = Instant::now();
        o.delete(b.id)?;
        let d = c.elapsed();
        read += r;
        del += d;
        let t = &mut tenths[(i * 10 / n).min(9)];
        t.0 += r + d;
        t.1 += 1;
        i += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu_me = cpu_secs(std::process::id()) - me0;
    Ok(SqliteDrain {
        secs,
        ms_by_tenth: tenths
            .iter()
            .map(|(d, k)| d.as_secs_f64() * 1e3 / (*k).max(1) as f64)
            .collect(),
        read_ms: read.as_secs_f64() * 1e3 / n as f64,
        delete_ms: del.as_secs_f64() * 1e3 / n as f64,
        cpu_me,
        other: (machine_busy_secs() - all0 - cpu_me).max(0.0),
    })
}

/// The HTTP + VictoriaMetrics side alone: stored bodies sent with
/// `Writer::write`, `inflight` requests at a time, to a fresh server.
fn http_only(
    rt: &tokio::runtime::Runtime,
    bodies: &[(usize, Bytes)],
    inflight: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    let vm = VictoriaMetrics::start()?;
    let w = Arc::new(Writer::new(&influx(vm.url())).map_err(|e| anyhow!(e))?);
    let points: usize = bodies.iter().map(|b| b.0).sum();
    rt.block_on(async {
        let cpu = Cpu::start(&vm)?;
        let t0 = Instant::now();
        let results: Vec<_> = futures::stream::iter(bodies.iter().cloned())
            .map(|(_, b)| {
                let w = w.clone();
                async move { w.write(b).await }
            })
            .buffer_unordered(inflight)
            .collect()
            .await;
        let secs = t0.elapsed().as_secs_f64();
        let (me, vmc) = cpu.stop();
        for r in results {
            r.map_err(|e| anyhow!("write: {e}"))?;
        }
        Ok((points as f64 / secs, me / secs, vmc / secs))
    })
}

// ---------------------------------------------------------------------------

fn main() -> anyhow::Result<()> {
    // The sink logs through tracing: show warnings (failed sends) only.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PQWATCH_BENCH_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // `cargo bench` passes `--bench`. `cargo test --all-targets` (the test
    // suite) also builds and runs this target, without it: do nothing then,
    // the benchmark takes minutes and measures nothing in a debug build.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benches/outbox.rs: run it with `cargo bench --bench outbox`; skipped");
        return Ok(());
    }
    let reps = env_usize("PQWATCH_BENCH_REPS", 3).max(1);
    let meters = env_usize("PQWATCH_BENCH_METERS", 1000);
    let feed_intervals = env_usize("PQWATCH_BENCH_FEED_INTERVALS", 60);
    let drain_minutes = env_usize("PQWATCH_BENCH_DRAIN_MINUTES", 15);
    // With the outbox indexed on created_ms (schema v4) an hour drains in
    // ~1 min: three runs fit the ~10 min budget; without it, one does.
    let indexed = schema_indexes_created_ms()?;
    let hour_runs = env_usize("PQWATCH_BENCH_HOUR_RUNS", if indexed { 3 } else { 1 });
    let what_ifs: &[bool] = if indexed { &[false] } else { &[false, true] };
    let http_batches = env_usize("PQWATCH_BENCH_HTTP_BATCHES", 400);
    let sections =
        std::env::var("PQWATCH_BENCH_SECTIONS").unwrap_or("commit,feed,drain,hour,diag".into());
    let on = |name: &str| sections.split(',').any(|s| s.trim() == name);
    let drain_intervals = drain_minutes * 60 / 5;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let wall = Instant::now();
    let mut out = String::new();
    macro_rules! say {
        ($($t:tt)*) => {{
            let line = format!($($t)*);
            eprintln!("{line}");
            out.push_str(&line);
            out.push('\n');
        }};
    }

    let registry = pqwatch::profile::Registry::builtin();
    let sdm = registry
        .get("eastron-sdm630")
        .context("eastron-sdm630 profile")?;
    let sdm_fields: Vec<&str> = sdm.output_names().collect();
    ensure!(
        sdm_fields.len() == 72,
        "SDM630 has {} fields",
        sdm_fields.len()
    );
    let fleet60 = Fleet::new(meters, &sdm_fields[..60]);
    let fleet72 = Fleet::new(meters, &sdm_fields);

    say!("## pqwatch outbox benchmark");
    say!(
        "reps={reps} meters={meters} batch_size={BATCH} feed={feed_intervals} intervals x 60 fields, drain={drain_minutes} min x 72 fields, hour_runs={hour_runs}, sections={sections}"
    );
    say!(
        "schema v{}: outbox(created_ms) {}",
        pqwatch::state::SCHEMA_VERSION,
        if indexed {
            "indexed (what-if runs skipped)"
        } else {
            "NOT indexed (what-if runs add the index to a copy)"
        }
    );

    // -- Batch shape, encode+gzip, commit alone ---------------------------
    if on("commit") {
        let nb = 200;
        let rpb = fleet60.readings_per_batch(BATCH);
        let t = Instant::now();
        let built: Vec<Built> = (0..nb)
            .map(|b| build_batch(&fleet60, b * rpb..(b + 1) * rpb))
            .collect();
        let enc_secs = t.elapsed().as_secs_f64();
        let enc_points: usize = built.iter().map(|b| b.points).sum();
        let raw: usize = built.iter().map(|b| b.raw_len).sum();
        let z: usize = built.iter().map(|b| b.body.len()).sum();
        say!("\n### Batch shape (60-field readings, 5000-point batches)");
        say!(
            "points/batch {} | raw line protocol {:.1} B/point | gzip (outbox::gzip, level fast) {:.2} B/point, ratio {:.2} | encode+gzip on one core: {} points/s ({:.2} ms/batch)",
            built[0].points,
            raw as f64 / enc_points as f64,
            z as f64 / enc_points as f64,
            raw as f64 / z as f64,
            human(enc_points as f64 / enc_secs),
            enc_secs * 1e3 / nb as f64
        );
        for &what_if_index in what_ifs {
            let mut bps = vec![];
            for _ in 0..reps {
                let dir = tempfile::tempdir()?;
                let mut o = Outbox::new(StateDb::open(dir.path())?)?;
                if what_if_index {
                    o.db().conn.execute_batch(WHAT_IF_INDEX)?;
                }
                let t = Instant::now();
                for b in &built {
                    o.push(b.created_ms, b.points, b.raw_len, &b.body)?;
                }
                bps.push(nb as f64 / t.elapsed().as_secs_f64());
            }
            let pps: Vec<f64> = bps
                .iter()
                .map(|b| b * enc_points as f64 / nb as f64)
                .collect();
            say!(
                "\n### Commit alone{} (Outbox::push of {nb} pre-compressed batches, WAL + synchronous=FULL, one commit each, no network)",
                if what_if_index {
                    ", WITH the what-if index"
                } else {
                    ""
                }
            );
            say!("{}", fmt_stats(&bps, "batches/s"));
            say!("{}", fmt_stats(&pps, "points/s"));
        }
    }

    // -- 1. Commit + send -------------------------------------------------
    if on("feed") {
        say!(
            "\n### Commit + send ({meters} meters x 60 fields x {feed_intervals} intervals = {} points, fed as fast as the channel accepts)",
            human((meters * 60 * feed_intervals) as f64)
        );
        let mut feed = vec![];
        for r in 0..reps {
            let f = feed_once(&rt, &fleet60, feed_intervals)?;
            say!(
                "run {}: {:.2} s -> {} points/s (input consumed by the sink after {:.2} s); peak outbox {} points / {} B = {:.2} B/point; CPU bench {:.1} s, VM {:.1} s, other processes {:.1} s; VM count {} of {}{}",
                r + 1,
                f.secs,
                human(f.points as f64 / f.secs),
                f.feed_secs,
                human(f.max_depth_points as f64),
                human(f.max_depth_bytes as f64),
                f.bytes_per_point_at_max,
                f.cpu_me,
                f.cpu_vm,
                take_other_cpu(),
                f.stored,
                f.points,
                if f.stored == f.points {
                    " OK"
                } else {
                    " MISMATCH"
                }
            );
            ensure!(
                f.stored == f.points,
                "VictoriaMetrics stored {} of {}",
                f.stored,
                f.points
            );
            feed.push(f);
        }
        let v: Vec<f64> = feed.iter().map(|f| f.points as f64 / f.secs).collect();
        say!("throughput: {}", fmt_stats(&v, "points/s"));
        let v: Vec<f64> = feed.iter().map(|f| f.cpu_me / f.secs).collect();
        say!("bench process CPU: {}", fmt_stats(&v, "cores"));
        let v: Vec<f64> = feed.iter().map(|f| f.cpu_vm / f.secs).collect();
        say!("VictoriaMetrics CPU: {}", fmt_stats(&v, "cores"));
    }

    // -- 3. Backlog drain -------------------------------------------------
    let report_prefill = |out: &mut String, pre: &Prefilled| {
        let line = format!(
            "pre-filled {} batches / {} points in {:.1} s (not timed); raw {:.1} B/point, stored gzip {:.2} B/point, SQLite file {:.2} B/point ({} MB)",
            human(pre.batches as f64),
            human(pre.points as f64),
            pre.build_secs,
            pre.raw_bytes as f64 / pre.points as f64,
            pre.stored_bytes as f64 / pre.points as f64,
            pre.file_bytes as f64 / pre.points as f64,
            pre.file_bytes / 1_000_000
        );
        eprintln!("{line}");
        out.push_str(&line);
        out.push('\n');
    };
    let drain_line = |r: usize, d: &DrainRun, pre: &Prefilled| {
        format!(
            "run {}: {:.1} s -> {} points/s (first quarter {}, last quarter {}); Outbox::new {:.3} s; CPU bench {:.1} s ({:.2} cores), VM {:.1} s ({:.2} cores), other processes {:.1} s; VM count {} of {}{}; 3 series match sample by sample",
            r,
            d.secs,
            human(pre.points as f64 / d.secs),
            human(d.rate_first_q),
            human(d.rate_last_q),
            d.open_secs,
            d.cpu_me,
            d.cpu_me / d.secs,
            d.cpu_vm,
            d.cpu_vm / d.secs,
            take_other_cpu(),
            d.stored,
            pre.points,
            if d.stored == pre.points {
                " OK"
            } else {
                " MISMATCH"
            }
        )
    };
    let hour_points = (meters * 720 * 72) as f64;
    let pre = if on("drain") || on("diag") || on("wan") {
        say!(
            "\n### Backlog drain, fraction: {meters} meters x 72 fields x {drain_intervals} intervals = {drain_minutes} min of backlog"
        );
        let pre = prefill(&fleet72, drain_intervals)?;
        report_prefill(&mut out, &pre);
        Some(pre)
    } else {
        None
    };
    if on("drain") {
        let pre = pre.as_ref().expect("prefilled");
        let mut rates = vec![];
        for r in 0..reps {
            let d = drain_once(&rt, pre, &fleet72, drain_intervals, false)?;
            say!("{}", drain_line(r + 1, &d, pre));
            ensure!(
                d.stored == pre.points,
                "VictoriaMetrics stored {} of {}",
                d.stored,
                pre.points
            );
            rates.push(pre.points as f64 / d.secs);
        }
        say!("drain: {}", fmt_stats(&rates, "points/s"));
        let (med, _, _) = stats(&rates);
        say!(
            "one hour ({} points) extrapolated linearly from the median: {:.0} s{}",
            human(hour_points),
            hour_points / med,
            if indexed {
                ""
            } else {
                " (optimistic: without the created_ms index the per-batch delete cost grows with depth, see below)"
            }
        );
    }

    let hour = if on("hour") && hour_runs > 0 {
        say!(
            "\n### Backlog drain, full hour: {meters} meters x 72 fields x 720 intervals ({hour_runs} run(s))"
        );
        let hour = prefill(&fleet72, 720)?;
        report_prefill(&mut out, &hour);
        let mut rates = vec![];
        for r in 0..hour_runs {
            let d = drain_once(&rt, &hour, &fleet72, 720, false)?;
            say!("{}", drain_line(r + 1, &d, &hour));
            ensure!(
                d.stored == hour.points,
                "VictoriaMetrics stored {} of {}",
                d.stored,
                hour.points
            );
            rates.push(hour.points as f64 / d.secs);
        }
        say!("full-hour drain: {}", fmt_stats(&rates, "points/s"));
        Some(hour)
    } else {
        None
    };

    // -- 3b. Drain through a WAN link -------------------------------------
    if on("wan") {
        let pre = pre
            .as_ref()
            .context("the wan section needs the drain prefill (add drain or diag)")?;
        let delay = Duration::from_millis(env_usize("PQWATCH_BENCH_WAN_MS", 30) as u64);
        say!(
            "\n### Backlog drain through a link adding {} ms to every request ({} points, {} batches; merged replay up to {} points per request)",
            delay.as_millis(),
            human(pre.points as f64),
            human(pre.batches as f64),
            human(pqwatch::sink::REPLAY_MAX_POINTS as f64)
        );
        for max_in_flight in [1, 2, pqwatch::config::DEFAULT_MAX_IN_FLIGHT] {
            let mut rates = vec![];
            for r in 0..reps {
                let via = Via {
                    delay,
                    max_in_flight,
                };
                let d = drain_via(&rt, pre, &fleet72, drain_intervals, false, via)?;
                say!(
                    "max_in_flight {max_in_flight}, {}",
                    drain_line(r + 1, &d, pre)
                );
                ensure!(d.stored == pre.points);
                rates.push(pre.points as f64 / d.secs);
            }
            say!(
                "drain through the {} ms link, max_in_flight {max_in_flight}: {}",
                delay.as_millis(),
                fmt_stats(&rates, "points/s")
            );
        }
    }

    // -- 3c. A slow server with live data ---------------------------------
    if on("slow") {
        let secs = env_usize("PQWATCH_BENCH_SLOW_SECS", 160) as u64;
        let delay = Duration::from_millis(2500);
        let slow_meters = env_usize("PQWATCH_BENCH_SLOW_METERS", 100);
        let fleet = Fleet::new(slow_meters, &sdm_fields);
        say!(
            "\n### A server taking 2.5 s per write, live data: {slow_meters} meters x 72 fields every 5 s for {secs} s (batch_size {BATCH}, flush_interval 1 s)"
        );
        for max_in_flight in [1, pqwatch::config::DEFAULT_MAX_IN_FLIGHT] {
            let via = Via {
                delay,
                max_in_flight,
            };
            let r = slow_server_once(&rt, &fleet, secs, delay, via)?;
            let pick = |s: u64| r.samples.iter().find(|x| x.0 == s).copied();
            let worst_age = r.samples.iter().map(|x| x.2).fold(0.0, f64::max);
            let worst_depth = r.samples.iter().map(|x| x.1).max().unwrap_or(0);
            say!(
                "max_in_flight {max_in_flight}: queued batches / oldest age at 40 s {:?}, 80 s {:?}, 120 s {:?}, {secs} s {:?}; worst {} batches, {:.1} s; drained {:.1} s after the feed; {} points, VM count {}{}; failed sends {}",
                pick(40).map(|x| (x.1, x.2)),
                pick(80).map(|x| (x.1, x.2)),
                pick(120).map(|x| (x.1, x.2)),
                pick(secs).map(|x| (x.1, x.2)),
                worst_depth,
                worst_age,
                r.drained_secs,
                human(r.points as f64),
                r.stored,
                if r.stored == r.points {
                    " OK"
                } else {
                    " MISMATCH"
                },
                r.failed
            );
            ensure!(r.stored == r.points);
        }
    }

    // -- 4. Diagnostics (each once: the ~10 min budget) ---------------------
    if on("diag") {
        let pre = pre.as_ref().expect("prefilled");
        say!(
            "\n### Where the time goes (diagnostics and what-ifs; one run each unless n= says otherwise)"
        );
        let deep = hour.as_ref().unwrap_or(pre);
        if indexed {
            say!(
                "`SELECT min(created_ms) FROM outbox` (run by every Outbox::delete) at depth {} batches: {:.3} ms (schema index)",
                human(deep.batches as f64),
                min_scan_ms(deep, false)?
            );
        } else {
            say!(
                "`SELECT min(created_ms) FROM outbox` (run by every Outbox::delete) at depth {} batches: {:.2} ms; with the what-if index on created_ms: {:.3} ms",
                human(deep.batches as f64),
                min_scan_ms(deep, false)?,
                min_scan_ms(deep, true)?
            );
        }
        for &what_if_index in what_ifs {
            let s = sqlite_drain(pre, what_if_index)?;
            say!(
                "SQLite alone{} (oldest + delete until empty, {} batches): **{}** points/s; per batch read {:.2} ms + delete {:.2} ms; ms/batch by tenth from full to empty: {:?}; CPU bench {:.1} s, other processes {:.1} s",
                if what_if_index {
                    " WITH the what-if index"
                } else {
                    ""
                },
                human(pre.batches as f64),
                human(pre.points as f64 / s.secs),
                s.read_ms,
                s.delete_ms,
                s.ms_by_tenth
                    .iter()
                    .map(|x| (x * 100.0).round() / 100.0)
                    .collect::<Vec<_>>(),
                s.cpu_me,
                s.other
            );
        }
        let bodies: Vec<(usize, Bytes)> = {
            let o = Outbox::new(StateDb::open_readonly(&pre.path)?)?;
            let mut v = vec![];
            let mut st = o
                .db()
                .conn
                .prepare("SELECT points, body FROM outbox ORDER BY id LIMIT ?1")?;
            let rows = st.query_map([http_batches as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)? as usize,
                    Bytes::from(r.get::<_, Vec<u8>>(1)?),
                ))
            })?;
            for r in rows {
                v.push(r?);
            }
            v
        };
        // The same points in batches four times as large.
        let big: Vec<(usize, Bytes)> = bodies
            .chunks(4)
            .map(|c| {
                let raw: Vec<u8> = c
                    .iter()
                    .flat_map(|(_, b)| outbox::gunzip(b).expect("stored gzip"))
                    .collect();
                (c.iter().map(|b| b.0).sum(), Bytes::from(outbox::gzip(&raw)))
            })
            .collect();
        let hp: usize = bodies.iter().map(|b| b.0).sum();
        for (set, inflight) in [(&bodies, 1), (&bodies, 2), (&bodies, 4), (&big, 1)] {
            let mut v = vec![];
            let mut cpu = vec![];
            for _ in 0..reps {
                let (pps, me, vmc) = http_only(&rt, set, inflight)?;
                v.push(pps);
                cpu.push((me, vmc));
            }
            let (me, vmc) = cpu[cpu.len() / 2];
            say!(
                "HTTP + VictoriaMetrics alone, {inflight} in flight, {} batches of ~{} points ({} points, fresh VM each run): {}; CPU bench {:.2} cores, VM {:.2} cores; other processes {:.1} CPU-s over {reps} runs",
                set.len(),
                human((hp / set.len()) as f64),
                human(hp as f64),
                fmt_stats(&v, "points/s"),
                me,
                vmc,
                take_other_cpu()
            );
        }
        if !indexed {
            let deep_intervals = if hour.is_some() { 720 } else { drain_intervals };
            let d = drain_once(&rt, deep, &fleet72, deep_intervals, true)?;
            say!(
                "what-if index (sink unchanged), {}-point outbox, {}",
                human(deep.points as f64),
                drain_line(1, &d, deep)
            );
            ensure!(d.stored == deep.points);
            say!(
                "drain of the {}-point outbox WITH the what-if index: **{}** points/s (one run; one hour would take {:.0} s)",
                human(deep.points as f64),
                human(deep.points as f64 / d.secs),
                hour_points / (deep.points as f64 / d.secs)
            );
        }
    }
    say!("\nwhole bench: {:.0} s", wall.elapsed().as_secs_f64());

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-outbox.md");
    std::fs::write(&path, &out)?;
    eprintln!("results written to {}", path.display());
    Ok(())
}
