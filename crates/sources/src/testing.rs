//! Test helpers: a source of each format, the number directory of the fixtures, and a
//! field-by-field view of a converted call.

use chrono::NaiveDate;

use evn_config::{NumberDirectory, NumberEntry, Source, SourceFormat, Sources};

use crate::{convert, Converted, SourceError};

/// Sources as `sources.toml` would configure them (Berlin, German number plan).
pub fn source(format: SourceFormat, extra: &str) -> Source {
    let tz = match format {
        SourceFormat::AsteriskCsv | SourceFormat::FreeswitchCsv | SourceFormat::FreeswitchJson => {
            "timezone = \"Europe/Berlin\"\n"
        }
        _ => "",
    };
    let text = format!(
        "[[source]]\ntopic = \"t\"\nformat = \"{}\"\nswitch_id = \"sw1\"\n{tz}{extra}",
        format.as_str()
    );
    let sources =
        Sources::parse(std::path::Path::new("sources.toml"), &text).expect("valid test source");
    sources.get("t").expect("configured").clone()
}

/// The lines of the fixture customers (the same as fixtures/config/numbers.csv).
pub fn numbers() -> NumberDirectory {
    let d = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let e = |c: &str, p: &str| NumberEntry {
        customer_id: c.into(),
        prefix: p.into(),
        valid_from: d,
        line: 0,
    };
    NumberDirectory::from_entries(vec![
        e("K1001", "+4930901820"),
        e("K1001", "+4930901821"),
        e("K1002", "+4989123456"),
        e("K1003", "+4922155501"),
    ])
}

/// The call's fields as one line, so a test states every field it expects.
pub fn view(c: &Converted) -> String {
    match c {
        Converted::Skip(s) => format!("skip {}", s.code()),
        Converted::Call(call) => {
            let cdr = &call.cdr;
            format!(
                "{} {} {} {}→{} {} {} start={} answer={} end={} billable={}s id={}{}",
                cdr.switch_id,
                cdr.cdr_id,
                cdr.customer_id,
                cdr.calling_number,
                cdr.called_number,
                cdr.direction.as_str(),
                cdr.disposition.as_str(),
                cdr.start_time.format("%Y-%m-%dT%H:%M:%S%.fZ"),
                cdr.answer_time
                    .map_or("-".into(), |t| t.format("%H:%M:%S%.f").to_string()),
                cdr.end_time.format("%H:%M:%S%.f"),
                cdr.billable_seconds(),
                call.record_id,
                if call.repaired { " repaired" } else { "" },
            )
        }
    }
}

pub fn run(source: &Source, bytes: &[u8]) -> Result<String, SourceError> {
    convert(source, &numbers(), bytes).map(|c| view(&c))
}

pub fn code(source: &Source, bytes: &[u8]) -> String {
    match convert(source, &numbers(), bytes) {
        Ok(c) => view(&c),
        Err(e) => e.code().to_owned(),
    }
}
