//! `evn produce`: publish JSON-lines files, one record per line, keyed by `customer_id`, or by
//! `callid` for Kamailio accounting records (a call's INVITE and BYE must share a partition).
//!
//! Keys spread records over partitions (the embedded broker's partitions are small); zstd and
//! large batches keep throughput high. Lines that are not valid JSON are sent as they are —
//! switches do send garbage and ingest must cope — and counted.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientConfig;

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error(
        "{failed} of {sent} records were not acknowledged by the broker (first error: {first})"
    )]
    Undelivered {
        sent: u64,
        failed: u64,
        first: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceReport {
    pub sent: u64,
    /// Lines sent as they are although they are not JSON objects with a `customer_id`.
    pub not_json: u64,
}

#[derive(Default)]
struct Counts {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

struct Ctx(Arc<Counts>);

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                self.0
                    .first_error
                    .lock()
                    .expect("not poisoned")
                    .get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// The customer id of a record, or its Kamailio Call-ID, if it is a JSON object with one;
/// otherwise none.
fn key_of(line: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct K {
        customer_id: Option<String>,
        callid: Option<String>,
    }
    let k = serde_json::from_slice::<K>(line).ok()?;
    k.customer_id.or(k.callid)
}

/// Sends every line of `files` to `topic` and waits until the broker acknowledged all of them.
pub fn produce_files(
    brokers: &str,
    topic: &str,
    files: &[PathBuf],
) -> Result<ProduceReport, ProduceError> {
    let counts = Arc::new(Counts::default());
    let producer: BaseProducer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("compression.type", "zstd")
        .set("linger.ms", "20")
        .set("batch.num.messages", "20000")
        .set("batch.size", "4000000")
        .set("queue.buffering.max.messages", "500000")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "120000")
        .create_with_context(Ctx(counts.clone()))?;
    let mut report = ProduceReport {
        sent: 0,
        not_json: 0,
    };
    for path in files {
        send_file(&producer, topic, path, &mut report)?;
    }
    producer.flush(Duration::from_secs(120))?;
    let failed = counts.failed.load(Ordering::Relaxed);
    if failed > 0 || counts.delivered.load(Ordering::Relaxed) != report.sent {
        let first = counts
            .first_error
            .lock()
            .expect("not poisoned")
            .clone()
            .unwrap_or_else(|| "not acknowledged in time".into());
        return Err(ProduceError::Undelivered {
            sent: report.sent,
            failed: report.sent - counts.delivered.load(Ordering::Relaxed),
            first,
        });
    }
    Ok(report)
}

fn send_file(
    producer: &BaseProducer<Ctx>,
    topic: &str,
    path: &Path,
    report: &mut ProduceReport,
) -> Result<(), ProduceError> {
    let read_err = |source| ProduceError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(read_err)? == 0 {
            return Ok(());
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if line.is_empty() {
            continue;
        }
        let key = key_of(&line);
        if key.is_none() {
            report.not_json += 1;
        }
        // Records without a customer id are keyed by their sequence number, so they still spread.
        let key = key.unwrap_or_else(|| report.sent.to_string());
        let mut record = BaseRecord::to(topic).payload(&line[..]).key(key.as_bytes());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        report.sent += 1;
        if report.sent.is_multiple_of(1024) {
            producer.poll(Duration::ZERO);
        }
    }
}
