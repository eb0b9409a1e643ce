//! The calendar: local days, report periods and cron schedules. Pure; a
//! leaf (it imports nothing from pqwatch).
//!
//! Used by the config (schedules, suspension days), the watch (day keys of
//! the ledger) and the reports (which stretch of days a report covers, when
//! it goes out). It does not send, render or store anything.
//!
//! - `Cron` (`cron`): 5-field cron expressions and their firings.
//! - [`Period`], [`PeriodKind`] (`period`): a day, ISO week or calendar month.
//! - here: local dates of instants, day keys, and the rule that turns a
//!   local civil time into an instant.
//!
//! Time zones: matching is done on local civil date-times, and each matched
//! local time fires at the first instant at which the local clock reads that
//! time or later. So:
//! * a time skipped by a spring-forward gap fires once, at the first instant
//!   after the gap (a report is never skipped); several skipped times
//!   collapse into that one firing;
//! * a time repeated by a fall-back fold fires once, at the earlier instant;
//! * a period starts at local midnight of its first day, or at the first
//!   instant of that day when midnight itself falls in a gap, so consecutive
//!   periods tile the timeline and a day lasts 23 or 25 hours across a DST
//!   change.

mod cron;
mod period;

pub(crate) use cron::Cron;
pub use period::{Period, PeriodKind};

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};

/// The first instant at which the local clock in `tz` reads `dt` or later:
/// the instant itself when unambiguous, the earlier one in a fold, the end of
/// the gap in a gap. None only at the edges of jiff's range.
fn resolve(tz: &TimeZone, dt: DateTime) -> Option<Timestamp> {
    match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok(),
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(dt).ok(),
        AmbiguousOffset::Gap { before, after } => {
            // Read with the post-gap offset, `dt` lands just before the
            // transition, so the next transition is the end of the gap.
            // (jiff's "compatible" would instead shift by the gap length.)
            let probe = after.to_timestamp(dt).ok()?;
            tz.following(probe)
                .next()
                .map(|t| t.timestamp())
                .or_else(|| before.to_timestamp(dt).ok())
        }
    }
}

fn local_date_ts(t: Timestamp, tz: &TimeZone) -> Date {
    tz.to_datetime(t).date()
}

/// Start of local date `d` in `tz`; saturates at the edges of jiff's range.
fn day_start(d: Date, tz: &TimeZone) -> Timestamp {
    resolve(tz, d.to_datetime(Time::midnight())).unwrap_or(if d.year() < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// The local date (in tz) of a Unix-ms instant.
pub fn local_date(ms: i64, tz: &TimeZone) -> Date {
    let t = Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    });
    local_date_ts(t, tz)
}

/// Day key used in storage: "YYYY-MM-DD".
pub fn day_key(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

#[cfg(test)]
mod testing {
    use jiff::Timestamp;
    use jiff::civil::date;
    use jiff::tz::TimeZone;

    pub(super) fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    /// Local civil time → instant via the `resolve` rule, for test inputs.
    pub(super) fn local(tz: &TimeZone, y: i16, mo: i8, d: i8, h: i8, mi: i8) -> Timestamp {
        super::resolve(tz, date(y, mo, d).at(h, mi, 0, 0)).unwrap()
    }

    pub(super) fn cron(s: &str) -> super::Cron {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::tz;
    use super::*;
    use jiff::civil::date;

    #[test]
    fn local_date_and_day_key() {
        let just_before = 1_793_491_200_000 - 1; // 2026-10-31T23:59:59.999Z
        assert_eq!(
            local_date(just_before, &tz("Asia/Shanghai")),
            date(2026, 11, 1)
        );
        assert_eq!(local_date(just_before, &TimeZone::UTC), date(2026, 10, 31));
        assert_eq!(day_key(date(2026, 3, 5)), "2026-03-05");
        assert_eq!(day_key(date(987, 1, 2)), "0987-01-02");
    }
}
