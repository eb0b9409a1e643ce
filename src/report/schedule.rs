//! When reports go out, and which stretch of days each one covers. Pure.
//!
//! A customer's schedule is a 5-field cron expression ([`Cron`]) read in the
//! daemon's local time zone. Each firing sends the report of the last
//! *complete* [`Period`] (day, ISO week Monday–Sunday, or calendar month)
//! that ends on or before the firing's local date; with the default
//! `0 8 1 * *` that is the previous month, at 08:00 on the 1st. This module
//! only does the calendar arithmetic: it does not send, render or store
//! anything, nor does it remember which reports already went out (a caller
//! that was down catches up by asking [`Cron::fires_between`] for the
//! missed interval).
//!
//! Cron follows Vixie cron: `*`, numbers, lists, ranges, steps (`*/15`,
//! `10-50/20`), month and weekday names, 0 or 7 for Sunday, and the
//! day-of-month / day-of-week rule: when both fields are restricted, a day
//! matches if *either* does. As in Vixie's implementation, a field counts as
//! unrestricted when it starts with `*`, so `*/2` does not trigger the OR
//! rule.
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

use jiff::civil::{Date, DateTime, ISOWeekDate, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, ToSpan, ZonedDateTime};
use std::fmt;
use std::ops::ControlFlow;
use std::str::FromStr;

const FIELD_NAMES: &str = "minute hour day-of-month month day-of-week";
const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// A 5-field cron expression: minute hour day-of-month month day-of-week.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    /// As given (trimmed), for display and config round trips.
    expr: String,
    /// Bit n set = value n allowed.
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    /// Bit 0 = Sunday; a 7 in the expression is folded into bit 0.
    days_of_week: u8,
    /// Whether the field started with `*` (Vixie's DOM_STAR / DOW_STAR).
    dom_star: bool,
    dow_star: bool,
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// Value of `names[0]`.
    names_base: u32,
}

const FIELDS: [FieldSpec; 5] = [
    FieldSpec {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        names_base: 0,
    },
    FieldSpec {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        names_base: 0,
    },
    FieldSpec {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
        names_base: 0,
    },
    FieldSpec {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTH_NAMES,
        names_base: 1,
    },
    FieldSpec {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: &WEEKDAY_NAMES,
        names_base: 0,
    },
];

impl FieldSpec {
    fn value(&self, s: &str) -> Result<u32, String> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            // Leading zeros are fine ("08"), but keep huge inputs from overflowing.
            let v = s.parse::<u32>().unwrap_or(u32::MAX);
            if v < self.min || v > self.max {
                return Err(format!("{s} is out of range {}-{}", self.min, self.max));
            }
            return Ok(v);
        }
        let lower = s.to_ascii_lowercase();
        if let Some(i) = self.names.iter().position(|n| *n == lower) {
            return Ok(self.names_base + i as u32);
        }
        if self.names.is_empty() {
            Err(format!("\"{s}\" is not a number"))
        } else {
            Err(format!(
                "\"{s}\" is not a number or name ({}-{})",
                self.names[0],
                self.names[self.names.len() - 1]
            ))
        }
    }

    /// The set of allowed values as a bit mask.
    fn parse(&self, field: &str) -> Result<u64, String> {
        let mut bits = 0u64;
        for item in field.split(',') {
            if item.is_empty() {
                return Err("empty list element".to_string());
            }
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => {
                    if !s.bytes().all(|b| b.is_ascii_digit()) || s.is_empty() {
                        return Err(format!("step \"{s}\" is not a number"));
                    }
                    let step = s.parse::<u32>().unwrap_or(u32::MAX);
                    if step == 0 {
                        return Err("step must be at least 1".to_string());
                    }
                    (r, Some(step))
                }
                None => (item, None),
            };
            let (lo, hi) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (self.value(a)?, self.value(b)?);
                if a > b {
                    return Err(format!("range {range} is reversed (start after end)"));
                }
                (a, b)
            } else {
                // Vixie rejects "5/15"; say what would work instead of guessing
                // between "5 only" and "5 onwards".
                if step.is_some() {
                    return Err(format!(
                        "a step needs a range or *, e.g. {range}-{}/n or */n",
                        self.max
                    ));
                }
                let v = self.value(range)?;
                (v, v)
            };
            let step = step.unwrap_or(1);
            let mut v = lo;
            while v <= hi {
                bits |= 1 << v;
                v = v.saturating_add(step);
            }
        }
        Ok(bits)
    }
}

impl FromStr for Cron {
    type Err = String;

    fn from_str(s: &str) -> Result<Cron, String> {
        let expr = s.trim();
        let body = if let Some(name) = expr.strip_prefix('@') {
            match name.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => {
                    return Err(format!(
                        "unknown shortcut \"{expr}\"; accepted: @yearly, @annually, \
                         @monthly, @weekly, @daily, @midnight, @hourly"
                    ));
                }
            }
        } else {
            expr
        };
        let fields: Vec<&str> = body.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected 5 fields ({FIELD_NAMES}), got {}",
                fields.len()
            ));
        }
        let mut bits = [0u64; 5];
        for ((spec, field), out) in FIELDS.iter().zip(&fields).zip(&mut bits) {
            *out = spec
                .parse(field)
                .map_err(|e| format!("{} field \"{field}\": {e}", spec.name))?;
        }
        let dow = bits[4] | (bits[4] >> 7); // 7 is Sunday too
        Ok(Cron {
            expr: expr.to_string(),
            minutes: bits[0],
            hours: bits[1] as u32,
            days_of_month: bits[2] as u32,
            months: bits[3] as u16,
            days_of_week: (dow & 0x7f) as u8,
            dom_star: fields[2].starts_with('*'),
            dow_star: fields[4].starts_with('*'),
        })
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

impl Cron {
    /// Fire times t with after < t <= until, ascending, as zoned local times in `tz`.
    pub fn fires_between(
        &self,
        tz: &TimeZone,
        after: Timestamp,
        until: Timestamp,
    ) -> Vec<ZonedDateTime> {
        let mut out = Vec::new();
        if until <= after {
            return out;
        }
        // A day early and late: gap resolution can move a civil time across
        // midnight, and the filter below is on instants anyway.
        let first = local_date_ts(after, tz).saturating_sub(1.day());
        let last = local_date_ts(until, tz).saturating_add(1.day());
        self.for_each_fire(tz, first, last, |t| {
            if t > until {
                return ControlFlow::Break(());
            }
            if t > after {
                out.push(t.to_zoned_datetime(tz.clone()));
            }
            ControlFlow::Continue(())
        });
        out
    }

    /// The first fire time strictly after `after` (None if none within 5 years, e.g. "0 0 31 2 *").
    pub fn next_after(&self, tz: &TimeZone, after: Timestamp) -> Option<ZonedDateTime> {
        let d = local_date_ts(after, tz);
        let first = d.saturating_sub(1.day());
        let last = d.saturating_add(5.years());
        let mut found = None;
        self.for_each_fire(tz, first, last, |t| {
            if t > after {
                found = Some(t);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
        found.map(|t| t.to_zoned_datetime(tz.clone()))
    }

    /// Whether the schedule fires at some time on local date `d`.
    pub fn matches_day(&self, d: Date) -> bool {
        if self.months & (1 << d.month()) == 0 {
            return false;
        }
        let dom = self.days_of_month & (1 << d.day()) != 0;
        let dow = self.days_of_week & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// Calls `f` with each distinct fire instant from civil dates `first..=last`,
    /// ascending, until it breaks. Ascending holds because resolving civil
    /// times to instants (see [`resolve`]) is monotone.
    fn for_each_fire(
        &self,
        tz: &TimeZone,
        first: Date,
        last: Date,
        mut f: impl FnMut(Timestamp) -> ControlFlow<()>,
    ) {
        let mut prev: Option<Timestamp> = None;
        let mut d = first;
        while d <= last {
            if self.matches_day(d) {
                for h in (0..24).filter(|h| self.hours & (1 << h) != 0) {
                    for m in (0..60).filter(|m| self.minutes & (1 << m) != 0) {
                        let Some(t) = resolve(tz, d.at(h, m, 0, 0)) else {
                            continue;
                        };
                        // Several times inside one gap resolve to the same instant.
                        if prev == Some(t) {
                            continue;
                        }
                        prev = Some(t);
                        if f(t).is_break() {
                            return;
                        }
                    }
                }
            }
            match d.tomorrow() {
                Ok(next) => d = next,
                Err(_) => return,
            }
        }
    }
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeriodKind {
    Day,
    Week,
    Month,
}

impl PeriodKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Day => "day",
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
        }
    }

    /// The schedule used when a customer names only the period: 08:00 on the
    /// first local day after the period ends.
    pub fn default_cron(self) -> &'static str {
        match self {
            PeriodKind::Day => "0 8 * * *",
            PeriodKind::Week => "0 8 * * 1",
            PeriodKind::Month => "0 8 1 * *",
        }
    }
}

impl FromStr for PeriodKind {
    type Err = String;

    fn from_str(s: &str) -> Result<PeriodKind, String> {
        match s {
            "day" => Ok(PeriodKind::Day),
            "week" => Ok(PeriodKind::Week),
            "month" => Ok(PeriodKind::Month),
            _ => Err(format!(
                "\"{s}\" is not a period kind; expected \"day\", \"week\" or \"month\""
            )),
        }
    }
}

impl fmt::Display for PeriodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A half-open range of local dates `from..to`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Period {
    /// None: an arbitrary range.
    pub kind: Option<PeriodKind>,
    pub from: Date,
    /// Exclusive.
    pub to: Date,
}

const PERIOD_FORMS: &str = "expected 2026-10 (month), 2026-W44 (ISO week), \
     2026-10-05 (day) or 2026-10-01..2026-10-15 (inclusive range)";

impl Period {
    /// # Panics
    /// If the period would end after 9999-12-31 (jiff's last date).
    pub fn containing(kind: PeriodKind, d: Date) -> Period {
        Period::try_containing(kind, d).expect("period within jiff's date range")
    }

    fn try_containing(kind: PeriodKind, d: Date) -> Result<Period, String> {
        let (from, to) = match kind {
            PeriodKind::Day => (d, d.tomorrow()),
            PeriodKind::Week => {
                let back = i64::from(d.weekday().to_monday_zero_offset());
                let from = d
                    .checked_sub(back.days())
                    .map_err(|e| format!("week of {d}: {e}"))?;
                (from, from.checked_add(7.days()))
            }
            PeriodKind::Month => (d.first_of_month(), d.last_of_month().tomorrow()),
        };
        let to = to.map_err(|e| format!("{} of {d}: {e}", kind.as_str()))?;
        Ok(Period {
            kind: Some(kind),
            from,
            to,
        })
    }

    /// The last complete period that ends on or before `d` (the date of a
    /// firing): the latest period of `kind` whose `to` <= d.
    ///
    /// # Panics
    /// Only at the very start or end of jiff's date range.
    pub fn last_complete_before(kind: PeriodKind, d: Date) -> Period {
        // The period containing d starts on or before d, so the one just
        // before it ends on or before d, and any later one would contain d.
        let current = Period::containing(kind, d);
        let prev_day = current
            .from
            .yesterday()
            .expect("date after jiff's first date");
        Period::containing(kind, prev_day)
    }

    /// from..to inclusive days (to_inclusive >= from, else Err)
    pub fn range(from: Date, to_inclusive: Date) -> Result<Period, String> {
        if to_inclusive < from {
            return Err(format!(
                "range end {} is before its start {}",
                day_key(to_inclusive),
                day_key(from)
            ));
        }
        let to = to_inclusive
            .tomorrow()
            .map_err(|e| format!("range end {}: {e}", day_key(to_inclusive)))?;
        Ok(Period {
            kind: None,
            from,
            to,
        })
    }

    /// "2026-10" | "2026-W44" (ISO week-year and week, zero-padded) |
    /// "2026-10-05" | "2026-10-01..2026-10-15" (inclusive end)
    pub fn label(&self) -> String {
        match self.kind {
            Some(PeriodKind::Month) => {
                format!("{:04}-{:02}", self.from.year(), self.from.month())
            }
            Some(PeriodKind::Week) => {
                let w = self.from.iso_week_date();
                format!("{:04}-W{:02}", w.year(), w.week())
            }
            Some(PeriodKind::Day) => day_key(self.from),
            None => {
                let last = self.to.yesterday().unwrap_or(self.to);
                format!("{}..{}", day_key(self.from), day_key(last))
            }
        }
    }

    /// Parses the label forms back: "2026-10", "2026-W44", "2026-10-05" and
    /// "2026-10-01..2026-10-15" (inclusive end).
    pub fn parse(s: &str) -> Result<Period, String> {
        let s = s.trim();
        let bad = || format!("\"{s}\" is not a period; {PERIOD_FORMS}");
        if let Some((a, b)) = s.split_once("..") {
            let from = parse_day(a).ok_or_else(bad)??;
            let to = parse_day(b).ok_or_else(bad)??;
            return Period::range(from, to).map_err(|e| format!("\"{s}\": {e}"));
        }
        if let Some(d) = parse_day(s) {
            return Period::try_containing(PeriodKind::Day, d?);
        }
        let (y, rest) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || !all_digits(y) {
            return Err(bad());
        }
        let year: i16 = y.parse().map_err(|_| bad())?;
        if let Some(w) = rest.strip_prefix('W') {
            if w.len() != 2 || !all_digits(w) {
                return Err(bad());
            }
            let week: i8 = w.parse().map_err(|_| bad())?;
            let monday =
                ISOWeekDate::new(year, week, Weekday::Monday).map_err(
                    |_| match ISOWeekDate::new(year, 1, Weekday::Monday) {
                        Ok(w1) => format!(
                            "\"{s}\": ISO week-year {year} has weeks 01-{}",
                            w1.weeks_in_year()
                        ),
                        Err(_) => format!("\"{s}\": year {year} is out of range"),
                    },
                )?;
            return Period::try_containing(PeriodKind::Week, monday.date());
        }
        if rest.len() != 2 || !all_digits(rest) {
            return Err(bad());
        }
        let month: i8 = rest.parse().map_err(|_| bad())?;
        let first = Date::new(year, month, 1)
            .map_err(|_| format!("\"{s}\": month {month} is out of range 1-12"))?;
        Period::try_containing(PeriodKind::Month, first)
    }

    /// Local midnight at the start of `from` as Unix ms (a midnight that
    /// doesn't exist in the zone resolves to the first instant of that day).
    pub fn start_ms(&self, tz: &TimeZone) -> i64 {
        day_start(self.from, tz).as_millisecond()
    }

    /// Local midnight at the start of `to` (the end, exclusive) as Unix ms.
    pub fn end_ms(&self, tz: &TimeZone) -> i64 {
        day_start(self.to, tz).as_millisecond()
    }

    /// Whole minutes in [start, end): 1440 a day except DST-change days (1380 / 1500).
    pub fn minutes(&self, tz: &TimeZone) -> i64 {
        (self.end_ms(tz) - self.start_ms(tz)).div_euclid(60_000)
    }

    /// The dates `from..to`.
    pub fn days(&self) -> impl Iterator<Item = Date> + use<> {
        let to = self.to;
        std::iter::successors(Some(self.from), |d| d.tomorrow().ok()).take_while(move |d| *d < to)
    }

    pub fn contains_day(&self, d: Date) -> bool {
        self.from <= d && d < self.to
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// None: not shaped like "YYYY-MM-DD"; Some(Err): shaped like it but no such date.
fn parse_day(s: &str) -> Option<Result<Date, String>> {
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || y.len() != 4
        || m.len() != 2
        || d.len() != 2
        || ![y, m, d].iter().all(|p| all_digits(p))
    {
        return None;
    }
    let (y, m, d) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    Some(Date::new(y, m, d).map_err(|_| format!("\"{s}\" is not a valid date")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    fn cron(s: &str) -> Cron {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        s.parse::<Cron>().unwrap_err()
    }

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(ms).unwrap()
    }

    /// Local civil time → instant via the `resolve` rule, for test inputs.
    fn local(tz: &TimeZone, y: i16, mo: i8, d: i8, h: i8, mi: i8) -> Timestamp {
        resolve(tz, date(y, mo, d).at(h, mi, 0, 0)).unwrap()
    }

    fn ms_of(v: &[ZonedDateTime]) -> Vec<i64> {
        v.iter().map(|z| z.timestamp().as_millisecond()).collect()
    }

    fn dates_of(v: &[ZonedDateTime]) -> Vec<Date> {
        v.iter().map(|z| z.date()).collect()
    }

    // ---- cron parsing ----

    #[test]
    fn parses_fields_into_sets() {
        let c = cron("0 8 1 * *");
        assert_eq!(c.minutes, 1);
        assert_eq!(c.hours, 1 << 8);
        assert_eq!(c.days_of_month, 1 << 1);
        assert_eq!(c.months, 0b1_1111_1111_1110);
        assert_eq!(c.days_of_week, 0x7f);
        assert!(!c.dom_star && c.dow_star);
    }

    #[test]
    fn steps_ranges_and_lists() {
        assert_eq!(
            cron("*/15 * * * *").minutes,
            1 << 0 | 1 << 15 | 1 << 30 | 1 << 45
        );
        assert_eq!(
            cron("10-50/20 * * * *").minutes,
            1 << 10 | 1 << 30 | 1 << 50
        );
        assert_eq!(cron("0 1,15 * * *").hours, 1 << 1 | 1 << 15);
        assert_eq!(cron("0 9-11,14 * * *").hours, 0b111 << 9 | 1 << 14);
        assert_eq!(
            cron("0 0 */10 * *").days_of_month,
            1 << 1 | 1 << 11 | 1 << 21 | 1 << 31
        );
        assert_eq!(cron("05 08 * * *").minutes, 1 << 5);
    }

    #[test]
    fn month_and_weekday_names_case_insensitive() {
        let c = cron("0 8 * JAN,Jul,dec Mon-fri");
        assert_eq!(c.months, 1 << 1 | 1 << 7 | 1 << 12);
        assert_eq!(c.days_of_week, 0b011_1110);
        assert_eq!(cron("0 8 * mar-may SUN").months, 0b111 << 3);
        assert_eq!(cron("0 8 * * sat").days_of_week, 1 << 6);
    }

    #[test]
    fn seven_is_sunday() {
        assert_eq!(cron("0 0 * * 7").days_of_week, 1);
        assert_eq!(cron("0 0 * * 0").days_of_week, 1);
        assert_eq!(cron("0 0 * * 5-7").days_of_week, 1 | 1 << 5 | 1 << 6);
        // 2026-11-01 is a Sunday.
        let c = cron("0 0 * * 7");
        assert!(c.matches_day(date(2026, 11, 1)));
        assert!(!c.matches_day(date(2026, 11, 2)));
    }

    #[test]
    fn shortcuts() {
        assert_eq!(cron("@monthly").minutes, cron("0 0 1 * *").minutes);
        assert_eq!(cron("@Daily").hours, 1);
        assert_eq!(cron("@weekly").days_of_week, 1);
        assert_eq!(cron("@yearly").months, 1 << 1);
        assert_eq!(cron("@annually").days_of_month, 1 << 1);
        assert_eq!(cron("@hourly").hours, 0xff_ffff);
        assert_eq!(cron("@hourly").to_string(), "@hourly");
        assert!(err("@reboot").starts_with("unknown shortcut \"@reboot\""));
    }

    #[test]
    fn display_is_expression_as_given() {
        assert_eq!(cron(" 0 8 1 * * ").to_string(), "0 8 1 * *");
        assert_eq!(
            cron("*/5 8-18 * * mon-fri").to_string(),
            "*/5 8-18 * * mon-fri"
        );
    }

    #[test]
    fn parse_errors_name_field_and_problem() {
        assert_eq!(
            err("0 25 * * *"),
            "hour field \"25\": 25 is out of range 0-23"
        );
        assert_eq!(
            err("0 8 1 *"),
            "expected 5 fields (minute hour day-of-month month day-of-week), got 4"
        );
        assert_eq!(
            err(""),
            "expected 5 fields (minute hour day-of-month month day-of-week), got 0"
        );
        assert_eq!(
            err("0 8 1 * * *"),
            "expected 5 fields (minute hour day-of-month month day-of-week), got 6"
        );
        assert_eq!(
            err("60 * * * *"),
            "minute field \"60\": 60 is out of range 0-59"
        );
        assert_eq!(
            err("0 8 0 * *"),
            "day-of-month field \"0\": 0 is out of range 1-31"
        );
        assert_eq!(
            err("0 8 1 13 *"),
            "month field \"13\": 13 is out of range 1-12"
        );
        assert_eq!(
            err("0 8 * * 8"),
            "day-of-week field \"8\": 8 is out of range 0-7"
        );
        assert_eq!(
            err("*/0 * * * *"),
            "minute field \"*/0\": step must be at least 1"
        );
        assert_eq!(
            err("0 5-1 * * *"),
            "hour field \"5-1\": range 5-1 is reversed (start after end)"
        );
        assert_eq!(
            err("1,,2 * * * *"),
            "minute field \"1,,2\": empty list element"
        );
        assert_eq!(
            err("0 8 1, * *"),
            "day-of-month field \"1,\": empty list element"
        );
        assert_eq!(
            err("0 8 * foo *"),
            "month field \"foo\": \"foo\" is not a number or name (jan-dec)"
        );
        assert_eq!(
            err("0 8 * * fri-mon"),
            "day-of-week field \"fri-mon\": range fri-mon is reversed (start after end)"
        );
        assert_eq!(
            err("x 8 * * *"),
            "minute field \"x\": \"x\" is not a number"
        );
        assert_eq!(
            err("5/15 * * * *"),
            "minute field \"5/15\": a step needs a range or *, e.g. 5-59/n or */n"
        );
        assert_eq!(
            err("*/x * * * *"),
            "minute field \"*/x\": step \"x\" is not a number"
        );
        assert_eq!(
            err("99999999999 * * * *"),
            "minute field \"99999999999\": 99999999999 is out of range 0-59"
        );
    }

    // ---- day matching ----

    #[test]
    fn dom_and_dow_both_restricted_means_either() {
        let sh = tz("Asia/Shanghai");
        // 2026-11-01 is a Sunday; the Mondays after it are the 2nd and 9th.
        let fires = cron("0 8 1 * 1").fires_between(
            &sh,
            local(&sh, 2026, 10, 31, 0, 0),
            local(&sh, 2026, 11, 10, 0, 0),
        );
        assert_eq!(
            dates_of(&fires),
            [date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 9)]
        );
    }

    #[test]
    fn dow_star_means_dom_alone() {
        let c = cron("0 8 1 * *");
        assert!(c.matches_day(date(2026, 11, 1)));
        assert!(!c.matches_day(date(2026, 11, 2))); // a Monday
        let c = cron("0 8 * * 1");
        assert!(c.matches_day(date(2026, 11, 2)));
        assert!(!c.matches_day(date(2026, 11, 1)));
    }

    #[test]
    fn starred_step_counts_as_unrestricted_like_vixie() {
        // "*/2" starts with '*', so both fields must match: odd days that are
        // Mondays. Mondays in 2026-11: 2, 9, 16, 23, 30.
        let c = cron("0 8 */2 * 1");
        let hits: Vec<i8> = Period::parse("2026-11")
            .unwrap()
            .days()
            .filter(|d| c.matches_day(*d))
            .map(|d| d.day())
            .collect();
        assert_eq!(hits, [9, 23]);
    }

    #[test]
    fn month_field_restricts_days() {
        let c = cron("0 8 * feb *");
        assert!(c.matches_day(date(2026, 2, 14)));
        assert!(!c.matches_day(date(2026, 3, 14)));
    }

    // ---- firing ----

    #[test]
    fn monthly_default_in_shanghai() {
        let sh = tz("Asia/Shanghai");
        let c = cron(PeriodKind::Month.default_cron());
        let fires = c.fires_between(
            &sh,
            local(&sh, 2026, 9, 15, 0, 0),
            local(&sh, 2026, 12, 31, 0, 0),
        );
        let shown: Vec<String> = fires.iter().map(|z| z.to_string()).collect();
        assert_eq!(
            shown,
            [
                "2026-10-01T08:00:00+08:00[Asia/Shanghai]",
                "2026-11-01T08:00:00+08:00[Asia/Shanghai]",
                "2026-12-01T08:00:00+08:00[Asia/Shanghai]",
            ]
        );
        // 08:00+08 is midnight UTC; checked with `date -u -d ... +%s`.
        assert_eq!(
            ms_of(&fires),
            [1_790_812_800_000, 1_793_491_200_000, 1_796_083_200_000]
        );
    }

    #[test]
    fn fires_between_is_exclusive_after_inclusive_until() {
        let sh = tz("Asia/Shanghai");
        let c = cron("0 8 1 * *");
        let nov = ts(1_793_491_200_000);
        let dec = ts(1_796_083_200_000);
        assert_eq!(ms_of(&c.fires_between(&sh, nov, dec)), [1_796_083_200_000]);
        assert!(c.fires_between(&sh, dec, nov).is_empty());
        assert!(c.fires_between(&sh, nov, nov).is_empty());
    }

    #[test]
    fn a_year_of_monthly_fires() {
        let sh = tz("Asia/Shanghai");
        let fires = cron("0 8 1 * *").fires_between(
            &sh,
            local(&sh, 2026, 1, 1, 0, 0),
            local(&sh, 2027, 1, 1, 0, 0),
        );
        assert_eq!(fires.len(), 12);
        assert!(fires.iter().all(|z| z.day() == 1 && z.hour() == 8));
        assert!(fires.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn next_after_is_strict() {
        let sh = tz("Asia/Shanghai");
        let c = cron("0 8 1 * *");
        let z = c.next_after(&sh, ts(1_793_491_200_000)).unwrap();
        assert_eq!(z.timestamp().as_millisecond(), 1_796_083_200_000);
        let z = c.next_after(&sh, ts(1_793_491_200_000 - 1)).unwrap();
        assert_eq!(z.timestamp().as_millisecond(), 1_793_491_200_000);
    }

    #[test]
    fn next_after_leap_day_and_never() {
        let sh = tz("Asia/Shanghai");
        let after = local(&sh, 2026, 3, 1, 0, 0);
        let z = cron("0 0 29 2 *").next_after(&sh, after).unwrap();
        assert_eq!(z.date(), date(2028, 2, 29));
        assert_eq!(z.hour(), 0);
        assert_eq!(cron("0 0 31 2 *").next_after(&sh, after), None);
        assert_eq!(cron("0 0 30 feb *").next_after(&sh, after), None);
    }

    // ---- DST ----

    #[test]
    fn berlin_spring_gap_fires_once_after_gap() {
        let be = tz("Europe/Berlin");
        let fires = cron("30 2 * * *").fires_between(
            &be,
            ts(1_774_656_000_000), // 2026-03-28T00:00Z
            ts(1_774_915_200_000), // 2026-03-31T00:00Z
        );
        // 02:30 CET = 01:30Z; 03:00 CEST = 01:00Z (first instant after the
        // gap); 02:30 CEST = 00:30Z.
        assert_eq!(
            ms_of(&fires),
            [1_774_661_400_000, 1_774_746_000_000, 1_774_830_600_000]
        );
        assert_eq!(
            fires[1].to_string(),
            "2026-03-29T03:00:00+02:00[Europe/Berlin]"
        );
    }

    #[test]
    fn berlin_times_inside_gap_collapse_to_one_firing() {
        let be = tz("Europe/Berlin");
        // 02:00..02:45 don't exist on 2026-03-29 and 03:00 is the gap's end
        // itself: those five are one firing at 01:00Z.
        let fires = cron("*/15 2-3 29 3 *").fires_between(
            &be,
            ts(1_774_656_000_000),
            ts(1_774_915_200_000),
        );
        assert_eq!(
            ms_of(&fires),
            [
                1_774_746_000_000, // 03:00 CEST = 01:00Z
                1_774_746_900_000, // 03:15
                1_774_747_800_000, // 03:30
                1_774_748_700_000, // 03:45
            ]
        );
    }

    #[test]
    fn berlin_fall_fold_fires_once_at_earlier_instant() {
        let be = tz("Europe/Berlin");
        let fires = cron("30 2 * * *").fires_between(
            &be,
            ts(1_792_800_000_000), // 2026-10-24T00:00Z
            ts(1_793_059_200_000), // 2026-10-27T00:00Z
        );
        // 02:30 CEST = 00:30Z on the 24th and (the first 02:30) on the 25th;
        // 02:30 CET = 01:30Z on the 26th.
        assert_eq!(
            ms_of(&fires),
            [1_792_801_800_000, 1_792_888_200_000, 1_792_978_200_000]
        );
        assert_eq!(
            fires[1].to_string(),
            "2026-10-25T02:30:00+02:00[Europe/Berlin]"
        );
    }

    #[test]
    fn berlin_repeated_hour_does_not_fire_again() {
        let be = tz("Europe/Berlin");
        let fires =
            cron("*/30 2 25 10 *").fires_between(&be, ts(1_792_800_000_000), ts(1_793_059_200_000));
        // 02:00 and 02:30 CEST only (00:00Z, 00:30Z), not again in CET.
        assert_eq!(ms_of(&fires), [1_792_886_400_000, 1_792_888_200_000]);
    }

    #[test]
    fn next_after_lands_on_gap_end() {
        let be = tz("Europe/Berlin");
        let z = cron("30 2 29 3 *")
            .next_after(&be, ts(1_774_656_000_000))
            .unwrap();
        assert_eq!(z.timestamp().as_millisecond(), 1_774_746_000_000);
    }

    #[test]
    fn berlin_dst_day_minutes() {
        let be = tz("Europe/Berlin");
        let spring = Period::parse("2026-03-29").unwrap();
        let fall = Period::parse("2026-10-25").unwrap();
        assert_eq!(spring.minutes(&be), 1380);
        assert_eq!(fall.minutes(&be), 1500);
        assert_eq!(Period::parse("2026-03-28").unwrap().minutes(&be), 1440);
        assert_eq!(
            Period::parse("2026-03").unwrap().minutes(&be),
            31 * 1440 - 60
        );
    }

    #[test]
    fn havana_midnight_gap_and_fold() {
        // Havana changes clocks at midnight: 2026-03-08 00:00 doesn't exist
        // (CST -05 → CDT -04 at 05:00Z); 2026-11-01 00:00 happens twice
        // (04:00Z in CDT, 05:00Z in CST).
        let hv = tz("America/Havana");
        let spring = Period::parse("2026-03-08").unwrap();
        assert_eq!(spring.start_ms(&hv), 1_772_946_000_000); // 05:00Z
        assert_eq!(spring.end_ms(&hv), 1_773_028_800_000); // 03-09 04:00Z
        assert_eq!(spring.minutes(&hv), 1380);
        let fall = Period::parse("2026-11-01").unwrap();
        assert_eq!(fall.start_ms(&hv), 1_793_505_600_000); // first 00:00, 04:00Z
        assert_eq!(fall.end_ms(&hv), 1_793_595_600_000); // 11-02 05:00Z
        assert_eq!(fall.minutes(&hv), 1500);
        // Consecutive periods tile: the day before ends where this one starts.
        let oct31 = Period::parse("2026-10-31").unwrap();
        assert_eq!(oct31.end_ms(&hv), fall.start_ms(&hv));
        assert_eq!(oct31.minutes(&hv), 1440);
    }

    // ---- periods ----

    #[test]
    fn shanghai_month_bounds_and_minutes() {
        let sh = tz("Asia/Shanghai");
        let oct = Period::parse("2026-10").unwrap();
        assert_eq!(oct.start_ms(&sh), 1_790_784_000_000); // 2026-09-30T16:00Z
        assert_eq!(oct.end_ms(&sh), 1_793_462_400_000); // 2026-10-31T16:00Z
        assert_eq!(oct.minutes(&sh), 31 * 1440);
    }

    #[test]
    fn containing_each_kind() {
        let d = date(2026, 10, 28); // a Wednesday
        assert_eq!(
            Period::containing(PeriodKind::Day, d),
            Period {
                kind: Some(PeriodKind::Day),
                from: d,
                to: date(2026, 10, 29)
            }
        );
        assert_eq!(
            Period::containing(PeriodKind::Week, d),
            Period {
                kind: Some(PeriodKind::Week),
                from: date(2026, 10, 26),
                to: date(2026, 11, 2)
            }
        );
        assert_eq!(
            Period::containing(PeriodKind::Month, d),
            Period {
                kind: Some(PeriodKind::Month),
                from: date(2026, 10, 1),
                to: date(2026, 11, 1)
            }
        );
        let feb = Period::containing(PeriodKind::Month, date(2028, 2, 10));
        assert_eq!(feb.to, date(2028, 3, 1));
        assert_eq!(feb.days().count(), 29);
    }

    #[test]
    fn last_complete_month() {
        let k = PeriodKind::Month;
        assert_eq!(
            Period::last_complete_before(k, date(2026, 11, 1)).label(),
            "2026-10"
        );
        assert_eq!(
            Period::last_complete_before(k, date(2026, 11, 15)).label(),
            "2026-10"
        );
        assert_eq!(
            Period::last_complete_before(k, date(2026, 11, 30)).label(),
            "2026-10"
        );
        let dec = Period::last_complete_before(k, date(2026, 1, 1));
        assert_eq!(dec.label(), "2025-12");
        assert_eq!((dec.from, dec.to), (date(2025, 12, 1), date(2026, 1, 1)));
    }

    #[test]
    fn last_complete_week_across_year_boundary() {
        let k = PeriodKind::Week;
        // Monday 2026-01-05: the week just ended is 2026-W01, which starts
        // Monday 2025-12-29.
        let w = Period::last_complete_before(k, date(2026, 1, 5));
        assert_eq!(w.label(), "2026-W01");
        assert_eq!((w.from, w.to), (date(2025, 12, 29), date(2026, 1, 5)));
        // Thursday 2026-01-01 and Sunday 2026-01-04 are inside 2026-W01, so
        // the last complete week is 2025-W52.
        for d in [date(2026, 1, 1), date(2026, 1, 4)] {
            let w = Period::last_complete_before(k, d);
            assert_eq!(w.label(), "2025-W52");
            assert_eq!((w.from, w.to), (date(2025, 12, 22), date(2025, 12, 29)));
        }
    }

    #[test]
    fn last_complete_day() {
        let d = Period::last_complete_before(PeriodKind::Day, date(2026, 1, 1));
        assert_eq!(d.label(), "2025-12-31");
        assert_eq!(d.to, date(2026, 1, 1));
    }

    #[test]
    fn labels_and_round_trips() {
        let cases = [
            (
                Period::containing(PeriodKind::Month, date(2026, 10, 9)),
                "2026-10",
            ),
            (
                Period::containing(PeriodKind::Week, date(2026, 10, 28)),
                "2026-W44",
            ),
            (
                Period::containing(PeriodKind::Week, date(2026, 1, 2)),
                "2026-W01",
            ),
            (
                Period::containing(PeriodKind::Day, date(2026, 10, 5)),
                "2026-10-05",
            ),
            (
                Period::range(date(2026, 10, 1), date(2026, 10, 15)).unwrap(),
                "2026-10-01..2026-10-15",
            ),
            (
                Period::range(date(2026, 10, 1), date(2026, 10, 1)).unwrap(),
                "2026-10-01..2026-10-01",
            ),
        ];
        for (p, label) in cases {
            assert_eq!(p.label(), label);
            assert_eq!(p.to_string(), label);
            assert_eq!(Period::parse(label).unwrap(), p, "{label}");
        }
        let r = Period::parse("2026-10-01..2026-10-15").unwrap();
        assert_eq!(
            (r.kind, r.from, r.to),
            (None, date(2026, 10, 1), date(2026, 10, 16))
        );
        let w = Period::parse("2026-W44").unwrap();
        assert_eq!((w.from, w.to), (date(2026, 10, 26), date(2026, 11, 2)));
    }

    #[test]
    fn week_53_only_in_long_years() {
        // 2026 starts on a Thursday, so it has 53 ISO weeks; W53 starts
        // Monday 2026-12-28 and holds 2027-01-01.
        let w = Period::parse("2026-W53").unwrap();
        assert_eq!((w.from, w.to), (date(2026, 12, 28), date(2027, 1, 4)));
        assert_eq!(
            Period::containing(PeriodKind::Week, date(2027, 1, 1)).label(),
            "2026-W53"
        );
        assert_eq!(
            Period::parse("2025-W53").unwrap_err(),
            "\"2025-W53\": ISO week-year 2025 has weeks 01-52"
        );
        assert!(Period::parse("2026-W00").is_err());
    }

    #[test]
    fn parse_errors() {
        let forms = "expected 2026-10 (month), 2026-W44 (ISO week), 2026-10-05 (day) \
                     or 2026-10-01..2026-10-15 (inclusive range)";
        for bad in [
            "",
            "2026",
            "October",
            "2026-W1",
            "2026-1",
            "26-10",
            "2026-10-5",
            "2026-10..x",
        ] {
            assert_eq!(
                Period::parse(bad).unwrap_err(),
                format!("\"{bad}\" is not a period; {forms}")
            );
        }
        assert_eq!(
            Period::parse("2026-13").unwrap_err(),
            "\"2026-13\": month 13 is out of range 1-12"
        );
        assert_eq!(
            Period::parse("2026-02-30").unwrap_err(),
            "\"2026-02-30\" is not a valid date"
        );
        assert_eq!(
            Period::parse("2026-10-15..2026-10-01").unwrap_err(),
            "\"2026-10-15..2026-10-01\": range end 2026-10-01 is before its start 2026-10-15"
        );
    }

    #[test]
    fn range_rejects_reversed() {
        assert_eq!(
            Period::range(date(2026, 10, 2), date(2026, 10, 1)).unwrap_err(),
            "range end 2026-10-01 is before its start 2026-10-02"
        );
    }

    #[test]
    fn days_and_contains_day() {
        let w = Period::parse("2026-W01").unwrap();
        let days: Vec<Date> = w.days().collect();
        assert_eq!(days.len(), 7);
        assert_eq!(days[0], date(2025, 12, 29));
        assert_eq!(days[6], date(2026, 1, 4));
        assert!(w.contains_day(date(2025, 12, 29)));
        assert!(w.contains_day(date(2026, 1, 4)));
        assert!(!w.contains_day(date(2026, 1, 5)));
        assert!(!w.contains_day(date(2025, 12, 28)));
        let empty = Period {
            kind: None,
            from: date(2026, 1, 2),
            to: date(2026, 1, 2),
        };
        assert_eq!(empty.days().count(), 0);
    }

    #[test]
    fn period_kind_strings() {
        for k in [PeriodKind::Day, PeriodKind::Week, PeriodKind::Month] {
            assert_eq!(k.as_str().parse::<PeriodKind>().unwrap(), k);
            assert!(k.default_cron().parse::<Cron>().is_ok());
        }
        assert_eq!(PeriodKind::Day.default_cron(), "0 8 * * *");
        assert_eq!(PeriodKind::Week.default_cron(), "0 8 * * 1");
        assert_eq!(PeriodKind::Month.default_cron(), "0 8 1 * *");
        assert!("year".parse::<PeriodKind>().is_err());
    }

    #[test]
    fn default_schedules_report_the_right_period() {
        let sh = tz("Asia/Shanghai");
        let after = local(&sh, 2026, 12, 31, 12, 0);
        let cases = [
            (PeriodKind::Day, date(2027, 1, 1), "2026-12-31"),
            (PeriodKind::Week, date(2027, 1, 4), "2026-W53"),
            (PeriodKind::Month, date(2027, 1, 1), "2026-12"),
        ];
        for (kind, fire_date, label) in cases {
            let z = cron(kind.default_cron()).next_after(&sh, after).unwrap();
            assert_eq!(z.date(), fire_date, "{kind}");
            assert_eq!(Period::last_complete_before(kind, z.date()).label(), label);
        }
    }

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
