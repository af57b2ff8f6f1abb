//! The monthly billing run (`evn bill`, INTERFACES.md §4): one month of stored calls in, one EVN
//! PDF per customer whose EVN is on out, plus `manifest.json`, versioned and reproducible.
//!
//! Flow: a first pass over the month's Parquet files checks every row against the
//! configuration (before anything is written) and keeps the selected customers' calls while
//! they fit a row budget; past the budget, customers are billed in chunks, each chunk re-reading
//! the files, so memory stays bounded whatever the month's size. Each customer's calls are
//! deduplicated, laid out ([`evn_render::EvnDocument`]), compared with the manifest by content
//! hash, and only rendered (in parallel, rayon) and written (atomically) when they changed.

mod manifest;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::{NaiveDate, SecondsFormat, Utc};
use rayon::prelude::*;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use evn_config::{Config, CustomerRow, ZoneId};
use evn_rating::{BillingMonth, RatedCall};
use evn_render::{format, render_pdf, EvnCall, EvnDocument, Header, RenderError};
use evn_store::StoreError;

pub use manifest::{CustomerEntry, Manifest, VersionEntry, MANIFEST_FILE};

/// Rows kept in memory at once. Past this the run switches to chunks of customers that each
/// fit it (one re-read of the files per chunk). About 300 bytes a row: ~600 MB at most.
pub const DEFAULT_ROW_BUDGET: usize = 2_000_000;

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
        reason: &'static str,
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
    /// Rows held in memory at once; [`DEFAULT_ROW_BUDGET`] unless a test wants chunks.
    pub row_budget: usize,
}

impl BillOptions {
    pub fn new(created: NaiveDate) -> Self {
        BillOptions {
            customer: None,
            shard: None,
            created,
            progress: None,
            row_budget: DEFAULT_ROW_BUDGET,
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
/// periods after the request").
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
    let mut seen: HashSet<(String, String)> = HashSet::with_capacity(calls.len());
    calls.retain(|c| seen.insert((c.switch_id.clone(), c.cdr_id.clone())));
    before - calls.len()
}

/// The EVN of one customer and month (version 0: the caller numbers it). Counselling calls are
/// hidden if ingest flagged them *or* today's list knows the number, in whatever notation it was
/// stored: when in doubt a row is hidden, never shown.
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
    let calls = calls
        .into_iter()
        .map(|c| EvnCall {
            hidden: c.counselling || config.counselling.contains(&c.called_number),
            zone_label: config.tariffs.label(&c.zone).to_owned(),
            calling_number: c.calling_number,
            called_number: c.called_number,
            start_time: c.start_time,
            duration_s: c.duration_s,
            charge: c.charge_eur,
            shortened: c.shortened,
        })
        .collect();
    Some(EvnDocument::build(
        header,
        calls,
        shortened_setting,
        flatrate_zones,
    ))
}

/// Writes `bytes` to `dir/name` so that readers see the old file or the whole new one: temp
/// file in the same folder, fsync, rename. The caller fsyncs the folder.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), BillError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))
    })();
    result.map_err(|e| {
        std::fs::remove_file(&tmp).ok();
        BillError::io(&dir.join(name), e)
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn decimal_string(d: Decimal, scale: u32) -> String {
    let mut d = d;
    d.rescale(scale);
    d.to_string()
}

/// The highest `<id>.v<N>.pdf` on disk: a version file is never overwritten, even one a crashed
/// run wrote without recording it in the manifest.
fn highest_version_on_disk(dir: &Path, customer_id: &str) -> Result<u32, BillError> {
    let prefix = format!("{customer_id}.v");
    let mut max = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(BillError::io(dir, e)),
    };
    for entry in entries {
        let name = entry.map_err(|e| BillError::io(dir, e))?.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(".pdf"))
            .and_then(|n| n.parse::<u32>().ok())
        {
            max = max.max(n);
        }
    }
    Ok(max)
}

/// Result of the first pass over the month.
struct Scan {
    rows_read: usize,
    /// Stored calls per selected customer (all customers with data, for the EVN-off count).
    counts: BTreeMap<String, usize>,
    /// The selected customers' calls, if they fitted the row budget.
    calls: Option<HashMap<String, Vec<RatedCall>>>,
}

fn scan(
    config: &Config,
    month: BillingMonth,
    files: &[PathBuf],
    selected: &BTreeSet<String>,
    budget: usize,
) -> Result<Scan, BillError> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut calls: Option<HashMap<String, Vec<RatedCall>>> = Some(HashMap::new());
    let mut kept = 0usize;
    let mut rows_read = 0usize;
    let mut mismatch: Option<BillError> = None;
    let mut known: HashSet<String> = HashSet::new();
    for file in files {
        evn_store::read_file(file, &mut |stored| {
            rows_read += 1;
            let call = stored.call;
            if mismatch.is_some() {
                return;
            }
            if !known.contains(&call.customer_id) {
                let reason = if config.customers.rows(&call.customer_id).is_empty() {
                    Some("who is not in customers.csv")
                } else if evn_row(config, &call.customer_id, month).is_none() {
                    Some("whose first customers.csv row starts after the month")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    mismatch = Some(BillError::ConfigMismatch {
                        customer_id: call.customer_id.clone(),
                        file: file.clone(),
                        reason,
                    });
                    return;
                }
                known.insert(call.customer_id.clone());
            }
            match counts.get_mut(&call.customer_id) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(call.customer_id.clone(), 1);
                }
            }
            if let Some(map) = calls.as_mut() {
                if selected.contains(&call.customer_id) {
                    kept += 1;
                    if kept > budget {
                        // Too big for one pass: drop what we hold, bill in chunks later.
                        calls = None;
                    } else {
                        map.entry(call.customer_id.clone()).or_default().push(call);
                    }
                }
            }
        })?;
        if let Some(e) = mismatch.take() {
            return Err(e);
        }
    }
    Ok(Scan {
        rows_read,
        counts,
        calls,
    })
}

/// Reads the calls of `chunk`'s customers from every file.
fn load_chunk(
    files: &[PathBuf],
    chunk: &BTreeSet<String>,
) -> Result<HashMap<String, Vec<RatedCall>>, BillError> {
    let mut map: HashMap<String, Vec<RatedCall>> = HashMap::new();
    for file in files {
        evn_store::read_file(file, &mut |stored| {
            if chunk.contains(&stored.call.customer_id) {
                map.entry(stored.call.customer_id.clone())
                    .or_default()
                    .push(stored.call);
            }
        })?;
    }
    Ok(map)
}

/// What a customer's job produced: the manifest entry and the report line.
struct Done {
    entry: Option<CustomerEntry>,
    report: CustomerReport,
    duplicates: usize,
}

fn bill_customer(
    config: &Config,
    month: BillingMonth,
    dir: &Path,
    customer_id: &str,
    mut calls: Vec<RatedCall>,
    previous: Option<&CustomerEntry>,
    created: NaiveDate,
) -> Result<Done, BillError> {
    let duplicates = dedup(&mut calls);
    let mut doc = build_document(config, month, customer_id, calls, created)
        .expect("selected customers have a row in the month");
    let content = hex::encode(doc.content_digest());
    let connections = doc.itemised();
    let total = doc.total;
    if let Some(prev) = previous {
        if prev.content_sha256 == content && dir.join(&prev.file).is_file() {
            return Ok(Done {
                entry: None,
                report: CustomerReport {
                    customer_id: customer_id.to_owned(),
                    outcome: Outcome::Unchanged {
                        version: prev.version,
                    },
                    connections,
                    total,
                },
                duplicates,
            });
        }
    }
    let version = previous
        .map_or(0, |p| p.version)
        .max(highest_version_on_disk(dir, customer_id)?)
        + 1;
    doc.header.version = version;
    let pdf = render_pdf(&doc).map_err(|source| BillError::Render {
        customer_id: customer_id.to_owned(),
        source,
    })?;
    let sha = sha256_hex(&pdf.bytes);
    let versioned = format!("{customer_id}.v{version}.pdf");
    let current = format!("{customer_id}.pdf");
    // The numbered file first: the current copy then never points at an unrecorded version.
    write_atomic(dir, &versioned, &pdf.bytes)?;
    write_atomic(dir, &current, &pdf.bytes)?;
    let mut versions = previous.map(|p| p.versions.clone()).unwrap_or_default();
    versions.push(VersionEntry {
        version,
        file: versioned,
        sha256: sha.clone(),
        created: created.to_string(),
        connections,
        total: decimal_string(total, 4),
        config_version: config.version.clone(),
        counselling_version: config.counselling.version.clone(),
        content_sha256: content.clone(),
    });
    Ok(Done {
        entry: Some(CustomerEntry {
            connections,
            billed_connections: doc.billed,
            total: decimal_string(total, 4),
            total_printed: decimal_string(format::cents(total), 2),
            file: current,
            sha256: sha,
            version,
            pages: pdf.pages,
            content_sha256: content,
            versions,
        }),
        report: CustomerReport {
            customer_id: customer_id.to_owned(),
            outcome: Outcome::Written {
                version,
                pages: pdf.pages,
            },
            connections,
            total,
        },
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
    let started = Instant::now();
    if let Some(id) = &opts.customer {
        if config.customers.rows(id).is_empty() {
            return Err(BillError::NoSuchCustomer {
                customer_id: id.clone(),
            });
        }
    }
    let month_dir = evn_store::month_dir(data, month);
    let files = evn_store::list_month_files(data, month)?;
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

    // Every row is checked before anything is written: a bad file or a config mismatch
    // leaves the output as it was.
    let scan = scan(config, month, &files, &selected, opts.row_budget.max(1))?;
    let evn_off: Vec<String> = scan
        .counts
        .keys()
        .filter(|id| {
            !selected.contains(*id)
                && opts.customer.as_deref().is_none_or(|c| c == id.as_str())
                && opts.shard.is_none_or(|s| s.contains(id))
        })
        .cloned()
        .collect();

    let dir = out.join(month.to_string());
    std::fs::create_dir_all(&dir).map_err(|e| BillError::io(&dir, e))?;
    let manifest_name = opts
        .shard
        .map_or_else(|| MANIFEST_FILE.to_owned(), Shard::manifest_name);
    let manifest_path = dir.join(&manifest_name);
    let own = Manifest::read(&manifest_path)?;
    // Version history may live in the merged manifest or any shard manifest (a customer moves
    // between shards when N changes): take each customer's newest entry.
    let mut history: HashMap<String, CustomerEntry> = HashMap::new();
    for path in manifest::manifests_in(&dir)? {
        if let Some(m) = Manifest::read(&path)? {
            for (id, entry) in m.customers {
                if history.get(&id).is_none_or(|e| e.version < entry.version) {
                    history.insert(id, entry);
                }
            }
        }
    }

    // Chunks of customers whose calls fit the budget together (one chunk if the scan kept all).
    let mut chunks: Vec<BTreeSet<String>> = Vec::new();
    let mut preloaded = scan.calls;
    if preloaded.is_some() {
        chunks.push(selected.clone());
    } else {
        let mut chunk = BTreeSet::new();
        let mut rows = 0;
        for id in &selected {
            let n = scan.counts.get(id).copied().unwrap_or(0);
            if !chunk.is_empty() && rows + n > opts.row_budget {
                chunks.push(std::mem::take(&mut chunk));
                rows = 0;
            }
            rows += n;
            chunk.insert(id.clone());
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
    }

    let total = selected.len();
    let done_count = AtomicUsize::new(0);
    let mut results: Vec<Done> = Vec::with_capacity(total);
    let mut failure = None;
    for chunk in chunks {
        let mut calls = match preloaded.take() {
            Some(map) => map,
            None => match load_chunk(&files, &chunk) {
                Ok(map) => map,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            },
        };
        let jobs: Vec<(String, Vec<RatedCall>)> = chunk
            .into_iter()
            .map(|id| {
                let c = calls.remove(&id).unwrap_or_default();
                (id, c)
            })
            .collect();
        let chunk_results: Vec<Result<Done, BillError>> = jobs
            .into_par_iter()
            .map(|(id, c)| {
                let r = bill_customer(config, month, &dir, &id, c, history.get(&id), opts.created);
                let n = done_count.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(p) = &opts.progress {
                    p(n, total);
                }
                r
            })
            .collect();
        for r in chunk_results {
            match r {
                Ok(d) => results.push(d),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if failure.is_some() {
            break;
        }
    }
    evn_store::sync_dir(&dir)?;

    // Record whatever was written, even when a later customer failed: a version file on disk
    // is then always in the manifest.
    let mut customers: BTreeMap<String, CustomerEntry> = own
        .as_ref()
        .map(|m| m.customers.clone())
        .unwrap_or_default();
    let mut changed = false;
    for d in &results {
        if let Some(entry) = &d.entry {
            customers.insert(d.report.customer_id.clone(), entry.clone());
            changed = true;
        } else if !customers.contains_key(&d.report.customer_id) {
            // Unchanged, but recorded in another manifest (shard layout changed): copy it here.
            if let Some(entry) = history.get(&d.report.customer_id) {
                customers.insert(d.report.customer_id.clone(), entry.clone());
                changed = true;
            }
        }
    }
    let versions_moved = own.as_ref().is_none_or(|m| {
        m.config_version != config.version || m.counselling_version != config.counselling.version
    });
    let manifest_written = changed || versions_moved;
    if manifest_written {
        let manifest = Manifest {
            month: month.to_string(),
            config_version: config.version.clone(),
            counselling_version: config.counselling.version.clone(),
            generated_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
            run_ms: started.elapsed().as_millis() as u64,
            shard: opts.shard.map(|s| format!("{}/{}", s.index, s.count)),
            customers,
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        write_atomic(&dir, &manifest_name, &json)?;
        evn_store::sync_dir(&dir)?;
    }
    if let Some(e) = failure {
        return Err(e);
    }

    let duplicates = results.iter().map(|d| d.duplicates).sum();
    let mut reports: Vec<CustomerReport> = results.into_iter().map(|d| d.report).collect();
    reports.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
    tracing::info!(
        month = %month,
        customers = reports.len(),
        written = reports.iter().filter(|c| matches!(c.outcome, Outcome::Written { .. })).count(),
        evn_off = evn_off.len(),
        rows = scan.rows_read,
        duplicates,
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
    })
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
    let json = serde_json::to_vec_pretty(&merged).expect("manifest serialises");
    write_atomic(&dir, MANIFEST_FILE, &json)?;
    evn_store::sync_dir(&dir)?;
    Ok(dir.join(MANIFEST_FILE))
}

#[cfg(test)]
mod tests;
