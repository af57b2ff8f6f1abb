//! `OUT/YYYY-MM/manifest.json`: what each billing run produced, per customer and version.
//! A serialization boundary: these types exist only to be read and written as JSON.
//!
//! Compatibility: fields are only ever added, as optional ones, so a manifest written before
//! them still reads (the CSV fields came with issue #11). Readers outside this crate (the
//! portal) ignore fields they do not know; this crate refuses them, so that an older `evn`
//! never rewrites a newer manifest and drops what it did not understand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::BillError;

pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub month: String,
    /// Config version of the run that last changed this manifest.
    pub config_version: String,
    /// Counselling list version of that run.
    pub counselling_version: String,
    /// When this manifest's content last changed (RFC 3339, UTC). A re-run that changes
    /// nothing leaves the file untouched.
    pub generated_at: String,
    /// Wall time of that run, in milliseconds.
    pub run_ms: u64,
    /// `I/N` for a shard manifest, absent for the merged one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub customers: BTreeMap<String, CustomerEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerEntry {
    /// Connections printed in the current version.
    pub connections: usize,
    /// Connections billed, not-itemised ones (counselling services) included.
    pub billed_connections: usize,
    /// Exact total, four decimals, EUR net (`"18.9247"`).
    pub total: String,
    /// The total as printed, rounded to cents half away from zero (`"18.92"`).
    pub total_printed: String,
    /// The current version's file name: always `<customer_id>.pdf`.
    pub file: String,
    pub sha256: String,
    pub version: u32,
    pub pages: usize,
    /// SHA-256 of what the EVN says (rows, sums, notices, addresses), not of the PDF bytes:
    /// a re-run compares it to decide whether there is a new version.
    pub content_sha256: String,
    /// Every version ever issued, oldest first; the files stay on disk.
    pub versions: Vec<VersionEntry>,
    /// The current version's CSV (issue #11): always `<customer_id>.csv`. Absent in
    /// manifests from before CSV existed, until the customer's next run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionEntry {
    pub version: u32,
    /// `<customer_id>.v<N>.pdf`
    pub file: String,
    pub sha256: String,
    /// "Erstellt am" printed on it.
    pub created: String,
    pub connections: usize,
    pub total: String,
    pub config_version: String,
    pub counselling_version: String,
    pub content_sha256: String,
    /// `<customer_id>.v<N>.csv`: the same rows as the version's PDF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv_sha256: Option<String>,
}

impl Manifest {
    pub fn read(path: &Path) -> Result<Option<Manifest>, BillError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(BillError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| BillError::Manifest {
                path: path.to_owned(),
                detail: e.to_string(),
            })
    }
}

/// Every manifest in a month folder: the merged one and any shard manifests, sorted by name.
pub fn manifests_in(dir: &Path) -> Result<Vec<PathBuf>, BillError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(BillError::Io {
                path: dir.to_owned(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| BillError::Io {
                path: dir.to_owned(),
                source,
            })?
            .path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == MANIFEST_FILE || (name.starts_with("manifest.shard-") && name.ends_with(".json"))
        {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}
