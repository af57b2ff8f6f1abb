//! The EVN folder as the billing run leaves it: `EVN_DIR/YYYY-MM/` with `<customer>.v<N>.pdf`
//! and `<customer>.v<N>.csv` per version, `<customer>.pdf`/`.csv` (copies of the current one)
//! and `manifest.json` (plus
//! `manifest.shard-I-of-N.json` while a sharded run is not merged yet).
//!
//! The manifests are the record of what was issued: a version is served only if a manifest
//! lists it, and always from its numbered file, whose bytes the manifest's SHA-256 describes
//! (the unnumbered copy can be one version ahead of the manifest after a crashed run).
//!
//! Every open is relative to the folder opened before it (`openat`) with `O_NOFOLLOW`: a
//! symlink anywhere below the root (month folder, manifest or PDF) is refused, and a file name
//! can never climb out because it is built from validated values only. Blocking: call from
//! `spawn_blocking`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use serde::Deserialize;

use evn_keys::Keyring;
use evn_store::ObjectData;

use crate::paths::{CustomerId, Format, Month};
use crate::PortalError;

const MANIFEST: &str = "manifest.json";

/// One issued version of a customer's EVN for a month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub version: u32,
    /// SHA-256 of the PDF bytes, lowercase hex.
    pub sha256: String,
    /// SHA-256 of the CSV bytes; `None` for a version billed before CSVs existed (no CSV).
    pub csv_sha256: Option<String>,
    /// "Erstellt am" printed on it (`YYYY-MM-DD`), as the manifest records it.
    pub created: Option<String>,
}

/// A customer's versions in one month, oldest first; `current` is one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerVersions {
    pub current: u32,
    pub versions: Vec<VersionInfo>,
}

impl CustomerVersions {
    pub fn get(&self, version: u32) -> Option<&VersionInfo> {
        self.versions.iter().find(|v| v.version == version)
    }
}

impl VersionInfo {
    /// The digest of this version's file in `format`, if the manifest records that file.
    pub fn sha256_of(&self, format: Format) -> Option<&str> {
        match format {
            Format::Pdf => Some(&self.sha256),
            Format::Csv => self.csv_sha256.as_deref(),
        }
    }
}

/// What is served: the file itself, or its plaintext when it is sealed at rest.
#[derive(Debug)]
pub enum Content {
    File(File),
    /// Decrypted in memory: EVNs are small, and the download limit bounds how many at once.
    Decrypted(Vec<u8>),
}

/// An opened file, ready to stream.
#[derive(Debug)]
pub struct Located {
    pub content: Content,
    /// Bytes the customer receives (the plaintext's length for a sealed file).
    pub len: u64,
    pub version: u32,
    pub sha256: String,
}

/// What the portal needs of `manifest.json`: a read-only view of `evn-billing`'s format that
/// ignores fields it does not use, so billing can add fields without breaking the portal.
#[derive(Deserialize)]
struct RawManifest {
    customers: BTreeMap<String, RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    version: u32,
    sha256: String,
    #[serde(default)]
    csv_sha256: Option<String>,
    #[serde(default)]
    versions: Vec<RawVersion>,
}

#[derive(Deserialize)]
struct RawVersion {
    version: u32,
    sha256: String,
    #[serde(default)]
    created: Option<String>,
    /// Absent in manifests written before CSVs existed (issue 11).
    #[serde(default)]
    csv_sha256: Option<String>,
}

type Index = HashMap<String, CustomerVersions>;

/// Identity of a manifest file's content: the billing run replaces it by rename, so a new
/// content is a new inode (and usually a new size and mtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

/// The EVN folder. Parsed manifests are cached (reduced to what the portal needs, about 150
/// bytes per customer and version) and re-read when the file changes, so a large manifest is
/// not parsed on every request.
#[derive(Debug)]
pub struct EvnStore {
    root: PathBuf,
    cache: Mutex<HashMap<PathBuf, (Stamp, Arc<Index>)>>,
    /// Manifest names per month folder, valid while the folder's own stamp is unchanged (adding,
    /// removing or renaming an entry changes a directory's mtime): a month of 200,000 customers
    /// holds 800,000 files, and listing them on every request cost most of a download's CPU.
    manifest_names: Mutex<HashMap<PathBuf, (Stamp, ManifestNames)>>,
    /// Opens EVNs the billing run sealed with `evn-keys` (encryption at rest).
    keys: Option<Arc<Keyring>>,
    /// Set when the EVN folder is an object store URL (`--evn s3://…`): see [`object`](Self::object_versions).
    object: Option<ObjectData>,
    /// Parsed manifests of an object store by key, with the modification time they were read at.
    object_cache: Mutex<HashMap<String, (ReadAt, Arc<Index>)>>,
}

/// A month folder's manifest file names, shared with the requests that read them.
type ManifestNames = Arc<Vec<String>>;
/// When an object store's manifest was last modified, as read.
type ReadAt = chrono::DateTime<chrono::Utc>;

impl EvnStore {
    /// Opens the EVN folder: a local folder, or an object store URL (`s3://bucket/prefix`,
    /// `file:///path`, `memory://name`), where the symlink rules have no object to apply to
    /// and keys are built from validated values the same way.
    pub fn open(root: &Path) -> Result<EvnStore, PortalError> {
        let err = |cause| PortalError::EvnDir {
            path: root.to_owned(),
            cause,
        };
        let url = root.to_string_lossy();
        if url.contains("://") {
            let object =
                ObjectData::open(&url).map_err(|e| err(std::io::Error::other(e.to_string())))?;
            return Ok(EvnStore {
                root: root.to_owned(),
                cache: Mutex::new(HashMap::new()),
                manifest_names: Mutex::new(HashMap::new()),
                keys: None,
                object: Some(object),
                object_cache: Mutex::new(HashMap::new()),
            });
        }
        // The root itself may be a symlink (an operator's mount); resolved once, here.
        let root = root.canonicalize().map_err(err)?;
        open_dir(rustix::fs::CWD, &root).map_err(|e| err(e.into()))?;
        Ok(EvnStore {
            root,
            cache: Mutex::new(HashMap::new()),
            manifest_names: Mutex::new(HashMap::new()),
            keys: None,
            object: None,
            object_cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn with_keys(mut self, keys: Option<Arc<Keyring>>) -> Self {
        self.keys = keys;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The root can still be opened (for `/healthz`).
    pub fn check(&self) -> Result<(), PortalError> {
        if let Some(o) = &self.object {
            return o.list_dirs("").map(drop).map_err(|e| self.object_error(e));
        }
        self.open_root().map(drop)
    }

    /// Every month with an EVN for `customer`, newest first.
    pub fn months(
        &self,
        customer: &CustomerId,
    ) -> Result<Vec<(Month, CustomerVersions)>, PortalError> {
        if let Some(o) = &self.object {
            let names = o.list_dirs("").map_err(|e| self.object_error(e))?;
            let mut out = Vec::new();
            for month in newest_first(&names) {
                if let Some(v) = self.object_versions(o, customer, &month)? {
                    out.push((month, v));
                }
            }
            return Ok(out);
        }
        let root = self.open_root()?;
        let names = self.names(&root, &self.root)?;
        let mut out = Vec::new();
        for month in newest_first(&names) {
            if let Some(v) = self.versions_in(&root, customer, &month)? {
                out.push((month, v));
            }
        }
        Ok(out)
    }

    /// The versions of `customer` in `month`, if the month has any manifest listing them.
    pub fn versions(
        &self,
        customer: &CustomerId,
        month: &Month,
    ) -> Result<Option<CustomerVersions>, PortalError> {
        if let Some(o) = &self.object {
            return self.object_versions(o, customer, month);
        }
        let root = self.open_root()?;
        self.versions_in(&root, customer, month)
    }

    /// Opens `version` (default: the current one) of `customer`'s EVN for `month`. `None` when
    /// no manifest lists it or its file is not there as a regular file.
    pub fn locate(
        &self,
        customer: &CustomerId,
        month: &Month,
        format: Format,
        version: Option<u32>,
    ) -> Result<Option<Located>, PortalError> {
        if let Some(o) = &self.object {
            return self.object_locate(o, customer, month, format, version);
        }
        let root = self.open_root()?;
        // The month folder is opened once: its manifests and the file are read through the
        // same descriptor.
        let Some(dir) = self.open_month(&root, month)? else {
            return Ok(None);
        };
        let dir_path = self.root.join(month.as_str());
        let Some(versions) = self.versions_in_dir(&dir, &dir_path, customer)? else {
            return Ok(None);
        };
        let Some(info) = versions.get(version.unwrap_or(versions.current)) else {
            return Ok(None);
        };
        // Only what the manifest records is served: a version without a CSV entry has none,
        // whatever lies on disk under that name.
        let Some(sha256) = info.sha256_of(format).map(str::to_owned) else {
            return Ok(None);
        };
        let name = format.file_name(customer, info.version);
        let path = dir_path.join(&name);
        let Some(mut file) = open_file(&dir, &name, &path)? else {
            tracing::warn!(path = %path.display(), "a manifest lists this EVN but it is not a regular file in place; not served");
            return Ok(None);
        };
        let io = |cause| PortalError::Io {
            path: path.clone(),
            cause,
        };
        let mut head = [0u8; evn_keys::MAGIC.len()];
        let sealed = match file.read_exact(&mut head) {
            Ok(()) => evn_keys::is_sealed(&head),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => false,
            Err(e) => return Err(io(e)),
        };
        let (content, len) = if sealed {
            let mut bytes = head.to_vec();
            file.read_to_end(&mut bytes).map_err(io)?;
            // The billing run seals each file with its month and numbered name as associated
            // data, so a file copied under another customer's name does not open.
            let context = format!("{}/{name}", month.as_str());
            let plain = evn_keys::open_any(self.keys.as_deref(), bytes, &context)
                .map_err(|e| io(std::io::Error::other(e.to_string())))?;
            let len = plain.len() as u64;
            (Content::Decrypted(plain), len)
        } else {
            use std::io::{Seek, SeekFrom};
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            let len = file.metadata().map_err(io)?.len();
            (Content::File(file), len)
        };
        Ok(Some(Located {
            content,
            len,
            version: info.version,
            sha256,
        }))
    }

    fn object_error(&self, e: evn_store::StoreError) -> PortalError {
        PortalError::Io {
            path: self.root.clone(),
            cause: std::io::Error::other(e.to_string()),
        }
    }

    /// A month's versions of `customer` on an object store: the month's manifests listed,
    /// each parsed once per modification.
    fn object_versions(
        &self,
        o: &ObjectData,
        customer: &CustomerId,
        month: &Month,
    ) -> Result<Option<CustomerVersions>, PortalError> {
        let mut manifests: Vec<evn_store::Listed> = o
            .list(month.as_str())
            .map_err(|e| self.object_error(e))?
            .into_iter()
            .filter(|l| {
                l.key
                    .strip_prefix(month.as_str())
                    .and_then(|n| n.strip_prefix('/'))
                    .is_some_and(|name| {
                        name == MANIFEST
                            || (name.starts_with("manifest.shard-") && name.ends_with(".json"))
                    })
            })
            .collect();
        manifests.sort_by(|a, b| a.key.cmp(&b.key));
        let mut best: Option<CustomerVersions> = None;
        for listed in manifests {
            let cached = self
                .object_cache
                .lock()
                .expect("cache lock")
                .get(&listed.key)
                .filter(|(t, _)| *t == listed.modified)
                .map(|(_, index)| Arc::clone(index));
            let index = match cached {
                Some(index) => index,
                None => {
                    let Some(bytes) = o.get(&listed.key).map_err(|e| self.object_error(e))? else {
                        continue;
                    };
                    let index = Arc::new(parse_manifest(&bytes).map_err(|detail| {
                        PortalError::Manifest {
                            path: PathBuf::from(o.display(&listed.key)),
                            detail,
                        }
                    })?);
                    self.object_cache
                        .lock()
                        .expect("cache lock")
                        .insert(listed.key.clone(), (listed.modified, Arc::clone(&index)));
                    index
                }
            };
            if let Some(v) = index.get(customer.as_str()) {
                if best.as_ref().is_none_or(|b| b.current < v.current) {
                    best = Some(v.clone());
                }
            }
        }
        Ok(best)
    }

    /// [`EvnStore::locate`] on an object store: the numbered object a manifest lists, fetched
    /// whole (EVNs are small; the download limit bounds how many at once).
    fn object_locate(
        &self,
        o: &ObjectData,
        customer: &CustomerId,
        month: &Month,
        format: Format,
        version: Option<u32>,
    ) -> Result<Option<Located>, PortalError> {
        let Some(versions) = self.object_versions(o, customer, month)? else {
            return Ok(None);
        };
        let Some(info) = versions.get(version.unwrap_or(versions.current)) else {
            return Ok(None);
        };
        let Some(sha256) = info.sha256_of(format).map(str::to_owned) else {
            return Ok(None);
        };
        let name = format.file_name(customer, info.version);
        let key = format!("{}/{name}", month.as_str());
        let Some(bytes) = o.get(&key).map_err(|e| self.object_error(e))? else {
            tracing::warn!(key = %o.display(&key), "a manifest lists this EVN but there is no such object; not served");
            return Ok(None);
        };
        let plain = if evn_keys::is_sealed(&bytes[..bytes.len().min(evn_keys::MAGIC.len())]) {
            let context = format!("{}/{name}", month.as_str());
            evn_keys::open_any(self.keys.as_deref(), bytes.to_vec(), &context).map_err(|e| {
                PortalError::Io {
                    path: PathBuf::from(o.display(&key)),
                    cause: std::io::Error::other(e.to_string()),
                }
            })?
        } else {
            bytes.to_vec()
        };
        Ok(Some(Located {
            len: plain.len() as u64,
            content: Content::Decrypted(plain),
            version: info.version,
            sha256,
        }))
    }

    fn open_root(&self) -> Result<OwnedFd, PortalError> {
        open_dir(rustix::fs::CWD, &self.root).map_err(|e| PortalError::Io {
            path: self.root.clone(),
            cause: e.into(),
        })
    }

    /// The month folder, opened without following a symlink; `None` if it is not a folder.
    fn open_month(&self, root: &OwnedFd, month: &Month) -> Result<Option<OwnedFd>, PortalError> {
        match open_dir(root, month.as_str()) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) => Ok(None),
            Err(Errno::LOOP | Errno::NOTDIR) => {
                tracing::warn!(path = %self.root.join(month.as_str()).display(), "not a plain folder (symlink?); not served");
                Ok(None)
            }
            Err(e) => Err(PortalError::Io {
                path: self.root.join(month.as_str()),
                cause: e.into(),
            }),
        }
    }

    fn names(&self, dir: &OwnedFd, path: &Path) -> Result<Vec<String>, PortalError> {
        let io = |e: Errno| PortalError::Io {
            path: path.to_owned(),
            cause: e.into(),
        };
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(dir).map_err(io)? {
            if let Ok(name) = entry.map_err(io)?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn versions_in(
        &self,
        root: &OwnedFd,
        customer: &CustomerId,
        month: &Month,
    ) -> Result<Option<CustomerVersions>, PortalError> {
        let Some(dir) = self.open_month(root, month)? else {
            return Ok(None);
        };
        self.versions_in_dir(&dir, &self.root.join(month.as_str()), customer)
    }

    /// [`versions_in`](Self::versions_in) with the month folder already open.
    fn versions_in_dir(
        &self,
        dir: &OwnedFd,
        dir_path: &Path,
        customer: &CustomerId,
    ) -> Result<Option<CustomerVersions>, PortalError> {
        let mut best: Option<CustomerVersions> = None;
        // The merged manifest and any shard manifest not merged yet: each customer's newest
        // entry wins, as in the billing run.
        for name in self.manifests_in(dir, dir_path)?.iter() {
            let index = self.manifest(dir, &dir_path.join(name), name)?;
            if let Some(v) = index.get(customer.as_str()) {
                if best.as_ref().is_none_or(|b| b.current < v.current) {
                    best = Some(v.clone());
                }
            }
        }
        Ok(best)
    }

    /// The merged and shard manifests of a month folder, from the cache while the folder is
    /// unchanged.
    fn manifests_in(&self, dir: &OwnedFd, path: &Path) -> Result<Arc<Vec<String>>, PortalError> {
        let meta = rustix::fs::fstat(dir).map_err(|e| PortalError::Io {
            path: path.to_owned(),
            cause: e.into(),
        })?;
        let stamp = Stamp {
            dev: meta.st_dev,
            ino: meta.st_ino,
            len: meta.st_size as u64,
            mtime: meta.st_mtime,
            mtime_nsec: meta.st_mtime_nsec as i64,
        };
        if let Some((s, names)) = self.manifest_names.lock().expect("cache lock").get(path) {
            if *s == stamp {
                return Ok(Arc::clone(names));
            }
        }
        let mut names: Vec<String> = self
            .names(dir, path)?
            .into_iter()
            .filter(|name| {
                name == MANIFEST || (name.starts_with("manifest.shard-") && name.ends_with(".json"))
            })
            .collect();
        names.sort();
        let names = Arc::new(names);
        // File times tick coarsely (a few ms): a change in the same tick as this listing would
        // leave the stamp as it is. A folder changed in the last two seconds is not cached
        // ("racy git"); the next request lists it again.
        let changed = std::time::UNIX_EPOCH
            + std::time::Duration::new(stamp.mtime.max(0) as u64, stamp.mtime_nsec as u32);
        if changed
            .elapsed()
            .is_ok_and(|age| age < std::time::Duration::from_secs(2))
        {
            return Ok(names);
        }
        let mut cache = self.manifest_names.lock().expect("cache lock");
        cache.retain(|p, _| p.exists());
        cache.insert(path.to_owned(), (stamp, Arc::clone(&names)));
        Ok(names)
    }

    fn manifest(&self, dir: &OwnedFd, path: &Path, name: &str) -> Result<Arc<Index>, PortalError> {
        let io = |cause| PortalError::Io {
            path: path.to_owned(),
            cause,
        };
        let Some(mut file) = open_file(dir, name, path)? else {
            tracing::warn!(path = %path.display(), "manifest is not a regular file (symlink?); ignored");
            return Ok(Arc::default());
        };
        let meta = file.metadata().map_err(io)?;
        let stamp = Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        };
        if let Some((s, index)) = self.cache.lock().expect("cache lock").get(path) {
            if *s == stamp {
                return Ok(Arc::clone(index));
            }
        }
        // Parsed outside the lock: two requests racing on a new manifest both parse it once.
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut bytes).map_err(io)?;
        let index = Arc::new(
            parse_manifest(&bytes).map_err(|detail| PortalError::Manifest {
                path: path.to_owned(),
                detail,
            })?,
        );
        let mut cache = self.cache.lock().expect("cache lock");
        // Forget manifests of months that are gone (retention), so the cache does not grow.
        cache.retain(|p, _| p.exists());
        cache.insert(path.to_owned(), (stamp, Arc::clone(&index)));
        Ok(index)
    }
}

fn open_dir<Fd: rustix::fd::AsFd>(dir: Fd, name: impl rustix::path::Arg) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// A regular file in `dir`, or `None` when it is missing, a symlink or anything but a regular
/// file. `NONBLOCK` so that a FIFO planted under a file's name cannot hang the open.
fn open_file(dir: &OwnedFd, name: &str, path: &Path) -> Result<Option<File>, PortalError> {
    let fd = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) => {
            tracing::warn!(path = %path.display(), "symlink refused");
            return Ok(None);
        }
        Err(e) => {
            return Err(PortalError::Io {
                path: path.to_owned(),
                cause: e.into(),
            })
        }
    };
    let file = File::from(fd);
    let meta = file.metadata().map_err(|cause| PortalError::Io {
        path: path.to_owned(),
        cause,
    })?;
    Ok(meta.is_file().then_some(file))
}

fn parse_manifest(bytes: &[u8]) -> Result<Index, String> {
    let raw: RawManifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let mut index = Index::with_capacity(raw.customers.len());
    for (customer, entry) in raw.customers {
        let check = |sha: &str| {
            // It becomes the ETag header: exactly 64 hex digits or the manifest is damaged.
            if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(sha.to_ascii_lowercase())
            } else {
                Err(format!(
                    "customer {customer}: sha256 {sha:?} is not 64 hex digits"
                ))
            }
        };
        let mut versions = Vec::with_capacity(entry.versions.len().max(1));
        for v in entry.versions {
            versions.push(VersionInfo {
                version: v.version,
                sha256: check(&v.sha256)?,
                csv_sha256: v.csv_sha256.as_deref().map(check).transpose()?,
                created: v.created,
            });
        }
        if !versions.iter().any(|v| v.version == entry.version) {
            versions.push(VersionInfo {
                version: entry.version,
                sha256: check(&entry.sha256)?,
                csv_sha256: entry.csv_sha256.as_deref().map(check).transpose()?,
                created: None,
            });
        }
        versions.sort_by_key(|v| v.version);
        versions.dedup_by_key(|v| v.version);
        index.insert(
            customer,
            CustomerVersions {
                current: entry.version,
                versions,
            },
        );
    }
    Ok(index)
}

/// The folder names that are months, newest first.
fn newest_first(names: &[String]) -> Vec<Month> {
    let mut months: Vec<Month> = names.iter().filter_map(|n| Month::parse(n)).collect();
    months.sort_by(|a, b| b.cmp(a));
    months
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const SHA2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn manifest(customers: serde_json::Value) -> String {
        serde_json::json!({
            "month": "2026-11", "config_version": "c", "counselling_version": "l",
            "generated_at": "2026-12-01T00:00:00Z", "run_ms": 1, "customers": customers,
            "a_field_billing_adds_later": true,
        })
        .to_string()
    }

    fn entry(current: u32, versions: &[(u32, &str)]) -> serde_json::Value {
        serde_json::json!({
            "connections": 1, "billed_connections": 1, "total": "1.0000", "total_printed": "1.00",
            "file": "x.pdf", "sha256": versions.iter().find(|v| v.0 == current).unwrap().1,
            "version": current, "pages": 1, "content_sha256": SHA1,
            "versions": versions.iter().map(|(v, sha)| serde_json::json!({
                "version": v, "file": format!("x.v{v}.pdf"), "sha256": sha, "created": "2026-12-01",
                "connections": 1, "total": "1.0000", "config_version": "c",
                "counselling_version": "l", "content_sha256": SHA1,
            })).collect::<Vec<_>>(),
        })
    }

    fn setup() -> (tempfile::TempDir, EvnStore) {
        let tmp = tempfile::tempdir().unwrap();
        let m = tmp.path().join("2026-11");
        std::fs::create_dir(&m).unwrap();
        std::fs::write(m.join("K1.v1.pdf"), b"%PDF-1 one").unwrap();
        std::fs::write(m.join("K1.v2.pdf"), b"%PDF-1 two").unwrap();
        std::fs::write(m.join("K1.pdf"), b"%PDF-1 two").unwrap();
        std::fs::write(
            m.join(MANIFEST),
            manifest(serde_json::json!({"K1": entry(2, &[(1, SHA1), (2, SHA2)])})),
        )
        .unwrap();
        let store = EvnStore::open(tmp.path()).unwrap();
        (tmp, store)
    }

    fn read(l: Located) -> Vec<u8> {
        match l.content {
            Content::File(mut f) => {
                let mut v = Vec::new();
                f.read_to_end(&mut v).unwrap();
                v
            }
            Content::Decrypted(v) => v,
        }
    }

    #[test]
    fn sealed_evns_are_served_decrypted_only_with_the_key_and_under_their_own_name() {
        let (tmp, store) = setup();
        let keys = Arc::new(Keyring::new(
            evn_keys::DataKey::from_bytes([4; 32]),
            Vec::new(),
        ));
        let m = tmp.path().join("2026-11");
        std::fs::write(
            m.join("K1.v2.pdf"),
            keys.seal(b"%PDF-1 two", "2026-11/K1.v2.pdf"),
        )
        .unwrap();
        // v1 was sealed under another name (copied from elsewhere): it must not open.
        std::fs::write(
            m.join("K1.v1.pdf"),
            keys.seal(b"%PDF-1 one", "2026-11/K2.v1.pdf"),
        )
        .unwrap();
        let k1 = CustomerId::parse("K1").unwrap();
        let nov = Month::parse("2026-11").unwrap();
        assert!(
            store.locate(&k1, &nov, Format::Pdf, None).is_err(),
            "no key, no data"
        );
        let store = store.with_keys(Some(Arc::clone(&keys)));
        let cur = store.locate(&k1, &nov, Format::Pdf, None).unwrap().unwrap();
        assert_eq!(cur.len, 10);
        assert_eq!(read(cur), b"%PDF-1 two");
        assert!(store.locate(&k1, &nov, Format::Pdf, Some(1)).is_err());
    }

    /// Issue 11: v1 was billed before CSVs existed (no CSV in the manifest, though a stray file
    /// lies there), v2 has one, sealed under its own name.
    #[test]
    fn csv_is_served_only_where_the_manifest_records_it() {
        let (tmp, store) = setup();
        let m = tmp.path().join("2026-11");
        let keys = Arc::new(Keyring::new(
            evn_keys::DataKey::from_bytes([5; 32]),
            Vec::new(),
        ));
        std::fs::write(m.join("K1.v1.csv"), b"stray").unwrap();
        std::fs::write(
            m.join("K1.v2.csv"),
            keys.seal(b"\xef\xbb\xbfNr.;Anschluss", "2026-11/K1.v2.csv"),
        )
        .unwrap();
        let mut e = entry(2, &[(1, SHA1), (2, SHA2)]);
        e["csv_sha256"] = SHA1.into();
        e["versions"][1]["csv_file"] = "K1.v2.csv".into();
        e["versions"][1]["csv_sha256"] = SHA1.into();
        std::fs::write(m.join(MANIFEST), manifest(serde_json::json!({ "K1": e }))).unwrap();
        let store = store.with_keys(Some(keys));
        let k1 = CustomerId::parse("K1").unwrap();
        let nov = Month::parse("2026-11").unwrap();
        let csv = store.locate(&k1, &nov, Format::Csv, None).unwrap().unwrap();
        assert_eq!((csv.version, csv.sha256.as_str()), (2, SHA1));
        assert_eq!(read(csv), "\u{feff}Nr.;Anschluss".as_bytes());
        let pdf = store.locate(&k1, &nov, Format::Pdf, None).unwrap().unwrap();
        assert_eq!(pdf.sha256, SHA2, "each format has its own digest");
        assert!(store
            .locate(&k1, &nov, Format::Csv, Some(1))
            .unwrap()
            .is_none());
        let v = store.versions(&k1, &nov).unwrap().unwrap();
        assert_eq!(v.get(1).unwrap().csv_sha256, None);
        assert_eq!(v.get(2).unwrap().sha256_of(Format::Csv), Some(SHA1));
    }

    #[test]
    fn current_and_earlier_versions() {
        let (_tmp, store) = setup();
        let k1 = CustomerId::parse("K1").unwrap();
        let nov = Month::parse("2026-11").unwrap();
        let cur = store.locate(&k1, &nov, Format::Pdf, None).unwrap().unwrap();
        assert_eq!((cur.version, cur.sha256.as_str(), cur.len), (2, SHA2, 10));
        assert_eq!(read(cur), b"%PDF-1 two");
        let v1 = store
            .locate(&k1, &nov, Format::Pdf, Some(1))
            .unwrap()
            .unwrap();
        assert_eq!(read(v1), b"%PDF-1 one");
        assert!(store
            .locate(&k1, &nov, Format::Pdf, Some(3))
            .unwrap()
            .is_none());
        let dec = Month::parse("2026-12").unwrap();
        assert!(store
            .locate(&k1, &dec, Format::Pdf, None)
            .unwrap()
            .is_none());
        let other = CustomerId::parse("K2").unwrap();
        assert!(store
            .locate(&other, &nov, Format::Pdf, None)
            .unwrap()
            .is_none());
        let months = store.months(&k1).unwrap();
        assert_eq!(months.len(), 1);
        assert_eq!(months[0].1.current, 2);
        assert_eq!(months[0].1.versions.len(), 2);
    }

    #[test]
    fn a_file_not_in_any_manifest_is_not_served() {
        let (tmp, store) = setup();
        // A crashed run's version 3: on disk, never recorded.
        std::fs::write(tmp.path().join("2026-11/K1.v3.pdf"), b"%PDF-1 three").unwrap();
        let k1 = CustomerId::parse("K1").unwrap();
        let nov = Month::parse("2026-11").unwrap();
        assert!(store
            .locate(&k1, &nov, Format::Pdf, Some(3))
            .unwrap()
            .is_none());
        assert_eq!(
            store
                .locate(&k1, &nov, Format::Pdf, None)
                .unwrap()
                .unwrap()
                .version,
            2
        );
    }

    #[test]
    fn a_cached_folder_listing_sees_a_shard_manifest_added_later() {
        let (tmp, store) = setup();
        let m = tmp.path().join("2026-11");
        // An old folder: its listing is cached.
        let old = std::process::Command::new("touch")
            .args(["-d", "2026-01-01 00:00:00"])
            .arg(&m)
            .status()
            .unwrap();
        assert!(old.success());
        let (k1, nov) = (
            CustomerId::parse("K1").unwrap(),
            Month::parse("2026-11").unwrap(),
        );
        let l = store.locate(&k1, &nov, Format::Pdf, None).unwrap().unwrap();
        assert_eq!(read(l), b"%PDF-1 two");
        assert_eq!(store.manifest_names.lock().unwrap().len(), 1, "cached");
        // A shard run adds its manifest: the folder's stamp changes, the listing is read again.
        std::fs::write(m.join("K1.v3.pdf"), b"%PDF-1 three").unwrap();
        std::fs::write(
            m.join("manifest.shard-1-of-2.json"),
            manifest(serde_json::json!({"K1": entry(3, &[(1, SHA1), (2, SHA2), (3, SHA1)])})),
        )
        .unwrap();
        let l = store.locate(&k1, &nov, Format::Pdf, None).unwrap().unwrap();
        assert_eq!(read(l), b"%PDF-1 three");
    }

    #[test]
    fn shard_manifest_with_a_newer_version_wins() {
        let (tmp, store) = setup();
        let m = tmp.path().join("2026-11");
        std::fs::write(m.join("K1.v3.pdf"), b"%PDF-1 three").unwrap();
        std::fs::write(
            m.join("manifest.shard-0-of-2.json"),
            manifest(serde_json::json!({"K1": entry(3, &[(1, SHA1), (2, SHA2), (3, SHA1)])})),
        )
        .unwrap();
        let k1 = CustomerId::parse("K1").unwrap();
        let nov = Month::parse("2026-11").unwrap();
        let l = store.locate(&k1, &nov, Format::Pdf, None).unwrap().unwrap();
        assert_eq!(read(l), b"%PDF-1 three");
    }

    #[test]
    fn symlinks_are_refused_wherever_they_are() {
        let (tmp, store) = setup();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.pdf"), b"%PDF-1 secret").unwrap();
        let m = tmp.path().join("2026-11");
        // The version file itself.
        std::fs::remove_file(m.join("K1.v2.pdf")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.pdf"), m.join("K1.v2.pdf")).unwrap();
        let k1 = CustomerId::parse("K1").unwrap();
        let nov = Month::parse("2026-11").unwrap();
        assert!(store
            .locate(&k1, &nov, Format::Pdf, None)
            .unwrap()
            .is_none());
        // A whole month folder.
        let dec = outside.path().join("2026-12");
        std::fs::create_dir(&dec).unwrap();
        std::fs::copy(m.join("K1.v1.pdf"), dec.join("K1.v2.pdf")).unwrap();
        std::fs::copy(m.join(MANIFEST), dec.join(MANIFEST)).unwrap();
        std::os::unix::fs::symlink(&dec, tmp.path().join("2026-12")).unwrap();
        let d = Month::parse("2026-12").unwrap();
        assert!(store.locate(&k1, &d, Format::Pdf, None).unwrap().is_none());
        assert!(store.months(&k1).unwrap().iter().all(|(m, _)| m != &d));
    }

    #[test]
    fn a_fifo_does_not_hang_the_open() {
        let (tmp, store) = setup();
        let m = tmp.path().join("2026-11");
        std::fs::remove_file(m.join("K1.v2.pdf")).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(m.join("K1.v2.pdf"))
            .status()
            .unwrap();
        assert!(status.success());
        let k1 = CustomerId::parse("K1").unwrap();
        let nov = Month::parse("2026-11").unwrap();
        assert!(store
            .locate(&k1, &nov, Format::Pdf, None)
            .unwrap()
            .is_none());
    }

    #[test]
    fn damaged_manifest_is_an_error_naming_the_file() {
        let (tmp, store) = setup();
        std::fs::write(tmp.path().join("2026-11").join(MANIFEST), b"{not json").unwrap();
        let k1 = CustomerId::parse("K1").unwrap();
        let e = store.months(&k1).unwrap_err();
        assert!(
            e.to_string().contains("manifest.json: damaged manifest"),
            "{e}"
        );
        let bad_sha = manifest(serde_json::json!({"K1": entry(1, &[(1, "\"\r\nX: y")])}));
        std::fs::write(tmp.path().join("2026-11").join(MANIFEST), bad_sha).unwrap();
        assert!(store.months(&k1).is_err());
    }

    #[test]
    fn a_rewritten_manifest_is_read_again() {
        let (tmp, store) = setup();
        let k1 = CustomerId::parse("K1").unwrap();
        let nov = Month::parse("2026-11").unwrap();
        assert_eq!(store.versions(&k1, &nov).unwrap().unwrap().current, 2);
        let m = tmp.path().join("2026-11");
        std::fs::write(m.join("K1.v3.pdf"), b"%PDF-1 three").unwrap();
        // As the billing run does it: a new file renamed over the old one.
        std::fs::write(
            m.join("manifest.tmp"),
            manifest(serde_json::json!({"K1": entry(3, &[(1, SHA1), (2, SHA2), (3, SHA1)])})),
        )
        .unwrap();
        std::fs::rename(m.join("manifest.tmp"), m.join(MANIFEST)).unwrap();
        assert_eq!(store.versions(&k1, &nov).unwrap().unwrap().current, 3);
    }
}
