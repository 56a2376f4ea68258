//! A group's `agents = [...]`: each a static `uri` or a registering `user`, with the
//! languages it speaks and its priority.

use toml_edit::{Item, TableLike};

use super::Reader;
use crate::routing::model::{Agent, AgentTarget, Place};

impl Reader {
    pub(super) fn agents(&mut self, at: &Place, item: &Item) -> Vec<Agent> {
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
}
