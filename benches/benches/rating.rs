//! Rating throughput per core: parse + validate + classify (customer row in force, zone,
//! flatrate, charge, billing month, counselling flag) + shorten, on a realistic CDR mix.
//! Issue #7 target: well above the ~1.3–1.5 M/s serde_json floor is impossible (parsing is
//! part of it); the figure to watch is CDRs/s per core and how close it is to that floor.

use std::time::Instant;

use chrono::{DateTime, Duration};

fn cdrs(n: usize, customers: &[String]) -> Vec<Vec<u8>> {
    let called = [
        "+4915112345678",
        "+4930123456",
        "+4918012345",
        "+33612345678",
        "116123",
        "+498001110111",
    ];
    (0..n)
        .map(|i| {
            let start =
                DateTime::from_timestamp(1_793_500_000 + (i as i64 * 7) % 2_500_000, 0).unwrap();
            let answer = start + Duration::seconds(5);
            let end = answer + Duration::milliseconds(1 + (i as i64 * 7919) % 900_000);
            serde_json::json!({
                "cdr_id": format!("fra1-{i:012}"),
                "switch_id": "fra1",
                "customer_id": customers[i % customers.len()],
                "calling_number": "+4930901820",
                "called_number": called[i % called.len()],
                "direction": if i % 10 == 0 { "inbound" } else { "outbound" },
                "start_time": start.to_rfc3339(),
                "answer_time": answer.to_rfc3339(),
                "end_time": end.to_rfc3339(),
                "disposition": "answered",
            })
            .to_string()
            .into_bytes()
        })
        .collect()
}

fn main() {
    // As many customers as the ingest bench (20,000): a directory that small would sit in the
    // cache whole and hide what a lookup costs.
    let customers = 20_000;
    let scratch = evn_benches::scratch("rating");
    let config_dir = scratch.path().join("config");
    evn_benches::write_config(&config_dir, customers);
    let config = evn_config::Config::load(&config_dir).expect("bench config");
    let ids: Vec<String> = (0..customers)
        .map(|c| evn_benches::customer_id(c.wrapping_mul(2_654_435_761) % customers))
        .collect();
    let n = 1_000_000;
    let input = cdrs(n, &ids);
    let bytes: usize = input.iter().map(Vec::len).sum();
    let mut best = f64::MAX;
    let mut best_cpu = f64::MAX;
    let (mut stored, mut skipped, mut rejected) = (0u64, 0u64, 0u64);
    for _ in 0..3 {
        (stored, skipped, rejected) = (0, 0, 0);
        let t = Instant::now();
        let cpu = evn_benches::thread_cpu_ns();
        for line in &input {
            match evn_cdr::parse(line) {
                Ok(cdr) => match evn_rating::classify(cdr, &config) {
                    evn_rating::Outcome::Store(c) => {
                        stored += 1;
                        std::hint::black_box(c);
                    }
                    evn_rating::Outcome::Skip(_) => skipped += 1,
                    evn_rating::Outcome::Reject(_) => rejected += 1,
                },
                Err(_) => rejected += 1,
            }
        }
        best = best.min(t.elapsed().as_secs_f64());
        best_cpu = best_cpu.min((evn_benches::thread_cpu_ns() - cpu) as f64 / 1e9);
    }
    // Per core: CPU time of this thread, so that other work on the machine does not count.
    let per_s = n as f64 / best_cpu;
    let result = serde_json::json!({
        "bench": "rating",
        "cdrs": n,
        "seconds_best_of_3": best,
        "cpu_seconds_best_of_3": best_cpu,
        "cdrs_per_s_wall": (n as f64 / best).round(),
        "cdrs_per_s_per_core": per_s.round(),
        "mb_per_s": (bytes as f64 / best_cpu / 1e6),
        "stored": stored, "skipped": skipped, "rejected": rejected,
        "peak_rss_mib": evn_benches::peak_rss_mib(),
    });
    println!(
        "rating: {n} CDRs in {best_cpu:.3} CPU-s ({best:.3} s wall) = {:.0} CDRs/s per core ({:.1} MB/s); stored {stored}, skipped {skipped}, rejected {rejected}",
        per_s,
        bytes as f64 / best_cpu / 1e6
    );
    let path = evn_benches::write_result("rating", &result);
    println!("  written to {}", path.display());
}
