//! Whatever numbers a record carries, [`convert`] answers with a call, a skip or a dead
//! letter: a panic would stop ingest on that offset at every restart.

use evn_config::{Source, SourceFormat};
use proptest::prelude::*;

use crate::testing::{code, numbers, source};
use crate::{convert, GREGORIAN_UNIX_OFFSET};

/// Every format, times readable in each (wall clock, epochs) so records reach the arithmetic.
fn sources() -> Vec<Source> {
    let tz = "timezone = \"Europe/Berlin\"\n";
    let csv = |time_format: &str| {
        source(
            SourceFormat::Csv,
            &format!(
                r#"{tz}columns = ["id", "a", "b", "start", "answer", "end", "billsec", "status"]
time_format = "{time_format}"
[source.fields]
cdr_id = "id"
calling_number = "a"
called_number = "b"
start_time = "start"
answer_time = "answer"
end_time = "end"
billsec = "billsec"
disposition = "status"
"#
            ),
        )
    };
    vec![
        source(SourceFormat::AsteriskCsv, ""),
        source(SourceFormat::FreeswitchJson, ""),
        source(SourceFormat::FreeswitchCsv, ""),
        source(SourceFormat::KazooJson, ""),
        source(SourceFormat::KazooJson, "customer = \"accountcode\"\n"),
        source(SourceFormat::KamailioJson, tz),
        csv("%Y-%m-%d %H:%M:%S"),
        csv("epoch"),
        csv("epoch_ms"),
    ]
}

/// The fields the JSON formats read; each document carries them at the top level and where
/// FreeSWITCH and Kazoo nest theirs.
const KEYS: &[&str] = &[
    "call_id",
    "call_direction",
    "caller_id_number",
    "request",
    "timestamp",
    "duration_seconds",
    "billing_seconds",
    "channel_created_time",
    "hangup_cause",
    "account_id",
    "uuid",
    "start_uepoch",
    "answer_uepoch",
    "end_uepoch",
    "start_epoch",
    "answer_epoch",
    "end_epoch",
    "start_stamp",
    "answer_stamp",
    "end_stamp",
    "duration",
    "billsec",
    "destination_number",
    "callid",
    "start_time",
    "end_time",
    "method",
    "time",
    "sip_code",
    "src_user",
    "dst_user",
];

/// Mostly numbers, large ones and plausible ones, so that sums of record values overflow.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        (0i64..1_000_000_000_000).prop_map(|n| n.to_string()),
        (GREGORIAN_UNIX_OFFSET..GREGORIAN_UNIX_OFFSET + 8_300_000_000_000)
            .prop_map(|n| n.to_string()),
        (1_700_000_000_000_000i64..8_300_000_000_000_000_000).prop_map(|n| n.to_string()),
        (0i64..1_000_000_000_000, 0u32..1_000_000).prop_map(|(s, f)| format!("{s}.{f:06}")),
        Just("9223372036854775807".to_owned()),
        Just("999999999999".to_owned()),
        Just("0".to_owned()),
        Just(String::new()),
        Just("2026-11-24 09:15:02".to_owned()),
        Just("+262142-12-31 23:00:00".to_owned()),
        Just("ANSWERED".to_owned()),
        Just("INVITE".to_owned()),
        Just("+4989123456".to_owned()),
        Just("015112345678".to_owned()),
        "[0-9.eE+-]{0,24}",
        "\\PC{0,12}",
    ]
}

fn json_doc() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::option::weighted(0.8, value()), KEYS.len()).prop_map(
        |values| {
            let mut fields = serde_json::Map::new();
            for (k, v) in KEYS.iter().zip(values) {
                let Some(v) = v else { continue };
                // Numbers as JSON numbers where they are, as switches write either.
                let v = serde_json::from_str::<serde_json::Number>(&v)
                    .map_or(serde_json::Value::String(v), serde_json::Value::Number);
                fields.insert((*k).to_owned(), v);
            }
            let inner = serde_json::Value::Object(fields.clone());
            let mut doc = fields;
            doc.insert("variables".into(), inner.clone());
            doc.insert("custom_channel_vars".into(), inner.clone());
            doc.insert(
                "callflow".into(),
                serde_json::json!([{ "caller_profile": inner }]),
            );
            serde_json::Value::Object(doc).to_string()
        },
    )
}

proptest! {
    #[test]
    fn convert_never_panics_on_large_numbers(
        doc in json_doc(),
        row in proptest::collection::vec(value(), 18),
    ) {
        for s in sources() {
            let _ = convert(&s, &numbers(), doc.as_bytes());
            let fields: Vec<String> = row
                .iter()
                .take(s.columns.len())
                .map(|f| f.replace([',', ';', '"', '\n', '\r'], ""))
                .collect();
            let line = fields.join(&char::from(s.delimiter).to_string());
            let _ = convert(&s, &numbers(), line.as_bytes());
        }
    }
}

#[test]
fn kazoo_billing_seconds_beyond_chrono() {
    // The audit's record: 2026 end, billing_seconds far more than the age of the universe.
    let doc = r#"{"call_id":"pp01@10.0.0.1","call_direction":"inbound","caller_id_number":"+4989123456","request":"015112345678@k1002.example","timestamp":63962737200,"duration_seconds":"129","billing_seconds":"9999999999999","custom_channel_vars":{"account_id":"K1002"}}"#;
    let s = source(SourceFormat::KazooJson, "");
    assert_eq!(code(&s, doc.as_bytes()), "bad_timestamp");
    let doc = doc.replace("\"9999999999999\"", "9223372036854775807");
    assert_eq!(code(&s, doc.as_bytes()), "bad_timestamp");
    let doc = doc
        .replace("9223372036854775807", "0")
        .replace("\"129\"", "\"9223372036854775807\"");
    assert_eq!(code(&s, doc.as_bytes()), "bad_timestamp");
}

#[test]
fn kazoo_end_at_the_last_representable_second() {
    // 262143-12-31T23:59:59Z: the Berlin date of that instant is past chrono's range.
    let last = chrono::DateTime::<chrono::Utc>::MAX_UTC.timestamp() + GREGORIAN_UNIX_OFFSET;
    let doc = format!(
        r#"{{"call_id":"pp02@10.0.0.1","call_direction":"inbound","caller_id_number":"+4989123456","request":"015112345678","timestamp":{last},"duration_seconds":"0","billing_seconds":"0"}}"#
    );
    let s = source(SourceFormat::KazooJson, "");
    assert_eq!(code(&s, doc.as_bytes()), "bad_timestamp");
}

#[test]
fn freeswitch_billsec_past_the_answer_near_the_end_of_time() {
    let doc = r#"{"variables":{"uuid":"u-1","start_uepoch":"8200000000000000000","answer_uepoch":"8200000000000000000","duration":"0","billsec":"999999999999","hangup_cause":"NORMAL_CLEARING"},"callflow":[{"caller_profile":{"caller_id_number":"+4989123456","destination_number":"015112345678","context":"default"}}]}"#;
    let s = source(SourceFormat::FreeswitchJson, "");
    assert_eq!(code(&s, doc.as_bytes()), "bad_timestamp");
}

#[test]
fn kamailio_dialog_duration_past_the_end_of_time() {
    let s = source(SourceFormat::KamailioJson, "timezone = \"Europe/Berlin\"\n");
    let doc = r#"{"start_time":"+262142-12-31 23:00:00","duration":"999999999999","callid":"d-1@10.0.0.5","src_user":"+4989123456","dst_user":"015112345678"}"#;
    assert_eq!(code(&s, doc.as_bytes()), "bad_timestamp");
}
