//! Renders fixture EVNs and checks what a reader gets back from the PDF's text layer
//! (poppler's `pdftotext`, installed by `.ci/run`), plus determinism, size and page numbers.

use std::path::PathBuf;
use std::process::Command;

use crate::sample::{big_doc, header, small_doc};
use crate::{render_pdf, EvnDocument};

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
    // in no count or sum of the EVN: the total is 18,3047 + 0,3215 = 18,6262, over 5 calls.
    assert!(text.contains("Summe Anschluss 089 123456     18,30 €") || text.contains("18,30 €"));
    assert!(
        !text.contains("Nicht einzeln aufgeführte Verbindungen"),
        "{text}"
    );
    assert!(
        !text.contains("0,29 €") && !text.contains("18,92 €"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("Gesamtsumme (netto)")
            && l.contains(" 5 ")
            && l.contains("18,63 €")),
        "{text}"
    );
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
    assert!(text.contains("Im Abrechnungszeitraum sind keine Verbindungen angefallen, die"));
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

/// The text of each page, split at form feeds.
fn pages(text: &str) -> Vec<&str> {
    text.split('\u{c}')
        .filter(|p| !p.trim().is_empty())
        .collect()
}

/// A table row as `pdftotext -layout` gives it back: number, date, time, duration, the rest.
fn parse_row(line: &str) -> Option<(usize, Vec<&str>)> {
    let mut words = line.split_whitespace();
    let nr = words.next()?.parse().ok()?;
    let rest: Vec<&str> = words.collect();
    let date = rest.first()?;
    (date.len() == 10 && date.as_bytes()[2] == b'.').then_some((nr, rest))
}

#[test]
fn five_thousand_rows_render_every_row_once_with_header_and_total() {
    let doc = big_doc(5000);
    let pdf = render_pdf(&doc).unwrap();
    let text = pdf_text(&pdf.bytes);
    let pages = pages(&text);
    assert_eq!(pages.len(), pdf.pages);
    assert!(pdf.pages > 80, "{} pages", pdf.pages);
    let rows: Vec<&crate::Row> = doc.groups.iter().flat_map(|g| &g.rows).collect();
    let mut next = 1;
    for (i, page) in pages.iter().enumerate() {
        let footer = format!("Seite {} von {}", i + 1, pdf.pages);
        assert!(page.contains(&footer), "{footer} missing");
        let mut on_page = 0;
        for (nr, words) in page.lines().filter_map(parse_row) {
            // In order, none missing, none twice, and the amount of that very row.
            assert_eq!(nr, next, "page {}", i + 1);
            let expected = crate::format::money(rows[nr - 1].charge);
            assert!(words.join(" ").ends_with(&expected), "row {nr}: {words:?}");
            next += 1;
            on_page += 1;
        }
        if on_page > 0 {
            assert!(
                page.contains("Zielrufnummer"),
                "table header on page {}",
                i + 1
            );
        }
    }
    assert_eq!(next - 1, doc.itemised());
    assert_eq!(doc.itemised() + doc.not_itemised.count, 5000);
    let last = pages.last().unwrap();
    let total = last
        .lines()
        .find(|l| l.contains("Gesamtsumme (netto)"))
        .expect("total on the last page");
    assert!(total.contains(&doc.itemised().to_string()), "{total}");
    assert!(total.ends_with(&crate::format::money(doc.total)), "{total}");
}

/// Group ends and line headings at every position a page break can fall on: a subtotal
/// always follows a row of its own line on the same page, a heading is never the last line
/// of a page, and a line running over a page break is named again.
#[test]
fn page_breaks_leave_no_lone_subtotal_or_heading() {
    for first in 30..=95 {
        let mut doc = big_doc(first + 6);
        // Two lines: `first` rows, then 6.
        let rows: Vec<crate::Row> = doc.groups.drain(..).flat_map(|g| g.rows).collect();
        let (a, b) = rows.split_at(first);
        let group = |n: &str, rows: &[crate::Row]| crate::LineGroup {
            calling_number: n.into(),
            subtotal: rows.iter().map(|r| r.charge).sum(),
            rows: rows.to_vec(),
        };
        doc.groups = vec![group("+4930123450", a), group("+4930123451", b)];
        let text = pdf_text(&render_pdf(&doc).unwrap().bytes);
        for (p, page) in pages(&text).iter().enumerate() {
            let lines: Vec<&str> = page
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            for (i, line) in lines.iter().enumerate() {
                let next = lines.get(i + 1).copied().unwrap_or("");
                let prev = if i > 0 { lines[i - 1] } else { "" };
                let at = format!("{first} rows, page {}: {line:?}", p + 1);
                if line.starts_with("Summe Anschluss") {
                    assert!(parse_row(prev).is_some(), "{at} after {prev:?}");
                }
                if line.starts_with("Anschluss") {
                    assert!(parse_row(next).is_some(), "{at} before {next:?}");
                }
                if line.contains("Zielrufnummer") && p > 0 {
                    // Rows on a continued page come under their line's name.
                    assert!(
                        next.starts_with("Anschluss") || next.starts_with("Zusammenfassung"),
                        "{at} before {next:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn long_names_labels_and_rare_letters_fit_and_survive() {
    let doc = crate::sample::stress_doc();
    let pdf = render_pdf(&doc).unwrap();
    let text = pdf_text(&pdf.bytes);
    // Characters outside the font's base repertoire get their own subset, not .notdef.
    for needle in [
        "Kommunikationstechnik Łukasz Şahin Hőgyes",
        "Überregionale Telekommunikationsdienstleistungsgesellschaft mbH &",
        "00882 1612345678901",
        "0086 1381234567",
        "10050",
        "1.005.005.048,62 €",
        "Ausland Welt (Satellit, Inmarsat, Iridium und Seefunk)",
    ] {
        assert!(text.contains(needle), "{needle:?} missing");
    }
    // The last two pages: a line continued over a page break, subtotals, the summary on a
    // page of its own rather than split from its total, and "Seite x von y".
    let all = pages(&text);
    let tail: String = all[all.len() - 2..]
        .iter()
        .flat_map(|p| {
            p.lines()
                .map(str::trim_end)
                .chain(["--- Seitenumbruch ---"])
        })
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!("stress_last_pages", tail);
    // In the table the long zone label is cut with an ellipsis, clear of the amount.
    let row = text.lines().find_map(parse_row).unwrap().1.join(" ");
    assert!(
        row.contains("Ausland Welt (Satellit, Inm… 100.000,00 €"),
        "{row}"
    );
}

/// A long legal name and a long street wrap in the address zone, in a smaller size if they
/// must; they were cut with "…" after three lines (name) and one line (street).
#[test]
fn a_long_name_and_street_are_printed_whole() {
    let mut doc = crate::sample::small_doc();
    doc.header.customer_name = "Meier; Schulze & \"Partner\" Rechtsanwälte, Steuerberater und \
        Wirtschaftsprüfer in Partnerschaft mbB – Niederlassung Groß-Umstadt-Süd"
        .into();
    doc.header.customer_address = vec![
        "Ölmühlenweg 123a, Hinterhaus, 3. Obergeschoss links".into(),
        "64823 Groß-Umstadt".into(),
    ];
    let text = pdf_text(&render_pdf(&doc).unwrap().bytes);
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "Niederlassung Groß-Umstadt-Süd",
        "3. Obergeschoss links",
        "64823 Groß-Umstadt",
    ] {
        assert!(flat.contains(needle), "{needle:?} missing:\n{text}");
    }
    assert!(!text.contains('…'), "{text}");
}

#[test]
fn three_pages_stay_small() {
    let doc = big_doc(130);
    let pdf = render_pdf(&doc).unwrap();
    assert_eq!(pdf.pages, 3);
    assert!(pdf.bytes.len() <= 40 * 1024, "{} bytes", pdf.bytes.len());
}

#[test]
fn numbers_in_content_streams_are_short_and_exact() {
    for (v, expected) in [
        (0, "0"),
        (5, "0.05"),
        (50, "0.5"),
        (1234, "12.34"),
        (1200, "12"),
        (-325, "-3.25"),
        (-30, "-0.3"),
        (84188, "841.88"),
    ] {
        let mut buf = Vec::new();
        super::put_hundredths(&mut buf, v);
        assert_eq!(String::from_utf8(buf).unwrap(), expected, "{v}");
    }
}

/// Issue #11: the CSV holds exactly the PDF's rows (same order, text and amounts), under the
/// PDF's calling-line headings, UTF-8 with BOM, `;`, decimal comma, and parses back.
#[test]
fn csv_rows_equal_pdf_rows() {
    for doc in [small_doc(), big_doc(130)] {
        let csv = crate::render_csv(&doc);
        assert!(csv.starts_with("\u{feff}".as_bytes()), "BOM");
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(b';')
            .from_reader(&csv[3..]);
        assert_eq!(reader.headers().unwrap(), crate::CSV_HEADER.as_slice());
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();

        let text = pdf_text(&render_pdf(&doc).unwrap().bytes);
        let mut line = String::new();
        let mut pdf_rows = Vec::new();
        for l in text.lines() {
            let t = l.trim();
            if let Some(n) = t.strip_prefix("Anschluss ") {
                line = n.trim_end_matches(" (Fortsetzung)").to_owned();
            } else if parse_row(l).is_some() {
                pdf_rows.push((line.clone(), l));
            }
        }
        assert_eq!(records.len(), pdf_rows.len());
        assert_eq!(records.len(), doc.itemised());
        let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        for (rec, (line, pdf)) in records.iter().zip(&pdf_rows) {
            let csv_row = format!(
                "{} {} {} {} {} {} {} €",
                &rec[0], &rec[2], &rec[3], &rec[4], &rec[5], &rec[6], &rec[7]
            );
            // The PDF groups thousands with dots (`1.234,56 €`); the CSV writes plain numbers.
            assert_eq!(
                squash(pdf).replace('.', ""),
                squash(&csv_row).replace('.', "")
            );
            assert_eq!(&rec[1], line.as_str());
        }
    }
    // Amounts are numbers a German spreadsheet reads: decimal comma, no unit, no grouping.
    let csv = String::from_utf8(crate::render_csv(&small_doc())).unwrap();
    assert!(
        csv.contains(";0033 123456789;Ausland EU;18,00\r\n"),
        "{csv}"
    );
    assert!(
        csv.contains(
            "\r\n3;089 123457;02.11.2026;08:59:01;0:01:01;0176 12345xxx;Mobilfunk;0,18\r\n"
        ),
        "{csv}"
    );
    assert!(!csv.contains("7654321"), "the counselling row is absent");
}

/// Both faces embedded, marked as subsets (`EVNREG+`), with ToUnicode maps (`uni yes`), as
/// `pdffonts` reports them; and the file parses with lopdf too, not just with poppler.
#[test]
fn fonts_are_embedded_subsets_with_unicode_maps() {
    let pdf = render_pdf(&small_doc()).unwrap();
    let lo = lopdf::Document::load_mem(&pdf.bytes).unwrap();
    assert_eq!(lo.get_pages().len(), pdf.pages);
    let path = scratch("fonts.pdf");
    std::fs::write(&path, &pdf.bytes).unwrap();
    let out = Command::new("pdffonts").arg(&path).output().unwrap();
    std::fs::remove_file(&path).ok();
    let text = String::from_utf8(out.stdout).unwrap();
    for name in ["EVNREG+DejaVuSans ", "EVNBLD+DejaVuSans-Bold "] {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{text}"));
        let flags: Vec<&str> = line.split_whitespace().collect();
        // name, type (2 words), encoding, emb, sub, uni, object id (2)
        assert_eq!(&flags[4..7], ["yes", "yes", "yes"], "{line}");
    }
}

/// Issue #11: a protected EVN opens in poppler only with the customer's password (pdftotext
/// with `-upw`), is AES-256 (pdfinfo), and with the password reads exactly like the plain one.
#[test]
fn protected_evn_opens_only_with_the_password() {
    let plain = render_pdf(&small_doc()).unwrap();
    let keys = crate::ProtectionKeys {
        file_key: [7; 32],
        owner_password: "0123456789abcdef0123456789abcdef".into(),
    };
    let password = "Kunden-Passwort ä 42";
    let protected = crate::protect_pdf(&plain.bytes, password, &keys).unwrap();
    assert!(protected.starts_with(b"%PDF-2.0"));
    for needle in ["Größler", "0151", "Seite 1"] {
        assert!(!protected
            .windows(needle.len())
            .any(|w| w == needle.as_bytes()));
    }
    let path = scratch("protected.pdf");
    std::fs::write(&path, &protected).unwrap();
    let run = |args: &[&str]| {
        Command::new(args[0])
            .args(&args[1..])
            .arg(&path)
            .args(if args[0] == "pdftotext" {
                vec!["-"]
            } else {
                vec![]
            })
            .output()
            .unwrap()
    };
    let refused = run(&["pdftotext", "-upw", "falsch"]);
    assert!(!refused.status.success());
    let nothing = run(&["pdftotext"]);
    assert!(!nothing.status.success());
    let opened = run(&["pdftotext", "-layout", "-enc", "UTF-8", "-upw", password]);
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    assert_eq!(
        String::from_utf8(opened.stdout).unwrap(),
        pdf_text(&plain.bytes)
    );
    let info = run(&["pdfinfo", "-upw", password]);
    let info = String::from_utf8(info.stdout).unwrap();
    assert!(
        info.lines()
            .any(|l| l.starts_with("Encrypted:") && l.contains("AES-256")),
        "{info}"
    );
    std::fs::remove_file(&path).ok();
    assert!(crate::protect_pdf(&plain.bytes, "", &keys).is_err());
}
