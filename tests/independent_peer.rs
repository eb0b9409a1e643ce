//! pqwatch against someone else's encoding: a pymodbus server
//! (tests/peers/modbus_peer.py) serving registers written here BY HAND from
//! the register reference (/work/shared/reference/meter-registers.md), not
//! from pqwatch's profile files. Expected values are worked out here from
//! those registers and the configured PT/CT ratios.

mod common;
mod e2e;

use common::{ExportedSeries, ModbusPeer, TestConfig, VictoriaMetrics, find_series};
use e2e::{Daemon, close, pqwatch_cmd, run_to_end};
use serde_json::{Value, json};
use std::time::Duration;

/// f32 round trip: 1 part in 10⁶ is far above f32 rounding (6·10⁻⁸) and far
/// below any scaling mistake.
const TOL: f64 = 1e-6;

fn f32_at(address: u16, value: f64) -> Value {
    json!({"address": address, "type": "f32", "word_order": "ABCD", "value": value})
}

/// Registers from the reference, section by section.
fn spec() -> Value {
    json!({"units": {
        // §2 Janitza UMG 96RM: FC3, float32 ABCD, wire = doc address.
        "1": {"holding": [
            f32_at(19000, 57.5),   // U L1-N, V secondary
            f32_at(19002, 57.7),   // U L2-N
            f32_at(19004, 57.9),   // U L3-N
            f32_at(19012, 2.5),    // I L1, A secondary
            {"address": 19014, "raw": ["0x7FC0", "0x0000"]}, // I L2: a quiet NaN
            f32_at(19026, 400.0),  // P sum, W secondary
            f32_at(19050, 49.98),  // frequency, Hz
            f32_at(19068, 123456.0), // real energy consumed, Wh secondary
            f32_at(1000, 57.5),    // harmonic U L1, order 1 (fundamental), V
            f32_at(1008, 1.725),   // order 5 at base + 2·(5−1), V
        ]},
        // §5 Carlo Gavazzi EM24: FC4, int32 low word first, fixed scales.
        "2": {"input": [
            {"address": 0, "type": "i32", "word_order": "CDAB", "value": 2305},  // 0.1 V
            {"address": 12, "type": "i32", "word_order": "CDAB", "value": 5000}, // 0.001 A
            {"address": 50, "type": "i16", "value": 950},  // PF L1, 0.001
            {"address": 55, "type": "i16", "value": 500},  // Hz, 0.1
        ]},
        // §1 Eastron SDM630: FC4, float32 ABCD, wire = doc no. − 30001.
        "3": {"input": [
            f32_at(0, 231.0),    // 30001 U L1-N, V
            f32_at(70, 50.01),   // 30071 frequency, Hz
            f32_at(72, 1234.5),  // 30073 import energy, kWh
        ]},
    }})
}

const PT: f64 = 10_000.0 / 100.0;
const CT: f64 = 200.0 / 5.0;

/// (meter, field, expected primary-side value in pqwatch's canonical unit).
fn expected() -> Vec<(&'static str, &'static str, f64)> {
    vec![
        ("PEER-JAN", "voltage_l1_n", 57.5 * PT),             // 5750 V
        ("PEER-JAN", "voltage_l2_n", 57.7 * PT),             // 5770 V
        ("PEER-JAN", "voltage_l3_n", 57.9 * PT),             // 5790 V
        ("PEER-JAN", "current_l1", 2.5 * CT),                // 100 A
        ("PEER-JAN", "active_power_total", 400.0 * PT * CT), // 1.6 MW
        ("PEER-JAN", "frequency", 49.98),
        (
            "PEER-JAN",
            "energy_active_import_total",
            123_456.0 / 1000.0 * PT * CT,
        ), // 493 824 kWh
        ("PEER-JAN", "harmonic_voltage_l1_n_h5", 1.725 / 57.5 * 100.0), // 3 %
        ("PEER-EM24", "voltage_l1_n", 230.5),
        ("PEER-EM24", "current_l1", 5.0),
        ("PEER-EM24", "power_factor_l1", 0.95),
        ("PEER-EM24", "frequency", 50.0),
        ("PEER-SDM", "voltage_l1_n", 231.0),
        ("PEER-SDM", "frequency", 50.01),
        ("PEER-SDM", "energy_active_import_total", 1234.5),
    ]
}

fn config(port: u16, influx_url: &str) -> String {
    TestConfig::new()
        .influx_v2(influx_url)
        .polling("1s", "300ms")
        .push(&format!(
            r#"
[[customers]]
id = "C-PEER"

[[meters]]
id = "PEER-JAN"
customer = "C-PEER"
address = "127.0.0.1:{port}"
unit = 1
profile = "janitza-umg96rm"
nominal_voltage = 10000
pt_ratio = "10000/100"
ct_ratio = "200/5"
fields = ["voltage_l1_n", "voltage_l2_n", "voltage_l3_n", "current_l1", "current_l2",
          "active_power_total", "frequency", "energy_active_import_total",
          "harmonic_voltage_l1_n_h5"]

[[meters]]
id = "PEER-EM24"
customer = "C-PEER"
address = "127.0.0.1:{port}"
unit = 2
profile = "carlo-gavazzi-em24"
nominal_voltage = 400
fields = ["voltage_l1_n", "current_l1", "power_factor_l1", "frequency"]

[[meters]]
id = "PEER-SDM"
customer = "C-PEER"
address = "127.0.0.1:{port}"
unit = 3
profile = "eastron-sdm630"
nominal_voltage = 400
fields = ["voltage_l1_n", "frequency", "energy_active_import_total"]
"#
        ))
        .to_string()
}

fn sample_count(all: &[ExportedSeries], meter: &str, field: &str) -> usize {
    find_series(all, &format!("meter_{field}"), &[("meter", meter)])
        .map(|s| s.values.len())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_encoded_registers_decode_to_exact_primary_values() -> anyhow::Result<()> {
    e2e::init_tracing();
    let peer = ModbusPeer::start(&spec())?;
    let vm = VictoriaMetrics::start()?;
    let cfg = e2e::config(&config(peer.port(), &vm.url()));
    let daemon = Daemon::start(cfg);

    let want = expected();
    let waited = vm
        .wait_for_series(
            r#"{__name__=~"meter_.*"}"#,
            |s| want.iter().all(|(m, f, _)| sample_count(s, m, f) >= 2),
            Duration::from_secs(10),
        )
        .await;
    let run = daemon.stop().await;
    let all = waited
        .into_result()
        .map_err(|e| e.context(format!("peer log:\n{}", peer.log_tail(20))))?;

    for (meter, field, value) in &want {
        let s = find_series(&all, &format!("meter_{field}"), &[("meter", meter)]).unwrap();
        for (t, v) in s.points() {
            assert!(
                close(v, *value, TOL),
                "{meter} {field} at {t} = {v}, want {value}"
            );
            assert_eq!(t % 1000, 0, "{meter} {field}: timestamp {t}");
        }
    }
    // The NaN current is dropped and counted; its neighbours are not.
    assert!(
        find_series(&all, "meter_current_l2", &[("meter", "PEER-JAN")]).is_none(),
        "a NaN register must not produce a series"
    );
    assert!(run.get(|m| &m.polling.fields_dropped) >= 1);
    // `fields = [...]` limits what is written: exactly the configured fields
    // (less the NaN one) and nothing else.
    for meter in ["PEER-JAN", "PEER-EM24", "PEER-SDM"] {
        let mut got: Vec<String> = all
            .iter()
            .filter(|s| s.label("meter") == Some(meter))
            .map(|s| s.name().trim_start_matches("meter_").to_string())
            .collect();
        got.sort();
        let mut exp: Vec<String> = want
            .iter()
            .filter(|w| w.0 == meter)
            .map(|w| w.1.to_string())
            .collect();
        exp.sort();
        assert_eq!(got, exp, "{meter}: series written");
    }
    assert_eq!(run.get(|m| &m.polling.read_timeouts), 0);
    assert_eq!(run.get(|m| &m.polling.read_exceptions), 0);
    Ok(())
}

/// `pqwatch probe --json` against the same peer.
#[test]
fn probe_json_reads_the_peer() -> anyhow::Result<()> {
    let peer = ModbusPeer::start(&spec())?;
    let dir = tempfile::tempdir()?;
    // No database is needed to probe; the URL is never contacted.
    let path = common::write_file(
        dir.path(),
        "pqwatch.toml",
        &config(peer.port(), "http://127.0.0.1:9"),
    )?;
    let probe = |meter: &str| {
        let out = run_to_end(
            pqwatch_cmd(&[
                "probe",
                "--json",
                "-c",
                path.to_str().unwrap(),
                "--meter",
                meter,
            ]),
            Duration::from_secs(15),
        );
        assert_eq!(out.code, Some(0), "{out}");
        let v: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("probe output is not JSON ({e}):\n{out}"));
        v
    };

    let jan = probe("PEER-JAN");
    assert_eq!(jan["meter"], "PEER-JAN");
    assert_eq!(jan["unit"], 1);
    let values = &jan["values"];
    for (meter, field, want) in expected() {
        if meter != "PEER-JAN" {
            continue;
        }
        let got = values[field]
            .as_f64()
            .unwrap_or_else(|| panic!("no {field} in {jan:#}"));
        assert!(close(got, want, TOL), "{field} = {got}, want {want}");
    }
    assert!(values.get("current_l2").is_none(), "{jan:#}");
    let dropped = jan["dropped"].as_array().expect("dropped is a list");
    assert!(
        dropped.iter().any(|d| d["field"] == "current_l2"),
        "current_l2 should be reported as dropped: {jan:#}"
    );
    // Every read the probe made succeeded.
    for r in jan["reads"].as_array().expect("reads") {
        assert!(r["result"].as_str().unwrap_or("").starts_with("ok"), "{r}");
    }

    let em24 = probe("PEER-EM24");
    let u = em24["values"]["voltage_l1_n"].as_f64().expect("voltage");
    assert!(close(u, 230.5, TOL), "EM24 voltage {u}");
    Ok(())
}
