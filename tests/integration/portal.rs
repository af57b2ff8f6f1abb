//! Issue 6, the portal download service, through the real `evn serve` over TCP: a customer gets
//! their own EVN and nobody else's (401, 403, 404), path tricks and symlinks serve nothing
//! outside, tokens from a standard JWT library and from `evn token`, TLS with a self-signed
//! certificate, 200 parallel downloads, the download limit, graceful shutdown, the demo's EVNs.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use evn_billing::Manifest;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::Digest;
use tokio::net::TcpStream;

use crate::support::*;

const SECRET: &str = "integration-test secret, at least 32 bytes long";

fn secret_env() -> [(&'static str, &'static str); 1] {
    [("EVN_PORTAL_SECRET", SECRET)]
}

// ---------------------------------------------------------------------------------------------
// Fixture: an EVN folder in the billing run's layout, with its real manifest type.

/// Bytes that look like a small PDF and differ per seed.
fn pdf(seed: u64, len: usize) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n".to_vec();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len - 6 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x as u8);
    }
    out.extend_from_slice(b"%%EOF\n");
    out
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

struct Evns {
    dir: tempfile::TempDir,
    /// (customer, month, version) → bytes.
    files: BTreeMap<(&'static str, &'static str, u32), Vec<u8>>,
}

impl Evns {
    fn bytes(&self, customer: &'static str, month: &'static str, version: u32) -> &[u8] {
        &self.files[&(customer, month, version)]
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Writes one month as `evn bill` does: `<id>.v<N>.pdf` per version, `<id>.pdf` = the newest,
/// and `manifest.json`, checked to be what `evn-billing` itself reads.
fn write_month(root: &Path, month: &str, customers: &[(&str, Vec<Vec<u8>>)]) {
    let dir = root.join(month);
    std::fs::create_dir_all(&dir).unwrap();
    let mut entries = serde_json::Map::new();
    for (id, versions) in customers {
        let mut list = Vec::new();
        for (i, bytes) in versions.iter().enumerate() {
            let v = i + 1;
            std::fs::write(dir.join(format!("{id}.v{v}.pdf")), bytes).unwrap();
            list.push(serde_json::json!({
                "version": v, "file": format!("{id}.v{v}.pdf"), "sha256": sha(bytes),
                "created": format!("2026-12-0{v}"), "connections": 3, "total": "1.2300",
                "config_version": "cfg", "counselling_version": "2026-Q4",
                "content_sha256": sha(id.as_bytes()),
            }));
        }
        let current = versions.last().unwrap();
        std::fs::write(dir.join(format!("{id}.pdf")), current).unwrap();
        entries.insert(
            id.to_string(),
            serde_json::json!({
                "connections": 3, "billed_connections": 3, "total": "1.2300",
                "total_printed": "1.23", "file": format!("{id}.pdf"), "sha256": sha(current),
                "version": versions.len(), "pages": 1, "content_sha256": sha(id.as_bytes()),
                "versions": list,
            }),
        );
    }
    let manifest = serde_json::to_vec_pretty(&serde_json::json!({
        "month": month, "config_version": "cfg", "counselling_version": "2026-Q4",
        "generated_at": "2026-12-02T00:00:00Z", "run_ms": 1, "customers": entries,
    }))
    .unwrap();
    serde_json::from_slice::<Manifest>(&manifest).expect("the billing run's manifest format");
    std::fs::write(dir.join("manifest.json"), manifest).unwrap();
}

/// K1001: November in two versions (the second large enough to stream in many chunks),
/// October in one. K1002: November.
fn fake_evns() -> Evns {
    let dir = tempfile::tempdir().unwrap();
    let mut files = BTreeMap::new();
    files.insert(("K1001", "2026-11", 1), pdf(1, 40_000));
    files.insert(("K1001", "2026-11", 2), pdf(2, 300_000));
    files.insert(("K1001", "2026-10", 1), pdf(3, 20_000));
    files.insert(("K1002", "2026-11", 1), pdf(4, 30_000));
    write_month(
        dir.path(),
        "2026-11",
        &[
            (
                "K1001",
                vec![
                    files[&("K1001", "2026-11", 1)].clone(),
                    files[&("K1001", "2026-11", 2)].clone(),
                ],
            ),
            ("K1002", vec![files[&("K1002", "2026-11", 1)].clone()]),
        ],
    );
    write_month(
        dir.path(),
        "2026-10",
        &[("K1001", vec![files[&("K1001", "2026-10", 1)].clone()])],
    );
    Evns { dir, files }
}

/// A month whose only EVN is `len` zero bytes, sparse on disk: big enough that the socket
/// buffers cannot take it all, so a client that stops reading keeps its download open.
fn big_month(root: &Path, month: &str, customer: &str, len: u64) {
    write_month(root, month, &[(customer, vec![b"placeholder".to_vec()])]);
    for name in [format!("{customer}.v1.pdf"), format!("{customer}.pdf")] {
        let f = std::fs::File::create(root.join(month).join(name)).unwrap();
        f.set_len(len).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// HS256 with `jsonwebtoken`: a standard library, not the code under test.
fn hs256(claims: serde_json::Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn token(customer: &str) -> String {
    hs256(
        serde_json::json!({"sub": customer, "exp": now() + 300}),
        SECRET.as_bytes(),
    )
}

/// base64url without padding, by hand (for tokens no library would make).
fn b64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| (n << 8) | b as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// A small HTTP/1.1 client (hyper) over TCP or TLS: one connection per request, so parallel
// requests are parallel connections.

struct Answer {
    status: u16,
    headers: hyper::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn exchange<I>(
    io: I,
    host: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

async fn request(s: &Serve, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    exchange(TokioIo::new(tcp), s.addr, method, path, headers).await
}

async fn get(s: &Serve, path: &str, token: Option<&str>) -> Answer {
    match token {
        Some(t) => request(s, "GET", path, &[("authorization", &format!("Bearer {t}"))]).await,
        None => request(s, "GET", path, &[]).await,
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_evn_is_served_byte_identical_with_download_headers() {
    let evns = fake_evns();
    let s = Serve::start(evns.path(), &[], &secret_env());
    let t = token("K1001");

    let a = get(&s, "/customers/K1001/evn/2026-11.pdf", Some(&t)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let on_disk = std::fs::read(evns.path().join("2026-11/K1001.pdf")).unwrap();
    assert!(a.body == on_disk, "served bytes differ from K1001.pdf");
    assert!(a.body == evns.bytes("K1001", "2026-11", 2));
    assert_eq!(a.header("content-type"), "application/pdf");
    assert_eq!(
        a.header("content-disposition"),
        "attachment; filename=\"EVN_K1001_2026-11.pdf\""
    );
    assert_eq!(a.header("cache-control"), "private, no-store");
    assert_eq!(a.header("x-content-type-options"), "nosniff");
    assert_eq!(a.header("content-length"), on_disk.len().to_string());
    let etag = format!("\"{}\"", sha(&on_disk));
    assert_eq!(a.header("etag"), etag);

    let v1 = get(&s, "/customers/K1001/evn/2026-11.pdf?version=1", Some(&t)).await;
    assert_eq!(v1.status, 200);
    assert!(v1.body == evns.bytes("K1001", "2026-11", 1));
    assert_eq!(
        v1.header("content-disposition"),
        "attachment; filename=\"EVN_K1001_2026-11_v1.pdf\""
    );

    let auth = format!("Bearer {t}");
    let head = request(
        &s,
        "HEAD",
        "/customers/K1001/evn/2026-11.pdf",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), on_disk.len().to_string());
    assert_eq!(head.header("etag"), etag);
    assert!(head.body.is_empty());

    let cached = request(
        &s,
        "GET",
        "/customers/K1001/evn/2026-11.pdf",
        &[("authorization", &auth), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());

    // One access-log line per request: customer, month, status, bytes; never the token. And
    // the plain-HTTP warning at start.
    let log = s.log();
    assert!(log.contains("plain HTTP"), "{log}");
    let line = log
        .lines()
        .find(|l| {
            l.contains("evn_portal::access") && l.contains("status=200") && l.contains("version=2")
        })
        .unwrap_or_else(|| panic!("no access line in {log}"));
    assert!(line.contains("K1001") && line.contains("2026-11"), "{line}");
    assert!(line.contains(&format!("bytes={}", on_disk.len())), "{line}");
    assert!(!log.contains(&t), "the token is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_names_own_months_and_versions_newest_first() {
    let evns = fake_evns();
    let s = Serve::start(evns.path(), &[], &secret_env());
    let a = get(&s, "/customers/K1001/evn", Some(&token("K1001"))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-type"), "application/json");
    assert_eq!(a.header("cache-control"), "private, no-store");
    let json: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    let v = |m: &'static str, n: u32| {
        serde_json::json!({"version": n, "created": format!("2026-12-0{n}"),
            "sha256": sha(evns.bytes("K1001", m, n)),
            "url": format!("/customers/K1001/evn/{m}.pdf?version={n}")})
    };
    assert_eq!(
        json,
        serde_json::json!({"customer_id": "K1001", "months": [
            {"month": "2026-11", "version": 2, "url": "/customers/K1001/evn/2026-11.pdf",
             "versions": [v("2026-11", 1), v("2026-11", 2)]},
            {"month": "2026-10", "version": 1, "url": "/customers/K1001/evn/2026-10.pdf",
             "versions": [v("2026-10", 1)]},
        ]})
    );
    // Every URL in the listing downloads what it says.
    let t = token("K1001");
    for month in json["months"].as_array().unwrap() {
        for version in month["versions"].as_array().unwrap() {
            let a = get(&s, version["url"].as_str().unwrap(), Some(&t)).await;
            assert_eq!(a.status, 200);
            assert_eq!(sha(&a.body), version["sha256"].as_str().unwrap());
        }
    }
    let k2: serde_json::Value = serde_json::from_slice(
        &get(&s, "/customers/K1002/evn", Some(&token("K1002")))
            .await
            .body,
    )
    .unwrap();
    assert_eq!(k2["months"].as_array().unwrap().len(), 1, "{k2}");
    // A customer without any EVN gets an empty list, not an error.
    let k9: serde_json::Value = serde_json::from_slice(
        &get(&s, "/customers/K9999/evn", Some(&token("K9999")))
            .await
            .body,
    )
    .unwrap();
    assert_eq!(k9["months"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_expired_forged_or_malformed_tokens_are_401() {
    let evns = fake_evns();
    let s = Serve::start(evns.path(), &[], &secret_env());
    let n = now();
    let good = serde_json::json!({"sub": "K1001", "exp": n + 300});
    let valid = hs256(good.clone(), SECRET.as_bytes());
    let parts: Vec<&str> = valid.split('.').collect();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("empty bearer", Some("Bearer ".into())),
        ("basic auth", Some("Basic SzEwMDE6c2VjcmV0".into())),
        ("token without scheme", Some(valid.clone())),
        (
            "alg none",
            Some(format!(
                "Bearer {}.{}.",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                b64(good.to_string().as_bytes())
            )),
        ),
        (
            "alg none with the original signature",
            Some(format!(
                "Bearer {}.{}.{}",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                parts[1],
                parts[2]
            )),
        ),
        (
            "wrong key",
            Some(format!(
                "Bearer {}",
                hs256(good.clone(), b"some other secret, also 32 bytes long")
            )),
        ),
        (
            "tampered payload",
            Some(format!(
                "Bearer {}.{}.{}",
                parts[0],
                b64(serde_json::json!({"sub": "K1001", "exp": n + 86_400 * 365})
                    .to_string()
                    .as_bytes()),
                parts[2]
            )),
        ),
        (
            "expired beyond the leeway",
            Some(format!(
                "Bearer {}",
                hs256(
                    serde_json::json!({"sub": "K1001", "exp": n - 120}),
                    SECRET.as_bytes()
                )
            )),
        ),
        (
            "exp a year ahead: no token lives that long",
            Some(format!(
                "Bearer {}",
                hs256(
                    serde_json::json!({"sub": "K1001", "exp": n + 86_400 * 365}),
                    SECRET.as_bytes()
                )
            )),
        ),
        (
            "no exp",
            Some(format!(
                "Bearer {}",
                hs256(serde_json::json!({"sub": "K1001"}), SECRET.as_bytes())
            )),
        ),
        (
            "no sub",
            Some(format!(
                "Bearer {}",
                hs256(serde_json::json!({"exp": n + 300}), SECRET.as_bytes())
            )),
        ),
        (
            "HS512 with the right secret",
            Some(format!(
                "Bearer {}",
                jsonwebtoken::encode(
                    &Header::new(Algorithm::HS512),
                    &good,
                    &EncodingKey::from_secret(SECRET.as_bytes())
                )
                .unwrap()
            )),
        ),
        ("malformed", Some("Bearer not-a-jwt".into())),
        ("three junk parts", Some("Bearer a.b.c".into())),
        ("oversized", Some(format!("Bearer {}", "A".repeat(10_000)))),
    ];
    for (what, auth) in &cases {
        for path in ["/customers/K1001/evn/2026-11.pdf", "/customers/K1001/evn"] {
            let headers: Vec<(&str, &str)> =
                auth.iter().map(|a| ("authorization", a.as_str())).collect();
            let a = request(&s, "GET", path, &headers).await;
            assert_eq!(a.status, 401, "{what} {path}: {}", a.text());
            assert!(a.header("www-authenticate").starts_with("Bearer"), "{what}");
            assert!(!a.body.starts_with(b"%PDF"), "{what}");
        }
    }
    // The same token with the right key still works: the 401s above are about the token.
    assert_eq!(
        get(&s, "/customers/K1001/evn/2026-11.pdf", Some(&valid))
            .await
            .status,
        200
    );
    let log = s.log();
    assert!(!log.contains(&valid), "a token is in the log");
    assert!(
        log.contains("bad signature") && log.contains("expired"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_customers_evn_is_403_whether_or_not_it_exists() {
    let evns = fake_evns();
    let s = Serve::start(evns.path(), &[], &secret_env());
    let t = token("K1001");
    let mut bodies = Vec::new();
    for path in [
        "/customers/K1002/evn/2026-11.pdf",           // exists
        "/customers/K1002/evn/2026-11.pdf?version=1", // exists
        "/customers/K1002/evn/2026-10.pdf",           // month exists, not for K1002
        "/customers/K1002/evn/2031-01.pdf",           // no such month
        "/customers/K9999/evn/2026-11.pdf",           // no such customer
        "/customers/K1002/evn",
        "/customers/K9999/evn",
    ] {
        let a = get(&s, path, Some(&t)).await;
        assert_eq!(a.status, 403, "{path}: {}", a.text());
        let mut headers: Vec<String> = a
            .headers
            .iter()
            .filter(|(k, _)| *k != "date")
            .map(|(k, v)| format!("{k}: {v:?}"))
            .collect();
        headers.sort();
        bodies.push((headers, a.body));
    }
    // Word for word the same answer: nothing tells whether that customer or month exists.
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_month_or_version_is_404_and_a_malformed_version_400() {
    let evns = fake_evns();
    let s = Serve::start(evns.path(), &[], &secret_env());
    for (path, customer, status) in [
        ("/customers/K1001/evn/2026-12.pdf", "K1001", 404),
        ("/customers/K1001/evn/2026-11.pdf?version=3", "K1001", 404),
        ("/customers/K1001/evn/2026-10.pdf?version=2", "K1001", 404),
        ("/customers/K1002/evn/2026-10.pdf", "K1002", 404),
        ("/customers/K1001/evn/2026-11.csv", "K1001", 404),
        ("/customers/K1001/evn/2026-13.pdf", "K1001", 404),
        ("/customers/K1001/evn/2026-11.pdf?version=0", "K1001", 400),
        ("/customers/K1001/evn/2026-11.pdf?version=-1", "K1001", 400),
        (
            "/customers/K1001/evn/2026-11.pdf?version=1&version=2",
            "K1001",
            400,
        ),
    ] {
        let a = get(&s, path, Some(&token(customer))).await;
        assert_eq!(a.status, status, "{path}: {}", a.text());
        assert!(!a.body.starts_with(b"%PDF"), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_tricks_and_symlinks_never_serve_a_file_outside() {
    let evns = fake_evns();
    let outside = tempfile::tempdir().unwrap();
    let secret_pdf = b"%PDF-1.7 OUTSIDE THE EVN FOLDER".to_vec();
    std::fs::write(outside.path().join("secret.pdf"), &secret_pdf).unwrap();
    // A month folder that is a symlink to a folder outside, complete with a manifest.
    write_month(
        outside.path(),
        "2026-09",
        &[("K1001", vec![secret_pdf.clone()])],
    );
    std::os::unix::fs::symlink(outside.path().join("2026-09"), evns.path().join("2026-09"))
        .unwrap();
    // A real month folder whose manifest lists K1001, but whose PDF is a symlink outside.
    write_month(
        evns.path(),
        "2026-08",
        &[("K1001", vec![b"%PDF-1.7 real".to_vec()])],
    );
    for name in ["K1001.v1.pdf", "K1001.pdf"] {
        let p = evns.path().join("2026-08").join(name);
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.pdf"), &p).unwrap();
    }
    let s = Serve::start(evns.path(), &[], &secret_env());
    let t = token("K1001");
    let k1002 = evns.bytes("K1002", "2026-11", 1).to_vec();
    for path in [
        "/customers/K1001/evn/2026-08.pdf",
        "/customers/K1001/evn/2026-09.pdf",
        "/customers/K1001/evn/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/customers/K1001/evn/..%2F2026-11%2FK1002.v1.pdf",
        "/customers/K1001/evn/2026-11%2FK1002.pdf",
        "/customers/K1001/evn/%2e%2e%2f%2e%2e%2fsecret.pdf",
        "/customers/K1001/evn/%252e%252e%252f2026-11.pdf",
        "/customers/K1001/evn/2026-11.pdf%00",
        "/customers/K1001/evn/2026-11.pdf%00.pdf",
        "/customers/K1001/evn/2026-11.pdf%2F..%2F..%2FK1002.pdf",
        "/customers/K1001/evn/../../../etc/passwd",
        "/customers/K1001/evn/2026-11/../../2026-11/K1002.pdf",
        "/customers/K1001/../K1002/evn/2026-11.pdf",
        "/customers/K1001%2F..%2FK1002/evn/2026-11.pdf",
        "/customers/..%2FK1002/evn/2026-11.pdf",
        "/customers/K1002%00/evn/2026-11.pdf",
        "/customers/K1001/evn/2026-11.pdf?version=1%2F..%2F..%2FK1002",
        "/customers/K1001/evn/2026-11.pdf?version=..%2F2",
    ] {
        let a = get(&s, path, Some(&t)).await;
        assert!(
            matches!(a.status, 400 | 403 | 404),
            "{path}: {} {}",
            a.status,
            a.text()
        );
        assert!(
            a.body != secret_pdf && a.body != k1002,
            "{path} served a file it must not"
        );
        assert!(!a.text().contains("root:"), "{path}");
    }
    // The symlinked month folder is not even listed.
    let listing = get(&s, "/customers/K1001/evn", Some(&t)).await;
    assert!(!listing.text().contains("2026-09"), "{}", listing.text());
    assert!(s.log().contains("symlink refused"), "{}", s.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_evn_token_and_es256_with_a_public_key_are_accepted() {
    let evns = fake_evns();
    let issuer = rcgen::KeyPair::generate().unwrap(); // ECDSA P-256
    let keys = tempfile::tempdir().unwrap();
    let public = keys.path().join("issuer.pub.pem");
    std::fs::write(&public, issuer.public_key_pem()).unwrap();
    // A public key needs an audience (issue: a token for another application of the same
    // identity provider opened EVNs); `evn token` is given the same one.
    let s = Serve::start(
        evns.path(),
        &[
            "--jwt-public-key",
            public.to_str().unwrap(),
            "--jwt-audience",
            "evn-portal",
        ],
        &secret_env(),
    );
    let want = evns.bytes("K1001", "2026-11", 2);

    // `evn token` prints the token and nothing else.
    let out = evn_env(
        &[
            "token",
            "--customer",
            "K1001",
            "--ttl",
            "5m",
            "--audience",
            "evn-portal",
        ],
        &secret_env(),
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    let minted = stdout.trim();
    let a = get(&s, "/customers/K1001/evn/2026-11.pdf", Some(minted)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.body == want);
    // Its claims, read with the standard library: sub and an exp five minutes out.
    let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
    v.set_required_spec_claims(&["exp", "sub", "aud"]);
    v.set_audience(&["evn-portal"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        minted,
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        &v,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], "K1001");
    assert_eq!(claims["aud"], "evn-portal");
    let exp = claims["exp"].as_i64().unwrap();
    assert!((now() + 240..=now() + 301).contains(&exp), "{claims}");
    assert_eq!(
        get(&s, "/customers/K1002/evn/2026-11.pdf", Some(minted))
            .await
            .status,
        403
    );

    // ES256 signed by the issuer whose public key the service has.
    let es = |key: &rcgen::KeyPair, sub: &str| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            &serde_json::json!({"sub": sub, "exp": now() + 300, "aud": "evn-portal"}),
            &EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let a = get(
        &s,
        "/customers/K1001/evn/2026-11.pdf",
        Some(&es(&issuer, "K1001")),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.body == want);
    let stranger = rcgen::KeyPair::generate().unwrap();
    assert_eq!(
        get(
            &s,
            "/customers/K1001/evn/2026-11.pdf",
            Some(&es(&stranger, "K1001"))
        )
        .await
        .status,
        401
    );
    // Algorithm confusion: HS256 signed with the public key's PEM as the secret.
    let confused = hs256(
        serde_json::json!({"sub": "K1001", "exp": now() + 300, "aud": "evn-portal"}),
        issuer.public_key_pem().as_bytes(),
    );
    assert_eq!(
        get(&s, "/customers/K1001/evn/2026-11.pdf", Some(&confused))
            .await
            .status,
        401
    );
}

/// The identity provider signs tokens for all its applications with one key: its token for the
/// CRM (`aud: crm-backoffice`, `sub: K1001`) opened K1001's EVNs, since `aud` was checked only
/// with `--jwt-audience` and `iss` never. Now a public key without an audience does not start,
/// and the audience, a configured issuer and a sane `exp` are enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_tokens_for_another_application_or_issuer_or_for_years_are_401() {
    let evns = fake_evns();
    let idp = rcgen::KeyPair::generate().unwrap(); // ECDSA P-256
    let keys = tempfile::tempdir().unwrap();
    let public = keys.path().join("idp.pub.pem");
    std::fs::write(&public, idp.public_key_pem()).unwrap();
    let public = public.to_str().unwrap();
    let unset = [
        "EVN_PORTAL_SECRET",
        "EVN_PORTAL_PUBLIC_KEY_FILE",
        "EVN_PORTAL_AUDIENCE",
        "EVN_PORTAL_ISSUER",
    ];
    let evn_dir = evns.path().to_str().unwrap();
    // A taken port: a configuration the service accepted would fail to bind (exit 1) rather
    // than run for ever.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let serve = |extra: &[&str], env: &[(&str, &str)]| {
        let mut a = vec!["serve", "--evn", evn_dir, "--listen", &addr];
        a.extend_from_slice(extra);
        let out = evn_env(&a, env, &unset);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Refused at start, before listening: with or without the HS256 secret too.
    for env in [&[][..], &secret_env()[..]] {
        let (code, stderr) = serve(&["--jwt-public-key", public], env);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("needs an audience"), "{stderr}");
        assert!(stderr.contains("--jwt-audience"), "{stderr}");
    }
    let (code, stderr) = serve(&["--jwt-issuer", "https://idp.example"], &secret_env());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--jwt-issuer needs --jwt-public-key"),
        "{stderr}"
    );

    // Audience and issuer from the environment, as a deployment sets them.
    let s = Serve::start(
        evns.path(),
        &["--jwt-public-key", public],
        &[
            ("EVN_PORTAL_AUDIENCE", "evn-portal"),
            ("EVN_PORTAL_ISSUER", "https://idp.example"),
        ],
    );
    let es = |claims: serde_json::Value| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            &claims,
            &EncodingKey::from_ec_pem(idp.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let iss = "https://idp.example";
    let ours = es(
        serde_json::json!({"sub": "K1001", "exp": now() + 300, "aud": "evn-portal", "iss": iss}),
    );
    let a = get(&s, "/customers/K1001/evn/2026-11.pdf", Some(&ours)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.body == evns.bytes("K1001", "2026-11", 2));
    for (what, claims) in [
        (
            "the CRM's token",
            serde_json::json!({"sub": "K1001", "exp": now() + 300, "aud": "crm-backoffice", "iss": iss}),
        ),
        (
            "no aud",
            serde_json::json!({"sub": "K1001", "exp": now() + 300, "iss": iss}),
        ),
        (
            "another tenant",
            serde_json::json!({"sub": "K1001", "exp": now() + 300, "aud": "evn-portal", "iss": "https://other.example"}),
        ),
        (
            "no iss",
            serde_json::json!({"sub": "K1001", "exp": now() + 300, "aud": "evn-portal"}),
        ),
        (
            "valid for a year",
            serde_json::json!({"sub": "K1001", "exp": now() + 365 * 86_400, "aud": "evn-portal", "iss": iss}),
        ),
    ] {
        for path in ["/customers/K1001/evn/2026-11.pdf", "/customers/K1001/evn"] {
            let a = get(&s, path, Some(&es(claims.clone()))).await;
            assert_eq!(a.status, 401, "{what} {path}: {}", a.text());
            assert!(!a.body.starts_with(b"%PDF"), "{what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_self_signed_certificate_speaks_tls12_and_13_but_not_11() {
    let evns = fake_evns();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let tls = tempfile::tempdir().unwrap();
    let (cert, key) = (tls.path().join("cert.pem"), tls.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let s = Serve::start(
        evns.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &secret_env(),
    );
    assert!(s.url.starts_with("https://"), "{}", s.url);
    assert!(!s.log().contains("plain HTTP"), "{}", s.log());

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let auth = format!("Bearer {}", token("K1001"));
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        let tcp = TcpStream::connect(s.addr).await.unwrap();
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(
                rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                tcp,
            )
            .await
            .unwrap();
        assert_eq!(stream.get_ref().1.protocol_version(), Some(version.version));
        let a = exchange(
            TokioIo::new(stream),
            s.addr,
            "GET",
            "/customers/K1001/evn/2026-11.pdf",
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(a.status, 200, "{version:?}: {}", a.text());
        assert!(a.body == evns.bytes("K1001", "2026-11", 2), "{version:?}");
        assert_eq!(a.header("strict-transport-security"), "max-age=31536000");
    }

    // A TLS 1.1 ClientHello (no supported_versions extension): answered with an alert record,
    // never a ServerHello.
    let mut hello = vec![0x03, 0x02]; // client_version TLS 1.1
    hello.extend_from_slice(&[7; 32]); // random
    hello.push(0); // session id
    hello.extend_from_slice(&[0x00, 0x04, 0x00, 0x2f, 0xc0, 0x13]); // two TLS 1.0/1.1 suites
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00, (hello.len() >> 8) as u8, hello.len() as u8];
    handshake.extend_from_slice(&hello);
    let mut record = vec![
        0x16,
        0x03,
        0x01,
        (handshake.len() >> 8) as u8,
        handshake.len() as u8,
    ];
    record.extend_from_slice(&handshake);
    let mut raw = std::net::TcpStream::connect(s.addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(&record).unwrap();
    let mut answer = Vec::new();
    let _ = raw.read_to_end(&mut answer);
    assert!(!answer.is_empty(), "no answer to a TLS 1.1 hello");
    // rustls answers handshake_failure (40): it finds no version both sides speak.
    assert_eq!(
        answer[0], 0x15,
        "expected an alert record, got {answer:02x?}"
    );
    assert_eq!(
        answer.get(5),
        Some(&2),
        "expected a fatal alert, got {answer:02x?}"
    );
    assert!(
        !answer.windows(2).any(|w| w == [0x16, 0x03]),
        "a handshake record: {answer:02x?}"
    );

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut raw = std::net::TcpStream::connect(s.addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = raw.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
}

/// cert-manager renews the certificate in place: a running `serve` presents the new one within
/// seconds, keeps the old one while the files do not load, and never needs a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let evns = fake_evns();
    let names = vec!["localhost".to_owned()];
    let (old, new) = (
        rcgen::generate_simple_self_signed(names.clone()).unwrap(),
        rcgen::generate_simple_self_signed(names).unwrap(),
    );
    let tls = tempfile::tempdir().unwrap();
    let (cert, key) = (tls.path().join("cert.pem"), tls.path().join("key.pem"));
    // As a Kubernetes Secret volume changes: new files renamed into place.
    let put = |c: &rcgen::CertifiedKey<rcgen::KeyPair>| {
        for (path, text) in [(&cert, c.cert.pem()), (&key, c.signing_key.serialize_pem())] {
            let staged = path.with_extension("new");
            std::fs::write(&staged, text).unwrap();
            std::fs::rename(&staged, path).unwrap();
        }
    };
    put(&old);
    let s = Serve::start(
        evns.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &secret_env(),
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(old.cert.der().clone()).unwrap();
    roots.add(new.cert.der().clone()).unwrap();
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let presented = || {
        let config = config.clone();
        let addr = s.addr;
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(
                    rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                    tcp,
                )
                .await
                .unwrap();
            stream.get_ref().1.peer_certificates().unwrap()[0].clone()
        }
    };
    assert_eq!(&presented().await, old.cert.der());

    // A half-renewed pair (the new certificate, the old key) does not load: the old stays.
    std::fs::write(&cert, new.cert.pem()).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(&presented().await, old.cert.der());
    assert!(s.log().contains("do not load"), "{}", s.log());

    put(&new);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if &presented().await == new.cert.der() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still the old certificate"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(s.log().contains("TLS certificate reloaded"), "{}", s.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_parallel_downloads_all_complete_identical() {
    let evns = fake_evns();
    // Fewer slots than downloads: the rest wait their turn (queue timeout 10 s by default).
    let s = Arc::new(Serve::start(
        evns.path(),
        &["--max-concurrent-downloads", "8"],
        &secret_env(),
    ));
    let want = Arc::new(evns.bytes("K1001", "2026-11", 2).to_vec());
    let t = Arc::new(token("K1001"));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let (s, t, want) = (Arc::clone(&s), Arc::clone(&t), Arc::clone(&want));
        tasks.spawn(async move {
            let a = get(&s, "/customers/K1001/evn/2026-11.pdf", Some(&t)).await;
            (a.status, a.body == *want)
        });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        let (status, same) = r.unwrap();
        assert_eq!(status, 200);
        assert!(same, "a download differs from the file");
        ok += 1;
    }
    assert_eq!(ok, 200);
}

/// Sends a GET on a raw connection and reads only the response head.
fn raw_get_head(
    addr: SocketAddr,
    path: &str,
    token: &str,
) -> (std::net::TcpStream, String, Vec<u8>) {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let end = loop {
        let n = c.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    (c, head, buf[end..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_download_holds_its_slot_and_the_next_waits_then_gets_503() {
    let evns = fake_evns();
    big_month(evns.path(), "2026-07", "K1001", 256 << 20);
    let s = Serve::start(
        evns.path(),
        &[
            "--max-concurrent-downloads",
            "1",
            "--queue-timeout-secs",
            "1",
        ],
        &secret_env(),
    );
    let t = token("K1001");
    // Client A starts the big download and stops reading after the head.
    let (stalled, head, _) = raw_get_head(s.addr, "/customers/K1001/evn/2026-07.pdf", &t);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let b = get(&s, "/customers/K1001/evn/2026-11.pdf", Some(&t)).await;
    assert_eq!(b.status, 503, "{}", b.text());
    assert!(b.header("retry-after").parse::<u32>().unwrap() > 0);
    // What streams nothing needs no slot.
    let auth = format!("Bearer {t}");
    let head = request(
        &s,
        "HEAD",
        "/customers/K1001/evn/2026-11.pdf",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(head.status, 200);
    assert_eq!(get(&s, "/customers/K1001/evn", Some(&t)).await.status, 200);
    assert_eq!(get(&s, "/healthz", None).await.status, 200);

    // A goes away: its slot comes back.
    drop(stalled);
    let mut last = 0;
    for _ in 0..100 {
        last = get(&s, "/customers/K1001/evn/2026-11.pdf", Some(&t))
            .await
            .status;
        if last == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, 200, "the slot of a closed download was not freed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_open_download_finish_then_exits_0() {
    let evns = fake_evns();
    let len: u64 = 64 << 20;
    big_month(evns.path(), "2026-07", "K1001", len);
    let mut s = Serve::start(evns.path(), &[], &secret_env());
    let t = token("K1001");
    let (mut c, head, mut body) = raw_get_head(s.addr, "/customers/K1001/evn/2026-07.pdf", &t);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {len}")),
        "{head}"
    );

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    // The download in flight still completes, byte for byte.
    c.read_to_end(&mut body).unwrap();
    assert_eq!(body.len() as u64, len);
    assert!(body.iter().all(|&b| b == 0));
    let status = s
        .wait(Duration::from_secs(30))
        .expect("evn serve did not exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", s.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_needs_no_token_and_other_paths_answer_404_or_405() {
    let evns = fake_evns();
    let s = Serve::start(evns.path(), &[], &secret_env());
    let h = get(&s, "/healthz", None).await;
    assert_eq!(h.status, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&h.body).unwrap(),
        serde_json::json!({"status": "ok"})
    );
    assert_eq!(get(&s, "/", None).await.status, 404);
    assert_eq!(get(&s, "/2026-11/K1001.pdf", None).await.status, 404);
    assert_eq!(
        get(&s, "/customers/K1001/evn/2026-11.pdf/x", None)
            .await
            .status,
        404
    );
    let auth = format!("Bearer {}", token("K1001"));
    let post = request(
        &s,
        "POST",
        "/customers/K1001/evn/2026-11.pdf",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(post.status, 405);
}

#[test]
fn token_and_serve_configuration_errors_exit_2_and_a_taken_port_1() {
    let evns = fake_evns();
    let evn_dir = evns.path().to_str().unwrap();
    let check = |args: &[&str], set: &[(&str, &str)], code: i32, says: &str| {
        let out = evn_env(
            args,
            set,
            &["EVN_PORTAL_SECRET", "EVN_PORTAL_PUBLIC_KEY_FILE"],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed {:?}", out.stdout);
    };
    check(
        &["token", "--customer", "K1001"],
        &[],
        2,
        "EVN_PORTAL_SECRET is not set",
    );
    check(
        &["token", "--customer", "K1001"],
        &[("EVN_PORTAL_SECRET", "too short")],
        2,
        "at least 32",
    );
    check(
        &["token", "--customer", "../K1001"],
        &secret_env(),
        2,
        "customer id",
    );
    check(
        &["token", "--customer", "K1001", "--ttl", "1y"],
        &secret_env(),
        2,
        "--ttl",
    );
    check(
        &["token", "--customer", "K1001", "--ttl", "0s"],
        &secret_env(),
        2,
        "--ttl",
    );
    check(
        &["token", "--customer", "K1001", "--ttl", "31d"],
        &secret_env(),
        2,
        "30d",
    );
    let serve = |extra: &[&'static str]| {
        let mut a: Vec<&str> = vec!["serve", "--evn", evn_dir, "--listen", "127.0.0.1:0"];
        a.extend_from_slice(extra);
        a
    };
    check(&serve(&[]), &[], 2, "no token key");
    check(
        &serve(&[]),
        &[("EVN_PORTAL_SECRET", "short")],
        2,
        "at least 32",
    );
    check(
        &[
            "serve",
            "--evn",
            "/nonexistent/evn",
            "--listen",
            "127.0.0.1:0",
        ],
        &secret_env(),
        2,
        "/nonexistent/evn",
    );
    check(
        &serve(&["--tls-cert", "/etc/hostname"]),
        &secret_env(),
        2,
        "--tls-key",
    );
    check(
        &serve(&["--tls-cert", "/etc/hostname", "--tls-key", "/etc/hostname"]),
        &secret_env(),
        2,
        "CERTIFICATE",
    );
    check(
        &serve(&["--jwt-public-key", "/etc/hostname"]),
        &secret_env(),
        2,
        "public key",
    );
    check(
        &serve(&["--frame-ancestors", "https://a.example; script-src *"]),
        &secret_env(),
        2,
        "--frame-ancestors",
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    check(
        &["serve", "--evn", evn_dir, "--listen", &addr],
        &secret_env(),
        1,
        "cannot listen",
    );
}

/// With `EVN_DATA_KEY_FILE` the demo seals what it stores, as every other command does (it
/// ignored the key and wrote plain Parquet, PDFs and CSVs); `serve` with the key opens them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_seals_its_data_with_the_data_key() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("data.key");
    std::fs::write(&key, format!("{}\n", "5a".repeat(32))).unwrap();
    let key = key.to_str().unwrap();
    let demo = tmp.path().join("demo");
    let out = evn_env(
        &["demo", "--dir", demo.to_str().unwrap()],
        &[("EVN_DATA_KEY_FILE", key)],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut files, mut stack) = (Vec::new(), vec![demo.clone()]);
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    let ext = |e: &str| -> Vec<&std::path::PathBuf> {
        files
            .iter()
            .filter(|p| p.extension().is_some_and(|x| x == e))
            .collect()
    };
    let (pdfs, csvs, parquets) = (ext("pdf"), ext("csv"), ext("parquet"));
    assert!(!pdfs.is_empty() && !csvs.is_empty() && !parquets.is_empty());
    for p in pdfs.iter().chain(&csvs).chain(&parquets) {
        let bytes = std::fs::read(p).unwrap();
        assert!(
            !bytes.starts_with(b"%PDF") && !bytes.windows(3).any(|w| w == b"+49"),
            "{} is readable without the key",
            p.display()
        );
    }
    let env = [secret_env()[0], ("EVN_DATA_KEY_FILE", key)];
    let s = Serve::start(&demo.join("evn"), &[], &env);
    let out = evn_env(&["token", "--customer", "K1001"], &secret_env(), &[]);
    let t = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let a = get(&s, "/customers/K1001/evn/2026-11.pdf", Some(&t)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.body.starts_with(b"%PDF"));
}

/// README command 1 renders EVNs; the portal serves exactly those files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demos_evns_are_served_as_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let out = evn(&["demo", "--dir", dir.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("5. download an EVN") && stdout.contains(" serve --evn "),
        "{stdout}"
    );
    assert!(
        stdout.contains("http://localhost:8080/portal?token="),
        "the demo prints the download page's link: {stdout}"
    );
    let evn_dir = dir.path().join("evn");
    let manifest = Manifest::read(&evn_dir.join("2026-11/manifest.json"))
        .unwrap()
        .expect("the demo wrote a manifest");
    assert!(manifest.customers.len() >= 2, "{manifest:?}");
    let s = Serve::start(&evn_dir, &[], &secret_env());
    let ids: Vec<&String> = manifest.customers.keys().collect();
    for (i, (id, entry)) in manifest.customers.iter().enumerate() {
        let out = evn_env(&["token", "--customer", id], &secret_env(), &[]);
        let t = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let a = get(&s, &format!("/customers/{id}/evn/2026-11.pdf"), Some(&t)).await;
        assert_eq!(a.status, 200, "{id}: {}", a.text());
        let file = std::fs::read(evn_dir.join("2026-11").join(&entry.file)).unwrap();
        assert!(
            a.body == file,
            "{id}: served bytes differ from {}",
            entry.file
        );
        assert_eq!(a.header("etag"), format!("\"{}\"", entry.sha256));
        // Issue 11: the CSV the billing run wrote next to it, as rendered.
        let csv = get(&s, &format!("/customers/{id}/evn/2026-11.csv"), Some(&t)).await;
        assert_eq!(csv.status, 200, "{id}: {}", csv.text());
        assert_eq!(
            Some(sha(&csv.body)),
            entry.csv_sha256,
            "{id}: served CSV differs from the manifest's"
        );
        let listing: serde_json::Value = serde_json::from_slice(
            &get(&s, &format!("/customers/{id}/evn"), Some(&t))
                .await
                .body,
        )
        .unwrap();
        assert_eq!(listing["months"][0]["month"], "2026-11");
        assert_eq!(listing["months"][0]["version"], entry.version);
        let other = ids[(i + 1) % ids.len()];
        let a = get(&s, &format!("/customers/{other}/evn/2026-11.pdf"), Some(&t)).await;
        assert_eq!(a.status, 403, "{id} fetching {other}");
    }
}

/// `--revoked`: once the operator names a customer in the file, that customer's tokens issued
/// before the moment are refused within seconds, without a restart and before their expiry;
/// tokens issued after it and other customers' still work; a file that breaks later keeps the
/// last list in force; one that is bad at startup is exit 2 naming its line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_customer_s_tokens_are_refused_within_seconds_without_a_restart() {
    let evns = fake_evns();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("revoked.csv");
    std::fs::write(
        &file,
        "customer_id,revoked_at\nK1002,2020-01-01T00:00:00Z\n",
    )
    .unwrap();
    let s = Serve::start(
        evns.path(),
        &["--revoked", file.to_str().unwrap()],
        &secret_env(),
    );
    let n = now();
    let issued = |sub: &str, iat: i64| {
        hs256(
            serde_json::json!({"sub": sub, "iat": iat, "exp": n + 300}),
            SECRET.as_bytes(),
        )
    };
    let (pdf, listing) = ("/customers/K1001/evn/2026-11.pdf", "/customers/K1002/evn");
    let old = issued("K1001", n - 60);
    assert_eq!(get(&s, pdf, Some(&old)).await.status, 200);
    assert_eq!(
        get(&s, listing, Some(&issued("K1002", n - 60)))
            .await
            .status,
        200
    );

    let at = chrono::DateTime::from_timestamp(n - 30, 0)
        .unwrap()
        .to_rfc3339();
    std::fs::write(&file, format!("K1002,2020-01-01T00:00:00Z\nK1001,{at}\n")).unwrap();
    let t0 = std::time::Instant::now();
    loop {
        let status = get(&s, pdf, Some(&old)).await.status;
        if status == 401 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "still {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let no_iat = hs256(
        serde_json::json!({"sub": "K1001", "exp": n + 300}),
        SECRET.as_bytes(),
    );
    assert_eq!(get(&s, pdf, Some(&no_iat)).await.status, 401);
    // The session cookie carries the token: refused as well.
    let cookie = format!("__Host-evn_session={old}");
    let a = request(&s, "GET", pdf, &[("cookie", &cookie)]).await;
    assert_eq!(a.status, 401, "{}", a.text());
    assert_eq!(
        get(&s, pdf, Some(&issued("K1001", n - 10))).await.status,
        200
    );
    assert_eq!(
        get(&s, listing, Some(&issued("K1002", n - 60)))
            .await
            .status,
        200
    );

    std::fs::write(&file, "K1001,not a time at all, and longer\n").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        get(&s, pdf, Some(&old)).await.status,
        401,
        "the last good list"
    );
    assert_eq!(
        get(&s, listing, Some(&issued("K1002", n - 60)))
            .await
            .status,
        200
    );

    let out = evn_env(
        &[
            "serve",
            "--evn",
            evns.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--revoked",
            file.to_str().unwrap(),
        ],
        &secret_env(),
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("line 1") && stderr.contains("RFC 3339"),
        "{stderr}"
    );
}
