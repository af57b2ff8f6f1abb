//! The monthly billing run (`evn bill`, INTERFACES.md §4): one month of stored calls in, one EVN
//! (PDF and CSV) per customer whose EVN is on out, plus `manifest.json`, versioned and
//! reproducible.
//!
//! Flow: one pass over the month's Parquet files checks every row against the configuration
//! and the month (before anything is written) and hands the selected customers' calls to a
//! [`spill::Holder`], which keeps them in memory up to a row budget and past it in
//! hash-partitioned spill files, so memory stays bounded whatever the month's size and the
//! Parquet files are read once. Customers are then billed in batches: each customer's calls
//! are deduplicated, laid out ([`evn_render::EvnDocument`]), compared with the manifest by
//! content hash, and only rendered (in parallel, rayon) when they changed; a batch's files are
//! made durable together and linked into place, never over an existing version ([`output`]);
//! the manifest comes last. The whole run holds the month folder's lock ([`lock`]).

mod lock;
mod manifest;
mod metrics;
mod object_out;
mod output;
mod passwords;
mod spill;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::{NaiveDate, SecondsFormat, Utc};
use compact_str::CompactString;
use rayon::prelude::*;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use evn_config::{Config, CustomerRow, ZoneId};
use evn_keys::{DataKey, Keyring};
use evn_rating::{BillingMonth, RatedCall};
use evn_render::{
    format, protect_pdf, render_csv, render_pdf, DayRange, EvnCall, EvnDocument, Header,
    ProtectionKeys, RenderError,
};
use evn_store::{Location, StoreError};

pub use lock::MONTH_LOCK;
pub use manifest::{CustomerEntry, Manifest, VersionEntry, MANIFEST_FILE};
pub use metrics::Metrics;
pub use object_out::{merge_shards_in_store, run_to_store};
pub use passwords::{PasswordsError, PdfPasswords};

/// Calls held in memory at once (measured ~520 bytes each as `RatedCall`: ~100 MB). Past this
/// the run spills the month to disk and bills it bucket by bucket, which costs little next to
/// rendering (one write and one read of a compact record per call).
pub const DEFAULT_ROW_BUDGET: usize = 200_000;

/// Customers rendered between two flushes of their files to disk.
const PUBLISH_BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum BillError {
    #[error("no stored calls for {month}: {dir} is missing or holds no Parquet files; check --data and --month, or run ingest first")]
    NoData { month: BillingMonth, dir: PathBuf },
    #[error("cannot read stored calls: {0}")]
    Store(#[from] StoreError),
    #[error("the configuration does not match the data: {file} holds calls of customer {customer_id:?}, {reason}; bill with the configuration the data was ingested with")]
    ConfigMismatch {
        customer_id: String,
        file: PathBuf,
        reason: String,
    },
    #[error("{file} is in the folder of {month} but holds call {switch_id}/{cdr_id} of {row_month} (Europe/Berlin start); the stored data is damaged or was moved by hand: move the file to its month or restore it from backup")]
    MisplacedRow {
        file: PathBuf,
        month: BillingMonth,
        row_month: BillingMonth,
        switch_id: String,
        cdr_id: String,
    },
    #[error("--customer {customer_id}: no such customer in customers.csv")]
    NoSuchCustomer { customer_id: String },
    #[error("--shard {0}: expected I/N with 0 <= I < N, e.g. 0/4")]
    BadShard(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: damaged manifest: {detail}; restore it from backup or move it away to start the month's versions afresh")]
    Manifest { path: PathBuf, detail: String },
    #[error("{lock}: another billing run of this month is active (it holds this lock); wait for it to end and run again (a killed run's lock is released with its process)")]
    RunActive { lock: PathBuf },
    #[error("{path}: already exists: another billing run published this version first; nothing was replaced, run again")]
    VersionTaken { path: PathBuf },
    #[error("customer {customer_id}: {source}")]
    Render {
        customer_id: String,
        source: RenderError,
    },
}

impl BillError {
    /// INTERFACES.md §4: 2 for usage or configuration errors, 1 for runtime failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            BillError::ConfigMismatch { .. }
            | BillError::NoSuchCustomer { .. }
            | BillError::BadShard(_) => 2,
            _ => 1,
        }
    }

    fn io(path: &Path, source: std::io::Error) -> Self {
        BillError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// `--shard I/N`: this run bills the customers whose stable hash falls in shard `I` of `N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// xxh3 of the customer id: stable across runs, machines and Rust versions (std's hasher
    /// is randomly seeded per process and would move customers between shards).
    pub fn contains(self, customer_id: &str) -> bool {
        xxhash_rust::xxh3::xxh3_64(customer_id.as_bytes()) % u64::from(self.count)
            == u64::from(self.index)
    }

    fn manifest_name(self) -> String {
        format!("manifest.shard-{}-of-{}.json", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = BillError;
    fn from_str(s: &str) -> Result<Self, BillError> {
        let bad = || BillError::BadShard(s.to_owned());
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// Progress after each customer: `done` of `total`.
pub type ProgressFn = Arc<dyn Fn(usize, usize) + Send + Sync>;

#[derive(Clone)]
pub struct BillOptions {
    /// `--customer ID`: bill only this customer.
    pub customer: Option<String>,
    pub shard: Option<Shard>,
    /// "Erstellt am" on new versions; passed in so tests and re-runs are reproducible.
    pub created: NaiveDate,
    pub progress: Option<ProgressFn>,
    /// Calls held in memory at once; [`DEFAULT_ROW_BUDGET`] unless a test wants spilling.
    pub row_budget: usize,
    /// Where a month too big for the budget is spilled (a hidden temporary folder inside it,
    /// removed when the run ends). Default: the output folder, which holds the same data as
    /// PDFs anyway and is sized for the month.
    pub spill_dir: Option<PathBuf>,
    /// Data keys (`EVN_DATA_KEY_FILE`): the month's Parquet files are read with them, and the
    /// EVN files are written sealed with the current key (AES-256-GCM envelope, `evn-keys`),
    /// their path inside the output folder (`YYYY-MM/<id>.v<N>.pdf`) authenticated with them.
    /// `None`: plain files.
    pub keys: Option<Arc<Keyring>>,
    /// Counted as batches are published; register them to expose them (`--metrics-listen`).
    pub metrics: Metrics,
    /// Customers listed get their new EVN versions as password-protected PDFs (AES-256).
    pub pdf_passwords: Option<Arc<PdfPasswords>>,
}

impl BillOptions {
    pub fn new(created: NaiveDate) -> Self {
        BillOptions {
            customer: None,
            shard: None,
            created,
            progress: None,
            row_budget: DEFAULT_ROW_BUDGET,
            spill_dir: None,
            keys: None,
            metrics: Metrics::default(),
            pdf_passwords: None,
        }
    }
}

/// What happened to one customer in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new version was written (1 on the first run).
    Written { version: u32, pages: usize },
    /// The content equals the current version: nothing written.
    Unchanged { version: u32 },
}

#[derive(Debug, Clone)]
pub struct CustomerReport {
    pub customer_id: String,
    pub outcome: Outcome,
    pub connections: usize,
    pub total: Decimal,
}

#[derive(Debug, Clone)]
pub struct BillReport {
    pub month: BillingMonth,
    /// `OUT/YYYY-MM`
    pub dir: PathBuf,
    /// The manifest this run maintains (merged or shard).
    pub manifest: PathBuf,
    /// Whether the manifest was rewritten (false: nothing changed).
    pub manifest_written: bool,
    /// Customers with the EVN on that this run covered, sorted.
    pub customers: Vec<CustomerReport>,
    /// Customers with stored calls whose EVN is off for the month: no EVN, counted.
    pub evn_off: Vec<String>,
    /// Calls read, and duplicates (same switch and CDR id) dropped.
    pub rows_read: usize,
    pub duplicates: usize,
    /// The month exceeded the row budget and was billed from spill files.
    pub spilled: bool,
}

impl BillReport {
    pub fn written(&self) -> usize {
        self.customers
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Written { .. }))
            .count()
    }
}

/// The customer row that decides whether a month gets an EVN and in which notation: the row in
/// force on the month's first day, or, for a customer whose first row starts within the month,
/// that row. An EVN requested mid-month applies from the next month (DOMAIN.md: "billing
/// periods after the request"); one cancelled mid-month lists the calls before that day only
/// ([`build_document`]).
pub fn evn_row<'c>(
    config: &'c Config,
    customer_id: &str,
    month: BillingMonth,
) -> Option<&'c CustomerRow> {
    config
        .customers
        .in_force(customer_id, month.first_day())
        .ok()
        .or_else(|| {
            config
                .customers
                .rows(customer_id)
                .first()
                .filter(|r| r.valid_from <= month.last_day())
        })
}

/// Rows of one customer in force at some point in the month, oldest first.
fn rows_in_month<'c>(
    config: &'c Config,
    customer_id: &str,
    month: BillingMonth,
) -> Vec<&'c CustomerRow> {
    let rows = config.customers.rows(customer_id);
    rows.iter()
        .enumerate()
        .filter(|(i, r)| {
            r.valid_from <= month.last_day()
                && rows
                    .get(i + 1)
                    .is_none_or(|next| next.valid_from > month.first_day())
        })
        .map(|(_, r)| r)
        .collect()
}

/// Sorts by (start, switch, CDR id) and keeps the first of every (switch, CDR id): duplicates
/// that reached storage anyway are billed once. Returns how many were dropped.
pub fn dedup(calls: &mut Vec<RatedCall>) -> usize {
    calls.sort_by(|a, b| {
        (a.start_time, &a.switch_id, &a.cdr_id).cmp(&(b.start_time, &b.switch_id, &b.cdr_id))
    });
    let before = calls.len();
    let mut seen: HashSet<(CompactString, CompactString)> = HashSet::with_capacity(calls.len());
    calls.retain(|c| seen.insert((c.switch_id.clone(), c.cdr_id.clone())));
    before - calls.len()
}

/// The EVN of one customer and month (version 0: the caller numbers it). Counselling calls are
/// hidden by their `counselling` flag, which the run's scan sets by today's list
/// (`CounsellingList::hides`): callers pass calls marked that way. Every call is rated with today's
/// configuration ([`evn_rating::rerate`]): the bill records the configuration version it was
/// made from, and a re-run after a corrected tariff bills the corrected charges.
pub fn build_document(
    config: &Config,
    month: BillingMonth,
    customer_id: &str,
    calls: Vec<RatedCall>,
    created: NaiveDate,
) -> Option<EvnDocument> {
    let in_month = rows_in_month(config, customer_id, month);
    // The address as of the month's end: the latest the period knows.
    let row = *in_month.last()?;
    let provider = &config.provider;
    let contact = [
        provider.contact.clone(),
        provider.phone.as_ref().map(|p| format!("Tel. {p}")),
        provider.web.clone(),
        provider.vat_id.as_ref().map(|v| format!("USt-IdNr. {v}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let header = Header {
        provider_name: provider.name.clone(),
        provider_address: provider.address.clone(),
        provider_contact: contact,
        customer_id: customer_id.to_owned(),
        customer_name: row.name.clone(),
        customer_address: vec![row.street.clone(), format!("{} {}", row.postcode, row.city)],
        month,
        created,
        version: 0,
        config_version: config.version.clone(),
        counselling_version: config.counselling.version.clone(),
    };
    let shortened_setting = in_month.iter().any(|r| r.shorten_numbers);
    let flatrate: BTreeSet<&ZoneId> = in_month
        .iter()
        .filter_map(|r| config.tariffs.plans.get(&r.plan))
        .flat_map(|p| p.flatrate.iter())
        .collect();
    let flatrate_zones = flatrate
        .into_iter()
        .map(|z| config.tariffs.label(z.as_str()).to_owned())
        .collect();
    // A customer who cancels the EVN within the month gets no itemisation from that day on
    // (DOMAIN.md: the setting in force at a call's start applies); asking again later in the
    // month only counts from the next month, as any request does.
    let cancelled_from = in_month
        .iter()
        .filter(|r| r.valid_from > month.first_day() && !r.evn)
        .map(|r| r.valid_from)
        .min();
    let calls = calls
        .into_iter()
        // `counselling` was decided on the number as stored, before re-rating may shorten it:
        // by the run's scan (`CounsellingList::hides`).
        .filter_map(|c| evn_rating::rerate(c, config))
        .map(|c| EvnCall {
            hidden: c.counselling
                || cancelled_from.is_some_and(|d| evn_rating::berlin_date(c.start_time) >= d),
            zone_label: config.tariffs.label(&c.zone).to_owned(),
            calling_number: c.calling_number.into(),
            called_number: c.called_number.into(),
            start_time: c.start_time,
            duration_s: c.duration_s,
            charge: c.charge_eur,
            shortened: c.shortened,
        })
        .collect();
    let mut doc = EvnDocument::build(header, calls, shortened_setting, flatrate_zones);
    doc.cancelled_from = cancelled_from;
    // Calls are rated and shortened by the row in force at their start, so a month with a
    // change has rows of both kinds: the notices name the days each setting covered.
    let in_force = days_in_force(&in_month, month);
    doc.shortened_periods = periods(&in_force, |r| r.shorten_numbers);
    for (label, days) in &mut doc.flatrate_zones {
        *days = periods(&in_force, |r| {
            config.tariffs.plans.get(&r.plan).is_some_and(|p| {
                p.flatrate
                    .iter()
                    .any(|z| config.tariffs.label(z.as_str()) == label.as_str())
            })
        });
    }
    Some(doc)
}

/// The days of the month each of its rows (oldest first) was in force.
fn days_in_force<'r>(
    in_month: &[&'r CustomerRow],
    month: BillingMonth,
) -> Vec<(&'r CustomerRow, DayRange)> {
    let (first, last) = (month.first_day(), month.last_day());
    in_month
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let end = in_month
                .get(i + 1)
                .and_then(|next| next.valid_from.pred_opt())
                .map_or(last, |d| d.min(last));
            (*r, (r.valid_from.max(first), end))
        })
        .collect()
}

/// The days on which `on` held, as ranges (adjacent rows that agree merged), or none when it
/// held the whole month: then the notice names no days.
fn periods(
    in_force: &[(&CustomerRow, DayRange)],
    on: impl Fn(&CustomerRow) -> bool,
) -> Vec<DayRange> {
    let mut out: Vec<DayRange> = Vec::new();
    for &(r, (a, b)) in in_force {
        if !on(r) {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.1.succ_opt() == Some(a) => last.1 = b,
            _ => out.push((a, b)),
        }
    }
    if in_force.iter().all(|&(r, _)| on(r)) {
        out.clear();
    }
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn decimal_string(d: Decimal, scale: u32) -> String {
    let mut d = d;
    d.rescale(scale);
    d.to_string()
}

/// The highest `<id>.v<N>.pdf` / `.csv` on disk per customer, read once per run: a version
/// file is never overwritten, even one a crashed run wrote without recording it.
fn versions_on_disk(dir: &Path) -> Result<HashMap<String, u32>, BillError> {
    let mut max: HashMap<String, u32> = HashMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(max),
        Err(e) => return Err(BillError::io(dir, e)),
    };
    for entry in entries {
        let name = entry.map_err(|e| BillError::io(dir, e))?.file_name();
        let Some(stem) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".pdf").or_else(|| n.strip_suffix(".csv")))
        else {
            continue;
        };
        if let Some((id, n)) = stem.rsplit_once(".v") {
            if let Ok(n) = n.parse::<u32>() {
                let m = max.entry(id.to_owned()).or_default();
                *m = (*m).max(n);
            }
        }
    }
    Ok(max)
}

/// What the first pass learnt about the month.
struct Scan {
    rows_read: usize,
    /// Stored calls per customer (all customers with data, for batching and EVN-off).
    counts: HashMap<String, usize>,
}

/// Reads every row of the month once: checks it against the configuration and the month, and
/// hands the selected customers' calls to `holder`.
fn scan(
    config: &Config,
    month: BillingMonth,
    keys: Option<&Arc<Keyring>>,
    data: &Location,
    files: &[PathBuf],
    selected: &BTreeSet<String>,
    holder: &mut spill::Holder,
) -> Result<Scan, BillError> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut rows_read = 0usize;
    let mut failure: Option<BillError> = None;
    let mut known_customers: HashSet<String> = HashSet::new();
    let mut known_zones: HashSet<String> = HashSet::new();
    for file in files {
        // The list the file's counselling flags were set with ([`CounsellingList::hides`]).
        let list_of_flags: std::cell::RefCell<Option<String>> = Default::default();
        let mut info = |i: evn_store::FileInfo| {
            *list_of_flags.borrow_mut() = i.counselling_version;
        };
        data.read_file_with_info(file, keys, &mut info, &mut |stored| {
            rows_read += 1;
            if failure.is_some() {
                return;
            }
            let mut call = stored.call;
            call.counselling = config.counselling.hides(
                &call.called_number,
                call.counselling,
                list_of_flags.borrow().as_deref(),
            );
            if let Err(e) = check_row(
                config,
                month,
                file,
                &call,
                &mut known_customers,
                &mut known_zones,
            ) {
                failure = Some(e);
                return;
            }
            match counts.get_mut(call.customer_id.as_str()) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(call.customer_id.to_string(), 1);
                }
            }
            if selected.contains(call.customer_id.as_str()) {
                if let Err(e) = holder.push(call) {
                    failure = Some(e);
                }
            }
        })?;
        if let Some(e) = failure.take() {
            return Err(e);
        }
    }
    Ok(Scan { rows_read, counts })
}

/// A stored row the configuration cannot bill, or in the wrong month's folder, stops the run
/// before anything is written: billing it anyway would put a wrong amount on a bill.
fn check_row(
    config: &Config,
    month: BillingMonth,
    file: &Path,
    call: &RatedCall,
    known_customers: &mut HashSet<String>,
    known_zones: &mut HashSet<String>,
) -> Result<(), BillError> {
    let mismatch = |reason: String| BillError::ConfigMismatch {
        customer_id: call.customer_id.to_string(),
        file: file.to_owned(),
        reason,
    };
    if call.billing_month != month {
        return Err(BillError::MisplacedRow {
            file: file.to_owned(),
            month,
            row_month: call.billing_month,
            switch_id: call.switch_id.to_string(),
            cdr_id: call.cdr_id.to_string(),
        });
    }
    if !known_customers.contains(call.customer_id.as_str()) {
        if config.customers.rows(&call.customer_id).is_empty() {
            return Err(mismatch("who is not in customers.csv".to_owned()));
        }
        if evn_row(config, &call.customer_id, month).is_none() {
            return Err(mismatch(
                "whose first customers.csv row starts after the month".to_owned(),
            ));
        }
        known_customers.insert(call.customer_id.to_string());
    }
    if !known_zones.contains(call.zone.as_str()) {
        if !config
            .tariffs
            .zones
            .contains_key(&ZoneId::new(call.zone.as_str()))
        {
            return Err(mismatch(format!(
                "rated in zone `{}`, which tariffs.toml does not define",
                call.zone
            )));
        }
        known_zones.insert(call.zone.to_string());
    }
    Ok(())
}

/// What a customer's job produced: the manifest entry, the files to put in place, the report.
///
/// The manifest entry comes serialised: one allocation instead of twenty, which matters
/// because entries outlive the run's rendering garbage. Kept as live objects they pinned the
/// allocator's freed memory, and the run's resident memory grew by ~12 KB per customer.
struct Done {
    /// Seconds spent rendering, if a new version was rendered.
    render_seconds: Option<f64>,
    entry: Option<Vec<u8>>,
    publication: Option<output::Publication>,
    report: CustomerReport,
    duplicates: usize,
}

/// The bytes of an EVN file as stored: sealed with the current data key if one is configured.
/// The context is the numbered file's path in the output folder, which is also what the
/// unnumbered copy (a hard link to it) is opened with: readers resolve the version first. The
/// manifest's hashes stay those of the plain document, the one the customer downloads.
fn at_rest<'b>(
    keys: Option<&Keyring>,
    month: BillingMonth,
    name: &str,
    bytes: &'b [u8],
) -> std::borrow::Cow<'b, [u8]> {
    match keys {
        Some(k) => std::borrow::Cow::Owned(k.seal(bytes, &format!("{month}/{name}"))),
        None => std::borrow::Cow::Borrowed(bytes),
    }
}

fn entry_json(entry: &CustomerEntry) -> Vec<u8> {
    serde_json::to_vec(entry).expect("manifest entries serialise")
}

#[allow(clippy::too_many_arguments)]
fn bill_customer(
    config: &Config,
    month: BillingMonth,
    dir: &Path,
    customer_id: &str,
    mut calls: Vec<RatedCall>,
    previous: Option<&CustomerEntry>,
    on_disk: u32,
    created: NaiveDate,
    keys: Option<&Keyring>,
    password: Option<&str>,
) -> Result<Done, BillError> {
    let duplicates = dedup(&mut calls);
    let mut doc = build_document(config, month, customer_id, calls, created)
        .expect("selected customers have a row in the month");
    let mut content = hex::encode(doc.content_digest());
    if password.is_some() {
        // Switching protection on or off makes a new version; a changed password does not
        // (it is never stored, not even hashed).
        content = sha256_hex(format!("{content}+password-protected").as_bytes());
    }
    let connections = doc.itemised();
    let total = doc.total;
    // What the billing run's record keeps beyond the EVN: every call billed, not-itemised
    // ones included (the EVN shows nothing of those).
    let billed_total = decimal_string(total + doc.not_itemised.amount, 4);
    let report = |outcome| CustomerReport {
        customer_id: customer_id.to_owned(),
        outcome,
        connections,
        total,
    };
    let (pdf_name, csv_name) = (format!("{customer_id}.pdf"), format!("{customer_id}.csv"));
    if let Some(prev) = previous {
        if prev.content_sha256 == content && dir.join(&prev.file).is_file() {
            let csv_there = prev
                .csv_file
                .as_ref()
                .is_some_and(|f| dir.join(f).is_file());
            if csv_there {
                // The EVN says the same; only the record of what was billed may have moved
                // (a late counselling call): no new version, the manifest entry updated.
                let record = (prev.billed_connections, prev.billed_total.as_deref());
                let entry = (record != (doc.billed, Some(billed_total.as_str()))).then(|| {
                    let mut e = prev.clone();
                    e.billed_connections = doc.billed;
                    e.billed_total = Some(billed_total.clone());
                    entry_json(&e)
                });
                return Ok(Done {
                    render_seconds: None,
                    entry,
                    publication: None,
                    report: report(Outcome::Unchanged {
                        version: prev.version,
                    }),
                    duplicates,
                });
            }
            // The same EVN, billed before CSVs existed (or its CSV was lost): add the CSV
            // of that very version; the content is the same, so are the rows.
            doc.header.version = prev.version;
            let csv = render_csv(&doc);
            let versioned = format!("{customer_id}.v{}.csv", prev.version);
            let mut entry = prev.clone();
            let sha = sha256_hex(&csv);
            if let Some(v) = entry
                .versions
                .iter_mut()
                .find(|v| v.version == prev.version)
            {
                v.csv_file = Some(versioned.clone());
                v.csv_sha256 = Some(sha.clone());
            }
            entry.csv_file = Some(csv_name.clone());
            entry.csv_sha256 = Some(sha);
            return Ok(Done {
                render_seconds: None,
                entry: Some(entry_json(&entry)),
                publication: Some(output::Publication {
                    files: vec![output::stage(
                        dir,
                        &versioned,
                        &at_rest(keys, month, &versioned, &csv),
                    )?],
                    current: vec![(versioned, csv_name)],
                }),
                report: report(Outcome::Unchanged {
                    version: prev.version,
                }),
                duplicates,
            });
        }
    }
    let version = previous.map_or(0, |p| p.version).max(on_disk) + 1;
    doc.header.version = version;
    let rendering = Instant::now();
    let mut pdf = render_pdf(&doc).map_err(|source| BillError::Render {
        customer_id: customer_id.to_owned(),
        source,
    })?;
    if let Some(password) = password {
        let random = ProtectionKeys {
            file_key: *DataKey::generate().bytes(),
            owner_password: hex::encode(DataKey::generate().bytes()),
        };
        pdf.bytes =
            protect_pdf(&pdf.bytes, password, &random).map_err(|source| BillError::Render {
                customer_id: customer_id.to_owned(),
                source,
            })?;
    }
    let csv = render_csv(&doc);
    let render_seconds = Some(rendering.elapsed().as_secs_f64());
    let (pdf_sha, csv_sha) = (sha256_hex(&pdf.bytes), sha256_hex(&csv));
    let (pdf_v, csv_v) = (
        format!("{customer_id}.v{version}.pdf"),
        format!("{customer_id}.v{version}.csv"),
    );
    let publication = output::Publication {
        files: vec![
            output::stage(dir, &pdf_v, &at_rest(keys, month, &pdf_v, &pdf.bytes))?,
            output::stage(dir, &csv_v, &at_rest(keys, month, &csv_v, &csv))?,
        ],
        current: vec![
            (pdf_v.clone(), pdf_name.clone()),
            (csv_v.clone(), csv_name.clone()),
        ],
    };
    let mut versions = previous.map(|p| p.versions.clone()).unwrap_or_default();
    versions.push(VersionEntry {
        version,
        file: pdf_v,
        sha256: pdf_sha.clone(),
        created: created.to_string(),
        connections,
        total: decimal_string(total, 4),
        config_version: config.version.clone(),
        counselling_version: config.counselling.version.clone(),
        content_sha256: content.clone(),
        csv_file: Some(csv_v),
        csv_sha256: Some(csv_sha.clone()),
    });
    Ok(Done {
        render_seconds,
        entry: Some(entry_json(&CustomerEntry {
            connections,
            billed_connections: doc.billed,
            billed_total: Some(billed_total),
            total: decimal_string(total, 4),
            total_printed: decimal_string(format::cents(total), 2),
            file: pdf_name,
            sha256: pdf_sha,
            version,
            pages: pdf.pages,
            content_sha256: content,
            versions,
            csv_file: Some(csv_name),
            csv_sha256: Some(csv_sha),
        })),
        publication: Some(publication),
        report: report(Outcome::Written {
            version,
            pages: pdf.pages,
        }),
        duplicates,
    })
}

/// Runs the billing for `month`: see the crate docs. Writes under `out/YYYY-MM/`.
pub fn run(
    config: &Config,
    data: &Path,
    month: BillingMonth,
    out: &Path,
    opts: &BillOptions,
) -> Result<BillReport, BillError> {
    run_at(config, &Location::Local(data.to_owned()), month, out, opts)
}

/// [`run`] reading the month from a local folder or an object store.
pub fn run_at(
    config: &Config,
    data: &Location,
    month: BillingMonth,
    out: &Path,
    opts: &BillOptions,
) -> Result<BillReport, BillError> {
    let started = Instant::now();
    if let Some(id) = &opts.customer {
        if config.customers.rows(id).is_empty() {
            return Err(BillError::NoSuchCustomer {
                customer_id: id.clone(),
            });
        }
    }
    let month_dir = data.month_display(month);
    let files = data.list_month_files(month)?;
    if files.is_empty() {
        return Err(BillError::NoData {
            month,
            dir: month_dir,
        });
    }

    // Who gets an EVN this run: EVN on for the month, in the shard, the one asked for.
    let mut selected = BTreeSet::new();
    for id in config.customers.ids() {
        let wanted = opts.customer.as_deref().is_none_or(|c| c == id)
            && opts.shard.is_none_or(|s| s.contains(id));
        if wanted && evn_row(config, id, month).is_some_and(|r| r.evn) {
            selected.insert(id.to_owned());
        }
    }

    // Held to the end of the run (dropped on return), taken before the long scan so a second
    // run of the month stops at once.
    let dir = out.join(month.to_string());
    let lock = lock::MonthLock::acquire(out, &dir, opts.shard)?;

    // Every row is checked before anything is written: a bad file or a config mismatch
    // leaves the output as it was (a spill folder, if the month was big, is removed again).
    let mut holder = spill::Holder::new(
        opts.row_budget,
        month,
        opts.spill_dir.as_deref().unwrap_or(out),
    );
    let scan = match scan(
        config,
        month,
        opts.keys.as_ref(),
        data,
        &files,
        &selected,
        &mut holder,
    ) {
        Ok(s) => s,
        Err(e) => {
            drop(holder);
            // The month folder and `out`, if created for the lock (and the spill folder,
            // which is gone now) and still empty.
            lock.abandon();
            return Err(e);
        }
    };
    let spilled = holder.spilled();
    let mut evn_off: Vec<String> = scan
        .counts
        .keys()
        .filter(|id| {
            !selected.contains(*id)
                && opts.customer.as_deref().is_none_or(|c| c == id.as_str())
                && opts.shard.is_none_or(|s| s.contains(id))
        })
        .cloned()
        .collect();
    evn_off.sort();

    let manifest_name = opts
        .shard
        .map_or_else(|| MANIFEST_FILE.to_owned(), Shard::manifest_name);
    let manifest_path = dir.join(&manifest_name);
    // Every entry of the month's manifests, this run's own and any other (a customer moves
    // between shards when N changes): in a temporary file, read back per customer.
    let old = manifest::OldEntries::load(&dir, &manifest_path, &manifest::manifests_in(&dir)?)?;
    let on_disk = versions_on_disk(&dir)?;

    let total = selected.len();
    opts.metrics.planned(total, scan.rows_read);
    let done_count = AtomicUsize::new(0);
    // What the run keeps per customer, allocated on this thread: the report, and where its
    // serialised manifest entry went in a temporary file (the entries of 200,000 customers
    // are ~180 MB as JSON, ~400 MB as live values: never all in memory).
    let mut reports: Vec<CustomerReport> = Vec::with_capacity(total);
    let mut entries = manifest::EntryFile::new(&dir)?;
    let mut duplicates = 0;
    let billed = holder.batches(&selected, &scan.counts, |batch| {
        let mut batch = batch.into_iter();
        loop {
            let jobs: Vec<(String, Vec<RatedCall>)> = batch.by_ref().take(PUBLISH_BATCH).collect();
            if jobs.is_empty() {
                return Ok(());
            }
            let outcomes: Vec<Result<Done, BillError>> = jobs
                .into_par_iter()
                .map(|(id, calls)| {
                    let previous = old.previous(&id).map_err(|e| BillError::Manifest {
                        path: dir.join("(manifest entries read back)"),
                        detail: e.to_string(),
                    });
                    let r = previous.and_then(|previous| {
                        bill_customer(
                            config,
                            month,
                            &dir,
                            &id,
                            calls,
                            previous.as_ref(),
                            on_disk.get(&id).copied().unwrap_or(0),
                            opts.created,
                            opts.keys.as_deref(),
                            opts.pdf_passwords.as_ref().and_then(|p| p.get(&id)),
                        )
                    });
                    let n = done_count.fetch_add(1, Ordering::Relaxed) + 1;
                    if let Some(p) = &opts.progress {
                        p(n, total);
                    }
                    r
                })
                .collect();
            let mut done = Vec::with_capacity(outcomes.len());
            let mut failure = None;
            for o in outcomes {
                match o {
                    Ok(d) => done.push(d),
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
            let publications: Vec<output::Publication> = done
                .iter_mut()
                .filter_map(|d| d.publication.take())
                .collect();
            if let Some(e) = failure {
                // Nothing of a failed batch becomes visible; earlier batches stay published.
                output::discard(publications);
                return Err(e);
            }
            output::publish(&dir, publications)?;
            for d in done {
                if let Some(json) = d.entry {
                    entries.push(reports.len(), &json)?;
                }
                duplicates += d.duplicates;
                opts.metrics.published(
                    match d.report.outcome {
                        Outcome::Written { pages, .. } => Some(pages),
                        Outcome::Unchanged { .. } => None,
                    },
                    d.render_seconds,
                );
                reports.push(CustomerReport {
                    customer_id: d.report.customer_id.as_str().to_owned(),
                    ..d.report
                });
            }
        }
    });

    output::cleanup(&dir);
    // Record whatever was published, even when a later batch failed: a version file on
    // disk is then always in the manifest.
    let versions_moved = old
        .own_versions()
        .is_none_or(|(c, l)| c != config.version || l != config.counselling.version);
    // The new manifest's customers, in order, and where each entry comes from: this run's
    // entries, else the manifest's own, else (an unchanged customer recorded in another
    // manifest, the shard layout changed) the newest one elsewhere; all read back one at a
    // time while the manifest is written.
    let mut customers: BTreeMap<&str, manifest::EntrySource> = old
        .own()
        .map(|(id, at)| (id, manifest::EntrySource::Old(at)))
        .collect();
    let mut changed = false;
    let written = entries.finish()?;
    for (i, at) in written.index() {
        customers.insert(
            reports[i].customer_id.as_str(),
            manifest::EntrySource::New(at),
        );
        changed = true;
    }
    for r in &reports {
        if !customers.contains_key(r.customer_id.as_str()) {
            if let Some(at) = old.other(&r.customer_id) {
                customers.insert(&r.customer_id, manifest::EntrySource::Old(at));
                changed = true;
            }
        }
    }
    let manifest_written = changed || versions_moved;
    if manifest_written {
        let generated_at = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
        let month_name = month.to_string();
        let manifest = manifest::ManifestOut {
            month: &month_name,
            config_version: &config.version,
            counselling_version: &config.counselling.version,
            generated_at: &generated_at,
            run_ms: started.elapsed().as_millis() as u64,
            shard: opts.shard.map(|s| format!("{}/{}", s.index, s.count)),
            customers: manifest::CustomersOut {
                entries: &customers,
                file: &written,
                old: &old,
            },
        };
        output::write_atomic(&dir, &manifest_name, |w| {
            serde_json::to_writer_pretty(w, &manifest).map_err(std::io::Error::other)
        })?;
        output::sync_dir(&dir)?;
    }
    drop(customers);
    drop(old);
    billed?;
    drop(lock);

    reports.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
    tracing::info!(
        month = %month,
        customers = reports.len(),
        written = reports.iter().filter(|c| matches!(c.outcome, Outcome::Written { .. })).count(),
        evn_off = evn_off.len(),
        rows = scan.rows_read,
        duplicates,
        spilled,
        "billing run finished"
    );
    Ok(BillReport {
        month,
        dir,
        manifest: manifest_path,
        manifest_written,
        customers: reports,
        evn_off,
        rows_read: scan.rows_read,
        duplicates,
        spilled,
    })
}

/// `evn merge-manifests`: [`merge_shard_manifests`] under the month lock, taken exclusively as
/// a whole-month run takes it, so it is refused ([`BillError::RunActive`]) while any shard of
/// the month still runs and would add to its part afterwards.
pub fn merge_shards_at(out: &Path, month: BillingMonth) -> Result<PathBuf, BillError> {
    let dir = out.join(month.to_string());
    if !dir.is_dir() {
        return Err(BillError::Manifest {
            path: dir.join(MANIFEST_FILE),
            detail: "the month folder does not exist: no billing run wrote to it".to_owned(),
        });
    }
    let _lock = lock::MonthLock::acquire(out, &dir, None)?;
    merge_shard_manifests(out, month)
}

/// Merges the shard manifests of a month into `manifest.json` (run once after all shards of
/// a sharded billing run finished). Each customer's newest entry wins.
pub fn merge_shard_manifests(out: &Path, month: BillingMonth) -> Result<PathBuf, BillError> {
    let dir = out.join(month.to_string());
    let mut merged: Option<Manifest> = None;
    for path in manifest::manifests_in(&dir)? {
        let Some(m) = Manifest::read(&path)? else {
            continue;
        };
        match merged.as_mut() {
            None => {
                let mut m = m;
                m.shard = None;
                merged = Some(m);
            }
            Some(acc) => {
                if m.generated_at > acc.generated_at {
                    acc.generated_at = m.generated_at.clone();
                    acc.config_version = m.config_version.clone();
                    acc.counselling_version = m.counselling_version.clone();
                }
                acc.run_ms = acc.run_ms.max(m.run_ms);
                for (id, entry) in m.customers {
                    if acc
                        .customers
                        .get(&id)
                        .is_none_or(|e| e.version < entry.version)
                    {
                        acc.customers.insert(id, entry);
                    }
                }
            }
        }
    }
    let merged = merged.ok_or_else(|| BillError::Manifest {
        path: dir.join(MANIFEST_FILE),
        detail: "no manifest or shard manifest to merge".to_owned(),
    })?;
    output::write_atomic(&dir, MANIFEST_FILE, |w| {
        serde_json::to_writer_pretty(w, &merged).map_err(std::io::Error::other)
    })?;
    output::sync_dir(&dir)?;
    Ok(dir.join(MANIFEST_FILE))
}

#[cfg(test)]
mod tests;
