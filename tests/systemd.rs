//! systemd: the unit files pass `systemd-analyze verify` and rate "OK" or
//! better in `systemd-analyze security`; the daemon, under a notification
//! socket like systemd's, reports READY=1, pings the watchdog, reports a
//! reload (RELOADING=1 then READY=1) and STOPPING=1 at shutdown.

mod common;
mod e2e;

use common::TestConfig;
use e2e::{BIN, Running, Sim, pqwatch_cmd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn units() -> [PathBuf; 2] {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    [dir.join("pqwatch.service"), dir.join("pqwatch@.service")]
}

/// A copy of the unit whose commands point at the binary under test.
fn local_copy(unit: &Path, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(unit).unwrap();
    let out = dir.join(unit.file_name().unwrap());
    std::fs::write(&out, text.replace("/usr/bin/pqwatch", BIN)).unwrap();
    out
}

fn analyze(args: &[&str], cwd: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("systemd-analyze (Debian systemd) is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn unit_files_verify_cleanly_and_are_hardened() {
    let dir = tempfile::tempdir().unwrap();
    for unit in units() {
        let copy = local_copy(&unit, dir.path());
        let name = copy.file_name().unwrap().to_str().unwrap().to_string();
        // A template is verified through an instance.
        let instance = name.replace("@.", "@3.");
        let arg = format!("./{instance}");
        if instance != name {
            std::fs::copy(&copy, dir.path().join(&instance)).unwrap();
        }
        let (ok, text) = analyze(&["verify", "--man=no", &arg], dir.path());
        assert!(ok && text.trim().is_empty(), "{name}: {text}");

        let (ok, text) = analyze(&["security", "--offline=yes", &arg], dir.path());
        assert!(ok, "{name}: {text}");
        let line = text
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| panic!("no rating: {text}"));
        let score: f64 = line
            .split(':')
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(
            score <= 2.0 && (line.contains("OK") || line.contains("SAFE")),
            "{name}: {line}"
        );
        let unit_text = std::fs::read_to_string(&unit).unwrap();
        for key in [
            "Type=notify",
            "WatchdogSec=",
            "Restart=on-failure",
            "User=pqwatch",
            "StateDirectory=",
            "LoadCredential=",
            "ExecReload=",
        ] {
            assert!(unit_text.contains(key), "{name} lacks {key}");
        }
    }
}

fn config(state: &Path, port: u16) -> String {
    TestConfig::new()
        .state_dir(state)
        .daemon("shutdown_grace", "2s")
        .polling("500ms", "300ms")
        .http("enabled", false)
        .push(&format!(
            r#"
[[customers]]
id = "C1"

[[meters]]
id = "M1"
customer = "C1"
address = "127.0.0.1:{port}"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400
"#
        ))
        .to_string()
}

/// Datagrams received on the socket within `limit`, until `done` holds.
fn receive_until(
    sock: &UnixDatagram,
    got: &mut Vec<String>,
    limit: Duration,
    done: impl Fn(&[String]) -> bool,
) -> bool {
    let start = Instant::now();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        if done(got) {
            return true;
        }
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    done(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_notifies_readiness_watchdog_reload_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let port = common::free_port();
    let text = config(&state, port);
    let path = dir.path().join("pqwatch.toml");
    std::fs::write(&path, &text).unwrap();
    let sim = Sim::start(&e2e::config(&text), "").await;

    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let mut cmd = pqwatch_cmd(&["run", "-c", path.to_str().unwrap()]);
    cmd.env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000")
        .env("RUST_LOG", "info");
    let mut d = Running::spawn(cmd, dir.path());

    let mut got = Vec::new();
    let ready = receive_until(&sock, &mut got, Duration::from_secs(20), |g| {
        g.iter().any(|m| m.lines().any(|l| l == "READY=1"))
    });
    assert!(ready, "no READY=1: {got:?}\n{}", d.stderr());
    assert!(
        got.iter().any(|m| m.contains("STATUS=polling 1 meters")),
        "{got:?}"
    );
    // WATCHDOG_USEC = 1 s: pings every 0.5 s while polling progresses.
    let pings = |g: &[String]| g.iter().filter(|m| *m == "WATCHDOG=1").count();
    let fed = receive_until(&sock, &mut got, Duration::from_secs(10), |g| pings(g) >= 4);
    assert!(fed, "watchdog pings: {got:?}\n{}", d.stderr());

    d.signal("HUP");
    let reloaded = receive_until(&sock, &mut got, Duration::from_secs(10), |g| {
        let r = g.iter().position(|m| m.starts_with("RELOADING=1"));
        r.is_some_and(|r| g[r + 1..].iter().any(|m| m.starts_with("READY=1")))
    });
    assert!(reloaded, "reload notifications: {got:?}\n{}", d.stderr());
    let r = got
        .iter()
        .position(|m| m.starts_with("RELOADING=1"))
        .unwrap();
    assert!(got[r].contains("MONOTONIC_USEC="), "{}", got[r]);

    d.signal("TERM");
    let stopping = receive_until(&sock, &mut got, Duration::from_secs(10), |g| {
        g.iter().any(|m| m.starts_with("STOPPING=1"))
    });
    assert!(stopping, "{got:?}");
    let status = d.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(status.success(), "{}", d.stderr());
    sim.stop().await;
}

/// The Debian package's metadata points at files that exist and its
/// maintainer scripts parse. (Building the .deb itself is
/// `scripts/package.sh`: a release build, too slow for every test run.)
#[test]
fn package_metadata_names_existing_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap()).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets = deb["assets"].as_array().expect("assets");
    assert!(assets.len() >= 5);
    for a in assets {
        let src = a[0].as_str().unwrap();
        if src.starts_with("target/") {
            continue;
        }
        let (dir, pattern) = src.rsplit_once('/').unwrap_or((".", src));
        let found = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .flatten()
            .any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                match pattern.strip_prefix('*') {
                    Some(suffix) => name.ends_with(suffix),
                    None => name == pattern,
                }
            });
        assert!(found, "asset {src} matches no file");
    }
    let scripts = root.join(deb["maintainer-scripts"].as_str().unwrap());
    for s in ["postinst", "postrm"] {
        let ok = Command::new("sh")
            .arg("-n")
            .arg(scripts.join(s))
            .status()
            .unwrap()
            .success();
        assert!(ok, "{s} does not parse");
    }
    let units = deb["systemd-units"]["unit-scripts"].as_str().unwrap();
    assert!(root.join(units).join("pqwatch.service").exists());
}
