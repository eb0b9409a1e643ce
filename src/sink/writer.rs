//! HTTP writers for InfluxDB: the v2 API through the `influxdb2` crate, the
//! v1 `/write` API through reqwest. Both send one line-protocol body and
//! report the outcome as a [`WriteError`] that [`WriteError::retryable`]
//! classifies in one place. Nothing here buffers or retries.

use crate::config::{Api, Influx};
use bytes::Bytes;
use std::io::Write as _;
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

impl WriteError {
    /// Whether sending the same batch again can succeed. A 400/422 means a
    /// point the server will never accept; everything else (network, 5xx,
    /// 408/429, and even 401/403/404, which an operator fixes without
    /// restarting us) is retried with backoff.
    pub fn retryable(&self) -> bool {
        match self {
            WriteError::Transport(_) => true,
            WriteError::Http { status, .. } => !matches!(status, 400 | 422),
        }
    }

    /// The setting an operator should fix, for statuses that mean a
    /// configuration problem rather than an outage.
    pub fn hint(&self) -> Option<&'static str> {
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

/// A pre-encoded line-protocol body handed to the influxdb2 client, which
/// only streams `WriteDataPoint`s when it compresses.
struct Body(Bytes);

impl influxdb2::models::WriteDataPoint for Body {
    fn write_data_point_to<W: std::io::Write>(&self, mut w: W) -> std::io::Result<()> {
        w.write_all(&self.0)
    }
}

pub enum Writer {
    V2 {
        client: influxdb2::Client,
        org: String,
        bucket: String,
        gzip: bool,
    },
    V1 {
        client: reqwest::Client,
        url: String,
        auth: Option<(String, crate::secret::Secret)>,
        gzip: bool,
    },
}

impl Writer {
    pub fn new(cfg: &Influx) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("pqwatch/", env!("CARGO_PKG_VERSION")));
        match &cfg.api {
            Api::V2 { org, bucket, token } => {
                let mut b = influxdb2::ClientBuilder::with_builder(
                    http,
                    cfg.url.clone(),
                    org.clone(),
                    token.expose(),
                );
                if cfg.gzip {
                    b = b.gzip(true);
                }
                let client = b.build().map_err(|e| format!("influxdb client: {e}"))?;
                Ok(Writer::V2 {
                    client,
                    org: org.clone(),
                    bucket: bucket.clone(),
                    gzip: cfg.gzip,
                })
            }
            Api::V1 {
                database,
                retention_policy,
                username,
                password,
            } => {
                let client = http.build().map_err(|e| format!("http client: {e}"))?;
                let mut url = reqwest::Url::parse(&format!("{}/write", cfg.url))
                    .map_err(|e| format!("influxdb.url: {e}"))?;
                url.query_pairs_mut()
                    .append_pair("db", database)
                    .append_pair("precision", "ms");
                if let Some(rp) = retention_policy {
                    url.query_pairs_mut().append_pair("rp", rp);
                }
                Ok(Writer::V1 {
                    client,
                    url: url.to_string(),
                    auth: username.clone().map(|u| (u, password.clone())),
                    gzip: cfg.gzip,
                })
            }
        }
    }

    /// Send one body of line protocol with millisecond timestamps.
    pub async fn write(&self, body: Bytes) -> Result<(), WriteError> {
        match self {
            Writer::V2 {
                client,
                org,
                bucket,
                gzip,
            } => {
                let precision = influxdb2::api::write::TimestampPrecision::Milliseconds;
                let r = if *gzip {
                    let points = futures::stream::iter(vec![Body(body)]);
                    client.write_with_precision(bucket, points, precision).await
                } else {
                    client
                        .write_line_protocol_with_precision(org, bucket, body, precision)
                        .await
                };
                r.map_err(|e| match e {
                    influxdb2::RequestError::Http { status, text } => WriteError::Http {
                        status: status.as_u16(),
                        body: truncate(text),
                        retry_after: None,
                    },
                    other => WriteError::Transport(other.to_string()),
                })
            }
            Writer::V1 {
                client,
                url,
                auth,
                gzip,
            } => {
                let mut req = client.post(url);
                if let Some((user, pass)) = auth {
                    req = req.basic_auth(user, Some(pass.expose()));
                }
                req = if *gzip {
                    let mut enc =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    enc.write_all(&body)
                        .map_err(|e| WriteError::Transport(format!("gzip: {e}")))?;
                    let z = enc
                        .finish()
                        .map_err(|e| WriteError::Transport(format!("gzip: {e}")))?;
                    req.header("Content-Encoding", "gzip").body(z)
                } else {
                    req.body(body)
                };
                let resp = req
                    .send()
                    .await
                    .map_err(|e| WriteError::Transport(without_url(&e)))?;
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

/// reqwest errors print the URL, which for v1 carries no secret (auth goes
/// in a header) but is long; keep the cause.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.without_url_ref().to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let kind = if self.is_timeout() {
            "timed out"
        } else if self.is_connect() {
            "cannot connect"
        } else if self.is_request() {
            "request failed"
        } else {
            "error"
        };
        kind.to_string()
    }
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
        for s in [500, 502, 503, 504, 408, 429, 401, 403, 404] {
            assert!(http(s).retryable(), "{s}");
        }
        for s in [400, 422] {
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
