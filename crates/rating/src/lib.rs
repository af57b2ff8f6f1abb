//! The billing rules as plain functions (DOMAIN.md): what happens to a CDR — stored and rated,
//! skipped for a counted reason, or rejected — plus the billing month and number shortening.
//!
//! Pure: no Kafka, no files, no clock. Ingest calls [`classify`]; the billing run and the
//! renderer reuse [`BillingMonth`] and [`shorten`].

mod month;

use chrono::{DateTime, Utc};
use compact_str::CompactString;
use rust_decimal::{Decimal, RoundingStrategy};

use evn_cdr::{Cdr, Direction, Disposition};
use evn_config::{Config, Lookup, ZoneId};

pub use month::{berlin_date, BillingMonth, MonthError};

/// Per-call charges keep four decimals (DOMAIN.md, Rating).
pub const CHARGE_SCALE: u32 = 4;

/// A chargeable call, rated and ready to store (INTERFACES.md §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatedCall {
    pub cdr_id: CompactString,
    pub switch_id: CompactString,
    pub customer_id: CompactString,
    pub calling_number: CompactString,
    /// As stored: shortened to `…xxx` where the customer asked.
    pub called_number: CompactString,
    pub start_time: DateTime<Utc>,
    pub duration_s: i64,
    pub zone: CompactString,
    pub charge_eur: Decimal,
    pub billing_month: BillingMonth,
    pub plan: CompactString,
    pub shortened: bool,
    /// The dialled number is on the counselling list: never shown in an EVN.
    pub counselling: bool,
}

/// A deliberate, counted decision not to store a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    /// busy, no_answer, failed: nothing to bill.
    Unanswered,
    Inbound,
    Internal,
    /// Covered by the customer's flatrate: not itemised and not kept (data minimisation).
    Flatrate,
}

impl Skip {
    pub fn code(self) -> &'static str {
        match self {
            Skip::Unanswered => "unanswered",
            Skip::Inbound => "inbound",
            Skip::Internal => "internal",
            Skip::Flatrate => "flatrate",
        }
    }
}

/// A valid CDR that the configuration cannot bill: it goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unbillable {
    #[error("unknown_customer: customer {customer_id:?} is not in customers.csv")]
    UnknownCustomer { customer_id: String },
    #[error(
        "no_customer_row: customer {customer_id:?} has no row valid on {date} (Europe/Berlin)"
    )]
    NoRowInForce {
        customer_id: String,
        date: chrono::NaiveDate,
    },
    #[error("no_zone: no tariff zone matches the dialled number {number:?}")]
    NoZone { number: String },
}

impl Unbillable {
    pub fn code(&self) -> &'static str {
        match self {
            Unbillable::UnknownCustomer { .. } => "unknown_customer",
            Unbillable::NoRowInForce { .. } => "no_customer_row",
            Unbillable::NoZone { .. } => "no_zone",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Store(Box<RatedCall>),
    Skip(Skip),
    Reject(Unbillable),
}

/// Applies the rules in order: what is never billed is skipped first, then the customer row in
/// force at the call's local start date decides plan, flatrate and shortening. Takes the CDR by
/// value: a stored call keeps its strings instead of copying them (five allocations a CDR on
/// ingest's prepare thread).
pub fn classify(cdr: Cdr, config: &Config) -> Outcome {
    match cdr.direction {
        Direction::Inbound => return Outcome::Skip(Skip::Inbound),
        Direction::Internal => return Outcome::Skip(Skip::Internal),
        Direction::Outbound => {}
    }
    if cdr.disposition != Disposition::Answered {
        return Outcome::Skip(Skip::Unanswered);
    }
    // One time-zone lookup (a binary search of Berlin's transitions) gives both the date the
    // customer's terms are looked up by and the billing month.
    let date = berlin_date(cdr.start_time);
    let terms = match config.customers.terms_in_force(&cdr.customer_id, date) {
        Ok(terms) => terms,
        Err(Lookup::UnknownCustomer) => {
            return Outcome::Reject(Unbillable::UnknownCustomer {
                customer_id: cdr.customer_id.into(),
            })
        }
        Err(Lookup::NotYetValid) => {
            return Outcome::Reject(Unbillable::NoRowInForce {
                customer_id: cdr.customer_id.into(),
                date,
            })
        }
    };
    let called = cdr.called_number.as_str();
    let Some(zone) = config.tariffs.zone_of(called) else {
        return Outcome::Reject(Unbillable::NoZone {
            number: called.to_owned(),
        });
    };
    let plan = config.tariffs.plan_at(terms.plan);
    if plan.flatrate.contains(zone) {
        return Outcome::Skip(Skip::Flatrate);
    }
    let rate = &plan.rates[zone];
    let duration_s = cdr.billable_seconds();
    let charge_eur = charge(rate.per_minute, rate.increment.billable(duration_s));
    // Rating and the counselling check use the full number; shortening comes last.
    let counselling = config.counselling.contains(called);
    let called_number = if terms.shorten_numbers {
        shorten(called)
    } else {
        cdr.called_number.into_inner()
    };
    Outcome::Store(Box::new(RatedCall {
        cdr_id: cdr.cdr_id,
        switch_id: cdr.switch_id,
        customer_id: cdr.customer_id,
        calling_number: cdr.calling_number.into_inner(),
        called_number,
        start_time: cdr.start_time,
        duration_s,
        zone: zone.as_str().into(),
        charge_eur,
        billing_month: BillingMonth::of_date(date),
        plan: plan.name.as_str().into(),
        shortened: terms.shorten_numbers,
        counselling,
    }))
}

/// A stored call as today's configuration rates it, for the billing run: a re-run after a
/// corrected tariff or a late change in `customers.csv` bills what the terms in force at the
/// call's start say (DOMAIN.md), not what they said when the call was ingested. `None`: the
/// call is now covered by a flatrate, neither billed nor itemised.
///
/// The duration is a fact of the call and stays. A number stored in full is zoned again by
/// today's `[zones]`, so a corrected prefix (0137 taken for a landline number) reaches the
/// months still kept; a shortened one keeps the zone it was stored with, since a prefix that
/// reaches into its last digits cannot be matched any more. A number stored in full is
/// shortened if the terms now ask for it; one stored shortened stays so (its digits are gone).
/// Terms that do not reach back to the call (a row's `valid_from` moved past it) leave the call
/// as it was stored, as does a zone today's tariffs do not have (the billing run refuses those
/// before it gets here).
pub fn rerate(mut call: RatedCall, config: &Config) -> Option<RatedCall> {
    let Ok(terms) = config
        .customers
        .terms_in_force(&call.customer_id, berlin_date(call.start_time))
    else {
        return Some(call);
    };
    let plan = config.tariffs.plan_at(terms.plan);
    if !call.shortened {
        if let Some(today) = config.tariffs.zone_of(&call.called_number) {
            if today.as_str() != call.zone.as_str() {
                call.zone = today.as_str().into();
            }
        }
    }
    let zone = ZoneId::new(call.zone.as_str());
    if plan.flatrate.contains(&zone) {
        return None;
    }
    if let Some(rate) = plan.rates.get(&zone) {
        call.charge_eur = charge(rate.per_minute, rate.increment.billable(call.duration_s));
        if call.plan.as_str() != plan.name {
            call.plan = plan.name.as_str().into();
        }
    }
    if terms.shorten_numbers && !call.shortened {
        call.called_number = shorten(&call.called_number);
        call.shortened = true;
    }
    Some(call)
}

/// `per_minute × seconds / 60`, rounded half away from zero to four decimals.
pub fn charge(per_minute: Decimal, billable_seconds: i64) -> Decimal {
    let exact = per_minute * Decimal::from(billable_seconds);
    // With at most four decimals (as tariffs have them) the product is a whole number of
    // ten-thousandths, and the result that number divided by 60, rounded: one integer
    // division. Dividing the `Decimal` gave 28 decimals, which rounding then dropped one at a
    // time (~600 instructions a call, 2 % of ingest's, callgrind, issue #7).
    let mut units = exact;
    units.rescale(CHARGE_SCALE);
    if exact.scale() <= CHARGE_SCALE && units.scale() == CHARGE_SCALE {
        let m = units.mantissa();
        let rounded = (m.abs() + 30) / 60;
        return Decimal::from_i128_with_scale(if m < 0 { -rounded } else { rounded }, CHARGE_SCALE);
    }
    (exact / Decimal::from(60))
        .round_dp_with_strategy(CHARGE_SCALE, RoundingStrategy::MidpointAwayFromZero)
}

/// Replaces the last three digits with `xxx` (`+4915112345678` → `+4915112345xxx`).
/// Short codes (`110`, `116117`, `11833`) stay whole: they are public services, not anyone's
/// line, and `110` shortened to `xxx` would leave nothing to read.
pub fn shorten(number: &str) -> CompactString {
    if !number.starts_with('+') {
        return number.into();
    }
    let digits_start = 1;
    let keep = number.len().saturating_sub(3).max(digits_start);
    let mut shortened = CompactString::from(&number[..keep]);
    shortened.extend(std::iter::repeat_n('x', number.len() - keep));
    shortened
}

#[cfg(test)]
mod tests;
