//! A whole billing run on a synthetic month: `cargo run --release -p evn-billing --example
//! bill_bench -- [CUSTOMERS] [CALLS_PER_CUSTOMER] [ROW_BUDGET]` (default 2,000 × 25, the
//! default budget). Writes a configuration (the fixture's tariffs and provider, generated
//! customers) and the month's Parquet to a temporary folder, then bills it in a child process
//! (so that its peak RSS is the billing run's alone) and prints customers/s, pages/s and peak
//! RSS. The benchmark suite under `benches/` owns published figures.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, NaiveDate};
use rust_decimal::Decimal;

use evn_billing::{BillOptions, Outcome, DEFAULT_ROW_BUDGET};
use evn_rating::{BillingMonth, RatedCall};
use evn_store::{StoredCall, WriteOptions};

/// Peak resident memory of this process, from the kernel (KiB).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--bill") {
        let budget = args.get(2).and_then(|b| b.parse().ok());
        return bill(Path::new(&args[1]), budget.unwrap_or(DEFAULT_ROW_BUDGET));
    }
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("a number"));
    let customers = args.next().unwrap_or(2_000);
    let calls = args.next().unwrap_or(25);
    let budget = args.next().unwrap_or(DEFAULT_ROW_BUDGET);

    let tmp = tempfile::tempdir().expect("temp dir");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/config");
    let config_dir = tmp.path().join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    for f in ["provider.toml", "tariffs.toml", "counselling-numbers.txt"] {
        std::fs::copy(fixtures.join(f), config_dir.join(f)).unwrap();
    }
    let mut csv =
        String::from("customer_id,name,street,postcode,city,plan,evn,shorten_numbers,valid_from\n");
    for c in 0..customers {
        writeln!(
            csv,
            "C{c:07},Kunde {c} GmbH,Hauptstraße {c},10115,Berlin,office_basic,true,{},2026-01-01",
            c % 3 == 0
        )
        .unwrap();
    }
    std::fs::write(config_dir.join("customers.csv"), csv).unwrap();

    let month: BillingMonth = "2026-11".parse().unwrap();
    let data = tmp.path().join("data");
    let dir = evn_store::month_dir(&data, month);
    std::fs::create_dir_all(&dir).unwrap();
    let t = Instant::now();
    // Like ingest: several files, each mixing customers.
    let files = (customers * calls / 200_000).max(8);
    for f in 0..files {
        let rows: Vec<StoredCall> = (0..customers * calls)
            .filter(|i| i % files == f)
            .map(|i| {
                let c = i % customers;
                let start =
                    DateTime::from_timestamp(1_793_487_600 + (i as i64 * 37) % 2_500_000, 0)
                        .unwrap();
                let number = format!("+49151{:08}", (i * 7919) % 100_000_000);
                StoredCall {
                    call: RatedCall {
                        cdr_id: format!("b{i:09}").into(),
                        switch_id: "fra1".into(),
                        customer_id: format!("C{c:07}").into(),
                        calling_number: format!("+4930{:06}", 100_000 + c % 900_000).into(),
                        called_number: if c % 3 == 0 {
                            evn_rating::shorten(&number)
                        } else {
                            number.into()
                        },
                        start_time: start,
                        duration_s: (i as i64 * 13) % 3_600,
                        zone: "mobile".into(),
                        charge_eur: Decimal::new((i as i64 * 1237) % 50_000, 4),
                        billing_month: month,
                        plan: "office_basic".into(),
                        shortened: c % 3 == 0,
                        counselling: false,
                    },
                    source_topic: "cdrs".into(),
                    source_partition: f as i32,
                    source_offset: i as i64,
                    provenance: None,
                }
            })
            .collect();
        evn_store::write_file(
            &dir.join(format!("f{f}.parquet")),
            &rows,
            WriteOptions::default(),
        )
        .unwrap();
    }
    eprintln!(
        "wrote {} calls in {:.1} s",
        customers * calls,
        t.elapsed().as_secs_f64()
    );
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--bill")
        .arg(tmp.path())
        .arg(budget.to_string())
        .status()
        .expect("run the billing child");
    assert!(status.success());
}

fn bill(tmp: &Path, budget: usize) {
    let config = evn_config::Config::load(&tmp.join("config")).expect("config");
    let month: BillingMonth = "2026-11".parse().unwrap();
    let data = tmp.join("data");
    let out = tmp.join("out");
    let mut opts = BillOptions::new(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap());
    opts.row_budget = budget;
    let t = Instant::now();
    let report = evn_billing::run(&config, &data, month, &out, &opts).expect("billing run");
    let secs = t.elapsed().as_secs_f64();
    let pages: usize = report
        .customers
        .iter()
        .map(|c| match c.outcome {
            Outcome::Written { pages, .. } => pages,
            Outcome::Unchanged { .. } => 0,
        })
        .sum();
    let customers = report.customers.len();
    println!(
        "{customers} customers, {} calls (budget {budget}, spilled {}): {secs:.1} s, {:.0} customers/s, {:.0} pages/s; peak RSS {} MiB",
        report.rows_read,
        report.spilled,
        customers as f64 / secs,
        pages as f64 / secs,
        peak_rss_kib() / 1024,
    );
}
