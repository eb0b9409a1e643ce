//! Test harness shared by the integration tests (`mod common;`).
//!
//! Starts real, independent peers on free loopback ports, each in its own
//! temp dir, and kills them on drop:
//!
//! * [`VictoriaMetrics`]: Debian's `/usr/bin/victoria-metrics` (1.79.x), the
//!   InfluxDB-line-protocol sink we read back with `/api/v1/export`.
//! * [`InfluxDb1`]: Debian's `/usr/bin/influxd` (InfluxDB 1.6.x), optionally
//!   with authentication.
//!
//! Both database servers can be `stop()`ped (SIGTERM, so they persist what
//! they acknowledged) and `restart()`ed on the same port with the same data,
//! to simulate an outage.
//! * [`ModbusPeer`]: `tests/peers/modbus_peer.py`, a pymodbus server run by
//!   Debian's `/usr/bin/python3`, serving registers from a JSON spec.
//!
//! The binaries come from Debian packages that `./scripts/test.sh` installs.
//! Every server writes stdout+stderr to `<tempdir>/server.log`; a start
//! failure's error carries the tail of that log. Set
//! `PQWATCH_KEEP_TEST_DIRS=1` to keep the temp dirs (their paths are printed
//! on drop) for post-mortems.
//!
//! `start()` functions are synchronous (they block for the ~0.05–0.5 s the
//! server needs to come up, polling its readiness, never sleeping a fixed
//! time), so they can be called from sync code and from `#[tokio::test]`.
//!
//! Beside the peers, the text every test's config is written from:
//! [`TestConfig`] (the `[daemon]`, `[influxdb]`, `[polling]`, … start of a
//! config, in [`config`]) and the shared fleet and scenarios ([`fleet`]).
#![allow(dead_code)]

pub(crate) mod config;
pub(crate) mod fleet;

// Not every test binary that includes this module builds a config.
#[allow(unused_imports)]
pub(crate) use config::TestConfig;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tempfile::TempDir;

/// How long a server may take to become ready before `start()` fails.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval between readiness probes.
const POLL: Duration = Duration::from_millis(20);
/// How often `start()` retries when a port picked by [`free_port`] was taken
/// by someone else before the server could bind it.
const PORT_RETRIES: usize = 3;

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it for a
/// listener that is closed again before returning). Prefer passing port 0 to
/// the server itself where it supports that (the Modbus peer does).
pub(crate) fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

fn missing_binary(path: &Path, package: &str) -> anyhow::Error {
    anyhow!(
        "{} not found: run ./scripts/test.sh, which installs the Debian package `{package}` \
         (or `apt-get install {package}`)",
        path.display()
    )
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        // Never route loopback test traffic through an HTTP(S)_PROXY from the env.
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build reqwest client")
}

// ---------------------------------------------------------------------------
// Process handling
// ---------------------------------------------------------------------------

/// A spawned server process with its temp dir and log file; killed (SIGKILL)
/// and reaped on drop.
struct ServerProcess {
    name: &'static str,
    child: Child,
    log_path: PathBuf,
    dir: Option<TempDir>,
}

impl ServerProcess {
    /// Spawns `cmd` with stdin closed and stdout+stderr appended to
    /// `<dir>/server.log`.
    fn spawn(name: &'static str, mut cmd: Command, dir: TempDir) -> anyhow::Result<Self> {
        let log_path = dir.path().join("server.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("create {}", log_path.display()))?;
        let log_err = log.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {name}: {cmd:?}"))?;
        Ok(ServerProcess {
            name,
            child,
            log_path,
            dir: Some(dir),
        })
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("dir").path()
    }

    fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `n` lines of the server's log.
    fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Stops the process, keeping its directory: SIGTERM (so the server can
    /// flush what it acknowledged), then SIGKILL if it has not exited after
    /// `timeout`. Returns how long it took.
    fn stop(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        if self.child.try_wait()?.is_some() {
            return Ok(start.elapsed());
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "{} did not exit within {timeout:?} of SIGTERM (killed); log {}:\n{}",
                    self.name,
                    self.log_path.display(),
                    self.log_tail(30)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Starts `cmd` in place of the (stopped) process, in the same directory,
    /// appending to the same log.
    fn respawn(&mut self, mut cmd: Command) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            bail!("{} is still running; stop() it first", self.name);
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("open {}", self.log_path.display()))?;
        let log_err = log.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        self.child = cmd
            .spawn()
            .with_context(|| format!("respawn {}: {cmd:?}", self.name))?;
        Ok(())
    }

    /// Error if the process has exited.
    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited during startup ({status}); log {}:\n{}",
                self.name,
                self.log_path.display(),
                self.log_tail(30)
            );
        }
        Ok(())
    }

    /// Polls `probe` until it returns true, the process dies, or the timeout
    /// passes.
    fn wait_ready(
        &mut self,
        what: &str,
        mut probe: impl FnMut(&Self) -> bool,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            self.check_running()?;
            if probe(self) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > START_TIMEOUT {
                bail!(
                    "{} not ready after {:?} (waiting for {what}); log {}:\n{}",
                    self.name,
                    START_TIMEOUT,
                    self.log_path.display(),
                    self.log_tail(30)
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("PQWATCH_KEEP_TEST_DIRS").is_some_and(|v| !v.is_empty())
            && let Some(dir) = self.dir.take()
        {
            let path = dir.keep();
            eprintln!("[harness] kept {} dir: {}", self.name, path.display());
        }
    }
}

/// Runs `start(port)` with fresh free ports until the server does not fail
/// with "address already in use" (the small race inherent in [`free_port`]).
fn with_port_retries<T>(mut start: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let mut last = None;
    for _ in 0..PORT_RETRIES {
        match start() {
            Ok(v) => return Ok(v),
            Err(e) if format!("{e:#}").contains("address already in use") => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap())
}

/// Minimal blocking HTTP/1.0 GET for readiness probes (no async runtime
/// needed). Returns the status code.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    // "HTTP/1.1 204 No Content"
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

async fn check_status(resp: reqwest::Response, what: &str) -> anyhow::Result<String> {
    let status = resp.status();
    let body = resp
        .text()
        .await
        .with_context(|| format!("{what}: read body"))?;
    if !status.is_success() {
        bail!("{what}: HTTP {status}: {body}");
    }
    Ok(body)
}

// ---------------------------------------------------------------------------
// VictoriaMetrics
// ---------------------------------------------------------------------------

/// A throw-away single-node VictoriaMetrics (Debian package
/// `victoria-metrics`, 1.79.5 on Debian 12).
///
/// # How InfluxDB line protocol maps to series (verified against 1.79.5)
///
/// Writing
///
/// ```text
/// POST /api/v2/write?org=o&bucket=b&precision=ms
/// meter,meter=M1,customer=C1 voltage_l1_n=230.5,current_l1=5i 1795764202000
/// ```
///
/// stores one series per *field*, named `{measurement}_{field}`, with the tags
/// as labels, and the timestamp in milliseconds:
///
/// ```text
/// {"metric":{"__name__":"meter_voltage_l1_n","customer":"C1","meter":"M1"},"values":[230.5],"timestamps":[1795764202000]}
/// {"metric":{"__name__":"meter_current_l1","customer":"C1","meter":"M1"},"values":[5],"timestamps":[1795764202000]}
/// ```
///
/// * `/api/v2/write?org=..&bucket=..` adds NO `db` label: org and bucket are
///   ignored. Only the 1.x endpoint `/write?db=mydb` adds the label
///   `db="mydb"` (`-influxDBLabel`). A tag literally named `db` in the line
///   is kept as a label.
/// * `precision` defaults to `ns` on `/api/v2/write` (as in InfluxDB); `ms`
///   and `s` work. Timestamps are stored in ms (`-influxTrimTimestamp=1ms`).
/// * Integer fields (`5i`) become plain numbers, booleans 1/0, and STRING
///   fields (`s="x"`) silently become a series with value 0.
/// * Samples outside the retention period are dropped, and so are samples
///   more than ~2 days in the future; this harness sets `-retentionPeriod=100y`
///   so fixed historical timestamps work.
/// * Freshly written samples are NOT visible to `/api/v1/export` for several
///   seconds unless `/internal/force_flush` is called first (this version
///   has no `-inmemoryDataFlushInterval` flag); [`VictoriaMetrics::export`]
///   does that.
/// * Gzip bodies (`Content-Encoding: gzip`) are accepted; the endpoint answers
///   204 No Content.
pub(crate) struct VictoriaMetrics {
    proc: ServerProcess,
    port: u16,
    client: reqwest::Client,
    /// Time from spawn to `/health` answering 200.
    pub startup: Duration,
}

/// One series from VictoriaMetrics' `/api/v1/export` (JSON lines), with
/// lines of the same series merged and samples sorted by timestamp.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExportedSeries {
    /// All labels including `__name__`.
    pub metric: BTreeMap<String, String>,
    pub values: Vec<f64>,
    /// Milliseconds since the Unix epoch.
    pub timestamps: Vec<i64>,
}

impl ExportedSeries {
    pub(crate) fn name(&self) -> &str {
        self.label("__name__").unwrap_or("")
    }

    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        self.metric.get(key).map(String::as_str)
    }

    /// True if every `(key, value)` pair is among the labels.
    pub(crate) fn has_labels(&self, labels: &[(&str, &str)]) -> bool {
        labels.iter().all(|(k, v)| self.label(k) == Some(*v))
    }

    /// `(timestamp_ms, value)` pairs.
    pub(crate) fn points(&self) -> Vec<(i64, f64)> {
        self.timestamps
            .iter()
            .copied()
            .zip(self.values.iter().copied())
            .collect()
    }

    pub(crate) fn last(&self) -> Option<(i64, f64)> {
        self.points().last().copied()
    }
}

/// Finds the series with this metric name and labels.
pub(crate) fn find_series<'a>(
    series: &'a [ExportedSeries],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a ExportedSeries> {
    series
        .iter()
        .find(|s| s.name() == name && s.has_labels(labels))
}

/// Parses `/api/v1/export` output: one JSON object per line; the same series
/// may appear on several lines (one per storage block), which are merged.
pub(crate) fn parse_export(body: &str) -> anyhow::Result<Vec<ExportedSeries>> {
    let mut merged: BTreeMap<BTreeMap<String, String>, Vec<(i64, f64)>> = BTreeMap::new();
    for (i, line) in body.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("export line {}: not JSON: {line}", i + 1))?;
        let bad = || anyhow!("export line {}: unexpected shape: {line}", i + 1);
        let metric: BTreeMap<String, String> = v["metric"]
            .as_object()
            .ok_or_else(bad)?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let values = v["values"].as_array().ok_or_else(bad)?;
        let timestamps = v["timestamps"].as_array().ok_or_else(bad)?;
        if values.len() != timestamps.len() {
            return Err(bad());
        }
        let points = merged.entry(metric).or_default();
        for (t, x) in timestamps.iter().zip(values) {
            let t = t.as_i64().ok_or_else(bad)?;
            // Non-numbers (e.g. a NaN rendered as a string) become NaN.
            let x = x.as_f64().unwrap_or(f64::NAN);
            points.push((t, x));
        }
    }
    Ok(merged
        .into_iter()
        .map(|(metric, mut points)| {
            points.sort_by_key(|p| p.0);
            ExportedSeries {
                metric,
                timestamps: points.iter().map(|p| p.0).collect(),
                values: points.iter().map(|p| p.1).collect(),
            }
        })
        .collect())
}

/// Result of [`VictoriaMetrics::wait_for_series`]: the last export either way.
#[derive(Debug, Clone)]
pub(crate) struct Waited {
    /// Whether the predicate held.
    pub ok: bool,
    /// The last export (the one the predicate held for, if `ok`).
    pub series: Vec<ExportedSeries>,
    /// The last export error seen while polling, if any.
    pub last_error: Option<String>,
    pub elapsed: Duration,
    pub match_expr: String,
}

impl Waited {
    /// `Ok(series)` if the predicate held, else an error showing the last export.
    pub(crate) fn into_result(self) -> anyhow::Result<Vec<ExportedSeries>> {
        if self.ok {
            Ok(self.series)
        } else {
            Err(anyhow!("{self}"))
        }
    }
}

impl fmt::Display for Waited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "predicate on export of {} {} after {:?}; ",
            self.match_expr,
            if self.ok { "held" } else { "did NOT hold" },
            self.elapsed
        )?;
        if let Some(e) = &self.last_error {
            write!(f, "last error: {e}; ")?;
        }
        writeln!(f, "last export ({} series):", self.series.len())?;
        for s in &self.series {
            writeln!(f, "  {:?} {:?}", s.metric, s.points())?;
        }
        Ok(())
    }
}

pub(crate) const VICTORIA_METRICS_BIN: &str = "/usr/bin/victoria-metrics";

impl VictoriaMetrics {
    pub(crate) fn start() -> anyhow::Result<Self> {
        let bin = PathBuf::from(VICTORIA_METRICS_BIN);
        if !bin.exists() {
            return Err(missing_binary(&bin, "victoria-metrics"));
        }
        with_port_retries(|| Self::start_once(&bin, free_port()))
    }

    /// Starts on a given port (no retry), e.g. one reserved with
    /// [`free_port`] and handed to a client before the server exists.
    pub(crate) fn start_on_port(port: u16) -> anyhow::Result<Self> {
        let bin = PathBuf::from(VICTORIA_METRICS_BIN);
        if !bin.exists() {
            return Err(missing_binary(&bin, "victoria-metrics"));
        }
        Self::start_once(&bin, port)
    }

    fn start_once(bin: &Path, port: u16) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("pqwatch-vm-").tempdir()?;
        let cmd = Self::command(bin, dir.path(), port);
        let mut proc = ServerProcess::spawn("victoria-metrics", cmd, dir)?;
        let startup = proc.wait_ready("GET /health = 200", |_| {
            http_status(port, "/health") == Some(200)
        })?;
        Ok(VictoriaMetrics {
            proc,
            port,
            client: http_client(),
            startup,
        })
    }

    /// Stops the server (SIGTERM, so it flushes what it acknowledged; SIGKILL
    /// after 10 s), keeping its storage directory and port for
    /// [`restart`](Self::restart). Until then writes to its port are refused.
    pub(crate) fn stop(&mut self) -> anyhow::Result<Duration> {
        self.proc.stop(Duration::from_secs(10))
    }

    /// Starts the server again on the same port with the same storage (after
    /// [`stop`](Self::stop)); returns once `/health` answers 200.
    pub(crate) fn restart(&mut self) -> anyhow::Result<Duration> {
        let bin = PathBuf::from(VICTORIA_METRICS_BIN);
        let cmd = Self::command(&bin, self.proc.dir(), self.port);
        self.proc.respawn(cmd)?;
        let port = self.port;
        let startup = self
            .proc
            .wait_ready("GET /health = 200 after restart", |_| {
                http_status(port, "/health") == Some(200)
            })?;
        self.startup = startup;
        Ok(startup)
    }

    fn command(bin: &Path, dir: &Path, port: u16) -> Command {
        let mut cmd = Command::new(bin);
        cmd.arg(format!("-storageDataPath={}", dir.join("data").display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            // Points near "now" are not hidden from queries.
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache")
            // Accept fixed historical timestamps in tests.
            .arg("-retentionPeriod=100y")
            .arg("-memory.allowedBytes=256MiB")
            .arg("-loggerLevel=INFO");
        cmd
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn dir(&self) -> &Path {
        self.proc.dir()
    }

    pub(crate) fn log_tail(&self, n: usize) -> String {
        self.proc.log_tail(n)
    }

    /// Makes all ingested samples searchable (`/internal/force_flush`).
    pub(crate) async fn force_flush(&self) -> anyhow::Result<()> {
        let resp = self
            .client
            .get(format!("{}/internal/force_flush", self.url()))
            .send()
            .await
            .context("GET /internal/force_flush")?;
        check_status(resp, "GET /internal/force_flush").await?;
        Ok(())
    }

    /// Flushes, then exports all samples of the series matching the selector
    /// (e.g. `{__name__=~"meter_.*"}` or `meter_voltage_l1_n{meter="M1"}`).
    pub(crate) async fn export(&self, match_expr: &str) -> anyhow::Result<Vec<ExportedSeries>> {
        self.force_flush().await?;
        let resp = self
            .client
            .get(format!("{}/api/v1/export", self.url()))
            .query(&[("match[]", match_expr)])
            .send()
            .await
            .with_context(|| format!("GET /api/v1/export match[]={match_expr}"))?;
        let body = check_status(resp, "GET /api/v1/export").await?;
        parse_export(&body)
    }

    /// Every point of every series matching `match_expr`, by time (a
    /// timestamp written twice appears twice).
    pub(crate) async fn points(&self, match_expr: &str) -> anyhow::Result<Vec<(i64, f64)>> {
        let mut v: Vec<(i64, f64)> = self
            .export(match_expr)
            .await?
            .iter()
            .flat_map(|s| s.points())
            .collect();
        v.sort_by_key(|p| p.0);
        Ok(v)
    }

    /// Polls [`export`](Self::export) until `predicate` holds or `timeout`
    /// passes; returns the last export either way (see [`Waited`]).
    pub(crate) async fn wait_for_series(
        &self,
        match_expr: &str,
        predicate: impl Fn(&[ExportedSeries]) -> bool,
        timeout: Duration,
    ) -> Waited {
        let start = Instant::now();
        let mut last = Vec::new();
        let mut last_error = None;
        loop {
            match self.export(match_expr).await {
                Ok(series) => {
                    let ok = predicate(&series);
                    last = series;
                    if ok {
                        return Waited {
                            ok: true,
                            series: last,
                            last_error,
                            elapsed: start.elapsed(),
                            match_expr: match_expr.to_owned(),
                        };
                    }
                }
                Err(e) => last_error = Some(format!("{e:#}")),
            }
            if start.elapsed() >= timeout {
                return Waited {
                    ok: false,
                    series: last,
                    last_error,
                    elapsed: start.elapsed(),
                    match_expr: match_expr.to_owned(),
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// ---------------------------------------------------------------------------
// InfluxDB 1.x
// ---------------------------------------------------------------------------

/// A throw-away InfluxDB 1.x (Debian package `influxdb`, 1.6.7 on Debian 12).
///
/// Note: 1.6 has only the 1.x API (`/write?db=..`, `/query`); `/api/v2/write`
/// arrived in InfluxDB 1.8.
pub(crate) struct InfluxDb1 {
    proc: ServerProcess,
    port: u16,
    auth: Option<(String, String)>,
    client: reqwest::Client,
    /// Time from spawn to `/ping` answering 204.
    pub startup: Duration,
}

pub(crate) const INFLUXD_BIN: &str = "/usr/bin/influxd";

impl InfluxDb1 {
    /// Without authentication.
    pub(crate) fn start() -> anyhow::Result<Self> {
        Self::start_inner(None)
    }

    /// With `auth-enabled = true` and an admin user `user`/`password`
    /// (`WITH ALL PRIVILEGES`) created before returning. [`query`](Self::query)
    /// and [`create_database`](Self::create_database) use these credentials.
    pub(crate) fn start_with_auth(user: &str, password: &str) -> anyhow::Result<Self> {
        Self::start_inner(Some((user.to_owned(), password.to_owned())))
    }

    fn start_inner(auth: Option<(String, String)>) -> anyhow::Result<Self> {
        let bin = PathBuf::from(INFLUXD_BIN);
        if !bin.exists() {
            return Err(missing_binary(&bin, "influxdb"));
        }
        let db = with_port_retries(|| Self::start_once(&bin, auth.clone()))?;
        if let Some((user, password)) = &db.auth {
            // Allowed without credentials while no user exists.
            let q = format!(
                "CREATE USER {} WITH PASSWORD {} WITH ALL PRIVILEGES",
                influx_ident(user),
                influx_string(password)
            );
            db.create_admin_blocking(&q)
                .with_context(|| format!("create admin user {user}"))?;
        }
        Ok(db)
    }

    fn start_once(bin: &Path, auth: Option<(String, String)>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("pqwatch-influxdb-")
            .tempdir()?;
        let port = free_port();
        let rpc_port = free_port();
        let p = |sub: &str| toml_str(&dir.path().join(sub).display().to_string());
        let config = format!(
            r#"reporting-enabled = false
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = {meta}
  logging-enabled = false

[data]
  dir = {data}
  wal-dir = {wal}
  wal-fsync-delay = "0s"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  auth-enabled = {auth}
  log-enabled = false
  pprof-enabled = false

[continuous_queries]
  enabled = false

[logging]
  suppress-logo = true
"#,
            meta = p("meta"),
            data = p("data"),
            wal = p("wal"),
            auth = auth.is_some(),
        );
        let config_path = dir.path().join("influxdb.conf");
        fs::write(&config_path, config)?;
        let cmd = Self::command(bin, &config_path);
        let mut proc = ServerProcess::spawn("influxd", cmd, dir)?;
        let startup = proc.wait_ready("GET /ping = 204", |_| {
            http_status(port, "/ping") == Some(204)
        })?;
        Ok(InfluxDb1 {
            proc,
            port,
            auth,
            client: http_client(),
            startup,
        })
    }

    fn command(bin: &Path, config_path: &Path) -> Command {
        let mut cmd = Command::new(bin);
        cmd.arg("run").arg("-config").arg(config_path);
        // influxd also reads INFLUXDB_* env overrides; don't inherit any.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("INFLUXDB_") {
                cmd.env_remove(k);
            }
        }
        cmd
    }

    /// Stops the server (SIGTERM; SIGKILL after 10 s), keeping its
    /// directories (meta, data, WAL) and ports for [`restart`](Self::restart).
    pub(crate) fn stop(&mut self) -> anyhow::Result<Duration> {
        self.proc.stop(Duration::from_secs(10))
    }

    /// Starts the server again with the same config, port and data (after
    /// [`stop`](Self::stop)); returns once `/ping` answers 204.
    pub(crate) fn restart(&mut self) -> anyhow::Result<Duration> {
        let bin = PathBuf::from(INFLUXD_BIN);
        let config_path = self.proc.dir().join("influxdb.conf");
        self.proc.respawn(Self::command(&bin, &config_path))?;
        let port = self.port;
        let startup = self.proc.wait_ready("GET /ping = 204 after restart", |_| {
            http_status(port, "/ping") == Some(204)
        })?;
        self.startup = startup;
        Ok(startup)
    }

    /// The one query run before an async runtime may exist: a raw POST.
    fn create_admin_blocking(&self, q: &str) -> anyhow::Result<()> {
        let body = format!("q={}", form_encode(q));
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "POST /query HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        )?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let status = resp.split_whitespace().nth(1).unwrap_or("");
        let json = resp.split("\r\n\r\n").nth(1).unwrap_or("");
        if status != "200" || json.contains("\"error\"") {
            bail!("POST /query {q:?}: {resp}");
        }
        Ok(())
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The admin credentials if auth is enabled.
    pub(crate) fn credentials(&self) -> Option<(&str, &str)> {
        self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    pub(crate) fn dir(&self) -> &Path {
        self.proc.dir()
    }

    pub(crate) fn log_tail(&self, n: usize) -> String {
        self.proc.log_tail(n)
    }

    /// Runs `q` (POST /query, `epoch=ms` so times come back as integer ms)
    /// and returns `(HTTP status, JSON body)` without judging either.
    pub(crate) async fn query_raw(
        &self,
        db: &str,
        q: &str,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut req = self.client.post(format!("{}/query", self.url())).form(&[
            ("db", db),
            ("q", q),
            ("epoch", "ms"),
        ]);
        if let Some((u, p)) = &self.auth {
            req = req.basic_auth(u, Some(p));
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("POST /query {q:?}"))?;
        let status = resp.status().as_u16();
        let body = resp.text().await?;
        let json = serde_json::from_str(&body)
            .with_context(|| format!("POST /query {q:?}: HTTP {status}, body not JSON: {body}"))?;
        Ok((status, json))
    }

    /// Runs `q` against database `db` (may be "" for server-level statements);
    /// fails on HTTP errors and on any `error` in the answer, top-level or
    /// per statement. Times are integer milliseconds (`epoch=ms`), e.g.
    /// `{"results":[{"statement_id":0,"series":[{"name":"meter",
    /// "columns":["time","customer","voltage_l1_n"],"values":[[1795764234000,"C1",230.5]]}]}]}`.
    pub(crate) async fn query(&self, db: &str, q: &str) -> anyhow::Result<serde_json::Value> {
        let (status, json) = self.query_raw(db, q).await?;
        if !(200..300).contains(&status) {
            bail!("query {q:?} on db {db:?}: HTTP {status}: {json}");
        }
        if let Some(e) = json.get("error") {
            bail!("query {q:?} on db {db:?}: error {e}");
        }
        for r in json["results"].as_array().into_iter().flatten() {
            if let Some(e) = r.get("error") {
                bail!("query {q:?} on db {db:?}: statement error {e}");
            }
        }
        Ok(json)
    }

    pub(crate) async fn create_database(&self, name: &str) -> anyhow::Result<()> {
        self.query("", &format!("CREATE DATABASE {}", influx_ident(name)))
            .await?;
        Ok(())
    }
}

/// `"..."` TOML basic string.
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("string to JSON")
}

/// InfluxQL double-quoted identifier.
fn influx_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// InfluxQL single-quoted string literal.
fn influx_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Modbus peer
// ---------------------------------------------------------------------------

/// `tests/peers/modbus_peer.py` on Debian's python: an independent Modbus/TCP
/// server whose registers come from a JSON spec (format documented in the
/// script). Wire (0-based PDU) addresses, FC3 = holding, FC4 = input;
/// unspecified registers read 0; unit ids not in the spec get no answer.
pub(crate) struct ModbusPeer {
    proc: ServerProcess,
    port: u16,
    /// Time from spawn to the script printing `READY <port>`.
    pub startup: Duration,
}

pub(crate) const PYTHON_BIN: &str = "/usr/bin/python3";

impl ModbusPeer {
    /// Path of the peer script.
    pub(crate) fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/modbus_peer.py")
    }

    /// Starts the peer on a port the OS picks (no race).
    pub(crate) fn start(spec: &serde_json::Value) -> anyhow::Result<Self> {
        Self::start_on_port(spec, 0)
    }

    /// Starts the peer on a given port, e.g. to bring a "device" back on the
    /// port it had before it was dropped.
    pub(crate) fn start_on_port(spec: &serde_json::Value, port: u16) -> anyhow::Result<Self> {
        let python = PathBuf::from(PYTHON_BIN);
        if !python.exists() {
            return Err(missing_binary(&python, "python3"));
        }
        let dir = tempfile::Builder::new()
            .prefix("pqwatch-modbus-")
            .tempdir()?;
        let spec_path = dir.path().join("spec.json");
        fs::write(&spec_path, serde_json::to_vec_pretty(spec)?)?;
        let mut cmd = Command::new(&python);
        cmd.arg(Self::script())
            .arg("--port")
            .arg(port.to_string())
            .arg("--spec")
            .arg(&spec_path)
            .env("PYTHONUNBUFFERED", "1")
            // Don't let a pyenv/venv environment leak into Debian's python.
            .env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME");
        let mut proc = ServerProcess::spawn("modbus_peer.py", cmd, dir)?;
        let mut got = None;
        let startup = proc
            .wait_ready("`READY <port>` on stdout", |p| {
                got = p.log().lines().find_map(|l| l.strip_prefix("READY ")?.trim().parse::<u16>().ok());
                got.is_some()
            })
            .map_err(|e| {
                if e.to_string().contains("No module named") {
                    e.context("/usr/bin/python3 lacks pymodbus: run ./scripts/test.sh, which installs python3-pymodbus")
                } else {
                    e
                }
            })?;
        Ok(ModbusPeer {
            proc,
            port: got.unwrap(),
            startup,
        })
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`
    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub(crate) fn dir(&self) -> &Path {
        self.proc.dir()
    }

    pub(crate) fn log_tail(&self, n: usize) -> String {
        self.proc.log_tail(n)
    }
}

/// Writes `contents` to `dir/name` and returns the path (for config files).
/// A minimal RFC 4180 reader (quoted fields, doubled quotes).
pub(crate) fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for line in text.trim_start_matches('\u{feff}').split("\r\n") {
        if line.is_empty() {
            continue;
        }
        let mut row = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    cur.push('"');
                    chars.next();
                }
                ('"', _) => quoted = !quoted,
                (',', false) => row.push(std::mem::take(&mut cur)),
                (c, _) => cur.push(c),
            }
        }
        row.push(cur);
        rows.push(row);
    }
    rows
}

pub(crate) fn write_file(dir: &Path, name: &str, contents: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    let mut f = File::create(&path)?;
    f.write_all(contents.as_bytes())?;
    Ok(path)
}
