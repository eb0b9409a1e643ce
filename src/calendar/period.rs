//! Report periods: a day, an ISO week (Monday–Sunday) or a calendar month,
//! as local dates, and the instants that bound them in a time zone. Pure.

use super::{day_key, day_start};
use jiff::ToSpan;
use jiff::civil::{Date, ISOWeekDate, Weekday};
use jiff::tz::TimeZone;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeriodKind {
    Day,
    Week,
    Month,
}

impl PeriodKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Day => "day",
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
        }
    }

    /// The schedule used when a customer names only the period: 08:00 on the
    /// first local day after the period ends.
    pub(crate) fn default_cron(self) -> &'static str {
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
    pub(crate) fn containing(kind: PeriodKind, d: Date) -> Period {
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
    pub(crate) fn minutes(&self, tz: &TimeZone) -> i64 {
        (self.end_ms(tz) - self.start_ms(tz)).div_euclid(60_000)
    }

    /// The dates `from..to`.
    pub fn days(&self) -> impl Iterator<Item = Date> + use<> {
        let to = self.to;
        std::iter::successors(Some(self.from), |d| d.tomorrow().ok()).take_while(move |d| *d < to)
    }

    pub(crate) fn contains_day(&self, d: Date) -> bool {
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
    use super::super::Cron;
    use super::super::testing::{cron, local, tz};
    use super::*;
    use jiff::civil::date;

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
}
