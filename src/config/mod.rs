//! Configuration: files → one merged tree → validated, typed settings.
//!
//! Sources, in increasing precedence: the main file (`-c FILE`), every
//! `conf.d/*.toml` beside it in name order, then environment variables
//! `PQWATCH__SECTION__KEY` (e.g. `PQWATCH__INFLUXDB__TOKEN`). Tables merge
//! key by key; the arrays `[[meters]]`, `[[customers]]` and `[[gateways]]`
//! are concatenated, so a conf.d file can add a district's meters. Secrets
//! may also come from files (`token_file`, `password_file`); a relative path
//! there is resolved against `$CREDENTIALS_DIRECTORY` (systemd
//! `LoadCredential=`) when set.
//!
//! Validation collects every problem, each with its key path and, for array
//! entries that came from a conf.d file, that file; the caller prints them
//! all and exits 78 (EX_CONFIG). Nothing here opens a socket.

mod daemon;
mod fleet;
mod influx;
mod lenient;
pub(crate) mod mail;
mod problems;
mod raw;
pub mod reload;
pub(crate) mod reports;
pub(crate) mod rules;
pub mod sections;
mod validate;

pub(crate) use daemon::GatewaySettings;
pub use fleet::{Customer, Meter};
pub use influx::{Api, DEFAULT_MAX_IN_FLIGHT, Durability, Influx, parse_size};
pub use validate::{Config, SECTIONS, validate_tree};

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where pqwatch looks when no `-c` is given.
pub const DEFAULT_PATH: &str = "/etc/pqwatch/pqwatch.toml";

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{n} configuration problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub(crate) fn one(p: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![p.into()],
        }
    }
}

/// Arrays of tables that conf.d files extend rather than replace.
const APPENDED: &[&str] = &["meters", "customers", "gateways"];

/// The merged tree plus, for every appended array entry, the file it came from.
#[derive(Debug, Default)]
pub struct Tree {
    pub(crate) root: serde_json::Map<String, Value>,
    /// (array name, index) → file, for entries from conf.d files.
    pub origins: BTreeMap<(String, usize), PathBuf>,
    pub(crate) base_dir: PathBuf,
}

/// Load and validate the configuration at `path` with the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    load_with_env(path, env)
}

/// As [`load`], with an explicit environment (tests).
pub(crate) fn load_with_env(
    path: &Path,
    env: std::collections::HashMap<String, String>,
) -> Result<Config, ConfigError> {
    let tree = read_tree(path, env).map_err(printable)?;
    validate_tree(&tree).map_err(printable)
}

/// Load a config text (generated fleets, tests), with no conf.d and no env.
pub fn from_str(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    let root = parse_file_text(text, "embedded config")?;
    validate_tree(&Tree {
        root,
        origins: BTreeMap::new(),
        base_dir: base_dir.to_path_buf(),
    })
    .map_err(printable)
}

/// As [`from_str`], with `PQWATCH__…` environment overrides (the demo).
pub fn from_str_with_env(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    let mut root = parse_file_text(text, "embedded config")?;
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    apply_env(&mut root, env).map_err(|e| printable(ConfigError::one(e)))?;
    validate_tree(&Tree {
        root,
        origins: BTreeMap::new(),
        base_dir: base_dir.to_path_buf(),
    })
    .map_err(printable)
}

/// Problems quote configured values; a newline or an escape sequence in
/// one must not split a problem into lines or reach the terminal or the
/// log as is: control and bidirectional formatting characters are shown
/// escaped (`\n`, `\u{1b}`, `\u{202e}`).
fn printable(mut e: ConfigError) -> ConfigError {
    for p in &mut e.problems {
        if p.chars().any(|c| c.is_control() || is_bidi(c)) {
            *p = p
                .chars()
                .map(|c| {
                    if c.is_control() || is_bidi(c) {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect();
        }
    }
    e
}

/// Characters that reorder how text displays (bidirectional controls):
/// config values and e-mail text drop them.
pub(crate) fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Environment overrides. The config crate lowercases keys and splits on
/// "__"; values are parsed as numbers/bools where they look like one.
fn apply_env(
    root: &mut serde_json::Map<String, Value>,
    env: std::collections::HashMap<String, String>,
) -> Result<(), String> {
    let env_src = config::Environment::with_prefix("PQWATCH")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .source(Some(env.into_iter().collect()));
    let over = config::Config::builder()
        .add_source(env_src)
        .build()
        .and_then(|c| c.try_deserialize::<serde_json::Map<String, Value>>())
        .map_err(|e| format!("environment (PQWATCH__…): {e}"))?;
    deep_merge(root, over);
    Ok(())
}

fn read_tree(
    path: &Path,
    env: std::collections::HashMap<String, String>,
) -> Result<Tree, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::one(format!("{}: cannot read: {e}", path.display())))?;
    let mut root = parse_file_text(&text, &path.display().to_string())?;
    warn_if_exposed(path, &root);
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut origins = BTreeMap::new();
    let mut problems = Vec::new();

    let confd = base_dir.join("conf.d");
    if let Ok(entries) = std::fs::read_dir(&confd) {
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for file in files {
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(format!("{}: cannot read: {e}", file.display()));
                    continue;
                }
            };
            match parse_file_text(&text, &file.display().to_string()) {
                Ok(t) => {
                    warn_if_exposed(&file, &t);
                    merge_file(&mut root, t, &file, &mut origins);
                }
                Err(e) => problems.extend(e.problems),
            }
        }
    }

    if let Err(e) = apply_env(&mut root, env) {
        problems.push(e);
    }

    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    Ok(Tree {
        root,
        origins,
        base_dir,
    })
}

/// Parse one TOML file through the config crate into a JSON-like tree.
fn parse_file_text(text: &str, name: &str) -> Result<serde_json::Map<String, Value>, ConfigError> {
    config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize::<serde_json::Map<String, Value>>())
        .map_err(|e| {
            printable(ConfigError::one(format!(
                "{name}: {}",
                located(text, &e.to_string())
            )))
        })
}

/// The config crate's error, with the position the TOML parser gives when
/// the crate dropped it ("number too large to fit in target type"). The
/// message stays the crate's: the parser's would quote the value.
fn located(text: &str, e: &str) -> String {
    let msg = without_excerpt(e);
    if msg.starts_with("TOML parse error at") {
        return msg;
    }
    match text.parse::<toml::Table>() {
        Err(t) => match t.to_string().lines().next() {
            Some(at) if at.starts_with("TOML parse error at") => format!("{at}: {msg}"),
            _ => msg,
        },
        Ok(_) => msg,
    }
}

/// A TOML syntax error on one line: "TOML parse error at line 3, column 9:
/// string values must be quoted". The parser also quotes the source line
/// (`3 | token = s3cret`), which may hold a token or a password, and must
/// not reach a terminal or a log.
fn without_excerpt(e: &str) -> String {
    let excerpt = |l: &str| {
        l.trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start()
            .starts_with('|')
    };
    e.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !excerpt(l))
        .collect::<Vec<_>>()
        .join(": ")
}

/// Keys whose values are secrets when written in a config file.
const SECRET_KEYS: &[(&str, &str)] = &[
    ("influxdb", "token"),
    ("influxdb", "password"),
    ("smtp", "password"),
    ("http", "token"),
];

/// A file that holds secrets and that every user can read gets a warning
/// naming the file and the keys, never the values.
fn warn_if_exposed(path: &Path, tree: &serde_json::Map<String, Value>) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if let Some(msg) = exposure(path, tree, meta.permissions().mode()) {
        tracing::warn!(file = %path.display(), "{msg}");
    }
}

/// The warning for a file of this `mode` and content, if it deserves one.
/// Readable by others, not by the group: the package installs the config
/// as 0640 root:pqwatch so that the service (group pqwatch) reads it.
fn exposure(path: &Path, tree: &serde_json::Map<String, Value>, mode: u32) -> Option<String> {
    if mode & 0o004 == 0 {
        return None;
    }
    let keys: Vec<String> = SECRET_KEYS
        .iter()
        .filter(|(section, key)| {
            tree.get(*section)
                .and_then(|s| s.get(*key))
                .is_some_and(|v| !v.is_null() && v.as_str() != Some(""))
        })
        .map(|(section, key)| format!("{section}.{key}"))
        .collect();
    if keys.is_empty() {
        return None;
    }
    Some(format!(
        "{} holds {} and every user can read it (mode {:03o}): chmod o-r it \
         (0640 with the service's group, or 0600), or move the secrets to \
         token_file/password_file or PQWATCH__… environment variables",
        path.display(),
        keys.join(", "),
        mode & 0o777
    ))
}

fn merge_file(
    root: &mut serde_json::Map<String, Value>,
    file: serde_json::Map<String, Value>,
    path: &Path,
    origins: &mut BTreeMap<(String, usize), PathBuf>,
) {
    for (k, v) in file {
        if APPENDED.contains(&k.as_str())
            && let Value::Array(items) = v
        {
            let arr = root
                .entry(k.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(existing) = arr {
                for item in items {
                    origins.insert((k.clone(), existing.len()), path.to_path_buf());
                    existing.push(item);
                }
                continue;
            }
            // Not an array in the main file: let validation complain.
            root.insert(k, Value::Array(items));
            continue;
        }
        match (root.get_mut(&k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => deep_merge(a, b),
            (_, v) => {
                root.insert(k, v);
            }
        }
    }
}

fn deep_merge(a: &mut serde_json::Map<String, Value>, b: serde_json::Map<String, Value>) {
    for (k, v) in b {
        match (a.get_mut(&k), v) {
            (Some(Value::Object(x)), Value::Object(y)) => deep_merge(x, y),
            (_, v) => {
                a.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod exposure_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_world_readable_file_with_a_secret_is_named_without_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pqwatch.toml");
        let text = "[influxdb]\nurl = \"http://127.0.0.1:8086\"\ntoken = \"Hidden-Tok3n-9\"\n[smtp]\npassword = \"Hidden-Pa55-1\"\n";
        std::fs::write(&path, text).unwrap();
        let tree = parse_file_text(text, "t").unwrap();
        let at = |mode: u32| {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            exposure(&path, &tree, mode)
        };
        let w = at(0o644).expect("0644 with secrets warns");
        assert!(w.contains(&path.display().to_string()), "{w}");
        assert!(
            w.contains("influxdb.token, smtp.password") && w.contains("644"),
            "{w}"
        );
        assert!(!w.contains("Hidden"), "{w}");
        assert_eq!(at(0o640), None, "the packaged 0640 root:pqwatch");
        assert_eq!(at(0o600), None);
        // No secret in the file: nothing to say.
        let plain = parse_file_text("[influxdb]\ntoken_file = \"t\"\n", "t").unwrap();
        assert_eq!(exposure(&path, &plain, 0o100644), None);
    }

    #[test]
    fn problems_show_control_characters_escaped() {
        let e = printable(ConfigError::one(
            "smtp.from: \"a\nb\u{1b}[31m\u{202e}\" is not an address",
        ));
        assert_eq!(
            e.problems,
            ["smtp.from: \"a\\nb\\u{1b}[31m\\u{202e}\" is not an address"]
        );
    }

    #[test]
    fn a_number_too_large_says_where_and_not_what() {
        let e =
            parse_file_text("[smtp]\npassword = 98765432109876543210987\n", "f.toml").unwrap_err();
        assert_eq!(
            e.problems,
            [
                "f.toml: TOML parse error at line 2, column 12: number too large to fit in target type"
            ]
        );
    }

    #[test]
    fn syntax_errors_keep_their_place_but_not_the_line() {
        let e = parse_file_text("[http]\ntoken = Hidden-Tok3n-9\n", "f.toml").unwrap_err();
        let p = &e.problems[0];
        assert!(!p.contains("Hidden") && !p.contains('\n'), "{p}");
        assert!(
            p.starts_with("f.toml: TOML parse error at line 2, column 9: "),
            "{p}"
        );
    }
}
