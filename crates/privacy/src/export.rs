//! `evn export`: a customer's stored traffic data (GDPR Art. 15, right of access), every kept
//! month, one call per line with its billing month, as JSON lines or CSV.
//!
//! Calls to anonymous counselling services are withheld: the law keeps them unrecognisable in
//! anything the account holder receives (TKG § 65, TDDDG § 11; the EVN leaves the whole row
//! out), and Art. 15(4) GDPR lets a copy not harm the rights of others (here: the employee who
//! made the call). Their number is reported, so nothing is dropped silently.

use std::collections::HashSet;
use std::io::Write;
use std::str::FromStr;
use std::sync::Arc;

use chrono::SecondsFormat;
use serde::Serialize;

use evn_config::CounsellingList;
use evn_keys::Keyring;
use evn_store::{Location, StoredCall};

use crate::PrivacyError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    JsonLines,
    Csv,
}

impl FromStr for ExportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jsonl" | "json" => Ok(ExportFormat::JsonLines),
            "csv" => Ok(ExportFormat::Csv),
            _ => Err(format!("{s:?} is not an export format: jsonl or csv")),
        }
    }
}

/// One exported call: the serialization boundary of the export (column order = CSV header).
#[derive(Debug, Serialize)]
pub struct ExportRow {
    pub billing_month: String,
    pub customer_id: String,
    pub start_time: String,
    pub duration_s: i64,
    pub calling_number: String,
    pub called_number: String,
    pub shortened: bool,
    pub zone: String,
    pub charge_eur: String,
    pub plan: String,
    pub switch_id: String,
    pub cdr_id: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    /// Switch format and original record id of a converted call; empty for canonical JSON.
    pub source_format: Option<String>,
    pub source_record_id: Option<String>,
}

impl From<&StoredCall> for ExportRow {
    fn from(s: &StoredCall) -> Self {
        let c = &s.call;
        ExportRow {
            billing_month: c.billing_month.to_string(),
            customer_id: c.customer_id.to_string(),
            start_time: c.start_time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            duration_s: c.duration_s,
            calling_number: c.calling_number.to_string(),
            called_number: c.called_number.to_string(),
            shortened: c.shortened,
            zone: c.zone.to_string(),
            charge_eur: c.charge_eur.to_string(),
            plan: c.plan.to_string(),
            switch_id: c.switch_id.to_string(),
            cdr_id: c.cdr_id.to_string(),
            source_topic: s.source_topic.clone(),
            source_partition: s.source_partition,
            source_offset: s.source_offset,
            source_format: s.provenance.as_ref().map(|p| p.format.clone()),
            source_record_id: s.provenance.as_ref().map(|p| p.record_id.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub months: usize,
    pub calls: usize,
    /// Calls to counselling services, withheld (see the module docs).
    pub withheld_counselling: usize,
    /// Second copies of a call (same switch and CDR id) in a month, left out as the billing
    /// run leaves them out.
    pub duplicates: usize,
}

/// Writes the customer's calls of every stored month to `out`, oldest month first, in the
/// order of the month's files. A call is withheld if ingest flagged it or if `counselling`
/// (today's list, as the billing run applies it) has its number: the list grows every quarter,
/// and what an EVN hides an export must not show.
pub fn export(
    data: &Location,
    customer_id: &str,
    keys: Option<&Arc<Keyring>>,
    counselling: Option<&CounsellingList>,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<ExportSummary, PrivacyError> {
    let mut summary = ExportSummary::default();
    let mut sink = match format {
        ExportFormat::JsonLines => Sink::Json(out),
        ExportFormat::Csv => {
            let mut w = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(out);
            // The header even for an empty export, so a script always gets the columns.
            w.write_record(HEADER).map_err(|e| output(e.into()))?;
            Sink::Csv(Box::new(w))
        }
    };
    for month in data.list_months()? {
        let mut rows = Vec::new();
        for file in data.list_month_files(month)? {
            // The list the file's counselling flags were set with: applied as the billing run
            // applies it ([`CounsellingList::hides`]).
            let list_of_flags: std::cell::RefCell<Option<String>> = Default::default();
            data.read_file_with_info(
                &file,
                keys,
                &mut |i| *list_of_flags.borrow_mut() = i.counselling_version,
                &mut |mut call| {
                    if call.call.customer_id == customer_id {
                        call.call.counselling = match counselling {
                            Some(l) => l.hides(
                                &call.call.called_number,
                                call.call.counselling,
                                list_of_flags.borrow().as_deref(),
                            ),
                            None => call.call.counselling,
                        };
                        rows.push(call);
                    }
                },
            )?;
        }
        if rows.is_empty() {
            continue;
        }
        summary.months += 1;
        let mut seen = HashSet::with_capacity(rows.len());
        for row in &rows {
            if !seen.insert((&row.call.switch_id, &row.call.cdr_id)) {
                summary.duplicates += 1;
                continue;
            }
            if row.call.counselling {
                summary.withheld_counselling += 1;
                continue;
            }
            summary.calls += 1;
            sink.row(&ExportRow::from(row))?;
        }
    }
    sink.finish()?;
    Ok(summary)
}

enum Sink<'a> {
    Json(&'a mut dyn Write),
    // Boxed: the csv writer carries its buffer inline.
    Csv(Box<csv::Writer<&'a mut dyn Write>>),
}

impl Sink<'_> {
    fn row(&mut self, row: &ExportRow) -> Result<(), PrivacyError> {
        match self {
            Sink::Json(out) => {
                serde_json::to_writer(&mut **out, row).map_err(|e| output(e.into()))?;
                out.write_all(b"\n").map_err(output)
            }
            Sink::Csv(w) => w.serialize(row).map_err(|e| output(e.into())),
        }
    }

    fn finish(self) -> Result<(), PrivacyError> {
        match self {
            Sink::Json(out) => out.flush().map_err(output),
            Sink::Csv(mut w) => w.flush().map_err(output),
        }
    }
}

const HEADER: [&str; 17] = [
    "billing_month",
    "customer_id",
    "start_time",
    "duration_s",
    "calling_number",
    "called_number",
    "shortened",
    "zone",
    "charge_eur",
    "plan",
    "switch_id",
    "cdr_id",
    "source_topic",
    "source_partition",
    "source_offset",
    "source_format",
    "source_record_id",
];

/// csv and serde_json errors convert into `io::Error` (keeping a broken pipe a broken pipe).
fn output(source: std::io::Error) -> PrivacyError {
    PrivacyError::Output {
        path: "<stdout>".into(),
        source,
    }
}
