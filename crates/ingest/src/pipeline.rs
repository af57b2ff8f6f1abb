//! The consume → classify → buffer → commit loop.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use rustc_hash::FxHashMap;

use evn_config::Source;
use evn_config::{Config, SourceFormat};
use evn_metrics::Health;
use evn_rating::{classify, BillingMonth, Outcome, RatedCall};
use evn_sources::kamailio::{self, Kamailio};
use evn_sources::{Converted, SourceError};
use evn_store::{
    CallBatch, CallColumns, CommitLog, HeldRecord, Keyring, Location, PartitionState, Provenance,
    StoreError, WriteOptions,
};

use crate::dedup::{self, Dedup};
use crate::held::Held;
use crate::{Metrics, Summary};

/// Data becomes visible at the latest this long after it arrived (INTERFACES: default 60 s).
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(60);
/// Rows per partition buffer before it is committed: one Parquet file per month of it.
pub const DEFAULT_MAX_ROWS_PER_COMMIT: usize = 200_000;
/// Rows buffered over all partitions; beyond it the largest buffer is committed (bounded memory).
/// With column buffers this is the cap that binds (rows take ~50 column bytes, so 48 MiB is
/// ~1 M rows). Peak RSS of the 2 M CDR benchmark (issue #7, target 256 MiB): 400,000 rows
/// 241–270 MiB, 250,000 229–261 MiB, 200,000 232–241 MiB, with no change in throughput beyond
/// the machine's noise (a few more, smaller files). Since commits are written in the
/// background a commit's rows leave this count when it starts: 200,000 then peaked at
/// 249–266 MiB, 150,000 at 219–256 MiB (~19 runs); 120,000 was no lower (220–247 MiB).
pub const DEFAULT_MAX_BUFFERED_ROWS: usize = 150_000;
/// Bytes of buffered rows over all partitions (what each row added to its Arrow column
/// builders); beyond it the largest buffer is committed. It bounds memory where rows are
/// long (long ids, provenance columns), which the row cap does not.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 48 << 20;

/// Records handled as one batch at most: what the consumer has ready is taken up to this many,
/// prepared on the prepare thread while earlier batches are applied in order.
const BATCH: usize = 2048;
/// Batches handed to the prepare thread and not yet applied, at most. More than one lets the
/// prepare thread run ahead while the loop writes a Parquet file (a commit takes as long as
/// several batches), where with one it waited for the loop and the loop then waited for it.
const AHEAD: usize = 3;
/// The loop's housekeeping beat: buffers due by age, rebalance events, readiness, lag.
const TICK: Duration = Duration::from_millis(500);

/// With `--exit-when-idle`, how long no broker may answer before ingest gives up (at least).
pub const UNREACHABLE_LIMIT: Duration = Duration::from_secs(30);

/// The most of a record's bytes a dead letter carries (the rest is named by its size and
/// SHA-256): well under librdkafka's `message.max.bytes` and Kafka's default topic limit.
pub const DLQ_MAX_PAYLOAD: usize = 512 * 1024;
/// The most of a record's key a dead letter carries.
const DLQ_MAX_KEY: usize = 16 * 1024;
/// The most of the reason text (`evn-error`) a dead letter carries.
const DLQ_MAX_DETAIL: usize = 4 * 1024;

/// `text` cut to at most `max` bytes at a character boundary, with "…" where it was cut.
fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub brokers: String,
    pub topics: Vec<String>,
    pub group: String,
    /// A local folder or an object store (`evn_store::Location`).
    pub data: Location,
    /// Dead-letter topic; `<topic>.dlq` of each source topic when unset.
    pub dlq_topic: Option<String>,
    pub exit_when_idle: Option<Duration>,
    pub flush_interval: Duration,
    pub max_rows_per_commit: usize,
    pub max_buffered_rows: usize,
    pub max_buffered_bytes: usize,
    /// Extra librdkafka settings (`security.protocol`, `sasl.*` …) for a real cluster.
    pub kafka_options: Vec<(String, String)>,
    /// Encrypt what is written (and read what was) with these data keys.
    pub keys: Option<Arc<Keyring>>,
    /// Counted whether or not anyone registers them.
    pub metrics: Metrics,
    /// Beaten by the loop; ready while the broker answers.
    pub health: Arc<Health>,
}

impl IngestOptions {
    pub fn new(brokers: &str, topics: Vec<String>, group: &str, data: impl Into<Location>) -> Self {
        IngestOptions {
            brokers: brokers.to_owned(),
            topics,
            group: group.to_owned(),
            data: data.into(),
            dlq_topic: None,
            exit_when_idle: None,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            max_rows_per_commit: DEFAULT_MAX_ROWS_PER_COMMIT,
            max_buffered_rows: DEFAULT_MAX_BUFFERED_ROWS,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            kafka_options: Vec::new(),
            keys: None,
            metrics: Metrics::default(),
            health: Arc::new(Health::default()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("storage: {0}{hint}", hint = if .0.is_disk_full() { " (the disk is full: free space in the data directory and restart; nothing past the last commit was acknowledged)" } else { "" })]
    Store(#[from] StoreError),
    #[error("dead-letter topic: a record could not be delivered: {0}")]
    DeadLetter(String),
    #[error("prepare thread: {0}")]
    PrepareThread(std::io::Error),
    #[error("commit task: {0}")]
    CommitTask(String),
    #[error("no broker at {brokers} answered for {secs} s: with --exit-when-idle ingest gives up (check --brokers and that Kafka is up); nothing past the last commit was acknowledged")]
    Unreachable { brokers: String, secs: u64 },
    #[error("a partition's next offset, from the commit log, is outside the topic's log on the broker ({0}): the topic was deleted and created again (its offsets start over) or records expired before ingest read them. Ingest stops rather than skip records or mistake new records for ones already stored. A re-created topic: ingest it under a new topic name. Expired records are gone from Kafka: to go on past the gap, start once with --kafka-option auto.offset.reset=earliest")]
    OffsetGap(String),
}

type Tp = (String, i32);

enum Event {
    /// Each partition with its state recovered from the commit log at assignment (None if
    /// that failed: the loop recovers it again and stops with the error).
    Assign(Vec<(Tp, Option<PartitionState>)>),
    Revoke(Vec<Tp>),
}

struct Ctx {
    events: Mutex<Vec<Event>>,
    health: Arc<Health>,
    /// Where an assigned partition starts: right after its last commit in the commit log,
    /// which is the truth. The group's offset in Kafka is only a hint and can be ahead of
    /// the log (a data folder restored from a backup, a new folder under an old group):
    /// starting there would skip records that were never stored.
    log: CommitLog,
    /// Our commit in flight, waited for before the log is read.
    gate: Arc<CommitGate>,
    quiet: Quiet,
}

/// The dead-letter producer's context: its errors (the same broker outage the consumer sees,
/// twice a second) logged as sparingly as the consumer's.
#[derive(Default)]
struct DlqCtx {
    quiet: Quiet,
}

impl ClientContext for DlqCtx {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(repeats) = self.quiet.log(&error.to_string()) {
            tracing::warn!(error = %error, reason, repeats, "kafka client error (dead-letter producer)");
        }
    }
}

/// How long repeats of one warning are counted instead of logged.
const QUIET_FOR: Duration = Duration::from_secs(30);

/// Warnings that repeat: librdkafka reports a broker that is down some 45 times a second
/// (4 M lines a day of an outage). The first of a kind is logged, repeats within
/// [`QUIET_FOR`] are counted and their number logged with the next one after it.
#[derive(Default)]
struct Quiet(Mutex<FxHashMap<String, (Instant, u64)>>);

impl Quiet {
    /// `Some(repeats left unlogged since the last line)` if this one is to be logged.
    fn log(&self, kind: &str) -> Option<u64> {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match seen.get_mut(kind) {
            Some((at, repeats)) if now.duration_since(*at) < QUIET_FOR => {
                *repeats += 1;
                None
            }
            Some((at, repeats)) => {
                *at = now;
                Some(std::mem::take(repeats))
            }
            None => {
                seen.insert(kind.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

fn tps(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ClientContext for Ctx {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            // librdkafka keeps reconnecting by itself; the loop flips readiness back once the
            // broker answers again.
            self.health.set_ready(false);
        }
        if let Some(repeats) = self.quiet.log(&error.to_string()) {
            tracing::warn!(error = %error, reason, repeats, "kafka client error");
        }
    }
}

impl ConsumerContext for Ctx {
    /// rdkafka's own rebalance, with each assigned partition's start set from the commit log
    /// before the assignment is made.
    fn rebalance(
        &self,
        base: &rdkafka::consumer::BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::consumer::RebalanceProtocol;
        use rdkafka::types::RDKafkaRespErr::{
            RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS as ASSIGN,
            RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS as REVOKE,
        };
        // Our commit in flight lands first: before a revoked partition goes to its next owner
        // (who would otherwise race it and fence one of us), and before an assigned
        // partition's start is read from the log.
        self.gate.wait();
        let mut assigned = Vec::new();
        if err == ASSIGN {
            for (topic, partition) in tps(tpl) {
                let state = match self.log.recover(&topic, partition) {
                    Ok(state) => {
                        // A partition we never committed starts at the log's beginning, not
                        // at offset 0, which retention may have removed already.
                        let start = if state.last < 0 {
                            Offset::Beginning
                        } else {
                            Offset::Offset(state.last + 1)
                        };
                        if let Err(e) = tpl.set_partition_offset(&topic, partition, start) {
                            tracing::warn!(%topic, partition, error = %e, "could not set the start offset");
                        }
                        Some(state)
                    }
                    Err(e) => {
                        tracing::warn!(%topic, partition, error = %e, "commit log unreadable");
                        None
                    }
                };
                assigned.push(((topic, partition), state));
            }
        }
        let rebalance = match err {
            ASSIGN => Rebalance::Assign(tpl),
            REVOKE => Rebalance::Revoke(tpl),
            other => Rebalance::Error(KafkaError::Rebalance(other.into())),
        };
        self.pre_rebalance(base, &rebalance);
        let cooperative = matches!(base.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let result = match (err == ASSIGN, cooperative) {
            (true, true) => base.incremental_assign(tpl),
            (true, false) => base.assign(tpl),
            (false, true) => base.incremental_unassign(tpl),
            (false, false) => base.unassign(),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "rebalance: the assignment could not be applied");
        }
        // Also an empty assignment: it ends the wait for one (a member with no partitions).
        if err == ASSIGN {
            self.events
                .lock()
                .expect("not poisoned")
                .push(Event::Assign(assigned));
        }
        self.post_rebalance(base, &rebalance);
    }

    // `rebalance` and this run inside `recv()`, on the loop's own task: the loop drains the
    // events before it handles the message that `recv()` returns.
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.events
                .lock()
                .expect("not poisoned")
                .push(Event::Revoke(tps(tpl)));
        }
    }
}

/// Work of one partition since its last commit.
#[derive(Default)]
struct Buffer {
    last: Option<i64>,
    months: BTreeMap<BillingMonth, CallColumns>,
    keys: Vec<(BillingMonth, dedup::Key)>,
    dead_letters: Vec<DeliveryFuture>,
    counts: Summary,
    rows: usize,
    /// Estimated memory of the rows (see [`row_bytes`]).
    bytes: usize,
    since: Option<Instant>,
}

struct Partition {
    durable_last: i64,
    /// [`State::seeks`] after this partition's last seek: its records received before (a
    /// lower [`Record::epoch`]) are not applied. After a fence the loop seeks back to the other
    /// writer's commit; a record received earlier and applied then would put a later offset in
    /// the buffer first and make the records read again after the seek look like replays: a
    /// gap in the next commit, lost if that commit won the next race.
    seek_epoch: u64,
    buf: Buffer,
    /// Call starts waiting for their end; committed with the buffer. A dropped buffer always
    /// comes with a revoked partition or a reload from the commit log, so this needs no undo.
    held: Held,
}

/// What a record is, decided from its bytes and the configuration alone: converted first if
/// its topic has another format (sources.toml), then parsed and classified. No state is read
/// or changed, so a batch of records can be prepared in parallel; [`State::apply`] does the
/// rest (replays, dedup, buffers, dead letters) one record after the other, in offset order.
enum Prepared {
    Store {
        call: Box<RatedCall>,
        /// Source format and original record id of a converted record.
        provenance: Option<Provenance>,
    },
    /// A counted skip: its reason code.
    Skip(&'static str),
    DeadLetter {
        reason: &'static str,
        detail: String,
    },
    /// Its outcome depends on earlier records of its partition (a Kamailio call start waits for
    /// its end): decided by [`State::apply`] in order.
    Stateful,
}

/// `source`: the record's topic's entry in sources.toml, unless it is canonical JSON.
fn prepare(
    config: &Config,
    topic: &str,
    source: Option<&Source>,
    offset: i64,
    payload: &[u8],
) -> Prepared {
    // Topics of other formats are converted first (sources.toml); from there on a record
    // is a canonical CDR like any other.
    if source.is_some_and(|s| s.format == SourceFormat::KamailioJson) {
        return Prepared::Stateful;
    }
    let (cdr, provenance) = match source {
        None => match evn_cdr::parse(payload) {
            Ok(cdr) => (cdr, None),
            Err(rejection) => {
                return Prepared::DeadLetter {
                    reason: rejection.code(),
                    detail: rejection.to_string(),
                }
            }
        },
        Some(source) => match evn_sources::convert(source, &config.numbers, payload) {
            Ok(Converted::Call(call)) => {
                if call.repaired {
                    tracing::debug!(
                        topic,
                        offset,
                        "invalid UTF-8 repaired in a field that is not billed"
                    );
                }
                let call = *call;
                (
                    call.cdr,
                    Some(Provenance {
                        format: source.format.as_str().to_owned(),
                        record_id: call.record_id,
                    }),
                )
            }
            Ok(Converted::Skip(skip)) => return Prepared::Skip(skip.code()),
            Err(e) => {
                return Prepared::DeadLetter {
                    reason: e.code(),
                    detail: e.to_string(),
                }
            }
        },
    };
    match classify(cdr, config) {
        Outcome::Skip(skip) => Prepared::Skip(skip.code()),
        Outcome::Reject(u) => Prepared::DeadLetter {
            reason: u.code(),
            detail: u.to_string(),
        },
        Outcome::Store(call) => Prepared::Store { call, provenance },
    }
}

/// A batch's records copied out of their Kafka messages, so the prepare thread owns them and
/// the loop applies them without the messages.
struct Job {
    topics: Vec<String>,
    records: Vec<Record>,
    /// The records' payloads and keys, one after the other.
    data: Vec<u8>,
}

/// One record of a [`Job`]: what applying it needs.
struct Record {
    /// Index into [`Job::topics`].
    topic: usize,
    partition: i32,
    offset: i64,
    /// [`State::seeks`] when it was received ([`Partition::seek_epoch`]).
    epoch: u64,
    payload: Range<usize>,
    key: Option<Range<usize>>,
}

impl Job {
    /// Copies the batch's records and frees its messages while they are still in the cache:
    /// read again when the batch was applied, three batches later, they missed it (the
    /// largest item of the loop's own code, perf #7).
    fn of(batch: Vec<Received<'_>>) -> Job {
        let mut job = Job {
            topics: Vec::new(),
            records: Vec::with_capacity(batch.len()),
            data: Vec::with_capacity(
                batch
                    .iter()
                    .map(|(m, _)| m.payload_len() + m.key_len())
                    .sum(),
            ),
        };
        let mut rkt = std::ptr::null_mut();
        for (m, epoch) in &batch {
            // The topic's name only when its handle changes: `topic()` is a C string's length
            // and UTF-8 check, per record (1.4 % of ingest's CPU with the loop's, perf #7).
            if m.topic_ptr() != rkt {
                rkt = m.topic_ptr();
                let topic = m.topic();
                if job.topics.last().is_none_or(|t| t != topic) {
                    job.topics.push(topic.to_owned());
                }
            }
            let mut copy = |bytes: &[u8]| {
                let start = job.data.len();
                job.data.extend_from_slice(bytes);
                start..job.data.len()
            };
            let payload = copy(m.payload().unwrap_or(&[]));
            let key = m.key().map(copy);
            job.records.push(Record {
                topic: job.topics.len() - 1,
                partition: m.partition(),
                offset: m.offset(),
                epoch: *epoch,
                payload,
                key,
            });
        }
        job
    }

    fn payload(&self, r: &Record) -> &[u8] {
        &self.data[r.payload.clone()]
    }

    fn key(&self, r: &Record) -> Option<&[u8]> {
        r.key.clone().map(|k| &self.data[k])
    }

    fn prepare(&self, config: &Config) -> Vec<Prepared> {
        // Looked up once a batch, not once a record (a string-keyed map walk each).
        let sources: Vec<Option<&Source>> = self
            .topics
            .iter()
            .map(|topic| {
                config
                    .sources
                    .get(topic)
                    .filter(|s| s.format != SourceFormat::CanonicalJson)
            })
            .collect();
        self.records
            .iter()
            .map(|r| {
                prepare(
                    config,
                    &self.topics[r.topic],
                    sources[r.topic],
                    r.offset,
                    self.payload(r),
                )
            })
            .collect()
    }
}

/// The job back, with its records' outcomes in order.
type PreparedJob = (Job, Vec<Prepared>);
type Reply = futures::channel::oneshot::Sender<PreparedJob>;

/// The thread that [`prepare`]s batches. It works on the next batch while the loop applies and
/// commits the one before: the two halves of handling a record then take a core each, where
/// the loop's own thread used to wait for its share of prepare before applying anything.
struct Preparer {
    jobs: std::sync::mpsc::Sender<(Job, Reply)>,
}

impl Preparer {
    fn start(config: Arc<Config>) -> Result<Preparer, IngestError> {
        let (jobs, queue) = std::sync::mpsc::channel::<(Job, Reply)>();
        std::thread::Builder::new()
            .name("evn-prepare".into())
            .spawn(move || {
                // Ends when the loop's State (the only sender) is dropped.
                for (job, reply) in queue {
                    let prepared = job.prepare(&config);
                    let _ = reply.send((job, prepared));
                }
            })
            .map_err(IngestError::PrepareThread)?;
        Ok(Preparer { jobs })
    }

    fn submit(&self, batch: Vec<Received<'_>>) -> futures::channel::oneshot::Receiver<PreparedJob> {
        let (reply, prepared) = futures::channel::oneshot::channel();
        // If the thread is gone, `prepared` reports it as canceled.
        let _ = self.jobs.send((Job::of(batch), reply));
        prepared
    }
}

/// A record, with [`State::seeks`] when it was received ([`Partition::seek_epoch`]).
type Received<'c> = (rdkafka::message::BorrowedMessage<'c>, u64);

/// A batch received and handed to the prepare thread, not yet applied.
struct Pending {
    prepared: futures::channel::oneshot::Receiver<PreparedJob>,
}

/// A commit written in the background, with what its outcome needs.
struct InFlight {
    tp: Tp,
    last: i64,
    /// The buffer committed, without its rows (they went to the task).
    buf: Buffer,
    started: Instant,
    task: tokio::task::JoinHandle<Result<evn_store::CommitRecord, StoreError>>,
}

/// Counts commits being written; [`CommitGate::wait`] blocks until there are none.
#[derive(Default)]
struct CommitGate {
    open: Mutex<usize>,
    idle: std::sync::Condvar,
}

/// A commit being written; dropping it leaves the gate, also when the commit panics (a gate
/// left open would stop the next rebalance for good).
struct Entered(Arc<CommitGate>);

impl Drop for Entered {
    fn drop(&mut self) {
        let mut open = self.0.open.lock().unwrap_or_else(|e| e.into_inner());
        *open -= 1;
        if *open == 0 {
            self.0.idle.notify_all();
        }
    }
}

impl CommitGate {
    fn enter(self: &Arc<Self>) -> Entered {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        Entered(Arc::clone(self))
    }

    fn wait(&self) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let _idle = self
            .idle
            .wait_while(open, |n| *n > 0)
            .unwrap_or_else(|e| e.into_inner());
    }
}

struct State {
    config: Arc<Config>,
    preparer: Preparer,
    opts: IngestOptions,
    log: CommitLog,
    dedup: Dedup,
    /// Looked up twice per record: FxHash, not SipHash (2% of the loop thread in perf).
    parts: FxHashMap<Tp, Partition>,
    dlq: FutureProducer<DlqCtx>,
    total: Summary,
    buffered_rows: usize,
    buffered_bytes: usize,
    /// Seeks after a fence so far.
    seeks: u64,
    /// The commit being written in the background ([`State::commit_partition`]).
    in_flight: Option<InFlight>,
    /// Open while a commit is written: the rebalance callback waits for it, so a revoked
    /// partition's commit lands before its next owner starts and an assigned partition starts
    /// after our last commit.
    gate: Arc<CommitGate>,
    /// Between a revocation (or the start) and the next assignment: the group is rebalancing,
    /// so "every assigned partition is at its end" means nothing yet.
    awaiting_assignment: bool,
}

/// Runs until `shutdown` resolves, the consumer is idle (`exit_when_idle`), or an error that
/// needs an operator. Returns what was committed, and the error if any.
pub async fn run(
    config: Arc<Config>,
    opts: IngestOptions,
    shutdown: impl Future<Output = ()>,
) -> (Summary, Result<(), IngestError>) {
    let mut state = match State::new(config, opts) {
        Ok(s) => s,
        Err(e) => return (Summary::default(), Err(e)),
    };
    let result = state.run(shutdown).await;
    (state.total, result)
}

impl State {
    fn new(config: Arc<Config>, opts: IngestOptions) -> Result<Self, IngestError> {
        let writer = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let log = CommitLog::open_at(&opts.data, &writer)?.with_keys(opts.keys.clone());
        // What writers killed between their data PUT and their commit record left behind (a
        // no-op on a local folder, where `evn retention` cleans `_staging/`).
        match log.remove_orphans(evn_store::commit_object::ORPHAN_AGE) {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not remove orphaned staged objects"),
        }
        let mut dlq_cfg = ClientConfig::new();
        dlq_cfg
            .set("bootstrap.servers", &opts.brokers)
            .set("enable.idempotence", "true")
            .set("compression.type", "zstd")
            .set("linger.ms", "5")
            // Never give up on a dead letter: offsets are committed only after it is delivered.
            .set("message.timeout.ms", "0");
        for (k, v) in &opts.kafka_options {
            dlq_cfg.set(k, v);
        }
        let dlq: FutureProducer<DlqCtx> = dlq_cfg.create_with_context(DlqCtx::default())?;
        let dedup = Dedup::new(opts.keys.clone());
        Ok(State {
            preparer: Preparer::start(Arc::clone(&config))?,
            config,
            opts,
            log,
            dedup,
            parts: FxHashMap::default(),
            dlq,
            total: Summary::default(),
            buffered_rows: 0,
            buffered_bytes: 0,
            seeks: 0,
            in_flight: None,
            gate: Arc::new(CommitGate::default()),
            awaiting_assignment: true,
        })
    }

    fn consumer(&self) -> Result<StreamConsumer<Ctx>, IngestError> {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.opts.brokers)
            .set("group.id", &self.opts.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Every partition starts at an explicit offset (its commit log's next, or the
            // beginning), so a reset happens only when that offset is outside the broker's
            // log: a re-created topic or expired records. "earliest" then re-read the new
            // topic's records as replays of the old and dropped them, silently
            // (`OffsetGap`). An operator can still choose "earliest" with --kafka-option.
            .set("auto.offset.reset", "error")
            .set("fetch.wait.max.ms", "50")
            // Bounded memory: librdkafka's defaults prefetch up to 64 MiB (and 50 MiB a
            // fetch); 8 MiB of queued records is still ~25,000 CDRs ahead of the loop. A
            // partition whose queue is full is fetched again after fetch.queue.backoff.ms,
            // by default 1 s: with a small queue that stalled the loop (36k CDRs/s, half of
            // the default queue's rate).
            .set("queued.max.messages.kbytes", "8192")
            .set("fetch.max.bytes", "8388608")
            .set("fetch.queue.backoff.ms", "5")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("reconnect.backoff.max.ms", "2000");
        for (k, v) in &self.opts.kafka_options {
            cfg.set(k, v);
        }
        let consumer: StreamConsumer<Ctx> = cfg.create_with_context(Ctx {
            events: Mutex::new(Vec::new()),
            health: Arc::clone(&self.opts.health),
            log: self.log.clone(),
            gate: Arc::clone(&self.gate),
            quiet: Quiet::default(),
        })?;
        let topics: Vec<&str> = self.opts.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(consumer)
    }

    async fn run(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), IngestError> {
        let consumer = self.consumer()?;
        let result = self.consume(&consumer, shutdown).await;
        // A commit started before an error lands anyway (the runtime waits for it): count it.
        let finished = self.finish_commit(&consumer).await;
        result.and(finished)
    }

    async fn consume(
        &mut self,
        consumer: &StreamConsumer<Ctx>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), IngestError> {
        tokio::pin!(shutdown);
        let started = Instant::now();
        let mut last_message = Instant::now();
        // With `exit_when_idle`, ticks come often enough that a partition found at its end late
        // (a rebalance) is noticed soon, and the tick is moved to the moment the idle time is up
        // (below): a batch job's run time should not depend on the tick's phase.
        let every = self
            .opts
            .exit_when_idle
            .map_or(TICK, |idle| (idle / 5).clamp(TICK / 10, TICK));
        let mut tick = tokio::time::interval(every);
        let mut last_probe = Instant::now() - Duration::from_secs(60);
        let mut last_lag = Instant::now();
        let mut unreachable_since: Option<Instant> = None;
        let mut pending: VecDeque<Pending> = VecDeque::new();
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    tracing::info!("shutdown requested: committing buffers");
                    break;
                }
                msg = consumer.recv() => {
                    let epoch = self.seeks;
                    self.drain_events_after(consumer, &mut pending).await?;
                    match msg {
                        Ok(m) => {
                            last_message = Instant::now();
                            self.opts.health.set_ready(true);
                            self.handle_received(consumer, (m, epoch), &mut pending).await?;
                        }
                        Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset)) => {
                            return Err(IngestError::OffsetGap(self.gaps(consumer)));
                        }
                        Err(e) => {
                            if let Some(repeats) = consumer.context().quiet.log(&e.to_string()) {
                                tracing::warn!(error = %e, repeats, "kafka reports a problem; retrying");
                            }
                            self.commit_due(consumer, false).await?;
                        }
                    }
                }
                _ = tick.tick() => {
                    self.opts.health.beat();
                    self.dedup.tick();
                    if self.in_flight.as_ref().is_some_and(|c| c.task.is_finished()) {
                        self.finish_commit(consumer).await?;
                    }
                    // Pending batches are applied when records stop coming (they would wait for
                    // the next record otherwise) and before rebalance events. Under load they
                    // stay pending: applying them every tick emptied the pipeline, and the loop
                    // then waited for the prepare thread to fill it (2 M CDR benchmark, 100 ms
                    // tick: the loop waited 0.58-0.93 s for prepare, now 0.39-0.56 s). Buffers
                    // due by age commit what is applied; pending records come after it and go
                    // into the next commit.
                    if last_message.elapsed() >= every || events_pending(consumer) {
                        self.apply_pending(consumer, &mut pending).await?;
                        self.drain_events(consumer).await?;
                    }
                    self.commit_due(consumer, false).await?;
                    if !self.opts.health.is_ready() && last_probe.elapsed() >= Duration::from_secs(2) {
                        last_probe = Instant::now();
                        self.probe_broker(consumer);
                    }
                    if last_lag.elapsed() >= Duration::from_secs(5) {
                        last_lag = Instant::now();
                        self.report_lag(consumer);
                    }
                    if let Some(idle) = self.opts.exit_when_idle {
                        // A batch run whose brokers do not answer (a typo in --brokers, Kafka
                        // down) would wait for ever: it gives up, without committing (a dead
                        // letter in flight could not be delivered), after half a minute or the
                        // idle time, whichever is longer.
                        if self.opts.health.is_ready() {
                            unreachable_since = None;
                        } else {
                            let since = *unreachable_since.get_or_insert_with(Instant::now);
                            let limit = idle.max(UNREACHABLE_LIMIT);
                            if since.elapsed() >= limit {
                                return Err(IngestError::Unreachable {
                                    brokers: self.opts.brokers.clone(),
                                    secs: limit.as_secs(),
                                });
                            }
                        }
                        // A rebalance can take a while (a dead member's session must expire; the
                        // group waits for every member to rejoin): only an assignment, even an
                        // empty one, says which partitions are ours to finish.
                        if !self.awaiting_assignment && last_message.elapsed() >= idle && started.elapsed() >= idle && self.at_end(consumer) {
                            tracing::info!("every assigned partition is at its end: exiting");
                            break;
                        }
                        // The idle time is up before the next tick: tick then, not up to a
                        // tick later (0-100 ms of a 0.5 s wait, ~1 % of the benchmark's run).
                        let due = (last_message + idle).max(started + idle);
                        let now = Instant::now();
                        if due > now && due < now + every {
                            tick.reset_at(due.into());
                        }
                    }
                }
            }
        }
        self.apply_pending(consumer, &mut pending).await?;
        self.drain_events(consumer).await?;
        self.commit_due(consumer, true).await?;
        self.finish_commit(consumer).await?;
        self.total.held = self.parts.values().map(|p| p.held.len() as u64).sum();
        Ok(())
    }

    /// Takes `first` and whatever else the consumer has ready right now (up to [`BATCH`]
    /// records) as one batch, hands it to the prepare thread, and meanwhile applies the oldest
    /// pending batches beyond [`AHEAD`]. A rebalance event ends a batch: every record received before it is applied
    /// first, then the events are drained, then the record that came with them, as when
    /// records were handled one by one.
    async fn handle_received<'c>(
        &mut self,
        consumer: &'c StreamConsumer<Ctx>,
        first: Received<'c>,
        pending: &mut VecDeque<Pending>,
    ) -> Result<(), IngestError> {
        let mut batch = vec![first];
        let mut more = consumer.stream();
        while batch.len() < BATCH {
            match more.next().now_or_never() {
                Some(Some(Ok(m))) => {
                    let m = (m, self.seeks);
                    if events_pending(consumer) {
                        self.submit(consumer, std::mem::take(&mut batch), pending)
                            .await?;
                        self.drain_events_after(consumer, pending).await?;
                    }
                    batch.push(m);
                }
                Some(Some(Err(e))) => {
                    tracing::warn!(error = %e, "kafka reports a problem; retrying");
                }
                Some(None) | None => break,
            }
        }
        // The loop's other arms (ticks, shutdown) get their turn between batches.
        self.submit(consumer, batch, pending).await
    }

    /// Hands `batch` to the prepare thread and applies the oldest pending batches, so that at
    /// most [`AHEAD`] stay pending.
    async fn submit<'c>(
        &mut self,
        consumer: &StreamConsumer<Ctx>,
        batch: Vec<Received<'c>>,
        pending: &mut VecDeque<Pending>,
    ) -> Result<(), IngestError> {
        if batch.is_empty() {
            return Ok(());
        }
        let prepared = self.preparer.submit(batch);
        pending.push_back(Pending { prepared });
        while pending.len() > AHEAD {
            let oldest = pending.pop_front().expect("more than AHEAD");
            self.apply_batch(consumer, oldest).await?;
        }
        Ok(())
    }

    /// Applies every pending batch, oldest first.
    async fn apply_pending(
        &mut self,
        consumer: &StreamConsumer<Ctx>,
        pending: &mut VecDeque<Pending>,
    ) -> Result<(), IngestError> {
        while let Some(p) = pending.pop_front() {
            self.apply_batch(consumer, p).await?;
        }
        Ok(())
    }

    /// Drains rebalance events, if there are any, after applying every record received before
    /// them.
    async fn drain_events_after(
        &mut self,
        consumer: &StreamConsumer<Ctx>,
        pending: &mut VecDeque<Pending>,
    ) -> Result<(), IngestError> {
        if events_pending(consumer) {
            self.apply_pending(consumer, pending).await?;
        }
        self.drain_events(consumer).await
    }

    async fn drain_events(&mut self, consumer: &StreamConsumer<Ctx>) -> Result<(), IngestError> {
        let events: Vec<Event> =
            std::mem::take(&mut *consumer.context().events.lock().expect("not poisoned"));
        let any = !events.is_empty();
        for event in events {
            match event {
                Event::Revoke(list) => {
                    self.awaiting_assignment = true;
                    for tp in list {
                        self.opts.metrics.forget_partition(&tp.0, tp.1);
                        if let Some(p) = self.parts.remove(&tp) {
                            // Another member takes over from our last commit; our buffer is redone there.
                            self.drop_buffer(p.buf);
                            tracing::info!(topic = %tp.0, partition = tp.1, "partition revoked");
                        }
                    }
                }
                Event::Assign(list) => {
                    // The commit in flight ends before partitions are set up from the log (the
                    // callback waited for it to land). Revoked partitions are gone by now, so a
                    // fence of one is not answered by a seek on a partition no longer ours.
                    self.finish_commit(consumer).await?;
                    self.awaiting_assignment = false;
                    for (tp, state) in list {
                        let state = match state {
                            Some(state) => state,
                            None => tokio::task::block_in_place(|| self.log.recover(&tp.0, tp.1))?,
                        };
                        tracing::info!(topic = %tp.0, partition = tp.1, durable_last = state.last, held = state.held.len(), "partition assigned");
                        self.parts.insert(
                            tp.clone(),
                            Partition {
                                durable_last: state.last,
                                // Not `self.seeks`: a fence of another partition in this
                                // drain would make the record that came with the events (of
                                // this assignment, tagged before the drain) look stale.
                                seek_epoch: 0,
                                buf: Buffer::default(),
                                held: Held::default(),
                            },
                        );
                        self.restore_held(&tp, state.held)?;
                    }
                }
            }
        }
        if any {
            self.finish_commit(consumer).await?;
        }
        Ok(())
    }

    /// After a fence: the winner's rows are in files that our month sets were loaded before.
    /// Without them, a later duplicate of one of its rows on this partition would be stored
    /// again (the billing run would still drop it). The months are read again from the files,
    /// and the keys still buffered are added back.
    fn reload_dedup(&mut self) -> Result<(), IngestError> {
        self.dedup = Dedup::new(self.opts.keys.clone());
        let (dedup, data, parts) = (&mut self.dedup, &self.opts.data, &self.parts);
        tokio::task::block_in_place(|| {
            for p in parts.values() {
                for &(month, key) in &p.buf.keys {
                    dedup.insert(data, month, key)?;
                }
            }
            Ok(())
        })
    }

    fn drop_buffer(&mut self, buf: Buffer) {
        for (month, key) in buf.keys {
            self.dedup.forget(month, key);
        }
        self.buffered_rows -= buf.rows;
        self.buffered_bytes -= buf.bytes;
    }

    /// Applies a prepared batch one record after the other, in the order received, each
    /// followed by [`State::commit_full`].
    async fn apply_batch(
        &mut self,
        consumer: &StreamConsumer<Ctx>,
        pending: Pending,
    ) -> Result<(), IngestError> {
        // Canceled only if the prepare thread is gone, which a panic in `prepare` would do.
        let (job, prepared) = pending.prepared.await.map_err(|_| {
            IngestError::PrepareThread(std::io::Error::other("the prepare thread stopped"))
        })?;
        // A batch comes in runs of one partition: one key per run, not one per record.
        let mut tp: Tp = (String::new(), -1);
        let mut topic = usize::MAX;
        for (r, prepared) in job.records.iter().zip(prepared) {
            if tp.1 != r.partition || topic != r.topic {
                topic = r.topic;
                if tp.0 != job.topics[topic] {
                    tp.0.clone_from(&job.topics[topic]);
                }
                tp.1 = r.partition;
            }
            self.apply(&tp, r, &job, prepared).await?;
            self.commit_full(consumer, &tp).await?;
        }
        Ok(())
    }

    /// After a record of `tp`: what [`State::commit_due`] would commit now, checked for the one
    /// buffer that changed (a full buffer, then the memory caps); buffers due by age are
    /// committed on the loop's tick (every 500 ms), not checked after every record.
    async fn commit_full(
        &mut self,
        consumer: &StreamConsumer<Ctx>,
        tp: &Tp,
    ) -> Result<(), IngestError> {
        let full = self
            .parts
            .get(tp)
            .is_some_and(|p| p.buf.last.is_some() && p.buf.rows >= self.opts.max_rows_per_commit);
        if full {
            return self.commit_partition(consumer, tp).await;
        }
        if self.buffered_rows > self.opts.max_buffered_rows
            || self.buffered_bytes > self.opts.max_buffered_bytes
        {
            // Bounded memory: the largest buffer goes first.
            if let Some((largest, _)) = self.parts.iter().max_by_key(|(_, p)| p.buf.rows) {
                let largest = largest.clone();
                return self.commit_partition(consumer, &largest).await;
            }
        }
        Ok(())
    }

    /// The stateful half of handling a record, in offset order: replay check, dead letter,
    /// counted skip, or dedup and buffer.
    async fn apply(
        &mut self,
        tp: &Tp,
        r: &Record,
        job: &Job,
        prepared: Prepared,
    ) -> Result<(), IngestError> {
        let (epoch, offset) = (r.epoch, r.offset);
        let Some(part) = self.parts.get_mut(tp) else {
            return Ok(()); // revoked meanwhile: the new owner handles it
        };
        if epoch < part.seek_epoch {
            return Ok(()); // received before a seek: read again after it
        }
        let buf = &mut part.buf;
        if offset <= part.durable_last || buf.last.is_some_and(|l| offset <= l) {
            // Already durably handled (replay after a crash or rebalance): nothing to commit.
            self.total.skip("replayed");
            self.opts.metrics.replayed();
            return Ok(());
        }
        buf.since.get_or_insert_with(Instant::now);
        buf.last = Some(offset);
        let (call, provenance, start) = match prepared {
            Prepared::Skip(code) => {
                buf.counts.skip(code);
                return Ok(());
            }
            Prepared::DeadLetter { reason, detail } => {
                return self.dead_letter(tp, offset, job.key(r), job.payload(r), reason, &detail);
            }
            Prepared::Store { call, provenance } => (call, provenance, None),
            Prepared::Stateful => match self.stateful(tp, offset, job.key(r), job.payload(r))? {
                Some(call) => call,
                None => return Ok(()),
            },
        };
        // A Kamailio start folds into its call whether the call is stored or a duplicate.
        self.fold_start(tp, start);
        let key = dedup::key(&call.switch_id, &call.cdr_id);
        let month = call.billing_month;
        let fresh = tokio::task::block_in_place(|| {
            self.dedup
                .insert_call(&self.opts.data, month, call.start_time, key)
        })?;
        let buf = &mut self.parts.get_mut(tp).expect("present").buf;
        if !fresh {
            buf.counts.skip("duplicate");
            return Ok(());
        }
        buf.keys.push((month, key));
        let bytes = buf.months.entry(month).or_default().push(
            &call,
            &tp.0,
            tp.1,
            offset,
            provenance.as_ref(),
        );
        buf.rows += 1;
        buf.bytes += bytes;
        buf.counts.store();
        self.buffered_rows += 1;
        self.buffered_bytes += bytes;
        Ok(())
    }

    /// A record whose outcome depends on its partition's earlier records (Kamailio): converted
    /// with the partition's held starts, classified; skips and dead letters are counted here.
    /// Returns the call to store, with its provenance and the start it was made from.
    #[allow(clippy::type_complexity)]
    fn stateful(
        &mut self,
        tp: &Tp,
        offset: i64,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<Option<(Box<RatedCall>, Option<Provenance>, Option<HeldRecord>)>, IngestError> {
        let config = Arc::clone(&self.config);
        let source = config
            .sources
            .get(&tp.0)
            .expect("stateful records have a source");
        let Some((converted, start)) = self.convert(tp, offset, key, payload, source)? else {
            return Ok(None);
        };
        let call = match converted {
            Ok(Converted::Call(call)) => *call,
            Ok(Converted::Skip(skip)) => {
                self.fold_start(tp, start);
                self.counts(tp).skip(skip.code());
                return Ok(None);
            }
            Err(e) => {
                let detail = e.to_string();
                self.dead_letter_start(tp, start, e.code(), &detail)?;
                self.dead_letter(tp, offset, key, payload, e.code(), &detail)?;
                return Ok(None);
            }
        };
        let provenance = Provenance {
            format: source.format.as_str().to_owned(),
            record_id: call.record_id,
        };
        match classify(call.cdr, &config) {
            Outcome::Store(rated) => Ok(Some((rated, Some(provenance), start))),
            Outcome::Skip(skip) => {
                self.fold_start(tp, start);
                self.counts(tp).skip(skip.code());
                Ok(None)
            }
            Outcome::Reject(u) => {
                // The start goes with its call to the dead-letter topic, so the call can be
                // replayed from there whole.
                let detail = u.to_string();
                self.dead_letter_start(tp, start, u.code(), &detail)?;
                self.dead_letter(tp, offset, key, payload, u.code(), &detail)?;
                Ok(None)
            }
        }
    }

    /// A Kamailio record → a canonical call, a skip or a dead-letter reason, with the held
    /// start the call was made from; None when the record itself is held for a later one (a
    /// call start) or already accounted for.
    #[allow(clippy::type_complexity)]
    fn convert(
        &mut self,
        tp: &Tp,
        offset: i64,
        key: Option<&[u8]>,
        payload: &[u8],
        source: &Source,
    ) -> Result<Option<(Result<Converted, SourceError>, Option<HeldRecord>)>, IngestError> {
        let config = Arc::clone(&self.config);
        let numbers = &config.numbers;
        let record = match kamailio::read(source, numbers, payload) {
            Ok(r) => r,
            Err(e) => return Ok(Some((Err(e), None))),
        };
        let max_call = chrono::Duration::hours(i64::from(source.max_call_hours));
        match record {
            Kamailio::Converted(c) => Ok(Some((Ok(c), None))),
            Kamailio::Start { call, at } => {
                self.expire_held(tp, at - max_call)?;
                // A resent start of a call stored already is a duplicate: holding it would
                // only dead-letter it a day later.
                let stored = dedup::key(&source.switch_id, kamailio::callid_of(&call));
                let data = self.opts.data.clone();
                let month = BillingMonth::of(at);
                if tokio::task::block_in_place(|| self.dedup.contains(&data, month, stored))? {
                    self.counts(tp).skip("duplicate");
                    return Ok(None);
                }
                let part = self.parts.get_mut(tp).expect("present");
                if part.held.contains(&call) {
                    part.buf.counts.skip(evn_sources::Skip::InDialog.code());
                    return Ok(None);
                }
                let record = HeldRecord {
                    offset,
                    key: key.map(<[u8]>::to_vec),
                    payload: payload.to_vec(),
                };
                part.held.insert(call, at, record);
                self.opts.metrics.set_held(tp, part.held.len());
                Ok(None)
            }
            Kamailio::End { call, callid, at } => {
                self.expire_held(tp, at - max_call)?;
                let part = self.parts.get_mut(tp).expect("present");
                if let Some(start) = part.held.take(&call) {
                    self.opts.metrics.set_held(tp, part.held.len());
                    let call = kamailio::pair(source, numbers, &start.payload, payload);
                    return Ok(Some((call, Some(start))));
                }
                // A resent BYE of a call stored already is a duplicate, not a lost start.
                let stored = dedup::key(&source.switch_id, &callid);
                let data = self.opts.data.clone();
                for month in [BillingMonth::of(at), BillingMonth::of(at - max_call)] {
                    if tokio::task::block_in_place(|| self.dedup.contains(&data, month, stored))? {
                        self.counts(tp).skip("duplicate");
                        return Ok(None);
                    }
                }
                Ok(Some((Err(SourceError::Unpaired { end: true }), None)))
            }
        }
    }

    /// Drops dedup months nobody touched lately; a month with buffered rows in any partition
    /// stays (their keys are in no file yet).
    fn evict_idle_months(&mut self) {
        let buffered: std::collections::BTreeSet<BillingMonth> = self
            .parts
            .values()
            .flat_map(|p| p.buf.months.keys().copied())
            .collect();
        let dropped = self
            .dedup
            .evict_idle(dedup::IDLE_MONTH, |m| buffered.contains(&m));
        if dropped > 0 {
            tracing::debug!(
                dropped,
                kept = self.dedup.months(),
                "idle billing months dropped from the duplicate check"
            );
        }
    }

    /// The counts of a partition's buffer.
    fn counts(&mut self, tp: &Tp) -> &mut Summary {
        &mut self.parts.get_mut(tp).expect("present").buf.counts
    }

    /// A held start whose call was made: counted as folded into it (its outcome is the call's).
    fn fold_start(&mut self, tp: &Tp, start: Option<HeldRecord>) {
        if start.is_some() {
            self.counts(tp).skip(evn_sources::Skip::CallStart.code());
        }
    }

    /// A held start whose call cannot be used: to the dead-letter topic with the call's reason.
    fn dead_letter_start(
        &mut self,
        tp: &Tp,
        start: Option<HeldRecord>,
        reason: &str,
        detail: &str,
    ) -> Result<(), IngestError> {
        match start {
            Some(s) => self.dead_letter(tp, s.offset, s.key.as_deref(), &s.payload, reason, detail),
            None => Ok(()),
        }
    }

    /// Dead-letters the held starts of a partition older than `before`: their end is overdue.
    fn expire_held(
        &mut self,
        tp: &Tp,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), IngestError> {
        let expired = self
            .parts
            .get_mut(tp)
            .expect("present")
            .held
            .take_older_than(before);
        for start in expired {
            let e = SourceError::Unpaired { end: false };
            let detail = e.to_string();
            self.dead_letter(
                tp,
                start.offset,
                start.key.as_deref(),
                &start.payload,
                e.code(),
                &detail,
            )?;
        }
        Ok(())
    }

    /// Rebuilds a partition's held starts from its commit record; a start that no longer reads
    /// as one (the source's configuration changed) is dead-lettered with the reason.
    fn restore_held(&mut self, tp: &Tp, held: Vec<HeldRecord>) -> Result<(), IngestError> {
        let config = Arc::clone(&self.config);
        let source = config.sources.get(&tp.0);
        for record in held {
            let read = match source {
                Some(s) if s.format == SourceFormat::KamailioJson => {
                    kamailio::read(s, &config.numbers, &record.payload)
                }
                _ => Err(SourceError::Unpaired { end: false }),
            };
            match read {
                Ok(Kamailio::Start { call, at }) => {
                    let part = self.parts.get_mut(tp).expect("present");
                    part.held.insert(call, at, record);
                }
                other => {
                    let e = match other {
                        Err(e) => e,
                        Ok(_) => SourceError::Unpaired { end: false },
                    };
                    let detail = e.to_string();
                    // Sent now, counted and dropped from the held set by the partition's next
                    // commit (a commit needs a new offset; until then a restart repeats this).
                    self.dead_letter(
                        tp,
                        record.offset,
                        record.key.as_deref(),
                        &record.payload,
                        e.code(),
                        &detail,
                    )?;
                }
            }
        }
        let n = self.parts[tp].held.len();
        self.opts.metrics.set_held(tp, n);
        Ok(())
    }

    fn dead_letter(
        &mut self,
        tp: &Tp,
        offset: i64,
        key: Option<&[u8]>,
        payload: &[u8],
        reason: &str,
        detail: &str,
    ) -> Result<(), IngestError> {
        let topic = self
            .opts
            .dlq_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", tp.0));
        // The reason may quote the bad value (a "number" of 600 KB): a header that long would
        // make the dead letter undeliverable again.
        let detail = clip(detail, DLQ_MAX_DETAIL);
        let detail = detail.as_ref();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "evn-error",
                value: Some(detail),
            })
            .insert(Header {
                key: "evn-reason",
                value: Some(reason),
            })
            .insert(Header {
                key: "evn-source-topic",
                value: Some(tp.0.as_str()),
            })
            .insert(Header {
                key: "evn-source-partition",
                value: Some(&tp.1.to_string()),
            })
            .insert(Header {
                key: "evn-source-offset",
                value: Some(&offset.to_string()),
            });
        // A dead letter must always be deliverable: a record larger than the producer (1 MB)
        // or the topic (Kafka's default 1 MiB) accepts failed on every restart, and the
        // partition never moved again. Such a record is garbage anyway; its head, its size
        // and its digest tell the operator which one it was.
        let (payload, headers) = if payload.len() > DLQ_MAX_PAYLOAD {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(payload);
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            let headers = headers
                .insert(Header {
                    key: "evn-truncated-from",
                    value: Some(&payload.len().to_string()),
                })
                .insert(Header {
                    key: "evn-sha256",
                    value: Some(&hex),
                });
            (&payload[..DLQ_MAX_PAYLOAD], headers)
        } else {
            (payload, headers)
        };
        let key = key.map(|k| &k[..k.len().min(DLQ_MAX_KEY)]);
        let mut record = FutureRecord::to(&topic).payload(payload).headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        let future = self
            .dlq
            .send_result(record)
            .map_err(|(e, _)| IngestError::DeadLetter(e.to_string()))?;
        let buf = &mut self.parts.get_mut(tp).expect("present").buf;
        buf.dead_letters.push(future);
        buf.counts.dead_letter(reason);
        Ok(())
    }

    /// Commits every partition whose buffer is due (all of them when `all`).
    async fn commit_due(
        &mut self,
        consumer: &StreamConsumer<Ctx>,
        all: bool,
    ) -> Result<(), IngestError> {
        let now = Instant::now();
        let mut due: Vec<Tp> = self
            .parts
            .iter()
            .filter(|(_, p)| {
                let b = &p.buf;
                b.last.is_some()
                    && (all
                        || b.rows >= self.opts.max_rows_per_commit
                        || b.since
                            .is_some_and(|s| now.duration_since(s) >= self.opts.flush_interval))
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        if due.is_empty()
            && (self.buffered_rows > self.opts.max_buffered_rows
                || self.buffered_bytes > self.opts.max_buffered_bytes)
        {
            // Bounded memory: the largest buffer goes first.
            if let Some((tp, _)) = self.parts.iter().max_by_key(|(_, p)| p.buf.rows) {
                due.push(tp.clone());
            }
        }
        for tp in due {
            self.commit_partition(consumer, &tp).await?;
        }
        Ok(())
    }

    /// Starts committing `tp`'s buffer in the background (tokio's blocking pool) after the
    /// commit in flight, if any, is finished: the loop applies the next records while the
    /// Parquet files are written, where it used to wait a quarter of its time for them (2 M
    /// CDR benchmark). One commit at a time: a partition's next commit starts from the
    /// previous one's `last`, and memory stays bounded.
    async fn commit_partition(
        &mut self,
        consumer: &StreamConsumer<Ctx>,
        tp: &Tp,
    ) -> Result<(), IngestError> {
        self.finish_commit(consumer).await?;
        let Some(part) = self.parts.get_mut(tp) else {
            return Ok(());
        };
        let mut buf = std::mem::take(&mut part.buf);
        let Some(last) = buf.last else { return Ok(()) };
        let prev = part.durable_last;
        let held = part.held.records();
        for f in buf.dead_letters.iter_mut() {
            match f.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(IngestError::DeadLetter(e.to_string())),
                Err(_) => return Err(IngestError::DeadLetter("the producer was dropped".into())),
            }
        }
        let started = Instant::now();
        let options = WriteOptions {
            keys: self.opts.keys.clone(),
            // The list the rows' counselling flags come from (see evn_billing's scan).
            counselling_version: Some(self.config.counselling.version.clone()),
            ..WriteOptions::default()
        };
        let batches: BTreeMap<BillingMonth, CallBatch> = std::mem::take(&mut buf.months)
            .into_iter()
            .map(|(month, mut columns)| (month, columns.finish()))
            .collect();
        // The rows left the buffers: counted there, they would trigger the memory cap's next
        // commit at once, which would wait for this one.
        self.buffered_rows -= std::mem::take(&mut buf.rows);
        self.buffered_bytes -= std::mem::take(&mut buf.bytes);
        self.opts.metrics.set_buffered(self.buffered_rows);
        let (log, gate, topic, partition) =
            (self.log.clone(), Arc::clone(&self.gate), tp.0.clone(), tp.1);
        let entered = gate.enter();
        let task = tokio::task::spawn_blocking(move || {
            let _entered = entered; // left when the commit returns or panics
            log.commit_holding(&topic, partition, prev, last, &batches, &held, options)
        });
        self.in_flight = Some(InFlight {
            tp: tp.clone(),
            last,
            buf,
            started,
            task,
        });
        Ok(())
    }

    /// Waits for the commit in flight, if any, and acts on its outcome.
    async fn finish_commit(&mut self, consumer: &StreamConsumer<Ctx>) -> Result<(), IngestError> {
        let Some(InFlight {
            tp,
            last,
            buf,
            started,
            task,
        }) = self.in_flight.take()
        else {
            return Ok(());
        };
        // Fails only if the task panicked: nothing past the last commit is acknowledged.
        let result = task
            .await
            .map_err(|e| IngestError::CommitTask(e.to_string()))?;
        let tp = &tp;
        match result {
            Ok(record) => {
                let mut counts = buf.counts;
                counts.files = record.files.len() as u64;
                tracing::info!(topic = %tp.0, partition = tp.1, first = record.first, last, stored = counts.stored, consumed = counts.consumed, files = counts.files, millis = started.elapsed().as_millis() as u64, "committed");
                self.total.merge(&counts);
                self.opts
                    .metrics
                    .committed(&counts, started.elapsed().as_secs_f64());
                if let Some(p) = self.parts.get_mut(tp) {
                    p.durable_last = last;
                }
                self.evict_idle_months();
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(last + 1))?;
                // Only a hint for the next owner; the commit log above is the truth.
                if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                    tracing::debug!(error = %e, "group offset commit failed (harmless)");
                }
                Ok(())
            }
            Err(StoreError::Fenced { .. }) => {
                tracing::warn!(topic = %tp.0, partition = tp.1, "another member committed this partition first: dropping our buffer and resuming after its commit");
                self.drop_buffer(buf);
                let Some(p) = self.parts.get_mut(tp) else {
                    return Ok(()); // revoked meanwhile: the new owner resumes from the log
                };
                // Records applied since the commit started follow the fenced range: they are
                // read again after the seek below. Records received before it are stale.
                let after = std::mem::take(&mut p.buf);
                self.seeks += 1;
                p.seek_epoch = self.seeks;
                self.drop_buffer(after);
                if !assigned(consumer, tp)? {
                    // Revoked in a poll before this outcome was handled (under the cooperative
                    // protocol its revoke may be out of the event list already, not yet
                    // handled): librdkafka stopped fetching it, a seek would fail, and the
                    // revoke forgets the partition.
                    return Ok(());
                }
                // After `recover`, which completes the winner's commit (its files in place).
                let state = tokio::task::block_in_place(|| self.log.recover(&tp.0, tp.1))?;
                self.reload_dedup()?;
                if let Some(p) = self.parts.get_mut(tp) {
                    p.durable_last = state.last;
                    p.held = Held::default();
                }
                self.restore_held(tp, state.held)?;
                consumer.seek(
                    &tp.0,
                    tp.1,
                    Offset::Offset(state.last + 1),
                    Duration::from_secs(10),
                )?;
                Ok(())
            }
            Err(e) => {
                tracing::error!(topic = %tp.0, partition = tp.1, error = %e, "commit failed: data at risk, stopping");
                Err(e.into())
            }
        }
    }

    /// The next offset this member will handle, per assigned partition.
    fn next_offsets(&self, consumer: &StreamConsumer<Ctx>) -> Option<HashMap<Tp, i64>> {
        let positions: HashMap<Tp, i64> = consumer
            .position()
            .ok()?
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
                _ => None,
            })
            .collect();
        Some(
            self.parts
                .iter()
                .map(|(tp, p)| {
                    let next = positions
                        .get(tp)
                        .copied()
                        .unwrap_or(-1)
                        .max(p.durable_last + 1)
                        .max(p.buf.last.map_or(-1, |l| l + 1));
                    (tp.clone(), next)
                })
                .collect(),
        )
    }

    /// Lag from the watermarks the consumer already holds (no broker round trip).
    fn report_lag(&self, consumer: &StreamConsumer<Ctx>) {
        self.opts.metrics.set_buffered(self.buffered_rows);
        let Some(next) = self.next_offsets(consumer) else {
            return;
        };
        for (tp, next) in next {
            if let Some(high) = cached_high_watermark(consumer, &tp.0, tp.1) {
                self.opts.metrics.set_lag(&tp.0, tp.1, (high - next).max(0));
            }
        }
    }

    /// The assigned partitions whose next offset the broker's log does not hold, for the
    /// offset-gap error: librdkafka's own warning names neither topic nor partition.
    fn gaps(&self, consumer: &StreamConsumer<Ctx>) -> String {
        let found: Vec<String> = tokio::task::block_in_place(|| {
            self.parts
                .iter()
                .filter_map(|(tp, part)| {
                    let next = part.buf.last.unwrap_or(part.durable_last) + 1;
                    let (low, high) = consumer
                        .fetch_watermarks(&tp.0, tp.1, Duration::from_secs(2))
                        .ok()?;
                    (next < low || next > high).then(|| {
                        format!(
                            "{} partition {}: resumes at offset {next}, the broker holds {low} to {high}",
                            tp.0, tp.1
                        )
                    })
                })
                .collect()
        });
        if found.is_empty() {
            "the broker named no partition".to_owned()
        } else {
            found.join("; ")
        }
    }

    /// Readiness comes back once the broker answers a metadata request.
    fn probe_broker(&self, consumer: &StreamConsumer<Ctx>) {
        let topic = self.opts.topics.first().map(String::as_str);
        let answered = tokio::task::block_in_place(|| {
            consumer
                .fetch_metadata(topic, Duration::from_secs(1))
                .is_ok()
        });
        if answered {
            self.opts.health.set_ready(true);
        }
    }

    /// Whether every assigned partition's next offset is at its high watermark. The watermarks
    /// of the last fetch responses rule out most ticks for free; the broker is asked only when
    /// those say "at the end", and once for all partitions (one ListOffsets request). A
    /// watermark request per partition queued behind the fetch long-polls on the same
    /// connection: with 32 partitions the check took up to 1.9 s.
    fn at_end(&self, consumer: &StreamConsumer<Ctx>) -> bool {
        let Some(next) = self.next_offsets(consumer) else {
            return false;
        };
        let behind_cached = next.iter().any(|(tp, &next)| {
            cached_high_watermark(consumer, &tp.0, tp.1).is_some_and(|high| next < high)
        });
        if behind_cached {
            return false;
        }
        let Ok(ends) = tokio::task::block_in_place(|| {
            let mut latest = consumer.assignment()?;
            // The protocol's "latest" timestamp is -1, which rdkafka spells `Offset::End`.
            latest.set_all_offsets(Offset::End)?;
            consumer.offsets_for_times(latest, Duration::from_secs(2))
        }) else {
            return false;
        };
        next.iter().all(|(tp, &next)| {
            ends.find_partition(&tp.0, tp.1)
                .is_some_and(|e| matches!(e.offset(), Offset::Offset(high) if next >= high))
        })
    }
}

/// Whether librdkafka still has `tp` assigned (it unassigns in the rebalance callback, inside a
/// poll, before the loop drains the revoke).
fn assigned(consumer: &StreamConsumer<Ctx>, tp: &Tp) -> Result<bool, IngestError> {
    Ok(consumer.assignment()?.find_partition(&tp.0, tp.1).is_some())
}

/// Whether a rebalance event waits to be drained (it arrived with the last record received).
fn events_pending(consumer: &StreamConsumer<Ctx>) -> bool {
    !consumer
        .context()
        .events
        .lock()
        .expect("not poisoned")
        .is_empty()
}

/// The high watermark librdkafka last saw in a fetch response; rdkafka 0.39 wraps only the
/// network round trip (`fetch_watermarks`), which would stall the loop once per partition.
fn cached_high_watermark(
    consumer: &StreamConsumer<Ctx>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: the client handle lives as long as `consumer`; librdkafka only reads the topic
    // name and writes the two out-parameters.
    let err = unsafe {
        rdkafka_sys::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}
