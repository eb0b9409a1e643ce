//! InfluxDB line protocol encoding. Pure.
//!
//! One [`Reading`] becomes one line of measurement `meter`: its tags (the
//! meter's user tags plus `meter` and `customer`, sorted by key as InfluxDB
//! recommends) and every value as a float field, timestamped in
//! milliseconds. Escaping follows the line protocol reference: commas,
//! spaces and equals signs in tag keys/values and field keys are
//! backslash-escaped; the measurement escapes commas and spaces. Newlines
//! cannot be represented in a tag at all, so config validation rejects them.

use crate::reading::Reading;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The measurement every meter reading is written to.
pub const MEASUREMENT: &str = "meter";

/// Escape a tag key, tag value or field key.
pub fn escape_key(s: &str, out: &mut String) {
    for c in s.chars() {
        if matches!(c, ',' | '=' | ' ' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Escape a measurement name.
pub fn escape_measurement(s: &str, out: &mut String) {
    for c in s.chars() {
        if matches!(c, ',' | ' ' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// `measurement,k=v,k=v` for a tag set, built once per meter.
pub fn series_key(measurement: &str, tags: &BTreeMap<String, String>) -> String {
    let mut s = String::with_capacity(64);
    escape_measurement(measurement, &mut s);
    for (k, v) in tags {
        s.push(',');
        escape_key(k, &mut s);
        s.push('=');
        escape_key(v, &mut s);
    }
    s
}

/// Append one reading as a line. Returns the number of points (fields)
/// written; a reading with no values writes nothing (an empty field set is
/// invalid line protocol).
pub fn encode(reading: &Reading, out: &mut String) -> usize {
    if reading.values.is_empty() {
        return 0;
    }
    out.push_str(&reading.meter.series_key);
    let mut sep = ' ';
    for (name, v) in &reading.values {
        out.push(sep);
        sep = ',';
        escape_key(name, out);
        out.push('=');
        write_float(*v, out);
    }
    let _ = writeln!(out, " {}", reading.ts_ms);
    reading.values.len()
}

/// Floats as the shortest decimal that round-trips. A value that happens to
/// be integral is written without a decimal point, which line protocol still
/// reads as a float (only an `i` suffix makes an integer).
fn write_float(v: f64, out: &mut String) {
    debug_assert!(
        v.is_finite(),
        "non-finite values are dropped before encoding"
    );
    let _ = write!(out, "{v}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{MeterMeta, Reading};
    use std::sync::Arc;

    fn meta(tags: &[(&str, &str)]) -> Arc<MeterMeta> {
        let tags: BTreeMap<String, String> = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Arc::new(MeterMeta::new("M1", "C1", &tags))
    }

    #[test]
    fn one_line_per_reading() {
        let r = Reading {
            meter: meta(&[("meter", "M1"), ("customer", "C1"), ("feeder", "F 12")]),
            ts_ms: 1_700_000_000_000,
            values: vec![("voltage_l1_n".into(), 230.5), ("frequency".into(), 50.0)],
        };
        let mut s = String::new();
        assert_eq!(encode(&r, &mut s), 2);
        assert_eq!(
            s,
            "meter,customer=C1,feeder=F\\ 12,meter=M1 voltage_l1_n=230.5,frequency=50 1700000000000\n"
        );
    }

    #[test]
    fn escaping_of_hostile_tag_values() {
        let key = series_key(
            "meter",
            &BTreeMap::from([(
                "customer".to_string(),
                "Acme, Inc. = \"big\" 钢铁\\".to_string(),
            )]),
        );
        assert_eq!(
            key,
            "meter,customer=Acme\\,\\ Inc.\\ \\=\\ \"big\"\\ 钢铁\\\\"
        );
        let mut m = String::new();
        escape_measurement("a b,c", &mut m);
        assert_eq!(m, "a\\ b\\,c");
    }

    #[test]
    fn floats_round_trip() {
        for v in [0.1, 1e-7, 123456789.123, 1e21, -0.0, 5773.502691896258] {
            let mut s = String::new();
            write_float(v, &mut s);
            assert_eq!(s.parse::<f64>().unwrap(), v, "{s}");
            assert!(
                !s.contains('e') && !s.contains("inf") && !s.contains("NaN"),
                "{s}"
            );
        }
    }

    #[test]
    fn empty_readings_write_nothing() {
        let r = Reading {
            meter: meta(&[]),
            ts_ms: 1,
            values: vec![],
        };
        let mut s = String::new();
        assert_eq!(encode(&r, &mut s), 0);
        assert!(s.is_empty());
    }
}
