//! Renders statistics rows for `hotline stats`: an aligned text table for people, CSV and JSON
//! for tools. All three use the same column names (`StatsRow::fields`).

use super::stats::{FieldValue, StatsRow};

/// Output format of `hotline stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

pub fn render(rows: &[StatsRow], format: OutputFormat) -> Result<String, serde_json::Error> {
    match format {
        OutputFormat::Table => Ok(table(rows)),
        OutputFormat::Csv => Ok(csv(rows)),
        OutputFormat::Json => json(rows),
    }
}

/// A terminal's width: wider tables are cut into blocks of columns that fit, each repeating the
/// key columns.
pub const TABLE_WIDTH: usize = 120;

/// Keys left-aligned, numbers right-aligned; seconds with one decimal, service level in percent,
/// `-` where a figure is undefined (nothing to average or divide). At most [`TABLE_WIDTH`]
/// characters a line: the columns that do not fit follow in further blocks. The `callback_*`
/// columns are left out when no row has a callback offer, request or attempt (CSV and JSON
/// always have them).
pub fn table(rows: &[StatsRow]) -> String {
    let Some(first) = rows.first() else {
        return String::from("(no rows)\n");
    };
    let callbacks = rows.iter().any(|row| !row.callback.is_empty());
    let shown = |row: &StatsRow| -> Vec<(&'static str, FieldValue)> {
        row.fields()
            .into_iter()
            .filter(|(name, _)| callbacks || !name.starts_with("callback_"))
            .collect()
    };
    let header: Vec<&str> = shown(first).iter().map(|(name, _)| *name).collect();
    let cells: Vec<Vec<(String, bool)>> = rows
        .iter()
        .map(|row| {
            shown(row)
                .into_iter()
                .map(|(_, value)| match value {
                    FieldValue::Key(key) => (key, false),
                    FieldValue::Count(count) => (count.to_string(), true),
                    FieldValue::Seconds(seconds) => {
                        (seconds.map_or("-".into(), |s| format!("{s:.1}")), true)
                    }
                    FieldValue::Fraction(fraction) => (
                        fraction.map_or("-".into(), |f| format!("{:.1}%", f * 100.0)),
                        true,
                    ),
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = header
        .iter()
        .enumerate()
        .map(|(column, name)| {
            cells
                .iter()
                .filter_map(|row| row.get(column))
                .map(|(text, _)| text.chars().count())
                .chain([name.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let keys: Vec<usize> = shown(first)
        .iter()
        .enumerate()
        .filter(|(_, (_, value))| matches!(value, FieldValue::Key(_)))
        .map(|(column, _)| column)
        .collect();
    let mut out = String::new();
    for block in blocks(&widths, &keys, TABLE_WIDTH) {
        if !out.is_empty() {
            out.push('\n');
        }
        let pick = |row: &[(String, bool)]| -> Vec<(String, bool)> {
            block
                .iter()
                .filter_map(|column| row.get(*column).cloned())
                .collect()
        };
        let block_widths: Vec<usize> = block.iter().map(|column| widths[*column]).collect();
        let header_cells: Vec<(String, bool)> = header
            .iter()
            .map(|name| ((*name).to_owned(), false))
            .collect();
        push_line(&mut out, pick(&header_cells).into_iter(), &block_widths);
        for row in &cells {
            push_line(&mut out, pick(row).into_iter(), &block_widths);
        }
    }
    out
}

/// Column blocks no wider than `max`: the key columns, then as many figures as fit.
fn blocks(widths: &[usize], keys: &[usize], max: usize) -> Vec<Vec<usize>> {
    let key_width: usize = keys.iter().map(|column| widths[*column] + 2).sum();
    let mut blocks = Vec::new();
    let mut current: Vec<usize> = keys.to_vec();
    let mut width = key_width;
    for column in (0..widths.len()).filter(|column| !keys.contains(column)) {
        let needed = widths[column] + 2;
        if width + needed > max + 2 && current.len() > keys.len() {
            blocks.push(std::mem::replace(&mut current, keys.to_vec()));
            width = key_width;
        }
        current.push(column);
        width += needed;
    }
    if current.len() > keys.len() || blocks.is_empty() {
        blocks.push(current);
    }
    blocks
}

fn push_line(out: &mut String, cells: impl Iterator<Item = (String, bool)>, widths: &[usize]) {
    let mut line = String::new();
    for ((text, right_aligned), width) in cells.zip(widths) {
        if !line.is_empty() {
            line.push_str("  ");
        }
        if right_aligned {
            line.push_str(&format!("{text:>width$}"));
        } else {
            line.push_str(&format!("{text:<width$}"));
        }
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// RFC 4180 CSV with a header line; seconds to the millisecond, service level as a fraction,
/// empty where undefined.
pub fn csv(rows: &[StatsRow]) -> String {
    let Some(first) = rows.first() else {
        return String::new();
    };
    let mut out = first
        .fields()
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(",");
    out.push_str("\r\n");
    for row in rows {
        let line: Vec<String> = row
            .fields()
            .into_iter()
            .map(|(_, value)| match value {
                FieldValue::Key(key) => csv_field(&key),
                FieldValue::Count(count) => count.to_string(),
                FieldValue::Seconds(seconds) => {
                    seconds.map_or(String::new(), |s| format!("{s:.3}"))
                }
                FieldValue::Fraction(fraction) => {
                    fraction.map_or(String::new(), |f| format!("{f:.4}"))
                }
            })
            .collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// A JSON array of objects; undefined figures are `null`.
pub fn json(rows: &[StatsRow]) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::model::Outcome;
    use crate::cdr::stats::{CallbackFigures, Dimension};

    fn row() -> StatsRow {
        StatsRow {
            keys: vec![(Dimension::Enterprise, "water, cold".into())],
            calls: 3,
            offered: 2,
            answered: 1,
            answered_in_sl: 1,
            abandoned: 1,
            short_abandoned: 0,
            service_level: Some(0.5),
            asa_s: Some(12.25),
            avg_talk_s: None,
            max_wait_s: Some(30.0),
            callback: CallbackFigures::default(),
            outcomes: vec![(Outcome::Connected, 1), (Outcome::AbandonedQueue, 1)],
        }
    }

    #[test]
    fn three_formats_share_the_column_names() {
        let rows = [row()];
        let table = table(&rows);
        assert_eq!(
            table.lines().collect::<Vec<_>>(),
            [
                "enterprise   calls  offered  answered  answered_in_sl  abandoned  short_abandoned  service_level  asa_s  avg_talk_s",
                "water, cold      3        2         1               1          1                0          50.0%   12.2           -",
                "",
                "enterprise   max_wait_s  connected  abandoned_queue",
                "water, cold        30.0          1                1",
            ],
            "cut into blocks of at most {TABLE_WIDTH} characters, the key in each"
        );
        assert!(table
            .lines()
            .all(|line| line.chars().count() <= TABLE_WIDTH));
        assert_eq!(
            csv(&rows),
            "enterprise,calls,offered,answered,answered_in_sl,abandoned,short_abandoned,service_level,asa_s,avg_talk_s,max_wait_s,\
             callback_offered,callback_accepted,callback_attempts,callback_connected,callback_connected_in_sl,callback_failed,callback_service_level,callback_asa_s,\
             connected,abandoned_queue\r\n\
             \"water, cold\",3,2,1,1,1,0,0.5000,12.250,,30.000,0,0,0,0,0,0,,,1,1\r\n"
        );
        let value: serde_json::Value = serde_json::from_str(&json(&rows).unwrap()).unwrap();
        assert_eq!(value[0]["enterprise"], "water, cold");
        assert_eq!(value[0]["service_level"], 0.5);
        assert_eq!(value[0]["avg_talk_s"], serde_json::Value::Null);
        assert_eq!(value[0]["abandoned_queue"], 1);
        assert_eq!(value[0]["callback_accepted"], 0);
        assert_eq!(value[0]["callback_service_level"], serde_json::Value::Null);
    }

    #[test]
    fn the_table_shows_the_callback_columns_when_a_row_has_callbacks() {
        let mut with = row();
        with.callback = CallbackFigures {
            offered: 4,
            accepted: 3,
            attempts: 4,
            connected: 1,
            connected_in_sl: 1,
            failed: 1,
            service_level: Some(0.5),
            asa_s: Some(510.0),
        };
        let rows = [row(), with];
        let table = table(&rows);
        assert!(table
            .lines()
            .all(|line| line.chars().count() <= TABLE_WIDTH));
        let lines: Vec<&str> = table.lines().collect();
        let block = lines
            .iter()
            .position(|line| line.contains("callback_offered"))
            .expect("a block with the callback columns");
        assert_eq!(
            lines[block],
            "enterprise   max_wait_s  callback_offered  callback_accepted  callback_attempts  callback_connected"
        );
        assert_eq!(
            lines[block + 2],
            "water, cold        30.0                 4                  3                  4                   1"
        );
        assert!(table.contains("callback_service_level  callback_asa_s"));
        assert!(table.contains("50.0%           510.0"), "{table}");
    }
}
