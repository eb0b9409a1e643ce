//! The fault matrix: pqwatch polling through a hostile Modbus/TCP gateway
//! (`tests/faults`), one fault kind after another, with real servers around
//! it: pqwatch's simulator upstream of the proxy, VictoriaMetrics as the
//! database, the daemon in-process (its counters and logs are read live).
//!
//! Every rig polls three meters every 500 ms with a 300 ms timeout:
//! `<P>-A` (unit 1) and `<P>-B` (unit 2) through the faulty proxy, and
//! `<P>-H` on a separate, healthy simulator port. A (400 V, 230.9 V phase)
//! and B (10 kV, 5773.5 V phase) share a profile and a register range, so a
//! reply of one decodes as the other's, and their values tell which meter a
//! stored point came from. Faulty replies carry poison (1e9) registers.
//!
//! Each episode injects one fault, waits for both meters on the proxy to
//! poll successfully again, and checks that every injected fault was
//! counted once under the right counter (globally and for the gateway),
//! logged once with its cause (a WARN when the meter starts failing, DEBUG
//! for the rest of the streak, an INFO when it answers again; nothing more at
//! INFO or above), and that the connection was replaced after a timeout or
//! a broken reply and kept after an exception. At the end the stored data
//! must show: the healthy meter at every instant; each meter on the proxy at
//! every instant except exactly the polls a fault hit; every value the right
//! one for its meter, and none from a faulty reply.
//!
//! Run with `--nocapture` to see each fault's log lines and counter deltas.

mod common;
mod e2e;
mod faults;

use common::{TestConfig, VictoriaMetrics};
use e2e::{Daemon, check_aligned, instants, now_ms, wait_until};
use faults::{Control, Fault, FaultyGateway, Frame, Injected, POISON, POISON_FLOOR, Scope};
use pqwatch::metrics::Metrics;
use pqwatch::sim::scenario::Scenario;
use pqwatch::sim::{SimMeter, Simulator};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Poll interval and request timeout of every meter (ms).
const STEP: i64 = 500;
const TIMEOUT: &str = "300ms";
/// Phase voltages of the simulated meters (nominal / √3; the model adds
/// ±0.3 % noise).
const PHASE_V_400: f64 = 230.940_107_675_850_3;
const PHASE_V_10K: f64 = 5_773.502_691_896_258;

// ---------------------------------------------------------------------------
// Log capture: pqwatch's own tracing lines, formatted as the binary formats
// them (`cli/mod.rs`: no target, no colour), into one buffer per test process.
// Tests run in parallel; each reads back only the lines of its own gateway.
// ---------------------------------------------------------------------------

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        LOG.lock().expect("log lock").extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// INFO and above as in production, plus the gateway's DEBUG lines, which
/// log every failure of a streak after the first.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::new("info,pqwatch::modbus::gateway=debug");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false)
        .with_writer(|| Capture)
        .try_init();
}

fn log_pos() -> usize {
    LOG.lock().expect("log lock").len()
}

/// Lines logged since `from` that contain `needle`.
fn log_lines(from: usize, needle: &str) -> Vec<String> {
    let log = LOG.lock().expect("log lock");
    String::from_utf8_lossy(&log[from..])
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Whether a log line carries the field `meter=<id>`.
fn names_meter(line: &str, id: &str) -> bool {
    let f = format!("meter={id}");
    line.contains(&format!("{f} ")) || line.ends_with(&f)
}

/// The level of a formatted line: the token after the timestamp.
fn level_of(line: &str) -> &str {
    line.split_whitespace().nth(1).unwrap_or("?")
}

// ---------------------------------------------------------------------------
// The rig
// ---------------------------------------------------------------------------

/// A simulator serving some meters on 127.0.0.1, port 0.
struct Upstream {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Upstream {
    async fn start(mut meters: Vec<SimMeter>) -> Upstream {
        for m in &mut meters {
            m.address = "127.0.0.1:0".into();
        }
        let sim = Simulator::bind(
            meters,
            Scenario::parse("").expect("empty scenario"),
            Duration::ZERO,
        )
        .await
        .expect("bind the simulator");
        let addr = sim.local_addrs()[0];
        let stop = CancellationToken::new();
        tokio::spawn(sim.serve(stop.clone()));
        Upstream { addr, stop }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn config_text(prefix: &str, influx_url: &str, proxy: &str, healthy: &str) -> String {
    let meter = |id: &str, address: &str, unit: u8, nominal: u32| {
        format!(
            r#"
[[meters]]
id = "{prefix}-{id}"
customer = "C"
address = "{address}"
unit = {unit}
profile = "eastron-sdm630"
nominal_voltage = {nominal}
fields = ["voltage_l1_n", "voltage_l2_n", "voltage_l3_n"]
"#
        )
    };
    TestConfig::new()
        .influx_v2(influx_url)
        .polling(&format!("{STEP}ms"), TIMEOUT)
        .set("polling", "connect_timeout", TIMEOUT)
        .set("polling", "reconnect_max", "1s")
        .push("[[customers]]\nid = \"C\"\n")
        .push(&meter("A", proxy, 1, 400))
        .push(&meter("B", proxy, 2, 10_000))
        .push(&meter("H", healthy, 1, 400))
        .to_string()
}

/// How pqwatch must classify an injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Timeout,
    Transport,
    /// Random bytes: a frame that never completes or one that does not parse.
    TimeoutOrTransport,
    Exception,
}

struct Episode {
    fault: Fault,
    scope: Scope,
    class: Class,
    /// What the logged error must say.
    cause: &'static str,
    /// For a scope without a count: clear the rule after this many faults.
    uses: usize,
}

fn ep(fault: Fault, scope: Scope, class: Class, cause: &'static str) -> Episode {
    Episode {
        fault,
        scope,
        class,
        cause,
        uses: 0,
    }
}

type Counts = BTreeMap<&'static str, u64>;

fn delta(after: &Counts, before: &Counts) -> Counts {
    after
        .iter()
        .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
        .collect()
}

struct Rig {
    prefix: &'static str,
    vm: VictoriaMetrics,
    _upstream: Upstream,
    _healthy: Upstream,
    gw: FaultyGateway,
    ctl: Control,
    daemon: Daemon,
    /// The proxy's address as configured (the gateway's key).
    gateway: String,
    /// Every meter has polled successfully since this instant (Unix ms).
    steady_ms: i64,
    /// Instants a meter may miss besides those a fault hit (backed off).
    allowed_gaps: Vec<(String, i64, i64)>,
}

impl Rig {
    async fn start(prefix: &'static str) -> Rig {
        init_logs();
        let vm = VictoriaMetrics::start().expect("start VictoriaMetrics");
        // The simulated meters are made from the same meter entries (ids,
        // units, nominal voltages) as the daemon's, then served on port 0.
        let draft = config_text(prefix, &vm.url(), "127.0.0.1:1", "127.0.0.1:2");
        let draft = pqwatch::config::from_str(&draft, Path::new("/nonexistent"))
            .unwrap_or_else(|e| panic!("test config: {e}"));
        let (behind, direct): (Vec<SimMeter>, Vec<SimMeter>) = SimMeter::from_config(&draft)
            .into_iter()
            .partition(|m| m.address == "127.0.0.1:1");
        let upstream = Upstream::start(behind).await;
        let healthy = Upstream::start(direct).await;
        let gw = FaultyGateway::start(upstream.addr)
            .await
            .expect("start the faulty gateway");
        let gateway = gw.addr().to_string();
        let cfg = e2e::config(&config_text(
            prefix,
            &vm.url(),
            &gateway,
            &healthy.addr.to_string(),
        ));
        let daemon = Daemon::start(cfg);
        let ctl = gw.control();
        let mut rig = Rig {
            prefix,
            vm,
            _upstream: upstream,
            _healthy: healthy,
            gw,
            ctl,
            daemon,
            gateway,
            steady_ms: 0,
            allowed_gaps: Vec::new(),
        };
        let ready = wait_until(Duration::from_secs(10), || {
            ["A", "B", "H"].iter().all(|m| rig.polls(m).0 >= 2)
        })
        .await;
        assert!(ready, "{prefix}: the meters never polled twice");
        rig.steady_ms = now_ms();
        rig
    }

    fn id(&self, m: &str) -> String {
        format!("{}-{m}", self.prefix)
    }

    /// (polls ok, polls failed, fail streak) of meter `m` ("A", "B", "H").
    fn polls(&self, m: &str) -> (u64, u64, u64) {
        match self.daemon.metrics().polling.meter_stats(&self.id(m)) {
            Some(s) => (
                Metrics::get(&s.polls_ok),
                Metrics::get(&s.polls_failed),
                Metrics::get(&s.fail_streak),
            ),
            None => (0, 0, 0),
        }
    }

    fn counts(&self) -> Counts {
        let m = self.daemon.metrics();
        let g = m.polling.gateway(&self.gateway);
        let p = self.ctl.stats();
        let mut c = Counts::new();
        c.insert("read_timeouts", Metrics::get(&m.polling.read_timeouts));
        c.insert("read_exceptions", Metrics::get(&m.polling.read_exceptions));
        c.insert(
            "read_transport_errors",
            Metrics::get(&m.polling.read_transport_errors),
        );
        c.insert("connects_failed", Metrics::get(&m.polling.connects_failed));
        c.insert("fields_dropped", Metrics::get(&m.polling.fields_dropped));
        c.insert("gw.read_timeouts", Metrics::get(&g.read_timeouts));
        c.insert("gw.read_exceptions", Metrics::get(&g.read_exceptions));
        c.insert(
            "gw.read_transport_errors",
            Metrics::get(&g.read_transport_errors),
        );
        c.insert("gw.connects_failed", Metrics::get(&g.connects_failed));
        c.insert("A.polls_failed", self.polls("A").1);
        c.insert("B.polls_failed", self.polls("B").1);
        c.insert("H.polls_failed", self.polls("H").1);
        c.insert("proxy.accepted", p.accepted);
        c.insert("proxy.client_closed", p.client_closed);
        c.insert("proxy.late_replies_unsent", p.late_replies_unsent);
        c.insert("proxy.late_replies_sent", p.late_replies_sent);
        c
    }

    /// Inject one fault, wait for recovery, check counters and logs.
    async fn episode(&mut self, e: Episode) {
        let steady = wait_until(Duration::from_secs(10), || {
            self.ctl.idle() && self.polls("A").2 == 0 && self.polls("B").2 == 0
        })
        .await;
        assert!(steady, "{}: not steady before {}", self.prefix, e.fault);
        let before = self.counts();
        let log_from = log_pos();
        let inj_from = self.ctl.injected_count();

        self.ctl.inject(e.scope, e.fault.clone());
        let bounded = matches!(e.scope, Scope::Next(_) | Scope::Unit { times: Some(_), .. });
        let used = wait_until(Duration::from_secs(10), || {
            if bounded {
                self.ctl.idle()
            } else {
                self.ctl.injected_count() - inj_from >= e.uses
            }
        })
        .await;
        self.ctl.clear();
        assert!(
            used,
            "{}: {}: injected {} time(s), then no more requests came; gateway tasks running: {}",
            self.prefix,
            e.fault,
            self.ctl.injected_count() - inj_from,
            Metrics::get(&self.daemon.metrics().polling.gateway(&self.gateway).tasks)
        );
        // Both meters behind the proxy answer again (a failing meter may be
        // backed off for up to reconnect_max = 1 s).
        let (a0, b0) = (self.polls("A").0, self.polls("B").0);
        let recovered = wait_until(Duration::from_secs(10), || {
            let (a, b) = (self.polls("A"), self.polls("B"));
            a.0 > a0 && b.0 > b0 && a.2 == 0 && b.2 == 0
        })
        .await;
        let recovered_ms = now_ms();
        let d = delta(&self.counts(), &before);
        let injected: Vec<Injected> = self.ctl.injected()[inj_from..].to_vec();
        let lines = log_lines(log_from, &format!("gateway={}}}", self.gateway));
        let n = injected.len() as u64;
        let per_unit = |u: u8| injected.iter().filter(|i| i.unit == u).count() as u64;
        let (na, nb) = (per_unit(1), per_unit(2));

        println!(
            "\n=== {}: {} ({:?}) injected {n} (A {na}, B {nb})",
            self.prefix, e.fault, e.scope
        );
        for (k, v) in d.iter().filter(|(_, v)| **v > 0) {
            println!("  {k} +{v}");
        }
        for l in &lines {
            println!("  | {l}");
        }

        let ctx = format!(
            "{}: {} ({:?}), injected {n} (A {na}, B {nb}); counter deltas {d:?}; log:\n{}",
            self.prefix,
            e.fault,
            e.scope,
            lines.join("\n")
        );
        assert!(recovered, "meters behind the proxy did not recover: {ctx}");
        assert!(n >= 1, "{ctx}");
        assert_eq!(na + nb, n, "only units 1 and 2 are polled there: {ctx}");

        // 1. Counted once, under the right counter, globally and per gateway.
        let (t, x, b) = (
            d["read_timeouts"],
            d["read_exceptions"],
            d["read_transport_errors"],
        );
        match e.class {
            Class::Timeout => assert_eq!((t, x, b), (n, 0, 0), "timeouts: {ctx}"),
            Class::Transport => assert_eq!((t, x, b), (0, 0, n), "transport errors: {ctx}"),
            Class::TimeoutOrTransport => {
                assert_eq!((t + b, x), (n, 0), "timeouts + transport errors: {ctx}");
            }
            Class::Exception => assert_eq!((t, x, b), (0, n, 0), "exceptions: {ctx}"),
        }
        for (k, gk) in [
            ("read_timeouts", "gw.read_timeouts"),
            ("read_exceptions", "gw.read_exceptions"),
            ("read_transport_errors", "gw.read_transport_errors"),
        ] {
            assert_eq!(d[gk], d[k], "{gk} must match the global {k}: {ctx}");
        }
        assert_eq!(d["connects_failed"], 0, "{ctx}");
        assert_eq!(d["gw.connects_failed"], 0, "{ctx}");
        assert_eq!(d["fields_dropped"], 0, "nothing reached decoding: {ctx}");
        // Every meter poll has one read: one failed poll per fault.
        assert_eq!(d["A.polls_failed"], na, "{ctx}");
        assert_eq!(d["B.polls_failed"], nb, "{ctx}");
        assert_eq!(d["H.polls_failed"], 0, "the other gateway: {ctx}");

        // 2. The connection: replaced after a timeout or a broken reply (the
        // old one closed, so a late reply has nowhere to go), kept after an
        // exception.
        if e.class == Class::Exception {
            assert_eq!(
                d["proxy.accepted"], 0,
                "an exception keeps the connection: {ctx}"
            );
            assert_eq!(d["proxy.client_closed"], 0, "{ctx}");
        } else {
            assert_eq!(
                d["proxy.accepted"], n,
                "one new connection per connection dropped: {ctx}"
            );
        }
        if let Fault::Delay(_) = e.fault {
            assert_eq!(
                d["proxy.late_replies_unsent"], n,
                "pqwatch must have closed the connection before the late reply: {ctx}"
            );
            assert_eq!(d["proxy.late_replies_sent"], 0, "{ctx}");
        }

        // 3. Logged once per failure, with its cause; nothing more at INFO+.
        for (m, nm) in [("A", na), ("B", nb)] {
            let id = self.id(m);
            let mine: Vec<&String> = lines.iter().filter(|l| names_meter(l, &id)).collect();
            let failed: Vec<&&String> = mine
                .iter()
                .filter(|l| l.contains("meter poll failed"))
                .collect();
            let warns: Vec<&&&String> = failed.iter().filter(|l| level_of(l) == "WARN").collect();
            let debugs = failed.iter().filter(|l| level_of(l) == "DEBUG").count() as u64;
            let again: Vec<&&String> = mine
                .iter()
                .filter(|l| l.contains("meter answers again"))
                .collect();
            let backoff = mine
                .iter()
                .filter(|l| l.contains("meter keeps failing"))
                .count() as u64;
            if nm == 0 {
                assert!(mine.is_empty(), "meter {m} was not hit, yet logged: {ctx}");
                continue;
            }
            assert_eq!(
                warns.len(),
                1,
                "meter {m}: one WARN per failure streak: {ctx}"
            );
            assert_eq!(
                debugs,
                nm - 1,
                "meter {m}: the rest of the streak at DEBUG: {ctx}"
            );
            for l in &failed {
                assert!(
                    l.contains(e.cause),
                    "meter {m}: cause {:?} not in {l}",
                    e.cause
                );
            }
            assert_eq!(again.len(), 1, "meter {m}: one recovery line: {ctx}");
            assert!(
                again[0].contains(&format!("after_failures={nm}")),
                "meter {m}: {ctx}"
            );
            assert_eq!(
                backoff,
                u64::from(nm >= 3),
                "meter {m}: backoff line: {ctx}"
            );
            if nm >= 3 {
                let from = injected.iter().map(|i| i.wall_ms).min().unwrap_or(0);
                self.allowed_gaps.push((self.id(m), from, recovered_ms));
            }
        }
        let loud: Vec<&String> = lines
            .iter()
            .filter(|l| matches!(level_of(l), "WARN" | "ERROR"))
            .collect();
        let expected_loud = [na, nb].iter().filter(|n| **n > 0).count()
            + [na, nb].iter().filter(|n| **n >= 3).count();
        assert_eq!(loud.len(), expected_loud, "WARN/ERROR lines: {ctx}");
        let info_plus = lines.iter().filter(|l| level_of(l) != "DEBUG").count();
        assert_eq!(
            info_plus,
            expected_loud + [na, nb].iter().filter(|n| **n > 0).count(),
            "INFO+ lines: a failure and a recovery per meter hit: {ctx}"
        );
    }

    /// Stop everything and check what was stored.
    async fn finish(self) {
        let end_ms = now_ms();
        let run = self.daemon.stop().await;
        let injected = self.ctl.injected();
        let proxy = self.ctl.stats();
        self.gw.stop().await;
        assert!(
            run.get(|m| &m.sink.points_dropped) == 0,
            "{}: points dropped",
            self.prefix
        );

        let window = instants(self.steady_ms + STEP, end_ms - STEP, STEP);
        assert!(window.len() >= 4, "window too short: {window:?}");
        let last = *window.last().unwrap();
        let (a, b, h) = (
            format!("{}-A", self.prefix),
            format!("{}-B", self.prefix),
            format!("{}-H", self.prefix),
        );
        let all = self
            .vm
            .wait_for_series(
                r#"{__name__=~"meter_.*"}"#,
                |s| {
                    [&a, &b, &h].iter().all(|m| {
                        let mine: Vec<_> =
                            s.iter().filter(|x| x.label("meter") == Some(m)).collect();
                        mine.len() == 3 && mine.iter().all(|x| x.timestamps.last() >= Some(&last))
                    })
                },
                Duration::from_secs(10),
            )
            .await
            .into_result()
            .unwrap_or_else(|e| panic!("{}: {e:#}", self.prefix));

        // 4. Nothing wrong stored: only the configured series, every value
        // the right meter's (never the other unit's, never poison).
        for s in &all {
            let meter = s.label("meter").unwrap_or("?");
            let phase_v = if meter == b { PHASE_V_10K } else { PHASE_V_400 };
            assert!(
                [&a, &b, &h].iter().any(|m| *m == meter),
                "unexpected series {:?}",
                s.metric
            );
            assert!(
                [
                    "meter_voltage_l1_n",
                    "meter_voltage_l2_n",
                    "meter_voltage_l3_n"
                ]
                .contains(&s.name()),
                "unexpected series {:?}",
                s.metric
            );
            for (t, v) in s.points() {
                assert!(
                    v.is_finite() && v.abs() < POISON_FLOOR,
                    "{meter} {} at {t} = {v}: a faulty reply was stored",
                    s.name()
                );
                assert!(
                    (v - phase_v).abs() <= 0.01 * phase_v,
                    "{meter} {} at {t} = {v}, not this meter's voltage ({phase_v:.1} V ± 1 %)",
                    s.name()
                );
            }
        }

        // 5. Cadence: the healthy meter at every instant; the meters behind
        // the proxy at every instant except exactly those a fault hit.
        for s in all.iter().filter(|s| s.label("meter") == Some(&h)) {
            check_aligned(s, STEP, &window).unwrap_or_else(|e| panic!("{}: {e}", self.prefix));
        }
        for (m, unit) in [(&a, 1u8), (&b, 2u8)] {
            let hit: BTreeSet<i64> = injected
                .iter()
                .filter(|i| i.unit == unit)
                .map(|i| i.wall_ms.div_euclid(STEP) * STEP)
                .filter(|t| window.contains(t))
                .collect();
            for s in all.iter().filter(|s| s.label("meter") == Some(m)) {
                let have: BTreeSet<i64> = s.timestamps.iter().copied().collect();
                assert_eq!(have.len(), s.timestamps.len(), "{m}: duplicate timestamps");
                assert!(
                    s.timestamps.iter().all(|t| t % STEP == 0),
                    "{m}: unaligned timestamps {:?}",
                    s.timestamps
                );
                let missing: BTreeSet<i64> = window
                    .iter()
                    .copied()
                    .filter(|t| !have.contains(t))
                    .collect();
                let stored_from_fault: Vec<_> = hit.intersection(&have).collect();
                assert!(
                    stored_from_fault.is_empty(),
                    "{m} {}: points stored at instants whose reply was faulty: {stored_from_fault:?}",
                    s.name()
                );
                let unexplained: Vec<i64> = missing
                    .iter()
                    .copied()
                    .filter(|t| !hit.contains(t))
                    .filter(|t| {
                        !self
                            .allowed_gaps
                            .iter()
                            .any(|(g, from, to)| g == m && *t >= *from - STEP && *t <= *to)
                    })
                    .collect();
                assert!(
                    unexplained.is_empty(),
                    "{m} {}: no point at {unexplained:?}, where no fault hit (faults at {hit:?})",
                    s.name()
                );
            }
        }
        println!(
            "\n=== {}: {} faults injected, proxy {:?}; points checked over {} instants",
            self.prefix,
            injected.len(),
            proxy,
            window.len()
        );
    }
}

// ---------------------------------------------------------------------------
// The matrix
// ---------------------------------------------------------------------------

const NO_ANSWER: &str = "no answer within 300ms";

/// A reply that comes too late or never completes: a timeout, the
/// connection dropped (so the late bytes can never be read as the answer to
/// a later request), the meter's other neighbour unharmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_or_unfinished_replies_time_out_and_the_connection_is_replaced() {
    let mut rig = Rig::start("TMO").await;
    let long = Fault::Delay(Duration::from_secs(1));
    rig.episode(ep(
        long.clone(),
        Scope::unit_times(1, 2),
        Class::Timeout,
        NO_ANSWER,
    ))
    .await;
    rig.episode(ep(long, Scope::unit_times(2, 1), Class::Timeout, NO_ANSWER))
        .await;
    rig.episode(ep(
        Fault::Truncated,
        Scope::unit_times(1, 2),
        Class::Timeout,
        NO_ANSWER,
    ))
    .await;
    // The next two requests, whoever they are for: A's, then B's on the
    // connection pqwatch opens after dropping A's.
    rig.episode(ep(
        Fault::Truncated,
        Scope::Next(2),
        Class::Timeout,
        NO_ANSWER,
    ))
    .await;
    rig.finish().await;
}

/// Replies that cannot be parsed or do not answer the request: a transport
/// error, the connection replaced at once (no timeout waited).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_replies_are_transport_errors_and_the_connection_is_replaced() {
    let mut rig = Rig::start("BRK").await;
    rig.episode(ep(
        Fault::DropMidFrame,
        Scope::unit_times(1, 2),
        Class::Transport,
        "bytes remaining on stream",
    ))
    .await;
    rig.episode(ep(
        Fault::OversizedFrame,
        Scope::unit_times(1, 1),
        Class::Transport,
        "response PDU size exceeded",
    ))
    .await;
    // The MBAP length covers 4 bytes past the byte count (the start of
    // the next frame): the frame does not add up.
    rig.episode(ep(
        Fault::LengthOverrun,
        Scope::unit_times(1, 2),
        Class::Transport,
        "undecoded response data",
    ))
    .await;
    rig.episode(ep(
        Fault::WrongByteCount,
        Scope::unit_times(2, 2),
        Class::Transport,
        "failed to fill whole buffer",
    ))
    .await;
    rig.episode(ep(
        Fault::WrongFunctionCode,
        Scope::unit_times(1, 2),
        Class::Transport,
        "mismatching function codes",
    ))
    .await;
    // Random bytes: mostly a length that never arrives (timeout), else an
    // invalid header (transport error); both end the connection.
    rig.episode(ep(
        Fault::RandomBytes,
        Scope::unit_times(1, 1),
        Class::TimeoutOrTransport,
        "error=FC4 0+6: ",
    ))
    .await;
    rig.episode(ep(
        Fault::RandomBytes,
        Scope::Next(2),
        Class::TimeoutOrTransport,
        "error=FC4 0+6: ",
    ))
    .await;
    rig.finish().await;
}

/// Desynchronised replies: another request's transaction id, another
/// unit's answer. Never accepted, never stored under the wrong meter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_for_another_request_or_unit_are_never_accepted() {
    let mut rig = Rig::start("SYN").await;
    rig.episode(ep(
        Fault::WrongTransactionId,
        Scope::unit_times(1, 2),
        Class::Transport,
        "mismatching headers",
    ))
    .await;
    // A is answered by B (5773 V), then B by A (231 V): each would be
    // stored ×25 or ÷25 off if accepted.
    rig.episode(ep(
        Fault::WrongUnitId(2),
        Scope::unit_times(1, 2),
        Class::Transport,
        "unit_id: 2",
    ))
    .await;
    rig.episode(ep(
        Fault::WrongUnitId(1),
        Scope::unit_times(2, 2),
        Class::Transport,
        "unit_id: 1",
    ))
    .await;
    rig.episode(ep(
        Fault::WrongTransactionId,
        Scope::Next(3),
        Class::Transport,
        "mismatching headers",
    ))
    .await;
    rig.finish().await;
}

/// Every exception code the spec lists for a read: counted as an
/// exception, the connection kept. Then a gateway that keeps answering
/// 0x0B for one unit ("always", until cleared): that meter is backed off
/// and comes back; its neighbour and the other gateway never miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exception_code_is_counted_and_the_connection_kept() {
    let mut rig = Rig::start("EXC").await;
    let causes = [
        (1u8, "IllegalFunction (0x01)"),
        (2, "IllegalDataAddress (0x02)"),
        (3, "IllegalDataValue (0x03)"),
        (4, "ServerDeviceFailure (0x04)"),
        (5, "Acknowledge (0x05)"),
        (6, "ServerDeviceBusy (0x06)"),
        (10, "GatewayPathUnavailable (0x0A)"),
        (11, "GatewayTargetDevice (0x0B)"),
    ];
    for (k, (code, cause)) in causes.into_iter().enumerate() {
        let unit = 1 + (k % 2) as u8;
        rig.episode(ep(
            Fault::Exception(code),
            Scope::unit_times(unit, 1),
            Class::Exception,
            cause,
        ))
        .await;
    }
    rig.episode(Episode {
        uses: 4,
        ..ep(
            Fault::Exception(11),
            Scope::unit(2),
            Class::Exception,
            "GatewayTargetDevice (0x0B)",
        )
    })
    .await;
    rig.finish().await;
}

/// A well-formed reply with more or fewer registers than asked must be a
/// transport error like any mismatched reply (README, bad input).
///
/// Regression: tokio-modbus 0.17's `read_input_registers` /
/// `read_holding_registers` hold a `debug_assert_eq!(words.len(), cnt)`
/// that panicked the gateway task in debug builds before pqwatch's own
/// length check could see such a reply; the gateway now reads through
/// `Client::call`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_with_more_or_fewer_registers_than_asked_are_rejected() {
    let mut rig = Rig::start("CNT").await;
    rig.episode(ep(
        Fault::ExtraRegisters,
        Scope::unit_times(1, 2),
        Class::Transport,
        "reply has 8 registers, asked for 6",
    ))
    .await;
    rig.episode(ep(
        Fault::MissingRegisters,
        Scope::unit_times(2, 2),
        Class::Transport,
        "reply has 5 registers, asked for 6",
    ))
    .await;
    rig.finish().await;
}

// ---------------------------------------------------------------------------
// The proxy itself, on the wire (no pqwatch): each fault does what it says.
// ---------------------------------------------------------------------------

/// Checks what arrived for one injected fault (bytes, whether the proxy
/// closed the connection).
type WireCheck = Box<dyn Fn(&[u8], bool)>;

fn read_request(tid: u16, unit: u8) -> Vec<u8> {
    Frame {
        tid,
        protocol: 0,
        unit,
        pdu: vec![4, 0, 0, 0, 6],
    }
    .encode()
}

/// What arrives until `quiet` passes without a byte, or the peer closes
/// (`true`).
async fn receive(s: &mut TcpStream, quiet: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(quiet, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

fn parse(b: &[u8]) -> (u16, u16, usize, u8, Vec<u8>) {
    assert!(b.len() >= 7, "not even a header: {b:?}");
    (
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]) as usize,
        b[6],
        b[7..].to_vec(),
    )
}

fn f32s(data: &[u8]) -> Vec<f32> {
    data.chunks(4)
        .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_faulty_gateway_injects_each_fault_on_the_wire() {
    let draft = config_text("W", "http://127.0.0.1:9", "127.0.0.1:1", "127.0.0.1:2");
    let draft = pqwatch::config::from_str(&draft, Path::new("/nonexistent")).unwrap();
    let behind: Vec<SimMeter> = SimMeter::from_config(&draft)
        .into_iter()
        .filter(|m| m.address == "127.0.0.1:1")
        .collect();
    let up = Upstream::start(behind).await;
    let gw = FaultyGateway::start(up.addr).await.unwrap();
    let ctl = gw.control();
    let quiet = Duration::from_millis(150);
    let connect = || TcpStream::connect(gw.addr());
    let poison = f32::from_bits(u32::from(POISON[0]) << 16 | u32::from(POISON[1]));
    assert_eq!(poison, 1.0e9);

    // Forwarded unchanged: unit 1 is A (230.9 V), unit 2 is B (5773.5 V).
    let mut s = connect().await.unwrap();
    for (tid, unit, v) in [(7u16, 1u8, PHASE_V_400), (8, 2, PHASE_V_10K)] {
        s.write_all(&read_request(tid, unit)).await.unwrap();
        let (b, eof) = receive(&mut s, quiet).await;
        let (t, p, len, u, pdu) = parse(&b);
        assert_eq!((t, p, len, u, eof), (tid, 0, 15, unit, false));
        assert_eq!(&pdu[..2], &[4, 12]);
        for x in f32s(&pdu[2..]) {
            assert!((f64::from(x) - v).abs() < 0.01 * v, "{x}");
        }
    }

    // Each fault on a fresh connection, scoped to the next request.
    let cases: Vec<(Fault, WireCheck)> = vec![
        (
            Fault::DropMidFrame,
            Box::new(|b, eof| {
                assert!(eof, "closed after half a frame");
                assert_eq!(b.len(), (7 + 14) / 2);
            }),
        ),
        (
            Fault::Truncated,
            Box::new(|b, eof| {
                let (_, _, len, _, pdu) = parse(b);
                assert!(!eof);
                assert_eq!((len, pdu.len()), (15 + 4, 14), "length claims 4 bytes more");
            }),
        ),
        (
            Fault::LengthOverrun,
            Box::new(|b, eof| {
                let (_, _, len, _, pdu) = parse(b);
                assert!(!eof);
                assert_eq!((len, pdu[1], pdu.len()), (19, 12, 18));
                assert_eq!(&pdu[14..], &[0, 101, 0, 0], "the next frame's start");
            }),
        ),
        (
            Fault::OversizedFrame,
            Box::new(|b, _| {
                let (_, _, len, _, pdu) = parse(b);
                assert_eq!((len, pdu.len()), (300, 299));
                assert!(b.len() > faults::MAX_ADU);
            }),
        ),
        (
            Fault::ExtraRegisters,
            Box::new(|b, _| {
                let (_, _, len, _, pdu) = parse(b);
                assert_eq!((len, pdu[1], pdu.len()), (19, 16, 18));
            }),
        ),
        (
            Fault::MissingRegisters,
            Box::new(|b, _| {
                let (_, _, len, _, pdu) = parse(b);
                assert_eq!((len, pdu[1], pdu.len()), (13, 10, 12));
            }),
        ),
        (
            Fault::WrongTransactionId,
            Box::new(|b, _| {
                let (tid, _, _, unit, pdu) = parse(b);
                assert_eq!((tid, unit), (101, 1));
                assert!(f32s(&pdu[2..]).iter().all(|x| *x == 1.0e9), "poisoned");
            }),
        ),
        (
            Fault::WrongUnitId(2),
            Box::new(|b, _| {
                let (tid, _, _, unit, pdu) = parse(b);
                assert_eq!((tid, unit), (100, 2));
                for x in f32s(&pdu[2..]) {
                    assert!(
                        (f64::from(x) - PHASE_V_10K).abs() < 0.01 * PHASE_V_10K,
                        "B's: {x}"
                    );
                }
            }),
        ),
        (
            Fault::Exception(0x0B),
            Box::new(|b, _| assert_eq!(parse(b).4, vec![0x84, 0x0B])),
        ),
        (
            Fault::RandomBytes,
            Box::new(|b, eof| {
                assert_eq!(b.len(), 24);
                assert!(!eof);
            }),
        ),
        (
            Fault::WrongFunctionCode,
            Box::new(|b, _| {
                let pdu = parse(b).4;
                assert_eq!((pdu[0], pdu[1], pdu.len()), (3, 12, 14));
            }),
        ),
        (
            Fault::WrongByteCount,
            Box::new(|b, _| {
                let (_, _, len, _, pdu) = parse(b);
                assert_eq!((len, pdu[1], pdu.len()), (15, 14, 14));
            }),
        ),
    ];
    for (fault, check) in cases {
        let mut s = connect().await.unwrap();
        ctl.inject(Scope::Next(1), fault.clone());
        s.write_all(&read_request(100, 1)).await.unwrap();
        let (b, eof) = receive(&mut s, quiet).await;
        check(&b, eof);
        if !eof && fault == Fault::Truncated {
            // The connection is still served: the next reply follows.
            s.write_all(&read_request(102, 1)).await.unwrap();
            let (b, _) = receive(&mut s, quiet).await;
            assert_eq!(parse(&b).0, 102, "{fault}");
        }
        assert!(ctl.idle(), "{fault}: Next(1) is used up");
    }

    // A late reply reaches a client that waits, not one that left.
    let delay = Fault::Delay(Duration::from_millis(400));
    let mut s = connect().await.unwrap();
    ctl.inject(Scope::Next(1), delay.clone());
    s.write_all(&read_request(200, 1)).await.unwrap();
    let (b, _) = receive(&mut s, Duration::from_millis(250)).await;
    assert!(b.is_empty(), "nothing before the delay");
    let (b, _) = receive(&mut s, Duration::from_millis(400)).await;
    assert_eq!(parse(&b).0, 200);
    assert!(f32s(&parse(&b).4[2..]).iter().all(|x| *x == 1.0e9));
    let mut s = connect().await.unwrap();
    ctl.inject(Scope::Next(1), delay);
    s.write_all(&read_request(201, 1)).await.unwrap();
    drop(s);
    let st = ctl.stats();
    let settled = wait_until(Duration::from_secs(3), || {
        ctl.stats().late_replies_unsent > st.late_replies_unsent
    })
    .await;
    assert!(settled, "{:?}", ctl.stats());
    assert_eq!(ctl.stats().late_replies_sent, 1);

    // Scopes: a unit (n times, or until cleared), the next n, always.
    let mut s = connect().await.unwrap();
    ctl.inject(Scope::unit_times(2, 2), Fault::Exception(6));
    ctl.inject(Scope::Always, Fault::Exception(4));
    let mut seen = Vec::new();
    for (tid, unit) in [(1u16, 1u8), (2, 2), (3, 2), (4, 2)] {
        s.write_all(&read_request(tid, unit)).await.unwrap();
        seen.push(parse(&receive(&mut s, quiet).await.0).4);
    }
    assert_eq!(
        seen,
        vec![vec![0x84, 4], vec![0x84, 6], vec![0x84, 6], vec![0x84, 4]]
    );
    ctl.clear();
    ctl.inject(Scope::Next(2), Fault::Exception(3));
    ctl.inject(Scope::unit(2), Fault::Exception(5));
    let mut seen = Vec::new();
    for (tid, unit) in [(5u16, 2u8), (6, 1), (7, 2), (8, 1)] {
        s.write_all(&read_request(tid, unit)).await.unwrap();
        seen.push(parse(&receive(&mut s, quiet).await.0).4[..2].to_vec());
    }
    assert_eq!(
        seen,
        vec![vec![0x84, 3], vec![0x84, 3], vec![0x84, 5], vec![4, 12]]
    );
    ctl.clear();
    let log = ctl.injected();
    assert_eq!(log.last().map(|i| (i.tid, i.unit)), Some((7, 2)));

    // Stopping ends every connection and the listener.
    let addr = gw.addr();
    tokio::time::timeout(Duration::from_secs(5), gw.stop())
        .await
        .expect("the proxy stops promptly");
    let (_, eof) = receive(&mut s, Duration::from_secs(2)).await;
    assert!(eof, "open connections are closed on stop");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}
