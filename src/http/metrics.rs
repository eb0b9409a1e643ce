//! `/metrics`: pqwatch's counters and gauges in the Prometheus text
//! exposition format, version 0.0.4.
//!
//! Two pure steps: [`families`] reads a [`Metrics`] (atomics, and the
//! registries' locks held only to copy their lists) plus the few figures
//! the handler fetched from the state database ([`Extra`]) into
//! [`Family`] values; [`render`] writes those as text. No I/O here; the
//! handler in `http` does the database read.
//!
//! Names are `pqwatch_*`, snake_case, with the unit in the name
//! (`_seconds`, `_bytes`); counters end in `_total`; timestamps are Unix
//! seconds. The README lists every metric.

use crate::metrics::{HistogramSnapshot, Metrics};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Counter,
    Gauge,
    Histogram,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
        }
    }
}

pub type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    Value(Labels, f64),
    /// Written as `_bucket` lines (cumulative, then `le="+Inf"`), `_sum`
    /// and `_count`.
    Histogram(Labels, HistogramSnapshot),
}

/// One metric: its `# HELP` and `# TYPE` lines and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Type,
    pub samples: Vec<Sample>,
}

impl Family {
    pub fn new(name: &'static str, kind: Type, help: &'static str) -> Family {
        debug_assert!(valid_name(name), "metric name {name}");
        debug_assert_eq!(kind == Type::Counter, name.ends_with("_total"), "{name}");
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// Add a sample.
    pub fn with(mut self, labels: Labels, value: f64) -> Family {
        self.samples.push(Sample::Value(labels, value));
        self
    }

    /// A family with one unlabelled sample.
    pub fn one(name: &'static str, kind: Type, help: &'static str, value: f64) -> Family {
        Family::new(name, kind, help).with(Vec::new(), value)
    }
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

/// A label value: backslash, double quote and line feed escaped.
pub fn escape_label_value(v: &str, out: &mut String) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `# HELP` text: backslash and line feed escaped.
fn escape_help(v: &str, out: &mut String) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A sample value: Go's float syntax for the special values; integral
/// values without a fraction.
pub fn format_value(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

fn write_labels(labels: &[(&str, String)], extra: Option<(&str, &str)>, out: &mut String) {
    if labels.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    let all = labels.iter().map(|(k, v)| (*k, v.as_str())).chain(extra);
    for (i, (k, v)) in all.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape_label_value(v, out);
        out.push('"');
    }
    out.push('}');
}

fn write_sample(
    name: &str,
    suffix: &str,
    labels: &[(&str, String)],
    extra: Option<(&str, &str)>,
    value: f64,
    out: &mut String,
) {
    out.push_str(name);
    out.push_str(suffix);
    write_labels(labels, extra, out);
    out.push(' ');
    format_value(value, out);
    out.push('\n');
}

/// The text exposition of `families`, in their order.
pub fn render(families: &[Family]) -> String {
    let mut out = String::with_capacity(families.len() * 160);
    for f in families {
        out.push_str("# HELP ");
        out.push_str(f.name);
        out.push(' ');
        escape_help(f.help, &mut out);
        out.push_str("\n# TYPE ");
        out.push_str(f.name);
        out.push(' ');
        out.push_str(f.kind.as_str());
        out.push('\n');
        for s in &f.samples {
            match s {
                Sample::Value(labels, v) => write_sample(f.name, "", labels, None, *v, &mut out),
                Sample::Histogram(labels, h) => {
                    let mut le = String::new();
                    for (bound, n) in &h.buckets {
                        le.clear();
                        format_value(*bound, &mut le);
                        let extra = Some(("le", le.as_str()));
                        write_sample(f.name, "_bucket", labels, extra, *n as f64, &mut out);
                    }
                    let inf = Some(("le", "+Inf"));
                    write_sample(f.name, "_bucket", labels, inf, h.count as f64, &mut out);
                    write_sample(f.name, "_sum", labels, None, h.sum, &mut out);
                    write_sample(f.name, "_count", labels, None, h.count as f64, &mut out);
                }
            }
        }
    }
    out
}

/// What `/metrics` shows besides the [`Metrics`] counters.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    pub now_ms: i64,
    /// Open events per kind (state database); `None` when it could not be
    /// read (the family is left out rather than reported as zero).
    pub open_events: Option<BTreeMap<String, u64>>,
    /// `[influxdb] max_outbox_bytes`, when InfluxDB is configured.
    pub max_outbox_bytes: Option<u64>,
    pub version: &'static str,
    pub start_ms: u64,
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Every family, from the counters and `extra`.
pub fn families(m: &Metrics, extra: &Extra) -> Vec<Family> {
    use Type::{Counter, Gauge, Histogram};
    let g = |c: &std::sync::atomic::AtomicU64| Metrics::get(c) as f64;
    let counter = |name, help, c| Family::one(name, Counter, help, g(c));
    let gauge = |name, help, v: f64| Family::one(name, Gauge, help, v);
    let gateways = m.gateways();
    let gw = |addr: &str| vec![("gateway", addr.to_string())];
    let gw_outcome =
        |addr: &str, o: &str| vec![("gateway", addr.to_string()), ("outcome", o.to_string())];

    let mut f = vec![
        Family::new(
            "pqwatch_build_info",
            Gauge,
            "pqwatch's version; the value is always 1.",
        )
        .with(vec![("version", extra.version.to_string())], 1.0),
        gauge(
            "pqwatch_process_start_time_seconds",
            "When the daemon started, Unix seconds.",
            secs(extra.start_ms),
        ),
    ];

    // Polling, per gateway.
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
            polls = polls.with(gw_outcome(addr, o), g(c));
        }
        for (o, c) in [
            ("ok", &s.reads_ok),
            ("timeout", &s.read_timeouts),
            ("exception", &s.read_exceptions),
            ("transport_error", &s.read_transport_errors),
        ] {
            reads = reads.with(gw_outcome(addr, o), g(c));
        }
        connects = connects.with(gw(addr), g(&s.connects_failed));
        latency
            .samples
            .push(Sample::Histogram(gw(addr), s.latency.snapshot()));
        beat = beat.with(gw(addr), secs(Metrics::get(&s.heartbeat_ms)));
        running = running.with(gw(addr), f64::from(Metrics::get(&s.tasks) > 0));
    }
    f.extend([polls, reads, connects, latency, beat, running]);
    f.extend([
        counter(
            "pqwatch_cycles_skipped_total",
            "Scheduled polls skipped because the previous cycle overran.",
            &m.cycles_skipped,
        ),
        counter(
            "pqwatch_polls_backed_off_total",
            "Scheduled polls skipped while a failing meter is backed off.",
            &m.polls_backed_off,
        ),
        counter(
            "pqwatch_fields_dropped_total",
            "Decoded values dropped (NaN, infinite, the device's not-available marker).",
            &m.fields_dropped,
        ),
        counter(
            "pqwatch_fields_implausible_total",
            "Values rejected as implausible ([plausibility]): not stored, not judged.",
            &m.fields_implausible,
        ),
        counter(
            "pqwatch_gateway_restarts_total",
            "Gateway tasks that ended unexpectedly (a bug) and were restarted.",
            &m.gateway_restarts,
        ),
        counter(
            "pqwatch_counters_backwards_total",
            "Energy counters seen going backwards (stored as read, flagged).",
            &m.counters_backwards,
        ),
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

    // The outbox and InfluxDB.
    let oldest = Metrics::get(&m.outbox_oldest_ms);
    let age = if oldest == 0 {
        0.0
    } else {
        (extra.now_ms.max(0) as u64).saturating_sub(oldest) as f64 / 1000.0
    };
    f.extend([
        gauge(
            "pqwatch_outbox_batches",
            "Batches waiting for InfluxDB (outbox and memory).",
            g(&m.outbox_batches),
        ),
        gauge(
            "pqwatch_outbox_points",
            "Points waiting for InfluxDB.",
            g(&m.outbox_points),
        ),
        gauge(
            "pqwatch_outbox_bytes",
            "Compressed bytes waiting for InfluxDB.",
            g(&m.outbox_bytes),
        ),
        gauge(
            "pqwatch_outbox_oldest_age_seconds",
            "Age of the oldest waiting batch; 0 when none waits.",
            age,
        ),
        gauge(
            "pqwatch_outbox_write_failing",
            "1 while writes to the outbox fail (disk full, I/O errors): batches are held in memory.",
            u8::from(Metrics::get(&m.outbox_unwritable_since_ms) > 0) as f64,
        ),
        counter(
            "pqwatch_outbox_write_errors_total",
            "Writes to the outbox (store, delete, counters) that failed.",
            &m.outbox_write_errors,
        ),
    ]);
    if let Some(max) = extra.max_outbox_bytes {
        f.push(gauge(
            "pqwatch_outbox_max_bytes",
            "The outbox bound (influxdb.max_outbox_bytes); beyond it the oldest batches are dropped.",
            max as f64,
        ));
    }
    f.extend([
        counter(
            "pqwatch_points_written_total",
            "Points InfluxDB acknowledged.",
            &m.points_written,
        ),
        counter(
            "pqwatch_points_retried_total",
            "Points in sends that failed and are retried (each retry counts).",
            &m.points_retried,
        ),
        counter(
            "pqwatch_points_dropped_total",
            "Points lost: the outbox or the memory bound was full, or shutdown ended with no outbox.",
            &m.points_dropped,
        ),
        counter(
            "pqwatch_points_rejected_total",
            "Points in batches InfluxDB rejected as invalid (moved to the dead-letter table).",
            &m.points_rejected,
        ),
        counter(
            "pqwatch_points_discarded_total",
            "Points not stored because no [influxdb] is configured.",
            &m.points_discarded,
        ),
        counter(
            "pqwatch_batches_written_total",
            "Batches InfluxDB acknowledged.",
            &m.batches_written,
        ),
        counter(
            "pqwatch_batches_failed_total",
            "Sends that failed, for any reason.",
            &m.batches_failed,
        ),
        counter(
            "pqwatch_batches_retried_total",
            "Sends that failed and are retried.",
            &m.batches_retried,
        ),
        gauge(
            "pqwatch_influxdb_last_success_timestamp_seconds",
            "When InfluxDB last acknowledged a batch, Unix seconds; 0 when not yet.",
            secs(Metrics::get(&m.influx_last_ok_ms)),
        ),
        gauge(
            "pqwatch_influxdb_last_failure_timestamp_seconds",
            "When a send last failed, Unix seconds; 0 when none did.",
            secs(Metrics::get(&m.influx_last_error_ms)),
        ),
        gauge(
            "pqwatch_influxdb_consecutive_failures",
            "Failed sends in a row (network, 5xx, 401/403/404); 0 once a batch is acknowledged.",
            g(&m.influx_failures),
        ),
    ]);

    // Events, mail, reports.
    if let Some(open) = &extra.open_events {
        let mut fam = Family::new(
            "pqwatch_events_open",
            Gauge,
            "Power-quality events open now, by kind (state database).",
        );
        let mut kinds: BTreeMap<&str, u64> = crate::quality::rules::Kind::ALL
            .iter()
            .map(|k| (k.as_str(), 0))
            .collect();
        for (k, n) in open {
            kinds.insert(k.as_str(), *n);
        }
        for (k, n) in kinds {
            fam = fam.with(vec![("kind", k.to_string())], n as f64);
        }
        f.push(fam);
    }
    f.extend([
        counter(
            "pqwatch_events_opened_total",
            "Power-quality events opened.",
            &m.events_opened,
        ),
        counter(
            "pqwatch_events_closed_total",
            "Power-quality events closed.",
            &m.events_closed,
        ),
        counter(
            "pqwatch_mails_queued_total",
            "Messages stored in the mail queue.",
            &m.mails_queued,
        ),
        counter(
            "pqwatch_mails_sent_total",
            "Messages the SMTP server (or the .eml directory) accepted.",
            &m.mails_sent,
        ),
        counter(
            "pqwatch_mails_failed_total",
            "Delivery attempts that failed (the message stays queued).",
            &m.mails_failed,
        ),
        counter(
            "pqwatch_mails_given_up_total",
            "Messages the server rejected for good.",
            &m.mails_given_up,
        ),
        counter(
            "pqwatch_mails_suppressed_total",
            "Event alerts held back by the per-meter hourly limit.",
            &m.mails_suppressed,
        ),
        counter(
            "pqwatch_mail_changes_dropped_total",
            "Event changes the notifier missed because its channel was full.",
            &m.mail_changes_dropped,
        ),
        gauge(
            "pqwatch_mails_pending",
            "Messages waiting in the mail queue.",
            g(&m.mails_pending),
        ),
        counter(
            "pqwatch_reports_queued_total",
            "Customer reports queued for delivery.",
            &m.reports_queued,
        ),
        counter(
            "pqwatch_reports_failed_total",
            "Customer reports that could not be built or queued (retried).",
            &m.reports_failed,
        ),
        gauge(
            "pqwatch_sink_heartbeat_timestamp_seconds",
            "When the sink task last turned its loop (at least once a second), Unix seconds.",
            secs(Metrics::get(&m.sink_heartbeat_ms)),
        ),
        gauge(
            "pqwatch_watch_heartbeat_timestamp_seconds",
            "When the watch task (windows, rules) last ticked (once a second), Unix seconds.",
            secs(Metrics::get(&m.watch_heartbeat_ms)),
        ),
    ]);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        escape_label_value("a\\b\"c\nd é", &mut s);
        assert_eq!(s, r#"a\\b\"c\nd é"#);
        let f = Family::new("x_total", Type::Counter, "Help with \\ and\nnewline.")
            .with(vec![("gateway", "h\"1:502".into())], 3.0);
        assert_eq!(
            render(&[f]),
            "# HELP x_total Help with \\\\ and\\nnewline.\n# TYPE x_total counter\nx_total{gateway=\"h\\\"1:502\"} 3\n"
        );
    }

    #[test]
    fn values_use_prometheus_float_syntax() {
        let f = |v| {
            let mut s = String::new();
            format_value(v, &mut s);
            s
        };
        assert_eq!(f(3.0), "3");
        assert_eq!(f(0.005), "0.005");
        assert_eq!(f(1_700_000_000.123), "1700000000.123");
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(f(f64::NAN), "NaN");
    }

    #[test]
    fn histograms_have_cumulative_buckets_inf_sum_and_count() {
        let h = crate::metrics::Histogram::default();
        for ms in [2, 30, 30, 7000] {
            h.observe(Duration::from_millis(ms));
        }
        let mut fam = Family::new("lat_seconds", Type::Histogram, "Latency.");
        fam.samples.push(Sample::Histogram(
            vec![("gateway", "g:1".into())],
            h.snapshot(),
        ));
        let text = render(&[fam]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "# TYPE lat_seconds histogram");
        assert_eq!(
            lines[2],
            r#"lat_seconds_bucket{gateway="g:1",le="0.005"} 1"#
        );
        assert!(lines.contains(&r#"lat_seconds_bucket{gateway="g:1",le="0.025"} 1"#));
        assert!(lines.contains(&r#"lat_seconds_bucket{gateway="g:1",le="0.05"} 3"#));
        assert!(lines.contains(&r#"lat_seconds_bucket{gateway="g:1",le="5"} 3"#));
        assert!(lines.contains(&r#"lat_seconds_bucket{gateway="g:1",le="10"} 4"#));
        let n = lines.len();
        assert_eq!(
            lines[n - 3],
            r#"lat_seconds_bucket{gateway="g:1",le="+Inf"} 4"#
        );
        assert_eq!(lines[n - 2], r#"lat_seconds_sum{gateway="g:1"} 7.062"#);
        assert_eq!(lines[n - 1], r#"lat_seconds_count{gateway="g:1"} 4"#);
        // Cumulative: never decreasing.
        let counts: Vec<u64> = lines
            .iter()
            .filter(|l| l.starts_with("lat_seconds_bucket"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    }

    #[test]
    fn every_family_is_named_typed_and_documented() {
        let m = Metrics::default();
        let gs = m.gateway("10.0.0.1:502");
        Metrics::inc(&gs.polls_ok);
        gs.latency.observe(Duration::from_millis(12));
        Metrics::set(&m.outbox_oldest_ms, 1_000);
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
