//! FreeSWITCH `mod_json_cdr` documents and `mod_cdr_csv` rows.
//!
//! JSON: `{"core-uuid", "switchname", "channel_data": {…}, "variables": {…}, "callflow":
//! [{"caller_profile": {"caller_id_number", "destination_number", "context", "originator" |
//! "originatee", …}, "times": {…}}]}` (older versions: `callflow` an object). Variable values are
//! strings, URL-encoded unless `encode-values=false`; both are read. Times come from
//! `start_uepoch`/`answer_uepoch`/`end_uepoch` (UTC microseconds, `0` = never), falling back to
//! `*_epoch` and then the wall-clock `*_stamp` in the source's zone.
//!
//! CSV: the columns of the `mod_cdr_csv` template, by default its `example` template
//! (caller_id_name, caller_id_number, destination_number, context, start_stamp, answer_stamp,
//! end_stamp, duration, billsec, hangup_cause, uuid, bleg_uuid, accountcode, read_codec,
//! write_codec); `*_uepoch` or `*_epoch` columns, when the template has them, win over stamps.
//!
//! Legs: the A-leg (the channel that came into FreeSWITCH) carries the call; it is billed. A
//! B-leg is the channel FreeSWITCH originated for the bridge: `mod_json_cdr` marks it with an
//! `originator` profile (only sent with `log-b-leg=true`), and a template may carry
//! `${direction}`, `outbound` for a B-leg; these are skipped `other_leg`. The default template
//! has no such column and relies on `mod_cdr_csv`'s default `legs=a`. Calls originated by the
//! API (`originate`, click-to-call) have an `outbound` A-leg and are skipped too: a limit.
//! Dispositions: answered iff the leg has an answer time, otherwise from `hangup_cause` (Q.850
//! name), `hangup_cause_q850`, `sip_term_status`.

use serde_json::Value;

use evn_config::Source;

use crate::asterisk::stamp;
use crate::time::{self, Stamp, Times};
use crate::{csv_fields, Read, Record, Skip, SourceError};

/// `%41` → `A`; values that are not percent-encoding stay as they are.
fn url_decode(s: &str) -> String {
    if !s.contains('%') && !s.contains('+') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(url_decode(s)),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A time from `<name>_uepoch`, `<name>_epoch` or `<name>_stamp` (in that order); `0` and empty
/// mean "never".
fn best_time(
    field: &'static str,
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<Stamp>, SourceError> {
    let never = |v: &str| v.trim().is_empty() || v.trim() == "0";
    if let Some(v) = get(&format!("{name}_uepoch")) {
        if never(&v) {
            return Ok(None);
        }
        return time::parse_epoch_int(&v, 1_000_000)
            .map(Some)
            .ok_or(SourceError::BadTime { field, value: v });
    }
    if let Some(v) = get(&format!("{name}_epoch")) {
        if never(&v) {
            return Ok(None);
        }
        return time::parse_epoch_int(&v, 1)
            .map(Some)
            .ok_or(SourceError::BadTime { field, value: v });
    }
    let v = get(&format!("{name}_stamp"));
    stamp(field, v.as_deref())
}

fn seconds(get: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<chrono::Duration> {
    get(name).and_then(|v| time::parse_seconds(&v))
}

pub(crate) fn read_json(_source: &Source, text: &str) -> Result<Read, SourceError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| SourceError::MalformedJson {
        detail: e.to_string(),
    })?;
    let Some(vars) = doc.get("variables").and_then(Value::as_object) else {
        return Err(SourceError::Missing { field: "variables" });
    };
    let profiles: Vec<&Value> = match doc.get("callflow") {
        Some(Value::Array(a)) => a.iter().filter_map(|c| c.get("caller_profile")).collect(),
        Some(c @ Value::Object(_)) => c.get("caller_profile").into_iter().collect(),
        _ => Vec::new(),
    };
    let is_b_leg = profiles.iter().any(|p| p.get("originator").is_some())
        || vars.contains_key("originating_leg_uuid");
    if is_b_leg {
        return Ok(Read::Skip(Skip::OtherLeg));
    }
    let var = |name: &str| vars.get(name).and_then(text_of);
    // The newest profile is first; the number dialled is that of the call as it was routed.
    let profile = |name: &str| profiles.first().and_then(|p| p.get(name)).and_then(text_of);
    let uuid = var("uuid")
        .or_else(|| profile("uuid"))
        .filter(|u| !u.is_empty())
        .ok_or(SourceError::Missing { field: "uuid" })?;
    let start = best_time("start_time", &var, "start")?.ok_or(SourceError::Missing {
        field: "start_uepoch",
    })?;
    let answer = best_time("answer_time", &var, "answer")?;
    let end = best_time("end_time", &var, "end")?;
    let calling = profile("caller_id_number")
        .or_else(|| var("caller_id_number"))
        .or_else(|| var("sip_from_user"))
        .unwrap_or_default();
    let called = profile("destination_number")
        .or_else(|| var("destination_number"))
        .or_else(|| var("sip_req_user"))
        .unwrap_or_default();
    let causes = ["hangup_cause", "hangup_cause_q850", "sip_term_status"]
        .iter()
        .filter_map(|n| var(n))
        .collect();
    Ok(Read::Record(Box::new(Record {
        record_id: uuid.clone(),
        cdr_id: uuid,
        calling,
        presented: var("effective_caller_id_number"),
        called,
        context: profile("context"),
        accountcode: var("accountcode"),
        times: Times {
            start,
            answer,
            end,
            duration: seconds(&var, "duration"),
            billsec: seconds(&var, "billsec"),
            answer_from_billsec: false,
        },
        disposition: None,
        causes,
    })))
}

pub(crate) fn read_csv(source: &Source, text: &str) -> Result<Read, SourceError> {
    let Some(fields) = csv_fields(source, text)? else {
        return Ok(Read::Skip(Skip::Header));
    };
    let get =
        |name: &str| -> Option<String> { source.column(name).and_then(|i| fields.get(i)).cloned() };
    if get("direction").is_some_and(|d| d.eq_ignore_ascii_case("outbound")) {
        return Ok(Read::Skip(Skip::OtherLeg));
    }
    let uuid = get("uuid")
        .filter(|u| !u.is_empty())
        .ok_or(SourceError::Missing { field: "uuid" })?;
    let start = best_time("start_time", &get, "start")?.ok_or(SourceError::Missing {
        field: "start_stamp",
    })?;
    let causes = ["hangup_cause", "hangup_cause_q850", "sip_term_status"]
        .iter()
        .filter_map(|n| get(n))
        .collect();
    Ok(Read::Record(Box::new(Record {
        record_id: uuid.clone(),
        cdr_id: uuid,
        calling: get("caller_id_number").unwrap_or_default(),
        presented: get("effective_caller_id_number"),
        called: get("destination_number").unwrap_or_default(),
        context: get("context"),
        accountcode: get("accountcode"),
        times: Times {
            start,
            answer: best_time("answer_time", &get, "answer")?,
            end: best_time("end_time", &get, "end")?,
            duration: seconds(&get, "duration"),
            billsec: seconds(&get, "billsec"),
            answer_from_billsec: false,
        },
        disposition: None,
        causes,
    })))
}

#[cfg(test)]
mod tests {
    use evn_config::SourceFormat;

    use super::url_decode;
    use crate::testing::{code, run, source};

    /// A-leg of 1001 (line +4930901820) calling a mobile through the gateway; the shape of a
    /// `mod_json_cdr` document, values URL-encoded as by default, cut to the fields that matter.
    pub(crate) const A_LEG: &str = r#"{"core-uuid":"6b1b8a2e-0f5e-4a7c-9a57-1d2f0c3b4a5d","switchname":"fs1","channel_data":{"state":"CS_REPORTING","direction":"inbound"},"variables":{"direction":"inbound","uuid":"a1f0c2de-5b7a-4c1e-9f00-000000000001","sip_from_user":"1001","effective_caller_id_number":"%2B4930901820","caller_id_name":"M%C3%BCller","start_stamp":"2026-11-24%2009%3A15%3A02","answer_stamp":"2026-11-24%2009%3A15%3A09","end_stamp":"2026-11-24%2009%3A17%3A11","start_epoch":"1795508102","start_uepoch":"1795508102250000","answer_epoch":"1795508109","answer_uepoch":"1795508109900000","end_epoch":"1795508231","end_uepoch":"1795508231400000","duration":"129","billsec":"121","hangup_cause":"NORMAL_CLEARING","hangup_cause_q850":"16","sip_term_status":"200","bridge_uuid":"b2e0c2de-5b7a-4c1e-9f00-000000000002"},"callflow":[{"dialplan":"XML","profile_index":"1","caller_profile":{"username":"1001","caller_id_name":"M%C3%BCller","caller_id_number":"1001","destination_number":"015112345678","context":"default","uuid":"a1f0c2de-5b7a-4c1e-9f00-000000000001","originatee":{"originatee_caller_profiles":[{"destination_number":"015112345678"}]}},"times":{"created_time":"1795508102250000","answered_time":"1795508109900000","hangup_time":"1795508231400000"}}]}"#;

    fn json() -> evn_config::Source {
        source(SourceFormat::FreeswitchJson, "")
    }

    #[test]
    fn the_a_leg_field_by_field_with_microsecond_times() {
        // 121.5 s from the microsecond times, billed 122; billsec says 121 (cut down).
        assert_eq!(
            run(&json(), A_LEG.as_bytes()).unwrap(),
            "sw1 a1f0c2de-5b7a-4c1e-9f00-000000000001 K1001 +4930901820→+4915112345678 outbound answered \
             start=2026-11-24T08:15:02.250Z answer=08:15:09.900 end=08:17:11.400 billable=122s id=a1f0c2de-5b7a-4c1e-9f00-000000000001"
        );
    }

    #[test]
    fn the_b_leg_is_skipped() {
        let b = A_LEG
            .replace("\"originatee\":{", "\"originator\":{")
            .replace("\"direction\":\"inbound\"", "\"direction\":\"outbound\"");
        assert_eq!(code(&json(), b.as_bytes()), "skip other_leg");
    }

    #[test]
    fn unanswered_legs_take_the_q850_cause() {
        let busy = A_LEG
            .replace(
                "\"answer_uepoch\":\"1795508109900000\"",
                "\"answer_uepoch\":\"0\"",
            )
            .replace("NORMAL_CLEARING", "USER_BUSY")
            .replace("\"billsec\":\"121\"", "\"billsec\":\"0\"");
        let got = run(&json(), busy.as_bytes()).unwrap();
        assert!(
            got.contains("outbound busy") && got.contains("answer=-"),
            "{got}"
        );
    }

    #[test]
    fn without_microseconds_the_stamps_are_berlin_wall_clock() {
        let v: serde_json::Value = serde_json::from_str(A_LEG).unwrap();
        let mut v = v;
        let vars = v["variables"].as_object_mut().unwrap();
        for k in ["start", "answer", "end"] {
            vars.remove(&format!("{k}_uepoch"));
            vars.remove(&format!("{k}_epoch"));
        }
        let got = run(&json(), v.to_string().as_bytes()).unwrap();
        assert!(
            got.contains("start=2026-11-24T08:15:02Z answer=08:15:09 end=08:17:10 billable=121s"),
            "{got}"
        );
    }

    #[test]
    fn broken_documents() {
        assert_eq!(code(&json(), b"{\"variables\":"), "malformed_json");
        assert_eq!(code(&json(), b"{}"), "missing_field");
        assert_eq!(
            code(
                &json(),
                A_LEG
                    .replace(
                        "\"start_uepoch\":\"1795508102250000\"",
                        "\"start_uepoch\":\"soon\""
                    )
                    .as_bytes()
            ),
            "bad_timestamp"
        );
        // Latin-1 in the caller name: repaired; the document still parses.
        let mut bytes = A_LEG
            .replace("M%C3%BCller\",\"start", "M\u{1}ller\",\"start")
            .into_bytes();
        let at = bytes.iter().position(|b| *b == 1).unwrap();
        bytes[at] = 0xfc;
        assert!(run(&json(), &bytes).unwrap().ends_with(" repaired"));
    }

    #[test]
    fn url_decoding() {
        assert_eq!(
            url_decode("2026-11-24%2009%3A15%3A02"),
            "2026-11-24 09:15:02"
        );
        assert_eq!(url_decode("%2B49"), "+49");
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("%zz%4"), "%zz%4");
    }

    const CSV_ROW: &str = r#""Müller","+4930901820","015112345678","default","2026-11-24 09:15:02","2026-11-24 09:15:09","2026-11-24 09:17:11","129","122","NORMAL_CLEARING","a1f0c2de-5b7a-4c1e-9f00-000000000003","b2e0c2de-5b7a-4c1e-9f00-000000000004","","PCMA","PCMA""#;

    #[test]
    fn the_default_csv_template_field_by_field() {
        let s = source(SourceFormat::FreeswitchCsv, "");
        assert_eq!(
            run(&s, CSV_ROW.as_bytes()).unwrap(),
            "sw1 a1f0c2de-5b7a-4c1e-9f00-000000000003 K1001 +4930901820→+4915112345678 outbound answered \
             start=2026-11-24T08:15:02Z answer=08:15:09 end=08:17:11 billable=122s id=a1f0c2de-5b7a-4c1e-9f00-000000000003"
        );
        let unanswered = CSV_ROW
            .replace(r#""2026-11-24 09:15:09""#, r#""""#)
            .replace(r#""122""#, r#""0""#)
            .replace("NORMAL_CLEARING", "NO_ANSWER");
        let got = run(&s, unanswered.as_bytes()).unwrap();
        assert!(
            got.contains("outbound no_answer") && got.contains("answer=-"),
            "{got}"
        );
        let public = source(
            SourceFormat::FreeswitchCsv,
            "inbound_contexts = [\"public\"]\n",
        );
        let inbound = CSV_ROW.replace("\"default\"", "\"public\"");
        assert_eq!(code(&public, inbound.as_bytes()), "skip inbound");
    }

    #[test]
    fn a_template_with_direction_and_microseconds() {
        let s = source(
            SourceFormat::FreeswitchCsv,
            "columns = [\"uuid\", \"direction\", \"caller_id_number\", \"destination_number\", \"start_uepoch\", \"answer_uepoch\", \"end_uepoch\", \"billsec\", \"hangup_cause\"]\n",
        );
        let a = "u-1,inbound,+4989123456,0033123456789,1795508102250000,1795508109900000,1795508231400000,121,NORMAL_CLEARING";
        let got = run(&s, a.as_bytes()).unwrap();
        assert!(
            got.contains("K1002 +4989123456→+33123456789 outbound answered")
                && got.contains("billable=122s"),
            "{got}"
        );
        let b = a.replace("inbound", "outbound").replace("u-1", "u-2");
        assert_eq!(code(&s, b.as_bytes()), "skip other_leg");
    }
}
