//! German formats for the EVN: `24.11.2026`, `14:05:09` (Europe/Berlin), `0:02:02`,
//! `1.234,56 €`, and dialled numbers in national notation (`0151 12345678`).

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, Offset, TimeZone, Timelike, Utc};
use chrono_tz::{Europe::Berlin, Tz};
use rust_decimal::{Decimal, RoundingStrategy};

use evn_rating::BillingMonth;

/// `24.11.2026`
pub fn date(d: NaiveDate) -> String {
    // Written out rather than through `format("%d.%m.%Y")`: that parses the pattern on
    // every call, and an EVN formats two dates and times per row.
    format!("{:02}.{:02}.{:04}", d.day(), d.month(), d.year())
}

/// An instant on the Europe/Berlin wall clock, converted once for its date and its time.
#[derive(Debug, Clone, Copy)]
pub struct Local(DateTime<Tz>);

impl Local {
    pub fn of(t: DateTime<Utc>) -> Local {
        Local(t.with_timezone(&Berlin))
    }

    /// `24.11.2026`
    pub fn date(&self) -> String {
        date(self.0.date_naive())
    }

    /// `14:05:09`. In the hour that the autumn change to standard time repeats, `02:30:00 A`
    /// (its first pass, summer time) or `02:30:00 B` (its second, MEZ): two calls an hour
    /// apart would otherwise print the same time, and the later one could not be told from
    /// the earlier. A and B are the PTB's names for the two passes (2A, 2B); the EVN explains
    /// them in a notice ([`crate::EvnDocument::notices`]).
    pub fn time(&self) -> String {
        let hms = format!(
            "{:02}:{:02}:{:02}",
            self.0.hour(),
            self.0.minute(),
            self.0.second()
        );
        match self.repeated_hour() {
            Some(pass) => format!("{hms} {pass}"),
            None => hms,
        }
    }

    /// `Some('A')` or `Some('B')` for an instant in the first or second pass of the repeated
    /// autumn hour, `None` for every other.
    pub fn repeated_hour(&self) -> Option<char> {
        // The only local hour Berlin's rules repeat is 02:00–03:00 on an October night: a
        // cheap test first, so that an EVN's rows do not each pay a time-zone lookup.
        if self.0.month() != 10 || self.0.hour() != 2 {
            return None;
        }
        match Berlin.from_local_datetime(&self.0.naive_local()) {
            LocalResult::Ambiguous(..) => {
                let summer = self.0.offset().fix().local_minus_utc() > 3600;
                Some(if summer { 'A' } else { 'B' })
            }
            _ => None,
        }
    }
}

/// `November 2026`
pub fn month_name(m: BillingMonth) -> String {
    const NAMES: [&str; 12] = [
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
    ];
    format!("{} {}", NAMES[(m.month() - 1) as usize], m.year())
}

/// The Europe/Berlin calendar date of an instant, as `24.11.2026`.
pub fn local_date(t: DateTime<Utc>) -> String {
    Local::of(t).date()
}

/// The Europe/Berlin wall-clock time of an instant, `14:05:09`; in the repeated hour of the
/// autumn DST change `02:30:00 A` (summer time) and `02:30:00 B` (standard time).
pub fn local_time(t: DateTime<Utc>) -> String {
    Local::of(t).time()
}

/// `h:mm:ss`, hours not capped at 24 (a call can last longer than a day in theory).
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Rounds to cents, half away from zero: only ever done for printing.
pub fn cents(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// `1.234,56 €`: German grouping and decimal comma, rounded to cents half away from zero.
pub fn money(amount: Decimal) -> String {
    let mut rounded = cents(amount);
    rounded.rescale(2);
    let negative = rounded.is_sign_negative() && !rounded.is_zero();
    let text = rounded.abs().to_string();
    let (int, frac) = text.split_once('.').unwrap_or((&text, "00"));
    let mut grouped = String::with_capacity(int.len() + int.len() / 3 + 8);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push('.');
        }
        grouped.push(c);
    }
    format!("{}{grouped},{frac} €", if negative { "-" } else { "" })
}

/// German area codes (after the trunk `0`) with two digits: Berlin, Hamburg, Frankfurt,
/// München.
const TWO_DIGIT_AREA_CODES: [&str; 4] = ["30", "40", "69", "89"];
/// German area codes with three digits: the larger cities. German area codes are prefix-free,
/// so a number starting with one of these has exactly this area code. Other area codes have
/// four or five digits and no simple rule separates them from the subscriber number, so
/// those numbers print unsplit rather than wrongly split.
const THREE_DIGIT_AREA_CODES: [&str; 84] = [
    "201", "202", "203", "208", "209", "211", "212", "214", "221", "228", "231", "234", "241",
    "251", "261", "271", "281", "291", "331", "335", "340", "341", "345", "351", "355", "361",
    "365", "371", "375", "381", "385", "391", "395", "421", "431", "441", "451", "461", "471",
    "481", "491", "511", "521", "531", "541", "551", "561", "571", "581", "591", "611", "621",
    "631", "641", "651", "661", "671", "681", "711", "721", "731", "741", "751", "761", "771",
    "781", "791", "821", "831", "841", "851", "861", "871", "881", "906", "911", "921", "931",
    "941", "951", "961", "971", "981", "991",
];
/// National prefixes whose block is three digits: mobile (`015x`, `016x`, `017x`), the
/// service ranges (`0800`, `0180`, `0900`) and personal numbers (`0700`).
const THREE_DIGIT_BLOCKS: [&str; 7] = ["15", "16", "17", "800", "180", "900", "700"];

/// Length of the country code at the start of an international number (ITU-T E.164: codes
/// are prefix-free; zones 1 and 7 have one digit, each other zone lists its two-digit codes,
/// the rest of the zone has three).
fn country_code_len(digits: &str) -> Option<usize> {
    /// Per first digit 2–9: the second digits that make a two-digit code.
    const TWO_DIGIT: [&[u8]; 8] = [
        b"07",        // 20 Egypt, 27 South Africa
        b"0123469",   // 30–34, 36, 39
        b"013456789", // 40, 41, 43–49
        b"12345678",  // 51–58
        b"0123456",   // 60–66
        b"",          // 7: one digit
        b"1246",      // 81, 82, 84, 86
        b"0123458",   // 90–95, 98
    ];
    let b = digits.as_bytes();
    let len = match b.first()? {
        b'1' | b'7' => 1,
        d @ b'2'..=b'9' => {
            if b.get(1)
                .is_some_and(|s| TWO_DIGIT[usize::from(d - b'2')].contains(s))
            {
                2
            } else {
                3
            }
        }
        _ => return None,
    };
    (digits.len() > len).then_some(len)
}

/// A dialled or calling number as a German customer reads and dials it:
/// - `+4915112345678` → `0151 12345678`; shortened `+4915112345xxx` → `0151 12345xxx`;
/// - `+4930901820` → `030 901820`, `+49221123456` → `0221 123456` (area codes of two and
///   three digits), `+49800…` → `0800 …`; other German numbers `0` and the national digits,
///   unsplit (`02234123456`);
/// - foreign numbers as dialled from Germany, country code apart: `+33123456789` →
///   `0033 123456789` (no leading `+`, which a spreadsheet would take for a formula);
/// - short codes as they are (`110`).
pub fn number(n: &str) -> String {
    let Some(digits) = n.strip_prefix('+') else {
        return n.to_owned();
    };
    let Some(national) = digits.strip_prefix("49") else {
        return match country_code_len(digits) {
            Some(k) => format!("00{} {}", &digits[..k], &digits[k..]),
            None => format!("00{digits}"),
        };
    };
    if national.is_empty() {
        return n.to_owned();
    }
    let starts = |list: &[&str]| list.iter().any(|p| national.starts_with(p));
    let split = if starts(&THREE_DIGIT_BLOCKS) || starts(&THREE_DIGIT_AREA_CODES) {
        Some(3)
    } else if starts(&TWO_DIGIT_AREA_CODES) {
        Some(2)
    } else {
        None
    };
    match split {
        Some(k) if national.len() > k => format!("0{} {}", &national[..k], &national[k..]),
        _ => format!("0{national}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn check(f: impl Fn(&str) -> String, input: &str, expected: &str) {
        assert_eq!(f(input), expected, "{input}");
    }

    #[test]
    fn money_is_german_and_rounded_half_away_from_zero() {
        let m = |s: &str| money(Decimal::from_str(s).unwrap());
        assert_eq!(m("0"), "0,00 €");
        assert_eq!(m("0.0049"), "0,00 €");
        assert_eq!(m("0.0050"), "0,01 €");
        assert_eq!(m("0.3030"), "0,30 €");
        assert_eq!(m("1234.5649"), "1.234,56 €");
        assert_eq!(m("1234.565"), "1.234,57 €");
        assert_eq!(m("999.995"), "1.000,00 €");
        assert_eq!(m("1234567.1"), "1.234.567,10 €");
        assert_eq!(m("-0.005"), "-0,01 €");
        assert_eq!(m("-0.004"), "0,00 €");
        assert_eq!(m("100"), "100,00 €");
    }

    #[test]
    fn dates_times_and_durations() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        assert_eq!(date(d), "24.11.2026");
        let t = |s: &str| DateTime::<Utc>::from_str(s).unwrap();
        assert_eq!(local_time(t("2026-11-24T13:05:09Z")), "14:05:09");
        assert_eq!(local_time(t("2026-07-01T12:00:00Z")), "14:00:00");
        // Month boundary: still 31 October in Berlin, then 1 November.
        assert_eq!(local_date(t("2026-10-31T22:59:59Z")), "31.10.2026");
        assert_eq!(local_date(t("2026-10-31T23:00:00Z")), "01.11.2026");
        for (secs, expected) in [
            (0, "0:00:00"),
            (122, "0:02:02"),
            (3600, "1:00:00"),
            (25 * 3600 + 61, "25:01:01"),
            (-5, "0:00:00"),
        ] {
            assert_eq!(duration(secs), expected);
        }
    }

    #[test]
    fn autumn_dst_hour_happens_twice() {
        let t = |s: &str| DateTime::<Utc>::from_str(s).unwrap();
        // 00:30Z is 02:30 CEST; 01:30Z is 02:30 CET, an hour later: told apart as A and B.
        assert_eq!(local_time(t("2026-10-25T00:30:00Z")), "02:30:00 A");
        assert_eq!(local_time(t("2026-10-25T01:30:00Z")), "02:30:00 B");
        assert_eq!(local_date(t("2026-10-25T01:30:00Z")), "25.10.2026");
        // The edges of the two passes, and the hours around them, which are not repeated.
        assert_eq!(local_time(t("2026-10-24T23:59:59Z")), "01:59:59");
        assert_eq!(local_time(t("2026-10-25T00:00:00Z")), "02:00:00 A");
        assert_eq!(local_time(t("2026-10-25T00:59:59Z")), "02:59:59 A");
        assert_eq!(local_time(t("2026-10-25T01:00:00Z")), "02:00:00 B");
        assert_eq!(local_time(t("2026-10-25T01:59:59Z")), "02:59:59 B");
        assert_eq!(local_time(t("2026-10-25T02:00:00Z")), "03:00:00");
        // 02:30 on another October night is an ordinary time; so is 2027's change, a week
        // later in the month (31 October).
        assert_eq!(local_time(t("2026-10-18T00:30:00Z")), "02:30:00");
        assert_eq!(local_time(t("2027-10-31T00:30:00Z")), "02:30:00 A");
        assert_eq!(local_time(t("2027-10-31T01:30:00Z")), "02:30:00 B");
        // Spring: 01:00Z is 03:00 CEST, 02:00-03:00 never shows.
        assert_eq!(local_time(t("2026-03-29T00:59:59Z")), "01:59:59");
        assert_eq!(local_time(t("2026-03-29T01:00:00Z")), "03:00:00");
    }

    #[test]
    fn numbers_in_national_format() {
        for (input, expected) in [
            ("+4915112345678", "0151 12345678"),
            ("+4915112345xxx", "0151 12345xxx"),
            ("+4917612345678", "0176 12345678"),
            ("+4916012345678", "0160 12345678"),
            ("+4930901820", "030 901820"),
            ("+4989123456", "089 123456"),
            ("+49800111055", "0800 111055"),
            ("+49221123456", "0221 123456"),
            ("+4922112xxx", "0221 12xxx"),
            ("+4970012345678", "0700 12345678"),
            ("+492234123456", "02234123456"),
            ("+4933201123456", "033201123456"),
            ("+33123456789", "0033 123456789"),
            ("+3512123456xxx", "00351 2123456xxx"),
            ("+12125550xxx", "001 2125550xxx"),
            ("+79161234567", "007 9161234567"),
            ("+441632960123", "0044 1632960123"),
            ("+420212345678", "00420 212345678"),
            ("+8613812345678", "0086 13812345678"),
            ("+85223456789", "00852 23456789"),
            ("+2", "002"),
            ("110", "110"),
            ("116xxx", "116xxx"),
            ("+49", "+49"),
        ] {
            check(number, input, expected);
        }
    }
}
