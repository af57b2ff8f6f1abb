//! EVN render throughput (`cargo bench -p evn-benches --bench render`): pages per CPU-second of
//! one thread (per core, so other processes on the machine do not distort it), wall-clock
//! pages/s, bytes per page, for a 1-page, a 3-page and a 2,000-page EVN.
//! Issue #7 targets: ≥ 500 pages/s per core; a 3-page EVN ≤ 40 KB; a 2,000-page EVN ≤ 5 s.

use std::time::Instant;

use evn_benches::thread_cpu_ns;
use evn_render::{render_pdf, sample, EvnDocument};

struct Figures {
    pages: usize,
    bytes: usize,
    pages_per_cpu_s: f64,
    pages_per_wall_s: f64,
    ms_per_evn_cpu: f64,
    ms_per_evn_wall: f64,
}

fn measure(doc: &EvnDocument, rounds: usize) -> Figures {
    let first = render_pdf(doc).expect("render"); // warm: font parsed, base subset cached
    let (cpu, wall) = (thread_cpu_ns(), Instant::now());
    let mut pages = 0;
    for _ in 0..rounds {
        pages += std::hint::black_box(render_pdf(doc).expect("render")).pages;
    }
    let cpu_s = (thread_cpu_ns() - cpu) as f64 / 1e9;
    let wall_s = wall.elapsed().as_secs_f64();
    Figures {
        pages: first.pages,
        bytes: first.bytes.len(),
        pages_per_cpu_s: pages as f64 / cpu_s,
        pages_per_wall_s: pages as f64 / wall_s,
        ms_per_evn_cpu: cpu_s * 1000.0 / rounds as f64,
        ms_per_evn_wall: wall_s * 1000.0 / rounds as f64,
    }
}

/// The rows of `sample::big_doc` that give `pages` pages: estimated from a probe, corrected once.
fn rows_for_pages(pages: usize) -> usize {
    let probe = 5_000;
    let p = render_pdf(&sample::big_doc(probe)).expect("render").pages;
    let mut rows = probe * pages / p;
    for _ in 0..3 {
        let got = render_pdf(&sample::big_doc(rows)).expect("render").pages;
        if got == pages {
            break;
        }
        rows = rows * pages / got;
    }
    rows
}

fn report(name: &str, rows: usize, f: &Figures) -> serde_json::Value {
    println!(
        "{name:>11}: {rows:>6} rows, {:>4} pages, {:>7} bytes ({:>5} bytes/page), {:>5.0} pages/CPU-s, {:>5.0} pages/s wall, {:>8.1} ms/EVN (CPU), {:>8.1} ms/EVN (wall)",
        f.pages,
        f.bytes,
        f.bytes / f.pages,
        f.pages_per_cpu_s,
        f.pages_per_wall_s,
        f.ms_per_evn_cpu,
        f.ms_per_evn_wall,
    );
    serde_json::json!({
        "rows": rows,
        "pages": f.pages,
        "bytes": f.bytes,
        "bytes_per_page": f.bytes / f.pages,
        "pages_per_s_per_core": f.pages_per_cpu_s.round(),
        "pages_per_s_wall": f.pages_per_wall_s.round(),
        "ms_per_evn_cpu": f.ms_per_evn_cpu,
        "ms_per_evn_wall": f.ms_per_evn_wall,
    })
}

fn main() {
    let rounds = evn_benches::scaled(200, 5);
    let small = sample::small_doc();
    let one = measure(&small, rounds);
    let three_rows = 130;
    let three = measure(&sample::big_doc(three_rows), rounds);
    let big_rows = rows_for_pages(2_000);
    let big_doc = sample::big_doc(big_rows);
    let big = measure(&big_doc, evn_benches::scaled(3, 1));
    // Peers in the same run: ReportLab (one process) on the same rows, 3-page EVNs and one
    // ~200-page EVN (font embedding amortised); headless Chromium if installed.
    let docs = evn_benches::scaled(40, 3).to_string();
    let reportlab_3 =
        evn_benches::run_python_peer("render_reportlab.py", &["--rows", "130", "--docs", &docs]);
    let reportlab_big =
        evn_benches::run_python_peer("render_reportlab.py", &["--rows", "12000", "--docs", "1"]);
    let chromium = if std::env::var_os("EVN_BENCH_NO_CHROMIUM").is_some() {
        serde_json::json!({ "skipped": "EVN_BENCH_NO_CHROMIUM set" })
    } else {
        evn_benches::run_python_peer(
            "render_chromium.py",
            &["--rows", "130", "--docs", "3", "--big-rows", "3000"],
        )
    };
    for (name, peer) in [
        ("ReportLab 3 pages", &reportlab_3),
        ("ReportLab ~200 pages", &reportlab_big),
    ] {
        println!(
            "{name:>20}: {:.0} pages/CPU-s, {:.0} pages/s wall, {} bytes/EVN",
            peer["pages_per_cpu_s"].as_f64().unwrap_or(f64::NAN),
            peer["pages_per_s"].as_f64().unwrap_or(f64::NAN),
            peer["bytes_per_doc"],
        );
    }
    println!("            Chromium: {chromium}");
    let ratio =
        |ours: f64, peer: &serde_json::Value, key: &str| peer[key].as_f64().map(|p| ours / p);
    let ratios = serde_json::json!({
        "three_pages_vs_reportlab_per_cpu_s": ratio(three.pages_per_cpu_s, &reportlab_3, "pages_per_cpu_s"),
        "big_vs_reportlab_big_per_cpu_s": ratio(big.pages_per_cpu_s, &reportlab_big, "pages_per_cpu_s"),
        "three_pages_wall_vs_chromium_3_page_cli": ratio(three.pages_per_wall_s, &chromium["small"], "pages_per_s"),
        "big_wall_vs_chromium_big": ratio(big.pages_per_wall_s, &chromium["big"], "pages_per_s"),
    });
    println!("  ratios: {ratios}");
    let result = serde_json::json!({
        "bench": "render",
        "peers": { "reportlab_3_pages": reportlab_3, "reportlab_big": reportlab_big, "chromium": chromium },
        "ratios": ratios,
        "one_page": report("1 page", small.billed, &one),
        "three_pages": report("3 pages", three_rows, &three),
        "two_thousand_pages": report("2,000 pages", big_rows, &big),
        "targets": {
            "pages_per_s_per_core_min": 500,
            "three_page_bytes_max": 40_000,
            "two_thousand_pages_ms_max": 5_000,
        },
        "peak_rss_mib": evn_benches::peak_rss_mib(),
    });
    let path = evn_benches::write_result("render", &result);
    println!("  written to {}", path.display());
}
