//! Deserialise one config entry leniently, so one mistake never hides the
//! next: every unknown key, missing key and wrong type of the entry is
//! collected as a problem in the user's words, and the entry is repaired
//! (an unknown or mistyped key removed, a missing one filled with a
//! placeholder) until it deserialises, so every later check still runs on
//! what the user wrote.
//!
//! Placeholders are returned as key paths: checks on them are muted by
//! `validate::Problems`, since the user has already been told the key is
//! missing. This module knows serde's messages and TOML, nothing of
//! pqwatch's rules.

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde_json::Value;

/// What lenient deserialisation of one entry found.
pub(super) struct Lenient<T> {
    /// The repaired entry (`None` only if it could not be repaired).
    pub value: Option<T>,
    /// (key path, message) in the order found.
    pub problems: Vec<(String, String)>,
    /// Key paths filled with a placeholder.
    pub filled: Vec<String>,
}

/// Elsewhere a key could belong: (where, its keys), for "it belongs
/// under [[meters]]" hints.
pub(super) type Elsewhere<'a> = &'a [(&'a str, &'static [&'static str])];

/// Repairs bounded so a pathological entry cannot loop.
const MAX_REPAIRS: usize = 64;

pub(super) fn deserialize<T: DeserializeOwned>(
    v: &Value,
    key: &str,
    elsewhere: Elsewhere,
) -> Lenient<T> {
    let mut v = v.clone();
    let mut out = Lenient {
        value: None,
        problems: Vec::new(),
        filled: Vec::new(),
    };
    // Keys already reported, so a removed required key is filled quietly.
    let mut reported: Vec<Vec<Step>> = Vec::new();
    for _ in 0..MAX_REPAIRS {
        let err = match serde_path_to_error::deserialize::<_, T>(&v) {
            Ok(t) => {
                out.value = Some(t);
                return out;
            }
            Err(e) => e,
        };
        let path = steps(err.path());
        let msg = err.into_inner().to_string();
        if let Some((field, known)) = unknown_field(&msg) {
            // serde_path_to_error's path ends at the unknown key itself.
            let parent = strip_last(&path, &field);
            let full = join(key, &parent, Some(&field));
            out.problems
                .push((full, unknown_key_message(&field, &known, elsewhere)));
            if !remove(&mut v, &parent, &field) {
                break;
            }
        } else if let Some(field) = missing_field(&msg) {
            let mut at = path.clone();
            at.push(Step::Key(field.clone()));
            if !reported.contains(&at) {
                out.problems.push((
                    join(key, &path, Some(&field)),
                    "missing; this entry needs it".to_string(),
                ));
            }
            out.filled.push(join(key, &path, Some(&field)));
            if !fill::<T>(&mut v, &path, &field) {
                break;
            }
            reported.push(at);
        } else {
            if path.is_empty() {
                // The entry itself has the wrong shape: nothing to repair.
                out.problems.push((key.to_string(), in_user_words(&msg)));
                return out;
            }
            out.problems
                .push((join(key, &path, None), in_user_words(&msg)));
            let (last, parent) = path.split_last().expect("non-empty");
            if !remove_step(&mut v, parent, last) {
                break;
            }
            reported.push(path);
        }
    }
    out.problems.push((
        key.to_string(),
        "too many mistakes in this entry to check the rest".into(),
    ));
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// serde_path_to_error's path as keys and indices.
fn steps(path: &serde_path_to_error::Path) -> Vec<Step> {
    path.iter()
        .filter_map(|s| match s {
            serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.clone())),
            _ => None,
        })
        .collect()
}

fn join(key: &str, path: &[Step], field: Option<&str>) -> String {
    let mut s = key.to_string();
    for step in path {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    if let Some(f) = field {
        if !s.is_empty() {
            s.push('.');
        }
        s.push_str(f);
    }
    s
}

fn strip_last(path: &[Step], field: &str) -> Vec<Step> {
    match path.split_last() {
        Some((Step::Key(k), parent)) if k == field => parent.to_vec(),
        _ => path.to_vec(),
    }
}

fn at_mut<'v>(v: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    let mut cur = v;
    for step in path {
        cur = match step {
            Step::Key(k) => cur.as_object_mut()?.get_mut(k)?,
            Step::Index(i) => cur.as_array_mut()?.get_mut(*i)?,
        };
    }
    Some(cur)
}

fn remove(v: &mut Value, parent: &[Step], field: &str) -> bool {
    at_mut(v, parent)
        .and_then(Value::as_object_mut)
        .and_then(|o| o.remove(field))
        .is_some()
}

fn remove_step(v: &mut Value, parent: &[Step], last: &Step) -> bool {
    let Some(p) = at_mut(v, parent) else {
        return false;
    };
    match (last, p) {
        (Step::Key(k), Value::Object(o)) => o.remove(k).is_some(),
        (Step::Index(i), Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
            true
        }
        _ => false,
    }
}

/// Fill a missing key with the first placeholder its type accepts.
fn fill<T: DeserializeOwned>(v: &mut Value, parent: &[Step], field: &str) -> bool {
    let candidates = [
        Value::String(String::new()),
        Value::from(0),
        Value::Bool(false),
        Value::Array(Vec::new()),
        Value::Object(Default::default()),
    ];
    let mut at = parent.to_vec();
    at.push(Step::Key(field.to_string()));
    for c in candidates {
        let Some(o) = at_mut(v, parent).and_then(Value::as_object_mut) else {
            return false;
        };
        o.insert(field.to_string(), c);
        match serde_path_to_error::deserialize::<_, T>(&*v) {
            Ok(_) => return true,
            Err(e) => {
                let p = steps(e.path());
                if p != at {
                    // The placeholder fits; the next problem is elsewhere.
                    return true;
                }
            }
        }
    }
    false
}

/// `unknown field `x`, expected one of `a`, `b`` → (x, [a, b]).
fn unknown_field(msg: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let known = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((field.to_string(), known))
}

fn missing_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("missing field `")?;
    Some(rest.split_once('`')?.0.to_string())
}

fn unknown_key_message(field: &str, known: &[String], elsewhere: Elsewhere) -> String {
    // A key that exists elsewhere was put under the wrong header more
    // likely than mistyped (`gzip` in a meter is [influxdb]'s, not `id`).
    let homes: Vec<&str> = elsewhere
        .iter()
        .filter(|(_, keys)| keys.contains(&field))
        .map(|(w, _)| *w)
        .collect();
    if !homes.is_empty() {
        return format!(
            "unknown key here; it belongs under {} (in TOML a key belongs to the table header above it)",
            homes.join(" or ")
        );
    }
    if let Some(s) = crate::schema::did_you_mean(field, known.iter().map(String::as_str)) {
        return format!("unknown key (did you mean \"{s}\"?)");
    }
    if known.is_empty() {
        "unknown key".to_string()
    } else {
        format!("unknown key (known: {})", known.join(", "))
    }
}

/// serde's type errors rewritten: what was found, what is expected and an
/// example. Messages written for users (custom errors) pass unchanged.
pub(super) fn in_user_words(msg: &str) -> String {
    let (kind, rest) = if let Some(r) = msg.strip_prefix("invalid type: ") {
        ("type", r)
    } else if let Some(r) = msg.strip_prefix("invalid value: ") {
        ("value", r)
    } else if let Some(name) = msg.strip_prefix("data did not match any variant of untagged enum ")
    {
        return match name {
            "RatioValue" => {
                "is not a ratio; write a number (40) or primary/secondary in quotes (\"10000/100\")"
                    .into()
            }
            "ByteSize" => {
                "is not a size; write bytes (1073741824) or a size in quotes (\"1GiB\")".into()
            }
            _ => format!("is not a valid {name}"),
        };
    } else {
        return msg.to_string();
    };
    let Some((found, expected)) = rest.rsplit_once(", expected ") else {
        return msg.to_string();
    };
    let shown = found_as_written(found);
    if kind == "value" {
        if let Some(range) = integer_range(expected) {
            return format!("{shown} is out of range; write a whole number{range}");
        }
        return format!("{shown} is not {expected}");
    }
    match expected {
        "a string" => {
            let bare = shown.trim_matches('"');
            format!("{shown} is not text; write it in quotes, e.g. \"{bare}\"")
        }
        "f64" | "f32" => match found {
            f if f.starts_with("string ") => format!(
                "{shown} is not a number; write it without quotes, e.g. {}",
                shown.trim_matches('"')
            ),
            _ => format!("{shown} is not a number; write e.g. 10 or 0.5"),
        },
        "a boolean" => format!("{shown} is not true or false; write true or false without quotes"),
        "a sequence" => format!("{shown} is not a list; write e.g. [\"a\", \"b\"]"),
        e if e.starts_with("struct ") || e == "a map" => {
            format!("{shown} is not a table; write {{ key = value }} or a [section] header")
        }
        e => match integer_range(e) {
            Some(range) if found.starts_with("string ") => {
                let bare = shown.trim_matches('"');
                format!(
                    "{shown} is not a whole number; write it without quotes, e.g. {bare}{range}"
                )
            }
            Some(range) => format!("{shown} is not a whole number; write one like 3{range}"),
            None => format!("{shown} is not {e}"),
        },
    }
}

/// serde's `Unexpected` as the user wrote it in TOML.
fn found_as_written(found: &str) -> String {
    for prefix in ["integer ", "floating point ", "boolean "] {
        if let Some(v) = found.strip_prefix(prefix) {
            return v.trim_matches('`').to_string();
        }
    }
    if let Some(v) = found.strip_prefix("string ") {
        return v.to_string();
    }
    match found {
        "sequence" => "a list".into(),
        "map" => "a table".into(),
        other => other.to_string(),
    }
}

/// The range of an integer type as a suffix for the messages above ("" for
/// signed types, whose range no config value comes near).
fn integer_range(expected: &str) -> Option<&'static str> {
    Some(match expected {
        "u8" => " (0 to 255)",
        "u16" => " (0 to 65535)",
        "u32" => " (0 to 4294967295)",
        "u64" | "usize" => " (0 or more)",
        "i64" | "i32" | "isize" => "",
        _ => return None,
    })
}

/// The keys a serde-derived struct accepts, read from its `Deserialize`
/// impl (so the hint tables never drift from `config::raw`).
pub(super) fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Capture<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Capture<'_> {
        type Error = de::value::Error;
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("captured"))
        }
        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Capture(&mut fields));
    fields
}

/// `deserialize_with` for duration settings: a number gets "write \"5s\"".
pub(super) fn duration_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a duration in quotes, e.g. \"5s\", \"500ms\" or \"15m\"")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(Some(s.to_string()))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
            Err(E::custom(format!(
                "{n} is not a duration; write \"{n}s\" (or \"{n}ms\", \"{n}m\")"
            )))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
            Err(E::custom(format!(
                "{n} is not a duration; write a positive one in quotes, e.g. \"5s\""
            )))
        }
        fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
            Err(E::custom(format!(
                "{n} is not a duration; write it in quotes with a unit, e.g. \"{}ms\"",
                (n * 1000.0).round()
            )))
        }
        fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
            Err(E::custom(format!(
                "{b} is not a duration; write one in quotes, e.g. \"5s\""
            )))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_option(V)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Entry {
        id: String,
        unit: u8,
        nominal_voltage: f64,
        #[serde(default, deserialize_with = "duration_text")]
        interval: Option<String>,
        fields: Option<Vec<String>>,
        gzip: Option<bool>,
    }

    fn run(v: Value) -> Lenient<Entry> {
        deserialize::<Entry>(
            &v,
            "meters[0]",
            &[("[polling]", &["timeout", "reconnect_max"])],
        )
    }

    #[test]
    fn every_mistake_of_an_entry_is_reported_at_once() {
        let r = run(serde_json::json!({
            "id": 7, "unit": 300, "untis": 1, "interval": 5,
            "fields": ["a", 3], "gzip": "yes", "reconnect_max": "30s"
        }));
        let got: Vec<String> = r
            .problems
            .iter()
            .map(|(k, m)| format!("{k}: {m}"))
            .collect();
        let all = got.join("\n");
        for needle in [
            "meters[0].id: 7 is not text; write it in quotes, e.g. \"7\"",
            "meters[0].unit: 300 is out of range; write a whole number (0 to 255)",
            "meters[0].untis: unknown key (did you mean \"unit\"?)",
            "meters[0].interval: 5 is not a duration; write \"5s\"",
            "meters[0].fields[1]: 3 is not text",
            "meters[0].gzip: \"yes\" is not true or false",
            "meters[0].reconnect_max: unknown key here; it belongs under [polling]",
            "meters[0].nominal_voltage: missing",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        // id and unit were reported as mistyped, not again as missing.
        assert_eq!(
            got.iter().filter(|g| g.starts_with("meters[0].id")).count(),
            1,
            "{all}"
        );
        assert_eq!(
            got.iter()
                .filter(|g| g.starts_with("meters[0].unit"))
                .count(),
            1,
            "{all}"
        );
        let e = r.value.expect("repaired");
        assert_eq!(
            e.fields.as_deref(),
            Some(&["a".to_string()][..]),
            "the good element stays"
        );
        assert!(r.filled.contains(&"meters[0].nominal_voltage".to_string()));
        assert!(r.filled.contains(&"meters[0].id".to_string()));
    }

    #[test]
    fn a_good_entry_has_no_problems() {
        let r = run(serde_json::json!({"id": "M1", "unit": 1, "nominal_voltage": 400.0}));
        assert!(r.problems.is_empty() && r.filled.is_empty());
        assert_eq!(r.value.unwrap().unit, 1);
    }

    #[test]
    fn fields_are_read_from_the_derive() {
        assert_eq!(
            fields_of::<Entry>(),
            &[
                "id",
                "unit",
                "nominal_voltage",
                "interval",
                "fields",
                "gzip"
            ]
        );
    }

    #[test]
    fn type_errors_speak_toml() {
        assert_eq!(
            in_user_words("invalid type: string \"10\", expected f64"),
            "\"10\" is not a number; write it without quotes, e.g. 10"
        );
        assert_eq!(
            in_user_words("invalid value: integer `70000`, expected u16"),
            "70000 is out of range; write a whole number (0 to 65535)"
        );
        assert_eq!(
            in_user_words("invalid type: string \"3\", expected i64"),
            "\"3\" is not a whole number; write it without quotes, e.g. 3"
        );
        assert_eq!(in_user_words("my own words"), "my own words");
    }
}
