//! Issue 11 (the customer's side) and issue 9 (serve's metrics) through the real `evn`: fixture
//! calls billed by `evn bill`, served by `evn serve` over TCP. The CSV is parsed back and
//! compared with the PDF's rows (`pdftotext`); the metrics move with downloads; the download
//! page is driven in headless Chromium over the DevTools protocol: token link → cookie → list →
//! both downloads, another customer's EVN, logout, an expired link.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::Digest;

use crate::support::*;

const SECRET: &str = "page-test secret, at least 32 bytes long!";
const CUSTOMER: &str = "K1002";
/// Has an EVN of its own in October: what K1002 must never get.
const OTHER: &str = "K1001";

fn env() -> [(&'static str, &'static str); 1] {
    [("EVN_PORTAL_SECRET", SECRET)]
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token_with_exp(customer: &str, exp: u64) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": customer, "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn token(customer: &str) -> String {
    token_with_exp(customer, now() + 600)
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

// ---------------------------------------------------------------------------------------------
// Fixture: calls of K1002 in October and November (mobile, landline, EU, one counselling call),
// billed; November billed again after two late calls, so it has versions 1 and 2.

/// A stored call of `customer`: day, time, zone and number vary with `i`.
fn call(customer: &str, month: &str, i: u32) -> evn_store::StoredCall {
    let mut c = privacy_call(customer, month, i, false);
    let day = 1 + (i * 7) % 27;
    let start: chrono::DateTime<chrono::Utc> = format!(
        "{month}-{day:02}T{:02}:{:02}:{:02}Z",
        7 + i % 12,
        (i * 13) % 60,
        (i * 29) % 60
    )
    .parse()
    .unwrap();
    c.call.start_time = start;
    c.call.billing_month = evn_rating::BillingMonth::of(start);
    c.call.duration_s = 30 + i64::from(i) * 47;
    c.call.charge_eur = rust_decimal::Decimal::new(1490 + i64::from(i) * 2371, 4);
    match i % 3 {
        1 => {
            c.call.called_number = format!("+4930123{i:04}").into();
            c.call.zone = "landline".into();
        }
        2 => {
            c.call.called_number = format!("+33123456{i:03}").into();
            c.call.zone = "eu".into();
        }
        _ => {}
    }
    c
}

struct Billed {
    dir: tempfile::TempDir,
}

impl Billed {
    fn evn(&self) -> PathBuf {
        self.dir.path().join("evn")
    }

    fn file(&self, month: &str, name: &str) -> Vec<u8> {
        std::fs::read(self.evn().join(month).join(name)).unwrap()
    }

    fn manifest(&self, month: &str) -> Value {
        serde_json::from_slice(&self.file(month, "manifest.json")).unwrap()
    }
}

fn bill(data: &Path, out: &Path, month: &str) {
    let config = config_dir();
    let args = [
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
    let o = evn_env(&args, &[], &["EVN_DATA_KEY_FILE"]);
    assert!(
        o.status.success(),
        "evn bill {month}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn billed() -> Billed {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("evn");
    let mut oct: Vec<_> = (0..6).map(|i| call(CUSTOMER, "2026-10", i)).collect();
    oct.extend((0..3).map(|i| call(OTHER, "2026-10", 100 + i)));
    write_month_file(&data, "2026-10", "a.parquet", &oct, None);
    let mut nov: Vec<_> = (0..23).map(|i| call(CUSTOMER, "2026-11", i)).collect();
    // Counts in the total, never shown as a row (TKG § 65): absent from PDF and CSV alike.
    nov.push(privacy_call(CUSTOMER, "2026-11", 50, true));
    write_month_file(&data, "2026-11", "a.parquet", &nov, None);
    bill(&data, &out, "2026-10");
    bill(&data, &out, "2026-11");
    let late: Vec<_> = (23..25).map(|i| call(CUSTOMER, "2026-11", i)).collect();
    write_month_file(&data, "2026-11", "b.parquet", &late, None);
    bill(&data, &out, "2026-11");
    let b = Billed { dir };
    assert_eq!(b.manifest("2026-11")["customers"][CUSTOMER]["version"], 2);
    b
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.0 client: the answer ends with the connection, no chunking to undo.

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.headers))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn fetch(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

// ---------------------------------------------------------------------------------------------
// The PDF's and the CSV's rows, in one comparable form: the cells joined by single spaces.

/// The connection rows of `pdftotext -layout`: `Nr Datum Uhrzeit Dauer Nummer Zone Betrag €`
/// under an `Anschluss …` heading, returned with the line prepended like the CSV's column 2.
fn pdf_rows(pdf: &[u8]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("evn.pdf");
    std::fs::write(&file, pdf).unwrap();
    let out = Command::new("pdftotext")
        .args(["-layout", file.to_str().unwrap(), "-"])
        .output()
        .expect("pdftotext (poppler-utils; scripts/test.sh installs it)");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let is_date = |s: &str| s.len() == 10 && s.as_bytes()[2] == b'.' && s.as_bytes()[5] == b'.';
    let mut line = String::new();
    let mut rows = Vec::new();
    for l in text.lines() {
        let t = l.trim();
        if let Some(rest) = t.strip_prefix("Anschluss ") {
            line = rest.split_whitespace().collect::<Vec<_>>().join(" ");
            continue;
        }
        let cells: Vec<&str> = t.split_whitespace().collect();
        if cells.len() >= 7
            && cells[0].bytes().all(|b| b.is_ascii_digit())
            && is_date(cells[1])
            && cells.last() == Some(&"€")
        {
            let mut row = vec![cells[0], &line];
            row.extend_from_slice(&cells[1..cells.len() - 1]);
            rows.push(row.join(" "));
        }
    }
    rows
}

/// The CSV as a German spreadsheet reads it: BOM, `;`, a header row; the cells of each row.
fn csv_rows(csv: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let body = csv
        .strip_prefix("\u{feff}".as_bytes())
        .expect("UTF-8 with a BOM");
    let mut reader = csv::ReaderBuilder::new().delimiter(b';').from_reader(body);
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

#[test]
fn issue_11_csv_download_has_exactly_the_pdfs_rows() {
    let b = billed();
    let s = Serve::start(&b.evn(), &[], &env());
    let auth = bearer(&token(CUSTOMER));
    let csv = fetch(
        s.addr,
        "/customers/K1002/evn/2026-11.csv",
        &[("Authorization", &auth)],
    );
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert_eq!(csv.header("content-type"), "text/csv; charset=utf-8");
    assert_eq!(
        csv.header("content-disposition"),
        "attachment; filename=\"EVN_K1002_2026-11.csv\""
    );
    assert_eq!(csv.header("cache-control"), "private, no-store");
    let manifest = b.manifest("2026-11");
    let entry = &manifest["customers"][CUSTOMER];
    assert_eq!(
        csv.header("etag"),
        format!("\"{}\"", entry["csv_sha256"].as_str().unwrap())
    );
    assert!(
        csv.body == b.file("2026-11", "K1002.v2.csv"),
        "served bytes differ"
    );
    assert_eq!(sha(&csv.body), entry["csv_sha256"]);

    let pdf = fetch(
        s.addr,
        "/customers/K1002/evn/2026-11.pdf",
        &[("Authorization", &auth)],
    );
    assert_eq!(pdf.status, 200);
    let (header, rows) = csv_rows(&csv.body);
    assert_eq!(
        header,
        [
            "Nr.",
            "Anschluss",
            "Datum",
            "Uhrzeit",
            "Dauer",
            "Zielrufnummer",
            "Tarifzone",
            "Betrag (EUR)"
        ]
    );
    // 25 calls; the counselling call is in neither.
    assert_eq!(rows.len(), 25, "{rows:?}");
    let from_csv: Vec<String> = rows.iter().map(|r| r.join(" ")).collect();
    assert_eq!(
        from_csv,
        pdf_rows(&pdf.body),
        "CSV rows differ from the PDF's"
    );
    for r in &rows {
        assert!(
            r[7].contains(',') && !r[7].contains('.'),
            "decimal comma: {r:?}"
        );
    }
    let text = csv.text();
    assert!(!text.contains("1110111"), "counselling number in the CSV");
    assert!(
        text.contains("Ausland EU") && text.contains("Festnetz"),
        "{text}"
    );

    // The versioned form, as for the PDF: version 1 is the first run's CSV, two rows shorter.
    let v1 = fetch(
        s.addr,
        "/customers/K1002/evn/2026-11.csv?version=1",
        &[("Authorization", &auth)],
    );
    assert_eq!(v1.status, 200);
    assert_eq!(
        v1.header("content-disposition"),
        "attachment; filename=\"EVN_K1002_2026-11_v1.csv\""
    );
    assert!(v1.body == b.file("2026-11", "K1002.v1.csv"));
    assert_eq!(csv_rows(&v1.body).1.len(), 23);
    // The listing names the CSVs next to the PDFs.
    let list = fetch(s.addr, "/customers/K1002/evn", &[("Authorization", &auth)]);
    let json: Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(
        json["months"][0]["csv_url"],
        "/customers/K1002/evn/2026-11.csv"
    );
    assert_eq!(
        json["months"][0]["versions"][0]["csv_url"],
        "/customers/K1002/evn/2026-11.csv?version=1"
    );
    assert_eq!(json["months"][1]["month"], "2026-10");
    // Same rules as the PDF: another customer's CSV is 403, existing or not; no token 401.
    for path in [
        "/customers/K1001/evn/2026-10.csv",
        "/customers/K9999/evn/2026-10.csv",
    ] {
        assert_eq!(
            fetch(s.addr, path, &[("Authorization", &auth)]).status,
            403,
            "{path}"
        );
    }
    assert_eq!(
        fetch(s.addr, "/customers/K1002/evn/2026-11.csv", &[]).status,
        401
    );
    assert_eq!(
        fetch(
            s.addr,
            "/customers/K1002/evn/2026-09.csv",
            &[("Authorization", &auth)]
        )
        .status,
        404
    );
}

// ---------------------------------------------------------------------------------------------
// Issue 9: metrics and health of `evn serve` on --metrics-listen.

/// The value of one series in a metrics text, 0 when it is not there yet.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[test]
fn issue_9_serve_metrics_move_with_downloads_and_probes_answer() {
    let b = billed();
    let s = Serve::start(&b.evn(), &["--metrics-listen", "127.0.0.1:0"], &env());
    let mut metrics_addr = None;
    wait_until(Duration::from_secs(10), || {
        metrics_addr = s.log().lines().find_map(|l| {
            l.strip_prefix("evn serve metrics on http://")?
                .strip_suffix("/metrics")?
                .parse::<SocketAddr>()
                .ok()
        });
        metrics_addr.is_some()
    });
    let m = metrics_addr.unwrap_or_else(|| panic!("no metrics address in {}", s.log()));
    let scrape = || {
        let r = fetch(m, "/metrics", &[]);
        assert_eq!(r.status, 200);
        r.text()
    };
    let before = scrape();
    let auth = bearer(&token(CUSTOMER));
    let pdf = fetch(
        s.addr,
        "/customers/K1002/evn/2026-11.pdf",
        &[("Authorization", &auth)],
    );
    let csv = fetch(
        s.addr,
        "/customers/K1002/evn/2026-11.csv",
        &[("Authorization", &auth)],
    );
    assert_eq!((pdf.status, csv.status), (200, 200));
    assert_eq!(
        fetch(
            s.addr,
            "/customers/K1001/evn/2026-10.pdf",
            &[("Authorization", &auth)]
        )
        .status,
        403
    );
    assert_eq!(
        fetch(
            s.addr,
            "/customers/K1002/evn/2026-11.csv",
            &[("Authorization", "Bearer x.y.z")]
        )
        .status,
        401
    );
    let after = scrape();
    let moved = |series: &str| metric(&after, series) - metric(&before, series);
    assert_eq!(
        moved("evn_portal_downloads_total{format=\"pdf\",status=\"200\"}"),
        1.0,
        "{after}"
    );
    assert_eq!(
        moved("evn_portal_downloads_total{format=\"csv\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        moved("evn_portal_downloads_total{format=\"pdf\",status=\"403\"}"),
        1.0
    );
    assert_eq!(
        moved("evn_portal_downloads_total{format=\"csv\",status=\"401\"}"),
        1.0
    );
    assert_eq!(
        moved("evn_portal_download_bytes_total{format=\"pdf\"}"),
        pdf.body.len() as f64
    );
    assert_eq!(
        moved("evn_portal_download_bytes_total{format=\"csv\"}"),
        csv.body.len() as f64
    );
    assert_eq!(
        moved("evn_portal_requests_total{route=\"/customers/{id}/evn/{file}\",status=\"200\"}"),
        2.0
    );
    assert_eq!(
        moved("evn_portal_tokens_refused_total{reason=\"malformed\"}"),
        1.0
    );
    assert!(
        moved("evn_portal_request_duration_seconds_count{route=\"/customers/{id}/evn/{file}\"}")
            >= 4.0
    );
    assert_eq!(metric(&after, "evn_portal_downloads_in_flight"), 0.0);
    // The customers' listener shows no metrics; both listeners answer the probes.
    assert_eq!(fetch(s.addr, "/metrics", &[]).status, 404);
    for (addr, path) in [
        (m, "/healthz"),
        (m, "/readyz"),
        (s.addr, "/healthz"),
        (s.addr, "/readyz"),
    ] {
        assert_eq!(fetch(addr, path, &[]).status, 200, "{addr}{path}");
    }
}

// ---------------------------------------------------------------------------------------------
// Headless Chromium over the DevTools protocol.

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

/// A headless Chromium with its own profile; killed on drop.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    ws: tungstenite::WebSocket<TcpStream>,
    next_id: u64,
    session: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn start(binary: &Path, downloads: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(binary)
            .args([
                "--headless",
                // Root in CI: Chromium's sandbox needs an unprivileged user.
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        // Chromium writes its DevTools port and browser path here once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let mut lines = Vec::new();
        assert!(
            wait_until(Duration::from_secs(60), || {
                lines = std::fs::read_to_string(&port_file)
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_owned)
                    .collect();
                lines.len() >= 2
            }),
            "chromium did not start its DevTools endpoint"
        );
        let port: u16 = lines[0].parse().unwrap();
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}{}", lines[1]), stream)
            .expect("DevTools WebSocket");
        let mut b = Browser {
            child,
            _profile: profile,
            ws,
            next_id: 1,
            session: String::new(),
        };
        b.call(
            false,
            "Browser.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": downloads.to_str().unwrap()}),
        );
        let target = b.call(false, "Target.createTarget", json!({"url": "about:blank"}));
        let attached = b.call(
            false,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_owned();
        b
    }

    /// One DevTools command, to the browser or (`page`) the page; events in between are skipped.
    fn call(&mut self, page: bool, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if page {
            msg["sessionId"] = self.session.clone().into();
        }
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .unwrap();
        loop {
            if let tungstenite::Message::Text(t) = self.ws.read().unwrap() {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    /// Evaluates `expr` in the page, as if the user had clicked (so a download is allowed).
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            true,
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "userGesture": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Navigates and waits until the page at `path` (after redirects) has loaded.
    fn open(&mut self, url: &str, path: &str) {
        self.call(true, "Page.navigate", json!({"url": url}));
        self.wait_for(path);
    }

    fn wait_for(&mut self, path: &str) {
        let expected = format!("{path} complete");
        let mut seen = Value::Null;
        let ok = wait_until(Duration::from_secs(30), || {
            seen = self.eval("location.pathname + ' ' + document.readyState");
            seen == expected.as_str()
        });
        assert!(ok, "waited for {expected}, at {seen}");
    }

    fn screenshot(&mut self, width: u32, height: u32, mobile: bool, to: &Path) {
        self.call(
            true,
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
        let shot = self.call(true, "Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            shot["data"].as_str().unwrap(),
        )
        .unwrap();
        std::fs::write(to, png).unwrap();
        self.call(true, "Emulation.clearDeviceMetricsOverride", json!({}));
    }
}

/// Waits for a finished download (Chromium writes `*.crdownload` first, then renames).
fn downloaded(dir: &Path, name: &str) -> Vec<u8> {
    let file = dir.join(name);
    assert!(
        wait_until(Duration::from_secs(30), || file.is_file()),
        "{name} not downloaded; in {}: {:?}",
        dir.display(),
        std::fs::read_dir(dir).unwrap().collect::<Vec<_>>()
    );
    std::fs::read(file).unwrap()
}

/// Set `EVN_PAGE_SCREENSHOTS=docs` to refresh `docs/portal-phone.png` and
/// `docs/portal-desktop.png` (README) from this run.
#[test]
fn issue_11_download_page_in_headless_chromium() {
    let Some(binary) = chromium() else {
        eprintln!(
            "SKIPPED issue_11_download_page_in_headless_chromium: no chromium on PATH \
             (scripts/test.sh installs Debian's chromium)"
        );
        return;
    };
    let b = billed();
    let s = Serve::start(&b.evn(), &[], &env());
    let downloads = tempfile::tempdir().unwrap();
    let mut browser = Browser::start(&binary, downloads.path());
    let base = s.url.clone();

    // The portal's link: the token is checked, kept in the cookie, and gone from the URL.
    let t = token(CUSTOMER);
    browser.open(&format!("{base}/portal?token={t}"), "/portal");
    assert_eq!(
        browser.eval("location.search"),
        "",
        "the token stays in the URL"
    );
    assert_eq!(
        browser.eval("document.cookie"),
        "",
        "the session cookie is HttpOnly"
    );
    assert_eq!(browser.eval("document.documentElement.lang"), "de");
    assert_eq!(browser.eval("document.title"), "Einzelverbindungsnachweise");
    assert_eq!(
        browser.eval("[...document.querySelectorAll('thead th[scope=col]')].map(e => e.textContent).join('|')"),
        "Monat|Version|Erstellt am|Dateien"
    );
    assert_eq!(
        browser.eval("[...document.querySelectorAll('tbody th[scope=row]')].map(e => e.textContent).join('|')"),
        "November 2026|November 2026|Oktober 2026"
    );
    let created = b.manifest("2026-11")["customers"][CUSTOMER]["versions"][1]["created"]
        .as_str()
        .unwrap()
        .to_owned();
    let german = format!("{}.{}.{}", &created[8..10], &created[5..7], &created[..4]);
    assert_eq!(
        browser.eval("document.querySelector('tbody tr td:nth-child(3)').textContent"),
        german.as_str()
    );
    let links =
        browser.eval("[...document.querySelectorAll('a.btn')].map(a => a.getAttribute('href'))");
    assert_eq!(
        links,
        json!([
            "/customers/K1002/evn/2026-11.pdf",
            "/customers/K1002/evn/2026-11.csv",
            "/customers/K1002/evn/2026-11.pdf?version=1",
            "/customers/K1002/evn/2026-11.csv?version=1",
            "/customers/K1002/evn/2026-10.pdf",
            "/customers/K1002/evn/2026-10.csv",
        ])
    );
    // Every link has a name that says what it downloads (screen readers list links alone).
    assert_eq!(
        browser.eval("document.querySelector('a.btn').textContent"),
        "PDF November 2026, Version 2"
    );
    if let Some(dir) = std::env::var_os("EVN_PAGE_SCREENSHOTS") {
        let dir = repo().join(dir);
        browser.screenshot(390, 844, true, &dir.join("portal-phone.png"));
        browser.screenshot(1280, 800, false, &dir.join("portal-desktop.png"));
    }

    // Both downloads, clicked in the page: authorised by the cookie alone.
    for (href, name, file) in [
        (
            "/customers/K1002/evn/2026-11.pdf",
            "EVN_K1002_2026-11.pdf",
            "K1002.v2.pdf",
        ),
        (
            "/customers/K1002/evn/2026-11.csv",
            "EVN_K1002_2026-11.csv",
            "K1002.v2.csv",
        ),
    ] {
        browser.eval(&format!(
            "document.querySelector('a[href=\"{href}\"]').click()"
        ));
        let got = downloaded(downloads.path(), name);
        assert!(got == b.file("2026-11", file), "{name} differs from {file}");
    }
    let log = s.log();
    for ext in ["pdf", "csv"] {
        assert!(
            log.lines().any(|l| l
                .contains(&format!("path=\"/customers/K1002/evn/2026-11.{ext}\""))
                && l.contains("status=200")
                && l.contains("customer=\"K1002\"")),
            "{log}"
        );
    }
    assert!(!log.contains(&t), "the token is in the log");

    // Another customer's EVN with this session: 403, whether it exists or not.
    for other in [
        "/customers/K1001/evn/2026-10.pdf",
        "/customers/K1001/evn/2026-10.csv",
    ] {
        browser.open(&format!("{base}{other}"), other);
        let body = browser.eval("document.body.innerText");
        assert!(
            body.as_str().unwrap().contains("another customer"),
            "{body}"
        );
    }
    assert!(
        !downloads.path().join("EVN_K1001_2026-10.pdf").exists(),
        "another customer's EVN downloaded"
    );

    // Logout from the page's button: the cookie is gone, the page says so.
    browser.open(&format!("{base}/portal"), "/portal");
    browser.eval("document.querySelector('form[action=\"/portal/logout\"] button').click()");
    browser.wait_for("/portal/abgemeldet");
    assert_eq!(browser.eval("document.title"), "Abgemeldet");
    browser.open(&format!("{base}/portal"), "/portal");
    assert_eq!(browser.eval("document.title"), "Link abgelaufen");
    browser.open(
        &format!("{base}/customers/K1002/evn/2026-11.pdf"),
        "/customers/K1002/evn/2026-11.pdf",
    );
    assert_eq!(browser.eval("document.title"), "Link abgelaufen");

    // An expired link: no session, the German page.
    let expired = token_with_exp(CUSTOMER, now() - 3600);
    browser.open(&format!("{base}/portal?token={expired}"), "/portal");
    assert_eq!(browser.eval("document.title"), "Link abgelaufen");
    assert!(browser
        .eval("document.body.innerText")
        .as_str()
        .unwrap()
        .contains("über Ihr Kundenkonto"));
}
