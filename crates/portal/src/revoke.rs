//! Revoked tokens (`evn serve --revoked FILE`): a portal token is valid until its `exp`, up to
//! 31 days; when one leaks, or a customer's access must end (contract ended, a staff member
//! left), the operator cannot wait for that. The file names customers and a moment; every
//! token of that customer issued (`iat`) at or before the moment is refused, session cookies
//! included (they carry the token). `*` stands for every customer (after a secret was rotated
//! anyway, or a break-in). A token without `iat` counts as issued before any revocation.
//!
//! ```text
//! # customer_id,revoked_at (RFC 3339)
//! K1001,2026-11-27T10:00:00Z
//! *,2026-11-01T00:00:00+01:00
//! ```
//!
//! The file is read again when it changes (its modification time or size, looked at no more
//! than every [`RECHECK`]), so a revocation takes effect within seconds without a restart and
//! on every replica that mounts the file. A file that no longer reads leaves the last good list
//! in force, with an error in the log: a typo must not un-revoke anyone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use crate::paths::CustomerId;
use crate::PortalError;

/// How often, at most, the file's metadata is looked at (one `stat` on a request).
pub const RECHECK: Duration = Duration::from_secs(2);

/// The revocation list in force and where it comes from.
#[derive(Debug)]
pub struct Revocations {
    path: PathBuf,
    state: RwLock<State>,
}

#[derive(Debug)]
struct State {
    checked: Instant,
    /// Modification time and size of the file the list was read from.
    stamp: Option<(SystemTime, u64)>,
    list: List,
}

/// Unix seconds up to which tokens are refused, per customer and for all.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct List {
    customers: HashMap<String, i64>,
    everyone: Option<i64>,
}

impl List {
    /// Whether a token of `sub` issued at `iat` (Unix seconds) is revoked.
    pub fn revokes(&self, sub: &str, iat: Option<u64>) -> bool {
        let until = self.customers.get(sub).copied().max(self.everyone);
        match (until, iat) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(until), Some(iat)) => i64::try_from(iat).is_ok_and(|iat| iat <= until),
        }
    }

    /// Customers named (`*` not counted), for the startup log.
    pub fn len(&self) -> usize {
        self.customers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.customers.is_empty() && self.everyone.is_none()
    }
}

/// Parses the file's text; the error names the line (from 1) and what is wrong with it.
pub fn parse(text: &str) -> Result<List, (usize, String)> {
    let mut list = List::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |detail: String| (i + 1, detail);
        let (id, at) = line
            .split_once(',')
            .ok_or_else(|| err(format!("{line:?} is not `customer_id,revoked_at`")))?;
        let (id, at) = (id.trim(), at.trim());
        if id == "customer_id" && i == 0 {
            continue; // a header line
        }
        let at = chrono::DateTime::parse_from_rfc3339(at)
            .map_err(|e| {
                err(format!(
                    "{at:?} is not an RFC 3339 time such as 2026-11-27T10:00:00Z ({e})"
                ))
            })?
            .timestamp();
        // Named twice: the later moment revokes more.
        if id == "*" {
            list.everyone = Some(list.everyone.map_or(at, |old| old.max(at)));
        } else {
            let id = CustomerId::parse(id).ok_or_else(|| {
                err(format!(
                    "{id:?} is not a customer id (letters, digits, `_`, `-`) or `*`"
                ))
            })?;
            let until = list.customers.entry(id.as_str().to_owned()).or_insert(at);
            *until = (*until).max(at);
        }
    }
    Ok(list)
}

impl Revocations {
    /// Reads the file; at startup an unreadable or invalid file is a configuration error.
    pub fn load(path: &Path) -> Result<Revocations, PortalError> {
        let (stamp, list) = read(path)?;
        Ok(Revocations {
            path: path.to_owned(),
            state: RwLock::new(State {
                checked: Instant::now(),
                stamp: Some(stamp),
                list,
            }),
        })
    }

    /// The list in force, read again first if the file changed.
    pub fn current(&self) -> List {
        self.refresh();
        self.state.read().expect("revocation lock").list.clone()
    }

    /// Whether a token of `sub` issued at `iat` is revoked, by the list in force now.
    pub fn revokes(&self, sub: &str, iat: Option<u64>) -> bool {
        self.refresh();
        self.state
            .read()
            .expect("revocation lock")
            .list
            .revokes(sub, iat)
    }

    fn refresh(&self) {
        if self
            .state
            .read()
            .expect("revocation lock")
            .checked
            .elapsed()
            < RECHECK
        {
            return;
        }
        let mut state = self.state.write().expect("revocation lock");
        if state.checked.elapsed() < RECHECK {
            return; // another request looked meanwhile
        }
        state.checked = Instant::now();
        let stamp = match stamp_of(&self.path) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "revocation list unreadable; the last one read stays in force");
                return;
            }
        };
        if state.stamp == Some(stamp) {
            return;
        }
        match read(&self.path) {
            Ok((stamp, list)) => {
                tracing::info!(path = %self.path.display(), customers = list.len(), everyone = list.everyone.is_some(), "revocation list read");
                state.stamp = Some(stamp);
                state.list = list;
            }
            Err(e) => {
                tracing::error!(error = %e, "revocation list not taken; the last one read stays in force");
                // Read again when it changes next, not on every request.
                state.stamp = Some(stamp);
            }
        }
    }
}

fn stamp_of(path: &Path) -> std::io::Result<(SystemTime, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.modified()?, meta.len()))
}

fn read(path: &Path) -> Result<((SystemTime, u64), List), PortalError> {
    let io = |cause| PortalError::Io {
        path: path.to_owned(),
        cause,
    };
    let stamp = stamp_of(path).map_err(io)?;
    let text = std::fs::read_to_string(path).map_err(io)?;
    let list = parse(&text).map_err(|(line, detail)| PortalError::Revocations {
        path: path.to_owned(),
        line,
        detail,
    })?;
    Ok((stamp, list))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_795_000_000; // 2026-11-18T11:06:40Z

    #[test]
    fn a_customer_s_tokens_up_to_the_moment_are_revoked_and_no_one_else_s() {
        let list = parse(
            "customer_id,revoked_at\n# comment\n\nK1001,2026-11-18T11:06:40Z\nK1002,2026-11-18T12:06:40+01:00\n",
        )
        .unwrap();
        let t = |d: i64| Some((T + d) as u64);
        assert!(list.revokes("K1001", t(-100)));
        assert!(list.revokes("K1001", t(0)));
        assert!(!list.revokes("K1001", t(1)));
        assert!(list.revokes("K1001", None), "no iat: issued before");
        assert!(list.revokes("K1002", t(0)) && !list.revokes("K1002", t(1)));
        assert!(!list.revokes("K1003", t(-100)));
        assert!(!list.revokes("K1003", None));
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn a_star_revokes_everyone_and_the_later_moment_wins() {
        let list =
            parse("*,2026-11-18T11:06:40Z\nK1,2026-11-18T11:06:50Z\nK1,2026-11-18T11:06:45Z\n")
                .unwrap();
        let t = |d: i64| Some((T + d) as u64);
        assert!(list.revokes("K9", t(0)) && !list.revokes("K9", t(1)));
        assert!(list.revokes("K1", t(10)) && !list.revokes("K1", t(11)));
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line, says) in [
            ("K1001\n", 1, "customer_id,revoked_at"),
            ("# x\nK1001,yesterday\n", 2, "RFC 3339"),
            ("K1001,2026-11-18\n", 1, "RFC 3339"),
            ("K 1,2026-11-18T11:06:40Z\n", 1, "not a customer id"),
            ("../K1,2026-11-18T11:06:40Z\n", 1, "not a customer id"),
        ] {
            let (l, detail) = parse(text).unwrap_err();
            assert_eq!(l, line, "{text:?}");
            assert!(detail.contains(says), "{text:?}: {detail}");
        }
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_last_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked.csv");
        std::fs::write(&path, "K1001,2026-11-18T11:06:40Z\n").unwrap();
        let r = Revocations::load(&path).unwrap();
        assert!(r.revokes("K1001", Some(T as u64)));
        assert!(!r.revokes("K1002", Some(T as u64)));
        std::fs::write(
            &path,
            "K1001,2026-11-18T11:06:40Z\nK1002,2026-11-18T11:06:40Z\n",
        )
        .unwrap();
        // Not before RECHECK has passed.
        r.state.write().unwrap().checked -= RECHECK;
        assert!(r.revokes("K1002", Some(T as u64)));
        std::fs::write(&path, "K1001,garbage and a longer line\n").unwrap();
        r.state.write().unwrap().checked -= RECHECK;
        assert!(
            r.revokes("K1002", Some(T as u64)),
            "the last good list stays"
        );
        std::fs::remove_file(&path).unwrap();
        r.state.write().unwrap().checked -= RECHECK;
        assert!(
            r.revokes("K1001", Some(T as u64)),
            "a missing file un-revokes no one"
        );
        assert!(matches!(
            Revocations::load(&path),
            Err(PortalError::Io { .. })
        ));
        std::fs::write(&path, "K1001,x\n").unwrap();
        assert!(matches!(
            Revocations::load(&path),
            Err(PortalError::Revocations { line: 1, .. })
        ));
    }
}
