//! Kazoo (2600Hz) CDR documents, one per call leg.
//!
//! Fields used (the `cdrs` schema): `call_id` (the leg's id: CDR id and record id),
//! `call_direction` (`inbound`/`outbound`, relative to the media switch), `caller_id_number`,
//! `from`, `request` (`number@realm`), `to`, `callee_id_number`, `timestamp` (UTC, in Gregorian
//! seconds, i.e. since year 0: when the CDR was generated, the end of the leg),
//! `duration_seconds`, `billing_seconds` (from the answer), `channel_created_time` (Unix
//! microseconds, newer versions), `hangup_cause` (Q.850 name), `hangup_code` (`sip:486`),
//! `custom_channel_vars.account_id`. Numbers may arrive as strings or integers.
//!
//! Times: end = `timestamp`; answer = end − `billing_seconds` when that is above 0 (so the
//! billed duration is exactly Kazoo's); start = `channel_created_time`, else end −
//! `duration_seconds`, never after the answer.
//!
//! Inbound: a leg with `custom_channel_vars.resource_type` `offnet-origination` came in from
//! the PSTN; it is skipped `inbound` (in either customer mode; Kazoo records no context).
//!
//! Legs: the `inbound` leg (the caller's channel into the switch) carries the call and is
//! billed; the `outbound` leg (the switch towards the callee, `other_leg_call_id` pointing back)
//! is skipped `other_leg`. Calls the API originates have no inbound leg: a limit.

use chrono::Duration;
use serde_json::Value;

use evn_config::Source;

use crate::time::{self, Stamp, Times};
use crate::{Read, Record, Skip, SourceError};

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn int(doc: &Value, field: &'static str) -> Result<Option<i64>, SourceError> {
    match doc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(v) => {
            let t = text(v).unwrap_or_default();
            t.trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Some)
                .ok_or(SourceError::BadTime { field, value: t })
        }
    }
}

/// `end` − `seconds`: a count of seconds from the record can be beyond what chrono
/// represents (or before year −262143), which is a bad time, not a panic.
fn before(
    end: chrono::DateTime<chrono::Utc>,
    field: &'static str,
    seconds: i64,
) -> Result<chrono::DateTime<chrono::Utc>, SourceError> {
    Duration::try_seconds(seconds)
        .and_then(|d| end.checked_sub_signed(d))
        .ok_or(SourceError::BadTime {
            field,
            value: seconds.to_string(),
        })
}

/// `+4915112345678@realm` → `+4915112345678`.
fn user_part(s: &str) -> &str {
    s.split('@').next().unwrap_or("")
}

pub(crate) fn read(_source: &Source, text_: &str) -> Result<Read, SourceError> {
    let doc: Value = serde_json::from_str(text_).map_err(|e| SourceError::MalformedJson {
        detail: e.to_string(),
    })?;
    if !doc.is_object() {
        return Err(SourceError::MalformedJson {
            detail: "a Kazoo CDR is a JSON object".into(),
        });
    }
    let get = |name: &str| doc.get(name).and_then(text).filter(|s| !s.is_empty());
    if get("call_direction").is_some_and(|d| d == "outbound") {
        return Ok(Read::Skip(Skip::OtherLeg));
    }
    // The carrier's leg of a PSTN call to a customer's DID: with customer = "accountcode" it
    // carries the customer's account id and an outside number as callee-side, and was billed
    // as an outbound call. Kazoo has no dialplan context to tell it by.
    let resource_type = doc
        .get("custom_channel_vars")
        .and_then(|c| c.get("resource_type"))
        .and_then(text);
    if resource_type.as_deref() == Some("offnet-origination") {
        return Ok(Read::Skip(Skip::Inbound));
    }
    let call_id = get("call_id").ok_or(SourceError::Missing { field: "call_id" })?;
    let gregorian = int(&doc, "timestamp")?.ok_or(SourceError::Missing { field: "timestamp" })?;
    let end = time::from_gregorian(gregorian).ok_or(SourceError::BadTime {
        field: "timestamp",
        value: gregorian.to_string(),
    })?;
    let billing = int(&doc, "billing_seconds")?.unwrap_or(0);
    let duration = int(&doc, "duration_seconds")?;
    let answer = match billing {
        0 => None,
        b => Some(before(end, "billing_seconds", b)?),
    };
    let created = match int(&doc, "channel_created_time")? {
        Some(us) => Some(chrono::DateTime::from_timestamp_micros(us).ok_or(
            SourceError::BadTime {
                field: "channel_created_time",
                value: us.to_string(),
            },
        )?),
        None => None,
    };
    let start = match (created, duration) {
        (Some(c), _) => c,
        (None, Some(d)) => before(end, "duration_seconds", d)?,
        (None, None) => {
            return Err(SourceError::Missing {
                field: "duration_seconds",
            })
        }
    };
    // The answer is derived from whole seconds; a microsecond create time may come out later.
    let start = answer.map_or(start, |a| start.min(a));
    let called = get("request")
        .map(|r| user_part(&r).to_owned())
        .or_else(|| get("to").map(|t| user_part(&t).to_owned()))
        .or_else(|| get("callee_id_number"))
        .unwrap_or_default();
    let calling = get("caller_id_number")
        .or_else(|| get("from").map(|f| user_part(&f).to_owned()))
        .unwrap_or_default();
    let causes = ["hangup_cause", "hangup_code"]
        .iter()
        .filter_map(|n| get(n))
        .collect();
    Ok(Read::Record(Box::new(Record {
        record_id: call_id.clone(),
        cdr_id: call_id,
        calling,
        presented: None,
        called,
        context: None,
        accountcode: doc
            .get("custom_channel_vars")
            .and_then(|c| c.get("account_id"))
            .and_then(text),
        times: Times {
            start: Stamp::utc(start, created.is_some()),
            answer: answer.map(|a| Stamp::utc(a, false)),
            end: Some(Stamp::utc(end, false)),
            duration: duration.and_then(Duration::try_seconds),
            billsec: (billing > 0)
                .then(|| Duration::try_seconds(billing))
                .flatten(),
            answer_from_billsec: false,
        },
        disposition: None,
        causes,
    })))
}

#[cfg(test)]
mod tests {
    use evn_config::SourceFormat;

    use crate::testing::{code, run, source};
    use crate::GREGORIAN_UNIX_OFFSET;

    /// 2026-11-24T08:17:11Z in Gregorian seconds.
    fn end() -> i64 {
        1_795_508_231 + GREGORIAN_UNIX_OFFSET
    }

    fn leg(direction: &str, billing: &str, cause: &str) -> String {
        format!(
            r#"{{"_id":"202611-c0ffee01","call_id":"c0ffee01@10.0.0.1","call_direction":"{direction}","caller_id_name":"Bäckerei","caller_id_number":"+4989123456","callee_id_number":"","from":"+4989123456@k1002.sip.example.net","to":"015112345678@k1002.sip.example.net","request":"015112345678@k1002.sip.example.net","timestamp":{},"duration_seconds":"129","billing_seconds":{billing},"ringing_seconds":"7","hangup_cause":"{cause}","hangup_code":"sip:200","other_leg_call_id":"c0ffee02@10.0.0.1","custom_channel_vars":{{"account_id":"K1002"}}}}"#,
            end()
        )
    }

    #[test]
    fn the_inbound_leg_field_by_field() {
        let s = source(SourceFormat::KazooJson, "");
        assert_eq!(
            run(&s, leg("inbound", "\"122\"", "NORMAL_CLEARING").as_bytes()).unwrap(),
            "sw1 c0ffee01@10.0.0.1 K1002 +4989123456→+4915112345678 outbound answered \
             start=2026-11-24T08:15:02Z answer=08:15:09 end=08:17:11 billable=122s id=c0ffee01@10.0.0.1"
        );
    }

    #[test]
    fn the_outbound_leg_is_the_other_leg() {
        let s = source(SourceFormat::KazooJson, "");
        assert_eq!(
            code(&s, leg("outbound", "122", "NORMAL_CLEARING").as_bytes()),
            "skip other_leg"
        );
    }

    #[test]
    fn a_busy_leg_and_accountcode_customers() {
        let s = source(SourceFormat::KazooJson, "customer = \"accountcode\"\n");
        let got = run(&s, leg("inbound", "0", "USER_BUSY").as_bytes()).unwrap();
        assert!(
            got.contains(" K1002 ") && got.contains("outbound busy") && got.contains("answer=-"),
            "{got}"
        );
    }

    #[test]
    fn the_carrier_leg_of_a_call_from_the_pstn_is_inbound() {
        let s = source(SourceFormat::KazooJson, "customer = \"accountcode\"\n");
        // A caller on a mobile dials K1002's DID; Kazoo writes the leg with K1002's account.
        let doc = leg("inbound", "\"122\"", "NORMAL_CLEARING")
            .replace(
                "\"caller_id_number\":\"+4989123456\"",
                "\"caller_id_number\":\"+4915112345678\"",
            )
            .replace("015112345678@k1002", "+4989123456@k1002")
            .replace(
                "{\"account_id\":\"K1002\"}",
                "{\"account_id\":\"K1002\",\"resource_type\":\"offnet-origination\"}",
            );
        assert_eq!(code(&s, doc.as_bytes()), "skip inbound");
        let number_directory = source(SourceFormat::KazooJson, "");
        assert_eq!(code(&number_directory, doc.as_bytes()), "skip inbound");
        // A customer's own call through a carrier (offnet termination) is still billed.
        let out = leg("inbound", "\"122\"", "NORMAL_CLEARING").replace(
            "{\"account_id\":\"K1002\"}",
            "{\"account_id\":\"K1002\",\"resource_type\":\"audio\"}",
        );
        assert!(code(&s, out.as_bytes()).contains("outbound answered"));
    }

    #[test]
    fn microsecond_create_time_never_after_the_answer() {
        let s = source(SourceFormat::KazooJson, "");
        let doc = leg("inbound", "129", "NORMAL_CLEARING").replace(
            "\"ringing_seconds\"",
            "\"channel_created_time\":1795508102700000,\"ringing_seconds\"",
        );
        let got = run(&s, doc.as_bytes()).unwrap();
        assert!(
            got.contains("start=2026-11-24T08:15:02Z answer=08:15:02"),
            "{got}"
        );
    }

    #[test]
    fn broken_documents() {
        let s = source(SourceFormat::KazooJson, "");
        assert_eq!(code(&s, b"[1]"), "malformed_json");
        assert_eq!(code(&s, b"{\"call_id\":\"x\"}"), "missing_field");
        assert_eq!(
            code(&s, leg("inbound", "\"lots\"", "X").as_bytes()),
            "bad_timestamp"
        );
    }
}
