//! The fixtures of fixtures/sources/ through the shipped configuration, line by line: what each
//! record becomes. The end-to-end tests (tests/integration/sources.rs) send the same files
//! through the broker and the binary.

use std::path::{Path, PathBuf};

use evn_config::Config;

use crate::convert;
use crate::testing::view;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn outcomes(topic: &str, file: &str) -> Vec<String> {
    let cfg = Config::load(&repo().join("fixtures/config")).unwrap();
    let source = cfg.sources.get(topic).unwrap();
    std::fs::read(repo().join("fixtures/sources").join(file))
        .unwrap()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| match convert(source, &cfg.numbers, line) {
            Ok(c) => view(&c),
            Err(e) => format!("dead {}", e.code()),
        })
        .collect()
}

fn check(topic: &str, file: &str, want: &[&str]) {
    let got = outcomes(topic, file);
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.starts_with(w), "line {}:\n got {g}\nwant {w}…", i + 1);
    }
}

#[test]
fn asterisk_master_csv() {
    check(
        "switch-asterisk",
        "asterisk-csv/Master.csv",
        &[
            "ast1 1795508102.1-",
            "ast1 1795510800.7-", // CONGESTION on trunk 1: failed
            "ast1 1795510800.7-", // the same call answered on trunk 2
            "ast1 1795514400.9-",
            "skip internal",
            "skip inbound",
            "ast1 1792889400.15-",
            "ast1 1792887000.17-",
            "dead nonexistent_local_time",
            "ast1 1795590000.21-",
            "ast1 1795593600.23-",
            "dead invalid_utf8",
            "ast1 1795508102.1-",
            "dead unknown_line",
            "ast1 1795600800.29-",
        ],
    );
    let got = outcomes("switch-asterisk", "asterisk-csv/Master.csv");
    assert!(got[0].contains(" K1002 +4989123456→+4915112345678 outbound answered start=2026-11-24T08:15:02Z answer=08:15:09 end=08:17:11 billable=122s id=1795508102.1"), "{}", got[0]);
    assert!(got[1].contains("+4331234567 outbound failed"), "{}", got[1]);
    assert!(got[2].contains("+4331234567 outbound answered start=2026-11-24T09:00:00Z answer=09:00:04 end=09:05:04 billable=300s"), "{}", got[2]);
    assert!(got[3].contains("+492211234567 outbound busy"), "{}", got[3]);
    // DST: across the repeated hour (placed by its duration), and inside it (earlier reading).
    assert!(
        got[6].contains("start=2026-10-25T00:50:00Z answer=00:50:10 end=01:10:00 billable=1190s"),
        "{}",
        got[6]
    );
    assert!(
        got[7].contains("start=2026-10-25T00:10:00Z answer=00:10:05 end=00:12:05 billable=120s"),
        "{}",
        got[7]
    );
    assert!(got[10].ends_with(" repaired"), "{}", got[10]);
    assert_eq!(
        got[12], got[0],
        "the exact duplicate converts to the same CDR id"
    );
    assert!(
        got[14].contains("+4989123456→110 outbound answered"),
        "{}",
        got[14]
    );
}

#[test]
fn freeswitch_json() {
    let got = outcomes("switch-freeswitch", "freeswitch-json/cdrs.jsonl");
    let want = [
        "fs1 a1f0c2de-5b7a-4c1e-9f00-000000000001 K1002 +4989123456→+4915112345678 outbound answered start=2026-11-24T08:15:02.250Z answer=08:15:09.900 end=08:17:11.400 billable=122s",
        "skip other_leg",
        "fs1 a1f0c2de-5b7a-4c1e-9f00-000000000001 ",
        "fs1 a1f0c2de-5b7a-4c1e-9f00-000000000003 K1002 +4989123456→+492219876543 outbound busy",
        "fs1 a1f0c2de-5b7a-4c1e-9f00-000000000004 K1002 +4989123456→+33123456789 outbound answered start=2026-11-24T09:30:00.100Z answer=09:30:07 end=09:35:07.050 billable=301s",
        "skip inbound",
        "fs1 a1f0c2de-5b7a-4c1e-9f00-000000000006 K1002 +4989123456→+492219876543 outbound answered start=2026-10-25T00:50:00Z answer=00:50:10 end=01:10:00 billable=1190s",
        "dead malformed_json",
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(want) {
        assert!(g.starts_with(w), "\n got {g}\nwant {w}…");
    }
    assert!(got[4].ends_with(" repaired"), "{}", got[4]);
}

#[test]
fn freeswitch_csv() {
    check(
        "switch-freeswitch-csv",
        "freeswitch-csv/Master.csv",
        &[
            "fs2 c3d0c2de-5b7a-4c1e-9f00-000000000001 K1002 +4989123456→+4915112345678 outbound answered start=2026-11-24T08:15:02Z answer=08:15:09 end=08:17:11 billable=122s",
            "fs2 c3d0c2de-5b7a-4c1e-9f00-000000000003 K1002 +4989123456→+4915112345670 outbound no_answer",
            "fs2 c3d0c2de-5b7a-4c1e-9f00-000000000001 ",
            "fs2 c3d0c2de-5b7a-4c1e-9f00-000000000004 K1002 +4989123456→+492219876543 outbound answered start=2026-10-25T00:50:00Z",
            "dead malformed_csv",
            "fs2 c3d0c2de-5b7a-4c1e-9f00-000000000006 K1002 +4989123456→+49897654321 outbound answered start=2026-11-24T10:00:00Z answer=10:00:03 end=10:01:03 billable=60s",
        ],
    );
}

#[test]
fn kazoo_json() {
    check(
        "switch-kazoo",
        "kazoo-json/cdrs.jsonl",
        &[
            "kz1 0f7c1a2b3c4d5e6f@10.26.0.81 K1002 +4989123456→+4915112345678 outbound answered start=2026-11-24T08:15:02.250Z answer=08:15:09 end=08:17:11 billable=122s id=0f7c1a2b3c4d5e6f@10.26.0.81",
            "skip other_leg",
            "kz1 1b2c3d4e5f607182@10.26.0.81 K1002 +4989123456→+492219876543 outbound busy",
            "kz1 0f7c1a2b3c4d5e6f@10.26.0.81 ",
            "dead missing_field",
            "skip internal",
        ],
    );
}

#[test]
fn carrier_csv() {
    check(
        "carrier-csv",
        "csv/carrier.csv",
        &[
            "skip header",
            "carrier1 CR-0001 K1002 +4989123456→+33123456789 outbound answered start=2026-11-24T08:15:02Z answer=08:15:09 end=08:17:11 billable=122s id=CR-0001",
            "carrier1 CR-0002 K1002 +4989123456→+492219876543 outbound busy",
            "dead unknown_enum_value",
            "carrier1 CR-0001 ",
            "carrier1 CR-0004 K1002 +4989123456→+498001110111 outbound answered",
        ],
    );
}
