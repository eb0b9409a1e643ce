//! The one retry policy: capped exponential backoff with jitter, honouring
//! a server's `Retry-After`. Pure apart from the random jitter; a leaf.
//!
//! Every retry loop uses it with its own constants: the InfluxDB sink
//! ([`SINK`]), the SMTP sender (`notify`, [`MAIL`]) and the gateways'
//! reconnects (`modbus::gateway`, [`reconnect`]). Jitter keeps many
//! pqwatch instances (or gateways) from retrying in lockstep.

use rand::RngExt as _;
use std::time::Duration;

/// `first × 2^(failures−1)`, capped at `max`, ± `jitter` (a fraction).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    /// 0.2: the delay is drawn from 80–120 % of the exponential value.
    pub jitter: f64,
}

/// Writes to InfluxDB: 1 s doubling to 60 s, ±20 %.
pub(crate) const SINK: Backoff = Backoff {
    first: Duration::from_secs(1),
    max: Duration::from_secs(60),
    jitter: 0.2,
};

/// Mail to the SMTP server: 1 s doubling to 5 min, ±20 %.
pub(crate) const MAIL: Backoff = Backoff {
    first: Duration::from_secs(1),
    max: Duration::from_secs(300),
    jitter: 0.2,
};

/// The longest `Retry-After` honoured: a server asking for more is asked
/// again after this.
pub(crate) const RETRY_AFTER_MAX: Duration = Duration::from_secs(600);

/// Reconnecting to a gateway: 250 ms doubling to `cap`
/// (`polling.reconnect_max`), ±25 %.
pub(crate) fn reconnect(cap: Duration) -> Backoff {
    Backoff {
        first: Duration::from_millis(250),
        max: cap,
        jitter: 0.25,
    }
}

impl Backoff {
    /// The exponential value before jitter, at least `floor`.
    fn base(&self, failures: u32, floor: Duration) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        self.first
            .saturating_mul(1u32 << exp)
            .min(self.max)
            .max(floor)
    }

    fn jittered(&self, base: Duration) -> Duration {
        if self.jitter <= 0.0 {
            return base;
        }
        base.mul_f64(rand::rng().random_range(1.0 - self.jitter..1.0 + self.jitter))
    }

    /// The wait after `failures` consecutive failures (1 = the first).
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        self.jittered(self.base(failures, Duration::ZERO))
    }

    /// The wait after `failures` consecutive failures: what the server asked
    /// for (`Retry-After`, capped at [`RETRY_AFTER_MAX`], no jitter), else
    /// the backoff, at least `floor` before jitter (a misconfiguration waits
    /// longer: an operator must act).
    pub(crate) fn delay_after(
        &self,
        failures: u32,
        retry_after: Option<Duration>,
        floor: Duration,
    ) -> Duration {
        match retry_after {
            Some(d) => d.min(RETRY_AFTER_MAX),
            None => self.jittered(self.base(failures, floor)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(d: Duration, s: f64, jitter: f64) -> bool {
        let x = d.as_secs_f64();
        x >= s * (1.0 - jitter) - 1e-9 && x <= s * (1.0 + jitter) + 1e-9
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
            jitter: 0.2,
        };
        let within = |d: Duration, s: f64| {
            let x = d.as_secs_f64();
            x >= s * 0.8 && x <= s * 1.2
        };
        assert!(within(b.delay(1), 1.0));
        assert!(within(b.delay(3), 4.0));
        assert!(within(b.delay(10), 60.0));
        assert!(within(b.delay(u32::MAX), 60.0));
        assert!(within(b.delay(0), 1.0), "0 failures waits like 1");
    }

    #[test]
    fn retry_after_wins_and_is_capped_without_jitter() {
        let d = |r| SINK.delay_after(3, Some(Duration::from_secs(r)), Duration::ZERO);
        assert_eq!(d(7), Duration::from_secs(7));
        assert_eq!(d(99_999), RETRY_AFTER_MAX);
    }

    #[test]
    fn a_floor_raises_short_waits_only() {
        let floor = Duration::from_secs(30);
        assert!(within(SINK.delay_after(1, None, floor), 30.0, 0.2));
        assert!(within(SINK.delay_after(10, None, floor), 60.0, 0.2));
    }

    #[test]
    fn reconnect_backoff_is_capped() {
        let cap = Duration::from_secs(30);
        let first = reconnect(cap).delay(1);
        assert!(first >= Duration::from_millis(187) && first <= Duration::from_millis(313));
        for f in [10, 20, 1000] {
            assert!(reconnect(cap).delay(f) <= cap.mul_f64(1.25));
        }
    }
}
