//! `evn`: the one binary. Argument parsing, config loading, wiring and exit codes; no business
//! rule lives here (INTERFACES.md §4). Exit codes: 0 success, 1 runtime failure, 2 usage or
//! configuration error.

/// `println!` for a command's results: a reader that went away ends the command with exit 0
/// instead of a panic (see `stdout`). Evaluates to `Result<(), Failure>`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::stdout::line(format_args!($($arg)*))
    };
}

mod demo;
mod privacy;
mod serve;
mod stdout;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use evn_config::Config;
use evn_rating::BillingMonth;

#[derive(Parser)]
#[command(
    name = "evn",
    version,
    about = "CDRs from Kafka to monthly itemised call records (EVN)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Embedded Kafka-protocol broker for dev, demo and tests (in memory; never production).
    Broker {
        #[arg(long, default_value = "127.0.0.1:9092")]
        listen: SocketAddr,
        /// NAME:PARTITIONS, created up front (repeatable).
        #[arg(long = "topic", value_parser = parse_topic)]
        topics: Vec<(String, i32)>,
    },
    /// Publish JSON-lines CDR files, one record per line, keyed by customer_id.
    Produce {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check the operator configuration and print a summary.
    Validate {
        #[arg(long)]
        config: PathBuf,
    },
    /// Consume CDRs and write monthly Parquet, exactly once.
    Ingest {
        #[arg(long)]
        brokers: String,
        /// Source topic (repeatable); default: every topic of CONFIG/sources.toml.
        #[arg(long = "topic")]
        topics: Vec<String>,
        #[arg(long)]
        group: String,
        #[arg(long)]
        config: PathBuf,
        /// Data folder, or an object store: s3://bucket/prefix (credentials and endpoint from
        /// the AWS_* variables), file:///abs/path, memory://name (this process only).
        #[arg(long)]
        data: evn_store::Location,
        /// Dead-letter topic (default: `<topic>.dlq`).
        #[arg(long)]
        dlq_topic: Option<String>,
        /// Exit 0 once every assigned partition is at its end and idle this many seconds.
        // Negative numbers taken as values: `-1` gets parse_idle_secs's message, not clap's
        // "unexpected argument".
        #[arg(long, value_parser = parse_idle_secs, allow_negative_numbers = true)]
        exit_when_idle: Option<Duration>,
        /// Longest time data waits in memory before it is committed to Parquet.
        #[arg(long, default_value_t = 60)]
        flush_interval_secs: u64,
        /// Extra librdkafka setting KEY=VALUE for a real cluster (repeatable), e.g. security.protocol=SSL.
        #[arg(long = "kafka-option", value_parser = parse_kv)]
        kafka_options: Vec<(String, String)>,
        /// Serve Prometheus metrics (`/metrics`), liveness (`/healthz`) and readiness (`/readyz`)
        /// on this address.
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
    /// Render the EVN PDFs of one billing month.
    Bill {
        #[arg(long)]
        config: PathBuf,
        /// Data folder or object store URL (as for ingest).
        #[arg(long)]
        data: evn_store::Location,
        #[arg(long)]
        month: BillingMonth,
        /// EVN folder, or an object store URL: the run renders into a local temporary folder
        /// and uploads the new files, the manifest last.
        #[arg(long)]
        out: evn_store::Location,
        #[arg(long)]
        customer: Option<String>,
        /// I/N: bill only shard I (0-based) of N.
        #[arg(long)]
        shard: Option<evn_billing::Shard>,
        /// Serve Prometheus metrics (EVNs rendered, pages, render seconds), /healthz and
        /// /readyz on this address while the run lasts.
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
        /// Write the run's final metrics to this file (Prometheus text format, replaced
        /// atomically) for node_exporter's textfile collector or a Pushgateway push: a batch job
        /// ends before a scrape would see its last figures.
        #[arg(long)]
        metrics_file: Option<PathBuf>,
    },
    /// Merge the manifest parts of a sharded billing run (`--shard I/N`) into
    /// OUT/YYYY-MM/manifest.json, once every shard has finished (refused while one runs).
    MergeManifests {
        /// The billing run's --out: a folder or an object store URL.
        #[arg(long)]
        out: evn_store::Location,
        #[arg(long)]
        month: BillingMonth,
    },
    /// Portal download service: customers fetch their own EVNs (HS256 key: EVN_PORTAL_SECRET).
    Serve(serve::ServeArgs),
    /// Mint a portal token signed with EVN_PORTAL_SECRET; prints only the token.
    Token(serve::TokenArgs),
    /// Delete traffic data and EVNs of months billed more than six months ago (legal holds
    /// in CONFIG/legal-holds.csv excepted) and stale staging files.
    Retention(privacy::RetentionArgs),
    /// A customer's stored traffic data of all kept months to stdout (GDPR Art. 15).
    Export(privacy::ExportArgs),
    /// Remove a former customer's traffic data and EVNs, where the law allows it.
    Erase(privacy::EraseArgs),
    /// The whole pipeline on the embedded default: broker, produce, ingest, bill.
    Demo {
        #[arg(long, default_value = "evn-demo")]
        dir: PathBuf,
    },
}

fn parse_topic(s: &str) -> Result<(String, i32), String> {
    match s.rsplit_once(':') {
        Some((name, n)) => Ok((
            name.to_owned(),
            n.parse()
                .map_err(|_| format!("{n:?} is not a partition count"))?,
        )),
        None => Ok((s.to_owned(), evn_broker::DEFAULT_PARTITIONS)),
    }
}

/// Longest `--exit-when-idle`: far beyond any batch job, and far below where the `Duration`
/// (1e20 s) or the loop's `Instant` plus it (1e19 s) overflows, both a panic.
const MAX_IDLE_SECS: f64 = 365.0 * 86_400.0;

/// `--exit-when-idle` seconds, fractions allowed. `Duration::from_secs_f64` panics on a
/// negative, NaN or huge number: refused here instead, as a usage error.
fn parse_idle_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=MAX_IDLE_SECS).contains(&secs) {
        return Err(format!(
            "{s} is not between 0 and {MAX_IDLE_SECS} seconds (a year); leave the flag out to run until stopped"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// An error with the exit code it should produce.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            code: 1,
            error: e.into(),
        }
    }
}

fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 2,
        error: error.into(),
    }
}

/// Customer names and addresses with characters the EVN font lacks print blank in the PDF: a
/// warning per row, so the operator can transliterate them before the billing run.
fn warn_unprintable(cfg: &Config) -> Result<(), Failure> {
    for id in cfg.customers.ids() {
        for row in cfg.customers.rows(id) {
            let text = [&row.name, &row.street, &row.postcode, &row.city]
                .map(|s| s.as_str())
                .join(" ");
            let missing = evn_render::unprintable(&text).map_err(|e| Failure {
                code: 1,
                error: e.into(),
            })?;
            if !missing.is_empty() {
                let chars: String = missing.into_iter().collect();
                eprintln!(
                    "warning: {} line {}: customer {id}'s name or address has characters the EVN font cannot show, printed blank in the PDF: {chars}",
                    evn_config::CUSTOMERS_FILE,
                    row.line
                );
            }
        }
    }
    Ok(())
}

pub(crate) fn load_config(dir: &Path) -> Result<Config, Failure> {
    Config::load(dir).map_err(|e| usage(anyhow::anyhow!("configuration error: {e}")))
}

/// The data keys named by `EVN_DATA_KEY_FILE` (INTERFACES §4), or None with a warning: running
/// without encryption at rest is allowed (development) but never silent.
pub(crate) fn data_keys() -> Result<Option<Arc<evn_keys::Keyring>>, Failure> {
    match std::env::var_os("EVN_DATA_KEY_FILE") {
        Some(path) if !path.is_empty() => {
            let keys = evn_keys::Keyring::load(Path::new(&path))
                .map_err(|e| usage(anyhow::anyhow!("EVN_DATA_KEY_FILE: {e}")))?;
            tracing::info!(key_id = keys.current().id(), "encryption at rest on");
            Ok(Some(Arc::new(keys)))
        }
        _ => {
            tracing::warn!(
                "EVN_DATA_KEY_FILE is not set: traffic data and EVNs are stored UNENCRYPTED"
            );
            Ok(None)
        }
    }
}

// Ingest's prepare thread allocates each record's strings and the loop thread frees them.
// glibc's malloc serialises such cross-thread frees on the allocating arena's lock: 50,000
// context switches of the loop thread per 2 M CDRs, a quarter of its CPU in malloc/free.
// mimalloc frees them lock-free: CPU per CDR fell by a fifth and throughput rose by a third
// (issue #7, benches/ingest). Built with `no_thp` (no MADV_HUGEPAGE on its regions), which
// kept ingest's peak RSS where glibc's was; with THP it was 20 MiB higher. The price: `evn
// serve` peaks at ~66 MiB instead of ~20 (a heap per thread of tokio's blocking pool).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    keep_others_out();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EVN_LOG")
                .unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR"),
        ))
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our results went away (`| head`): the end it asked for, not an error.
        Err(f) if f.error.is::<stdout::Closed>() => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

/// What evn writes is traffic data (Parquet, EVNs, spill and commit files) or keys to it: other
/// users of the machine get no access, whatever umask evn was started with (a default 022
/// would make every file world-readable). Only narrows the mask: an operator's stricter 077
/// stays; the group keeps read access, for a portal that runs under a shared group.
fn keep_others_out() {
    use rustix::fs::Mode;
    let old = rustix::process::umask(Mode::from_raw_mode(0o077));
    rustix::process::umask(old | Mode::from_raw_mode(0o027));
}

/// Colour codes in a log file or a journal are noise around every field; a person at a
/// terminal gets them unless NO_COLOR (no-color.org: set and not empty) says otherwise.
fn colour(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

async fn dispatch(command: Command) -> Result<(), Failure> {
    match command {
        Command::Broker { listen, topics } => {
            let broker = evn_broker::EmbeddedBroker::start(listen, &topics)
                .await
                .map_err(usage)?;
            stdout::announce(format_args!(
                "evn broker listening on {} (topics: {})",
                broker.address(),
                topics
                    .iter()
                    .map(|(t, p)| format!("{t}:{p}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            shutdown_signal().await;
            Ok(())
        }
        Command::Produce {
            brokers,
            topic,
            files,
        } => {
            let report = tokio::task::spawn_blocking(move || {
                evn_broker::produce_files(&brokers, &topic, &files)
            })
            .await??;
            outln!(
                "sent {} records ({} without a customer_id, sent as-is)",
                report.sent,
                report.not_json
            )?;
            Ok(())
        }
        Command::Validate { config } => {
            let cfg = load_config(&config)?;
            outln!("configuration OK: {}", config.display())?;
            outln!("  provider:     {}", cfg.provider.name)?;
            outln!("  customers:    {}", cfg.customers.len())?;
            outln!(
                "  plans:        {} ({})",
                cfg.tariffs.plans.len(),
                cfg.tariffs
                    .plans
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
            outln!(
                "  zones:        {} ({})",
                cfg.tariffs.zones.len(),
                cfg.tariffs
                    .zones
                    .keys()
                    .map(|z| z.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
            outln!(
                "  counselling:  {} numbers, list version {}",
                cfg.counselling.len(),
                cfg.counselling.version
            )?;
            outln!(
                "  numbers:      {} lines and ranges in {}",
                cfg.numbers.len(),
                evn_config::NUMBERS_FILE
            )?;
            if cfg.sources.is_empty() {
                outln!("  sources:      none (every topic carries canonical JSON)")?;
            }
            for s in cfg.sources.iter() {
                let zone = s.timezone.map_or("-".to_owned(), |t| t.name().to_owned());
                outln!(
                    "  source:       {} = {} (switch {}, zone {}, +{} trunk {:?} intl {:?}, customer by {}{})",
                    s.topic,
                    s.format,
                    if s.switch_id.is_empty() { "-" } else { &s.switch_id },
                    zone,
                    s.plan.country_code,
                    s.plan.trunk_prefix,
                    s.plan.international_prefix,
                    match s.customer {
                        evn_config::CustomerFrom::NumberDirectory => "number directory",
                        evn_config::CustomerFrom::Accountcode => "accountcode",
                    },
                    if s.format == evn_config::SourceFormat::KamailioJson {
                        format!(", calls end within {} h", s.max_call_hours)
                    } else {
                        String::new()
                    }
                )?;
            }
            outln!("  version:      {}", cfg.version)?;
            warn_unprintable(&cfg)?;
            Ok(())
        }
        Command::Ingest {
            brokers,
            topics,
            group,
            config,
            data,
            dlq_topic,
            exit_when_idle,
            flush_interval_secs,
            kafka_options,
            metrics_listen,
        } => {
            let cfg = Arc::new(load_config(&config)?);
            let topics = if topics.is_empty() {
                cfg.sources
                    .topics()
                    .into_iter()
                    .map(str::to_owned)
                    .collect()
            } else {
                topics
            };
            if topics.is_empty() {
                return Err(usage(anyhow::anyhow!(
                    "no topic: pass --topic, or list the topics in {}",
                    config.join(evn_config::SOURCES_FILE).display()
                )));
            }
            // A topic named twice is one subscription (librdkafka refuses the list otherwise).
            let mut seen = std::collections::BTreeSet::new();
            let topics: Vec<String> = topics
                .into_iter()
                .filter(|t| seen.insert(t.clone()))
                .collect();
            // A dead letter read again is dead-lettered again, for ever.
            for t in &topics {
                let dlq = dlq_topic.clone().unwrap_or_else(|| format!("{t}.dlq"));
                if topics.contains(&dlq) {
                    return Err(usage(anyhow::anyhow!(
                        "the dead-letter topic {dlq} of {t} is also consumed: its dead letters would be read and dead-lettered again without end; choose another --dlq-topic or leave {dlq} out of the topics"
                    )));
                }
            }
            let keys = data_keys()?;
            if keys.is_none() {
                let found = tokio::task::block_in_place(|| data.encrypted_file())
                    .context("checking whether --data holds encrypted data")?;
                if let Some(file) = found {
                    return Err(usage(anyhow::anyhow!(
                        "EVN_DATA_KEY_FILE is not set, but {} holds encrypted traffic data ({}): ingest would write the next calls in the clear; set EVN_DATA_KEY_FILE to the data key",
                        data,
                        file.display()
                    )));
                }
            }
            let mut opts = evn_ingest::IngestOptions::new(&brokers, topics, &group, data);
            opts.keys = keys;
            if let Some(addr) = metrics_listen {
                let mut registry = evn_metrics::prometheus_client::registry::Registry::default();
                opts.metrics.register(&mut registry);
                spawn_metrics("ingest", addr, Arc::new(registry), Arc::clone(&opts.health)).await?;
            }
            opts.dlq_topic = dlq_topic;
            opts.exit_when_idle = exit_when_idle;
            opts.flush_interval = Duration::from_secs(flush_interval_secs.max(1));
            opts.kafka_options = kafka_options;
            let (summary, result) = evn_ingest::run(cfg, opts, shutdown_signal()).await;
            // Everything in the summary is committed by now: a caller that closed our stdout
            // (it went away) must not turn a clean stop into a panic and exit code 101.
            if let Err(e) = writeln!(std::io::stdout(), "{}", summary.to_json()) {
                tracing::warn!(error = %e, "could not print the summary to stdout");
            }
            match result {
                // librdkafka refuses the client settings (an unknown or invalid
                // --kafka-option): a configuration error, nothing started.
                Err(
                    e @ evn_ingest::IngestError::Kafka(
                        rdkafka::error::KafkaError::ClientConfig(..)
                        | rdkafka::error::KafkaError::ClientCreation(_),
                    ),
                ) => Err(usage(
                    anyhow::Error::new(e).context("ingest could not start; check --kafka-option"),
                )),
                other => {
                    other.context("ingest stopped")?;
                    Ok(())
                }
            }
        }
        Command::Bill {
            config,
            data,
            month,
            out,
            customer,
            shard,
            metrics_listen,
            metrics_file,
        } => {
            let cfg = load_config(&config)?;
            let today = evn_rating::berlin_date(chrono::Utc::now());
            if month.last_day() >= today {
                // Allowed (a test run, a preview), but what it publishes is version 1 of a bill
                // whose month is still running: calls still to come make a version 2.
                tracing::warn!(
                    %month,
                    "the month has not ended yet (German time): its bills miss the calls still to come, which will make new versions"
                );
            }
            let mut opts = evn_billing::BillOptions::new(today);
            opts.customer = customer;
            opts.shard = shard;
            opts.keys = data_keys()?;
            if let Some(path) = std::env::var_os("EVN_PDF_PASSWORDS_FILE").filter(|p| !p.is_empty())
            {
                let passwords = evn_billing::PdfPasswords::load(Path::new(&path))
                    .and_then(|p| p.check_customers(&cfg.customers.ids()).map(|()| p))
                    .map_err(|e| usage(anyhow::anyhow!("EVN_PDF_PASSWORDS_FILE: {e}")))?;
                tracing::info!(
                    customers = passwords.len(),
                    "password-protected PDFs for the customers listed"
                );
                opts.pdf_passwords = Some(Arc::new(passwords));
            }
            // A progress bar for a person at a terminal only; logs and pipes get the summary.
            let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
                indicatif::ProgressBar::new(0).with_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} EVNs {pos}/{len} [{bar:30}] {per_sec}, {eta} left",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                )
            });
            if let Some(bar) = bar.clone() {
                opts.progress = Some(Arc::new(move |_done, total| {
                    bar.set_length(total as u64);
                    bar.inc(1);
                }));
            }
            let mut registry = evn_metrics::prometheus_client::registry::Registry::default();
            opts.metrics.register(&mut registry);
            let run_seconds = evn_metrics::prometheus_client::metrics::gauge::Gauge::<
                f64,
                std::sync::atomic::AtomicU64,
            >::default();
            let succeeded = evn_metrics::prometheus_client::metrics::gauge::Gauge::<i64>::default();
            registry.register(
                "evn_bill_run_seconds",
                "Wall time of the billing run (set when it ends)",
                run_seconds.clone(),
            );
            registry.register(
                "evn_bill_succeeded",
                "1 if the billing run ended without error, 0 if it failed",
                succeeded.clone(),
            );
            let registry = Arc::new(registry);
            if let Some(addr) = metrics_listen {
                let health = Arc::new(evn_metrics::Health::new(Duration::from_secs(3600)));
                health.set_ready(true);
                spawn_metrics("bill", addr, Arc::clone(&registry), health).await?;
            }
            let started = std::time::Instant::now();
            let result = tokio::task::block_in_place(|| match &out {
                evn_store::Location::Local(out) => {
                    evn_billing::run_at(&cfg, &data, month, out, &opts)
                }
                evn_store::Location::Object(out) => {
                    evn_billing::run_to_store(&cfg, &data, month, out, &opts)
                }
            });
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            run_seconds.set(started.elapsed().as_secs_f64());
            succeeded.set(i64::from(result.is_ok()));
            if let Some(path) = &metrics_file {
                write_metrics_file(path, &registry)?;
            }
            let report = result.map_err(|e| {
                let code = e.exit_code() as u8;
                Failure {
                    code,
                    error: anyhow::anyhow!("billing run failed: {e}"),
                }
            })?;
            print_bill_report(&report)
        }
        Command::MergeManifests { out, month } => {
            let merged = tokio::task::block_in_place(|| match &out {
                evn_store::Location::Local(out) => {
                    evn_billing::merge_shards_at(out, month).map(|p| p.display().to_string())
                }
                evn_store::Location::Object(out) => evn_billing::merge_shards_in_store(out, month),
            })
            .map_err(|e| Failure {
                code: e.exit_code() as u8,
                error: anyhow::anyhow!("merging the manifests of {month} failed: {e}"),
            })?;
            outln!("merged manifest: {merged}")?;
            Ok(())
        }
        Command::Demo { dir } => demo::run(&dir).await,
        Command::Serve(args) => serve::serve(args).await,
        Command::Token(args) => serve::token(args),
        Command::Retention(args) => privacy::retention(args),
        Command::Export(args) => privacy::export(args),
        Command::Erase(args) => privacy::erase(args),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on a port of its own for the rest of the
/// process; binds first, so a taken port is an error at start, and prints the address.
pub(crate) async fn spawn_metrics(
    command: &str,
    addr: SocketAddr,
    registry: Arc<evn_metrics::prometheus_client::registry::Registry>,
    health: Arc<evn_metrics::Health>,
) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
    let bound = listener.local_addr().context("metrics listener address")?;
    tracing::info!(%bound, "metrics, /healthz and /readyz served");
    eprintln!("evn {command} metrics on http://{bound}/metrics");
    tokio::spawn(async move {
        let forever = std::future::pending::<()>();
        if let Err(e) = evn_metrics::serve(listener, registry, health, forever).await {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    });
    Ok(())
}

/// The registry's text, replaced atomically (temp file + rename): a collector never reads half.
fn write_metrics_file(
    path: &Path,
    registry: &evn_metrics::prometheus_client::registry::Registry,
) -> Result<(), Failure> {
    let name = path.file_name().ok_or_else(|| {
        usage(anyhow::anyhow!(
            "--metrics-file {}: not a file name",
            path.display()
        ))
    })?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    std::fs::write(&tmp, evn_metrics::encode(registry))
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write metrics to {}", path.display()))?;
    Ok(())
}

pub(crate) fn print_bill_report(report: &evn_billing::BillReport) -> Result<(), Failure> {
    let written = report
        .customers
        .iter()
        .filter(|c| matches!(c.outcome, evn_billing::Outcome::Written { .. }))
        .count();
    outln!(
        "billed {}: {} EVNs ({} new versions, {} unchanged), {} calls read, {} duplicates dropped, {} customers with EVN off",
        report.month,
        report.customers.len(),
        written,
        report.customers.len() - written,
        report.rows_read,
        report.duplicates,
        report.evn_off.len()
    )?;
    outln!("  output:   {}", report.dir.display())?;
    outln!("  manifest: {}", report.manifest.display())
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_coloured_only_at_a_terminal_without_no_color() {
        let check = |terminal, no_color: Option<&str>, expected| {
            let got = colour(terminal, no_color.map(Into::into));
            assert_eq!(got, expected, "terminal {terminal}, NO_COLOR {no_color:?}");
        };
        check(true, None, true);
        check(true, Some(""), true);
        check(true, Some("1"), false);
        check(false, None, false);
        check(false, Some("1"), false);
    }

    #[test]
    fn exit_when_idle_takes_seconds_and_refuses_what_a_duration_cannot_hold() {
        assert_eq!(parse_idle_secs("0"), Ok(Duration::ZERO));
        assert_eq!(parse_idle_secs("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_idle_secs("5"), Ok(Duration::from_secs(5)));
        assert_eq!(
            parse_idle_secs("31536000"),
            Ok(Duration::from_secs(31_536_000))
        );
        for bad in [
            "-1", "-0.1", "nan", "NaN", "inf", "-inf", "1e30", "31536001", "5s", "",
        ] {
            assert!(parse_idle_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clap_refuses_a_bad_exit_when_idle_as_a_usage_error() {
        let ingest = |idle: &[&str]| {
            let args = ["evn", "ingest", "--brokers", "b", "--group", "g"];
            let more = ["--config", "c", "--data", "d"];
            Cli::try_parse_from([&args[..], &more, idle].concat())
        };
        for bad in ["-1", "nan", "inf", "1e30"] {
            let joined = format!("--exit-when-idle={bad}");
            for idle in [&["--exit-when-idle", bad][..], &[joined.as_str()]] {
                let err = ingest(idle).err().expect(bad);
                assert_eq!(err.exit_code(), 2, "{idle:?}");
                let text = err.to_string();
                assert!(text.contains("--exit-when-idle"), "{idle:?}: {text}");
                assert!(text.contains("is not between 0 and"), "{idle:?}: {text}");
            }
        }
        assert!(ingest(&["--exit-when-idle", "0.5"]).is_ok());
    }
}
