//! One billing run per month folder at a time: two runs of the same month would both number
//! their new versions past what is on disk, publish the same names and each write a manifest
//! without the other's versions.
//!
//! The lock is `flock(2)` on a hidden file in the month folder, taken without waiting and held
//! until the run ends. An OS lock rather than "the lock file exists": the kernel drops it when
//! the process dies (SIGKILL, OOM kill, a node reboot), so a killed run never blocks the next
//! one. On NFS (a `ReadWriteMany` volume) Linux maps `flock` to NFS byte-range locks, which
//! the server enforces between clients.
//!
//! Shards of a month run at the same time by design (an Indexed Job, one manifest each) and
//! bill disjoint customers, so the month lock is two-level: a run without `--shard` takes
//! [`MONTH_LOCK`] exclusively; a shard takes it shared plus its own shard lock exclusively.
//! Shards of one layout run together; a second run of a shard, or a whole-month run beside
//! any shard, is refused. Two layouts at once (0/4 beside 0/2) are not told apart; their
//! overlapping customers then meet [`crate::output`]'s refusal to replace a numbered version.
//!
//! The lock file is left in place after the run (an empty hidden file the portal, the object
//! store upload and retention ignore), except in a month folder this run created and leaves
//! empty.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use crate::{BillError, Shard};

/// The month-wide lock file, in the month folder.
pub const MONTH_LOCK: &str = ".bill.lock";

/// Held locks of one billing run; dropping it releases them (closing the files).
#[derive(Debug)]
pub(crate) struct MonthLock {
    dir: PathBuf,
    /// Created by this run (and `out` too, if `created_out`): removed again if the run ends
    /// before writing anything into it ([`MonthLock::abandon`]).
    created_dir: bool,
    created_out: bool,
    /// (path, open file holding the lock); the files must stay open.
    held: Vec<(PathBuf, File)>,
}

impl MonthLock {
    /// Creates `out/YYYY-MM/` if needed and takes the run's locks, or fails at once with
    /// [`BillError::RunActive`] naming the lock file that is held.
    pub(crate) fn acquire(
        out: &Path,
        dir: &Path,
        shard: Option<Shard>,
    ) -> Result<MonthLock, BillError> {
        let created_out = !out.exists();
        let created_dir = !dir.exists();
        std::fs::create_dir_all(dir).map_err(|e| BillError::io(dir, e))?;
        let mut lock = MonthLock {
            dir: dir.to_owned(),
            created_dir,
            created_out,
            held: Vec::new(),
        };
        let taken = (|| match shard {
            None => lock.take(MONTH_LOCK, FlockOperation::NonBlockingLockExclusive),
            Some(s) => {
                lock.take(MONTH_LOCK, FlockOperation::NonBlockingLockShared)?;
                lock.take(
                    &format!(".bill.shard-{}-of-{}.lock", s.index, s.count),
                    FlockOperation::NonBlockingLockExclusive,
                )
            }
        })();
        match taken {
            Ok(()) => Ok(lock),
            Err(e) => {
                // Not ours to remove if another run holds it; a folder created just now and
                // still empty is, but the other run may be using it: leave it.
                lock.created_dir = false;
                lock.created_out = false;
                Err(e)
            }
        }
    }

    fn take(&mut self, name: &str, op: FlockOperation) -> Result<(), BillError> {
        let path = self.dir.join(name);
        // A lock file removed between our open and our lock (by `abandon` of a run that
        // created the folder) would be locked in vain: the next run creates a new one. So the
        // file locked must still be the one at the path; a few tries cover that race.
        for _ in 0..8 {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| BillError::io(&path, e))?;
            match flock(&file, op) {
                Ok(()) => {}
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                    return Err(BillError::RunActive { lock: path });
                }
                Err(e) => return Err(BillError::io(&path, e.into())),
            }
            let held = file.metadata().map_err(|e| BillError::io(&path, e))?;
            match std::fs::metadata(&path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    self.held.push((path, file));
                    return Ok(());
                }
                _ => continue,
            }
        }
        Err(BillError::RunActive { lock: path })
    }

    /// The run ended before writing anything: a month folder (and EVN folder) it created for
    /// the lock goes again, so a refused run leaves the output as it was.
    pub(crate) fn abandon(mut self) {
        if self.created_dir {
            for (path, _) in &self.held {
                std::fs::remove_file(path).ok();
            }
            // Only if empty: something else may have appeared meanwhile.
            if std::fs::remove_dir(&self.dir).is_ok() && self.created_out {
                if let Some(out) = self.dir.parent() {
                    std::fs::remove_dir(out).ok();
                }
            }
        }
        self.held.clear();
    }
}
