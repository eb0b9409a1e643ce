//! Secrets never leave through the output: the `pqwatch` binary runs with
//! wrong credentials against real servers until the failures are logged,
//! then every line it wrote (text logs at the default level, and
//! `--log-format json` at trace level), and what `pqwatch check`,
//! `pqwatch status` and `pqwatch events` print, are searched for the
//! secrets, in plain text and in the base64 forms that HTTP Basic and SMTP
//! AUTH put on the wire:
//!
//! * InfluxDB 1.x with `auth-enabled` and a wrong password (401);
//! * an SMTP server (aiosmtpd) requiring AUTH, with a wrong password (535);
//! * an InfluxDB v2 token against a stub answering 401 to everything;
//! * the `[http]` token, configured alongside.
//!
//! A config file holding a secret that every user can read draws a warning
//! naming the file (never the secret).

mod common;
mod e2e;
mod smtp;

use common::{InfluxDb1, TestConfig, free_port, write_file};
use e2e::{Output, Running, Sim, pqwatch_cmd, run_to_end, wait_until};
use smtp::SmtpPeer;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const V1_PASSWORD: &str = "Leak-V1-Pw-7Qz3Xk";
const SMTP_PASSWORD: &str = "Leak-Smtp-Pw-9Jd2Wm";
const HTTP_TOKEN: &str = "Leak-Http-Tk-4Hs8Lp";
const V2_TOKEN: &str = "Leak-V2-Tk-6Rb1Nc";

const DEADLINE: Duration = Duration::from_secs(30);

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The forms in which a secret could show: itself, any 8 characters of
/// it, and base64 of it alone, of `user:secret` (HTTP Basic) and of
/// `\0user\0secret` (SMTP AUTH PLAIN).
fn forms(user: &str, secret: &str) -> Vec<String> {
    let chars: Vec<char> = secret.chars().collect();
    let mut f: Vec<String> = chars.windows(8).map(|w| w.iter().collect()).collect();
    for raw in [
        secret.to_string(),
        format!("{user}:{secret}"),
        format!("\0{user}\0{secret}"),
    ] {
        // Any long run of the encoding, so padding and line wraps do not hide it.
        let b = base64(raw.as_bytes());
        f.push(b[..b.len().min(16)].to_string());
    }
    f
}

/// Fails naming the output and the line a secret appears in.
fn assert_clean(what: &str, text: &str, secrets: &[(&str, &str)]) {
    for (user, secret) in secrets {
        for form in forms(user, secret) {
            if let Some(line) = text.lines().find(|l| l.contains(&form)) {
                panic!("{what} shows the secret {secret:?} (as {form:?}) in:\n{line}");
            }
        }
    }
}

fn cmd_output(args: &[&str]) -> Output {
    run_to_end(pqwatch_cmd(args), Duration::from_secs(20))
}

/// Every line of a `--log-format json` run is a JSON object.
fn assert_json_lines(stderr: &str) {
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v.is_object(), "{line}");
    }
}

/// `check`, `status` (text and JSON) and `events` on `config`: their
/// stdout and stderr, labelled.
fn tools(config: &Path) -> Vec<(String, String)> {
    let c = config.to_str().unwrap();
    let mut out = Vec::new();
    for args in [
        vec!["check", "-c", c],
        vec!["status", "-c", c],
        vec!["status", "-c", c, "--json"],
        vec!["events", "-c", c],
    ] {
        let o = cmd_output(&args);
        out.push((
            format!("pqwatch {}", args.join(" ")),
            format!("{}\n{}", o.stdout, o.stderr),
        ));
    }
    assert!(out[0].1.contains("is valid"), "check: {}", out[0].1);
    out
}

/// Runs `pqwatch [global…] run -c config` until every `needle` is in its
/// stderr (or the deadline passes, which fails), then stops it with
/// SIGTERM; returns its stderr.
async fn run_until_logged(
    config: &Path,
    global: &[&str],
    log: PathBuf,
    needles: &[&str],
) -> String {
    let mut args: Vec<&str> = global.to_vec();
    args.extend(["run", "-c", config.to_str().unwrap()]);
    let mut bin = Running::spawn_logging_to(pqwatch_cmd(&args), log);
    let ok = wait_until(DEADLINE, || {
        let e = bin.stderr();
        needles.iter().all(|n| e.contains(n))
    })
    .await;
    bin.signal("TERM");
    let exited = bin.wait_exit(Duration::from_secs(20));
    let stderr = bin.stderr();
    assert!(
        ok,
        "not all of {needles:?} logged within {DEADLINE:?}:\n{stderr}"
    );
    assert!(exited.is_some(), "no exit after SIGTERM:\n{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_influxdb_1x_and_smtp_passwords_appear_nowhere() -> anyhow::Result<()> {
    let db = InfluxDb1::start_with_auth("admin", "the-right-one")?;
    db.create_database("pq").await?;
    let dir = tempfile::tempdir()?;
    let peer = SmtpPeer::start(0, &dir.path().join("mailbox"), &["--auth", "alice:right"]);
    let gw = free_port();
    let text = TestConfig::new()
        .state_dir("state")
        .influx_v1(&db.url(), "pq")
        .influx("username", "admin")
        .influx("password", V1_PASSWORD)
        .polling("1s", "300ms")
        .smtp_peer(peer.port)
        .smtp("username", "alice")
        .smtp("password", SMTP_PASSWORD)
        .smtp("from", "pqwatch <pqwatch@example.com>")
        .smtp("timeout", "5s")
        .http("listen", "127.0.0.1:0")
        .http("token", HTTP_TOKEN)
        .push(&format!(
            r#"
[[customers]]
id = "C1"
name = "Secret Test Customer"
recipients = ["energy@example.com"]

[[meters]]
id = "M1"
customer = "C1"
address = "127.0.0.1:{gw}"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400
fields = ["voltage_l1_n"]
"#
        ))
        .to_string();
    let config = write_file(dir.path(), "pqwatch.toml", &text)?;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))?;
    let sim = Sim::start(&e2e::config(&text), "").await;
    let secrets = [
        ("admin", V1_PASSWORD),
        ("alice", SMTP_PASSWORD),
        ("", HTTP_TOKEN),
    ];

    // 1. Text logs: the InfluxDB 1.x refusal.
    let text_log = run_until_logged(
        &config,
        &[],
        dir.path().join("run1.stderr"),
        &["InfluxDB refuses our writes", "401"],
    )
    .await;
    assert!(
        text_log.contains("influxdb.username/password"),
        "{text_log}"
    );

    // 2. A report queued for the customer, which the next start mails.
    let queued = cmd_output(&[
        "report",
        "-c",
        config.to_str().unwrap(),
        "--customer",
        "C1",
        "--send",
    ]);
    assert_eq!(queued.code, Some(0), "{queued}");

    // 3. JSON logs at debug level: both refusals.
    let json_log = run_until_logged(
        &config,
        &["--log-format", "json", "--log-level", "trace"],
        dir.path().join("run2.stderr"),
        &["InfluxDB refuses our writes", "mail not delivered", "535"],
    )
    .await;
    assert_json_lines(&json_log);
    sim.stop().await;

    assert_clean("the text log", &text_log, &secrets);
    assert_clean("the JSON log", &json_log, &secrets);
    assert_clean("the report command", &format!("{queued}"), &secrets);
    for (what, out) in tools(&config) {
        assert_clean(&what, &out, &secrets);
    }
    // The state database keeps the last errors: they hold no secret either.
    let dump = std::process::Command::new("sqlite3")
        .arg(dir.path().join("state/pqwatch.db"))
        .arg(".dump")
        .output();
    if let Ok(d) = dump
        && d.status.success()
    {
        assert_clean(
            "the state database",
            &String::from_utf8_lossy(&d.stdout),
            &secrets,
        );
    }
    Ok(())
}

/// A stub InfluxDB v2 that answers every request 401 and keeps the
/// `Authorization` headers it saw.
async fn unauthorized_stub() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then the body by Content-Length.
                let head_end = loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if let Some(k) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break k + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                if let Some(a) = head
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                {
                    keep.lock().unwrap().push(a.to_string());
                }
                let body = r#"{"code":"unauthorized","message":"unauthorized access"}"#;
                let resp = format!(
                    "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_influxdb_v2_token_appears_nowhere() -> anyhow::Result<()> {
    let (port, seen) = unauthorized_stub().await;
    let dir = tempfile::tempdir()?;
    let gw = free_port();
    // The token comes from a file (as with systemd LoadCredential=).
    let token_file = write_file(dir.path(), "influx-token", &format!("{V2_TOKEN}\n"))?;
    let text = TestConfig::new()
        .state_dir("state")
        .influx("url", format!("http://127.0.0.1:{port}"))
        .influx("org", "grid")
        .influx("bucket", "pq")
        .influx("token_file", &token_file)
        .influx("flush_interval", "200ms")
        .polling("1s", "300ms")
        .http("listen", "127.0.0.1:0")
        .http("token", HTTP_TOKEN)
        .push(&format!(
            r#"
[[customers]]
id = "C1"

[[meters]]
id = "M1"
customer = "C1"
address = "127.0.0.1:{gw}"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400
fields = ["voltage_l1_n"]
"#
        ))
        .to_string();
    let config = write_file(dir.path(), "pqwatch.toml", &text)?;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))?;
    let sim = Sim::start(&e2e::config(&text), "").await;
    let secrets = [("", V2_TOKEN), ("", HTTP_TOKEN)];

    let text_log = run_until_logged(
        &config,
        &[],
        dir.path().join("run1.stderr"),
        &["InfluxDB refuses our writes", "401"],
    )
    .await;
    assert!(
        text_log.contains("influxdb.token"),
        "names the setting:\n{text_log}"
    );
    let json_log = run_until_logged(
        &config,
        &["--log-format", "json", "--log-level", "trace"],
        dir.path().join("run2.stderr"),
        &["InfluxDB refuses our writes", "401"],
    )
    .await;
    assert_json_lines(&json_log);
    sim.stop().await;

    // The token was really sent, so the logs had it at hand.
    let auth = seen.lock().unwrap().clone();
    assert!(
        auth.iter()
            .any(|a| a.contains(&format!("Token {V2_TOKEN}"))),
        "the stub never saw the token: {auth:?}"
    );
    assert_clean("the text log", &text_log, &secrets);
    assert_clean("the JSON log", &json_log, &secrets);
    for (what, out) in tools(&config) {
        assert_clean(&what, &out, &secrets);
    }
    Ok(())
}

/// A config file holding a secret that every user can read is named in a
/// warning at load (check, run, status…), the secret never; 0600 and the
/// packaged 0640 draw none, nor does a 0644 file without secrets.
#[test]
fn a_world_readable_config_with_a_secret_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let with_secret = TestConfig::new()
        .state_dir("state")
        .influx("url", "http://127.0.0.1:1")
        .influx("org", "o")
        .influx("bucket", "b")
        .influx("token", V2_TOKEN)
        .to_string();
    let config = write_file(dir.path(), "pqwatch.toml", &with_secret).unwrap();
    let path = config.to_str().unwrap();
    let check = |mode: u32| {
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(mode)).unwrap();
        let o = cmd_output(&["check", "-c", path]);
        assert_eq!(o.code, Some(0), "{o}");
        assert_clean("pqwatch check", &format!("{o}"), &[("", V2_TOKEN)]);
        o.stderr
    };
    let warned = check(0o644);
    assert!(
        warned.contains("WARN") && warned.contains(path) && warned.contains("influxdb.token"),
        "no warning naming the file:\n{warned}"
    );
    for mode in [0o600, 0o640] {
        let quiet = check(mode);
        assert!(!quiet.contains(path), "mode {mode:o} warned:\n{quiet}");
    }
    // The same in a conf.d file, in JSON logs; and no secret, no warning.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    let extra = write_file(
        &dir.path().join("conf.d"),
        "10-smtp.toml",
        &format!("[smtp]\nhost = \"127.0.0.1\"\nsecurity = \"none\"\nusername = \"u\"\npassword = \"{SMTP_PASSWORD}\"\nfrom = \"a@b.example\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&extra, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = cmd_output(&["--log-format", "json", "check", "-c", path]);
    assert_eq!(o.code, Some(0), "{o}");
    let line = o
        .stderr
        .lines()
        .find(|l| l.contains("smtp.password"))
        .unwrap_or_else(|| panic!("no warning for the conf.d file:\n{o}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["level"], "WARN", "{line}");
    assert_eq!(v["file"], extra.to_str().unwrap(), "{line}");
    assert_clean("pqwatch check", &format!("{o}"), &[("u", SMTP_PASSWORD)]);
    std::fs::write(&extra, "[polling]\ninterval = \"5s\"\n").unwrap();
    let o = cmd_output(&["check", "-c", path]);
    assert!(!o.stderr.contains("WARN"), "{o}");
}

/// Credentials written into `influxdb.url` (`http://admin:pw@…`) are
/// refused by `check` and `run` alike (exit 78, pointing to the settings
/// that hold credentials), and the password shows nowhere: not in the
/// message, not in the plan, not in a log. Also through the environment.
#[test]
fn credentials_in_the_influxdb_url_are_refused_and_never_printed() {
    const PW: &str = "Leak-Url-Pw-3Tg5Yv";
    let dir = tempfile::Builder::new()
        .prefix("pqwatch-url-")
        .tempdir()
        .unwrap();
    let port = free_port();
    let body = |url: &str| {
        TestConfig::new()
            .state_dir(dir.path().join("state"))
            .influx("url", url)
            .influx("api", "v1")
            .influx("database", "pq")
            .push(&format!(
                r#"
[[customers]]
id = "C1"

[[meters]]
id = "M1"
customer = "C1"
address = "127.0.0.1:{gw}"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400
"#,
                gw = free_port(),
            ))
            .to_string()
    };
    for (name, url) in [
        ("short", format!("http://admin:pw@127.0.0.1:{port}")),
        ("long", format!("http://admin:{PW}@127.0.0.1:{port}/")),
        ("unparsable", format!("http://admin:{PW}@127.0.0.1:{port}x")),
    ] {
        let path = write_file(dir.path(), &format!("{name}.toml"), &body(&url)).unwrap();
        let path = path.to_str().unwrap();
        for args in [vec!["check", "-c", path], vec!["run", "-c", path]] {
            let out = run_to_end(pqwatch_cmd(&args), DEADLINE);
            let all = format!("{}{}", out.stdout, out.stderr);
            assert_eq!(out.code, Some(78), "{name} {args:?}: {out}");
            assert!(all.contains("influxdb.url"), "{name} {args:?}: {out}");
            for leak in [":pw@", "admin:pw", PW] {
                assert!(!all.contains(leak), "{name} {args:?} shows {leak:?}: {out}");
            }
            if name != "unparsable" {
                assert!(
                    all.contains("carries credentials") && all.contains("password_file"),
                    "{name} {args:?} says what to do instead: {out}"
                );
            }
        }
    }
    // The same URL from the environment.
    let path = write_file(
        dir.path(),
        "env.toml",
        &body(&format!("http://127.0.0.1:{port}")),
    )
    .unwrap();
    let mut cmd = pqwatch_cmd(&["run", "-c", path.to_str().unwrap()]);
    cmd.env(
        "PQWATCH__INFLUXDB__URL",
        format!("http://admin:{PW}@127.0.0.1:{port}"),
    );
    let out = run_to_end(cmd, DEADLINE);
    assert_eq!(out.code, Some(78), "{out}");
    assert!(
        !format!("{}{}", out.stdout, out.stderr).contains(PW),
        "{out}"
    );
}
