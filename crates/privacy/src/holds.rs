//! `legal-holds.csv` in the config directory: disputed bills whose data must outlive the six
//! months (TDDDG § 10: kept while the customer disputes the bill, until it is settled).
//!
//! ```text
//! customer_id,month,reason,since
//! K1002,2026-03,objection of 2026-04-20 (ticket 4711),2026-04-21
//! ```
//! The file is optional: no file means no holds. A malformed file is a configuration error,
//! never read as "no holds", because that would delete disputed data.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;

use evn_rating::BillingMonth;
use evn_store::{Keyring, Location};

use crate::{evn_dir, PrivacyError};

pub const HOLDS_FILE: &str = "legal-holds.csv";

/// One customer's billing month kept past the retention period while a dispute is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalHold {
    pub customer_id: String,
    pub month: BillingMonth,
    pub reason: String,
    pub since: NaiveDate,
    /// Line in `legal-holds.csv`, for messages.
    pub line: usize,
}

/// Holds by month: the customers whose rows and EVNs of that month stay.
pub fn held_customers(holds: &[LegalHold]) -> BTreeMap<BillingMonth, BTreeSet<String>> {
    let mut out: BTreeMap<BillingMonth, BTreeSet<String>> = BTreeMap::new();
    for h in holds {
        out.entry(h.month)
            .or_default()
            .insert(h.customer_id.clone());
    }
    out
}

/// Reads `CONFIG/legal-holds.csv`; a missing file is no holds.
pub fn load_holds(config_dir: &Path) -> Result<Vec<LegalHold>, PrivacyError> {
    let path = config_dir.join(HOLDS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_holds(&path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(PrivacyError::io(&path, e)),
    }
}

/// As `customers.csv` allows (evn-config keeps its constant private to the crate).
const MAX_CUSTOMER_ID_LEN: usize = 64;

/// A customer id as everywhere else: it becomes part of file names.
pub(crate) fn valid_customer_id(id: &str) -> bool {
    (1..=MAX_CUSTOMER_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Refuses a hold that protects nothing: a customer with no stored call, EVN file or bill in
/// the held month. Such a line is nearly always a typo (`k1002` for `K1002`, a digit or the
/// month wrong), and retention would then delete the disputed data it was written to keep.
/// Compares with what is stored, not with `customers.csv`: former customers are held too.
pub fn check_holds_match(
    path: &Path,
    holds: &[LegalHold],
    data: &Location,
    evn: &Location,
    keys: Option<&Arc<Keyring>>,
) -> Result<(), PrivacyError> {
    let mut by_month: BTreeMap<BillingMonth, Vec<&LegalHold>> = BTreeMap::new();
    for h in holds {
        by_month.entry(h.month).or_default().push(h);
    }
    if by_month.is_empty() {
        return Ok(());
    }
    let evn_months: BTreeSet<BillingMonth> = evn_dir::evn_months(evn)?.into_iter().collect();
    let data_months: BTreeSet<BillingMonth> = data.list_months()?.into_iter().collect();
    for (month, holds) in by_month {
        let mut present = BTreeSet::new();
        if evn_months.contains(&month) {
            present.extend(evn_dir::billed(evn, month)?.customers);
            present.extend(evn_dir::owners(evn, month)?);
        }
        let matched =
            |present: &BTreeSet<String>| holds.iter().all(|h| present.contains(&h.customer_id));
        // Rows are read only when the bills and EVN files leave a hold unmatched (a customer
        // without an EVN): a month's stored calls are the expensive part.
        if !matched(&present) && data_months.contains(&month) {
            for file in data.list_month_files(month)? {
                data.read_file_with(&file, keys, &mut |c| {
                    if !present.contains(c.call.customer_id.as_str()) {
                        present.insert(c.call.customer_id.to_string());
                    }
                })?;
            }
        }
        if let Some(h) = holds.iter().find(|h| !present.contains(&h.customer_id)) {
            let near = present
                .iter()
                .find(|p| p.eq_ignore_ascii_case(&h.customer_id))
                .map(|p| format!(" ({p} has: mind the spelling)"))
                .unwrap_or_default();
            return Err(PrivacyError::Holds {
                path: path.to_owned(),
                line: h.line,
                message: format!(
                    "the hold names {} in {month}, who has no stored calls, EVNs or bill in that month{near}: \
                     it would protect nothing while the disputed data is deleted; correct the line, \
                     or remove it if that data is gone",
                    h.customer_id
                ),
            });
        }
    }
    Ok(())
}

pub fn parse_holds(path: &Path, text: &str) -> Result<Vec<LegalHold>, PrivacyError> {
    let err = |line: usize, message: String| PrivacyError::Holds {
        path: path.to_owned(),
        line,
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| err(1, format!("cannot read the header row: {e}")))?
        .clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| err(1, format!("the header row lacks the column `{name}` (expected customer_id,month,reason,since)")))
    };
    let (c_id, c_month, c_reason, c_since) = (
        col("customer_id")?,
        col("month")?,
        col("reason")?,
        col("since")?,
    );
    let mut lines = evn_config::CsvLines::new(text.as_bytes(), None);
    let mut holds = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| lines.line(p));
            err(line, format!("malformed row: {e}"))
        })?;
        let line = record.position().map_or(0, |p| lines.line(p));
        let field = |i: usize| record.get(i).unwrap_or("");
        let customer_id = field(c_id);
        if !valid_customer_id(customer_id) {
            return Err(err(
                line,
                format!("customer_id {customer_id:?} is not an id like K1001 (letters, digits, _ and -, at most 64)"),
            ));
        }
        let month: BillingMonth = field(c_month)
            .parse()
            .map_err(|e| err(line, format!("month: {e}")))?;
        let reason = field(c_reason);
        if reason.is_empty() {
            return Err(err(
                line,
                "reason is empty: say why the data is held (e.g. the objection's ticket)".into(),
            ));
        }
        let since = NaiveDate::parse_from_str(field(c_since), "%Y-%m-%d").map_err(|_| {
            err(
                line,
                format!("since {:?} is not a date like 2026-04-21", field(c_since)),
            )
        })?;
        holds.push(LegalHold {
            customer_id: customer_id.to_owned(),
            month,
            reason: reason.to_owned(),
            since,
            line,
        });
    }
    Ok(holds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<LegalHold>, String> {
        parse_holds(Path::new("legal-holds.csv"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_holds_with_line_numbers() {
        let holds =
            parse("customer_id,month,reason,since\n\nK1002,2026-03,objection 4711,2026-04-21\n")
                .unwrap();
        assert_eq!(holds.len(), 1);
        assert_eq!(holds[0].customer_id, "K1002");
        assert_eq!(holds[0].month.to_string(), "2026-03");
        assert_eq!(holds[0].line, 3);
    }

    #[test]
    fn header_only_is_no_holds() {
        assert_eq!(parse("customer_id,month,reason,since\n").unwrap(), vec![]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let head = "customer_id,month,reason,since\n";
        let e = parse(&format!("{head}K1,2026-13,x,2026-01-01\n")).unwrap_err();
        assert!(e.starts_with("legal-holds.csv:2: month"), "{e}");
        let e = parse(&format!(
            "{head}K1,2026-01,x,2026-01-01\nK/2,2026-01,x,2026-01-01\n"
        ))
        .unwrap_err();
        assert!(e.starts_with("legal-holds.csv:3: customer_id"), "{e}");
        let e = parse(&format!("{head}K1,2026-01,,2026-01-01\n")).unwrap_err();
        assert!(e.contains(":2: reason is empty"), "{e}");
        let e = parse(&format!("{head}K1,2026-01,x,21.04.2026\n")).unwrap_err();
        assert!(e.contains(":2: since"), "{e}");
        let e = parse("customer,month,reason,since\n").unwrap_err();
        assert!(e.starts_with("legal-holds.csv:1:"), "{e}");
    }

    #[test]
    fn errors_name_the_line_of_a_crlf_file() {
        let head = "customer_id,month,reason,since\r\n";
        let e = parse(&format!(
            "{head}K1,2026-01,x,2026-01-01\r\nK1,2026-13,x,2026-01-01\r\n"
        ))
        .unwrap_err();
        assert!(e.starts_with("legal-holds.csv:3: month"), "{e}");
        // A row with a field too few is malformed CSV: its line comes from the csv error.
        let e = parse(&format!(
            "{head}K1,2026-01,x,2026-01-01\r\n\r\nK1,2026-01\r\n"
        ))
        .unwrap_err();
        assert!(e.starts_with("legal-holds.csv:4: malformed"), "{e}");
    }
}
