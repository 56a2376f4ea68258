//! The sections of a routing file (`[hotline]`, `[menus.*]`, `[groups.*]`, `[hours.*]`) read
//! into the model, each value checked on its own.

use super::{Fields, Reader};
use crate::routing::hours::{HolidayCalendar, OpeningHours, TimeRange};
use crate::routing::model::{
    Action, AfterPlay, Group, Hotline, Hours, Located, Menu, MenuOption, Place, Routing, Strategy,
    Transfer, WhenClosed, WhenEmpty, DEFAULT_CHANGE_LANGUAGE_KEY, DEFAULT_REMEMBER_LANGUAGE,
};
use chrono::{NaiveDate, Weekday};
use chrono_tz::Tz;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use toml_edit::TableLike;

impl Reader {
    pub(super) fn routing(&mut self, root: &dyn TableLike) -> Option<Routing> {
        let top = Place {
            line: 1,
            key: String::new(),
        };
        let fields = self.fields(root, top, &["hotline", "menus", "groups", "hours"]);
        let hotline = match fields.entries.get("hotline") {
            Some((at, item)) => {
                let at = at.clone();
                self.table(&at, item).and_then(|t| self.hotline(t, at))
            }
            None => {
                self.missing(&fields, "hotline");
                None
            }
        };
        let timezone = hotline.as_ref().map_or(Tz::UTC, |h| h.timezone.value);
        let menus = self.named_tables(&fields, "menus", |reader, table, at| reader.menu(table, at));
        let groups = self.named_tables(&fields, "groups", |reader, table, at| {
            reader.group(table, at)
        });
        let hours = self.named_tables(&fields, "hours", |reader, table, at| {
            reader.hours(table, at, timezone)
        });
        Some(Routing {
            file: self.file.clone(),
            hotline: hotline?,
            menus,
            groups,
            hours,
        })
    }

    fn named_tables<T>(
        &mut self,
        fields: &Fields,
        key: &str,
        mut read: impl FnMut(&mut Self, &dyn TableLike, Place) -> Option<T>,
    ) -> BTreeMap<String, T> {
        let mut result = BTreeMap::new();
        let Some((at, item)) = fields.entries.get(key) else {
            return result;
        };
        let Some(table) = self.table(at, item) else {
            return result;
        };
        let named = self.fields(table, at.clone(), &[]);
        for (name, (at, item)) in named.entries {
            if let Some(table) = self.table(&at, item) {
                if let Some(value) = read(self, table, at) {
                    result.insert(name, value);
                }
            }
        }
        result
    }

    fn hotline(&mut self, table: &dyn TableLike, at: Place) -> Option<Hotline> {
        let known = [
            "languages",
            "default_language",
            "timezone",
            "digit_timeout",
            "inter_digit_timeout",
            "max_attempts",
            "language_no_input",
            "menu_no_input",
            "operator_key",
            "fallback",
            "start",
            "music",
            "remember_language",
            "change_language_key",
            "announce_every",
        ];
        let f = self.fields(table, at.clone(), &known);
        if !f.has("languages") {
            self.missing(&f, "languages");
        }
        let languages = self.string_list(&f, "languages");
        let languages_at = f.entries.get("languages").map(|(at, _)| at.clone());
        let default_language = self.required_string(&f, "default_language");
        let timezone = self.required_string(&f, "timezone").and_then(|tz| {
            match tz.value.parse::<Tz>() {
                Ok(zone) => Some(Located { value: zone, at: tz.at }),
                Err(_) => {
                    self.push(&tz.at, format!("unknown time zone \"{}\" (expected an IANA name such as \"Europe/Vilnius\")", tz.value));
                    None
                }
            }
        });
        let digit_timeout = self.duration(&f, "digit_timeout", Duration::from_secs(5));
        let inter_digit_timeout = self.duration(&f, "inter_digit_timeout", Duration::from_secs(2));
        let max_attempts = self.integer(&f, "max_attempts", 3);
        if max_attempts == 0 {
            if let Some((at, _)) = f.entries.get("max_attempts") {
                self.push(at, "must be at least 1");
            }
        }
        let language_no_input = self.at_least_one(&f, "language_no_input", 1);
        let menu_no_input = self.at_least_one(&f, "menu_no_input", 2);
        let operator_key = self.operator_key(&f);
        let fallback = self.required_string(&f, "fallback");
        let start = self.required_string(&f, "start");
        let music = self.string(&f, "music");
        let remember_language = self.remember_language(&f);
        let change_language_key = self.change_language_key(&f);
        let announce_every = self.duration(&f, "announce_every", Duration::from_secs(45));
        if announce_every.is_zero() {
            if let Some((at, _)) = f.entries.get("announce_every") {
                self.push(at, "must be above 0");
            }
        }
        Some(Hotline {
            at,
            languages: Located {
                value: languages?,
                at: languages_at?,
            },
            default_language: default_language?,
            timezone: timezone?,
            digit_timeout,
            inter_digit_timeout,
            max_attempts,
            language_no_input,
            menu_no_input,
            operator_key,
            fallback: fallback?,
            start: start?,
            music,
            remember_language,
            change_language_key,
            announce_every,
        })
    }

    /// A duration such as `"90d"`; `"0s"` switches remembering off.
    fn remember_language(&mut self, f: &Fields) -> Located<Duration> {
        let at = f.entries.get("remember_language").map_or_else(
            || Place {
                line: f.at.line,
                key: format!("{}.remember_language", f.at.key),
            },
            |(at, _)| at.clone(),
        );
        let value = self.duration(f, "remember_language", DEFAULT_REMEMBER_LANGUAGE);
        Located { value, at }
    }

    /// One key of 0-9, * or #.
    fn change_language_key(&mut self, f: &Fields) -> Located<char> {
        let default = Located {
            value: DEFAULT_CHANGE_LANGUAGE_KEY,
            at: Place {
                line: f.at.line,
                key: format!("{}.change_language_key", f.at.key),
            },
        };
        let Some(text) = self.string(f, "change_language_key") else {
            return default;
        };
        let mut chars = text.value.chars();
        match (chars.next(), chars.next()) {
            (Some(key), None) if key.is_ascii_digit() || key == '*' || key == '#' => Located {
                value: key,
                at: text.at,
            },
            _ => {
                let message = format!(
                    "bad change-language key \"{}\" (expected one key of 0-9, * or #)",
                    text.value
                );
                self.push(&text.at, message);
                default
            }
        }
    }

    fn at_least_one(&mut self, f: &Fields, key: &str, default: u32) -> u32 {
        let value = self.integer(f, key, default);
        if value == 0 {
            if let Some((at, _)) = f.entries.get(key) {
                self.push(at, "must be at least 1");
            }
            return default;
        }
        value
    }

    /// One key of 0-9, * or #; `""` switches the operator key off; absent means `0`.
    fn operator_key(&mut self, f: &Fields) -> Option<Located<char>> {
        let Some(text) = self.string(f, "operator_key") else {
            let at = Place {
                line: f.at.line,
                key: format!("{}.operator_key", f.at.key),
            };
            return Some(Located { value: '0', at });
        };
        let mut chars = text.value.chars();
        match (chars.next(), chars.next()) {
            (None, _) => None,
            (Some(key), None) if key.is_ascii_digit() || key == '*' || key == '#' => {
                Some(Located {
                    value: key,
                    at: text.at,
                })
            }
            _ => {
                let message = format!(
                    "bad operator key \"{}\" (expected one key of 0-9, * or #, or \"\" for none)",
                    text.value
                );
                self.push(&text.at, message);
                None
            }
        }
    }

    fn menu(&mut self, table: &dyn TableLike, at: Place) -> Option<Menu> {
        let f = self.fields(table, at.clone(), &["prompt", "options"]);
        let prompt = self.required_string(&f, "prompt");
        let mut options = BTreeMap::new();
        match f.entries.get("options") {
            Some((options_at, item)) => {
                if let Some(table) = self.table(options_at, item) {
                    let digits = self.fields(table, options_at.clone(), &[]);
                    for (digit, (at, item)) in digits.entries {
                        if let Some(action) =
                            self.table(&at, item).and_then(|t| self.action(t, &at))
                        {
                            options.insert(digit, MenuOption { at, action });
                        }
                    }
                }
            }
            None => self.missing(&f, "options"),
        }
        Some(Menu {
            at,
            prompt: prompt?,
            options,
        })
    }

    fn action(&mut self, table: &dyn TableLike, at: &Place) -> Option<Action> {
        let known = ["group", "menu", "play", "then", "repeat", "back", "hangup"];
        let f = self.fields(table, at.clone(), &known);
        let kinds: Vec<&str> = ["group", "menu", "play", "repeat", "back", "hangup"]
            .into_iter()
            .filter(|kind| f.has(kind))
            .collect();
        if kinds.len() != 1 {
            self.push(
                at,
                "an option needs exactly one of: group, menu, play, repeat, back, hangup",
            );
            return None;
        }
        if f.has("then") && !f.has("play") {
            self.push(
                &f.entries.get("then")?.0.clone(),
                "`then` only follows `play`",
            );
        }
        let kind = kinds.first().copied()?;
        match kind {
            "group" => self.string(&f, "group").map(Action::Group),
            "menu" => self.string(&f, "menu").map(Action::Menu),
            "play" => {
                let prompt = self.string(&f, "play")?;
                let then = match self.string(&f, "then") {
                    None => AfterPlay::Repeat,
                    Some(then) => match then.value.as_str() {
                        "repeat" => AfterPlay::Repeat,
                        "hangup" => AfterPlay::Hangup,
                        "back" => AfterPlay::Back,
                        _ => AfterPlay::Menu(then),
                    },
                };
                Some(Action::Play { prompt, then })
            }
            flag => {
                let (flag_at, item) = f.entries.get(flag)?;
                if item.as_bool() != Some(true) {
                    self.push(&flag_at.clone(), format!("expected `{flag} = true`"));
                    return None;
                }
                Some(match flag {
                    "repeat" => Action::Repeat,
                    "back" => Action::Back,
                    _ => Action::Hangup,
                })
            }
        }
    }

    fn group(&mut self, table: &dyn TableLike, at: Place) -> Option<Group> {
        let known = [
            "name",
            "announce",
            "music",
            "hours",
            "when_closed",
            "when_empty",
            "transfer",
            "strategy",
            "ring_timeout",
            "wrap_up",
            "language_wait",
            "max_wait",
            "max_queue",
            "overflow",
            "retry_after_busy",
            "retry_after_no_answer",
            "max_no_answer",
            "agents",
            "callback",
            "media_encryption",
        ];
        let f = self.fields(table, at.clone(), &known);
        let name = match f.entries.get("name") {
            None => {
                self.missing(&f, "name");
                None
            }
            Some((name_at, item)) => self.table(name_at, item).map(|table| {
                let per_language = self.fields(table, name_at.clone(), &[]);
                let mut names = BTreeMap::new();
                for language in per_language.entries.keys() {
                    if let Some(text) = self.string(&per_language, language) {
                        names.insert(language.clone(), text.value);
                    }
                }
                Located {
                    value: names,
                    at: name_at.clone(),
                }
            }),
        };
        let announce = self.string(&f, "announce");
        let music = self.string(&f, "music");
        let hours = self.string(&f, "hours");
        let when_closed = match self.string(&f, "when_closed") {
            None => WhenClosed::Hangup,
            Some(text) => match text.value.as_str() {
                "hangup" => WhenClosed::Hangup,
                "back" => WhenClosed::Back,
                _ => WhenClosed::Group(text),
            },
        };
        let transfer = match self.string(&f, "transfer") {
            None => Transfer::Bridge,
            Some(text) => match text.value.as_str() {
                "bridge" => Transfer::Bridge,
                "refer" => Transfer::Refer,
                other => {
                    self.push(
                        &text.at,
                        format!("unknown transfer \"{other}\" (expected bridge or refer)"),
                    );
                    Transfer::Bridge
                }
            },
        };
        let strategy = match self.string(&f, "strategy") {
            None => Strategy::RingAll,
            Some(text) => match text.value.as_str() {
                "ring-all" => Strategy::RingAll,
                "round-robin" => Strategy::RoundRobin,
                "longest-idle" => Strategy::LongestIdle,
                "fewest-calls" => Strategy::FewestCalls,
                other => {
                    self.push(&text.at, format!("unknown strategy \"{other}\" (expected ring-all, round-robin, longest-idle or fewest-calls)"));
                    Strategy::RingAll
                }
            },
        };
        let ring_timeout = self.duration(&f, "ring_timeout", Duration::from_secs(20));
        let wrap_up = self.duration(&f, "wrap_up", Duration::from_secs(10));
        let language_wait = self.duration(&f, "language_wait", Duration::from_secs(30));
        let max_wait = self.duration(&f, "max_wait", Duration::from_secs(300));
        let max_queue = self.integer(&f, "max_queue", 10);
        let retry_after_busy = self.duration(&f, "retry_after_busy", Duration::from_secs(15));
        let retry_after_no_answer =
            self.duration(&f, "retry_after_no_answer", Duration::from_secs(10));
        let max_no_answer = self.integer(&f, "max_no_answer", 2);
        let overflow = self.string(&f, "overflow");
        let when_empty = match self.string(&f, "when_empty") {
            None if overflow.is_some() => WhenEmpty::Overflow,
            None => WhenEmpty::Message,
            Some(text) => {
                match text.value.as_str() {
                    "overflow" if overflow.is_some() => WhenEmpty::Overflow,
                    "overflow" => {
                        self.push(
                            &text.at,
                            "when_empty = \"overflow\" needs an overflow group".to_owned(),
                        );
                        WhenEmpty::Message
                    }
                    "message" => WhenEmpty::Message,
                    "wait" => WhenEmpty::Wait,
                    other => {
                        self.push(
                        &text.at,
                        format!("unknown when_empty \"{other}\" (expected overflow, message or wait)"),
                    );
                        WhenEmpty::Message
                    }
                }
            }
        };
        let agents = match f.entries.get("agents") {
            None => {
                self.missing(&f, "agents");
                Vec::new()
            }
            Some((agents_at, item)) => self.agents(agents_at, item),
        };
        let callback = f
            .entries
            .get("callback")
            .and_then(|(at, item)| self.callback(at, item));
        Some(Group {
            at,
            name: name?,
            announce,
            music,
            hours,
            when_closed,
            when_empty,
            transfer,
            strategy,
            ring_timeout,
            wrap_up,
            language_wait,
            max_wait,
            max_queue,
            retry_after_busy,
            retry_after_no_answer,
            max_no_answer,
            overflow,
            agents,
            callback,
            media_encryption: self.media_encryption(&f),
        })
    }

    fn hours(&mut self, table: &dyn TableLike, at: Place, timezone: Tz) -> Option<Hours> {
        let f = self.fields(
            table,
            at.clone(),
            &["weekly", "public_holidays", "closed_dates"],
        );
        let mut weekly: [Vec<TimeRange>; 7] = Default::default();
        let mut weekly_at = Vec::new();
        match f.entries.get("weekly") {
            None => self.missing(&f, "weekly"),
            Some((weekly_place, item)) => {
                if let Some(table) = self.table(weekly_place, item) {
                    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
                    let day_fields = self.fields(table, weekly_place.clone(), &days);
                    for (index, day) in days.iter().enumerate() {
                        let Some(text) = self.string(&day_fields, day) else {
                            continue;
                        };
                        match TimeRange::parse_list(&text.value) {
                            Ok(ranges) => {
                                if let Some(slot) = weekly.get_mut(index) {
                                    *slot = ranges;
                                }
                                if let Ok(weekday) = Weekday::try_from(index as u8) {
                                    weekly_at.push((weekday, text.at));
                                }
                            }
                            Err(message) => self.push(&text.at, message),
                        }
                    }
                }
            }
        }
        let public_holidays = self.string(&f, "public_holidays").and_then(|code| {
            let calendar = HolidayCalendar::from_code(&code.value);
            if calendar.is_none() {
                self.push(
                    &code.at,
                    format!(
                        "unknown holiday calendar \"{}\" (supported: LT)",
                        code.value
                    ),
                );
            }
            calendar
        });
        let mut closed_dates = BTreeSet::new();
        for date in self.string_list(&f, "closed_dates").unwrap_or_default() {
            match NaiveDate::parse_from_str(&date.value, "%Y-%m-%d") {
                Ok(day) => {
                    closed_dates.insert(day);
                }
                Err(_) => self.push(
                    &date.at,
                    format!("bad date \"{}\": expected YYYY-MM-DD", date.value),
                ),
            }
        }
        Some(Hours {
            at,
            schedule: OpeningHours {
                timezone,
                weekly,
                public_holidays,
                closed_dates,
            },
            weekly_at,
        })
    }
}
