//! `counselling-numbers.txt`: the Bundesnetzagentur's list of anonymous counselling services,
//! whose calls must never be recognisable in an EVN. Numbers are normalised on load, so a listed
//! `0800 111 0 111` matches a CDR's `+498001110111`.

use rustc_hash::FxHashSet;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::ConfigError;

#[derive(Debug, Clone, Default)]
pub struct CounsellingList {
    numbers: FxHashSet<String>,
    /// Same numbers with their last three digits masked as `xxx`, to recognise shortened rows.
    masked: FxHashSet<String>,
    /// `<declared>+sha256:<digest>`: what an EVN records as the list version it used.
    pub version: String,
    /// Numbers the list names (`numbers` also holds each short code's E.164 form).
    listed: usize,
}

/// Normalises a number in any common notation to E.164 (`+49…`) or a short code.
/// German national (`0800 111 0 111`), international (`0049…`, `+49 (0)30 …`) and short codes.
pub fn normalise_number(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let plus = trimmed.starts_with('+');
    let mut digits: String = trimmed
        .replace("(0)", "")
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '/' | '(' | ')' | '.' | '\u{a0}'))
        .collect();
    if plus {
        digits.remove(0);
    }
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let e164 = if plus {
        format!("+{digits}")
    } else if let Some(intl) = digits.strip_prefix("00") {
        format!("+{intl}")
    } else if let Some(national) = digits.strip_prefix('0') {
        format!("+49{national}")
    } else {
        return Some(digits);
    };
    // `+49 0800 …`: the national trunk 0 kept after the country code, a common slip.
    let e164 = match e164.strip_prefix("+490") {
        Some(rest) => format!("+49{}", rest.trim_start_matches('0')),
        None => e164,
    };
    // `+49 116 123`, `0116 123`: the short code, as ingest stores it (`PhoneNumber::parse`).
    Some(match evn_cdr::german_short_code(&e164[1..]) {
        Some(code) => code.to_owned(),
        None => e164,
    })
}

/// Whether [`normalise_number`] would return `number` unchanged: E.164 (`+` and digits) or a
/// short code (digits, no leading `0`). Ingest checks every stored call's number, nearly always
/// E.164: no need to normalise (three allocations) what is normal already.
fn is_normalised(number: &str) -> bool {
    let digits = number.strip_prefix('+').unwrap_or(number);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (number.starts_with('+') || !digits.starts_with('0'))
        && !number.starts_with("+490")
        && (!number.starts_with('+') || evn_cdr::german_short_code(digits).is_none())
}

/// Masks the last three digits as `xxx` (the EVN shortening rule).
pub(crate) fn mask(number: &str) -> String {
    let keep = number.len().saturating_sub(3);
    format!("{}{}", &number[..keep], "x".repeat(number.len() - keep))
}

impl CounsellingList {
    /// True if `number`, as stored (E.164, short code, or shortened with `xxx`), is a listed
    /// counselling service. A shortened number is matched against the masked list: when in
    /// doubt a row is hidden, never shown.
    pub fn contains(&self, number: &str) -> bool {
        if number.ends_with('x') {
            let prefix = number.trim_end_matches('x');
            let masked = format!("{prefix}{}", "x".repeat(number.len() - prefix.len()));
            return self.masked.contains(&masked)
                || normalise_number(prefix)
                    .is_some_and(|n| self.masked.contains(&mask(&format!("{n}000"))));
        }
        self.numbers.contains(number)
            || (!is_normalised(number)
                && normalise_number(number).is_some_and(|n| self.numbers.contains(&n)))
    }

    /// Whether a stored call is a counselling call by this list, decided on the number as
    /// stored. `flagged`: ingest's flag; `list_of_flag`: the list version ingest set it with
    /// (the Parquet file's `evn.counselling_version`), if known. A number stored in full is
    /// looked up exactly, in any notation. A shortened number (`+49301234xxx`) cannot be:
    /// ingest flagged it on the full number, so its flag is the answer while this list is the
    /// one ingest used; after a list update, or for files that do not say, it is hidden if any
    /// listed number shortens to the same, since a number listed since may be behind it (when
    /// in doubt a row is hidden, never shown). Matching every shortened number that way hid
    /// ordinary calls into a listed number's thousand-block (`030 1234999` beside `030 1234567`).
    pub fn hides(&self, stored_number: &str, flagged: bool, list_of_flag: Option<&str>) -> bool {
        if flagged {
            return true;
        }
        if stored_number.ends_with('x') && list_of_flag == Some(self.version.as_str()) {
            return false;
        }
        self.contains(stored_number)
    }

    /// How many numbers the list names.
    pub fn len(&self) -> usize {
        self.listed
    }

    pub fn is_empty(&self) -> bool {
        self.numbers.is_empty()
    }

    /// Builds a list from numbers in any notation (tests, benchmarks).
    pub fn from_numbers<'a>(numbers: impl IntoIterator<Item = &'a str>, version: &str) -> Self {
        let mut numbers: FxHashSet<String> =
            numbers.into_iter().filter_map(normalise_number).collect();
        let listed = numbers.len();
        // A short code (`116 123`) also arrives in E.164 (`+49116123`) from switches that write
        // every number that way. German area codes never start with 1, so `+491…` this short
        // is a short code and nothing else.
        let e164: Vec<String> = numbers
            .iter()
            .filter(|n| !n.starts_with('+'))
            .map(|n| format!("+49{n}"))
            .collect();
        numbers.extend(e164);
        let masked = numbers.iter().map(|n| mask(n)).collect();
        CounsellingList {
            numbers,
            masked,
            version: version.to_owned(),
            listed,
        }
    }

    pub(crate) fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut declared = None;
        let mut numbers = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let (content, comment) = match line.split_once('#') {
                Some((c, comment)) => (c.trim(), Some(comment.trim())),
                None => (line.trim(), None),
            };
            if let Some(v) = comment.and_then(|c| c.strip_prefix("version:")) {
                declared = Some(v.trim().to_owned());
            }
            if content.is_empty() {
                continue;
            }
            let n = normalise_number(content).ok_or_else(|| {
                ConfigError::new(
                    path,
                    Some(i + 1),
                    format!("{content:?} is not a phone number (E.164, national or short code)"),
                )
            })?;
            numbers.push(n);
        }
        // The Bundesnetzagentur's list is never empty; an empty file is a truncated download or
        // the wrong file, and every EVN made with it would show counselling calls.
        if numbers.is_empty() {
            return Err(ConfigError::new(
                path,
                None,
                "lists no numbers: the Bundesnetzagentur's list of counselling services is never empty (a truncated download, or the wrong file?)",
            ));
        }
        let digest = hex::encode(&Sha256::digest(text.as_bytes())[..6]);
        let version = format!(
            "{}+sha256:{digest}",
            declared.as_deref().unwrap_or("unversioned")
        );
        Ok(Self::from_numbers(
            numbers.iter().map(String::as_str),
            &version,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> CounsellingList {
        CounsellingList::parse(
            Path::new("counselling-numbers.txt"),
            "# version: 2026-Q4\n0800 111 0 111  # TelefonSeelsorge\n116 123\n+49 30 1234567\n",
        )
        .unwrap()
    }

    /// The shortcut is taken exactly where normalising would change nothing.
    #[test]
    fn normalised_numbers_are_recognised_without_normalising() {
        for n in [
            "+498001110111",
            "116123",
            "+49116123",
            "+49110",
            "08001110111",
            "0049301234",
            "+",
            "",
            "+49 30 1",
            "+49a",
            "0",
            "7",
            "+0",
        ] {
            assert_eq!(
                is_normalised(n),
                normalise_number(n).as_deref() == Some(n),
                "{n:?}"
            );
        }
    }

    #[test]
    fn matches_every_notation() {
        let l = list();
        assert!(l.version.starts_with("2026-Q4+sha256:"));
        assert_eq!(l.len(), 3);
        for n in [
            "+498001110111",
            "08001110111",
            "0800 111 0 111",
            "00498001110111",
            "116123",
            "+498001110xxx",
            "116xxx",
            "+49116123",
            "+490116123",
            "+4908001110111",
            "0049116123",
            "+49116xxx",
            "+490116xxx",
            "+4930 1234567",
            "+49 (0)30 1234567",
            "+49030 1234567",
        ] {
            assert!(l.contains(n), "{n}");
        }
        assert!(l.contains("+49301234xxx"));
        assert!(!l.contains("+498001110222"));
        assert!(!l.contains("116111"));
        assert!(!l.contains("+49116111"));
        assert!(!l.contains("+491161231"));
        assert!(!l.contains("+4930901820"));
    }

    /// Ingest stores `+49116123` as the short code `116123`: a list that writes it in E.164 or
    /// nationally must still match it.
    #[test]
    fn short_codes_listed_in_any_notation_match_the_stored_short_code() {
        let l = CounsellingList::parse(
            Path::new("counselling-numbers.txt"),
            "+49 116 123\n0116 111\n0049 116117\n",
        )
        .unwrap();
        assert_eq!(l.len(), 3);
        for n in [
            "116123",
            "116111",
            "116117",
            "+49116123",
            "0116111",
            "116xxx",
        ] {
            assert!(l.contains(n), "{n}");
        }
        assert!(!l.contains("116006"));
        assert!(l.hides("116123", false, Some(&l.version)));
    }

    /// A shortened number is decided by ingest's flag while the list is the one ingest used,
    /// by the masked list otherwise; full numbers always by the list.
    #[test]
    fn hides_trusts_the_flag_of_a_shortened_number_only_under_the_same_list() {
        let l = list();
        let same = Some(l.version.as_str());
        // `+49301234xxx` shortens the listed 030 1234567 and ordinary numbers beside it.
        assert!(!l.hides("+49301234xxx", false, same));
        assert!(l.hides("+49301234xxx", true, same));
        assert!(l.hides("+49301234xxx", false, Some("2026-Q3+sha256:old")));
        assert!(l.hides("+49301234xxx", false, None));
        // Full numbers: the list decides, whatever the file says.
        assert!(l.hides("+49301234567", false, same));
        assert!(!l.hides("+49301234999", false, None));
        assert!(l.hides("+4915112345678", true, same));
    }

    #[test]
    fn an_empty_list_is_an_error() {
        for text in ["", "# version: 2026-Q4\n\n# nothing\n"] {
            let e = CounsellingList::parse(Path::new("c.txt"), text).unwrap_err();
            assert!(e.to_string().contains("lists no numbers"), "{e}");
        }
    }

    #[test]
    fn bad_line_is_named() {
        let e = CounsellingList::parse(Path::new("c.txt"), "116123\nhotline\n").unwrap_err();
        assert_eq!(e.line, Some(2));
    }
}
