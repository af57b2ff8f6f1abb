//! `evn retention`, `evn export`, `evn erase`: argument parsing and wiring for `evn-privacy`
//! (INTERFACES.md §4); the rules live in that crate.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use chrono::NaiveDate;

use evn_privacy::{EraseOutcome, ExportFormat, PrivacyError};

use evn_store::Location;

use crate::{data_keys, load_config, stdout, usage, Failure};

#[derive(clap::Args)]
pub struct RetentionArgs {
    /// Config directory: `legal-holds.csv` (optional) is read from it.
    #[arg(long)]
    config: PathBuf,
    /// Data folder or object store URL (as for ingest).
    #[arg(long)]
    data: Location,
    /// The EVN folder of `evn bill` (month folders with manifests), or its object store URL.
    #[arg(long)]
    evn: Location,
    /// The date to measure against (YYYY-MM-DD); default: today in Europe/Berlin.
    #[arg(long)]
    today: Option<NaiveDate>,
    /// Print what would be deleted; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[arg(long)]
    customer: String,
    /// Data folder or object store URL (as for ingest).
    #[arg(long)]
    data: Location,
    /// `jsonl` (one JSON object per line) or `csv` (with a header row).
    #[arg(long, default_value = "jsonl")]
    format: ExportFormat,
    /// Config directory: today's counselling list withholds calls to numbers listed after
    /// they were ingested, as the billing run does. Without it only calls flagged at ingest
    /// are withheld (a warning says so).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct EraseArgs {
    #[arg(long)]
    customer: String,
    /// Config directory: `customers.csv` and `legal-holds.csv` decide whether erasure is allowed.
    #[arg(long)]
    config: PathBuf,
    /// Data folder or object store URL (as for ingest).
    #[arg(long)]
    data: Location,
    /// EVN folder or object store URL (as for bill --out).
    #[arg(long)]
    evn: Location,
    /// The date to measure the objection period against; default: today in Europe/Berlin.
    #[arg(long)]
    today: Option<NaiveDate>,
    /// Print what would be removed; change nothing.
    #[arg(long)]
    dry_run: bool,
}

fn failure(e: PrivacyError) -> Failure {
    Failure {
        code: e.exit_code(),
        error: anyhow::Error::new(e),
    }
}

/// A local `--data` or `--evn` that is not there is a typo or a missing mount, not an empty
/// store: read as empty, retention and erasure would report nothing to do and export no calls,
/// all with exit 0. An object store prefix with nothing under it is simply empty.
fn existing_folder(flag: &str, location: &Location) -> Result<(), Failure> {
    let Some(path) = location.local() else {
        return Ok(());
    };
    let problem = match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => "not a folder",
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "no such folder",
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("--{flag} {}", path.display()))
                .into())
        }
    };
    Err(usage(anyhow::anyhow!(
        "--{flag} {}: {problem}; check --{flag}",
        path.display()
    )))
}

/// The legal holds, each checked to name a customer the held month has something of.
fn holds(
    config: &std::path::Path,
    data: &Location,
    evn: &Location,
    keys: Option<&std::sync::Arc<evn_store::Keyring>>,
) -> Result<Vec<evn_privacy::LegalHold>, Failure> {
    let holds = evn_privacy::load_holds(config).map_err(failure)?;
    for h in &holds {
        tracing::info!(customer = %h.customer_id, month = %h.month, since = %h.since, "legal hold");
    }
    let path = config.join(evn_privacy::HOLDS_FILE);
    tokio::task::block_in_place(|| evn_privacy::check_holds_match(&path, &holds, data, evn, keys))
        .map_err(failure)?;
    Ok(holds)
}

pub fn retention(args: RetentionArgs) -> Result<(), Failure> {
    existing_folder("data", &args.data)?;
    existing_folder("evn", &args.evn)?;
    let keys = data_keys()?;
    let holds = holds(&args.config, &args.data, &args.evn, keys.as_ref())?;
    let opts = evn_privacy::RetentionOptions {
        data: args.data,
        evn: args.evn,
        today: args.today.unwrap_or_else(evn_privacy::today_berlin),
        dry_run: args.dry_run,
        keys,
        staging_max_age: evn_privacy::DEFAULT_STAGING_MAX_AGE,
        now: SystemTime::now(),
    };
    let prefix = if opts.dry_run { "[dry run] " } else { "" };
    let mut stdout = std::io::stdout().lock();
    // Each line goes out before the action: after a crash the log shows what was under way.
    let summary = tokio::task::block_in_place(|| {
        evn_privacy::run_retention(&opts, &holds, &mut |action| {
            let _ = writeln!(stdout, "{prefix}{action}");
            let _ = stdout.flush();
        })
    })
    .map_err(failure)?;
    if summary.months_overdue > 0 {
        tracing::warn!(
            months = summary.months_overdue,
            "months never billed for more than a year are kept; bill or delete them"
        );
    }
    outln!("{prefix}retention as of {}: {summary}", opts.today)
}

pub fn export(args: ExportArgs) -> Result<(), Failure> {
    existing_folder("data", &args.data)?;
    let keys = data_keys()?;
    let config = args.config.as_deref().map(load_config).transpose()?;
    if config.is_none() {
        tracing::warn!(
            "no --config: calls to counselling numbers listed after ingest are not withheld; \
             pass --config to apply today's list"
        );
    }
    let mut out = stdout::Watched::new(std::io::BufWriter::new(std::io::stdout().lock()));
    let result = tokio::task::block_in_place(|| {
        evn_privacy::export(
            &args.data,
            &args.customer,
            keys.as_ref(),
            config.as_ref().map(|c| &c.counselling),
            args.format,
            &mut out,
        )
    });
    if out.closed() {
        return Err(stdout::Closed.into());
    }
    let summary = result.map_err(failure)?;
    drop(out);
    eprintln!(
        "exported {} calls of {} in {} months{}",
        summary.calls,
        args.customer,
        summary.months,
        if summary.withheld_counselling > 0 {
            format!(
                "; {} calls to counselling services withheld (TKG § 65, GDPR Art. 15(4))",
                summary.withheld_counselling
            )
        } else {
            String::new()
        },
    );
    if summary.duplicates > 0 {
        eprintln!(
            "{} stored second copies of a call (same switch and CDR id) left out, as in the EVN",
            summary.duplicates
        );
    }
    Ok(())
}

pub fn erase(args: EraseArgs) -> Result<(), Failure> {
    existing_folder("data", &args.data)?;
    existing_folder("evn", &args.evn)?;
    let config = load_config(&args.config)?;
    let keys = data_keys()?;
    let holds = holds(&args.config, &args.data, &args.evn, keys.as_ref())?;
    let opts = evn_privacy::EraseOptions {
        customer_id: args.customer,
        data: args.data,
        evn: args.evn,
        today: args.today.unwrap_or_else(evn_privacy::today_berlin),
        dry_run: args.dry_run,
        keys,
    };
    let prefix = if opts.dry_run { "[dry run] " } else { "" };
    let outcome = tokio::task::block_in_place(|| {
        evn_privacy::erase(&config.customers, &holds, &opts, &mut |action| {
            // As for retention: a reader that went away does not stop the erasure half-way.
            let _ = outln!("{prefix}{action}");
        })
    })
    .map_err(failure)?;
    match outcome {
        EraseOutcome::Refused(reasons) => {
            for r in &reasons {
                eprintln!("refused: {r}");
            }
            Err(Failure {
                code: 1,
                error: anyhow::anyhow!(
                    "erasure of {} refused as of {} (reasons above); nothing was changed",
                    opts.customer_id,
                    opts.today
                ),
            })
        }
        EraseOutcome::Erased { rows, evn_files } => {
            outln!(
                "{prefix}erased {}: {rows} stored calls, {evn_files} EVN files",
                opts.customer_id
            )
        }
    }
}
