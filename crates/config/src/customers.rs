//! `customers.csv`: one row per customer and change; the row in force at a date applies.

use rustc_hash::FxHashMap;
use std::path::Path;

use chrono::NaiveDate;
use compact_str::CompactString;
use serde::Deserialize;

use crate::{ConfigError, PlanIx, Tariffs};

/// The longest customer id; ids become file names (`<customer_id>.pdf`), so they stay short.
pub const MAX_CUSTOMER_ID_LEN: usize = 64;

/// One customer's settings from a `valid_from` date (Europe/Berlin) on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRow {
    pub customer_id: String,
    pub name: String,
    pub street: String,
    pub postcode: String,
    pub city: String,
    pub plan: String,
    /// The customer asked for an itemised bill (EVN).
    pub evn: bool,
    /// Dialled numbers are shown without their last three digits.
    pub shorten_numbers: bool,
    pub valid_from: NaiveDate,
    /// Line in `customers.csv`, for messages.
    pub line: usize,
}

/// Why no row applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    UnknownCustomer,
    /// The customer exists, but their first row starts after the date asked for.
    NotYetValid,
}

/// What rating needs of a customer row from `valid_from` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    pub valid_from: NaiveDate,
    pub plan: PlanIx,
    /// Dialled numbers are shown without their last three digits.
    pub shorten_numbers: bool,
}

/// Where a customer's terms are: most customers never change, and their only terms sit in the
/// table beside the id, one cache miss less for every CDR (perf, issue #7).
#[derive(Debug, Clone, Copy)]
enum TermsAt {
    One(Terms),
    /// `count` terms from `start` in [`CustomerDirectory::terms`].
    Many {
        start: u32,
        count: u32,
    },
}

#[derive(Debug, Clone, Default)]
pub struct CustomerDirectory {
    /// Rows per customer, sorted by `valid_from`.
    by_id: FxHashMap<String, Vec<CustomerRow>>,
    /// Per customer, its terms or where they are in `terms` ([`TermsAt`]). Ingest looks a
    /// customer up for every CDR: ids up to 24 bytes sit in the table itself and terms hold no
    /// pointers, where a lookup in `by_id` missed the cache three times (the id's bytes, the
    /// rows, the plan's name), the largest single item of ingest's prepare thread (perf, #7).
    /// Fx: ids are the operator's, not hostile.
    terms_of: FxHashMap<CompactString, TermsAt>,
    /// Every customer's terms, each customer's together and sorted by `valid_from`.
    terms: Vec<Terms>,
}

impl CustomerDirectory {
    /// The terms in force on `date`: those of [`CustomerDirectory::in_force`], for rating.
    pub fn terms_in_force(&self, customer_id: &str, date: NaiveDate) -> Result<Terms, Lookup> {
        let terms = match self.terms_of.get(customer_id) {
            None => return Err(Lookup::UnknownCustomer),
            Some(TermsAt::One(terms)) => std::slice::from_ref(terms),
            Some(&TermsAt::Many { start, count }) => {
                &self.terms[start as usize..][..count as usize]
            }
        };
        let idx = terms.partition_point(|t| t.valid_from <= date);
        idx.checked_sub(1)
            .map(|i| terms[i])
            .ok_or(Lookup::NotYetValid)
    }

    /// The row in force on `date`: the latest `valid_from` not after it.
    pub fn in_force(&self, customer_id: &str, date: NaiveDate) -> Result<&CustomerRow, Lookup> {
        let rows = self.by_id.get(customer_id).ok_or(Lookup::UnknownCustomer)?;
        let idx = rows.partition_point(|r| r.valid_from <= date);
        idx.checked_sub(1)
            .map(|i| &rows[i])
            .ok_or(Lookup::NotYetValid)
    }

    /// All rows of one customer, oldest first.
    pub fn rows(&self, customer_id: &str) -> &[CustomerRow] {
        self.by_id.get(customer_id).map_or(&[], Vec::as_slice)
    }

    /// Customer ids, sorted, so every walk over customers is deterministic.
    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.by_id.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Builds a directory from validated rows; `plan_ix` resolves a row's plan.
    pub(crate) fn from_rows(rows: Vec<CustomerRow>, plan_ix: impl Fn(&str) -> PlanIx) -> Self {
        let mut by_id: FxHashMap<String, Vec<CustomerRow>> = FxHashMap::default();
        by_id.reserve(rows.len());
        for row in rows {
            by_id.entry(row.customer_id.clone()).or_default().push(row);
        }
        let mut terms_of = FxHashMap::default();
        terms_of.reserve(by_id.len());
        let mut terms = Vec::new();
        for (id, rows) in by_id.iter_mut() {
            rows.sort_by_key(|r| r.valid_from);
            // Pushing one row at a time left room for four; ingest holds this for its lifetime.
            rows.shrink_to_fit();
            let of = |r: &CustomerRow| Terms {
                valid_from: r.valid_from,
                plan: plan_ix(&r.plan),
                shorten_numbers: r.shorten_numbers,
            };
            let at = match rows.as_slice() {
                [row] => TermsAt::One(of(row)),
                _ => {
                    let start = terms.len() as u32;
                    terms.extend(rows.iter().map(of));
                    TermsAt::Many {
                        start,
                        count: rows.len() as u32,
                    }
                }
            };
            terms_of.insert(CompactString::from(id.as_str()), at);
        }
        terms.shrink_to_fit();
        CustomerDirectory {
            by_id,
            terms_of,
            terms,
        }
    }

    pub(crate) fn parse(path: &Path, text: &str, tariffs: &Tariffs) -> Result<Self, ConfigError> {
        // Sized up front: growing by doubling copied the rows (~200 bytes each) again and
        // again, 16 % of loading 20,000 customers in perf (issue #7: every `evn` command that
        // reads the configuration waits for it).
        let lines = line_count(text);
        let mut rows = Vec::with_capacity(lines);
        let mut seen: FxHashMap<(String, NaiveDate), usize> = FxHashMap::default();
        seen.reserve(lines);
        crate::csv_rows(
            path,
            text,
            None,
            &[
                "customer_id",
                "name",
                "street",
                "postcode",
                "city",
                "plan",
                "evn",
                "shorten_numbers",
                "valid_from",
            ],
            |line, raw: RawRow| {
                let err = |msg: String| ConfigError::new(path, Some(line), msg);
                if raw.customer_id.is_empty()
                    || raw.customer_id.len() > MAX_CUSTOMER_ID_LEN
                    || !raw
                        .customer_id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(err(format!("customer_id {:?} must be 1 to {MAX_CUSTOMER_ID_LEN} letters, digits, `_` or `-`", raw.customer_id)));
                }
                if raw.name.is_empty() {
                    return Err(err(format!("customer {}: name is empty", raw.customer_id)));
                }
                if !tariffs.plans.contains_key(&raw.plan) {
                    let known: Vec<&str> = tariffs.plans.keys().map(String::as_str).collect();
                    return Err(err(format!(
                        "customer {}: unknown plan {:?} (tariffs.toml defines: {})",
                        raw.customer_id,
                        raw.plan,
                        known.join(", ")
                    )));
                }
                let evn = parse_bool(&raw.evn).ok_or_else(|| {
                    err(format!("evn must be true or false, found {:?}", raw.evn))
                })?;
                let shorten_numbers = parse_bool(&raw.shorten_numbers).ok_or_else(|| {
                    err(format!(
                        "shorten_numbers must be true or false, found {:?}",
                        raw.shorten_numbers
                    ))
                })?;
                let valid_from =
                    NaiveDate::parse_from_str(&raw.valid_from, "%Y-%m-%d").map_err(|_| {
                        err(format!(
                            "valid_from {:?} is not a date like 2026-11-15",
                            raw.valid_from
                        ))
                    })?;
                if let Some(first) = seen.insert((raw.customer_id.clone(), valid_from), line) {
                    return Err(err(format!("customer {} has two rows valid from {valid_from} (lines {first} and {line}): keep one", raw.customer_id)));
                }
                rows.push(CustomerRow {
                    customer_id: raw.customer_id,
                    name: raw.name,
                    street: raw.street,
                    postcode: raw.postcode,
                    city: raw.city,
                    plan: raw.plan,
                    evn,
                    shorten_numbers,
                    valid_from,
                    line,
                });
                Ok(())
            },
        )?;
        Ok(Self::from_rows(rows, |plan| {
            tariffs
                .plan_ix(plan)
                .expect("rows are checked against the plans above")
        }))
    }
}

/// Lines of `text`, an upper bound of its rows.
fn line_count(text: &str) -> usize {
    text.bytes().filter(|&b| b == b'\n').count() + 1
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

#[derive(Deserialize)]
struct RawRow {
    customer_id: String,
    name: String,
    street: String,
    postcode: String,
    city: String,
    plan: String,
    evn: String,
    shorten_numbers: String,
    valid_from: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tariffs() -> Tariffs {
        Tariffs::parse(
            Path::new("tariffs.toml"),
            "[zones]\nlandline = [\"+4930\"]\n[plans.office_flat]\nflatrate = [\"landline\"]\n",
        )
        .unwrap()
    }

    const HEADER: &str =
        "customer_id,name,street,postcode,city,plan,evn,shorten_numbers,valid_from\n";

    fn parse(body: &str) -> Result<CustomerDirectory, ConfigError> {
        CustomerDirectory::parse(
            Path::new("customers.csv"),
            &format!("{HEADER}{body}"),
            &tariffs(),
        )
    }

    #[test]
    fn row_in_force_is_latest_not_after_date() {
        let dir = parse(
            "K1001,Müller & Söhne GmbH,Hauptstraße 5,10115,Berlin,office_flat,true,false,2026-01-01\n\
             K1001,Müller & Söhne GmbH,Hauptstraße 5,10115,Berlin,office_flat,true,true,2026-11-15\n",
        )
        .unwrap();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert!(
            !dir.in_force("K1001", d("2026-11-14"))
                .unwrap()
                .shorten_numbers
        );
        assert!(
            dir.in_force("K1001", d("2026-11-15"))
                .unwrap()
                .shorten_numbers
        );
        assert_eq!(
            dir.in_force("K1001", d("2025-12-31")),
            Err(Lookup::NotYetValid)
        );
        assert_eq!(
            dir.in_force("K9", d("2026-11-15")),
            Err(Lookup::UnknownCustomer)
        );
        assert_eq!(dir.rows("K1001")[0].name, "Müller & Söhne GmbH");
    }

    /// Rating reads the compact terms table, billing the rows: both must name the same row
    /// for every customer and date, whether the id fits inline (≤ 24 bytes) or not and whether
    /// the customer has one row (terms in the table) or several (out of order in the file).
    #[test]
    fn terms_in_force_match_the_row_in_force() {
        let long = "K".repeat(MAX_CUSTOMER_ID_LEN);
        let text = format!(
            "{HEADER}K1,A,B,1,C,office_flat,true,false,2026-01-01\n\
             K1,A,B,1,C,office_mobile,true,true,2026-06-01\n\
             K1,A,B,1,C,office_flat,false,false,2026-11-15\n\
             {long},A,B,1,C,office_mobile,true,true,2026-03-01\n\
             K2,A,B,1,C,office_mobile,true,false,2026-02-01\n\
             K4,A,B,1,C,office_flat,true,true,2026-09-01\n\
             K4,A,B,1,C,office_mobile,true,false,2026-04-01\n"
        );
        let tariffs = Tariffs::parse(
            Path::new("tariffs.toml"),
            "[zones]\nlandline = [\"+4930\"]\nmobile = [\"+4915\"]\n\
             [plans.office_flat]\nflatrate = [\"landline\", \"mobile\"]\n\
             [plans.office_mobile]\nflatrate = [\"mobile\"]\n\
             [plans.office_mobile.rates]\nlandline = { per_minute = \"0.0100\", increment = \"60/1\" }\n",
        )
        .unwrap();
        let dir = CustomerDirectory::parse(Path::new("customers.csv"), &text, &tariffs).unwrap();
        let first = NaiveDate::from_ymd_opt(2025, 12, 1).unwrap();
        for id in ["K1", "K2", long.as_str(), "K4", "K3", "K"] {
            for day in 0..420 {
                let date = first + chrono::Duration::days(day);
                let row = dir.in_force(id, date);
                let terms = dir.terms_in_force(id, date);
                match (row, terms) {
                    (Ok(row), Ok(terms)) => {
                        assert_eq!(terms.valid_from, row.valid_from, "{id} {date}");
                        assert_eq!(terms.shorten_numbers, row.shorten_numbers, "{id} {date}");
                        assert_eq!(tariffs.plan_at(terms.plan).name, row.plan, "{id} {date}");
                    }
                    (Err(a), Err(b)) => assert_eq!(a, b, "{id} {date}"),
                    (row, terms) => panic!("{id} {date}: {row:?} against {terms:?}"),
                }
            }
        }
        assert_eq!(
            dir.terms_in_force("K1", NaiveDate::from_ymd_opt(2026, 7, 1).unwrap())
                .map(|t| tariffs.plan_at(t.plan).name.as_str()),
            Ok("office_mobile")
        );
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse(
            "K1,A,B,1,C,office_flat,true,false,2026-01-01\nK2,A,B,1,C,gold,true,false,2026-01-01\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("unknown plan \"gold\""), "{e}");
        let e = parse("K1,A,B,1,C,office_flat,true,false,2026-01-01\nK1,A,B,1,C,office_flat,true,true,2026-01-01\n").unwrap_err();
        assert!(e.message.contains("two rows valid from 2026-01-01"), "{e}");
        let e = parse("K1,A,B,1,C,office_flat,yes,false,2026-01-01\n").unwrap_err();
        assert!(e.message.contains("evn must be true or false"), "{e}");
        let e = parse("K1,A,B,1,C,office_flat,true,false,01.01.2026\n").unwrap_err();
        assert!(e.message.contains("not a date"), "{e}");
        let e = parse("../K1,A,B,1,C,office_flat,true,false,2026-01-01\n").unwrap_err();
        assert!(e.message.contains("customer_id"), "{e}");
    }

    #[test]
    fn errors_name_the_line_of_a_crlf_file() {
        let text = format!(
            "{}K1,A,B,1,C,office_flat,true,false,2026-01-01\r\nK2,A,B,1,C,gold,true,false,2026-01-01\r\n",
            HEADER.replace('\n', "\r\n")
        );
        let e =
            CustomerDirectory::parse(Path::new("customers.csv"), &text, &tariffs()).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        // A short row is malformed CSV: its line comes from the csv error's position.
        let text = format!(
            "{}K1,A,B,1,C,office_flat,true,false,2026-01-01\r\n\r\nK2,A,B\r\n",
            HEADER.replace('\n', "\r\n")
        );
        let e =
            CustomerDirectory::parse(Path::new("customers.csv"), &text, &tariffs()).unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
    }
}
