//! Ingest end to end: broker over TCP, the real binary, Parquet and the dead-letter topic read
//! back; crash safety with kill -9.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// Calls to store by (switch, cdr id), dead letters by reason, and duplicates.
type Expected = (
    BTreeMap<(String, String), evn_rating::RatedCall>,
    BTreeMap<String, u64>,
    u64,
);

/// What the rules say should happen to each record of a file (the oracle, from the pure core).
fn expected(file: &std::path::Path) -> Expected {
    let mut dups = 0;
    let cfg = evn_config::Config::load(&config_dir()).unwrap();
    let mut stored = BTreeMap::new();
    let mut dead = BTreeMap::new();
    for line in std::fs::read(file)
        .unwrap()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
    {
        match evn_cdr::parse(line) {
            Err(r) => *dead.entry(r.code().to_owned()).or_default() += 1,
            Ok(cdr) => match evn_rating::classify(cdr, &cfg) {
                evn_rating::Outcome::Store(c) => {
                    let key = (c.switch_id.to_string(), c.cdr_id.to_string());
                    match stored.entry(key) {
                        std::collections::btree_map::Entry::Occupied(_) => dups += 1,
                        std::collections::btree_map::Entry::Vacant(v) => {
                            v.insert(*c);
                        }
                    }
                }
                evn_rating::Outcome::Reject(u) => {
                    *dead.entry(u.code().to_owned()).or_default() += 1
                }
                evn_rating::Outcome::Skip(_) => {}
            },
        }
    }
    (stored, dead, dups)
}

#[test]
fn demo_fixture_is_stored_rated_and_dead_lettered_exactly_as_the_rules_say() {
    let broker = Broker::start(&["cdrs:8", "cdrs.dlq:2"]);
    let file = repo().join("fixtures/cdrs/demo.jsonl");
    let sent = produce(&broker, "cdrs", &file);
    assert!(
        sent.starts_with("sent 1509 records (2 without a customer_id"),
        "{sent}"
    );
    let data = tempfile::tempdir().unwrap();
    let summary = ingest_to_end(&broker, "cdrs", "g1", data.path());

    let (want, want_dead, want_dups) = expected(&file);
    // Parquet read back equals the oracle, row for row.
    let mut got = BTreeMap::new();
    for month in evn_store::list_months(data.path()).unwrap() {
        for row in evn_store::read_month(data.path(), month).unwrap() {
            assert_eq!(row.call.billing_month, month);
            assert!(
                got.insert(
                    (row.call.switch_id.to_string(), row.call.cdr_id.to_string()),
                    row.call
                )
                .is_none(),
                "stored twice"
            );
        }
    }
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    // Every file names the counselling list its flags were set with (the billing run trusts
    // the flag of a shortened number only while that list is current).
    let list = evn_config::Config::load(&config_dir())
        .unwrap()
        .counselling
        .version;
    for month in evn_store::list_months(data.path()).unwrap() {
        for file in evn_store::list_month_files(data.path(), month).unwrap() {
            let mut version = None;
            evn_store::read_file_with_info(
                &file,
                None,
                &mut |i| version = i.counselling_version,
                &mut |_| {},
            )
            .unwrap();
            assert_eq!(
                version.as_deref(),
                Some(list.as_str()),
                "{}",
                file.display()
            );
        }
    }
    assert_eq!(summary["stored"], want.len() as u64);
    assert!(want_dups > 0);
    assert_eq!(summary["skipped"]["duplicate"], want_dups);
    assert!(summary["skipped"]["flatrate"].as_u64().unwrap() > 0);
    let dead: u64 = want_dead.values().sum();
    let skipped: u64 = summary["skipped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(summary["consumed"], 1509);
    assert_eq!(summary["stored"].as_u64().unwrap() + skipped + dead, 1509);
    for (reason, n) in &want_dead {
        assert_eq!(summary["dead_lettered"][reason], *n, "{reason}");
    }
    // Each dead letter arrives once with its reason and the original bytes.
    let letters: Vec<(String, Vec<u8>)> = read_dead_letters(&broker, "cdrs.dlq", dead as usize)
        .into_iter()
        .map(|d| (d.error, d.payload))
        .collect();
    assert_eq!(letters.len() as u64, dead);
    assert!(letters
        .iter()
        .any(|(e, p)| e.starts_with("malformed_json") && p == br#"{"cdr_id": "broken"#));
    assert!(letters.iter().any(|(e, _)| e.starts_with("not_an_object")));
    assert!(letters
        .iter()
        .any(|(e, _)| e.starts_with("unknown_customer")));
    assert!(letters
        .iter()
        .any(|(e, _)| e == "missing_field: `start_time` is required"));

    // A second run has nothing new to do and stores nothing twice.
    let again = ingest_to_end(&broker, "cdrs", "g1", data.path());
    assert_eq!(again["stored"], 0);
    assert_eq!(stored_ids(data.path()).values().max(), Some(&1));
    // Nothing temporary is visible to readers of cdrs/.
    for entry in walk(&data.path().join("cdrs")) {
        assert!(
            entry.extension().is_some_and(|e| e == "parquet"),
            "{}",
            entry.display()
        );
    }
}

/// Starts an ingest member that commits about every second, so kills land between and inside
/// commits.
fn spawn_member(
    broker: &Broker,
    topic: &str,
    group: &str,
    data: &std::path::Path,
    (stdout, stderr): (Stdio, Stdio),
) -> std::process::Child {
    let mut args = ingest_args(broker, topic, group, data);
    args.extend(["--flush-interval-secs".into(), "1".into()]);
    Command::new(bin())
        .args(&args)
        .env("EVN_LOG", "warn")
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap()
}

#[test]
fn kill_9_mid_stream_loses_nothing_and_stores_nothing_twice() {
    const N: usize = 100_000;
    let (broker, _dir, data) = backlog("crash", N, "c-");
    for round in 0..4 {
        let mut child = spawn_member(&broker, "crash", "g", &data, (Stdio::null(), Stdio::null()));
        std::thread::sleep(Duration::from_millis(1500 + 400 * round));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    ingest_to_end(&broker, "crash", "g", &data);
    let ids = stored_ids(&data);
    assert_stored_once(&ids, N);
}

#[test]
fn two_members_one_killed_still_exactly_once() {
    const N: usize = 60_000;
    let (broker, _dir, data) = backlog("pair", N, "p-");
    let mut a = spawn_member(&broker, "pair", "g", &data, (Stdio::null(), Stdio::null()));
    let b = spawn_member(&broker, "pair", "g", &data, (Stdio::piped(), Stdio::null()));
    std::thread::sleep(Duration::from_millis(2500));
    a.kill().unwrap();
    a.wait().unwrap();
    let out = b.wait_with_output().unwrap();
    assert!(out.status.success());
    ingest_to_end(&broker, "pair", "g", &data);
    let ids = stored_ids(&data);
    assert_stored_once(&ids, N);
}

#[test]
fn a_closed_stdout_does_not_turn_a_clean_stop_into_a_failure() {
    const N: usize = 200;
    let (broker, _dir, data) = backlog("closed-stdout", N, "cs-");
    let mut child = Command::new(bin())
        .args(ingest_args(&broker, "closed-stdout", "g", &data))
        .env("EVN_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The caller goes away before ingest prints its summary.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ingest failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("could not print the summary"), "{stderr}");
    let ids = stored_ids(&data);
    assert_stored_once(&ids, N);
}

/// Two consumer groups on one data folder both read every record, so they race for every
/// commit: whichever commits a range second is fenced, drops its buffer, recovers from the
/// other's commit and seeks back. Batches it had received but not applied yet must not be
/// applied after that seek (they would put later offsets in the buffer first and make the
/// ones re-read after the seek look like replays): every CDR is stored exactly once.
#[test]
fn two_groups_racing_on_one_data_folder_store_each_cdr_once() {
    const N: usize = 60_000;
    let (broker, _dir, data) = backlog("race", N, "r-");
    race_two_groups(&broker, "race", &data);
    let ids = stored_ids(&data);
    assert_stored_once(&ids, N);
}

/// As above, with every CDR sent twice, the second time after all of the first: racing
/// groups still store each CDR once, and the month sets read again after each fence
/// (`State::reload_dedup`) keep the buffered keys. It does not reliably bring a duplicate
/// after a fence, the case `reload_dedup` is for (both copies are mostly read before the
/// first commit): `ops::a_fenced_member_does_not_store_later_duplicates_of_the_winners_rows`
/// does.
#[test]
fn two_groups_racing_on_every_cdr_sent_twice_store_each_once() {
    const N: usize = 40_000;
    let (broker, dir, data) = backlog("race-dup", N, "rd-");
    let again = dir.path().join("again.jsonl");
    write_cdrs(&again, N, "rd-");
    produce(&broker, "race-dup", &again);
    race_two_groups(&broker, "race-dup", &data);
    let ids = stored_ids(&data);
    assert_stored_once(&ids, N);
}

/// Runs one member in each of two groups on one data folder until both are done.
fn race_two_groups(broker: &Broker, topic: &str, data: &std::path::Path) {
    let members: Vec<_> = ["ga", "gb"]
        .iter()
        .map(|group| spawn_member(broker, topic, group, data, (Stdio::piped(), Stdio::piped())))
        .collect();
    for member in members {
        let out = member.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The topic is deleted and created again (here: a new embedded broker) while the data folder
/// stays: the new topic's offsets start over, below what the commit log says is stored. Ingest
/// must not take its records for replays of the old topic's (they were counted `replayed` and
/// never stored, exit 0); it stops with exit 1 and says what happened and what to do. Under a
/// new topic name the same folder ingests them.
#[test]
fn a_re_created_topic_stops_ingest_instead_of_skipping_its_records() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let first = tmp.path().join("first.jsonl");
    write_cdrs(&first, 5, "old");
    let broker = Broker::start(&["cdrs:1", "cdrs.dlq:1"]);
    produce(&broker, "cdrs", &first);
    assert_eq!(ingest_to_end(&broker, "cdrs", "g", &data)["stored"], 5);
    drop(broker);

    let again = Broker::start(&["cdrs:1", "cdrs.dlq:1", "cdrs-2:1", "cdrs-2.dlq:1"]);
    let second = tmp.path().join("second.jsonl");
    write_cdrs(&second, 3, "new");
    produce(&again, "cdrs", &second);
    let out = Command::new(bin())
        .args(ingest_args(&again, "cdrs", "g", &data))
        .env("EVN_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("outside the topic's log"), "{stderr}");
    assert!(
        stderr.contains("(cdrs partition 0: resumes at offset 5, the broker holds 0 to 3)"),
        "{stderr}"
    );
    assert!(stderr.contains("new topic name"), "{stderr}");
    assert_eq!(stored_rows(&data).len(), 5, "nothing stored, nothing lost");

    produce(&again, "cdrs-2", &second);
    assert_eq!(ingest_to_end(&again, "cdrs-2", "g", &data)["stored"], 3);
    assert_eq!(stored_rows(&data).len(), 8);
}

/// A record too large for a dead letter (the producer takes 1 MB, Kafka's topics 1 MiB by
/// default) stopped ingest at every restart: the partition never moved again. It is
/// dead-lettered by its head, size and digest, and the record behind it is stored.
#[test]
fn a_record_too_large_for_a_dead_letter_is_dead_lettered_by_its_head_and_digest() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use sha2::Digest;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let broker = Broker::start(&["cdrs:1", "cdrs.dlq:1"]);
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("message.max.bytes", "10000000")
        .create()
        .unwrap();
    // Garbage of 2 MB (a log shipper sending a whole file as one record), a CDR whose dialled
    // "number" is 600 KB (the reason quotes it: a header that long was undeliverable too),
    // then a good CDR.
    let huge = format!("{{\"cdr_id\":\"x\",\"pad\":\"{}\"", "a".repeat(2_000_000)).into_bytes();
    let good = tmp.path().join("good.jsonl");
    write_cdrs(&good, 2, "after-huge");
    let good = std::fs::read_to_string(&good).unwrap();
    let (first, second) = good.trim_end().split_once('\n').unwrap();
    let long_number = first.replace("+491511234", &"9".repeat(600_000));
    for payload in [&huge[..], long_number.as_bytes(), second.as_bytes()] {
        producer
            .send(
                BaseRecord::<[u8], [u8]>::to("cdrs")
                    .payload(payload)
                    .key(b"K1001"),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let summary = ingest_to_end(&broker, "cdrs", "g", &data);
    assert_eq!(summary["stored"], 1, "{summary}");
    assert_eq!(summary["dead_lettered"]["malformed_json"], 1, "{summary}");
    assert_eq!(summary["dead_lettered"]["bad_number"], 1, "{summary}");
    let dead = read_dead_letters(&broker, "cdrs.dlq", 2);
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[1].reason, "bad_number");
    assert!(
        dead[1].error.len() <= 4 * 1024 + 3,
        "{}",
        dead[1].error.len()
    );
    assert_eq!(dead[0].reason, "malformed_json");
    assert_eq!(dead[0].payload, huge[..512 * 1024]);
    assert_eq!(dead[0].source_offset, 0);
    let header = |k: &str| dead[0].headers.get(k).cloned().unwrap_or_default();
    let (size, digest) = (header("evn-truncated-from"), header("evn-sha256"));
    assert_eq!(size, huge.len().to_string());
    let want: String = sha2::Sha256::digest(&huge)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(digest, want);
}

/// A catch-up whose calls interleave many billing months (a switch replaying a backfill) is
/// committed by size and age like any other, one file per month: a cap of four open months
/// committed it every few records, one tiny file per month each time.
#[test]
fn a_backlog_interleaving_many_months_makes_one_file_per_month() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let broker = Broker::start(&["cdrs:1", "cdrs.dlq:1"]);
    let file = tmp.path().join("cdrs.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    let (n, months) = (3_000, 9);
    for i in 0..n {
        // The 15th of a month from 2026-01 to 2026-09, round-robin.
        let start = chrono::NaiveDate::from_ymd_opt(2026, 1 + (i % months) as u32, 15)
            .unwrap()
            .and_hms_opt(8, 0, 0)
            .unwrap()
            .and_utc()
            + chrono::TimeDelta::seconds(i as i64);
        let t = |d: chrono::DateTime<chrono::Utc>| d.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        writeln!(
            f,
            r#"{{"cdr_id":"mix{i}","switch_id":"fra1","customer_id":"K1002","calling_number":"+4930901820","called_number":"+4915112345678","direction":"outbound","start_time":"{}","answer_time":"{}","end_time":"{}","disposition":"answered"}}"#,
            t(start),
            t(start + chrono::TimeDelta::seconds(3)),
            t(start + chrono::TimeDelta::seconds(63)),
        )
        .unwrap();
    }
    drop(f);
    produce(&broker, "cdrs", &file);
    let summary = ingest_to_end(&broker, "cdrs", "g", &data);
    assert_eq!(summary["stored"], n, "{summary}");
    assert_eq!(summary["files"], months, "{summary}");
    assert_stored_once(&stored_ids(&data), n);
}

/// A dead-letter topic that is also consumed would loop for ever: refused before anything
/// starts. A topic named twice is one subscription.
#[test]
fn a_consumed_dead_letter_topic_is_refused_and_a_repeated_topic_is_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let broker = Broker::start(&["cdrs:1", "cdrs.dlq:1"]);
    let file = tmp.path().join("cdrs.jsonl");
    write_cdrs(&file, 20, "twice-");
    produce(&broker, "cdrs", &file);
    for extra in [&["--dlq-topic", "cdrs"][..], &["--topic", "cdrs.dlq"][..]] {
        let out = Command::new(bin())
            .args(ingest_args(&broker, "cdrs", "g", &data))
            .args(extra)
            .env("EVN_LOG", "warn")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains("is also consumed"), "{err}");
    }
    assert!(!data.exists(), "nothing started");
    let out = Command::new(bin())
        .args(ingest_args(&broker, "cdrs", "g", &data))
        .args(["--topic", "cdrs"])
        .env("EVN_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_stored_once(&stored_ids(&data), 20);
}

/// A batch run against brokers that never answer (a typo in --brokers) gives up with exit 1
/// after 30 s instead of waiting for ever, and logs the outage a few times, not 45 times a
/// second.
#[test]
fn a_batch_run_without_a_broker_gives_up_and_logs_the_outage_sparingly() {
    let tmp = tempfile::tempdir().unwrap();
    let nobody = format!("127.0.0.1:{}", free_port());
    let started = std::time::Instant::now();
    let out = Command::new(bin())
        .args(ingest_args_at(
            &nobody,
            "cdrs",
            "g",
            &tmp.path().join("data"),
        ))
        .env("EVN_LOG", "warn")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("no broker at {nobody} answered for 30 s")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    // librdkafka's own log already folds identical lines ("N identical error(s) suppressed").
    let lines = err.lines().count();
    assert!(lines <= 30, "{lines} lines:\n{err}");
}

/// A client setting librdkafka refuses is a configuration error: exit 2, naming the flag.
#[test]
fn an_unknown_kafka_option_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(ingest_args_at(
            "127.0.0.1:9",
            "cdrs",
            "g",
            &tmp.path().join("data"),
        ))
        .args(["--kafka-option", "no.such.property=1"])
        .env("EVN_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("check --kafka-option"), "{err}");
    assert!(err.contains("no.such.property"), "{err}");
}
