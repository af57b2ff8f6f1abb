//! The download service (`cargo bench -p evn-benches --bench portal`) with the release `evn`
//! binary (`cargo build --release -p evn-cli` first): bills a small month (64 customers, one
//! 3-page EVN each), starts `evn serve` (plain HTTP, as behind an ingress that terminates TLS),
//! and drives it with 64 concurrent keep-alive HTTP/1.1 connections, each with its customer's
//! bearer token (`evn token`, HS256), fetching that customer's EVN over and over for
//! `EVN_BENCH_SECS` (10) seconds after a 1 s warm-up: downloads/s, p50/p99 latency.
//! The load generator runs in this process on one thread (`EVN_BENCH_CLIENT_THREADS`), on the
//! same 2 cores as the server, so the server gets about one core and a half.
//! `EVN_BENCH_CONNECTIONS` (default 64, at most 64) drives fewer connections, to see how the
//! latency grows with the load.
//! Issue #7 targets: ≥ 3,000 downloads/s, p99 ≤ 25 ms.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rust_decimal::Decimal;

use evn_rating::{BillingMonth, RatedCall};
use evn_store::{StoredCall, WriteOptions};

const CONNECTIONS: usize = 64;
const CALLS_PER_CUSTOMER: usize = 130;
const SECRET: &str = "bench-secret-0123456789abcdef0123456789abcdef";

fn month() -> BillingMonth {
    "2026-11".parse().expect("a month")
}

/// A running `evn serve`; killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bill_month(dir: &Path) -> (std::path::PathBuf, usize, usize) {
    let config_dir = dir.join("config");
    evn_benches::write_config(&config_dir, CONNECTIONS);
    let data = dir.join("data");
    let month_dir = evn_store::month_dir(&data, month());
    std::fs::create_dir_all(&month_dir).expect("month folder");
    let rows: Vec<StoredCall> = (0..CONNECTIONS * CALLS_PER_CUSTOMER)
        .map(|i| {
            let c = i % CONNECTIONS;
            let number = format!("+49151{:08}", (i * 7919) % 100_000_000);
            StoredCall {
                call: RatedCall {
                    cdr_id: format!("p{i:09}").into(),
                    switch_id: "fra1".into(),
                    customer_id: evn_benches::customer_id(c).into(),
                    calling_number: format!("+4930{:07}", 1_000_000 + c * 2 + i / CONNECTIONS % 2)
                        .into(),
                    called_number: if c.is_multiple_of(3) {
                        evn_rating::shorten(&number)
                    } else {
                        number.into()
                    },
                    start_time: DateTime::from_timestamp(
                        1_793_487_600 + (i as i64 * 311) % 2_500_000,
                        0,
                    )
                    .expect("a time"),
                    duration_s: 1 + (i as i64 * 13) % 3_600,
                    zone: "mobile".into(),
                    charge_eur: Decimal::new((i as i64 * 1237) % 50_000, 4),
                    billing_month: month(),
                    plan: "office_basic".into(),
                    shortened: c.is_multiple_of(3),
                    counselling: false,
                },
                source_topic: "cdrs".into(),
                source_partition: 0,
                source_offset: i as i64,
                provenance: None,
            }
        })
        .collect();
    evn_store::write_file(
        &month_dir.join("f0.parquet"),
        &rows,
        WriteOptions::default(),
    )
    .expect("write Parquet");
    let config = evn_config::Config::load(&config_dir).expect("config");
    let out = dir.join("out");
    let opts = evn_billing::BillOptions::new(NaiveDate::from_ymd_opt(2026, 12, 1).expect("date"));
    let report = evn_billing::run(&config, &data, month(), &out, &opts).expect("billing run");
    let pages = report
        .customers
        .iter()
        .map(|c| match c.outcome {
            evn_billing::Outcome::Written { pages, .. } => pages,
            evn_billing::Outcome::Unchanged { .. } => 0,
        })
        .max()
        .unwrap_or(0);
    let bytes = std::fs::metadata(
        out.join("2026-11")
            .join(format!("{}.v1.pdf", evn_benches::customer_id(1))),
    )
    .map(|m| m.len() as usize)
    .unwrap_or(0);
    (out, pages, bytes)
}

fn start_server(evn: &Path, out: &Path, log: &Path) -> Server {
    let mut child = Command::new(evn)
        .arg("serve")
        .arg("--evn")
        .arg(out)
        .args(["--listen", "127.0.0.1:0"])
        .env("EVN_PORTAL_SECRET", SECRET)
        .env("EVN_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("server log"))
        .spawn()
        .expect("start evn serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("serve banner");
    let url = line.trim().rsplit(' ').next().expect("url in the banner");
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    Server { child, addr }
}

fn token(evn: &Path, customer: &str) -> String {
    let out = Command::new(evn)
        .args(["token", "--customer", customer, "--ttl", "1h"])
        .env("EVN_PORTAL_SECRET", SECRET)
        .output()
        .expect("evn token");
    assert!(
        out.status.success(),
        "evn token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

#[derive(Default)]
struct ConnResult {
    latencies_us: Vec<u32>,
    bytes: u64,
    errors: u64,
    warmup_done: u64,
}

/// One keep-alive connection fetching `path` until `end`; only requests that start after
/// `measure_from` are counted.
async fn connection(
    addr: String,
    path: String,
    bearer: String,
    measure_from: Instant,
    end: Instant,
) -> ConnResult {
    let mut r = ConnResult::default();
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let auth = format!("Bearer {bearer}");
    loop {
        let t = Instant::now();
        if t >= end {
            break;
        }
        let req = hyper::Request::get(path.as_str())
            .header(hyper::header::HOST, addr.as_str())
            .header(hyper::header::AUTHORIZATION, auth.as_str())
            .body(Empty::<Bytes>::new())
            .expect("request");
        if sender.ready().await.is_err() {
            r.errors += 1;
            break;
        }
        match sender.send_request(req).await {
            Ok(resp) => {
                let ok = resp.status() == hyper::StatusCode::OK;
                let body = resp.into_body().collect().await.map(|b| b.to_bytes().len());
                match (ok, body) {
                    (true, Ok(len)) if t >= measure_from => {
                        r.latencies_us
                            .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        r.bytes += len as u64;
                    }
                    (true, Ok(_)) => r.warmup_done += 1,
                    _ => r.errors += 1,
                }
            }
            Err(_) => {
                r.errors += 1;
                break;
            }
        }
    }
    r
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_s_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11..13).map(|t| t.iter().sum::<u64>()).unwrap_or(0) as f64 / 100.0
}

fn main() {
    let evn = evn_benches::evn_bin();
    let secs: f64 = std::env::var("EVN_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let client_threads: usize = std::env::var("EVN_BENCH_CLIENT_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let connections: usize = std::env::var("EVN_BENCH_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CONNECTIONS)
        .clamp(1, CONNECTIONS);
    let tmp = evn_benches::scratch("portal");
    let (out, pages, pdf_bytes) = bill_month(tmp.path());
    println!("portal: billed {CONNECTIONS} customers, {pages} pages and {pdf_bytes} bytes per EVN");
    let server = start_server(&evn, &out, &tmp.path().join("serve.log"));
    let tokens: Vec<String> = (0..CONNECTIONS)
        .map(|c| token(&evn, &evn_benches::customer_id(c)))
        .collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads)
        .enable_all()
        .build()
        .expect("runtime");
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(1);
    let end = measure_from + Duration::from_secs_f64(secs);
    let server_pid = server.child.id();
    let addr = Arc::new(server.addr.clone());
    let (results, server_cpu) = rt.block_on(async {
        let handles: Vec<_> = tokens
            .iter()
            .take(connections)
            .enumerate()
            .map(|(c, t)| {
                let path = format!("/customers/{}/evn/2026-11.pdf", evn_benches::customer_id(c));
                tokio::spawn(connection(
                    addr.to_string(),
                    path,
                    t.clone(),
                    measure_from,
                    end,
                ))
            })
            .collect();
        tokio::time::sleep_until(measure_from.into()).await;
        let cpu0 = cpu_s_of(server_pid);
        let client0 = evn_benches::process_cpu_s();
        let mut results = Vec::new();
        for h in handles {
            results.push(h.await.expect("connection task"));
        }
        (
            results,
            (
                cpu_s_of(server_pid) - cpu0,
                evn_benches::process_cpu_s() - client0,
            ),
        )
    });
    let measured = end.duration_since(measure_from).as_secs_f64();
    let server_peak = evn_benches::peak_rss_mib_of(&server_pid.to_string());
    drop(server);
    let mut lat: Vec<f64> = results
        .iter()
        .flat_map(|r| r.latencies_us.iter().map(|&u| u as f64 / 1000.0))
        .collect();
    lat.sort_by(f64::total_cmp);
    let downloads = lat.len();
    let errors: u64 = results.iter().map(|r| r.errors).sum();
    let bytes: u64 = results.iter().map(|r| r.bytes).sum();
    let per_s = downloads as f64 / measured;
    let (p50, p99, max) = (
        evn_benches::percentile(&lat, 50.0),
        evn_benches::percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(f64::NAN),
    );
    println!(
        "portal: {connections} connections, {measured:.0} s: {downloads} downloads = {per_s:.0} downloads/s ({:.0} MB/s), p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.1} ms, {errors} errors; server CPU {:.1} s ({:.0} downloads per server CPU-s), client CPU {:.1} s; server peak RSS {:.0} MiB",
        bytes as f64 / measured / 1e6,
        server_cpu.0,
        downloads as f64 / server_cpu.0,
        server_cpu.1,
        server_peak.unwrap_or(0.0),
    );
    let result = serde_json::json!({
        "bench": "portal",
        "connections": connections,
        "evn_pages": pages,
        "evn_bytes": pdf_bytes,
        "seconds": measured,
        "downloads": downloads,
        "downloads_per_s": per_s.round(),
        "mb_per_s": bytes as f64 / measured / 1e6,
        "p50_ms": p50, "p99_ms": p99, "max_ms": max,
        "errors": errors,
        "server_cpu_s": server_cpu.0,
        "downloads_per_server_cpu_s": downloads as f64 / server_cpu.0,
        "client_cpu_s": server_cpu.1,
        "client_threads": client_threads,
        "server_peak_rss_mib": server_peak,
        "tls": false,
        "targets": { "downloads_per_s_min": 3000, "p99_ms_max": 25 },
    });
    let path = evn_benches::write_result("portal", &result);
    println!("  written to {}", path.display());
}
