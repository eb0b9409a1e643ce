//! The `pqwatch` command line as an operator meets it: `check` on broken and
//! on shipped configs, `profiles`, and environment overrides.

mod common;
mod e2e;

use common::{TestConfig, write_file};
use e2e::{Output, pqwatch_cmd, run_to_end};
use std::path::{Path, PathBuf};
use std::time::Duration;

const EX_CONFIG: i32 = 78;

fn pqwatch(args: &[&str]) -> Output {
    run_to_end(pqwatch_cmd(args), Duration::from_secs(15))
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Six independent mistakes, one per entry, so that none hides another
/// (an entry with an unknown key is rejected as a whole).
const BROKEN: &str = r#"
[daemon]
profile_dir = "/nonexistent"

[influx]
url = "http://127.0.0.1:8086"

[[customers]]
id = "C1"

[[meters]]
id = "M0"
customer = "C1"
address = "127.0.0.1:502"
unit = 1
profile = "janitza-umg96"
nominal_voltage = 10000

[[meters]]
id = "M1"
customer = "C1"
address = "127.0.0.1:502"
unit = 300
profile = "eastron-sdm630"
nominal_voltage = 400

[[meters]]
id = "M2"
customer = "C1"
address = "127.0.0.1:502"
untis = 3
profile = "eastron-sdm630"
nominal_voltage = 400

[[meters]]
id = "M3"
customer = "C-MISSING"
address = "127.0.0.1:502"
unit = 4
profile = "eastron-sdm630"
nominal_voltage = 400

[[meters]]
id = "M4"
customer = "C1"
address = "127.0.0.1:502"
unit = 5
profile = "eastron-sdm630"
nominal_voltage = 400
interval = "5 parsecs"
"#;

/// A district file in conf.d/: its meter is appended as meters[5].
const DISTRICT: &str = r#"
[[meters]]
id = "D1"
customer = "C1"
address = "127.0.0.1:503"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400
pt_ratio = "100/0"
"#;

#[test]
fn check_lists_every_mistake_with_its_key_and_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let main = write_file(dir.path(), "broken.toml", BROKEN)?;
    std::fs::create_dir(dir.path().join("conf.d"))?;
    let district = write_file(&dir.path().join("conf.d"), "20-district.toml", DISTRICT)?;

    let out = pqwatch(&["check", "-c", main.to_str().unwrap()]);
    assert_eq!(out.code, Some(EX_CONFIG), "{out}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    // Each mistake on its own line, starting with the key path, saying what
    // was wrong.
    let expect: &[(&str, &[&str])] = &[
        ("influx", &["unknown section", "influxdb"]),
        ("meters[0].profile", &["janitza-umg96", "janitza-umg96rm"]),
        ("meters[1].unit", &["300"]),
        ("meters[2]", &["untis"]),
        ("meters[3].customer", &["C-MISSING"]),
        ("meters[4].interval", &["5 parsecs"]),
        ("meters[5].pt_ratio", &[district.to_str().unwrap()]),
    ];
    for (key, words) in expect {
        let line = lines
            .iter()
            .find(|l| {
                let l = l.trim_start();
                l.starts_with(&format!("{key}:")) || l.starts_with(&format!("{key}."))
            })
            .unwrap_or_else(|| panic!("no problem reported for {key}:\n{out}"));
        for w in *words {
            assert!(line.contains(w), "{key}: line lacks {w:?}: {line}\n{out}");
        }
    }
    // The problems from the main file do not claim to come from conf.d.
    for (key, _) in &expect[..6] {
        let line = lines
            .iter()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap();
        assert!(!line.contains("conf.d"), "{line}");
    }
    assert!(out.stdout.is_empty(), "no plan for a broken config: {out}");
    Ok(())
}

/// Issue 14 item 11, as an operator meets it: one entry with a missing key,
/// an unknown key, an unknown profile and customer, a bad address and an
/// out-of-range unit; type errors; a key under the wrong header; a typo in
/// a customer's limits. `pqwatch check` reports every one at once, in the
/// user's words, each under the key that holds it, and exits 78.
const ENTANGLED: &str = r#"
[daemon]
profile_dir = "/nonexistent"

[polling]
interval = 5
nominal_voltage = 400

[[customers]]
id = "C1"
limits = { preset = "gbb" }
max_demand_kw = "300"

[[meters]]
id = "M1"
customer = "C2"
address = "10.0.0.5"
unit = 300
profile = "janitza-umg96"
untis = 3

[[meters]]
id = "M2"
customer = "C1"
address = "10.0.0.5:502"
unit = 2
profile = "eastron-sdm630"
nominal_voltage = 400
timeout = 2
phases = "3"
"#;

#[test]
fn check_reports_mistakes_behind_a_structural_one_in_the_users_words() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let main = write_file(dir.path(), "entangled.toml", ENTANGLED)?;
    let out = pqwatch(&["check", "-c", main.to_str().unwrap()]);
    assert_eq!(out.code, Some(EX_CONFIG), "{out}");
    for needle in [
        "polling.interval: 5 is not a duration; write \"5s\"",
        "polling.nominal_voltage: unknown key here; it belongs under [[meters]]",
        "customers[0].limits.preset: unknown limits preset \"gbb\" (did you mean \"gb\"?)",
        "customers[0].max_demand_kw: \"300\" is not a number; write it without quotes, e.g. 300",
        "meters[0].nominal_voltage: missing",
        "meters[0].untis: unknown key (did you mean \"unit\"?)",
        "meters[0].customer: unknown customer \"C2\"",
        "meters[0].address: \"10.0.0.5\" is not host:port",
        "meters[0].unit: 300 is not a Modbus unit id",
        "meters[0].profile: unknown profile \"janitza-umg96\"",
        "meters[1].timeout: 2 is not a duration; write \"2s\"",
        "meters[1].phases: \"3\" is not a whole number",
    ] {
        assert!(out.stderr.contains(needle), "missing {needle:?} in:\n{out}");
    }
    // The customer's typo once, not again under its meter; nothing in Rust.
    assert_eq!(out.stderr.matches("\"gbb\"").count(), 1, "{out}");
    for rust in [
        "invalid type",
        "expected f64",
        "expected u8",
        "expected a string",
    ] {
        assert!(!out.stderr.contains(rust), "{rust:?} in:\n{out}");
    }
    Ok(())
}

/// Meters, customers and gateways of a config file (plus its conf.d),
/// counted with a plain TOML parser.
fn count(path: &Path) -> (usize, usize, usize, Vec<String>) {
    let mut files = vec![path.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(path.parent().unwrap().join("conf.d")) {
        let mut extra: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        extra.sort();
        files.extend(extra);
    }
    let (mut customers, mut meters, mut ids) = (0, 0, Vec::new());
    let mut gateways = std::collections::BTreeSet::new();
    for f in files {
        let t: toml::Table = std::fs::read_to_string(&f).unwrap().parse().unwrap();
        let arr = |k: &str| {
            t.get(k)
                .and_then(|v| v.as_array())
                .cloned()
                .unwrap_or_default()
        };
        customers += arr("customers").len();
        for m in arr("meters") {
            if m.get("enabled").and_then(|v| v.as_bool()) == Some(false) {
                continue;
            }
            meters += 1;
            ids.push(m["id"].as_str().unwrap().to_string());
            gateways.insert(m["address"].as_str().unwrap().to_string());
        }
        for g in arr("gateways") {
            gateways.insert(g["address"].as_str().unwrap().to_string());
        }
    }
    (customers, meters, gateways.len(), ids)
}

fn check_shipped(rel: &str) {
    let path = repo(rel);
    assert!(
        path.exists(),
        "{rel} does not exist (the documented example config is part of the release)"
    );
    let out = pqwatch(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{rel}: {out}");
    let (c, m, g, ids) = count(&path);
    assert!(out.stdout.contains("is valid"), "{out}");
    assert!(
        out.stdout
            .contains(&format!("{c} customers, {m} meters, {g} gateways")),
        "{rel}: expected {c} customers, {m} meters, {g} gateways:\n{out}"
    );
    // The plan: one row per meter.
    for id in ids {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(&id)),
            "{rel}: meter {id} not in the plan:\n{out}"
        );
    }
}

#[test]
fn shipped_example_config_passes_check() {
    check_shipped("config/pqwatch.toml");
}

#[test]
fn demo_config_passes_check() {
    check_shipped("config/demo.toml");
}

#[test]
fn profiles_lists_and_shows_the_builtins() {
    let out = pqwatch(&["profiles"]);
    assert_eq!(out.code, Some(0), "{out}");
    for name in [
        "eastron-sdm630",
        "janitza-umg96rm",
        "siemens-pac3200",
        "schneider-pm5100",
        "carlo-gavazzi-em24",
    ] {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(name)),
            "{name} not listed:\n{out}"
        );
    }

    let out = pqwatch(&["profiles", "show", "janitza-umg96rm"]);
    assert_eq!(out.code, Some(0), "{out}");
    // Reference §2a: U L1-N is FC3, wire address 19000, float32 ABCD.
    let row = out
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some("voltage_l1_n"))
        .unwrap_or_else(|| panic!("no voltage_l1_n row:\n{out}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[1..5], ["3", "19000", "f32", "ABCD"], "{row}");

    let out = pqwatch(&["profiles", "show", "janitza-umg96"]);
    assert_ne!(out.code, Some(0), "{out}");
    assert!(out.stderr.contains("janitza-umg96rm"), "a hint: {out}");
}

/// InfluxDB's v2 API without a token in the file.
fn needs_token() -> String {
    TestConfig::new()
        .influx("url", "http://127.0.0.1:8086")
        .influx("api", "v2")
        .influx("org", "utility")
        .influx("bucket", "pqwatch")
        .push(
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
"#,
        )
        .to_string()
}

#[test]
fn token_from_the_environment() -> anyhow::Result<()> {
    const TOKEN: &str = "env-tok3n-5f2a9";
    let dir = tempfile::tempdir()?;
    let path = write_file(dir.path(), "pqwatch.toml", &needs_token())?;
    let path = path.to_str().unwrap();

    let mut cmd = pqwatch_cmd(&["check", "-c", path]);
    cmd.env("PQWATCH__INFLUXDB__TOKEN", TOKEN);
    let out = run_to_end(cmd, Duration::from_secs(15));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("api v2"), "{out}");
    assert!(
        !out.stdout.contains(TOKEN) && !out.stderr.contains(TOKEN),
        "the token is printed: {out}"
    );

    let out = pqwatch(&["check", "-c", path]);
    assert_eq!(out.code, Some(EX_CONFIG), "{out}");
    assert!(
        out.stderr
            .lines()
            .any(|l| l.trim_start().starts_with("influxdb.token:")),
        "{out}"
    );
    Ok(())
}
