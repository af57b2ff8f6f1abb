//! `numbers.csv`: the lines and DID ranges of each customer, for sources whose records carry no
//! customer id. `customer_id,number_or_prefix,valid_from`; an entry covers every number that
//! starts with it (a PBX base number covers its direct-dial extensions), the longest entry in
//! force on the call's date (Europe/Berlin) wins, so a number re-assigned to another customer
//! gets a new row from the day it moves. A row with customer `-` (or empty) ends an
//! assignment: from its date the number or range is no customer's line (the customer left, or
//! ported the number out), and it does not fall back to a shorter entry.

use std::collections::HashMap;
use std::path::Path;

use chrono::NaiveDate;
use serde::Deserialize;

use crate::{ConfigError, CustomerDirectory};

/// One entry, in force from `valid_from` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberEntry {
    /// Empty: from `valid_from` the number is no customer's line.
    pub customer_id: String,
    /// E.164 with `+`: a full number or the leading digits of a range.
    pub prefix: String,
    pub valid_from: NaiveDate,
    pub line: usize,
}

#[derive(Debug, Clone, Default)]
pub struct NumberDirectory {
    /// Entries per prefix, sorted by `valid_from`.
    by_prefix: HashMap<String, Vec<NumberEntry>>,
    longest: usize,
}

impl NumberDirectory {
    /// The customer whose line `number` (E.164) is on `date`, by the longest entry in force.
    pub fn customer_of(&self, number: &str, date: NaiveDate) -> Option<&str> {
        let max = self.longest.min(number.len());
        for len in (2..=max).rev() {
            let Some(rows) = number.get(..len).and_then(|p| self.by_prefix.get(p)) else {
                continue;
            };
            let idx = rows.partition_point(|r| r.valid_from <= date);
            if let Some(i) = idx.checked_sub(1) {
                // An ended assignment ends the search too: a number ported out of a customer's
                // range is not that customer's line.
                let customer = rows[i].customer_id.as_str();
                return (!customer.is_empty()).then_some(customer);
            }
        }
        None
    }

    /// Entries (all dates) in the directory.
    pub fn len(&self) -> usize {
        self.by_prefix.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_prefix.is_empty()
    }

    /// Builds a directory from entries already validated elsewhere (tests).
    pub fn from_entries(entries: Vec<NumberEntry>) -> Self {
        let mut dir = NumberDirectory::default();
        for e in entries {
            dir.longest = dir.longest.max(e.prefix.len());
            dir.by_prefix.entry(e.prefix.clone()).or_default().push(e);
        }
        for rows in dir.by_prefix.values_mut() {
            rows.sort_by_key(|r| r.valid_from);
        }
        dir
    }

    pub(crate) fn parse(
        path: &Path,
        text: &str,
        customers: &CustomerDirectory,
    ) -> Result<Self, ConfigError> {
        let mut entries = Vec::new();
        let mut seen: HashMap<(String, NaiveDate), usize> = HashMap::new();
        crate::csv_rows(
            path,
            text,
            Some(b'#'),
            &["customer_id", "number_or_prefix", "valid_from"],
            |line, raw: RawRow| {
                let err = |msg: String| ConfigError::new(path, Some(line), msg);
                let ended = matches!(raw.customer_id.trim(), "" | "-");
                if !ended && customers.rows(&raw.customer_id).is_empty() {
                    return Err(err(format!(
                        "customer {:?} is not in customers.csv: add the customer first",
                        raw.customer_id
                    )));
                }
                let prefix: String = raw
                    .number_or_prefix
                    .chars()
                    .filter(|c| !matches!(c, ' ' | '-' | '/'))
                    .collect();
                let digits = prefix.strip_prefix('+').unwrap_or("");
                if digits.len() < 2
                    || digits.len() > 15
                    || digits.starts_with('0')
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(err(format!(
                    "number_or_prefix {:?} must be E.164 with `+` (a number or its leading digits, e.g. +4930901820 or +49221555)",
                    raw.number_or_prefix
                )));
                }
                let valid_from =
                    NaiveDate::parse_from_str(&raw.valid_from, "%Y-%m-%d").map_err(|_| {
                        err(format!(
                            "valid_from {:?} is not a date like 2026-11-15",
                            raw.valid_from
                        ))
                    })?;
                if let Some(first) = seen.insert((prefix.clone(), valid_from), line) {
                    return Err(err(format!("{prefix} has two rows valid from {valid_from} (lines {first} and {line}): keep one")));
                }
                entries.push(NumberEntry {
                    customer_id: if ended {
                        String::new()
                    } else {
                        raw.customer_id
                    },
                    prefix,
                    valid_from,
                    line,
                });
                Ok(())
            },
        )?;
        Ok(Self::from_entries(entries))
    }
}

#[derive(Deserialize)]
struct RawRow {
    customer_id: String,
    number_or_prefix: String,
    valid_from: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CustomerRow, PlanIx};

    fn customers() -> CustomerDirectory {
        let row = |id: &str| CustomerRow {
            customer_id: id.into(),
            name: "N".into(),
            street: "S".into(),
            postcode: "1".into(),
            city: "C".into(),
            plan: "p".into(),
            evn: true,
            shorten_numbers: false,
            valid_from: d("2026-01-01"),
            line: 2,
        };
        CustomerDirectory::from_rows(vec![row("K1"), row("K2")], |_| PlanIx(0))
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn parse(body: &str) -> Result<NumberDirectory, ConfigError> {
        NumberDirectory::parse(
            Path::new("numbers.csv"),
            &format!("customer_id,number_or_prefix,valid_from\n{body}"),
            &customers(),
        )
    }

    #[test]
    fn longest_prefix_in_force_wins() {
        let dir = parse(
            "K1,+49221555,2026-01-01\n\
             K2,+492215550,2026-01-01\n\
             K1,+4930901820,2026-01-01\n\
             K2,+4930901820,2026-11-15\n",
        )
        .unwrap();
        assert_eq!(dir.customer_of("+49221555010", d("2026-11-01")), Some("K2"));
        assert_eq!(dir.customer_of("+49221555100", d("2026-11-01")), Some("K1"));
        assert_eq!(dir.customer_of("+4930901820", d("2026-11-14")), Some("K1"));
        assert_eq!(dir.customer_of("+4930901820", d("2026-11-15")), Some("K2"));
        // A direct-dial extension of the base number.
        assert_eq!(
            dir.customer_of("+493090182017", d("2026-11-15")),
            Some("K2")
        );
        assert_eq!(dir.customer_of("+4930901820", d("2025-12-31")), None);
        assert_eq!(dir.customer_of("+4989123456", d("2026-11-01")), None);
        assert_eq!(dir.len(), 4);
    }

    #[test]
    fn a_dash_ends_an_assignment() {
        let dir = parse(
            "K1,+4930901820,2026-01-01\n\
             -,+4930901820,2026-11-15\n\
             K2,+49221555,2026-01-01\n\
             ,+492215550,2026-06-01\n\
             K1,+4930901820,2027-01-01\n",
        )
        .unwrap();
        assert_eq!(dir.customer_of("+4930901820", d("2026-11-14")), Some("K1"));
        assert_eq!(dir.customer_of("+4930901820", d("2026-11-15")), None);
        assert_eq!(dir.customer_of("+493090182017", d("2026-12-01")), None);
        assert_eq!(dir.customer_of("+4930901820", d("2027-01-01")), Some("K1"));
        // A number ported out of a range does not fall back to the range's customer.
        assert_eq!(dir.customer_of("+49221555010", d("2026-05-31")), Some("K2"));
        assert_eq!(dir.customer_of("+49221555010", d("2026-06-01")), None);
        assert_eq!(dir.customer_of("+49221555100", d("2026-06-01")), Some("K2"));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("K1,+4930901820,2026-01-01\nK9,+4989,2026-01-01\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("not in customers.csv"), "{e}");
        let e = parse("K1,030901820,2026-01-01\n").unwrap_err();
        assert!(e.message.contains("E.164"), "{e}");
        let e = parse("K1,+4930901820,01.01.2026\n").unwrap_err();
        assert!(e.message.contains("not a date"), "{e}");
        let e = parse("K1,+4930901820,2026-01-01\nK2,+49 30 901820,2026-01-01\n").unwrap_err();
        assert!(e.message.contains("two rows"), "{e}");
    }

    #[test]
    fn errors_name_the_line_after_comment_lines() {
        let text = "# the lines of our customers\n# exported 2026-11-01\n\
                    customer_id,number_or_prefix,valid_from\n\
                    # Berlin\n\
                    K9,+4930901820,2026-01-01\n";
        let e = NumberDirectory::parse(Path::new("numbers.csv"), text, &customers()).unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        let text = "# no header below\n# at all\nK1,+4930901820\n";
        let e = NumberDirectory::parse(Path::new("numbers.csv"), text, &customers()).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
    }

    #[test]
    fn errors_name_the_line_of_a_crlf_file() {
        let text = "customer_id,number_or_prefix,valid_from\r\n\
                    # Berlin\r\n\
                    K1,+4930901820,2026-01-01\r\n\
                    K9,+4989,2026-01-01\r\n";
        let e = NumberDirectory::parse(Path::new("numbers.csv"), text, &customers()).unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
    }
}
