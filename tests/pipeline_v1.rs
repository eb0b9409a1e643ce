//! End to end through the InfluxDB 1.x `/write` API (`api = "v1"`), against
//! a real InfluxDB 1.6 with authentication, gzip on.

mod common;
mod e2e;

use common::{InfluxDb1, TestConfig, fleet, free_port};
use e2e::{Daemon, Running, Sim, close, instants, pqwatch_cmd, wait_until};
use serde_json::Value;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

const SQRT3: f64 = 1.732_050_807_568_877_2;

fn v1_config(influx_url: &str, gw: u16, user: &str, password: &str) -> String {
    TestConfig::new()
        .state_dir("state")
        .influx_v1(influx_url, "pq")
        .influx("username", user)
        .influx("password", password)
        .influx("gzip", true)
        .polling("1s", "300ms")
        .push(
            r#"
[[customers]]
id = "C-HV"
name = "High voltage customer"
"#,
        )
        .push(&fleet::hv_meter("V1-JAN", "C-HV", gw, 1))
        .push(&format!(
            r#"
[[meters]]
id = "V1-SDM"
customer = "C-HV"
address = "127.0.0.1:{gw}"
unit = 2
profile = "eastron-sdm630"
nominal_voltage = 400
ct_ratio = "100/5"
fields = ["voltage_l1_n", "current_l1", "frequency"]
"#
        ))
        .to_string()
}

/// The rows of the first series of the first statement (`[]` if none).
fn rows(out: &Value) -> Vec<Vec<Value>> {
    out["results"][0]["series"][0]["values"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r.as_array().cloned().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_with_auth_and_gzip_stores_primary_side_values() -> anyhow::Result<()> {
    e2e::init_tracing();
    let db = InfluxDb1::start_with_auth("admin", "admin-pass")?;
    db.create_database("pq").await?;
    // pqwatch writes as a user that may only write, as in production.
    db.query("", "CREATE USER pqwriter WITH PASSWORD 'wr1ter-pass'")
        .await?;
    db.query("", "GRANT WRITE ON pq TO pqwriter").await?;

    let gw = free_port();
    let cfg = e2e::config(&v1_config(&db.url(), gw, "pqwriter", "wr1ter-pass"));
    let sim = Sim::start(&cfg, "").await;
    let daemon = Daemon::start(cfg);
    daemon.run_until(3500).await;
    let run = daemon.stop().await;
    sim.stop().await;

    assert_eq!(run.get(|m| &m.sink.batches_failed), 0);
    assert_eq!(run.get(|m| &m.sink.points_dropped), 0);
    let want = instants(run.started_ms + 300, run.stopped_ms - 300, 1000);
    assert!(want.len() >= 2, "window too short: {want:?}");

    for (meter, nominal_ll) in [("V1-JAN", 10_000.0), ("V1-SDM", 400.0)] {
        let out = db
            .query(
                "pq",
                &format!("SELECT voltage_l1_n, frequency FROM meter WHERE meter='{meter}'"),
            )
            .await?;
        let series = &out["results"][0]["series"][0];
        assert_eq!(
            series["columns"],
            serde_json::json!(["time", "voltage_l1_n", "frequency"]),
            "{out}"
        );
        let rows = rows(&out);
        let ts: Vec<i64> = rows.iter().map(|r| r[0].as_i64().unwrap()).collect();
        for t in &want {
            assert!(ts.contains(t), "{meter}: no point at {t}; have {ts:?}");
        }
        assert!(ts.iter().all(|t| t % 1000 == 0), "{meter}: {ts:?}");
        assert!(
            ts.windows(2).all(|w| w[1] - w[0] == 1000),
            "{meter}: {ts:?}"
        );
        let u_ph = nominal_ll / SQRT3;
        for r in &rows {
            let v = r[1].as_f64().expect("voltage is a number");
            let f = r[2].as_f64().expect("frequency is a number");
            assert!(
                close(v, u_ph, 0.01),
                "{meter} at {}: U = {v} V, want {u_ph:.1} ± 1 %",
                r[0]
            );
            assert!(
                (49.9..=50.1).contains(&f),
                "{meter} at {}: f = {f} Hz",
                r[0]
            );
        }
    }

    // The customer tag is there, and every point pqwatch counted is stored.
    let out = db
        .query(
            "pq",
            "SELECT count(voltage_l1_n) FROM meter WHERE customer='C-HV'",
        )
        .await?;
    let n = rows(&out)[0][1].as_i64().unwrap_or(0);
    assert!(n >= 2 * want.len() as i64, "{out}");
    // Every measurement counts: window aggregates (pq_1m, …) too, when
    // the run crosses a window boundary.
    let out = db.query("pq", "SELECT count(*) FROM /.*/").await?;
    let stored: i64 = out["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .map(|row| {
            row.as_array()
                .map(|r| r[1..].iter().filter_map(Value::as_i64).sum::<i64>())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(stored as u64, run.get(|m| &m.sink.points_written), "{out}");
    Ok(())
}

/// A wrong password: nothing is written, the failures are counted, and the
/// log says which setting to fix without ever printing the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_wrong_password_writes_nothing_and_names_the_setting() -> anyhow::Result<()> {
    e2e::init_tracing();
    const WRONG: &str = "Wr0ng-S3cret-4711";
    let db = InfluxDb1::start_with_auth("admin", "the-right-one")?;
    db.create_database("pq").await?;
    let gw = free_port();
    let text = v1_config(&db.url(), gw, "admin", WRONG);
    let cfg = e2e::config(&text);
    let sim = Sim::start(&cfg, "").await;

    // The binary, as an operator runs it.
    let dir = tempfile::tempdir()?;
    let path = common::write_file(dir.path(), "pqwatch.toml", &text)?;
    let mut bin = Running::spawn(
        pqwatch_cmd(&["run", "-c", path.to_str().unwrap()]),
        dir.path(),
    );
    // The same config in-process, to read its counters. A short grace: the
    // batches can never be delivered.
    let daemon = Daemon::start_with_grace(cfg, Duration::from_millis(500));

    let ok = wait_until(Duration::from_secs(10), || {
        daemon.metrics().sink.batches_failed.load(Relaxed) >= 1
            && bin
                .stderr()
                .contains("InfluxDB refuses our writes; data is kept")
    })
    .await;
    let stderr = bin.stderr();
    assert!(
        bin.exited().is_none(),
        "pqwatch run exited on a write error:\n{stderr}"
    );
    bin.kill();
    let run = daemon.stop().await;
    sim.stop().await;
    assert!(
        ok,
        "no failed batch within 10 s: batches_failed = {}; binary stderr:\n{stderr}",
        run.get(|m| &m.sink.batches_failed)
    );

    assert_eq!(run.get(|m| &m.sink.points_written), 0);
    assert!(
        run.get(|m| &m.polling.polls_ok) >= 1,
        "the meters were polled"
    );
    assert!(stderr.contains("401"), "{stderr}");
    assert!(
        stderr.contains("influxdb.username/password"),
        "the log should name the setting to fix:\n{stderr}"
    );
    assert!(
        !stderr.contains(WRONG),
        "the password appears in the log:\n{stderr}"
    );

    let out = db.query("pq", "SHOW MEASUREMENTS").await?;
    assert!(
        out["results"][0].get("series").is_none(),
        "something was written: {out}"
    );
    Ok(())
}

/// Tags arrive in InfluxDB 1.x exactly as configured, whatever characters
/// they hold, and every point is stored.
///
/// InfluxDB 1.x line protocol escapes only `,`, `=` and space in tag values:
/// a backslash is literal (the line `a\\b` stores the value `a\\b`, two
/// backslashes), and a line whose tag value ends in an escaped backslash is
/// rejected (400, partial write). (VictoriaMetrics' parser does unescape
/// `\\`, so the v2 test cannot see this.) pqwatch therefore writes
/// backslashes unescaped for v1, and its config check refuses a tag value
/// ending in one (`config::tests::v1_refuses_tag_values_ending_in_a_backslash`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_tag_values_arrive_exactly_as_configured() -> anyhow::Result<()> {
    e2e::init_tracing();
    let db = InfluxDb1::start()?;
    db.create_database("pq").await?;
    let gw = free_port();
    // In TOML basic strings `\\` is one backslash.
    let text = TestConfig::new()
        .state_dir("state")
        .influx_v1(&db.url(), "pq")
        .polling("1s", "300ms")
        .push(&format!(
            r#"
[[customers]]
id = "Key Account 7, Nord=1"

[[meters]]
id = "TAG-CLEAN"
customer = "Key Account 7, Nord=1"
address = "127.0.0.1:{gw}"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400
fields = ["voltage_l1_n"]
tags = {{ feeder = "F 12, bank=east" }}

[[meters]]
id = "TAG-BACKSLASH"
customer = "Key Account 7, Nord=1"
address = "127.0.0.1:{gw}"
unit = 2
profile = "eastron-sdm630"
nominal_voltage = 400
fields = ["voltage_l1_n"]
tags = {{ location = "Hall 3\\Bay 2" }}

"#
        ))
        .to_string();
    let cfg = e2e::config(&text);
    let sim = Sim::start(&cfg, "").await;
    let daemon = Daemon::start_with_grace(cfg, Duration::from_secs(3));
    daemon.run_until(3500).await;
    let run = daemon.stop().await;
    sim.stop().await;
    let want = instants(run.started_ms + 300, run.stopped_ms - 300, 1000);

    // Collect every problem, then fail once with all of them.
    let mut problems = Vec::new();
    for meter in ["TAG-CLEAN", "TAG-BACKSLASH"] {
        let out = db
            .query(
                "pq",
                &format!("SELECT count(voltage_l1_n) FROM meter WHERE meter='{meter}'"),
            )
            .await?;
        let n = rows(&out).first().and_then(|r| r[1].as_i64()).unwrap_or(0);
        if n < want.len() as i64 {
            problems.push(format!(
                "{meter}: {n} points stored, want at least {} ({want:?})",
                want.len()
            ));
        }
    }
    for (key, value) in [
        ("customer", "Key Account 7, Nord=1"),
        ("feeder", "F 12, bank=east"),
        ("location", "Hall 3\\Bay 2"),
    ] {
        let out = db
            .query(
                "pq",
                &format!("SHOW TAG VALUES FROM meter WITH KEY = \"{key}\""),
            )
            .await?;
        let got: Vec<String> = rows(&out)
            .iter()
            .filter_map(|r| r.get(1).and_then(Value::as_str).map(str::to_string))
            .collect();
        if got != [value] {
            problems.push(format!("tag {key}: stored {got:?}, configured {value:?}"));
        }
    }
    for (what, n) in [
        ("batches_failed", run.get(|m| &m.sink.batches_failed)),
        ("points_dropped", run.get(|m| &m.sink.points_dropped)),
    ] {
        if n != 0 {
            problems.push(format!("{what} = {n}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}
