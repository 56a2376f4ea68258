//! Telephone numbers: E.164 normalisation of caller and dialled numbers with the `[numbers]`
//! rules (country code, national and international prefixes), and comparison in that form. Pure.

/// The dialling rules of the country the service runs in (`[numbers]` settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRules {
    /// Digits of the country calling code, e.g. `370`.
    pub country_code: String,
    /// Prefix of national numbers dialled without the country code, e.g. `8`.
    pub national_prefix: String,
    /// Prefix of international numbers, e.g. `00`.
    pub international_prefix: String,
}

/// A national significant number is at least this long; shorter digit strings after the
/// national prefix (`8` + a few digits) are service numbers and are kept as dialled.
const MIN_NATIONAL_DIGITS: usize = 6;

/// What callers send instead of a number when they withhold it.
const WITHHELD: &[&str] = &[
    "anonymous",
    "withheld",
    "restricted",
    "private",
    "unknown",
    "unavailable",
];

/// Whether a caller's number is withheld: empty, or a word such as `anonymous` in its place.
pub fn is_withheld(caller: &str) -> bool {
    let user = strip_scheme(caller.trim());
    let user = user.split(['@', ';']).next().unwrap_or_default().trim();
    user.is_empty() || WITHHELD.iter().any(|word| user.eq_ignore_ascii_case(word))
}

impl NumberRules {
    /// The E.164 form (`+37068712345`) of a number as a carrier or phone sends it.
    ///
    /// - `+370...` is kept; `00 48...` (international prefix) → `+48...`;
    /// - `8 687 12345` (national prefix) → `+37068712345`; `37068712345` → `+37068712345`;
    /// - short numbers (`19118`, `112`) and names that are not numbers (a SIP user) are kept
    ///   as dialled, without visual separators;
    /// - withheld numbers (`anonymous`, `withheld`, empty...) → `None`.
    ///
    /// Accepts a bare user part or a `sip:`/`tel:` URI user; URI parameters are dropped.
    pub fn normalise(&self, raw: &str) -> Option<String> {
        let text = raw.trim();
        let text = strip_scheme(text);
        let text = text.split(['@', ';']).next().unwrap_or_default();
        let compact: String = text
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '/'))
            .collect();
        if compact.is_empty()
            || WITHHELD
                .iter()
                .any(|word| compact.eq_ignore_ascii_case(word))
        {
            return None;
        }
        let (plus, digits) = match compact.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, compact.as_str()),
        };
        if digits.is_empty() {
            return None;
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            // Not a telephone number (e.g. `jonas`, `*21#`): kept for display as it came.
            return Some(compact);
        }
        if plus {
            return Some(format!("+{digits}"));
        }
        let prefixed = |prefix: &str| {
            (!prefix.is_empty())
                .then(|| digits.strip_prefix(prefix))
                .flatten()
                .filter(|rest| rest.len() >= MIN_NATIONAL_DIGITS)
        };
        if let Some(rest) = prefixed(&self.international_prefix) {
            return Some(format!("+{rest}"));
        }
        if let Some(rest) = prefixed(&self.national_prefix) {
            return Some(format!("+{}{rest}", self.country_code));
        }
        // Carriers often deliver the international form without its `+`.
        if let Some(rest) = prefixed(&self.country_code) {
            return Some(format!("+{}{rest}", self.country_code));
        }
        Some(digits.to_owned())
    }

    /// The E.164 form of a number a resident may be called back on, or why not: Lithuanian
    /// mobile (`6…`) and landline (`3…`, `4…`, `5…`) numbers of 8 national digits when the
    /// country code is 370; elsewhere any full number (8 to 15 digits with the country code).
    /// Short, service, premium-rate (`90…`), shared-cost and freephone (`7…`, `8…`) numbers
    /// are refused: a callback must never dial where the call costs more or reaches a machine.
    pub fn callback_number(&self, typed: &str) -> Result<String, &'static str> {
        let number = self.normalise(typed).ok_or("no number")?;
        let digits = number
            .strip_prefix('+')
            .ok_or("not a full telephone number")?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("not a telephone number");
        }
        if !(8..=15).contains(&digits.len()) {
            return Err("too short or too long for a telephone number");
        }
        if let Some(national) = digits.strip_prefix("370") {
            let lithuanian = national.len() == 8 && matches!(national.as_bytes()[0], b'3'..=b'6');
            if !lithuanian {
                return Err("not a Lithuanian mobile or landline number");
            }
        }
        Ok(number)
    }

    /// Whether two numbers are the same once normalised (withheld numbers match nothing).
    pub fn same_number(&self, a: &str, b: &str) -> bool {
        match (self.normalise(a), self.normalise(b)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }

    /// Whether `dialled` is one of `numbers` (a trunk's DIDs), compared in normalised form.
    pub fn is_one_of<S: AsRef<str>>(&self, dialled: &str, numbers: &[S]) -> bool {
        numbers
            .iter()
            .any(|number| self.same_number(dialled, number.as_ref()))
    }
}

fn strip_scheme(text: &str) -> &str {
    for scheme in ["sips:", "sip:", "tel:"] {
        if text.len() >= scheme.len() && text[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return &text[scheme.len()..];
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lithuania() -> NumberRules {
        NumberRules {
            country_code: "370".into(),
            national_prefix: "8".into(),
            international_prefix: "00".into(),
        }
    }

    #[test]
    fn national_international_and_e164_forms_normalise() {
        let rules = lithuania();
        let n = |raw: &str| rules.normalise(raw);
        assert_eq!(n("868712345").as_deref(), Some("+37068712345"));
        assert_eq!(n("8 687 12345").as_deref(), Some("+37068712345"));
        assert_eq!(n("8-(687)-12345").as_deref(), Some("+37068712345"));
        assert_eq!(n("0048601234567").as_deref(), Some("+48601234567"));
        assert_eq!(n("+37068712345").as_deref(), Some("+37068712345"));
        assert_eq!(n("+48 601 234 567").as_deref(), Some("+48601234567"));
        assert_eq!(n("37068712345").as_deref(), Some("+37068712345"));
        assert_eq!(
            n("sip:868712345@carrier;user=phone").as_deref(),
            Some("+37068712345")
        );
        assert_eq!(n("tel:+37068712345").as_deref(), Some("+37068712345"));
    }

    #[test]
    fn withheld_callers_are_told_apart_from_numbers() {
        for withheld in [
            "",
            " ",
            "anonymous",
            "Anonymous",
            "sip:anonymous@anonymous.invalid",
        ] {
            assert!(is_withheld(withheld), "{withheld:?}");
        }
        for number in ["+37068712345", "868712345", "jonas"] {
            assert!(!is_withheld(number), "{number:?}");
        }
    }

    #[test]
    fn short_numbers_and_names_are_kept_as_dialled() {
        let rules = lithuania();
        assert_eq!(rules.normalise("19118").as_deref(), Some("19118"));
        assert_eq!(rules.normalise("112").as_deref(), Some("112"));
        // `8` + a short code is not a national number.
        assert_eq!(rules.normalise("81234").as_deref(), Some("81234"));
        assert_eq!(rules.normalise("001").as_deref(), Some("001"));
        assert_eq!(rules.normalise("jonas").as_deref(), Some("jonas"));
    }

    #[test]
    fn withheld_numbers_have_no_e164_form() {
        let rules = lithuania();
        for raw in [
            "anonymous",
            "Anonymous",
            "withheld",
            "",
            "  ",
            "+",
            "sip:anonymous@anonymous.invalid",
        ] {
            assert_eq!(rules.normalise(raw), None, "{raw:?}");
        }
        assert!(!rules.same_number("anonymous", "anonymous"));
    }

    #[test]
    fn dids_compare_in_normalised_form() {
        let rules = lithuania();
        assert!(rules.same_number("852123456", "+37052123456"));
        assert!(rules.same_number("0037052123456", "+37052123456"));
        assert!(!rules.same_number("19118", "+37019118"));
        let dids = ["19118", "+37052123456"];
        assert!(rules.is_one_of("19118", &dids));
        assert!(rules.is_one_of("852123456", &dids));
        assert!(!rules.is_one_of("19119", &dids));
    }

    #[test]
    fn empty_prefixes_are_not_applied() {
        let rules = NumberRules {
            country_code: "1".into(),
            national_prefix: String::new(),
            international_prefix: "011".into(),
        };
        assert_eq!(
            rules.normalise("01144201234567").as_deref(),
            Some("+44201234567")
        );
        assert_eq!(
            rules.normalise("12125550100").as_deref(),
            Some("+12125550100")
        );
        assert_eq!(rules.normalise("911").as_deref(), Some("911"));
    }

    #[test]
    fn callback_numbers_are_lithuanian_mobiles_and_landlines_or_full_foreign_numbers() {
        let rules = lithuania();
        for (typed, e164) in [
            ("867012345", "+37067012345"),
            ("+37067012345", "+37067012345"),
            ("0037052123456", "+37052123456"),
            ("852123456", "+37052123456"),
            ("837212345", "+37037212345"),
            ("846412345", "+37046412345"),
            ("004822123456789", "+4822123456789"),
            ("+4915112345678", "+4915112345678"),
        ] {
            assert_eq!(rules.callback_number(typed).as_deref(), Ok(e164), "{typed}");
        }
        for typed in [
            "",
            "19118",
            "112",
            "8 800 12345",
            "890012345",
            "870012345",
            "86701234",
            "8670123456",
            "+3701234567",
            "anonymous",
            "jonas",
            "+1234567",
        ] {
            assert!(rules.callback_number(typed).is_err(), "{typed} accepted");
        }
    }
}
