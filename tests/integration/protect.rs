//! Encryption at rest through the real binary: with `EVN_DATA_KEY_FILE` set, nothing personal
//! is readable in the stored bytes, readers without the key get an error, the key reads it back.

use std::process::Command;
use std::sync::Arc;

use crate::support::*;

#[test]
fn encrypted_ingest_hides_every_number_and_needs_the_key() {
    const N: usize = 2_000;
    let broker = Broker::start(&["enc:4", "enc.dlq:1"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cdrs.jsonl");
    write_cdrs(&file, N, "enc-");
    produce(&broker, "enc", &file);
    let key_file = dir.path().join("data.key");
    std::fs::write(&key_file, format!("{}\n", "5a".repeat(32))).unwrap();
    let data = dir.path().join("data");
    let out = Command::new(bin())
        .args(ingest_args(&broker, "enc", "g", &data))
        .env("EVN_LOG", "warn")
        .env("EVN_DATA_KEY_FILE", &key_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let files = walk(&data.join("cdrs"));
    assert!(!files.is_empty());
    for f in &files {
        let raw = std::fs::read(f).unwrap();
        for needle in ["4930901820", "491511234", "K1001", "enc-1", "mobile"] {
            assert!(
                !raw.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} readable in {}",
                f.display()
            );
        }
    }
    let month = evn_store::list_months(&data).unwrap()[0];
    let err = evn_store::read_month(&data, month).unwrap_err();
    assert!(err.to_string().contains("EVN_DATA_KEY_FILE"), "{err}");
    let keys = Arc::new(evn_keys::Keyring::load(&key_file).unwrap());
    let rows: usize = evn_store::list_months(&data)
        .unwrap()
        .into_iter()
        .map(|m| {
            evn_store::read_month_with(&data, m, Some(&keys))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(rows, N);
    // Another reader without the key gets an error, not data.
    let py = Command::new("python3")
        .args([
            "-c",
            "import sys, pyarrow.parquet as pq; pq.read_table(sys.argv[1])",
            files[0].to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        !py.status.success(),
        "pyarrow must not read an encrypted file"
    );

    // The switch re-sends everything (new offsets): dedup reads the stored calls through the
    // encryption and recognises every one.
    produce(&broker, "enc", &file);
    let again = Command::new(bin())
        .args(ingest_args(&broker, "enc", "g", &data))
        .env("EVN_LOG", "warn")
        .env("EVN_DATA_KEY_FILE", &key_file)
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&again.stdout)
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(summary["stored"], 0, "{summary}");
    assert_eq!(summary["skipped"]["duplicate"], N as u64, "{summary}");
}

#[test]
fn a_bad_key_file_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("data.key");
    std::fs::write(&key_file, "not-hex\n").unwrap();
    let out = Command::new(bin())
        .args([
            "ingest",
            "--brokers",
            "127.0.0.1:1",
            "--topic",
            "t",
            "--group",
            "g",
            "--config",
            config_dir().to_str().unwrap(),
            "--data",
            dir.path().join("d").to_str().unwrap(),
        ])
        .env("EVN_LOG", "warn")
        .env("EVN_DATA_KEY_FILE", &key_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("data.key:1") && err.contains("64 hex digits"),
        "{err}"
    );
}
