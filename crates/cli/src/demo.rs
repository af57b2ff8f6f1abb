//! `evn demo`: the whole pipeline on the embedded default, in one process and one folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::{load_config, print_bill_report, Failure};

const TOPIC: &str = "cdrs";
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
    std::fs::create_dir_all(dir)?;
    let data = dir.join("data");
    let out = dir.join("evn");

    let broker = evn_broker::EmbeddedBroker::start(
        "127.0.0.1:0".parse().expect("address"),
        &[(TOPIC.to_owned(), PARTITIONS), (format!("{TOPIC}.dlq"), 4)],
    )
    .await?;
    let brokers = broker.address().to_string();
    println!("1. embedded broker on {brokers}, topic {TOPIC} with {PARTITIONS} partitions");

    let files = vec![fixtures.join("cdrs/demo.jsonl")];
    let b = brokers.clone();
    let report =
        tokio::task::spawn_blocking(move || evn_broker::produce_files(&b, TOPIC, &files)).await??;
    println!(
        "2. produced {} CDRs from fixtures/cdrs/demo.jsonl ({} without a customer_id, sent as-is)",
        report.sent, report.not_json
    );

    let mut opts =
        evn_ingest::IngestOptions::new(&brokers, vec![TOPIC.to_owned()], "evn-demo", data.clone());
    opts.exit_when_idle = Some(Duration::from_secs(2));
    let (summary, result) = evn_ingest::run(cfg.clone(), opts, std::future::pending()).await;
    result?;
    println!(
        "3. ingested into {}: {}",
        data.join("cdrs").display(),
        summary.to_json()
    );

    let month = MONTH.parse().expect("valid month");
    let opts = evn_billing::BillOptions::new(chrono::Local::now().date_naive());
    let report = tokio::task::block_in_place(|| evn_billing::run(&cfg, &data, month, &out, &opts))?;
    println!("4. billing run:");
    print_bill_report(&report);
    for c in &report.customers {
        println!(
            "   {}  {} connections  total {} EUR  → {}",
            c.customer_id,
            c.connections,
            c.total.round_dp(2),
            report.dir.join(format!("{}.pdf", c.customer_id)).display()
        );
    }
    drop(broker);
    Ok(())
}
