//! The operator e-mail notifier against a real SMTP server: Debian's
//! python3-aiosmtpd running `tests/peers/smtp_peer.py`, which stores every
//! accepted message with what Python's email package decodes from it
//! (RFC 2047 subjects, MIME parts) — an independent reading of our MIME.
//!
//! Everything is on loopback; every wait polls with a deadline; "exactly
//! once" is checked after the queue is empty and a settle period longer
//! than the digest's max_delay and the first retry delays.

mod common;
mod smtp;

use common::TestConfig;
use pqwatch::events::{Change, EventChange};
use pqwatch::mail::{self, Sender};
use pqwatch::metrics::Metrics;
use pqwatch::notify::{Notifier, channel};
use pqwatch::quality::rules::{Event, Kind, State};
use smtp::{Mail, SmtpPeer, mails};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const MIN: i64 = 60_000;
/// 2026-05-04 10:00:00 +08:00.
const T0: i64 = 1_777_860_000_000;
/// Longer than max_delay (1 s) plus a first retry: what a duplicate would need.
const SETTLE: Duration = Duration::from_millis(2500);
const DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The SMTP peer
// ---------------------------------------------------------------------------

/// A loopback port nobody listens on (a moment ago).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_mails(out: &Path, n: usize) -> Vec<Mail> {
    wait_for(&format!("{n} mail(s) in {}", out.display()), || {
        mails(out).len() >= n
    })
    .await;
    mails(out)
}

// ---------------------------------------------------------------------------
// Config, events, the notifier task
// ---------------------------------------------------------------------------

fn config(state: &Path, port: u16, max_per_hour: u32) -> pqwatch::config::Config {
    let text = TestConfig::new()
        .state_dir(state)
        .daemon("timezone", "Asia/Shanghai")
        .daemon("shutdown_grace", "3s")
        .smtp_peer(port)
        .smtp("from", "Grid PQ <pqwatch@localhost>")
        .smtp("timeout", "2s")
        .push(&format!(
            r#"
[alerts]
min_delay = "300ms"
max_delay = "1s"
max_per_meter_per_hour = {max_per_hour}
recipients = ["duty@grid.example"]
language = "en"

[[alerts.groups]]
name = "east"
recipients = ["east@grid.example", "Ops East <ops-east@grid.example>"]
language = "zh-CN"

[[customers]]
id = "C1"
name = "华东特钢有限公司"
alert_group = "east"

[[customers]]
id = "C2"
name = "Harbour Cold Store"

[[customers]]
id = "C3"
name = "Evil Corp\r\nBcc: attacker@evil.example\r\nX-Injected: yes"

[[meters]]
id = "M1"
customer = "C1"
address = "127.0.0.1:1502"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 10000
"#
        ))
        .to_string();
    pqwatch::config::from_str(&text, state).unwrap()
}

/// A +9 % voltage event on a 10 kV line-to-line phase, `n` minutes after T0.
fn voltage(meter: &str, customer: &str, n: i64) -> Event {
    Event {
        id: format!("{meter}/voltage_high/l1_l2/0/{n}"),
        meter: meter.into(),
        customer: customer.into(),
        kind: Kind::VoltageHigh,
        phase: "l1_l2".into(),
        order: 0,
        state: State::Open,
        start_ms: T0 + (n + 2) * MIN,
        end_ms: T0 + (n + 5) * MIN,
        value: 10_900.0,
        peak: 10_951.0,
        peak_ms: T0 + (n + 5) * MIN + 2000,
        limit: 10_700.0,
        unit: "V",
        source: "GB/T 12325-2008 (10 kV: ±7 %)".into(),
    }
}

fn thd(meter: &str, customer: &str) -> Event {
    Event {
        id: format!("{meter}/thd_voltage/l1/0/1"),
        kind: Kind::ThdVoltage,
        phase: "l1".into(),
        value: 6.0,
        peak: 6.4,
        limit: 4.0,
        unit: "%",
        source: "GB/T 14549-1993 (10 kV)".into(),
        ..voltage(meter, customer, 0)
    }
}

fn harmonic(meter: &str, customer: &str) -> Event {
    Event {
        id: format!("{meter}/harmonic_voltage/l2/5/1"),
        kind: Kind::HarmonicVoltage,
        phase: "l2".into(),
        order: 5,
        value: 3.5,
        peak: 3.61,
        limit: 3.2,
        unit: "%",
        source: "GB/T 14549-1993 (10 kV)".into(),
        ..voltage(meter, customer, 0)
    }
}

fn opened(e: Event) -> EventChange {
    EventChange {
        change: Change::Opened,
        event: e,
    }
}

fn closed(mut e: Event) -> EventChange {
    e.state = State::Closed;
    e.end_ms = e.start_ms + 5 * MIN;
    e.value = 10_010.0;
    EventChange {
        change: Change::Closed,
        event: e,
    }
}

/// The notifier and the mail sender, wired as the daemon wires them.
struct Running {
    tx: mpsc::Sender<EventChange>,
    stop: CancellationToken,
    task: JoinHandle<()>,
    stop_mail: CancellationToken,
    mail: JoinHandle<()>,
    metrics: Arc<Metrics>,
}

impl Running {
    fn start(cfg: &pqwatch::config::Config) -> Running {
        use pqwatch::config::reload::fixed;
        let metrics = Arc::new(Metrics::default());
        let sender = Sender::new(&mail::Settings::of(cfg), metrics.clone()).unwrap();
        let settings = pqwatch::notify::Settings::of(cfg);
        let n = Notifier::new(&settings, metrics.clone(), sender.waker()).unwrap();
        let (tx, rx) = channel();
        let stop = CancellationToken::new();
        let task = tokio::spawn(n.run(rx, stop.clone(), fixed(settings)));
        let stop_mail = CancellationToken::new();
        let mail = tokio::spawn(sender.run(stop_mail.clone(), fixed(mail::Settings::of(cfg))));
        Running {
            tx,
            stop,
            task,
            stop_mail,
            mail,
            metrics,
        }
    }

    async fn send(&self, c: EventChange) {
        self.tx.send(c).await.unwrap();
    }

    fn get(&self, f: impl Fn(&Metrics) -> &std::sync::atomic::AtomicU64) -> u64 {
        Metrics::get(f(&self.metrics))
    }

    /// Stopped in the daemon's order: the notifier flushes into the queue,
    /// then the sender makes its last attempt.
    async fn shutdown(self) -> Arc<Metrics> {
        self.stop.cancel();
        let stopped = async {
            self.task.await.unwrap();
            self.stop_mail.cancel();
            self.mail.await.unwrap();
        };
        tokio::time::timeout(Duration::from_secs(15), stopped)
            .await
            .expect("notifier stops within its final-attempt bound");
        self.metrics
    }
}

/// Rows still waiting in the mail queue, read straight from the state DB.
fn queued_rows(state: &Path) -> i64 {
    let db = pqwatch::state::StateDb::open(state).unwrap();
    db.conn
        .query_row(
            "SELECT count(*) FROM mail_queue WHERE failed_ms IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn three_events_within_min_delay_are_one_chinese_mail_to_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mailbox");
    let peer = SmtpPeer::start(0, &out, &[]);
    let n = Running::start(&config(&dir.path().join("state"), peer.port, 6));
    n.send(opened(voltage("M1", "C1", 0))).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    n.send(opened(thd("M1", "C1"))).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    n.send(opened(harmonic("M1", "C1"))).await;

    let got = wait_for_mails(&out, 1).await;
    tokio::time::sleep(SETTLE).await;
    let got_later = mails(&out);
    assert_eq!(
        got_later.len(),
        1,
        "one mail for three events: {got_later:#?}"
    );
    let m = &got[0];
    assert_eq!(
        m.rcpt_tos,
        ["east@grid.example", "ops-east@grid.example"],
        "the customer's alert group"
    );
    assert_eq!(
        m.subject,
        "[pqwatch] 新事件 3 — 华东特钢有限公司 电压偏高 L1-L2 +9.0 %（另有 2 项）"
    );
    let head = m.raw.split("\n\n").next().unwrap();
    assert!(
        head.is_ascii(),
        "headers are 7-bit (RFC 2047) on the wire:\n{head}"
    );
    assert!(head.contains("Subject: [pqwatch] =?utf-8?"), "{head}");
    for want in [
        "pqwatch 电能质量告警：新事件 3。",
        "【新事件】电压偏高 L1-L2",
        "客户：华东特钢有限公司（C1）",
        "电表：M1",
        "当前值：10900.0 V（+9.0 %）",
        "峰值：10951.0 V（+9.5 %），出现于 2026-05-04 10:05:02 +08:00",
        "限值：10700.0 V（+7.0 %），依据 GB/T 12325-2008 (10 kV: ±7 %)",
        "开始：2026-05-04 10:02:00 +08:00",
        "持续：3分，仍在持续",
        "【新事件】电压总谐波畸变率 L1",
        "当前值：6.00 %",
        "限值：4.00 %，依据 GB/T 14549-1993 (10 kV)",
        "【新事件】5次谐波电压含有率 L2",
        "指标：5次谐波电压含有率（第 5 次），相别 L2",
        "收件人：告警组 east",
        "时间均为本地时间（Asia/Shanghai）",
    ] {
        assert!(m.text.contains(want), "missing {want:?} in\n{}", m.text);
    }
    assert!(
        m.html.contains("<h3>【新事件】电压偏高 L1-L2</h3>"),
        "{}",
        m.html
    );
    for h in ["message-id", "date", "auto-submitted", "content-language"] {
        assert!(m.headers.iter().any(|x| x == h), "no {h}: {:?}", m.headers);
    }
    let metrics = n.shutdown().await;
    assert_eq!(Metrics::get(&metrics.mail.mails_sent), 1);
    assert_eq!(Metrics::get(&metrics.mail.mails_queued), 1);
    assert_eq!(queued_rows(&dir.path().join("state")), 0);
}

#[tokio::test]
async fn english_mail_to_the_default_list_then_a_resolved_notice() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mailbox");
    let peer = SmtpPeer::start(0, &out, &[]);
    let n = Running::start(&config(&dir.path().join("state"), peer.port, 6));
    let e = voltage("M7", "C2", 0);
    n.send(opened(e.clone())).await;
    let got = wait_for_mails(&out, 1).await;
    let m = &got[0];
    assert_eq!(m.rcpt_tos, ["duty@grid.example"]);
    // M7 is not a configured meter: no nominal, so the value in volts.
    assert_eq!(
        m.subject,
        "[pqwatch] 1 new — Harbour Cold Store voltage high L1-L2 10900.0 V"
    );
    for want in [
        "NEW — voltage high L1-L2",
        "Customer: Harbour Cold Store (C2)",
        "Meter:    M7",
        "Value:    10900.0 V",
        "Limit:    10700.0 V, GB/T 12325-2008 (10 kV: ±7 %)",
        "Start:    2026-05-04 10:02:00 +08:00",
        "Duration: 3 min so far, still open",
        "Recipients: the default duty list",
    ] {
        assert!(m.text.contains(want), "missing {want:?} in\n{}", m.text);
    }

    n.send(closed(e)).await;
    let got = wait_for_mails(&out, 2).await;
    let r = &got[1];
    assert_eq!(
        r.subject,
        "[pqwatch] 1 resolved — Harbour Cold Store voltage high L1-L2 10951.0 V"
    );
    for want in [
        "RESOLVED — voltage high L1-L2",
        "Peak:     10951.0 V at 2026-05-04 10:05:02 +08:00",
        "End:      2026-05-04 10:07:00 +08:00",
        "Duration: 5 min",
    ] {
        assert!(r.text.contains(want), "missing {want:?} in\n{}", r.text);
    }
    assert!(!r.text.contains("Value:"), "no current value once resolved");
    assert_ne!(m.message_id, r.message_id);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(mails(&out).len(), 2);
    n.shutdown().await;
}

#[tokio::test]
async fn the_rate_limit_mails_two_and_reports_the_three_it_suppressed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mailbox");
    let peer = SmtpPeer::start(0, &out, &[]);
    let n = Running::start(&config(&dir.path().join("state"), peer.port, 2));
    for k in 0..5 {
        n.send(opened(voltage("M1", "C2", k * 10))).await;
    }
    let got = wait_for_mails(&out, 1).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(mails(&out).len(), 1, "the excess is not mailed separately");
    let m = &got[0];
    assert!(m.subject.starts_with("[pqwatch] 2 new — "), "{}", m.subject);
    assert_eq!(
        m.text.matches("NEW — voltage high").count(),
        2,
        "{}",
        m.text
    );
    assert!(
        m.text
            .contains("3 more events on meter M1 were suppressed (Harbour Cold Store, C2)."),
        "{}",
        m.text
    );
    assert!(m.text.contains("at most 2 events per meter per hour"));
    assert_eq!(n.get(|m| &m.mail.mails_suppressed), 3);
    n.shutdown().await;
}

#[tokio::test]
async fn a_customer_name_with_crlf_injects_no_header_and_no_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mailbox");
    let peer = SmtpPeer::start(0, &out, &[]);
    let n = Running::start(&config(&dir.path().join("state"), peer.port, 6));
    n.send(opened(voltage("M9", "C3", 0))).await;
    let got = wait_for_mails(&out, 1).await;
    let m = &got[0];
    assert_eq!(
        m.rcpt_tos,
        ["duty@grid.example"],
        "no smuggled Bcc recipient"
    );
    assert!(
        !m.headers.iter().any(|h| h == "bcc" || h == "x-injected"),
        "{:?}",
        m.headers
    );
    assert!(!m.subject.contains(['\r', '\n']));
    assert!(
        m.subject
            .contains("Evil Corp Bcc: attacker@evil.example X-Injected: yes"),
        "{}",
        m.subject
    );
    assert!(!m.text.contains("\nBcc:") && !m.text.contains("\nX-Injected:"));
    n.shutdown().await;
}

#[tokio::test]
async fn smtp_down_delays_mail_which_arrives_exactly_once_when_it_comes_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mailbox");
    let state = dir.path().join("state");
    let port = free_port();
    let n = Running::start(&config(&state, port, 6));
    n.send(opened(voltage("M1", "C2", 0))).await;
    wait_for("a failed delivery attempt", || {
        n.get(|m| &m.mail.mails_failed) >= 1
    })
    .await;
    assert_eq!(n.get(|m| &m.mail.mails_pending), 1, "queued, not lost");
    assert_eq!(queued_rows(&state), 1);
    assert_eq!(n.get(|m| &m.mail.mails_sent), 0);
    // Events keep flowing while the server is away.
    n.send(opened(voltage("M2", "C2", 0))).await;

    let _peer = SmtpPeer::start(port, &out, &[]);
    let got = wait_for_mails(&out, 1).await;
    wait_for("an empty queue", || n.get(|m| &m.mail.mails_pending) == 0).await;
    tokio::time::sleep(SETTLE).await;
    let all = mails(&out);
    let first: Vec<_> = all
        .iter()
        .filter(|m| m.message_id == got[0].message_id)
        .collect();
    assert_eq!(first.len(), 1, "the delayed mail arrived exactly once");
    assert!(got[0].text.contains("Meter:    M1"), "{}", got[0].text);
    assert!(
        all.iter().any(|m| m.text.contains("Meter:    M2")),
        "the event that came during the outage is mailed too"
    );
    let metrics = n.shutdown().await;
    assert_eq!(Metrics::get(&metrics.mail.mails_sent) as usize, all.len());
    assert_eq!(queued_rows(&state), 0);
}

#[tokio::test]
async fn a_restart_sends_pending_mail_once_and_never_resends_sent_mail() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mailbox");
    let state = dir.path().join("state");
    let mut peer = SmtpPeer::start(0, &out, &[]);
    let port = peer.port;
    let cfg = config(&state, port, 6);

    // Run 1: mail X is delivered; then the server goes away and mail Y
    // cannot be delivered before shutdown.
    let a = Running::start(&cfg);
    a.send(opened(voltage("MX", "C2", 0))).await;
    let x = wait_for_mails(&out, 1).await.remove(0);
    wait_for("X recorded as sent", || {
        a.get(|m| &m.mail.mails_pending) == 0
    })
    .await;
    peer.stop();
    a.send(opened(voltage("MY", "C2", 0))).await;
    wait_for("Y failing", || a.get(|m| &m.mail.mails_failed) >= 1).await;
    let metrics = a.shutdown().await;
    assert_eq!(Metrics::get(&metrics.mail.mails_sent), 1);
    assert_eq!(
        queued_rows(&state),
        1,
        "Y survives the shutdown in the queue"
    );

    // Run 2: the server is back; a new notifier on the same state dir
    // sends Y, once, and not X again.
    let _peer = SmtpPeer::start(port, &out, &[]);
    let b = Running::start(&cfg);
    let got = wait_for_mails(&out, 2).await;
    wait_for("Y recorded as sent", || {
        b.get(|m| &m.mail.mails_pending) == 0
    })
    .await;
    tokio::time::sleep(SETTLE).await;
    let all = mails(&out);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(all[0].message_id, x.message_id);
    assert!(got[1].text.contains("Meter:    MY"), "{}", got[1].text);
    assert!(!got[1].text.contains("Meter:    MX"));
    b.shutdown().await;

    // Run 3: nothing pending, nothing sent.
    let c = Running::start(&cfg);
    tokio::time::sleep(SETTLE).await;
    let metrics = c.shutdown().await;
    assert_eq!(Metrics::get(&metrics.mail.mails_sent), 0);
    assert_eq!(mails(&out).len(), 2);
}

#[tokio::test]
async fn shutdown_flushes_a_waiting_digest_and_sends_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mailbox");
    let peer = SmtpPeer::start(0, &out, &[]);
    let mut cfg = config(&dir.path().join("state"), peer.port, 6);
    cfg.alerts.min_delay = Duration::from_secs(3600);
    cfg.alerts.max_delay = Duration::from_secs(3600);
    let n = Running::start(&cfg);
    n.send(opened(voltage("M1", "C1", 0))).await;
    n.send(opened(voltage("M2", "C2", 0))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(mails(&out).is_empty(), "still waiting for min_delay");
    n.shutdown().await;
    let got = mails(&out);
    assert_eq!(got.len(), 2, "one per recipient list, sent at shutdown");
}

#[tokio::test]
async fn a_silent_smtp_server_blocks_nothing() {
    // A server that accepts connections and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in silent.incoming().take(4) {
            conns.push(c);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let n = Running::start(&config(&state, port, 6));
    n.send(opened(voltage("M1", "C2", 0))).await;
    wait_for("the digest in the queue", || {
        n.get(|m| &m.mail.mails_queued) == 1
    })
    .await;
    // While that send hangs, the notifier keeps taking changes: far more
    // than its channel holds, without the sender ever waiting long.
    let pushed = tokio::time::timeout(Duration::from_secs(5), async {
        for k in 0..3 * pqwatch::notify::CHANNEL as i64 {
            let mut e = voltage("M1", "C2", 0);
            e.peak += k as f64;
            n.send(EventChange {
                change: Change::Updated,
                event: e,
            })
            .await;
        }
    })
    .await;
    assert!(
        pushed.is_ok(),
        "the notifier stopped receiving during a hung send"
    );
    assert_eq!(n.get(|m| &m.mail.mails_sent), 0);
    // The hung attempt is cut off (2 × the 2 s [smtp] timeout) and retried later.
    wait_for("the hung attempt to fail", || {
        n.get(|m| &m.mail.mails_failed) >= 1
    })
    .await;
    assert_eq!(queued_rows(&state), 1);
    let started = Instant::now();
    n.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown bounded by the final attempt"
    );
    assert_eq!(queued_rows(&state), 1, "still queued for the next start");
    drop(held);
}

#[tokio::test]
async fn smtp_auth_uses_the_configured_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mailbox");
    let peer = SmtpPeer::start(0, &out, &["--auth", "alice:s3cret pass"]);
    let mut cfg = config(&dir.path().join("state"), peer.port, 6);
    cfg.smtp.username = Some("alice".into());
    cfg.smtp.password = pqwatch::secret::Secret::new("s3cret pass");
    let n = Running::start(&cfg);
    n.send(opened(voltage("M1", "C2", 0))).await;
    let got = wait_for_mails(&out, 1).await;
    assert_eq!(got[0].auth_login.as_deref(), Some("alice"));
    n.shutdown().await;
}

#[tokio::test]
async fn wrong_credentials_are_retried_never_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mailbox");
    let state = dir.path().join("state");
    let peer = SmtpPeer::start(0, &out, &["--auth", "alice:right"]);
    let mut cfg = config(&state, peer.port, 6);
    cfg.smtp.username = Some("alice".into());
    cfg.smtp.password = pqwatch::secret::Secret::new("wrong");
    let n = Running::start(&cfg);
    n.send(opened(voltage("M1", "C2", 0))).await;
    // 535 is permanent in SMTP terms, but it is about us, not the message:
    // the mail must wait for an operator to fix the password.
    wait_for("two refused attempts", || {
        n.get(|m| &m.mail.mails_failed) >= 2
    })
    .await;
    let metrics = n.shutdown().await;
    assert_eq!(Metrics::get(&metrics.mail.mails_given_up), 0);
    assert_eq!(Metrics::get(&metrics.mail.mails_sent), 0);
    assert_eq!(queued_rows(&state), 1);
    assert!(mails(&out).is_empty());
    let db = pqwatch::state::StateDb::open(&state).unwrap();
    let error: String = db
        .conn
        .query_row("SELECT last_error FROM mail_queue", [], |r| r.get(0))
        .unwrap();
    assert!(
        error.contains("535"),
        "refused by the server, not timed out: {error}"
    );
}

#[tokio::test]
async fn a_message_the_server_rejects_is_given_up_after_three_attempts_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mailbox");
    let state = dir.path().join("state");
    let peer = SmtpPeer::start(0, &out, &["--reply", "554 5.6.0 message refused"]);
    let n = Running::start(&config(&state, peer.port, 6));
    n.send(opened(voltage("M1", "C2", 0))).await;
    wait_for("the message given up", || {
        n.get(|m| &m.mail.mails_given_up) == 1
    })
    .await;
    assert_eq!(n.get(|m| &m.mail.mails_failed), 3, "three attempts in all");
    assert_eq!(n.get(|m| &m.mail.mails_pending), 0);
    let metrics = n.shutdown().await;
    assert_eq!(Metrics::get(&metrics.mail.mails_sent), 0);
    let db = pqwatch::state::StateDb::open(&state).unwrap();
    let (attempts, error): (i64, String) = db
        .conn
        .query_row(
            "SELECT attempts, last_error FROM mail_queue WHERE failed_ms IS NOT NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(attempts, 3);
    assert!(
        error.contains("554") && error.contains("message refused"),
        "{error}"
    );
}
