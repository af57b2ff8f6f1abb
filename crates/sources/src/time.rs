//! Times as switches write them → UTC instants.
//!
//! Epoch values (`*_uepoch`, Kazoo's Gregorian seconds, `start(double)`) are UTC already.
//! Wall-clock values are read in the source's configured zone, never guessed:
//! - a time in the hour skipped when clocks go forward does not exist: dead-lettered;
//! - a time in the hour repeated when clocks go back is ambiguous. Every reading of a record's
//!   times is tried (start, answer and end each early or late); a reading must keep
//!   start ≤ answer ≤ end and, where the record states them, match its `duration` and
//!   `billsec` within a second. If the readings left differ in billable duration or in billing
//!   month, nothing safe can be chosen: dead-lettered `ambiguous_local_time`. Otherwise they
//!   differ only in which of the two identical-looking local times is meant, which changes
//!   neither the charge, nor the month, nor the local time the EVN prints: the earliest is
//!   taken.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use evn_rating::BillingMonth;

use crate::SourceError;

/// Seconds from 0000-01-01 to 1970-01-01 (Erlang's Gregorian seconds, Kazoo's `timestamp`).
pub const GREGORIAN_UNIX_OFFSET: i64 = 62_167_219_200;
/// How far a stated duration may be from the times' difference: both are whole seconds cut
/// from the same microsecond clock.
const TOLERANCE: Duration = Duration::seconds(1);

/// One time value of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// An instant; `precise` when it carries sub-second digits (microsecond epochs).
    Utc { at: DateTime<Utc>, precise: bool },
    /// Wall-clock time in the source's zone.
    Wall(NaiveDateTime),
}

impl Stamp {
    pub fn utc(at: DateTime<Utc>, precise: bool) -> Stamp {
        Stamp::Utc { at, precise }
    }

    fn precise(self) -> bool {
        matches!(self, Stamp::Utc { precise: true, .. })
    }
}

/// `2026-11-24 09:15:02` (Asterisk, FreeSWITCH `*_stamp`), fractions allowed.
pub fn parse_wall(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f"))
        .ok()
}

/// Seconds since 1970 with an optional fraction (`1795000000.123456`), to the microsecond.
pub fn parse_epoch_seconds(s: &str) -> Option<Stamp> {
    let s = s.trim();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || whole.len() > 12
    {
        return None;
    }
    let secs: i64 = whole.parse().ok()?;
    let mut micros = 0i64;
    for (i, b) in frac.bytes().take(6).enumerate() {
        micros += i64::from(b - b'0') * 10i64.pow(5 - i as u32);
    }
    let at = DateTime::from_timestamp(secs, (micros * 1000) as u32)?;
    Some(Stamp::utc(at, !frac.is_empty()))
}

/// An integer epoch in `unit` per second (1000 for milliseconds, 1_000_000 for microseconds).
pub fn parse_epoch_int(s: &str, per_second: i64) -> Option<Stamp> {
    let v: i64 = s.trim().parse().ok()?;
    let at = DateTime::from_timestamp_micros(v.checked_mul(1_000_000 / per_second)?)?;
    Some(Stamp::utc(at, per_second > 1))
}

/// Kazoo: seconds since year 0 (UTC).
pub fn from_gregorian(secs: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs.checked_sub(GREGORIAN_UNIX_OFFSET)?, 0)
}

/// A duration in seconds, whole or with a fraction (`billsec`, `billsec,f`).
pub fn parse_seconds(s: &str) -> Option<Duration> {
    match parse_epoch_seconds(s)? {
        Stamp::Utc { at, .. } => Some(at - DateTime::UNIX_EPOCH),
        Stamp::Wall(_) => None,
    }
}

/// What a record says about its times.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    pub start: Stamp,
    pub answer: Option<Stamp>,
    pub end: Option<Stamp>,
    /// `end - start` as the switch states it (whole seconds, cut down).
    pub duration: Option<Duration>,
    /// `end - answer` as the switch states it.
    pub billsec: Option<Duration>,
    /// The record writes no answer time but the leg was answered (a carrier file with end and
    /// billed seconds only): the answer is end − `billsec`. Derived from the end as an instant,
    /// not as wall-clock time, so a clock change during the call does not move it an hour.
    pub answer_from_billsec: bool,
}

/// Start, answer and end as instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub start: DateTime<Utc>,
    pub answer: Option<DateTime<Utc>>,
    pub end: DateTime<Utc>,
}

fn candidates(
    field: &'static str,
    stamp: Stamp,
    tz: Option<Tz>,
) -> Result<Vec<DateTime<Utc>>, SourceError> {
    match stamp {
        Stamp::Utc { at, .. } => Ok(vec![at]),
        Stamp::Wall(local) => {
            let tz = tz.ok_or(SourceError::NoTimezone { field })?;
            match tz.from_local_datetime(&local) {
                LocalResult::Single(t) => Ok(vec![t.with_timezone(&Utc)]),
                LocalResult::Ambiguous(a, b) => {
                    Ok(vec![a.with_timezone(&Utc), b.with_timezone(&Utc)])
                }
                LocalResult::None => Err(SourceError::NonexistentLocalTime {
                    field,
                    value: local.to_string(),
                    zone: tz.name().to_owned(),
                }),
            }
        }
    }
}

/// Reads a record's times as instants by the rule at the top of this module.
pub fn resolve(times: Times, tz: Option<Tz>) -> Result<Resolved, SourceError> {
    let starts = candidates("start_time", times.start, tz)?;
    let answers = match times.answer {
        Some(a) => candidates("answer_time", a, tz)?
            .into_iter()
            .map(Some)
            .collect(),
        None => vec![None],
    };
    let ends = match times.end {
        Some(e) => candidates("end_time", e, tz)?
            .into_iter()
            .map(Some)
            .collect(),
        None => vec![None],
    };
    let ambiguous = starts.len() > 1 || answers.len() > 1 || ends.len() > 1;
    let mut readings = Vec::new();
    for &s in &starts {
        for &a in &answers {
            for &e in &ends {
                let a = match a {
                    None if times.answer_from_billsec => Some(answer_before(times, e)?),
                    a => a,
                };
                readings.push((finish(times, s, a, e)?, e));
            }
        }
    }
    if !ambiguous {
        return Ok(readings[0].0);
    }
    // Checked against the end as written, not the end derived from billsec, which would make
    // every reading look consistent.
    let fits = |(r, written_end): &(Resolved, Option<DateTime<Utc>>)| {
        let end = written_end.unwrap_or(r.end);
        let ordered = r.answer.is_none_or(|a| r.start <= a && a <= end) && r.start <= end;
        let near = |stated: Option<Duration>, actual: Duration| {
            stated.is_none_or(|d| (actual - d).abs() <= TOLERANCE)
        };
        ordered
            && near(times.duration, end - r.start)
            && r.answer.is_none_or(|a| near(times.billsec, end - a))
    };
    let fitting: Vec<Resolved> = readings.iter().filter(|r| fits(r)).map(|r| r.0).collect();
    let Some(first) = fitting.first().copied() else {
        // Nothing consistent: hand the earliest reading on, and let the CDR checks name what
        // is wrong with it (end before start …).
        return Ok(readings[0].0);
    };
    let billable = |r: &Resolved| r.answer.map(|a| r.end - a);
    let same_money = fitting.iter().all(|r| {
        billable(r) == billable(&first)
            && BillingMonth::of(r.start) == BillingMonth::of(first.start)
    });
    if !same_money {
        return Err(SourceError::AmbiguousLocalTime {
            zone: tz.map_or_else(String::new, |t| t.name().to_owned()),
        });
    }
    Ok(first)
}

/// end − billsec, for a record without an answer time (`Times::answer_from_billsec`).
fn answer_before(times: Times, end: Option<DateTime<Utc>>) -> Result<DateTime<Utc>, SourceError> {
    let end = end.ok_or(SourceError::Missing { field: "end_time" })?;
    let billsec = times
        .billsec
        .ok_or(SourceError::Missing { field: "billsec" })?;
    // Record values can put the difference past chrono's range: a dead letter, never a panic.
    end.checked_sub_signed(billsec)
        .ok_or_else(|| SourceError::BadTime {
            field: "billsec",
            value: billsec.num_seconds().to_string(),
        })
}

/// The end of a call: measured times when both answer and end are precise; otherwise, with a
/// stated `billsec`, answer + billsec, so a second-resolution record is billed for exactly what
/// the switch measured (its sub-second rest is unknown and not billed).
fn finish(
    times: Times,
    start: DateTime<Utc>,
    answer: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
) -> Result<Resolved, SourceError> {
    let precise = times.answer.is_some_and(Stamp::precise) && times.end.is_some_and(Stamp::precise);
    // Record values can put the sum past chrono's range: a dead letter, never a panic.
    let past_range = |field: &'static str, d: Duration| SourceError::BadTime {
        field,
        value: d.num_seconds().to_string(),
    };
    let end = match (answer, times.billsec, end) {
        (Some(_), _, Some(e)) if precise => e,
        (Some(a), Some(b), _) => a
            .checked_add_signed(b)
            .ok_or_else(|| past_range("billsec", b))?,
        (_, _, Some(e)) => e,
        // Never answered and no end written: nothing to bill, the attempt still counts.
        (None, _, None) => {
            let d = times.duration.unwrap_or_default();
            start
                .checked_add_signed(d)
                .ok_or_else(|| past_range("duration", d))?
        }
        (Some(_), None, None) => return Err(SourceError::Missing { field: "end_time" }),
    };
    Ok(Resolved { start, answer, end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Berlin;

    fn wall(s: &str) -> Stamp {
        Stamp::Wall(parse_wall(s).unwrap())
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn times(start: &str, answer: Option<&str>, end: &str, duration: i64, billsec: i64) -> Times {
        Times {
            start: wall(start),
            answer: answer.map(wall),
            end: Some(wall(end)),
            duration: Some(Duration::seconds(duration)),
            billsec: Some(Duration::seconds(billsec)),
            answer_from_billsec: false,
        }
    }

    #[test]
    fn winter_and_summer_offsets() {
        let r = resolve(
            times(
                "2026-11-24 09:15:02",
                Some("2026-11-24 09:15:09"),
                "2026-11-24 09:17:11",
                129,
                122,
            ),
            Some(Berlin),
        )
        .unwrap();
        assert_eq!(r.start, utc("2026-11-24T08:15:02Z"));
        assert_eq!(r.answer, Some(utc("2026-11-24T08:15:09Z")));
        assert_eq!(r.end, utc("2026-11-24T08:17:11Z"));
        let r = resolve(
            times("2026-07-01 12:00:00", None, "2026-07-01 12:00:30", 30, 0),
            Some(Berlin),
        )
        .unwrap();
        assert_eq!(r.start, utc("2026-07-01T10:00:00Z"));
    }

    #[test]
    fn billsec_gives_the_end_of_second_resolution_records() {
        // Wall-clock end 09:17:12 but the switch measured 122 s from the answer.
        let r = resolve(
            times(
                "2026-11-24 09:15:02",
                Some("2026-11-24 09:15:09"),
                "2026-11-24 09:17:12",
                129,
                122,
            ),
            Some(Berlin),
        )
        .unwrap();
        assert_eq!(r.end, utc("2026-11-24T08:17:11Z"));
    }

    #[test]
    fn microsecond_times_win_over_billsec() {
        let at = |s| parse_epoch_seconds(s).unwrap();
        let t = Times {
            start: at("1795000000.100000"),
            answer: Some(at("1795000007.900000")),
            end: Some(at("1795000130.250000")),
            duration: Some(Duration::seconds(130)),
            billsec: Some(Duration::seconds(122)),
            answer_from_billsec: false,
        };
        let r = resolve(t, None).unwrap();
        assert_eq!(
            (r.end - r.answer.unwrap()).num_microseconds(),
            Some(122_350_000)
        );
    }

    #[test]
    fn the_spring_gap_does_not_exist() {
        let e = resolve(
            times("2026-03-29 02:30:00", None, "2026-03-29 03:31:00", 60, 0),
            Some(Berlin),
        )
        .unwrap_err();
        assert_eq!(e.code(), "nonexistent_local_time");
    }

    #[test]
    fn a_call_crossing_the_repeated_hour_is_placed_by_its_duration() {
        // 02:50 CEST → 02:10 CET is 20 minutes; read the other way round it would be -40 or 80.
        let r = resolve(
            times(
                "2026-10-25 02:50:00",
                Some("2026-10-25 02:50:10"),
                "2026-10-25 02:10:00",
                1200,
                1190,
            ),
            Some(Berlin),
        )
        .unwrap();
        assert_eq!(r.start, utc("2026-10-25T00:50:00Z"));
        assert_eq!(r.end, utc("2026-10-25T01:10:00Z"));
        // Ends in the repeated hour after an unambiguous start: only the late reading fits.
        let r = resolve(
            times(
                "2026-10-25 01:55:00",
                Some("2026-10-25 01:55:05"),
                "2026-10-25 02:05:00",
                4200,
                4195,
            ),
            Some(Berlin),
        )
        .unwrap();
        assert_eq!(r.end, utc("2026-10-25T01:05:00Z"));
    }

    #[test]
    fn a_call_inside_the_repeated_hour_takes_the_earlier_reading() {
        let r = resolve(
            times(
                "2026-10-25 02:10:00",
                Some("2026-10-25 02:10:05"),
                "2026-10-25 02:12:05",
                125,
                120,
            ),
            Some(Berlin),
        )
        .unwrap();
        assert_eq!(r.start, utc("2026-10-25T00:10:00Z"));
        assert_eq!(r.end - r.answer.unwrap(), Duration::seconds(120));
    }

    #[test]
    fn without_durations_a_reading_that_changes_the_charge_is_refused() {
        let t = Times {
            start: wall("2026-10-25 02:50:00"),
            answer: Some(wall("2026-10-25 02:50:00")),
            end: Some(wall("2026-10-25 03:10:00")),
            duration: None,
            billsec: None,
            answer_from_billsec: false,
        };
        assert_eq!(
            resolve(t, Some(Berlin)).unwrap_err().code(),
            "ambiguous_local_time"
        );
    }

    #[test]
    fn an_answer_from_billsec_needs_an_end_and_stays_in_range() {
        let t = |end: Option<DateTime<Utc>>| Times {
            start: Stamp::utc(DateTime::<Utc>::MIN_UTC, false),
            answer: None,
            end: end.map(|e| Stamp::utc(e, false)),
            duration: None,
            billsec: Some(Duration::seconds(1)),
            answer_from_billsec: true,
        };
        let r = resolve(t(Some(utc("2026-11-24T08:17:11Z"))), None).unwrap();
        assert_eq!(r.answer, Some(utc("2026-11-24T08:17:10Z")));
        assert_eq!(r.end, utc("2026-11-24T08:17:11Z"));
        assert_eq!(
            resolve(t(Some(DateTime::<Utc>::MIN_UTC)), None)
                .unwrap_err()
                .code(),
            "bad_timestamp"
        );
        assert_eq!(resolve(t(None), None).unwrap_err().code(), "missing_field");
    }

    #[test]
    fn wall_time_needs_a_zone() {
        let t = times("2026-11-24 09:15:02", None, "2026-11-24 09:15:09", 7, 0);
        assert_eq!(resolve(t, None).unwrap_err().code(), "bad_timestamp");
    }

    #[test]
    fn epochs_and_gregorian_seconds() {
        assert_eq!(
            from_gregorian(63_958_219_200).map(|t| t.timestamp()),
            Some(63_958_219_200 - GREGORIAN_UNIX_OFFSET)
        );
        // 2026-11-24T08:15:02Z in Gregorian seconds.
        let unix = utc("2026-11-24T08:15:02Z").timestamp();
        assert_eq!(
            from_gregorian(unix + GREGORIAN_UNIX_OFFSET),
            Some(utc("2026-11-24T08:15:02Z"))
        );
        assert_eq!(
            parse_epoch_int("1795000000123456", 1_000_000),
            Some(Stamp::utc(
                DateTime::from_timestamp_micros(1_795_000_000_123_456).unwrap(),
                true
            ))
        );
        assert_eq!(parse_seconds("4.25"), Some(Duration::milliseconds(4250)));
        assert_eq!(parse_seconds("-1"), None);
        assert_eq!(parse_epoch_seconds("12x"), None);
    }
}
