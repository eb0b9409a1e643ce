//! `[influxdb]`: where readings go (v2 or v1 API, credentials), batching,
//! and the outbox's durability and bounds.

use super::problems::{Problems, duration, secret, section};
use super::raw;
use crate::secret::Secret;
use std::time::Duration;

/// When a sealed batch is committed to the state database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Before it is sent: a crash loses at most the batch being assembled.
    Always,
    /// Only at shutdown (or when the memory bound is reached): fewer disk
    /// writes for flash-wear-sensitive boxes; a crash loses what is in memory.
    Memory,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Api {
    V2 {
        org: String,
        bucket: String,
        token: Secret,
    },
    V1 {
        database: String,
        retention_policy: Option<String>,
        username: Option<String>,
        password: Secret,
    },
}

#[derive(Debug, Clone)]
pub struct Influx {
    pub url: String,
    pub api: Api,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub timeout: Duration,
    pub gzip: bool,
    /// In-memory bound (points) of batches not yet in the outbox.
    pub max_buffered_points: usize,
    pub durability: Durability,
    /// Bound of the outbox on disk (compressed bytes).
    pub max_outbox_bytes: u64,
    /// Write requests outstanding at once (1 while writes fail).
    pub max_in_flight: usize,
}

pub(super) fn influx(p: &mut Problems) -> Option<Influx> {
    if !p.has("influxdb") {
        return None;
    }
    let mut r: raw::Influx = section("influxdb", p);
    if r.enabled == Some(false) {
        return None;
    }
    let url = influx_url(r.url.take(), p);
    let api = influx_api(&mut r, p)?;
    let batch_size = r.batch_size.unwrap_or(5000);
    if !(1..=1_000_000).contains(&batch_size) {
        p.push(
            "influxdb.batch_size",
            "must be between 1 and 1000000 points",
        );
    }
    let max_buffered_points = r.max_buffered_points.unwrap_or(2_000_000);
    if max_buffered_points < batch_size {
        p.push(
            "influxdb.max_buffered_points",
            "must be at least batch_size",
        );
    }
    let durability = match r.durability.as_deref() {
        None | Some("always") => Durability::Always,
        Some("memory") => Durability::Memory,
        Some(other) => {
            p.push(
                "influxdb.durability",
                format!("\"{other}\" is not \"always\" or \"memory\""),
            );
            Durability::Always
        }
    };
    let max_outbox_bytes = match &r.max_outbox_bytes {
        None => DEFAULT_OUTBOX_BYTES,
        Some(raw::ByteSize::Bytes(b)) => *b,
        Some(raw::ByteSize::Text(t)) => parse_size(t).unwrap_or_else(|| {
            p.push(
                "influxdb.max_outbox_bytes",
                format!("\"{t}\" is not a size like \"512MiB\" or \"4GiB\""),
            );
            DEFAULT_OUTBOX_BYTES
        }),
    };
    if max_outbox_bytes < 1 << 20 {
        p.push("influxdb.max_outbox_bytes", "must be at least 1MiB");
    }
    let max_in_flight = r.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT as u64);
    if !(1..=16).contains(&max_in_flight) {
        p.push(
            "influxdb.max_in_flight",
            format!("{max_in_flight} is not between 1 and 16 requests"),
        );
    }
    Some(Influx {
        max_in_flight: max_in_flight.clamp(1, 16) as usize,
        url,
        api,
        batch_size: batch_size as usize,
        flush_interval: duration(
            r.flush_interval.as_deref(),
            Duration::from_secs(1),
            "influxdb.flush_interval",
            p,
        ),
        timeout: duration(
            r.timeout.as_deref(),
            Duration::from_secs(10),
            "influxdb.timeout",
            p,
        ),
        gzip: r.gzip.unwrap_or(true),
        max_buffered_points: max_buffered_points as usize,
        durability,
        max_outbox_bytes,
    })
}

/// `influxdb.url`: http(s), without credentials (they would be printed
/// with it).
fn influx_url(url: Option<String>, p: &mut Problems) -> String {
    match url {
        None => {
            p.push("influxdb.url", "missing (e.g. \"http://127.0.0.1:8086\")");
            String::new()
        }
        Some(u) => {
            let u = u.trim_end_matches('/').to_string();
            // Never echo credentials written into the URL.
            let shown = crate::secret::redact_url(&u);
            match reqwest::Url::parse(&u) {
                Ok(url)
                    if (u.starts_with("http://") || u.starts_with("https://"))
                        && (!url.username().is_empty() || url.password().is_some()) =>
                {
                    p.push(
                        "influxdb.url",
                        format!(
                            "\"{shown}\" carries credentials: they would be printed with the URL; remove them and set influxdb.token / token_file (api = \"v2\") or influxdb.username with password / password_file (api = \"v1\")"
                        ),
                    );
                }
                Ok(_) if u.starts_with("http://") || u.starts_with("https://") => {}
                _ => p.push(
                    "influxdb.url",
                    format!("\"{shown}\" is not an http:// or https:// URL"),
                ),
            }
            u
        }
    }
}

/// The API and its credentials; v1 settings with v2 (and the reverse) are
/// mistakes. None for an unknown API.
fn influx_api(r: &mut raw::Influx, p: &mut Problems) -> Option<Api> {
    let api = match r.api.as_deref().unwrap_or("v2") {
        "v2" => {
            for (k, set) in [
                ("database", r.database.is_some()),
                ("retention_policy", r.retention_policy.is_some()),
                ("username", r.username.is_some()),
                (
                    "password",
                    r.password.is_some() || r.password_file.is_some(),
                ),
            ] {
                if set {
                    p.push(
                        &format!("influxdb.{k}"),
                        "is a v1 setting; with api = \"v2\" use org, bucket and token",
                    );
                }
            }
            let token = secret(r.token.take(), r.token_file.take(), "influxdb.token", p);
            if token.is_none() {
                p.push(
                    "influxdb.token",
                    "missing: set token, token_file or PQWATCH__INFLUXDB__TOKEN",
                );
            }
            if r.org.is_none() {
                p.push("influxdb.org", "missing");
            }
            if r.bucket.is_none() {
                p.push("influxdb.bucket", "missing");
            }
            Api::V2 {
                org: r.org.take().unwrap_or_default(),
                bucket: r.bucket.take().unwrap_or_default(),
                token: token.unwrap_or_default(),
            }
        }
        "v1" => {
            for (k, set) in [
                ("org", r.org.is_some()),
                ("bucket", r.bucket.is_some()),
                ("token", r.token.is_some() || r.token_file.is_some()),
            ] {
                if set {
                    p.push(
                        &format!("influxdb.{k}"),
                        "is a v2 setting; with api = \"v1\" use database, username and password",
                    );
                }
            }
            if r.database.is_none() {
                p.push("influxdb.database", "missing");
            }
            let password = secret(
                r.password.take(),
                r.password_file.take(),
                "influxdb.password",
                p,
            );
            if password.is_some() && r.username.is_none() {
                p.push("influxdb.username", "missing (a password is set)");
            }
            Api::V1 {
                database: r.database.take().unwrap_or_default(),
                retention_policy: r.retention_policy.take().filter(|s| !s.is_empty()),
                username: r.username.take(),
                password: password.unwrap_or_default(),
            }
        }
        other => {
            p.push(
                "influxdb.api",
                format!("\"{other}\" is not \"v2\" or \"v1\""),
            );
            return None;
        }
    };
    Some(api)
}

/// Requests outstanding at once while a backlog drains: enough to hide a
/// WAN round trip behind the server's own work (BENCHMARKS.md, "drain
/// through a 30 ms link"), few enough not to crowd a small InfluxDB.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;

/// 16 GiB: at the measured ~11.5 compressed bytes per point, about 1.5 G
/// points (29 hours of 1,000 meters × 72 fields every 5 s; BENCHMARKS.md).
pub(crate) const DEFAULT_OUTBOX_BYTES: u64 = 16 << 30;

/// "512MiB", "4GiB", "1GB", "1000000" → bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024f64.powi(4),
        _ => return None,
    };
    let v = n * mult;
    (v.is_finite() && v >= 0.0).then_some(v as u64)
}
