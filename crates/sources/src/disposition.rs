//! How a call ended, from what switches write: Asterisk's disposition names, Q.850 hangup
//! causes (FreeSWITCH, Kazoo: names such as `USER_BUSY` or numbers such as `17`) and SIP
//! status codes (Kamailio, carrier files, Kazoo's `hangup_code`).
//!
//! Numbers below 200 are Q.850 causes (1–127); 200 and above are SIP final responses (a SIP
//! 1xx is never final), so one column may carry either.

use evn_cdr::Disposition;

/// Recognises one value; None when it is none of the known spellings.
pub fn recognise(value: &str) -> Option<Disposition> {
    asterisk_name(value).or_else(|| cause(value))
}

/// Asterisk's disposition names (`ast_cdr_disp2str`): they state the outcome itself.
pub fn asterisk_name(value: &str) -> Option<Disposition> {
    match value.trim().to_ascii_uppercase().as_str() {
        "ANSWERED" => Some(Disposition::Answered),
        "BUSY" => Some(Disposition::Busy),
        "NO ANSWER" => Some(Disposition::NoAnswer),
        "FAILED" | "CONGESTION" => Some(Disposition::Failed),
        _ => None,
    }
}

/// A hangup cause: a Q.850 number or name, or a SIP final code. It says how a leg ended, not
/// whether it was answered: `NORMAL_CLEARING` ends answered calls too ([`from_cause`]).
pub fn cause(value: &str) -> Option<Disposition> {
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
    // The canonical spellings (`no_answer` …) read the same upper-cased.
    q850_name(&v.to_ascii_uppercase())
}

/// Q.850 names as FreeSWITCH and Kazoo write them: the names of FreeSWITCH's `CAUSE_CHART`
/// (`switch_channel_cause2str`, src/switch_channel.c), which are `switch_call_cause_t` without
/// its `SWITCH_CAUSE_` prefix, checked against FreeSWITCH 1.10's table
/// (`every_freeswitch_cause_name_is_recognised`). Only these names: any upper-case word used
/// to pass as a failure, so a carrier's `CALL_ANSWERED` went unbilled without a trace.
///
/// They describe a leg that was *not* answered: an answered leg is answered whatever its
/// cause ([`from_cause`]), so `ATTENDED_TRANSFER` or `NORMAL_CLEARING` never make a billed call
/// a failure. `NORMAL_CLEARING` of an unanswered leg is the caller hanging up before the
/// answer; the transfer, pickup and race names mean the call went on elsewhere, not that it
/// failed. Names with a SIP twin read as that code does (`BUSY_EVERYWHERE` 600 busy,
/// `DECLINE` 603 no answer).
fn q850_name(name: &str) -> Option<Disposition> {
    Some(match name {
        "USER_BUSY" | "BUSY_EVERYWHERE" => Disposition::Busy,
        "NORMAL_CLEARING"
        | "NO_ANSWER"
        | "NO_USER_RESPONSE"
        | "NO_PICKUP"
        | "ORIGINATOR_CANCEL"
        | "ALLOTTED_TIMEOUT"
        | "RECOVERY_ON_TIMER_EXPIRE"
        | "CALL_REJECTED"
        | "DECLINE"
        | "LOSE_RACE"
        | "PICKED_OFF"
        | "SUCCESS"
        | "BLIND_TRANSFER"
        | "ATTENDED_TRANSFER"
        | "BOWOUT" => Disposition::NoAnswer,
        // `NONE`: FreeSWITCH set no cause at all. `UNSPECIFIED` is no FreeSWITCH name but
        // was accepted before; kept so records that carry it do not start dead-lettering.
        "NONE"
        | "UNSPECIFIED"
        | "UNALLOCATED_NUMBER"
        | "NO_ROUTE_TRANSIT_NET"
        | "NO_ROUTE_DESTINATION"
        | "CHANNEL_UNACCEPTABLE"
        | "CALL_AWARDED_DELIVERED"
        | "SUBSCRIBER_ABSENT"
        | "NUMBER_CHANGED"
        | "REDIRECTION_TO_NEW_DESTINATION"
        | "EXCHANGE_ROUTING_ERROR"
        | "DESTINATION_OUT_OF_ORDER"
        | "INVALID_NUMBER_FORMAT"
        | "FACILITY_REJECTED"
        | "RESPONSE_TO_STATUS_ENQUIRY"
        | "NORMAL_UNSPECIFIED"
        | "NORMAL_CIRCUIT_CONGESTION"
        | "NETWORK_OUT_OF_ORDER"
        | "NORMAL_TEMPORARY_FAILURE"
        | "SWITCH_CONGESTION"
        | "ACCESS_INFO_DISCARDED"
        | "REQUESTED_CHAN_UNAVAIL"
        | "PRE_EMPTED"
        | "FACILITY_NOT_SUBSCRIBED"
        | "OUTGOING_CALL_BARRED"
        | "INCOMING_CALL_BARRED"
        | "BEARERCAPABILITY_NOTAUTH"
        | "BEARERCAPABILITY_NOTAVAIL"
        | "SERVICE_UNAVAILABLE"
        | "BEARERCAPABILITY_NOTIMPL"
        | "CHAN_NOT_IMPLEMENTED"
        | "FACILITY_NOT_IMPLEMENTED"
        | "SERVICE_NOT_IMPLEMENTED"
        | "INVALID_CALL_REFERENCE"
        | "INCOMPATIBLE_DESTINATION"
        | "INVALID_MSG_UNSPECIFIED"
        | "MANDATORY_IE_MISSING"
        | "MESSAGE_TYPE_NONEXIST"
        | "WRONG_MESSAGE"
        | "IE_NONEXIST"
        | "INVALID_IE_CONTENTS"
        | "WRONG_CALL_STATE"
        | "MANDATORY_IE_LENGTH_ERROR"
        | "PROTOCOL_ERROR"
        | "INTERWORKING"
        | "CRASH"
        | "SYSTEM_SHUTDOWN"
        | "MANAGER_REQUEST"
        | "USER_CHALLENGE"
        | "MEDIA_TIMEOUT"
        | "USER_NOT_REGISTERED"
        | "PROGRESS_TIMEOUT"
        | "INVALID_GATEWAY"
        | "GATEWAY_DOWN"
        | "INVALID_URL"
        | "INVALID_PROFILE"
        | "SRTP_READ_ERROR"
        | "DOES_NOT_EXIST_ANYWHERE"
        | "NOT_ACCEPTABLE"
        | "UNWANTED"
        | "NO_IDENTITY"
        | "BAD_IDENTITY_INFO"
        | "UNSUPPORTED_CERTIFICATE"
        | "INVALID_IDENTITY"
        | "STALE_DATE"
        | "REJECT_ALL" => Disposition::Failed,
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
        // Upper-case words that are no Q.850 name are not silently failures.
        assert_eq!(recognise("CALL_ANSWERED"), None);
        assert_eq!(asterisk_name("NORMAL_CLEARING"), None);
        assert_eq!(cause("ANSWERED"), None);
        assert_eq!(recognise("1000"), None);
    }

    /// FreeSWITCH 1.10's `CAUSE_CHART` (src/switch_channel.c), in its order: what
    /// `switch_channel_cause2str` writes as `hangup_cause` (Kazoo passes it on).
    const FREESWITCH_CAUSES: [&str; 82] = [
        "NONE",
        "UNALLOCATED_NUMBER",
        "NO_ROUTE_TRANSIT_NET",
        "NO_ROUTE_DESTINATION",
        "CHANNEL_UNACCEPTABLE",
        "CALL_AWARDED_DELIVERED",
        "NORMAL_CLEARING",
        "USER_BUSY",
        "NO_USER_RESPONSE",
        "NO_ANSWER",
        "SUBSCRIBER_ABSENT",
        "CALL_REJECTED",
        "NUMBER_CHANGED",
        "REDIRECTION_TO_NEW_DESTINATION",
        "EXCHANGE_ROUTING_ERROR",
        "DESTINATION_OUT_OF_ORDER",
        "INVALID_NUMBER_FORMAT",
        "FACILITY_REJECTED",
        "RESPONSE_TO_STATUS_ENQUIRY",
        "NORMAL_UNSPECIFIED",
        "NORMAL_CIRCUIT_CONGESTION",
        "NETWORK_OUT_OF_ORDER",
        "NORMAL_TEMPORARY_FAILURE",
        "SWITCH_CONGESTION",
        "ACCESS_INFO_DISCARDED",
        "REQUESTED_CHAN_UNAVAIL",
        "PRE_EMPTED",
        "FACILITY_NOT_SUBSCRIBED",
        "OUTGOING_CALL_BARRED",
        "INCOMING_CALL_BARRED",
        "BEARERCAPABILITY_NOTAUTH",
        "BEARERCAPABILITY_NOTAVAIL",
        "SERVICE_UNAVAILABLE",
        "BEARERCAPABILITY_NOTIMPL",
        "CHAN_NOT_IMPLEMENTED",
        "FACILITY_NOT_IMPLEMENTED",
        "SERVICE_NOT_IMPLEMENTED",
        "INVALID_CALL_REFERENCE",
        "INCOMPATIBLE_DESTINATION",
        "INVALID_MSG_UNSPECIFIED",
        "MANDATORY_IE_MISSING",
        "MESSAGE_TYPE_NONEXIST",
        "WRONG_MESSAGE",
        "IE_NONEXIST",
        "INVALID_IE_CONTENTS",
        "WRONG_CALL_STATE",
        "RECOVERY_ON_TIMER_EXPIRE",
        "MANDATORY_IE_LENGTH_ERROR",
        "PROTOCOL_ERROR",
        "INTERWORKING",
        "SUCCESS",
        "ORIGINATOR_CANCEL",
        "CRASH",
        "SYSTEM_SHUTDOWN",
        "LOSE_RACE",
        "MANAGER_REQUEST",
        "BLIND_TRANSFER",
        "ATTENDED_TRANSFER",
        "ALLOTTED_TIMEOUT",
        "USER_CHALLENGE",
        "MEDIA_TIMEOUT",
        "PICKED_OFF",
        "USER_NOT_REGISTERED",
        "PROGRESS_TIMEOUT",
        "INVALID_GATEWAY",
        "GATEWAY_DOWN",
        "INVALID_URL",
        "INVALID_PROFILE",
        "NO_PICKUP",
        "SRTP_READ_ERROR",
        "BOWOUT",
        "BUSY_EVERYWHERE",
        "DECLINE",
        "DOES_NOT_EXIST_ANYWHERE",
        "NOT_ACCEPTABLE",
        "UNWANTED",
        "NO_IDENTITY",
        "BAD_IDENTITY_INFO",
        "UNSUPPORTED_CERTIFICATE",
        "INVALID_IDENTITY",
        "STALE_DATE",
        "REJECT_ALL",
    ];

    #[test]
    fn every_freeswitch_cause_name_is_recognised() {
        for name in FREESWITCH_CAUSES {
            let d = cause(name);
            assert!(d.is_some(), "{name} is not recognised");
            // Mixed case reads the same (FreeSWITCH's own lookup ignores case).
            assert_eq!(cause(&name.to_ascii_lowercase()), d, "{name}");
            // An answered leg stays answered whatever the cause says ...
            assert_eq!(from_cause(true, &[name]), Answered, "{name}");
            // ... and no cause makes an unanswered leg answered.
            assert_ne!(from_cause(false, &[name]), Answered, "{name}");
        }
        // A transfer or pickup of a leg that was not answered is no failure of the call.
        for name in [
            "BLIND_TRANSFER",
            "ATTENDED_TRANSFER",
            "PICKED_OFF",
            "LOSE_RACE",
            "SUCCESS",
            "BOWOUT",
            "NO_PICKUP",
            "DECLINE",
        ] {
            assert_eq!(from_cause(false, &[name]), NoAnswer, "{name}");
        }
        // Names read as their SIP twins do.
        assert_eq!(cause("BUSY_EVERYWHERE"), cause("600"));
        assert_eq!(cause("DECLINE"), cause("603"));
        assert_eq!(cause("NONE"), Some(Failed));
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
