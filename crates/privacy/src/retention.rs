//! `evn retention`: scans the data and EVN directories, plans with [`plan_retention`] and
//! carries the plan out crash-safely (see [`crate::fsops`]). Safe to run daily and to re-run
//! after a crash: a second run finds nothing left to do.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::NaiveDate;

use evn_keys::Keyring;
use evn_rating::BillingMonth;
use evn_store::{CommitRecord, Location, COMMITS_DIR, STAGING_DIR};

use crate::fsops::{self, Rewrite};
use crate::plan::{plan_retention, Decision, MonthPlan, MonthState};
use crate::{data_dir, evn_dir};
use crate::{held_customers, LegalHold, PrivacyError};

/// Staging files older than this are debris of a crashed writer: a live writer renames its
/// staged file into place within seconds of writing it.
pub const DEFAULT_STAGING_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

pub struct RetentionOptions {
    /// A local folder or an object store (`s3://…`).
    pub data: Location,
    pub evn: Location,
    /// The date in Europe/Berlin the six months are measured against.
    pub today: NaiveDate,
    /// Report what would be deleted; change nothing.
    pub dry_run: bool,
    /// Needed to rewrite the Parquet of a month with a legal hold (read and re-encrypt).
    pub keys: Option<Arc<Keyring>>,
    pub staging_max_age: Duration,
    /// The wall clock staging file ages are measured against (file times are wall-clock).
    pub now: SystemTime,
}

/// One thing retention does (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A month's decision (keep, delete, delete except holds, or a warning).
    Month(MonthPlan),
    /// Removes what an interrupted run left behind.
    FinishLeftover {
        path: PathBuf,
    },
    DeleteMonthData {
        month: BillingMonth,
        path: PathBuf,
    },
    DeleteMonthEvns {
        month: BillingMonth,
        path: PathBuf,
    },
    RewriteData {
        path: PathBuf,
        rewrite: Rewrite,
    },
    EditManifest {
        path: PathBuf,
        removed: Vec<String>,
    },
    DeleteEvnFile {
        path: PathBuf,
    },
    DeleteStaging {
        path: PathBuf,
        age_days: u64,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Month(p) => write!(f, "{p}"),
            Action::FinishLeftover { path } => {
                write!(
                    f,
                    "remove leftover of an interrupted run {}",
                    path.display()
                )
            }
            Action::DeleteMonthData { month, path } => {
                write!(f, "delete traffic data {month} {}", path.display())
            }
            Action::DeleteMonthEvns { month, path } => {
                write!(f, "delete EVNs {month} {}", path.display())
            }
            Action::RewriteData { path, rewrite } if rewrite.kept == 0 => write!(
                f,
                "delete traffic data file {} (all {} rows)",
                path.display(),
                rewrite.dropped
            ),
            Action::RewriteData { path, rewrite } => write!(
                f,
                "rewrite traffic data file {} (delete {} rows, keep {})",
                path.display(),
                rewrite.dropped,
                rewrite.kept
            ),
            Action::EditManifest { path, removed } => write!(
                f,
                "remove {} from manifest {}",
                removed.join(", "),
                path.display()
            ),
            Action::DeleteEvnFile { path } => write!(f, "delete EVN file {}", path.display()),
            Action::DeleteStaging { path, age_days } => write!(
                f,
                "delete stale staging file {} ({age_days} days old)",
                path.display()
            ),
        }
    }
}

impl Action {
    /// Whether this action changes something (month decisions only report).
    pub fn changes(&self) -> bool {
        !matches!(self, Action::Month(_))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub months_kept: usize,
    pub months_not_billed: usize,
    /// Never billed and ended more than a year ago.
    pub months_overdue: usize,
    pub months_deleted: usize,
    pub months_held: usize,
    pub rows_deleted: usize,
    pub evn_files_deleted: usize,
    pub staging_files_deleted: usize,
    pub leftovers_finished: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} months deleted, {} deleted except legal holds or later bills, {} kept in retention, {} not billed ({} overdue); \
             {} rows in held months, {} EVN files, {} stale staging files, {} leftovers removed",
            self.months_deleted,
            self.months_held,
            self.months_kept,
            self.months_not_billed,
            self.months_overdue,
            self.rows_deleted,
            self.evn_files_deleted,
            self.staging_files_deleted,
            self.leftovers_finished
        )
    }
}

/// Months present in the data or the EVN directory, with their send dates.
pub fn scan(data: &Location, evn: &Location) -> Result<Vec<MonthState>, PrivacyError> {
    let mut months: BTreeSet<BillingMonth> = data.list_months()?.into_iter().collect();
    months.extend(evn_dir::evn_months(evn)?);
    months
        .into_iter()
        .map(|month| {
            let billed = evn_dir::billed(evn, month)?;
            Ok(MonthState {
                month,
                sent: billed.sent,
                sent_later: billed.sent_later,
            })
        })
        .collect()
}

/// Runs retention; `report` gets every action as it happens (before it happens in a dry run).
pub fn run_retention(
    opts: &RetentionOptions,
    holds: &[LegalHold],
    report: &mut dyn FnMut(&Action),
) -> Result<Summary, PrivacyError> {
    let mut summary = Summary::default();

    // 1. Finish what an interrupted run started, before anything new is changed.
    let mut leftovers = data_dir::finish_leftovers(&opts.data, opts.dry_run)?;
    leftovers.extend(evn_dir::finish_leftovers(&opts.evn, opts.dry_run)?);
    for path in leftovers {
        summary.leftovers_finished += 1;
        report(&Action::FinishLeftover { path });
    }

    // 2. Plan and carry out, month by month. Traffic data goes before the EVN folder: the
    // manifest is what dates a month, so if a crash comes between the two, the next run still
    // knows the month is due and finishes it.
    let holds = held_customers(holds);
    let plan = plan_retention(&scan(&opts.data, &opts.evn)?, &holds, opts.today);
    for month_plan in plan {
        let month = month_plan.month;
        let decision = month_plan.decision.clone();
        report(&Action::Month(month_plan));
        match decision {
            Decision::Keep { .. } => summary.months_kept += 1,
            Decision::NotBilled { overdue } => {
                summary.months_not_billed += 1;
                if overdue {
                    summary.months_overdue += 1;
                    tracing::warn!(%month, "month never billed and older than a year");
                }
            }
            Decision::Delete { .. } => {
                summary.months_deleted += 1;
                delete_month(opts, month, &mut summary, report)?;
            }
            d @ Decision::DeleteExceptHeld { .. } => {
                summary.months_held += 1;
                delete_except(opts, month, &d.kept_customers(), &mut summary, report)?;
            }
        }
    }

    // 3. Staging debris of crashed writers.
    sweep_staging(opts, &mut summary, report)?;
    Ok(summary)
}

fn delete_month(
    opts: &RetentionOptions,
    month: BillingMonth,
    summary: &mut Summary,
    report: &mut dyn FnMut(&Action),
) -> Result<(), PrivacyError> {
    data_dir::delete_month(&opts.data, month, opts.dry_run, &mut || {
        report(&Action::DeleteMonthData {
            month,
            path: opts.data.month_display(month),
        })
    })?;
    if evn_dir::evn_months(&opts.evn)?.contains(&month) {
        summary.evn_files_deleted += evn_dir::count_files(&opts.evn, month)?;
        report(&Action::DeleteMonthEvns {
            month,
            path: evn_dir::month_shown(&opts.evn, month),
        });
        if !opts.dry_run {
            evn_dir::delete_month(&opts.evn, month)?;
        }
    }
    Ok(())
}

/// A month past retention with legal holds: every row and EVN file of a customer without a
/// hold goes; the held customers' rows and files stay, as does the manifest (listing only
/// them), so the month stays dated and the next run can finish it once the holds are lifted.
fn delete_except(
    opts: &RetentionOptions,
    month: BillingMonth,
    held: &BTreeSet<String>,
    summary: &mut Summary,
    report: &mut dyn FnMut(&Action),
) -> Result<(), PrivacyError> {
    let keep = |c: &evn_store::StoredCall| held.contains(c.call.customer_id.as_str());
    let changes =
        data_dir::rewrite_month(&opts.data, month, &keep, opts.keys.as_ref(), opts.dry_run)?;
    for (path, rewrite) in changes {
        summary.rows_deleted += rewrite.dropped;
        report(&Action::RewriteData { path, rewrite });
    }
    let keep = |id: &str| held.contains(id);
    // The manifest first: from then on the portal no longer offers the files below.
    for (path, removed) in evn_dir::filter_manifests(&opts.evn, month, &keep, opts.dry_run)? {
        report(&Action::EditManifest { path, removed });
    }
    let doomed = evn_dir::files_not_kept(&opts.evn, month, &keep)?;
    for e in &doomed {
        summary.evn_files_deleted += 1;
        report(&Action::DeleteEvnFile {
            path: e.shown.clone(),
        });
    }
    if !opts.dry_run {
        evn_dir::remove_entries(&opts.evn, month, &doomed)?;
    }
    Ok(())
}

/// Staging files named by the newest commit record of a partition: recovery may still have
/// to roll them forward, so they are never swept, however old.
fn needed_by_recovery(data: &Path) -> Result<BTreeSet<PathBuf>, PrivacyError> {
    let mut needed = BTreeSet::new();
    let root = data.join(COMMITS_DIR);
    for topic in read_dirs(&root)? {
        for partition in read_dirs(&topic)? {
            let mut newest: Option<(i64, PathBuf)> = None;
            for entry in
                std::fs::read_dir(&partition).map_err(|e| PrivacyError::io(&partition, e))?
            {
                let path = entry.map_err(|e| PrivacyError::io(&partition, e))?.path();
                let first = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".json"))
                    .and_then(|n| n.parse::<i64>().ok());
                if let Some(first) = first {
                    if newest.as_ref().is_none_or(|(f, _)| first > *f) {
                        newest = Some((first, path));
                    }
                }
            }
            if let Some((_, path)) = newest {
                let bytes = std::fs::read(&path).map_err(|e| PrivacyError::io(&path, e))?;
                // A damaged record: keep every staging file rather than guess.
                let Ok(record) = serde_json::from_slice::<CommitRecord>(&bytes) else {
                    return Err(PrivacyError::Store(evn_store::StoreError::CorruptCommit {
                        path,
                        detail: "unreadable; no staging file is swept until it is repaired".into(),
                    }));
                };
                needed.extend(record.files.iter().map(|f| data.join(&f.staging)));
            }
        }
    }
    Ok(needed)
}

fn read_dirs(dir: &Path) -> Result<Vec<PathBuf>, PrivacyError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut out = Vec::new();
            for e in entries {
                let e = e.map_err(|e| PrivacyError::io(dir, e))?;
                if e.file_type()
                    .map_err(|err| PrivacyError::io(dir, err))?
                    .is_dir()
                {
                    out.push(e.path());
                }
            }
            out.sort();
            Ok(out)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(PrivacyError::io(dir, e)),
    }
}

fn sweep_staging(
    opts: &RetentionOptions,
    summary: &mut Summary,
    report: &mut dyn FnMut(&Action),
) -> Result<(), PrivacyError> {
    let Location::Local(data) = &opts.data else {
        // Reported after the fact here: one listing decides, then each object goes.
        for (path, age_days) in
            data_dir::sweep_object_staging(&opts.data, opts.staging_max_age, opts.dry_run)?
        {
            summary.staging_files_deleted += 1;
            report(&Action::DeleteStaging { path, age_days });
        }
        return Ok(());
    };
    let needed = needed_by_recovery(data)?;
    for writer in read_dirs(&data.join(STAGING_DIR))? {
        let mut removed = false;
        let entries = std::fs::read_dir(&writer).map_err(|e| PrivacyError::io(&writer, e))?;
        let mut files: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for path in files {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.is_file() || needed.contains(&path) {
                continue;
            }
            let age = meta
                .modified()
                .ok()
                .and_then(|m| opts.now.duration_since(m).ok())
                .unwrap_or_default();
            if age <= opts.staging_max_age {
                continue;
            }
            summary.staging_files_deleted += 1;
            report(&Action::DeleteStaging {
                path: path.clone(),
                age_days: age.as_secs() / 86_400,
            });
            if !opts.dry_run {
                match std::fs::remove_file(&path) {
                    Ok(()) => removed = true,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(PrivacyError::io(&path, e)),
                }
            }
        }
        if removed {
            fsops::sync(&writer)?;
        }
    }
    Ok(())
}
