//! Durability of the outbox, with the real `pqwatch run` binary in a
//! subprocess: database outages (VictoriaMetrics and InfluxDB 1.x stopped
//! and restarted on the same port and storage), `kill -9`, SIGTERM (one and
//! two), `durability = "memory"` across a graceful restart, and state files
//! that are not ours.
//!
//! The simulated meters run in-process ([`Sim`]) for the whole test, so
//! they keep answering across daemon restarts. Readiness and recovery are
//! polled under deadlines; the only fixed sleeps are how long a scenario
//! leaves the daemon running or the database down.
//!
//! The expectations come from the clock: meters polled every 1 s are
//! stamped at whole seconds, so every whole second between the first
//! reading and a signal (less a stated margin) must be stored, exactly once.

mod common;
mod e2e;

use common::{ExportedSeries, InfluxDb1, TestConfig, VictoriaMetrics, free_port, write_file};
use e2e::{Running, Sim, instants, now_ms, pqwatch_cmd, run_to_end, status_json};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Poll interval of every meter.
const STEP: i64 = 1000;
/// `[influxdb] flush_interval`: the longest a reading waits in the batch
/// being assembled (what a crash may lose with `durability = "always"`).
const FLUSH_MS: i64 = 200;
const METERS: [&str; 3] = ["DUR-A", "DUR-B", "DUR-C"];
const FIELDS: [&str; 3] = ["voltage_l1_n", "current_l1", "frequency"];
/// Points (samples) of one poll of all meters.
const READING_POINTS: u64 = (METERS.len() * FIELDS.len()) as u64;
/// VictoriaMetrics selector of the raw readings of [`FIELDS`] (not of any
/// aggregate or event the daemon may also write).
const MATCH: &str = r#"{__name__=~"meter_(voltage_l1_n|current_l1|frequency)",customer="C-DUR"}"#;

// ---------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------

/// A config file in its own directory, with an absolute state directory
/// beside it (so every run of the config shares one outbox).
struct Setup {
    dir: TempDir,
    path: PathBuf,
    state_dir: PathBuf,
    text: String,
}

/// `[influxdb]` on the v2 API at `url`.
fn v2(url: &str) -> TestConfig {
    TestConfig::new().influx_v2(url)
}

/// `[influxdb]` on the 1.x API at `url`, database "pq".
fn v1(url: &str) -> TestConfig {
    TestConfig::new().influx_v1(url, "pq")
}

impl Setup {
    /// Three meters on two gateways (two on `gw1`, one on `gw2`), 1 s
    /// interval, three fields each, flush every 200 ms; the rest of the
    /// config (InfluxDB, extra keys) from `config`.
    fn new(config: TestConfig, gw1: u16, gw2: u16) -> Setup {
        Self::with_flush(FLUSH_MS, config, gw1, gw2)
    }

    fn with_flush(flush_ms: i64, config: TestConfig, gw1: u16, gw2: u16) -> Setup {
        let dir = tempfile::Builder::new()
            .prefix("pqwatch-durability-")
            .tempdir()
            .expect("temp dir");
        let state_dir = dir.path().join("state");
        let fields = FIELDS.map(|f| format!("\"{f}\"")).join(", ");
        let meter = |id: &str, gw: u16, unit: u8| {
            format!(
                "[[meters]]\nid = \"{id}\"\ncustomer = \"C-DUR\"\naddress = \"127.0.0.1:{gw}\"\nunit = {unit}\nprofile = \"eastron-sdm630\"\nnominal_voltage = 400\nct_ratio = \"100/5\"\nfields = [{fields}]\n"
            )
        };
        let text = config
            .state_dir(&state_dir)
            .influx("flush_interval", format!("{flush_ms}ms"))
            .polling("1s", "300ms")
            .push(&format!(
                r#"
[[customers]]
id = "C-DUR"

{a}
{b}
{c}
"#,
                a = meter(METERS[0], gw1, 1),
                b = meter(METERS[1], gw1, 2),
                c = meter(METERS[2], gw2, 1),
            ))
            .to_string();
        let path = write_file(dir.path(), "pqwatch.toml", &text).expect("write config");
        Setup {
            dir,
            path,
            state_dir,
            text,
        }
    }

    fn path_str(&self) -> &str {
        self.path.to_str().expect("utf-8 path")
    }

    /// The simulator for this config's meters (in-process, outlives the
    /// daemon's runs).
    async fn sim(&self) -> Sim {
        let cfg = pqwatch::config::from_str(&self.text, Path::new("/nonexistent"))
            .unwrap_or_else(|e| panic!("test config is invalid: {e}\n{}", self.text));
        Sim::start(&cfg, "").await
    }

    /// `pqwatch run -c FILE`, stderr to `<dir>/<name>.stderr`.
    fn run(&self, name: &str) -> Running {
        Running::spawn_logging_to(
            pqwatch_cmd(&["run", "-c", self.path_str()]),
            self.dir.path().join(format!("{name}.stderr")),
        )
    }

    /// `pqwatch status -c FILE --json`.
    fn status(&self) -> Result<Value, String> {
        tokio::task::block_in_place(|| status_json(&self.path))
    }

    /// Polls `status --json` until `pred` holds (the state database may not
    /// exist yet at first: that is retried too).
    async fn wait_status(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.status();
            if let Ok(v) = &last
                && pred(v)
            {
                return v.clone();
            }
            if Instant::now() >= deadline {
                panic!(
                    "`pqwatch status --json` did not show the expected state within {timeout:?}; last: {last:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn outbox_batches(v: &Value) -> u64 {
    v["outbox"]["batches"].as_u64().expect("outbox.batches")
}

fn outbox_points(v: &Value) -> u64 {
    v["outbox"]["points"].as_u64().expect("outbox.points")
}

/// The first whole second at least 2 s after a daemon started: by then it
/// is up and polling.
fn settled_instant(started_ms: i64) -> i64 {
    instants(started_ms + 2000, started_ms + 2999, STEP)[0]
}

async fn sleep_until_ms(t: i64) {
    let left = t - now_ms();
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left as u64)).await;
    }
}

/// Waits (blocking the runtime worker only, not the simulator) for `bin`
/// to exit; panics with its stderr if it does not.
fn wait_exit(bin: &mut Running, timeout: Duration, what: &str) -> std::process::ExitStatus {
    tokio::task::block_in_place(|| bin.wait_exit(timeout)).unwrap_or_else(|| {
        panic!(
            "{what}: no exit within {timeout:?}; stderr:\n{}",
            bin.stderr()
        )
    })
}

/// SIGTERM, then expect exit status 0 within 15 s. Returns the time of the
/// signal and the daemon's stderr.
fn terminate(bin: &mut Running, what: &str) -> (i64, String) {
    let term_ms = now_ms();
    bin.signal("TERM");
    let status = wait_exit(bin, Duration::from_secs(15), what);
    let stderr = bin.stderr();
    assert_eq!(
        status.code(),
        Some(0),
        "{what}: exit status {status}; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{what}:\n{stderr}");
    (term_ms, stderr)
}

// ---------------------------------------------------------------------------
// Checking what was stored
// ---------------------------------------------------------------------------

/// Timestamps stored per (meter, field), in ascending order, duplicates kept.
type Samples = BTreeMap<(String, String), Vec<i64>>;

fn from_vm(all: &[ExportedSeries]) -> Samples {
    let mut out = Samples::new();
    for s in all {
        let field = s.name().strip_prefix("meter_").unwrap_or(s.name());
        out.entry((s.label("meter").unwrap_or("?").to_owned(), field.to_owned()))
            .or_default()
            .extend(&s.timestamps);
    }
    for ts in out.values_mut() {
        ts.sort_unstable();
    }
    out
}

/// Points of measurement `meter` in database `pq` of an InfluxDB 1.x.
async fn from_influx(db: &InfluxDb1) -> anyhow::Result<Samples> {
    let q = format!(
        "SELECT {} FROM meter WHERE customer = 'C-DUR' GROUP BY meter",
        FIELDS.join(", ")
    );
    let out = db.query("pq", &q).await?;
    let mut samples = Samples::new();
    for series in out["results"][0]["series"].as_array().into_iter().flatten() {
        let meter = series["tags"]["meter"].as_str().unwrap_or("?").to_owned();
        let columns: Vec<&str> = series["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c.as_str().unwrap_or("?"))
            .collect();
        for row in series["values"].as_array().into_iter().flatten() {
            let t = row[0].as_i64().expect("epoch=ms times are integers");
            for (i, col) in columns.iter().enumerate().skip(1) {
                if !row[i].is_null() {
                    samples
                        .entry((meter.clone(), col.to_string()))
                        .or_default()
                        .push(t);
                }
            }
        }
    }
    Ok(samples)
}

/// Every meter has every field, and nothing else is stored; every
/// timestamp is a whole second, none is stored twice, every instant of
/// `want` is present, and with `contiguous` there is no gap at all.
fn check_samples(s: &Samples, want: &[i64], contiguous: bool) -> Result<(), String> {
    let expected: Vec<(String, String)> = METERS
        .iter()
        .flat_map(|m| FIELDS.iter().map(|f| (m.to_string(), f.to_string())))
        .collect();
    let have: Vec<(String, String)> = s.keys().cloned().collect();
    let mut sorted_expected = expected.clone();
    sorted_expected.sort();
    if have != sorted_expected {
        return Err(format!(
            "stored series {have:?}, expected {sorted_expected:?}"
        ));
    }
    for (key, ts) in s {
        if let Some(t) = ts.iter().find(|t| *t % STEP != 0) {
            return Err(format!("{key:?}: {t} is not a whole second; all: {ts:?}"));
        }
        for w in ts.windows(2) {
            if w[0] == w[1] {
                return Err(format!("{key:?}: {} stored twice; all: {ts:?}", w[0]));
            }
            if contiguous && w[1] - w[0] != STEP {
                return Err(format!(
                    "{key:?}: gap between {} and {}; all: {ts:?}",
                    w[0], w[1]
                ));
            }
        }
        let missing: Vec<i64> = want
            .iter()
            .copied()
            .filter(|t| ts.binary_search(t).is_err())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "{key:?}: missing {missing:?} (wanted every instant of {want:?}); have {ts:?}"
            ));
        }
    }
    Ok(())
}

/// Every series exists and holds every instant of `want` (duplicates and
/// gaps are judged by [`check_samples`] once the run is over).
fn covers(s: &Samples, want: &[i64]) -> bool {
    s.len() == METERS.len() * FIELDS.len()
        && s.values()
            .all(|ts| want.iter().all(|t| ts.binary_search(t).is_ok()))
}

/// The latest first timestamp over all series: from then on every series
/// must be complete.
fn first_common(s: &Samples) -> i64 {
    assert_eq!(
        s.len(),
        METERS.len() * FIELDS.len(),
        "not every meter and field is stored: {s:?}"
    );
    s.values()
        .map(|ts| ts.first().copied().unwrap_or(i64::MAX))
        .max()
        .unwrap_or(i64::MAX)
}

/// The samples stamped before `t`.
fn before(s: &Samples, t: i64) -> Samples {
    s.iter()
        .map(|(k, ts)| (k.clone(), ts.iter().copied().filter(|x| *x < t).collect()))
        .collect()
}

/// The raw readings (measurement `meter`) in the outbox of a stopped
/// daemon: its state database read directly with SQLite (read-only), each
/// batch gunzipped and its line protocol parsed. Other measurements the
/// daemon writes (window aggregates, events) are skipped. Only the tags
/// of these tests' config are handled (no escaped characters).
fn outbox_readings(state_dir: &Path) -> Samples {
    use std::io::Read as _;
    let path = state_dir.join("pqwatch.db");
    let db =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut st = db
        .prepare("SELECT body FROM outbox ORDER BY id")
        .expect("query the outbox");
    let bodies: Vec<Vec<u8>> = st
        .query_map([], |r| r.get(0))
        .expect("query the outbox")
        .collect::<Result<_, _>>()
        .expect("read the outbox");
    let mut out = Samples::new();
    for body in bodies {
        let mut raw = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut raw)
            .expect("an outbox body is gzip-compressed line protocol");
        for line in raw.lines().filter(|l| !l.is_empty()) {
            let (key, rest) = line.split_once(' ').expect("line: key fields timestamp");
            let (fields, ts) = rest.rsplit_once(' ').expect("line: key fields timestamp");
            let mut key = key.split(',');
            if key.next() != Some("meter") {
                continue;
            }
            let meter = key
                .find_map(|kv| kv.strip_prefix("meter="))
                .unwrap_or_else(|| panic!("no meter tag: {line}"));
            let ts: i64 = ts.parse().unwrap_or_else(|_| panic!("timestamp: {line}"));
            for f in fields.split(',') {
                let name = f.split_once('=').map_or(f, |x| x.0);
                out.entry((meter.to_owned(), name.to_owned()))
                    .or_default()
                    .push(ts);
            }
        }
    }
    for ts in out.values_mut() {
        ts.sort_unstable();
    }
    out
}

/// Waits until VictoriaMetrics holds every instant of `want` for every
/// series; returns what it holds, or fails with the last export and stderr.
async fn vm_wait_covering(
    vm: &VictoriaMetrics,
    want: &[i64],
    timeout: Duration,
    bin: &Running,
) -> Samples {
    let w = vm
        .wait_for_series(MATCH, |all| covers(&from_vm(all), want), timeout)
        .await;
    if !w.ok {
        panic!(
            "VictoriaMetrics never held every instant of {want:?}: {}\n{w}\n--- pqwatch stderr ---\n{}",
            check_samples(&from_vm(&w.series), want, false)
                .err()
                .unwrap_or_default(),
            bin.stderr()
        );
    }
    from_vm(&w.series)
}

/// Waits until every series has at least `n` samples (the daemon is up and
/// delivering); returns them.
async fn vm_wait_readings(vm: &VictoriaMetrics, n: usize, bin: &Running) -> Samples {
    let ok =
        |s: &Samples| s.len() == METERS.len() * FIELDS.len() && s.values().all(|t| t.len() >= n);
    let w = vm
        .wait_for_series(MATCH, |all| ok(&from_vm(all)), Duration::from_secs(10))
        .await;
    assert!(
        w.ok,
        "no {n} readings per series within 10 s\n{w}\n--- pqwatch stderr ---\n{}",
        bin.stderr()
    );
    from_vm(&w.series)
}

// ---------------------------------------------------------------------------
// 1. VictoriaMetrics outage
// ---------------------------------------------------------------------------

/// VictoriaMetrics goes down for 4 s while pqwatch runs and comes back on
/// the same port with the same storage: the outbox holds the batches
/// meanwhile (seen with `pqwatch status`), and in the end every instant of
/// every meter from the first reading to 1 s before SIGTERM is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn victoriametrics_outage_loses_nothing_and_duplicates_nothing() -> anyhow::Result<()> {
    let mut vm = VictoriaMetrics::start()?;
    let setup = Setup::new(v2(&vm.url()), free_port(), free_port());
    let sim = setup.sim().await;
    let started_ms = now_ms();
    let mut bin = setup.run("run");

    let before = vm_wait_readings(&vm, 2, &bin).await;
    let first = first_common(&before);
    assert!(
        first <= started_ms + 2000,
        "first complete reading at {first}, daemon started at {started_ms}"
    );

    // The outage.
    tokio::task::block_in_place(|| vm.stop())?;
    let down_ms = now_ms();
    // Each sealed batch is committed to the outbox before it is sent. All
    // meters are polled at the same whole second and their readings sealed
    // 200 ms later: one batch per second. With the server up the outbox
    // holds at most the one in flight; with it down they pile up.
    let during = setup
        .wait_status(Duration::from_secs(3), |v| {
            outbox_batches(v) >= 2 && outbox_points(v) >= 2 * READING_POINTS
        })
        .await;
    assert!(outbox_points(&during) > 0, "{during}");
    assert!(
        bin.exited().is_none(),
        "pqwatch exited during the outage:\n{}",
        bin.stderr()
    );
    sleep_until_ms(down_ms + 4000).await;
    tokio::task::block_in_place(|| vm.restart())?;
    let up_ms = now_ms();

    // Recovery: everything polled during the outage arrives.
    vm_wait_covering(
        &vm,
        &instants(first, up_ms, STEP),
        Duration::from_secs(15),
        &bin,
    )
    .await;
    let (term_ms, stderr) = terminate(&mut bin, "pqwatch after the outage");
    sim.stop().await;

    assert!(
        stderr.contains("InfluxDB write failed; will retry"),
        "pqwatch did not notice the outage:\n{stderr}"
    );
    assert!(stderr.contains("InfluxDB writes succeed again"), "{stderr}");

    let all = from_vm(&vm.export(MATCH).await?);
    let want = instants(first, term_ms - 1000, STEP);
    assert!(
        want.iter().filter(|t| **t > down_ms && **t < up_ms).count() >= 3,
        "the outage {down_ms}..{up_ms} must span polled instants: {want:?}"
    );
    check_samples(&all, &want, true).unwrap_or_else(|e| panic!("{e}\n--- stderr ---\n{stderr}"));
    let last = all
        .values()
        .filter_map(|t| t.last())
        .max()
        .copied()
        .unwrap_or(0);
    assert!(
        last <= term_ms,
        "a reading stamped after SIGTERM: {last} > {term_ms}"
    );

    // Nothing left behind, nothing dropped.
    let after = setup.status().map_err(anyhow::Error::msg)?;
    assert_eq!(outbox_batches(&after), 0, "{after}");
    assert_eq!(after["dead_letter"]["batches"], 0, "{after}");
    assert_eq!(after["points_dropped_total"], 0, "{after}");
    Ok(())
}

// ---------------------------------------------------------------------------
// 2. InfluxDB 1.x outage
// ---------------------------------------------------------------------------

/// The same against InfluxDB 1.x (`api = "v1"`), restarted on the same
/// port and data directory after 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb1_outage_loses_nothing() -> anyhow::Result<()> {
    let mut db = InfluxDb1::start()?;
    db.create_database("pq").await?;
    let setup = Setup::new(v1(&db.url()), free_port(), free_port());
    let sim = setup.sim().await;
    let started_ms = now_ms();
    let mut bin = setup.run("run");

    // Delivering: two readings per series.
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        let s = from_influx(&db).await?;
        if s.len() == METERS.len() * FIELDS.len() && s.values().all(|t| t.len() >= 2) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no two readings per series within 10 s: {s:?}\n{}",
            bin.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let first = first_common(&before);
    assert!(
        first <= started_ms + 2000,
        "first at {first}, started {started_ms}"
    );

    tokio::task::block_in_place(|| db.stop())?;
    let down_ms = now_ms();
    let during = setup
        .wait_status(Duration::from_millis(2500), |v| {
            outbox_batches(v) >= 2 && outbox_points(v) >= 2 * READING_POINTS
        })
        .await;
    assert!(outbox_points(&during) > 0, "{during}");
    sleep_until_ms(down_ms + 3000).await;
    tokio::task::block_in_place(|| db.restart())?;
    let up_ms = now_ms();

    let want_up = instants(first, up_ms, STEP);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = from_influx(&db).await?;
        match check_samples(&s, &want_up, false) {
            Ok(()) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "InfluxDB never held every instant up to its restart: {e}\n{}",
                bin.stderr()
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (term_ms, stderr) = terminate(&mut bin, "pqwatch after the InfluxDB outage");
    sim.stop().await;
    assert!(
        stderr.contains("InfluxDB write failed; will retry"),
        "{stderr}"
    );

    let all = from_influx(&db).await?;
    let want = instants(first, term_ms - 1000, STEP);
    assert!(
        want.iter().filter(|t| **t > down_ms && **t < up_ms).count() >= 2,
        "the outage {down_ms}..{up_ms} must span polled instants: {want:?}"
    );
    // InfluxDB overwrites a point with the same series and time, so a
    // duplicate cannot show here; losses and gaps can.
    check_samples(&all, &want, true).unwrap_or_else(|e| panic!("{e}\n--- stderr ---\n{stderr}"));
    let after = setup.status().map_err(anyhow::Error::msg)?;
    assert_eq!(outbox_batches(&after), 0, "{after}");
    Ok(())
}

// ---------------------------------------------------------------------------
// 3. kill -9
// ---------------------------------------------------------------------------

/// With the database down, pqwatch is killed with SIGKILL after ~3 s. A
/// new pqwatch on the same state directory, with the database up, delivers
/// what the outbox holds: every instant up to the kill less the batch being
/// assembled (flush_interval) and a 1 s margin, each exactly once, and
/// exactly as many samples as `status` counted in the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_flushed() -> anyhow::Result<()> {
    let vm_port = free_port();
    let setup = Setup::new(
        v2(&format!("http://127.0.0.1:{vm_port}")),
        free_port(),
        free_port(),
    );
    let sim = setup.sim().await;
    let started1_ms = now_ms();
    let mut bin1 = setup.run("run1");
    // Polling and committing batches to the outbox.
    setup
        .wait_status(Duration::from_secs(10), |v| outbox_batches(v) >= 1)
        .await;
    sleep_until_ms(started1_ms + 3500).await;

    let kill_ms = now_ms();
    bin1.signal("KILL");
    let status = wait_exit(&mut bin1, Duration::from_secs(5), "pqwatch after SIGKILL");
    assert_eq!(status.signal(), Some(9), "{status}");
    let kept = setup.status().map_err(anyhow::Error::msg)?;
    assert!(
        outbox_batches(&kept) >= 2 && outbox_points(&kept) >= 2 * READING_POINTS,
        "{kept}"
    );
    let held = outbox_readings(&setup.state_dir);

    let vm = tokio::task::spawn_blocking(move || VictoriaMetrics::start_on_port(vm_port)).await??;
    let started2_ms = now_ms();
    let mut bin2 = setup.run("run2");
    // Run 2 replays the outbox until it is empty, and delivers its own.
    setup
        .wait_status(Duration::from_secs(15), |v| outbox_batches(v) == 0)
        .await;
    vm_wait_covering(
        &vm,
        &[settled_instant(started2_ms)],
        Duration::from_secs(10),
        &bin2,
    )
    .await;
    let (term2_ms, stderr2) = terminate(&mut bin2, "pqwatch run 2");
    sim.stop().await;
    assert!(
        stderr2.contains("replaying the outbox from the previous run"),
        "{stderr2}"
    );

    let all = from_vm(&vm.export(MATCH).await?);
    let first = first_common(&all);
    assert!(
        first <= started1_ms + 2000,
        "run 1's first readings are missing: first complete instant {first}, run 1 started at {started1_ms}"
    );
    // Committed before the kill: all but the batch being assembled.
    let want1 = instants(first, kill_ms - FLUSH_MS - 1000, STEP);
    assert!(
        want1.len() >= 2,
        "too few instants before the kill: {want1:?}"
    );
    let want2 = instants(settled_instant(started2_ms), term2_ms - 1000, STEP);
    check_samples(&all, &[want1.clone(), want2].concat(), false)
        .unwrap_or_else(|e| panic!("{e}\n--- run 2 stderr ---\n{stderr2}"));
    // Exactly the readings the outbox held after the kill arrived from run
    // 1: no more, no less.
    assert_eq!(
        before(&all, started2_ms),
        held,
        "run 1's readings in VictoriaMetrics (left) vs in the outbox after the kill (right)"
    );
    let lost_tail: Vec<i64> = instants(*want1.last().unwrap() + STEP, kill_ms, STEP)
        .into_iter()
        .filter(|t| all.values().any(|ts| ts.binary_search(t).is_err()))
        .collect();
    eprintln!(
        "kill at {kill_ms}: instants after {} not (fully) stored: {lost_tail:?}",
        want1.last().unwrap()
    );
    Ok(())
}

/// A TCP server that accepts every connection and never answers: an
/// InfluxDB hung in its storage layer. The sockets stay open until drop.
struct Stalling {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stalling {
    fn start() -> Stalling {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let port = l.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                match l.accept() {
                    Ok((sock, _)) => held.push(sock),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Stalling {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Stalling {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// InfluxDB (v2, whose readiness probe runs at start) accepts connections
/// and never answers, with the default 10 s timeout. Readings must reach
/// the outbox from the first polls, not only once the probe timed out:
/// the outbox holds rows well before 10 s, a `kill -9` keeps them, and a
/// restart against a real VictoriaMetrics on that port delivers the
/// readings of the first seconds. Regression test: the sink awaited its
/// probe before it took a reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalling_influxdb_does_not_keep_readings_out_of_the_outbox() -> anyhow::Result<()> {
    let stall = Stalling::start();
    let port = stall.port;
    let setup = Setup::new(
        v2(&format!("http://127.0.0.1:{port}")),
        free_port(),
        free_port(),
    );
    let sim = setup.sim().await;
    let started1_ms = now_ms();
    let mut bin1 = setup.run("run1");
    // Three polls or so, far less than the 10 s timeout.
    setup
        .wait_status(Duration::from_secs(5), |v| {
            outbox_points(v) >= 3 * READING_POINTS
        })
        .await;
    let seen_ms = now_ms();
    assert!(
        seen_ms - started1_ms < 6000,
        "readings reached the outbox only {} ms after the start",
        seen_ms - started1_ms
    );
    bin1.signal("KILL");
    wait_exit(&mut bin1, Duration::from_secs(5), "pqwatch after SIGKILL");
    let held = outbox_readings(&setup.state_dir);
    let first_held = first_common(&held);
    assert!(
        first_held <= started1_ms + 2000,
        "the first seconds are in the outbox: first {first_held}, start {started1_ms}"
    );
    drop(stall);

    let vm = tokio::task::spawn_blocking(move || VictoriaMetrics::start_on_port(port)).await??;
    let started2_ms = now_ms();
    let mut bin2 = setup.run("run2");
    setup
        .wait_status(Duration::from_secs(15), |v| outbox_batches(v) == 0)
        .await;
    vm_wait_covering(
        &vm,
        &[settled_instant(started2_ms)],
        Duration::from_secs(10),
        &bin2,
    )
    .await;
    let (_, stderr2) = terminate(&mut bin2, "pqwatch run 2");
    sim.stop().await;
    let all = from_vm(&vm.export(MATCH).await?);
    assert_eq!(
        before(&all, started2_ms),
        held,
        "run 1's readings in VictoriaMetrics (left) vs in the outbox after the kill (right)\n--- run 2 stderr ---\n{stderr2}"
    );
    Ok(())
}

/// Waits until `bin`'s stderr says polling started (the state database is
/// open, migrated and checkpointed by then).
async fn wait_started(bin: &Running) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !bin.stderr().contains("polling started") {
        assert!(
            Instant::now() < deadline,
            "pqwatch did not start:\n{}",
            bin.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The main database file alone is complete: run 1 (a fresh state
/// directory, InfluxDB down) fills the outbox and is killed; run 2 is
/// killed right after start-up; the `-wal` file is deleted. The schema is
/// intact (not a silently fresh database) and run 1's outbox rows are all
/// there, and run 3 starts on them without migrating anything. Regression
/// test: migrations and replayed rows stayed in the WAL until 1,000 pages
/// had gathered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_file_alone_holds_the_schema_and_earlier_rows() -> anyhow::Result<()> {
    let setup = Setup::new(
        v2(&format!("http://127.0.0.1:{}", free_port())),
        free_port(),
        free_port(),
    );
    let sim = setup.sim().await;
    let mut bin1 = setup.run("run1");
    setup
        .wait_status(Duration::from_secs(10), |v| outbox_batches(v) >= 3)
        .await;
    bin1.signal("KILL");
    wait_exit(&mut bin1, Duration::from_secs(5), "run 1 after SIGKILL");
    let held1 = outbox_readings(&setup.state_dir);

    let mut bin2 = setup.run("run2");
    wait_started(&bin2).await;
    bin2.signal("KILL");
    wait_exit(&mut bin2, Duration::from_secs(5), "run 2 after SIGKILL");
    let db = setup.state_dir.join("pqwatch.db");
    for ext in ["-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{ext}", db.display()));
        if p.exists() {
            std::fs::remove_file(&p)?;
        }
    }
    {
        let c =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        assert_eq!(
            version,
            pqwatch::state::SCHEMA_VERSION,
            "the schema version is in the main file"
        );
    }
    let now = outbox_readings(&setup.state_dir);
    for (key, ts) in &held1 {
        let have = now.get(key).cloned().unwrap_or_default();
        let missing: Vec<i64> = ts
            .iter()
            .copied()
            .filter(|t| have.binary_search(t).is_err())
            .collect();
        assert!(
            missing.is_empty(),
            "{key:?}: run 1's rows lost with the WAL: {missing:?}"
        );
    }

    let mut bin3 = setup.run("run3");
    wait_started(&bin3).await;
    let status = setup.status().map_err(anyhow::Error::msg)?;
    let (_, stderr3) = terminate(&mut bin3, "pqwatch run 3");
    sim.stop().await;
    assert!(
        !stderr3.contains("state database migrated"),
        "run 3 found a fresh database:\n{stderr3}"
    );
    assert_eq!(
        status["schema_version"].as_i64(),
        Some(pqwatch::state::SCHEMA_VERSION),
        "{status}"
    );
    assert!(
        outbox_points(&status) >= held1.values().map(|t| t.len() as u64).sum::<u64>(),
        "{status}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// 4. Signals
// ---------------------------------------------------------------------------

/// With the database up, SIGTERM: exit 0, every reading polled before the
/// signal stored (once), and the outbox empty. The flush interval is 10 s,
/// so at the signal every reading is still in the batch being assembled:
/// only the shutdown drain (seal, commit, send, wait for the answer) can
/// deliver them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() -> anyhow::Result<()> {
    let vm = VictoriaMetrics::start()?;
    let setup = Setup::with_flush(10_000, v2(&vm.url()), free_port(), free_port());
    let sim = setup.sim().await;
    let started_ms = now_ms();
    let mut bin = setup.run("run");
    // Up (state database open), then three or so polls.
    setup.wait_status(Duration::from_secs(10), |_| true).await;
    sleep_until_ms(started_ms + 3500).await;
    assert!(
        vm.export(MATCH).await?.is_empty(),
        "nothing may be sent before the 10 s flush interval"
    );
    let held = setup.status().map_err(anyhow::Error::msg)?;
    assert_eq!(outbox_batches(&held), 0, "nothing sealed yet: {held}");

    let (term_ms, stderr) = terminate(&mut bin, "pqwatch");
    sim.stop().await;
    assert!(
        stderr.contains("signal received: shutting down"),
        "{stderr}"
    );

    let all = from_vm(&vm.export(MATCH).await?);
    let first = first_common(&all);
    assert!(
        first <= started_ms + 2000,
        "first complete instant {first}, started {started_ms}"
    );
    // A poll due at t goes out at t; 500 ms covers its round trip.
    let want = instants(first, term_ms - 500, STEP);
    assert!(want.len() >= 2, "{want:?}");
    check_samples(&all, &want, true).unwrap_or_else(|e| panic!("{e}\n--- stderr ---\n{stderr}"));
    let last = all
        .values()
        .filter_map(|t| t.last())
        .max()
        .copied()
        .unwrap_or(0);
    assert!(
        last <= term_ms,
        "a reading stamped after SIGTERM: {last} > {term_ms}"
    );
    let after = setup.status().map_err(anyhow::Error::msg)?;
    assert_eq!(outbox_batches(&after), 0, "drained before exit: {after}");
    Ok(())
}

/// With the database down and a 20 s grace, a second SIGTERM 300 ms after
/// the first ends the process at once with 130. A third run, with the
/// database up, delivers what the outbox kept: every instant polled before
/// the first signal, less the batch being assembled and a 1 s margin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_signal_exits_at_once() -> anyhow::Result<()> {
    let vm_port = free_port();
    let setup = Setup::new(
        v2(&format!("http://127.0.0.1:{vm_port}")).daemon("shutdown_grace", "20s"),
        free_port(),
        free_port(),
    );
    let sim = setup.sim().await;
    let started1_ms = now_ms();
    let mut bin = setup.run("run1");
    setup
        .wait_status(Duration::from_secs(10), |v| outbox_batches(v) >= 1)
        .await;
    sleep_until_ms(started1_ms + 3000).await;

    let term1_ms = now_ms();
    bin.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        bin.exited().is_none(),
        "with the database down and a 20 s grace, pqwatch must still be draining 300 ms after SIGTERM:\n{}",
        bin.stderr()
    );
    let term2 = Instant::now();
    bin.signal("TERM");
    let status = wait_exit(
        &mut bin,
        Duration::from_secs(5),
        "pqwatch after the second SIGTERM",
    );
    let took = term2.elapsed();
    let stderr1 = bin.stderr();
    assert_eq!(status.code(), Some(130), "{status}\n{stderr1}");
    assert!(
        took <= Duration::from_secs(2),
        "exit took {took:?} after the second signal"
    );
    assert!(stderr1.contains("second signal"), "{stderr1}");
    assert!(!stderr1.contains("panicked"), "{stderr1}");
    let kept = setup.status().map_err(anyhow::Error::msg)?;
    assert!(
        outbox_batches(&kept) >= 2 && outbox_points(&kept) >= 2 * READING_POINTS,
        "{kept}"
    );
    let held = outbox_readings(&setup.state_dir);

    let vm = tokio::task::spawn_blocking(move || VictoriaMetrics::start_on_port(vm_port)).await??;
    let started3_ms = now_ms();
    let mut bin3 = setup.run("run3");
    setup
        .wait_status(Duration::from_secs(15), |v| outbox_batches(v) == 0)
        .await;
    vm_wait_covering(
        &vm,
        &[settled_instant(started3_ms)],
        Duration::from_secs(10),
        &bin3,
    )
    .await;
    let (term3_ms, stderr3) = terminate(&mut bin3, "pqwatch run 3");
    sim.stop().await;

    let all = from_vm(&vm.export(MATCH).await?);
    let first = first_common(&all);
    assert!(
        first <= started1_ms + 2000,
        "run 1's first readings are missing: first complete instant {first}, run 1 started at {started1_ms}"
    );
    let want1 = instants(first, term1_ms - FLUSH_MS - 1000, STEP);
    assert!(!want1.is_empty(), "{want1:?}");
    let want3 = instants(settled_instant(started3_ms), term3_ms - 1000, STEP);
    check_samples(&all, &[want1, want3].concat(), false).unwrap_or_else(|e| {
        panic!("{e}\n--- run 1 stderr ---\n{stderr1}\n--- run 3 stderr ---\n{stderr3}")
    });
    assert_eq!(
        before(&all, started3_ms),
        held,
        "run 1's readings in VictoriaMetrics (left) vs in the outbox it left (right)"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// 5. State files that are not ours
// ---------------------------------------------------------------------------

fn dir_listing(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
        .expect("read state dir")
        .map(|e| {
            let e = e.expect("dir entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().map(|m| m.len()).unwrap_or(0),
            )
        })
        .collect();
    v.sort();
    v
}

/// `pqwatch run` and `pqwatch status` on a state directory whose
/// `pqwatch.db` is (a) a text file, (b) another application's SQLite
/// database, (c) a file with an SQLite header and garbage after it: both
/// fail within seconds with exit 1, name the file, say it is not a pqwatch
/// state database, do not panic, and leave the directory byte for byte as
/// it was (no journal or WAL files either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_or_corrupt_state_file_is_refused_untouched() -> anyhow::Result<()> {
    let python = Path::new(common::PYTHON_BIN);
    assert!(
        python.exists(),
        "{} is needed to write a foreign SQLite file",
        python.display()
    );
    type Make = Box<dyn Fn(&Path)>;
    let cases: [(&str, Make); 3] = [
        (
            "text file",
            Box::new(|p: &Path| {
                std::fs::write(p, b"# not a database\nkey = value\n".repeat(100)).unwrap();
            }),
        ),
        (
            "another application's SQLite database",
            Box::new(|p: &Path| {
                let ok = std::process::Command::new(common::PYTHON_BIN)
                    .arg("-c")
                    .arg(
                        "import sqlite3, sys\n\
                         c = sqlite3.connect(sys.argv[1])\n\
                         c.execute('CREATE TABLE invoices(id INTEGER PRIMARY KEY, customer TEXT, total REAL)')\n\
                         c.executemany('INSERT INTO invoices(customer, total) VALUES (?, ?)', [('ACME', 12.5), ('Initech', 99.0)])\n\
                         c.commit()\n\
                         c.close()\n",
                    )
                    .arg(p)
                    .status()
                    .expect("run python3")
                    .success();
                assert!(ok, "python3 could not create {}", p.display());
            }),
        ),
        (
            "an SQLite header followed by garbage",
            Box::new(|p: &Path| {
                let mut b = b"SQLite format 3\0".to_vec();
                b.extend((0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
                std::fs::write(p, b).unwrap();
            }),
        ),
    ];
    for (what, make) in cases {
        let setup = Setup::new(v2("http://127.0.0.1:9"), free_port(), free_port());
        std::fs::create_dir_all(&setup.state_dir)?;
        let db = setup.state_dir.join("pqwatch.db");
        make(&db);
        let bytes = std::fs::read(&db)?;
        let listing = dir_listing(&setup.state_dir);

        for args in [
            vec!["run", "-c", setup.path_str()],
            vec!["status", "-c", setup.path_str()],
            vec!["status", "-c", setup.path_str(), "--json"],
        ] {
            let t0 = Instant::now();
            let out = tokio::task::block_in_place(|| {
                run_to_end(pqwatch_cmd(&args), Duration::from_secs(10))
            });
            let took = t0.elapsed();
            let ctx = format!("{what}: pqwatch {args:?} took {took:?}\n{out}");
            assert_eq!(out.code, Some(1), "{ctx}");
            assert!(took < Duration::from_secs(5), "{ctx}");
            assert!(
                out.stderr.contains(&db.display().to_string()),
                "the file is not named: {ctx}"
            );
            assert!(
                out.stderr.contains("is not a pqwatch state database"),
                "{ctx}"
            );
            assert!(!out.stderr.contains("panicked"), "{ctx}");
            assert!(out.stdout.trim().is_empty(), "nothing on stdout: {ctx}");
            assert!(std::fs::read(&db)? == bytes, "the file was modified: {ctx}");
            assert_eq!(
                dir_listing(&setup.state_dir),
                listing,
                "the state directory changed: {ctx}"
            );
        }
    }
    Ok(())
}

/// Another application's SQLite database in WAL mode, with a transaction
/// still in its `-wal` file (that application crashed or is running):
/// `pqwatch run` must refuse it without writing anything. Regression test:
/// the identity check once ran on a read-write connection, whose closing
/// checkpointed the other application's WAL into its file and deleted
/// `-wal` and `-shm` (src/state.rs, `StateDb::open`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_wal_mode_database_is_refused_untouched() -> anyhow::Result<()> {
    let setup = Setup::new(v2("http://127.0.0.1:9"), free_port(), free_port());
    std::fs::create_dir_all(&setup.state_dir)?;
    let db = setup.state_dir.join("pqwatch.db");
    let wal = setup.state_dir.join("pqwatch.db-wal");
    let ok = std::process::Command::new(common::PYTHON_BIN)
        .arg("-c")
        .arg(
            "import sqlite3, sys, os\n\
             c = sqlite3.connect(sys.argv[1])\n\
             c.execute('PRAGMA journal_mode=WAL')\n\
             c.execute('CREATE TABLE invoices(id INTEGER PRIMARY KEY, total REAL)')\n\
             c.commit()\n\
             c.execute('PRAGMA wal_checkpoint(TRUNCATE)')\n\
             c.execute('INSERT INTO invoices(total) VALUES (1.5)')\n\
             c.commit()\n\
             os._exit(0)\n",
        )
        .arg(&db)
        .status()?
        .success();
    assert!(ok, "python3 could not create {}", db.display());
    let (db_bytes, wal_bytes) = (std::fs::read(&db)?, std::fs::read(&wal)?);
    assert!(!wal_bytes.is_empty(), "the committed insert is in the WAL");

    let out = tokio::task::block_in_place(|| {
        run_to_end(
            pqwatch_cmd(&["run", "-c", setup.path_str()]),
            Duration::from_secs(10),
        )
    });
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains("is not a pqwatch state database"),
        "{out}"
    );
    assert!(
        std::fs::read(&db)? == db_bytes,
        "the other application's file was written to:\n{out}"
    );
    assert!(
        std::fs::read(&wal).ok() == Some(wal_bytes),
        "the other application's WAL was checkpointed or removed (exists now: {}):\n{out}",
        wal.exists()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// 6. durability = "memory"
// ---------------------------------------------------------------------------

/// `durability = "memory"`, database down: while running nothing is written
/// to the outbox; SIGTERM (1 s grace) moves what is held in memory there;
/// the next run, with the database up, delivers it: every instant polled
/// before the signal, and exactly the points the outbox held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_durability_survives_a_graceful_restart() -> anyhow::Result<()> {
    let vm_port = free_port();
    let setup = Setup::new(
        v2(&format!("http://127.0.0.1:{vm_port}"))
            .influx("durability", "memory")
            .daemon("shutdown_grace", "1s"),
        free_port(),
        free_port(),
    );
    let sim = setup.sim().await;
    let started1_ms = now_ms();
    let mut bin = setup.run("run1");
    // Polling and failing to write: batches exist (in memory).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bin.stderr().contains("InfluxDB write failed; will retry") {
        assert!(
            Instant::now() < deadline,
            "no write attempt within 10 s:\n{}",
            bin.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sleep_until_ms(started1_ms + 3000).await;
    let during = setup.status().map_err(anyhow::Error::msg)?;
    assert_eq!(
        outbox_batches(&during),
        0,
        "memory mode writes no batch to disk while running: {during}"
    );

    let t0 = Instant::now();
    let (term_ms, stderr1) = terminate(&mut bin, "pqwatch (memory durability)");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "a 1 s grace, yet exit took {:?}",
        t0.elapsed()
    );
    assert!(
        stderr1.contains("undelivered points kept in the outbox for the next start"),
        "{stderr1}"
    );
    let kept = setup.status().map_err(anyhow::Error::msg)?;
    assert!(
        outbox_batches(&kept) >= 2 && outbox_points(&kept) >= 2 * READING_POINTS,
        "{kept}"
    );
    let held = outbox_readings(&setup.state_dir);

    let vm = tokio::task::spawn_blocking(move || VictoriaMetrics::start_on_port(vm_port)).await??;
    let started2_ms = now_ms();
    let mut bin2 = setup.run("run2");
    setup
        .wait_status(Duration::from_secs(15), |v| outbox_batches(v) == 0)
        .await;
    vm_wait_covering(
        &vm,
        &[settled_instant(started2_ms)],
        Duration::from_secs(10),
        &bin2,
    )
    .await;
    let (term2_ms, stderr2) = terminate(&mut bin2, "pqwatch run 2");
    sim.stop().await;

    let all = from_vm(&vm.export(MATCH).await?);
    let first = first_common(&all);
    assert!(
        first <= started1_ms + 2000,
        "run 1's first readings are missing: first complete instant {first}, run 1 started at {started1_ms}"
    );
    // A graceful stop keeps everything polled before the signal.
    let want1 = instants(first, term_ms - 500, STEP);
    assert!(want1.len() >= 2, "{want1:?}");
    let want2 = instants(settled_instant(started2_ms), term2_ms - 1000, STEP);
    check_samples(&all, &[want1, want2].concat(), false).unwrap_or_else(|e| {
        panic!("{e}\n--- run 1 stderr ---\n{stderr1}\n--- run 2 stderr ---\n{stderr2}")
    });
    // Run 1 was continuous: no gap up to the signal.
    for (key, ts) in &all {
        let run1: Vec<i64> = ts.iter().copied().filter(|t| *t < started2_ms).collect();
        assert!(
            run1.windows(2).all(|w| w[1] - w[0] == STEP),
            "{key:?}: gap in run 1: {run1:?}"
        );
    }
    assert_eq!(
        before(&all, started2_ms),
        held,
        "run 1's readings in VictoriaMetrics (left) vs in the outbox it left (right)"
    );
    Ok(())
}
