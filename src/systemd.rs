//! systemd integration: readiness and the watchdog (sd_notify), without
//! libsystemd.
//!
//! Under `Type=notify` systemd passes `NOTIFY_SOCKET`; the daemon sends
//! `READY=1` once the state database is open and polling started,
//! `STATUS=…` lines, `RELOADING=1`/`READY=1` around a SIGHUP reload and
//! `STOPPING=1` at shutdown. With `WatchdogSec=` systemd passes
//! `WATCHDOG_USEC`; the daemon then sends `WATCHDOG=1` at half that
//! interval, **but only while its work progresses**: every gateway task
//! woke for a cycle recently (within twice its shortest poll interval plus
//! a margin), and the sink and watch tasks turned their loops (they wake at
//! least every second). A task that hangs (a deadlock, a blocked runtime
//! thread) stops the pings, and systemd restarts the service. A gateway
//! that answers nothing is not a hang: its task still wakes, fails its
//! polls and backs off, and the pings go on.
//!
//! Without `NOTIFY_SOCKET` (not under systemd) everything here is a no-op.
//! The protocol is one datagram per message to a Unix socket, path or
//! abstract (`@name`), as sd_notify(3) describes.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A connection to systemd's notification socket.
pub(crate) struct SdNotify {
    sock: UnixDatagram,
    addr: std::os::unix::net::SocketAddr,
}

impl std::fmt::Debug for SdNotify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdNotify").finish_non_exhaustive()
    }
}

impl SdNotify {
    /// From `NOTIFY_SOCKET`; None when unset or unusable (logged).
    pub(crate) fn from_env() -> Option<SdNotify> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        SdNotify::to(&path.to_string_lossy())
    }

    /// A notifier for the socket named as `NOTIFY_SOCKET` names it: a path,
    /// or `@name` for an abstract socket.
    fn to(path: &str) -> Option<SdNotify> {
        let addr = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        } else {
            std::os::unix::net::SocketAddr::from_pathname(path)
        };
        let made = addr.and_then(|addr| Ok((UnixDatagram::unbound()?, addr)));
        match made {
            Ok((sock, addr)) => Some(SdNotify { sock, addr }),
            Err(e) => {
                tracing::warn!(socket = %path, error = %e, "NOTIFY_SOCKET unusable: no readiness or watchdog notifications");
                None
            }
        }
    }

    /// Send one notification ("READY=1", "WATCHDOG=1", "STATUS=…").
    pub(crate) fn send(&self, msg: &str) -> io::Result<()> {
        self.sock
            .send_to_addr(msg.as_bytes(), &self.addr)
            .map(|_| ())
    }

    /// Send, logging (not failing) on error: systemd going away must not
    /// stop the daemon.
    pub(crate) fn notify(&self, msg: &str) {
        if let Err(e) = self.send(msg) {
            tracing::warn!(error = %e, message = msg, "sd_notify failed");
        }
    }
}

/// The watchdog interval systemd expects pings within (`WATCHDOG_USEC`,
/// for this process per `WATCHDOG_PID` when that is set).
pub(crate) fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID")
        && pid.to_string_lossy().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// One thing that must keep moving: its last heartbeat (Unix ms, 0 when
/// never) and how old that may get.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Beat {
    pub what: String,
    pub last_ms: u64,
    pub max_age: Duration,
}

/// What is stalled at `now_ms` (empty: feed the watchdog). A heartbeat
/// never set counts from `started_ms`, so a task that never started is
/// caught too.
pub(crate) fn stalled(beats: &[Beat], now_ms: u64, started_ms: u64) -> Vec<String> {
    beats
        .iter()
        .filter_map(|b| {
            let last = if b.last_ms == 0 {
                started_ms
            } else {
                b.last_ms
            };
            let age = now_ms.saturating_sub(last);
            (age > b.max_age.as_millis() as u64).then(|| {
                format!(
                    "{} (last progress {:.1} s ago, allowed {:?})",
                    b.what,
                    age as f64 / 1000.0,
                    b.max_age
                )
            })
        })
        .collect()
}

/// Ping the watchdog at half its interval while nothing in `beats()` is
/// stalled; otherwise say what is stuck, once per episode. `beats` is
/// asked afresh at every tick (a reload changes the gateways), so this
/// module knows nothing of what the beats are (the clock is a leaf).
pub(crate) async fn watchdog(
    sd: std::sync::Arc<SdNotify>,
    every: Duration,
    started_ms: u64,
    beats: impl Fn() -> Vec<Beat>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every / 2);
    let mut was_stalled = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now_ms = crate::clock::now_ms().max(0) as u64;
        let stuck = stalled(&beats(), now_ms, started_ms);
        if stuck.is_empty() {
            sd.notify("WATCHDOG=1");
            was_stalled = false;
        } else if !was_stalled {
            tracing::error!(stalled = ?stuck, "no progress: not pinging the systemd watchdog (systemd restarts the service when it expires)");
            was_stalled = true;
        }
    }
}

/// CLOCK_MONOTONIC in µs, as systemd wants with RELOADING=1 (Rust's
/// `Instant` does not expose its value).
pub(crate) fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the buffer given.
    // One of the two audited unsafe blocks (Cargo.toml [lints]).
    #[allow(unsafe_code)]
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } == 0;
    if !ok {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fresh_heartbeats_feed_the_watchdog() {
        let b = |what: &str, last_ms, max_s| Beat {
            what: what.into(),
            last_ms,
            max_age: Duration::from_secs(max_s),
        };
        let beats = vec![
            b("gateway 10.0.0.1:502", 100_000, 15),
            b("sink", 109_000, 10),
            b("watch", 0, 10),
        ];
        // At 110 s: the gateway beat 10 s ago (≤ 15), the sink 1 s ago; the
        // watch never beat but started at 105 s (5 s ≤ 10).
        assert!(stalled(&beats, 110_000, 105_000).is_empty());
        // At 116 s: the gateway is 16 s old; the watch 11 s since start.
        let s = stalled(&beats, 116_000, 105_000);
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s[0].starts_with("gateway 10.0.0.1:502 (last progress 16.0 s ago"));
        assert!(s[1].starts_with("watch"));
    }

    #[test]
    fn notifications_reach_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = SdNotify::to(path.to_str().unwrap()).expect("socket");
        n.send("READY=1").unwrap();
        let mut buf = [0u8; 64];
        let k = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("pqwatch-test-{}", std::process::id());
        let abs = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&abs).unwrap();
        let n = SdNotify::to(&format!("@{name}")).expect("abstract socket");
        n.send("WATCHDOG=1").unwrap();
        let k = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"WATCHDOG=1");
    }
}
