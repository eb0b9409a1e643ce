//! `[daemon]`, `[polling]` and `[[gateways]]`: where pqwatch keeps its
//! state and profiles, and how it paces and times out its Modbus requests.
//! Checks only these sections; the meters' own settings are `fleet`'s.

use super::problems::{Problems, check_address, duration, entries, pause, resolve, section};
use super::{Tree, raw};
use crate::profile::Registry;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Daemon {
    pub state_dir: PathBuf,
    pub profile_dir: PathBuf,
    pub timezone: Option<String>,
    /// How long shutdown may spend delivering what is buffered.
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub(super) struct Polling {
    pub interval: Duration,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub reconnect_max: Duration,
    pub delay_between_requests: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GatewaySettings {
    pub address: String,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub reconnect_max: Duration,
    pub delay_between_requests: Duration,
}

/// `[daemon]`.
pub(super) fn daemon(tree: &Tree, p: &mut Problems) -> Daemon {
    let d: raw::Daemon = section("daemon", p);
    let shutdown_grace = duration(
        d.shutdown_grace.as_deref(),
        Duration::from_secs(10),
        "daemon.shutdown_grace",
        p,
    );
    Daemon {
        state_dir: resolve(
            &tree.base_dir,
            d.state_dir.as_deref().unwrap_or("/var/lib/pqwatch"),
        ),
        profile_dir: resolve(
            &tree.base_dir,
            d.profile_dir.as_deref().unwrap_or("/etc/pqwatch/profiles"),
        ),
        timezone: d.timezone,
        shutdown_grace,
    }
}

/// The built-in profiles and those of `daemon.profile_dir`; every mistake in
/// a profile file is reported, and the built-in ones are used instead.
pub(super) fn profiles(daemon: &Daemon, p: &mut Problems) -> Registry {
    match Registry::load(Some(&daemon.profile_dir)) {
        Ok(r) => r,
        Err(errs) => {
            for e in errs {
                for problem in e.problems {
                    p.list.push(format!("profile {}: {problem}", e.origin));
                }
            }
            Registry::builtin()
        }
    }
}

/// `[polling]`: the defaults of every gateway and meter.
pub(super) fn polling(p: &mut Problems) -> Polling {
    let pl: raw::Polling = section("polling", p);
    let polling = Polling {
        interval: duration(
            pl.interval.as_deref(),
            Duration::from_secs(5),
            "polling.interval",
            p,
        ),
        timeout: duration(
            pl.timeout.as_deref(),
            Duration::from_secs(1),
            "polling.timeout",
            p,
        ),
        connect_timeout: duration(
            pl.connect_timeout.as_deref(),
            Duration::from_secs(3),
            "polling.connect_timeout",
            p,
        ),
        reconnect_max: duration(
            pl.reconnect_max.as_deref(),
            Duration::from_secs(30),
            "polling.reconnect_max",
            p,
        ),
        delay_between_requests: pause(
            pl.delay_between_requests.as_deref(),
            Duration::ZERO,
            "polling.delay_between_requests",
            p,
        ),
    };
    check_interval(polling.interval, "polling.interval", p);
    polling
}

/// `[[gateways]]`: each gateway's own timeouts, by address.
pub(super) fn gateways(polling: &Polling, p: &mut Problems) -> BTreeMap<String, GatewaySettings> {
    let mut gateways: BTreeMap<String, GatewaySettings> = BTreeMap::new();
    for (key, g) in entries::<raw::Gateway>("gateways", p) {
        check_address(&g.address, &format!("{key}.address"), p);
        let s = GatewaySettings {
            address: g.address.clone(),
            timeout: duration(
                g.timeout.as_deref(),
                polling.timeout,
                &format!("{key}.timeout"),
                p,
            ),
            connect_timeout: duration(
                g.connect_timeout.as_deref(),
                polling.connect_timeout,
                &format!("{key}.connect_timeout"),
                p,
            ),
            reconnect_max: polling.reconnect_max,
            delay_between_requests: pause(
                g.delay_between_requests.as_deref(),
                polling.delay_between_requests,
                &format!("{key}.delay_between_requests"),
                p,
            ),
        };
        if gateways.insert(g.address.clone(), s).is_some() {
            p.push(
                &format!("{key}.address"),
                format!("\"{}\" is listed twice", g.address),
            );
        }
    }
    gateways
}

pub(super) fn check_interval(d: Duration, key: &str, p: &mut Problems) {
    if d < Duration::from_millis(100) {
        p.push(key, "must be at least 100ms");
    } else if d > Duration::from_secs(3600) {
        p.push(key, "must be at most 1h");
    }
}
