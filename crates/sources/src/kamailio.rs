//! Kamailio accounting records as `acc_json` writes them (one JSON object per SIP transaction,
//! shipped from its syslog or mqueue output), and the dialog CDRs of the `acc` module's
//! `cdr_enable`.
//!
//! Transaction records carry the core fields `method`, `from_tag`, `to_tag`, `callid`,
//! `sip_code`, `sip_reason` and `time` (`acc_time_mode` 1: Unix seconds; 2: seconds with a
//! fraction; 3/4: a formatted wall-clock or UTC time, read in the source's `timezone`), plus the
//! `acc_extra` fields the operator configures. We read `src_user` (the caller), `dst_ouser`
//! (the dialled number, the original request URI's user; `dst_user` if absent), `pai_user`
//! (the P-Asserted-Identity, `$ai`: the line a caller with CLIR or an extension calls out
//! under) and, with `customer = "accountcode"`, `accountcode`.
//!
//! A call is two records: the INVITE's 2xx (the answer, its `time`) and the BYE (the end).
//! Neither is billable alone, so [`read`] says which one a record is ([`Kamailio::Start`],
//! [`Kamailio::End`]) and [`pair`] makes the call from both. Holding starts until their end
//! arrives is ingest's job (it keeps them in its commit log, so a restart loses none). The call
//! is keyed by `callid` and the two tags in either order: the BYE of a callee carries the tags
//! swapped, and the other branches of a forked INVITE (other `to_tag`s) are never answered.
//!
//! Complete on their own ([`Kamailio::Converted`]):
//! - an INVITE with a final failure code (`acc_missed_flag` / `failed_transaction_flag`): an
//!   unanswered attempt, its disposition from the SIP code (486 busy, 408/480/487 no answer …);
//! - a dialog CDR (`start_time`, `end_time` or `duration`): the whole call, id `callid`,
//!   answered at its start (which needs `cdr_start_on_confirmed=1`); one of a dialog that was
//!   never established (`cdr_on_failed=1`: duration 0, end = start, or a `sip_code` ≥ 300)
//!   is an unanswered attempt;
//! - other methods (REGISTER, ACK, CANCEL, MESSAGE …): skipped `signalling`.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use evn_config::{NumberDirectory, Source};

use crate::time::{self, Stamp, Times};
use crate::{finish, Converted, Record, Skip, SourceError};

/// What one Kamailio record is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kamailio {
    /// Complete on its own (an unanswered INVITE, a dialog CDR, a skipped transaction).
    Converted(Converted),
    /// An answered INVITE: the start of call `call`, waiting for its BYE.
    Start { call: String, at: DateTime<Utc> },
    /// A BYE: the end of call `call`; `callid` is the id the call is stored under.
    End {
        call: String,
        callid: String,
        at: DateTime<Utc>,
    },
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn object(bytes: &[u8]) -> Result<(Value, bool), SourceError> {
    let (text_, repaired) = match String::from_utf8_lossy(bytes) {
        std::borrow::Cow::Borrowed(t) => (t.to_owned(), false),
        std::borrow::Cow::Owned(t) => (t, true),
    };
    let doc: Value = serde_json::from_str(&text_).map_err(|e| SourceError::MalformedJson {
        detail: e.to_string(),
    })?;
    if !doc.is_object() {
        return Err(SourceError::MalformedJson {
            detail: "a Kamailio accounting record is a JSON object".into(),
        });
    }
    Ok((doc, repaired))
}

fn get(doc: &Value, name: &str) -> Option<String> {
    doc.get(name)
        .and_then(text)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// `time`, `start_time`, `end_time`: an epoch number (with or without fraction) or a string
/// (epoch digits, RFC 3339 with offset, or wall clock).
fn stamp(doc: &Value, field: &'static str) -> Result<Option<Stamp>, SourceError> {
    let Some(v) = doc.get(field).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let raw = text(v).unwrap_or_default();
    let bad = || SourceError::BadTime {
        field,
        value: raw.clone(),
    };
    if raw.trim().is_empty() {
        return Ok(None);
    }
    if let Some(s) = time::parse_epoch_seconds(&raw) {
        return Ok(Some(s));
    }
    if let Value::String(s) = v {
        if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
            return Ok(Some(Stamp::utc(
                t.with_timezone(&Utc),
                t.timestamp_subsec_micros() != 0,
            )));
        }
        if let Some(local) = time::parse_wall(s) {
            return Ok(Some(Stamp::Wall(local)));
        }
        // `acc_time_format`'s own default is `%Y-%m-%d %H:%M:%S`; slashes are common too.
        if let Ok(local) = chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y/%m/%d %H:%M:%S") {
            return Ok(Some(Stamp::Wall(local)));
        }
    }
    Err(bad())
}

/// An instant for ordering and time-outs only: a wall time's earliest reading.
fn approx(source: &Source, field: &'static str, s: Stamp) -> Result<DateTime<Utc>, SourceError> {
    match s {
        Stamp::Utc { at, .. } => Ok(at),
        Stamp::Wall(local) => {
            let tz = source.timezone.ok_or(SourceError::NoTimezone { field })?;
            use chrono::TimeZone;
            tz.from_local_datetime(&local)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
                .ok_or_else(|| SourceError::NonexistentLocalTime {
                    field,
                    value: local.to_string(),
                    zone: tz.name().to_owned(),
                })
        }
    }
}

/// The call a transaction belongs to: Call-ID and both tags, in either order.
fn call_key(doc: &Value) -> Result<String, SourceError> {
    let callid = get(doc, "callid").ok_or(SourceError::Missing { field: "callid" })?;
    crate::damaged("callid", &callid)?;
    let mut tags = [
        get(doc, "from_tag").unwrap_or_default(),
        get(doc, "to_tag").unwrap_or_default(),
    ];
    tags.sort();
    Ok(format!("{callid};{};{}", tags[0], tags[1]))
}

/// The Call-ID part of a call key from [`read`] (the id the call is stored under).
pub fn callid_of(call: &str) -> &str {
    // Tags follow the last two `;`; a Call-ID may itself contain `;`.
    call.rsplitn(3, ';').last().unwrap_or(call)
}

fn sip_code(doc: &Value) -> Result<u16, SourceError> {
    let raw = get(doc, "sip_code").ok_or(SourceError::Missing { field: "sip_code" })?;
    raw.parse::<u16>()
        .ok()
        .filter(|c| (100..700).contains(c))
        .ok_or(SourceError::UnknownValue {
            field: "sip_code",
            value: raw,
        })
}

fn called(doc: &Value) -> String {
    get(doc, "dst_ouser")
        .or_else(|| get(doc, "dst_user"))
        .unwrap_or_default()
}

/// The parts of a record every call built from it shares.
fn record(doc: &Value, id: String, times: Times, disposition_causes: Vec<String>) -> Record {
    Record {
        record_id: id.clone(),
        cdr_id: id,
        calling: get(doc, "src_user").unwrap_or_default(),
        // With CLIR the From user is `anonymous` (`$fU`), and behind a PBX it may be an
        // extension: the asserted identity then says whose line called, as Asterisk's clid
        // and FreeSWITCH's effective caller id do. A From user that is a number wins.
        presented: get(doc, "pai_user"),
        called: called(doc),
        context: None,
        accountcode: get(doc, "accountcode"),
        times,
        disposition: None,
        causes: disposition_causes,
    }
}

/// Reads one record: complete, a call's start, or a call's end.
pub fn read(
    source: &Source,
    numbers: &NumberDirectory,
    bytes: &[u8],
) -> Result<Kamailio, SourceError> {
    let (doc, repaired) = object(bytes)?;
    // A dialog CDR (`cdr_enable`): the whole call in one record.
    if doc.get("start_time").is_some() && get(&doc, "method").is_none() {
        return dialog_cdr(source, numbers, &doc, repaired).map(Kamailio::Converted);
    }
    let method = get(&doc, "method").ok_or(SourceError::Missing { field: "method" })?;
    match method.to_ascii_uppercase().as_str() {
        "INVITE" => {
            let code = sip_code(&doc)?;
            let at = stamp(&doc, "time")?.ok_or(SourceError::Missing { field: "time" })?;
            if (200..300).contains(&code) {
                let key = call_key(&doc)?;
                return Ok(Kamailio::Start {
                    call: key,
                    at: approx(source, "time", at)?,
                });
            }
            // A failed or missed attempt: complete, nothing to bill.
            let callid = get(&doc, "callid").ok_or(SourceError::Missing { field: "callid" })?;
            let times = Times {
                start: at,
                answer: None,
                end: Some(at),
                duration: None,
                billsec: None,
                answer_from_billsec: false,
            };
            let r = record(&doc, callid, times, vec![format!("sip:{code}")]);
            finish(source, numbers, r, repaired).map(Kamailio::Converted)
        }
        "BYE" => {
            let at = stamp(&doc, "time")?.ok_or(SourceError::Missing { field: "time" })?;
            Ok(Kamailio::End {
                call: call_key(&doc)?,
                callid: get(&doc, "callid").unwrap_or_default(),
                at: approx(source, "time", at)?,
            })
        }
        _ => Ok(Kamailio::Converted(Converted::Skip(Skip::Signalling))),
    }
}

/// The call of an answered INVITE (`start`) and its BYE (`end`): answered at the INVITE's
/// time, ended at the BYE's; the Call-ID is the CDR id, so a replayed pair is a duplicate.
/// The setup time before the answer is not in the records; the call starts at its answer.
pub fn pair(
    source: &Source,
    numbers: &NumberDirectory,
    start: &[u8],
    end: &[u8],
) -> Result<Converted, SourceError> {
    let (invite, repaired_start) = object(start)?;
    let (bye, repaired_end) = object(end)?;
    let answer = stamp(&invite, "time")?.ok_or(SourceError::Missing { field: "time" })?;
    let hangup = stamp(&bye, "time")?.ok_or(SourceError::Missing { field: "time" })?;
    let callid = get(&invite, "callid").ok_or(SourceError::Missing { field: "callid" })?;
    let times = Times {
        start: answer,
        answer: Some(answer),
        end: Some(hangup),
        duration: None,
        billsec: None,
        answer_from_billsec: false,
    };
    let code = sip_code(&invite)?;
    let r = record(&invite, callid, times, vec![format!("sip:{code}")]);
    finish(source, numbers, r, repaired_start || repaired_end)
}

fn dialog_cdr(
    source: &Source,
    numbers: &NumberDirectory,
    doc: &Value,
    repaired: bool,
) -> Result<Converted, SourceError> {
    let callid = get(doc, "callid").ok_or(SourceError::Missing { field: "callid" })?;
    let start = stamp(doc, "start_time")?.ok_or(SourceError::Missing {
        field: "start_time",
    })?;
    let end = stamp(doc, "end_time")?;
    let duration = match get(doc, "duration") {
        Some(d) => Some(time::parse_seconds(&d).ok_or(SourceError::BadTime {
            field: "duration",
            value: d,
        })?),
        None => None,
    };
    let past_range = |d: Duration| SourceError::BadTime {
        field: "duration",
        value: d.num_seconds().to_string(),
    };
    let end = match (end, duration, start) {
        (Some(e), _, _) => e,
        (None, Some(d), Stamp::Utc { at, .. }) => {
            Stamp::utc(at.checked_add_signed(d).ok_or_else(|| past_range(d))?, true)
        }
        (None, Some(d), Stamp::Wall(local)) => {
            Stamp::Wall(local.checked_add_signed(d).ok_or_else(|| past_range(d))?)
        }
        (None, None, _) => return Err(SourceError::Missing { field: "end_time" }),
    };
    let code = match get(doc, "sip_code") {
        Some(raw) => Some(
            raw.parse::<u16>()
                .ok()
                .filter(|c| (100..700).contains(c))
                .ok_or(SourceError::UnknownValue {
                    field: "sip_code",
                    value: raw,
                })?,
        ),
        None => None,
    };
    // With `cdr_on_failed=1` acc also writes a CDR for a dialog that was never established:
    // it ends where it starts (duration 0) or carries the final failure code. The start of
    // an established dialog is its answer only with `cdr_start_on_confirmed=1` (README).
    let zero = duration.is_some_and(|d| d.is_zero()) || end == start;
    let answered = !zero && code.is_none_or(|c| c < 300);
    let times = Times {
        start,
        answer: answered.then_some(start),
        end: Some(end),
        duration: duration.map(|d| Duration::seconds(d.num_seconds())),
        billsec: None,
        answer_from_billsec: false,
    };
    // Without a code, a dialog that ended at its start says nothing about why: failed.
    let causes = match code {
        Some(c) => vec![format!("sip:{c}")],
        None if answered => vec!["sip:200".to_owned()],
        None => Vec::new(),
    };
    let r = record(doc, callid, times, causes);
    finish(source, numbers, r, repaired)
}

/// For [`crate::convert`]: records that need no partner. A start or end record read through
/// the stateless path is a configuration mistake of the caller (ingest pairs them itself).
pub(crate) fn read_alone(
    source: &Source,
    numbers: &NumberDirectory,
    bytes: &[u8],
) -> Result<Converted, SourceError> {
    match read(source, numbers, bytes)? {
        Kamailio::Converted(c) => Ok(c),
        Kamailio::Start { .. } => Err(SourceError::Unpaired { end: false }),
        Kamailio::End { .. } => Err(SourceError::Unpaired { end: true }),
    }
}

#[cfg(test)]
mod tests {
    use evn_config::SourceFormat;

    use super::*;
    use crate::testing::{code, numbers, source, view};

    /// 2026-11-24T08:15:09Z answered, 08:17:11Z hung up (122 s).
    const ANSWER: i64 = 1_795_508_109;

    fn invite(code: u16, time: &str) -> String {
        format!(
            r#"{{"time":{time},"method":"INVITE","from_tag":"ft-1","to_tag":"tt-9","callid":"c-1@10.0.0.5","sip_code":"{code}","sip_reason":"OK","src_user":"030901820","src_domain":"k1001.example.net","dst_ouser":"015112345678","dst_user":"015112345678","src_ip":"10.0.0.5"}}"#
        )
    }

    fn bye(time: &str, swapped: bool) -> String {
        let (f, t) = if swapped {
            ("tt-9", "ft-1")
        } else {
            ("ft-1", "tt-9")
        };
        format!(
            r#"{{"time":{time},"method":"BYE","from_tag":"{f}","to_tag":"{t}","callid":"c-1@10.0.0.5","sip_code":"200","sip_reason":"OK","src_user":"015112345678","dst_user":"030901820"}}"#
        )
    }

    fn kamailio(extra: &str) -> Source {
        source(SourceFormat::KamailioJson, extra)
    }

    #[test]
    fn an_answered_call_is_its_invite_and_its_bye() {
        let s = kamailio("");
        let start = invite(200, &ANSWER.to_string());
        let end = bye(&(ANSWER + 122).to_string(), false);
        let Kamailio::Start { call, at } = read(&s, &numbers(), start.as_bytes()).unwrap() else {
            panic!("an answered INVITE starts a call")
        };
        assert_eq!(at, DateTime::from_timestamp(ANSWER, 0).unwrap());
        // The callee hanging up sends the BYE with the tags swapped: the same call.
        for swapped in [false, true] {
            let end = bye(&(ANSWER + 122).to_string(), swapped);
            match read(&s, &numbers(), end.as_bytes()).unwrap() {
                Kamailio::End {
                    call: c, callid, ..
                } => {
                    assert_eq!(
                        (c.as_str(), callid.as_str()),
                        (call.as_str(), "c-1@10.0.0.5")
                    )
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(callid_of(&call), "c-1@10.0.0.5");
        let got = pair(&s, &numbers(), start.as_bytes(), end.as_bytes()).unwrap();
        assert_eq!(
            view(&got),
            "sw1 c-1@10.0.0.5 K1001 +4930901820→+4915112345678 outbound answered \
             start=2026-11-24T08:15:09Z answer=08:15:09 end=08:17:11 billable=122s id=c-1@10.0.0.5"
        );
        // Through the stateless path a start or an end alone is an error, never a call.
        assert_eq!(code(&s, start.as_bytes()), "unpaired_start");
        assert_eq!(code(&s, end.as_bytes()), "unpaired_end");
    }

    #[test]
    fn fractional_times_are_billed_to_the_microsecond_rounded_up() {
        let s = kamailio("");
        let start = invite(200, "1795508109.250000");
        let end = bye("1795508231.250001", false);
        let got = view(&pair(&s, &numbers(), start.as_bytes(), end.as_bytes()).unwrap());
        assert!(got.contains("billable=123s"), "{got}");
    }

    #[test]
    fn failed_attempts_are_complete_with_their_sip_disposition() {
        let s = kamailio("");
        for (sip, disposition) in [(486, "busy"), (487, "no_answer"), (404, "failed")] {
            let got = code(&s, invite(sip, &ANSWER.to_string()).as_bytes());
            assert!(
                got.contains(&format!("outbound {disposition} ")) && got.contains("billable=0s"),
                "{sip}: {got}"
            );
        }
        let register = r#"{"time":1795508109,"method":"REGISTER","callid":"r-1","sip_code":"200"}"#;
        assert_eq!(code(&s, register.as_bytes()), "skip signalling");
    }

    #[test]
    fn wall_clock_times_need_the_zone_and_follow_the_dst_rules() {
        let s = kamailio("");
        let start = invite(200, "\"2026-11-24 09:15:09\"");
        assert_eq!(
            read(&s, &numbers(), start.as_bytes()).unwrap_err().code(),
            "bad_timestamp"
        );
        let s = kamailio("timezone = \"Europe/Berlin\"\n");
        let end = bye("\"2026-11-24 09:17:11\"", false);
        let got = view(&pair(&s, &numbers(), start.as_bytes(), end.as_bytes()).unwrap());
        assert!(
            got.contains("start=2026-11-24T08:15:09Z") && got.contains("billable=122s"),
            "{got}"
        );
        // The spring gap does not exist.
        let gap = invite(200, "\"2026-03-29 02:30:00\"");
        assert_eq!(
            read(&s, &numbers(), gap.as_bytes()).unwrap_err().code(),
            "nonexistent_local_time"
        );
        // In the repeated autumn hour, 02:10 → 02:40 may be 30 or 90 minutes, and no record
        // states the duration: dead-lettered, never guessed (epoch `acc_time_mode`s avoid it).
        let (a, b) = (
            invite(200, "\"2026-10-25 02:10:00\""),
            bye("\"2026-10-25 02:40:00\"", false),
        );
        assert_eq!(
            pair(&s, &numbers(), a.as_bytes(), b.as_bytes())
                .unwrap_err()
                .code(),
            "ambiguous_local_time"
        );
        // Ending after the repeated hour, it is unambiguous only if both readings bill the same:
        // 02:10 (either) → 03:10 is 60 or 120 minutes: ambiguous too. Outside it, fine.
        let (a, b) = (
            invite(200, "\"2026-10-25 01:10:00\""),
            bye("\"2026-10-25 01:40:00\"", false),
        );
        let got = view(&pair(&s, &numbers(), a.as_bytes(), b.as_bytes()).unwrap());
        assert!(got.contains("billable=1800s"), "{got}");
    }

    #[test]
    fn a_dialog_cdr_is_a_whole_call() {
        let s = kamailio("timezone = \"Europe/Berlin\"\n");
        let cdr = r#"{"start_time":"2026-11-24 09:15:09","end_time":"2026-11-24 09:17:11","duration":"122.000","callid":"d-7@pbx","src_user":"+4989123456","dst_user":"0033612345678"}"#;
        assert_eq!(
            code(&s, cdr.as_bytes()),
            "sw1 d-7@pbx K1002 +4989123456→+33612345678 outbound answered \
             start=2026-11-24T08:15:09Z answer=08:15:09 end=08:17:11 billable=122s id=d-7@pbx"
        );
        let by_duration = cdr.replace(r#""end_time":"2026-11-24 09:17:11","#, "");
        assert!(code(&s, by_duration.as_bytes()).contains("billable=122s"));
    }

    #[test]
    fn a_dialog_cdr_of_a_failed_dialog_is_unanswered() {
        let s = kamailio("");
        // acc with cdr_on_failed=1: the dialog never got its 200 OK.
        let failed = r#"{"start_time":"1795508100.000000","end_time":"1795508100.000000","duration":"0.000000","callid":"fail1@10.0.0.5","src_user":"+4989123456","dst_user":"015112345678"}"#;
        let got = code(&s, failed.as_bytes());
        assert!(
            got.contains("outbound failed") && got.contains("answer=-"),
            "{got}"
        );
        let by_duration = failed.replace(r#""end_time":"1795508100.000000","#, "");
        assert!(code(&s, by_duration.as_bytes()).contains("answer=-"));
        let by_end = failed.replace(r#","duration":"0.000000""#, "");
        assert!(code(&s, by_end.as_bytes()).contains("answer=-"));
        let busy = r#"{"start_time":"1795508100","end_time":"1795508104","callid":"fail2@10.0.0.5","sip_code":"486","src_user":"+4989123456","dst_user":"015112345678"}"#;
        let got = code(&s, busy.as_bytes());
        assert!(
            got.contains("outbound busy") && got.contains("answer=-"),
            "{got}"
        );
        let ok = busy.replace("486", "200");
        assert!(code(&s, ok.as_bytes()).contains("outbound answered"));
        assert_eq!(
            code(&s, busy.replace("486", "OK").as_bytes()),
            "unknown_enum_value"
        );
    }

    #[test]
    fn a_caller_with_clir_is_placed_by_the_asserted_identity() {
        let s = kamailio("");
        let anonymous = |pai: &str| {
            invite(200, &ANSWER.to_string()).replace(
                r#""src_user":"030901820""#,
                &format!(r#""src_user":"anonymous"{pai}"#),
            )
        };
        let end = bye(&(ANSWER + 122).to_string(), false);
        let unplaced = |start: &str| {
            pair(&s, &numbers(), start.as_bytes(), end.as_bytes())
                .unwrap_err()
                .code()
        };
        // Audit s15 item 11: without a PAI the call touches no customer line. An empty or
        // null PAI (no header in the INVITE) is no identity either.
        for pai in ["", r#","pai_user":"""#, r#","pai_user":null"#] {
            assert_eq!(unplaced(&anonymous(pai)), "unknown_line", "{pai}");
        }
        // `pai_user=$ai` logs the whole URI; its user part is the line.
        for pai in [
            r#","pai_user":"sip:+4930901820@10.0.0.5""#,
            r#","pai_user":"030901820""#,
        ] {
            let start = anonymous(pai);
            assert_eq!(
                view(&pair(&s, &numbers(), start.as_bytes(), end.as_bytes()).unwrap()),
                "sw1 c-1@10.0.0.5 K1001 +4930901820→+4915112345678 outbound answered \
                 start=2026-11-24T08:15:09Z answer=08:15:09 end=08:17:11 billable=122s id=c-1@10.0.0.5",
                "{pai}"
            );
        }
        // A From user that is a number is the caller; the PAI does not override it.
        let start = invite(200, &ANSWER.to_string()).replace(
            r#""src_user":"030901820""#,
            r#""src_user":"030901820","pai_user":"+4989123456""#,
        );
        assert!(
            view(&pair(&s, &numbers(), start.as_bytes(), end.as_bytes()).unwrap())
                .contains("K1001 +4930901820→")
        );
        // Dialog CDRs (`cdr_extra`) and failed attempts read the same field.
        let cdr = r#"{"start_time":"1795508109","end_time":"1795508231","callid":"d-8@pbx","src_user":"anonymous","pai_user":"sip:+4989123456@pbx","dst_user":"015112345678"}"#;
        let got = code(&s, cdr.as_bytes());
        assert!(
            got.contains("K1002 +4989123456→+4915112345678 outbound answered"),
            "{got}"
        );
        let busy = anonymous(r#","pai_user":"+4930901820""#)
            .replace(r#""sip_code":"200""#, r#""sip_code":"486""#);
        let got = code(&s, busy.as_bytes());
        assert!(
            got.contains("K1001 +4930901820→+4915112345678 outbound busy"),
            "{got}"
        );
    }

    #[test]
    fn broken_records_are_dead_letter_reasons() {
        let s = kamailio("");
        assert_eq!(code(&s, b"[]"), "malformed_json");
        assert_eq!(code(&s, b"{\"time\":1}"), "missing_field");
        let no_callid = invite(200, "1795508109").replace("\"callid\"", "\"x\"");
        assert_eq!(
            read(&s, &numbers(), no_callid.as_bytes())
                .unwrap_err()
                .code(),
            "missing_field"
        );
        let bad_code = invite(200, "1795508109").replace("\"200\"", "\"2OO\"");
        assert_eq!(
            read(&s, &numbers(), bad_code.as_bytes())
                .unwrap_err()
                .code(),
            "unknown_enum_value"
        );
        let bad_time = invite(200, "\"yesterday\"");
        assert_eq!(
            read(&s, &numbers(), bad_time.as_bytes())
                .unwrap_err()
                .code(),
            "bad_timestamp"
        );
        // A caller name with broken UTF-8 is repaired; a broken Call-ID is not.
        let mut named = invite(200, "1795508109").into_bytes();
        let at = named.len() - 1;
        named.splice(at..at, b",\"src_name\":\"B\xe4ckerei\"".iter().copied());
        let end = bye("1795508231", false);
        let got = pair(&s, &numbers(), &named, end.as_bytes()).unwrap();
        assert!(view(&got).ends_with(" repaired"), "{}", view(&got));
        let broken = invite(200, "1795508109").replace("c-1@", "c-\u{FFFD}@");
        assert_eq!(
            read(&s, &numbers(), broken.as_bytes()).unwrap_err().code(),
            "invalid_utf8"
        );
    }
}
