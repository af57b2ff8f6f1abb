//! Records of real switches → canonical CDRs (INTERFACES.md §1), so the rest of the pipeline
//! never sees a vendor format.
//!
//! One job: [`convert`] turns one Kafka record of a configured source (`sources.toml`) into a
//! canonical [`Cdr`] with its original record id, a counted skip (a header line, the other leg
//! of a call, an internal or inbound call), or a [`SourceError`] whose [`SourceError::code`] is
//! the dead-letter reason. Pure: no IO, no clock. Record by record: a rule that needed the other
//! records of a call (legs grouped by `linkedid`) could not hold across Kafka partitions and
//! restarts, so each format's leg rule looks only at the record itself (see each module).
//!
//! Invalid UTF-8 is repaired (U+FFFD) and the record goes on when the damage is in a field that
//! is not billed (a caller name); when an id, number or time is damaged it is dead-lettered.

mod asterisk;
mod disposition;
mod freeswitch;
mod generic;
pub mod kamailio;
mod kazoo;
mod number;
mod time;

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use chrono_tz::Europe::Berlin;

use evn_cdr::{Cdr, Direction, Disposition, Rejection};
use evn_config::{CustomerFrom, NumberDirectory, Source, SourceFormat};

pub use disposition::recognise as recognise_disposition;
pub use number::{normalise as normalise_number, Num, Unplaceable};
pub use time::{resolve as resolve_times, Resolved, Stamp, Times, GREGORIAN_UNIX_OFFSET};

/// What a source record became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Converted {
    /// A canonical CDR for validation, rating and storage.
    Call(Box<Call>),
    /// Deliberately not a CDR; the reason is counted.
    Skip(Skip),
}

/// A converted call with its provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub cdr: Cdr,
    /// The record's own id in its source (Asterisk `uniqueid`, FreeSWITCH `uuid`, Kazoo
    /// `call_id`, the mapped column of a carrier file, or a content hash where there is none).
    pub record_id: String,
    /// Invalid UTF-8 was replaced in a field that is not billed.
    pub repaired: bool,
}

/// Why a record is deliberately not a CDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    /// A CSV header line that a log shipper sent as a record.
    Header,
    /// The other leg of a call whose billable leg is recorded separately (FreeSWITCH and Kazoo
    /// B-legs).
    OtherLeg,
    /// Between two lines of the switch (extensions, feature codes, two customer lines).
    Internal,
    /// A call to a customer's line (or arriving on an inbound context).
    Inbound,
    /// A SIP transaction that is neither a call's start nor its end (Kamailio REGISTER, ACK …).
    Signalling,
    /// A call's start record (Kamailio INVITE 2xx): the call is made from it and its end
    /// record, and counted there.
    CallStart,
    /// A repeated start of a call already started (a re-INVITE inside the dialog, a resent
    /// record).
    InDialog,
}

impl Skip {
    /// The summary and metric reason; `internal` and `inbound` are the rating's own codes.
    pub fn code(self) -> &'static str {
        match self {
            Skip::Header => "header",
            Skip::OtherLeg => "other_leg",
            Skip::Internal => "internal",
            Skip::Inbound => "inbound",
            Skip::Signalling => "signalling",
            Skip::CallStart => "call_start",
            Skip::InDialog => "in_dialog",
        }
    }
}

/// Why a source record cannot become a CDR: the dead-letter reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The canonical checks (ids, numbers, time order, answer consistency) failed.
    #[error("{0}")]
    Cdr(#[from] Rejection),
    #[error("malformed_csv: {detail}")]
    MalformedCsv { detail: String },
    #[error("malformed_json: {detail}")]
    MalformedJson { detail: String },
    #[error("missing_field: `{field}` is required")]
    Missing { field: &'static str },
    #[error(
        "invalid_utf8: `{field}` holds bytes that are not UTF-8, and it is needed for billing"
    )]
    DamagedField { field: &'static str },
    #[error("bad_timestamp: `{field}` is not a time this source writes: {value:?}")]
    BadTime { field: &'static str, value: String },
    #[error("bad_timestamp: `{field}` is a wall-clock time but the source has no `timezone` in sources.toml")]
    NoTimezone { field: &'static str },
    #[error("nonexistent_local_time: `{field}` {value} does not exist in {zone} (the hour skipped when clocks go forward)")]
    NonexistentLocalTime {
        field: &'static str,
        value: String,
        zone: String,
    },
    #[error("ambiguous_local_time: the record's times fall into the hour repeated when {zone} clocks go back, and its readings differ in billed duration or month")]
    AmbiguousLocalTime { zone: String },
    #[error("bad_number: `{field}` {detail}")]
    BadNumber { field: &'static str, detail: String },
    #[error("unknown_enum_value: `{field}` has unknown value {value:?}")]
    UnknownValue { field: &'static str, value: String },
    /// A Kamailio start without its end within the source's `max_call_hours`, or an end
    /// whose start never came.
    #[error("{}", if *.end { "unpaired_end: a BYE whose call start (INVITE 2xx) was never seen: check that the shipper keys records by Call-ID so both reach the same partition" } else { "unpaired_start: an answered INVITE whose BYE did not arrive within the source's max_call_hours" })]
    Unpaired { end: bool },
    #[error("unknown_line: neither {calling:?} nor {called:?} is a customer's line in numbers.csv on {date}: add the line, or set customer = \"accountcode\"")]
    UnknownLine {
        calling: String,
        called: String,
        date: chrono::NaiveDate,
    },
}

impl SourceError {
    /// The reason code: a closed set, used as metric label, summary key and `evn-reason`.
    pub fn code(&self) -> &'static str {
        match self {
            SourceError::Cdr(r) => r.code(),
            SourceError::MalformedCsv { .. } => "malformed_csv",
            SourceError::MalformedJson { .. } => "malformed_json",
            SourceError::Missing { .. } => "missing_field",
            SourceError::DamagedField { .. } => "invalid_utf8",
            SourceError::BadTime { .. } | SourceError::NoTimezone { .. } => "bad_timestamp",
            SourceError::NonexistentLocalTime { .. } => "nonexistent_local_time",
            SourceError::AmbiguousLocalTime { .. } => "ambiguous_local_time",
            SourceError::BadNumber { .. } => "bad_number",
            SourceError::UnknownValue { .. } => "unknown_enum_value",
            SourceError::UnknownLine { .. } => "unknown_line",
            SourceError::Unpaired { end: false } => "unpaired_start",
            SourceError::Unpaired { end: true } => "unpaired_end",
        }
    }
}

/// Converts one record of `source`. `numbers` places calls of sources without customer ids.
/// Never panics, whatever the bytes.
pub fn convert(
    source: &Source,
    numbers: &NumberDirectory,
    bytes: &[u8],
) -> Result<Converted, SourceError> {
    let (text, repaired) = match String::from_utf8_lossy(bytes) {
        Cow::Borrowed(t) => (Cow::Borrowed(t), false),
        Cow::Owned(t) => (Cow::Owned(t), true),
    };
    let record = match source.format {
        SourceFormat::CanonicalJson => {
            // Canonical records need no conversion; ingest parses them itself. Here for
            // completeness (tests, tools).
            let cdr = evn_cdr::parse(bytes)?;
            let record_id = cdr.cdr_id.to_string();
            return Ok(Converted::Call(Box::new(Call {
                cdr,
                record_id,
                repaired: false,
            })));
        }
        SourceFormat::AsteriskCsv => asterisk::read(source, &text)?,
        SourceFormat::FreeswitchJson => freeswitch::read_json(source, &text)?,
        SourceFormat::FreeswitchCsv => freeswitch::read_csv(source, &text)?,
        SourceFormat::KazooJson => kazoo::read(source, &text)?,
        SourceFormat::Csv => generic::read(source, &text)?,
        SourceFormat::KamailioJson => return kamailio::read_alone(source, numbers, bytes),
    };
    match record {
        Read::Skip(skip) => Ok(Converted::Skip(skip)),
        Read::Record(r) => finish(source, numbers, *r, repaired),
    }
}

/// What a format reader makes of a record before the shared rules apply.
pub(crate) enum Read {
    Record(Box<Record>),
    Skip(Skip),
}

/// A record in vendor-neutral terms, numbers and times still as written.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub record_id: String,
    pub cdr_id: String,
    pub calling: String,
    /// The caller id presented to the network (Asterisk's `clid`), used when `calling` is an
    /// extension: it names the customer's line.
    pub presented: Option<String>,
    pub called: String,
    /// Asterisk `dcontext`, FreeSWITCH `context`.
    pub context: Option<String>,
    pub accountcode: Option<String>,
    pub times: Times,
    /// Known from the record (Asterisk, mapped CSV); None: answered iff an answer time exists,
    /// otherwise from `causes`.
    pub disposition: Option<Disposition>,
    /// Hangup causes, Q.850 or SIP, most specific first.
    pub causes: Vec<String>,
}

fn damaged(field: &'static str, value: &str) -> Result<(), SourceError> {
    if value.contains('\u{FFFD}') {
        return Err(SourceError::DamagedField { field });
    }
    Ok(())
}

fn place(field: &'static str, raw: &str, source: &Source) -> Result<Num, SourceError> {
    damaged(field, raw)?;
    number::normalise(raw, &source.plan).map_err(|e| SourceError::BadNumber {
        field,
        detail: e.to_string(),
    })
}

/// The shared rules: times to UTC, numbers to E.164, disposition, then direction and customer:
/// - `customer = "number-directory"`: a call from a customer's line (by `numbers.csv` on the
///   call's Berlin date) is outbound, to one inbound, between two of them (or to an extension)
///   internal; between extensions internal; a call on an `inbound_contexts` context inbound;
///   a call that touches no customer's line is dead-lettered `unknown_line`.
/// - `customer = "accountcode"`: the account code is the customer; inbound contexts are
///   inbound, calls to extensions internal, everything else outbound.
fn finish(
    source: &Source,
    numbers: &NumberDirectory,
    r: Record,
    repaired: bool,
) -> Result<Converted, SourceError> {
    damaged("cdr_id", &r.cdr_id)?;
    let resolved = time::resolve(r.times, source.timezone)?;
    // A caller id that cannot be placed (FreeSWITCH's default `0000000000`, a foreign CLI
    // without its prefix) matters only for a call we bill: held until the direction is known,
    // so an inbound call is skipped as such instead of filling the dead-letter topic.
    let (mut calling, mut caller_error) = match place("calling_number", &r.calling, source) {
        Ok(n) => (n, None),
        Err(e @ SourceError::BadNumber { .. }) => (Num::Unknown, Some(e)),
        Err(e) => return Err(e),
    };
    if !matches!(calling, Num::External(_)) {
        // An extension calls out under the line number the switch presents for it.
        if let Some(presented) = r.presented.as_deref() {
            if let Ok(n @ Num::External(_)) = number::normalise(presented, &source.plan) {
                calling = n;
                caller_error = None;
            }
        }
    }
    let called = place("called_number", &r.called, source)?;
    let disposition = r.disposition.unwrap_or_else(|| {
        let causes: Vec<&str> = r.causes.iter().map(String::as_str).collect();
        disposition::from_cause(resolved.answer.is_some(), &causes)
    });
    // An answered call from a customer went somewhere: an empty or non-numeric called number
    // is a record we cannot bill, not an internal call (README: dead-lettered `bad_number`).
    // Feature codes (`*97`) and extensions are Num::Internal and stay internal.
    let unbillable_callee = || -> Result<(), SourceError> {
        if matches!(called, Num::Unknown) && disposition == Disposition::Answered {
            return Err(SourceError::BadNumber {
                field: "called_number",
                detail: format!("{:?} is not a number, and the call was answered", r.called),
            });
        }
        Ok(())
    };
    let inbound_context = r
        .context
        .as_deref()
        .is_some_and(|c| source.inbound_contexts.iter().any(|i| i == c));
    let date = berlin_date(resolved.start).ok_or_else(|| SourceError::BadTime {
        field: "start_time",
        value: resolved.start.to_rfc3339(),
    })?;
    if let Some(e) = caller_error {
        let to_customer = matches!(source.customer, CustomerFrom::NumberDirectory)
            && called
                .e164()
                .is_some_and(|n| numbers.customer_of(n, date).is_some());
        return if inbound_context || to_customer {
            Ok(Converted::Skip(Skip::Inbound))
        } else {
            Err(e)
        };
    }
    let (direction, customer_id) = match source.customer {
        CustomerFrom::NumberDirectory => {
            let from = calling.e164().and_then(|n| numbers.customer_of(n, date));
            let to = called.e164().and_then(|n| numbers.customer_of(n, date));
            let called_internal = !matches!(called, Num::External(_));
            if inbound_context {
                return Ok(Converted::Skip(Skip::Inbound));
            }
            match (from, to) {
                (Some(_), Some(_)) => return Ok(Converted::Skip(Skip::Internal)),
                (Some(_), None) if called_internal => {
                    unbillable_callee()?;
                    return Ok(Converted::Skip(Skip::Internal));
                }
                (Some(c), None) => (Direction::Outbound, c.to_owned()),
                (None, Some(_)) => return Ok(Converted::Skip(Skip::Inbound)),
                (None, None) if called_internal && !matches!(calling, Num::External(_)) => {
                    return Ok(Converted::Skip(Skip::Internal))
                }
                (None, None) if called_internal => return Ok(Converted::Skip(Skip::Inbound)),
                (None, None) => {
                    return Err(SourceError::UnknownLine {
                        calling: r.calling,
                        called: r.called,
                        date,
                    })
                }
            }
        }
        CustomerFrom::Accountcode => {
            let account = r.accountcode.as_deref().map(str::trim).unwrap_or("");
            if inbound_context {
                return Ok(Converted::Skip(Skip::Inbound));
            }
            if !matches!(called, Num::External(_)) {
                unbillable_callee()?;
                return Ok(Converted::Skip(Skip::Internal));
            }
            if account.is_empty() {
                return Err(SourceError::Missing {
                    field: "accountcode",
                });
            }
            damaged("accountcode", account)?;
            (Direction::Outbound, account.to_owned())
        }
    };
    let calling_number = match calling {
        Num::External(n) => n,
        Num::Internal(s) => {
            evn_cdr::PhoneNumber::parse(&s).map_err(|error| Rejection::BadNumber {
                field: "calling_number",
                error,
            })?
        }
        Num::Unknown => {
            return Err(SourceError::BadNumber {
                field: "calling_number",
                detail: format!("{:?} is not a number", r.calling),
            })
        }
    };
    let Num::External(called_number) = called else {
        unreachable!("calls to internal numbers were skipped above");
    };
    // A leg that was not answered has no answer time, whatever the record's answer column.
    let answer_time = if disposition == Disposition::Answered {
        resolved.answer
    } else {
        None
    };
    let cdr = Cdr::new(Cdr {
        cdr_id: r.cdr_id.into(),
        switch_id: source.switch_id.as_str().into(),
        customer_id: customer_id.into(),
        calling_number,
        called_number,
        direction,
        start_time: resolved.start,
        answer_time,
        end_time: resolved.end,
        disposition,
    })?;
    Ok(Converted::Call(Box::new(Call {
        cdr,
        record_id: r.record_id,
        repaired,
    })))
}

/// None at the very ends of chrono's range, where the local date itself does not exist
/// (`date_naive` would panic there).
fn berlin_date(t: DateTime<Utc>) -> Option<chrono::NaiveDate> {
    use chrono::{Offset, TimeZone};
    let offset = Berlin.offset_from_utc_datetime(&t.naive_utc()).fix();
    t.naive_utc()
        .checked_add_offset(offset)
        .map(|local| local.date())
}

/// A short stable id for records that have none: the same bytes give the same id, so an exact
/// duplicate is caught by the switch-duplicate check.
pub(crate) fn content_id(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

/// One CSV record of a message (a log shipper sends one line per record).
pub(crate) fn csv_fields(source: &Source, text: &str) -> Result<Option<Vec<String>>, SourceError> {
    let trimmed = text.trim_matches(['\n', '\r']);
    if trimmed.trim().is_empty() {
        return Err(SourceError::MalformedCsv {
            detail: "the record is empty".into(),
        });
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(source.delimiter)
        .from_reader(trimmed.as_bytes());
    let mut records = reader.records();
    let first = match records.next() {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            return Err(SourceError::MalformedCsv {
                detail: e.to_string(),
            })
        }
        None => {
            return Err(SourceError::MalformedCsv {
                detail: "the record is empty".into(),
            })
        }
    };
    if records.next().is_some() {
        return Err(SourceError::MalformedCsv {
            detail: "more than one line: send one CSV record per Kafka record".into(),
        });
    }
    let fields: Vec<String> = first.iter().map(|f| f.trim().to_owned()).collect();
    let is_header = fields.len() == source.columns.len()
        && fields
            .iter()
            .zip(&source.columns)
            .all(|(f, c)| f.eq_ignore_ascii_case(c));
    if is_header {
        return Ok(None);
    }
    // The export's header with the same names in another order: every row after it would be
    // read with its fields swapped (caller for callee, start for end). Each record stands
    // alone, so the rows cannot be re-mapped; the header names the problem, loudly.
    let mut names: Vec<String> = fields.iter().map(|f| f.to_ascii_lowercase()).collect();
    let mut configured: Vec<String> = source
        .columns
        .iter()
        .map(|c| c.to_ascii_lowercase())
        .collect();
    names.sort();
    configured.sort();
    if names.len() > 1 && names == configured {
        return Err(SourceError::MalformedCsv {
            detail: format!(
                "a header whose columns are in another order than sources.toml's `columns` ({}): the export changed; set `columns` to its order, or the rows after it are misread",
                fields.join(", ")
            ),
        });
    }
    let expected = source.columns.len();
    let ok = if source.columns_configured || source.format != SourceFormat::AsteriskCsv {
        fields.len() == expected
    } else {
        (evn_config::ASTERISK_CSV_MIN_FIELDS..=expected).contains(&fields.len())
    };
    if !ok {
        return Err(SourceError::MalformedCsv {
            detail: format!(
                "{} fields, the source's columns are {expected}: check `columns` in sources.toml",
                fields.len()
            ),
        });
    }
    Ok(Some(fields))
}

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod robustness_tests;
#[cfg(test)]
pub(crate) mod testing;
