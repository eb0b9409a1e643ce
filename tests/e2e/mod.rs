//! Helpers for pqwatch's end-to-end tests (`mod common; mod e2e;`): run the
//! daemon and the simulator in-process, run the `pqwatch` binary in a
//! subprocess, and check wall-clock-aligned series.
//!
//! `tests/common` starts the independent peers (VictoriaMetrics, InfluxDB,
//! pymodbus) and uses no pqwatch code; this module is the pqwatch side.
//! Nothing here sleeps to wait for readiness: waits poll a condition under
//! a deadline. The only fixed sleeps in the tests are how long the daemon is
//! left running, which is part of each scenario.
#![allow(dead_code)]

use crate::common::ExportedSeries;
use pqwatch::app::{Handles, Options};
use pqwatch::config::Config;
use pqwatch::metrics::Metrics;
use pqwatch::sim::scenario::Scenario;
use pqwatch::sim::{SimMeter, Simulator};
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Logs of the in-process daemon go to the test's captured output (shown
/// for failing tests). `RUST_LOG` overrides the level.
pub(crate) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_test_writer()
        .try_init();
}

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// A validated config from text (no conf.d, no environment), e.g. a
/// `common::TestConfig`'s.
///
/// Each config gets its own fresh state directory, so tests never share (or
/// replay) an outbox.
pub(crate) fn config(text: &str) -> Config {
    let mut cfg = pqwatch::config::from_str(text, Path::new("/nonexistent"))
        .unwrap_or_else(|e| panic!("test config is invalid: {e}\n--- config ---\n{text}"));
    cfg.daemon.state_dir = fresh_state_dir();
    cfg
}

/// A new empty directory under the system temp dir, kept after the test
/// (a test may inspect it after the daemon stopped).
pub(crate) fn fresh_state_dir() -> std::path::PathBuf {
    tempfile::Builder::new()
        .prefix("pqwatch-test-state-")
        .tempdir()
        .expect("temp dir")
        .keep()
}

/// Relative closeness, for values that went through f32 registers.
pub(crate) fn close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs().max(f64::MIN_POSITIVE)
}

// ---------------------------------------------------------------------------
// Simulator
// ---------------------------------------------------------------------------

/// pqwatch's meter simulator serving some of a config's meters.
pub(crate) struct Sim {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Sim {
    /// Serve every meter of `cfg` with the given scenario (TOML, may be "").
    pub(crate) async fn start(cfg: &Config, scenario: &str) -> Sim {
        Self::start_filtered(cfg, scenario, |_| true).await
    }

    /// Serve only the meters at `addresses`.
    pub(crate) async fn start_at(cfg: &Config, scenario: &str, addresses: &[String]) -> Sim {
        Self::start_filtered(cfg, scenario, |m| addresses.contains(&m.address)).await
    }

    async fn start_filtered(cfg: &Config, scenario: &str, keep: impl Fn(&SimMeter) -> bool) -> Sim {
        let scenario = Scenario::parse(scenario)
            .unwrap_or_else(|e| panic!("bad test scenario: {}", e.join("; ")));
        let meters: Vec<SimMeter> = SimMeter::from_config(cfg)
            .into_iter()
            .filter(|m| keep(m))
            .collect();
        let sim = Simulator::bind(meters, scenario, Duration::ZERO)
            .await
            .expect("bind the simulator");
        let stop = CancellationToken::new();
        let task = tokio::spawn(sim.serve(stop.clone()));
        Sim {
            stop,
            task: Some(task),
        }
    }

    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

// ---------------------------------------------------------------------------
// The daemon, in-process
// ---------------------------------------------------------------------------

/// `pqwatch::app::run` on a spawned task.
pub(crate) struct Daemon {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    pub handles: Handles,
    /// Wall clock just before `run` was spawned.
    pub started_ms: i64,
}

/// What a stopped daemon leaves behind.
pub(crate) struct Stopped {
    pub started_ms: i64,
    /// Wall clock when shutdown was requested.
    pub stopped_ms: i64,
    pub metrics: Arc<Metrics>,
}

impl Stopped {
    pub(crate) fn get(&self, f: impl Fn(&Metrics) -> &std::sync::atomic::AtomicU64) -> u64 {
        Metrics::get(f(&self.metrics))
    }
}

impl Daemon {
    /// Start with a 10 s shutdown grace (the sink may keep delivering that long).
    pub(crate) fn start(cfg: Config) -> Daemon {
        Self::start_with_grace(cfg, Duration::from_secs(10))
    }

    /// A config left at the default `[http] listen` (127.0.0.1:9108) gets
    /// port 0 instead: tests run daemons side by side, and never on the
    /// production port. The bound address is in `handles.http_addr`.
    pub(crate) fn start_with_grace(mut cfg: Config, grace: Duration) -> Daemon {
        if cfg.http.listen == std::net::SocketAddr::from(([127, 0, 0, 1], 9108)) {
            cfg.http.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        }
        let stop = CancellationToken::new();
        let handles = Handles::default();
        let opts = Options {
            status_every: Duration::from_secs(3600),
            grace,
            ..Default::default()
        };
        let started_ms = now_ms();
        let task = tokio::spawn(pqwatch::app::run(cfg, stop.clone(), opts, handles.clone()));
        Daemon {
            stop,
            task,
            handles,
            started_ms,
        }
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.handles.metrics
    }

    /// Let it run until `started_ms + ms` (wall clock).
    pub(crate) async fn run_until(&self, ms: i64) {
        let left = self.started_ms + ms - now_ms();
        if left > 0 {
            tokio::time::sleep(Duration::from_millis(left as u64)).await;
        }
    }

    /// Cancel, then wait for `run` to drain and return.
    pub(crate) async fn stop(self) -> Stopped {
        let stopped_ms = now_ms();
        self.stop.cancel();
        match tokio::time::timeout(Duration::from_secs(20), self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("pqwatch::app::run failed: {e:#}"),
            Ok(Err(e)) => panic!("pqwatch::app::run panicked: {e}"),
            Err(_) => panic!("pqwatch::app::run did not return within 20 s of shutdown"),
        }
        Stopped {
            started_ms: self.started_ms,
            stopped_ms,
            metrics: self.handles.metrics,
        }
    }
}

/// Poll `cond` every 50 ms until it holds or `timeout` passes.
pub(crate) async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// Wall-clock alignment
// ---------------------------------------------------------------------------

/// Multiples of `step` in `[from, to]`.
pub(crate) fn instants(from: i64, to: i64, step: i64) -> Vec<i64> {
    let first = from.div_euclid(step) * step + if from.rem_euclid(step) == 0 { 0 } else { step };
    (0..)
        .map(|k| first + k * step)
        .take_while(|t| *t <= to)
        .collect()
}

/// Checks one series: every timestamp is a multiple of `step`, consecutive
/// timestamps differ by exactly `step` (no gap, no duplicate), and every
/// instant of `must_cover` is present. Returns a description of the first
/// violation.
pub(crate) fn check_aligned(
    s: &ExportedSeries,
    step: i64,
    must_cover: &[i64],
) -> Result<(), String> {
    let ts = &s.timestamps;
    if let Some(t) = ts.iter().find(|t| *t % step != 0) {
        return Err(format!(
            "{:?}: timestamp {t} is not a multiple of {step} ms; all: {ts:?}",
            s.metric
        ));
    }
    for w in ts.windows(2) {
        if w[1] - w[0] != step {
            return Err(format!(
                "{:?}: consecutive timestamps {} and {} differ by {} ms, not {step} (gap or duplicate); all: {ts:?}",
                s.metric,
                w[0],
                w[1],
                w[1] - w[0]
            ));
        }
    }
    let have: BTreeSet<i64> = ts.iter().copied().collect();
    let missing: Vec<i64> = must_cover
        .iter()
        .copied()
        .filter(|t| !have.contains(t))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{:?}: no sample at {missing:?} (expected every instant of {must_cover:?}); have {ts:?}",
            s.metric
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_pqwatch");

/// A `pqwatch` command with an environment that cannot leak settings into
/// the test: no `PQWATCH*`, `RUST_LOG`, `JOURNAL_STREAM` or `CREDENTIALS_DIRECTORY`.
/// It sets `PQWATCH__HTTP__LISTEN=127.0.0.1:0`, so daemons run side by side
/// never fight over (or take) the default HTTP port; a test that needs a
/// known port sets that variable again on the returned command.
pub(crate) fn pqwatch_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("PQWATCH")
            || k == "RUST_LOG"
            || k == "JOURNAL_STREAM"
            || k == "CREDENTIALS_DIRECTORY"
        {
            cmd.env_remove(k);
        }
    }
    cmd.env("PQWATCH__HTTP__LISTEN", "127.0.0.1:0");
    cmd
}

#[derive(Debug)]
pub(crate) struct Output {
    /// `None` if killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Run to completion (killed after `timeout`, which fails the test).
pub(crate) fn run_to_end(mut cmd: Command, timeout: Duration) -> Output {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pqwatch");
    let pid = out.id();
    // Reading pipes to the end and waiting happen on a helper thread so the
    // deadline can be enforced here.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(out.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(o)) => Output {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        },
        Ok(Err(e)) => panic!("waiting for pqwatch: {e}"),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!(
                "pqwatch {:?} did not finish within {timeout:?}",
                cmd.get_args().collect::<Vec<_>>()
            );
        }
    }
}

/// A long-running `pqwatch` process whose stderr goes to a file that can be
/// read while it runs; killed on drop.
pub(crate) struct Running {
    child: Child,
    pub stderr_path: PathBuf,
}

impl Running {
    pub(crate) fn spawn(cmd: Command, dir: &Path) -> Running {
        Self::spawn_logging_to(cmd, dir.join("pqwatch.stderr"))
    }

    /// Like [`spawn`](Self::spawn), with stderr going to `stderr_path`
    /// (several runs of one config in one directory keep their own logs).
    pub(crate) fn spawn_logging_to(mut cmd: Command, stderr_path: PathBuf) -> Running {
        let err = File::create(&stderr_path).expect("create stderr file");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn pqwatch");
        Running { child, stderr_path }
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read(&self.stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal ("TERM", "INT", …) to this process.
    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} {} failed", self.child.id());
    }

    /// Wait for the process to exit, up to `timeout`.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `pqwatch status -c FILE --json`, parsed; `Err` carries the whole output
/// when it fails or prints something that is not JSON.
pub(crate) fn status_json(config: &Path) -> Result<serde_json::Value, String> {
    let out = run_to_end(
        pqwatch_cmd(&[
            "status",
            "-c",
            config.to_str().expect("utf-8 path"),
            "--json",
        ]),
        Duration::from_secs(10),
    );
    if out.code != Some(0) {
        return Err(out.to_string());
    }
    serde_json::from_str(&out.stdout)
        .map_err(|e| format!("status --json is not JSON ({e}):\n{out}"))
}
