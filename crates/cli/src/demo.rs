//! `evn demo`: the whole pipeline on the embedded default, in one process and one folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::{load_config, print_bill_report, Failure};

const TOPIC: &str = "cdrs";
/// A switch that does not speak the canonical CDR: Asterisk's Master.csv, converted on ingest
/// as fixtures/config/sources.toml says.
const ASTERISK_TOPIC: &str = "switch-asterisk";
const ASTERISK_FILE: &str = "sources/asterisk-csv/Master.csv";
/// Many partitions: the embedded broker keeps at most 5 MiB per partition.
const PARTITIONS: i32 = 32;
const MONTH: &str = "2026-11";

fn fixtures() -> PathBuf {
    // The binary runs from the repository (README command 1); fall back to the build-time path.
    let here = PathBuf::from("fixtures");
    if here.is_dir() {
        here
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
    }
}

pub async fn run(dir: &Path) -> Result<(), Failure> {
    let fixtures = fixtures();
    let config_dir = fixtures.join("config");
    let cfg = Arc::new(load_config(&config_dir)?);
    // As every command that stores data: sealed with EVN_DATA_KEY_FILE, or a warning.
    let keys = crate::data_keys()?;
    std::fs::create_dir_all(dir)?;
    let data = dir.join("data");
    let out = dir.join("evn");

    let broker = evn_broker::EmbeddedBroker::start(
        "127.0.0.1:0".parse().expect("address"),
        &[
            (TOPIC.to_owned(), PARTITIONS),
            (format!("{TOPIC}.dlq"), 4),
            (ASTERISK_TOPIC.to_owned(), 4),
            (format!("{ASTERISK_TOPIC}.dlq"), 1),
        ],
    )
    .await?;
    let brokers = broker.address().to_string();
    outln!("1. embedded broker on {brokers}, topic {TOPIC} with {PARTITIONS} partitions")?;

    let files = vec![fixtures.join("cdrs/demo.jsonl")];
    let b = brokers.clone();
    let report =
        tokio::task::spawn_blocking(move || evn_broker::produce_files(&b, TOPIC, &files)).await??;
    outln!(
        "2. produced {} CDRs from fixtures/cdrs/demo.jsonl ({} without a customer_id, sent as-is)",
        report.sent,
        report.not_json
    )?;

    let files = vec![fixtures.join(ASTERISK_FILE)];
    let b = brokers.clone();
    let report =
        tokio::task::spawn_blocking(move || evn_broker::produce_files(&b, ASTERISK_TOPIC, &files))
            .await??;
    outln!(
        "   and {} rows of an Asterisk Master.csv from fixtures/{ASTERISK_FILE} to topic {ASTERISK_TOPIC} (format asterisk-csv in sources.toml)",
        report.sent
    )?;

    let mut opts = evn_ingest::IngestOptions::new(
        &brokers,
        vec![TOPIC.to_owned(), ASTERISK_TOPIC.to_owned()],
        "evn-demo",
        data.clone(),
    );
    opts.exit_when_idle = Some(Duration::from_secs(2));
    opts.keys = keys.clone();
    let (summary, result) = evn_ingest::run(cfg.clone(), opts, std::future::pending()).await;
    result?;
    outln!(
        "3. ingested into {}: {}",
        data.join("cdrs").display(),
        summary.to_json()
    )?;

    let month = MONTH.parse().expect("valid month");
    let mut opts = evn_billing::BillOptions::new(evn_rating::berlin_date(chrono::Utc::now()));
    opts.keys = keys.clone();
    let report = tokio::task::block_in_place(|| evn_billing::run(&cfg, &data, month, &out, &opts))?;
    outln!("4. billing run:")?;
    print_bill_report(&report)?;
    for c in &report.customers {
        outln!(
            "   {}  {} connections  total {} EUR  → {}",
            c.customer_id,
            c.connections,
            c.total.round_dp(2),
            report.dir.join(format!("{}.pdf", c.customer_id)).display()
        )?;
    }
    if keys.is_some() {
        outln!(
            "   (sealed with EVN_DATA_KEY_FILE: read them through `evn serve` with the same key)"
        )?;
    }
    drop(broker);
    if let Some(first) = report.customers.first() {
        print_portal_commands(&out, &first.customer_id)?;
    }
    Ok(())
}

/// Step 5 is the reader's: the exact commands that serve the EVNs just rendered and fetch one.
/// Not started here, so the demo still ends on its own.
fn print_portal_commands(out: &Path, customer: &str) -> Result<(), Failure> {
    let evn = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "evn".to_owned());
    // A fresh random secret to paste into both terminals (tokens are signed with it).
    let secret = (|| {
        use std::io::Read;
        let mut b = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .ok()?
            .read_exact(&mut b)
            .ok()?;
        Some(b.iter().map(|x| format!("{x:02x}")).collect::<String>())
    })()
    .unwrap_or_else(|| "$(openssl rand -hex 32)".to_owned());
    outln!("5. download an EVN through the portal (two terminals, the same secret in both):")?;
    outln!("   export EVN_PORTAL_SECRET={secret}")?;
    outln!(
        "   {evn} serve --evn {} --listen 127.0.0.1:8080",
        out.display()
    )?;
    outln!(
        "   curl -fOJ -H \"Authorization: Bearer $({evn} token --customer {customer})\" \\\n     http://127.0.0.1:8080/customers/{customer}/evn/{MONTH}.pdf"
    )?;
    // localhost: browsers keep the page's `Secure` session cookie over plain HTTP only on
    // loopback, and that name is the one every browser treats as such.
    outln!("6. or open the download page in a browser (the link works for 15 minutes):")?;
    outln!(
        "   echo \"http://localhost:8080/portal?token=$({evn} token --customer {customer} --ttl 15m)\""
    )
}
