//! The SMTP peer for tests: Debian's python3-aiosmtpd running
//! `tests/peers/smtp_peer.py`, which stores every accepted message with what
//! Python's email package decodes from it (an independent reading of our MIME).
#![allow(dead_code)]

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3";
const DEADLINE: Duration = Duration::from_secs(20);

pub(crate) struct SmtpPeer {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl SmtpPeer {
    /// Start the peer on `port` (0: the OS picks), storing mail in `out`;
    /// `args`: the script's options (`--reply`, `--auth`).
    pub(crate) fn start(port: u16, out: &Path, args: &[&str]) -> SmtpPeer {
        assert!(
            Path::new(PYTHON).exists(),
            "{PYTHON} missing: run ./scripts/test.sh (installs python3-aiosmtpd)"
        );
        fs::create_dir_all(out).unwrap();
        let log = out.with_extension(format!("log-{}", std::process::id()));
        let logf = fs::File::create(&log).unwrap();
        let mut cmd = Command::new(PYTHON);
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/smtp_peer.py"))
            .arg("--port")
            .arg(port.to_string())
            .arg("--out")
            .arg(out)
            .env("PYTHONUNBUFFERED", "1")
            .env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
            .stdin(Stdio::null())
            .stdout(Stdio::from(logf.try_clone().unwrap()))
            .stderr(Stdio::from(logf));
        cmd.args(args);
        let mut child = cmd.spawn().expect("spawn smtp_peer.py");
        let started = Instant::now();
        loop {
            let text = fs::read_to_string(&log).unwrap_or_default();
            let ready = text
                .lines()
                .find_map(|l| l.strip_prefix("READY ")?.trim().parse::<u16>().ok());
            if let Some(p) = ready
                && TcpStream::connect(("127.0.0.1", p)).is_ok()
            {
                return SmtpPeer {
                    child,
                    port: p,
                    log,
                };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("smtp_peer.py exited ({status}):\n{text}");
            }
            assert!(
                started.elapsed() < DEADLINE,
                "smtp_peer.py not ready:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SmtpPeer {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_file(&self.log);
    }
}

/// Mail the peer stored, oldest first.
#[derive(Debug, Clone)]
pub(crate) struct Mail {
    pub rcpt_tos: Vec<String>,
    pub subject: String,
    pub message_id: String,
    pub headers: Vec<String>,
    pub text: String,
    pub html: String,
    pub raw: String,
    pub auth_login: Option<String>,
    /// (file name, content type, decoded content).
    pub attachments: Vec<(String, String, String)>,
}

pub(crate) fn mails(out: &Path) -> Vec<Mail> {
    let mut files: Vec<PathBuf> = fs::read_dir(out)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .map(|p| {
            let v: serde_json::Value = serde_json::from_slice(&fs::read(p).unwrap()).unwrap();
            let s = |k: &str| v[k].as_str().unwrap_or("").replace("\r\n", "\n");
            Mail {
                rcpt_tos: v["rcpt_tos"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect(),
                subject: s("subject"),
                message_id: s("message_id"),
                headers: v["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h.as_str().unwrap().to_ascii_lowercase())
                    .collect(),
                text: s("text"),
                html: s("html"),
                raw: s("raw"),
                auth_login: v["auth_login"].as_str().map(str::to_string),
                attachments: v["attachments"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| {
                                let f = |k: &str| x[k].as_str().unwrap_or("").to_string();
                                (f("filename"), f("content_type"), f("content"))
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect()
}
