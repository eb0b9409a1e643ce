//! Property tests of the line-protocol encoder (`sink::line`): readings and
//! points with arbitrary tag keys and values, field names and values
//! (spaces, commas, equals signs, quotes, backslashes, newlines and other
//! control characters, non-ASCII, empty strings, NaN and ±inf) are encoded
//! for both dialects, and every output is read back by the parser below,
//! written from the line-protocol reference and not from pqwatch's code:
//! the output must be exactly one well-formed line per record that has a
//! field, and names and values must come back as written, or changed
//! exactly as `sink::line`'s docs say for what line protocol cannot carry.
//!
//! `PROPTEST_CASES=20000 cargo test --test prop_line` for a long run
//! (docs/fuzzing.md).

mod common;
mod prop_support;

use common::TestConfig;
use pqwatch::reading::{MeterMeta, Point, Reading};
use pqwatch::sink::line::{Dialect, encode, encode_point};
use prop_support::cases;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

// ---------------------------------------------------------------------------
// An independent line-protocol parser
// ---------------------------------------------------------------------------

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, f64)>,
    ts: i64,
}

#[derive(Clone, Copy, PartialEq)]
enum Part {
    Measurement,
    TagKey,
    TagValue,
    FieldKey,
}

/// Reads `text` as InfluxDB line protocol, the way the given server
/// generation does:
///
/// * Lines end at `\n`, which cannot be escaped; the text must end with
///   one. A line starting with `#` is a comment, which the encoder must
///   never produce; no other control character may appear (InfluxDB 1.x
///   skips tabs and NULs around separators, so they would not survive).
/// * `measurement[,tag=value…] field=value[,field=value…] timestamp`;
///   measurement, tag keys, tag values and field keys are non-empty; tag
///   keys are unique; field values here are floats (`-?digits[.digits]`,
///   optional exponent) and the timestamp an integer.
/// * v2 (InfluxDB 2.x line-protocol reference, VictoriaMetrics): `\,`,
///   `\ ` and `\\` escape in the measurement, `\,`, `\=`, `\ ` and `\\` in
///   tag keys, tag values and field keys; any other backslash is literal.
/// * v1 (InfluxDB 1.x): in the measurement and tags a character preceded
///   by a backslash is never a separator, and `\,`, `\=`, `\ ` (`\,`, `\ `
///   in the measurement) unescape; every other backslash is literal, so
///   `\\` stays two. Field keys are scanned a backslash pair at a time and
///   `\,`, `\=`, `\ `, `\"` unescape: a backslash in a field key written
///   as `\\` comes back doubled.
fn parse(text: &str, d: Dialect) -> Result<Vec<Line>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = text.strip_suffix('\n') else {
        return Err("output does not end with a newline".into());
    };
    body.split('\n').map(|l| parse_line(l, d)).collect()
}

fn parse_line(line: &str, d: Dialect) -> Result<Line, String> {
    let err = |what: &str| Err(format!("{what} in {line:?}"));
    if line.starts_with('#') {
        return err("a comment");
    }
    if line.chars().any(char::is_control) {
        return err("a control character");
    }
    let c: Vec<char> = line.chars().collect();
    let mut i = 0;
    let (measurement, stop) = scan(&c, &mut i, Part::Measurement, d)?;
    if measurement.is_empty() {
        return err("an empty measurement");
    }
    let mut tags = Vec::new();
    let mut stop = stop;
    while stop == Some(',') {
        let (k, s) = scan(&c, &mut i, Part::TagKey, d)?;
        if s != Some('=') || k.is_empty() {
            return err("a tag without key or '='");
        }
        let (v, s) = scan(&c, &mut i, Part::TagValue, d)?;
        if v.is_empty() {
            return err("an empty tag value");
        }
        if s.is_none() {
            return err("a line without fields");
        }
        if tags.iter().any(|(x, _): &(String, String)| *x == k) {
            return err(&format!("duplicate tag key {k:?}"));
        }
        tags.push((k, v));
        stop = s;
    }
    if stop != Some(' ') {
        return err("no space before the fields");
    }
    let mut fields = Vec::new();
    loop {
        let (k, s) = scan(&c, &mut i, Part::FieldKey, d)?;
        if s != Some('=') || k.is_empty() {
            return err("a field without key or '='");
        }
        let start = i;
        while i < c.len() && c[i] != ',' && c[i] != ' ' {
            i += 1;
        }
        let raw: String = c[start..i].iter().collect();
        let v = float(&raw).ok_or_else(|| format!("{raw:?} is not a float in {line:?}"))?;
        fields.push((k, v));
        if i >= c.len() {
            return err("no timestamp");
        }
        i += 1;
        if c[i - 1] == ' ' {
            break;
        }
    }
    let raw: String = c[i..].iter().collect();
    let digits = raw.strip_prefix('-').unwrap_or(&raw);
    if digits.is_empty() || !digits.chars().all(|x| x.is_ascii_digit()) {
        return err("a bad timestamp");
    }
    let ts = raw.parse::<i64>().map_err(|e| format!("{e} in {line:?}"))?;
    Ok(Line {
        measurement,
        tags,
        fields,
        ts,
    })
}

/// `-?(digits[.digits*] | .digits)([eE][+-]?digits)?`
fn float(s: &str) -> Option<f64> {
    let t = s.strip_prefix('-').unwrap_or(s);
    let (mant, exp) = match t.find(['e', 'E']) {
        Some(k) => (&t[..k], Some(&t[k + 1..])),
        None => (t, None),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let digits = |x: &str| x.chars().all(|c| c.is_ascii_digit());
    let ok = (!int.is_empty() || !frac.is_empty())
        && digits(int)
        && digits(frac)
        && exp.is_none_or(|e| {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && digits(e)
        });
    if ok { s.parse().ok() } else { None }
}

/// Scans one part from `i`, returning it unescaped and the separator that
/// ended it (None at the end of the line), with `i` after the separator.
fn scan(
    c: &[char],
    i: &mut usize,
    part: Part,
    d: Dialect,
) -> Result<(String, Option<char>), String> {
    let stops: &[char] = match part {
        Part::Measurement | Part::TagValue => &[',', ' '],
        Part::TagKey | Part::FieldKey => &['=', ',', ' '],
    };
    // Which characters a backslash escapes in this part.
    let escapes: &[char] = match (d, part) {
        (Dialect::V2, Part::Measurement) => &[',', ' ', '\\'],
        (Dialect::V2, _) => &[',', '=', ' ', '\\'],
        (Dialect::V1, Part::Measurement) => &[',', ' '],
        (Dialect::V1, Part::FieldKey) => &[',', '=', ' ', '"'],
        (Dialect::V1, _) => &[',', '=', ' '],
    };
    // 1.x scans the measurement and tags by looking one character back (a
    // character after a backslash is never a separator), and field keys a
    // backslash pair at a time; v2 reads escape pairs.
    let lookback = d == Dialect::V1 && part != Part::FieldKey;
    let start = *i;
    let mut raw: Vec<char> = Vec::new();
    let mut end = None;
    while *i < c.len() {
        let ch = c[*i];
        let escaped = if lookback {
            *i > start && c[*i - 1] == '\\'
        } else {
            false
        };
        if !lookback && ch == '\\' && *i + 1 < c.len() {
            let next = c[*i + 1];
            if d == Dialect::V1 || escapes.contains(&next) {
                raw.push(ch);
                raw.push(next);
                *i += 2;
                continue;
            }
        }
        if !escaped && stops.contains(&ch) {
            end = Some(ch);
            *i += 1;
            break;
        }
        if !escaped && part == Part::TagValue && ch == '=' {
            return Err(format!("an unescaped '=' in a tag value at {start}"));
        }
        raw.push(ch);
        *i += 1;
    }
    if matches!(part, Part::TagKey | Part::FieldKey) && end.is_some_and(|e| e != '=') {
        return Err(format!("a key ended by {end:?} at {start}"));
    }
    // Unescape, left to right.
    let mut out = String::new();
    let mut k = 0;
    while k < raw.len() {
        if raw[k] == '\\' && k + 1 < raw.len() && escapes.contains(&raw[k + 1]) {
            out.push(raw[k + 1]);
            k += 2;
        } else {
            out.push(raw[k]);
            k += 1;
        }
    }
    Ok((out, end))
}

// ---------------------------------------------------------------------------
// What the encoder promises (sink::line's module docs)
// ---------------------------------------------------------------------------

/// A tag key or value as it must come back.
fn tag_back(s: &str, d: Dialect) -> String {
    let n = s.chars().count();
    s.chars()
        .enumerate()
        .map(|(k, c)| {
            if c.is_control() || (d == Dialect::V1 && c == '\\' && k + 1 == n) {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// A field key as it must come back. Field keys are escaped the v2 way for
/// both dialects, and 1.x unescapes only `\,`, `\=`, `\ ` and `\"`: a
/// backslash comes back doubled, unless a `"` follows it.
fn field_back(s: &str, d: Dialect) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    match d {
        Dialect::V2 => s,
        Dialect::V1 => {
            let mut out = String::new();
            let mut it = s.chars().peekable();
            while let Some(c) = it.next() {
                out.push(c);
                if c == '\\' && it.peek() != Some(&'"') {
                    out.push('\\');
                }
            }
            out
        }
    }
}

fn tags_back<'a>(
    tags: impl Iterator<Item = (&'a str, &'a str)>,
    d: Dialect,
) -> Vec<(String, String)> {
    tags.filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .map(|(k, v)| (tag_back(k, d), tag_back(v, d)))
        .collect()
}

fn fields_back<'a>(fields: impl Iterator<Item = (&'a str, f64)>, d: Dialect) -> Vec<(String, f64)> {
    fields
        .filter(|(k, v)| !k.is_empty() && v.is_finite())
        .map(|(k, v)| (field_back(k, d), v))
        .collect()
}

fn same_fields(got: &[(String, f64)], want: &[(String, f64)]) -> bool {
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|((a, x), (b, y))| a == b && x.to_bits() == y.to_bits())
}

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

const NASTY: &[char] = &[
    ' ', ',', '=', '"', '\'', '\\', '\n', '\r', '\t', '\0', '#', 'a', 'Z', '0', '_', '-', '.',
    '钢', '铁', 'é', '\u{202E}', '\u{FFFD}', '\u{2028}', '\u{85}', '😀',
];

fn nasty() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(String::new()),
        6 => prop::collection::vec(prop::sample::select(NASTY), 1..10)
            .prop_map(|v| v.into_iter().collect::<String>()),
        2 => prop::sample::select(vec![
            "a b", "a,b", "a=b", "\"q\"", "trail\\", "\\", "\\\\", "a\\,b", "a\\ b", "a\\=b",
            "钢铁厂 一号", "line\nbreak", "cr\r\nlf", "\u{202E}evil", "#hash", " lead", "trail ",
            "x\\\\", "\\ ", "=", ",", " ",
        ])
        .prop_map(String::from),
        2 => any::<String>(),
    ]
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => any::<f64>(),
        1 => prop::sample::select(vec![
            0.0, -0.0, 1e21, 1e-7, f64::MAX, f64::MIN, f64::MIN_POSITIVE, 5e-324,
            f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 230.5, -1.0,
        ]),
    ]
}

fn dialect() -> impl Strategy<Value = Dialect> {
    prop_oneof![Just(Dialect::V2), Just(Dialect::V1)]
}

/// Tags whose keys stay distinct once written (names that differ only in
/// characters the encoder replaces would collide; config validation keeps
/// those characters out of tag keys).
fn distinct_keys(tags: BTreeMap<String, String>, d: Dialect) -> BTreeMap<String, String> {
    let mut seen = BTreeSet::new();
    tags.into_iter()
        .filter(|(k, _)| seen.insert(tag_back(k, d)))
        .collect()
}

/// The extra tags a point carries; keys are fixed identifiers in the code
/// (`&'static str`), here also hostile ones.
const POINT_TAG_KEYS: &[&str] = &["kind", "phase", "order", "unit", "k ,=\"\\x", "标签", ""];
/// Measurements are fixed identifiers too (never empty, never starting
/// with '#', no backslash).
const MEASUREMENTS: &[&str] = &[
    "meter",
    "pq_event",
    "pq_1m",
    "pq_suspension",
    "a b,c=d",
    "测量",
];

proptest! {
    #![proptest_config(cases(1000, "proptest-regressions/prop_line.txt"))]

    /// A reading: one line, readable by the reference parser, every name
    /// and value back as written (or as documented).
    #[test]
    fn readings_encode_to_one_well_formed_line(
        d in dialect(),
        tags in prop::collection::btree_map(nasty(), nasty(), 0..6),
        values in prop::collection::vec((nasty(), value()), 0..6),
        ts in any::<i64>(),
    ) {
        let tags = distinct_keys(tags, d);
        let meta = Arc::new(MeterMeta::new("M", "C", &tags));
        let r = Reading {
            meter: meta,
            ts_ms: ts,
            values: values.iter().map(|(k, v)| (Arc::from(k.as_str()), *v)).collect(),
        };
        let mut out = String::new();
        let n = encode(&r, d, &mut out);
        let lines = parse(&out, d).map_err(TestCaseError::fail)?;
        let want_fields = fields_back(values.iter().map(|(k, v)| (k.as_str(), *v)), d);
        prop_assert_eq!(n, want_fields.len(), "returned count");
        if want_fields.is_empty() {
            prop_assert!(out.is_empty(), "a line without fields: {:?}", out);
            return Ok(());
        }
        prop_assert_eq!(lines.len(), 1, "{:?}", out);
        let l = &lines[0];
        prop_assert_eq!(&l.measurement, "meter");
        prop_assert_eq!(&l.tags, &tags_back(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())), d));
        prop_assert!(same_fields(&l.fields, &want_fields), "{:?} != {:?}", l.fields, want_fields);
        prop_assert_eq!(l.ts, ts);
    }

    /// A point of another measurement: the meter's tags, then its own.
    #[test]
    fn points_encode_to_one_well_formed_line(
        d in dialect(),
        measurement in prop::sample::select(MEASUREMENTS),
        meter_tags in prop::collection::btree_map(nasty(), nasty(), 0..5),
        point_tags in prop::collection::vec((prop::sample::select(POINT_TAG_KEYS), nasty()), 0..4),
        fields in prop::collection::vec((nasty(), value()), 0..5),
        ts in any::<i64>(),
    ) {
        // Config validation reserves the point tags' keys (a second tag of
        // the same key is a "duplicate tags" error for the whole batch).
        let mut point_tags: Vec<(&'static str, String)> = point_tags;
        let mut seen = BTreeSet::new();
        point_tags.retain(|(k, _)| seen.insert(tag_back(k, d)));
        let meter_tags: BTreeMap<String, String> = distinct_keys(meter_tags, d)
            .into_iter()
            .filter(|(k, _)| !seen.contains(&tag_back(k, d)))
            .collect();
        let p = Point {
            measurement,
            meter: Arc::new(MeterMeta::new("M", "C", &meter_tags)),
            tags: point_tags.clone(),
            ts_ms: ts,
            fields: fields.clone(),
        };
        let mut out = String::new();
        let n = encode_point(&p, d, &mut out);
        let lines = parse(&out, d).map_err(TestCaseError::fail)?;
        let want_fields = fields_back(fields.iter().map(|(k, v)| (k.as_str(), *v)), d);
        prop_assert_eq!(n, want_fields.len(), "returned count");
        if want_fields.is_empty() {
            prop_assert!(out.is_empty(), "a line without fields: {:?}", out);
            return Ok(());
        }
        prop_assert_eq!(lines.len(), 1, "{:?}", out);
        let l = &lines[0];
        prop_assert_eq!(&l.measurement, measurement);
        let mut want_tags =
            tags_back(meter_tags.iter().map(|(k, v)| (k.as_str(), v.as_str())), d);
        want_tags.extend(tags_back(point_tags.iter().map(|(k, v)| (*k, v.as_str())), d));
        prop_assert_eq!(&l.tags, &want_tags);
        prop_assert!(same_fields(&l.fields, &want_fields), "{:?} != {:?}", l.fields, want_fields);
        prop_assert_eq!(l.ts, ts);
    }

    /// Many records in one batch stay as many lines: nothing a name holds
    /// can merge two lines or split one.
    #[test]
    fn a_batch_is_one_line_per_record(
        d in dialect(),
        records in prop::collection::vec(
            (prop::collection::btree_map(nasty(), nasty(), 0..3), nasty(), value()),
            1..8,
        ),
    ) {
        let mut out = String::new();
        let mut written = 0;
        for (k, (tags, field, v)) in records.iter().enumerate() {
            let tags = distinct_keys(tags.clone(), d);
            let r = Reading {
                meter: Arc::new(MeterMeta::new("M", "C", &tags)),
                ts_ms: k as i64,
                values: vec![(Arc::from(field.as_str()), *v), (Arc::from("ok"), 1.0)].into(),
            };
            if encode(&r, d, &mut out) > 0 {
                written += 1;
            }
        }
        let lines = parse(&out, d).map_err(TestCaseError::fail)?;
        prop_assert_eq!(lines.len(), written);
        for (k, l) in lines.iter().enumerate() {
            prop_assert_eq!(l.ts, k as i64);
        }
    }
}

// ---------------------------------------------------------------------------
// The inputs the properties found, one test each
// ---------------------------------------------------------------------------

fn one(tags: &[(&str, &str)], values: &[(&str, f64)], d: Dialect) -> (usize, String) {
    let tags: BTreeMap<String, String> = tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let r = Reading {
        meter: Arc::new(MeterMeta::new("M", "C", &tags)),
        ts_ms: 1_000,
        values: values.iter().map(|(k, v)| (Arc::from(*k), *v)).collect(),
    };
    let mut out = String::new();
    let n = encode(&r, d, &mut out);
    (n, out)
}

/// A newline in a tag value ended the line and began a forged one
/// (`x 1\nmeter,meter=M2 voltage=999 1` wrote a second point to another
/// meter's series).
#[test]
fn a_newline_in_a_tag_cannot_forge_a_second_line() {
    for d in [Dialect::V2, Dialect::V1] {
        let (n, out) = one(
            &[("meter", "M1\nmeter,meter=M2 voltage_l1_n=999 1")],
            &[("voltage_l1_n", 230.0)],
            d,
        );
        assert_eq!(n, 1);
        let lines = parse(&out, d).unwrap();
        assert_eq!(lines.len(), 1, "{out:?}");
        assert_eq!(
            lines[0].tags[0].1,
            "M1\u{FFFD}meter,meter=M2 voltage_l1_n=999 1"
        );
    }
}

/// A NaN or ±inf value: a debug build panicked (debug_assert), a release
/// build wrote `NaN`/`inf`, which InfluxDB rejects with 400 and so
/// dead-letters the whole batch. Such a field is now left out.
#[test]
fn a_non_finite_value_is_left_out_not_written() {
    let (n, out) = one(
        &[],
        &[("a", f64::NAN), ("b", 1.5), ("c", f64::INFINITY)],
        Dialect::V2,
    );
    assert_eq!((n, out.as_str()), (1, "meter b=1.5 1000\n"));
    let (n, out) = one(&[], &[("a", f64::NEG_INFINITY)], Dialect::V2);
    assert_eq!((n, out.as_str()), (0, ""), "no field left: no line");
}

/// An empty tag value (`k=`) or key is invalid line protocol: left out.
#[test]
fn an_empty_tag_key_or_value_is_left_out() {
    let (_, out) = one(
        &[("k", ""), ("", "v"), ("x", "y")],
        &[("f", 1.0)],
        Dialect::V1,
    );
    assert_eq!(out, "meter,x=y f=1 1000\n");
    let (n, out) = one(&[], &[("", 1.0), ("f", 2.0)], Dialect::V2);
    assert_eq!((n, out.as_str()), (1, "meter f=2 1000\n"));
}

/// For InfluxDB 1.x a tag value ending in a backslash escapes the separator
/// after it and breaks the line (config validation refuses such values).
#[test]
fn a_final_backslash_in_a_1x_tag_cannot_escape_the_separator() {
    let (_, out) = one(&[("a", "Hall\\"), ("b", "x")], &[("f", 1.0)], Dialect::V1);
    assert_eq!(out, "meter,a=Hall\u{FFFD},b=x f=1 1000\n");
    // v2 can carry it: `\\` is one backslash there.
    let (_, out) = one(&[("a", "Hall\\"), ("b", "x")], &[("f", 1.0)], Dialect::V2);
    assert_eq!(out, "meter,a=Hall\\\\,b=x f=1 1000\n");
}

/// Config validation reserves the tag keys pqwatch puts on its own points:
/// a meter tag `phase = "A"` made every pq_event line carry `phase` twice,
/// which InfluxDB 1.x answers with 400 "duplicate tags", dead-lettering the
/// batch with every reading in it.
#[test]
fn tag_keys_of_pq_points_are_reserved() {
    for key in ["kind", "phase", "order", "unit"] {
        let text = TestConfig::new()
            .push(&format!(
                r#"
[[customers]]
id = "C1"
[[meters]]
id = "M1"
customer = "C1"
address = "127.0.0.1:502"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400
tags = {{ {key} = "A" }}
"#
            ))
            .to_string();
        let e = pqwatch::config::from_str(&text, std::path::Path::new("/nonexistent"))
            .expect_err("a reserved tag key");
        assert!(
            e.problems
                .iter()
                .any(|p| p.starts_with(&format!("meters[0].tags.{key}: is reserved"))),
            "{e}"
        );
    }
}

/// The reference parser itself: what the servers answered in
/// tests/escaping_roundtrip.rs, and lines it must refuse.
#[test]
fn the_reference_parser() {
    let l = &parse(
        "m,t=a\\\\\\,b,u=x\\\\y f\\ k=1,g\\\\h=2 1000\n",
        Dialect::V2,
    )
    .unwrap()[0];
    assert_eq!(
        l.tags,
        vec![("t".into(), "a\\,b".into()), ("u".into(), "x\\y".into())]
    );
    assert_eq!(l.fields[1].0, "g\\h");
    let l = &parse(
        "m,t=a\\\\\\,b,u=x\\\\y f\\ k=1,g\\\\h=2 1000\n",
        Dialect::V1,
    )
    .unwrap()[0];
    assert_eq!(
        l.tags,
        vec![
            ("t".into(), "a\\\\,b".into()),
            ("u".into(), "x\\\\y".into())
        ]
    );
    assert_eq!(l.fields[0].0, "f k");
    assert_eq!(l.fields[1].0, "g\\\\h");
    for bad in [
        "m,t=a\\,b f=1\n",
        "m,t=a f=1 1\nx\n",
        "m,t= f=1 1\n",
        "m,t=a,t=b f=1 1\n",
        "m f=NaN 1\n",
        "m f=1i 1\n",
        "#m f=1 1\n",
        "m f=1 1",
        "m,t=a\tb f=1 1\n",
    ] {
        assert!(parse(bad, Dialect::V2).is_err(), "{bad:?}");
    }
    // 1.x: a backslash before the separator escapes it.
    let l = &parse("m,t=a\\,u f=1 1\n", Dialect::V1).unwrap()[0];
    assert_eq!(l.tags, vec![("t".into(), "a,u".into())]);
    assert!(
        parse("m,t=a\\,u=b f=1 1\n", Dialect::V1).is_err(),
        "'=' in a tag value"
    );
    assert!(parse("m,t=a\\ f=1 1\n", Dialect::V1).is_err());
}
