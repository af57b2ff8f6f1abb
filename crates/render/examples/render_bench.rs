//! Render throughput: `cargo run --release -p evn-render --example render_bench [ROUNDS]`.
//! Prints EVN pages per CPU-second of this thread (so that other processes on the machine
//! do not distort it), wall-clock pages/s, and bytes per page, for a 5,000-row EVN, a
//! 3-page EVN and a 1-page EVN. The benchmark suite under `benches/` owns published figures.

use std::time::Instant;

use evn_render::{render_pdf, sample, EvnDocument};

/// CPU time this thread has run, from the scheduler's own accounting (nanoseconds).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn measure(name: &str, doc: &EvnDocument, rounds: usize) {
    let first = render_pdf(doc).expect("render");
    let (cpu, wall) = (thread_cpu_ns(), Instant::now());
    let mut pages = 0;
    for _ in 0..rounds {
        pages += render_pdf(doc).expect("render").pages;
    }
    let cpu_s = (thread_cpu_ns() - cpu) as f64 / 1e9;
    let wall_s = wall.elapsed().as_secs_f64();
    println!(
        "{name:>14}: {:>3} pages, {:>6.0} pages/CPU-s, {:>6.0} pages/s wall, {:>5.2} ms/EVN, {:>6} bytes/page",
        first.pages,
        pages as f64 / cpu_s,
        pages as f64 / wall_s,
        cpu_s * 1000.0 / rounds as f64,
        first.bytes.len() / first.pages,
    );
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    measure(
        "5,000 rows",
        &sample::big_doc(5000),
        rounds.div_ceil(10).max(2),
    );
    measure("3 pages", &sample::big_doc(130), rounds * 5);
    measure("1 page", &sample::small_doc(), rounds * 10);
}
