//! `hotline stats`: call statistics from the call-record database, as a table, CSV or JSON.

use anyhow::{anyhow, Context};
use chrono::{DateTime, Duration as Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::Vilnius;

use crate::cdr::format::{render, OutputFormat};
use crate::cdr::{mask_password, CdrStore, DatabaseUrl, Dimension, StatsQuery, Thresholds};

pub struct Options {
    pub database_url: String,
    /// Local dates (Europe/Vilnius) `YYYY-MM-DD`; `to` is exclusive. Default: today.
    pub from: Option<String>,
    pub to: Option<String>,
    pub by: Vec<String>,
    pub format: String,
    pub thresholds: Thresholds,
}

/// Refuses a database URL naming an SQLite file that does not exist, unless `allow_empty`:
/// opening it would create an empty database and print zeros, which looks like a quiet day
/// rather than the wrong folder or setting. The message names the URL, password masked.
pub fn refuse_missing_database(database_url: &str, allow_empty: bool) -> anyhow::Result<()> {
    if let Ok(DatabaseUrl::Sqlite(path)) = database_url.parse::<DatabaseUrl>() {
        if !path.exists() && !allow_empty {
            return Err(anyhow!(
                "no call-record database at {} (setting database.url; run where the service \
                 runs, or pass --allow-empty to accept an empty one)",
                mask_password(database_url)
            ));
        }
    }
    Ok(())
}

pub async fn run(options: Options) -> anyhow::Result<String> {
    let today = Utc::now().with_timezone(&Vilnius).date_naive();
    let from = match &options.from {
        Some(text) => local_date(text)?,
        None => today,
    };
    let to = match &options.to {
        Some(text) => local_date(text)?,
        None => from + Days::days(1),
    };
    if from >= to {
        return Err(anyhow!(
            "--from {from} is not before --to {to} (--to is the day after the last one)"
        ));
    }
    let by = options
        .by
        .iter()
        .flat_map(|list| list.split(','))
        .filter(|key| !key.trim().is_empty())
        .map(|key| {
            key.trim()
                .parse::<Dimension>()
                .map_err(|error| anyhow!("--by: {error}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let format = match options.format.as_str() {
        "table" => OutputFormat::Table,
        "csv" => OutputFormat::Csv,
        "json" => OutputFormat::Json,
        other => return Err(anyhow!("--format {other}: expected table, csv or json")),
    };
    let query = StatsQuery::with_thresholds(midnight(from)?, midnight(to)?, by, options.thresholds);
    let shown_url = mask_password(&options.database_url);
    // A spool of our own (never written): the service's spool is the service's to replay.
    let private_spool =
        std::env::temp_dir().join(format!("hotline-stats-{}.jsonl", std::process::id()));
    let store = CdrStore::connect(&options.database_url, &private_spool)
        .await
        .with_context(|| format!("opening the call-record database {shown_url}"))?;
    let rows = store.stats(&query).await.context("computing statistics")?;
    render(&rows, format).context("formatting statistics")
}

fn local_date(text: &str) -> anyhow::Result<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .with_context(|| format!("`{text}`: expected YYYY-MM-DD"))
}

fn midnight(date: NaiveDate) -> anyhow::Result<DateTime<Utc>> {
    let naive = date
        .and_hms_opt(0, 0, 0)
        .ok_or_else(|| anyhow!("bad date {date}"))?;
    Vilnius
        .from_local_datetime(&naive)
        .earliest()
        .map(|local| local.with_timezone(&Utc))
        .ok_or_else(|| anyhow!("{date} has no midnight in Europe/Vilnius"))
}
