use super::*;
use std::collections::HashMap;
use std::time::Duration;

const GOOD: &str = r#"
[daemon]
profile_dir = "/nonexistent"

[influxdb]
url = "http://127.0.0.1:8086/"
org = "grid"
bucket = "pq"
token = "s3cr3t-token"

[polling]
interval = "10s"

[[customers]]
id = "C1"
name = "钢铁厂"
tags = { region = "east" }

[[meters]]
id = "M1"
customer = "C1"
address = "10.0.0.5:502"
unit = 3
profile = "janitza-umg96rm"
pt_ratio = "10000/100"
ct_ratio = 40
nominal_voltage = 10000
tags = { feeder = "F1" }
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p
}

fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "pqwatch.toml", text);
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    load_with_env(&p, env)
}

#[test]
fn a_good_config_becomes_typed_values() {
    let c = load_text(GOOD, &[]).unwrap();
    let m = &c.meters[0];
    assert_eq!(m.pt_ratio, 100.0);
    assert_eq!(m.ct_ratio, 40.0);
    assert_eq!(m.interval, Duration::from_secs(10), "inherits [polling]");
    assert_eq!(m.timeout, Duration::from_secs(1));
    assert_eq!(m.phases, 3);
    assert_eq!(m.tags["meter"], "M1");
    assert_eq!(m.tags["customer"], "C1");
    assert_eq!(m.tags["feeder"], "F1");
    assert_eq!(m.tags["region"], "east", "customer tags are inherited");
    let i = c.influx.as_ref().unwrap();
    assert_eq!(i.url, "http://127.0.0.1:8086", "trailing slash trimmed");
    assert!(matches!(&i.api, Api::V2 { org, .. } if org == "grid"));
    assert_eq!(c.gateways["10.0.0.5:502"].timeout, Duration::from_secs(1));
    assert_eq!(c.customers[0].name, "钢铁厂");
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let c = load_text(GOOD, &[]).unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("s3cr3t-token"));
    assert!(dbg.contains("[redacted]"));
}

#[test]
fn every_problem_is_reported_with_its_key_path() {
    let bad = r#"
[daemon]
profile_dir = "/nonexistent"

[influxdbb]
url = "x"

[polling]
interval = "5 parsecs"

[[customers]]
id = "C1"

[[meters]]
id = "M1"
customer = "C2"
address = "10.0.0.5"
unit = 300
profile = "janitza-umg96"
nominal_voltage = 10
pt_ratio = "10000/0"

[[meters]]
id = "M1"
customer = "C1"
address = "10.0.0.5:502"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400
untis = 3

[[meters]]
id = "M3"
customer = "C1"
address = "10.0.0.5:502"
unit = 2
profile = "eastron-sdm630"
nominal_voltage = 400
fields = ["voltage_l1_n", "frequncy"]
tags = { meter = "x", "Bad Key" = "v" }
"#;
    let e = load_text(bad, &[]).unwrap_err();
    let all = e.problems.join("\n");
    for needle in [
        "influxdbb: unknown section (did you mean \"influxdb\"?)",
        "polling.interval: \"5 parsecs\" is not a duration",
        "meters[0].customer: unknown customer \"C2\"",
        "meters[0].address: \"10.0.0.5\" is not host:port",
        "meters[0].unit: 300 is not a Modbus unit id",
        "meters[0].profile: unknown profile \"janitza-umg96\" (did you mean \"janitza-umg96rm\"?)",
        "meters[0].nominal_voltage: 10 V is implausible",
        "meters[0].pt_ratio: must be a positive number",
        "meters[1].untis: unknown key (did you mean \"unit\"?)",
        "meters[2].fields: \"frequncy\" is not a field of profile eastron-sdm630 (did you mean \"frequency\"?)",
        "meters[2].tags.meter: is reserved",
        "meters[2].tags.Bad Key: tag keys must be lowercase snake_case",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn conf_d_files_add_meters_and_are_named_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(dir.path(), "pqwatch.toml", GOOD);
    write(
        dir.path(),
        "conf.d/20-east.toml",
        r#"
[polling]
timeout = "300ms"
[[meters]]
id = "M2"
customer = "C1"
address = "10.0.0.6:502"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 380
"#,
    );
    let c = load_with_env(&main, HashMap::new()).unwrap();
    assert_eq!(c.meters.len(), 2, "conf.d meters are appended");
    assert_eq!(c.meters[1].timeout, Duration::from_millis(300));
    assert_eq!(
        c.meters[1].interval,
        Duration::from_secs(10),
        "tables merge key by key"
    );

    write(
        dir.path(),
        "conf.d/30-west.toml",
        "[[meters]]\nid = \"M3\"\ncustomer = \"C9\"\naddress = \"h:502\"\nunit = 1\nprofile = \"eastron-sdm630\"\nnominal_voltage = 380\n",
    );
    let e = load_with_env(&main, HashMap::new()).unwrap_err();
    assert!(
        e.problems[0].starts_with("meters[2].customer: unknown customer \"C9\"")
            && e.problems[0].ends_with("30-west.toml)"),
        "{e}"
    );
}

#[test]
fn environment_overrides_and_secret_files() {
    let without_token = GOOD.replace("token = \"s3cr3t-token\"\n", "");
    let e = load_text(&without_token, &[]).unwrap_err();
    assert!(
        e.problems
            .iter()
            .any(|p| p.starts_with("influxdb.token: missing")),
        "{e}"
    );

    let c = load_text(
        &without_token,
        &[
            ("PQWATCH__INFLUXDB__TOKEN", "from-env"),
            ("PQWATCH__INFLUXDB__BUCKET", "2026"),
        ],
    )
    .unwrap();
    match &c.influx.unwrap().api {
        Api::V2 { token, bucket, .. } => {
            assert_eq!(token.expose(), "from-env");
            assert_eq!(bucket, "2026", "numeric-looking env values stay strings");
        }
        other => panic!("{other:?}"),
    }

    let dir = tempfile::tempdir().unwrap();
    let tok = write(dir.path(), "token", "file-token\n");
    let with_file = without_token.replace(
        "bucket = \"pq\"",
        &format!("bucket = \"pq\"\ntoken_file = \"{}\"", tok.display()),
    );
    let c = load_text(&with_file, &[]).unwrap();
    match &c.influx.unwrap().api {
        Api::V2 { token, .. } => {
            assert_eq!(token.expose(), "file-token", "trailing newline trimmed");
        }
        other => panic!("{other:?}"),
    }

    let both = with_file.replace("bucket = \"pq\"", "bucket = \"pq\"\ntoken = \"x\"");
    let e = load_text(&both, &[]).unwrap_err();
    assert!(e.problems.iter().any(|p| p.contains("not both")), "{e}");

    let missing = without_token.replace(
        "bucket = \"pq\"",
        "bucket = \"pq\"\ntoken_file = \"/nonexistent/tok\"",
    );
    let e = load_text(&missing, &[]).unwrap_err();
    assert!(
        e.problems
            .iter()
            .any(|p| p.starts_with("influxdb.token_file: cannot read /nonexistent/tok")),
        "{e}"
    );
}

#[test]
fn v1_settings_are_checked() {
    let v1 = GOOD.replace(
        "org = \"grid\"\nbucket = \"pq\"\ntoken = \"s3cr3t-token\"",
        "api = \"v1\"\ndatabase = \"pq\"\nusername = \"pqwatch\"\npassword = \"pw\"\nretention_policy = \"autogen\"",
    );
    let c = load_text(&v1, &[]).unwrap();
    assert!(
        matches!(&c.influx.unwrap().api, Api::V1 { database, username: Some(u), .. } if database == "pq" && u == "pqwatch")
    );
    let mixed = v1.replace("database = \"pq\"", "database = \"pq\"\ntoken = \"t\"");
    let e = load_text(&mixed, &[]).unwrap_err();
    assert!(
        e.problems
            .iter()
            .any(|p| p.starts_with("influxdb.token: is a v2 setting")),
        "{e}"
    );
}

#[test]
fn two_meters_cannot_share_a_unit_on_one_gateway() {
    let dup = format!(
        "{GOOD}\n[[meters]]\nid = \"M2\"\ncustomer = \"C1\"\naddress = \"10.0.0.5:502\"\nunit = 3\nprofile = \"eastron-sdm630\"\nnominal_voltage = 400\n"
    );
    let e = load_text(&dup, &[]).unwrap_err();
    assert!(
        e.problems
            .iter()
            .any(|p| p.contains("unit 3 at 10.0.0.5:502 is already meter \"M1\"")),
        "{e}"
    );
}

#[test]
fn shipped_configs_are_valid() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let demo = std::fs::read_to_string(base.join("demo.toml")).unwrap();
    let c = from_str(&demo, &base).unwrap();
    assert!(c.meters.len() >= 5);
    let example = base.join("pqwatch.toml");
    let c = load_with_env(&example, HashMap::new()).unwrap();
    assert!(!c.meters.is_empty());
}

#[test]
fn v1_refuses_tag_values_ending_in_a_backslash() {
    let v1 = GOOD.replace(
        "org = \"grid\"\nbucket = \"pq\"\ntoken = \"s3cr3t-token\"",
        "api = \"v1\"\ndatabase = \"pq\"",
    );
    let trailing = v1.replace("feeder = \"F1\"", "feeder = \"LV\\\\\"");
    let e = load_text(&trailing, &[]).unwrap_err();
    assert!(
        e.problems
            .iter()
            .any(|p| p.starts_with("meters[0].tags.feeder: cannot end with a backslash")),
        "{e}"
    );
    // Inside a value, or with the v2 API, a backslash is fine.
    assert!(load_text(&v1.replace("feeder = \"F1\"", "feeder = \"A\\\\B\""), &[]).is_ok());
    assert!(load_text(&GOOD.replace("feeder = \"F1\"", "feeder = \"LV\\\\\""), &[]).is_ok());
}

#[test]
fn durability_and_sizes() {
    assert_eq!(parse_size("4GiB"), Some(4 << 30));
    assert_eq!(parse_size("512MiB"), Some(512 << 20));
    assert_eq!(parse_size("1GB"), Some(1_000_000_000));
    assert_eq!(parse_size("1000"), Some(1000));
    assert_eq!(parse_size("2 parsecs"), None);
    let c = load_text(
        &GOOD.replace(
            "token = \"s3cr3t-token\"",
            "token = \"t\"\ndurability = \"memory\"\nmax_outbox_bytes = \"256MiB\"",
        ),
        &[],
    )
    .unwrap();
    let i = c.influx.unwrap();
    assert_eq!(i.durability, Durability::Memory);
    assert_eq!(i.max_outbox_bytes, 256 << 20);
    let e = load_text(
        &GOOD.replace(
            "token = \"s3cr3t-token\"",
            "token = \"t\"\ndurability = \"sometimes\"\nmax_outbox_bytes = \"lots\"",
        ),
        &[],
    )
    .unwrap_err();
    let all = e.problems.join("\n");
    assert!(
        all.contains("influxdb.durability: \"sometimes\" is not"),
        "{all}"
    );
    assert!(
        all.contains("influxdb.max_outbox_bytes: \"lots\" is not a size"),
        "{all}"
    );
    let c = load_text(GOOD, &[]).unwrap();
    assert_eq!(
        c.influx.unwrap().durability,
        Durability::Always,
        "the default"
    );
    assert_eq!(c.daemon.shutdown_grace, Duration::from_secs(10));
}

#[test]
fn report_settings_are_checked_with_their_key_paths() {
    let bad = r#"
[daemon]
profile_dir = "/nonexistent"

[reports]
period = "year"
schedule = "0 25 1 * *"
voltage_target = 120
catch_up = "soon"
keep_days = 10
bcc = ["archive"]

[[customers]]
id = "C1"
recipients = ["ok@steel.example", "not an address"]
report = { schedule = "0 8 * *" }

[[customers]]
id = "C2"
report = { peroid = "week" }
"#;
    let e = load_text(bad, &[]).unwrap_err();
    let all = e.problems.join("\n");
    for needle in [
        "reports.period: ",
        "reports.schedule: hour field \"25\"",
        "reports.voltage_target: must be a percentage",
        "reports.catch_up: \"soon\" is not a duration",
        "reports.keep_days: must be at least 62",
        "reports.bcc[0]: \"archive\" is not an e-mail address",
        "customers[0].recipients[1]: \"not an address\" is not an e-mail address",
        "customers[0].report.schedule: expected 5 fields",
        "customers[1].report.peroid: unknown key (did you mean \"period\"?)",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }

    // Defaults: monthly at 08:00 on the 1st; a customer's period takes its
    // own default schedule; no recipients is allowed (no report).
    let good = r#"
[daemon]
profile_dir = "/nonexistent"

[[customers]]
id = "C1"
recipients = ["a@b.example"]

[[customers]]
id = "C2"
recipients = ["a@b.example"]
report = { period = "week" }

[[customers]]
id = "C3"
report = { enabled = false }
"#;
    let c = load_text(good, &[]).unwrap();
    let s = c.customers[0].report.as_ref().unwrap();
    assert_eq!(s.cron.to_string(), "0 8 1 * *");
    assert_eq!(s.period.as_str(), "month");
    let w = c.customers[1].report.as_ref().unwrap();
    assert_eq!(
        (w.period.as_str(), w.cron.to_string().as_str()),
        ("week", "0 8 * * 1")
    );
    assert!(c.customers[2].report.is_none());
    assert_eq!(c.reports.voltage_target, 95.0);
}

#[test]
fn shards_split_the_fleet_by_customer_and_stay_stable() {
    use super::sections::Cluster;
    let ids: Vec<String> = (0..2000).map(|i| format!("C{i:05}")).collect();
    for n in [2u32, 3, 5] {
        let mut counts = vec![0u32; n as usize];
        for id in &ids {
            let owners: Vec<u32> = (0..n)
                .filter(|s| {
                    Cluster {
                        shard: *s,
                        shards: n,
                    }
                    .owns(id)
                })
                .collect();
            assert_eq!(owners.len(), 1, "{id} owned by {owners:?} of {n}");
            counts[owners[0] as usize] += 1;
        }
        // Even enough: every shard within ±20 % of its fair share.
        let fair = ids.len() as f64 / f64::from(n);
        for c in &counts {
            assert!((f64::from(*c) - fair).abs() < 0.2 * fair, "{counts:?}");
        }
    }
    // 3 → 4 shards: only customers the new shard wins move (~1/4).
    let three = Cluster {
        shard: 0,
        shards: 3,
    };
    let four = Cluster {
        shard: 0,
        shards: 4,
    };
    let moved: Vec<&String> = ids
        .iter()
        .filter(|id| three.owner(id) != four.owner(id))
        .collect();
    assert!(
        moved.iter().all(|id| four.owner(id) == 3),
        "moved only to the new shard"
    );
    let share = moved.len() as f64 / ids.len() as f64;
    assert!((0.18..0.32).contains(&share), "{share}");

    // A config: every meter polled by exactly one of two instances, with
    // its customer.
    let text = |shard: u32| {
        let mut t = format!(
            "[daemon]\nprofile_dir = \"/nonexistent\"\n[cluster]\nshard = {shard}\nshards = 2\n"
        );
        for c in 0..40 {
            t += &format!("[[customers]]\nid = \"C{c}\"\n");
            for m in 0..2 {
                t += &format!(
                    "[[meters]]\nid = \"C{c}-M{m}\"\ncustomer = \"C{c}\"\naddress = \"127.0.0.1:{}\"\nunit = {}\nprofile = \"eastron-sdm630\"\nnominal_voltage = 400\n",
                    1000 + c,
                    m + 1
                );
            }
        }
        t
    };
    let a = load_text(&text(0), &[]).unwrap().for_shard();
    let b = load_text(&text(1), &[]).unwrap().for_shard();
    let mut all: Vec<&str> = a
        .meters
        .iter()
        .chain(&b.meters)
        .map(|m| m.id.as_str())
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 80);
    assert_eq!(a.meters.len() + b.meters.len(), 80);
    for cfg in [&a, &b] {
        for m in &cfg.meters {
            assert!(cfg.customers.iter().any(|c| c.id == m.customer));
            assert!(cfg.gateways.contains_key(&m.address));
        }
        assert_eq!(cfg.gateways.len(), cfg.customers.len());
    }
    let e = load_text("[cluster]\nshard = 2\nshards = 2\n", &[]).unwrap_err();
    assert!(
        e.problems
            .join("\n")
            .contains("cluster.shard: 2 is not below cluster.shards (2)"),
        "{e}"
    );
}

#[test]
fn phase_voltages_are_judged_on_the_standard_phase_voltage() {
    let meter = |extra: &str| {
        format!(
            "{GOOD}\n[[meters]]\nid = \"LV\"\ncustomer = \"C1\"\naddress = \"10.0.0.6:502\"\nunit = 1\nprofile = \"eastron-sdm630\"\nnominal_voltage = {extra}\n"
        )
    };
    let refs = |text: String| -> Vec<f64> {
        let c = load_text(&text, &[]).unwrap();
        c.meters[1].voltage_refs.iter().map(|r| r.2).collect()
    };
    // GB/T 156 220/380 V and IEC 60038 230/400 V: the pair, not U/√3.
    assert_eq!(refs(meter("380")), vec![220.0; 3]);
    assert_eq!(refs(meter("400")), vec![230.0; 3]);
    // Other voltages: U/√3; nominal_voltage_ln overrides.
    assert!((refs(meter("390"))[0] - 390.0 / 3f64.sqrt()).abs() < 1e-9);
    assert_eq!(refs(meter("380\nnominal_voltage_ln = 225")), vec![225.0; 3]);
    // MV on the declared supply voltage; the class (and limit row) stays 10 kV.
    let c = load_text(
        &GOOD.replace(
            "nominal_voltage = 10000",
            "nominal_voltage = 10000\ndeclared_voltage = 10500",
        ),
        &[],
    )
    .unwrap();
    assert!(c.meters[0].voltage_refs.iter().all(|r| r.2 == 10_500.0));
    assert_eq!(c.meters[0].limits.voltage.as_ref().unwrap().lower_pct, -7.0);
    let e = load_text(
        &meter("380\nnominal_voltage_ln = 0.22\ndeclared_voltage = 0"),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("meters[1].nominal_voltage_ln: 0.22 V is implausible"),
        "{e}"
    );
    assert!(
        e.contains("meters[1].declared_voltage: 0 V is implausible"),
        "{e}"
    );
    let e = load_text(&meter("380\nid = \"*x\""), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("duplicate key") || e.contains("must not start with"),
        "{e}"
    );
}

#[test]
fn a_suspension_to_a_date_includes_that_day() {
    let text = GOOD.replace(
        "tags = { region = \"east\" }",
        "tags = { region = \"east\" }\ncontracted_kva = 1000\nsuspensions = [{ from = \"2026-11-01\", to = \"2026-11-30\", kva = 600 }, { from = \"2026-12-02T08:00\", to = \"2026-12-02T18:00\", kva = 100 }, { from = \"2026-12-05\", to = \"2026-12-05\", kva = 100 }]",
    );
    let c = load_text(&text, &[]).unwrap();
    let tz = &c.timezone;
    let at = |s: &str| super::sections::local_ms(s, tz, false).unwrap();
    let s = &c.customers[0].suspensions;
    // 30 whole days: Nov 1 00:00 to Dec 1 00:00.
    assert_eq!(
        (s[0].from_ms, s[0].to_ms),
        (at("2026-11-01"), at("2026-12-01"))
    );
    // A date-time is the instant.
    assert_eq!(s[1].to_ms, at("2026-12-02T18:00"));
    // One day.
    assert_eq!(s[2].to_ms - s[2].from_ms, 86_400_000);
}

#[test]
fn demand_settings_are_checked() {
    let c = load_text(GOOD, &[]).unwrap();
    assert_eq!(c.rules.demand_window, Duration::from_secs(900));
    assert_eq!(
        c.rules.demand_slide,
        Duration::from_secs(60),
        "sliding by 1 minute"
    );
    assert_eq!(c.rules.suspension_window, Duration::from_secs(900));
    assert_eq!(c.rules.interruption_pct, 10.0);
    let c = load_text(&format!("{GOOD}\n[rules]\ndemand_mode = \"block\"\n"), &[]).unwrap();
    assert_eq!(c.rules.demand_slide, c.rules.demand_window);
    let e = load_text(
        &format!("{GOOD}\n[rules]\ndemand_mode = \"rolling\"\nsuspension_window = \"90s\"\ninterruption_threshold = 60\n"),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("rules.demand_mode: \"rolling\" is not \"sliding\" or \"block\""),
        "{e}"
    );
    assert!(
        e.contains("rules.suspension_window: must be a whole multiple of short_window"),
        "{e}"
    );
    assert!(e.contains("rules.interruption_threshold"), "{e}");
    let e = load_text(&format!("{GOOD}\n[rules]\ndemand_slide = \"7m\"\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rules.demand_slide: must divide demand_window"),
        "{e}"
    );
}

#[test]
fn ieee519_tdd_limit_from_the_short_circuit_ratio() {
    // 10 kV, Sk 100 MVA: Isc = 100e6 / (√3 × 10 000) = 5 773.5 A; I_L 200 A
    // → Isc/IL 28.9: the 20–50 row, TDD 8 %.
    let text = GOOD.replace(
        "tags = { region = \"east\" }",
        "tags = { region = \"east\" }\nshort_circuit_mva = 100\nmax_demand_current_a = 200\nlimits = { preset = \"ieee519\" }",
    );
    let c = load_text(&text, &[]).unwrap();
    let cur = c.meters[0].limits.current.clone().unwrap();
    let by_hand = 100e6 / (3f64.sqrt() * 10_000.0) / 200.0;
    assert!((cur.ratio - by_hand).abs() < 1e-9, "{}", cur.ratio);
    assert_eq!((cur.tdd, cur.odd[0]), (8.0, 7.0));
    // Individual orders in A of I_L: h5 7 % × 200 A = 14 A; h2 (2022) 7 A.
    let h = c.meters[0].limits.harmonic_current.clone().unwrap();
    assert!((h.amps[&5] - 14.0).abs() < 1e-9 && (h.amps[&2] - 7.0).abs() < 1e-9);
    let e = load_text(
        &text.replace(
            "preset = \"ieee519\"",
            "preset = \"ieee519\", ieee519_edition = \"2019\"",
        ),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("limits.ieee519_edition: \"2019\" is not \"2014\" or \"2022\""),
        "{e}"
    );
    // The GB preset has no current table (GB/T 14549's limits are amperes).
    let text = GOOD.replace(
        "tags = { region = \"east\" }",
        "tags = { region = \"east\" }\nshort_circuit_mva = 100\nmax_demand_current_a = 200",
    );
    assert!(
        load_text(&text, &[]).unwrap().meters[0]
            .limits
            .current
            .is_none()
    );
    let e = load_text(
        &GOOD.replace("tags = { region = \"east\" }", "short_circuit_mva = -3"),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("customers[0].short_circuit_mva: must be positive"),
        "{e}"
    );
}

/// Issue 14 item 11: a structural mistake (a missing key, an unknown key)
/// no longer hides the entry's other mistakes, type errors are in the
/// user's words, and a typo is reported under the key that holds it.
#[test]
fn structural_mistakes_do_not_hide_the_others() {
    let bad = r#"
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

[[meters]]
id = "M3"
customer = "C1"
address = "10.0.0.5:502"
unit = 3
profile = "eastron-sdm630"
nominal_voltage = 400
timeout = 2
phases = "3"
limits = { ieee519_edition = "2019" }
"#;
    let e = load_text(bad, &[]).unwrap_err();
    let all = e.problems.join("\n");
    for needle in [
        "polling.interval: 5 is not a duration; write \"5s\"",
        "polling.nominal_voltage: unknown key here; it belongs under [[meters]]",
        "customers[0].limits.preset: unknown limits preset \"gbb\" (did you mean \"gb\"?)",
        "customers[0].max_demand_kw: \"300\" is not a number; write it without quotes, e.g. 300",
        "meters[0].nominal_voltage: missing",
        "meters[0].untis: unknown key (did you mean \"unit\"?)",
        "meters[0].customer: unknown customer \"C2\"",
        "meters[0].address: \"10.0.0.5\" is not host:port",
        "meters[0].profile: unknown profile \"janitza-umg96\"",
        "meters[2].timeout: 2 is not a duration; write \"2s\"",
        "meters[2].phases: \"3\" is not a whole number; write it without quotes",
        "meters[2].limits.ieee519_edition: \"2019\" is not \"2014\" or \"2022\"",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    // The unit is out of range for its type (u8 is not the raw type: the
    // rule's own words apply).
    assert!(
        all.contains("meters[0].unit: 300 is not a Modbus unit id"),
        "{all}"
    );
    // The customer's typo is its own, reported once, not under its meters.
    assert_eq!(all.matches("\"gbb\"").count(), 1, "{all}");
    assert!(!all.contains("meters[1].limits"), "{all}");
    // The placeholder of the missing key draws no second complaint.
    assert_eq!(all.matches("meters[0].nominal_voltage").count(), 1, "{all}");
    // No message speaks Rust.
    for rust in [
        "invalid type",
        "expected f64",
        "expected u8",
        "expected a string",
        "`",
    ] {
        assert!(!all.contains(rust), "{rust:?} in:\n{all}");
    }
}
