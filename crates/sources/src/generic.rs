//! Any other CSV (carrier exports, Kamailio `acc` written to a file, a billing platform):
//! `columns` names the record's columns, `[source.fields]` says which column is which
//! canonical field, `time_format` how times are written, `dispositions` how outcomes are
//! spelled (anything not listed is read as an Asterisk name, Q.850 cause or SIP code).
//! Without an answer column, an answered row's answer is end − billsec.
//!
//! Legs: one record per call is assumed; a carrier file with one row per leg must be filtered
//! before it is sent (or carry a disposition the mapping turns into something unanswered).

use chrono::{DateTime, Duration};

use evn_cdr::Disposition;
use evn_config::{Source, TimeFormat};

use crate::time::{self, Stamp, Times};
use crate::{content_id, csv_fields, disposition, Read, Record, Skip, SourceError};

pub(crate) fn read(source: &Source, text: &str) -> Result<Read, SourceError> {
    let Some(fields) = csv_fields(source, text)? else {
        return Ok(Read::Skip(Skip::Header));
    };
    let m = source.csv.as_ref().expect("csv sources have a mapping");
    let at = |i: usize| fields.get(i).map(String::as_str).unwrap_or("");
    let opt = |i: Option<usize>| i.map(at).filter(|v| !v.is_empty());
    let stamp = |field: &'static str, v: Option<&str>| -> Result<Option<Stamp>, SourceError> {
        let Some(v) = v else { return Ok(None) };
        let bad = || SourceError::BadTime {
            field,
            value: v.to_owned(),
        };
        let s = match &m.time_format {
            TimeFormat::Wall(pattern) => {
                Stamp::Wall(chrono::NaiveDateTime::parse_from_str(v, pattern).map_err(|_| bad())?)
            }
            TimeFormat::WithOffset(pattern) => Stamp::utc(
                DateTime::parse_from_str(v, pattern)
                    .map_err(|_| bad())?
                    .to_utc(),
                false,
            ),
            TimeFormat::Rfc3339 => Stamp::utc(
                DateTime::parse_from_rfc3339(v).map_err(|_| bad())?.to_utc(),
                v.contains('.'),
            ),
            TimeFormat::EpochSeconds => time::parse_epoch_seconds(v).ok_or_else(bad)?,
            TimeFormat::EpochMillis => time::parse_epoch_int(v, 1000).ok_or_else(bad)?,
            TimeFormat::EpochMicros => time::parse_epoch_int(v, 1_000_000).ok_or_else(bad)?,
        };
        Ok(Some(s))
    };
    let start = stamp("start_time", opt(Some(m.start_time)))?.ok_or(SourceError::Missing {
        field: "start_time",
    })?;
    let answer = stamp("answer_time", opt(m.answer_time))?;
    let end = stamp("end_time", opt(m.end_time))?;
    let billsec = match opt(m.billsec) {
        Some(v) => Some(time::parse_seconds(v).ok_or_else(|| SourceError::BadTime {
            field: "billsec",
            value: v.to_owned(),
        })?),
        None => None,
    };
    // The mapping's own words and Asterisk's names state the outcome. A release cause
    // (`16`, `NORMAL_CLEARING`, `486`) only says how the call ended: with an answer time the
    // call was answered, otherwise the cause decides (README), as for FreeSWITCH and Kazoo.
    let (disposition, causes) = match opt(m.disposition) {
        Some(v) => match m
            .dispositions
            .get(v)
            .copied()
            .or_else(|| disposition::asterisk_name(v))
        {
            Some(d) => (Some(d), Vec::new()),
            None if disposition::cause(v).is_some() => (None, vec![v.to_owned()]),
            None => {
                return Err(SourceError::UnknownValue {
                    field: "disposition",
                    value: v.to_owned(),
                })
            }
        },
        None => (None, Vec::new()),
    };
    // Carrier files often write the end and the billed seconds but no answer time. Without
    // one every answered row was dead-lettered `inconsistent_answer`; its answer is end −
    // billsec, as Kazoo's. A mapped word or Asterisk name decides whether the row was
    // answered; a release cause (or no status) leaves it to the billed seconds, as the answer
    // time would (README).
    let answer_from_billsec = m.answer_time.is_none()
        && match disposition {
            Some(d) => d == Disposition::Answered,
            None => billsec.is_some_and(|b| b > Duration::zero()),
        };
    let id = at(m.cdr_id).to_owned();
    let id = if id.is_empty() {
        content_id(fields.join("\u{1f}").as_bytes())
    } else {
        id
    };
    Ok(Read::Record(Box::new(Record {
        record_id: id.clone(),
        cdr_id: id,
        calling: at(m.calling_number).to_owned(),
        presented: None,
        called: at(m.called_number).to_owned(),
        context: None,
        accountcode: m.customer_id.map(|i| at(i).to_owned()),
        times: Times {
            start,
            answer,
            end,
            duration: None,
            billsec,
            answer_from_billsec,
        },
        disposition,
        causes,
    })))
}

#[cfg(test)]
mod tests {
    use evn_config::SourceFormat;

    use crate::testing::{code, run, source};

    fn carrier() -> evn_config::Source {
        source(
            SourceFormat::Csv,
            r#"timezone = "Europe/Berlin"
delimiter = ";"
columns = ["id", "a", "b", "start", "answer", "end", "status"]
time_format = "%d.%m.%Y %H:%M:%S"
dispositions = { "OK" = "answered", "BESETZT" = "busy" }
[source.fields]
cdr_id = "id"
calling_number = "a"
called_number = "b"
start_time = "start"
answer_time = "answer"
end_time = "end"
disposition = "status"
"#,
        )
    }

    #[test]
    fn a_mapped_carrier_row_field_by_field() {
        let row = "CR-77;004930901821;0221555010;24.11.2026 09:15:02;24.11.2026 09:15:09;24.11.2026 09:17:11;OK";
        // Both lines belong to customers: internal.
        assert_eq!(code(&carrier(), row.as_bytes()), "skip internal");
        let row = row.replace("0221555010", "0033123456789");
        assert_eq!(
            run(&carrier(), row.as_bytes()).unwrap(),
            "sw1 CR-77 K1001 +4930901821→+33123456789 outbound answered \
             start=2026-11-24T08:15:02Z answer=08:15:09 end=08:17:11 billable=122s id=CR-77"
        );
        let busy = row
            .replace(";OK", ";BESETZT")
            .replace("24.11.2026 09:15:09", "");
        assert!(run(&carrier(), busy.as_bytes())
            .unwrap()
            .contains("outbound busy"));
        let sip = row
            .replace(";OK", ";486")
            .replace("24.11.2026 09:15:09", "");
        assert!(run(&carrier(), sip.as_bytes())
            .unwrap()
            .contains("outbound busy"));
        assert_eq!(
            code(&carrier(), row.replace(";OK", ";??").as_bytes()),
            "unknown_enum_value"
        );
        assert_eq!(
            code(&carrier(), row.replace(";OK", ";CALL_ANSWERED").as_bytes()),
            "unknown_enum_value"
        );
        assert_eq!(
            code(&carrier(), b"id;a;b;start;answer;end;status"),
            "skip header"
        );
    }

    #[test]
    fn a_release_cause_in_the_status_column_does_not_override_the_answer_time() {
        let row = "Y-1;089 123456;0151 12345678;24.11.2026 09:15:02;24.11.2026 09:15:09;24.11.2026 09:17:11;16";
        for status in ["16", "NORMAL_CLEARING", "sip:200"] {
            let row = row.replace(";16", &format!(";{status}"));
            let got = run(&carrier(), row.as_bytes()).unwrap();
            assert!(
                got.contains("outbound answered") && got.contains("billable=122s"),
                "{status}: {got}"
            );
            // Without an answer time the cause decides.
            let row = row.replace("24.11.2026 09:15:09", "");
            let got = run(&carrier(), row.as_bytes()).unwrap();
            assert!(got.contains("outbound no_answer"), "{status}: {got}");
        }
        let busy = row
            .replace(";16", ";USER_BUSY")
            .replace("24.11.2026 09:15:09", "");
        assert!(run(&carrier(), busy.as_bytes())
            .unwrap()
            .contains("outbound busy"));
        // A word of the mapping still decides on its own, answer time or not.
        let mapped = row.replace(";16", ";BESETZT");
        assert!(run(&carrier(), mapped.as_bytes())
            .unwrap()
            .contains("outbound busy start=2026-11-24T08:15:02Z answer=-"));
    }

    /// Audit s15 item 6: end, billsec and status, no answer column (a common carrier layout).
    fn without_answer_column() -> evn_config::Source {
        source(
            SourceFormat::Csv,
            r#"timezone = "Europe/Berlin"
delimiter = ";"
columns = ["id", "a", "b", "start", "end", "billsec", "status"]
time_format = "%d.%m.%Y %H:%M:%S"
dispositions = { "OK" = "answered", "BESETZT" = "busy" }
[source.fields]
cdr_id = "id"
calling_number = "a"
called_number = "b"
start_time = "start"
end_time = "end"
billsec = "billsec"
disposition = "status"
"#,
        )
    }

    #[test]
    fn without_an_answer_column_the_answer_is_end_minus_billsec() {
        let s = without_answer_column();
        // The auditor's line: it was dead-lettered `inconsistent_answer`.
        let row = "X-1;089 123456;0151 12345678;24.11.2026 09:15:02;24.11.2026 09:17:11;122;OK";
        assert_eq!(
            run(&s, row.as_bytes()).unwrap(),
            "sw1 X-1 K1002 +4989123456→+4915112345678 outbound answered \
             start=2026-11-24T08:15:02Z answer=08:15:09 end=08:17:11 billable=122s id=X-1"
        );
        // A release cause leaves the answer to the billed seconds, as an answer time would.
        for (status, billsec, want) in [
            ("16", "122", "outbound answered"),
            ("NORMAL_CLEARING", "122", "outbound answered"),
            ("16", "0", "outbound no_answer"),
            ("USER_BUSY", "0", "outbound busy"),
            ("", "122", "outbound answered"),
            ("", "0", "outbound failed"),
            ("BESETZT", "0", "outbound busy"),
        ] {
            let row = row
                .replace(";OK", &format!(";{status}"))
                .replace(";122;", &format!(";{billsec};"));
            let got = run(&s, row.as_bytes()).unwrap();
            assert!(got.contains(want), "{status}/{billsec}: {got}");
            assert_eq!(
                got.contains("answer=-"),
                billsec == "0",
                "{status}/{billsec}: {got}"
            );
        }
        // A mapped word says answered, but nothing says for how long.
        assert_eq!(
            code(&s, row.replace(";122;", ";;").as_bytes()),
            "missing_field"
        );
        // More billed seconds than the call lasted: the answer would precede the start.
        for billsec in ["130", "999999999999"] {
            assert_eq!(
                code(&s, row.replace(";122;", &format!(";{billsec};")).as_bytes()),
                "answer_before_start",
                "{billsec}"
            );
        }
    }

    #[test]
    fn a_derived_answer_crosses_the_spring_clock_change_by_the_instant() {
        // 29 March 2026: 02:00 CET becomes 03:00 CEST. 90 s before 03:01:00 CEST is 01:59:30
        // CET; wall-clock arithmetic would give 02:59:30, a time that did not exist.
        let row = "X-2;089 123456;0151 12345678;29.03.2026 01:59:00;29.03.2026 03:01:00;90;OK";
        assert_eq!(
            run(&without_answer_column(), row.as_bytes()).unwrap(),
            "sw1 X-2 K1002 +4989123456→+4915112345678 outbound answered \
             start=2026-03-29T00:59:00Z answer=00:59:30 end=01:01:00 billable=90s id=X-2"
        );
    }

    #[test]
    fn a_pattern_with_an_offset_is_read_by_that_offset_not_the_zone() {
        let s = source(
            SourceFormat::Csv,
            r#"timezone = "Europe/Berlin"
delimiter = ";"
columns = ["id", "a", "b", "start", "answer", "end", "status"]
time_format = "%Y-%m-%d %H:%M:%S%z"
[source.fields]
cdr_id = "id"
calling_number = "a"
called_number = "b"
start_time = "start"
answer_time = "answer"
end_time = "end"
disposition = "status"
"#,
        );
        // 23:30 UTC on 30 November is 1 December in Berlin: the December bill.
        let row = "Z-1;+4989123456;+4915112345678;2026-11-30 23:30:00+0000;2026-11-30 23:30:05+0000;2026-11-30 23:32:05+0000;ANSWERED";
        assert_eq!(
            run(&s, row.as_bytes()).unwrap(),
            "sw1 Z-1 K1002 +4989123456→+4915112345678 outbound answered \
             start=2026-11-30T23:30:00Z answer=23:30:05 end=23:32:05 billable=120s id=Z-1"
        );
        let row = row.replace("+0000", "+0100");
        assert!(
            run(&s, row.as_bytes())
                .unwrap()
                .contains("start=2026-11-30T22:30:00Z"),
            "{row}"
        );
        assert_eq!(
            code(&s, row.replace("+0100;A", ";A").as_bytes()),
            "bad_timestamp"
        );
    }

    #[test]
    fn epoch_and_rfc3339_times_need_no_zone() {
        let s = source(
            SourceFormat::Csv,
            r#"columns = ["id", "a", "b", "answer", "billsec", "start"]
time_format = "rfc3339"
[source.fields]
cdr_id = "id"
calling_number = "a"
called_number = "b"
start_time = "start"
answer_time = "answer"
billsec = "billsec"
"#,
        );
        let row =
            "x1,+4989123456,+4915112345678,2026-11-24T09:15:09+01:00,122,2026-11-24T08:15:02Z";
        let got = run(&s, row.as_bytes()).unwrap();
        assert!(
            got.contains("answer=08:15:09 end=08:17:11 billable=122s"),
            "{got}"
        );
        let unanswered = "x2,+4989123456,+4915112345678,,0,2026-11-24T08:15:02Z";
        let got = run(&s, unanswered.as_bytes()).unwrap();
        assert!(
            got.contains("outbound failed") && got.contains("answer=-"),
            "{got}"
        );
    }
}
