//! Kafka tooling for development, demos and tests: an embedded Kafka-protocol broker (librdkafka's
//! mock cluster behind a TCP forwarder) and a fast JSON-lines producer. Never for production.

mod embedded;
mod produce;

pub use embedded::{BrokerError, EmbeddedBroker, DEFAULT_PARTITIONS};
pub use produce::{produce_files, ProduceError, ProduceReport};
