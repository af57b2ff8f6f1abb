//! Asterisk `cdr_csv` (Master.csv) and `cdr_custom` rows.
//!
//! Master.csv columns, in `cdr_csv`'s order: accountcode, src, dst, dcontext, clid, channel,
//! dstchannel, lastapp, lastdata, start, answer, end, duration, billsec, disposition, amaflags
//! [, uniqueid with `loguniqueid=yes`] [, userfield with `loguserfield=yes`]. Times are local
//! wall clock `%Y-%m-%d %H:%M:%S` (UTC with `usegmtime=yes`: configure `timezone = "UTC"`),
//! answer empty when unanswered. A `cdr_custom` mapping is configured with `columns` and may
//! add `sequence`, `linkedid`, or epoch times (`start(double)`: seconds with a fraction, used to
//! the microsecond) and `billsec,f` (fractional billsec).
//!
//! Legs: Asterisk writes one row per pair of channels it bridged or tried (a ring group gives
//! one ANSWERED row and one NO ANSWER row per other phone). Every row stands on its own:
//! unanswered rows are counted as unanswered, the answered one is billed. Ids: `uniqueid` is
//! the A channel's and repeats across the rows of a call (and of a transfer), so the CDR id is
//! `uniqueid-sequence` with a `sequence` column, else `uniqueid-<hash of the row>`, else the
//! hash alone: exact duplicates collapse, distinct rows of one call do not.

use evn_cdr::Disposition;
use evn_config::Source;

use crate::time::{self, Stamp, Times};
use crate::{content_id, csv_fields, number, Read, Record, Skip, SourceError};

pub(crate) fn read(source: &Source, text: &str) -> Result<Read, SourceError> {
    let Some(fields) = csv_fields(source, text)? else {
        return Ok(Read::Skip(Skip::Header));
    };
    let get = |name: &str| -> Option<&str> {
        source
            .column(name)
            .and_then(|i| fields.get(i))
            .map(String::as_str)
    };
    let start = stamp("start", get("start"))?.ok_or(SourceError::Missing { field: "start" })?;
    let answer = stamp("answer", get("answer"))?;
    let end = stamp("end", get("end"))?;
    let seconds = |field: &'static str| -> Result<_, SourceError> {
        match get(field).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => time::parse_seconds(v)
                .map(Some)
                .ok_or_else(|| SourceError::BadTime {
                    field,
                    value: v.to_owned(),
                }),
        }
    };
    let duration = seconds("duration")?;
    let billsec = seconds("billsec")?;
    let disposition_text = get("disposition").unwrap_or("");
    let disposition = match disposition_text.trim().to_ascii_uppercase().as_str() {
        "ANSWERED" => Disposition::Answered,
        "NO ANSWER" => Disposition::NoAnswer,
        "BUSY" => Disposition::Busy,
        "FAILED" | "CONGESTION" => Disposition::Failed,
        _ => {
            return Err(SourceError::UnknownValue {
                field: "disposition",
                value: disposition_text.to_owned(),
            })
        }
    };
    let content = content_id(fields.join("\u{1f}").as_bytes());
    let uniqueid = get("uniqueid").filter(|u| !u.is_empty());
    let sequence = get("sequence").filter(|s| !s.is_empty());
    let (record_id, cdr_id) = match (uniqueid, sequence) {
        (Some(u), Some(s)) => (u.to_owned(), format!("{u}-{s}")),
        (Some(u), None) => (u.to_owned(), format!("{u}-{content}")),
        (None, _) => (content.clone(), content),
    };
    Ok(Read::Record(Box::new(Record {
        record_id,
        cdr_id,
        calling: get("src").unwrap_or("").to_owned(),
        presented: get("clid")
            .and_then(number::in_angle_brackets)
            .map(str::to_owned),
        called: get("dst").unwrap_or("").to_owned(),
        context: get("dcontext").map(str::to_owned),
        accountcode: get("accountcode").map(str::to_owned),
        times: Times {
            start,
            answer,
            end,
            duration,
            billsec,
            answer_from_billsec: false,
        },
        disposition: Some(disposition),
        causes: Vec::new(),
    })))
}

/// A time column: empty, epoch seconds (`start(double)` / `start(int64)`), or wall clock.
pub(crate) fn stamp(
    field: &'static str,
    value: Option<&str>,
) -> Result<Option<Stamp>, SourceError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if let Some(s) = time::parse_epoch_seconds(v) {
        return Ok(Some(s));
    }
    time::parse_wall(v)
        .map(|t| Some(Stamp::Wall(t)))
        .ok_or_else(|| SourceError::BadTime {
            field,
            value: v.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use evn_config::SourceFormat;

    use crate::testing::{code, run, source};

    fn src() -> evn_config::Source {
        source(SourceFormat::AsteriskCsv, "")
    }

    const ANSWERED: &str = r#""","+4930901820","015112345678","from-internal","""Müller"" <+4930901820>","PJSIP/1001-00000001","PJSIP/telekom-00000002","Dial","PJSIP/015112345678@telekom,60","2026-11-24 09:15:02","2026-11-24 09:15:09","2026-11-24 09:17:11",129,122,"ANSWERED","DOCUMENTATION","1795508102.1","""#;

    #[test]
    fn an_answered_outbound_row_field_by_field() {
        assert_eq!(
            run(&src(), ANSWERED.as_bytes()).unwrap(),
            "sw1 1795508102.1-b12ebb935ecb25c0 K1001 +4930901820→+4915112345678 outbound answered \
             start=2026-11-24T08:15:02Z answer=08:15:09 end=08:17:11 billable=122s id=1795508102.1"
        );
    }

    #[test]
    fn an_extension_calls_out_under_its_presented_line() {
        let row = ANSWERED.replace(r#","+4930901820","015"#, r#","1001","015"#);
        let got = run(&src(), row.as_bytes()).unwrap();
        assert!(
            got.contains("K1001 +4930901820→+4915112345678 outbound"),
            "{got}"
        );
    }

    #[test]
    fn the_unanswered_ring_group_row_and_the_default_sixteen_columns() {
        let row = r#""","+4930901820","015112345678","from-internal","","PJSIP/1001-01","PJSIP/telekom-02","Dial","x","2026-11-24 09:15:02",,"2026-11-24 09:15:30",28,0,"NO ANSWER","DOCUMENTATION""#;
        assert_eq!(
            run(&src(), row.as_bytes()).unwrap(),
            "sw1 132412c717619bc3 K1001 +4930901820→+4915112345678 outbound no_answer \
             start=2026-11-24T08:15:02Z answer=- end=08:15:30 billable=0s id=132412c717619bc3"
        );
    }

    #[test]
    fn internal_inbound_and_unknown_lines() {
        let internal = ANSWERED.replace("015112345678", "1002");
        assert_eq!(code(&src(), internal.as_bytes()), "skip internal");
        let feature = ANSWERED.replace("015112345678", "*97");
        assert_eq!(code(&src(), feature.as_bytes()), "skip internal");
        let inbound = ANSWERED.replace(
            r#""+4930901820","015112345678""#,
            r#""015112345678","+4989123456""#,
        );
        assert_eq!(code(&src(), inbound.as_bytes()), "skip inbound");
        let stranger = ANSWERED.replace("+4930901820", "+4940111222");
        assert_eq!(code(&src(), stranger.as_bytes()), "unknown_line");
        let from_trunk = source(
            SourceFormat::AsteriskCsv,
            "inbound_contexts = [\"from-internal\"]\n",
        );
        assert_eq!(code(&from_trunk, ANSWERED.as_bytes()), "skip inbound");
    }

    #[test]
    fn an_answered_call_to_no_number_is_a_bad_number_not_internal() {
        // The caller dialled the trunk with the per-call CLIR prefix: billed to the number.
        let clir = ANSWERED.replace(r#","015112345678","from"#, r#","*31#015112345678","from"#);
        let got = run(&src(), clir.as_bytes()).unwrap();
        assert!(
            got.contains("K1001 +4930901820→+4915112345678 outbound answered"),
            "{got}"
        );
        let empty = ANSWERED.replace(r#","015112345678","from"#, r#","","from"#);
        assert_eq!(code(&src(), empty.as_bytes()), "bad_number");
        let word = ANSWERED.replace(r#","015112345678","from"#, r#","s","from"#);
        assert_eq!(code(&src(), word.as_bytes()), "bad_number");
        let accountcode = source(SourceFormat::AsteriskCsv, "customer = \"accountcode\"\n");
        let empty = empty.replacen(r#""""#, r#""K1001""#, 1);
        assert_eq!(code(&accountcode, empty.as_bytes()), "bad_number");
        // Unanswered, nothing is billed either way.
        let tried = ANSWERED
            .replace(r#","015112345678","from"#, r#","","from"#)
            .replace("\"ANSWERED\"", "\"NO ANSWER\"")
            .replace("\"2026-11-24 09:15:09\"", "");
        assert_eq!(code(&src(), tried.as_bytes()), "skip internal");
    }

    #[test]
    fn an_unplaceable_caller_of_an_inbound_call_is_inbound() {
        let no_clid = ANSWERED.replace(r#""""Müller"" <+4930901820>""#, r#""""#);
        let inbound = no_clid.replace(
            r#""+4930901820","015112345678""#,
            r#""0000000000","+4989123456""#,
        );
        assert_eq!(code(&src(), inbound.as_bytes()), "skip inbound");
        let from_trunk = source(
            SourceFormat::AsteriskCsv,
            "inbound_contexts = [\"from-internal\"]\n",
        );
        let to_outside = no_clid.replace(r#""+4930901820","#, r#""0000000000","#);
        assert_eq!(code(&from_trunk, to_outside.as_bytes()), "skip inbound");
        // Not to a customer's line: still dead-lettered.
        assert_eq!(code(&src(), to_outside.as_bytes()), "bad_number");
    }

    #[test]
    fn accountcode_names_the_customer() {
        let s = source(SourceFormat::AsteriskCsv, "customer = \"accountcode\"\n");
        let row = ANSWERED.replacen(r#""""#, r#""K1002""#, 1);
        let got = run(&s, row.as_bytes()).unwrap();
        assert!(got.contains(" K1002 +4930901820→"), "{got}");
        assert_eq!(code(&s, ANSWERED.as_bytes()), "missing_field");
    }

    #[test]
    fn cdr_custom_with_sequence_and_epoch_times() {
        let s = source(
            SourceFormat::AsteriskCsv,
            "columns = [\"clid\", \"src\", \"dst\", \"dcontext\", \"start\", \"answer\", \"end\", \"duration\", \"billsec\", \"disposition\", \"accountcode\", \"uniqueid\", \"sequence\"]\n",
        );
        let row = r#""","+4989123456","0033123456789","from-internal","1795508102.250000","1795508109.900000","1795508231.400000","129.150","121.500","ANSWERED","","1795508102.7","14""#;
        assert_eq!(
            run(&s, row.as_bytes()).unwrap(),
            "sw1 1795508102.7-14 K1002 +4989123456→+33123456789 outbound answered \
             start=2026-11-24T08:15:02.250Z answer=08:15:09.900 end=08:17:11.400 billable=122s id=1795508102.7"
        );
    }

    #[test]
    fn garbage_and_headers() {
        assert_eq!(code(&src(), b""), "malformed_csv");
        assert_eq!(code(&src(), b"a,b,c"), "malformed_csv");
        assert_eq!(
            code(&src(), format!("{ANSWERED}\n{ANSWERED}").as_bytes()),
            "malformed_csv"
        );
        assert_eq!(
            code(&src(), ANSWERED.replace("ANSWERED", "MAYBE").as_bytes()),
            "unknown_enum_value"
        );
        assert_eq!(
            code(
                &src(),
                ANSWERED
                    .replace("2026-11-24 09:15:02", "yesterday")
                    .as_bytes()
            ),
            "bad_timestamp"
        );
        let header = evn_config::ASTERISK_CSV_COLUMNS.join(",");
        assert_eq!(code(&src(), header.as_bytes()), "skip header");
        // The same names in another order: not a row to misread, a changed export.
        let mut swapped = evn_config::ASTERISK_CSV_COLUMNS.to_vec();
        swapped.swap(1, 2);
        let swapped = swapped.join(",");
        assert_eq!(code(&src(), swapped.as_bytes()), "malformed_csv");
        let err = run(&src(), swapped.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("another order"), "{err}");
    }

    #[test]
    fn invalid_utf8_in_the_caller_name_is_repaired_in_a_number_dead_lettered() {
        let mut row = ANSWERED.replace("Müller", "M\u{1}ller").into_bytes();
        let at = row.iter().position(|b| *b == 1).unwrap();
        row[at] = 0xfc; // Latin-1 ü
        let got = run(&src(), &row).unwrap();
        assert!(got.ends_with(" repaired"), "{got}");
        let mut row = ANSWERED
            .replace("015112345678", "01511234567\u{1}")
            .into_bytes();
        let at = row.iter().position(|b| *b == 1).unwrap();
        row[at] = 0xff;
        assert_eq!(code(&src(), &row), "invalid_utf8");
    }
}
