//! Process-wide counters, shared by the tasks that count and the code that
//! reports (periodic log summaries, `/metrics` and the HTTP API in
//! `http`, the systemd watchdog).
//!
//! Each subsystem owns its counters and describes its own `/metrics`
//! families: polling (`modbus::stats`), the sink (`sink::stats`), events
//! (`watch::stats`), mail (`mail::stats`) and reports (`report::stats`).
//! [`Metrics`] holds one of each, plus the few process-wide counters, and
//! `families` concatenates them. `exposition` (the text format) and
//! `histogram` are leaves the subsystems build on.
//!
//! Each failure is logged and counted by one helper in the module where it
//! happens, so logs and counters always agree.
//!
//! Heartbeats (Unix ms, 0 = never) show that a task keeps turning its loop:
//! each gateway task's `GatewayStats::heartbeat_ms`, the sink's
//! `sink_heartbeat_ms` and the watch's `watch_heartbeat_ms`. A stale
//! heartbeat means a hung task, not a failing device: a gateway whose
//! meters never answer still beats.

pub(crate) mod exposition;
pub(crate) mod histogram;

use exposition::{Family, Type, counter, gauge, secs};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Metrics {
    pub polling: crate::modbus::stats::PollingStats,
    pub sink: crate::sink::stats::SinkStats,
    pub events: crate::watch::stats::EventStats,
    pub mail: crate::mail::stats::MailStats,
    pub(crate) reports: crate::report::stats::ReportStats,
    /// Wall-clock steps (either way, more than 1 s) seen (`clock`).
    pub clock_steps: AtomicU64,
    /// HTTP connections closed because they were too slow to send a
    /// request, idle too long, or the oldest waiting at the bound.
    pub http_connections_dropped: AtomicU64,
}

/// The process's start (Unix ms): fixed the first time it is asked for,
/// which the daemon does as it starts.
pub(crate) fn process_start_ms() -> u64 {
    static START: OnceLock<u64> = OnceLock::new();
    *START.get_or_init(|| crate::clock::now_ms().max(0) as u64)
}

impl Metrics {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub(crate) fn set(c: &AtomicU64, v: u64) {
        c.store(v, Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
}

/// What `/metrics` shows besides the [`Metrics`] counters.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extra {
    pub now_ms: i64,
    /// Open events per kind (state database); `None` when it could not be
    /// read (the family is left out rather than reported as zero).
    pub open_events: Option<BTreeMap<String, u64>>,
    /// `[influxdb] max_outbox_bytes`, when InfluxDB is configured.
    pub max_outbox_bytes: Option<u64>,
    pub version: &'static str,
    pub start_ms: u64,
}

/// Every family: the process's, then each subsystem's own.
pub(crate) fn families(m: &Metrics, extra: &Extra) -> Vec<Family> {
    let mut f = vec![
        Family::new(
            "pqwatch_build_info",
            Type::Gauge,
            "pqwatch's version; the value is always 1.",
        )
        .with(vec![("version", extra.version.to_string())], 1.0),
        gauge(
            "pqwatch_process_start_time_seconds",
            "When the daemon started, Unix seconds.",
            secs(extra.start_ms),
        ),
    ];
    f.extend(m.polling.families());
    f.extend([
        counter(
            "pqwatch_clock_steps_total",
            "Wall-clock steps (either way, more than 1 s) seen; poll schedules were re-anchored on each.",
            &m.clock_steps,
        ),
        counter(
            "pqwatch_http_connections_dropped_total",
            "HTTP connections closed for sending a request too slowly, idling, or waiting longest at the connection bound.",
            &m.http_connections_dropped,
        ),
    ]);
    f.extend(m.sink.families(extra.now_ms, extra.max_outbox_bytes));
    f.extend(m.events.families(extra.open_events.as_ref()));
    f.extend(m.mail.families());
    f.extend(m.reports.families());
    f
}

/// Log the one-line status summary (every `status_every`, and at exit).
pub(crate) fn log_status(m: &Metrics) {
    let g = Metrics::get;
    let (p, s, e) = (&m.polling, &m.sink, &m.events);
    tracing::info!(
        polls_ok = g(&p.polls_ok),
        polls_partial = g(&p.polls_partial),
        polls_failed = g(&p.polls_failed),
        cycles_skipped = g(&p.cycles_skipped),
        read_timeouts = g(&p.read_timeouts),
        read_exceptions = g(&p.read_exceptions),
        fields_dropped = g(&p.fields_dropped),
        fields_implausible = g(&p.fields_implausible),
        points_written = g(&s.points_written),
        points_dropped = g(&s.points_dropped),
        points_rejected = g(&s.points_rejected),
        batches_retried = g(&s.batches_retried),
        outbox_batches = g(&s.outbox_batches),
        outbox_points = g(&s.outbox_points),
        outbox_bytes = g(&s.outbox_bytes),
        outbox_oldest_age_s = match g(&s.outbox_oldest_ms) {
            0 => 0,
            t => (crate::clock::now_ms() as u64).saturating_sub(t) / 1000,
        },
        points_not_stored = g(&s.points_discarded),
        events_opened = g(&e.events_opened),
        events_closed = g(&e.events_closed),
        "status"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use exposition::render;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn histogram_buckets_are_cumulative_and_count_is_their_total() {
        let h = histogram::Histogram::default();
        for ms in [1, 5, 7, 300, 300, 20_000] {
            h.observe(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(s.buckets[0], (0.005, 2), "1 ms and 5 ms (le is inclusive)");
        assert_eq!(s.buckets[1], (0.01, 3));
        assert_eq!(s.buckets.iter().find(|b| b.0 == 0.5).unwrap().1, 5);
        assert_eq!(s.buckets.last().unwrap(), &(10.0, 5), "20 s only in +Inf");
        assert_eq!(s.count, 6);
        assert!((s.sum - 20.613).abs() < 1e-9, "{}", s.sum);
    }

    #[test]
    fn registries_hand_out_one_entry_per_key_and_heartbeats_only_of_running_gateways() {
        let m = Metrics::default();
        let a = m.polling.gateway("10.0.0.1:502");
        Metrics::inc(&a.polls_ok);
        assert_eq!(Metrics::get(&m.polling.gateway("10.0.0.1:502").polls_ok), 1);
        Metrics::set(&a.heartbeat_ms, 42);
        assert!(m.polling.gateway_heartbeats().is_empty(), "no task runs");
        Metrics::inc(&a.tasks);
        assert_eq!(
            m.polling.gateway_heartbeats(),
            vec![("10.0.0.1:502".to_string(), 42)]
        );
        assert!(Arc::ptr_eq(&m.polling.meter("M1"), &m.polling.meter("M1")));
        assert!(m.polling.meter_stats("M2").is_none());
    }

    #[test]
    fn last_write_error_is_kept_short() {
        let m = Metrics::default();
        m.sink.influx_error(5, &"x".repeat(1000), 3);
        assert_eq!(Metrics::get(&m.sink.influx_failures), 3);
        assert!(m.sink.influx_last_error().chars().count() <= 301);
        m.sink.influx_ok(9);
        assert_eq!(Metrics::get(&m.sink.influx_failures), 0);
        assert_eq!(Metrics::get(&m.sink.influx_last_ok_ms), 9);
    }

    #[test]
    fn every_family_is_named_typed_and_documented() {
        let m = Metrics::default();
        let gs = m.polling.gateway("10.0.0.1:502");
        Metrics::inc(&gs.polls_ok);
        gs.latency.observe(Duration::from_millis(12));
        Metrics::set(&m.sink.outbox_oldest_ms, 1_000);
        let extra = Extra {
            now_ms: 61_000,
            open_events: Some([("voltage_high".to_string(), 2)].into()),
            max_outbox_bytes: Some(1 << 30),
            version: "9.9.9",
            start_ms: 500,
        };
        let fams = families(&m, &extra);
        let mut names = std::collections::BTreeSet::new();
        for f in &fams {
            assert!(f.name.starts_with("pqwatch_"), "{}", f.name);
            assert!(!f.help.is_empty(), "{}", f.name);
            assert!(names.insert(f.name), "{} twice", f.name);
        }
        let text = render(&fams);
        for line in [
            "pqwatch_build_info{version=\"9.9.9\"} 1",
            "pqwatch_process_start_time_seconds 0.5",
            "pqwatch_polls_total{gateway=\"10.0.0.1:502\",outcome=\"ok\"} 1",
            "pqwatch_modbus_request_duration_seconds_count{gateway=\"10.0.0.1:502\"} 1",
            "pqwatch_outbox_oldest_age_seconds 60",
            "pqwatch_outbox_max_bytes 1073741824",
            "pqwatch_events_open{kind=\"voltage_high\"} 2",
            "pqwatch_events_open{kind=\"demand_exceeded\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in\n{text}"
            );
        }
        // Without the database figures the family is absent, not zero.
        let none = render(&families(&m, &Extra::default()));
        assert!(!none.contains("# TYPE pqwatch_events_open gauge"));
    }
}
