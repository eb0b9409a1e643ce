//! Where mail goes: an SMTP server through lettre, or, with no
//! `[smtp] host`, `.eml` files in a directory (the demo, and sites that
//! pick mail up with another tool).
//!
//! `security = "starttls"` requires the upgrade (lettre's `Tls::Required`:
//! no credentials or mail before it), `"tls"` is TLS from the first byte,
//! `"none"` is plain and config validation allows it only for a relay on
//! localhost. Certificates are checked against the platform's trust store.
//! The password is handed to lettre and never printed: [`Transport`]'s
//! `Debug` and [`Transport::describe`] show the user name only.
//!
//! `[smtp] timeout` bounds the TCP connect (lettre's async transport
//! applies it to nothing else); the sender bounds the whole exchange.
//! The one place that decides whether a failure is worth retrying is
//! [`classify`].

use crate::config::mail::{Security, Smtp};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::path::{Path, PathBuf};

#[derive(Clone)]
pub(crate) enum Transport {
    Smtp {
        mailer: AsyncSmtpTransport<Tokio1Executor>,
        describe: String,
    },
    Files {
        writer: AsyncFileTransport<Tokio1Executor>,
        dir: PathBuf,
    },
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Why a send failed, as far as retrying is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendError {
    /// Worth trying again later: the server is unreachable, timed out,
    /// answered 4xx, refused our credentials (a config problem an operator
    /// fixes without losing the queue), TLS failed, or the disk is full.
    Retry(String),
    /// The server refused this message for good (5xx to MAIL, RCPT or DATA).
    Rejected(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Retry(s) | SendError::Rejected(s) => f.write_str(s),
        }
    }
}

/// SMTP replies that are about us (authentication), not about the message.
const AUTH_CODES: [u16; 4] = [530, 534, 535, 538];

/// Retry or give up? The one place that decides.
pub(crate) fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    let text = error_chain(e);
    match e.status().map(u16::from) {
        Some(code) if e.is_permanent() && !AUTH_CODES.contains(&code) => SendError::Rejected(text),
        _ => SendError::Retry(text),
    }
}

/// "network error: Connection refused (os error 111)": the error and its causes.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

impl Transport {
    /// From `[smtp]`; `.eml` files go to `smtp.eml_dir`, or
    /// `<state_dir>/mail` when that is not set. Creates that directory.
    pub(crate) fn from_config(smtp: &Smtp, state_dir: &Path) -> Result<Transport, String> {
        let Some(host) = &smtp.host else {
            let dir = if smtp.eml_dir.as_os_str().is_empty() {
                state_dir.join("mail")
            } else {
                smtp.eml_dir.clone()
            };
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("smtp.eml_dir: cannot create {}: {e}", dir.display()))?;
            return Ok(Transport::Files {
                writer: AsyncFileTransport::new(&dir),
                dir,
            });
        };
        let builder = match smtp.security {
            Security::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| format!("smtp.host \"{host}\": {e}"))?,
            Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|e| format!("smtp.host \"{host}\": {e}"))?,
            Security::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        };
        let mut builder = builder.port(smtp.port).timeout(Some(smtp.timeout));
        if let Some(user) = &smtp.username {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                smtp.password.expose().to_string(),
            ));
        }
        let security = match smtp.security {
            Security::StartTls => "starttls",
            Security::Tls => "tls",
            Security::None => "plain",
        };
        let user = smtp
            .username
            .as_deref()
            .map(|u| format!(", user {u}"))
            .unwrap_or_default();
        Ok(Transport::Smtp {
            mailer: builder.build(),
            describe: format!("smtp://{host}:{} ({security}{user})", smtp.port),
        })
    }

    /// For logs: where mail goes, never the password.
    pub(crate) fn describe(&self) -> String {
        match self {
            Transport::Smtp { describe, .. } => describe.clone(),
            Transport::Files { dir, .. } => format!(".eml files in {}", dir.display()),
        }
    }

    pub(crate) async fn send(&self, envelope: &Envelope, raw: &[u8]) -> Result<(), SendError> {
        match self {
            Transport::Smtp { mailer, .. } => mailer
                .send_raw(envelope, raw)
                .await
                .map(|_| ())
                .map_err(|e| classify(&e)),
            Transport::Files { writer, .. } => writer
                .send_raw(envelope, raw)
                .await
                .map(|_| ())
                .map_err(|e| SendError::Retry(error_chain(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use std::time::Duration;

    fn smtp(host: Option<&str>, security: Security) -> Smtp {
        Smtp {
            host: host.map(str::to_string),
            port: 2525,
            security,
            username: Some("alice".into()),
            password: Secret::new("hunter2-smtp"),
            from: "pqwatch <pq@localhost>".into(),
            timeout: Duration::from_secs(5),
            eml_dir: PathBuf::new(),
        }
    }

    #[test]
    fn descriptions_never_show_the_password() {
        let dir = tempfile::tempdir().unwrap();
        for sec in [Security::StartTls, Security::Tls, Security::None] {
            let t =
                Transport::from_config(&smtp(Some("mail.grid.example"), sec), dir.path()).unwrap();
            let d = format!("{t:?} {}", t.describe());
            assert!(
                d.contains("mail.grid.example:2525") && d.contains("alice"),
                "{d}"
            );
            assert!(!d.contains("hunter2"), "{d}");
        }
    }

    #[test]
    fn without_a_host_mail_goes_to_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let t = Transport::from_config(&smtp(None, Security::StartTls), dir.path()).unwrap();
        assert!(dir.path().join("mail").is_dir());
        assert!(t.describe().ends_with("/mail"), "{}", t.describe());
    }

    #[tokio::test]
    async fn a_closed_port_is_worth_retrying() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut cfg = smtp(Some("127.0.0.1"), Security::None);
        cfg.port = port;
        cfg.username = None;
        let dir = tempfile::tempdir().unwrap();
        let t = Transport::from_config(&cfg, dir.path()).unwrap();
        let env = Envelope::new(
            Some("pq@localhost".parse().unwrap()),
            vec!["a@localhost".parse().unwrap()],
        )
        .unwrap();
        match t.send(&env, b"Subject: x\r\n\r\nx\r\n").await {
            Err(SendError::Retry(e)) => assert!(e.to_lowercase().contains("refused"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
