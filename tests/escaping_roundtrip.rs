//! Hostile names through pqwatch's line-protocol encoder (`sink::line`) and
//! InfluxDB writer (`sink::Writer`, gzip on) to real servers, read back
//! with the servers' own query APIs, compared for exact equality:
//!
//! * VictoriaMetrics via `/api/v2/write` (the v2 dialect), read back with
//!   `/api/v1/export`;
//! * InfluxDB 1.x via `/write` (the v1 dialect), read back with InfluxQL
//!   `SHOW TAG KEYS`, `SHOW TAG VALUES`, `SHOW FIELD KEYS` and `SELECT`.
//!
//! Tag keys and values and field keys hold spaces, commas, equals signs,
//! double quotes, backslashes (a trailing one where the dialect can carry
//! it) and Chinese. Newlines cannot be represented in line protocol: config
//! validation rejects them in ids and tags, and should one reach the
//! encoder it becomes U+FFFD, which must neither break the batch nor forge
//! a point.

mod common;

use common::{ExportedSeries, InfluxDb1, TestConfig, VictoriaMetrics};
use pqwatch::reading::{MeterMeta, Reading};
use pqwatch::sink::Writer;
use pqwatch::sink::line::{Dialect, encode};
use pqwatch::sink::outbox::gzip;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Tags every dialect carries: (key, value).
const TAGS: &[(&str, &str)] = &[
    ("key with space", "value with space"),
    ("key,comma", "a,b,c"),
    ("key=equals", "x=y=z"),
    ("key\"quote", "\"quoted\" value"),
    ("key\\backslash", "C:\\path\\to"),
    ("中文键", "钢铁厂 一号"),
    ("all", "a b,c=d\"e\\f 中"),
    ("lead", " leading space"),
    ("double", "two\\\\backslashes"),
];

/// Field keys every dialect carries, with their values (at most 11
/// significant digits: VictoriaMetrics stores fewer than a float's 17).
const FIELDS: &[(&str, f64)] = &[
    ("field with space", 230.5),
    ("field,comma", -0.001),
    ("field=equals", 1e-7),
    ("电压", 123_456_789.123),
    ("all, = 中", 5773.5026919),
];

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn tags(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut t: BTreeMap<String, String> = TAGS
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    t.insert("meter".into(), "M 1,a=b".into());
    t.insert("customer".into(), "C\"1\" 钢".into());
    t
}

fn reading(tags: &BTreeMap<String, String>, fields: &[(&str, f64)], ts_ms: i64) -> Reading {
    Reading {
        meter: Arc::new(MeterMeta::new("M 1,a=b", "C\"1\" 钢", tags)),
        ts_ms,
        values: fields.iter().map(|(k, v)| (Arc::from(*k), *v)).collect(),
    }
}

/// The writer pqwatch would build from this config's `[influxdb]` section,
/// gzipped.
fn writer(config: TestConfig) -> Writer {
    let text = config.influx("gzip", true).to_string();
    let cfg = pqwatch::config::from_str(&text, Path::new("/nonexistent"))
        .unwrap_or_else(|e| panic!("{e}"));
    Writer::new(&cfg.influx.expect("[influxdb]")).expect("writer")
}

async fn send(w: &Writer, readings: &[Reading], d: Dialect) -> String {
    let mut body = String::new();
    for r in readings {
        assert!(encode(r, d, &mut body) > 0);
    }
    w.write(gzip(body.as_bytes()).into())
        .await
        .unwrap_or_else(|e| panic!("write refused: {e}\n{body}"));
    body
}

fn labels(s: &ExportedSeries) -> BTreeMap<String, String> {
    s.metric
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn victoria_metrics_reads_back_every_name_exactly() -> anyhow::Result<()> {
    let vm = VictoriaMetrics::start()?;
    let w = writer(TestConfig::new().influx_v2(&vm.url()));
    let ts = now_s() * 1000;
    // v2 carries a trailing backslash (`\\` is one backslash there).
    let tags = tags(&[("trail\\", "end\\"), ("\\", "\\")]);
    let fields: Vec<(&str, f64)> = FIELDS
        .iter()
        .copied()
        .chain([("field\\backslash", 42.0), ("trail\\", 7.0)])
        .collect();
    let body = send(&w, &[reading(&tags, &fields, ts)], Dialect::V2).await;

    let series = vm.export("{__name__=~\"meter_.*\"}").await?;
    assert_eq!(
        series.len(),
        fields.len(),
        "one series per field:\n{body}\n{series:#?}"
    );
    for (f, v) in &fields {
        let name = format!("meter_{f}");
        let s = series
            .iter()
            .find(|s| s.name() == name)
            .unwrap_or_else(|| panic!("no series {name:?} in {series:#?}\nsent:\n{body}"));
        assert_eq!(labels(s), tags, "labels of {name:?}\nsent:\n{body}");
        assert_eq!(s.points(), vec![(ts, *v)], "{name:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_1x_reads_back_every_name_exactly() -> anyhow::Result<()> {
    let db = InfluxDb1::start()?;
    db.create_database("esc").await?;
    let w = writer(TestConfig::new().influx_v1(&db.url(), "esc"));
    let ts = now_s() * 1000;
    let tags = tags(&[]);
    // A double quote is fine in a 1.x field key (see the VictoriaMetrics
    // test below for why it is not in FIELDS).
    let fields: Vec<(&str, f64)> = FIELDS
        .iter()
        .copied()
        .chain([("field\"quote", 8.5)])
        .collect();
    let body = send(&w, &[reading(&tags, &fields, ts)], Dialect::V1).await;

    let out = db.query("esc", "SHOW TAG KEYS FROM \"meter\"").await?;
    let keys: Vec<String> = column(&out, 0);
    let want_keys: Vec<String> = tags.keys().cloned().collect();
    assert_eq!(keys, want_keys, "tag keys\nsent:\n{body}");
    for (k, v) in &tags {
        let q = format!("SHOW TAG VALUES FROM \"meter\" WITH KEY = {}", ident(k));
        let out = db.query("esc", &q).await?;
        assert_eq!(column(&out, 1), vec![v.clone()], "{q}\nsent:\n{body}");
    }
    let out = db.query("esc", "SHOW FIELD KEYS FROM \"meter\"").await?;
    let mut want_fields: Vec<String> = fields.iter().map(|(f, _)| f.to_string()).collect();
    want_fields.sort();
    assert_eq!(column(&out, 0), want_fields, "field keys\nsent:\n{body}");

    // One row, every tag and field by name.
    let out = db.query("esc", "SELECT * FROM \"meter\"").await?;
    let s = &out["results"][0]["series"][0];
    let cols: Vec<String> = s["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let rows = s["values"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{out}");
    let row = rows[0].as_array().unwrap();
    let get = |name: &str| {
        &row[cols
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name:?} in {cols:?}"))]
    };
    assert_eq!(get("time").as_i64(), Some(ts));
    for (k, v) in &tags {
        assert_eq!(get(k).as_str(), Some(v.as_str()), "tag {k:?}");
    }
    for (f, v) in &fields {
        assert_eq!(get(f).as_f64(), Some(*v), "field {f:?}");
    }
    Ok(())
}

/// What 1.x cannot carry, and what pqwatch does about it: a tag ending in
/// a backslash is refused by config validation (`api = "v1"`) and, should
/// one reach the encoder, written with U+FFFD in its place; a backslash in
/// a field key comes back doubled (no profile field name has one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_1x_limits_are_refused_or_replaced_as_documented() -> anyhow::Result<()> {
    let config = |tag: &str| {
        TestConfig::new()
            .influx_v1("http://127.0.0.1:1", "d")
            .push(&format!(
                "[[customers]]\nid = \"C1\"\n[[meters]]\nid = \"M1\"\ncustomer = \"C1\"\naddress = \"127.0.0.1:502\"\nunit = 1\n\
                 profile = \"eastron-sdm630\"\nnominal_voltage = 400\ntags = {{ hall = {} }}\n",
                serde_json::to_string(tag).unwrap()
            ))
            .to_string()
    };
    let e = pqwatch::config::from_str(&config("Hall 3\\"), Path::new("/nonexistent"))
        .expect_err("a v1 tag ending in a backslash");
    assert!(
        e.problems
            .iter()
            .any(|p| p.starts_with("meters[0].tags.hall: cannot end with a backslash")),
        "{e}"
    );

    let db = InfluxDb1::start()?;
    db.create_database("esc").await?;
    let w = writer(TestConfig::new().influx_v1(&db.url(), "esc"));
    let ts = now_s() * 1000;
    let tags = BTreeMap::from([
        ("hall".to_string(), "Hall 3\\".to_string()),
        ("next".to_string(), "x".to_string()),
    ]);
    send(
        &w,
        &[reading(&tags, &[("f\\b", 1.0), ("ok", 2.0)], ts)],
        Dialect::V1,
    )
    .await;
    let out = db.query("esc", "SELECT * FROM \"meter\"").await?;
    let s = &out["results"][0]["series"][0];
    assert_eq!(
        s["columns"],
        serde_json::json!(["time", "f\\\\b", "hall", "next", "ok"]),
        "{out}"
    );
    let row = &s["values"][0];
    assert_eq!(row[0].as_i64(), Some(ts), "{out}");
    assert_eq!(row[1].as_f64(), Some(1.0), "{out}");
    assert_eq!(row[2].as_str(), Some("Hall 3\u{FFFD}"), "{out}");
    assert_eq!(row[3].as_str(), Some("x"), "{out}");
    assert_eq!(row[4].as_f64(), Some(2.0), "{out}");
    Ok(())
}

/// A newline cannot be written in a name. Config validation refuses it in
/// ids and tags; the encoder turns any control character that reaches it
/// into U+FFFD, so the rest of the value cannot become a second point
/// (here: a forged reading for meter M2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newlines_are_refused_by_config_and_cannot_forge_points() -> anyhow::Result<()> {
    for (what, meter_id, tag) in [("an id", "M\n1", "ok"), ("a tag value", "M1", "F\n12")] {
        let text = TestConfig::new()
            .push(&format!(
                "[[customers]]\nid = \"C1\"\n[[meters]]\nid = {}\n\
                 customer = \"C1\"\naddress = \"127.0.0.1:502\"\nunit = 1\nprofile = \"eastron-sdm630\"\n\
                 nominal_voltage = 400\ntags = {{ feeder = {} }}\n",
                serde_json::to_string(meter_id).unwrap(),
                serde_json::to_string(tag).unwrap()
            ))
            .to_string();
        let e = pqwatch::config::from_str(&text, Path::new("/nonexistent")).expect_err(what);
        assert!(
            e.problems.iter().any(|p| p.contains("control characters")),
            "{what}: {e}"
        );
    }

    let forged = "F 12\nmeter,meter=M2 forged=999";
    let tags = BTreeMap::from([
        ("meter".to_string(), "M1".to_string()),
        ("feeder".to_string(), forged.to_string()),
    ]);
    let want = "F 12\u{FFFD}meter,meter=M2 forged=999";
    let ts = now_s() * 1000;

    let vm = VictoriaMetrics::start()?;
    let w = writer(TestConfig::new().influx_v2(&vm.url()));
    send(
        &w,
        &[reading(&tags, &[("voltage_l1_n", 230.0)], ts)],
        Dialect::V2,
    )
    .await;
    let series = vm.export("{__name__=~\".+\"}").await?;
    let ours: Vec<&ExportedSeries> = series
        .iter()
        .filter(|s| s.name().starts_with("meter"))
        .collect();
    assert_eq!(ours.len(), 1, "{series:#?}");
    assert_eq!(ours[0].name(), "meter_voltage_l1_n");
    assert_eq!(ours[0].label("feeder"), Some(want));
    assert_eq!(ours[0].label("meter"), Some("M1"));

    let db = InfluxDb1::start()?;
    db.create_database("esc").await?;
    let w = writer(TestConfig::new().influx_v1(&db.url(), "esc"));
    send(
        &w,
        &[reading(&tags, &[("voltage_l1_n", 230.0)], ts)],
        Dialect::V1,
    )
    .await;
    let out = db.query("esc", "SHOW SERIES").await?;
    assert_eq!(
        column(&out, 0),
        vec![format!(
            "meter,feeder={},meter=M1",
            want.replace(' ', "\\ ")
                .replace(',', "\\,")
                .replace('=', "\\=")
        )],
        "{out}"
    );
    let out = db.query("esc", "SHOW FIELD KEYS").await?;
    assert_eq!(column(&out, 0), vec!["voltage_l1_n".to_string()], "{out}");
    Ok(())
}

/// VictoriaMetrics (1.79) reads a double quote in a field key as the start
/// of a string value: it answers 204, and the line's fields are lost (here
/// none is stored; with more of the line after the quote, a series of 0s
/// at the time of arrival was seen). 1.x and the line-protocol reference
/// take it as a plain character. pqwatch never writes one: profile field
/// names are lowercase snake_case (`profile::parse` checks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn victoria_metrics_misreads_a_quote_in_a_field_key() -> anyhow::Result<()> {
    let vm = VictoriaMetrics::start()?;
    let w = writer(TestConfig::new().influx_v2(&vm.url()));
    let ts = now_s() * 1000 - 60_000;
    let tags = BTreeMap::from([("meter".to_string(), "Q".to_string())]);
    send(
        &w,
        &[reading(&tags, &[("a\"q", 4.0), ("after", 5.0)], ts)],
        Dialect::V2,
    )
    .await;
    let series = vm.export("{__name__=~\".+\"}").await?;
    assert!(
        !series
            .iter()
            .any(|s| s.name() == "meter_after" && s.points() == vec![(ts, 5.0)]),
        "VictoriaMetrics now reads a quote in a field key: drop this test\n{series:#?}"
    );
    Ok(())
}

/// Column `k` of the first series of the first statement, as strings.
fn column(out: &Value, k: usize) -> Vec<String> {
    out["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .map(|row| row[k].as_str().unwrap_or_default().to_string())
        .collect()
}

/// InfluxQL double-quoted identifier.
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
