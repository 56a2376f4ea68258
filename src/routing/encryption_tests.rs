//! A group's `media_encryption`: read, defaulted to `off`, bad values reported at their line.

use super::model::parse;
use crate::sdp::MediaEncryption;

/// A minimal routing file whose one group has `extra` lines (from line 10) before its agents.
fn group_encryption(extra: &str) -> Result<MediaEncryption, Vec<String>> {
    let text = format!(
        r#"[hotline]
languages = ["lt"]
default_language = "lt"
timezone = "Europe/Vilnius"
fallback = "desk"
start = "desk"

[groups.desk]
name = {{ lt = "Skyrius" }}
{extra}agents = [{{ uri = "sip:agent@192.0.2.5" }}]
"#
    );
    parse(&text, "routing.toml")
        .map(|routing| routing.groups["desk"].media_encryption)
        .map_err(|problems| problems.iter().map(ToString::to_string).collect())
}

#[test]
fn media_encryption_is_read_and_defaults_to_off() {
    assert_eq!(group_encryption(""), Ok(MediaEncryption::Off));
    for (value, expected) in [
        ("off", MediaEncryption::Off),
        ("optional", MediaEncryption::Optional),
        ("required", MediaEncryption::Required),
    ] {
        let line = format!("media_encryption = \"{value}\"\n");
        assert_eq!(group_encryption(&line), Ok(expected), "{value}");
    }
}

#[test]
fn an_unknown_media_encryption_is_reported_at_its_line() {
    assert_eq!(
        group_encryption("media_encryption = \"srtp\"\n"),
        Err(vec![
            "routing.toml:10: groups.desk.media_encryption: unknown media_encryption \"srtp\" \
             (expected off, optional or required)"
                .to_owned()
        ])
    );
    assert_eq!(
        group_encryption("media_encryption = true\n").map_err(|problems| problems.len()),
        Err(1)
    );
}
