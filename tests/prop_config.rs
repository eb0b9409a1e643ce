//! Property tests of config parsing and validation (`config::from_str`):
//!
//! * arbitrary TOML-ish text never panics, and every problem reported
//!   names where it is: the source and position for a syntax error, the
//!   key path (`meters[0].pt_ratio`, `influxdb.batch_size`) otherwise;
//! * a valid config with arbitrary values (wrong types, extremes, NaN,
//!   ±inf, hostile strings, bad durations, dates, cron schedules, time
//!   zones) put at known keys never panics, and each problem names its key
//!   path;
//! * a config with secrets, mangled anywhere, never shows a secret in a
//!   problem.
//!
//! `PROPTEST_CASES=20000 cargo test --test prop_config` for a long run
//! (docs/fuzzing.md).

use pqwatch::config::{ConfigError, from_str};
use proptest::prelude::*;
mod prop_support;
use prop_support::cases;
use std::path::Path;

const SOURCE: &str = "embedded config";
use pqwatch::config::SECTIONS;

const TOKEN: &str = "Tk9-Zebra-Quartz-88213";
const SMTP_PASSWORD: &str = "Pw7-Mango-Violet-55190";
const HTTP_TOKEN: &str = "Ht3-Cobalt-Lemon-40417";

/// A valid config touching every section.
fn base() -> String {
    format!(
        r#"
[daemon]
profile_dir = "/nonexistent"
state_dir = "state"
timezone = "Asia/Shanghai"
shutdown_grace = "5s"

[influxdb]
url = "http://127.0.0.1:8086"
org = "grid"
bucket = "pq"
token = "{TOKEN}"
batch_size = 1000
flush_interval = "1s"
max_outbox_bytes = "512MiB"

[polling]
interval = "5s"
timeout = "1s"

[rules]
preset = "gb"
short_window = "1m"
long_window = "10m"

[smtp]
host = "127.0.0.1"
port = 2525
security = "none"
username = "alice"
password = "{SMTP_PASSWORD}"
from = "pqwatch <pq@example.com>"

[alerts]
recipients = ["ops@example.com"]
language = "en"
min_delay = "1m"
max_delay = "5m"

[[alerts.groups]]
name = "g1"
recipients = ["g1@example.com"]

[reports]
period = "month"
schedule = "0 8 1 * *"
catch_up = "93d"

[http]
listen = "127.0.0.1:0"
token = "{HTTP_TOKEN}"

[[gateways]]
address = "10.0.0.5:502"
timeout = "2s"

[[customers]]
id = "C1"
name = "钢铁厂 Steel, Inc."
tags = {{ region = "east" }}
contracted_kva = 6300
max_demand_kw = 5000
suspensions = [{{ from = "2026-01-01", to = "2026-02-01", kva = 3150, note = "T2" }}]
limits = {{ thd_current = 15.0 }}
alert_group = "g1"
recipients = ["energy@steel.example"]
report = {{ period = "week", schedule = "0 8 * * 1" }}

[[meters]]
id = "M1"
customer = "C1"
address = "10.0.0.5:502"
unit = 3
profile = "janitza-umg96rm"
pt_ratio = "10000/100"
ct_ratio = 40
nominal_voltage = 10000
tags = {{ feeder = "F1" }}
limits = {{ voltage_upper = 7.0 }}
"#
    )
}

/// Known keys, with the kind of value they take (for values that are
/// wrong in an interesting way rather than only of the wrong type).
const KEYS: &[(&str, Kind)] = &[
    ("daemon.timezone", Kind::Zone),
    ("daemon.shutdown_grace", Kind::Duration),
    ("daemon.state_dir", Kind::Text),
    ("influxdb.url", Kind::Text),
    ("influxdb.api", Kind::Text),
    ("influxdb.org", Kind::Text),
    ("influxdb.bucket", Kind::Text),
    ("influxdb.token", Kind::Text),
    ("influxdb.database", Kind::Text),
    ("influxdb.batch_size", Kind::Number),
    ("influxdb.flush_interval", Kind::Duration),
    ("influxdb.timeout", Kind::Duration),
    ("influxdb.gzip", Kind::Text),
    ("influxdb.max_buffered_points", Kind::Number),
    ("influxdb.durability", Kind::Text),
    ("influxdb.max_outbox_bytes", Kind::Size),
    ("influxdb.enabled", Kind::Text),
    ("polling.interval", Kind::Duration),
    ("polling.timeout", Kind::Duration),
    ("polling.connect_timeout", Kind::Duration),
    ("polling.reconnect_max", Kind::Duration),
    ("polling.delay_between_requests", Kind::Duration),
    ("rules.enabled", Kind::Text),
    ("rules.preset", Kind::Text),
    ("rules.short_window", Kind::Duration),
    ("rules.long_window", Kind::Duration),
    ("rules.demand_window", Kind::Duration),
    ("rules.min_window_completeness", Kind::Number),
    ("rules.voltage_min_duration", Kind::Duration),
    ("rules.voltage_clear_after", Kind::Duration),
    ("rules.voltage_hysteresis", Kind::Number),
    ("rules.harmonic_min_duration", Kind::Duration),
    ("rules.harmonic_clear_after", Kind::Duration),
    ("rules.harmonic_hysteresis", Kind::Number),
    ("rules.suspension_min_duration", Kind::Duration),
    ("rules.suspension_clear_after", Kind::Duration),
    ("rules.suspension_factor", Kind::Number),
    ("rules.suspension_noise_floor_kw", Kind::Number),
    ("rules.demand_factor", Kind::Number),
    ("rules.unbalance_limit", Kind::Number),
    ("smtp.host", Kind::Text),
    ("smtp.port", Kind::Number),
    ("smtp.security", Kind::Text),
    ("smtp.username", Kind::Text),
    ("smtp.password", Kind::Text),
    ("smtp.from", Kind::Address),
    ("smtp.timeout", Kind::Duration),
    ("alerts.enabled", Kind::Text),
    ("alerts.min_delay", Kind::Duration),
    ("alerts.max_delay", Kind::Duration),
    ("alerts.max_per_meter_per_hour", Kind::Number),
    ("alerts.recipients", Kind::Address),
    ("alerts.language", Kind::Text),
    ("alerts.groups", Kind::Text),
    ("reports.enabled", Kind::Text),
    ("reports.period", Kind::Text),
    ("reports.schedule", Kind::Cron),
    ("reports.voltage_target", Kind::Number),
    ("reports.catch_up", Kind::Duration),
    ("reports.keep_days", Kind::Number),
    ("reports.bcc", Kind::Address),
    ("http.enabled", Kind::Text),
    ("http.listen", Kind::Text),
    ("http.token", Kind::Text),
    ("cluster.shard", Kind::Number),
    ("cluster.shards", Kind::Number),
    ("gateways[0].address", Kind::Text),
    ("gateways[0].timeout", Kind::Duration),
    ("gateways[0].delay_between_requests", Kind::Duration),
    ("customers[0].id", Kind::Text),
    ("customers[0].name", Kind::Text),
    ("customers[0].tags", Kind::Text),
    ("customers[0].tags.region", Kind::Text),
    ("customers[0].contracted_kva", Kind::Number),
    ("customers[0].max_demand_kw", Kind::Number),
    ("customers[0].suspensions", Kind::Text),
    ("customers[0].suspensions[0].from", Kind::Date),
    ("customers[0].suspensions[0].to", Kind::Date),
    ("customers[0].suspensions[0].kva", Kind::Number),
    ("customers[0].suspensions[0].note", Kind::Text),
    ("customers[0].limits.preset", Kind::Text),
    ("customers[0].limits.voltage_upper", Kind::Number),
    ("customers[0].limits.thd_voltage", Kind::Number),
    ("customers[0].language", Kind::Text),
    ("customers[0].alert_group", Kind::Text),
    ("customers[0].recipients", Kind::Address),
    ("customers[0].report.enabled", Kind::Text),
    ("customers[0].report.period", Kind::Text),
    ("customers[0].report.schedule", Kind::Cron),
    ("meters[0].id", Kind::Text),
    ("meters[0].customer", Kind::Text),
    ("meters[0].address", Kind::Text),
    ("meters[0].unit", Kind::Number),
    ("meters[0].profile", Kind::Text),
    ("meters[0].interval", Kind::Duration),
    ("meters[0].timeout", Kind::Duration),
    ("meters[0].pt_ratio", Kind::Ratio),
    ("meters[0].ct_ratio", Kind::Ratio),
    ("meters[0].nominal_voltage", Kind::Number),
    ("meters[0].phases", Kind::Number),
    ("meters[0].fields", Kind::Text),
    ("meters[0].tags", Kind::Text),
    ("meters[0].tags.feeder", Kind::Text),
    ("meters[0].enabled", Kind::Text),
    ("meters[0].limits.voltage_lower", Kind::Number),
    ("meters[0].voltage_basis", Kind::Text),
];

#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Number,
    Duration,
    Size,
    Ratio,
    Date,
    Cron,
    Zone,
    Address,
}

fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "", " ", "\n", "\r\n", "\0", "\u{202E}", "a\\", "\\", "x,y=z w", "钢铁", "😀",
            "../../etc/passwd", "/", "http://", "http://[::1", "https://u:p@h:99999",
            "v1", "v2", "always", "memory", "en", "zh-CN", "gb", "ieee519", "en50160",
            "line_to_line", "phase_to_neutral", "starttls", "tls", "none", "month", "week",
            "day", "true", "127.0.0.1:0", "127.0.0.1:99999", "host:", ":502", "C1", "M1",
            "g1", "janitza-umg96rm", "eastron-sdm630",
        ])
        .prop_map(String::from),
        2 => any::<String>(),
    ]
}

fn special(kind: Kind) -> BoxedStrategy<String> {
    let pick = |v: Vec<&'static str>| prop::sample::select(v).prop_map(String::from).boxed();
    match kind {
        Kind::Duration => pick(vec![
            "0",
            "0s",
            "0ms",
            "1ns",
            "1ms",
            "99ms",
            "100ms",
            "1h",
            "1h 1ns",
            "25h",
            "-5s",
            "5",
            "1y",
            "1000000000000h",
            "18446744073709551615s",
            "18446744073709551616s",
            "nan",
            "1.5s",
            "",
            " 5s ",
            "5 s",
            "1d",
            "400d",
            "1w",
        ]),
        Kind::Size => pick(vec![
            "0",
            "1",
            "1MiB",
            "1.5GiB",
            "1e30",
            "18446744073709551616",
            "-1MiB",
            "NaN",
            "inf GiB",
            "16 EiB",
            ".",
            "..MiB",
            "1TiB",
            "1KB",
        ]),
        Kind::Ratio => pick(vec![
            "10000/100",
            "1/0",
            "0/1",
            "-1/2",
            "nan/1",
            "inf",
            "1e309/1",
            "/",
            "1/",
            "/1",
            "abc",
            "",
            "5",
            "0.0000001/1",
        ]),
        Kind::Date => pick(vec![
            "2026-02-30",
            "2026-13-01",
            "9999-12-31",
            "9999-12-31T23:59",
            "0000-01-01",
            "-0001-01-01",
            "2026-11-01T25:00",
            "2026-11-01T08:00",
            "2026-03-29T02:30",
            "2026-01-01",
            "2026-02-01",
            "",
            "tomorrow",
            "20261101",
        ]),
        Kind::Cron => pick(vec![
            "*/0 * * * *",
            "0 0 31 2 *",
            "0 0 30 2 *",
            "60 24 32 13 8",
            "-1 * * * *",
            "*/99999999999 * * * *",
            "0-59/0 * * * *",
            "59-0 * * * *",
            "a b c d e",
            "",
            "* * * * * *",
            "* * * *",
            "0 8 1 * *",
            "0 8 * * 1",
            "0 0 29 2 *",
            "0 0 * * 7",
            "0 0 1,15 * 1-5",
            "1-2-3 * * * *",
            ",,, * * * *",
            "0 0 L * *",
            "@monthly",
            "0 0 1 1 0",
            "4294967296 * * * *",
        ]),
        Kind::Zone => pick(vec![
            "Asia/Shanghai",
            "UTC",
            "Mars/Olympus",
            "",
            "../../etc/passwd",
            "Etc/GMT+14",
            "America/Sao_Paulo",
            "Asia/Kolkata",
            "Europe/Dublin",
            "+08:00",
            "CST",
        ]),
        Kind::Address => pick(vec![
            "a@b.example",
            "",
            "no-at-sign",
            "a@",
            "@b",
            "\"q\"@x.example",
            "x@example.com\r\nBcc: y@evil.example",
            "名@例.中国",
            "a@b.example, c@d.example",
            "<a@b.example>",
            "A <a@b.example>",
        ]),
        Kind::Number | Kind::Text => hostile_text().boxed(),
    }
}

/// An arbitrary TOML value; `kind` biases strings toward the key's syntax.
fn value(kind: Kind) -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        3 => special(kind).prop_map(toml::Value::String),
        2 => hostile_text().prop_map(toml::Value::String),
        2 => prop_oneof![
            any::<i64>(),
            Just(0i64),
            Just(-1),
            Just(1),
            Just(255),
            Just(256),
            Just(65_535),
            Just(65_536),
            Just(i64::MAX),
            Just(i64::MIN),
        ]
        .prop_map(toml::Value::Integer),
        2 => prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(0.5),
            Just(1e308),
            Just(5e-324),
            Just(49.9),
            Just(100.0),
        ]
        .prop_map(toml::Value::Float),
        1 => any::<bool>().prop_map(toml::Value::Boolean),
        1 => Just(toml::Value::Datetime("1979-05-27T07:32:00Z".parse().unwrap())),
        1 => Just(toml::Value::Datetime("07:32:00".parse().unwrap())),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}|.{0,4}", inner, 0..3)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

/// Sets (or, with `None`, removes) `path` (`a.b[0].c`) in `t`.
fn set(t: &mut toml::Table, path: &str, v: Option<toml::Value>) {
    let mut parts: Vec<(String, Option<usize>)> = Vec::new();
    for seg in path.split('.') {
        match seg.split_once('[') {
            Some((k, i)) => parts.push((k.into(), i.trim_end_matches(']').parse().ok())),
            None => parts.push((seg.into(), None)),
        }
    }
    let mut cur: &mut toml::Table = t;
    for (n, (k, idx)) in parts.iter().enumerate() {
        let last = n + 1 == parts.len();
        match idx {
            Some(i) => {
                let Some(toml::Value::Array(a)) = cur.get_mut(k) else {
                    return;
                };
                if *i >= a.len() {
                    return;
                }
                if last {
                    match v {
                        Some(v) => a[*i] = v,
                        None => {
                            a.remove(*i);
                        }
                    }
                    return;
                }
                let toml::Value::Table(next) = &mut a[*i] else {
                    return;
                };
                cur = next;
            }
            None => {
                if last {
                    match v {
                        Some(v) => {
                            cur.insert(k.clone(), v);
                        }
                        None => {
                            cur.remove(k);
                        }
                    }
                    return;
                }
                let Some(toml::Value::Table(next)) = cur.get_mut(k) else {
                    return;
                };
                cur = next;
            }
        }
    }
}

/// Each problem must say where it is: the source for a syntax error, else
/// a key path whose first part is a section (or a key reported as an
/// unknown section).
fn names_a_key_path(p: &str) -> bool {
    if let Some(rest) = p.strip_prefix(SOURCE) {
        return rest.starts_with(": TOML parse error at line ");
    }
    if p.contains(": unknown section") {
        return true;
    }
    SECTIONS.iter().any(|s| {
        p.strip_prefix(s)
            .is_some_and(|rest| rest.starts_with(['.', '[', ':']))
    })
}

fn check_errors(e: &ConfigError, text: &str) -> Result<(), TestCaseError> {
    prop_assert!(!e.problems.is_empty());
    for p in &e.problems {
        prop_assert!(
            names_a_key_path(p),
            "no key path in {:?}\n--- config ---\n{}",
            p,
            text
        );
        // One line each, and nothing a terminal would act on (ESC).
        prop_assert!(
            !p.chars().any(char::is_control),
            "a control character in {:?}",
            p
        );
    }
    Ok(())
}

/// No run of 8 characters of a secret appears in any problem.
fn leaks(e: &ConfigError) -> Option<(String, &'static str)> {
    for secret in [TOKEN, SMTP_PASSWORD, HTTP_TOKEN] {
        let chars: Vec<char> = secret.chars().collect();
        for w in chars.windows(8) {
            let w: String = w.iter().collect();
            if let Some(p) = e.problems.iter().find(|p| p.contains(&w)) {
                return Some((p.clone(), secret));
            }
        }
    }
    None
}

/// TOML-ish lines: headers, assignments, garbage.
fn tomlish() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "daemon",
            "influxdb",
            "meters",
            "customers",
            "id",
            "token",
            "url",
            "unit",
            "tags",
            "a.b",
            "\"q k\"",
            "x-y",
            "1",
            "",
        ])
        .prop_map(String::from),
        "[a-z_\\[\\]\\.\"' =]{0,10}",
    ];
    let line = prop_oneof![
        key.clone().prop_map(|k| format!("[{k}]")),
        key.clone().prop_map(|k| format!("[[{k}]]")),
        (key.clone(), ".{0,20}").prop_map(|(k, v)| format!("{k} = {v}")),
        (key, "[0-9eE+.\\-_xobinf]{0,12}").prop_map(|(k, v)| format!("{k} = {v}")),
        ".{0,30}",
        prop::sample::select(vec![
            "\"\"\"",
            "'''",
            "{",
            "}",
            "[",
            "]",
            "a = {",
            "a = [1,",
            "a = \"\\u0000\"",
            "a = \"\\uD800\"",
            "a = 1979-05-27T07:32:00Z",
            "a = 00:00:99",
            "a = 0x",
            "a = +inf",
            "a = nan",
            "a = 9223372036854775808",
            "a.b.c.d.e = 1",
            "[a]\n[a]",
            "a = 1\na = 2",
        ])
        .prop_map(String::from),
    ];
    prop::collection::vec(line, 0..20).prop_map(|l| l.join("\n"))
}

/// A character-level edit of the config text.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize),
    Insert(usize, char),
    DuplicateLine(usize),
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut c: Vec<char> = text.chars().collect();
    for e in edits {
        match *e {
            Edit::Delete(i) => {
                if !c.is_empty() {
                    c.remove(i % c.len());
                }
            }
            Edit::Insert(i, ch) => c.insert(i % (c.len() + 1), ch),
            Edit::DuplicateLine(i) => {
                let s: String = c.iter().collect();
                let mut lines: Vec<&str> = s.lines().collect();
                if !lines.is_empty() {
                    let k = i % lines.len();
                    lines.insert(k, lines[k]);
                }
                c = lines.join("\n").chars().collect();
            }
        }
    }
    c.into_iter().collect()
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        (
            any::<usize>(),
            prop::sample::select(vec![
                '"', '\'', '\n', '=', '[', ']', '{', '}', '\\', '#', 'x', ' ', ',', '.', '\0'
            ])
        )
            .prop_map(|(i, c)| Edit::Insert(i, c)),
        any::<usize>().prop_map(Edit::DuplicateLine),
    ]
}

fn load(text: &str) -> Result<(), ConfigError> {
    from_str(text, Path::new("/nonexistent")).map(|_| ())
}

#[test]
fn the_base_config_is_valid() {
    load(&base()).unwrap();
}

proptest! {
    #![proptest_config(cases(1000, "proptest-regressions/prop_config.txt"))]

    /// Any text: no panic, and every problem says where it is.
    #[test]
    fn any_text_is_judged_with_locations(text in tomlish()) {
        if let Err(e) = load(&text) {
            check_errors(&e, &text)?;
        }
    }

    /// Arbitrary values at known keys: no panic, every problem names a key
    /// path.
    #[test]
    fn arbitrary_values_at_known_keys(
        changes in prop::collection::vec(
            prop::sample::select(KEYS).prop_flat_map(|(k, kind)| {
                (Just(k), prop::option::weighted(0.9, value(kind)))
            }),
            1..5,
        )
    ) {
        let mut t: toml::Table = toml::from_str(&base()).unwrap();
        for (k, v) in changes {
            set(&mut t, k, v);
        }
        let text = toml::to_string(&t).unwrap();
        if let Err(e) = load(&text) {
            check_errors(&e, &text)?;
        }
    }

    /// A config holding secrets, mangled anywhere: no problem shows one.
    #[test]
    fn secrets_never_appear_in_problems(
        edits in prop::collection::vec(edit(), 1..4),
        near in prop::option::of(prop::sample::select(vec![TOKEN, SMTP_PASSWORD, HTTP_TOKEN])),
        c in prop::sample::select(vec!['"', '\n', '\\', 'x', ' ', '=']),
    ) {
        let mut text = base();
        // Often the edit hits the secret's own line: right after it, or
        // in place of its closing quote.
        if let Some(s) = near {
            let at = text.find(s).unwrap() + s.len();
            text.insert(at, c);
        }
        let text = apply(&text, &edits);
        if let Err(e) = load(&text)
            && let Some((p, secret)) = leaks(&e)
        {
            prop_assert!(false, "{} shown in {:?}", secret, p);
        }
    }
}

/// Found by `secrets_never_appear_in_problems`: a syntax error on a secret's
/// line printed the line itself, secret included (the TOML parser quotes
/// the source around an error), in `pqwatch check`, at start-up and in the
/// log of a rejected reload.
#[test]
fn a_syntax_error_on_a_secret_line_does_not_show_the_secret() {
    for line in [
        format!("token = \"{TOKEN}"),
        format!("token = {TOKEN}"),
        format!("token = \"{TOKEN}\" x"),
        format!("token = '''{TOKEN}"),
    ] {
        let text = format!("[influxdb]\nurl = \"http://127.0.0.1:8086\"\n{line}\n");
        let e = load(&text).expect_err("a syntax error");
        assert!(leaks(&e).is_none(), "{e}");
        // Still says where: the line and column.
        assert!(e.problems[0].contains("line 3"), "{e}");
        assert!(names_a_key_path(&e.problems[0]), "{e}");
    }
}

/// Found by `any_text_is_judged_with_locations`: an integer too large for
/// TOML (`a = 9223372036854775808`) was reported as "number too large to fit
/// in target type", with neither key nor line. It now says the line and
/// column, and still not the number (it could be a password).
#[test]
fn a_number_too_large_says_where() {
    let e = load("[smtp]\nhost = \"h\"\npassword = 98765432109876543210\n").unwrap_err();
    assert_eq!(
        e.problems,
        [format!(
            "{SOURCE}: TOML parse error at line 3, column 12: number too large to fit in target type"
        )]
    );
    assert!(names_a_key_path(&e.problems[0]));
}

/// Found by `arbitrary_values_at_known_keys`: a problem quotes the value it
/// is about, and a value with a newline (or an ESC sequence) split the
/// problem over lines, or reached the terminal and the log as is, in
/// `pqwatch check` and in a rejected reload. Such characters are now shown
/// escaped.
#[test]
fn a_quoted_value_cannot_split_a_problem_or_drive_the_terminal() {
    let text = base().replace(
        "from = \"pqwatch <pq@example.com>\"",
        "from = \"x\\n  meters[0].id: fake problem \\u001b[2J\"",
    );
    let e = load(&text).unwrap_err();
    let p = e
        .problems
        .iter()
        .find(|p| p.starts_with("smtp.from"))
        .unwrap_or_else(|| panic!("{e}"));
    assert!(
        p.contains("\\n  meters[0].id: fake problem \\u{1b}[2J"),
        "{p}"
    );
    assert!(!e.to_string().contains('\u{1b}'), "{e}");
    assert_eq!(e.to_string().lines().count(), e.problems.len() + 1, "{e}");
}
