//! How a call ended, from what switches write: Asterisk's disposition names, Q.850 hangup
//! causes (FreeSWITCH, Kazoo: names such as `USER_BUSY` or numbers such as `17`) and SIP
//! status codes (Kamailio, carrier files, Kazoo's `hangup_code`).
//!
//! Numbers below 200 are Q.850 causes (1–127); 200 and above are SIP final responses (a SIP
//! 1xx is never final), so one column may carry either.

use evn_cdr::Disposition;

/// Recognises one value; None when it is none of the known spellings.
pub fn recognise(value: &str) -> Option<Disposition> {
    let v = value.trim();
    let v = v.strip_prefix("sip:").unwrap_or(v);
    if let Ok(code) = v.parse::<u16>() {
        return match code {
            0..=199 => Some(q850_code(code)),
            200..=299 => Some(Disposition::Answered),
            486 | 600 => Some(Disposition::Busy),
            408 | 480 | 487 | 603 => Some(Disposition::NoAnswer),
            300..=699 => Some(Disposition::Failed),
            _ => None,
        };
    }
    let upper = v.to_ascii_uppercase();
    match upper.as_str() {
        // Asterisk (`ast_cdr_disp2str`).
        "ANSWERED" => Some(Disposition::Answered),
        "BUSY" => Some(Disposition::Busy),
        "NO ANSWER" => Some(Disposition::NoAnswer),
        "FAILED" | "CONGESTION" => Some(Disposition::Failed),
        // Q.850 names; the canonical spellings (`no_answer` …) read the same upper-cased.
        _ => q850_name(&upper),
    }
}

/// Q.850 names as FreeSWITCH and Kazoo write them. `NORMAL_CLEARING` of an unanswered leg
/// is the caller hanging up before the answer.
fn q850_name(name: &str) -> Option<Disposition> {
    Some(match name {
        "USER_BUSY" => Disposition::Busy,
        "NORMAL_CLEARING"
        | "NO_ANSWER"
        | "NO_USER_RESPONSE"
        | "ORIGINATOR_CANCEL"
        | "ALLOTTED_TIMEOUT"
        | "RECOVERY_ON_TIMER_EXPIRE"
        | "CALL_REJECTED"
        | "LOSE_RACE"
        | "PICKED_OFF" => Disposition::NoAnswer,
        // The other causes (`UNALLOCATED_NUMBER`, `NORMAL_TEMPORARY_FAILURE` …) are failures.
        n if n.len() > 3
            && n.contains('_')
            && n.chars().all(|c| c.is_ascii_uppercase() || c == '_') =>
        {
            Disposition::Failed
        }
        _ => return None,
    })
}

fn q850_code(code: u16) -> Disposition {
    match code {
        17 => Disposition::Busy,
        16 | 18 | 19 | 21 | 102 => Disposition::NoAnswer,
        _ => Disposition::Failed,
    }
}

/// The disposition of a leg whose answer is known from its times: answered if answered,
/// otherwise what the cause says (failed when nothing is said).
pub fn from_cause(answered: bool, causes: &[&str]) -> Disposition {
    if answered {
        return Disposition::Answered;
    }
    causes
        .iter()
        .filter(|c| !c.trim().is_empty())
        .find_map(|c| recognise(c))
        .map_or(Disposition::Failed, |d| {
            // A cause cannot make an unanswered leg answered.
            if d == Disposition::Answered {
                Disposition::NoAnswer
            } else {
                d
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Disposition::*;

    #[test]
    fn every_spelling() {
        for (v, d) in [
            ("ANSWERED", Answered),
            ("NO ANSWER", NoAnswer),
            ("BUSY", Busy),
            ("FAILED", Failed),
            ("CONGESTION", Failed),
            ("USER_BUSY", Busy),
            ("NO_ANSWER", NoAnswer),
            ("ORIGINATOR_CANCEL", NoAnswer),
            ("NORMAL_TEMPORARY_FAILURE", Failed),
            ("UNALLOCATED_NUMBER", Failed),
            ("17", Busy),
            ("19", NoAnswer),
            ("34", Failed),
            ("200", Answered),
            ("486", Busy),
            ("487", NoAnswer),
            ("sip:503", Failed),
        ] {
            assert_eq!(recognise(v), Some(d), "{v}");
        }
        assert_eq!(recognise("hmm"), None);
        assert_eq!(recognise("1000"), None);
    }

    #[test]
    fn times_decide_the_answer() {
        assert_eq!(from_cause(true, &["USER_BUSY"]), Answered);
        assert_eq!(from_cause(false, &["NORMAL_CLEARING", "16"]), NoAnswer);
        assert_eq!(from_cause(false, &["", "17"]), Busy);
        assert_eq!(from_cause(false, &["200"]), NoAnswer);
        assert_eq!(from_cause(false, &[]), Failed);
    }
}
