//! The pure core: what retention deletes and whether an erasure is allowed, from dates and
//! holds alone (no files, no clock), so every boundary is a unit test.
//!
//! Rules (see the crate docs for why):
//! - a billed month is kept up to and including `send date + 6 calendar months`, and deleted
//!   from the day after (`send + 6 months < today`);
//! - a held customer's rows and EVNs of a month outlive that, the rest of the month does not;
//! - a month without a manifest was never billed: the six months have not started, it is kept
//!   (flagged once it ended more than 12 months ago: the billing run was probably forgotten);
//! - an erasure waits while the customer is listed in `customers.csv`, holds a legal hold, has
//!   calls in a month not billed yet, or a bill still inside the 8-week objection period.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{Days, Months, NaiveDate};

use evn_rating::BillingMonth;

use crate::LegalHold;

/// TDDDG § 10: billing data is kept at most six months after the bill is sent.
pub const RETENTION_MONTHS: u32 = 6;
/// A month still unbilled this long after its end gets a warning on every run.
pub const UNBILLED_WARNING_MONTHS: u32 = 12;
/// TKG § 67: a bill can be objected to within 8 weeks of its receipt.
pub const OBJECTION_DAYS: u64 = 8 * 7;

/// The last day a month billed on `sent` may be kept (inclusive). Calendar months, clamped to
/// the month's end: sent 2026-08-31 → kept through 2027-02-28.
pub fn retained_until(sent: NaiveDate) -> NaiveDate {
    sent.checked_add_months(Months::new(RETENTION_MONTHS))
        .expect("dates of billing runs are far from chrono's limits")
}

/// The last day a bill sent on `sent` can still be disputed (inclusive).
pub fn objection_until(sent: NaiveDate) -> NaiveDate {
    sent.checked_add_days(Days::new(OBJECTION_DAYS))
        .expect("dates of billing runs are far from chrono's limits")
}

/// What is known about one month present in the data or EVN directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthState {
    pub month: BillingMonth,
    /// The send date (the billing run that sent the month's bills); None when the month has no
    /// manifest, i.e. was never billed.
    pub sent: Option<NaiveDate>,
    /// Customers billed again later (a new EVN version): their rows and EVNs are kept six
    /// months from that date, everyone else's from `sent`.
    pub sent_later: BTreeMap<String, NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Billed, still inside the retention period.
    Keep { sent: NaiveDate, until: NaiveDate },
    /// Never billed: the retention period has not started. `overdue` when the month ended
    /// more than [`UNBILLED_WARNING_MONTHS`] ago.
    NotBilled { overdue: bool },
    /// Past the retention period, no hold: the month's data and EVNs go entirely.
    Delete { sent: NaiveDate, until: NaiveDate },
    /// Past the retention period, but these customers have a legal hold (`held`) or were billed
    /// again less than six months ago (`rebilled`): only their rows and EVN files stay.
    DeleteExceptHeld {
        sent: NaiveDate,
        until: NaiveDate,
        held: BTreeSet<String>,
        rebilled: BTreeSet<String>,
    },
}

impl Decision {
    /// The customers whose rows and EVN files a partial deletion keeps.
    pub fn kept_customers(&self) -> BTreeSet<String> {
        match self {
            Decision::DeleteExceptHeld { held, rebilled, .. } => {
                held.union(rebilled).cloned().collect()
            }
            _ => BTreeSet::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthPlan {
    pub month: BillingMonth,
    pub decision: Decision,
}

impl fmt::Display for MonthPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.month;
        match &self.decision {
            Decision::Keep { sent, until } => {
                write!(f, "keep {m}: billed {sent}, kept until {until}")
            }
            Decision::NotBilled { overdue: false } => {
                write!(f, "keep {m}: not billed yet (retention starts with the billing run)")
            }
            Decision::NotBilled { overdue: true } => write!(
                f,
                "keep {m}: WARNING never billed, ended more than {UNBILLED_WARNING_MONTHS} months ago: bill it or delete it by hand"
            ),
            Decision::Delete { sent, until } => {
                write!(f, "delete {m}: billed {sent}, retention ended {until}")
            }
            Decision::DeleteExceptHeld {
                sent,
                until,
                held,
                rebilled,
            } => {
                let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
                let mut except = Vec::new();
                if !held.is_empty() {
                    except.push(format!("legal holds of {}", list(held)));
                }
                if !rebilled.is_empty() {
                    except.push(format!(
                        "{} (billed again later; kept six months from then)",
                        list(rebilled)
                    ));
                }
                write!(
                    f,
                    "delete {m} except {}: billed {sent}, retention ended {until}",
                    except.join(" and ")
                )
            }
        }
    }
}

/// Decides every month. `months` may come in any order and hold each month once; holds for
/// months that are not present change nothing.
pub fn plan_retention(
    months: &[MonthState],
    holds: &BTreeMap<BillingMonth, BTreeSet<String>>,
    today: NaiveDate,
) -> Vec<MonthPlan> {
    let mut out: Vec<MonthPlan> = months
        .iter()
        .map(|s| {
            let decision = match s.sent {
                None => not_billed(s.month, today),
                Some(sent) => {
                    let until = retained_until(sent);
                    if today <= until {
                        Decision::Keep { sent, until }
                    } else {
                        let held = holds.get(&s.month).cloned().unwrap_or_default();
                        let rebilled: BTreeSet<String> = s
                            .sent_later
                            .iter()
                            .filter(|(_, &later)| today <= retained_until(later))
                            .map(|(c, _)| c.clone())
                            .collect();
                        if held.is_empty() && rebilled.is_empty() {
                            Decision::Delete { sent, until }
                        } else {
                            Decision::DeleteExceptHeld {
                                sent,
                                until,
                                held,
                                rebilled,
                            }
                        }
                    }
                }
            };
            MonthPlan {
                month: s.month,
                decision,
            }
        })
        .collect();
    out.sort_by_key(|p| p.month);
    out
}

fn not_billed(month: BillingMonth, today: NaiveDate) -> Decision {
    let warn_after = month
        .last_day()
        .checked_add_months(Months::new(UNBILLED_WARNING_MONTHS))
        .expect("months are far from chrono's limits");
    Decision::NotBilled {
        overdue: today > warn_after,
    }
}

/// Why an erasure cannot happen now. Each says what has to change first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Still in `customers.csv`: a current (or future) customer whose data billing needs.
    StillACustomer,
    LegalHold {
        month: BillingMonth,
        reason: String,
        line: usize,
    },
    /// Calls of a month that has not been billed: the bill is yet to come.
    NotBilled { month: BillingMonth },
    /// The bill can still be disputed (TKG § 67).
    ObjectionPeriod {
        month: BillingMonth,
        sent: NaiveDate,
        until: NaiveDate,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::StillACustomer => write!(
                f,
                "still listed in customers.csv: only a former customer's data can be erased (remove their rows when the contract has ended)"
            ),
            Refusal::LegalHold {
                month,
                reason,
                line,
            } => write!(
                f,
                "legal hold on {month} (legal-holds.csv line {line}: {reason}): remove the hold once the dispute is settled"
            ),
            Refusal::NotBilled { month } => write!(
                f,
                "{month} holds their calls and is not billed yet: run the billing run first"
            ),
            Refusal::ObjectionPeriod { month, sent, until } => write!(
                f,
                "the bill for {month} was sent {sent} and can be disputed until {until} (TKG § 67, 8 weeks)"
            ),
        }
    }
}

/// Whether a customer's data may be erased `today`. `months` are the months that hold the
/// customer's rows or EVN files, with their send dates. Empty: go ahead.
pub fn check_erase(
    customer_id: &str,
    listed: bool,
    holds: &[LegalHold],
    months: &[MonthState],
    today: NaiveDate,
) -> Vec<Refusal> {
    let mut refusals = Vec::new();
    if listed {
        refusals.push(Refusal::StillACustomer);
    }
    for h in holds.iter().filter(|h| h.customer_id == customer_id) {
        refusals.push(Refusal::LegalHold {
            month: h.month,
            reason: h.reason.clone(),
            line: h.line,
        });
    }
    let mut months = months.to_vec();
    months.sort_by_key(|m| m.month);
    for m in months {
        match m.sent {
            None => refusals.push(Refusal::NotBilled { month: m.month }),
            Some(sent) => {
                let until = objection_until(sent);
                if today <= until {
                    refusals.push(Refusal::ObjectionPeriod {
                        month: m.month,
                        sent,
                        until,
                    });
                }
            }
        }
    }
    refusals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn m(s: &str) -> BillingMonth {
        s.parse().unwrap()
    }

    fn holds(list: &[(&str, &str)]) -> BTreeMap<BillingMonth, BTreeSet<String>> {
        let mut out: BTreeMap<BillingMonth, BTreeSet<String>> = BTreeMap::new();
        for (c, month) in list {
            out.entry(m(month)).or_default().insert((*c).to_owned());
        }
        out
    }

    /// One month billed on `sent`, decided on `today`.
    fn check(sent: Option<&str>, hold: &[(&str, &str)], today: &str, expected: Decision) {
        let state = MonthState {
            month: m("2026-03"),
            sent: sent.map(d),
            sent_later: BTreeMap::new(),
        };
        let plan = plan_retention(&[state], &holds(hold), d(today));
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].decision, expected, "sent {sent:?}, today {today}");
    }

    #[test]
    fn six_calendar_months_after_the_send_date() {
        let (sent, until) = (d("2026-04-02"), d("2026-10-02"));
        check(
            Some("2026-04-02"),
            &[],
            "2026-10-01",
            Decision::Keep { sent, until },
        );
        // At the boundary: the last day it may be kept.
        check(
            Some("2026-04-02"),
            &[],
            "2026-10-02",
            Decision::Keep { sent, until },
        );
        // The day after: gone.
        check(
            Some("2026-04-02"),
            &[],
            "2026-10-03",
            Decision::Delete { sent, until },
        );
        check(
            Some("2026-04-02"),
            &[],
            "2028-01-01",
            Decision::Delete { sent, until },
        );
    }

    #[test]
    fn month_ends_clamp() {
        assert_eq!(retained_until(d("2026-08-31")), d("2027-02-28"));
        assert_eq!(retained_until(d("2027-08-31")), d("2028-02-29"));
        assert_eq!(retained_until(d("2026-12-31")), d("2027-06-30"));
    }

    #[test]
    fn a_hold_keeps_only_its_customers() {
        let (sent, until) = (d("2026-04-02"), d("2026-10-02"));
        let held: BTreeSet<String> = ["K1002".to_owned()].into();
        check(
            Some("2026-04-02"),
            &[("K1002", "2026-03"), ("K1003", "2026-02")],
            "2026-10-03",
            Decision::DeleteExceptHeld {
                sent,
                until,
                held,
                rebilled: BTreeSet::new(),
            },
        );
        // Before the boundary a hold changes nothing.
        check(
            Some("2026-04-02"),
            &[("K1002", "2026-03")],
            "2026-10-02",
            Decision::Keep { sent, until },
        );
    }

    /// One customer billed again two months later keeps only their own rows two months
    /// longer; everyone else's go six months after the month's bills were sent.
    #[test]
    fn a_later_bill_keeps_only_its_customer() {
        let (sent, until) = (d("2026-04-02"), d("2026-10-02"));
        let state = [MonthState {
            month: m("2026-03"),
            sent: Some(sent),
            sent_later: [("K1001".to_owned(), d("2026-06-10"))].into(),
        }];
        let plan = |today| plan_retention(&state, &holds(&[]), d(today)).remove(0);
        assert_eq!(plan("2026-10-02").decision, Decision::Keep { sent, until });
        let partial = plan("2026-10-03");
        assert_eq!(
            partial.decision,
            Decision::DeleteExceptHeld {
                sent,
                until,
                held: BTreeSet::new(),
                rebilled: ["K1001".to_owned()].into(),
            }
        );
        assert_eq!(
            partial.to_string(),
            "delete 2026-03 except K1001 (billed again later; kept six months from then): \
             billed 2026-04-02, retention ended 2026-10-02"
        );
        assert_eq!(
            plan("2026-12-10").decision.kept_customers(),
            ["K1001".to_owned()].into()
        );
        assert_eq!(
            plan("2026-12-11").decision,
            Decision::Delete { sent, until }
        );
        // With a hold as well, both stay.
        let both = plan_retention(&state, &holds(&[("K1002", "2026-03")]), d("2026-11-01"));
        assert_eq!(
            both[0].decision.kept_customers(),
            ["K1001".to_owned(), "K1002".to_owned()].into()
        );
    }

    #[test]
    fn removing_the_hold_lets_the_next_run_delete() {
        let (sent, until) = (d("2026-04-02"), d("2026-10-02"));
        let state = [MonthState {
            month: m("2026-03"),
            sent: Some(sent),
            sent_later: BTreeMap::new(),
        }];
        let with = plan_retention(&state, &holds(&[("K1002", "2026-03")]), d("2027-01-01"));
        assert!(matches!(
            with[0].decision,
            Decision::DeleteExceptHeld { .. }
        ));
        let without = plan_retention(&state, &holds(&[]), d("2027-01-01"));
        assert_eq!(without[0].decision, Decision::Delete { sent, until });
    }

    #[test]
    fn a_month_never_billed_is_never_deleted() {
        check(
            None,
            &[],
            "2026-10-03",
            Decision::NotBilled { overdue: false },
        );
        // March 2026 ends 2026-03-31; the warning starts after 2027-03-31.
        check(
            None,
            &[],
            "2027-03-31",
            Decision::NotBilled { overdue: false },
        );
        check(
            None,
            &[],
            "2027-04-01",
            Decision::NotBilled { overdue: true },
        );
        check(
            None,
            &[],
            "2040-01-01",
            Decision::NotBilled { overdue: true },
        );
    }

    #[test]
    fn months_come_out_sorted() {
        let states = [
            MonthState {
                month: m("2026-05"),
                sent: None,
                sent_later: BTreeMap::new(),
            },
            MonthState {
                month: m("2026-01"),
                sent: Some(d("2026-02-02")),
                sent_later: BTreeMap::new(),
            },
        ];
        let plan = plan_retention(&states, &holds(&[]), d("2026-06-01"));
        let months: Vec<String> = plan.iter().map(|p| p.month.to_string()).collect();
        assert_eq!(months, ["2026-01", "2026-05"]);
    }

    fn hold(c: &str, month: &str) -> LegalHold {
        LegalHold {
            customer_id: c.into(),
            month: m(month),
            reason: "objection".into(),
            since: d("2026-04-20"),
            line: 2,
        }
    }

    #[test]
    fn erase_waits_for_the_objection_period() {
        let months = [MonthState {
            month: m("2026-03"),
            sent: Some(d("2026-04-02")),
            sent_later: BTreeMap::new(),
        }];
        // 2026-04-02 + 56 days = 2026-05-28.
        let r = check_erase("K9", false, &[], &months, d("2026-05-28"));
        assert_eq!(
            r,
            vec![Refusal::ObjectionPeriod {
                month: m("2026-03"),
                sent: d("2026-04-02"),
                until: d("2026-05-28")
            }]
        );
        assert!(check_erase("K9", false, &[], &months, d("2026-05-29")).is_empty());
    }

    #[test]
    fn erase_refuses_customers_holds_and_unbilled_months() {
        let months = [
            MonthState {
                month: m("2026-01"),
                sent: Some(d("2026-02-02")),
                sent_later: BTreeMap::new(),
            },
            MonthState {
                month: m("2026-06"),
                sent: None,
                sent_later: BTreeMap::new(),
            },
        ];
        let holds = [hold("K9", "2026-01"), hold("K1", "2026-01")];
        let r = check_erase("K9", true, &holds, &months, d("2026-12-01"));
        assert_eq!(
            r,
            vec![
                Refusal::StillACustomer,
                Refusal::LegalHold {
                    month: m("2026-01"),
                    reason: "objection".into(),
                    line: 2
                },
                Refusal::NotBilled {
                    month: m("2026-06")
                },
            ]
        );
        // Another customer's hold does not stop this erasure.
        let billed = &months[..1];
        assert!(check_erase("K9", false, &holds[1..], billed, d("2026-12-01")).is_empty());
        assert!(r[1].to_string().contains("legal-holds.csv line 2"));
    }
}
