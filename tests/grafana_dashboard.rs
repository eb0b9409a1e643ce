//! The Grafana dashboard (`config/grafana/pqwatch-dashboard.json`) against
//! real data. Grafana itself is not available here, so the test does what
//! Grafana would do with the dashboard's InfluxQL: it runs the pqwatch daemon
//! in-process against the simulator, with a scenario that opens and closes
//! events, writing through the v1 API to a real InfluxDB 1.x; then it takes
//! every query of the dashboard (panel targets, template variables,
//! annotations), substitutes the variables and macros as Grafana renders them
//! (`$timeFilter`, `$__interval`, `${__from}`, multi-value variables as
//! `(a|b)` regex alternations), runs each with `GET /query`, and requires an
//! answer without error and with data in every column it selects.
//!
//! The windows are shortened to 2 s / 6 s / 4 s so the run takes seconds, and
//! pqwatch names their measurements after the lengths (`pq_2s`, `pq_6s`,
//! `pq_4s`). The dashboard reads the window measurements through its constant
//! variables `$pq_short`, `$pq_long` and `$pq_demand` (defaults `pq_1m`,
//! `pq_10m`, `pq_15m`, checked against pqwatch's defaults), so the test sets
//! those variables as an operator with these windows would, and the query text
//! stays the dashboard's own.
//!
//! To prove that the checks can fail, every panel query is also run with a
//! misspelled field and with a misspelled measurement, and each of those
//! must be rejected.

mod common;
mod e2e;

use common::{InfluxDb1, TestConfig, fleet, free_port};
use e2e::{Daemon, Sim};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

const DASHBOARD: &str = include_str!("../config/grafana/pqwatch-dashboard.json");
const DATASOURCE_YAML: &str =
    include_str!("../config/grafana/provisioning/datasources/pqwatch.yaml");
const DASHBOARDS_YAML: &str =
    include_str!("../config/grafana/provisioning/dashboards/pqwatch.yaml");

/// The database pqwatch writes to in the end-to-end test.
const DB: &str = "pq";

// ---------------------------------------------------------------------------
// The dashboard model
// ---------------------------------------------------------------------------

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("pqwatch-dashboard.json is valid JSON")
}

/// The uid of the provisioned datasource (`uid:` in the datasource YAML).
fn provisioned_uid() -> String {
    DATASOURCE_YAML
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix("uid:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .expect("the datasource provisioning file sets a uid")
}

/// Every panel, including those nested in (collapsed) rows.
fn all_panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels is an array") {
        out.push(p);
        for nested in p["panels"].as_array().into_iter().flatten() {
            out.push(nested);
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Panel,
    Annotation,
}

/// One InfluxQL query of the dashboard.
#[derive(Debug, Clone)]
struct DashQuery {
    /// "panel 7 \"Phase voltages L-N\" target C", for messages.
    what: String,
    origin: Origin,
    text: String,
    /// Annotation field mappings: columns the result must have.
    mapped_columns: Vec<String>,
}

/// Panel targets and annotation queries.
fn queries(dash: &Value) -> Vec<DashQuery> {
    let mut out = Vec::new();
    for p in all_panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(DashQuery {
                what: format!(
                    "panel {} {:?} target {}",
                    p["id"],
                    p["title"].as_str().unwrap_or(""),
                    t["refId"].as_str().unwrap_or("?")
                ),
                origin: Origin::Panel,
                text: t["query"].as_str().unwrap_or("").to_string(),
                mapped_columns: Vec::new(),
            });
        }
    }
    for a in dash["annotations"]["list"].as_array().into_iter().flatten() {
        let t = &a["target"];
        let mut mapped: Vec<String> = t["tagsColumn"]
            .as_str()
            .unwrap_or("")
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        for key in ["textColumn", "titleColumn", "timeEndColumn"] {
            if let Some(c) = t[key].as_str().filter(|c| !c.is_empty()) {
                mapped.push(c.to_string());
            }
        }
        out.push(DashQuery {
            what: format!("annotation {:?}", a["name"].as_str().unwrap_or("")),
            origin: Origin::Annotation,
            text: t["query"].as_str().unwrap_or("").to_string(),
            mapped_columns: mapped,
        });
    }
    out
}

fn variables(dash: &Value) -> Vec<&Value> {
    dash["templating"]["list"]
        .as_array()
        .expect("templating.list is an array")
        .iter()
        .collect()
}

fn var_name(v: &Value) -> &str {
    v["name"].as_str().expect("variable name")
}

fn var_type(v: &Value) -> &str {
    v["type"].as_str().expect("variable type")
}

fn is_multi(v: &Value) -> bool {
    v["multi"].as_bool() == Some(true) || v["includeAll"].as_bool() == Some(true)
}

/// The default value of a textbox, constant or custom variable.
fn default_value(v: &Value) -> String {
    let current = &v["current"]["value"];
    current
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v["query"].as_str().unwrap_or("").to_string())
}

// ---------------------------------------------------------------------------
// Grafana's interpolation
// ---------------------------------------------------------------------------

/// Grafana's `escapeRegex`: what it applies to each value of a multi-value
/// (or include-All) variable in InfluxQL.
fn escape_regex(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\^$*+?.()|[]{}/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A multi-value variable's selection as the InfluxDB datasource renders it:
/// one escaped value alone, several as `(a|b|c)`. "All" without a custom
/// all-value is every option.
fn render_multi(values: &[String]) -> String {
    let escaped: Vec<String> = values.iter().map(|v| escape_regex(v)).collect();
    if escaped.len() == 1 {
        escaped[0].clone()
    } else {
        format!("({})", escaped.join("|"))
    }
}

/// Replaces `$name` and `${name}` (and `${name:format}`) like Grafana's
/// template service. An unknown name is an error: Grafana would leave it in
/// the query and InfluxDB would reject or mis-read it. `$` not followed by a
/// name (regex anchors such as `$/`) stays.
fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    if text.contains("[[") {
        return Err(format!(
            "deprecated [[var]] syntax in {text:?}: use $var or ${{var}}"
        ));
    }
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
            let end = inner
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
            let name = inner[..end].split(':').next().unwrap_or("");
            (name, 1 + end + 1)
        } else {
            let len = after.find(|c: char| !is_word(c)).unwrap_or(after.len());
            (&after[..len], len)
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        let value = vars
            .get(name)
            .ok_or_else(|| format!("unknown variable ${name} in {text:?}"))?;
        out.push_str(value);
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Names of the variables a text refers to.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        let after = &rest[i + 1..];
        let name: String = if let Some(inner) = after.strip_prefix('{') {
            inner.split(['}', ':']).next().unwrap_or("").to_string()
        } else {
            after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        };
        if !name.is_empty() {
            names.insert(name);
        }
        rest = after;
    }
    names
}

// ---------------------------------------------------------------------------
// Static checks
// ---------------------------------------------------------------------------

/// Every problem of the dashboard model that needs no server.
fn static_problems(dash: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let uid = provisioned_uid();
    let want_ds = serde_json::json!({"type": "influxdb", "uid": uid});

    let schema = dash["schemaVersion"].as_i64().unwrap_or(0);
    if !(36..=41).contains(&schema) {
        problems.push(format!(
            "schemaVersion {schema}: want 36–41 (Grafana 10/11)"
        ));
    }
    for key in ["uid", "title"] {
        if dash[key].as_str().is_none_or(str::is_empty) {
            problems.push(format!("dashboard {key} is missing"));
        }
    }

    // Every datasource reference, anywhere, is the provisioned one.
    fn walk<'a>(v: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let p = format!("{path}.{k}");
                    if k == "datasource" {
                        out.push((p.clone(), x));
                    }
                    walk(x, p, out);
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut refs = Vec::new();
    walk(dash, String::new(), &mut refs);
    for (path, r) in &refs {
        if *r != &want_ds {
            problems.push(format!("{path} = {r}: want {want_ds}"));
        }
    }
    if refs.is_empty() {
        problems.push("no datasource references at all".into());
    }

    // Panels: unique ids, inside 24 columns, no overlaps, targets sane.
    let panels = all_panels(dash);
    let mut ids = BTreeSet::new();
    let mut rects: Vec<(i64, i64, i64, i64, String)> = Vec::new();
    for p in &panels {
        let name = format!("panel {} {:?}", p["id"], p["title"].as_str().unwrap_or(""));
        match p["id"].as_i64() {
            Some(id) if ids.insert(id) => {}
            Some(id) => problems.push(format!("{name}: duplicate id {id}")),
            None => problems.push(format!("{name}: no numeric id")),
        }
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_i64().unwrap_or(-1),
            g["y"].as_i64().unwrap_or(-1),
            g["w"].as_i64().unwrap_or(0),
            g["h"].as_i64().unwrap_or(0),
        );
        if x < 0 || y < 0 || w < 1 || h < 1 || x + w > 24 {
            problems.push(format!("{name}: gridPos {g} outside the 24-column grid"));
        }
        for (ox, oy, ow, oh, other) in &rects {
            if x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h {
                problems.push(format!("{name} overlaps {other}"));
            }
        }
        rects.push((x, y, w, h, name.clone()));
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("{name}: no targets"));
        }
        let mut refids = BTreeSet::new();
        let mut aliases = BTreeSet::new();
        for t in &targets {
            let r = t["refId"].as_str().unwrap_or("");
            if !refids.insert(r.to_string()) {
                problems.push(format!("{name}: duplicate refId {r:?}"));
            }
            if t["rawQuery"] != true || t["query"].as_str().is_none_or(str::is_empty) {
                problems.push(format!(
                    "{name} target {r}: not a raw InfluxQL query (rawQuery + query)"
                ));
            }
            if !matches!(
                t["resultFormat"].as_str(),
                Some("time_series") | Some("table")
            ) {
                problems.push(format!(
                    "{name} target {r}: resultFormat {}",
                    t["resultFormat"]
                ));
            }
            if let Some(a) = t["alias"].as_str() {
                aliases.insert(a.to_string());
            }
        }
        // Overrides of time series point at series that exist.
        for o in p["fieldConfig"]["overrides"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let m = o["matcher"]["options"].as_str().unwrap_or("");
            match o["matcher"]["id"].as_str() {
                Some("byFrameRefID") if !refids.contains(m) => {
                    problems.push(format!("{name}: override for unknown refId {m:?}"));
                }
                Some("byName") if p["type"] == "timeseries" && !aliases.contains(m) => problems
                    .push(format!(
                        "{name}: override byName {m:?} matches no target alias {aliases:?}"
                    )),
                _ => {}
            }
            for prop in o["properties"].as_array().into_iter().flatten() {
                if prop["id"] == "custom.fillBelowTo" {
                    let to = prop["value"].as_str().unwrap_or("");
                    if !aliases.contains(to) {
                        problems.push(format!(
                            "{name}: fillBelowTo {to:?} matches no target alias"
                        ));
                    }
                }
            }
        }
    }

    // Queries: only known variables; multi-value variables only where
    // Grafana's `(a|b)` rendering is valid; bounded in time.
    let vars = variables(dash);
    let mut names: BTreeMap<String, bool> = vars
        .iter()
        .map(|v| (var_name(v).to_string(), is_multi(v)))
        .collect();
    for builtin in ["timeFilter", "__interval", "__from", "__to"] {
        names.insert(builtin.into(), false);
    }
    let mut all_texts: Vec<(String, String)> = queries(dash)
        .into_iter()
        .map(|q| (q.what, q.text))
        .collect();
    for v in &vars {
        if var_type(v) == "query" {
            all_texts.push((
                format!("variable {}", var_name(v)),
                v["query"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    for p in &panels {
        for key in ["title", "description"] {
            if let Some(s) = p[key].as_str() {
                all_texts.push((format!("panel {} {key}", p["id"]), s.to_string()));
            }
        }
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(a) = t["alias"].as_str() {
                // Alias patterns ($tag_x, $col, $m) are the datasource's own.
                let a = a
                    .replace("$tag_meter", "")
                    .replace("$col", "")
                    .replace("$m", "");
                all_texts.push((format!("panel {} alias", p["id"]), a));
            }
        }
    }
    for (what, text) in &all_texts {
        for name in referenced(text) {
            match names.get(&name) {
                None => problems.push(format!("{what}: unknown variable ${name}")),
                Some(true) if !text.contains(&format!("/^${name}$/")) => {
                    problems.push(format!("{what}: multi-value ${name} outside /^${name}$/"));
                }
                Some(true) => {
                    let uses = text.matches(&format!("${name}")).count();
                    let ok = text.matches(&format!("/^${name}$/")).count();
                    if uses != ok {
                        problems.push(format!(
                            "{what}: multi-value ${name} used outside /^${name}$/"
                        ));
                    }
                }
                Some(false) => {}
            }
        }
    }
    for q in queries(dash) {
        let t = &q.text;
        let bounded =
            t.contains("$timeFilter") || (t.contains("${__from}") && t.contains("${__to}"));
        if !bounded {
            problems.push(format!("{}: no $timeFilter (unbounded scan)", q.what));
        }
        if t.contains("$__interval") && !t.contains("GROUP BY time($__interval)") {
            problems.push(format!("{}: $__interval outside GROUP BY time(..)", q.what));
        }
        if !t.trim_start().to_uppercase().starts_with("SELECT ") {
            problems.push(format!("{}: not a SELECT", q.what));
        }
    }

    // The window measurements default to what pqwatch writes by default.
    let cfg = pqwatch::config::from_str(&TestConfig::new().to_string(), Path::new("/nonexistent"))
        .expect("minimal config");
    for (var, len) in [
        ("pq_short", cfg.rules.short_window),
        ("pq_long", cfg.rules.long_window),
        ("pq_demand", cfg.rules.demand_window),
    ] {
        let want = format!("pq_{}", pqwatch::watch::window_name(len.as_millis() as i64));
        match vars.iter().find(|v| var_name(v) == var) {
            Some(v) if default_value(v) == want && v["query"] == want.as_str() => {}
            Some(v) => problems.push(format!(
                "variable {var}: default {:?}, pqwatch writes {want:?} by default",
                default_value(v)
            )),
            None => problems.push(format!("variable {var} missing")),
        }
    }
    for v in &vars {
        if matches!(var_type(v), "textbox" | "constant" | "custom") && default_value(v).is_empty() {
            problems.push(format!("variable {}: no default value", var_name(v)));
        }
        if var_type(v) == "query" && v["datasource"] != want_ds {
            problems.push(format!(
                "variable {}: datasource {}",
                var_name(v),
                v["datasource"]
            ));
        }
    }

    // Provisioning files.
    for (file, text, needles) in [
        (
            "datasources/pqwatch.yaml",
            DATASOURCE_YAML,
            &[
                "type: influxdb",
                "version: InfluxQL",
                "dbName:",
                "url:",
                "${",
            ][..],
        ),
        (
            "dashboards/pqwatch.yaml",
            DASHBOARDS_YAML,
            &["type: file", "path: /etc/pqwatch/grafana"][..],
        ),
    ] {
        for n in needles {
            if !text
                .lines()
                .any(|l| !l.trim_start().starts_with('#') && l.contains(n))
            {
                problems.push(format!("provisioning/{file}: no {n:?}"));
            }
        }
    }
    problems
}

#[test]
fn dashboard_model_is_consistent() {
    let problems = static_problems(&dashboard());
    assert!(
        problems.is_empty(),
        "{} problems:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// The static checks catch what they claim to: a broken copy of the
/// dashboard must be rejected on every count.
#[test]
fn static_checks_reject_a_broken_dashboard() {
    let mut dash = dashboard();
    let panels = dash["panels"].as_array_mut().unwrap();
    let nth = |kind: &str, n: usize| {
        panels
            .iter()
            .enumerate()
            .filter(|(_, p)| p["type"] == kind)
            .nth(n)
            .map(|(i, _)| i)
            .unwrap_or_else(|| panels.len())
    };
    let (first_ts, second_ts, stat) = (nth("timeseries", 0), nth("timeseries", 1), nth("stat", 0));
    let id = panels[first_ts]["id"].clone();
    panels[second_ts]["id"] = id;
    panels[stat]["gridPos"]["x"] = 20.into();
    panels[stat]["gridPos"]["w"] = 6.into();
    panels[first_ts]["datasource"]["uid"] = "other".into();
    let target = &mut panels[second_ts]["targets"][0]["query"];
    let q = target.as_str().unwrap().to_string();
    assert!(q.contains("$timeFilter"), "{q}");
    *target = q.replace("$timeFilter", "time > 0 AND $nosuchvar").into();
    let problems = static_problems(&dash).join("\n");
    for want in [
        "duplicate id",
        "outside the 24-column grid",
        "\"other\"",
        "$nosuchvar",
        "no $timeFilter",
    ] {
        assert!(
            problems.contains(want),
            "{want:?} not reported:\n{problems}"
        );
    }
}

// ---------------------------------------------------------------------------
// Against real data
// ---------------------------------------------------------------------------

fn config(influx_url: &str, gw: u16) -> String {
    TestConfig::new()
        .influx_v1(influx_url, DB)
        .polling("500ms", "300ms")
        .push(
            r#"
[rules]
short_window = "2s"
long_window = "6s"
demand_window = "4s"
voltage_min_duration = "4s"
voltage_clear_after = "4s"
harmonic_min_duration = "6s"
harmonic_clear_after = "6s"
suspension_min_duration = "4s"
suspension_clear_after = "4s"

[[customers]]
id = "HV"
contracted_kva = 2500
max_demand_kw = 1500
[[customers]]
id = "LV"
"#,
        )
        .push(fleet::SUSP_CUSTOMER)
        .push(&fleet::hv_meter("M-HV", "HV", gw, 1))
        .push(&fleet::lv_meter("M-LV", "LV", gw, 2))
        .push(&fleet::lv_meter("M-LV2", "LV", gw, 4))
        .push(&fleet::susp_meter(gw, 3))
        .to_string()
}

/// A +9 % step on the 10 kV meter and a THDu rise on one 0.38 kV meter, both
/// lasting beyond the test (voltage_high, THDu and 5th-harmonic events that
/// stay open), a short THDu rise on the other 0.38 kV meter (events that open
/// and close), and load on a suspended transformer (a suspension_load event
/// that opens and closes, and a `pq_suspension` point). So every column the
/// dashboard selects, the optional tags `phase` and `order` included, has
/// values among both the open and the closed events.
fn scenario() -> String {
    let hv = r#"
[[event]]
meter = "M-HV"
at = "2s"
duration = "10m"
kind = "voltage"
factor = 1.09
"#;
    let lv2 = r#"
[[event]]
meter = "M-LV2"
at = "1s"
duration = "10m"
kind = "thd_voltage"
value = 6.5
"#;
    [hv, fleet::LV_THD, lv2, fleet::SUSP_LOAD].concat()
}

/// `GET /query` as Grafana's InfluxDB datasource sends it (httpMode GET,
/// epoch=ms); returns the JSON body whatever the status.
async fn grafana_get(client: &reqwest::Client, db: &InfluxDb1, q: &str) -> Result<Value, String> {
    let resp = client
        .get(format!("{}/query", db.url()))
        .query(&[("db", DB), ("q", q), ("epoch", "ms")])
        .send()
        .await
        .map_err(|e| format!("GET /query: {e}"))?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| format!("read body: {e}"))?;
    let json: Value = serde_json::from_str(&body)
        .map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {body}"));
    }
    Ok(json)
}

/// What Grafana needs from an answer: no error, at least one series, and
/// every selected column non-null somewhere (so a misspelled field among
/// several fails too). Returns the column names.
fn check_answer(json: &Value) -> Result<BTreeSet<String>, String> {
    if let Some(e) = json.get("error") {
        return Err(format!("error: {e}"));
    }
    let results = json["results"]
        .as_array()
        .ok_or_else(|| format!("no results: {json}"))?;
    for r in results {
        if let Some(e) = r.get("error") {
            return Err(format!("statement error: {e}"));
        }
    }
    let series = results
        .first()
        .and_then(|r| r["series"].as_array())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| "no series: the query matched no data".to_string())?;
    let mut seen: BTreeMap<String, bool> = BTreeMap::new();
    for s in series {
        let columns: Vec<&str> = s["columns"]
            .as_array()
            .map(|c| c.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for c in &columns {
            seen.entry(c.to_string()).or_insert(false);
        }
        for row in s["values"].as_array().into_iter().flatten() {
            for (i, c) in columns.iter().enumerate() {
                if !row[i].is_null() {
                    seen.insert(c.to_string(), true);
                }
            }
        }
    }
    seen.remove("time");
    if seen.is_empty() {
        return Err("no columns besides time".into());
    }
    let empty: Vec<&String> = seen.iter().filter(|(_, v)| !**v).map(|(k, _)| k).collect();
    if !empty.is_empty() {
        return Err(format!("columns with no value at all: {empty:?}"));
    }
    Ok(seen.into_keys().collect())
}

/// The same query with the first field (or field regex) it selects
/// misspelled.
fn misspell_field(q: &str) -> Option<String> {
    let start = q.find("SELECT ")? + "SELECT ".len();
    let end = start + q[start..].find(" FROM ")?;
    let select = &q[start..end];
    if let Some(i) = select.find('"') {
        let close = i + 1 + select[i + 1..].find('"')?;
        let at = start + close;
        return Some(format!("{}_typo{}", &q[..at], &q[at..]));
    }
    let i = select.find("/^")?;
    let at = start + i + 2;
    Some(format!("{}typo_{}", &q[..at], &q[at..]))
}

/// The same query with its measurement misspelled.
fn misspell_measurement(q: &str) -> Option<String> {
    let i = q.find(" FROM \"")? + " FROM \"".len();
    let close = i + q[i..].find('"')?;
    Some(format!("{}_typo{}", &q[..close], &q[close..]))
}

/// The count a `SELECT count(..)` query answers (0 for none or an error).
async fn count(client: &reqwest::Client, db: &InfluxDb1, q: &str) -> i64 {
    grafana_get(client, db, q)
        .await
        .ok()
        .and_then(|j| j["results"][0]["series"][0]["values"][0][1].as_i64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_real_run() -> anyhow::Result<()> {
    e2e::init_tracing();
    let started = Instant::now();
    let dash = dashboard();
    let db = InfluxDb1::start()?;
    db.create_database(DB).await?;
    let gw = free_port();
    let cfg = e2e::config(&config(&db.url(), gw));
    let window = |d: Duration| format!("pq_{}", pqwatch::watch::window_name(d.as_millis() as i64));
    let (short, long, demand) = (
        window(cfg.rules.short_window),
        window(cfg.rules.long_window),
        window(cfg.rules.demand_window),
    );
    let sim = Sim::start(&cfg, &scenario()).await;
    let daemon = Daemon::start(cfg);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;

    // Until InfluxDB holds what every panel shows: open events, closed
    // events (a harmonic one, with its order), a suspension, and windows of
    // all three lengths. The scenario's episodes are over by ~16 s and the
    // longest clearing (6 s windows, 6 s clear) is done by ~30 s.
    let ready = [
        "SELECT count(\"peak\") FROM \"pq_event\" WHERE \"open\" = 1 AND \"order\" =~ /./"
            .to_string(),
        "SELECT count(\"peak\") FROM \"pq_event\" WHERE \"open\" = 0 AND \"order\" =~ /./"
            .to_string(),
        "SELECT count(\"peak\") FROM \"pq_event\" WHERE \"open\" = 0 AND \"kind\" = 'suspension_load'"
            .to_string(),
        "SELECT count(\"peak\") FROM \"pq_suspension\"".to_string(),
        format!("SELECT count(\"complete\") FROM \"{short}\""),
        format!("SELECT count(\"complete\") FROM \"{long}\""),
        format!("SELECT count(\"complete\") FROM \"{demand}\""),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut missing: Vec<&String> = ready.iter().collect();
    while !missing.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for q in missing {
            if count(&client, &db, q).await == 0 {
                still.push(q);
            }
        }
        missing = still;
        if !missing.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let run = daemon.stop().await;
    sim.stop().await;
    assert!(
        missing.is_empty(),
        "after 60 s InfluxDB still lacks: {missing:#?}"
    );
    assert_eq!(run.get(|m| &m.sink.batches_failed), 0);
    let data_ready = started.elapsed();

    // Variables, in dashboard order (a query variable may use earlier ones).
    let now = e2e::now_ms();
    let mut vars: BTreeMap<String, String> = BTreeMap::from([
        ("timeFilter".into(), "time > now() - 1h".into()),
        ("__interval".into(), "10s".into()),
        ("__from".into(), (now - 3_600_000).to_string()),
        ("__to".into(), now.to_string()),
    ]);
    let mut failures = Vec::new();
    let mut options: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for v in variables(&dash) {
        let name = var_name(v).to_string();
        let value = match (var_type(v), name.as_str()) {
            ("constant", "pq_short") => short.clone(),
            ("constant", "pq_long") => long.clone(),
            ("constant", "pq_demand") => demand.clone(),
            ("query", _) => {
                let q = interpolate(v["query"].as_str().unwrap_or(""), &vars)
                    .map_err(|e| anyhow::anyhow!("variable {name}: {e}"))?;
                let json = grafana_get(&client, &db, &q).await;
                let values: Vec<String> = json
                    .as_ref()
                    .ok()
                    .and_then(|j| j["results"][0]["series"].as_array())
                    .into_iter()
                    .flatten()
                    .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
                    .filter_map(|row| row.get(1).and_then(Value::as_str).map(str::to_string))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if values.is_empty() {
                    failures.push(format!("variable {name}: {q}\n    no values: {json:?}"));
                }
                options.insert(name.clone(), values.clone());
                // "All" (the default selection).
                render_multi(&values)
            }
            _ => default_value(v),
        };
        vars.insert(name, value);
    }
    assert_eq!(
        options.get("customer").map(Vec::as_slice),
        Some(&["HV".to_string(), "LV".into(), "SUSP".into()][..]),
        "customers"
    );
    assert_eq!(
        options.get("meter").map(Vec::as_slice),
        Some(
            &[
                "M-HV".to_string(),
                "M-LV".into(),
                "M-LV2".into(),
                "M-SUSP".into()
            ][..]
        ),
        "meters"
    );
    // $meter follows $customer.
    let meter_var = variables(&dash)
        .into_iter()
        .find(|v| var_name(v) == "meter")
        .expect("a meter variable");
    let mut one_customer = vars.clone();
    one_customer.insert("customer".into(), render_multi(&["HV".to_string()]));
    let q = interpolate(meter_var["query"].as_str().unwrap(), &one_customer).unwrap();
    let json = grafana_get(&client, &db, &q).await.unwrap_or_default();
    assert_eq!(
        json["results"][0]["series"][0]["values"],
        serde_json::json!([["meter", "M-HV"]]),
        "$meter with $customer = HV: {q}"
    );

    // Every panel and annotation query, and two misspelled copies of each
    // panel query that must fail.
    let mut ran = 0;
    let mut mutants = 0;
    for q in queries(&dash) {
        let text = match interpolate(&q.text, &vars) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{}: {e}", q.what));
                continue;
            }
        };
        ran += 1;
        let answer = grafana_get(&client, &db, &text).await;
        match answer.and_then(|j| check_answer(&j)) {
            Ok(columns) => {
                let unmapped: Vec<&String> = q
                    .mapped_columns
                    .iter()
                    .filter(|c| !columns.contains(*c))
                    .collect();
                if !unmapped.is_empty() {
                    failures.push(format!(
                        "{}: field mappings {unmapped:?} are not columns of the answer {columns:?}\n    {text}",
                        q.what
                    ));
                }
            }
            Err(e) => failures.push(format!("{}:\n    {text}\n    {e}", q.what)),
        }
        if q.origin != Origin::Panel {
            continue;
        }
        for broken in [misspell_field(&text), misspell_measurement(&text)] {
            let Some(broken) = broken else {
                failures.push(format!("{}: cannot misspell {text}", q.what));
                continue;
            };
            mutants += 1;
            let answer = grafana_get(&client, &db, &broken).await;
            if answer.and_then(|j| check_answer(&j)).is_ok() {
                failures.push(format!(
                    "{}: a misspelled copy still passes the checks: {broken}",
                    q.what
                ));
            }
        }
    }
    eprintln!(
        "[grafana_dashboard] data ready after {data_ready:?}; {ran} queries and {mutants} misspelled copies checked; {:?} in all",
        started.elapsed()
    );
    assert!(ran >= 20, "only {ran} queries found in the dashboard");
    assert!(
        failures.is_empty(),
        "{} dashboard queries fail against pqwatch's data:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}
