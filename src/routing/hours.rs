//! Opening hours of a group: weekly time ranges in the hotline's IANA time zone, one-off closed
//! dates and computed Lithuanian public holidays; answers "open now?" and "when do we reopen?".
//!
//! Public holidays follow the Lithuanian Labour Code (Darbo kodeksas), Article 123 "Švenčių
//! dienos", as amended with All Souls' Day (Nov 2) from 2020: Jan 1, Feb 16, Mar 11, Easter Sunday
//! and Monday (Western tradition), May 1, first Sunday of May, first Sunday of June, Jun 24,
//! Jul 6, Aug 15, Nov 1, Nov 2, Dec 24, 25, 26. Easter is computed (Gregorian computus) so the
//! calendar never needs yearly maintenance.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use std::collections::BTreeSet;

/// How far ahead `next_opening` looks; longer closures are reported as "no opening known".
pub const SEARCH_DAYS: u32 = 30;

/// One opening range within a day, in minutes after local midnight; `end` may be 1440 (24:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start_minute: u16,
    pub end_minute: u16,
}

impl TimeRange {
    /// Parses "HH:MM-HH:MM" (end may be "24:00"); the range must not be empty or wrap midnight.
    pub fn parse(text: &str) -> Result<TimeRange, String> {
        let (start, end) = text
            .split_once('-')
            .ok_or_else(|| format!("bad time range \"{text}\": expected HH:MM-HH:MM"))?;
        let start_minute = parse_clock(start.trim(), false)?;
        let end_minute = parse_clock(end.trim(), true)?;
        if end_minute <= start_minute {
            return Err(format!(
                "bad time range \"{text}\": end must be after start (ranges cannot cross midnight)"
            ));
        }
        Ok(TimeRange {
            start_minute,
            end_minute,
        })
    }

    /// Parses a day's ranges: "08:00-12:00,13:00-17:00"; ranges must be ascending and disjoint.
    pub fn parse_list(text: &str) -> Result<Vec<TimeRange>, String> {
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let range = TimeRange::parse(part.trim())?;
            if let Some(previous) = ranges.last().copied() {
                let previous: TimeRange = previous;
                if range.start_minute < previous.end_minute {
                    return Err(format!(
                        "time ranges \"{text}\" overlap or are not in ascending order"
                    ));
                }
            }
            ranges.push(range);
        }
        Ok(ranges)
    }

    fn contains(&self, minute_of_day: u16) -> bool {
        self.start_minute <= minute_of_day && minute_of_day < self.end_minute
    }
}

fn parse_clock(text: &str, allow_24: bool) -> Result<u16, String> {
    let bad = || format!("bad time \"{text}\": expected HH:MM (00:00-23:59)");
    let (hour, minute) = text.split_once(':').ok_or_else(bad)?;
    if hour.len() != 2 || minute.len() != 2 {
        return Err(bad());
    }
    let hour: u16 = hour.parse().map_err(|_| bad())?;
    let minute: u16 = minute.parse().map_err(|_| bad())?;
    if allow_24 && hour == 24 && minute == 0 {
        return Ok(24 * 60);
    }
    if hour > 23 || minute > 59 {
        return Err(bad());
    }
    Ok(hour * 60 + minute)
}

/// Calendars of public holidays the config can name (`public_holidays = "LT"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolidayCalendar {
    Lithuania,
}

impl HolidayCalendar {
    pub fn from_code(code: &str) -> Option<HolidayCalendar> {
        match code {
            "LT" => Some(HolidayCalendar::Lithuania),
            _ => None,
        }
    }

    pub fn is_holiday(self, date: NaiveDate) -> bool {
        match self {
            HolidayCalendar::Lithuania => is_lithuanian_holiday(date),
        }
    }
}

/// Easter Sunday (Gregorian calendar) by the anonymous Gregorian algorithm (Meeus/Jones/Butcher).
pub fn easter_sunday(year: i32) -> Option<NaiveDate> {
    let a = year.rem_euclid(19);
    let b = year.div_euclid(100);
    let c = year.rem_euclid(100);
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, u32::try_from(month).ok()?, u32::try_from(day).ok()?)
}

/// Lithuanian public holidays of Labour Code Art. 123 (see the module docs).
pub fn is_lithuanian_holiday(date: NaiveDate) -> bool {
    let fixed = matches!(
        (date.month(), date.day()),
        (1, 1)
            | (2, 16)
            | (3, 11)
            | (5, 1)
            | (6, 24)
            | (7, 6)
            | (8, 15)
            | (11, 1)
            | (11, 2)
            | (12, 24)
            | (12, 25)
            | (12, 26)
    );
    // Mother's Day and Father's Day: the first Sunday of May / June is day 1..=7.
    let first_sunday =
        date.weekday() == Weekday::Sun && matches!(date.month(), 5 | 6) && date.day() <= 7;
    let easter = easter_sunday(date.year())
        .is_some_and(|sunday| date == sunday || Some(date) == sunday.succ_opt());
    fixed || first_sunday || easter
}

/// Whether a reopening is today, tomorrow or later (the caller then names the weekday).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelativeDay {
    Today,
    Tomorrow,
    Later,
}

/// "Opens again <day> at <hour>:<minute>", in local time, ready for prompt composition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reopening {
    pub at: DateTime<Tz>,
    pub weekday: Weekday,
    pub hour: u32,
    pub minute: u32,
    pub day: RelativeDay,
}

/// A group's opening hours, bound to the hotline's time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct OpeningHours {
    pub timezone: Tz,
    /// Index 0 = Monday .. 6 = Sunday (`Weekday::num_days_from_monday`).
    pub weekly: [Vec<TimeRange>; 7],
    pub public_holidays: Option<HolidayCalendar>,
    pub closed_dates: BTreeSet<NaiveDate>,
}

impl OpeningHours {
    /// No day is a working day on a public holiday or a closed date.
    pub fn ranges_on(&self, date: NaiveDate) -> &[TimeRange] {
        let holiday = self.public_holidays.is_some_and(|c| c.is_holiday(date));
        if holiday || self.closed_dates.contains(&date) {
            return &[];
        }
        self.weekly
            .get(date.weekday().num_days_from_monday() as usize)
            .map_or(&[], Vec::as_slice)
    }

    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.timezone).naive_local();
        let minute = u16::try_from(
            local
                .time()
                .signed_duration_since(chrono::NaiveTime::MIN)
                .num_minutes(),
        )
        .unwrap_or(u16::MAX);
        self.ranges_on(local.date())
            .iter()
            .any(|range| range.contains(minute))
    }

    /// The first instant at or after `at` when the office is open (`at` itself if open now),
    /// looking `SEARCH_DAYS` ahead. A range starting inside a spring-forward gap opens when the
    /// gap ends; one starting in an autumn repeated hour opens at its first occurrence.
    pub fn next_opening(&self, at: DateTime<Utc>) -> Option<DateTime<Tz>> {
        let today = at.with_timezone(&self.timezone).date_naive();
        for offset in 0..=SEARCH_DAYS {
            let date = today.checked_add_signed(Duration::days(i64::from(offset)))?;
            for range in self.ranges_on(date) {
                let Some(start) = self.instant(date, range.start_minute) else {
                    continue;
                };
                let end = self.instant(date, range.end_minute);
                if end.is_some_and(|end| end <= at) {
                    continue;
                }
                if start <= at {
                    return Some(at.with_timezone(&self.timezone));
                }
                return Some(start);
            }
        }
        None
    }

    /// `next_opening` in the shape the "closed" announcement needs.
    pub fn reopening(&self, at: DateTime<Utc>) -> Option<Reopening> {
        let opening = self.next_opening(at)?;
        let today = at.with_timezone(&self.timezone).date_naive();
        let date = opening.date_naive();
        let day = if date == today {
            RelativeDay::Today
        } else if today.succ_opt() == Some(date) {
            RelativeDay::Tomorrow
        } else {
            RelativeDay::Later
        };
        Some(Reopening {
            weekday: opening.weekday(),
            hour: chrono::Timelike::hour(&opening),
            minute: chrono::Timelike::minute(&opening),
            at: opening,
            day,
        })
    }

    /// The instant of local `date` + `minute_of_day`, resolving DST gaps forward and repeats
    /// to the earlier occurrence; 1440 means the next midnight.
    fn instant(&self, date: NaiveDate, minute_of_day: u16) -> Option<DateTime<Tz>> {
        let local = date.and_hms_opt(0, 0, 0)? + Duration::minutes(i64::from(minute_of_day));
        // Gaps are at most an hour in Europe; three hours covers every IANA zone's gap.
        for shift in 0..=180 {
            match self
                .timezone
                .from_local_datetime(&(local + Duration::minutes(shift)))
            {
                LocalResult::Single(t) => return Some(t),
                LocalResult::Ambiguous(earliest, _) => return Some(earliest),
                LocalResult::None => continue,
            }
        }
        None
    }
}
