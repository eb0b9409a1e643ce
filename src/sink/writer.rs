//! HTTP writers for InfluxDB: the v2 `/api/v2/write` and the v1 `/write`
//! APIs. Both send one stored batch (gzip-compressed line protocol, sent
//! as is with `Content-Encoding: gzip`, or inflated when `gzip = false`) and
//! report the outcome as a [`WriteError`] that [`WriteError::class`]
//! classifies in one place. Nothing here buffers or retries.
//!
//! Writes go through reqwest directly rather than the `influxdb2` crate's
//! write calls: retry handling needs the `Retry-After` header, and a stored
//! batch is compressed once, when it enters the outbox, which the crate's
//! API (it compresses itself, or not at all) cannot send. The crate serves
//! the start-up readiness probe of v2 servers ([`Writer::probe`]).

use crate::config::{Api, Influx};
use bytes::Bytes;
use std::time::Duration;

/// Why a batch was not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    /// The request did not complete (connect refused, reset, timeout).
    #[error("transport: {0}")]
    Transport(String),
    /// The server answered with an error status.
    #[error("HTTP {status}: {body}")]
    Http {
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
}

/// What to do with a batch after a failed send. The one place that decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Network error, 5xx, 408, 429: retry with backoff.
    Retry,
    /// 401/403/404: a setting is wrong; keep the data, retry slowly.
    Misconfigured,
    /// 413: the batch is too large; split it.
    TooLarge,
    /// 400/422 and other 4xx: the server will never take it; dead-letter it.
    Reject,
}

impl WriteError {
    pub(crate) fn class(&self) -> Class {
        match self {
            WriteError::Transport(_) => Class::Retry,
            WriteError::Http { status, .. } => match status {
                413 => Class::TooLarge,
                401 | 403 | 404 => Class::Misconfigured,
                408 | 429 => Class::Retry,
                s if *s >= 500 => Class::Retry,
                _ => Class::Reject,
            },
        }
    }

    /// Whether sending the same batch again can succeed.
    pub(crate) fn retryable(&self) -> bool {
        matches!(self.class(), Class::Retry | Class::Misconfigured)
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            WriteError::Http { retry_after, .. } => *retry_after,
            WriteError::Transport(_) => None,
        }
    }

    pub(crate) fn status(&self) -> u16 {
        match self {
            WriteError::Http { status, .. } => *status,
            WriteError::Transport(_) => 0,
        }
    }

    /// The setting an operator should fix, for statuses that mean a
    /// configuration problem rather than an outage.
    pub(crate) fn hint(&self) -> Option<&'static str> {
        match self {
            WriteError::Http {
                status: 401 | 403, ..
            } => Some("check influxdb.token (v2) or influxdb.username/password (v1)"),
            WriteError::Http { status: 404, .. } => {
                Some("check influxdb.org and influxdb.bucket (v2) or influxdb.database (v1)")
            }
            _ => None,
        }
    }
}

pub struct Writer {
    client: reqwest::Client,
    /// Full write URL with its query (no secret in it).
    url: String,
    auth: Auth,
    gzip: bool,
    /// For the readiness probe of v2 servers.
    probe: Option<influxdb2::Client>,
}

enum Auth {
    None,
    Token(crate::secret::Secret),
    Basic(String, crate::secret::Secret),
}

impl Writer {
    pub fn new(cfg: &Influx) -> Result<Self, String> {
        let builder = || {
            reqwest::Client::builder()
                .timeout(cfg.timeout)
                .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
                .user_agent(concat!("pqwatch/", env!("CARGO_PKG_VERSION")))
        };
        let client = builder().build().map_err(|e| format!("http client: {e}"))?;
        match &cfg.api {
            Api::V2 { org, bucket, token } => {
                let mut url = reqwest::Url::parse(&format!("{}/api/v2/write", cfg.url))
                    .map_err(|e| format!("influxdb.url: {e}"))?;
                url.query_pairs_mut()
                    .append_pair("org", org)
                    .append_pair("bucket", bucket)
                    .append_pair("precision", "ms");
                let probe = influxdb2::ClientBuilder::with_builder(
                    builder(),
                    cfg.url.clone(),
                    org.clone(),
                    token.expose(),
                )
                .build()
                .map_err(|e| format!("influxdb client: {e}"))?;
                Ok(Writer {
                    client,
                    url: url.to_string(),
                    auth: if token.is_empty() {
                        Auth::None
                    } else {
                        Auth::Token(token.clone())
                    },
                    gzip: cfg.gzip,
                    probe: Some(probe),
                })
            }
            Api::V1 {
                database,
                retention_policy,
                username,
                password,
            } => {
                let mut url = reqwest::Url::parse(&format!("{}/write", cfg.url))
                    .map_err(|e| format!("influxdb.url: {e}"))?;
                url.query_pairs_mut()
                    .append_pair("db", database)
                    .append_pair("precision", "ms");
                if let Some(rp) = retention_policy {
                    url.query_pairs_mut().append_pair("rp", rp);
                }
                Ok(Writer {
                    client,
                    url: url.to_string(),
                    auth: match username {
                        Some(u) => Auth::Basic(u.clone(), password.clone()),
                        None => Auth::None,
                    },
                    gzip: cfg.gzip,
                    probe: None,
                })
            }
        }
    }

    /// Ask a v2 server whether it is ready (informational, at start-up).
    /// `None` for v1, which has no such endpoint.
    pub(crate) async fn probe(&self) -> Option<Result<(), String>> {
        let c = self.probe.as_ref()?;
        Some(match c.ready().await {
            Ok(true) => Ok(()),
            Ok(false) => Err("not ready".into()),
            Err(influxdb2::RequestError::Http { status, .. }) => {
                Err(format!("HTTP {status} on /ready"))
            }
            Err(e) => Err(e.to_string()),
        })
    }

    /// Send one stored batch (gzip-compressed line protocol, ms timestamps).
    pub async fn write(&self, body_gz: Bytes) -> Result<(), WriteError> {
        let mut req = self.client.post(&self.url);
        req = match &self.auth {
            Auth::None => req,
            Auth::Token(t) => req.header("Authorization", format!("Token {}", t.expose())),
            Auth::Basic(u, p) => req.basic_auth(u, Some(p.expose())),
        };
        req = if self.gzip {
            req.header("Content-Encoding", "gzip").body(body_gz)
        } else {
            let raw = crate::sink::outbox::gunzip(&body_gz)
                .map_err(|e| WriteError::Transport(format!("stored batch is not gzip: {e}")))?;
            req.body(raw)
        };
        let resp = req
            .header("Content-Type", "text/plain; charset=utf-8")
            .send()
            .await
            .map_err(|e| WriteError::Transport(describe(&e)))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.text().await.unwrap_or_default();
        Err(WriteError::Http {
            status,
            body: truncate(body),
            retry_after,
        })
    }
}

/// Server error bodies can be large; keep the first line's worth.
fn truncate(mut s: String) -> String {
    const MAX: usize = 300;
    if s.len() > MAX {
        let mut cut = MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s.trim().to_string()
}

/// A transport error with its causes, without the URL (long, and for v1
/// carrying the database name only, but kept out of logs on principle).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut s = kind.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let http = |status| WriteError::Http {
            status,
            body: String::new(),
            retry_after: None,
        };
        for s in [500, 502, 503, 504, 408, 429] {
            assert_eq!(http(s).class(), Class::Retry, "{s}");
        }
        for s in [401, 403, 404] {
            assert_eq!(http(s).class(), Class::Misconfigured, "{s}");
            assert!(http(s).retryable());
        }
        assert_eq!(http(413).class(), Class::TooLarge);
        for s in [400, 422, 405] {
            assert_eq!(http(s).class(), Class::Reject, "{s}");
            assert!(!http(s).retryable(), "{s}");
        }
        assert!(WriteError::Transport("x".into()).retryable());
        assert!(http(401).hint().unwrap().contains("token"));
        assert!(http(404).hint().unwrap().contains("bucket"));
        assert_eq!(http(500).hint(), None);
    }

    #[test]
    fn long_bodies_are_cut_at_a_char_boundary() {
        let s = "错".repeat(200);
        let t = truncate(s);
        assert!(t.len() <= 304 && t.ends_with('…'));
    }
}
