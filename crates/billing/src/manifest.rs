//! `OUT/YYYY-MM/manifest.json`: what each billing run produced, per customer and version.
//! A serialization boundary: these types exist only to be read and written as JSON.
//!
//! Compatibility: fields are only ever added, as optional ones, so a manifest written before
//! them still reads (the CSV fields came with issue #11). Readers outside this crate (the
//! portal) ignore fields they do not know; this crate refuses them, so that an older `evn`
//! never rewrites a newer manifest and drops what it did not understand.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::ser::{Error as _, Serializer};
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
    /// Connections billed, not-itemised ones (counselling services) included: the billing
    /// run's record, never shown to the customer.
    pub billed_connections: usize,
    /// Exact sum of every call billed, not-itemised ones included, four decimals, EUR net:
    /// the billing run's record, as `billed_connections`. Absent in manifests written before
    /// 2026-11-27, whose `total` included them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billed_total: Option<String>,
    /// Exact total of the itemised connections, what the EVN says, four decimals, EUR net
    /// (`"18.9247"`).
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
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(BillError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        // Parsed from a buffered reader: the text of a large month's manifest (~1 KB per
        // customer) is never in memory next to its parsed entries.
        serde_json::from_reader(std::io::BufReader::with_capacity(1 << 16, file))
            .map(Some)
            .map_err(|e| match e.classify() {
                serde_json::error::Category::Io => BillError::Io {
                    path: path.to_owned(),
                    source: e.into(),
                },
                _ => BillError::Manifest {
                    path: path.to_owned(),
                    detail: e.to_string(),
                },
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

/// This run's manifest entries, serialised, in an unnamed temporary file in the month folder
/// (`O_TMPFILE` where the system has it: gone with the process, whatever happens): a run of
/// 200,000 customers held them as ~400 MB of live values, the largest part of its memory.
pub(crate) struct EntryFile {
    dir: PathBuf,
    out: BufWriter<File>,
    len: u64,
    /// (index of the customer's report, where its entry is)
    index: Vec<(usize, EntryAt)>,
}

/// Where one entry is in the [`EntryFile`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryAt {
    offset: u64,
    len: u32,
}

impl EntryFile {
    pub fn new(dir: &Path) -> Result<EntryFile, BillError> {
        let file = tempfile::tempfile_in(dir).map_err(|e| BillError::io(dir, e))?;
        Ok(EntryFile {
            dir: dir.to_owned(),
            out: BufWriter::with_capacity(64 * 1024, file),
            len: 0,
            index: Vec::new(),
        })
    }

    pub fn push(&mut self, report: usize, json: &[u8]) -> Result<(), BillError> {
        self.out
            .write_all(json)
            .map_err(|e| BillError::io(&self.dir, e))?;
        self.index.push((
            report,
            EntryAt {
                offset: self.len,
                len: json.len() as u32,
            },
        ));
        self.len += json.len() as u64;
        Ok(())
    }

    /// Done writing: the entries can be read back.
    pub fn finish(self) -> Result<WrittenEntries, BillError> {
        let dir = self.dir;
        let file = self
            .out
            .into_inner()
            .map_err(|e| BillError::io(&dir, e.into_error()))?;
        Ok(WrittenEntries {
            file,
            index: self.index,
        })
    }
}

pub(crate) struct WrittenEntries {
    file: File,
    index: Vec<(usize, EntryAt)>,
}

impl WrittenEntries {
    pub fn index(&self) -> impl Iterator<Item = (usize, EntryAt)> + '_ {
        self.index.iter().copied()
    }

    fn read(&self, at: EntryAt) -> std::io::Result<CustomerEntry> {
        let mut bytes = vec![0u8; at.len as usize];
        let mut f = &self.file;
        f.seek(SeekFrom::Start(at.offset))?;
        f.read_exact(&mut bytes)?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}

/// Where an entry of the manifest being written comes from.
pub(crate) enum EntrySource {
    /// Written by this run, in the [`WrittenEntries`].
    New(EntryAt),
    /// Taken over from a manifest read at the start, in the [`OldEntries`].
    Old(EntryAt),
}

/// [`Manifest`] as written, its customers' entries read back one at a time: the same JSON,
/// byte for byte (same fields, same order, same attributes; a test compares them).
#[derive(Serialize)]
pub(crate) struct ManifestOut<'a> {
    pub month: &'a str,
    pub config_version: &'a str,
    pub counselling_version: &'a str,
    pub generated_at: &'a str,
    pub run_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub customers: CustomersOut<'a>,
}

pub(crate) struct CustomersOut<'a> {
    pub entries: &'a BTreeMap<&'a str, EntrySource>,
    pub file: &'a WrittenEntries,
    pub old: &'a OldEntries,
}

impl Serialize for CustomersOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Like `BTreeMap`'s own: an exact-size iterator, so an empty map is `{}` as there.
        serializer.collect_map(self.entries.iter().map(|(id, source)| {
            (
                id,
                EntryOut {
                    source,
                    file: self.file,
                    old: self.old,
                },
            )
        }))
    }
}

struct EntryOut<'a> {
    source: &'a EntrySource,
    file: &'a WrittenEntries,
    old: &'a OldEntries,
}

impl Serialize for EntryOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entry = match self.source {
            EntrySource::New(at) => self.file.read(*at),
            EntrySource::Old(at) => self.old.read(*at),
        };
        entry
            .map_err(|e| S::Error::custom(format!("manifest entry read back: {e}")))?
            .serialize(serializer)
    }
}

/// The entries of the month's existing manifests (the run's own and any other, merged or
/// shard), in an unnamed temporary file, read back one at a time: a re-run of 200,000
/// customers held them as ~400 MB of values. In memory: where each entry is, and its version.
pub(crate) struct OldEntries {
    file: File,
    /// The run's own manifest: each customer's entry.
    own: HashMap<String, (EntryAt, u32)>,
    /// The other manifests of the month: each customer's newest entry.
    other: HashMap<String, (EntryAt, u32)>,
    /// The own manifest's config and counselling list versions.
    own_versions: Option<(String, String)>,
}

/// What a manifest is read as here: entries kept as their JSON text.
#[derive(Deserialize)]
struct RawManifest {
    config_version: String,
    counselling_version: String,
    customers: BTreeMap<String, Box<serde_json::value::RawValue>>,
}

impl OldEntries {
    /// Reads `manifests` (one of them may be `own`) one at a time; every entry is checked
    /// as a [`CustomerEntry`] here, so a damaged manifest stops the run before it bills.
    pub fn load(dir: &Path, own: &Path, manifests: &[PathBuf]) -> Result<OldEntries, BillError> {
        let file = tempfile::tempfile_in(dir).map_err(|e| BillError::io(dir, e))?;
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        let mut len = 0u64;
        let (mut own_entries, mut other) = (HashMap::new(), HashMap::new());
        let mut own_versions = None;
        for path in manifests {
            let bad = |detail: String| BillError::Manifest {
                path: path.clone(),
                detail,
            };
            let f = match File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(BillError::io(path, e)),
            };
            let m: RawManifest =
                serde_json::from_reader(std::io::BufReader::with_capacity(1 << 16, f))
                    .map_err(|e| bad(e.to_string()))?;
            let is_own = path == own;
            if is_own {
                own_versions = Some((m.config_version, m.counselling_version));
            }
            for (id, raw) in m.customers {
                let text = raw.get().as_bytes();
                let entry: CustomerEntry =
                    serde_json::from_slice(text).map_err(|e| bad(format!("customer {id}: {e}")))?;
                out.write_all(text).map_err(|e| BillError::io(dir, e))?;
                let at = EntryAt {
                    offset: len,
                    len: text.len() as u32,
                };
                len += text.len() as u64;
                let slot = (at, entry.version);
                if is_own {
                    own_entries.insert(id, slot);
                } else if other
                    .get(&id)
                    .is_none_or(|(_, v): &(EntryAt, u32)| *v < entry.version)
                {
                    other.insert(id, slot);
                }
            }
        }
        let file = out
            .into_inner()
            .map_err(|e| BillError::io(dir, e.into_error()))?;
        Ok(OldEntries {
            file,
            own: own_entries,
            other,
            own_versions,
        })
    }

    /// The own manifest's config and counselling list versions, if there is one.
    pub fn own_versions(&self) -> Option<(&str, &str)> {
        self.own_versions
            .as_ref()
            .map(|(c, l)| (c.as_str(), l.as_str()))
    }

    /// A customer's newest entry in any manifest of the month.
    pub fn previous(&self, id: &str) -> std::io::Result<Option<CustomerEntry>> {
        let at = match (self.own.get(id), self.other.get(id)) {
            (Some(a), Some(b)) => Some(if b.1 > a.1 { b.0 } else { a.0 }),
            (a, b) => a.or(b).map(|(at, _)| *at),
        };
        at.map(|at| self.read(at)).transpose()
    }

    /// The own manifest's entries.
    pub fn own(&self) -> impl Iterator<Item = (&str, EntryAt)> + '_ {
        self.own.iter().map(|(id, (at, _))| (id.as_str(), *at))
    }

    /// A customer's newest entry in the other manifests.
    pub fn other(&self, id: &str) -> Option<EntryAt> {
        self.other.get(id).map(|(at, _)| *at)
    }

    /// Thread-safe: positioned reads, no shared cursor (billing workers call it at once).
    fn read(&self, at: EntryAt) -> std::io::Result<CustomerEntry> {
        use std::os::unix::fs::FileExt;
        let mut bytes = vec![0u8; at.len as usize];
        self.file.read_exact_at(&mut bytes, at.offset)?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, v: u32) -> CustomerEntry {
        CustomerEntry {
            connections: 3,
            billed_connections: 4,
            billed_total: Some("1.3345".into()),
            total: "1.2345".into(),
            total_printed: "1.23".into(),
            file: format!("{id}.pdf"),
            sha256: "ab".repeat(32),
            version: v,
            pages: 2,
            content_sha256: "cd".repeat(32),
            versions: (1..=v)
                .map(|n| VersionEntry {
                    version: n,
                    file: format!("{id}.v{n}.pdf"),
                    sha256: "ef".repeat(32),
                    created: "2026-12-01".into(),
                    connections: 3,
                    total: "1.2345".into(),
                    config_version: "cfg".into(),
                    counselling_version: "list+sha256:00".into(),
                    content_sha256: "cd".repeat(32),
                    csv_file: (n > 1).then(|| format!("{id}.v{n}.csv")),
                    csv_sha256: (n > 1).then(|| "12".repeat(32)),
                })
                .collect(),
            csv_file: (v > 1).then(|| format!("{id}.csv")),
            csv_sha256: None,
        }
    }

    /// The streamed manifest is the `Manifest` JSON byte for byte, with and without a shard,
    /// with entries from the file and kept ones, and with no customers at all.
    #[test]
    fn streamed_manifest_is_the_manifest_json() {
        let tmp = tempfile::tempdir().unwrap();
        for (shard, n) in [(None, 0usize), (Some("1/4".to_owned()), 1), (None, 5)] {
            let mut file = EntryFile::new(tmp.path()).unwrap();
            let all: BTreeMap<String, CustomerEntry> = (0..n)
                .map(|i| (format!("K{i}"), entry(&format!("K{i}"), 1 + i as u32 % 3)))
                .collect();
            let mut sources: Vec<(&str, Option<usize>)> = Vec::new();
            for (i, (id, e)) in all.iter().enumerate() {
                if i % 2 == 0 {
                    file.push(i, &serde_json::to_vec(e).unwrap()).unwrap();
                    sources.push((id, Some(i)));
                } else {
                    sources.push((id, None));
                }
            }
            let written = file.finish().unwrap();
            let at: BTreeMap<usize, EntryAt> = written.index().collect();
            // The other half comes from an existing manifest, as in a re-run.
            let kept: BTreeMap<String, CustomerEntry> = sources
                .iter()
                .filter(|(_, i)| i.is_none())
                .map(|(id, _)| (id.to_string(), all[*id].clone()))
                .collect();
            let own = tmp.path().join("manifest.json");
            let before = Manifest {
                month: "2026-11".into(),
                config_version: "old".into(),
                counselling_version: "old".into(),
                generated_at: "2026-11-30T08:00:00Z".into(),
                run_ms: 1,
                shard: None,
                customers: kept,
            };
            std::fs::write(&own, serde_json::to_vec_pretty(&before).unwrap()).unwrap();
            let old = OldEntries::load(tmp.path(), &own, std::slice::from_ref(&own)).unwrap();
            assert_eq!(old.own_versions(), Some(("old", "old")));
            let old_at: BTreeMap<&str, EntryAt> = old.own().collect();
            let entries: BTreeMap<&str, EntrySource> = sources
                .iter()
                .map(|(id, i)| {
                    let source = match i {
                        Some(i) => EntrySource::New(at[i]),
                        None => EntrySource::Old(old_at[*id]),
                    };
                    (*id, source)
                })
                .collect();
            let expected = Manifest {
                month: "2026-11".into(),
                config_version: "cfg".into(),
                counselling_version: "list".into(),
                generated_at: "2026-12-01T08:00:00Z".into(),
                run_ms: 1234,
                shard: shard.clone(),
                customers: all.clone(),
            };
            let streamed = ManifestOut {
                month: "2026-11",
                config_version: "cfg",
                counselling_version: "list",
                generated_at: "2026-12-01T08:00:00Z",
                run_ms: 1234,
                shard,
                customers: CustomersOut {
                    entries: &entries,
                    file: &written,
                    old: &old,
                },
            };
            assert_eq!(
                String::from_utf8(serde_json::to_vec_pretty(&streamed).unwrap()).unwrap(),
                String::from_utf8(serde_json::to_vec_pretty(&expected).unwrap()).unwrap()
            );
        }
    }
}
