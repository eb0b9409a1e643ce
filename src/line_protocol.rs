//! InfluxDB line protocol: escaping, tag sets and field sets. Pure; a leaf.
//!
//! The spelling of a line, apart from what it carries: [`sink::line`](crate::sink::line)
//! maps readings and points onto it, and
//! [`reading`](crate::reading) builds each meter's series key with it once.
//! Escaping follows the line protocol reference: commas, spaces and equals
//! signs in tag keys/values and field keys are backslash-escaped; the
//! measurement escapes commas and spaces.
//!
//! Backslashes differ by server generation: InfluxDB 2.x (and
//! VictoriaMetrics) read `\\` as one backslash, InfluxDB 1.x keeps every
//! backslash literally. So the v2 encoding escapes them and the v1 encoding
//! does not ([`Dialect`]); a tag value ending in a backslash cannot be
//! written to 1.x at all, and config validation rejects it there. Newlines
//! cannot be represented in a tag either, and are rejected for both.
//!
//! Whatever it is given, it writes well-formed text: a control character
//! (a newline would end the line and start a forged one) and a 1.x tag's
//! final backslash become U+FFFD, a tag with an empty key or value is left
//! out, and so is a field with an empty name or a NaN/±inf value (the
//! number of fields actually written is returned). Field keys are escaped
//! the v2 way for both dialects: InfluxDB 1.x then stores a backslash in a
//! field key doubled, which no profile field name contains.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Which server's reading of backslashes to write for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// InfluxDB 2.x/3.x, VictoriaMetrics: `\\` is one backslash.
    V2,
    /// InfluxDB 1.x: a backslash is literal unless it escapes `,`, `=` or space.
    V1,
}

/// Escape a tag key, tag value or field key.
pub(crate) fn escape_key(s: &str, out: &mut String) {
    escape_key_for(s, Dialect::V2, out);
}

pub(crate) fn escape_key_for(s: &str, dialect: Dialect, out: &mut String) {
    // Field names (every key of every point) almost never need escaping:
    // one pass over the bytes instead of a char-by-char copy (escaping was
    // 2 % of the daemon's CPU, BENCHMARKS.md).
    if !s
        .bytes()
        .any(|b| matches!(b, b',' | b'=' | b' ' | b'\\') || b.is_ascii_control() || b >= 0x80)
    {
        out.push_str(s);
        return;
    }
    let last = s.len().saturating_sub(1);
    for (i, c) in s.char_indices() {
        let c = if c.is_control()
            // 1.x reads a final backslash as escaping the separator after it.
            || (c == '\\' && dialect == Dialect::V1 && i == last)
        {
            REPLACEMENT
        } else {
            c
        };
        if matches!(c, ',' | '=' | ' ') || (c == '\\' && dialect == Dialect::V2) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// What a character line protocol cannot carry becomes (see the module docs).
const REPLACEMENT: char = '\u{FFFD}';

/// Escape a measurement name.
pub(crate) fn escape_measurement(s: &str, out: &mut String) {
    for c in s.chars() {
        let c = if c.is_control() { REPLACEMENT } else { c };
        if matches!(c, ',' | ' ' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Tags with an empty key or value are invalid line protocol: left out.
pub(crate) fn writable_tag(k: &str, v: &str) -> bool {
    !k.is_empty() && !v.is_empty()
}

/// Fields with an empty name or a value line protocol has no spelling for
/// (NaN, ±inf): left out.
pub(crate) fn writable_field(k: &str, v: f64) -> bool {
    !k.is_empty() && v.is_finite()
}

/// `measurement,k=v,k=v` for a tag set, built once per meter.
pub(crate) fn series_key(
    measurement: &str,
    tags: &BTreeMap<String, String>,
    dialect: Dialect,
) -> String {
    let mut s = String::with_capacity(64);
    escape_measurement(measurement, &mut s);
    for (k, v) in tags.iter().filter(|(k, v)| writable_tag(k, v)) {
        s.push(',');
        escape_key_for(k, dialect, &mut s);
        s.push('=');
        escape_key_for(v, dialect, &mut s);
    }
    s
}

/// ` field=v,field=v ts\n`: the field set and timestamp of a line.
/// Returns the number of fields written.
pub(crate) fn write_fields<'a>(
    fields: impl Iterator<Item = (&'a str, f64)>,
    ts_ms: i64,
    out: &mut String,
) -> usize {
    let mut n = 0;
    for (name, v) in fields.filter(|(k, v)| writable_field(k, *v)) {
        out.push(if n == 0 { ' ' } else { ',' });
        escape_key(name, out);
        out.push('=');
        write_float(v, out);
        n += 1;
    }
    let _ = writeln!(out, " {ts_ms}");
    n
}

/// Floats as the shortest decimal that round-trips. A value that happens to
/// be integral is written without a decimal point, which line protocol still
/// reads as a float (only an `i` suffix makes an integer). Never in
/// exponent notation.
///
/// `ryu` finds the digits 2–3× faster than `Display` (float formatting was
/// 3 % of the daemon's CPU, BENCHMARKS.md); it writes `50.0` for 50 and an
/// exponent below 1e-5 and from 1e16, where `Display` is used instead, so
/// the text is the same as `Display`'s for every value.
pub(crate) fn write_float(v: f64, out: &mut String) {
    let mut buf = ryu::Buffer::new();
    let s = buf.format_finite(v);
    if s.contains('e') {
        let _ = write!(out, "{v}");
    } else {
        out.push_str(s.strip_suffix(".0").unwrap_or(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_of_hostile_tag_values() {
        let tags = BTreeMap::from([(
            "customer".to_string(),
            "Acme, Inc. = \"big\" 钢铁\\".to_string(),
        )]);
        assert_eq!(
            series_key("meter", &tags, Dialect::V2),
            "meter,customer=Acme\\,\\ Inc.\\ \\=\\ \"big\"\\ 钢铁\\\\"
        );
        // InfluxDB 1.x keeps backslashes literally: not escaped for it.
        let tags = BTreeMap::from([("location".to_string(), "Hall 3\\Bay 2".to_string())]);
        assert_eq!(
            series_key("meter", &tags, Dialect::V1),
            "meter,location=Hall\\ 3\\Bay\\ 2"
        );
        assert_eq!(
            series_key("meter", &tags, Dialect::V2),
            "meter,location=Hall\\ 3\\\\Bay\\ 2"
        );
        let mut m = String::new();
        escape_measurement("a b,c", &mut m);
        assert_eq!(m, "a\\ b\\,c");
    }

    #[test]
    fn floats_round_trip() {
        for v in [
            0.1,
            1e-7,
            123456789.123,
            1e21,
            -0.0,
            5773.502691896258,
            50.0,
            1e15,
            1e16,
            0.00001,
            0.000012345,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
        ] {
            let mut s = String::new();
            write_float(v, &mut s);
            assert_eq!(s, format!("{v}"), "the same text as Display");
            assert_eq!(s.parse::<f64>().unwrap(), v, "{s}");
            assert!(
                !s.contains('e') && !s.contains("inf") && !s.contains("NaN"),
                "{s}"
            );
        }
    }
}
