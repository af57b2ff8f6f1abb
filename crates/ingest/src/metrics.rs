//! Ingest's Prometheus metrics. Counted at the same points as the closing summary (a commit, a
//! replayed record), so the two cannot drift.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::Summary;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    topic: String,
    partition: String,
}

/// Cheap to clone: every metric is shared behind an `Arc`. Unregistered metrics still count, so
/// ingest needs no `if metrics` anywhere.
#[derive(Clone, Debug)]
pub struct Metrics {
    consumed: Counter,
    stored: Counter,
    skipped: Family<ReasonLabel, Counter>,
    dead_lettered: Family<ReasonLabel, Counter>,
    files: Counter,
    commit_seconds: Histogram,
    lag: Family<PartitionLabel, Gauge>,
    buffered: Gauge,
    held: Family<PartitionLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            consumed: Counter::default(),
            stored: Counter::default(),
            skipped: Family::default(),
            dead_lettered: Family::default(),
            files: Counter::default(),
            // 1 ms … 33 s: a commit is one fsync on a quiet disk, many seconds on a sick one.
            commit_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            lag: Family::default(),
            buffered: Gauge::default(),
            held: Family::default(),
        }
    }
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "evn_ingest_records_consumed",
            "Records handled and committed (or skipped as already durable)",
            self.consumed.clone(),
        );
        registry.register(
            "evn_ingest_records_stored",
            "Calls durably written to Parquet",
            self.stored.clone(),
        );
        registry.register(
            "evn_ingest_records_skipped",
            "Records deliberately not stored, by reason",
            self.skipped.clone(),
        );
        registry.register(
            "evn_ingest_records_dead_lettered",
            "Records sent to the dead-letter topic, by reason",
            self.dead_lettered.clone(),
        );
        registry.register(
            "evn_ingest_files_written",
            "Parquet files made visible",
            self.files.clone(),
        );
        registry.register(
            "evn_ingest_commit_duration_seconds",
            "Time to make one partition's buffer durable",
            self.commit_seconds.clone(),
        );
        registry.register(
            "evn_ingest_consumer_lag_records",
            "Records on the broker not yet handled, per assigned partition",
            self.lag.clone(),
        );
        registry.register(
            "evn_ingest_buffered_rows",
            "Rated calls held in memory, not yet durable",
            self.buffered.clone(),
        );
        registry.register(
            "evn_ingest_held_records",
            "Call starts waiting for their end record (Kamailio), per assigned partition",
            self.held.clone(),
        );
    }

    pub(crate) fn committed(&self, counts: &Summary, seconds: f64) {
        self.consumed.inc_by(counts.consumed);
        self.stored.inc_by(counts.stored);
        self.files.inc_by(counts.files);
        for (reason, n) in &counts.skipped {
            self.skipped.get_or_create(&label(reason)).inc_by(*n);
        }
        for (reason, n) in &counts.dead_lettered {
            self.dead_lettered.get_or_create(&label(reason)).inc_by(*n);
        }
        self.commit_seconds.observe(seconds);
    }

    pub(crate) fn replayed(&self) {
        self.consumed.inc();
        self.skipped.get_or_create(&label("replayed")).inc();
    }

    pub(crate) fn set_held(&self, (topic, partition): &(String, i32), n: usize) {
        self.held
            .get_or_create(&tp(topic, *partition))
            .set(n as i64);
    }

    pub(crate) fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.lag.get_or_create(&tp(topic, partition)).set(lag);
    }

    pub(crate) fn forget_partition(&self, topic: &str, partition: i32) {
        self.lag.remove(&tp(topic, partition));
        self.held.remove(&tp(topic, partition));
    }

    pub(crate) fn set_buffered(&self, rows: usize) {
        self.buffered.set(rows as i64);
    }
}

fn label(reason: &str) -> ReasonLabel {
    ReasonLabel {
        reason: reason.to_owned(),
    }
}

fn tp(topic: &str, partition: i32) -> PartitionLabel {
    PartitionLabel {
        topic: topic.to_owned(),
        partition: partition.to_string(),
    }
}
