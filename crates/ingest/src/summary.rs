//! Counts of what happened to records: the closing JSON line, and per-partition buffers.

use std::collections::BTreeMap;

use serde::Serialize;

/// What one ingest run handled (INTERFACES.md §4). Only committed work is counted, so the numbers
/// match what is durably stored, also after a rebalance dropped an uncommitted buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub consumed: u64,
    pub stored: u64,
    pub skipped: BTreeMap<String, u64>,
    pub dead_lettered: BTreeMap<String, u64>,
    pub files: u64,
    /// Records consumed but waiting for a partner at the end of the run (Kamailio call starts
    /// waiting for their BYE), in the commit log of the partitions this process owned. Not
    /// in `consumed` yet: a record counts once, when its outcome is decided.
    #[serde(skip_serializing_if = "is_zero")]
    pub held: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Summary {
    pub fn skip(&mut self, reason: &str) {
        self.consumed += 1;
        *self.skipped.entry(reason.to_owned()).or_default() += 1;
    }

    pub fn dead_letter(&mut self, reason: &str) {
        self.consumed += 1;
        *self.dead_lettered.entry(reason.to_owned()).or_default() += 1;
    }

    pub fn store(&mut self) {
        self.consumed += 1;
        self.stored += 1;
    }

    pub fn merge(&mut self, other: &Summary) {
        self.consumed += other.consumed;
        self.stored += other.stored;
        self.files += other.files;
        for (k, v) in &other.skipped {
            *self.skipped.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.dead_lettered {
            *self.dead_lettered.entry(k.clone()).or_default() += v;
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("summary serializes")
    }
}
