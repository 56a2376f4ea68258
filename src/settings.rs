//! Service settings: built-in defaults, then `hotline.toml` (or `--config FILE`), then
//! environment variables `HOTLINE__SECTION__KEY`. Supervisor routing lives in `routing.toml`, not here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Defaults are written as TOML so `hotline.toml` can be explained by pointing at this text.
pub const DEFAULTS: &str = r#"
routing = "routing.toml"
prompts = "prompts"
pid_file = "var/hotline.pid"

[sip]
listen = "0.0.0.0:5060"
t1 = "500ms"
t2 = "4s"
t4 = "5s"
max_call_duration = "1h"
answer_delay = "0s"
rtp_timeout = "60s"
max_message_size = 16384

[rtp]
port_min = 20000
port_max = 29999

[database]
url = "sqlite://var/hotline.db"
spool = "var/cdr-spool.jsonl"
retention_mode = "delete"

[http]
listen = "127.0.0.1:8080"

[stats]
short_abandon = 5
sl_threshold = 20
"#;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub sip: SipSettings,
    pub rtp: RtpSettings,
    /// Path of the supervisors' routing file.
    pub routing: PathBuf,
    /// Folder of prompt audio, `<prompts>/<lang>/<name>.<ext>`.
    pub prompts: PathBuf,
    /// Where `serve` writes its process id, for `hotline reload`.
    pub pid_file: PathBuf,
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    pub stats: StatsSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipSettings {
    /// UDP and TCP are both bound to this address (port 0: the OS picks one port for both).
    pub listen: SocketAddr,
    /// Address written into Via, Contact and SDP; defaults to the bound local address.
    #[serde(default)]
    pub public_addr: Option<std::net::IpAddr>,
    #[serde(deserialize_with = "duration")]
    pub t1: Duration,
    #[serde(deserialize_with = "duration")]
    pub t2: Duration,
    #[serde(deserialize_with = "duration")]
    pub t4: Duration,
    /// The service hangs up a call that lasts longer than this.
    #[serde(deserialize_with = "duration")]
    pub max_call_duration: Duration,
    /// Ring (180) this long before answering; 0 answers at once.
    #[serde(deserialize_with = "duration")]
    pub answer_delay: Duration,
    /// No RTP from the caller for this long ends the call (dead callers must not reach agents).
    #[serde(deserialize_with = "duration")]
    pub rtp_timeout: Duration,
    /// Larger SIP messages get 513 (UDP) or close the connection (TCP).
    pub max_message_size: usize,
    /// Agents' credentials (realm and HA1 per user); without it agents cannot register.
    #[serde(default)]
    pub credentials: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtpSettings {
    pub port_min: u16,
    pub port_max: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` (default, embedded) or `postgres://…`.
    pub url: String,
    /// Call records wait here (append-only) while the database is down or slow.
    pub spool: PathBuf,
    /// Key for pseudonymising caller numbers (HMAC-SHA256); unset keeps numbers as dialled.
    #[serde(default)]
    pub pseudonymise_key: Option<String>,
    /// Records older than this many days are purged daily; unset keeps them.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// `delete` the old records, or `blank_caller` to keep them without the caller's number.
    pub retention_mode: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// Bearer token for everything but /health; without one the API only listens on loopback.
    #[serde(default)]
    pub token: Option<String>,
}

/// The thresholds of the statistics' definitions (`hotline stats --help`), in seconds.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsSettings {
    /// Abandons with a shorter wait are short abandons, left out of abandoned and of the SL.
    pub short_abandon: u32,
    /// Answered within this wait counts toward the service level.
    pub sl_threshold: u32,
}

impl From<StatsSettings> for crate::cdr::Thresholds {
    fn from(stats: StatsSettings) -> Self {
        crate::cdr::Thresholds {
            short_abandon_s: stats.short_abandon,
            sl_threshold_s: stats.sl_threshold,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings: {0}")]
    Load(#[from] config::ConfigError),
    #[error("settings: key `{key}`: {message}")]
    Key { key: String, message: String },
    #[error("settings: rtp.port_min ({min}) must be below rtp.port_max ({max}) with room for at least one even/odd pair")]
    RtpRange { min: u16, max: u16 },
    #[error("settings: sip.t1 must be > 0 and sip.t2 >= sip.t1")]
    Timers,
}

impl Settings {
    /// Loads defaults, then `file` (required when given explicitly, else `hotline.toml` if present),
    /// then `HOTLINE__*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        use config::{Config, Environment, File, FileFormat};
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        builder = match file {
            Some(path) => {
                builder.add_source(File::from(path).format(FileFormat::Toml).required(true))
            }
            None => builder.add_source(File::new("hotline.toml", FileFormat::Toml).required(false)),
        };
        let merged = builder
            .add_source(
                Environment::with_prefix("HOTLINE")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()?;
        // The config crate drops the key from custom errors (bad address, bad duration):
        // serde_path_to_error puts it back.
        let settings: Settings =
            serde_path_to_error::deserialize(merged).map_err(|error| SettingsError::Key {
                key: error.path().to_string(),
                message: error.into_inner().to_string(),
            })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        if self.rtp.port_min >= self.rtp.port_max {
            return Err(SettingsError::RtpRange {
                min: self.rtp.port_min,
                max: self.rtp.port_max,
            });
        }
        if self.sip.t1.is_zero() || self.sip.t2 < self.sip.t1 {
            return Err(SettingsError::Timers);
        }
        Ok(())
    }
}

/// Accepts `"500ms"`, `"5s"`, `"2m"`, `"1h"` or a bare number of seconds.
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Seconds(s) => Ok(Duration::from_secs(s)),
        Raw::Text(text) => parse_duration(&text).map_err(serde::de::Error::custom),
    }
}

/// Parses the duration strings used in settings and `routing.toml`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 5s, 2m or 1h"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{text}` (use ms, s, m, h)"
            ))
        }
    };
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_all_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn defaults_load_and_a_bad_file_names_the_key() {
        let dir = std::env::temp_dir().join(format!("hotline-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, "[rtp]\nport_min = 30000\nport_max = 30100\n").unwrap();
        let settings = Settings::load(Some(&good)).unwrap();
        assert_eq!(settings.rtp.port_min, 30000);
        assert_eq!(settings.sip.t1, Duration::from_millis(500));

        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[sip]\nlisten = \"not an address\"\n").unwrap();
        let message = Settings::load(Some(&bad)).unwrap_err().to_string();
        assert!(message.contains("sip.listen"), "{message}");

        let typo = dir.join("typo.toml");
        std::fs::write(&typo, "[sip]\nlisen = \"127.0.0.1:5060\"\n").unwrap();
        let message = Settings::load(Some(&typo)).unwrap_err().to_string();
        assert!(message.contains("lisen"), "{message}");
    }
}
