//! A group's `callback = { ... }` table: the queued-callback offer and how requests are dialled.

use std::time::Duration;

use toml_edit::Item;

use super::Reader;
use crate::routing::model::{Callback, Located, Place};

/// Defaults: offered past a minute's expected wait, 3 attempts 5 minutes apart.
const OFFER_AFTER: Duration = Duration::from_secs(60);
const RETRY_AFTER: Duration = Duration::from_secs(300);
const MAX_ATTEMPTS: u32 = 3;

impl Reader {
    pub(super) fn callback(&mut self, at: &Place, item: &Item) -> Option<Callback> {
        let table = self.table(at, item)?;
        let known = [
            "offer_after",
            "key",
            "max_attempts",
            "retry_after",
            "trunk",
            "window",
        ];
        let f = self.fields(table, at.clone(), &known);
        let offer_after = self.duration(&f, "offer_after", OFFER_AFTER);
        let retry_after = self.duration(&f, "retry_after", RETRY_AFTER);
        let max_attempts = self.integer(&f, "max_attempts", MAX_ATTEMPTS);
        if max_attempts == 0 {
            if let Some((at, _)) = f.entries.get("max_attempts") {
                self.push(&at.clone(), "a callback needs at least one attempt");
            }
        }
        let key = match self.string(&f, "key") {
            None => Some(Located {
                value: '1',
                at: Place {
                    line: at.line,
                    key: format!("{}.key", at.key),
                },
            }),
            Some(text) => {
                let mut chars = text.value.chars();
                match (chars.next(), chars.next()) {
                    (Some(digit @ '0'..='9'), None) => Some(Located {
                        value: digit,
                        at: text.at,
                    }),
                    _ => {
                        self.push(
                            &text.at,
                            format!(
                                "bad callback key \"{}\": expected one digit 0-9",
                                text.value
                            ),
                        );
                        None
                    }
                }
            }
        };
        let trunk = self.required_string(&f, "trunk");
        let window = self
            .string(&f, "window")
            .filter(|window| window.value != "hours");
        Some(Callback {
            at: at.clone(),
            offer_after,
            key: key?,
            max_attempts: max_attempts.max(1),
            retry_after,
            trunk: trunk?,
            window,
        })
    }
}
