//! Readings and points as InfluxDB line protocol. Pure.
//!
//! One [`Reading`] becomes one line of measurement `meter`: its tags (the
//! meter's user tags plus `meter` and `customer`, sorted by key as InfluxDB
//! recommends) and every value as a float field, timestamped in
//! milliseconds; a [`Point`] becomes a line of its own measurement with the
//! meter's tags and its own. Escaping, the two servers' [`Dialect`]s and
//! what is left out rather than written badly are
//! `line_protocol`'s; the caller counts the fields
//! actually written (the returned number).

pub use crate::line_protocol::Dialect;
use crate::line_protocol::{
    escape_key_for, escape_measurement, writable_field, writable_tag, write_fields,
};
use crate::reading::{Point, Reading, Record};

/// Append one reading as a line. Returns the number of points (fields)
/// written; a reading with no values writes nothing (an empty field set is
/// invalid line protocol).
pub fn encode(reading: &Reading, dialect: Dialect, out: &mut String) -> usize {
    if !reading.values.iter().any(|(k, v)| writable_field(k, *v)) {
        return 0;
    }
    out.push_str(reading.meter.series_key(dialect));
    write_fields(
        reading.values.iter().map(|(k, v)| (&**k, *v)),
        reading.ts_ms,
        out,
    )
}

/// Append a record of either kind; returns the points written.
pub(crate) fn encode_record(r: &Record, dialect: Dialect, out: &mut String) -> usize {
    match r {
        Record::Reading(r) => encode(r, dialect, out),
        Record::Point(p) => encode_point(p, dialect, out),
    }
}

/// Append a point of another measurement about a meter.
pub fn encode_point(p: &Point, dialect: Dialect, out: &mut String) -> usize {
    if !p.fields.iter().any(|(k, v)| writable_field(k, *v)) {
        return 0;
    }
    escape_measurement(p.measurement, out);
    out.push_str(p.meter.tag_set(dialect));
    for (k, v) in p.tags.iter().filter(|(k, v)| writable_tag(k, v)) {
        out.push(',');
        escape_key_for(k, dialect, out);
        out.push('=');
        escape_key_for(v, dialect, out);
    }
    write_fields(p.fields.iter().map(|(k, v)| (k.as_str(), *v)), p.ts_ms, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{MeterMeta, Reading};
    use std::collections::BTreeMap;
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
            values: vec![("voltage_l1_n".into(), 230.5), ("frequency".into(), 50.0)].into(),
        };
        let mut s = String::new();
        assert_eq!(encode(&r, Dialect::V2, &mut s), 2);
        assert_eq!(
            s,
            "meter,customer=C1,feeder=F\\ 12,meter=M1 voltage_l1_n=230.5,frequency=50 1700000000000\n"
        );
    }

    #[test]
    fn points_of_other_measurements_carry_the_meter_tags_and_their_own() {
        let p = Point {
            measurement: "pq_event",
            meter: meta(&[("meter", "M1"), ("customer", "C 1")]),
            tags: vec![("kind", "voltage_high".into()), ("phase", "l1".into())],
            ts_ms: 60_000,
            fields: vec![("value".into(), 251.5), ("limit".into(), 246.0)],
        };
        let mut s = String::new();
        assert_eq!(encode_point(&p, Dialect::V2, &mut s), 2);
        assert_eq!(
            s,
            "pq_event,customer=C\\ 1,meter=M1,kind=voltage_high,phase=l1 value=251.5,limit=246 60000\n"
        );
    }

    #[test]
    fn empty_readings_write_nothing() {
        let r = Reading {
            meter: meta(&[]),
            ts_ms: 1,
            values: Arc::new([]),
        };
        let mut s = String::new();
        assert_eq!(encode(&r, Dialect::V2, &mut s), 0);
        assert!(s.is_empty());
    }
}
