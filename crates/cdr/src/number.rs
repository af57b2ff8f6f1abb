//! Phone numbers as the canonical CDR carries them: E.164 (`+` and digits) or a short code.

use std::fmt;

use compact_str::CompactString;

/// E.164 allows at most 15 digits after the `+`.
const MAX_E164_DIGITS: usize = 15;
/// Short codes (`110`, `116123`, `11833`) are short; anything longer is a national number
/// sent without normalisation, which the switch must fix.
const MAX_SHORT_CODE_DIGITS: usize = 6;

/// A validated number: `+4930901820` or a short code such as `116123`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(CompactString);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("is empty")]
    Empty,
    #[error("{0:?} contains characters other than a leading `+` and digits")]
    BadCharacter(String),
    #[error("{0:?} has more than 15 digits (E.164 limit)")]
    TooLong(String),
    #[error("{0:?} is too short for E.164 (country code and subscriber number)")]
    TooShort(String),
    #[error("{0:?} starts with 0 after `+`: E.164 country codes never do")]
    LeadingZero(String),
    #[error(
        "{0:?} keeps the national trunk 0 after +49: E.164 drops it (`+49 30…`, not `+49 030…`)"
    )]
    TrunkZero(String),
    #[error("{0:?} is neither E.164 (`+49…`) nor a short code of 2 to 6 digits")]
    NotE164(String),
}

impl PhoneNumber {
    pub fn parse(s: &str) -> Result<Self, NumberError> {
        if s.is_empty() {
            return Err(NumberError::Empty);
        }
        let (plus, digits) = match s.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NumberError::BadCharacter(s.to_owned()));
        }
        if plus {
            if digits.len() > MAX_E164_DIGITS {
                return Err(NumberError::TooLong(s.to_owned()));
            }
            if digits.len() < 3 {
                return Err(NumberError::TooShort(s.to_owned()));
            }
            if digits.starts_with('0') {
                return Err(NumberError::LeadingZero(s.to_owned()));
            }
            // Stored as given, `+49030…` would be rated, matched against the counselling list
            // and shown as a different number from `+4930…`: the switch must send E.164.
            if digits.starts_with("490") {
                return Err(NumberError::TrunkZero(s.to_owned()));
            }
            if let Some(code) = german_short_code(digits) {
                return Ok(PhoneNumber(code.into()));
            }
        } else if digits.len() < 2 || digits.len() > MAX_SHORT_CODE_DIGITS {
            return Err(NumberError::NotE164(s.to_owned()));
        }
        Ok(PhoneNumber(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> CompactString {
        self.0
    }

    pub fn is_e164(&self) -> bool {
        self.0.starts_with('+')
    }
}

/// The short code behind E.164 digits (without the `+`) such as `49112` or `49116123`.
///
/// Germany's 11x range holds only short codes (110, 112, 115, 116xxx, 118xx), and SBCs that
/// normalise everything to E.164 send them as `+49112`: kept so, an emergency call was rated as
/// a landline call and printed as `0112`. One number, one form: the short code. The counselling
/// list normalises its entries by the same rule, or `+49 116 123` there would never match.
pub fn german_short_code(e164_digits: &str) -> Option<&str> {
    e164_digits
        .strip_prefix("49")
        .filter(|c| c.starts_with("11") && (3..=MAX_SHORT_CODE_DIGITS).contains(&c.len()))
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, ok: bool) {
        assert_eq!(PhoneNumber::parse(input).is_ok(), ok, "{input}");
    }

    #[test]
    fn accepts_e164_and_short_codes() {
        check("+4930901820", true);
        check("+4915112345678", true);
        check("110", true);
        check("116123", true);
        check("+491234567890123", true);
    }

    #[test]
    fn german_short_codes_in_e164_become_the_short_code() {
        for (input, expected) in [
            ("+49110", "110"),
            ("+49112", "112"),
            ("+49115", "115"),
            ("+49116117", "116117"),
            ("+49116123", "116123"),
            ("+4911833", "11833"),
            // Not short codes: left as they are.
            ("+4930110", "+4930110"),
            ("+491123456789", "+491123456789"),
            ("+44112", "+44112"),
        ] {
            assert_eq!(
                PhoneNumber::parse(input).unwrap().as_str(),
                expected,
                "{input}"
            );
        }
        assert!(!PhoneNumber::parse("+49112").unwrap().is_e164());
    }

    #[test]
    fn rejects_everything_else() {
        check("", false);
        check("+", false);
        check("+49 30 901820", false);
        check("030901820", false);
        check("+0301234", false);
        check("+490301234", false);
        check("+490116123", false);
        check("+4912345678901234", false);
        check("1", false);
        check("*97", false);
        check("+4930901820\u{0}", false);
    }
}
