//! Self-test of the test harness (tests/common): the peers start, accept and
//! return data, and the checks built on them can fail. Uses no pqwatch code.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use common::{InfluxDb1, ModbusPeer, VictoriaMetrics, find_series, parse_export};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

// ---------------------------------------------------------------------------
// VictoriaMetrics
// ---------------------------------------------------------------------------

#[tokio::test]
async fn victoria_metrics_receives_line_protocol() -> anyhow::Result<()> {
    let vm = VictoriaMetrics::start()?;
    eprintln!("victoria-metrics ready in {:?}", vm.startup);
    let ts = now_ms();
    let body = format!(
        "meter,meter=M1,customer=C1 voltage_l1_n=230.5,current_l1=5i {ts}\n\
         meter,meter=M2,customer=C1 voltage_l1_n=229.25 {ts}\n"
    );
    let resp = client()
        .post(format!(
            "{}/api/v2/write?org=o&bucket=b&precision=ms",
            vm.url()
        ))
        .body(body)
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 204, "{}", resp.text().await?);

    let waited = vm
        .wait_for_series(
            r#"{__name__=~"meter_.*"}"#,
            |s| s.len() == 3,
            Duration::from_secs(10),
        )
        .await;
    let series = waited.into_result()?;
    let v = find_series(
        &series,
        "meter_voltage_l1_n",
        &[("meter", "M1"), ("customer", "C1")],
    )
    .with_context(|| format!("no meter_voltage_l1_n for M1 in {series:?}"))?;
    assert_eq!(v.points(), vec![(ts, 230.5)]);
    // Exactly these labels: /api/v2/write adds no `db` label.
    let labels: Vec<&str> = v.metric.keys().map(String::as_str).collect();
    assert_eq!(labels, ["__name__", "customer", "meter"]);
    let i = find_series(&series, "meter_current_l1", &[("meter", "M1")]).unwrap();
    assert_eq!(i.points(), vec![(ts, 5.0)]);
    let m2 = find_series(&series, "meter_voltage_l1_n", &[("meter", "M2")]).unwrap();
    assert_eq!(m2.last(), Some((ts, 229.25)));

    // A selector that matches nothing gives an empty export, not an error.
    assert!(
        vm.export(r#"{__name__="no_such_metric"}"#)
            .await?
            .is_empty()
    );

    // The wait CAN fail, and then reports the last export.
    let waited = vm
        .wait_for_series(
            r#"meter_voltage_l1_n{meter="M1"}"#,
            |s| s.iter().any(|s| s.values.contains(&999.0)),
            Duration::from_millis(300),
        )
        .await;
    assert!(!waited.ok);
    let msg = waited.into_result().unwrap_err().to_string();
    assert!(
        msg.contains("did NOT hold") && msg.contains("230.5"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test]
async fn victoria_metrics_accepts_gzip_and_1x_write() -> anyhow::Result<()> {
    let vm = VictoriaMetrics::start()?;
    let ts = now_ms();
    let body = gzip(format!("meter,meter=GZ,customer=C2 power_total=1234.5 {ts}\n").as_bytes());
    let resp = client()
        .post(format!(
            "{}/api/v2/write?org=o&bucket=b&precision=ms",
            vm.url()
        ))
        .header("Content-Encoding", "gzip")
        .body(body)
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 204, "{}", resp.text().await?);
    // The 1.x endpoint, nanosecond timestamps (the default precision).
    let resp = client()
        .post(format!("{}/write?db=pq", vm.url()))
        .body(format!("meter,meter=V1 energy=7 {}\n", ts * 1_000_000))
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 204, "{}", resp.text().await?);

    let series = vm
        .wait_for_series(
            r#"{customer="C2"}"#,
            |s| !s.is_empty(),
            Duration::from_secs(10),
        )
        .await
        .into_result()?;
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0].name(), "meter_power_total");
    assert_eq!(series[0].points(), vec![(ts, 1234.5)]);

    let series = vm.export(r#"meter_energy{meter="V1"}"#).await?;
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(
        series[0].label("db"),
        Some("pq"),
        "/write?db= adds a db label"
    );
    assert_eq!(series[0].points(), vec![(ts, 7.0)]);
    Ok(())
}

#[test]
fn parse_export_merges_lines_of_one_series() {
    let body = r#"{"metric":{"__name__":"a","x":"1"},"values":[2,3],"timestamps":[20,30]}
{"metric":{"__name__":"b"},"values":[1],"timestamps":[5]}
{"metric":{"__name__":"a","x":"1"},"values":[1],"timestamps":[10]}
"#;
    let s = parse_export(body).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].name(), "a");
    assert_eq!(s[0].points(), vec![(10, 1.0), (20, 2.0), (30, 3.0)]);
    assert!(parse_export("{not json").is_err());
}

// ---------------------------------------------------------------------------
// InfluxDB 1.x
// ---------------------------------------------------------------------------

#[tokio::test]
async fn influxdb1_write_and_query() -> anyhow::Result<()> {
    let db = InfluxDb1::start()?;
    eprintln!("influxd ready in {:?}", db.startup);
    db.create_database("pq").await?;
    let ts = now_ms();
    let resp = client()
        .post(format!("{}/write?db=pq&precision=ms", db.url()))
        .body(format!(
            "meter,meter=M1,customer=C1 voltage_l1_n=230.5,energy=42i {ts}\n"
        ))
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 204, "{}", resp.text().await?);

    let out = db.query("pq", "SELECT * FROM meter").await?;
    let series = &out["results"][0]["series"][0];
    assert_eq!(series["name"], "meter", "{out}");
    assert_eq!(
        series["columns"],
        json!(["time", "customer", "energy", "meter", "voltage_l1_n"]),
        "{out}"
    );
    assert_eq!(
        series["values"],
        json!([[ts, "C1", 42, "M1", 230.5]]),
        "{out}"
    );

    // Errors are errors.
    let err = db.query("nope", "SELECT * FROM meter").await.unwrap_err();
    assert!(err.to_string().contains("database not found"), "{err:#}");
    Ok(())
}

#[tokio::test]
async fn influxdb1_with_auth() -> anyhow::Result<()> {
    let db = InfluxDb1::start_with_auth("admin", "s3cr'et")?;
    db.create_database("pq").await?;
    let ts = now_ms();
    let line = format!("meter,meter=M1 voltage_l1_n=1.5 {ts}\n");
    let url = format!("{}/write?db=pq&precision=ms", db.url());

    let resp = client().post(&url).body(line.clone()).send().await?;
    assert_eq!(
        resp.status().as_u16(),
        401,
        "write without credentials must be refused"
    );
    let resp = client()
        .post(&url)
        .basic_auth("admin", Some("wrong"))
        .body(line.clone())
        .send()
        .await?;
    assert_eq!(
        resp.status().as_u16(),
        401,
        "wrong password must be refused"
    );
    let resp = client()
        .post(&url)
        .basic_auth("admin", Some("s3cr'et"))
        .body(gzip(line.as_bytes()))
        .header("Content-Encoding", "gzip")
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 204, "{}", resp.text().await?);

    let out = db.query("pq", "SELECT voltage_l1_n FROM meter").await?;
    assert_eq!(
        out["results"][0]["series"][0]["values"],
        json!([[ts, 1.5]]),
        "{out}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Modbus peer, read with a hand-written Modbus/TCP client
// ---------------------------------------------------------------------------

/// Minimal Modbus/TCP client: FC3/FC4 only, one request at a time.
struct RawModbus {
    stream: TcpStream,
    tid: u16,
}

impl RawModbus {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(RawModbus {
            stream: TcpStream::connect(addr).await?,
            tid: 0,
        })
    }

    /// `Ok(words)`, or `Err` with the Modbus exception code in the message.
    async fn read(&mut self, unit: u8, fc: u8, addr: u16, count: u16) -> anyhow::Result<Vec<u16>> {
        self.tid = self.tid.wrapping_add(1);
        let mut req = Vec::with_capacity(12);
        req.extend_from_slice(&self.tid.to_be_bytes()); // transaction id
        req.extend_from_slice(&0u16.to_be_bytes()); // protocol id
        req.extend_from_slice(&6u16.to_be_bytes()); // length: unit + PDU(5)
        req.push(unit);
        req.push(fc);
        req.extend_from_slice(&addr.to_be_bytes());
        req.extend_from_slice(&count.to_be_bytes());
        self.stream.write_all(&req).await?;

        let mut head = [0u8; 7];
        self.stream.read_exact(&mut head).await?;
        let tid = u16::from_be_bytes([head[0], head[1]]);
        let len = u16::from_be_bytes([head[4], head[5]]) as usize;
        if tid != self.tid || head[2..4] != [0, 0] || head[6] != unit || len < 2 {
            bail!(
                "bad MBAP header {head:02x?} for tid {} unit {unit}",
                self.tid
            );
        }
        let mut pdu = vec![0u8; len - 1];
        self.stream.read_exact(&mut pdu).await?;
        if pdu[0] == fc | 0x80 {
            bail!("modbus exception {:#04x}", pdu[1]);
        }
        if pdu[0] != fc
            || pdu[1] as usize != 2 * count as usize
            || pdu.len() != 2 + 2 * count as usize
        {
            bail!("bad response PDU {pdu:02x?}");
        }
        Ok(pdu[2..]
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect())
    }
}

#[derive(Clone, Copy, Debug)]
enum V {
    I(i128),
    F(f64),
}

/// Test-side reference encoder (Rust's to_be_bytes), independent of both
/// pqwatch and the Python peer.
fn reference_words(ty: &str, v: V, order: &str) -> Vec<u16> {
    let be: Vec<u8> = match (ty, v) {
        ("u16", V::I(i)) => (i as u16).to_be_bytes().to_vec(),
        ("i16", V::I(i)) => (i as i16).to_be_bytes().to_vec(),
        ("u32", V::I(i)) => (i as u32).to_be_bytes().to_vec(),
        ("i32", V::I(i)) => (i as i32).to_be_bytes().to_vec(),
        ("u64", V::I(i)) => (i as u64).to_be_bytes().to_vec(),
        ("i64", V::I(i)) => (i as i64).to_be_bytes().to_vec(),
        ("f32", V::F(f)) => (f as f32).to_be_bytes().to_vec(),
        ("f64", V::F(f)) => f.to_be_bytes().to_vec(),
        other => panic!("bad case {other:?}"),
    };
    let mut words: Vec<[u8; 2]> = be.chunks(2).map(|c| [c[0], c[1]]).collect();
    if order == "CDAB" || order == "DCBA" {
        words.reverse();
    }
    if order == "BADC" || order == "DCBA" {
        words.iter_mut().for_each(|w| w.swap(0, 1));
    }
    words.into_iter().map(u16::from_be_bytes).collect()
}

const TYPES: [(&str, V); 8] = [
    ("u16", V::I(0x1234)),
    ("i16", V::I(-2)),
    ("u32", V::I(0x1234_5678)),
    ("i32", V::I(-123_456_789)),
    ("u64", V::I(0x0123_4567_89AB_CDEF)),
    ("i64", V::I(-1_234_567_890_123_456_789)),
    ("f32", V::F(230.5)),
    ("f64", V::F(-12345.678)),
];
const ORDERS: [&str; 4] = ["ABCD", "CDAB", "BADC", "DCBA"];

/// (address, type, value, order) for every type × word order, 4 registers apart.
fn all_cases() -> Vec<(u16, &'static str, V, &'static str)> {
    let mut out = Vec::new();
    for (i, (ty, v)) in TYPES.iter().enumerate() {
        for (j, order) in ORDERS.iter().enumerate() {
            out.push((1000 + 4 * (i * ORDERS.len() + j) as u16, *ty, *v, *order));
        }
    }
    out
}

fn spec_entries(cases: &[(u16, &str, V, &str)]) -> Vec<serde_json::Value> {
    cases
        .iter()
        .map(|(addr, ty, v, order)| {
            let value = match v {
                V::I(i) => json!(*i as i64),
                V::F(f) => json!(f),
            };
            json!({"address": addr, "type": ty, "word_order": order, "value": value})
        })
        .collect()
}

#[tokio::test]
async fn modbus_peer_serves_independently_encoded_registers() -> anyhow::Result<()> {
    let cases = all_cases();
    let entries = spec_entries(&cases);
    let mut holding = entries.clone();
    holding.push(json!({"address": 19000, "type": "f32", "word_order": "ABCD", "value": 230.5}));
    holding.push(json!({"address": 65534, "raw": [0xFFFF, "0x8001"]}));
    let mut input = entries;
    input.push(json!({"address": 30000, "type": "f32", "value": -1.25}));
    let spec = json!({"units": {"1": {"holding": holding}, "7": {"input": input}}});
    let peer = ModbusPeer::start(&spec)?;
    eprintln!("modbus peer ready on {} in {:?}", peer.addr(), peer.startup);

    let mut c = RawModbus::connect(peer.addr()).await?;

    // Hand-computed words (no encoder involved).
    assert_eq!(
        c.read(1, 3, 19000, 2).await?,
        [0x4366, 0x8000],
        "f32 230.5 ABCD"
    );
    let at = |ty: &str, order: &str| cases.iter().find(|c| c.1 == ty && c.3 == order).unwrap().0;
    assert_eq!(c.read(1, 3, at("f32", "ABCD"), 2).await?, [0x4366, 0x8000]);
    assert_eq!(c.read(1, 3, at("f32", "CDAB"), 2).await?, [0x8000, 0x4366]);
    assert_eq!(c.read(1, 3, at("f32", "BADC"), 2).await?, [0x6643, 0x0080]);
    assert_eq!(c.read(1, 3, at("f32", "DCBA"), 2).await?, [0x0080, 0x6643]);
    assert_eq!(c.read(1, 3, at("u32", "CDAB"), 2).await?, [0x5678, 0x1234]);
    assert_eq!(c.read(1, 3, at("i16", "ABCD"), 1).await?, [0xFFFE]);
    assert_eq!(c.read(1, 3, at("i16", "BADC"), 1).await?, [0xFEFF]);
    assert_eq!(
        c.read(1, 3, at("u64", "CDAB"), 4).await?,
        [0xCDEF, 0x89AB, 0x4567, 0x0123]
    );
    assert_eq!(
        c.read(1, 3, at("u64", "BADC"), 4).await?,
        [0x2301, 0x6745, 0xAB89, 0xEFCD]
    );
    assert_eq!(
        c.read(1, 3, at("u64", "DCBA"), 4).await?,
        [0xEFCD, 0xAB89, 0x6745, 0x2301]
    );
    assert_eq!(
        c.read(7, 4, 30000, 2).await?,
        [0xBFA0, 0x0000],
        "f32 -1.25 input reg"
    );

    // Every type × word order against the test's reference encoder, via FC3
    // on unit 1 and FC4 on unit 7.
    for (addr, ty, v, order) in &cases {
        let want = reference_words(ty, *v, order);
        let n = want.len() as u16;
        assert_eq!(
            c.read(1, 3, *addr, n).await?,
            want,
            "holding {ty} {order} @{addr}"
        );
        assert_eq!(
            c.read(7, 4, *addr, n).await?,
            want,
            "input {ty} {order} @{addr}"
        );
    }

    // Address quirk check: value at wire 19000 is served at wire 19000 only.
    assert_eq!(c.read(1, 3, 18999, 4).await?, [0, 0x4366, 0x8000, 0]);
    // Unset registers read 0, the last register exists, raw words verbatim.
    assert_eq!(c.read(1, 3, 0, 3).await?, [0, 0, 0]);
    assert_eq!(c.read(1, 3, 65534, 2).await?, [0xFFFF, 0x8001]);
    assert_eq!(
        c.read(7, 3, 19000, 2).await?,
        [0, 0],
        "unit 7 has no holding values"
    );
    // Past the end of the address space: a Modbus exception (illegal address).
    let err = c.read(1, 3, 65535, 2).await.unwrap_err();
    assert!(err.to_string().contains("exception 0x02"), "{err:#}");
    Ok(())
}

#[tokio::test]
async fn modbus_peer_unknown_unit_gets_no_answer() -> anyhow::Result<()> {
    let peer = ModbusPeer::start(&json!({"units": {"1": {}}}))?;
    let mut c = RawModbus::connect(peer.addr()).await?;
    assert_eq!(c.read(1, 3, 0, 1).await?, [0]);
    let r = tokio::time::timeout(Duration::from_millis(500), c.read(2, 3, 0, 1)).await;
    assert!(r.is_err(), "expected a timeout, got {r:?}");
    Ok(())
}

#[test]
fn modbus_peer_bad_spec_fails_with_log() {
    let spec =
        json!({"units": {"1": {"holding": [{"address": 5, "type": "u16", "value": 70000}]}}});
    let err = ModbusPeer::start(&spec)
        .err()
        .expect("spec with u16 70000 must fail");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("exited during startup") && msg.contains("70000"),
        "{msg}"
    );
}

#[test]
fn modbus_peer_can_restart_on_same_port() -> anyhow::Result<()> {
    let spec = json!({"units": {"1": {}}});
    let peer = ModbusPeer::start(&spec)?;
    let port = peer.port();
    drop(peer);
    let peer = ModbusPeer::start_on_port(&spec, port)?;
    assert_eq!(peer.port(), port);
    Ok(())
}
