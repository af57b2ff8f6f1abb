//! Shared helpers of the bench binaries under `benches/benches/`: where results go, peak memory.

use std::path::PathBuf;

/// `target/bench-results/<name>.json`: every bench writes its figures here as well as printing
/// them, so runs can be compared by tools.
pub fn write_result(name: &str, value: &serde_json::Value) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results");
    std::fs::create_dir_all(&dir).expect("create target/bench-results");
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(value).expect("json")).expect("write result");
    path
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}
