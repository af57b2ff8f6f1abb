//! Issue #10, real switches: each non-canonical format of fixtures/sources/ through the broker
//! and the real binary with the shipped configuration (fixtures/config/sources.toml and
//! numbers.csv): every record stored, skipped or dead-lettered with its reason, the summary
//! adding up, and the stored rows carrying their source format and original record id.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use arrow::array::{Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::support::*;

/// (cdr_id → (source_format, source_record_id)) of every stored row, read straight from the
/// Parquet files as any reader would.
fn provenance(data: &Path) -> BTreeMap<String, (Option<String>, Option<String>)> {
    let mut out = BTreeMap::new();
    for file in walk(&data.join("cdrs")) {
        if file.extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let col = |name: &str| {
                batch
                    .column_by_name(name)
                    .unwrap_or_else(|| panic!("{name} missing in {}", file.display()))
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .clone()
            };
            let (id, format, record) =
                (col("cdr_id"), col("source_format"), col("source_record_id"));
            let opt = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_owned());
            for i in 0..batch.num_rows() {
                out.insert(id.value(i).to_owned(), (opt(&format, i), opt(&record, i)));
            }
        }
    }
    out
}

struct Run {
    summary: serde_json::Value,
    /// cdr_id → (customer, called number as stored, start UTC, duration_s, zone)
    rows: BTreeMap<String, (String, String, String, i64, String)>,
    dead: BTreeMap<String, usize>,
    provenance: BTreeMap<String, (Option<String>, Option<String>)>,
    _dir: tempfile::TempDir,
}

/// Produces `file` to `topic` on a fresh broker and ingests it to the end.
fn run(topic: &str, file: &str, dead_expected: usize) -> Run {
    let broker = Broker::start(&[&format!("{topic}:4"), &format!("{topic}.dlq:2")]);
    produce(&broker, topic, &repo().join("fixtures/sources").join(file));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let summary = ingest_to_end(&broker, topic, "g-sources", &data);
    let rows = stored_rows(&data)
        .into_iter()
        .map(|r| {
            let c = r.call;
            (
                c.cdr_id.into(),
                (
                    c.customer_id.into(),
                    c.called_number.into(),
                    c.start_time.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string(),
                    c.duration_s,
                    c.zone.into(),
                ),
            )
        })
        .collect();
    let mut dead = BTreeMap::new();
    for d in read_dead_letters(&broker, &format!("{topic}.dlq"), dead_expected) {
        assert_eq!(d.source_topic, topic);
        assert!(!d.error.is_empty());
        *dead.entry(d.reason).or_default() += 1;
    }
    Run {
        summary,
        rows,
        dead,
        provenance: provenance(&data),
        _dir: dir,
    }
}

/// The summary adds up: every record consumed is stored, skipped or dead-lettered.
fn adds_up(s: &serde_json::Value) {
    let sum = |k: &str| {
        s[k].as_object()
            .map_or(0, |m| m.values().map(|v| v.as_u64().unwrap()).sum::<u64>())
    };
    assert_eq!(
        s["consumed"].as_u64().unwrap(),
        s["stored"].as_u64().unwrap() + sum("skipped") + sum("dead_lettered"),
        "{s}"
    );
}

fn row(
    customer: &str,
    called: &str,
    start: &str,
    secs: i64,
    zone: &str,
) -> (String, String, String, i64, String) {
    (
        customer.into(),
        called.into(),
        start.into(),
        secs,
        zone.into(),
    )
}

#[test]
fn asterisk_master_csv_end_to_end() {
    let r = run("switch-asterisk", "asterisk-csv/Master.csv", 3);
    adds_up(&r.summary);
    assert_eq!(
        r.summary,
        serde_json::json!({"consumed":15,"stored":7,
            "skipped":{"duplicate":1,"inbound":1,"internal":1,"unanswered":2},
            "dead_lettered":{"invalid_utf8":1,"nonexistent_local_time":1,"unknown_line":1},
            "files": r.summary["files"].clone()})
    );
    let by_record: BTreeMap<&str, &(String, String, String, i64, String)> = r
        .rows
        .iter()
        .map(|(id, v)| (id.split('-').next().unwrap(), v))
        .collect();
    assert_eq!(
        by_record["1795508102.1"],
        &row(
            "K1002",
            "+4915112345678",
            "2026-11-24T08:15:02Z",
            122,
            "mobile"
        )
    );
    assert_eq!(
        by_record["1795510800.7"],
        &row("K1002", "+4331234567", "2026-11-24T09:00:00Z", 300, "eu")
    );
    // DST: a call across the repeated hour, and one inside it.
    assert_eq!(
        by_record["1792889400.15"],
        &row(
            "K1002",
            "+492219876543",
            "2026-10-25T00:50:00Z",
            1190,
            "landline"
        )
    );
    assert_eq!(
        by_record["1792887000.17"],
        &row(
            "K1002",
            "+492219876544",
            "2026-10-25T00:10:00Z",
            120,
            "landline"
        )
    );
    assert_eq!(
        by_record["1795593600.23"].1, "+4915112345679",
        "repaired caller name, stored"
    );
    assert_eq!(by_record["1795600800.29"].1, "110");
    assert_eq!(r.rows.len(), 7);
    assert_eq!(
        r.dead,
        BTreeMap::from([
            ("invalid_utf8".into(), 1),
            ("nonexistent_local_time".into(), 1),
            ("unknown_line".into(), 1)
        ])
    );
    for (id, (format, record)) in &r.provenance {
        assert_eq!(format.as_deref(), Some("asterisk-csv"), "{id}");
        assert!(
            id.starts_with(record.as_deref().unwrap()),
            "{id} from {record:?}"
        );
    }
    assert_eq!(r.provenance.len(), 7);
}

#[test]
fn freeswitch_json_end_to_end() {
    let r = run("switch-freeswitch", "freeswitch-json/cdrs.jsonl", 1);
    adds_up(&r.summary);
    assert_eq!(r.summary["stored"], 3);
    assert_eq!(
        r.summary["skipped"],
        serde_json::json!({"duplicate":1,"inbound":1,"other_leg":1,"unanswered":1})
    );
    assert_eq!(
        r.summary["dead_lettered"],
        serde_json::json!({"malformed_json":1})
    );
    assert_eq!(
        r.rows["a1f0c2de-5b7a-4c1e-9f00-000000000001"],
        row(
            "K1002",
            "+4915112345678",
            "2026-11-24T08:15:02.250Z",
            122,
            "mobile"
        )
    );
    assert_eq!(
        r.rows["a1f0c2de-5b7a-4c1e-9f00-000000000004"],
        row(
            "K1002",
            "+33123456789",
            "2026-11-24T09:30:00.100Z",
            301,
            "eu"
        )
    );
    assert_eq!(
        r.rows["a1f0c2de-5b7a-4c1e-9f00-000000000006"],
        row(
            "K1002",
            "+492219876543",
            "2026-10-25T00:50:00Z",
            1190,
            "landline"
        )
    );
    assert_eq!(
        r.provenance["a1f0c2de-5b7a-4c1e-9f00-000000000001"],
        (
            Some("freeswitch-json".into()),
            Some("a1f0c2de-5b7a-4c1e-9f00-000000000001".into())
        )
    );
}

#[test]
fn freeswitch_csv_end_to_end() {
    let r = run("switch-freeswitch-csv", "freeswitch-csv/Master.csv", 1);
    adds_up(&r.summary);
    assert_eq!(r.summary["stored"], 3);
    assert_eq!(
        r.summary["skipped"],
        serde_json::json!({"duplicate":1,"unanswered":1})
    );
    assert_eq!(
        r.summary["dead_lettered"],
        serde_json::json!({"malformed_csv":1})
    );
    assert_eq!(
        r.rows["c3d0c2de-5b7a-4c1e-9f00-000000000006"],
        row(
            "K1002",
            "+49897654321",
            "2026-11-24T10:00:00Z",
            60,
            "landline"
        )
    );
    assert_eq!(
        r.provenance["c3d0c2de-5b7a-4c1e-9f00-000000000004"]
            .0
            .as_deref(),
        Some("freeswitch-csv")
    );
}

#[test]
fn kazoo_json_end_to_end() {
    let r = run("switch-kazoo", "kazoo-json/cdrs.jsonl", 1);
    adds_up(&r.summary);
    assert_eq!(r.summary["stored"], 1);
    assert_eq!(
        r.summary["skipped"],
        serde_json::json!({"duplicate":1,"internal":1,"other_leg":1,"unanswered":1})
    );
    assert_eq!(
        r.summary["dead_lettered"],
        serde_json::json!({"missing_field":1})
    );
    assert_eq!(
        r.rows["0f7c1a2b3c4d5e6f@10.26.0.81"],
        row(
            "K1002",
            "+4915112345678",
            "2026-11-24T08:15:02.250Z",
            122,
            "mobile"
        )
    );
    assert_eq!(
        r.provenance["0f7c1a2b3c4d5e6f@10.26.0.81"],
        (
            Some("kazoo-json".into()),
            Some("0f7c1a2b3c4d5e6f@10.26.0.81".into())
        )
    );
}

#[test]
fn carrier_csv_end_to_end() {
    let r = run("carrier-csv", "csv/carrier.csv", 1);
    adds_up(&r.summary);
    assert_eq!(r.summary["stored"], 2);
    assert_eq!(
        r.summary["skipped"],
        serde_json::json!({"duplicate":1,"header":1,"unanswered":1})
    );
    assert_eq!(
        r.summary["dead_lettered"],
        serde_json::json!({"unknown_enum_value":1})
    );
    assert_eq!(
        r.rows["CR-0001"],
        row("K1002", "+33123456789", "2026-11-24T08:15:02Z", 122, "eu")
    );
    // A counselling line dialled in national notation: stored (flagged), never rendered.
    assert_eq!(r.rows["CR-0004"].1, "+498001110111");
    let counselling: Vec<bool> = stored_rows(r._dir.path().join("data").as_path())
        .iter()
        .filter(|s| s.call.cdr_id == "CR-0004")
        .map(|s| s.call.counselling)
        .collect();
    assert_eq!(counselling, [true]);
}

/// Kamailio: a call is its INVITE 2xx and its BYE, two records that may straddle a restart.
/// Starts wait in the commit log (never re-read from Kafka), an end without its start and a
/// start whose end is overdue are dead-lettered, and a call that cannot be used sends both of
/// its records to the dead-letter topic. One partition, so the overdue rule (records' own time
/// within a partition) is deterministic.
#[test]
fn kamailio_calls_pair_across_a_restart_end_to_end() {
    let topic = "switch-kamailio";
    let broker = Broker::start(&[&format!("{topic}:1"), &format!("{topic}.dlq:1")]);
    let fixtures = repo().join("fixtures/sources/kamailio-json");
    produce(&broker, topic, &fixtures.join("acc.jsonl"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = ingest_to_end(&broker, topic, "g-kamailio", &data);
    // 14 records: 11 decided, 3 starts held (c4, c7, c6) in the commit log.
    assert_eq!(
        first,
        serde_json::json!({"consumed":11,"stored":3,
            "skipped":{"call_start":2,"duplicate":1,"in_dialog":1,"signalling":1,"unanswered":1},
            "dead_lettered":{"malformed_json":1,"unpaired_end":1},
            "files": first["files"].clone(), "held":3})
    );
    let records: Vec<std::path::PathBuf> = walk(&data.join("_ingest").join(topic))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    let latest = records.iter().max().unwrap();
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(latest).unwrap()).unwrap();
    let held: Vec<i64> = record["held"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(held, [9, 11, 13], "{record}");

    // After a restart: c7 ends (not a customer's line: both records dead-lettered), c6 ends
    // (stored), c8 starts 30 h later, which makes c4's start overdue; two dialog CDRs, one in
    // the repeated autumn hour (wall clock; its stated duration makes it unambiguous), one with
    // a caller name in Latin-1 (repaired, stored).
    produce(&broker, topic, &fixtures.join("acc-later.jsonl"));
    let second = ingest_to_end(&broker, topic, "g-kamailio", &data);
    assert_eq!(
        second,
        serde_json::json!({"consumed":7,"stored":3,
            "skipped":{"call_start":1},
            "dead_lettered":{"unknown_line":2,"unpaired_start":1},
            "files": second["files"].clone(), "held":1})
    );
    // Every record accounted for once over both runs: 19 consumed = 18 decided + 1 held.
    assert_eq!(
        first["consumed"].as_u64().unwrap() + second["consumed"].as_u64().unwrap() + 1,
        19
    );

    let rows: BTreeMap<String, (String, String, String, i64)> = stored_rows(&data)
        .into_iter()
        .map(|r| {
            let p = r.provenance.expect("converted calls keep their provenance");
            assert_eq!(
                (p.format.as_str(), p.record_id.as_str()),
                ("kamailio-json", r.call.cdr_id.as_str())
            );
            let c = r.call;
            (
                c.cdr_id.into(),
                (
                    c.customer_id.into(),
                    c.called_number.into(),
                    c.start_time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    c.duration_s,
                ),
            )
        })
        .collect();
    let row = |c: &str, n: &str, t: &str, d: i64| (c.to_owned(), n.to_owned(), t.to_owned(), d);
    assert_eq!(
        rows,
        BTreeMap::from([
            // K1001 shortens numbers from 2026-11-15.
            (
                "c1@10.0.0.5".to_owned(),
                row("K1001", "+4915112345xxx", "2026-11-24T08:15:09Z", 122)
            ),
            (
                "c3@10.0.0.5".to_owned(),
                row("K1002", "+33123456789", "2026-11-24T08:15:19Z", 300)
            ),
            (
                "c6@10.0.0.5".to_owned(),
                row("K1001", "+4915112345xxx", "2026-11-24T08:25:09Z", 300)
            ),
            (
                "d5@10.0.0.5".to_owned(),
                row("K1002", "+4915112345670", "2026-11-24T09:00:00Z", 123)
            ),
            // 02:30 CEST, the first of the two 02:30s: both readings bill 60 s in October.
            (
                "d10@10.0.0.5".to_owned(),
                row("K1002", "+4915112345680", "2026-10-25T00:30:00Z", 60)
            ),
            (
                "d11@10.0.0.5".to_owned(),
                row("K1002", "+4915112345681", "2026-11-24T10:00:00Z", 90)
            ),
        ])
    );

    let dead = read_dead_letters(&broker, &format!("{topic}.dlq"), 5);
    let mut got: Vec<(String, i64)> = dead
        .iter()
        .map(|d| (d.reason.clone(), d.source_offset))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("malformed_json".to_owned(), 12),
            ("unknown_line".to_owned(), 11), // c7's INVITE, from the commit log
            ("unknown_line".to_owned(), 14), // c7's BYE
            ("unpaired_end".to_owned(), 8),
            ("unpaired_start".to_owned(), 9), // c4's INVITE
        ]
    );
    // Dead letters carry the original bytes, also those that waited in the commit log.
    let c4 = dead.iter().find(|d| d.reason == "unpaired_start").unwrap();
    let line = std::fs::read_to_string(fixtures.join("acc.jsonl")).unwrap();
    assert_eq!(
        String::from_utf8(c4.payload.clone()).unwrap(),
        line.lines().nth(9).unwrap()
    );
}

/// Without `--topic`, ingest consumes every topic of sources.toml, each in its own format; a
/// canonical topic next to them (passed explicitly) keeps its provenance columns null.
#[test]
fn ingest_takes_its_topics_from_sources_toml_and_validate_lists_them() {
    let topics = [
        "switch-asterisk",
        "switch-freeswitch",
        "switch-freeswitch-csv",
        "switch-kazoo",
        "carrier-csv",
        "switch-kamailio",
    ];
    let mut specs: Vec<String> = topics.iter().map(|t| format!("{t}:2")).collect();
    specs.extend(topics.iter().map(|t| format!("{t}.dlq:1")));
    let spec_refs: Vec<&str> = specs.iter().map(String::as_str).collect();
    let broker = Broker::start(&spec_refs);
    produce(
        &broker,
        "switch-kazoo",
        &repo().join("fixtures/sources/kazoo-json/cdrs.jsonl"),
    );
    produce(
        &broker,
        "carrier-csv",
        &repo().join("fixtures/sources/csv/carrier.csv"),
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut args = ingest_args(&broker, "x", "g-all", &data);
    let at = args.iter().position(|a| a == "--topic").unwrap();
    args.drain(at..at + 2);
    let out = Command::new(bin())
        .args(&args)
        .env("EVN_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    adds_up(&summary);
    assert_eq!(summary["consumed"], 12);
    assert_eq!(summary["stored"], 3);
    let formats: Vec<Option<String>> = provenance(&data).into_values().map(|p| p.0).collect();
    assert_eq!(formats.len(), 3);
    assert!(formats
        .iter()
        .all(|f| matches!(f.as_deref(), Some("kazoo-json" | "csv"))));

    let out = evn(&["validate", "--config", config_dir().to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("numbers:      6 lines"), "{text}");
    assert!(
        text.contains(
            "source:       switch-asterisk = asterisk-csv (switch ast1, zone Europe/Berlin"
        ),
        "{text}"
    );
    assert!(text.contains("source:       carrier-csv = csv"), "{text}");
}

/// A broken sources.toml stops every command with its file and line (exit 2).
#[test]
fn a_broken_sources_toml_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "provider.toml",
        "tariffs.toml",
        "customers.csv",
        "counselling-numbers.txt",
    ] {
        std::fs::copy(config_dir().join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join("sources.toml"),
        "[[source]]\ntopic = \"a\"\nformat = \"asterisk-csv\"\nswitch_id = \"x\"\ntimezone = \"Europe/Berlin\"\n",
    )
    .unwrap();
    let out = evn(&["validate", "--config", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("sources.toml:1"), "{err}");
    assert!(err.contains("numbers.csv is missing or empty"), "{err}");
}
