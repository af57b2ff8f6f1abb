//! The canonical CDR (INTERFACES.md §1): bytes in, a validated [`Cdr`] or a typed [`Rejection`] out.
//!
//! Pure: no IO, no clock. Every way a record can be unusable maps to one [`Rejection`] variant,
//! whose [`Rejection::code`] is the closed set of reasons the dead-letter topic carries.

mod number;
mod parse;

pub use number::{german_short_code, NumberError, PhoneNumber};
pub use parse::parse;

use chrono::{DateTime, Utc};
use compact_str::CompactString;

/// The longest `cdr_id`, `switch_id` or `customer_id` we accept; longer ids are switch bugs.
pub const MAX_ID_LEN: usize = 128;

/// The longest call accepted, end minus start: switches end calls long before (Asterisk's and
/// most SBCs' session timers), and a CDR beyond it is a clock or field error that would put an
/// absurd charge on a bill (an end in 2099 rated as 6.8 M €). Dead-lettered, never dropped.
pub const MAX_CALL_SECONDS: i64 = 24 * 3600;

/// Calls must start within these years (UTC): outside them a switch's clock was wrong (reset to
/// 1970) or a field garbled, and the billing month would be one no billing run is made for.
pub const PLAUSIBLE_YEARS: std::ops::RangeInclusive<i32> = 2000..=2099;

/// A validated call-detail record. Times are UTC instants whatever offset they arrived with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cdr {
    pub cdr_id: CompactString,
    pub switch_id: CompactString,
    pub customer_id: CompactString,
    pub calling_number: PhoneNumber,
    pub called_number: PhoneNumber,
    pub direction: Direction,
    pub start_time: DateTime<Utc>,
    pub answer_time: Option<DateTime<Utc>>,
    pub end_time: DateTime<Utc>,
    pub disposition: Disposition,
}

impl Cdr {
    /// Checks a CDR built from another format (ids, time order, answer consistency) the way
    /// [`parse`] checks canonical JSON, so every source meets the same contract.
    pub fn new(cdr: Cdr) -> Result<Cdr, Rejection> {
        parse::check(cdr)
    }

    /// Billable duration: `end_time - answer_time`, rounded up to whole seconds; 0 if unanswered.
    pub fn billable_seconds(&self) -> i64 {
        let Some(answer) = self.answer_time else {
            return 0;
        };
        let micros = (self.end_time - answer)
            .num_microseconds()
            .unwrap_or(i64::MAX);
        // Ceiling division; `parse` guarantees end >= answer, so micros >= 0.
        (micros + 999_999) / 1_000_000
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Outbound,
    Inbound,
    Internal,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
            Direction::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    Answered,
    Busy,
    NoAnswer,
    Failed,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Answered => "answered",
            Disposition::Busy => "busy",
            Disposition::NoAnswer => "no_answer",
            Disposition::Failed => "failed",
        }
    }
}

/// Why a record is not a usable CDR. Structured, so the dead-letter header can name the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("invalid_utf8: the record is not valid UTF-8 (first bad byte at {valid_up_to})")]
    InvalidUtf8 { valid_up_to: usize },
    #[error("malformed_json: {detail}")]
    MalformedJson { detail: String },
    #[error("not_an_object: the record is JSON but a {found}, not an object")]
    NotAnObject { found: &'static str },
    #[error("missing_field: `{field}` is required")]
    MissingField { field: &'static str },
    #[error("invalid_type: `{field}` must be {expected}, found {found}")]
    InvalidType {
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("invalid_field: `{field}` {detail}")]
    InvalidField { field: &'static str, detail: String },
    #[error("bad_number: `{field}` {error}")]
    BadNumber {
        field: &'static str,
        error: NumberError,
    },
    #[error("bad_timestamp: `{field}` is not an RFC 3339 timestamp with offset: {value:?}")]
    BadTimestamp { field: &'static str, value: String },
    #[error("unknown_enum_value: `{field}` has unknown value {value:?} (allowed: {allowed})")]
    UnknownEnumValue {
        field: &'static str,
        value: String,
        allowed: &'static str,
    },
    #[error("end_before_answer: end_time is before answer_time")]
    EndBeforeAnswer,
    #[error("answer_before_start: answer_time is before start_time")]
    AnswerBeforeStart,
    #[error("end_before_start: end_time is before start_time")]
    EndBeforeStart,
    #[error("inconsistent_answer: disposition is answered but answer_time is null")]
    AnsweredWithoutAnswerTime,
    #[error("implausible_time: start_time {value} is outside the years 2000 to 2099")]
    ImplausibleTime { value: String },
    #[error(
        "implausible_duration: the call lasts {seconds} s from start to end, more than 24 hours"
    )]
    ImplausibleDuration { seconds: i64 },
}

impl Rejection {
    /// The reason code: a closed set, used as metric label and summary key.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::InvalidUtf8 { .. } => "invalid_utf8",
            Rejection::MalformedJson { .. } => "malformed_json",
            Rejection::NotAnObject { .. } => "not_an_object",
            Rejection::MissingField { .. } => "missing_field",
            Rejection::InvalidType { .. } => "invalid_type",
            Rejection::InvalidField { .. } => "invalid_field",
            Rejection::BadNumber { .. } => "bad_number",
            Rejection::BadTimestamp { .. } => "bad_timestamp",
            Rejection::UnknownEnumValue { .. } => "unknown_enum_value",
            Rejection::EndBeforeAnswer => "end_before_answer",
            Rejection::AnswerBeforeStart => "answer_before_start",
            Rejection::EndBeforeStart => "end_before_start",
            Rejection::AnsweredWithoutAnswerTime => "inconsistent_answer",
            Rejection::ImplausibleTime { .. } => "implausible_time",
            Rejection::ImplausibleDuration { .. } => "implausible_duration",
        }
    }
}
