//! Service settings: built-in defaults, then `hotline.toml` (or `--config FILE`), then
//! environment variables `HOTLINE__SECTION__KEY`. Supervisor routing lives in `routing.toml`, not here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

mod edge;
mod tls;
mod trunk;

pub use edge::{FeatureSettings, SecuritySettings};
pub use trunk::{
    in_any, split_host_port, CallerIdHeader, Cidr, NumbersSettings, Secret, TrunkSettings,
    TrunkTransport,
};

/// Defaults are written as TOML so `hotline.toml` can be explained by pointing at this text.
pub const DEFAULTS: &str = r#"
routing = "routing.toml"
routing_settle = "2s"
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
trusted = ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
server_header = "hotline"
agent_probe = "60s"

[numbers]
country_code = "370"
national_prefix = "8"
international_prefix = "00"

[rtp]
port_min = 20000
port_max = 29999
threads = 0

[database]
url = "sqlite://var/hotline.db"
spool = "var/cdr-spool.jsonl"
retention_mode = "delete"

[http]
listen = "127.0.0.1:8080"

[stats]
short_abandon = 5
sl_threshold = 20

[shutdown]
grace = "5m"

[tcp]
max_connections = 2048
max_per_address = 64
idle_timeout = "10m"
message_timeout = "10s"

[security]
max_auth_failures = 10
max_auth_failures_per_address = 30
auth_failure_window = "15m"
ban_time = "5m"
nonce_lifetime = "5m"
rate = 8.0
burst = 16
rate_exempt = ["127.0.0.1/32"]
max_calls_per_source = 50

[features]
pause = "*21"
resume = "*22"
log_out = "*23"
log_in = "*24"
"#;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub sip: SipSettings,
    pub rtp: RtpSettings,
    /// Path of the supervisors' routing file.
    pub routing: PathBuf,
    /// A changed routing file goes live once it has stayed unchanged this long (SIGHUP and
    /// `hotline reload` apply at once).
    #[serde(deserialize_with = "duration")]
    pub routing_settle: Duration,
    /// Folder of prompt audio, `<prompts>/<lang>/<name>.<ext>`.
    pub prompts: PathBuf,
    /// Where `serve` writes its process id, for `hotline reload`.
    pub pid_file: PathBuf,
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    pub stats: StatsSettings,
    pub shutdown: ShutdownSettings,
    pub tcp: TcpSettings,
    /// `[numbers]`: E.164 rules for caller and dialled numbers.
    pub numbers: NumbersSettings,
    /// `[trunks.NAME]`: carriers' SIP trunks, by name.
    #[serde(default)]
    pub trunks: BTreeMap<String, TrunkSettings>,
    pub security: SecuritySettings,
    /// `[features]`: codes agents dial from their phone.
    pub features: FeatureSettings,
    /// `[node]`: absent from `DEFAULTS` because its default, the host name, is read at start.
    #[serde(default)]
    pub node: NodeSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// This service's name, stamped on every call record; at start it closes only its own
    /// records left open by a crash. Unique per service sharing one database.
    #[serde(default = "host_name")]
    pub name: String,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings { name: host_name() }
    }
}

/// The machine's host name (the default `node.name`), else `hotline`.
pub fn host_name() -> String {
    let from_proc = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned());
    from_proc
        .filter(|name| !name.is_empty())
        .or_else(gethostname)
        .unwrap_or_else(|| "hotline".to_owned())
}

#[cfg(unix)]
fn gethostname() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; POSIX may leave it unterminated when the name
    // is cut, which is why the length is taken up to the first NUL or the end.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if result != 0 {
        return None;
    }
    let end = buffer
        .iter()
        .position(|byte| *byte == 0)
        .unwrap_or(buffer.len());
    let name = String::from_utf8_lossy(&buffer[..end]).trim().to_owned();
    (!name.is_empty()).then_some(name)
}

#[cfg(not(unix))]
fn gethostname() -> Option<String> {
    None
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
    /// Server header of responses and User-Agent of requests; no version by default.
    pub server_header: String,
    /// Agents' credentials (realm and HA1 per user); without it agents cannot register.
    #[serde(default)]
    pub credentials: Option<PathBuf>,
    /// Besides trunks, who may send INVITE or REGISTER (agents' networks); others get 403.
    pub trusted: Vec<Cidr>,
    /// Static agents' phones get an OPTIONS this often; one that does not answer is not rung
    /// (shown unreachable) until it answers again. "0s": never probed.
    #[serde(deserialize_with = "duration")]
    pub agent_probe: Duration,
    /// SIP over TLS listens here (e.g. `0.0.0.0:5061`); unset: no TLS listener.
    #[serde(default)]
    pub tls_listen: Option<SocketAddr>,
    /// The TLS certificate chain (PEM), required with `tls_listen`; re-read on SIGHUP.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM), required with `tls_listen`; re-read on SIGHUP.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

/// Limits on SIP over TCP, so idle or trickling connections cannot exhaust the service.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSettings {
    /// Accepted connections at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Accepted connections at once from one address.
    pub max_per_address: usize,
    /// A connection that carries nothing for this long is closed.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// A message must be complete this long after its first byte, and a new connection must
    /// bring its first message within it (slow senders cannot hold connections open).
    #[serde(deserialize_with = "duration")]
    pub message_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtpSettings {
    pub port_min: u16,
    pub port_max: u16,
    /// Media threads (each paces, receives and relays a share of the calls); 0: one per core.
    pub threads: usize,
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

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownSettings {
    /// After SIGTERM/SIGINT, calls in progress may go on this long before the service hangs
    /// them up (new calls are refused meanwhile).
    #[serde(deserialize_with = "duration")]
    pub grace: Duration,
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
    #[error("settings: node.name must not be empty")]
    NodeName,
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
                    .try_parsing(true)
                    // `HOTLINE__SIP__TRUSTED=127.0.0.1/32,10.20.0.0/16`
                    .list_separator(",")
                    .with_list_parse_key("sip.trusted")
                    .with_list_parse_key("security.rate_exempt"),
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
        if self.node.name.trim().is_empty() {
            return Err(SettingsError::NodeName);
        }
        tls::validate(&self.sip, &self.trunks)?;
        trunk::validate(&self.trunks, &self.numbers)
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
    use crate::sdp::MediaEncryption;

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
        assert_eq!(settings.shutdown.grace, Duration::from_secs(300));
        let policy = crate::sip::registrar::AuthPolicy::from(&settings.security);
        assert_eq!(policy, crate::sip::registrar::AuthPolicy::default());
        assert_eq!(settings.sip.server_header, crate::sip::ua::DEFAULT_PRODUCT);
        assert_eq!(settings.routing_settle, Duration::from_secs(2));

        let grace = dir.join("grace.toml");
        std::fs::write(&grace, "[shutdown]\ngrace = \"90s\"\n").unwrap();
        let settings = Settings::load(Some(&grace)).unwrap();
        assert_eq!(settings.shutdown.grace, Duration::from_secs(90));
        std::fs::write(&grace, "[shutdown]\ngrace = \"soon\"\n").unwrap();
        let message = Settings::load(Some(&grace)).unwrap_err().to_string();
        assert!(message.contains("shutdown.grace"), "{message}");

        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[sip]\nlisten = \"not an address\"\n").unwrap();
        let message = Settings::load(Some(&bad)).unwrap_err().to_string();
        assert!(message.contains("sip.listen"), "{message}");

        assert_eq!(settings.node.name, host_name());
        assert!(!settings.node.name.is_empty());
        let named = dir.join("named.toml");
        std::fs::write(&named, "[node]\nname = \"hotline-b\"\n").unwrap();
        assert_eq!(Settings::load(Some(&named)).unwrap().node.name, "hotline-b");
        let unnamed = dir.join("unnamed.toml");
        std::fs::write(&unnamed, "[node]\nname = \" \"\n").unwrap();
        assert!(matches!(
            Settings::load(Some(&unnamed)),
            Err(SettingsError::NodeName)
        ));

        let typo = dir.join("typo.toml");
        std::fs::write(&typo, "[sip]\nlisen = \"127.0.0.1:5060\"\n").unwrap();
        let message = Settings::load(Some(&typo)).unwrap_err().to_string();
        assert!(message.contains("lisen"), "{message}");
    }

    #[test]
    fn trunks_numbers_and_trusted_load_and_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::load(Some(&write(&dir, "empty.toml", ""))).unwrap();
        assert!(settings.trunks.is_empty());
        assert_eq!(settings.numbers.country_code, "370");
        let trusted = &settings.sip.trusted;
        for inside in ["127.0.0.1", "::1", "10.1.2.3", "172.31.0.1", "192.168.1.1"] {
            assert!(in_any(trusted, inside.parse().unwrap()), "{inside}");
        }
        for outside in ["203.0.113.9", "172.32.0.1", "2001:db8::1"] {
            assert!(!in_any(trusted, outside.parse().unwrap()), "{outside}");
        }

        let good = r#"
[sip]
trusted = ["127.0.0.1/32", "10.20.0.0/16"]
[numbers]
country_code = "370"
national_prefix = "8"
international_prefix = "00"
[trunks.carrier]
host = "sip.carrier.example:5060"
backup_host = "sip2.carrier.example"
transport = "udp"
register = true
username = "hotline19118"
password = "hunter2"
expires = "600s"
numbers = ["19118", "+37019118"]
inbound = ["192.0.2.0/28"]
caller_id = "pai"
max_calls = 120
options_interval = "30s"
[trunks.second]
host = "192.0.2.50"
transport = "tcp"
register = true
username = "u"
auth_username = "auth-u"
password_file = "PASSWORD_FILE"
numbers = ["852123456"]
caller_id = "rpid"
media_encryption = "optional"
"#;
        let password_file = write(&dir, "secret", "from-a-file\n");
        let good = good.replace("PASSWORD_FILE", &password_file.display().to_string());
        let settings = Settings::load(Some(&write(&dir, "good.toml", &good))).unwrap();
        assert_eq!(settings.sip.trusted.len(), 2);
        let carrier = &settings.trunks["carrier"];
        assert_eq!(carrier.expires, Duration::from_secs(600));
        assert_eq!(carrier.max_calls, Some(120));
        assert_eq!(carrier.transport, TrunkTransport::Udp);
        assert!(carrier.inbound[0].contains("192.0.2.15".parse().unwrap()));
        assert!(!carrier.inbound[0].contains("192.0.2.16".parse().unwrap()));
        assert_eq!(carrier.auth_user(), Some("hotline19118"));
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("hunter2"),
            "the password leaks through Debug"
        );
        let second = &settings.trunks["second"];
        assert_eq!(second.auth_user(), Some("auth-u"));
        assert_eq!(second.caller_id, CallerIdHeader::Rpid);
        assert_eq!(second.options_interval, Duration::from_secs(30));
        assert_eq!(second.media_encryption, MediaEncryption::Optional);
        assert_eq!(carrier.media_encryption, MediaEncryption::Off);
        let password = second.resolve_password().unwrap().unwrap();
        assert_eq!(password.expose(), "from-a-file");

        let cases = [
            ("[sip]\ntrusted = [\"10.0.0.0/33\"]\n", "sip.trusted"),
            (
                "[trunks.c]\nhost = \"h\"\ninbound = [\"nonsense\"]\n",
                "trunks.c.inbound",
            ),
            ("[trunks.c]\nhost = \"h\"\nhots = \"typo\"\n", "hots"),
            (
                "[trunks.c]\nhost = \"h\"\ntransport = \"sctp\"\n",
                "trunks.c.transport",
            ),
            (
                "[trunks.c]\nhost = \"h\"\ncaller_id = \"name\"\n",
                "trunks.c.caller_id",
            ),
            ("[trunks.c]\nhost = \"not a host\"\n", "trunks.c.host"),
            (
                "[trunks.c]\nhost = \"h\"\nregister = true\npassword = \"p\"\n",
                "trunks.c.username",
            ),
            (
                "[trunks.c]\nhost = \"h\"\nregister = true\nusername = \"u\"\n",
                "trunks.c.password",
            ),
            (
                "[trunks.a]\nhost = \"h\"\nnumbers = [\"+37052123456\"]\n\
                 [trunks.b]\nhost = \"h\"\nnumbers = [\"852123456\"]\n",
                "trunks.b.numbers[0]",
            ),
            (
                "[numbers]\ncountry_code = \"+370\"\n",
                "numbers.country_code",
            ),
            (
                "[trunks.c]\nhost = \"h\"\npassword_file = \"/nonexistent/secret\"\n",
                "trunks.c.password_file",
            ),
            (
                "[trunks.c]\nhost = \"h\"\nmedia_encryption = \"always\"\n",
                "trunks.c.media_encryption",
            ),
            // Keys never go over UDP/TCP, so `required` there could never place a call.
            (
                "[trunks.c]\nhost = \"h\"\nmedia_encryption = \"required\"\n",
                "trunks.c.media_encryption",
            ),
        ];
        for (index, (text, key)) in cases.iter().enumerate() {
            let path = write(&dir, &format!("bad{index}.toml"), text);
            let message = Settings::load(Some(&path)).unwrap_err().to_string();
            assert!(message.contains(key), "{text}: {message}");
        }
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}
