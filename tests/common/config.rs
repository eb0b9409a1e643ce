//! The text of an integration test's config, built in one place.
//!
//! Every test config starts the same way: built-in profiles only
//! (`[daemon] profile_dir = "/nonexistent"`), then whichever of
//! `[influxdb]`, `[polling]`, `[smtp]`, `[http]`, `[reports]` the test needs,
//! then its own customers, meters and other sections. [`TestConfig`] writes
//! that start; a test sets or overrides single keys of a table and appends
//! the rest as TOML text ([`TestConfig::push`]). It renders text, nothing
//! else (no pqwatch code here): a test parses it with
//! `pqwatch::config::from_str` or `e2e::config`, or writes it to a file for
//! the binary.
//!
//! Tests about malformed or unusual config text (tests/cli.rs's broken
//! files, tests/prop_config.rs's base for mutations) keep their own text:
//! there the bytes are what is tested.

use std::fmt;
use std::path::{Path, PathBuf};

/// A test's config file, table by table; [`fmt::Display`] renders it.
///
/// ```ignore
/// let text = TestConfig::fast(&vm.url())
///     .daemon("timezone", "UTC")
///     .polling("1s", "500ms")
///     .push(fleet::HV_CUSTOMER)
///     .push(&fleet::hv_meter("M-HV", "HV", port, 1))
///     .to_string();
/// ```
#[derive(Debug, Clone)]
pub(crate) struct TestConfig {
    /// In the order they were first set; `[daemon]` first.
    tables: Vec<Table>,
    /// Appended after the tables, as written.
    tail: String,
}

#[derive(Debug, Clone)]
struct Table {
    name: String,
    /// `(key, TOML value)`, in the order first set.
    keys: Vec<(String, String)>,
}

impl Default for TestConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl TestConfig {
    /// `[daemon] profile_dir = "/nonexistent"`: the built-in profiles only,
    /// everything else at its default.
    pub(crate) fn new() -> Self {
        TestConfig {
            tables: Vec::new(),
            tail: String::new(),
        }
        .daemon("profile_dir", "/nonexistent")
    }

    /// The start of an end-to-end test: InfluxDB (v2 API) at `influx_url`
    /// ([`influx_v2`](Self::influx_v2), flushed every 200 ms), polls every
    /// 500 ms with a 300 ms timeout.
    pub(crate) fn fast(influx_url: &str) -> Self {
        Self::new().influx_v2(influx_url).polling("500ms", "300ms")
    }

    /// Sets `key` in `[table]` (creating the table), replacing an earlier
    /// value of the same key.
    pub(crate) fn set(mut self, table: &str, key: &str, value: impl TomlValue) -> Self {
        let value = value.toml();
        let t = match self.tables.iter().position(|t| t.name == table) {
            Some(i) => &mut self.tables[i],
            None => {
                self.tables.push(Table {
                    name: table.to_string(),
                    keys: Vec::new(),
                });
                self.tables.last_mut().unwrap()
            }
        };
        match t.keys.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value,
            None => t.keys.push((key.to_string(), value)),
        }
        self
    }

    /// A key of `[daemon]`.
    pub(crate) fn daemon(self, key: &str, value: impl TomlValue) -> Self {
        self.set("daemon", key, value)
    }

    /// `[daemon] state_dir`.
    pub(crate) fn state_dir(self, dir: impl AsRef<Path>) -> Self {
        self.daemon("state_dir", dir.as_ref())
    }

    /// A key of `[influxdb]`.
    pub(crate) fn influx(self, key: &str, value: impl TomlValue) -> Self {
        self.set("influxdb", key, value)
    }

    /// `[influxdb]` on the v2 API at `url` (org "o", bucket "b", token "t"),
    /// flushed every 200 ms so a test sees its points soon.
    pub(crate) fn influx_v2(self, url: &str) -> Self {
        self.influx("url", url)
            .influx("org", "o")
            .influx("bucket", "b")
            .influx("token", "t")
            .influx("flush_interval", "200ms")
    }

    /// `[influxdb]` on the 1.x API at `url`, database `database`, flushed
    /// every 200 ms.
    pub(crate) fn influx_v1(self, url: &str, database: &str) -> Self {
        self.influx("url", url)
            .influx("api", "v1")
            .influx("database", database)
            .influx("flush_interval", "200ms")
    }

    /// `[polling] interval` and `timeout`.
    pub(crate) fn polling(self, interval: &str, timeout: &str) -> Self {
        self.set("polling", "interval", interval)
            .set("polling", "timeout", timeout)
    }

    /// A key of `[smtp]`.
    pub(crate) fn smtp(self, key: &str, value: impl TomlValue) -> Self {
        self.set("smtp", key, value)
    }

    /// `[smtp]` to a plain-text server on 127.0.0.1:`port` (the SMTP peer
    /// of `tests/smtp`).
    pub(crate) fn smtp_peer(self, port: u16) -> Self {
        self.smtp("host", "127.0.0.1")
            .smtp("port", port)
            .smtp("security", "none")
    }

    /// A key of `[http]`.
    pub(crate) fn http(self, key: &str, value: impl TomlValue) -> Self {
        self.set("http", key, value)
    }

    /// A key of `[reports]`.
    pub(crate) fn reports(self, key: &str, value: impl TomlValue) -> Self {
        self.set("reports", key, value)
    }

    /// Appends TOML text after the tables, as written: `[[customers]]`,
    /// `[[meters]]`, `[rules]`, `[alerts]`, … A table set with
    /// [`set`](Self::set) must not be written here again.
    pub(crate) fn push(mut self, text: &str) -> Self {
        if !self.tail.is_empty() && !self.tail.ends_with('\n') {
            self.tail.push('\n');
        }
        self.tail.push_str(text);
        self
    }
}

impl fmt::Display for TestConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for t in &self.tables {
            writeln!(f, "[{}]", t.name)?;
            for (k, v) in &t.keys {
                writeln!(f, "{k} = {v}")?;
            }
            writeln!(f)?;
        }
        f.write_str(&self.tail)
    }
}

/// A value as TOML writes it: text and paths quoted, numbers and booleans
/// bare, `[&str; N]` an array of strings. Inline tables and other arrays
/// go in [`TestConfig::push`] text.
pub(crate) trait TomlValue {
    fn toml(&self) -> String;
}

/// A TOML basic string (JSON's escapes are TOML's).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("string to JSON")
}

impl TomlValue for &str {
    fn toml(&self) -> String {
        quoted(self)
    }
}

impl TomlValue for String {
    fn toml(&self) -> String {
        quoted(self)
    }
}

impl TomlValue for &String {
    fn toml(&self) -> String {
        quoted(self)
    }
}

impl TomlValue for &Path {
    fn toml(&self) -> String {
        quoted(&self.display().to_string())
    }
}

impl TomlValue for PathBuf {
    fn toml(&self) -> String {
        self.as_path().toml()
    }
}

impl TomlValue for &PathBuf {
    fn toml(&self) -> String {
        self.as_path().toml()
    }
}

impl<const N: usize> TomlValue for [&str; N] {
    fn toml(&self) -> String {
        let items: Vec<String> = self.iter().map(|s| quoted(s)).collect();
        format!("[{}]", items.join(", "))
    }
}

macro_rules! bare {
    ($($t:ty),*) => {
        $(impl TomlValue for $t {
            fn toml(&self) -> String {
                self.to_string()
            }
        })*
    };
}
bare!(bool, u8, u16, u32, u64, usize, i64);
