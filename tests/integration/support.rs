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
        "{} missing: run `cargo build --workspace --all-targets` first (scripts/test.sh does)",
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

impl Broker {
    pub fn pid(&self) -> u32 {
        self.child.id()
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
    ingest_args_at(&broker.addr, topic, group, data)
}

/// [`ingest_args`] for brokers at `addr`, which may be nobody.
pub fn ingest_args_at(addr: &str, topic: &str, group: &str, data: &Path) -> Vec<String> {
    vec![
        "ingest".into(),
        "--brokers".into(),
        addr.to_owned(),
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
            *ids.entry((row.call.switch_id.into(), row.call.cdr_id.into()))
                .or_default() += 1;
        }
    }
    ids
}

/// `ids` (from [`stored_ids`]) hold each of the `n` produced CDRs exactly once.
#[track_caller]
pub fn assert_stored_once(ids: &BTreeMap<(String, String), usize>, n: usize) {
    assert_eq!(ids.len(), n, "every produced CDR is stored");
    assert!(ids.values().all(|c| *c == 1), "no CDR is stored twice");
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

/// One record read back from a dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub error: String,
    pub reason: String,
    pub payload: Vec<u8>,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    /// Every header, by key.
    pub headers: BTreeMap<String, String>,
}

/// Reads a dead-letter topic from the start: stops once `expect` records arrived and nothing
/// more came for a second (so an extra record would still be seen), or after 30 s.
pub fn read_dead_letters(broker: &Broker, topic: &str, expect: usize) -> Vec<DeadLetter> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", format!("dlq-reader-{topic}"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let start = Instant::now();
    let mut last = Instant::now();
    while start.elapsed() < Duration::from_secs(30)
        && !(out.len() >= expect && last.elapsed() > Duration::from_secs(1))
    {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            last = Instant::now();
            let headers = m.headers().expect("dead letters carry headers");
            let get = |key: &str| {
                headers
                    .iter()
                    .find(|h| h.key == key)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_else(|| panic!("header {key} missing"))
            };
            out.push(DeadLetter {
                error: get("evn-error"),
                reason: get("evn-reason"),
                payload: m.payload().unwrap_or(&[]).to_vec(),
                source_topic: get("evn-source-topic"),
                source_partition: get("evn-source-partition").parse().unwrap(),
                source_offset: get("evn-source-offset").parse().unwrap(),
                headers: headers
                    .iter()
                    .map(|h| {
                        let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                        (h.key.to_owned(), value.into_owned())
                    })
                    .collect(),
            });
        }
    }
    out
}

/// Every stored row of every month.
pub fn stored_rows(data: &Path) -> Vec<evn_store::StoredCall> {
    let mut rows = Vec::new();
    for month in evn_store::list_months(data).unwrap() {
        rows.extend(evn_store::read_month(data, month).unwrap());
    }
    rows
}

/// A free TCP port on loopback (bound, then released for the child to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.1 GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Some((status, body))
}

/// A running `evn serve` on a free port; killed on drop. Its log (stderr) goes to a file that
/// [`Serve::log`] reads.
pub struct Serve {
    child: Child,
    /// `http://127.0.0.1:PORT` or `https://…`, from the banner.
    pub url: String,
    pub addr: std::net::SocketAddr,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Serve {
    /// `evn serve --evn DIR --listen 127.0.0.1:0 EXTRA…` with `env` added to the environment
    /// (`EVN_LOG` defaults to `info`, for the access log).
    pub fn start(evn_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Serve {
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("serve.log");
        let mut child = Command::new(bin())
            .args([
                "serve",
                "--evn",
                evn_dir.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("EVN_LOG", "info")
            // The log is read back as text: no colour codes.
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start evn serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .strip_prefix("evn serve listening on ")
            .unwrap_or_else(|| {
                let _ = child.wait();
                panic!(
                    "no banner: {line:?}; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .trim()
            .to_owned();
        let addr = url.split_once("://").unwrap().1.parse().unwrap();
        Serve {
            child,
            url,
            addr,
            log,
            _log_dir: log_dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit on its own (after a signal).
    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `evn ARGS` with `set` added to and `unset` removed from the environment.
pub fn evn_env(args: &[&str], set: &[(&str, &str)], unset: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    for k in unset {
        cmd.env_remove(k);
    }
    cmd.args(args)
        .env("EVN_LOG", "warn")
        .envs(set.iter().copied());
    cmd.output().expect("run evn")
}

/// Privacy tests: one stored call of `customer` in `month` (day 10, 10:00 UTC + `i` minutes).
pub fn privacy_call(
    customer: &str,
    month: &str,
    i: u32,
    counselling: bool,
) -> evn_store::StoredCall {
    let start: chrono::DateTime<chrono::Utc> =
        format!("{month}-10T10:{:02}:00Z", i % 60).parse().unwrap();
    evn_store::StoredCall {
        call: evn_rating::RatedCall {
            cdr_id: format!("{customer}-{month}-{i}").into(),
            switch_id: "fra1".into(),
            customer_id: customer.into(),
            calling_number: "+493012345".into(),
            called_number: if counselling {
                "+498001110111".into()
            } else {
                format!("+4915112345{i:03}").into()
            },
            start_time: start,
            duration_s: 60 + i64::from(i),
            zone: "mobile".into(),
            charge_eur: rust_decimal::Decimal::new(1490 + i64::from(i), 4),
            billing_month: month.parse().unwrap(),
            plan: "office_basic".into(),
            shortened: false,
            counselling,
        },
        source_topic: "cdrs".into(),
        source_partition: 0,
        source_offset: i64::from(i),
        // Every other call came from a switch's own format, so rewrites are seen to keep it.
        provenance: (i % 2 == 1).then(|| evn_store::Provenance {
            format: "asterisk-csv".into(),
            record_id: format!("1795508102.{i}-1"),
        }),
    }
}

/// Writes `rows` as `DATA/cdrs/billing_month=<month>/<name>` (encrypted with `keys` if given).
pub fn write_month_file(
    data: &Path,
    month: &str,
    name: &str,
    rows: &[evn_store::StoredCall],
    keys: Option<std::sync::Arc<evn_store::Keyring>>,
) {
    let dir = data.join("cdrs").join(format!("billing_month={month}"));
    std::fs::create_dir_all(&dir).unwrap();
    let options = evn_store::WriteOptions {
        keys,
        ..Default::default()
    };
    evn_store::write_file(&dir.join(name), rows, options).unwrap();
}

/// A billing run's output for `month`: `<id>.pdf`, `<id>.v1.pdf`, `<id>.v1.csv` per customer
/// and a manifest whose versions were created on `created` (the send date).
pub fn write_billed_month(evn: &Path, month: &str, created: &str, customers: &[&str]) {
    let dir = evn.join(month);
    std::fs::create_dir_all(&dir).unwrap();
    let mut entries = serde_json::Map::new();
    for id in customers {
        for f in [
            format!("{id}.pdf"),
            format!("{id}.v1.pdf"),
            format!("{id}.v1.csv"),
        ] {
            std::fs::write(dir.join(f), format!("EVN of {id} for {month}")).unwrap();
        }
        entries.insert(
            (*id).into(),
            serde_json::json!({
                "connections": 1, "billed_connections": 1, "total": "0.1490",
                "total_printed": "0.15", "file": format!("{id}.pdf"), "sha256": "00",
                "version": 1, "pages": 1, "content_sha256": "00",
                "versions": [{
                    "version": 1, "file": format!("{id}.v1.pdf"), "sha256": "00",
                    "created": created, "connections": 1, "total": "0.1490",
                    "config_version": "c", "counselling_version": "l", "content_sha256": "00"
                }]
            }),
        );
    }
    let manifest = serde_json::json!({
        "month": month, "config_version": "c", "counselling_version": "l",
        "generated_at": format!("{created}T03:00:00Z"), "run_ms": 1, "customers": entries
    });
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
}

/// Every file below `dir` (relative path) with the SHA-256 of its content: two equal trees
/// mean nothing was created, changed or deleted.
pub fn tree(dir: &Path) -> BTreeMap<String, String> {
    use sha2::Digest;
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                out.insert(format!("{rel}/"), String::new());
                walk(root, &p, out);
            } else {
                let hash = hex::encode(sha2::Sha256::digest(std::fs::read(&p).unwrap()));
                out.insert(rel, hash);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Every file below `dir`.
pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A broker whose topic already holds `n` synthetic CDRs, and an empty data directory.
pub fn backlog(
    topic: &str,
    n: usize,
    id_prefix: &str,
) -> (Broker, tempfile::TempDir, std::path::PathBuf) {
    let broker = Broker::start(&[&format!("{topic}:8"), &format!("{topic}.dlq:2")]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cdrs.jsonl");
    write_cdrs(&file, n, id_prefix);
    produce(&broker, topic, &file);
    let data = dir.path().join("data");
    (broker, dir, data)
}
