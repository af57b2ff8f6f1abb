//! Bytes → [`Cdr`]. A hand-written serde visitor keeps parsing single-pass and borrowing, and
//! lets every error name the field it is about (serde's derive only says "invalid type").

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Datelike, Utc};
use compact_str::CompactString;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::{
    Cdr, Direction, Disposition, PhoneNumber, Rejection, MAX_CALL_SECONDS, MAX_ID_LEN,
    PLAUSIBLE_YEARS,
};

/// Parses one Kafka record value. Never panics, whatever the bytes.
pub fn parse(bytes: &[u8]) -> Result<Cdr, Rejection> {
    let text = std::str::from_utf8(bytes).map_err(|e| Rejection::InvalidUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    let top: Top = serde_json::from_str(text).map_err(|e| Rejection::MalformedJson {
        detail: e.to_string(),
    })?;
    match top {
        Top::NotObject(found) => Err(Rejection::NotAnObject { found }),
        Top::Object(raw) => raw.validate(),
    }
}

/// A JSON value as far as a CDR field cares: a string, null, or something of the wrong type.
enum Jv<'a> {
    Str(Cow<'a, str>),
    Null,
    Other(&'static str),
}

impl<'de> de::Deserialize<'de> for Jv<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JvVisitor)
    }
}

struct JvVisitor;

impl<'de> Visitor<'de> for JvVisitor {
    type Value = Jv<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Jv::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Jv::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Jv::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Jv::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Jv::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Jv::Other("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Jv::Other("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Jv::Other("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Jv::Other("a number"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Jv::Other("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Jv::Other("an object"))
    }
}

enum Top<'a> {
    Object(Box<Raw<'a>>),
    NotObject(&'static str),
}

impl<'de> de::Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TopVisitor)
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut raw = Raw::default();
        while let Some(key) = map.next_key::<Key>()? {
            let Key::Field(field) = key else {
                // Forward compatibility: unknown fields are ignored.
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let slot = match field {
                Field::CdrId => &mut raw.cdr_id,
                Field::SwitchId => &mut raw.switch_id,
                Field::CustomerId => &mut raw.customer_id,
                Field::CallingNumber => &mut raw.calling_number,
                Field::CalledNumber => &mut raw.called_number,
                Field::Direction => &mut raw.direction,
                Field::StartTime => &mut raw.start_time,
                Field::AnswerTime => &mut raw.answer_time,
                Field::EndTime => &mut raw.end_time,
                Field::Disposition => &mut raw.disposition,
            };
            let value = map.next_value::<Jv<'de>>()?;
            if slot.is_some() {
                raw.duplicate.get_or_insert(field.name());
            }
            *slot = Some(value);
        }
        Ok(Top::Object(Box::new(raw)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Top::NotObject("array"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Top::NotObject("string"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Top::NotObject("boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Top::NotObject("number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Top::NotObject("number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Top::NotObject("number"))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Top::NotObject("null"))
    }
}

/// The fields a CDR has: keys are matched without copying them (serde's `Cow<str>` would
/// allocate a `String` for every key, ten a record).
#[derive(Clone, Copy)]
enum Field {
    CdrId,
    SwitchId,
    CustomerId,
    CallingNumber,
    CalledNumber,
    Direction,
    StartTime,
    AnswerTime,
    EndTime,
    Disposition,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::CdrId => "cdr_id",
            Field::SwitchId => "switch_id",
            Field::CustomerId => "customer_id",
            Field::CallingNumber => "calling_number",
            Field::CalledNumber => "called_number",
            Field::Direction => "direction",
            Field::StartTime => "start_time",
            Field::AnswerTime => "answer_time",
            Field::EndTime => "end_time",
            Field::Disposition => "disposition",
        }
    }
}

/// An object key: one of the CDR's fields or one this version does not know.
enum Key {
    Field(Field),
    Unknown,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    // serde_json hands borrowed and unescaped keys alike to `visit_str`. A `match`, not a
    // search of `Field::name`s: it compiles to a switch on the length and one comparison.
    fn visit_str<E>(self, key: &str) -> Result<Key, E> {
        Ok(Key::Field(match key {
            "cdr_id" => Field::CdrId,
            "switch_id" => Field::SwitchId,
            "customer_id" => Field::CustomerId,
            "calling_number" => Field::CallingNumber,
            "called_number" => Field::CalledNumber,
            "direction" => Field::Direction,
            "start_time" => Field::StartTime,
            "answer_time" => Field::AnswerTime,
            "end_time" => Field::EndTime,
            "disposition" => Field::Disposition,
            _ => return Ok(Key::Unknown),
        }))
    }
}

#[derive(Default)]
struct Raw<'a> {
    cdr_id: Option<Jv<'a>>,
    switch_id: Option<Jv<'a>>,
    customer_id: Option<Jv<'a>>,
    calling_number: Option<Jv<'a>>,
    called_number: Option<Jv<'a>>,
    direction: Option<Jv<'a>>,
    start_time: Option<Jv<'a>>,
    answer_time: Option<Jv<'a>>,
    end_time: Option<Jv<'a>>,
    disposition: Option<Jv<'a>>,
    duplicate: Option<&'static str>,
}

impl Raw<'_> {
    fn validate(self) -> Result<Cdr, Rejection> {
        if let Some(field) = self.duplicate {
            return Err(Rejection::InvalidField {
                field,
                detail: "appears more than once".into(),
            });
        }
        let cdr_id = id("cdr_id", self.cdr_id)?;
        let switch_id = id("switch_id", self.switch_id)?;
        let customer_id = id("customer_id", self.customer_id)?;
        let calling_number = number("calling_number", self.calling_number)?;
        let called_number = number("called_number", self.called_number)?;
        let direction = match required_str("direction", self.direction)?.as_ref() {
            "outbound" => Direction::Outbound,
            "inbound" => Direction::Inbound,
            "internal" => Direction::Internal,
            other => {
                return Err(Rejection::UnknownEnumValue {
                    field: "direction",
                    value: other.to_owned(),
                    allowed: "outbound, inbound, internal",
                })
            }
        };
        let disposition = match required_str("disposition", self.disposition)?.as_ref() {
            "answered" => Disposition::Answered,
            "busy" => Disposition::Busy,
            "no_answer" => Disposition::NoAnswer,
            "failed" => Disposition::Failed,
            other => {
                return Err(Rejection::UnknownEnumValue {
                    field: "disposition",
                    value: other.to_owned(),
                    allowed: "answered, busy, no_answer, failed",
                })
            }
        };
        let start_time = timestamp("start_time", required_str("start_time", self.start_time)?)?;
        let answer_time = match optional_str("answer_time", self.answer_time)? {
            Some(s) => Some(timestamp("answer_time", s)?),
            None => None,
        };
        let end_time = timestamp("end_time", required_str("end_time", self.end_time)?)?;
        Cdr::new(Cdr {
            cdr_id,
            switch_id,
            customer_id,
            calling_number,
            called_number,
            direction,
            start_time,
            answer_time,
            end_time,
            disposition,
        })
    }
}

/// The checks every CDR passes, whatever format it arrived in.
pub(crate) fn check(cdr: Cdr) -> Result<Cdr, Rejection> {
    for (field, value) in [
        ("cdr_id", &cdr.cdr_id),
        ("switch_id", &cdr.switch_id),
        ("customer_id", &cdr.customer_id),
    ] {
        check_id(field, value)?;
    }
    if cdr.end_time < cdr.start_time {
        return Err(Rejection::EndBeforeStart);
    }
    if !PLAUSIBLE_YEARS.contains(&cdr.start_time.year()) {
        return Err(Rejection::ImplausibleTime {
            value: cdr.start_time.to_rfc3339(),
        });
    }
    let seconds = (cdr.end_time - cdr.start_time).num_seconds();
    if seconds > MAX_CALL_SECONDS {
        return Err(Rejection::ImplausibleDuration { seconds });
    }
    if let Some(answer) = cdr.answer_time {
        if answer < cdr.start_time {
            return Err(Rejection::AnswerBeforeStart);
        }
        if cdr.end_time < answer {
            return Err(Rejection::EndBeforeAnswer);
        }
    } else if cdr.disposition == Disposition::Answered {
        return Err(Rejection::AnsweredWithoutAnswerTime);
    }
    Ok(cdr)
}

fn optional_str<'a>(
    field: &'static str,
    v: Option<Jv<'a>>,
) -> Result<Option<Cow<'a, str>>, Rejection> {
    match v {
        None | Some(Jv::Null) => Ok(None),
        Some(Jv::Str(s)) => Ok(Some(s)),
        Some(Jv::Other(found)) => Err(Rejection::InvalidType {
            field,
            expected: "a string or null",
            found,
        }),
    }
}

fn required_str<'a>(field: &'static str, v: Option<Jv<'a>>) -> Result<Cow<'a, str>, Rejection> {
    match v {
        None => Err(Rejection::MissingField { field }),
        Some(Jv::Str(s)) => Ok(s),
        Some(Jv::Null) => Err(Rejection::InvalidType {
            field,
            expected: "a string",
            found: "null",
        }),
        Some(Jv::Other(found)) => Err(Rejection::InvalidType {
            field,
            expected: "a string",
            found,
        }),
    }
}

fn id(field: &'static str, v: Option<Jv<'_>>) -> Result<CompactString, Rejection> {
    let s = required_str(field, v)?;
    check_id(field, &s)?;
    Ok(CompactString::from(s.as_ref()))
}

fn check_id(field: &'static str, s: &str) -> Result<(), Rejection> {
    // Nearly every id is printable ASCII that is not all spaces: a pass without early exits
    // (the compiler vectorises it) and a look at its first bytes say so, where the checks below
    // decode it and walk it up to three times.
    let printable = s
        .bytes()
        .fold(true, |ok, b| ok & (b' '..=b'~').contains(&b));
    if printable && s.len() <= MAX_ID_LEN && s.bytes().any(|b| b != b' ') {
        return Ok(());
    }
    if s.trim().is_empty() {
        return Err(Rejection::InvalidField {
            field,
            detail: "is empty".into(),
        });
    }
    if s.len() > MAX_ID_LEN {
        return Err(Rejection::InvalidField {
            field,
            detail: format!("is longer than {MAX_ID_LEN} bytes"),
        });
    }
    // Control characters are C0 and DEL (one byte each) and C1 (two bytes, only in non-ASCII
    // text): ids are nearly always ASCII, whose bytes are checked without decoding.
    let control = if s.is_ascii() {
        s.bytes().any(|b| b.is_ascii_control())
    } else {
        s.chars().any(char::is_control)
    };
    if control {
        return Err(Rejection::InvalidField {
            field,
            detail: "contains control characters".into(),
        });
    }
    Ok(())
}

fn number(field: &'static str, v: Option<Jv<'_>>) -> Result<PhoneNumber, Rejection> {
    let s = required_str(field, v)?;
    PhoneNumber::parse(&s).map_err(|error| Rejection::BadNumber { field, error })
}

fn timestamp(field: &'static str, s: Cow<'_, str>) -> Result<DateTime<Utc>, Rejection> {
    if let Some(t) = plain_utc(s.as_bytes()) {
        return Ok(t);
    }
    DateTime::parse_from_rfc3339(&s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| Rejection::BadTimestamp {
            field,
            value: s.into_owned(),
        })
}

/// `2026-11-24T08:15:02Z`, the form nearly every switch writes, read directly: chrono's RFC 3339
/// parser spends ~370 instructions on it (issue #7: 1.6 % of all of ingest's work saved). Anything else
/// (offsets, fractions, lower-case separators, leap seconds) returns `None` for chrono to read,
/// so what is accepted, and how, is chrono's rule either way (a proptest holds the two together).
fn plain_utc(b: &[u8]) -> Option<DateTime<Utc>> {
    let &[y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1, b'T', h0, h1, b':', i0, i1, b':', s0, s1, b'Z'] =
        b
    else {
        return None;
    };
    let digit = |c: u8| c.is_ascii_digit().then(|| u32::from(c - b'0'));
    let two = |a, b| Some(digit(a)? * 10 + digit(b)?);
    let year = two(y0, y1)? * 100 + two(y2, y3)?;
    let date = chrono::NaiveDate::from_ymd_opt(year as i32, two(m0, m1)?, two(d0, d1)?)?;
    let time = chrono::NaiveTime::from_hms_opt(two(h0, h1)?, two(i0, i1)?, two(s0, s1)?)?;
    Some(date.and_time(time).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"cdr_id":"fra1-000000001234","switch_id":"fra1","customer_id":"K1001",
        "calling_number":"+4930901820","called_number":"+4915112345678","direction":"outbound",
        "start_time":"2026-11-24T08:15:02Z","answer_time":"2026-11-24T08:15:09Z",
        "end_time":"2026-11-24T08:17:11Z","disposition":"answered"}"#;

    /// `GOOD` with one field replaced (or removed, when `value` is None).
    fn with(field: &str, value: Option<&str>) -> String {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        let obj = v.as_object_mut().unwrap();
        match value {
            Some(raw) => {
                obj.insert(field.into(), serde_json::from_str(raw).unwrap());
            }
            None => {
                obj.remove(field);
            }
        }
        v.to_string()
    }

    fn check_code(input: &[u8], code: &str) {
        match parse(input) {
            Ok(cdr) => panic!("expected {code}, parsed {cdr:?}"),
            Err(r) => assert_eq!(r.code(), code, "{r}"),
        }
    }

    #[test]
    fn parses_the_interface_example() {
        let cdr = parse(GOOD.as_bytes()).unwrap();
        assert_eq!(cdr.cdr_id, "fra1-000000001234");
        assert_eq!(cdr.called_number.as_str(), "+4915112345678");
        assert_eq!(cdr.direction, Direction::Outbound);
        assert_eq!(cdr.disposition, Disposition::Answered);
        assert_eq!(cdr.billable_seconds(), 122);
    }

    #[test]
    fn offsets_are_converted_to_utc_and_fractions_round_up() {
        let input = with("answer_time", Some(r#""2026-11-24T09:15:09.250+01:00""#));
        let cdr = parse(input.as_bytes()).unwrap();
        assert_eq!(
            cdr.answer_time.unwrap().to_rfc3339(),
            "2026-11-24T08:15:09.250+00:00"
        );
        // 08:15:09.25 → 08:17:11 is 121.75 s, billed as 122.
        assert_eq!(cdr.billable_seconds(), 122);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let input = with("x_vendor", Some(r#"{"a":[1,2,{"b":null}]}"#));
        assert!(parse(input.as_bytes()).is_ok());
    }

    #[test]
    fn escaped_keys_are_matched_like_plain_ones() {
        let input = GOOD.replacen("\"cdr_id\"", r#""cdr\u005fid""#, 1);
        assert_ne!(input, GOOD);
        assert_eq!(parse(input.as_bytes()).unwrap().cdr_id, "fra1-000000001234");
        let dup = GOOD.replacen("\"switch_id\"", r#""switch\u005fid":"x","switch_id""#, 1);
        let err = parse(dup.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid_field: `switch_id` appears more than once"
        );
    }

    #[test]
    fn every_field_name_maps_to_its_own_field() {
        for name in [
            "cdr_id",
            "switch_id",
            "customer_id",
            "calling_number",
            "called_number",
            "direction",
            "start_time",
            "answer_time",
            "end_time",
            "disposition",
        ] {
            let dup = GOOD.replacen('{', &format!("{{\"{name}\":null,"), 1);
            let err = parse(dup.as_bytes()).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid_field: `{name}` appears more than once")
            );
        }
    }

    #[test]
    fn control_characters_in_ids_are_rejected_ascii_or_not() {
        for bad in [
            r#""a\u0007b""#,
            r#""a\u007fb""#,
            r#""ä\u0085b""#,
            r#""ä\tb""#,
        ] {
            check_code(with("cdr_id", Some(bad)).as_bytes(), "invalid_field");
        }
        let ok = parse(with("cdr_id", Some(r#""fra1-ä-1""#)).as_bytes()).unwrap();
        assert_eq!(ok.cdr_id, "fra1-ä-1");
        for (id, detail) in [
            ("   ", Some("is empty")),
            (" a ", None),
            ("~", None),
            ("a\u{7f}", Some("contains control characters")),
            ("a\u{85}", Some("contains control characters")),
        ] {
            let got = check_id("cdr_id", id).err().map(|e| e.to_string());
            assert_eq!(
                got,
                detail.map(|d| format!("invalid_field: `cdr_id` {d}")),
                "{id:?}"
            );
        }
        let long = "a".repeat(MAX_ID_LEN + 1);
        assert!(check_id("cdr_id", &long[1..]).is_ok());
        assert!(check_id("cdr_id", &long).is_err());
    }

    #[test]
    fn unanswered_call_has_zero_billable_seconds() {
        let input = with("answer_time", Some("null")).replace("\"answered\"", "\"busy\"");
        let cdr = parse(input.as_bytes()).unwrap();
        assert_eq!(cdr.billable_seconds(), 0);
        assert_eq!(cdr.disposition, Disposition::Busy);
    }

    #[test]
    fn each_rejection_reason() {
        check_code(b"\xff\xfe{}", "invalid_utf8");
        check_code(b"{\"cdr_id\": ", "malformed_json");
        check_code(b"", "malformed_json");
        check_code(b"[1,2]", "not_an_object");
        check_code(b"42", "not_an_object");
        check_code(with("switch_id", None).as_bytes(), "missing_field");
        check_code(with("cdr_id", Some("12")).as_bytes(), "invalid_type");
        check_code(with("start_time", Some("null")).as_bytes(), "invalid_type");
        check_code(
            with("customer_id", Some(r#""""#)).as_bytes(),
            "invalid_field",
        );
        check_code(
            with("called_number", Some(r#""0151 123""#)).as_bytes(),
            "bad_number",
        );
        check_code(
            with("calling_number", Some(r#""abc""#)).as_bytes(),
            "bad_number",
        );
        check_code(
            with("start_time", Some(r#""2026-11-24 08:15:02""#)).as_bytes(),
            "bad_timestamp",
        );
        check_code(
            with("end_time", Some(r#""2026-11-24T08:15:02""#)).as_bytes(),
            "bad_timestamp",
        );
        check_code(
            with("direction", Some(r#""sideways""#)).as_bytes(),
            "unknown_enum_value",
        );
        check_code(
            with("disposition", Some(r#""ANSWERED""#)).as_bytes(),
            "unknown_enum_value",
        );
        check_code(
            with("end_time", Some(r#""2026-11-24T08:15:08Z""#)).as_bytes(),
            "end_before_answer",
        );
        check_code(
            with("answer_time", Some(r#""2026-11-24T08:15:00Z""#)).as_bytes(),
            "answer_before_start",
        );
        check_code(
            with("end_time", Some(r#""2026-11-24T08:00:00Z""#)).as_bytes(),
            "end_before_start",
        );
        check_code(
            with("answer_time", Some("null")).as_bytes(),
            "inconsistent_answer",
        );
        check_code(
            with("end_time", Some(r#""2099-11-24T08:17:11Z""#)).as_bytes(),
            "implausible_duration",
        );
        // A day and a second.
        check_code(
            with("end_time", Some(r#""2026-11-25T08:15:03Z""#)).as_bytes(),
            "implausible_duration",
        );
        assert!(parse(with("end_time", Some(r#""2026-11-25T08:15:02Z""#)).as_bytes()).is_ok());
        let epoch = GOOD
            .replace("2026-11-24T08:15:02Z", "1970-01-01T00:00:00Z")
            .replace("2026-11-24T08:15:09Z", "1970-01-01T00:00:07Z")
            .replace("2026-11-24T08:17:11Z", "1970-01-01T00:02:09Z");
        check_code(epoch.as_bytes(), "implausible_time");
        let far = GOOD
            .replace("2026-11-24T08:15:02Z", "9999-12-31T23:30:00-01:00")
            .replace("2026-11-24T08:15:09Z", "9999-12-31T23:30:07-01:00")
            .replace("2026-11-24T08:17:11Z", "9999-12-31T23:32:09-01:00");
        check_code(far.as_bytes(), "implausible_time");
        let dup = GOOD.replacen("\"cdr_id\"", "\"cdr_id\":\"a\",\"cdr_id\"", 1);
        check_code(dup.as_bytes(), "invalid_field");
    }

    #[test]
    fn rejection_names_the_field() {
        let err = parse(with("switch_id", None).as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), "missing_field: `switch_id` is required");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }

        /// The printable-ASCII shortcut decides as the three checks do, for any text.
        #[test]
        fn id_checks_agree_with_the_rule(s in r#"[ -~]{0,130}|[ a\t\u{7f}\u{85}ä~]{0,6}|\PC{0,20}"#) {
            let rule = if s.trim().is_empty() {
                Some("is empty".to_owned())
            } else if s.len() > MAX_ID_LEN {
                Some(format!("is longer than {MAX_ID_LEN} bytes"))
            } else if s.chars().any(char::is_control) {
                Some("contains control characters".to_owned())
            } else {
                None
            };
            let got = check_id("cdr_id", &s).err().map(|e| match e {
                Rejection::InvalidField { detail, .. } => detail,
                other => panic!("{other:?}"),
            });
            proptest::prop_assert_eq!(got, rule);
        }

        /// The shortcut for plain UTC times accepts exactly what chrono accepts, as the same
        /// instant: near misses (bad dates, hour 24, second 60, lower case, offsets, fractions)
        /// included.
        #[test]
        fn timestamps_are_read_as_chrono_reads_them(
            s in r#"[0-9]{4}-(0[0-9]|1[0-3]|[0-9]{2})-([0-3][0-9])[Tt ]([0-2][0-9]):[0-6][0-9]:[0-6][0-9](\.[0-9]{1,9})?(Z|z|[+-][0-2][0-9]:[0-5][0-9])|[0-9:TZ-]{18,22}"#
        ) {
            let chrono = DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).ok();
            let ours = timestamp("start_time", Cow::Borrowed(&s)).ok();
            proptest::prop_assert_eq!(ours, chrono);
            if let Some(t) = plain_utc(s.as_bytes()) {
                proptest::prop_assert_eq!(Some(t), chrono);
            }
        }

        #[test]
        fn arbitrary_json_like_text_never_panics(s in r#"[{}\[\]":,a-z0-9+\-TZ. ]{0,200}"#) {
            let _ = parse(s.as_bytes());
        }
    }
}
