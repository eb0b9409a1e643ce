//! Cron schedules: when a customer's report goes out. Pure.
//!
//! A customer's schedule is a 5-field cron expression ([`Cron`]) read in the
//! daemon's local time zone. Each firing sends the report of the last
//! *complete* [`Period`](super::Period) (day, ISO week Monday–Sunday, or
//! calendar month) that ends on or before the firing's local date; with the
//! default `0 8 1 * *` that is the previous month, at 08:00 on the 1st. This
//! module does not remember which reports already went out (a caller that
//! was down catches up by asking [`Cron::fires_between`] for the missed
//! interval).
//!
//! Cron follows Vixie cron: `*`, numbers, lists, ranges, steps (`*/15`,
//! `10-50/20`), month and weekday names, 0 or 7 for Sunday, and the
//! day-of-month / day-of-week rule: when both fields are restricted, a day
//! matches if *either* does. As in Vixie's implementation, a field counts as
//! unrestricted when it starts with `*`, so `*/2` does not trigger the OR
//! rule. Gaps and folds: see [the calendar](super).

use super::{local_date_ts, resolve};
use jiff::civil::Date;
use jiff::tz::TimeZone;
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
    pub(crate) fn fires_between(
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
    pub(crate) fn next_after(&self, tz: &TimeZone, after: Timestamp) -> Option<ZonedDateTime> {
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
    pub(crate) fn matches_day(&self, d: Date) -> bool {
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

#[cfg(test)]
mod tests {
    use super::super::testing::{cron, local, tz};
    use super::super::{Period, PeriodKind};
    use super::*;
    use jiff::civil::date;

    fn err(s: &str) -> String {
        s.parse::<Cron>().unwrap_err()
    }

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(ms).unwrap()
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
}
