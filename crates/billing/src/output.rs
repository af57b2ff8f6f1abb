//! Output files appear whole or not at all, and survive a power cut once the run says so.
//!
//! A batch of customers is staged as temporary files in hidden staging folders next to the
//! month's files (one per rendering thread: two threads creating files in one folder spent a
//! tenth of the run spinning on its lock), made durable together (one `syncfs` on Linux
//! instead of an fsync per file: at 0.7 ms an fsync, four files per customer would cost more
//! than rendering them), then linked into place, and the folder is fsynced. A numbered
//! version is never replaced: it is published by `link(2)`, which fails on a taken name where
//! `rename(2)` would silently replace another run's published version. The unnumbered
//! "current" copies (`<id>.pdf`, `<id>.csv`) are hard links to the numbered version files,
//! swapped in by rename: no second write of the bytes, and a reader sees the old or the new
//! version, never a mix.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::BillError;

/// A file written under a temporary name, waiting to be renamed to `name`.
pub(crate) struct Staged {
    tmp: PathBuf,
    name: String,
}

/// What one customer's new version puts in place.
#[derive(Default)]
pub(crate) struct Publication {
    /// Numbered version files (`<id>.v<N>.pdf`, `<id>.v<N>.csv`).
    pub files: Vec<Staged>,
    /// (numbered file, current copy) pairs: the current copy then names that version.
    pub current: Vec<(String, String)>,
}

fn tmp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.{}.tmp", std::process::id()))
}

/// Prefix of this process's staging folders in a month folder.
fn staging_prefix() -> String {
    format!(".staging-{}-", std::process::id())
}

/// Writes `bytes` to a staging folder of the calling thread, to become `dir/name` (not yet
/// durable: see [`publish`]).
pub(crate) fn stage(dir: &Path, name: &str, bytes: &[u8]) -> Result<Staged, BillError> {
    let staging = dir.join(format!(
        "{}{}",
        staging_prefix(),
        rayon::current_thread_index().map_or_else(|| "main".to_owned(), |i| i.to_string())
    ));
    match std::fs::create_dir(&staging) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(BillError::io(&staging, e)),
    }
    let tmp = staging.join(name);
    let written = File::create(&tmp).and_then(|mut f| f.write_all(bytes));
    if let Err(e) = written {
        std::fs::remove_file(&tmp).ok();
        return Err(BillError::io(&dir.join(name), e));
    }
    Ok(Staged {
        tmp,
        name: name.to_owned(),
    })
}

/// Removes staged files of a batch that will not be published.
pub(crate) fn discard(publications: Vec<Publication>) {
    for p in publications {
        for f in p.files {
            std::fs::remove_file(&f.tmp).ok();
        }
    }
}

/// Makes the staged files durable, puts them in place under names that must be free
/// ([`BillError::VersionTaken`] otherwise), points the current copies at them, and makes the
/// folder durable.
pub(crate) fn publish(dir: &Path, publications: Vec<Publication>) -> Result<(), BillError> {
    if publications.is_empty() {
        return Ok(());
    }
    let staged: Vec<&Staged> = publications.iter().flat_map(|p| &p.files).collect();
    if let Err(e) = durable(dir, &staged) {
        discard(publications);
        return Err(e);
    }
    for (i, f) in staged.iter().enumerate() {
        if let Err(e) = place_new(&f.tmp, &dir.join(&f.name)) {
            for rest in &staged[i..] {
                std::fs::remove_file(&rest.tmp).ok();
            }
            return Err(e);
        }
    }
    sync_dir(dir)?;
    for p in &publications {
        for (versioned, current) in &p.current {
            link_current(dir, versioned, current)?;
        }
    }
    sync_dir(dir)
}

/// Moves the durable staged file `tmp` to `to`, which must not exist: a hard link, then the
/// temporary name goes. Where hard links are not supported, a copy created with `O_EXCL`
/// (exclusive as well) and fsynced. `renameat2(RENAME_NOREPLACE)` would be one call, but NFS
/// (a `ReadWriteMany` volume) does not support it; `link(2)` is exclusive there too.
fn place_new(tmp: &Path, to: &Path) -> Result<(), BillError> {
    let taken = || BillError::VersionTaken {
        path: to.to_owned(),
    };
    match std::fs::hard_link(tmp, to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(taken()),
        Err(_) => {
            let mut out = match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(to)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(taken()),
                Err(e) => return Err(BillError::io(to, e)),
            };
            let copied = File::open(tmp)
                .and_then(|mut from| std::io::copy(&mut from, &mut out))
                .and_then(|_| out.sync_all());
            if let Err(e) = copied {
                // Ours (created exclusively just now), and incomplete.
                std::fs::remove_file(to).ok();
                return Err(BillError::io(to, e));
            }
        }
    }
    // Published by now; a staged name left behind goes with the staging folder (`cleanup`).
    std::fs::remove_file(tmp).ok();
    Ok(())
}

/// Writes one file atomically and durably (the manifest): `write` fills a temporary file
/// (buffered, so a large manifest is never held as one string), fsync, rename. The caller
/// fsyncs the folder.
pub(crate) fn write_atomic(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), BillError> {
    let tmp = tmp_path(dir, name);
    let result = (|| {
        let mut w = std::io::BufWriter::with_capacity(256 * 1024, File::create(&tmp)?);
        write(&mut w)?;
        let f = w
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))
    })();
    result.map_err(|e| {
        std::fs::remove_file(&tmp).ok();
        BillError::io(&dir.join(name), e)
    })
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), BillError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| BillError::io(dir, e))
}

#[cfg(target_os = "linux")]
fn durable(dir: &Path, _staged: &[&Staged]) -> Result<(), BillError> {
    // One flush of the whole file system: every staged file of the batch (and whatever else
    // is dirty there) reaches the disk. Since Linux 5.8 it reports write-back errors.
    let f = File::open(dir).map_err(|e| BillError::io(dir, e))?;
    rustix::fs::syncfs(&f).map_err(|e| BillError::io(dir, e.into()))
}

#[cfg(not(target_os = "linux"))]
fn durable(_dir: &Path, staged: &[&Staged]) -> Result<(), BillError> {
    for f in staged {
        File::open(&f.tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| BillError::io(&f.tmp, e))?;
    }
    Ok(())
}

/// Removes this process's staging folders (empty unless a batch failed half-way).
pub(crate) fn cleanup(dir: &Path) {
    let prefix = staging_prefix();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix))
        {
            std::fs::remove_dir_all(e.path()).ok();
        }
    }
}

/// `current` becomes another name of `versioned`: a hard link (under a temporary name,
/// renamed over the old copy, if there is one). Where hard links are not supported, a
/// durable copy instead.
fn link_current(dir: &Path, versioned: &str, current: &str) -> Result<(), BillError> {
    let from = dir.join(versioned);
    // The first version: nothing to replace, one link does it.
    match std::fs::hard_link(&from, dir.join(current)) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(_) => {} // no hard links here: the copy below
    }
    let tmp = tmp_path(dir, current);
    std::fs::remove_file(&tmp).ok();
    let linked = std::fs::hard_link(&from, &tmp).or_else(|_| {
        std::fs::copy(&from, &tmp)?;
        File::open(&tmp)?.sync_all()
    });
    linked
        .and_then(|()| std::fs::rename(&tmp, dir.join(current)))
        .map_err(|e| {
            std::fs::remove_file(&tmp).ok();
            BillError::io(&dir.join(current), e)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_files_replace_the_current_copy_and_leave_no_temporaries() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for (v, text) in [(1, "eins"), (2, "zwei")] {
            let name = format!("K1.v{v}.pdf");
            let p = Publication {
                files: vec![stage(dir, &name, text.as_bytes()).unwrap()],
                current: vec![(name, "K1.pdf".into())],
            };
            // Staged but not published: invisible under its final name.
            assert!(!dir.join(format!("K1.v{v}.pdf")).exists());
            publish(dir, vec![p]).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(dir.join("K1.v1.pdf")).unwrap(),
            "eins"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("K1.v2.pdf")).unwrap(),
            "zwei"
        );
        assert_eq!(std::fs::read_to_string(dir.join("K1.pdf")).unwrap(), "zwei");
        let staged = stage(dir, "K2.v1.pdf", b"x").unwrap();
        discard(vec![Publication {
            files: vec![staged],
            current: vec![],
        }]);
        cleanup(dir);
        let names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    }

    /// Two runs that chose the same version number: the second one's publish fails and the
    /// first one's file stays (with `rename` it was replaced, and the manifest that listed it
    /// then described other bytes).
    #[test]
    fn a_numbered_version_is_never_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let publication = |text: &str| Publication {
            files: vec![stage(dir, "K1.v1.pdf", text.as_bytes()).unwrap()],
            current: vec![("K1.v1.pdf".into(), "K1.pdf".into())],
        };
        publish(dir, vec![publication("first run")]).unwrap();
        let e = publish(dir, vec![publication("second run")]).unwrap_err();
        assert!(
            matches!(&e, BillError::VersionTaken { path } if path.ends_with("K1.v1.pdf")),
            "{e}"
        );
        assert!(e.to_string().contains("K1.v1.pdf"), "{e}");
        assert_eq!(e.exit_code(), 1);
        for name in ["K1.v1.pdf", "K1.pdf"] {
            assert_eq!(
                std::fs::read_to_string(dir.join(name)).unwrap(),
                "first run",
                "{name}"
            );
        }
        cleanup(dir);
        let names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
