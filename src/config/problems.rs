//! The mistakes found in a config, collected with their key paths, and the
//! readers that report to them: a section or entry read leniently (every
//! mistake in it at once), durations, pauses, paths, secrets. Shared by the
//! section checks; it checks no rule of its own.

use super::{ConfigError, Tree, raw};
use crate::secret::Secret;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(super) struct Problems<'a> {
    pub(super) list: Vec<String>,
    tree: &'a Tree,
    /// Keys filled with a placeholder because they are missing: the user
    /// has been told, so checks of the placeholder stay quiet.
    muted: Vec<String>,
}

impl<'a> Problems<'a> {
    pub(super) fn new(tree: &'a Tree) -> Self {
        Problems {
            list: Vec::new(),
            tree,
            muted: Vec::new(),
        }
    }

    /// Every problem, each entry's together (its shape is checked before
    /// the rules that span entries), entries in the order they are checked;
    /// `Ok` when there are none.
    pub(super) fn finish(self) -> Result<(), ConfigError> {
        if self.list.is_empty() {
            return Ok(());
        }
        let mut list = self.list;
        let entry = |line: &str| -> Option<(String, usize)> {
            let (arr, rest) = line.split_once('[')?;
            let i = rest.split(']').next()?.parse().ok()?;
            (!arr.contains([' ', ':', '.'])).then(|| (arr.to_string(), i))
        };
        let mut first_seen: Vec<Option<(String, usize)>> = Vec::new();
        for l in &list {
            let e = entry(l);
            if !first_seen.contains(&e) {
                first_seen.push(e);
            }
        }
        list.sort_by_key(|l| {
            let e = entry(l);
            first_seen.iter().position(|f| *f == e)
        });
        Err(ConfigError { problems: list })
    }

    /// Whether the config has a top-level `key` at all.
    pub(super) fn has(&self, key: &str) -> bool {
        self.tree.root.contains_key(key)
    }

    pub(super) fn push(&mut self, key: &str, msg: impl std::fmt::Display) {
        if self.is_muted(key) {
            return;
        }
        let line = format!("{key}: {msg}{}", self.origin(key));
        // One mistake inherited by many entries is reported once.
        if !self.list.contains(&line) {
            self.list.push(line);
        }
    }

    /// Whether `key` (or a key it is part of) was missing and filled in.
    pub(super) fn is_muted(&self, key: &str) -> bool {
        self.muted.iter().any(|m| {
            key.strip_prefix(m.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
    }

    /// " (in conf.d/x.toml)" for entries that came from a conf.d file.
    fn origin(&self, key: &str) -> String {
        let Some((arr, rest)) = key.split_once('[') else {
            return String::new();
        };
        let Some(idx) = rest.split(']').next().and_then(|i| i.parse::<usize>().ok()) else {
            return String::new();
        };
        self.tree
            .origins
            .get(&(arr.to_string(), idx))
            .map(|p| format!(" (in {})", p.display()))
            .unwrap_or_default()
    }
}

/// One section or entry, deserialised leniently: its every mistake is
/// reported and what is left is checked like a correct entry.
pub(super) fn typed<T: DeserializeOwned>(v: &Value, key: &str, p: &mut Problems) -> Option<T> {
    let r = super::lenient::deserialize::<T>(v, key, homes());
    for (k, msg) in r.problems {
        p.push(&k, msg);
    }
    p.muted.extend(r.filled);
    r.value
}

/// Where each key of the config lives, for "it belongs under …" hints.
fn homes() -> super::lenient::Elsewhere<'static> {
    use super::lenient::fields_of;
    use std::sync::OnceLock;
    static HOMES: OnceLock<Vec<(&'static str, &'static [&'static str])>> = OnceLock::new();
    HOMES.get_or_init(|| {
        vec![
            ("[daemon]", fields_of::<raw::Daemon>()),
            ("[influxdb]", fields_of::<raw::Influx>()),
            ("[polling]", fields_of::<raw::Polling>()),
            ("[[gateways]]", fields_of::<raw::Gateway>()),
            ("[[customers]]", fields_of::<raw::Customer>()),
            ("[[customers.suspensions]]", fields_of::<raw::Suspension>()),
            ("[customers.report]", fields_of::<raw::CustomerReport>()),
            ("[[meters]]", fields_of::<raw::Meter>()),
            (
                "a limits table ([meters.limits], [customers.limits])",
                fields_of::<crate::quality::limits::Overrides>(),
            ),
            ("[rules]", fields_of::<raw::Rules>()),
            ("[smtp]", fields_of::<raw::Smtp>()),
            ("[alerts]", fields_of::<raw::Alerts>()),
            ("[[alerts.groups]]", fields_of::<raw::AlertGroup>()),
            ("[reports]", fields_of::<raw::Reports>()),
            ("[http]", fields_of::<raw::Http>()),
            ("[cluster]", fields_of::<raw::Cluster>()),
            ("[plausibility]", fields_of::<raw::Plausibility>()),
        ]
    })
}

pub(super) fn section<T: DeserializeOwned + Default>(key: &str, p: &mut Problems) -> T {
    match p.tree.root.get(key) {
        None => T::default(),
        Some(v) => typed(v, key, p).unwrap_or_default(),
    }
}

pub(super) fn entries<T: DeserializeOwned>(key: &str, p: &mut Problems) -> Vec<(String, T)> {
    match p.tree.root.get(key) {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let k = format!("{key}[{i}]");
                typed(v, &k, p).map(|t| (k, t))
            })
            .collect(),
        Some(_) => {
            p.push(key, format!("must be an array of tables ([[{key}]])"));
            Vec::new()
        }
    }
}

pub(super) fn duration(
    v: Option<&str>,
    default: Duration,
    key: &str,
    p: &mut Problems,
) -> Duration {
    let Some(s) = v else { return default };
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            p.push(key, "must be longer than zero");
            default
        }
        Err(e) => {
            p.push(
                key,
                format!("\"{s}\" is not a duration like \"5s\" or \"500ms\" ({e})"),
            );
            default
        }
    }
}

/// A pause, which unlike other durations may be zero ("0", "0s", "0ms").
pub(super) fn pause(v: Option<&str>, default: Duration, key: &str, p: &mut Problems) -> Duration {
    match v.map(str::trim) {
        Some("0" | "0s" | "0ms") => Duration::ZERO,
        other => duration(other, default, key, p),
    }
}

pub(super) fn resolve(base: &Path, s: &str) -> PathBuf {
    let p = PathBuf::from(s);
    if p.is_absolute() { p } else { base.join(p) }
}

/// A secret from its inline value or from a file; both set is an error.
pub(super) fn secret(
    inline: Option<String>,
    file: Option<String>,
    key: &str,
    p: &mut Problems,
) -> Option<Secret> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            p.push(key, format!("set either {key} or {key}_file, not both"));
            None
        }
        (Some(s), None) => Some(Secret::new(s)),
        (None, Some(f)) => {
            // systemd LoadCredential= puts secrets in $CREDENTIALS_DIRECTORY.
            let path = match std::env::var_os("CREDENTIALS_DIRECTORY") {
                Some(dir) if Path::new(&f).is_relative() => PathBuf::from(dir).join(&f),
                _ => PathBuf::from(&f),
            };
            match std::fs::read_to_string(&path) {
                Ok(s) => Some(Secret::new(s.trim_end_matches(['\n', '\r']))),
                Err(e) => {
                    // The path is not secret; the content never appears.
                    p.push(
                        &format!("{key}_file"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        }
        (None, None) => None,
    }
}

/// Tag keys and values become InfluxDB tags: keep them to what every
/// backend and query language handles without surprises.
pub(super) fn check_tags(tags: &BTreeMap<String, String>, key: &str, v1: bool, p: &mut Problems) {
    for (k, v) in tags {
        if matches!(
            k.as_str(),
            "meter" | "customer" | "time" | "_field" | "_measurement"
        ) {
            p.push(&format!("{key}.tags.{k}"), "is reserved");
        } else if matches!(k.as_str(), "kind" | "phase" | "order" | "unit") {
            // A second tag of the same key makes InfluxDB reject the whole
            // batch ("duplicate tags").
            p.push(
                &format!("{key}.tags.{k}"),
                "is reserved: pqwatch tags its pq_event and pq_suspension points with it",
            );
        } else if !crate::schema::valid_field_name(k) {
            p.push(
                &format!("{key}.tags.{k}"),
                "tag keys must be lowercase snake_case",
            );
        }
        if v.is_empty() || v.chars().any(char::is_control) {
            p.push(
                &format!("{key}.tags.{k}"),
                "tag values must be non-empty and contain no control characters",
            );
        }
        if v1 && v.ends_with('\\') {
            p.push(&format!("{key}.tags.{k}"), V1_BACKSLASH);
        }
    }
}

/// InfluxDB 1.x reads a backslash before the separator that follows a tag
/// value as an escape, so such a value cannot be written there.
pub(super) const V1_BACKSLASH: &str =
    "cannot end with a backslash when writing to InfluxDB 1.x (api = \"v1\")";

pub(super) fn check_id(id: &str, key: &str, v1: bool, p: &mut Problems) {
    if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
        p.push(key, "must be 1–128 characters with no control characters");
    }
    if v1 && id.ends_with('\\') {
        p.push(key, V1_BACKSLASH);
    }
}

/// Check `host:port` without resolving it (resolution happens at connect
/// time, so a DNS outage at start-up does not stop the daemon).
pub(super) fn check_address(a: &str, key: &str, p: &mut Problems) {
    let ok = match a.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(char::is_whitespace)
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    };
    if !ok {
        p.push(
            key,
            format!("\"{a}\" is not host:port (e.g. \"10.20.1.5:502\")"),
        );
    }
}
