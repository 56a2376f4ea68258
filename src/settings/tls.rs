//! The TLS settings' checks: `sip.tls_listen` needs `sip.tls_cert` and `sip.tls_key`, and a
//! trunk's `tls_ca` belongs to `transport = "tls"` and must be readable. The PEM contents are
//! read (and refused with their path) when the service starts, by `server::tls`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{SettingsError, SipSettings, TrunkSettings, TrunkTransport};

pub(super) fn validate(
    sip: &SipSettings,
    trunks: &BTreeMap<String, TrunkSettings>,
) -> Result<(), SettingsError> {
    let key_error = |key: &str, message: String| SettingsError::Key {
        key: key.to_owned(),
        message,
    };
    if sip.tls_listen.is_some() {
        for (key, path) in [
            ("sip.tls_cert", &sip.tls_cert),
            ("sip.tls_key", &sip.tls_key),
        ] {
            let Some(path) = path else {
                return Err(key_error(key, "required when sip.tls_listen is set".into()));
            };
            readable(path).map_err(|message| key_error(key, message))?;
        }
    }
    for (name, trunk) in trunks {
        let Some(path) = &trunk.tls_ca else {
            continue;
        };
        let key = format!("trunks.{name}.tls_ca");
        if trunk.transport != TrunkTransport::Tls {
            return Err(key_error(&key, "only used with transport = \"tls\"".into()));
        }
        readable(path).map_err(|message| key_error(&key, message))?;
    }
    Ok(())
}

fn readable(path: &Path) -> Result<(), String> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use crate::settings::Settings;

    #[test]
    fn tls_listen_needs_a_readable_certificate_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "not checked here").unwrap();
        std::fs::write(&key, "not checked here").unwrap();
        let load = |text: String| {
            let path = dir.path().join("hotline.toml");
            std::fs::write(&path, text).unwrap();
            Settings::load(Some(&path))
        };

        let off = load(String::new()).unwrap();
        assert_eq!(off.sip.tls_listen, None);

        let on = format!(
            "[sip]\ntls_listen = \"127.0.0.1:5061\"\ntls_cert = {cert:?}\ntls_key = {key:?}\n"
        );
        let on = load(on).unwrap();
        assert_eq!(on.sip.tls_listen, Some("127.0.0.1:5061".parse().unwrap()));
        assert_eq!(on.sip.tls_key.as_deref(), Some(key.as_path()));

        let cases = [
            (
                format!("[sip]\ntls_listen = \"127.0.0.1:5061\"\ntls_key = {key:?}\n"),
                "sip.tls_cert",
            ),
            (
                format!("[sip]\ntls_listen = \"127.0.0.1:5061\"\ntls_cert = {cert:?}\n"),
                "sip.tls_key",
            ),
            (
                format!(
                    "[sip]\ntls_listen = \"127.0.0.1:5061\"\ntls_cert = {cert:?}\n\
                     tls_key = \"/nonexistent/key.pem\"\n"
                ),
                "/nonexistent/key.pem",
            ),
            (
                "[sip]\ntls_listen = \"port 5061\"\n".to_owned(),
                "sip.tls_listen",
            ),
        ];
        for (text, wanted) in cases {
            let message = load(text.clone()).unwrap_err().to_string();
            assert!(message.contains(wanted), "{text}: {message}");
        }
    }

    #[test]
    fn a_trunk_ca_belongs_to_tls_and_must_be_readable() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not checked here").unwrap();
        let load = |text: String| {
            let path = dir.path().join("hotline.toml");
            std::fs::write(&path, text).unwrap();
            Settings::load(Some(&path))
        };
        let good = load(format!(
            "[trunks.c]\nhost = \"sip.carrier.example\"\ntransport = \"tls\"\ntls_ca = {ca:?}\n"
        ))
        .unwrap();
        let trunk = &good.trunks["c"];
        assert_eq!(trunk.transport, crate::settings::TrunkTransport::Tls);
        assert_eq!(trunk.tls_ca.as_deref(), Some(ca.as_path()));

        let over_udp = format!("[trunks.c]\nhost = \"h\"\ntls_ca = {ca:?}\n");
        let message = load(over_udp).unwrap_err().to_string();
        assert!(message.contains("trunks.c.tls_ca"), "{message}");
        let missing =
            "[trunks.c]\nhost = \"h\"\ntransport = \"tls\"\ntls_ca = \"/nonexistent/ca.pem\"\n";
        let message = load(missing.to_owned()).unwrap_err().to_string();
        assert!(
            message.contains("trunks.c.tls_ca") && message.contains("/nonexistent/ca.pem"),
            "{message}"
        );
    }
}
