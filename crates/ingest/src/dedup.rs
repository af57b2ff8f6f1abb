//! Switch duplicates: the same `switch_id` + `cdr_id` is one call, even hours apart.
//!
//! One set of 96-bit key hashes per billing month, loaded from the month's stored files the
//! first time the month is seen, so a duplicate of a call stored by an earlier run is caught too.
//! 96 bits make an accidental collision (a real call wrongly dropped) practically impossible:
//! with ten million calls in a month, about one in 10^15.
//!
//! A month nobody touched for a while (and with no buffered rows) is dropped from memory and
//! loaded again from its files when a late CDR arrives: a process that runs for a year holds
//! the months it works on, not every month it ever saw. Its stored files hold every key of it
//! that is not buffered, so dropping and reloading it loses nothing.
//!
//! A copy of a call may start a little apart from the first (a switch failover re-stamps it) and
//! so fall on the other side of a month's edge. A call starting within [`EDGE`] of its month's
//! first or last instant is also looked up in the month on that side: the first copy stored
//! wins, whichever month it is in. Farther from the edge the neighbour is not consulted: that
//! would keep last month's set in memory all month for what is, that far apart, an id reused.

use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Utc};
use rustc_hash::{FxHashMap, FxHashSet};

use evn_rating::BillingMonth;
use evn_store::{Keyring, Location, StoreError};

/// A call's identity: 96 bits of the xxh3-128 hash of `switch_id` and `cdr_id`. Not 128: a
/// set entry of 12 bytes instead of 16 (plus hashbrown's control byte) is a quarter less of
/// ingest's largest memory item (issue #7), and 2^-96 is as good as never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key([u32; 3]);

// Three u32, not a u64 and a u32: that would be aligned (and padded) to 16 bytes.
const _: () = assert!(std::mem::size_of::<Key>() == 12);

impl std::hash::Hash for Key {
    // The bits are a hash already: 64 of them spread the table; equality compares all 96.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from(self.0[0]) | u64::from(self.0[1]) << 32);
    }
}

pub fn key(switch_id: &str, cdr_id: &str) -> Key {
    // The separator byte cannot occur in either id (control characters are rejected).
    let len = switch_id.len() + cdr_id.len() + 1;
    let mut stack = [0u8; 128];
    let mut heap = Vec::new();
    let buf = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap[..]
    };
    buf[..switch_id.len()].copy_from_slice(switch_id.as_bytes());
    buf[switch_id.len()] = 0x1f;
    buf[switch_id.len() + 1..].copy_from_slice(cdr_id.as_bytes());
    let h = xxhash_rust::xxh3::xxh3_128(buf);
    Key([h as u32, (h >> 32) as u32, (h >> 64) as u32])
}

/// How near its month's edge a call must start to be looked up in the month beyond it.
pub const EDGE: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// Months untouched this long (and not buffered) are dropped from memory.
pub const IDLE_MONTH: Duration = Duration::from_secs(15 * 60);

struct Month {
    /// Fx over keys that are xxh3 hashes already: no second SipHash per insert.
    keys: FxHashSet<Key>,
    used: Instant,
}

pub struct Dedup {
    /// Looked up for every record: Fx, not SipHash.
    months: FxHashMap<BillingMonth, Month>,
    /// To read months stored encrypted.
    keys: Option<Arc<Keyring>>,
    /// Each month's `[start, end)` in UTC: two time-zone lookups, done once per month.
    edges: FxHashMap<BillingMonth, (DateTime<Utc>, DateTime<Utc>)>,
    /// When a month counts as used: set by [`Dedup::tick`], not read from the clock for every
    /// record (1 % of ingest's loop thread in perf). Idleness is measured in minutes.
    now: Instant,
}

impl Dedup {
    pub fn new(keys: Option<Arc<Keyring>>) -> Self {
        Dedup {
            months: FxHashMap::default(),
            keys,
            edges: FxHashMap::default(),
            now: Instant::now(),
        }
    }

    /// Advances the time months are marked used at; the ingest loop calls it on its tick.
    pub fn tick(&mut self) {
        self.now = Instant::now();
    }

    /// Inserts the key; false if the call is already stored or buffered.
    pub fn insert(
        &mut self,
        data: &Location,
        month: BillingMonth,
        key: Key,
    ) -> Result<bool, StoreError> {
        Ok(self.month(data, month)?.keys.insert(key))
    }

    /// Inserts the key of a call starting at `start`; false if the call is already stored or
    /// buffered in its month or, starting within [`EDGE`] of that month's edge, in the month
    /// beyond the edge.
    pub fn insert_call(
        &mut self,
        data: &Location,
        month: BillingMonth,
        start: DateTime<Utc>,
        key: Key,
    ) -> Result<bool, StoreError> {
        if let Some(beside) = self.beside(month, start) {
            if self.contains(data, beside, key)? {
                return Ok(false);
            }
        }
        self.insert(data, month, key)
    }

    /// The month next to the edge `start` is near, if it is within [`EDGE`] of one.
    fn beside(&mut self, month: BillingMonth, start: DateTime<Utc>) -> Option<BillingMonth> {
        // Within a day of a Berlin month's edge a call is on UTC day 1 or on one of a month's
        // last two UTC days (27 to 31): days 2 to 26 are a day or more from both edges.
        if (2..=26).contains(&start.day()) {
            return None;
        }
        let (first, end) = *self.edges.entry(month).or_insert_with(|| month.utc_range());
        if start < first + EDGE {
            Some(month.prev())
        } else if start >= end - EDGE {
            Some(month.next())
        } else {
            None
        }
    }

    /// Whether the call is already stored or buffered.
    pub fn contains(
        &mut self,
        data: &Location,
        month: BillingMonth,
        key: Key,
    ) -> Result<bool, StoreError> {
        Ok(self.month(data, month)?.keys.contains(&key))
    }

    fn month(&mut self, data: &Location, month: BillingMonth) -> Result<&mut Month, StoreError> {
        let now = self.now;
        let m = match self.months.entry(month) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let mut set = FxHashSet::default();
                for file in data.list_month_files(month)? {
                    data.read_file_with(&file, self.keys.as_ref(), &mut |c| {
                        set.insert(self::key(&c.call.switch_id, &c.call.cdr_id));
                    })?;
                }
                e.insert(Month {
                    keys: set,
                    used: now,
                })
            }
        };
        m.used = now;
        Ok(m)
    }

    /// Forgets keys of a buffer that was dropped without being committed.
    pub fn forget(&mut self, month: BillingMonth, key: Key) {
        if let Some(m) = self.months.get_mut(&month) {
            m.keys.remove(&key);
        }
    }

    /// Drops the months untouched for `idle` that are not `buffered` (a buffered row's key is
    /// in no file yet); returns how many.
    pub fn evict_idle(&mut self, idle: Duration, buffered: impl Fn(BillingMonth) -> bool) -> usize {
        let before = self.months.len();
        let now = Instant::now();
        self.months
            .retain(|&month, m| buffered(month) || now.duration_since(m.used) < idle);
        before - self.months.len()
    }

    /// Months held in memory.
    pub fn months(&self) -> usize {
        self.months.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evn_store::{StoredCall, WriteOptions};

    fn call(cdr_id: &str) -> StoredCall {
        let start: chrono::DateTime<chrono::Utc> = "2026-11-24T08:15:09Z".parse().unwrap();
        StoredCall {
            call: evn_rating::RatedCall {
                cdr_id: cdr_id.into(),
                switch_id: "fra1".into(),
                customer_id: "K1001".into(),
                calling_number: "+4930901820".into(),
                called_number: "+4915112345678".into(),
                start_time: start,
                duration_s: 60,
                zone: "mobile".into(),
                charge_eur: rust_decimal::Decimal::new(1490, 4),
                billing_month: BillingMonth::of(start),
                plan: "office_basic".into(),
                shortened: false,
                counselling: false,
            },
            source_topic: "cdrs".into(),
            source_partition: 0,
            source_offset: 0,
            provenance: None,
        }
    }

    #[test]
    fn an_idle_month_is_dropped_and_reloaded_from_its_files_unless_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let data = Location::Local(dir.path().to_owned());
        let stored = call("stored-1");
        let month = stored.call.billing_month;
        let folder = evn_store::month_dir(dir.path(), month);
        std::fs::create_dir_all(&folder).unwrap();
        evn_store::write_file(
            &folder.join("cdrs+0+0-0.parquet"),
            &[stored],
            WriteOptions::default(),
        )
        .unwrap();
        let mut d = Dedup::new(None);
        let (stored, buffered) = (key("fra1", "stored-1"), key("fra1", "buffered-2"));
        assert!(
            !d.insert(&data, month, stored).unwrap(),
            "loaded from the file"
        );
        assert!(d.insert(&data, month, buffered).unwrap());
        // Buffered rows keep the month in memory, however idle.
        assert_eq!(d.evict_idle(Duration::ZERO, |_| true), 0);
        assert!(d.contains(&data, month, buffered).unwrap());
        // Once committed (here: not buffered any more), the idle month goes...
        assert_eq!(d.evict_idle(Duration::ZERO, |_| false), 1);
        assert_eq!(d.months(), 0);
        // ...and comes back from its files: the stored call is still a duplicate.
        assert!(d.contains(&data, month, stored).unwrap());
        assert!(!d.insert(&data, month, stored).unwrap());
        // A month in use is kept.
        assert_eq!(d.evict_idle(IDLE_MONTH, |_| false), 0);
    }

    #[test]
    fn a_copy_on_the_other_side_of_a_month_edge_is_a_duplicate_within_a_day_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = Location::Local(dir.path().to_owned());
        let mut d = Dedup::new(None);
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let mut first_wins = |id: &str, first: &str, second: &str| {
            let (a, b) = (at(first), at(second));
            let k = key("fra1", id);
            assert!(d.insert_call(&data, BillingMonth::of(a), a, k).unwrap());
            d.insert_call(&data, BillingMonth::of(b), b, k).unwrap()
        };
        // 31.10. 23:59:58 CET, then re-stamped by a failover 1.11. 00:00:01: one call, in October.
        assert!(!first_wins(
            "a",
            "2026-10-31T22:59:58Z",
            "2026-10-31T23:00:01Z"
        ));
        // The other way round, over the turn of the year.
        assert!(!first_wins(
            "b",
            "2026-12-31T23:00:00Z",
            "2026-12-31T22:59:59Z"
        ));
        // Up to a day from the edge, on either side (1.4. 00:00 CEST is 31.3. 22:00 UTC).
        assert!(!first_wins(
            "c",
            "2026-03-31T21:59:59Z",
            "2026-04-01T21:59:59Z"
        ));
        assert!(!first_wins(
            "d",
            "2026-04-01T21:59:59Z",
            "2026-03-30T22:00:00Z"
        ));
        // Beyond a day on either side, the months are separate.
        assert!(first_wins(
            "e",
            "2026-03-31T21:59:59Z",
            "2026-04-01T22:00:00Z"
        ));
        assert!(first_wins(
            "f",
            "2026-04-01T21:59:59Z",
            "2026-03-30T21:59:59Z"
        ));
        // The same month, as always.
        assert!(!first_wins(
            "g",
            "2026-11-15T10:00:00Z",
            "2026-11-15T12:00:00Z"
        ));
    }
}
