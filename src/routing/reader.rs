//! Reads `routing.toml` into the typed model (`model`), problems carrying file, line and key.
//! The document is walked with its spans (`toml_edit`), so every value keeps the line and
//! dotted path of its key, unknown keys are reported instead of ignored, and all problems are
//! collected rather than the first one. Values are validated on their own here (types,
//! durations, times, strategy names); cross-references and prompt availability are `check`'s
//! job. This file holds the entry points and the typed-value primitives; `sections` reads
//! each part of the file with them.

use crate::routing::model::{Located, Place, Problem, Routing};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use toml_edit::{ImDocument, Item, TableLike};

mod agents;
mod callback;
mod encryption;
mod sections;

/// Reads and parses a routing file; problems name the file as `path` shows it.
pub fn load(path: &Path) -> Result<Routing, Vec<Problem>> {
    let file_name = path.display().to_string();
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
    match parse_lenient(text, file_name) {
        (Some(routing), problems) if problems.is_empty() => Ok(routing),
        (_, problems) => Err(problems),
    }
}

/// Like [`parse`], but also the routing as far as it could be read despite its problems (a
/// wrong value replaced by its default), so later checks can report theirs in the same pass.
pub fn parse_lenient(text: &str, file_name: &str) -> (Option<Routing>, Vec<Problem>) {
    let mut reader = Reader::new(text, file_name);
    let document = match ImDocument::parse(text) {
        Ok(document) => document,
        Err(error) => {
            let line = error.span().map_or(1, |span| reader.line_of(span.start));
            let message = error.message().trim().to_string();
            reader.push_line(line, "", message);
            return (None, reader.problems);
        }
    };
    let routing = reader.routing(document.as_table());
    (routing, reader.problems)
}

/// Parses "500ms", "5s", "2m", "1h", "90d".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad =
        || format!("bad duration \"{text}\": expected a number and ms, s, m, h or d (e.g. \"5s\")");
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let millis = match unit {
        "ms" => Some(number),
        "s" => number.checked_mul(1000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        "d" => number.checked_mul(86_400_000),
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
}
