//! Data protection for stored traffic data and EVNs: retention (TDDDG § 10), legal holds,
//! the customer's copy (GDPR Art. 15) and erasure on request (GDPR Art. 17).
//!
//! The rules are a pure function ([`plan_retention`], [`check_erase`]); the IO around them is
//! crash-safe and re-runnable ([`fsops`]).
//!
//! # Decisions
//! - **Send date** of a billing month: the latest `created` date of any EVN version in the
//!   month's manifests (`EVN/YYYY-MM/manifest*.json`), i.e. the last billing run that issued a
//!   bill for the month; a manifest without versions counts with its `generated_at` date in
//!   Europe/Berlin. A re-run after late CDRs re-issues the month, and the six months restart
//!   from it. The month is the unit: its data is deleted as a whole, never customer by
//!   customer (except for legal holds and erasure).
//! - **Six months**: a month is kept through `send date + 6 calendar months` (clamped to the
//!   month's end) and deleted on the first run after that day (`send + 6 months < today`,
//!   dates in Europe/Berlin).
//! - **Never billed** (no manifest): never deleted by the six-month rule, because it has not
//!   started; a month still unbilled 12 months after its end is reported with a WARNING on
//!   every run.
//! - **Legal holds** (`CONFIG/legal-holds.csv`, `customer_id,month,reason,since`): past the six
//!   months, a held month keeps exactly the held customers' rows (Parquet rewritten with the
//!   current key), EVN files and manifest entries; everything else of the month goes. Removing
//!   the hold lets the next run delete the rest.
//! - **Order**: traffic data before the EVN folder, because the manifest is what dates a month:
//!   after a crash in between, the next run still knows the month is due.
//! - **Staging** (`DATA/_staging/<writer>/`): files older than 7 days are a crashed writer's
//!   debris and are deleted, except files the newest commit record of a partition names
//!   (recovery may still roll them forward). Ages use the wall clock, not `--today`.
//! - **Commit log** (`DATA/_ingest/`): offsets and file names, no personal data; ingest prunes
//!   it itself and retention leaves it alone (deleting records would weaken zombie fencing).
//! - **Dead letters** live on Kafka only (`<topic>.dlq`), never on disk: the 7-day rule for
//!   fault data is the DLQ topic's `retention.ms=604800000`.
//! - **Erasure** of a customer is refused (nothing changes, every reason printed) while the
//!   customer is listed in `customers.csv` (the file has no end date: a contract ends by
//!   removing the customer's rows), while a legal hold names them, while a month with their
//!   calls is not billed yet, or while a bill of theirs is inside the objection period: 8 weeks
//!   (56 days) after its send date, inclusive (TKG § 67, DOMAIN.md).
//! - **Export** withholds calls to counselling services (see [`export`]).
//! - **Object stores** (`--data`/`--evn` as URLs): the same rules; a month's data changes by a
//!   change record instead of a rename ([`data_dir`], `evn_store::month_change`), an EVN month
//!   is deleted between a `_deleting.json` mark and its removal ([`evn_dir`]), and stale staged
//!   objects follow ingest's orphan rule, with this module's 7 days.

pub mod data_dir;
mod erase;
mod error;
pub mod evn_dir;
mod export;
pub mod fsops;
mod holds;
pub mod plan;
mod retention;

pub use erase::{erase, EraseOptions, EraseOutcome};
pub use error::PrivacyError;
pub use export::{export, ExportFormat, ExportRow, ExportSummary};
pub use holds::{
    check_holds_match, held_customers, load_holds, parse_holds, LegalHold, HOLDS_FILE,
};
pub use plan::{
    check_erase, objection_until, plan_retention, retained_until, Decision, MonthPlan, MonthState,
    Refusal,
};
pub use retention::{
    run_retention, scan, Action, RetentionOptions, Summary, DEFAULT_STAGING_MAX_AGE,
};

/// Today's date in Europe/Berlin: the calendar the six months and the eight weeks count in.
pub fn today_berlin() -> chrono::NaiveDate {
    chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Berlin)
        .date_naive()
}
