//! The typed `routing.toml` model and its loader. The document is walked with its spans
//! (`toml_edit`), so every value keeps the line and dotted path of its key, unknown keys are
//! reported instead of ignored, and all problems are collected rather than the first one.
//! Values are validated on their own here (types, durations, times, strategy names);
//! cross-references and prompt availability are `check`'s job.

use crate::routing::hours::{HolidayCalendar, OpeningHours, TimeRange};
use chrono::{NaiveDate, Weekday};
use chrono_tz::Tz;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;
use toml_edit::{ImDocument, Item, TableLike};

/// One finding in a routing file; Display is `FILE:LINE: key: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {key}: {message}")]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub message: String,
}

/// Where a value came from: the 1-based line of its key and its dotted key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub line: usize,
    pub key: String,
}

/// A value with the place of its key, so later checks can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub at: Place,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// The file name problems are reported against.
    pub file: String,
    pub hotline: Hotline,
    pub menus: BTreeMap<String, Menu>,
    pub groups: BTreeMap<String, Group>,
    pub hours: BTreeMap<String, Hours>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hotline {
    pub at: Place,
    /// Language menu order: digit 1 selects the first language.
    pub languages: Located<Vec<Located<String>>>,
    pub default_language: Located<String>,
    pub timezone: Located<Tz>,
    pub digit_timeout: Duration,
    pub inter_digit_timeout: Duration,
    pub max_attempts: u32,
    pub fallback: Located<String>,
    pub start: Located<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Menu {
    pub at: Place,
    pub prompt: Located<String>,
    /// Keyed by the digit as written ("1", "*", "#").
    pub options: BTreeMap<String, MenuOption>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MenuOption {
    pub at: Place,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Group(Located<String>),
    Menu(Located<String>),
    Play {
        prompt: Located<String>,
        then: AfterPlay,
    },
    Repeat,
    Back,
    Hangup,
}

/// What follows an informational `play` option.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterPlay {
    Repeat,
    Hangup,
    Back,
    Menu(Located<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum WhenClosed {
    Hangup,
    Back,
    Group(Located<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    Bridge,
    Refer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    RingAll,
    RoundRobin,
    LongestIdle,
    FewestCalls,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub at: Place,
    /// Display name per language.
    pub name: Located<BTreeMap<String, String>>,
    /// Prompt naming the organisation when it is announced (e.g. "group_water").
    pub announce: Option<Located<String>>,
    pub hours: Option<Located<String>>,
    pub when_closed: WhenClosed,
    pub transfer: Transfer,
    pub strategy: Strategy,
    pub ring_timeout: Duration,
    pub wrap_up: Duration,
    pub language_wait: Duration,
    pub max_wait: Duration,
    pub max_queue: u32,
    pub overflow: Option<Located<String>>,
    pub agents: Vec<Agent>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AgentTarget {
    Uri(Located<String>),
    User(Located<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub at: Place,
    pub target: AgentTarget,
    pub languages: Vec<Located<String>>,
    /// Lower rings first; agents of equal priority share by `strategy`.
    pub priority: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hours {
    pub at: Place,
    pub schedule: OpeningHours,
    /// Where each configured weekday's ranges were written, Monday first.
    pub weekly_at: Vec<(Weekday, Place)>,
}

/// Reads and parses a routing file; problems name the file as `path` shows it.
pub fn load(path: &Path) -> Result<Routing, Vec<Problem>> {
    let file_name = path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &file_name),
        Err(error) => Err(vec![Problem {
            file: file_name,
            line: 0,
            key: String::new(),
            message: format!("cannot read {}: {error}", path.display()),
        }]),
    }
}

/// Parses routing TOML text; `file_name` only labels problems.
pub fn parse(text: &str, file_name: &str) -> Result<Routing, Vec<Problem>> {
    let mut reader = Reader::new(text, file_name);
    let document = match ImDocument::parse(text) {
        Ok(document) => document,
        Err(error) => {
            let line = error.span().map_or(1, |span| reader.line_of(span.start));
            let message = error.message().trim().to_string();
            reader.push_line(line, "", message);
            return Err(reader.problems);
        }
    };
    let routing = reader.routing(document.as_table());
    match routing {
        Some(routing) if reader.problems.is_empty() => Ok(routing),
        _ => Err(reader.problems),
    }
}

/// Parses "500ms", "5s", "2m", "1h".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad =
        || format!("bad duration \"{text}\": expected a number and ms, s, m or h (e.g. \"5s\")");
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let millis = match unit {
        "ms" => Some(number),
        "s" => number.checked_mul(1000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        _ => None,
    };
    millis.map(Duration::from_millis).ok_or_else(bad)
}

/// Formats one key segment like TOML would: bare when possible, else quoted.
pub fn key_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key_segment(key)
    } else {
        format!("{path}.{}", key_segment(key))
    }
}

/// The present keys of one table, each with its place; unknown keys are already reported.
struct Fields<'a> {
    at: Place,
    entries: BTreeMap<String, (Place, &'a Item)>,
}

impl Fields<'_> {
    fn has(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }
}

struct Reader {
    file: String,
    line_starts: Vec<usize>,
    problems: Vec<Problem>,
}

impl Reader {
    fn new(text: &str, file: &str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(index, _)| index + 1))
            .collect();
        Reader {
            file: file.to_string(),
            line_starts,
            problems: Vec::new(),
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.line_starts
            .partition_point(|&start| start <= offset)
            .max(1)
    }

    fn push_line(&mut self, line: usize, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn push(&mut self, at: &Place, message: impl Into<String>) {
        self.push_line(at.line, &at.key.clone(), message);
    }

    fn fields<'a>(&mut self, table: &'a dyn TableLike, at: Place, known: &[&str]) -> Fields<'a> {
        let mut entries = BTreeMap::new();
        for (name, item) in table.iter() {
            let span = table
                .key(name)
                .and_then(|key| key.span())
                .or_else(|| item.span());
            let line = span.map_or(at.line, |span| self.line_of(span.start));
            let place = Place {
                line,
                key: join(&at.key, name),
            };
            if known.is_empty() || known.contains(&name) {
                entries.insert(name.to_string(), (place, item));
            } else {
                self.push(
                    &place,
                    format!("unknown key (expected one of: {})", known.join(", ")),
                );
            }
        }
        Fields { at, entries }
    }

    fn table<'a>(&mut self, at: &Place, item: &'a Item) -> Option<&'a dyn TableLike> {
        let table = item.as_table_like();
        if table.is_none() {
            self.push(at, format!("expected a table, found {}", item.type_name()));
        }
        table
    }

    fn missing(&mut self, fields: &Fields, key: &str) {
        let at = Place {
            line: fields.at.line,
            key: join(&fields.at.key, key),
        };
        self.push(&at, "missing required key");
    }

    fn string(&mut self, fields: &Fields, key: &str) -> Option<Located<String>> {
        let (at, item) = fields.entries.get(key)?;
        match item.as_str() {
            Some(value) => Some(Located {
                value: value.to_string(),
                at: at.clone(),
            }),
            None => {
                self.push(at, format!("expected a string, found {}", item.type_name()));
                None
            }
        }
    }

    fn required_string(&mut self, fields: &Fields, key: &str) -> Option<Located<String>> {
        if !fields.has(key) {
            self.missing(fields, key);
        }
        self.string(fields, key)
    }

    fn integer(&mut self, fields: &Fields, key: &str, default: u32) -> u32 {
        let Some((at, item)) = fields.entries.get(key) else {
            return default;
        };
        match item.as_integer().and_then(|n| u32::try_from(n).ok()) {
            Some(value) => value,
            None => {
                self.push(at, "expected a non-negative integer");
                default
            }
        }
    }

    fn duration(&mut self, fields: &Fields, key: &str, default: Duration) -> Duration {
        let Some(text) = self.string(fields, key) else {
            return default;
        };
        parse_duration(&text.value).unwrap_or_else(|message| {
            self.push(&text.at, message);
            default
        })
    }

    fn string_list(&mut self, fields: &Fields, key: &str) -> Option<Vec<Located<String>>> {
        let (at, item) = fields.entries.get(key)?;
        let Some(array) = item.as_array() else {
            self.push(
                at,
                format!("expected an array of strings, found {}", item.type_name()),
            );
            return None;
        };
        let mut values = Vec::new();
        for value in array.iter() {
            let line = value
                .span()
                .map_or(at.line, |span| self.line_of(span.start));
            match value.as_str() {
                Some(text) => values.push(Located {
                    value: text.to_string(),
                    at: Place {
                        line,
                        key: at.key.clone(),
                    },
                }),
                None => self.push_line(
                    line,
                    &at.key,
                    format!("expected a string, found {}", value.type_name()),
                ),
            }
        }
        Some(values)
    }

    fn routing(&mut self, root: &dyn TableLike) -> Option<Routing> {
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
            "fallback",
            "start",
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
        let fallback = self.required_string(&f, "fallback");
        let start = self.required_string(&f, "start");
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
            fallback: fallback?,
            start: start?,
        })
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
            "hours",
            "when_closed",
            "transfer",
            "strategy",
            "ring_timeout",
            "wrap_up",
            "language_wait",
            "max_wait",
            "max_queue",
            "overflow",
            "agents",
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
        let overflow = self.string(&f, "overflow");
        let agents = match f.entries.get("agents") {
            None => {
                self.missing(&f, "agents");
                Vec::new()
            }
            Some((agents_at, item)) => self.agents(agents_at, item),
        };
        Some(Group {
            at,
            name: name?,
            announce,
            hours,
            when_closed,
            transfer,
            strategy,
            ring_timeout,
            wrap_up,
            language_wait,
            max_wait,
            max_queue,
            overflow,
            agents,
        })
    }

    fn agents(&mut self, at: &Place, item: &Item) -> Vec<Agent> {
        let mut tables: Vec<(Place, &dyn TableLike)> = Vec::new();
        if let Some(array) = item.as_array_of_tables() {
            for (index, table) in array.iter().enumerate() {
                let line = table
                    .span()
                    .map_or(at.line, |span| self.line_of(span.start));
                tables.push((
                    Place {
                        line,
                        key: format!("{}[{index}]", at.key),
                    },
                    table,
                ));
            }
        } else if let Some(array) = item.as_array() {
            for (index, value) in array.iter().enumerate() {
                let line = value
                    .span()
                    .map_or(at.line, |span| self.line_of(span.start));
                let place = Place {
                    line,
                    key: format!("{}[{index}]", at.key),
                };
                match value.as_inline_table() {
                    Some(table) => tables.push((place, table)),
                    None => self.push(
                        &place,
                        format!("expected an agent table, found {}", value.type_name()),
                    ),
                }
            }
        } else {
            self.push(
                at,
                format!("expected an array of agents, found {}", item.type_name()),
            );
        }
        let mut agents = Vec::new();
        for (place, table) in tables {
            let f = self.fields(
                table,
                place.clone(),
                &["uri", "user", "languages", "priority"],
            );
            let target = match (self.string(&f, "uri"), self.string(&f, "user")) {
                (Some(uri), None) => Some(AgentTarget::Uri(uri)),
                (None, Some(user)) => Some(AgentTarget::User(user)),
                _ => {
                    self.push(&place, "an agent needs exactly one of: uri, user");
                    None
                }
            };
            let languages = self.string_list(&f, "languages").unwrap_or_default();
            let priority = self.integer(&f, "priority", 1);
            if let Some(target) = target {
                agents.push(Agent {
                    at: place,
                    target,
                    languages,
                    priority,
                });
            }
        }
        agents
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
