//! Switch duplicates: the same `switch_id` + `cdr_id` is one call, even hours apart.
//!
//! One set of 128-bit key hashes per billing month, loaded from the month's stored files the
//! first time the month is seen, so a duplicate of a call stored by an earlier run is caught too.
//! 128 bits make an accidental collision (a real call wrongly dropped) practically impossible.

use std::collections::HashMap;

use rustc_hash::FxHashSet;
use std::sync::Arc;

use evn_rating::BillingMonth;
use evn_store::{Keyring, Location, StoreError};

pub fn key(switch_id: &str, cdr_id: &str) -> u128 {
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
    xxhash_rust::xxh3::xxh3_128(buf)
}

#[derive(Default)]
pub struct Dedup {
    /// Fx over keys that are xxh3 hashes already: no second SipHash per insert.
    months: HashMap<BillingMonth, FxHashSet<u128>>,
    /// To read months stored encrypted.
    keys: Option<Arc<Keyring>>,
}

impl Dedup {
    pub fn new(keys: Option<Arc<Keyring>>) -> Self {
        Dedup {
            months: HashMap::new(),
            keys,
        }
    }

    /// Inserts the key; false if the call is already stored or buffered.
    pub fn insert(
        &mut self,
        data: &Location,
        month: BillingMonth,
        key: u128,
    ) -> Result<bool, StoreError> {
        Ok(self.month(data, month)?.insert(key))
    }

    /// Whether the call is already stored or buffered.
    pub fn contains(
        &mut self,
        data: &Location,
        month: BillingMonth,
        key: u128,
    ) -> Result<bool, StoreError> {
        Ok(self.month(data, month)?.contains(&key))
    }

    fn month(
        &mut self,
        data: &Location,
        month: BillingMonth,
    ) -> Result<&mut FxHashSet<u128>, StoreError> {
        if !self.months.contains_key(&month) {
            let mut set = FxHashSet::default();
            for file in data.list_month_files(month)? {
                data.read_file_with(&file, self.keys.as_ref(), &mut |c| {
                    set.insert(self::key(&c.call.switch_id, &c.call.cdr_id));
                })?;
            }
            self.months.insert(month, set);
        }
        Ok(self.months.get_mut(&month).expect("just inserted"))
    }

    /// Forgets keys of a buffer that was dropped without being committed.
    pub fn forget(&mut self, month: BillingMonth, key: u128) {
        if let Some(set) = self.months.get_mut(&month) {
            set.remove(&key);
        }
    }
}
