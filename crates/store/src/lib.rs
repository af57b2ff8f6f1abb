//! Stored traffic data (INTERFACES.md §3): monthly Hive-style Parquet partitions under
//! `DATA/cdrs/billing_month=YYYY-MM/`, and the commit log that makes ingest exactly-once.
//!
//! Layout of a data directory:
//! - `cdrs/billing_month=YYYY-MM/<topic>+<partition>+<first>-<last>.parquet`: visible data; a
//!   file appears here only by atomic rename after it was fsynced.
//! - `_staging/<writer>/...`: files being written; never read by anyone but recovery.
//! - `_ingest/<topic>/<partition>/<first>.json`: the commit log (see [`commit`]).
//! - on an object store only, `cdrs/billing_month=YYYY-MM/_change.json` and `_rewrite/`: a
//!   change of the month's files by retention or erasure (see [`month_change`]).
//!
//! The same layout under an object store prefix (`--data s3://bucket/prefix`, see
//! [`Location`]), where files appear by server-side copy after the commit point instead of by
//! rename (see [`commit_object`]).

pub mod commit;
pub mod commit_object;
mod error;
mod location;
pub mod month_change;
mod parquet_io;

pub use commit::{CommitLog, CommitRecord, HeldRecord, PartitionState, StoredHeld};
pub use error::StoreError;
pub use evn_keys::Keyring;
pub use location::{Listed, Location, ObjectData};
pub use object_store::{Error as ObjectError, PutMode};
pub use parquet_io::{
    encode_batch, encode_file, list_month_files, read_bytes_with, read_bytes_with_info, read_file,
    read_file_with, read_file_with_info, read_month, read_month_with, schema, write_batch,
    write_file, CallBatch, CallColumns, FileInfo, Provenance, StoredCall, WriteOptions,
    COUNSELLING_VERSION_KEY,
};

use std::path::{Path, PathBuf};

use evn_rating::BillingMonth;

pub const CDRS_DIR: &str = "cdrs";
pub const STAGING_DIR: &str = "_staging";
pub const COMMITS_DIR: &str = "_ingest";

/// `DATA/cdrs/billing_month=YYYY-MM`
pub fn month_dir(data: &Path, month: BillingMonth) -> PathBuf {
    data.join(CDRS_DIR).join(format!("billing_month={month}"))
}

/// Months present under `DATA/cdrs`, sorted.
pub fn list_months(data: &Path) -> Result<Vec<BillingMonth>, StoreError> {
    let dir = data.join(CDRS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(&dir, e)),
    };
    let mut months = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
        let name = entry.file_name();
        if let Some(m) = name.to_str().and_then(|n| n.strip_prefix("billing_month=")) {
            if let Ok(month) = m.parse() {
                months.push(month);
            }
        }
    }
    months.sort();
    Ok(months)
}

/// fsync a directory so a rename or create inside it survives a power cut.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}
