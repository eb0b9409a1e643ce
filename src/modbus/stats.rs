//! The polling subsystem's counters: totals over all gateways, and
//! registries of per-gateway and per-meter statistics, with the `/metrics`
//! families they make.
//!
//! A gateway task looks its entries up once, when it starts, and holds the
//! `Arc`s: on the polling path every update is an atomic add or store,
//! with no lock and no allocation. The registries' locks are taken only to
//! add an entry and to take a snapshot.

use crate::metrics::exposition::{Family, Sample, Type, counter, secs, value};
use crate::metrics::histogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct PollingStats {
    /// Meter polls that returned at least one value.
    pub polls_ok: AtomicU64,
    /// Meter polls that returned nothing (every read failed).
    pub polls_failed: AtomicU64,
    /// Polls with some reads failed and some succeeded.
    pub polls_partial: AtomicU64,
    /// Scheduled polls skipped because the previous cycle overran.
    pub cycles_skipped: AtomicU64,
    /// Scheduled polls skipped while a dead meter is backed off.
    pub polls_backed_off: AtomicU64,
    pub reads_ok: AtomicU64,
    pub read_timeouts: AtomicU64,
    pub read_exceptions: AtomicU64,
    pub read_transport_errors: AtomicU64,
    pub connects_failed: AtomicU64,
    /// Values dropped because they were NaN, ±inf, "not available", …
    pub fields_dropped: AtomicU64,
    /// Values dropped as implausible (`modbus::plausible`).
    pub fields_implausible: AtomicU64,
    /// Energy counters seen going backwards (stored, flagged).
    pub counters_backwards: AtomicU64,
    /// Gateway tasks that ended unexpectedly (a panic) and were restarted.
    pub gateway_restarts: AtomicU64,
    gateways: Mutex<BTreeMap<String, Arc<GatewayStats>>>,
    meters: Mutex<BTreeMap<String, Arc<MeterStats>>>,
}

/// One gateway address: its polls, reads, request latency and heartbeat.
#[derive(Debug, Default)]
pub struct GatewayStats {
    pub polls_ok: AtomicU64,
    pub polls_partial: AtomicU64,
    pub polls_failed: AtomicU64,
    pub reads_ok: AtomicU64,
    pub read_timeouts: AtomicU64,
    pub read_exceptions: AtomicU64,
    pub read_transport_errors: AtomicU64,
    pub connects_failed: AtomicU64,
    /// Round trip of every read request sent (answered, exception, timed
    /// out or broken), seconds.
    pub latency: Histogram,
    /// Set each time the gateway task wakes for a cycle (even when all its
    /// meters are backed off) and after each meter's poll, Unix ms.
    pub heartbeat_ms: AtomicU64,
    /// Gateway tasks running for this address: 0 once a reload removed it
    /// (its counters stay, its heartbeat no longer matters).
    pub tasks: AtomicU64,
}

/// One meter's polls (the HTTP API's `/api/meters`).
#[derive(Debug, Default)]
pub struct MeterStats {
    pub polls_ok: AtomicU64,
    pub polls_partial: AtomicU64,
    pub polls_failed: AtomicU64,
    /// Scheduled polls skipped while the meter was backed off.
    pub polls_backed_off: AtomicU64,
    /// When it was last polled (Unix ms, 0 = never).
    pub last_poll_ms: AtomicU64,
    /// Failed polls in a row now.
    pub fail_streak: AtomicU64,
}

impl PollingStats {
    /// The statistics of the gateway at `address`, created on first use.
    /// Called once per gateway task, not per poll.
    pub fn gateway(&self, address: &str) -> Arc<GatewayStats> {
        let mut g = self.gateways.lock().expect("gateway stats lock");
        if let Some(s) = g.get(address) {
            return s.clone();
        }
        let s = Arc::new(GatewayStats::default());
        g.insert(address.to_string(), s.clone());
        s
    }

    /// Every gateway seen, by address.
    pub(crate) fn gateways(&self) -> Vec<(String, Arc<GatewayStats>)> {
        let g = self.gateways.lock().expect("gateway stats lock");
        g.iter().map(|(a, s)| (a.clone(), s.clone())).collect()
    }

    /// (address, heartbeat Unix ms) of every gateway with a running task:
    /// what a watchdog checks.
    pub(crate) fn gateway_heartbeats(&self) -> Vec<(String, u64)> {
        let g = self.gateways.lock().expect("gateway stats lock");
        g.iter()
            .filter(|(_, s)| s.tasks.load(Relaxed) > 0)
            .map(|(a, s)| (a.clone(), s.heartbeat_ms.load(Relaxed)))
            .collect()
    }

    /// The statistics of meter `id`, created on first use (once per
    /// gateway task start).
    pub(crate) fn meter(&self, id: &str) -> Arc<MeterStats> {
        let mut m = self.meters.lock().expect("meter stats lock");
        if let Some(s) = m.get(id) {
            return s.clone();
        }
        let s = Arc::new(MeterStats::default());
        m.insert(id.to_string(), s.clone());
        s
    }

    /// Meter `id`'s statistics, if it was ever polled.
    pub fn meter_stats(&self, id: &str) -> Option<Arc<MeterStats>> {
        self.meters
            .lock()
            .expect("meter stats lock")
            .get(id)
            .cloned()
    }

    /// The polling families: per gateway (polls, reads, connects, request
    /// latency, heartbeat, running), then the totals only kept overall.
    pub(crate) fn families(&self) -> Vec<Family> {
        use Type::{Counter, Gauge, Histogram};
        let gateways = self.gateways();
        let gw = |addr: &str| vec![("gateway", addr.to_string())];
        let gw_outcome =
            |addr: &str, o: &str| vec![("gateway", addr.to_string()), ("outcome", o.to_string())];
        let mut polls = Family::new(
            "pqwatch_polls_total",
            Counter,
            "Meter polls per gateway: ok (every read answered), partial (some did), failed (none did).",
        );
        let mut reads = Family::new(
            "pqwatch_reads_total",
            Counter,
            "Modbus read requests per gateway by outcome: ok, timeout, exception, transport_error.",
        );
        let mut connects = Family::new(
            "pqwatch_connects_failed_total",
            Counter,
            "Failed TCP connects per gateway.",
        );
        let mut latency = Family::new(
            "pqwatch_modbus_request_duration_seconds",
            Histogram,
            "Round trip of each Modbus read request sent, per gateway (timeouts count at the timeout).",
        );
        let mut beat = Family::new(
            "pqwatch_gateway_heartbeat_timestamp_seconds",
            Gauge,
            "When the gateway's task last woke for a cycle or finished a poll, Unix seconds.",
        );
        let mut running = Family::new(
            "pqwatch_gateway_running",
            Gauge,
            "1 while a task polls the gateway, 0 after a reload removed it.",
        );
        for (addr, s) in &gateways {
            for (o, c) in [
                ("ok", &s.polls_ok),
                ("partial", &s.polls_partial),
                ("failed", &s.polls_failed),
            ] {
                polls = polls.with(gw_outcome(addr, o), value(c));
            }
            for (o, c) in [
                ("ok", &s.reads_ok),
                ("timeout", &s.read_timeouts),
                ("exception", &s.read_exceptions),
                ("transport_error", &s.read_transport_errors),
            ] {
                reads = reads.with(gw_outcome(addr, o), value(c));
            }
            connects = connects.with(gw(addr), value(&s.connects_failed));
            latency
                .samples
                .push(Sample::Histogram(gw(addr), s.latency.snapshot()));
            beat = beat.with(gw(addr), secs(s.heartbeat_ms.load(Relaxed)));
            running = running.with(gw(addr), f64::from(s.tasks.load(Relaxed) > 0));
        }
        let mut f = vec![polls, reads, connects, latency, beat, running];
        f.extend([
            counter(
                "pqwatch_cycles_skipped_total",
                "Scheduled polls skipped because the previous cycle overran.",
                &self.cycles_skipped,
            ),
            counter(
                "pqwatch_polls_backed_off_total",
                "Scheduled polls skipped while a failing meter is backed off.",
                &self.polls_backed_off,
            ),
            counter(
                "pqwatch_fields_dropped_total",
                "Decoded values dropped (NaN, infinite, the device's not-available marker).",
                &self.fields_dropped,
            ),
            counter(
                "pqwatch_fields_implausible_total",
                "Values rejected as implausible ([plausibility]): not stored, not judged.",
                &self.fields_implausible,
            ),
            counter(
                "pqwatch_gateway_restarts_total",
                "Gateway tasks that ended unexpectedly (a bug) and were restarted.",
                &self.gateway_restarts,
            ),
            counter(
                "pqwatch_counters_backwards_total",
                "Energy counters seen going backwards (stored as read, flagged).",
                &self.counters_backwards,
            ),
        ]);
        f
    }
}
