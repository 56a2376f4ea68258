//! The period the dashboard's statistics cover: a local day, an ISO week (Monday to Sunday),
//! a calendar month, or any run of days (`from` to `to`, both included), at most
//! [`MAX_DAYS`] days, in Europe/Vilnius.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};

use super::text::Lang;
use crate::http::api::{local_midnight, next_day};

/// The longest period a page or a CSV covers (its records are read at every refresh).
pub const MAX_DAYS: u64 = 366;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodKind {
    Day,
    Week,
    Month,
    Custom,
}

impl PeriodKind {
    pub const ALL: [PeriodKind; 4] = [
        PeriodKind::Day,
        PeriodKind::Week,
        PeriodKind::Month,
        PeriodKind::Custom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Day => "day",
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
            PeriodKind::Custom => "custom",
        }
    }

    pub fn parse(value: &str) -> Result<PeriodKind, String> {
        PeriodKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == value.trim())
            .ok_or_else(|| format!("period {value:?}: expected day, week, month or custom"))
    }

    pub fn label(self, lang: Lang) -> &'static str {
        let texts = lang.texts();
        match self {
            PeriodKind::Day => texts.day,
            PeriodKind::Week => texts.week,
            PeriodKind::Month => texts.month,
            PeriodKind::Custom => texts.custom,
        }
    }
}

/// Local days `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub kind: PeriodKind,
    pub first: NaiveDate,
    pub last: NaiveDate,
}

impl Period {
    pub fn day(day: NaiveDate) -> Period {
        Period {
            kind: PeriodKind::Day,
            first: day,
            last: day,
        }
    }

    /// The ISO week (Monday to Sunday) holding `day`.
    pub fn week(day: NaiveDate) -> Period {
        let monday = day
            .checked_sub_days(Days::new(u64::from(day.weekday().num_days_from_monday())))
            .unwrap_or(day);
        Period {
            kind: PeriodKind::Week,
            first: monday,
            last: monday.checked_add_days(Days::new(6)).unwrap_or(monday),
        }
    }

    /// The calendar month holding `day`.
    pub fn month(day: NaiveDate) -> Period {
        let first = day.with_day(1).unwrap_or(day);
        let last = first
            .checked_add_months(Months::new(1))
            .and_then(|next| next.pred_opt())
            .unwrap_or(first);
        Period {
            kind: PeriodKind::Month,
            first,
            last,
        }
    }

    /// `from..=to`, in either order, at most [`MAX_DAYS`] days.
    pub fn custom(from: NaiveDate, to: NaiveDate) -> Result<Period, String> {
        let (first, last) = if from <= to { (from, to) } else { (to, from) };
        let period = Period {
            kind: PeriodKind::Custom,
            first,
            last,
        };
        if period.len_days() > MAX_DAYS {
            return Err(format!(
                "the period {first} to {last} is {} days long: at most {MAX_DAYS} days",
                period.len_days()
            ));
        }
        Ok(period)
    }

    /// A period of `kind` around `day`; a custom one is that day alone.
    pub fn of_kind(kind: PeriodKind, day: NaiveDate) -> Period {
        match kind {
            PeriodKind::Day => Period::day(day),
            PeriodKind::Week => Period::week(day),
            PeriodKind::Month => Period::month(day),
            PeriodKind::Custom => Period {
                kind,
                first: day,
                last: day,
            },
        }
    }

    pub fn len_days(&self) -> u64 {
        u64::try_from((self.last - self.first).num_days() + 1).unwrap_or(0)
    }

    pub fn single_day(&self) -> bool {
        self.first == self.last
    }

    pub fn contains(&self, day: NaiveDate) -> bool {
        self.first <= day && day <= self.last
    }

    /// Every day of the period, in order.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> {
        let last = self.last;
        self.first.iter_days().take_while(move |day| *day <= last)
    }

    /// `[from, to)` in UTC: the first day's midnight to the midnight after the last day.
    pub fn instants(&self) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
        Ok((
            local_midnight(self.first)?,
            local_midnight(next_day(self.last)?)?,
        ))
    }

    /// The same kind of period just before (`-1`) or after (`1`) this one.
    pub fn shifted(&self, direction: i32) -> Option<Period> {
        let forward = direction > 0;
        let step = |day: NaiveDate, days: u64| {
            if forward {
                day.checked_add_days(Days::new(days))
            } else {
                day.checked_sub_days(Days::new(days))
            }
        };
        Some(match self.kind {
            PeriodKind::Day => Period::day(step(self.first, 1)?),
            PeriodKind::Week => Period::week(step(self.first, 7)?),
            PeriodKind::Month => Period::month(if forward {
                self.last.succ_opt()?
            } else {
                self.first.pred_opt()?
            }),
            PeriodKind::Custom => Period {
                kind: PeriodKind::Custom,
                first: step(self.first, self.len_days())?,
                last: step(self.last, self.len_days())?,
            },
        })
    }

    /// The query parameters that name this period (without `?`).
    pub fn query(&self) -> String {
        match self.kind {
            PeriodKind::Custom => format!(
                "period=custom&from={}&to={}",
                self.first.format("%Y-%m-%d"),
                self.last.format("%Y-%m-%d")
            ),
            kind => format!(
                "period={}&day={}",
                kind.as_str(),
                self.first.format("%Y-%m-%d")
            ),
        }
    }

    /// How the period is named on the page.
    pub fn label(&self, lang: Lang) -> String {
        match self.kind {
            PeriodKind::Day => lang.day_label(self.first),
            PeriodKind::Week => format!(
                "{} – {} ({})",
                self.first,
                self.last,
                lang.week_label(self.first)
            ),
            PeriodKind::Month => lang.month_label(self.first),
            PeriodKind::Custom if self.single_day() => lang.day_label(self.first),
            PeriodKind::Custom => format!("{} – {}", self.first, self.last),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn weeks_run_monday_to_sunday_and_months_to_their_last_day() {
        let week = Period::week(date("2026-03-04"));
        assert_eq!(
            (week.first, week.last),
            (date("2026-03-02"), date("2026-03-08"))
        );
        assert_eq!(week.days().count(), 7);
        let month = Period::month(date("2024-02-10"));
        assert_eq!(
            (month.first, month.last),
            (date("2024-02-01"), date("2024-02-29"))
        );
        assert_eq!(month.len_days(), 29);
        let next = month.shifted(1).unwrap();
        assert_eq!(
            (next.first, next.last),
            (date("2024-03-01"), date("2024-03-31"))
        );
        let before = week.shifted(-1).unwrap();
        assert_eq!(before.first, date("2026-02-23"));
        assert_eq!(week.label(Lang::En), "2026-03-02 – 2026-03-08 (week 10)");
        assert_eq!(month.label(Lang::Lt), "2024 m. vasaris");
    }

    #[test]
    fn custom_periods_are_ordered_bounded_and_named_in_the_query() {
        let period = Period::custom(date("2026-03-14"), date("2026-03-01")).unwrap();
        assert_eq!(period.first, date("2026-03-01"));
        assert_eq!(period.len_days(), 14);
        assert_eq!(
            period.query(),
            "period=custom&from=2026-03-01&to=2026-03-14"
        );
        let shifted = period.shifted(-1).unwrap();
        assert_eq!(
            (shifted.first, shifted.last),
            (date("2026-02-15"), date("2026-02-28"))
        );
        assert!(Period::custom(date("2025-01-01"), date("2026-01-01")).is_ok());
        assert!(Period::custom(date("2025-01-01"), date("2026-01-02")).is_err());
        // Vilnius midnights: UTC+2 in winter.
        let (from, to) = Period::day(date("2026-03-02")).instants().unwrap();
        assert_eq!(from.to_rfc3339(), "2026-03-01T22:00:00+00:00");
        assert_eq!(to.to_rfc3339(), "2026-03-02T22:00:00+00:00");
    }
}
