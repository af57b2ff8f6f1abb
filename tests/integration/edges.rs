//! Every edge case of the ingest issue as its own named test, through the real binary and a
//! broker over TCP. The cases share one broker and two ingest runs (the second after a "later"
//! batch: a switch duplicate hours apart, a late CDR), so the suite stays fast; each case has its
//! own CDR ids and asserts only on its own rows, so cases cannot mask each other.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::{DateTime, Duration as ChronoDuration, FixedOffset, SecondsFormat};
use rust_decimal::Decimal;

use crate::support::*;

const TOPIC: &str = "edges";
const LINE_K1001: &str = "+4930901820";

/// A CDR as a switch sends it. `answer`/`end` are RFC 3339 with whatever offset the case needs.
#[allow(clippy::too_many_arguments)]
fn cdr(
    id: &str,
    customer: &str,
    called: &str,
    direction: &str,
    start: &str,
    answer: Option<&str>,
    end: &str,
    disposition: &str,
) -> String {
    serde_json::json!({
        "cdr_id": id,
        "switch_id": "edge1",
        "customer_id": customer,
        "calling_number": LINE_K1001,
        "called_number": called,
        "direction": direction,
        "start_time": start,
        "answer_time": answer,
        "end_time": end,
        "disposition": disposition,
    })
    .to_string()
}

/// An answered outbound call, answered at `start`, lasting `secs`.
fn answered(id: &str, customer: &str, called: &str, start: &str, secs: i64) -> String {
    let s = DateTime::<FixedOffset>::parse_from_rfc3339(start).unwrap();
    let end = (s + ChronoDuration::seconds(secs)).to_rfc3339_opts(SecondsFormat::AutoSi, true);
    cdr(
        id,
        customer,
        called,
        "outbound",
        start,
        Some(start),
        &end,
        "answered",
    )
}

/// `good` with one field set to raw JSON (or removed).
fn with(field: &str, raw: Option<&str>) -> String {
    let good = answered(
        "edge-reject",
        "K1002",
        "+4915112345678",
        "2026-11-24T08:15:02Z",
        60,
    );
    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    let obj = v.as_object_mut().unwrap();
    match raw {
        Some(r) => {
            obj.insert(field.into(), serde_json::from_str(r).unwrap());
        }
        None => {
            obj.remove(field);
        }
    }
    v.to_string()
}

/// Records that must be dead-lettered, one per reason, as raw bytes.
fn rejections() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("invalid_utf8", b"\xff\xfe{}".to_vec()),
        ("malformed_json", br#"{"cdr_id": "#.to_vec()),
        ("not_an_object", b"[1,2]".to_vec()),
        ("missing_field", with("switch_id", None).into_bytes()),
        ("invalid_type", with("cdr_id", Some("12")).into_bytes()),
        (
            "invalid_field",
            with("customer_id", Some(r#""""#)).into_bytes(),
        ),
        (
            "bad_number",
            with("called_number", Some(r#""0151 123""#)).into_bytes(),
        ),
        (
            "bad_timestamp",
            with("start_time", Some(r#""2026-11-24 08:15:02""#)).into_bytes(),
        ),
        (
            "unknown_enum_value",
            with("direction", Some(r#""sideways""#)).into_bytes(),
        ),
        (
            "end_before_answer",
            cdr(
                "edge-rej-eba",
                "K1002",
                "+4915112345678",
                "outbound",
                "2026-11-24T08:15:02Z",
                Some("2026-11-24T08:15:10Z"),
                "2026-11-24T08:15:05Z",
                "answered",
            )
            .into_bytes(),
        ),
        (
            "answer_before_start",
            with("answer_time", Some(r#""2026-11-24T08:15:00Z""#)).into_bytes(),
        ),
        (
            "end_before_start",
            cdr(
                "edge-rej-ebs",
                "K1002",
                "+4915112345678",
                "outbound",
                "2026-11-24T08:15:02Z",
                None,
                "2026-11-24T08:00:00Z",
                "no_answer",
            )
            .into_bytes(),
        ),
        (
            "inconsistent_answer",
            with("answer_time", Some("null")).into_bytes(),
        ),
        (
            "unknown_customer",
            answered(
                "edge-rej-uc",
                "K9999",
                "+4915112345678",
                "2026-11-10T10:00:00Z",
                60,
            )
            .into_bytes(),
        ),
        (
            "no_customer_row",
            answered(
                "edge-rej-ncr",
                "K1002",
                "+4915112345678",
                "2025-12-15T10:00:00Z",
                60,
            )
            .into_bytes(),
        ),
        (
            "no_zone",
            answered("edge-rej-nz", "K1002", "19222", "2026-11-10T10:00:00Z", 60).into_bytes(),
        ),
    ]
}

fn first_batch() -> Vec<Vec<u8>> {
    let mut lines: Vec<String> = vec![
        // Month ends in Berlin time (DOMAIN.md's examples).
        answered(
            "edge-m1",
            "K1002",
            "+4915112345678",
            "2026-10-31T22:59:59Z",
            60,
        ),
        answered(
            "edge-m2",
            "K1002",
            "+4915112345678",
            "2026-10-31T23:00:00Z",
            60,
        ),
        answered(
            "edge-m3",
            "K1002",
            "+4915112345678",
            "2026-03-31T22:00:00Z",
            60,
        ),
        // The repeated hour at the end of DST: 02:30 CEST and 02:30 CET.
        answered(
            "edge-d1",
            "K1002",
            "+4915112345678",
            "2026-10-25T00:30:00Z",
            60,
        ),
        answered(
            "edge-d2",
            "K1002",
            "+4915112345678",
            "2026-10-25T01:30:00Z",
            60,
        ),
        // Across the clock change: 02:59 CEST → 02:01 CET is 2 minutes, not -58.
        answered(
            "edge-d3",
            "K1002",
            "+4915112345678",
            "2026-10-25T00:59:00Z",
            120,
        ),
        // Across the spring gap: 01:59 CET → 03:01 CEST is 2 minutes, not 62.
        answered(
            "edge-d4",
            "K1002",
            "+4915112345678",
            "2026-03-29T00:59:00Z",
            120,
        ),
        // Offsets other than Z.
        answered(
            "edge-o1",
            "K1002",
            "+4915112345678",
            "2026-12-01T00:30:00+02:00",
            60,
        ),
        answered(
            "edge-o2",
            "K1002",
            "+4915112345678",
            "2026-11-30T23:30:00-01:00",
            60,
        ),
        // Fractional seconds round up.
        cdr(
            "edge-f1",
            "K1002",
            "+4915112345678",
            "outbound",
            "2026-11-10T10:00:00Z",
            Some("2026-11-10T10:00:00Z"),
            "2026-11-10T10:00:30.2Z",
            "answered",
        ),
        // K1001 shortens from 2026-11-15 (Berlin date): 22:59:59Z on the 14th is still 23:59:59
        // local on the 14th; 23:00:00Z is midnight of the 15th.
        answered(
            "edge-s1",
            "K1001",
            "+4915112345678",
            "2026-11-14T22:59:59Z",
            61,
        ),
        answered(
            "edge-s2",
            "K1001",
            "+4915112345678",
            "2026-11-14T23:00:00Z",
            61,
        ),
        // A counselling number (0800 111 0 111) of a shortening customer.
        answered(
            "edge-s3",
            "K1001",
            "+498001110111",
            "2026-11-20T10:00:00Z",
            300,
        ),
        // Flatrate: K1001's plan covers landline, K1002's does not.
        answered(
            "edge-fl1",
            "K1001",
            "+4930123456",
            "2026-11-10T10:00:00Z",
            60,
        ),
        answered(
            "edge-fl2",
            "K1002",
            "+4930123456",
            "2026-11-10T10:00:00Z",
            60,
        ),
        // Charges: 60/1 mobile, 60/60 service, free emergency.
        answered(
            "edge-c1",
            "K1002",
            "+4915112345678",
            "2026-11-11T10:00:00Z",
            61,
        ),
        answered(
            "edge-c2",
            "K1002",
            "+4918012345",
            "2026-11-11T11:00:00Z",
            61,
        ),
        answered("edge-c3", "K1002", "112", "2026-11-11T12:00:00Z", 30),
        // The first copy of a switch duplicate; the second comes in the later batch.
        answered(
            "edge-dup",
            "K1002",
            "+4915112345678",
            "2026-11-12T10:00:00Z",
            90,
        ),
        // 31.10. 23:59:58 CET; its copy in the later batch is re-stamped into November.
        answered(
            "edge-dup-edge",
            "K1002",
            "+4915112345678",
            "2026-10-31T22:59:58Z",
            90,
        ),
    ];
    // Nothing to bill: each skip reason.
    for (id, dir, disp) in [
        ("edge-sk1", "outbound", "busy"),
        ("edge-sk2", "outbound", "no_answer"),
        ("edge-sk3", "outbound", "failed"),
    ] {
        lines.push(cdr(
            id,
            "K1002",
            "+4915112345678",
            dir,
            "2026-11-13T10:00:00Z",
            None,
            "2026-11-13T10:00:20Z",
            disp,
        ));
    }
    for (id, dir) in [("edge-sk4", "inbound"), ("edge-sk5", "internal")] {
        lines.push(cdr(
            id,
            "K1002",
            "+4915112345678",
            dir,
            "2026-11-13T10:00:00Z",
            Some("2026-11-13T10:00:05Z"),
            "2026-11-13T10:01:00Z",
            "answered",
        ));
    }
    let mut out: Vec<Vec<u8>> = lines.into_iter().map(String::into_bytes).collect();
    out.extend(rejections().into_iter().map(|(_, bytes)| bytes));
    out
}

fn second_batch() -> Vec<Vec<u8>> {
    vec![
        answered(
            "edge-dup",
            "K1002",
            "+4915112345678",
            "2026-11-12T10:00:00Z",
            90,
        )
        .into_bytes(),
        answered(
            "edge-dup-edge",
            "K1002",
            "+4915112345678",
            "2026-10-31T23:00:01Z",
            90,
        )
        .into_bytes(),
        answered(
            "edge-late",
            "K1002",
            "+4915112345678",
            "2026-09-15T10:00:00Z",
            60,
        )
        .into_bytes(),
    ]
}

struct Shared {
    rows: BTreeMap<String, Vec<evn_store::StoredCall>>,
    dead: Vec<DeadLetter>,
    first: serde_json::Value,
    second: serde_json::Value,
    months: Vec<String>,
    _dir: tempfile::TempDir,
}

fn write_lines(path: &std::path::Path, lines: &[Vec<u8>]) {
    let mut bytes = Vec::new();
    for l in lines {
        bytes.extend_from_slice(l);
        bytes.push(b'\n');
    }
    std::fs::write(path, bytes).unwrap();
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let broker = Broker::start(&[&format!("{TOPIC}:2"), &format!("{TOPIC}.dlq:1")]);
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let f1 = dir.path().join("first.jsonl");
        write_lines(&f1, &first_batch());
        produce(&broker, TOPIC, &f1);
        let first = ingest_to_end_idle(&broker, TOPIC, "edges", &data, 1);
        let f2 = dir.path().join("second.jsonl");
        write_lines(&f2, &second_batch());
        produce(&broker, TOPIC, &f2);
        let second = ingest_to_end_idle(&broker, TOPIC, "edges", &data, 1);
        let mut rows: BTreeMap<String, Vec<evn_store::StoredCall>> = BTreeMap::new();
        for r in stored_rows(&data) {
            rows.entry(r.call.cdr_id.to_string()).or_default().push(r);
        }
        let dead = read_dead_letters(&broker, &format!("{TOPIC}.dlq"), rejections().len());
        let months = evn_store::list_months(&data)
            .unwrap()
            .into_iter()
            .map(|m| m.to_string())
            .collect();
        Shared {
            rows,
            dead,
            first,
            second,
            months,
            _dir: dir,
        }
    })
}

/// The one stored row of a case.
fn row(id: &str) -> &'static evn_rating::RatedCall {
    let rows = shared()
        .rows
        .get(id)
        .unwrap_or_else(|| panic!("{id} is not stored"));
    assert_eq!(rows.len(), 1, "{id} stored {} times", rows.len());
    &rows[0].call
}

fn not_stored(id: &str) {
    assert!(!shared().rows.contains_key(id), "{id} must not be stored");
}

fn utc(row: &evn_rating::RatedCall) -> String {
    row.start_time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[test]
fn month_end_in_berlin_time_decides_the_billing_month() {
    assert_eq!(row("edge-m1").billing_month.to_string(), "2026-10");
    assert_eq!(row("edge-m2").billing_month.to_string(), "2026-11");
    assert_eq!(row("edge-m3").billing_month.to_string(), "2026-04");
    // The partition folder follows the billing month, not the UTC month.
    for m in ["2026-04", "2026-10", "2026-11", "2026-12"] {
        assert!(shared().months.contains(&m.to_owned()), "{m} partition");
    }
}

#[test]
fn dst_end_repeated_hour_keeps_both_calls_in_october_one_hour_apart() {
    let (d1, d2) = (row("edge-d1"), row("edge-d2"));
    assert_eq!(d1.billing_month.to_string(), "2026-10");
    assert_eq!(d2.billing_month.to_string(), "2026-10");
    assert_eq!(utc(d1), "2026-10-25T00:30:00Z");
    assert_eq!(utc(d2), "2026-10-25T01:30:00Z");
}

#[test]
fn durations_across_clock_changes_come_from_utc() {
    assert_eq!(row("edge-d3").duration_s, 120);
    assert_eq!(row("edge-d4").duration_s, 120);
    assert_eq!(row("edge-d4").billing_month.to_string(), "2026-03");
}

#[test]
fn offsets_other_than_z_are_stored_as_utc_and_billed_by_berlin_month() {
    let (o1, o2) = (row("edge-o1"), row("edge-o2"));
    assert_eq!(utc(o1), "2026-11-30T22:30:00Z");
    assert_eq!(o1.billing_month.to_string(), "2026-11");
    assert_eq!(utc(o2), "2026-12-01T00:30:00Z");
    assert_eq!(o2.billing_month.to_string(), "2026-12");
}

#[test]
fn fractional_seconds_round_up() {
    assert_eq!(row("edge-f1").duration_s, 31);
}

#[test]
fn shortening_follows_the_setting_in_force_on_the_berlin_date() {
    let (s1, s2) = (row("edge-s1"), row("edge-s2"));
    assert_eq!(s1.called_number, "+4915112345678");
    assert!(!s1.shortened);
    assert_eq!(s2.called_number, "+4915112345xxx");
    assert!(s2.shortened);
    // Rated on the full number before shortening: same zone, same charge.
    assert_eq!(s1.zone, s2.zone);
    assert_eq!(s1.charge_eur, s2.charge_eur);
}

#[test]
fn counselling_calls_are_flagged_on_the_full_number_even_when_shortened() {
    let s3 = row("edge-s3");
    assert_eq!(s3.called_number, "+498001110xxx");
    assert!(s3.counselling);
    assert!(!row("edge-c1").counselling);
}

#[test]
fn flatrate_calls_are_neither_stored_nor_lost_from_the_counts() {
    not_stored("edge-fl1");
    let fl2 = row("edge-fl2");
    assert_eq!(fl2.zone, "landline");
    assert_eq!(fl2.charge_eur, Decimal::new(290, 4));
    assert!(shared().first["skipped"]["flatrate"].as_u64() >= Some(1));
}

#[test]
fn unanswered_inbound_and_internal_calls_are_skipped_and_counted() {
    for id in ["edge-sk1", "edge-sk2", "edge-sk3", "edge-sk4", "edge-sk5"] {
        not_stored(id);
    }
    let skipped = &shared().first["skipped"];
    assert_eq!(skipped["unanswered"], 3);
    assert_eq!(skipped["inbound"], 1);
    assert_eq!(skipped["internal"], 1);
}

#[test]
fn charges_follow_zone_price_and_increment() {
    // 0.1790 €/min, 60/1: 61 s = 0.18201… → 0.1820.
    assert_eq!(row("edge-c1").charge_eur, Decimal::new(1820, 4));
    assert_eq!(row("edge-c1").zone, "mobile");
    // 0.1400 €/min, 60/60: 61 s = two started minutes.
    assert_eq!(row("edge-c2").charge_eur, Decimal::new(2800, 4));
    assert_eq!(row("edge-c2").zone, "service");
    assert_eq!(row("edge-c3").charge_eur, Decimal::ZERO);
    assert_eq!(row("edge-c3").zone, "emergency");
}

#[test]
fn switch_duplicates_hours_apart_or_across_a_month_edge_are_stored_once() {
    row("edge-dup"); // exactly one row
                     // A copy three seconds later falls into November: still the same call, kept in October.
    assert_eq!(row("edge-dup-edge").billing_month.to_string(), "2026-10");
    assert_eq!(shared().second["skipped"]["duplicate"], 2);
    assert_eq!(shared().second["stored"], 1, "only the late CDR is new");
}

#[test]
fn late_cdr_lands_in_its_own_earlier_month() {
    let late = row("edge-late");
    assert_eq!(late.billing_month.to_string(), "2026-09");
    assert!(shared().months.contains(&"2026-09".to_owned()));
}

#[test]
fn every_rejection_reason_lands_on_the_dead_letter_topic_once_with_its_bytes() {
    let dead = &shared().dead;
    let expected = rejections();
    assert_eq!(dead.len(), expected.len(), "{dead:#?}");
    for (reason, bytes) in expected {
        let hits: Vec<&DeadLetter> = dead.iter().filter(|d| d.reason == reason).collect();
        assert_eq!(hits.len(), 1, "{reason}: {hits:#?}");
        let d = hits[0];
        assert_eq!(d.payload, bytes, "{reason}: original bytes");
        assert!(
            d.error.starts_with(reason),
            "{reason}: evn-error says why: {}",
            d.error
        );
        assert_eq!(d.source_topic, TOPIC);
        assert!(d.source_partition >= 0 && d.source_offset >= 0);
    }
    let summary = &shared().first["dead_lettered"];
    let total: u64 = summary
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, dead.len() as u64);
}
