//! Call starts of one partition that wait for their end record (Kamailio: the INVITE's 2xx
//! waits for the BYE). They live in the partition's commit record ([`evn_store::HeldRecord`]),
//! so a restart or a new owner resumes with them; this is their in-memory index.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use evn_store::HeldRecord;

struct Start {
    call: String,
    at: DateTime<Utc>,
    record: HeldRecord,
}

/// Held starts by call and by time.
#[derive(Default)]
pub struct Held {
    by_offset: BTreeMap<i64, Start>,
    by_call: HashMap<String, i64>,
    by_time: BTreeSet<(DateTime<Utc>, i64)>,
}

impl Held {
    pub fn len(&self) -> usize {
        self.by_offset.len()
    }

    pub fn contains(&self, call: &str) -> bool {
        self.by_call.contains_key(call)
    }

    /// Holds a start; the caller checked that its call is not held yet.
    pub fn insert(&mut self, call: String, at: DateTime<Utc>, record: HeldRecord) {
        let offset = record.offset;
        self.by_call.insert(call.clone(), offset);
        self.by_time.insert((at, offset));
        self.by_offset.insert(offset, Start { call, at, record });
    }

    /// Takes the start of `call`, if held.
    pub fn take(&mut self, call: &str) -> Option<HeldRecord> {
        let offset = self.by_call.remove(call)?;
        let start = self.by_offset.remove(&offset).expect("indexes agree");
        self.by_time.remove(&(start.at, offset));
        Some(start.record)
    }

    /// Takes every start older than `before`, oldest first.
    pub fn take_older_than(&mut self, before: DateTime<Utc>) -> Vec<HeldRecord> {
        let mut out = Vec::new();
        while let Some(&(at, offset)) = self.by_time.first() {
            if at >= before {
                break;
            }
            self.by_time.pop_first();
            let start = self.by_offset.remove(&offset).expect("indexes agree");
            self.by_call.remove(&start.call);
            out.push(start.record);
        }
        out
    }

    /// What the next commit record holds, by offset.
    pub fn records(&self) -> Vec<HeldRecord> {
        self.by_offset.values().map(|s| s.record.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: i64) -> HeldRecord {
        HeldRecord {
            offset,
            key: None,
            payload: offset.to_string().into_bytes(),
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn by_call_by_time_and_by_offset() {
        let mut h = Held::default();
        h.insert("b".into(), t("2026-11-24T10:00:00Z"), rec(7));
        h.insert("a".into(), t("2026-11-24T09:00:00Z"), rec(9));
        h.insert("c".into(), t("2026-11-24T11:00:00Z"), rec(3));
        assert!(h.contains("a") && !h.contains("x"));
        assert_eq!(
            h.records().iter().map(|r| r.offset).collect::<Vec<_>>(),
            [3, 7, 9]
        );
        assert_eq!(h.take("b"), Some(rec(7)));
        assert_eq!(h.take("b"), None);
        // Expiry goes by the records' time, not by offset.
        assert_eq!(h.take_older_than(t("2026-11-24T10:30:00Z")), [rec(9)]);
        assert_eq!(h.len(), 1);
        assert!(h.contains("c"));
    }
}
