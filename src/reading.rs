//! The unit of data flowing from pollers to sinks: one poll of one meter.

use crate::line_protocol::{Dialect, series_key};
use crate::schema::MEASUREMENT;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Latest reading of every meter, for status output and the HTTP API
/// (written by the app's tee, read by `http`).
pub(crate) type Latest = Arc<Mutex<HashMap<String, Reading>>>;

/// What every reading of a meter shares; built once per meter.
#[derive(Debug)]
pub struct MeterMeta {
    pub id: String,
    pub(crate) customer: String,
    /// Escaped `meter,tag=v,...` prefix of the meter's lines, per dialect.
    series_key_v2: String,
    series_key_v1: String,
    /// The same tags without the measurement (`,tag=v,...`), for the
    /// meter's other measurements (aggregates, events).
    tag_set_v2: String,
    tag_set_v1: String,
}

impl MeterMeta {
    pub fn new(id: &str, customer: &str, tags: &BTreeMap<String, String>) -> Self {
        MeterMeta {
            id: id.to_string(),
            customer: customer.to_string(),
            series_key_v2: series_key(MEASUREMENT, tags, Dialect::V2),
            series_key_v1: series_key(MEASUREMENT, tags, Dialect::V1),
            tag_set_v2: series_key("", tags, Dialect::V2),
            tag_set_v1: series_key("", tags, Dialect::V1),
        }
    }

    pub(crate) fn tag_set(&self, dialect: Dialect) -> &str {
        match dialect {
            Dialect::V2 => &self.tag_set_v2,
            Dialect::V1 => &self.tag_set_v1,
        }
    }

    pub(crate) fn series_key(&self, dialect: Dialect) -> &str {
        match dialect {
            Dialect::V2 => &self.series_key_v2,
            Dialect::V1 => &self.series_key_v1,
        }
    }
}

/// One poll of one meter: the values that decoded, at the poll's scheduled
/// wall-clock instant (aligned to the interval, so series of all meters
/// line up and a re-sent batch overwrites rather than duplicates).
#[derive(Debug, Clone)]
pub struct Reading {
    pub meter: Arc<MeterMeta>,
    /// Unix time in milliseconds.
    pub ts_ms: i64,
    /// Shared, not copied, by the latest-reading map, the watch and the
    /// sink: a clone is one reference count.
    pub values: Arc<[(Arc<str>, f64)]>,
}

/// A point of another measurement about a meter: window aggregates,
/// power-quality events. Carries the meter's tags plus its own.
#[derive(Debug, Clone)]
pub struct Point {
    pub measurement: &'static str,
    pub meter: Arc<MeterMeta>,
    /// Extra tags (keys are fixed identifiers; values are escaped on encoding).
    pub tags: Vec<(&'static str, String)>,
    pub ts_ms: i64,
    pub fields: Vec<(String, f64)>,
}

/// What the sink writes.
#[derive(Debug, Clone)]
pub enum Record {
    Reading(Reading),
    Point(Point),
}

impl From<Reading> for Record {
    fn from(r: Reading) -> Self {
        Record::Reading(r)
    }
}

impl From<Point> for Record {
    fn from(p: Point) -> Self {
        Record::Point(p)
    }
}
