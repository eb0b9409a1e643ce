//! Scheduled customer reports, end to end: the `pqwatch` binary polls
//! pqwatch's simulator, keeps its ledger, and at the scheduled time sends
//! the month's report through a real SMTP server (Debian's
//! python3-aiosmtpd, `tests/peers/smtp_peer.py`, which decodes the MIME
//! independently).
//!
//! A month cannot pass in a test, so the daemon runs under libfaketime
//! (Debian `faketime`) with its wall clock set to a few seconds before
//! midnight at the end of October 2026 (Asia/Shanghai); the clock then
//! runs at normal speed. Monotonic time is left real (tokio's timers),
//! only the wall clock moves. The schedule is "at 00:00 on the 1st" so the
//! October report falls due right after the (fake) midnight; windows are
//! 5 s long so the last minutes of October hold a dozen of them.
//!
//! What must hold: the report arrives exactly once with the figures the
//! scripted supply gives (+10 % on every phase: every window above the
//! band, qualification rate 0.00 %); with the SMTP server down at send
//! time it arrives once the server is back; restarts in between neither
//! repeat nor skip it; and a period that ended while the daemon was down is
//! reported when it comes back.

mod common;
mod e2e;
mod smtp;

use common::{TestConfig, free_port};
use e2e::{BIN, Running, Sim};
use pqwatch::report::store::SendLog;
use pqwatch::state::StateDb;
use smtp::{Mail, SmtpPeer, mails};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longer than the first retries of the mail queue and a scheduler check:
/// what a duplicate would need to show up.
const SETTLE: Duration = Duration::from_secs(4);

fn config_text(state: &Path, modbus_port: u16, smtp_port: u16) -> String {
    TestConfig::new()
        .state_dir(state)
        .daemon("timezone", "Asia/Shanghai")
        .daemon("shutdown_grace", "3s")
        .polling("1s", "500ms")
        .smtp_peer(smtp_port)
        .smtp("from", "Grid PQ <pqwatch@localhost>")
        .smtp("timeout", "2s")
        .reports("schedule", "0 0 1 * *")
        .reports("bcc", ["archive@grid.example"])
        .push(&format!(
            r#"
[rules]
short_window = "5s"
long_window = "30s"
demand_window = "30s"

[[customers]]
id = "C1"
name = "华北钢铁 North Steel"
recipients = ["boss@steel.example"]
language = "en"

[[meters]]
id = "M1"
customer = "C1"
address = "127.0.0.1:{modbus_port}"
unit = 1
profile = "janitza-umg96rm"
nominal_voltage = 400
ct_ratio = "1000/5"
"#
        ))
        .to_string()
}

/// +10 % on every phase (above GB/T 12325's +7 %), THDu 3 % (limit 5 %).
const SCENARIO: &str = r#"
[[event]]
meter = "*"
at = "0s"
kind = "voltage"
factor = 1.1

[[event]]
meter = "*"
at = "0s"
kind = "thd_voltage"
value = 3.0
"#;

/// The daemon's fake wall clock: `start` (Unix ms) when `real0` was now.
#[derive(Clone, Copy)]
struct FakeClock {
    start_ms: i64,
    real0: Instant,
}

impl FakeClock {
    fn at(start_ms: i64) -> FakeClock {
        FakeClock {
            start_ms,
            real0: Instant::now(),
        }
    }

    fn now_ms(&self) -> i64 {
        self.start_ms + self.real0.elapsed().as_millis() as i64
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    state: PathBuf,
    mail_out: PathBuf,
    smtp_port: u16,
    cfg: pqwatch::config::Config,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let modbus_port = free_port();
    let smtp_port = free_port();
    let text = config_text(&state, modbus_port, smtp_port);
    let config = dir.path().join("pqwatch.toml");
    std::fs::write(&config, &text).unwrap();
    let cfg = pqwatch::config::from_str(&text, dir.path()).expect("test config");
    Setup {
        mail_out: dir.path().join("mail"),
        _dir: dir,
        config,
        state,
        smtp_port,
        cfg,
    }
}

/// libfaketime's library for multi-threaded programs (Debian `faketime`).
fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.exists());
    found.expect("libfaketimeMT.so.1 missing: run ./scripts/test.sh (installs faketime)")
}

/// `pqwatch run` with libfaketime preloaded, its wall clock starting at
/// `fake_ms`. (Preloaded directly rather than through the `faketime`
/// wrapper, which forks: signals must reach the daemon itself.)
fn start_daemon(s: &Setup, fake_ms: i64, log: &str) -> (Running, FakeClock) {
    let at = jiff::Timestamp::from_millisecond(fake_ms - fake_ms % 1000)
        .unwrap()
        .strftime("@%Y-%m-%d %H:%M:%S")
        .to_string();
    let mut cmd = Command::new(BIN);
    cmd.arg("run")
        .arg("-c")
        .arg(&s.config)
        .stdin(Stdio::null())
        // Two tests run daemons at once: never on the default HTTP port.
        .env("PQWATCH__HTTP__LISTEN", "127.0.0.1:0")
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME", &at)
        // libfaketime reads the start in the process's zone; the daemon
        // uses its configured zone (Asia/Shanghai), not TZ.
        .env("TZ", "UTC")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("FAKETIME_NO_CACHE", "1")
        .env("RUST_LOG", "info");
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("PQWATCH") || k == "JOURNAL_STREAM" || k == "CREDENTIALS_DIRECTORY" {
            cmd.env_remove(k);
        }
    }
    let clock = FakeClock::at(fake_ms - fake_ms % 1000);
    let r = Running::spawn_logging_to(cmd, s.state.with_file_name(log));
    (r, clock)
}

fn stop_daemon(mut r: Running) -> String {
    r.signal("TERM");
    let status = r
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("daemon did not stop:\n{}", r.stderr()));
    assert!(status.success(), "daemon exit {status}:\n{}", r.stderr());
    r.stderr()
}

/// Poll `cond` until it holds; fail with the daemon's log after `limit`.
async fn wait_for(what: &str, limit: Duration, r: &Running, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            panic!(
                "timed out waiting for {what}\n--- daemon log ---\n{}",
                r.stderr()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn logged(state: &Path, period: &str) -> Option<pqwatch::report::store::Logged> {
    let db = StateDb::open_readonly(state).ok()?;
    SendLog::get(&db, "C1", period).ok().flatten()
}

/// Monitored minutes (short windows) of M1's phase L1 stored for `day`:
/// what the report will count (ledger rows alone also hold the 1-s
/// meter's sample histograms and demand values).
fn ledger_minutes(state: &Path, day: &str) -> u32 {
    let Ok(db) = StateDb::open_readonly(state) else {
        return 0;
    };
    let next = day
        .parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.tomorrow().ok())
        .map(|d| d.to_string())
        .unwrap_or_default();
    pqwatch::report::store::read(&db, &["M1"], day, &next)
        .ok()
        .and_then(|(l, _)| {
            l.get("M1")?
                .get(day)?
                .voltage
                .get("l1")
                .map(|v| v.monitored)
        })
        .unwrap_or(0)
}

fn queued_mail(state: &Path) -> i64 {
    let db = StateDb::open_readonly(state).unwrap();
    db.conn
        .query_row("SELECT count(*) FROM mail_queue", [], |r| r.get(0))
        .unwrap()
}

/// 2026-10-31 23:59:00 in Asia/Shanghai (UTC+8) = 15:59:00 UTC.
fn oct31_2359() -> i64 {
    jiff::civil::date(2026, 10, 31)
        .at(23, 59, 0, 0)
        .to_zoned_datetime(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap())
        .unwrap()
        .timestamp()
        .as_millisecond()
}

/// The figures of the October report, checked against the scripted supply.
fn check_october_report(m: &Mail) {
    assert!(m.subject.contains("2026-10"), "subject: {}", m.subject);
    assert!(m.subject.contains("North Steel"), "subject: {}", m.subject);
    let mut rcpt = m.rcpt_tos.clone();
    rcpt.sort();
    assert_eq!(rcpt, ["archive@grid.example", "boss@steel.example"]);
    assert!(
        !m.raw.to_ascii_lowercase().contains("\nbcc:"),
        "the Bcc copy must not be named in the headers"
    );
    assert!(m.html.contains("North Steel"), "html names the customer");
    let (name, ctype, csv) = m
        .attachments
        .iter()
        .find(|a| a.0.ends_with(".csv"))
        .unwrap_or_else(|| panic!("no CSV attachment: {:?}", m.attachments));
    assert!(name.contains("2026-10"), "{name}");
    assert_eq!(ctype, "text/csv");
    let rows = common::parse_csv(csv);
    let header = &rows[0];
    let col = |n: &str| {
        header
            .iter()
            .position(|h| h == n)
            .unwrap_or_else(|| panic!("no column {n} in {header:?}"))
    };
    // 31 days × 3 phases.
    assert_eq!(rows.len(), 1 + 31 * 3, "{csv}");
    let last: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r[col("date")] == "2026-10-31")
        .collect();
    assert_eq!(last.len(), 3);
    for r in last {
        let monitored: u32 = r[col("monitored_min")].parse().unwrap();
        let above: u32 = r[col("above_min")].parse().unwrap();
        // The daemon saw the last seconds of October: several 5 s windows,
        // every one above the band (+10 % > +7 %).
        assert!(monitored >= 2, "monitored {monitored}: {r:?}");
        assert_eq!(above, monitored, "{r:?}");
        assert_eq!(r[col("below_min")], "0");
        let rate: f64 = r[col("qualification_rate_pct")].parse().unwrap();
        assert_eq!(rate, 0.0, "{r:?}");
        // 400 V / √3 × 1.1 = 254.03 V, within the simulator's noise.
        let mean: f64 = r[col("voltage_mean")].parse().unwrap();
        assert!((mean - 254.03).abs() < 2.0, "mean {mean}: {r:?}");
        let thd: f64 = r[col("thd_cp95_pct")].parse().unwrap();
        assert!((thd - 3.0).abs() < 0.3, "THDu CP95 {thd}: {r:?}");
    }
    // Days without data are there, empty.
    let first = rows
        .iter()
        .find(|r| r[col("date")] == "2026-10-01")
        .unwrap();
    assert_eq!(first[col("monitored_min")], "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_down_at_send_time_the_report_arrives_once_when_it_is_back_and_restarts_repeat_nothing()
 {
    e2e::init_tracing();
    let s = setup();
    let sim = Sim::start(&s.cfg, SCENARIO).await;
    // 23:59:20: forty seconds of October left.
    let (d, clock) = start_daemon(&s, oct31_2359() + 20_000, "run1.log");

    // Due at 00:00 + 5 s window + 30 s settle; the SMTP port is closed.
    wait_for(
        "the October report to be queued",
        Duration::from_secs(150),
        &d,
        || logged(&s.state, "2026-10").is_some(),
    )
    .await;
    wait_for(
        "a failed delivery attempt",
        Duration::from_secs(30),
        &d,
        || d.stderr().contains("mail not delivered"),
    )
    .await;
    assert_eq!(
        queued_mail(&s.state),
        1,
        "the report waits in the mail queue"
    );
    assert!(mails(&s.mail_out).is_empty());

    // The server comes back: the queue's retry delivers it, once.
    let mut peer = SmtpPeer::start(s.smtp_port, &s.mail_out, &[]);
    wait_for("the report mail", Duration::from_secs(60), &d, || {
        !mails(&s.mail_out).is_empty()
    })
    .await;
    tokio::time::sleep(SETTLE).await;
    let got = mails(&s.mail_out);
    assert_eq!(got.len(), 1, "exactly one report: {:?}", subjects(&got));
    check_october_report(&got[0]);
    assert_eq!(queued_mail(&s.state), 0);
    let log1 = stop_daemon(d);
    assert!(log1.contains("report queued for delivery"), "{log1}");

    // A restart (the fake clock goes on): the send log says it is done.
    let (d, _) = start_daemon(&s, clock.now_ms(), "run2.log");
    wait_for(
        "the scheduler's first check",
        Duration::from_secs(30),
        &d,
        || d.stderr().contains("report scheduler started"),
    )
    .await;
    tokio::time::sleep(SETTLE).await;
    let log2 = stop_daemon(d);
    assert!(!log2.contains("report queued"), "{log2}");
    assert_eq!(mails(&s.mail_out).len(), 1, "no repeat after a restart");
    peer.stop();
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_period_that_ended_while_the_daemon_was_down_is_reported_when_it_comes_back() {
    e2e::init_tracing();
    let s = setup();
    let sim = Sim::start(&s.cfg, SCENARIO).await;
    let _peer = SmtpPeer::start(s.smtp_port, &s.mail_out, &[]);

    // 23:59:05 → stopped well before midnight, with October minutes stored.
    let (d, _) = start_daemon(&s, oct31_2359() + 5_000, "run1.log");
    wait_for(
        "ledger minutes for 2026-10-31",
        Duration::from_secs(40),
        &d,
        || ledger_minutes(&s.state, "2026-10-31") >= 3,
    )
    .await;
    stop_daemon(d);
    assert!(
        logged(&s.state, "2026-10").is_none(),
        "not due before midnight"
    );

    // Back at 00:20 on 1 November: the 00:00 firing was missed.
    let nov1_0020 = oct31_2359() + 21 * 60_000;
    let (d, _) = start_daemon(&s, nov1_0020, "run2.log");
    wait_for("the missed report", Duration::from_secs(30), &d, || {
        !mails(&s.mail_out).is_empty()
    })
    .await;
    tokio::time::sleep(SETTLE).await;
    let log = stop_daemon(d);
    let got = mails(&s.mail_out);
    assert_eq!(got.len(), 1, "exactly one: {:?}\n{log}", subjects(&got));
    check_october_report(&got[0]);
    sim.stop().await;
}

fn subjects(m: &[Mail]) -> Vec<&str> {
    m.iter().map(|m| m.subject.as_str()).collect()
}
