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

mod raw;
pub mod sections;
mod validate;

pub use validate::{
    Api, Config, Customer, Daemon, Durability, GatewaySettings, Influx, Meter, Polling, parse_size,
    validate_tree,
};

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
    pub fn one(p: impl Into<String>) -> Self {
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
    pub root: serde_json::Map<String, Value>,
    /// (array name, index) → file, for entries from conf.d files.
    pub origins: BTreeMap<(String, usize), PathBuf>,
    pub base_dir: PathBuf,
}

/// Load and validate the configuration at `path` with the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    load_with_env(path, env)
}

/// As [`load`], with an explicit environment (tests).
pub fn load_with_env(
    path: &Path,
    env: std::collections::HashMap<String, String>,
) -> Result<Config, ConfigError> {
    let tree = read_tree(path, env)?;
    validate_tree(&tree)
}

/// Load a config text (generated fleets, tests), with no conf.d and no env.
pub fn from_str(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    let root = parse_file_text(text, "embedded config")?;
    validate_tree(&Tree {
        root,
        origins: BTreeMap::new(),
        base_dir: base_dir.to_path_buf(),
    })
}

/// As [`from_str`], with `PQWATCH__…` environment overrides (the demo).
pub fn from_str_with_env(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    let mut root = parse_file_text(text, "embedded config")?;
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    apply_env(&mut root, env).map_err(ConfigError::one)?;
    validate_tree(&Tree {
        root,
        origins: BTreeMap::new(),
        base_dir: base_dir.to_path_buf(),
    })
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
                Ok(t) => merge_file(&mut root, t, &file, &mut origins),
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
        .map_err(|e| ConfigError::one(format!("{name}: {e}")))
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
