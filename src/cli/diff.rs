//! `hotline diff OLD NEW`: what a routing change does, by menu, group and opening-hours table:
//! entries added or removed, and each setting that changed from what to what. Comments,
//! spacing and key order do not count; a list (a group's agents, a day's hours) is shown whole.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Context;
use toml_edit::{DocumentMut, Item, Value};

/// The changes, one per line, grouped by what they belong to; empty when the files mean the
/// same routing.
pub fn run(old: &Path, new: &Path) -> anyhow::Result<Vec<String>> {
    let read = |path: &Path| -> anyhow::Result<BTreeMap<String, String>> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let document: DocumentMut = text
            .parse()
            .with_context(|| format!("{} is not TOML", path.display()))?;
        let mut flat = BTreeMap::new();
        flatten_table(document.as_table(), "", &mut flat);
        Ok(flat)
    };
    Ok(changes(&read(old)?, &read(new)?))
}

/// The lines describing how `old` became `new` (both flattened to `dotted.key = value`).
pub fn changes(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<String> {
    let old_entities: BTreeSet<String> = old.keys().map(|key| entity(key)).collect();
    let new_entities: BTreeSet<String> = new.keys().map(|key| entity(key)).collect();
    let mut lines = Vec::new();
    for name in old_entities.union(&new_entities) {
        match (old_entities.contains(name), new_entities.contains(name)) {
            (true, false) => lines.push(format!("- {name}: removed")),
            (false, true) => {
                lines.push(format!("+ {name}: added"));
                for (key, value) in new.iter().filter(|(key, _)| entity(key) == *name) {
                    lines.push(format!("    {} = {value}", relative(key, name)));
                }
            }
            _ => {
                let keys: BTreeSet<&String> = old
                    .keys()
                    .chain(new.keys())
                    .filter(|key| entity(key) == *name)
                    .collect();
                for key in keys {
                    let (before, after) = (old.get(key), new.get(key));
                    if before != after {
                        let show = |value: Option<&String>| {
                            value.cloned().unwrap_or_else(|| "(none)".to_owned())
                        };
                        lines.push(format!(
                            "~ {name}: {}: {} -> {}",
                            relative(key, name),
                            show(before),
                            show(after)
                        ));
                    }
                }
            }
        }
    }
    lines
}

/// What a key belongs to: `menus.main`, `groups.water`, `hours.office`, or its first segment.
fn entity(key: &str) -> String {
    let mut parts = key.splitn(3, '.');
    let first = parts.next().unwrap_or_default();
    match (first, parts.next()) {
        ("menus" | "groups" | "hours", Some(name)) => format!("{first}.{name}"),
        _ => first.to_owned(),
    }
}

fn relative<'a>(key: &'a str, entity: &str) -> &'a str {
    key.strip_prefix(entity)
        .map(|rest| rest.trim_start_matches('.'))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(key)
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn flatten_table(table: &toml_edit::Table, prefix: &str, out: &mut BTreeMap<String, String>) {
    for (key, item) in table.iter() {
        let path = join(prefix, key);
        match item {
            Item::Table(table) => flatten_table(table, &path, out),
            Item::Value(Value::InlineTable(table)) => {
                for (key, value) in table.iter() {
                    flatten_value(value, &join(&path, key), out);
                }
            }
            Item::Value(value) => flatten_value(value, &path, out),
            Item::ArrayOfTables(array) => {
                let rows: Vec<String> = array
                    .iter()
                    .map(|table| table.to_string().trim().replace('\n', ", "))
                    .collect();
                out.insert(path, format!("[{}]", rows.join("; ")));
            }
            Item::None => {}
        }
    }
}

fn flatten_value(value: &Value, path: &str, out: &mut BTreeMap<String, String>) {
    match value {
        Value::InlineTable(table) => {
            for (key, value) in table.iter() {
                flatten_value(value, &join(path, key), out);
            }
        }
        // Lists are compared whole, written without the file's spacing and comments.
        Value::Array(array) => {
            let items: Vec<String> = array.iter().map(compact).collect();
            out.insert(path.to_owned(), format!("[{}]", items.join(", ")));
        }
        other => {
            out.insert(path.to_owned(), compact(other));
        }
    }
}

/// A value as TOML without its decoration (comments, spaces around it).
fn compact(value: &Value) -> String {
    let mut value = value.clone();
    value.decor_mut().clear();
    match &mut value {
        Value::InlineTable(table) => {
            let fields: Vec<String> = table
                .iter()
                .map(|(key, value)| format!("{key} = {}", compact(value)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        Value::Array(array) => {
            let items: Vec<String> = array.iter().map(compact).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(text: &str) -> BTreeMap<String, String> {
        let document: DocumentMut = text.parse().unwrap();
        let mut out = BTreeMap::new();
        flatten_table(document.as_table(), "", &mut out);
        out
    }

    #[test]
    fn a_change_is_told_by_menu_group_and_hours() {
        let old = flat(
            r#"
[hotline]
start = "main" # the first menu

[menus.main]
prompt = "main_menu"
options."1" = { group = "water" }

[groups.water]
max_wait = "5m"
agents = [{ uri = "sip:a@h" }]

[groups.waste]
max_wait = "5m"

[hours.office]
weekly = { mon = ["08:00-17:00"] }
"#,
        );
        let new = flat(
            r#"
[hotline]
start   =   "main"

[menus.main]
prompt = "main_menu"
options."1" = { group = "water" }
options."9" = { group = "parks" }

[groups.water]
max_wait = "3m"
agents = [{ uri = "sip:a@h" }, { uri = "sip:b@h", languages = ["en"] }]

[groups.parks]
max_wait = "1m"

[hours.office]
weekly = { mon = ["08:00-16:00"] }
"#,
        );
        assert_eq!(
            changes(&old, &new),
            [
                "+ groups.parks: added",
                "    max_wait = \"1m\"",
                "- groups.waste: removed",
                "~ groups.water: agents: [{ uri = \"sip:a@h\" }] -> [{ uri = \"sip:a@h\" }, { uri = \"sip:b@h\", languages = [\"en\"] }]",
                "~ groups.water: max_wait: \"5m\" -> \"3m\"",
                "~ hours.office: weekly.mon: [\"08:00-17:00\"] -> [\"08:00-16:00\"]",
                "~ menus.main: options.9.group: (none) -> \"parks\"",
            ]
        );
        assert!(
            changes(&old, &old).is_empty(),
            "comments and spacing do not count"
        );
    }
}
