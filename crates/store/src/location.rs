//! Where stored data lives (`--data`): a local folder (the default, INTERFACES §3), or an object
//! store named by a URL: `s3://bucket/prefix` (S3 or an S3-compatible store such as MinIO or R2),
//! `file:///abs/path` (a local folder through the object store protocol: for tests and for
//! checking the protocol without S3) and `memory://name/prefix` (in this process only: tests).
//!
//! The layout under an object store prefix is the local one: `cdrs/billing_month=YYYY-MM/`,
//! `_staging/<writer>/` and `_ingest/<topic>/<partition>/`; only the commit protocol differs
//! (no rename, see [`crate::commit`]). The object store API is async; the store's callers are
//! not (ingest calls it in `block_in_place`, billing from rayon), so every call is run on one
//! process-wide IO runtime and awaited from the calling thread.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::{Path as ObjPath, PathPart};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use evn_keys::Keyring;
use evn_rating::BillingMonth;

use crate::{StoreError, StoredCall, CDRS_DIR};

/// `--data`: a local folder or an object store URL.
#[derive(Clone, Debug)]
pub enum Location {
    Local(PathBuf),
    Object(ObjectData),
}

/// An object store and the prefix under which the data lives.
#[derive(Clone)]
pub struct ObjectData {
    store: Arc<dyn ObjectStore>,
    prefix: ObjPath,
    /// As given, without a trailing slash: for messages.
    url: String,
}

impl fmt::Debug for ObjectData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectData")
            .field("url", &self.url)
            .finish()
    }
}

/// One listed object: its key relative to the prefix and when it was last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub modified: DateTime<Utc>,
}

impl Location {
    /// A URL (`scheme://…`) names an object store; anything else is a local path, as before,
    /// unless it starts like a URL missing a slash (`s3:/bucket`): taken as a local path that
    /// would quietly write to a folder named `s3:` instead of the bucket.
    pub fn parse(s: &str) -> Result<Location, StoreError> {
        if s.contains("://") {
            return ObjectData::open(s).map(Location::Object);
        }
        if let Some(scheme) = scheme_like(s) {
            return Err(StoreError::Location {
                url: s.to_owned(),
                detail: format!(
                    "looks like a URL with a slash missing: write {scheme}://… for an object store, or ./{s} for a local folder named `{scheme}:`"
                ),
            });
        }
        Ok(Location::Local(PathBuf::from(s)))
    }

    pub fn local(&self) -> Option<&Path> {
        match self {
            Location::Local(p) => Some(p),
            Location::Object(_) => None,
        }
    }

    /// Months present under `cdrs/`, sorted.
    pub fn list_months(&self) -> Result<Vec<BillingMonth>, StoreError> {
        match self {
            Location::Local(p) => crate::list_months(p),
            Location::Object(o) => {
                let mut months: Vec<BillingMonth> = o
                    .list_dirs(CDRS_DIR)?
                    .iter()
                    .filter_map(|d| d.strip_prefix("billing_month=")?.parse().ok())
                    .collect();
                months.sort();
                Ok(months)
            }
        }
    }

    /// The month's folder (local) or prefix (URL), for messages.
    pub fn month_display(&self, month: BillingMonth) -> PathBuf {
        match self {
            Location::Local(p) => crate::month_dir(p, month),
            Location::Object(o) => PathBuf::from(o.display(&month_key(month))),
        }
    }

    /// The visible Parquet files of one month, sorted by name: paths (local) or keys relative
    /// to the prefix (URL); hand them back to [`Location::read_file_with`].
    pub fn list_month_files(&self, month: BillingMonth) -> Result<Vec<PathBuf>, StoreError> {
        match self {
            Location::Local(p) => crate::list_month_files(p, month),
            Location::Object(o) => {
                // A change record listed here can be finished and deleted before it is read:
                // then the listing is stale, and the month is listed again.
                for _ in 0..3 {
                    if let Some(files) = o.month_files(month)? {
                        return Ok(files);
                    }
                }
                Err(StoreError::Location {
                    url: o.display(&month_key(month)),
                    detail: "the month keeps changing while it is listed; try again".into(),
                })
            }
        }
    }

    /// An encrypted file (Parquet modular encryption's `PARE` footer), if the location holds
    /// one: a data location that holds encrypted data must not be written in the clear by a
    /// process started without the key. The first and last file of every month are looked at
    /// (a tail read each), newest month first: a key is never taken from a location that had
    /// one, so a month written with it shows it in any of its files, while a plain month (a
    /// future-dated one from a switch clock years ahead, one from before the key) says nothing
    /// about the others.
    pub fn encrypted_file(&self) -> Result<Option<PathBuf>, StoreError> {
        for month in self.list_months()?.into_iter().rev() {
            let files = self.list_month_files(month)?;
            for file in files.first().into_iter().chain(files.last()) {
                if self.is_encrypted(file)? {
                    return Ok(Some(match self {
                        Location::Local(_) => file.clone(),
                        Location::Object(o) => PathBuf::from(o.display(&file.to_string_lossy())),
                    }));
                }
            }
        }
        Ok(None)
    }

    fn is_encrypted(&self, file: &Path) -> Result<bool, StoreError> {
        let tail = match self {
            Location::Local(_) => {
                use std::io::{Read, Seek, SeekFrom};
                let mut f = std::fs::File::open(file).map_err(|e| StoreError::io(file, e))?;
                let mut tail = [0u8; 4];
                f.seek(SeekFrom::End(-4))
                    .and_then(|_| f.read_exact(&mut tail))
                    .map_err(|e| StoreError::io(file, e))?;
                tail.to_vec()
            }
            Location::Object(o) => o.tail(&file.to_string_lossy(), 4)?,
        };
        Ok(tail == b"PARE")
    }

    /// Streams the rows of a file [`Location::list_month_files`] returned.
    pub fn read_file_with(
        &self,
        file: &Path,
        keys: Option<&Arc<Keyring>>,
        sink: &mut dyn FnMut(StoredCall),
    ) -> Result<(), StoreError> {
        self.read_file_with_info(file, keys, &mut |_| {}, sink)
    }

    /// [`Location::read_file_with`], handing the file's [`crate::FileInfo`] to `info` first.
    pub fn read_file_with_info(
        &self,
        file: &Path,
        keys: Option<&Arc<Keyring>>,
        info: &mut dyn FnMut(crate::FileInfo),
        sink: &mut dyn FnMut(StoredCall),
    ) -> Result<(), StoreError> {
        match self {
            Location::Local(_) => crate::read_file_with_info(file, keys, info, sink),
            Location::Object(o) => {
                let key = file.to_string_lossy();
                let bytes = o.get(&key)?.ok_or_else(|| StoreError::Object {
                    path: o.display(&key),
                    source: object_store::Error::NotFound {
                        path: key.to_string(),
                        source: "listed but gone (deleted by retention?)".into(),
                    },
                })?;
                crate::read_bytes_with_info(Path::new(&o.display(&key)), bytes, keys, info, sink)
            }
        }
    }

    /// Every stored call of a month, decrypting with `keys` where a file is encrypted.
    pub fn read_month_with(
        &self,
        month: BillingMonth,
        keys: Option<&Arc<Keyring>>,
    ) -> Result<Vec<StoredCall>, StoreError> {
        let mut rows = Vec::new();
        for file in self.list_month_files(month)? {
            self.read_file_with(&file, keys, &mut |c| rows.push(c))?;
        }
        Ok(rows)
    }
}

impl FromStr for Location {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Location::parse(s)
    }
}

impl From<PathBuf> for Location {
    fn from(p: PathBuf) -> Self {
        Location::Local(p)
    }
}

impl From<&Path> for Location {
    fn from(p: &Path) -> Self {
        Location::Local(p.to_owned())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Object(o) => f.write_str(&o.url),
        }
    }
}

/// The scheme of a path whose first component is a URL scheme and its colon (`s3:`,
/// `file:`): what `s3:/bucket` or `file:/abs` starts with.
fn scheme_like(path: &str) -> Option<&str> {
    let first = path.split('/').next()?;
    let scheme = first.strip_suffix(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

pub(crate) fn month_key(month: BillingMonth) -> String {
    format!("{CDRS_DIR}/billing_month={month}")
}

/// Runs object store IO on one process-wide runtime and waits for it on the calling thread,
/// whether that thread is a tokio worker in `block_in_place`, a rayon thread or a plain test.
/// The runtime is never dropped (dropping one inside async code panics).
fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("evn-object-io")
            .enable_all()
            .build()
            .expect("object store IO runtime")
    });
    match futures::executor::block_on(runtime.spawn(future)) {
        Ok(out) => out,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// `memory://NAME` stores live as long as the process, shared by every open of the same NAME.
fn memory_store(name: &str) -> Arc<dyn ObjectStore> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let mut stores = STORES
        .get_or_init(Default::default)
        .lock()
        .expect("memory store registry");
    Arc::clone(
        stores
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(object_store::memory::InMemory::new())),
    )
}

impl ObjectData {
    /// Opens `s3://bucket/prefix` (credentials and endpoint from the usual `AWS_*` variables:
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
    /// `AWS_ENDPOINT` for an S3-compatible store, `AWS_ALLOW_HTTP=true` for a plain-HTTP one),
    /// `file:///path` or `memory://name/prefix`.
    pub fn open(url: &str) -> Result<ObjectData, StoreError> {
        let bad = |detail: String| StoreError::Location {
            url: url.to_owned(),
            detail,
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(format!("not a URL: {e}")))?;
        let trimmed = url.trim_end_matches('/').to_owned();
        let (store, prefix): (Arc<dyn ObjectStore>, &str) = match parsed.scheme() {
            "memory" => (
                memory_store(parsed.host_str().unwrap_or("")),
                parsed.path(),
            ),
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| bad("not an absolute local path".into()))?;
                std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| bad(e.to_string()))?
                    .with_fsync(true)
                    // Like S3: a month whose last object is deleted is gone from listings.
                    .with_automatic_cleanup(true);
                (Arc::new(fs), "")
            }
            "s3" | "s3a" => {
                // reqwest is built without a TLS provider of its own: use the workspace's (ring).
                let _ = rustls::crypto::ring::default_provider().install_default();
                let s3 = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                (Arc::new(s3), parsed.path())
            }
            other => {
                return Err(bad(format!(
                    "storage scheme `{other}` is not supported: use a local path, s3://bucket/prefix, file:///path or memory://name"
                )))
            }
        };
        Ok(ObjectData {
            store,
            prefix: key_path(&ObjPath::default(), prefix),
            url: trimmed,
        })
    }

    /// An object store opened elsewhere (tests), with `prefix` under it.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, url: &str) -> ObjectData {
        ObjectData {
            store,
            prefix: key_path(&ObjPath::default(), prefix),
            url: url.trim_end_matches('/').to_owned(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// `url/key`, for messages.
    pub fn display(&self, key: &str) -> String {
        format!("{}/{}", self.url, key)
    }

    fn path(&self, key: &str) -> ObjPath {
        key_path(&self.prefix, key)
    }

    fn err(&self, key: &str, source: object_store::Error) -> StoreError {
        StoreError::Object {
            path: self.display(key),
            source,
        }
    }

    /// The object's bytes, or None if there is none.
    pub fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let (store, path) = (Arc::clone(&self.store), self.path(key));
        let got = block_on(async move {
            match store.get(&path).await {
                Ok(r) => r.bytes().await,
                Err(e) => Err(e),
            }
        });
        match got {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(key, e)),
        }
    }

    /// The last `n` bytes of an object (a ranged GET).
    pub fn tail(&self, key: &str, n: u64) -> Result<Vec<u8>, StoreError> {
        let (store, path) = (Arc::clone(&self.store), self.path(key));
        let got = block_on(async move {
            let opts = object_store::GetOptions {
                range: Some(object_store::GetRange::Suffix(n)),
                ..Default::default()
            };
            match store.get_opts(&path, opts).await {
                Ok(r) => r.bytes().await,
                Err(e) => Err(e),
            }
        });
        got.map(|b| b.to_vec()).map_err(|e| self.err(key, e))
    }

    /// Writes an object whole. With [`PutMode::Create`] the write is exclusive: an existing
    /// object makes it fail with `object_store::Error::AlreadyExists` (S3: `If-None-Match: *`).
    pub fn put(&self, key: &str, bytes: Bytes, mode: PutMode) -> Result<(), StoreError> {
        self.put_raw(key, bytes, mode).map_err(|e| self.err(key, e))
    }

    pub(crate) fn put_raw(
        &self,
        key: &str,
        bytes: Bytes,
        mode: PutMode,
    ) -> Result<(), object_store::Error> {
        let (store, path) = (Arc::clone(&self.store), self.path(key));
        block_on(async move {
            let opts = PutOptions {
                mode,
                ..PutOptions::default()
            };
            store.put_opts(&path, PutPayload::from(bytes), opts).await
        })
        .map(|_| ())
    }

    /// Server-side copy; Ok(false) if `from` does not exist.
    pub fn copy(&self, from: &str, to: &str) -> Result<bool, StoreError> {
        let (store, src, dst) = (Arc::clone(&self.store), self.path(from), self.path(to));
        match block_on(async move { store.copy(&src, &dst).await }) {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(from, e)),
        }
    }

    pub fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let (store, path) = (Arc::clone(&self.store), self.path(key));
        match block_on(async move { store.head(&path).await }) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(key, e)),
        }
    }

    /// Deletes an object; a missing one is not an error.
    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        let (store, path) = (Arc::clone(&self.store), self.path(key));
        match block_on(async move { store.delete(&path).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(key, e)),
        }
    }

    /// Every object under `dir` (recursively), keys relative to the prefix.
    pub fn list(&self, dir: &str) -> Result<Vec<Listed>, StoreError> {
        let (store, path) = (Arc::clone(&self.store), self.path(dir));
        let metas = block_on(async move {
            store
                .list(Some(&path))
                .try_collect::<Vec<object_store::ObjectMeta>>()
                .await
        })
        .map_err(|e| self.err(dir, e))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                Some(Listed {
                    key: self.relative(&m.location)?,
                    modified: m.last_modified,
                })
            })
            .collect())
    }

    /// The names of the "folders" directly under `dir`.
    pub fn list_dirs(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let (store, path) = (Arc::clone(&self.store), self.path(dir));
        let result = block_on(async move { store.list_with_delimiter(Some(&path)).await })
            .map_err(|e| self.err(dir, e))?;
        Ok(result
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect())
    }

    /// The visible Parquet files of a month, sorted, with a change under way applied (see
    /// [`crate::month_change`]); None if the listing went stale while it was read.
    fn month_files(&self, month: BillingMonth) -> Result<Option<Vec<PathBuf>>, StoreError> {
        let dir = month_key(month);
        let mut files = Vec::new();
        let mut changing = false;
        for l in self.list(&dir)? {
            // Only direct children: `cdrs/billing_month=M/<name>`.
            let Some(name) = l.key.strip_prefix(&dir).and_then(|r| r.strip_prefix('/')) else {
                continue;
            };
            if name == crate::month_change::CHANGE_FILE {
                changing = true;
            } else if !name.contains('/')
                && name.ends_with(".parquet")
                && !name.starts_with('.')
                && !name.starts_with('_')
            {
                files.push(name.to_owned());
            }
        }
        let change = if changing {
            match crate::month_change::read_change(self, month)? {
                Some(change) => Some(change),
                None => return Ok(None),
            }
        } else {
            None
        };
        let mut out: Vec<PathBuf> = files
            .into_iter()
            .filter_map(|name| {
                use crate::month_change::{rewrite_key, FileChange};
                let key = match change.as_ref().and_then(|c| c.files.get(&name)) {
                    None => format!("{dir}/{name}"),
                    Some(FileChange::Replace) => rewrite_key(month, &name),
                    Some(FileChange::Delete) => return None,
                };
                Some(PathBuf::from(key))
            })
            .collect();
        // Sorted by file name, wherever the current version of a file lives.
        out.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        Ok(Some(out))
    }

    fn relative(&self, location: &ObjPath) -> Option<String> {
        let parts: Vec<String> = location
            .prefix_match(&self.prefix)?
            .map(|p| p.as_ref().to_owned())
            .collect();
        Some(parts.join("/"))
    }
}

/// `base` + the `/`-separated parts of `key` (empty parts dropped).
fn key_path(base: &ObjPath, key: &str) -> ObjPath {
    base.parts()
        .chain(
            key.split('/')
                .filter(|p| !p.is_empty())
                .map(|p| PathPart::from(p.to_owned())),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, &str>) {
        let got = match Location::parse(input) {
            Ok(Location::Local(p)) => Ok(format!("local {}", p.display())),
            Ok(Location::Object(o)) => Ok(format!("object {}", o.url())),
            Err(e) => Err(e.to_string()),
        };
        match (got, expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{input}"),
            (Err(got), Err(want)) => assert!(got.contains(want), "{input}: {got}"),
            (got, want) => panic!("{input}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn a_url_missing_a_slash_is_not_a_local_folder() {
        check(
            "s3:/bad",
            Err("s3:/bad: looks like a URL with a slash missing: write s3://"),
        );
        check("gs:/bucket/prefix", Err("write gs://"));
        check("az:/container", Err("write az://"));
        check("file:/srv/evn", Err("write file://"));
        check("http:/host", Err("write http://"));
        check("s3:", Err("./s3:"));
        check("S3+x.y-z:/b", Err("write S3+x.y-z://"));
    }

    #[test]
    fn local_paths_and_urls_parse_as_before() {
        check("data", Ok("local data"));
        check("/srv/evn/data", Ok("local /srv/evn/data"));
        check("./s3:/bad", Ok("local ./s3:/bad"));
        check("data/s3:/x", Ok("local data/s3:/x"));
        check("backup:2026/data", Ok("local backup:2026/data"));
        check("1a:/x", Ok("local 1a:/x"));
        check(":/x", Ok("local :/x"));
        check(
            "memory://parse-test/prefix",
            Ok("object memory://parse-test/prefix"),
        );
        check("ftp://host/x", Err("storage scheme `ftp` is not supported"));
    }
}
