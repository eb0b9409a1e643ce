//! The mail sections: `[smtp]` (where mail goes) and `[alerts]` (who gets
//! operator alerts, and how they are digested), checked with every
//! problem's key path.

use super::problems::{Problems, duration, secret, section};
use super::raw;
use super::sections::{Language, language};
use crate::secret::Secret;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain connection upgraded with STARTTLS (required).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only for a relay on localhost.
    None,
}

/// Validated `[smtp]`. With no `host`, mail is written as .eml files.
#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: Option<String>,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
    pub password: Secret,
    pub from: String,
    pub timeout: Duration,
    pub eml_dir: PathBuf,
}

pub(super) fn smtp(base: &Path, p: &mut Problems) -> Smtp {
    let r: raw::Smtp = section("smtp", p);
    let security = match r.security.as_deref() {
        None | Some("starttls") => Security::StartTls,
        Some("tls") => Security::Tls,
        Some("none") => Security::None,
        Some(other) => {
            p.push(
                "smtp.security",
                format!("\"{other}\" is not \"starttls\", \"tls\" or \"none\""),
            );
            Security::StartTls
        }
    };
    let port = r.port.unwrap_or(match security {
        Security::Tls => 465,
        Security::StartTls => 587,
        Security::None => 25,
    });
    if security == Security::None
        && let Some(h) = &r.host
        && !matches!(h.as_str(), "localhost" | "127.0.0.1" | "::1")
    {
        p.push("smtp.security", format!("\"none\" sends passwords and mail in clear; allowed only for a relay on localhost, not \"{h}\""));
    }
    let password = secret(r.password, r.password_file, "smtp.password", p);
    if password.is_some() && r.username.is_none() {
        p.push("smtp.username", "missing (a password is set)");
    }
    let from = r
        .from
        .unwrap_or_else(|| "pqwatch <pqwatch@localhost>".into());
    if from.parse::<lettre::message::Mailbox>().is_err() {
        p.push(
            "smtp.from",
            format!("\"{from}\" is not an address like \"Grid PQ <pq@utility.example>\""),
        );
    }
    let eml_dir = match &r.eml_dir {
        Some(d) => {
            let pb = PathBuf::from(d);
            if pb.is_absolute() { pb } else { base.join(pb) }
        }
        None => PathBuf::new(),
    };
    Smtp {
        host: r.host,
        port,
        security,
        username: r.username,
        password: password.unwrap_or_default(),
        from,
        timeout: duration(
            r.timeout.as_deref(),
            Duration::from_secs(30),
            "smtp.timeout",
            p,
        ),
        eml_dir,
    }
}

/// A recipient list and its language.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipients {
    pub addresses: Vec<String>,
    pub language: Language,
}

/// Validated `[alerts]`.
#[derive(Debug, Clone)]
pub struct Alerts {
    pub enabled: bool,
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub max_per_meter_per_hour: u32,
    pub resolved: bool,
    pub default: Recipients,
    pub groups: BTreeMap<String, Recipients>,
}

pub(super) fn addresses(list: &[String], key: &str, p: &mut Problems) -> Vec<String> {
    for (i, a) in list.iter().enumerate() {
        if a.parse::<lettre::message::Mailbox>().is_err() {
            p.push(
                &format!("{key}[{i}]"),
                format!("\"{a}\" is not an e-mail address"),
            );
        }
    }
    list.to_vec()
}

pub(super) fn alerts(p: &mut Problems) -> Alerts {
    let r: raw::Alerts = section("alerts", p);
    let min_delay = duration(
        r.min_delay.as_deref(),
        Duration::from_secs(60),
        "alerts.min_delay",
        p,
    );
    let max_delay = duration(
        r.max_delay.as_deref(),
        Duration::from_secs(300),
        "alerts.max_delay",
        p,
    );
    if max_delay < min_delay {
        p.push("alerts.max_delay", "must be at least min_delay");
    }
    let mut groups = BTreeMap::new();
    for (i, g) in r.groups.iter().enumerate() {
        let k = format!("alerts.groups[{i}]");
        let rec = Recipients {
            addresses: addresses(&g.recipients, &format!("{k}.recipients"), p),
            language: language(g.language.as_deref(), &format!("{k}.language"), p),
        };
        if groups.insert(g.name.clone(), rec).is_some() {
            p.push(
                &format!("{k}.name"),
                format!("\"{}\" is used twice", g.name),
            );
        }
    }
    Alerts {
        enabled: r.enabled.unwrap_or(true),
        min_delay,
        max_delay,
        max_per_meter_per_hour: r.max_per_meter_per_hour.unwrap_or(6),
        resolved: r.resolved.unwrap_or(true),
        default: Recipients {
            addresses: addresses(&r.recipients, "alerts.recipients", p),
            language: language(r.language.as_deref(), "alerts.language", p),
        },
        groups,
    }
}
