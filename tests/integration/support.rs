//! Helpers: locate and run the binary, start a broker, generate CDRs, read Parquet back.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn bin() -> PathBuf {
    if let Ok(p) = std::env::var("EVN_BIN") {
        return p.into();
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("target"));
    let p = target.join("debug/evn");
    assert!(
        p.exists(),
        "{} missing: run `cargo build -p evn-cli` first (scripts/test.sh does)",
        p.display()
    );
    p
}

pub fn config_dir() -> PathBuf {
    repo().join("fixtures/config")
}

pub fn evn(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("EVN_LOG", "warn")
        .output()
        .expect("run evn")
}

/// A running `evn broker` on a free port; killed on drop.
pub struct Broker {
    child: Child,
    pub addr: String,
}

impl Broker {
    pub fn start(topics: &[&str]) -> Broker {
        let mut args = vec![
            "broker".to_owned(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
        ];
        for t in topics {
            args.push("--topic".into());
            args.push((*t).into());
        }
        let mut child = Command::new(bin())
            .args(&args)
            .env("EVN_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start broker");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split_whitespace()
            .nth(4)
            .expect("address in banner")
            .to_owned();
        Broker { child, addr }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn produce(broker: &Broker, topic: &str, file: &Path) -> String {
    let out = evn(&[
        "produce",
        "--brokers",
        &broker.addr,
        "--topic",
        topic,
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "produce failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn ingest_args<'a>(
    broker: &'a Broker,
    topic: &'a str,
    group: &'a str,
    data: &'a Path,
) -> Vec<String> {
    vec![
        "ingest".into(),
        "--brokers".into(),
        broker.addr.clone(),
        "--topic".into(),
        topic.into(),
        "--group".into(),
        group.into(),
        "--config".into(),
        config_dir().to_str().unwrap().into(),
        "--data".into(),
        data.to_str().unwrap().into(),
        "--exit-when-idle".into(),
        "2".into(),
    ]
}

/// Runs ingest to the end and returns the summary JSON.
pub fn ingest_to_end(broker: &Broker, topic: &str, group: &str, data: &Path) -> serde_json::Value {
    ingest_to_end_idle(broker, topic, group, data, 2)
}

/// Like [`ingest_to_end`], idle for `idle_secs`: longer than the session timeout (10 s) when a
/// killed member may still hold partitions in the group.
pub fn ingest_to_end_idle(
    broker: &Broker,
    topic: &str,
    group: &str,
    data: &Path,
    idle_secs: u32,
) -> serde_json::Value {
    let mut args = ingest_args(broker, topic, group, data);
    *args.last_mut().unwrap() = idle_secs.to_string();
    let out = Command::new(bin())
        .args(args)
        .env("EVN_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ingest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().expect("summary line")).unwrap()
}

/// Synthetic CDRs: `n` answered outbound mobile calls of known customers in November 2026.
pub fn write_cdrs(path: &Path, n: usize, id_prefix: &str) {
    use std::io::Write;
    // Customers whose plans have no mobile flatrate: every call is stored.
    let customers = ["K1001", "K1002", "K1004", "K1005"];
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        let start = 1_793_500_000 + (i as i64 % 2_000_000);
        let t = |s: i64| {
            chrono::DateTime::from_timestamp(s, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        };
        writeln!(
            f,
            r#"{{"cdr_id":"{id_prefix}{i}","switch_id":"fra1","customer_id":"{}","calling_number":"+4930901820","called_number":"+491511234{:04}","direction":"outbound","start_time":"{}","answer_time":"{}","end_time":"{}","disposition":"answered"}}"#,
            customers[i % customers.len()],
            i % 10_000,
            t(start),
            t(start + 3),
            t(start + 3 + (i as i64 % 600) + 1),
        )
        .unwrap();
    }
}

/// Every stored row's (switch_id, cdr_id), with how often it is stored.
pub fn stored_ids(data: &Path) -> BTreeMap<(String, String), usize> {
    let mut ids = BTreeMap::new();
    for month in evn_store::list_months(data).unwrap() {
        for row in evn_store::read_month(data, month).unwrap() {
            *ids.entry((row.call.switch_id, row.call.cdr_id))
                .or_default() += 1;
        }
    }
    ids
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
