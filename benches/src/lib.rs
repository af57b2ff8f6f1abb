//! Shared helpers of the bench binaries under `benches/benches/`: where results go, peak memory
//! (ours and a child's), the machine they ran on, the release `evn` binary, scratch folders.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The workspace root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `target/bench-results/<name>.json`: every bench writes its figures here as well as printing
/// them, so runs can be compared by tools. The machine (CPU, cores, RAM) and the time are added
/// to an object, so a result file says where it came from.
pub fn write_result(name: &str, value: &serde_json::Value) -> PathBuf {
    let dir = repo().join("target/bench-results");
    std::fs::create_dir_all(&dir).expect("create target/bench-results");
    let path = dir.join(format!("{name}.json"));
    let mut value = value.clone();
    if let Some(obj) = value.as_object_mut() {
        obj.entry("machine").or_insert_with(machine);
        obj.entry("unix_time").or_insert_with(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                .into()
        });
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&value).expect("json")).expect("write result");
    path
}

/// Cores, CPU model, RAM and load average of this machine (Linux `/proc`).
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_kib = kib_field(&meminfo, "MemTotal:");
    // Other work on the machine distorts wall-clock figures: the load when the bench ended.
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    serde_json::json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": model,
        "ram_gib": ram_kib.map(|k| (k as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0),
        "loadavg": loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    })
}

fn kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    peak_rss_mib_of("self")
}

/// Peak resident memory of process `pid` ("self" for this one) in MiB, while it is alive.
pub fn peak_rss_mib_of(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(kib_field(&status, "VmHWM:")? as f64 / 1024.0)
}

/// Runs `child` to its end while polling its peak RSS (`VmHWM` is gone once it exits, so the
/// last value seen is kept; polled every 20 ms, and the kernel's high-water mark means a short
/// peak between polls is still seen). Returns the exit status, the wall time and the peak.
pub fn wait_with_peak_rss(
    child: &mut std::process::Child,
) -> (std::process::ExitStatus, Duration, f64) {
    let start = std::time::Instant::now();
    let mut all = wait_all_with_peak_rss(std::slice::from_mut(child), start);
    all.pop().expect("one child")
}

/// [`wait_with_peak_rss`] for several children started at `start`: each one's exit status, its
/// time from `start` to its exit (within 5 ms) and its peak RSS in MiB.
pub fn wait_all_with_peak_rss(
    children: &mut [std::process::Child],
    start: std::time::Instant,
) -> Vec<(std::process::ExitStatus, Duration, f64)> {
    let pids: Vec<String> = children.iter().map(|c| c.id().to_string()).collect();
    let mut peaks = vec![0.0f64; children.len()];
    let mut done: Vec<Option<(std::process::ExitStatus, Duration)>> = vec![None; children.len()];
    let mut polls = 0u64;
    while done.iter().any(Option::is_none) {
        for (i, child) in children.iter_mut().enumerate() {
            if done[i].is_some() {
                continue;
            }
            // Exit first: a zombie's /proc status has no VmHWM any more.
            if polls.is_multiple_of(4) {
                if let Some(m) = peak_rss_mib_of(&pids[i]) {
                    peaks[i] = peaks[i].max(m);
                }
            }
            if let Some(status) = child.try_wait().expect("wait for child") {
                done[i] = Some((status, start.elapsed()));
            }
        }
        polls += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    done.into_iter()
        .zip(peaks)
        .map(|(d, p)| {
            let (s, t) = d.expect("all done");
            (s, t, p)
        })
        .collect()
}

/// CPU time this thread has run, from the scheduler's own accounting (nanoseconds), so that
/// other processes on the machine do not distort a per-core figure.
pub fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) of this process and its waited-for children, in seconds.
pub fn process_cpu_s() -> f64 {
    // Fields 14..17: utime, stime, cutime, cstime.
    self_stat_seconds(14..18)
}

/// CPU time (user + system) of this process's children that have been waited for, in seconds:
/// the difference around a child's run is what that child used, whatever else the machine did.
/// A figure steadier than its wall time on a shared machine.
pub fn children_cpu_s() -> f64 {
    // Fields 16 and 17: cutime, cstime.
    self_stat_seconds(16..18)
}

/// CPU time (user + system, all threads) that the running process `pid` has used so far, in
/// seconds: the difference around a run is what a long-lived helper (the bench's broker) spent
/// on it.
pub fn cpu_s_of(pid: u32) -> f64 {
    stat_seconds(&format!("/proc/{pid}/stat"), 14..16)
}

fn self_stat_seconds(fields: std::ops::Range<usize>) -> f64 {
    stat_seconds("/proc/self/stat", fields)
}

/// The sum of the fields `fields` (numbered from 1, as in proc(5)) of a `stat` file, which are
/// clock ticks (100 Hz on Linux x86-64), in seconds.
fn stat_seconds(path: &str, fields: std::ops::Range<usize>) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // `after` starts at field 3 (state), so field N is f[N - 3].
    f.get(fields.start - 3..fields.end - 3)
        .map(|t| t.iter().sum::<u64>())
        .unwrap_or(0) as f64
        / 100.0
}

/// The release `evn` binary the process benches drive: `EVN_BIN`, or `release/evn` in
/// `CARGO_TARGET_DIR` (default `target/`), where `cargo build --release` put it.
pub fn evn_bin() -> PathBuf {
    if let Ok(p) = std::env::var("EVN_BIN") {
        return p.into();
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from);
    let p = target.join("release/evn");
    assert!(
        p.exists(),
        "{} missing: run `cargo build --release -p evn-cli` first (benches/run-all.sh does)",
        p.display()
    );
    p
}

/// `EVN_BENCH_SCALE` (default 1.0): a fraction of the full workload for quick runs.
pub fn scale() -> f64 {
    std::env::var("EVN_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0)
}

/// `n` scaled by [`scale`], at least `min`.
pub fn scaled(n: usize, min: usize) -> usize {
    ((n as f64 * scale()).round() as usize).max(min)
}

/// A scratch folder under `EVN_BENCH_TMP` (default `target/bench-tmp`, the build's disk), removed
/// on drop. The full bill bench writes ~7 GB of EVNs there; `EVN_BENCH_TMP=/dev/shm` puts it in
/// memory (fsync is then free, which flatters ingest and bill a little: say so with the figures).
pub fn scratch(name: &str) -> tempfile::TempDir {
    let base = std::env::var_os("EVN_BENCH_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/bench-tmp"));
    std::fs::create_dir_all(&base).expect("create target/bench-tmp");
    tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir_in(base)
        .expect("scratch folder")
}

/// Writes a configuration folder: the fixture's provider, tariffs and counselling list, and
/// `customers` generated customers `C0000000…` (plan `office_basic`, EVN on; every third one
/// with shortened numbers), valid from 2025-01-01.
pub fn write_config(dir: &Path, customers: usize) {
    use std::fmt::Write as _;
    let fixtures = repo().join("fixtures/config");
    std::fs::create_dir_all(dir).expect("config folder");
    for f in ["provider.toml", "tariffs.toml", "counselling-numbers.txt"] {
        std::fs::copy(fixtures.join(f), dir.join(f)).expect("copy fixture config");
    }
    let mut csv =
        String::from("customer_id,name,street,postcode,city,plan,evn,shorten_numbers,valid_from\n");
    for c in 0..customers {
        writeln!(
            csv,
            "{},Kunde {c} GmbH,Hauptstraße {c},10115,Berlin,office_basic,true,{},2025-01-01",
            customer_id(c),
            c % 3 == 0
        )
        .expect("string");
    }
    std::fs::write(dir.join("customers.csv"), csv).expect("write customers.csv");
}

/// The id of generated customer `c`.
pub fn customer_id(c: usize) -> String {
    format!("C{c:07}")
}

/// Median and other percentiles of a sorted slice (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs a peer script under `benches/peers/` with `python3` and returns the JSON of its last
/// output line, or `{"skipped": why}` when Python, a module or the tool it drives is missing.
pub fn run_python_peer(script: &str, args: &[&str]) -> serde_json::Value {
    let path = repo().join("benches/peers").join(script);
    let out = std::process::Command::new("python3")
        .arg(&path)
        .args(args)
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| serde_json::json!({ "skipped": "no JSON output" })),
        Ok(o) => serde_json::json!({
            "skipped": format!("{script} failed ({}): {}", o.status,
                String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or(""))
        }),
        Err(e) => serde_json::json!({ "skipped": format!("python3: {e}") }),
    }
}
