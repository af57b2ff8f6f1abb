//! A whole billing month (`cargo bench -p evn-benches --bench bill`): 200,000 customers × 25
//! calls (5 M rated calls) written as Parquet through `evn-store` like ingest writes them, then
//! `evn_billing::run` on all cores in a child process (so its peak RSS is the billing run's
//! alone): customers/s, pages/s, wall time, peak RSS. `EVN_BENCH_SCALE=0.01` bills 2,000
//! customers for a quick run. Every customer has the EVN on (one PDF and one CSV each), every
//! third with shortened numbers. Then the month is billed again over the same data (a re-run:
//! every EVN unchanged), for its time and peak RSS.
//! Issue #7 targets: ≤ 10 minutes and ≤ 512 MiB peak RSS for 200,000 × 25 on 2 cores; pages/s
//! ≥ 4 × ReportLab (one process) rendering the same rows.

use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, NaiveDate};
use rust_decimal::Decimal;

use evn_billing::{BillOptions, Outcome};
use evn_rating::{BillingMonth, RatedCall};
use evn_store::{StoredCall, WriteOptions};

const CALLS_PER_CUSTOMER: usize = 25;
/// The child's mode: `EVN_BENCH_BILL_CHILD=<scratch folder>` (cargo passes `--bench` as an
/// argument, so the mode travels in the environment).
const CHILD_ENV: &str = "EVN_BENCH_BILL_CHILD";

fn month() -> BillingMonth {
    "2026-11".parse().expect("a month")
}

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        return bill(Path::new(&dir));
    }
    let customers = evn_benches::scaled(200_000, 100);
    let calls = customers * CALLS_PER_CUSTOMER;
    let tmp = evn_benches::scratch("bill");
    evn_benches::write_config(&tmp.path().join("config"), customers);

    let data = tmp.path().join("data");
    let dir = evn_store::month_dir(&data, month());
    std::fs::create_dir_all(&dir).expect("month folder");
    let t = Instant::now();
    // Like ingest: files of up to 200,000 rows (a commit), each mixing customers.
    let files = calls.div_ceil(200_000).max(4);
    for f in 0..files {
        let rows: Vec<StoredCall> = (f..calls)
            .step_by(files)
            .map(|i| row(i, customers, f))
            .collect();
        evn_store::write_file(
            &dir.join(format!("f{f:04}.parquet")),
            &rows,
            WriteOptions::default(),
        )
        .expect("write Parquet");
    }
    let write_s = t.elapsed().as_secs_f64();
    let parquet_bytes: u64 = std::fs::read_dir(&dir)
        .expect("month folder")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum();
    println!(
        "bill: wrote {calls} calls of {customers} customers in {files} Parquet files ({:.0} MB) in {write_s:.1} s",
        parquet_bytes as f64 / 1e6
    );

    let out_file = tmp.path().join("child.json");
    let mut child = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env(CHILD_ENV, tmp.path())
        .spawn()
        .expect("start the billing child");
    let (status, wall, peak_rss) = evn_benches::wait_with_peak_rss(&mut child);
    assert!(status.success(), "billing child failed: {status}");
    let child: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out_file).expect("child result")).expect("json");
    let secs = child["run_s"].as_f64().expect("run_s");
    let pages = child["pages"].as_u64().expect("pages");
    let billed = child["customers"].as_u64().expect("customers");
    let pdf_bytes = child["pdf_bytes"].as_u64().expect("pdf_bytes");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The peer in the same run: ReportLab, one process, EVNs of the same size (25 calls).
    let reportlab = evn_benches::run_python_peer(
        "render_reportlab.py",
        &[
            "--rows",
            &CALLS_PER_CUSTOMER.to_string(),
            "--docs",
            &evn_benches::scaled(300, 20).to_string(),
        ],
    );
    // The month billed again over the same data (what a re-run after late CDRs costs for the
    // customers without them): every EVN unchanged; the manifest is read and kept as it is.
    let mut rerun = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env(CHILD_ENV, tmp.path())
        .spawn()
        .expect("start the second billing child");
    let (status, rerun_wall, rerun_rss) = evn_benches::wait_with_peak_rss(&mut rerun);
    assert!(status.success(), "second billing child failed: {status}");
    let again: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out_file).expect("child result")).expect("json");
    assert_eq!(
        again["pages"].as_u64(),
        Some(0),
        "a re-run renders nothing new"
    );
    println!(
        "bill: re-run over unchanged data: {:.1} s, peak RSS {rerun_rss:.0} MiB",
        again["run_s"].as_f64().unwrap_or(f64::NAN)
    );
    let vs_reportlab = reportlab["pages_per_s"]
        .as_f64()
        .map(|p| pages as f64 / secs / p);
    // The same rows, whatever each layout makes of them in pages: EVNs per second.
    let evns_vs_reportlab = reportlab["ms_per_doc"]
        .as_f64()
        .map(|ms| billed as f64 / secs / (1000.0 / ms));
    println!(
        "bill: ReportLab peer, one process, {CALLS_PER_CUSTOMER} calls per EVN: {:.0} pages/s ({:.0} pages/CPU-s); billing run vs ReportLab: {:.1} x pages/s, {:.1} x EVNs/s",
        reportlab["pages_per_s"].as_f64().unwrap_or(f64::NAN),
        reportlab["pages_per_cpu_s"].as_f64().unwrap_or(f64::NAN),
        vs_reportlab.unwrap_or(f64::NAN),
        evns_vs_reportlab.unwrap_or(f64::NAN),
    );
    let result = serde_json::json!({
        "bench": "bill",
        "peers": { "reportlab_25_calls": reportlab },
        "ratios": {
            "pages_per_s_vs_reportlab_one_process": vs_reportlab,
            "evns_per_s_vs_reportlab_one_process": evns_vs_reportlab,
        },
        "scale": evn_benches::scale(),
        "customers": billed,
        "calls": child["rows_read"],
        "parquet_files": files,
        "parquet_mb": parquet_bytes as f64 / 1e6,
        "spilled": child["spilled"],
        "run_s": secs,
        "child_wall_s": wall.as_secs_f64(),
        "customers_per_s": billed as f64 / secs,
        "pages": pages,
        "pages_per_s": pages as f64 / secs,
        "pages_per_s_per_core": pages as f64 / secs / cores as f64,
        "pdf_bytes_per_page": pdf_bytes as f64 / pages.max(1) as f64,
        "cpu_s": child["cpu_s"],
        "peak_rss_mib": peak_rss,
        "rerun_unchanged": {
            "run_s": again["run_s"],
            "child_wall_s": rerun_wall.as_secs_f64(),
            "peak_rss_mib": rerun_rss,
        },
        "cores": cores,
        "targets": { "run_s_max_full_scale": 600, "peak_rss_mib_max": 512 },
    });
    println!(
        "bill: {billed} customers, {} calls (spilled: {}): {secs:.1} s, {:.0} customers/s, {pages} pages, {:.0} pages/s ({:.0} per core), {:.0} bytes/page, CPU {:.1} s, peak RSS {peak_rss:.0} MiB",
        child["rows_read"],
        child["spilled"],
        billed as f64 / secs,
        pages as f64 / secs,
        pages as f64 / secs / cores as f64,
        pdf_bytes as f64 / pages.max(1) as f64,
        child["cpu_s"].as_f64().unwrap_or(0.0),
    );
    let path = evn_benches::write_result("bill", &result);
    println!("  written to {}", path.display());
}

/// Call `i` of the month: customer `i % customers`, mobile numbers, spread over November.
fn row(i: usize, customers: usize, file: usize) -> StoredCall {
    let c = i % customers;
    let start =
        DateTime::from_timestamp(1_793_487_600 + (i as i64 * 37) % 2_500_000, 0).expect("a time");
    let number = format!("+49151{:08}", (i * 7919) % 100_000_000);
    let shortened = c.is_multiple_of(3);
    StoredCall {
        call: RatedCall {
            cdr_id: format!("b{i:09}").into(),
            switch_id: "fra1".into(),
            customer_id: evn_benches::customer_id(c).into(),
            // Two lines per customer.
            calling_number: format!(
                "+4930{:07}",
                1_000_000 + (c * 2 + i / customers % 2) % 9_000_000
            )
            .into(),
            called_number: if shortened {
                evn_rating::shorten(&number)
            } else {
                number.into()
            },
            start_time: start,
            duration_s: 1 + (i as i64 * 13) % 3_600,
            zone: "mobile".into(),
            charge_eur: Decimal::new((i as i64 * 1237) % 50_000, 4),
            billing_month: month(),
            plan: "office_basic".into(),
            shortened,
            counselling: false,
        },
        source_topic: "cdrs".into(),
        source_partition: file as i32,
        source_offset: i as i64,
        provenance: None,
    }
}

/// The child: bills the month and writes its figures to `<dir>/child.json`.
fn bill(dir: &Path) {
    let config = evn_config::Config::load(&dir.join("config")).expect("config");
    let out = dir.join("out");
    let opts = BillOptions::new(NaiveDate::from_ymd_opt(2026, 12, 1).expect("a date"));
    let cpu0 = evn_benches::process_cpu_s();
    let t = Instant::now();
    let report =
        evn_billing::run(&config, &dir.join("data"), month(), &out, &opts).expect("billing run");
    let secs = t.elapsed().as_secs_f64();
    let cpu_s = evn_benches::process_cpu_s() - cpu0;
    let pages: usize = report
        .customers
        .iter()
        .map(|c| match c.outcome {
            Outcome::Written { pages, .. } => pages,
            Outcome::Unchanged { .. } => 0,
        })
        .sum();
    let pdf_bytes: u64 = std::fs::read_dir(out.join("2026-11"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".v1.pdf"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    let figures = serde_json::json!({
        "run_s": secs,
        "cpu_s": cpu_s,
        "customers": report.customers.len(),
        "rows_read": report.rows_read,
        "spilled": report.spilled,
        "pages": pages,
        "pdf_bytes": pdf_bytes,
    });
    std::fs::write(
        dir.join("child.json"),
        serde_json::to_vec(&figures).expect("json"),
    )
    .expect("write child result");
}
