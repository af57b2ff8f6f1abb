//! Rules checked against the shipped example configuration (fixtures/config).

use std::path::Path;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;

fn config() -> Config {
    Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/config")).unwrap()
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn cdr(customer: &str, called: &str, start: &str, seconds: i64) -> Cdr {
    let start_time = t(start);
    let answer = start_time + chrono::Duration::seconds(5);
    let json = serde_json::json!({
        "cdr_id": "c1", "switch_id": "fra1", "customer_id": customer,
        "calling_number": "+4930901820", "called_number": called, "direction": "outbound",
        "start_time": start, "answer_time": answer.to_rfc3339(),
        "end_time": (answer + chrono::Duration::seconds(seconds)).to_rfc3339(),
        "disposition": "answered"
    });
    evn_cdr::parse(json.to_string().as_bytes()).unwrap()
}

fn stored(outcome: Outcome) -> RatedCall {
    match outcome {
        Outcome::Store(call) => *call,
        other => panic!("expected a stored call, got {other:?}"),
    }
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

#[test]
fn billing_month_examples_from_domain() {
    let check = |instant: &str, month: &str| {
        assert_eq!(BillingMonth::of(t(instant)).to_string(), month, "{instant}")
    };
    check("2026-10-31T22:59:59Z", "2026-10");
    check("2026-10-31T23:00:00Z", "2026-11");
    check("2026-03-31T22:00:00Z", "2026-04");
    check("2026-03-31T21:59:59Z", "2026-03");
    check("2026-12-31T23:00:00Z", "2027-01");
    check("2026-11-30T23:30:00+00:00", "2026-12");
    check("2026-12-01T00:30:00+01:00", "2026-12");
    check("2026-12-01T00:30:00+02:00", "2026-11");
    // The repeated hour at the end of DST (2026-10-25, 02:00–03:00 local twice) stays in October.
    check("2026-10-25T00:30:00Z", "2026-10");
    check("2026-10-25T01:30:00Z", "2026-10");
}

#[test]
fn month_range_and_parse() {
    let m = BillingMonth::from_str("2026-10").unwrap();
    let (start, end) = m.utc_range();
    assert_eq!(start, t("2026-09-30T22:00:00Z"));
    assert_eq!(end, t("2026-10-31T23:00:00Z"));
    assert_eq!(m.last_day().to_string(), "2026-10-31");
    for bad in [
        "2026-13", "2026-1", "26-11", "2026/11", "", "2026-00", "abcd-ef",
    ] {
        assert!(BillingMonth::from_str(bad).is_err(), "{bad}");
    }
}

#[test]
fn mobile_call_is_rated_by_increment() {
    let cfg = config();
    // office_flat, mobile 0.1490/min, 60/1: 122 s → 122 s billed → 0.30297 → 0.3030.
    let call = stored(classify(
        cdr("K1001", "+4915112345678", "2026-11-10T08:15:02Z", 122),
        &cfg,
    ));
    assert_eq!(call.zone, "mobile");
    assert_eq!(call.duration_s, 122);
    assert_eq!(call.charge_eur, dec("0.3030"));
    assert_eq!(call.called_number, "+4915112345678");
    assert!(!call.shortened);
    // 20 s is billed as the first full minute.
    let call = stored(classify(
        cdr("K1001", "+4915112345678", "2026-11-10T08:15:02Z", 20),
        &cfg,
    ));
    assert_eq!(call.charge_eur, dec("0.1490"));
    // world 0.99, 60/60: 61 s → 2 minutes.
    let call = stored(classify(
        cdr("K1001", "+12125551234", "2026-11-10T08:15:02Z", 61),
        &cfg,
    ));
    assert_eq!(
        (call.zone.as_str(), call.charge_eur),
        ("world", dec("1.9800"))
    );
}

#[test]
fn charge_rounds_half_away_from_zero() {
    // 0.0290 × 1 s / 60 = 0.000483.. → 0.0005
    assert_eq!(charge(dec("0.0290"), 1), dec("0.0005"));
    // 0.0003 × 10 / 60 = 0.00005 exactly → 0.0001
    assert_eq!(charge(dec("0.0003"), 10), dec("0.0001"));
    assert_eq!(charge(dec("0.1490"), 0), dec("0"));
}

#[test]
fn flatrate_and_unanswered_are_skipped() {
    let cfg = config();
    assert_eq!(
        classify(
            cdr("K1001", "+4930111222", "2026-11-10T08:00:00Z", 60),
            &cfg
        ),
        Outcome::Skip(Skip::Flatrate)
    );
    // office_flat_mobile covers mobile too.
    assert_eq!(
        classify(
            cdr("K1003", "+4917612345678", "2026-11-10T08:00:00Z", 60),
            &cfg
        ),
        Outcome::Skip(Skip::Flatrate)
    );
    // office_basic has no flatrate: landline is stored.
    assert_eq!(
        stored(classify(
            cdr("K1002", "+4930111222", "2026-11-10T08:00:00Z", 60),
            &cfg
        ))
        .zone,
        "landline"
    );
    let mut busy = cdr("K1001", "+4915112345678", "2026-11-10T08:00:00Z", 60);
    busy.disposition = evn_cdr::Disposition::Busy;
    assert_eq!(classify(busy, &cfg), Outcome::Skip(Skip::Unanswered));
    let mut inbound = cdr("K1001", "+4915112345678", "2026-11-10T08:00:00Z", 60);
    inbound.direction = evn_cdr::Direction::Inbound;
    assert_eq!(
        classify(inbound.clone(), &cfg),
        Outcome::Skip(Skip::Inbound)
    );
    inbound.direction = evn_cdr::Direction::Internal;
    assert_eq!(classify(inbound, &cfg), Outcome::Skip(Skip::Internal));
}

#[test]
fn shortening_follows_the_row_in_force_at_local_start_date() {
    let cfg = config();
    // K1001 shortens from 2026-11-15 (Berlin). 2026-11-14T23:30Z is already the 15th in Berlin.
    let before = stored(classify(
        cdr("K1001", "+4915112345678", "2026-11-14T22:59:59Z", 60),
        &cfg,
    ));
    assert_eq!(before.called_number, "+4915112345678");
    let after = stored(classify(
        cdr("K1001", "+4915112345678", "2026-11-14T23:30:00Z", 60),
        &cfg,
    ));
    assert_eq!(after.called_number, "+4915112345xxx");
    assert!(after.shortened);
    // Rated on the full number: same charge either way.
    assert_eq!(before.charge_eur, after.charge_eur);
}

#[test]
fn unbillable_records_are_rejected_with_reason() {
    let cfg = config();
    let code = |o: Outcome| match o {
        Outcome::Reject(u) => u.code(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        code(classify(
            cdr("K9999", "+4915112345678", "2026-11-10T08:00:00Z", 60),
            &cfg
        )),
        "unknown_customer"
    );
    assert_eq!(
        code(classify(
            cdr("K1001", "+4915112345678", "2025-12-31T22:59:59Z", 60),
            &cfg
        )),
        "no_customer_row"
    );
    assert_eq!(
        code(classify(
            cdr("K1001", "999", "2026-11-10T08:00:00Z", 60),
            &cfg
        )),
        "no_zone"
    );
}

#[test]
fn counselling_calls_are_stored_and_flagged() {
    let cfg = config();
    // 0800 111 0 111 is freephone: stored at 0,00 € and flagged, never rendered.
    let call = stored(classify(
        cdr("K1002", "+498001110111", "2026-11-10T08:00:00Z", 60),
        &cfg,
    ));
    assert!(call.counselling);
    assert_eq!(call.charge_eur, Decimal::ZERO);
    // A listed ordinary landline number is chargeable; flagged even when shortened.
    let call = stored(classify(
        cdr("K1002", "+49301234567", "2026-11-10T08:00:00Z", 60),
        &cfg,
    ));
    assert_eq!(call.zone, "landline");
    assert!(call.counselling);
    let call = stored(classify(
        cdr("K1003", "116123", "2026-11-10T08:00:00Z", 60),
        &cfg,
    ));
    assert!(call.counselling);
    // A short code stays whole for a customer with shortened numbers (a public service,
    // not anyone's line); the row is hidden all the same.
    assert_eq!(call.called_number, "116123");
    // The same short code in E.164, as many switches write every number.
    let call = stored(classify(
        cdr("K1002", "+49116123", "2026-11-10T08:00:00Z", 60),
        &cfg,
    ));
    assert!(call.counselling);
}

#[test]
fn shorten_examples() {
    assert_eq!(shorten("+4915112345678"), "+4915112345xxx");
    // Short codes are public services, shown whole.
    assert_eq!(shorten("116117"), "116117");
    assert_eq!(shorten("110"), "110");
}

proptest! {
    #[test]
    fn shortening_hides_exactly_the_last_three_digits(digits in "[1-9][0-9]{3,14}") {
        let number = format!("+{digits}");
        let short = shorten(&number);
        prop_assert_eq!(short.len(), number.len());
        prop_assert_eq!(&short[..number.len() - 3], &number[..number.len() - 3]);
        prop_assert_eq!(&short[number.len() - 3..], "xxx");
    }

    #[test]
    fn every_instant_maps_to_exactly_one_billing_month(secs in 0i64..4_102_444_800) {
        let instant = DateTime::from_timestamp(secs, 0).unwrap();
        let month = BillingMonth::of(instant);
        let (start, end) = month.utc_range();
        prop_assert!(start <= instant && instant < end);
        prop_assert!(!(month.next().utc_range().0 <= instant && instant < month.next().utc_range().1));
        // `classify` takes the month from the Berlin date it looks the terms up by.
        prop_assert_eq!(BillingMonth::of_date(berlin_date(instant)), month);
    }

    /// The integer path agrees with dividing and rounding the `Decimal`, for rates of any
    /// scale (those with more than four decimals take the `Decimal` path).
    #[test]
    fn charge_is_the_rounded_decimal_quotient(mantissa in 0i64..100_000_000, scale in 0u32..=8, secs in 0i64..1_000_000) {
        let per_minute = Decimal::new(mantissa, scale);
        let reference = (per_minute * Decimal::from(secs) / Decimal::from(60))
            .round_dp_with_strategy(CHARGE_SCALE, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        let c = charge(per_minute, secs);
        prop_assert_eq!(c, reference);
        prop_assert_eq!(charge(-per_minute, secs), -reference);
    }

    #[test]
    fn charge_is_never_negative_and_has_four_decimals(cents in 0u32..100_000, secs in 0i64..100_000) {
        let c = charge(Decimal::new(i64::from(cents), 4), secs);
        prop_assert!(!c.is_sign_negative());
        prop_assert!(c.scale() <= 4);
    }
}

/// The billing run's re-rating: today's terms at the call's start decide the charge, the
/// flatrate and shortening, today's zones the zone of a number stored in full; the duration
/// stays; what cannot be undone is not.
#[test]
fn rerate_applies_the_terms_in_force_at_the_start() {
    let cfg = config();
    let mut call = stored(classify(
        cdr("K1002", "+4915112345678", "2026-11-10T08:00:00Z", 125),
        &cfg,
    ));
    assert_eq!(call.charge_eur, dec("0.3729"));
    // A stale charge (from an older tariff) is replaced; everything else is kept.
    call.charge_eur = dec("9.9999");
    let again = rerate(call.clone(), &cfg).unwrap();
    assert_eq!(again.charge_eur, dec("0.3729"));
    assert_eq!((again.zone.as_str(), again.duration_s), ("mobile", 125));
    assert_eq!(again.called_number, "+4915112345678");
    // K1001 shortens from 15 November: a call stored in full is shortened, never unshortened.
    let mut k1001 = call.clone();
    k1001.customer_id = "K1001".into();
    k1001.start_time = t("2026-11-20T08:00:00Z");
    let shortened = rerate(k1001.clone(), &cfg).unwrap();
    assert_eq!(shortened.called_number, "+4915112345xxx");
    assert!(shortened.shortened);
    k1001.start_time = t("2026-11-10T08:00:00Z");
    let mut stays = k1001.clone();
    stays.called_number = "+4915112345xxx".into();
    stays.shortened = true;
    assert_eq!(
        rerate(stays.clone(), &cfg).unwrap().called_number,
        "+4915112345xxx"
    );
    // K1003's plan covers mobile calls: not billed at all.
    let mut k1003 = call.clone();
    k1003.customer_id = "K1003".into();
    assert!(rerate(k1003, &cfg).is_none());
    // Zoned when 0137 still fell into `+49` (landline), before the example tariffs gave it to
    // `service`: a number stored in full is zoned and charged by today's `[zones]`...
    let mut televoting = call.clone();
    televoting.called_number = "+4913712345".into();
    televoting.zone = "landline".into();
    let again = rerate(televoting.clone(), &cfg).unwrap();
    assert_eq!(
        (again.zone.as_str(), again.charge_eur),
        ("service", dec("0.4200"))
    );
    // ...one stored shortened keeps its zone: its last digits are gone.
    televoting.called_number = "+4913712xxx".into();
    televoting.shortened = true;
    let kept = rerate(televoting, &cfg).unwrap();
    assert_eq!(
        (kept.zone.as_str(), kept.charge_eur),
        ("landline", dec("0.0604"))
    );
    // Before the customer's first row: left as stored.
    let mut early = call;
    early.start_time = t("2025-06-01T08:00:00Z");
    early.charge_eur = dec("9.9999");
    assert_eq!(rerate(early.clone(), &cfg), Some(early));
}

/// The example tariffs rate every German short code: 115 at the landline price (and under a
/// landline flatrate), 118xx directory enquiries at their own zone's price, 116xxx free.
#[test]
fn example_tariffs_rate_the_authorities_and_directory_short_codes() {
    let cfg = config();
    let at = |customer, number| classify(cdr(customer, number, "2026-11-10T08:00:00Z", 90), &cfg);
    let c = stored(at("K1002", "115"));
    assert_eq!(
        (c.zone.as_str(), c.charge_eur),
        ("landline", Decimal::new(435, 4))
    );
    let c = stored(at("K1002", "11833"));
    assert_eq!(
        (c.zone.as_str(), c.charge_eur),
        ("directory", Decimal::new(2_9850, 4))
    );
    let c = stored(at("K1002", "116117"));
    assert_eq!(
        (c.zone.as_str(), c.charge_eur),
        ("freephone", Decimal::ZERO)
    );
    // K1001's flatrate covers landline: 115 is neither billed nor kept.
    assert_eq!(at("K1001", "115"), Outcome::Skip(Skip::Flatrate));
    // Special-rate numbers are charged under the landline flatrate: 0137, 0138, 0700, 0180.
    for n in [
        "+4913712345",
        "+4913812345",
        "+4970012345678",
        "+491801234567",
    ] {
        let c = stored(at("K1001", n));
        assert_eq!(
            (c.zone.as_str(), c.charge_eur),
            ("service", Decimal::new(2800, 4)),
            "{n}"
        );
    }
}
