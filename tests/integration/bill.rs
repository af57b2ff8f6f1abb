//! `evn bill` through the real binary: files and exit codes (INTERFACES.md §4).

use std::path::Path;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use evn_rating::{BillingMonth, RatedCall};
use evn_store::{StoredCall, WriteOptions};

use crate::support::{config_dir, evn, evn_env};

fn stored(id: &str, customer: &str, start: &str, called: &str, zone: &str) -> StoredCall {
    let start_time = DateTime::<Utc>::from_str(start).unwrap();
    StoredCall {
        call: RatedCall {
            cdr_id: id.into(),
            switch_id: "fra1".into(),
            customer_id: customer.into(),
            calling_number: "+4989123456".into(),
            called_number: called.into(),
            start_time,
            duration_s: 125,
            zone: zone.into(),
            charge_eur: Decimal::from_str("0.3728").unwrap(),
            billing_month: BillingMonth::of(start_time),
            plan: "office_basic".into(),
            shortened: false,
            counselling: false,
        },
        source_topic: "cdrs".into(),
        source_partition: 0,
        source_offset: 0,
        provenance: None,
    }
}

fn write(data: &Path, rows: &[StoredCall]) {
    write_month(data, "2026-11", rows);
}

fn write_month(data: &Path, month: &str, rows: &[StoredCall]) {
    let dir = evn_store::month_dir(data, month.parse().unwrap());
    std::fs::create_dir_all(&dir).unwrap();
    evn_store::write_file(&dir.join("a.parquet"), rows, WriteOptions::default()).unwrap();
}

fn bill(data: &Path, out: &Path, month: &str, extra: &[&str]) -> std::process::Output {
    let config = config_dir();
    let mut args = vec![
        "bill",
        "--config",
        config.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--month",
        month,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    // Unencrypted test data: no data key.
    evn_env(&args, &[], &["EVN_DATA_KEY_FILE"])
}

#[test]
fn bill_writes_pdf_csv_and_manifest_and_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    write(
        &data,
        &[stored(
            "c1",
            "K1002",
            "2026-11-05T10:00:00Z",
            "+4915112345678",
            "mobile",
        )],
    );
    let metrics = tmp.path().join("bill.prom");
    let o = bill(
        &data,
        &out,
        "2026-11",
        &["--metrics-file", metrics.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    // Issue #9: the run's figures for a textfile collector. K1002 and the EVN-on customers
    // without calls (K1001, K1003, K1005) each get a new version.
    let text = std::fs::read_to_string(&metrics).unwrap();
    for line in [
        "evn_bill_evns_rendered_total 4",
        "evn_bill_evns_unchanged_total 0",
        "evn_bill_rows_read_total 1",
        "evn_bill_succeeded 1",
        "evn_bill_render_seconds_count 4",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    let dir = out.join("2026-11");
    for f in [
        "K1002.pdf",
        "K1002.v1.pdf",
        "K1002.csv",
        "K1002.v1.csv",
        "manifest.json",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(dir.to_str().unwrap()), "{stdout}");
    // Not a terminal: no progress bar in the output.
    assert!(
        !stderr
            .lines()
            .any(|l| l.contains("EVNs ") && l.contains('/')),
        "{stderr}"
    );
}

#[test]
fn bill_month_without_data_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    let o = bill(&data, &out, "2026-10", &[]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("no stored calls for 2026-10"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn bill_usage_and_config_errors_exit_2_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    write(
        &data,
        &[stored(
            "c1",
            "K9999",
            "2026-11-05T10:00:00Z",
            "+4915112345678",
            "mobile",
        )],
    );
    let o = bill(&data, &out, "2026-11", &[]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("K9999"));
    for extra in [&["--customer", "K0000"][..], &["--shard", "3/3"][..]] {
        let o = bill(&data, &out, "2026-11", extra);
        assert_eq!(o.status.code(), Some(2), "{extra:?}");
    }
    assert!(!out.exists());
}

/// Two `evn bill` runs of one month at once overwrote each other's numbered versions and the
/// manifest lost versions. While one run holds the month's lock (here `flock(1)` stands in for
/// it, deterministically), a second run exits 1 at once naming the lock file; once the holder
/// is killed the kernel releases its lock and the month bills again: no stale lock.
#[test]
fn a_second_bill_run_of_the_month_exits_1_while_the_first_runs_and_not_after_it_was_killed() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    write(
        &data,
        &[stored(
            "c1",
            "K1002",
            "2026-11-05T10:00:00Z",
            "+4915112345678",
            "mobile",
        )],
    );
    let first = bill(&data, &out, "2026-11", &[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let dir = out.join("2026-11");
    let lock = dir.join(evn_billing::MONTH_LOCK);
    let before: Vec<(String, Vec<u8>)> = {
        let mut v: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };

    // "Another run": a process holding an exclusive flock on the lock file until killed.
    let mut holder = std::process::Command::new("flock")
        .args(["--exclusive", "--nonblock", "--no-fork"])
        .arg(&lock)
        .args(["-c", "echo locked; exec sleep 600"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("flock(1) from util-linux");
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");

    let second = bill(&data, &out, "2026-11", &[]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(lock.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("another billing run"), "{stderr}");
    // It wrote nothing: the month folder is byte for byte what the first run left.
    let mut after: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    after.sort();
    assert_eq!(after, before);

    // Killed, not ended: the lock goes with the process.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let third = bill(&data, &out, "2026-11", &[]);
    assert!(
        third.status.success(),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
}

/// Calls an hour apart in the repeated autumn hour read `02:30:00 A` and `02:30:00 B` in the
/// PDF's text layer and the CSV, the EVN says what A and B mean, and the rows keep the order
/// in which the calls were made.
#[test]
fn the_evn_tells_the_two_passes_of_the_repeated_autumn_hour_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    let call = |id, start| stored(id, "K1002", start, "+4915112345678", "mobile");
    write_month(
        &data,
        "2026-10",
        &[
            call("d2", "2026-10-25T01:30:00Z"),
            call("d1", "2026-10-25T00:30:00Z"),
            call("d3", "2026-10-25T02:30:00Z"),
        ],
    );
    let o = bill(&data, &out, "2026-10", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = out.join("2026-10");
    let text = std::process::Command::new("pdftotext")
        .args(["-layout"])
        .arg(dir.join("K1002.pdf"))
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils; scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    let times: Vec<&str> = ["02:30:00 A", "02:30:00 B", "03:30:00"]
        .into_iter()
        .filter(|t| text.contains(&format!("25.10.2026 {t}")))
        .collect();
    assert_eq!(times.len(), 3, "{text}");
    let at = |t: &str| text.find(&format!("25.10.2026 {t}")).unwrap();
    assert!(at("02:30:00 A") < at("02:30:00 B") && at("02:30:00 B") < at("03:30:00"));
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("Am 25.10.2026 wurde die Stunde von 2 bis 3 Uhr")
            && flat.contains("„A“ kennzeichnet Uhrzeiten im ersten Durchlauf (Sommerzeit, MESZ)"),
        "{text}"
    );
    let csv = std::fs::read_to_string(dir.join("K1002.csv")).unwrap();
    let csv_times: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(';').nth(3).unwrap())
        .collect();
    assert_eq!(csv_times, ["02:30:00 A", "02:30:00 B", "03:30:00"], "{csv}");
}

/// A sharded run writes one manifest part per shard; `evn merge-manifests` makes the month's
/// `manifest.json` of them (INTERFACES §4), refused while a shard of the month still runs.
#[test]
fn merge_manifests_joins_the_shards_parts_into_manifest_json() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    let rows: Vec<StoredCall> = ["K1001", "K1002", "K1003", "K1005"]
        .iter()
        .enumerate()
        .map(|(i, c)| {
            stored(
                &format!("s{i}"),
                c,
                "2026-11-05T10:00:00Z",
                "+4915112345678",
                "mobile",
            )
        })
        .collect();
    write(&data, &rows);
    for shard in ["0/2", "1/2"] {
        let o = bill(&data, &out, "2026-11", &["--shard", shard]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let dir = out.join("2026-11");
    assert!(!dir.join("manifest.json").exists());
    let parts: Vec<evn_billing::Manifest> =
        ["manifest.shard-0-of-2.json", "manifest.shard-1-of-2.json"]
            .iter()
            .map(|f| evn_billing::Manifest::read(&dir.join(f)).unwrap().expect(f))
            .collect();
    let merge = || {
        evn(&[
            "merge-manifests",
            "--out",
            out.to_str().unwrap(),
            "--month",
            "2026-11",
        ])
    };

    // A shard still running holds the month lock shared: the merge must wait for it.
    let lock = std::fs::File::open(dir.join(".bill.lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockShared).unwrap();
    let o = merge();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!dir.join("manifest.json").exists());
    drop(lock);

    let o = merge();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("manifest.json"));
    let merged = evn_billing::Manifest::read(&dir.join("manifest.json"))
        .unwrap()
        .unwrap();
    assert_eq!(merged.shard, None);
    let mut want: Vec<&String> = parts.iter().flat_map(|p| p.customers.keys()).collect();
    want.sort();
    assert_eq!(merged.customers.keys().collect::<Vec<_>>(), want);
    assert!(want.len() >= 4, "{want:?}");
    for p in &parts {
        for (id, e) in &p.customers {
            assert_eq!(&merged.customers[id], e, "{id}");
        }
    }
    let o = evn(&[
        "merge-manifests",
        "--out",
        out.to_str().unwrap(),
        "--month",
        "2026-10",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
