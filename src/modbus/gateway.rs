//! Gateway tasks: one task owns one Modbus/TCP connection and polls every
//! meter behind it on a wall-clock schedule.
//!
//! Requests to a gateway are serialised (an RS-485 bus answers one request
//! at a time); gateways run concurrently, each in its own task, so a dead
//! gateway never touches another. Within a gateway:
//!
//! - Poll instants are aligned to wall-clock multiples of each meter's
//!   interval; the reading is stamped with that instant. Waits run on the
//!   monotonic clock, and a wall-clock step (`crate::clock`) re-anchors
//!   the schedule to the new time at the next wake: a clock set back never
//!   stops polling, a clock set forward skips nothing.
//! - If polling overruns so that a meter's next instant has already passed,
//!   the missed cycles are skipped and counted, never queued.
//! - Every request runs under the meter's timeout. A timeout or transport
//!   error drops the connection (a late reply would desynchronise
//!   transaction ids) and abandons that meter's remaining reads for this
//!   cycle, so a dead meter costs the others at most one timeout.
//!   Reconnecting is immediate after a meter failure; after a failed
//!   connect it backs off (capped, jittered). A gateway that accepts and
//!   then resets or closes every connection before answering is a reset
//!   storm: after three such connections in a row it is logged once and
//!   reconnects back off the same way. "Connected again" is logged only
//!   when the gateway answers a request, not when a connect succeeds.
//! - A Modbus exception is counted and logged; the connection is kept.
//! - A meter that fails three polls in a row is backed off (polled every
//!   2ⁿ cycles, up to the reconnect cap) until it answers again.
//!
//! Failures are logged at the start of a streak and on recovery, not on
//! every poll, and always counted: globally, per gateway (with the round
//! trip of every request in a latency histogram) and per meter. The task
//! beats its heartbeat each time it wakes for a cycle and after each poll
//! (`metrics` module docs).

use super::stats::{GatewayStats, MeterStats};
use crate::backoff;
use crate::clock::{catch_up, next_aligned, now_ms};
use crate::config::{GatewaySettings, Meter};
use crate::metrics::Metrics;
use crate::modbus::plan::ReadRequest;
use crate::profile::FunctionCode;
use crate::reading::{MeterMeta, Reading};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_modbus::client::Client as _;
use tokio_modbus::client::Context;
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::{ExceptionCode, Slave};
use tokio_modbus::{Request, Response};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

/// Outcome of one read request.
#[derive(Debug)]
pub enum ReadOutcome {
    Ok(Vec<u16>),
    Exception(ExceptionCode),
    Timeout,
    /// Transport or protocol error (wrong length, mismatched header, …).
    Broken(String),
    /// No connection could be made.
    NoConnection(String),
}

impl std::fmt::Display for ReadOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadOutcome::Ok(w) => write!(f, "ok ({} registers)", w.len()),
            ReadOutcome::Exception(c) => {
                write!(f, "Modbus exception {c:?} (0x{:02X})", u8::from(*c))
            }
            ReadOutcome::Timeout => f.write_str("timeout"),
            ReadOutcome::Broken(e) => write!(f, "error: {e}"),
            ReadOutcome::NoConnection(e) => f.write_str(e),
        }
    }
}

/// Result of [`probe`].
pub struct Probe {
    pub reads: Vec<(ReadRequest, ReadOutcome)>,
    pub values: Vec<(Arc<str>, f64)>,
    pub dropped: Vec<(Arc<str>, crate::modbus::assemble::DropReason)>,
}

/// Poll one meter once, outside the daemon (`pqwatch probe`).
pub async fn probe(settings: GatewaySettings, meter: Arc<Meter>) -> Probe {
    let gw = Gateway {
        settings,
        meters: Vec::new(),
        metrics: Arc::new(Metrics::default()),
    };
    let mut conn = Conn::default();
    let stats = GatewayStats::default();
    let mut reads = Vec::new();
    let mut results = Vec::new();
    for req in &meter.plan.requests {
        let outcome = gw
            .read(&mut conn, &stats, meter.unit, meter.timeout, req)
            .await;
        results.push(match &outcome {
            ReadOutcome::Ok(w) => Some(w.clone()),
            _ => None,
        });
        reads.push((req.clone(), outcome));
    }
    let a = meter.plan.assemble(&results);
    Probe {
        reads,
        values: a.values,
        dropped: a.dropped,
    }
}

/// The raw outcome of one poll's reads.
struct Reads {
    /// Per request of the plan: its registers, or `None` when it failed.
    results: Vec<Option<Vec<u16>>>,
    /// The first failure, for the log.
    first_error: Option<String>,
    /// The meter answered "illegal data address" to a read bridging gaps.
    rejects_gaps: bool,
}

/// One meter's poll state inside its gateway task.
struct MeterState {
    meter: Arc<Meter>,
    /// The meter's read plan; replaced by a gap-free one if the device
    /// rejects reads across registers it does not define.
    plan: Arc<crate::modbus::assemble::MeterPlan>,
    meta: Arc<MeterMeta>,
    interval_ms: i64,
    /// Next scheduled instant, Unix ms.
    next_ms: i64,
    fail_streak: u32,
    /// While backed off: do not poll before this instant (Unix ms).
    backoff_until_ms: i64,
    stats: Arc<MeterStats>,
    /// Which fields are implausible now, and the counters' last values.
    plausible: crate::modbus::plausible::Tracker,
}

pub(crate) struct Gateway {
    pub settings: GatewaySettings,
    pub meters: Vec<Arc<Meter>>,
    pub metrics: Arc<Metrics>,
}

/// Counts this task in [`GatewayStats::tasks`] while it runs, whichever
/// way it returns.
struct Running(Arc<GatewayStats>);

impl Running {
    fn start(stats: Arc<GatewayStats>) -> Running {
        Metrics::inc(&stats.tasks);
        Running(stats)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.tasks.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |n| n.checked_sub(1),
        );
    }
}

/// Connections in a row lost to a transport error before any answer that
/// make a reset storm: logged once, and reconnects back off from then on.
const RESET_STORM: u32 = 3;

/// The connection and its reconnect state.
#[derive(Default)]
struct Conn {
    ctx: Option<Context>,
    /// Failed connects since the gateway last answered.
    connect_failures: u32,
    /// Connections in a row that broke before any answer (the gateway
    /// accepts, then resets or closes).
    resets: u32,
    /// Whether the current connection has answered a request.
    answered: bool,
    retry_at: Option<Instant>,
}

impl Conn {
    /// Whether the gateway counts as failing: only an answer ends that.
    fn failing(&self) -> bool {
        self.connect_failures > 0 || self.resets >= RESET_STORM
    }
}

impl Gateway {
    /// Run until `cancel` fires. Readings go to `tx`; a full channel applies
    /// backpressure (the sink drains at CPU speed, never waiting on I/O).
    pub(crate) async fn run(self, tx: mpsc::Sender<Reading>, cancel: CancellationToken) {
        let span = info_span!("gateway", gateway = %self.settings.address);
        self.run_inner(tx, cancel).instrument(span).await;
    }

    async fn run_inner(self, tx: mpsc::Sender<Reading>, cancel: CancellationToken) {
        let gs = self.metrics.polling.gateway(&self.settings.address);
        let _running = Running::start(gs.clone());
        let now = now_ms();
        Metrics::set(&gs.heartbeat_ms, now as u64);
        let mut states: Vec<MeterState> = self
            .meters
            .iter()
            .map(|m| {
                let interval_ms = m.interval.as_millis().max(1) as i64;
                MeterState {
                    meta: Arc::new(MeterMeta::new(&m.id, &m.customer, &m.tags)),
                    plan: m.plan.clone(),
                    meter: m.clone(),
                    interval_ms,
                    next_ms: next_aligned(now, interval_ms),
                    fail_streak: 0,
                    backoff_until_ms: 0,
                    stats: self.metrics.polling.meter(&m.id),
                    plausible: Default::default(),
                }
            })
            .collect();
        let mut conn = Conn::default();
        let mut clock = crate::clock::Detector::new();
        debug!(meters = states.len(), "gateway task started");

        loop {
            // A step during the polls before: the wait below must not
            // span it (`clock::watch` logs and counts it, once per process).
            if let Some(step) = clock.check() {
                re_anchor(&mut states, now_ms(), step);
            }
            let Some(due_ms) = states.iter().map(|s| s.next_ms).min() else {
                return;
            };
            // A monotonic wait: a wall-clock step while it runs does not
            // lengthen it; the step is seen when it ends.
            let wait = crate::clock::until(due_ms, now_ms());
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
            Metrics::set(&gs.heartbeat_ms, now_ms() as u64);
            if let Some(step) = clock.check() {
                re_anchor(&mut states, now_ms(), step);
            }
            // Poll every meter that is due, in config order.
            for st in &mut states {
                if cancel.is_cancelled() {
                    break;
                }
                let now = now_ms();
                // Progress within a long cycle (many meters, timeouts).
                Metrics::set(&gs.heartbeat_ms, now as u64);
                if st.next_ms > now {
                    continue;
                }
                let (at, skipped) = catch_up(st.next_ms, now, st.interval_ms);
                if skipped > 0 {
                    Metrics::add(&self.metrics.polling.cycles_skipped, skipped);
                    debug!(meter = %st.meter.id, skipped, "poll overran; skipped cycles");
                }
                st.next_ms = at + st.interval_ms;
                if at < st.backoff_until_ms {
                    Metrics::inc(&self.metrics.polling.polls_backed_off);
                    Metrics::inc(&st.stats.polls_backed_off);
                    continue;
                }
                Metrics::set(&st.stats.last_poll_ms, now as u64);
                let values = tokio::select! {
                    _ = cancel.cancelled() => break,
                    v = self.poll_meter(st, &mut conn, &gs) => v,
                };
                if let Some(values) = values {
                    let reading = Reading {
                        meter: st.meta.clone(),
                        ts_ms: at,
                        values: values.into(),
                    };
                    if tx.send(reading).await.is_err() {
                        return; // sink gone: shutting down
                    }
                }
            }
        }
        if let Some(mut ctx) = conn.ctx.take() {
            let _ = timeout(Duration::from_millis(200), ctx.disconnect()).await;
        }
        debug!("gateway task stopped");
    }

    /// Poll one meter once. Returns its values, or `None` when nothing decoded.
    async fn poll_meter(
        &self,
        st: &mut MeterState,
        conn: &mut Conn,
        gs: &GatewayStats,
    ) -> Option<Vec<(Arc<str>, f64)>> {
        let m = st.meter.clone();
        let plan = st.plan.clone();
        let reads = self.read_plan(conn, gs, &m, &plan).await;
        if reads.rejects_gaps {
            let tight = plan.without_gaps();
            info!(
                meter = %m.id,
                reads_before = plan.requests.len(),
                reads_now = tight.requests.len(),
                "meter rejects reads across registers it does not define; reading without gaps from now on"
            );
            st.plan = Arc::new(tight);
        }
        let results = reads.results;
        let ok_reads = results.iter().filter(|r| r.is_some()).count();
        let assembled = plan.assemble(&results);
        self.count_dropped(st, &assembled.dropped);
        if ok_reads == 0 {
            self.poll_failed(st, gs, reads.first_error);
            return None;
        }
        if st.fail_streak > 0 {
            info!(meter = %m.id, after_failures = st.fail_streak, "meter answers again");
            st.fail_streak = 0;
            st.backoff_until_ms = 0;
            Metrics::set(&st.stats.fail_streak, 0);
        }
        if ok_reads < results.len() {
            Metrics::inc(&self.metrics.polling.polls_partial);
            Metrics::inc(&gs.polls_partial);
            Metrics::inc(&st.stats.polls_partial);
            debug!(meter = %m.id, error = %reads.first_error.unwrap_or_default(), "some reads failed");
        } else {
            Metrics::inc(&self.metrics.polling.polls_ok);
            Metrics::inc(&gs.polls_ok);
            Metrics::inc(&st.stats.polls_ok);
        }
        let mut values = assembled.values;
        self.check_plausible(st, &mut values);
        if values.is_empty() {
            return None;
        }
        Some(values)
    }

    /// Every read of `plan`, in order, each outcome counted. After a
    /// timeout, a broken connection, no connection or a gateway path
    /// exception the remaining reads are abandoned (`None`): they would
    /// fail the same way, and a dead meter must cost the others at most
    /// one timeout.
    async fn read_plan(
        &self,
        conn: &mut Conn,
        gs: &GatewayStats,
        m: &Meter,
        plan: &crate::modbus::assemble::MeterPlan,
    ) -> Reads {
        let mut out = Reads {
            results: Vec::with_capacity(plan.requests.len()),
            first_error: None,
            rejects_gaps: false,
        };
        let mut abandon = false;
        for (k, req) in plan.requests.iter().enumerate() {
            if abandon {
                out.results.push(None);
                continue;
            }
            if k > 0 && !self.settings.delay_between_requests.is_zero() {
                tokio::time::sleep(self.settings.delay_between_requests).await;
            }
            let outcome = self.read(conn, gs, m.unit, m.timeout, req).await;
            let what = || format!("{} {}+{}", req.function, req.start, req.count);
            // The first failure is kept for the log, formatted only then.
            let error = &mut out.first_error;
            match outcome {
                ReadOutcome::Ok(words) => {
                    Metrics::inc(&self.metrics.polling.reads_ok);
                    Metrics::inc(&gs.reads_ok);
                    out.results.push(Some(words));
                    continue;
                }
                ReadOutcome::Exception(code) => {
                    Metrics::inc(&self.metrics.polling.read_exceptions);
                    Metrics::inc(&gs.read_exceptions);
                    out.rejects_gaps |=
                        code == ExceptionCode::IllegalDataAddress && plan.bridges_gaps();
                    // 0x0A/0x0B: the gateway cannot reach the meter; the
                    // remaining reads would fail the same way.
                    abandon = matches!(
                        code,
                        ExceptionCode::GatewayPathUnavailable | ExceptionCode::GatewayTargetDevice
                    );
                    error.get_or_insert_with(|| {
                        format!(
                            "{}: Modbus exception {:?} (0x{:02X})",
                            what(),
                            code,
                            u8::from(code)
                        )
                    });
                }
                ReadOutcome::Timeout => {
                    Metrics::inc(&self.metrics.polling.read_timeouts);
                    Metrics::inc(&gs.read_timeouts);
                    abandon = true;
                    error.get_or_insert_with(|| {
                        format!("{}: no answer within {:?}", what(), m.timeout)
                    });
                }
                ReadOutcome::Broken(e) => {
                    Metrics::inc(&self.metrics.polling.read_transport_errors);
                    Metrics::inc(&gs.read_transport_errors);
                    abandon = true;
                    error.get_or_insert_with(|| format!("{}: {e}", what()));
                }
                ReadOutcome::NoConnection(e) => {
                    abandon = true;
                    error.get_or_insert(e);
                }
            }
            out.results.push(None);
        }
        out
    }

    /// Count the values dropped from a reading, and log them once per poll
    /// at info (bad data is worth knowing about), not while failing.
    fn count_dropped(
        &self,
        st: &MeterState,
        dropped: &[(Arc<str>, crate::modbus::assemble::DropReason)],
    ) {
        let m = &st.meter;
        for (field, reason) in dropped {
            Metrics::inc(&self.metrics.polling.fields_dropped);
            debug!(meter = %m.id, field = %field, reason = %reason, "value dropped");
        }
        if !dropped.is_empty() && st.fail_streak == 0 {
            let names: Vec<String> = dropped.iter().map(|(f, r)| format!("{f}({r})")).collect();
            info!(meter = %m.id, dropped = %names.join(" "), "values dropped from reading");
        }
    }

    /// A poll where no read succeeded: counted, logged at the start of the
    /// streak, and from the third in a row the meter is backed off (polled
    /// every 2ⁿ cycles, up to the reconnect cap).
    fn poll_failed(&self, st: &mut MeterState, gs: &GatewayStats, first_error: Option<String>) {
        let m = &st.meter;
        Metrics::inc(&self.metrics.polling.polls_failed);
        Metrics::inc(&gs.polls_failed);
        Metrics::inc(&st.stats.polls_failed);
        st.fail_streak += 1;
        Metrics::set(&st.stats.fail_streak, u64::from(st.fail_streak));
        let err = first_error.unwrap_or_else(|| "no reads".into());
        if st.fail_streak == 1 {
            warn!(meter = %m.id, unit = m.unit, error = %err, "meter poll failed");
        } else {
            debug!(meter = %m.id, streak = st.fail_streak, error = %err, "meter poll failed");
        }
        if st.fail_streak >= 3 {
            let cycles = 1i64 << (st.fail_streak - 2).min(10);
            let cap = self.settings.reconnect_max.as_millis() as i64;
            let wait = (cycles * st.interval_ms).min(cap.max(st.interval_ms));
            st.backoff_until_ms = now_ms() + wait;
            if st.fail_streak == 3 {
                warn!(meter = %m.id, "meter keeps failing; polling it less often until it answers");
            }
        }
    }

    /// Drop implausible values (counted, logged when a field turns bad and
    /// when it recovers) and flag counters that went backwards.
    fn check_plausible(&self, st: &mut MeterState, values: &mut Vec<(Arc<str>, f64)>) {
        let m = &st.meter;
        let v = st.plausible.filter(&m.plausibility, values);
        Metrics::add(
            &self.metrics.polling.fields_implausible,
            v.rejected.len() as u64,
        );
        for (field, why) in &v.rejected {
            if v.turned_bad.contains(field) {
                warn!(meter = %m.id, field = %field, why = %why, "implausible value rejected (not stored; logged again only after it recovers)");
            } else {
                debug!(meter = %m.id, field = %field, why = %why, "implausible value rejected");
            }
        }
        for field in &v.recovered {
            info!(meter = %m.id, field = %field, "plausible again");
        }
        for (field, prev, now) in &v.backwards {
            Metrics::inc(&self.metrics.polling.counters_backwards);
            warn!(meter = %m.id, field = %field, previous = prev, now = now, "energy counter went backwards (meter reset or replaced?); stored as read");
        }
    }

    /// One read request, connecting first if needed. Its round trip goes
    /// into `gs.latency` whenever the request was sent.
    async fn read(
        &self,
        conn: &mut Conn,
        gs: &GatewayStats,
        unit: u8,
        req_timeout: Duration,
        req: &ReadRequest,
    ) -> ReadOutcome {
        if conn.ctx.is_none() {
            if let Some(t) = conn.retry_at
                && Instant::now() < t
            {
                return ReadOutcome::NoConnection(format!(
                    "gateway unreachable (retrying in {:?})",
                    t - Instant::now()
                ));
            }
            match self.connect().await {
                Ok(ctx) => {
                    // Not "connected again" yet: a gateway that accepts and
                    // resets is no better than one that refuses. The first
                    // answer says so (below).
                    conn.ctx = Some(ctx);
                    conn.answered = false;
                    conn.retry_at = None;
                }
                Err(e) => {
                    Metrics::inc(&self.metrics.polling.connects_failed);
                    Metrics::inc(&gs.connects_failed);
                    conn.connect_failures += 1;
                    // Jittered so many pqwatch instances (or gateways) do
                    // not reconnect in lockstep.
                    let wait = backoff::reconnect(self.settings.reconnect_max)
                        .delay(conn.connect_failures + conn.resets);
                    conn.retry_at = Some(Instant::now() + wait);
                    if conn.connect_failures == 1 && conn.resets < RESET_STORM {
                        warn!(error = %e, "cannot connect to gateway");
                    }
                    return ReadOutcome::NoConnection(format!("cannot connect: {e}"));
                }
            }
        }
        let ctx = conn.ctx.as_mut().expect("connected above");
        ctx.set_slave(Slave(unit));
        // `Client::call`, not the `Reader` helpers: those debug-assert the
        // register count, so a gateway answering with the wrong count would
        // panic this task in debug builds instead of counting a broken read.
        let request = match req.function {
            FunctionCode::Holding => Request::ReadHoldingRegisters(req.start, req.count),
            FunctionCode::Input => Request::ReadInputRegisters(req.start, req.count),
        };
        let call = async {
            ctx.call(request).await.map(|r| {
                r.map(|response| match response {
                    Response::ReadHoldingRegisters(words) | Response::ReadInputRegisters(words) => {
                        words
                    }
                    // tokio-modbus rejects a reply to another function; an
                    // empty reply fails the count check below all the same.
                    _ => Vec::new(),
                })
            })
        };
        let sent = std::time::Instant::now();
        let answer = timeout(req_timeout, call).await;
        gs.latency.observe(sent.elapsed());
        let outcome = match answer {
            Err(_) => ReadOutcome::Timeout,
            Ok(Err(e)) => ReadOutcome::Broken(e.to_string()),
            Ok(Ok(Err(code))) => ReadOutcome::Exception(code),
            Ok(Ok(Ok(words))) if words.len() != req.count as usize => ReadOutcome::Broken(format!(
                "reply has {} registers, asked for {}",
                words.len(),
                req.count
            )),
            Ok(Ok(Ok(words))) => ReadOutcome::Ok(words),
        };
        match &outcome {
            ReadOutcome::Ok(_) | ReadOutcome::Exception(_) => {
                if conn.failing() {
                    info!(
                        after_connect_failures = conn.connect_failures,
                        after_resets = conn.resets,
                        "gateway connected again"
                    );
                }
                conn.connect_failures = 0;
                conn.resets = 0;
                conn.answered = true;
            }
            ReadOutcome::Broken(e) if !conn.answered => {
                // Lost before any answer. A timeout is not counted: one
                // dead meter behind a healthy gateway times out too.
                conn.resets += 1;
                if conn.resets == RESET_STORM {
                    warn!(
                        resets = conn.resets,
                        error = %e,
                        "gateway resets every connection before answering (reset storm); backing off reconnects until it answers"
                    );
                }
                if conn.resets >= RESET_STORM {
                    let wait = backoff::reconnect(self.settings.reconnect_max)
                        .delay(conn.resets - RESET_STORM + 1 + conn.connect_failures);
                    conn.retry_at = Some(Instant::now() + wait);
                }
            }
            _ => {}
        }
        if matches!(outcome, ReadOutcome::Timeout | ReadOutcome::Broken(_)) {
            // Never reuse a connection that may still deliver a stale reply.
            conn.ctx = None;
        }
        outcome
    }

    async fn connect(&self) -> Result<Context, String> {
        let t = self.settings.connect_timeout;
        let addr = &self.settings.address;
        let attempt = async {
            let mut last = String::from("no address");
            for sa in tokio::net::lookup_host(addr.as_str())
                .await
                .map_err(|e| format!("resolve {addr}: {e}"))?
            {
                match tokio_modbus::client::tcp::connect_slave(sa, Slave(1)).await {
                    Ok(ctx) => return Ok(ctx),
                    Err(e) => last = format!("{sa}: {e}"),
                }
            }
            Err(last)
        };
        match timeout(t, attempt).await {
            Ok(r) => r,
            Err(_) => Err(format!("connect timed out after {t:?}")),
        }
    }
}

/// After a wall-clock step of `step_ms`: every meter is due at the latest
/// aligned instant of the new time (polled now, stamped with it: no gap,
/// nothing counted as skipped, nothing waited for), and backoffs keep the
/// time they had left.
fn re_anchor(states: &mut [MeterState], now: i64, step_ms: i64) {
    for st in states {
        st.next_ms = now - now.rem_euclid(st.interval_ms);
        if st.backoff_until_ms > 0 {
            st.backoff_until_ms += step_ms;
        }
    }
}
