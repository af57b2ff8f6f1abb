//! German formats for the EVN: `24.11.2026`, `14:05:09` (Europe/Berlin), `0:02:02`,
//! `1.234,56 €`, and dialled numbers in national notation (`0151 12345678`).

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Europe::Berlin;
use rust_decimal::{Decimal, RoundingStrategy};

use evn_rating::BillingMonth;

/// `24.11.2026`
pub fn date(d: NaiveDate) -> String {
    d.format("%d.%m.%Y").to_string()
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
    date(t.with_timezone(&Berlin).date_naive())
}

/// The Europe/Berlin wall-clock time of an instant, `14:05:09`. In the repeated hour of the
/// autumn DST change two different instants print the same time; rows stay in UTC order.
pub fn local_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&Berlin).format("%H:%M:%S").to_string()
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

/// German two-digit area codes (after the trunk `0`): the big cities, so the most common
/// landline numbers get a readable `030 901820`. Other area codes have 3 to 5 digits and no
/// simple rule separates them from the subscriber number, so those numbers print unsplit.
const TWO_DIGIT_AREA_CODES: [&str; 4] = ["30", "40", "69", "89"];
/// National prefixes whose block is three digits, printed with a space after four characters:
/// mobile (`015x`, `016x`, `017x`) and the service ranges (`0800`, `0180`, `0900`).
const THREE_DIGIT_BLOCKS: [&str; 6] = ["15", "16", "17", "800", "180", "900"];

/// A dialled or calling number as a German customer reads it:
/// - `+4915112345678` → `0151 12345678`; shortened `+4915112345xxx` → `0151 12345xxx`;
/// - `+4930901820` → `030 901820` (Berlin, Hamburg, Frankfurt, München), `+49800…` → `0800 …`;
/// - other German numbers → `0` and the national digits, unsplit (`0221123456`);
/// - foreign E.164 numbers stay international (`+33123456789`), short codes as they are (`110`).
pub fn number(n: &str) -> String {
    let Some(national) = n.strip_prefix("+49") else {
        return n.to_owned();
    };
    if national.is_empty() {
        return n.to_owned();
    }
    let split = if THREE_DIGIT_BLOCKS.iter().any(|p| national.starts_with(p)) {
        Some(3)
    } else if TWO_DIGIT_AREA_CODES.iter().any(|p| national.starts_with(p)) {
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
        // 00:30Z is 02:30 CEST; 01:30Z is 02:30 CET, an hour later.
        assert_eq!(local_time(t("2026-10-25T00:30:00Z")), "02:30:00");
        assert_eq!(local_time(t("2026-10-25T01:30:00Z")), "02:30:00");
        assert_eq!(local_date(t("2026-10-25T01:30:00Z")), "25.10.2026");
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
            ("+49221123456", "0221123456"),
            ("+4922112xxx", "022112xxx"),
            ("+33123456789", "+33123456789"),
            ("+1212555xxxx", "+1212555xxxx"),
            ("110", "110"),
            ("116xxx", "116xxx"),
            ("+49", "+49"),
        ] {
            check(number, input, expected);
        }
    }
}
