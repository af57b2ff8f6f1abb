//! Renders fixture EVNs and checks what a reader gets back from the PDF's text layer
//! (poppler's `pdftotext`, installed by `.ci/run`), plus determinism, size and page numbers.

use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::{render_pdf, EvnCall, EvnDocument, Header};

pub(crate) fn header() -> Header {
    Header {
        provider_name: "Mango Office GmbH".into(),
        provider_address: vec!["Musterstraße 1".into(), "10117 Berlin".into()],
        provider_contact: vec![
            "service@example.de".into(),
            "Tel. 030 1234567-0".into(),
            "USt-IdNr. DE123456789".into(),
        ],
        customer_id: "K1002".into(),
        customer_name: "Bäckerei Größler e.K.".into(),
        customer_address: vec!["Schloßallee 12".into(), "80331 München".into()],
        month: "2026-11".parse().unwrap(),
        created: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        version: 1,
        config_version: "sha256:0123456789abcdef01234567".into(),
        counselling_version: "2026-Q4+sha256:0a1b2c3d4e5f".into(),
    }
}

fn call(line: &str, start: &str, dur: i64, number: &str, zone: &str, charge: &str) -> EvnCall {
    EvnCall {
        calling_number: line.into(),
        called_number: number.into(),
        start_time: DateTime::<Utc>::from_str(start).unwrap(),
        duration_s: dur,
        zone_label: zone.into(),
        charge: Decimal::from_str(charge).unwrap(),
        hidden: false,
        shortened: number.ends_with('x'),
    }
}

/// A small, realistic month: two lines, a shortened number, a DST-night call, a hidden
/// counselling call, a month-boundary call.
pub(crate) fn small_doc() -> EvnDocument {
    let mut hidden = call(
        "+4989123456",
        "2026-11-10T08:00:00Z",
        600,
        "+49307654321",
        "Festnetz national",
        "0.2900",
    );
    hidden.hidden = true;
    EvnDocument::build(
        header(),
        vec![
            call(
                "+4989123456",
                "2026-10-31T23:00:00Z",
                122,
                "+4915112345678",
                "Mobilfunk",
                "0.3030",
            ),
            call(
                "+4989123456",
                "2026-11-24T13:05:09Z",
                3725,
                "+33123456789",
                "Ausland EU",
                "18.0017",
            ),
            hidden,
            call(
                "+4989123457",
                "2026-11-02T07:59:01Z",
                61,
                "+4917612345xxx",
                "Mobilfunk",
                "0.1815",
            ),
            call(
                "+4989123457",
                "2026-11-30T22:59:59Z",
                1,
                "+491801234567",
                "Servicerufnummer",
                "0.1400",
            ),
            call(
                "+4989123457",
                "2026-11-15T10:00:00Z",
                30,
                "110",
                "Notruf",
                "0.0000",
            ),
        ],
        false,
        vec!["Festnetz national".into()],
    )
}

pub(crate) fn big_doc(rows: usize) -> EvnDocument {
    let zones = [
        "Mobilfunk",
        "Ausland EU",
        "Servicerufnummer",
        "Premiumdienst",
    ];
    let calls = (0..rows)
        .map(|i| {
            let start = DateTime::from_timestamp(1_793_487_600 + i as i64 * 450, 0).unwrap();
            EvnCall {
                calling_number: format!("+49301234{}", 50 + i % 3),
                called_number: format!("+4915{:09}", 100_000_000 + i * 7919 % 899_999_999),
                start_time: start,
                duration_s: (i as i64 * 37) % 4000,
                zone_label: zones[i % zones.len()].into(),
                charge: Decimal::new((i as i64 * 1237) % 50_000, 4),
                hidden: i % 97 == 0,
                shortened: false,
            }
        })
        .collect();
    EvnDocument::build(header(), calls, false, vec![])
}

fn scratch(name: &str) -> PathBuf {
    // Unique per test thread: tests run in parallel in one process.
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    std::env::temp_dir().join(format!("evn-render-{}-{thread}-{name}", std::process::id()))
}

/// The PDF's text layer as `pdftotext -layout` sees it.
pub(crate) fn pdf_text(bytes: &[u8]) -> String {
    let path = scratch("text.pdf");
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils) must be installed: apt-get install -y poppler-utils");
    std::fs::remove_file(&path).ok();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn small_evn_text_layer() {
    let pdf = render_pdf(&small_doc()).unwrap();
    assert_eq!(pdf.pages, 1);
    let text = pdf_text(&pdf.bytes);
    // Trailing spaces from -layout are noise, not content.
    let text: String = text
        .lines()
        .map(|l| l.trim_end())
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!("small_evn", text);
    for needle in [
        "Bäckerei Größler e.K.",
        "Schloßallee 12",
        "80331 München",
        "Abrechnungszeitraum 01.11.2026 – 30.11.2026",
        "0151 12345678",
        "0176 12345xxx",
        "1:02:05",
        "18,00 €",
        "Seite 1 von 1",
        "Summe Anschluss 089 123456",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in\n{text}");
    }
    // The counselling row: never in the text, in any notation.
    for hidden in [
        "030 7654321",
        "0307654321",
        "+49307654321",
        "7654321",
        "10.11.2026",
    ] {
        assert!(!text.contains(hidden), "{hidden} leaked");
    }
    // The line's subtotal is its printed rows only (0,3030 + 18,0017); the hidden 0,29 € is
    // one anonymous summary line, and the total has everything: 18,3047 + 0,3215 + 0,29.
    assert!(text.contains("Summe Anschluss 089 123456     18,30 €") || text.contains("18,30 €"));
    assert!(text.contains("Nicht einzeln aufgeführte Verbindungen"));
    assert!(text.contains("18,92 €"), "{text}");
    assert!(!text.contains("Festnetz national          "), "{text}");
    // Month boundary: 2026-10-31T23:00:00Z is 1 November 00:00 in Berlin.
    assert!(text.lines().any(|l| l.contains("01.11.2026")
        && l.contains("00:00:00")
        && l.contains("0151 12345678")));
}

#[test]
fn empty_evn_says_so() {
    let doc = EvnDocument::build(header(), vec![], false, vec![]);
    let pdf = render_pdf(&doc).unwrap();
    let text = pdf_text(&pdf.bytes);
    assert!(text.contains("Im Abrechnungszeitraum sind keine entgeltpflichtigen Verbindungen"));
    assert!(text.contains("0,00 €"));
    assert!(!text.contains("Zielrufnummer"));
}

#[test]
fn same_document_same_bytes() {
    let a = render_pdf(&small_doc()).unwrap().bytes;
    let b = render_pdf(&small_doc()).unwrap().bytes;
    assert_eq!(a, b);
    let mut other = small_doc();
    other.header.version = 2;
    assert_ne!(render_pdf(&other).unwrap().bytes, a);
}

#[test]
fn five_thousand_rows_paginate_with_header_on_every_page() {
    let doc = big_doc(5000);
    let pdf = render_pdf(&doc).unwrap();
    assert!(pdf.pages >= 80, "{} pages", pdf.pages);
    let text = pdf_text(&pdf.bytes);
    let pages: Vec<&str> = text
        .split('\u{c}')
        .filter(|p| !p.trim().is_empty())
        .collect();
    assert_eq!(pages.len(), pdf.pages);
    for (i, page) in pages.iter().enumerate() {
        assert!(
            page.contains(&format!("Seite {} von {}", i + 1, pdf.pages)),
            "page {}",
            i + 1
        );
        if i + 1 < pages.len() {
            assert!(
                page.contains("Zielrufnummer"),
                "table header on page {}",
                i + 1
            );
        }
    }
    // Every printed row is there once: the last number equals the itemised count.
    assert!(text.contains(&format!("\n{:>5}", doc.itemised()).trim_start().to_string()));
}

#[test]
fn three_pages_stay_small() {
    let doc = big_doc(130);
    let pdf = render_pdf(&doc).unwrap();
    assert_eq!(pdf.pages, 3);
    assert!(pdf.bytes.len() <= 40 * 1024, "{} bytes", pdf.bytes.len());
}

/// `EVN_RENDER_SAMPLES=DIR cargo test -p evn-render samples` writes sample PDFs to look at.
#[test]
fn samples() {
    let Some(dir) = std::env::var_os("EVN_RENDER_SAMPLES") else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, doc) in [
        ("small", small_doc()),
        ("three", big_doc(130)),
        ("big", big_doc(5000)),
        ("empty", EvnDocument::build(header(), vec![], false, vec![])),
    ] {
        std::fs::write(
            dir.join(format!("{name}.pdf")),
            render_pdf(&doc).unwrap().bytes,
        )
        .unwrap();
    }
}

/// `EVN_RENDER_BENCH=1 cargo test --release -p evn-render bench_pages` prints pages per second
/// (no timing assertion: the benchmark binary under `benches/` owns performance claims).
#[test]
fn bench_pages() {
    if std::env::var_os("EVN_RENDER_BENCH").is_none() {
        return;
    }
    let doc = big_doc(5000);
    render_pdf(&doc).unwrap();
    let start = std::time::Instant::now();
    let mut pages = 0;
    for _ in 0..5 {
        pages += render_pdf(&doc).unwrap().pages;
    }
    let small = small_doc();
    let t = std::time::Instant::now();
    for _ in 0..50 {
        render_pdf(&small).unwrap();
    }
    println!(
        "5000-row EVN: {:.0} pages/s; 1-page EVN: {:.1} ms each",
        pages as f64 / start.elapsed().as_secs_f64(),
        t.elapsed().as_secs_f64() * 1000.0 / 50.0
    );
}
