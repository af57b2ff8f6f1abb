//! `evn ingest`: Kafka → validated, rated, privacy-filtered calls → monthly Parquet, exactly once.
//!
//! One consumer-group member. Per assigned partition it buffers the outcome of each record
//! (rows by billing month, dead letters in flight, counts) and commits the partition through
//! [`evn_store::CommitLog`] when the buffer is large, old, memory runs short, or ingest stops.
//! Not when it spans many billing months: a catch-up with months interleaved then committed
//! every few records, one tiny file per month each time (17,639 files for 40,000 calls over
//! five months); the row and byte caps bound memory whatever the months.
//! Offsets at or below the partition's durable commit are skipped, so replays after a crash or a
//! rebalance never store a call twice. See ARCHITECTURE.md, "Exactly once".

mod dedup;
mod held;
mod metrics;
mod pipeline;
mod summary;

pub use metrics::Metrics;
pub use pipeline::{run, IngestError, IngestOptions};
pub use summary::Summary;
