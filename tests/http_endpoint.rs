//! The HTTP endpoint, end to end: the daemon in-process with the simulator
//! and VictoriaMetrics, queried over HTTP like an operator's tools would.
//!
//! `/metrics` is checked with an independent parser: the reference Python
//! client's (`tests/peers/prom_parse.py`, Debian python3-prometheus-client),
//! which shares no code with pqwatch. Readiness is followed through an
//! InfluxDB outage (ready while the outbox has room, detail naming the
//! failure) and a full outbox (503). Every wait polls under a deadline.

mod common;
mod e2e;

use common::{TestConfig, VictoriaMetrics, fleet, free_port};
use e2e::{Daemon, Sim};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const PARSER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/prom_parse.py");

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("reqwest client")
}

/// The daemon's bound HTTP address (it listens on port 0).
async fn http_addr(d: &Daemon) -> SocketAddr {
    let found = e2e::wait_until(Duration::from_secs(10), || {
        d.handles.http_addr.get().is_some()
    })
    .await;
    assert!(found, "the HTTP endpoint did not start within 10 s");
    *d.handles.http_addr.get().expect("set")
}

struct Http {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
}

impl Http {
    fn new(addr: SocketAddr) -> Http {
        Http {
            base: format!("http://{addr}"),
            client: client(),
            token: None,
        }
    }

    async fn get(&self, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let code = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.expect("body");
        (code, headers, body)
    }

    async fn json(&self, path: &str) -> (u16, Value) {
        let (code, _, body) = self.get(path).await;
        let v = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"));
        (code, v)
    }

    /// GET `path` every 100 ms until `ok` holds for (status, JSON), or
    /// `limit` passes; returns the last answer and whether it held.
    async fn poll_json(
        &self,
        path: &str,
        limit: Duration,
        ok: impl Fn(u16, &Value) -> bool,
    ) -> (bool, u16, Value) {
        let deadline = Instant::now() + limit;
        loop {
            let (code, v) = self.json(path).await;
            if ok(code, &v) {
                return (true, code, v);
            }
            if Instant::now() >= deadline {
                return (false, code, v);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One sample as the reference parser reports it.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// `/metrics` text → families (name → type and samples) by the Python
/// client's parser.
fn parse_exposition(text: &str) -> BTreeMap<String, (String, Vec<Sample>)> {
    use std::io::Write;
    let mut child = std::process::Command::new(common::PYTHON_BIN)
        .arg(PARSER)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run /usr/bin/python3 (./scripts/test.sh installs python3-prometheus-client)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to the parser");
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "the reference parser rejected /metrics: {}\n--- text ---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fams: Vec<Value> = serde_json::from_slice(&out.stdout).expect("parser JSON");
    fams.into_iter()
        .map(|f| {
            let samples = f["samples"]
                .as_array()
                .expect("samples")
                .iter()
                .map(|s| Sample {
                    name: s["name"].as_str().unwrap().to_string(),
                    labels: serde_json::from_value(s["labels"].clone()).unwrap(),
                    value: match &s["value"] {
                        Value::String(v) if v == "+Inf" => f64::INFINITY,
                        Value::String(v) if v == "-Inf" => f64::NEG_INFINITY,
                        Value::String(_) => f64::NAN,
                        v => v.as_f64().unwrap(),
                    },
                })
                .collect();
            (
                f["name"].as_str().unwrap().to_string(),
                (f["type"].as_str().unwrap().to_string(), samples),
            )
        })
        .collect()
}

fn config(vm: &str, gw_a: u16, gw_b: u16) -> String {
    TestConfig::fast(vm)
        .http("listen", "127.0.0.1:0")
        .push(
            r#"
[rules]
short_window = "2s"
long_window = "6s"
demand_window = "6s"
voltage_min_duration = "3s"
voltage_clear_after = "4s"

[[customers]]
id = "HV"
[[customers]]
id = "LV"
"#,
        )
        .push(&fleet::hv_meter("M-HV", "HV", gw_a, 1))
        .push(&fleet::lv_meter("M-LV", "LV", gw_b, 2))
        .to_string()
}

/// M-HV's voltage 9 % above nominal from the start, for the whole test: a
/// voltage_high event opens after a window and the minimum duration.
const SCENARIO: &str = r#"
[[event]]
meter = "M-HV"
at = "0"
kind = "voltage"
factor = 1.09
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_readiness_meters_and_events_of_a_live_daemon_through_an_influxdb_outage() {
    e2e::init_tracing();
    let mut vm = VictoriaMetrics::start().expect("VictoriaMetrics");
    let (gw_a, gw_b) = (free_port(), free_port());
    let cfg = e2e::config(&config(&vm.url(), gw_a, gw_b));
    let sim = Sim::start(&cfg, SCENARIO).await;
    let daemon = Daemon::start(cfg);
    let http = Http::new(http_addr(&daemon).await);

    // Liveness at once; readiness once InfluxDB acknowledged a batch.
    let (code, v) = http.json("/healthz").await;
    assert_eq!((code, v), (200, serde_json::json!({"status": "ok"})));
    let (ok, code, ready) = http
        .poll_json("/readyz", Duration::from_secs(20), |c, v| {
            c == 200 && v["checks"]["influxdb"]["status"] == "writing"
        })
        .await;
    assert!(ok, "not ready and writing within 20 s: {code} {ready:#}");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["config"]["ok"], true);
    assert_eq!(ready["checks"]["state_db"]["ok"], true);
    assert!(
        ready["checks"]["influxdb"]["last_success_ms"]
            .as_u64()
            .unwrap()
            > 0
    );

    // Meters: config order, fresh readings with values.
    let (ok, _, meters) = http
        .poll_json("/api/meters", Duration::from_secs(10), |_, v| {
            v.as_array()
                .is_some_and(|a| a.iter().all(|m| m["status"] == "ok"))
        })
        .await;
    assert!(ok, "every meter ok within 10 s: {meters:#}");
    let list = meters.as_array().unwrap();
    let ids: Vec<&str> = list.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["M-HV", "M-LV"]);
    for m in list {
        assert_eq!(m["profile"], "janitza-umg96rm");
        assert!(m["age_s"].as_f64().unwrap() < 1.5, "fresh: {m:#}");
        assert!(m["polls"]["ok"].as_u64().unwrap() > 0, "{m:#}");
        let values = m["values"].as_object().unwrap();
        assert!(values.len() > 10, "{m:#}");
    }
    assert_eq!(list[0]["gateway"], format!("127.0.0.1:{gw_a}"));
    assert_eq!(list[0]["customer"], "HV");
    // 10 kV at +9 %, on the primary side.
    let u12 = list[0]["values"]["voltage_l1_l2"].as_f64().unwrap();
    assert!(e2e::close(u12, 10_900.0, 0.01), "voltage_l1_l2 = {u12}");

    // /metrics, as the reference parser reads it.
    let (code, headers, text) = http.get("/metrics").await;
    assert_eq!(code, 200);
    assert!(
        headers[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{headers:?}"
    );
    let fams = parse_exposition(&text);
    let fam = |name: &str| -> &(String, Vec<Sample>) {
        fams.get(name)
            .unwrap_or_else(|| panic!("no family {name} in:\n{text}"))
    };
    let value = |sample: &str, labels: &[(&str, &str)]| -> f64 {
        fams.values()
            .flat_map(|(_, s)| s)
            .find(|s| {
                s.name == sample
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .unwrap_or_else(|| panic!("no sample {sample}{labels:?} in:\n{text}"))
            .value
    };
    let now_s = e2e::now_ms() as f64 / 1000.0;
    for gw in [gw_a, gw_b] {
        let g = format!("127.0.0.1:{gw}");
        let g = g.as_str();
        assert_eq!(fam("pqwatch_polls").0, "counter");
        assert!(value("pqwatch_polls_total", &[("gateway", g), ("outcome", "ok")]) > 0.0);
        assert_eq!(
            value(
                "pqwatch_polls_total",
                &[("gateway", g), ("outcome", "failed")]
            ),
            0.0
        );
        assert!(value("pqwatch_reads_total", &[("gateway", g), ("outcome", "ok")]) > 0.0);

        // The latency histogram: cumulative buckets, +Inf = count > 0.
        let (kind, samples) = fam("pqwatch_modbus_request_duration_seconds");
        assert_eq!(kind, "histogram");
        let mut buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| {
                s.name == "pqwatch_modbus_request_duration_seconds_bucket"
                    && s.labels["gateway"] == g
            })
            .map(|s| (s.labels["le"].parse::<f64>().unwrap(), s.value))
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(buckets.len() >= 5, "{buckets:?}");
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "not cumulative: {buckets:?}"
        );
        let (le, inf) = *buckets.last().unwrap();
        assert!(le.is_infinite(), "{buckets:?}");
        let count = value(
            "pqwatch_modbus_request_duration_seconds_count",
            &[("gateway", g)],
        );
        let sum = value(
            "pqwatch_modbus_request_duration_seconds_sum",
            &[("gateway", g)],
        );
        assert_eq!(count, inf, "count equals the +Inf bucket");
        assert!(count > 0.0);
        assert!(sum > 0.0 && sum < count * 0.3, "sum {sum} of {count} reads");

        let beat = value(
            "pqwatch_gateway_heartbeat_timestamp_seconds",
            &[("gateway", g)],
        );
        assert!(now_s - beat < 5.0, "gateway heartbeat {beat}, now {now_s}");
    }
    for name in [
        "pqwatch_outbox_batches",
        "pqwatch_outbox_points",
        "pqwatch_outbox_bytes",
        "pqwatch_outbox_oldest_age_seconds",
        "pqwatch_outbox_max_bytes",
    ] {
        assert_eq!(fam(name).0, "gauge", "{name}");
        assert!(value(name, &[]) >= 0.0);
    }
    assert!(value("pqwatch_points_written_total", &[]) > 0.0);
    for name in [
        "pqwatch_points_retried_total",
        "pqwatch_points_dropped_total",
        "pqwatch_points_rejected_total",
        "pqwatch_cycles_skipped_total",
        "pqwatch_fields_dropped_total",
        "pqwatch_mails_queued_total",
        "pqwatch_mails_sent_total",
        "pqwatch_mails_failed_total",
        "pqwatch_mails_given_up_total",
        "pqwatch_reports_queued_total",
        "pqwatch_reports_failed_total",
    ] {
        assert!(value(name, &[]) >= 0.0, "{name}");
    }
    assert_eq!(
        value(
            "pqwatch_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    let started = value("pqwatch_process_start_time_seconds", &[]);
    assert!(started > 1.6e9 && started <= now_s, "{started}");
    for beat in [
        "pqwatch_sink_heartbeat_timestamp_seconds",
        "pqwatch_watch_heartbeat_timestamp_seconds",
    ] {
        let t = value(beat, &[]);
        assert!(now_s - t < 5.0, "{beat} = {t}, now {now_s}");
    }
    assert_eq!(fam("pqwatch_events_open").0, "gauge");

    // The scenario's event, open, from the state database.
    let (ok, _, events) = http
        .poll_json("/api/events?state=open", Duration::from_secs(30), |c, v| {
            c == 200
                && v.as_array().is_some_and(|a| {
                    a.iter()
                        .any(|e| e["meter"] == "M-HV" && e["kind"] == "voltage_high")
                })
        })
        .await;
    assert!(
        ok,
        "no open voltage_high event of M-HV within 30 s: {events:#}"
    );
    let list = events.as_array().unwrap();
    let e = list.iter().find(|e| e["meter"] == "M-HV").unwrap();
    assert_eq!(e["open"], true);
    assert_eq!(e["limit"], 10_700.0);
    assert_eq!(e["customer"], "HV");
    assert!(e["start_ms"].as_i64().unwrap() >= daemon.started_ms - 1_000);
    let starts: Vec<i64> = list
        .iter()
        .map(|e| e["start_ms"].as_i64().unwrap())
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {starts:?}"
    );
    let (_, lv) = http.json("/api/events?state=all&meter=M-LV").await;
    assert_eq!(lv, serde_json::json!([]), "M-LV has no event");
    let (_, one) = http.json("/api/events?limit=1").await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    let (_, _, text) = http.get("/metrics").await;
    let open = parse_exposition(&text)["pqwatch_events_open"]
        .1
        .iter()
        .find(|s| s.labels["kind"] == "voltage_high")
        .expect("voltage_high sample")
        .value;
    assert!(open >= 1.0, "open voltage_high events: {open}");

    // InfluxDB goes away: writes fail, the outbox grows, and the daemon
    // stays ready (the outbox has room) while the detail says why.
    tokio::task::block_in_place(|| vm.stop()).expect("stop VictoriaMetrics");
    let m = daemon.handles.metrics.clone();
    let batches_before = pqwatch::metrics::Metrics::get(&m.sink.outbox_batches);
    let (ok, code, ready) = http
        .poll_json("/readyz", Duration::from_secs(20), |_, v| {
            v["checks"]["influxdb"]["status"] == "failing"
                && pqwatch::metrics::Metrics::get(&m.sink.outbox_batches) >= batches_before + 3
        })
        .await;
    assert!(
        ok,
        "no failing write and growing outbox within 20 s: {code} {ready:#}"
    );
    assert_eq!(code, 200, "still ready: {ready:#}");
    let influx = &ready["checks"]["influxdb"];
    assert_eq!(influx["ok"], true);
    assert_eq!(influx["outbox_below_bound"], true);
    assert!(
        influx["consecutive_failures"].as_u64().unwrap() >= 1,
        "{influx:#}"
    );
    assert!(
        !influx["last_error"].as_str().unwrap_or("").is_empty(),
        "the failure is named: {influx:#}"
    );
    let (_, _, text) = http.get("/metrics").await;
    let fams = parse_exposition(&text);
    let get = |name: &str| fams[name].1[0].value;
    assert!(get("pqwatch_outbox_batches") >= 3.0);
    assert!(get("pqwatch_outbox_bytes") > 0.0);
    assert!(get("pqwatch_influxdb_consecutive_failures") >= 1.0);
    assert!(
        fams["pqwatch_points_retried"].1[0].value > 0.0,
        "retried points counted"
    );

    // Back: writes resume and the failure count clears.
    tokio::task::block_in_place(|| vm.restart()).expect("restart VictoriaMetrics");
    let (ok, code, ready) = http
        .poll_json("/readyz", Duration::from_secs(90), |c, v| {
            c == 200 && v["checks"]["influxdb"]["status"] == "writing"
        })
        .await;
    assert!(ok, "writing again within 90 s: {code} {ready:#}");

    daemon.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_with_influxdb_unreachable_is_not_ready() {
    e2e::init_tracing();
    // Nothing listens at this InfluxDB URL: every write fails at once.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut cfg = e2e::config(&config(&dead, free_port(), free_port()));
    cfg.influx.as_mut().expect("[influxdb]").max_outbox_bytes = 1;
    let sim = Sim::start(&cfg, "").await;
    // Nothing can be delivered: no point in a long drain at the end.
    let daemon = Daemon::start_with_grace(cfg, Duration::from_millis(500));
    let http = Http::new(http_addr(&daemon).await);
    let (ok, code, ready) = http
        .poll_json("/readyz", Duration::from_secs(20), |c, _| c == 503)
        .await;
    assert!(ok, "not 503 within 20 s: {code} {ready:#}");
    assert_eq!(ready["status"], "not ready");
    let influx = &ready["checks"]["influxdb"];
    assert_eq!(influx["ok"], false, "{influx:#}");
    assert_eq!(influx["status"], "failing");
    assert_eq!(influx["outbox_below_bound"], false);
    assert_eq!(influx["max_outbox_bytes"], 1);
    assert!(!influx["last_error"].as_str().unwrap().is_empty());
    // The other checks still pass, and liveness is unaffected.
    assert_eq!(ready["checks"]["state_db"]["ok"], true);
    assert_eq!(ready["checks"]["config"]["ok"], true);
    assert_eq!(http.json("/healthz").await.0, 200);
    daemon.stop().await;
    sim.stop().await;
}

const TOKEN: &str = "scrape-Secret-7f3a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_guards_every_endpoint_but_healthz() {
    e2e::init_tracing();
    let port = free_port();
    let text = TestConfig::new()
        .http("listen", "127.0.0.1:0")
        .http("token", TOKEN)
        .push(&format!(
            r#"
[[customers]]
id = "C1"

[[meters]]
id = "M1"
customer = "C1"
address = "127.0.0.1:{port}"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400
"#
        ))
        .to_string();
    let cfg = e2e::config(&text);
    assert!(
        !format!("{cfg:?}").contains(TOKEN),
        "the token shows in Debug"
    );
    let daemon = Daemon::start(cfg);
    let mut http = Http::new(http_addr(&daemon).await);

    for path in [
        "/metrics",
        "/readyz",
        "/api/meters",
        "/api/events?state=open",
    ] {
        let (code, headers, _) = http.get(path).await;
        assert_eq!(code, 401, "{path} without a token");
        let challenge = headers[reqwest::header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{path}: {challenge}");
    }
    http.token = Some(format!("{TOKEN}x"));
    assert_eq!(http.get("/metrics").await.0, 401, "a wrong token");
    http.token = Some(TOKEN[..TOKEN.len() - 1].to_string());
    assert_eq!(http.get("/metrics").await.0, 401, "a prefix of the token");
    http.token = None;
    assert_eq!(
        http.json("/healthz").await.0,
        200,
        "liveness needs no token"
    );

    http.token = Some(TOKEN.to_string());
    for path in ["/metrics", "/api/meters", "/api/events?state=open"] {
        let (code, _, body) = http.get(path).await;
        assert_eq!(code, 200, "{path} with the token: {body}");
    }
    // Without [influxdb] the check passes, saying so.
    let (code, ready) = http.json("/readyz").await;
    assert_eq!(code, 200, "{ready:#}");
    assert_eq!(ready["checks"]["influxdb"]["status"], "not configured");
    // The meter has no simulator: listed, never polled successfully.
    let (_, meters) = http.json("/api/meters").await;
    assert_eq!(meters[0]["id"], "M1");
    assert_eq!(meters[0]["status"], "never_polled");
    let (code, bad) = http.json("/api/events?state=opne").await;
    assert_eq!(code, 400, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("state"), "{bad}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_address_in_use_stops_the_start_naming_http_listen() {
    e2e::init_tracing();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let text = TestConfig::new()
        .http("listen", addr.to_string())
        .push(&format!(
            r#"
[[customers]]
id = "C1"

[[meters]]
id = "M1"
customer = "C1"
address = "127.0.0.1:{}"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400
"#,
            free_port()
        ))
        .to_string();
    let cfg = e2e::config(&text);
    let run = pqwatch::app::run(
        cfg,
        tokio_util::sync::CancellationToken::new(),
        pqwatch::app::Options::default(),
        pqwatch::app::Handles::default(),
    );
    let err = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("returns at once")
        .expect_err("the start fails");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!("http.listen = \"{addr}\"")) && msg.contains("cannot listen"),
        "{msg}"
    );
}
