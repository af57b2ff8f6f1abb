//! Encryption at rest through the real binary: with `EVN_DATA_KEY_FILE` set, nothing personal
//! is readable in the stored bytes, readers without the key get an error, the key reads it back.

use std::process::Command;
use std::sync::Arc;

use crate::support::*;

/// `evn ingest` to the end with `EVN_DATA_KEY_FILE` set; asserts success.
fn ingest_encrypted(
    broker: &Broker,
    topic: &str,
    data: &std::path::Path,
    key_file: &std::path::Path,
) -> std::process::Output {
    let out = Command::new(bin())
        .args(ingest_args(broker, topic, "g", data))
        .env("EVN_LOG", "warn")
        .env("EVN_DATA_KEY_FILE", key_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

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
    ingest_encrypted(&broker, "enc", &data, &key_file);

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
    let again = ingest_encrypted(&broker, "enc", &data, &key_file);
    let summary: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&again.stdout)
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(summary["stored"], 0, "{summary}");
    assert_eq!(summary["skipped"]["duplicate"], N as u64, "{summary}");

    // The key forgotten in a Deployment edit: ingest refuses to write this folder in the
    // clear (it wrote plain Parquet beside the encrypted months, with only a warning).
    let later = dir.path().join("later.jsonl");
    write_cdrs(&later, 10, "plain-");
    produce(&broker, "enc", &later);
    let before = walk(&data.join("cdrs"));
    let out = Command::new(bin())
        .args(ingest_args(&broker, "enc", "g", &data))
        .env("EVN_LOG", "warn")
        .env_remove("EVN_DATA_KEY_FILE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("EVN_DATA_KEY_FILE is not set, but")
            && err.contains("holds encrypted traffic data"),
        "{err}"
    );
    assert_eq!(walk(&data.join("cdrs")), before, "nothing written");
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

/// `GET path` over plain HTTP/1.0 (so the body is never chunked) with a bearer token: status
/// and body bytes.
fn get_bytes(addr: std::net::SocketAddr, path: &str, token: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, raw[end + 4..].to_vec())
}

/// Issue #8 end to end: encrypted ingest → `evn bill` reads with the key and writes sealed EVNs
/// → `evn serve` with the key hands the owner the plain PDF and CSV, byte for byte what the
/// manifest hashes; without the key neither bill nor serve gives anything away.
#[test]
fn encrypted_month_bills_sealed_and_serves_plain_to_its_owner_only() {
    const N: usize = 400;
    const SECRET: &str = "integration-test secret, at least 32 bytes long";
    let broker = Broker::start(&["encb:2", "encb.dlq:1"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cdrs.jsonl");
    write_cdrs(&file, N, "encb-");
    produce(&broker, "encb", &file);
    let key_file = dir.path().join("data.key");
    std::fs::write(&key_file, format!("{}\n", "3c".repeat(32))).unwrap();
    let key_env = key_file.to_str().unwrap();
    let data = dir.path().join("data");
    ingest_encrypted(&broker, "encb", &data, &key_file);

    let evns = dir.path().join("evn");
    let config = config_dir();
    let bill = |env: &[(&str, &str)], unset: &[&str]| {
        evn_env(
            &[
                "bill",
                "--config",
                config.to_str().unwrap(),
                "--data",
                data.to_str().unwrap(),
                "--month",
                "2026-11",
                "--out",
                evns.to_str().unwrap(),
            ],
            env,
            unset,
        )
    };
    let refused = bill(&[], &["EVN_DATA_KEY_FILE"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("EVN_DATA_KEY_FILE"), "{err}");
    assert!(!evns.join("2026-11/K1001.pdf").exists());
    let billed = bill(&[("EVN_DATA_KEY_FILE", key_env)], &[]);
    assert!(
        billed.status.success(),
        "{}",
        String::from_utf8_lossy(&billed.stderr)
    );

    let month_dir = evns.join("2026-11");
    let mut sealed = 0;
    for f in walk(&month_dir) {
        let name = f.file_name().unwrap().to_str().unwrap().to_owned();
        if !(name.ends_with(".pdf") || name.ends_with(".csv")) {
            continue;
        }
        let raw = std::fs::read(&f).unwrap();
        assert!(evn_keys::is_sealed(&raw), "{name} is stored plain");
        assert!(!raw.starts_with(b"%PDF"), "{name}");
        // Needles of 5+ bytes: shorter ones turn up in random ciphertext now and then.
        for needle in ["K1001", "K1002", "0151 1234", "Mobilfunk", "Datum"] {
            assert!(
                !raw.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} readable in {name}"
            );
        }
        sealed += 1;
    }
    // K1001, K1002, K1005 have calls, K1003 an empty EVN: numbered + current, PDF + CSV.
    assert_eq!(sealed, 4 * 4);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(month_dir.join("manifest.json")).unwrap()).unwrap();

    let token = |customer: &str| {
        let t = evn_env(
            &["token", "--customer", customer],
            &[("EVN_PORTAL_SECRET", SECRET)],
            &[],
        );
        assert!(t.status.success());
        String::from_utf8(t.stdout).unwrap().trim().to_owned()
    };
    let k1001 = token("K1001");
    let serve = Serve::start(
        &evns,
        &[],
        &[
            ("EVN_PORTAL_SECRET", SECRET),
            ("EVN_DATA_KEY_FILE", key_env),
        ],
    );
    let (status, pdf) = get_bytes(serve.addr, "/customers/K1001/evn/2026-11.pdf", &k1001);
    assert_eq!(status, 200);
    assert!(pdf.starts_with(b"%PDF"));
    let sha = |b: &[u8]| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b));
    assert_eq!(sha(&pdf), manifest["customers"]["K1001"]["sha256"], "PDF");
    let text_file = dir.path().join("k1001.pdf");
    std::fs::write(&text_file, &pdf).unwrap();
    let text = Command::new("pdftotext")
        .args([text_file.to_str().unwrap(), "-"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("K1001"));
    let (status, csv) = get_bytes(
        serve.addr,
        "/customers/K1001/evn/2026-11.csv?version=1",
        &k1001,
    );
    assert_eq!(status, 200);
    assert!(csv.starts_with("\u{feff}".as_bytes()));
    assert_eq!(
        sha(&csv),
        manifest["customers"]["K1001"]["csv_sha256"],
        "CSV"
    );
    // Someone else's EVN: refused before the file is even looked at.
    let (status, body) = get_bytes(serve.addr, "/customers/K1002/evn/2026-11.pdf", &k1001);
    assert_eq!(status, 403);
    assert!(!body.starts_with(b"%PDF"));
    drop(serve);

    // A portal started without the key cannot hand out anything but an error.
    let keyless = Serve::start(&evns, &[], &[("EVN_PORTAL_SECRET", SECRET)]);
    let (status, body) = get_bytes(keyless.addr, "/customers/K1001/evn/2026-11.pdf", &k1001);
    assert!(status >= 500, "{status}");
    assert!(!body.windows(4).any(|w| w == b"%PDF"));
}
