//! Numbers as switches write them → E.164, a short code, or something internal to the switch.
//!
//! Rule, in order, for what is left after stripping a SIP/tel URI and visual separators:
//! 1. `*31#`/`#31#` before a number (caller id shown or hidden for this call) is dropped;
//!    then `*…`/`#…` (feature codes such as `*97`) → internal;
//! 2. `+` and digits → E.164;
//! 3. no digits at all, or letters (`anonymous`, Asterisk's `s`) → not a number;
//! 4. a configured short code: exactly (`110`, `115`) or by its form (`116` + 3 digits,
//!    `118` + 2 or 3 digits under country code 49; `116xxx` written out) → short code;
//! 5. at most `extension_max_digits` digits (`1001`) → extension: internal;
//! 6. starting with the international prefix (`0033…`) → `+33…`;
//! 7. starting with the trunk prefix (`030…`) → `+49 30…` with the source's country code;
//! 8. starting with the country code and long enough for a subscriber number (`4930…`, E.164
//!    without `+`, as many carriers send it) → `+4930…`;
//! 9. anything else cannot be placed and is an error.

use evn_cdr::{NumberError, PhoneNumber};
use evn_config::NumberPlan;

/// Digits after the country code that an E.164 number written without `+` has at least.
const MIN_NATIONAL_DIGITS: usize = 6;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Num {
    /// E.164 or a national short code: a destination the network routes.
    External(PhoneNumber),
    /// An extension or feature code of the switch itself.
    Internal(String),
    /// Not a number at all (`anonymous`, empty, Asterisk's `s` extension).
    Unknown,
}

impl Num {
    pub fn e164(&self) -> Option<&str> {
        match self {
            Num::External(n) if n.is_e164() => Some(n.as_str()),
            _ => None,
        }
    }
}

/// Why a number could not be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unplaceable {
    Number(NumberError),
    /// Digits that are neither an extension, nor national, nor international under the plan.
    NoRule(String),
}

impl std::fmt::Display for Unplaceable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unplaceable::Number(e) => write!(f, "{e}"),
            Unplaceable::NoRule(s) => write!(
                f,
                "{s:?} is neither an extension, a short code, nor a national or international number under the source's number plan"
            ),
        }
    }
}

pub fn normalise(raw: &str, plan: &NumberPlan) -> Result<Num, Unplaceable> {
    let mut s = raw.trim();
    for scheme in ["sip:", "sips:", "tel:"] {
        if s.get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
        {
            s = &s[scheme.len()..];
        }
    }
    // `+4930…@realm;user=phone`: the user part is the number.
    let s = s.split(['@', ';']).next().unwrap_or("");
    // `+49 (0)30 …`: the bracketed trunk 0 is dialled nationally only.
    let s: String = s
        .replace("(0)", "")
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '/' | '(' | ')' | '.' | '\u{a0}'))
        .collect();
    // `*31#` / `#31#` before a number show or hide the caller id for this one call
    // (German networks); the call still goes to the number after it.
    let s = match s.strip_prefix("*31#").or_else(|| s.strip_prefix("#31#")) {
        Some(rest) if !rest.is_empty() => rest.to_owned(),
        _ => s,
    };
    if s.starts_with('*') || s.starts_with('#') {
        return Ok(Num::Internal(s));
    }
    if let Some(rest) = s.strip_prefix('+') {
        return PhoneNumber::parse(&format!("+{rest}"))
            .map(Num::External)
            .map_err(Unplaceable::Number);
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Num::Unknown);
    }
    let e164 = |digits: String| {
        PhoneNumber::parse(&format!("+{digits}"))
            .map(Num::External)
            .map_err(Unplaceable::Number)
    };
    if is_short_code(&s, plan) {
        return PhoneNumber::parse(&s)
            .map(Num::External)
            .map_err(Unplaceable::Number);
    }
    if s.len() <= plan.extension_max_digits {
        return Ok(Num::Internal(s));
    }
    if let Some(rest) = s.strip_prefix(plan.international_prefix.as_str()) {
        return e164(rest.to_owned());
    }
    if !plan.trunk_prefix.is_empty() {
        if let Some(rest) = s.strip_prefix(plan.trunk_prefix.as_str()) {
            return e164(format!("{}{rest}", plan.country_code));
        }
    }
    if s.starts_with(plan.country_code.as_str())
        && s.len() >= plan.country_code.len() + MIN_NATIONAL_DIGITS
    {
        return e164(s);
    }
    Err(Unplaceable::NoRule(s))
}

/// Exact matches only: as prefixes, `110`, `112` … swallowed the four-digit extensions
/// 1100–1199 that many PBX plans use.
fn is_short_code(digits: &str, plan: &NumberPlan) -> bool {
    plan.short_codes.iter().any(|code| {
        let head = code.trim_end_matches('x');
        let rest = digits.strip_prefix(head).map_or(usize::MAX, str::len);
        let wildcards = code.len() - head.len();
        match (wildcards, plan.country_code.as_str(), head) {
            (0, "49", "116") => rest == 3,
            (0, "49", "118") => rest == 2 || rest == 3,
            (n, _, _) => rest == n,
        }
    })
}

/// The number inside an Asterisk caller id such as `"Müller" <+4930901820>`.
pub fn in_angle_brackets(clid: &str) -> Option<&str> {
    let start = clid.rfind('<')?;
    let end = clid[start..].find('>')? + start;
    Some(clid[start + 1..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn de() -> NumberPlan {
        NumberPlan {
            country_code: "49".into(),
            trunk_prefix: "0".into(),
            international_prefix: "00".into(),
            extension_max_digits: 5,
            short_codes: ["110", "112", "115", "116", "118"]
                .map(String::from)
                .to_vec(),
        }
    }

    fn check(raw: &str, want: &str) {
        let got = match normalise(raw, &de()) {
            Ok(Num::External(n)) => n.as_str().to_owned(),
            Ok(Num::Internal(s)) => format!("internal {s}"),
            Ok(Num::Unknown) => "unknown".into(),
            Err(e) => format!("error {e}"),
        };
        assert_eq!(got, want, "{raw:?}");
    }

    #[test]
    fn every_notation_of_the_issue() {
        check("+4930901820", "+4930901820");
        check("4930901820", "+4930901820");
        check("030901820", "+4930901820");
        check("030 90 18-20", "+4930901820");
        check("0049 30 901820", "+4930901820");
        check("+49 (0)30 901820", "+4930901820");
        check("0033123456789", "+33123456789");
        check("015112345678", "+4915112345678");
        check(
            "sip:+4915112345678@sbc.example.net;user=phone",
            "+4915112345678",
        );
        check("tel:+4930901820", "+4930901820");
        check("1001", "internal 1001");
        check("*97", "internal *97");
        check("#31#", "internal #31#");
        check("*31#015112345678", "+4915112345678");
        check("#31#+4930901820", "+4930901820");
        check("*31#1001", "internal 1001");
        check("*31#*97", "internal *97");
        check("110", "110");
        check("112", "112");
        check("116123", "116123");
        check("11833", "11833");
        check("anonymous", "unknown");
        check("s", "unknown");
        check("", "unknown");
        check("901820", "error \"901820\" is neither an extension, a short code, nor a national or international number under the source's number plan");
        assert!(matches!(
            normalise("000123456", &de()),
            Err(Unplaceable::Number(_))
        ));
        assert!(matches!(
            normalise("+0301", &de()),
            Err(Unplaceable::Number(_))
        ));
    }

    #[test]
    fn short_codes_are_exact_and_extensions_next_to_them_stay_internal() {
        for code in [
            "110", "112", "115", "116000", "116117", "116123", "11833", "118338",
        ] {
            check(code, code);
        }
        for ext in [
            "1105", "1120", "1100", "1150", "1160", "11611", "1180", "11",
        ] {
            check(ext, &format!("internal {ext}"));
        }
        // Too long for a short code or an extension, and not a national number.
        assert!(normalise("1161234", &de()).is_err());
        assert!(normalise("1183345", &de()).is_err());
        let plan = NumberPlan {
            short_codes: ["110", "116xxx", "19222"].map(String::from).to_vec(),
            ..de()
        };
        let kind = |s: &str| match normalise(s, &plan) {
            Ok(Num::External(_)) => "short",
            Ok(Num::Internal(_)) => "internal",
            _ => "other",
        };
        assert_eq!(
            ["110", "116117", "19222", "1161", "11833", "1922"].map(kind),
            ["short", "short", "short", "internal", "internal", "internal"]
        );
    }

    #[test]
    fn a_plan_without_trunk_prefix_and_longer_extensions() {
        let plan = NumberPlan {
            country_code: "43".into(),
            trunk_prefix: String::new(),
            international_prefix: "00".into(),
            extension_max_digits: 6,
            short_codes: Vec::new(),
        };
        assert_eq!(
            normalise("100100", &plan),
            Ok(Num::Internal("100100".into()))
        );
        assert_eq!(
            normalise("431234567", &plan).unwrap().e164(),
            Some("+431234567")
        );
    }

    #[test]
    fn caller_id_in_angle_brackets() {
        assert_eq!(
            in_angle_brackets("\"Müller\" <+4930901820>"),
            Some("+4930901820")
        );
        assert_eq!(in_angle_brackets("\"a <b>\" <1001>"), Some("1001"));
        assert_eq!(in_angle_brackets("1001"), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = normalise(&s, &de());
        }
    }
}
