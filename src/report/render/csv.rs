//! The CSV of daily figures: stable English columns ([`CSV_HEADER`]),
//! UTF-8 with a BOM, CRLF line ends, RFC 4180 quoting; and safe file names.

use super::fixed;
use crate::calendar::day_key;
use crate::mail::text::clean;
use crate::report::ledger::Peak;
use crate::report::model::Report;

/// The CSV's columns; stable, English, whatever the report's language.
pub const CSV_HEADER: [&str; 16] = [
    "date",
    "meter",
    "phase",
    "expected_min",
    "monitored_min",
    "above_min",
    "below_min",
    "qualification_rate_pct",
    "voltage_min",
    "voltage_mean",
    "voltage_max",
    "thd_cp95_pct",
    "thd_max_pct",
    "active_power_peak_kw",
    "demand_peak_kw",
    "outage_min",
];

/// `pqwatch-C001-2026-10.csv`: only [A-Za-z0-9_-] from the id and label.
pub(super) fn csv_name(r: &Report) -> String {
    format!(
        "pqwatch-{}-{}.csv",
        safe_part(&r.customer_id, "customer"),
        safe_part(&r.period.label(), "period")
    )
}

/// Characters outside [A-Za-z0-9_-] become "_", runs collapse.
pub(super) fn safe_part(s: &str, fallback: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            c
        } else {
            '_'
        };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    let out = out.trim_matches('_').to_string();
    if out.is_empty() {
        fallback.to_string()
    } else {
        out
    }
}

/// A file name as given, made safe ([A-Za-z0-9._-]).
pub(super) fn safe_name(s: &str, fallback: &str) -> String {
    let parts: Vec<String> = s
        .split('.')
        .map(|p| safe_part(p, ""))
        .filter(|p| !p.is_empty())
        .collect();
    if parts.len() < 2 {
        fallback.to_string()
    } else {
        parts.join(".")
    }
}

/// RFC 4180: quote when needed, doubling quotes.
pub(super) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A configured string in a CSV cell: cleaned, and kept from being read as
/// a formula by a spreadsheet.
pub(super) fn csv_text(s: &str) -> String {
    let s = clean(s);
    if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s
    }
}

pub(super) fn csv_num(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => fixed(v, decimals),
        _ => String::new(),
    }
}

pub(super) fn csv(r: &Report) -> String {
    let mut out = String::from("\u{feff}");
    let mut row = |fields: &[String]| {
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    };
    row(&CSV_HEADER.map(String::from));
    for m in &r.meters {
        let id = csv_text(&m.id);
        for d in &m.daily {
            let peak = |p: &Option<Peak>| csv_num(p.as_ref().map(|p| p.value), 2);
            for p in &d.phases {
                row(&[
                    day_key(d.date),
                    id.clone(),
                    csv_text(&p.phase),
                    d.expected.to_string(),
                    p.monitored.to_string(),
                    p.above.to_string(),
                    p.below.to_string(),
                    csv_num(p.rate.map(crate::report::model::truncate2), 2),
                    csv_num(p.min, 2),
                    csv_num(p.mean, 2),
                    csv_num(p.max, 2),
                    csv_num(p.thd_cp95, 2),
                    csv_num(p.thd_max, 2),
                    peak(&d.active_power_peak),
                    peak(&d.demand_peak),
                    // Empty, like the other figures, on a day without data.
                    if d.outage == 0 && p.rate.is_none() {
                        String::new()
                    } else {
                        d.outage.to_string()
                    },
                ]);
            }
        }
    }
    out
}
