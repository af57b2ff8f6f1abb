//! Ingest under operations: SIGTERM, a broker that stalls and comes back, a member joining
//! mid-stream, metrics and readiness, and a second Parquet reader (pyarrow).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// An ingest member; `idle` None runs until signalled.
fn member(
    broker: &Broker,
    topic: &str,
    data: &std::path::Path,
    idle: Option<u32>,
    extra: &[String],
) -> Child {
    let mut args = ingest_args(broker, topic, "g", data);
    match idle {
        Some(s) => *args.last_mut().unwrap() = s.to_string(),
        None => args.truncate(args.len() - 2),
    }
    args.extend(["--flush-interval-secs".into(), "1".into()]);
    args.extend(extra.iter().cloned());
    Command::new(bin())
        .args(&args)
        .env("EVN_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A member without an idle exit that commits only every `flush_secs` (or when stopped), with
/// its metrics on the returned port.
fn holding_member(
    broker: &Broker,
    topic: &str,
    group: &str,
    data: &std::path::Path,
    flush_secs: u32,
    stderr: Stdio,
) -> (Child, u16) {
    let port = free_port();
    let mut args = ingest_args(broker, topic, group, data);
    args.truncate(args.len() - 2);
    args.extend([
        "--flush-interval-secs".into(),
        flush_secs.to_string(),
        "--metrics-listen".into(),
        format!("127.0.0.1:{port}"),
    ]);
    let child = Command::new(bin())
        .args(&args)
        .env("EVN_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    (child, port)
}

/// The member's `evn_ingest_buffered_rows`, once its metrics answer.
fn buffered_rows(port: u16) -> Option<u64> {
    let (_, body) = http_get(port, "/metrics")?;
    body.lines()
        .find_map(|l| l.strip_prefix("evn_ingest_buffered_rows "))
        .and_then(|v| v.trim().parse().ok())
}

fn finish(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "ingest exit status {}", out.status);
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().expect("summary line")).unwrap()
}

fn assert_exactly_once(data: &std::path::Path, n: usize) {
    let ids = stored_ids(data);
    assert_stored_once(&ids, n);
}

#[test]
fn sigterm_commits_what_it_holds_prints_the_summary_and_exits_0() {
    const N: usize = 40_000;
    let (broker, _dir, data) = backlog("term", N, "term-");
    // A long flush interval: whatever is stored after SIGTERM was committed by the shutdown.
    let (child, port) = holding_member(&broker, "term", "g", &data, 600, Stdio::null());
    assert!(
        wait_until(Duration::from_secs(60), || buffered_rows(port)
            .is_some_and(|n| n > 0)),
        "ingest holds uncommitted rows"
    );
    assert_eq!(
        stored_ids(&data).len(),
        0,
        "nothing committed before SIGTERM"
    );
    signal(child.id(), "TERM");
    let summary = finish(child);
    let stored = summary["stored"].as_u64().unwrap() as usize;
    assert!(stored > 0, "SIGTERM commits the buffers: {summary}");
    assert_eq!(
        stored_ids(&data).len(),
        stored,
        "the summary matches the files"
    );
    ingest_to_end(&broker, "term", "g", &data);
    assert_exactly_once(&data, N);
}

/// A member fenced on a range (another group's member committed it first) resumes after the
/// winner's commit with its duplicate check read again from the files: duplicates of the
/// winner's rows that come later are not stored again. Without that, the fenced member forgot
/// the keys of the buffer it dropped and stored every duplicate.
#[test]
fn a_fenced_member_does_not_store_later_duplicates_of_the_winners_rows() {
    use std::io::BufRead;
    const N: usize = 4_000;
    let (broker, dir, data) = backlog("fence-dup", N, "fd-");
    // A holds every CDR uncommitted until its flush, long after B has committed them all.
    let (mut a, port) = holding_member(&broker, "fence-dup", "ga", &data, 20, Stdio::piped());
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (log, stderr) = (log.clone(), a.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let line = line.unwrap();
                log.lock().unwrap().push_str(&line);
                log.lock().unwrap().push('\n');
            }
        })
    };
    assert!(
        wait_until(Duration::from_secs(60), || buffered_rows(port)
            == Some(N as u64)),
        "A holds every CDR uncommitted"
    );
    let b = ingest_to_end(&broker, "fence-dup", "gb", &data);
    assert_eq!(b["stored"], N as u64, "{b}");
    // Every CDR again, after all of them.
    let again = dir.path().join("again.jsonl");
    write_cdrs(&again, N, "fd-");
    produce(&broker, "fence-dup", &again);
    // Fenced on each partition that has records (B committed each), all due at one flush.
    let partitions = std::fs::read_dir(data.join(evn_store::COMMITS_DIR).join("fence-dup"))
        .unwrap()
        .count();
    let fences = || {
        log.lock()
            .unwrap()
            .matches("another member committed this partition first")
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(60), || fences() == partitions),
        "A's flush is fenced on every partition: {}",
        log.lock().unwrap()
    );
    // Reading 4,000 records again after the seeks takes milliseconds.
    std::thread::sleep(Duration::from_secs(3));
    signal(a.id(), "TERM");
    let sa = finish(a);
    reader.join().unwrap();
    // Counts of dropped buffers are never merged: these are the records read after the seeks.
    assert_eq!(sa["consumed"], N as u64, "A read the duplicates: {sa}");
    assert_eq!(sa["skipped"]["duplicate"], N as u64, "{sa}");
    assert_eq!(sa["stored"], 0, "A stored no duplicate: {sa}");
    assert_exactly_once(&data, N);
}

#[test]
fn a_broker_that_stalls_and_comes_back_loses_nothing_and_duplicates_nothing() {
    const N: usize = 40_000;
    let (broker, _dir, data) = backlog("stall", N, "stall-");
    let child = member(&broker, "stall", &data, Some(3), &[]);
    std::thread::sleep(Duration::from_millis(1500));
    let pid = broker.pid();
    signal(pid, "STOP");
    // Longer than the group session timeout (10 s): the group forgets the member meanwhile.
    std::thread::sleep(Duration::from_secs(12));
    signal(pid, "CONT");
    finish(child);
    let again = ingest_to_end(&broker, "stall", "g", &data);
    assert_eq!(again["stored"], 0, "nothing was left behind: {again}");
    assert_exactly_once(&data, N);
}

#[test]
fn a_member_joining_mid_stream_keeps_exactly_once() {
    const N: usize = 60_000;
    let (broker, _dir, data) = backlog("join", N, "join-");
    let a = member(&broker, "join", &data, Some(3), &[]);
    std::thread::sleep(Duration::from_millis(1500));
    let b = member(&broker, "join", &data, Some(3), &[]);
    let (sa, sb) = (finish(a), finish(b));
    let stored = sa["stored"].as_u64().unwrap() + sb["stored"].as_u64().unwrap();
    assert_eq!(
        stored as usize, N,
        "the two members stored every CDR once: {sa} {sb}"
    );
    assert_exactly_once(&data, N);
}

#[test]
fn metrics_move_and_readiness_follows_the_broker() {
    const N: usize = 2_000;
    let (broker, _dir, data) = backlog("metrics", N, "metrics-");
    let port = free_port();
    let child = member(
        &broker,
        "metrics",
        &data,
        None,
        &["--metrics-listen".into(), format!("127.0.0.1:{port}")],
    );
    let metric = |name: &str| -> Option<u64> {
        let (_, body) = http_get(port, "/metrics")?;
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    assert!(
        wait_until(Duration::from_secs(60), || metric(
            "evn_ingest_records_stored_total"
        ) == Some(N as u64)),
        "stored counter reaches {N}: {:?}",
        http_get(port, "/metrics")
    );
    assert_eq!(metric("evn_ingest_records_consumed_total"), Some(N as u64));
    assert!(metric("evn_ingest_files_written_total").unwrap() >= 1);
    let (_, body) = http_get(port, "/metrics").unwrap();
    assert!(body.contains("evn_ingest_commit_duration_seconds_count"));
    assert!(
        wait_until(Duration::from_secs(15), || {
            http_get(port, "/metrics").is_some_and(|(_, b)| {
                b.contains("evn_ingest_consumer_lag_records{topic=\"metrics\",partition=\"0\"} 0")
            })
        }),
        "lag per partition is reported and reaches 0"
    );
    assert_eq!(http_get(port, "/healthz").unwrap().0, 200);
    assert_eq!(http_get(port, "/readyz").unwrap().0, 200);
    drop(broker); // the broker goes away
    assert!(
        wait_until(Duration::from_secs(30), || http_get(port, "/readyz")
            .is_some_and(|(s, _)| s == 503)),
        "not ready while the broker is unreachable"
    );
    assert_eq!(http_get(port, "/healthz").unwrap().0, 200, "but alive");
    signal(child.id(), "TERM");
    let summary = finish(child);
    assert_eq!(summary["stored"], N as u64);
}

#[test]
fn pyarrow_reads_the_parquet_ingest_wrote() {
    const N: usize = 3_000;
    let (broker, _dir, data) = backlog("pyarrow", N, "pyarrow-");
    ingest_to_end(&broker, "pyarrow", "g", &data);
    let ours = stored_rows(&data);
    let total: rust_decimal::Decimal = ours.iter().map(|r| r.call.charge_eur).sum();
    let script = r#"
import sys, pyarrow, pyarrow.dataset as ds
d = ds.dataset(sys.argv[1] + "/cdrs", format="parquet", partitioning="hive")
t = d.to_table()
print(t.num_rows)
print(t.schema.field("charge_eur").type)
print(t.schema.field("start_time").type)
print(sum(v for v in t.column("charge_eur").to_pylist()))
print(sorted(set(str(m) for m in t.column("billing_month").to_pylist())))
"#;
    let out = Command::new("python3")
        .args(["-c", script, data.to_str().unwrap()])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "pyarrow could not read the data (scripts/test.sh installs pyarrow): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], N.to_string());
    assert_eq!(lines[1], "decimal128(18, 4)");
    assert_eq!(lines[2], "timestamp[us, tz=UTC]");
    assert_eq!(lines[3], total.to_string(), "pyarrow's sum equals ours");
    assert_eq!(lines[4], "['2026-11']", "the Hive partition column");
}

/// Issue #9, scale-out: three members of one group on a 4-partition topic while CDRs keep
/// arriving; one joins late, one is killed with SIGKILL mid-stream, one stops with SIGTERM. The
/// stored result is every CDR exactly once.
#[test]
fn members_joining_and_dying_while_cdrs_flow_keep_exactly_once() {
    const BATCHES: usize = 6;
    const PER_BATCH: usize = 10_000;
    let broker = Broker::start(&["flow:4", "flow.dlq:1"]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let batches: Vec<std::path::PathBuf> = (0..BATCHES)
        .map(|b| {
            let f = dir.path().join(format!("batch-{b}.jsonl"));
            write_cdrs(&f, PER_BATCH, &format!("flow-{b}-"));
            f
        })
        .collect();
    // The switch side: a batch about every 700 ms while the members come and go.
    let producer = {
        let (addr, batches) = (broker.addr.clone(), batches.clone());
        std::thread::spawn(move || {
            for f in batches {
                let out = Command::new(bin())
                    .args(["produce", "--brokers", &addr, "--topic", "flow"])
                    .arg(&f)
                    .env("EVN_LOG", "warn")
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                std::thread::sleep(Duration::from_millis(700));
            }
        })
    };
    let a = member(&broker, "flow", &data, None, &[]);
    let mut b = member(&broker, "flow", &data, None, &[]);
    std::thread::sleep(Duration::from_millis(1500));
    let c = member(&broker, "flow", &data, None, &[]);
    std::thread::sleep(Duration::from_millis(2000));
    b.kill().unwrap(); // SIGKILL: no commit, no goodbye to the group
    b.wait().unwrap();
    producer.join().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    signal(a.id(), "TERM");
    let sa = finish(a);
    signal(c.id(), "TERM");
    let sc = finish(c);
    // Whatever the killed member held is picked up by a member that runs to the end (idle
    // longer than the session timeout, so the group has let the dead member go).
    let rest = ingest_to_end_idle(&broker, "flow", "g", &data, 12);
    let n = BATCHES * PER_BATCH;
    assert_exactly_once(&data, n);
    eprintln!(
        "stored: a {} c {} rest {}",
        sa["stored"], sc["stored"], rest["stored"]
    );
}

/// Unmounts (lazily, so a straggling reader cannot keep it busy) when the test ends, before the
/// temporary directory under the mount point is removed.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A full disk: ingest stops with exit status 1 and an error that says the disk is full; what
/// it had not committed is not acknowledged, what is visible is whole commits; once space is
/// freed, the next run stores every CDR exactly once. The data directory is a small tmpfs
/// (mounting needs root, which CI has; without it the test says SKIPPED).
#[test]
fn a_full_disk_stops_ingest_clearly_and_loses_nothing() {
    const N: usize = 40_000;
    let (broker, _dir, data) = backlog("full", N, "full-");
    std::fs::create_dir_all(&data).unwrap();
    let mount = |opts: &str| {
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(&data)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // 40,000 of these rows took ~1.5 MB of Parquet while ids, times and offsets were
    // dictionary-encoded, ~0.2 MB since they are plain (#7): 64 KiB is full after a few commits.
    if !mount("size=64k") {
        eprintln!("SKIPPED: cannot mount a tmpfs for the full-disk test (needs root)");
        return;
    }
    let _unmount = Mounted(data.clone());
    let mut args = ingest_args(&broker, "full", "g", &data);
    args.extend(["--flush-interval-secs".into(), "1".into()]);
    let out = Command::new(bin())
        .args(&args)
        .env("EVN_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the disk is full"), "{stderr}");
    let partial = stored_ids(&data);
    assert!(partial.len() < N, "the disk was not full after all");
    assert!(
        partial.values().all(|c| *c == 1),
        "a commit is visible twice"
    );

    // Space freed (the tmpfs grows): the next run finishes the job, nothing twice.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(grown.success());
    let summary = ingest_to_end(&broker, "full", "g", &data);
    assert_eq!(
        summary["stored"].as_u64().unwrap() as usize + partial.len(),
        N,
        "{summary}"
    );
    assert_exactly_once(&data, N);
}

/// The commit log in the data folder, not the group's offset in Kafka, says where ingest
/// resumes: a data folder restored from an older backup (Kafka's group offsets are then
/// ahead of it) gets the records after the backup again, exactly once, and ingest exits when
/// idle. Before, it started at the group's offsets, stored nothing and never went idle.
#[test]
fn a_data_folder_restored_from_a_backup_gets_what_came_after_the_backup() {
    let broker = Broker::start(&["restore:4", "restore.dlq:2"]);
    let dir = tempfile::tempdir().unwrap();
    let (data, backup) = (dir.path().join("data"), dir.path().join("backup"));
    let batch = |name: &str, n: usize| {
        let file = dir.path().join(name);
        write_cdrs(&file, n, name);
        produce(&broker, "restore", &file);
    };
    batch("a-", 3_000);
    ingest_to_end(&broker, "restore", "g", &data);
    let copied = Command::new("cp")
        .args(["-a", data.to_str().unwrap(), backup.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copied.success());
    batch("b-", 2_000);
    // Flushing every second, so the group's offsets in Kafka (committed after each data
    // commit, asynchronously, as a hint) reach the end while the member still runs.
    finish(member(&broker, "restore", &data, Some(4), &[]));
    assert_exactly_once(&data, 5_000);

    // The disk is lost; the backup from before the second batch comes back.
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::rename(&backup, &data).unwrap();
    assert_exactly_once(&data, 3_000);
    let mut child = member(&broker, "restore", &data, Some(2), &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("ingest did not finish: it never went idle");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let summary = finish(child);
    assert_eq!(summary["stored"], 2_000, "{summary}");
    assert_exactly_once(&data, 5_000);
}
