//! The Prometheus text exposition format, version 0.0.4: [`Family`]
//! values (each subsystem describes its own) and [`render`], which writes
//! them as text. Pure, and a leaf: it knows no subsystem.
//!
//! Names are `pqwatch_*`, snake_case, with the unit in the name
//! (`_seconds`, `_bytes`); counters end in `_total`; timestamps are Unix
//! seconds. The README lists every metric.

use super::histogram::HistogramSnapshot;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The `Content-Type` of [`render`]'s output.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Type {
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

pub(crate) type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Sample {
    Value(Labels, f64),
    /// Written as `_bucket` lines (cumulative, then `le="+Inf"`), `_sum`
    /// and `_count`.
    Histogram(Labels, HistogramSnapshot),
}

/// One metric: its `# HELP` and `# TYPE` lines and its samples.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Type,
    pub samples: Vec<Sample>,
}

impl Family {
    pub(crate) fn new(name: &'static str, kind: Type, help: &'static str) -> Family {
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
    pub(crate) fn with(mut self, labels: Labels, value: f64) -> Family {
        self.samples.push(Sample::Value(labels, value));
        self
    }

    /// A family with one unlabelled sample.
    pub(crate) fn one(name: &'static str, kind: Type, help: &'static str, value: f64) -> Family {
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
pub(crate) fn escape_label_value(v: &str, out: &mut String) {
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
pub(crate) fn format_value(v: f64, out: &mut String) {
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
pub(crate) fn render(families: &[Family]) -> String {
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

/// A counter's or gauge's value as a sample.
pub(crate) fn value(c: &AtomicU64) -> f64 {
    c.load(Relaxed) as f64
}

/// Unix ms as Unix seconds.
pub(crate) fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// A family with one unlabelled counter sample.
pub(crate) fn counter(name: &'static str, help: &'static str, c: &AtomicU64) -> Family {
    Family::one(name, Type::Counter, help, value(c))
}

/// A family with one unlabelled gauge sample.
pub(crate) fn gauge(name: &'static str, help: &'static str, v: f64) -> Family {
    Family::one(name, Type::Gauge, help, v)
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
        let h = crate::metrics::histogram::Histogram::default();
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
}
