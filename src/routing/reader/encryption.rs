//! A group's `media_encryption`: whether its agents' legs use SRTP (issue 16).

use super::{Fields, Reader};
use crate::sdp::MediaEncryption;

impl Reader {
    /// `off` (the default), `optional` or `required`.
    pub(super) fn media_encryption(&mut self, f: &Fields) -> MediaEncryption {
        let Some(text) = self.string(f, "media_encryption") else {
            return MediaEncryption::Off;
        };
        MediaEncryption::parse(&text.value).unwrap_or_else(|| {
            self.push(
                &text.at,
                format!(
                    "unknown media_encryption \"{}\" (expected off, optional or required)",
                    text.value
                ),
            );
            MediaEncryption::Off
        })
    }
}
