//! Billing runs on a temp folder with calls written through evn-store and the shipped example
//! configuration; PDFs are read back with poppler's `pdftotext` (installed by `.ci/run`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use evn_store::{StoredCall, WriteOptions};

use super::*;

fn config() -> Config {
    Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/config")).unwrap()
}

fn nov() -> BillingMonth {
    "2026-11".parse().unwrap()
}

fn created() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
}

#[allow(clippy::too_many_arguments)]
fn call(
    id: &str,
    customer: &str,
    start: &str,
    called: &str,
    zone: &str,
    charge: &str,
    counselling: bool,
) -> StoredCall {
    let start_time = DateTime::<Utc>::from_str(start).unwrap();
    StoredCall {
        call: RatedCall {
            cdr_id: id.into(),
            switch_id: "fra1".into(),
            customer_id: customer.into(),
            calling_number: "+4989123456".into(),
            called_number: called.into(),
            start_time,
            duration_s: 125,
            zone: zone.into(),
            charge_eur: Decimal::from_str(charge).unwrap(),
            billing_month: BillingMonth::of(start_time),
            plan: "office_basic".into(),
            shortened: called.ends_with('x'),
            counselling,
        },
        source_topic: "cdrs".into(),
        source_partition: 0,
        source_offset: 0,
        provenance: None,
    }
}

/// Writes `rows` as one Parquet file into the folder of their (first row's) billing month.
fn write(data: &Path, name: &str, rows: &[StoredCall]) {
    let month = rows.first().map_or(nov(), |r| r.call.billing_month);
    write_in(data, month, name, rows);
}

fn write_in(data: &Path, month: BillingMonth, name: &str, rows: &[StoredCall]) {
    let dir = evn_store::month_dir(data, month);
    std::fs::create_dir_all(&dir).unwrap();
    evn_store::write_file(&dir.join(name), rows, WriteOptions::default()).unwrap();
}

/// The CSV's rows (header checked, BOM stripped), parsed back with the csv crate.
fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let bytes = std::fs::read(path).unwrap();
    let body = bytes
        .strip_prefix("\u{feff}".as_bytes())
        .expect("UTF-8 byte order mark");
    let mut r = csv::ReaderBuilder::new().delimiter(b';').from_reader(body);
    assert_eq!(r.headers().unwrap(), evn_render::CSV_HEADER.as_slice());
    r.records()
        .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// Every file name in a folder.
fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    n.sort();
    n
}

fn november() -> Vec<StoredCall> {
    vec![
        call(
            "c1",
            "K1001",
            "2026-11-03T09:00:00Z",
            "+4915112345678",
            "mobile",
            "0.3228",
            false,
        ),
        // After K1001 switched to shortened numbers on 15 November.
        call(
            "c2",
            "K1001",
            "2026-11-20T09:00:00Z",
            "+4917612345xxx",
            "mobile",
            "0.3228",
            false,
        ),
        call(
            "c3",
            "K1002",
            "2026-11-05T10:00:00Z",
            "+33123456789",
            "eu",
            "0.6042",
            false,
        ),
        // Counselling, flagged at ingest.
        call(
            "c4",
            "K1002",
            "2026-11-06T10:00:00Z",
            "+498001110111",
            "freephone",
            "0.0000",
            true,
        ),
        // Counselling on a landline, stored before the list knew it: hidden by today's list.
        call(
            "c5",
            "K1002",
            "2026-11-07T10:00:00Z",
            "+49301234567",
            "landline",
            "0.0604",
            false,
        ),
        // Shortened notation of the same counselling number, flagged.
        call(
            "c6",
            "K1002",
            "2026-11-08T10:00:00Z",
            "+49301234xxx",
            "landline",
            "0.0604",
            true,
        ),
        // A duplicate that reached storage: billed once.
        call(
            "c3",
            "K1002",
            "2026-11-05T10:00:00Z",
            "+33123456789",
            "eu",
            "0.6042",
            false,
        ),
        // DST night (October) does not belong here; month boundary: 1 Nov 00:00 Berlin does.
        call(
            "c7",
            "K1002",
            "2026-10-31T23:00:00Z",
            "+4915112345670",
            "mobile",
            "0.3729",
            false,
        ),
        // EVN off: no PDF.
        call(
            "c8",
            "K1004",
            "2026-11-09T10:00:00Z",
            "+4915112345678",
            "mobile",
            "0.3728",
            false,
        ),
        call(
            "c9",
            "K1005",
            "2026-11-10T10:00:00Z",
            "+4915112345678",
            "mobile",
            "0.3728",
            false,
        ),
    ]
}

fn pdf_text(path: &Path) -> String {
    let out = Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils) must be installed: apt-get install -y poppler-utils");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// Every file under `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let meta = std::fs::metadata(&p).unwrap();
        out.insert(
            p.clone(),
            (std::fs::read(&p).unwrap(), meta.modified().unwrap()),
        );
    }
    out
}

#[test]
fn evn_on_customers_get_pdf_and_csv_without_counselling_rows_and_reruns_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    write(&data, "a.parquet", &november());
    let cfg = config();
    let opts = BillOptions::new(created());
    let report = run(&cfg, &data, nov(), &out, &opts).unwrap();
    let dir = out.join("2026-11");
    assert_eq!(report.dir, dir);
    let ids: Vec<&str> = report
        .customers
        .iter()
        .map(|c| c.customer_id.as_str())
        .collect();
    // K1003 has no calls but its EVN is on; K1004's is off; K1005's was switched on 1 Nov.
    assert_eq!(ids, ["K1001", "K1002", "K1003", "K1005"]);
    assert_eq!(report.evn_off, ["K1004"]);
    assert_eq!(report.duplicates, 1);
    assert!(!dir.join("K1004.pdf").exists());
    for id in ids {
        assert!(dir.join(format!("{id}.pdf")).is_file());
        assert!(dir.join(format!("{id}.v1.pdf")).is_file());
    }

    let text = pdf_text(&dir.join("K1002.pdf"));
    // The example provider's own phone number happens to start like the example counselling
    // number; it is the header, not a row.
    let text: String = text
        .lines()
        .filter(|l| !l.contains("Tel. 030 1234567-0"))
        .collect::<Vec<_>>()
        .join("\n");
    for hidden in [
        "0800 1110111",
        "08001110111",
        "+498001110111",
        "030 1234567",
        "0301234567",
        "030 1234xxx",
        "+49301234",
        "06.11.2026",
        "07.11.2026",
        "08.11.2026",
    ] {
        assert!(!text.contains(hidden), "{hidden} leaked:\n{text}");
    }
    assert!(text.contains("Bäckerei Größler e.K."));
    assert!(text.contains("0033 123456789"));
    // c7 starts 1 Nov 00:00 in Berlin.
    assert!(text
        .lines()
        .any(|l| l.contains("01.11.2026") && l.contains("00:00:00")));
    // 0.6042 + 0.3729 printed and summed; 3 hidden calls worth 0.1208 in no count or sum of
    // the EVN; the duplicate once.
    assert!(
        !text.contains("Nicht einzeln aufgeführte Verbindungen"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("Gesamtsumme (netto)")
            && l.contains(" 2 ")
            && l.contains("0,98 €")),
        "{text}"
    );
    let k1003 = pdf_text(&dir.join("K1003.pdf"));
    assert!(k1003.contains("keine Verbindungen angefallen, die einzeln"));
    assert!(k1003.contains("Özdemir Logistik GmbH & Co. KG"));
    let k1001 = pdf_text(&dir.join("K1001.pdf"));
    assert!(k1001.contains("0176 12345xxx") && k1001.contains("gekürzt"));
    // Shortened from 15 November: the notice says so, as the row of 3 November is in full.
    let flat = k1001.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("Zielrufnummern ab dem 15.11.2026 um die letzten drei Ziffern gekürzt"),
        "{k1001}"
    );
    assert!(k1001.contains("(Festnetz national)"));

    // Issue #11: a CSV next to every PDF, with exactly its rows.
    let rows = csv_rows(&dir.join("K1002.csv"));
    assert_eq!(
        rows,
        [
            [
                "1",
                "089 123456",
                "01.11.2026",
                "00:00:00",
                "0:02:05",
                "0151 12345670",
                "Mobilfunk",
                "0,37"
            ],
            [
                "2",
                "089 123456",
                "05.11.2026",
                "11:00:00",
                "0:02:05",
                "0033 123456789",
                "Ausland EU",
                "0,60"
            ],
        ]
    );
    assert!(csv_rows(&dir.join("K1003.csv")).is_empty());
    assert_eq!(csv_rows(&dir.join("K1001.csv"))[1][5], "0176 12345xxx");
    assert_eq!(
        std::fs::read(dir.join("K1002.csv")).unwrap(),
        std::fs::read(dir.join("K1002.v1.csv")).unwrap()
    );

    let m = Manifest::read(&dir.join(MANIFEST_FILE)).unwrap().unwrap();
    assert_eq!(m.customers.len(), 4);
    let e = &m.customers["K1002"];
    assert_eq!((e.connections, e.billed_connections, e.version), (2, 5, 1));
    assert_eq!(e.total, "0.9771");
    assert_eq!(e.total_printed, "0.98");
    assert_eq!(e.billed_total.as_deref(), Some("1.0979"));
    assert_eq!(
        e.sha256,
        sha256_hex(&std::fs::read(dir.join("K1002.pdf")).unwrap())
    );
    assert_eq!(e.csv_file.as_deref(), Some("K1002.csv"));
    assert_eq!(
        e.csv_sha256.as_deref(),
        Some(sha256_hex(&std::fs::read(dir.join("K1002.csv")).unwrap()).as_str())
    );
    assert_eq!(e.versions[0].csv_file.as_deref(), Some("K1002.v1.csv"));
    // Nothing half-written or temporary is left behind; the run's lock file stays (removing
    // it would race with the next run's open).
    assert!(
        names(&dir)
            .iter()
            .all(|n| !n.starts_with('.') || n == MONTH_LOCK),
        "{:?}",
        names(&dir)
    );
    assert_eq!(m.counselling_version, cfg.counselling.version);

    // Same data and config, another day: nothing new, not even the manifest.
    let before = snapshot(&dir);
    let later = BillOptions::new(NaiveDate::from_ymd_opt(2027, 1, 5).unwrap());
    let again = run(&cfg, &data, nov(), &out, &later).unwrap();
    assert_eq!(again.written(), 0);
    assert!(!again.manifest_written);
    assert_eq!(snapshot(&dir), before);
}

/// DOMAIN.md: late CDRs make a new, numbered version; what a customer may have downloaded
/// (version 1, PDF and CSV) stays as it was, and the manifest lists both versions.
#[test]
fn late_cdr_makes_version_2_and_keeps_version_1() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    write(&data, "a.parquet", &november());
    let cfg = config();
    run(&cfg, &data, nov(), &out, &BillOptions::new(created())).unwrap();
    let dir = out.join("2026-11");
    let before = snapshot(&dir);
    let later = BillOptions::new(NaiveDate::from_ymd_opt(2027, 1, 5).unwrap());
    // A late CDR for K1002: version 2, version 1 kept, others untouched.
    write(
        &data,
        "b.parquet",
        &[call(
            "c10",
            "K1002",
            "2026-11-28T10:00:00Z",
            "+4915112345678",
            "mobile",
            "0.3728",
            false,
        )],
    );
    let third = run(&cfg, &data, nov(), &out, &later).unwrap();
    assert_eq!(third.written(), 1);
    let k = third
        .customers
        .iter()
        .find(|c| c.customer_id == "K1002")
        .unwrap();
    assert_eq!(
        k.outcome,
        Outcome::Written {
            version: 2,
            pages: 1
        }
    );
    assert_eq!(
        std::fs::read(dir.join("K1002.v1.pdf")).unwrap(),
        before[&dir.join("K1002.v1.pdf")].0
    );
    assert_eq!(
        std::fs::read(dir.join("K1002.pdf")).unwrap(),
        std::fs::read(dir.join("K1002.v2.pdf")).unwrap()
    );
    assert!(pdf_text(&dir.join("K1002.pdf")).contains("28.11.2026"));
    let m = Manifest::read(&dir.join(MANIFEST_FILE)).unwrap().unwrap();
    let e = &m.customers["K1002"];
    assert_eq!(e.version, 2);
    assert_eq!(
        e.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(e.versions[1].created, "2027-01-05");
    assert_eq!(m.customers["K1001"].version, 1);
    assert_eq!(
        std::fs::read(dir.join("K1002.v1.csv")).unwrap(),
        before[&dir.join("K1002.v1.csv")].0
    );
    assert_eq!(csv_rows(&dir.join("K1002.v1.csv")).len(), 2);
    assert_eq!(csv_rows(&dir.join("K1002.csv")).len(), 3);
    assert_eq!(e.versions[1].csv_file.as_deref(), Some("K1002.v2.csv"));
    // Untouched customers keep their files byte for byte (same inode and time, even).
    assert_eq!(
        snapshot(&dir)[&dir.join("K1001.pdf")],
        before[&dir.join("K1001.pdf")]
    );
}

/// `edit` applied to one file of `dir`, a copy of the example configuration made on first use.
fn edited_config(dir: &Path, file: &str, edit: impl Fn(String) -> String) -> Config {
    if !dir.exists() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/config");
        std::fs::create_dir_all(dir).unwrap();
        for entry in std::fs::read_dir(&src).unwrap() {
            let p = entry.unwrap().path();
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit changed nothing");
    std::fs::write(dir.join(file), edited).unwrap();
    Config::load(dir).unwrap()
}

/// DOMAIN.md: the billing team re-runs the month when a corrected tariff arrives. The re-run
/// bills the corrected charges as version 2 and names the configuration it used; a customer's
/// late request for shortened numbers (its row's `valid_from` before calls stored in full)
/// shortens them in the re-run; a zone the corrected plan puts under its flatrate is neither
/// billed nor itemised.
#[test]
fn rerun_with_corrected_configuration_bills_what_it_says() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    write(&data, "a.parquet", &november());
    run(&config(), &data, nov(), &out, &BillOptions::new(created())).unwrap();
    let dir = out.join("2026-11");
    let v1 = Manifest::read(&dir.join(MANIFEST_FILE)).unwrap().unwrap();
    assert_eq!(v1.customers["K1002"].total, "0.9771");
    assert!(pdf_text(&dir.join("K1002.pdf")).contains("0033 123456789"));

    // EU calls at 0,3900 instead of 0,2900 €/min for office_basic; K1002 asks for shortened
    // numbers from 1 November.
    let cfg_dir = tmp.path().join("config");
    edited_config(&cfg_dir, "tariffs.toml", |t| {
        let basic = t.find("[plans.office_basic.rates]").unwrap();
        let (head, tail) = t.split_at(basic);
        format!(
            "{head}{}",
            tail.replacen(
                r#"eu        = { per_minute = "0.2900""#,
                r#"eu        = { per_minute = "0.3900""#,
                1
            )
        )
    });
    let corrected = edited_config(&cfg_dir, "customers.csv", |c| {
        format!("{c}K1002,Bäckerei Größler e.K.,Schloßallee 12,80331,München,office_basic,true,true,2026-11-01\n")
    });
    let later = BillOptions::new(NaiveDate::from_ymd_opt(2026, 12, 10).unwrap());
    run(&corrected, &data, nov(), &out, &later).unwrap();
    let m = Manifest::read(&dir.join(MANIFEST_FILE)).unwrap().unwrap();
    let e = &m.customers["K1002"];
    assert_eq!(e.version, 2);
    // The EU call at 0,3900 × 125 / 60 = 0,8125 instead of 0,6042, the rest unchanged.
    assert_eq!(e.total, "1.1854");
    assert_eq!(e.billed_total.as_deref(), Some("1.3062"));
    assert_eq!(m.config_version, corrected.version);
    let text = pdf_text(&dir.join("K1002.pdf"));
    assert!(text.contains("0,81 €"), "{text}");
    assert!(text.contains("0033 123456xxx"), "{text}");
    assert!(!text.contains("0033 123456789"), "{text}");
    assert!(
        text.contains(&corrected.version),
        "the EVN names its configuration"
    );
    let rows = csv_rows(&dir.join("K1002.csv"));
    assert!(rows
        .iter()
        .all(|r| !r.contains(&"0033 123456789".to_owned())));
    // Version 1 stays as it was sent.
    assert!(pdf_text(&dir.join("K1002.v1.pdf")).contains("0033 123456789"));

    // A plan whose flatrate now covers mobile calls: K1002's one mobile call (0,3729 €) leaves
    // the bill and the list.
    let flat = edited_config(&tmp.path().join("config2"), "tariffs.toml", |t| {
        t.replacen(
            "[plans.office_basic]\n",
            "[plans.office_basic]\nflatrate = [\"mobile\"]\n",
            1,
        )
    });
    run(&flat, &data, nov(), &out, &later).unwrap();
    let m = Manifest::read(&dir.join(MANIFEST_FILE)).unwrap().unwrap();
    let e = &m.customers["K1002"];
    assert_eq!(e.version, 3);
    assert_eq!(e.total, "0.6042");
    assert_eq!(e.billed_total.as_deref(), Some("0.7250"));
    let text = pdf_text(&dir.join("K1002.pdf"));
    assert!(!text.contains("0151 12345670"), "{text}");
    assert!(
        text.contains("Mobilfunk"),
        "the flatrate notice names the zone: {text}"
    );
}

/// Memory bound: with a row budget of 2 the month is spilled to disk and billed bucket by
/// bucket; the EVNs are byte-identical to the in-memory run's, as are shards'.
#[test]
fn spilled_and_sharded_runs_give_the_same_evns() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write(&data, "a.parquet", &november());
    let cfg = config();
    let whole = run(
        &cfg,
        &data,
        nov(),
        &tmp.path().join("whole"),
        &BillOptions::new(created()),
    )
    .unwrap();
    assert!(!whole.spilled);
    let mut small = BillOptions::new(created());
    small.row_budget = 2;
    let spilled = run(&cfg, &data, nov(), &tmp.path().join("chunked"), &small).unwrap();
    assert!(spilled.spilled);
    assert_eq!(spilled.duplicates, whole.duplicates);
    // The spill folder is gone: only the month folder is left.
    assert_eq!(names(&tmp.path().join("chunked")), ["2026-11"]);
    for s in 0..3 {
        let mut o = BillOptions::new(created());
        o.shard = Some(format!("{s}/3").parse().unwrap());
        run(&cfg, &data, nov(), &tmp.path().join("sharded"), &o).unwrap();
    }
    merge_shard_manifests(&tmp.path().join("sharded"), nov()).unwrap();
    for c in &whole.customers {
        let name = format!("2026-11/{}.pdf", c.customer_id);
        let a = std::fs::read(tmp.path().join("whole").join(&name)).unwrap();
        assert_eq!(
            a,
            std::fs::read(tmp.path().join("chunked").join(&name)).unwrap()
        );
        let csv = format!("2026-11/{}.csv", c.customer_id);
        assert_eq!(
            std::fs::read(tmp.path().join("whole").join(&csv)).unwrap(),
            std::fs::read(tmp.path().join("chunked").join(&csv)).unwrap()
        );
        assert_eq!(
            a,
            std::fs::read(tmp.path().join("sharded").join(&name)).unwrap()
        );
    }
    let merged = Manifest::read(&tmp.path().join("sharded/2026-11/manifest.json"))
        .unwrap()
        .unwrap();
    assert_eq!(merged.customers.len(), whole.customers.len());

    let mut one = BillOptions::new(created());
    one.customer = Some("K1002".into());
    let r = run(&cfg, &data, nov(), &tmp.path().join("one"), &one).unwrap();
    assert_eq!(r.customers.len(), 1);
    assert!(!tmp.path().join("one/2026-11/K1001.pdf").exists());
}

#[test]
fn month_without_data_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    let e = run(&config(), &data, nov(), &out, &BillOptions::new(created())).unwrap_err();
    assert!(matches!(e, BillError::NoData { .. }), "{e}");
    assert!(e.to_string().contains("billing_month=2026-11"), "{e}");
    assert!(e.to_string().contains("run ingest first"), "{e}");
    assert_eq!(e.exit_code(), 1);
    assert!(!out.exists());
}

/// Data the configuration cannot bill (an unknown customer, a zone tariffs.toml lacks) is a
/// configuration error (exit 2), found before anything is written, also when the month is
/// big enough to be spilled.
#[test]
fn config_not_matching_the_data_is_exit_2_and_writes_nothing() {
    let cfg = config();
    for (bad, expected) in [
        (
            call(
                "x1",
                "K9999",
                "2026-11-09T10:00:00Z",
                "+4915112345678",
                "mobile",
                "0.3728",
                false,
            ),
            "K9999",
        ),
        (
            call(
                "x2",
                "K1002",
                "2026-11-09T10:00:00Z",
                "+8816123456",
                "satellite",
                "9.9000",
                false,
            ),
            "zone `satellite`",
        ),
    ] {
        for budget in [DEFAULT_ROW_BUDGET, 1] {
            let tmp = tempfile::tempdir().unwrap();
            let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
            write(&data, "a.parquet", &november());
            write(&data, "b.parquet", std::slice::from_ref(&bad));
            let mut opts = BillOptions::new(created());
            opts.row_budget = budget;
            let e = run(&cfg, &data, nov(), &out, &opts).unwrap_err();
            assert!(matches!(&e, BillError::ConfigMismatch { .. }), "{e}");
            assert!(e.to_string().contains(expected), "{e}");
            assert!(e.to_string().contains("b.parquet"), "{e}");
            assert_eq!(e.exit_code(), 2);
            assert!(!out.exists(), "nothing written on a config mismatch");
        }
    }
}

/// A missing (dangling), corrupt or truncated Parquet file: a runtime error naming the file,
/// and neither new files nor changes to an earlier run's output.
#[test]
fn missing_or_corrupt_parquet_is_an_error_and_changes_nothing() {
    let cfg = config();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write(&data, "a.parquet", &november());
    let dir = evn_store::month_dir(&data, nov());
    let good = std::fs::read(dir.join("a.parquet")).unwrap();

    let fresh = tmp.path().join("fresh");
    let billed = tmp.path().join("billed");
    run(&cfg, &data, nov(), &billed, &BillOptions::new(created())).unwrap();
    let before = snapshot(&billed.join("2026-11"));

    type Breakage = fn(&Path, &[u8]);
    let breakages: [(&str, Breakage); 3] = [
        ("garbage", |p, _| std::fs::write(p, b"not parquet").unwrap()),
        ("truncated", |p, good| {
            std::fs::write(p, &good[..good.len() / 2]).unwrap()
        }),
        ("missing", |p, _| {
            std::os::unix::fs::symlink("gone.parquet", p).unwrap();
        }),
    ];
    for (what, breakage) in breakages {
        let bad = dir.join("b.parquet");
        breakage(&bad, &good);
        for budget in [DEFAULT_ROW_BUDGET, 1] {
            let mut opts = BillOptions::new(NaiveDate::from_ymd_opt(2027, 1, 5).unwrap());
            opts.row_budget = budget;
            let e = run(&cfg, &data, nov(), &fresh, &opts).unwrap_err();
            assert!(e.to_string().contains("b.parquet"), "{what}: {e}");
            assert_eq!(e.exit_code(), 1, "{what}");
            assert!(!fresh.exists(), "{what}: nothing written");
            run(&cfg, &data, nov(), &billed, &opts).unwrap_err();
            assert_eq!(snapshot(&billed.join("2026-11")), before, "{what}");
            assert_eq!(names(&billed), ["2026-11"], "{what}: no spill folder left");
        }
        std::fs::remove_file(&bad).unwrap();
    }
}

/// A row whose Berlin start is in another month than its folder (moved by hand, or damaged
/// data) stops the run: it would otherwise be billed in the wrong month.
#[test]
fn row_in_the_wrong_month_folder_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    write(&data, "a.parquet", &november());
    // 31 October 23:59:59 in Berlin: October, stored under November.
    let october = call(
        "x3",
        "K1002",
        "2026-10-31T22:59:59Z",
        "+4915112345678",
        "mobile",
        "0.3728",
        false,
    );
    write_in(&data, nov(), "b.parquet", &[october]);
    let e = run(&config(), &data, nov(), &out, &BillOptions::new(created())).unwrap_err();
    assert!(
        matches!(&e, BillError::MisplacedRow { row_month, .. } if row_month.to_string() == "2026-10"),
        "{e}"
    );
    assert!(e.to_string().contains("fra1/x3"), "{e}");
    assert_eq!(e.exit_code(), 1);
    assert!(!out.exists());
}

#[test]
fn customer_and_shard_arguments_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    write(&data, "a.parquet", &november());
    let mut o = BillOptions::new(created());
    o.customer = Some("K0000".into());
    let e = run(&config(), &data, nov(), &out, &o).unwrap_err();
    assert!(matches!(e, BillError::NoSuchCustomer { .. }), "{e}");
    assert_eq!(e.exit_code(), 2);
    assert!(!out.exists());
    assert!("3/3".parse::<Shard>().is_err());
    assert!("1/0".parse::<Shard>().is_err());
    assert_eq!("1/0".parse::<Shard>().unwrap_err().exit_code(), 2);
    assert_eq!(
        "1/4".parse::<Shard>().unwrap(),
        Shard { index: 1, count: 4 }
    );
}

/// Month boundary and DST: each call lands in the EVN of its Berlin month, at its Berlin
/// wall-clock time, in UTC order (the repeated autumn hour prints 02:30:00 twice).
#[test]
fn month_boundary_and_dst_calls_are_in_the_right_evn() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    let oct: BillingMonth = "2026-10".parse().unwrap();
    let rows = |ids: &[(&str, &str)]| -> Vec<StoredCall> {
        ids.iter()
            .map(|(id, t)| call(id, "K1002", t, "+4915112345678", "mobile", "0.1000", false))
            .collect()
    };
    // October in Berlin: the two 02:30 of 25 October (CEST, then CET: printed with A and B),
    // and 31 October 23:59:59 CET.
    let october = rows(&[
        ("d1", "2026-10-25T01:30:00Z"),
        ("d2", "2026-10-25T00:30:00Z"),
        ("d3", "2026-10-31T22:59:59Z"),
    ]);
    // November in Berlin: 1 November 00:00:00 and 30 November 23:59:59.
    let november = rows(&[
        ("n1", "2026-10-31T23:00:00Z"),
        ("n2", "2026-11-30T22:59:59Z"),
    ]);
    for r in october.iter().chain(&november) {
        assert_eq!(r.call.billing_month, BillingMonth::of(r.call.start_time));
    }
    write(&data, "oct.parquet", &october);
    write(&data, "nov.parquet", &november);
    let cfg = config();
    for month in [oct, nov()] {
        run(&cfg, &data, month, &out, &BillOptions::new(created())).unwrap();
    }
    let rows_of = |month: &str| -> Vec<(String, String)> {
        csv_rows(&out.join(month).join("K1002.csv"))
            .into_iter()
            .map(|r| (r[2].clone(), r[3].clone()))
            .collect()
    };
    let pair = |d: &str, t: &str| (d.to_owned(), t.to_owned());
    assert_eq!(
        rows_of("2026-10"),
        [
            pair("25.10.2026", "02:30:00 A"),
            pair("25.10.2026", "02:30:00 B"),
            pair("31.10.2026", "23:59:59"),
        ]
    );
    assert_eq!(
        rows_of("2026-11"),
        [
            pair("01.11.2026", "00:00:00"),
            pair("30.11.2026", "23:59:59")
        ]
    );
    let text = pdf_text(&out.join("2026-10/K1002.pdf"));
    assert!(
        text.contains("Abrechnungszeitraum 01.10.2026 – 31.10.2026"),
        "{text}"
    );
    assert!(!text.contains("01.11.2026 "), "{text}");
    let text = pdf_text(&out.join("2026-11/K1002.pdf"));
    assert!(!text.contains("31.10.2026"), "{text}");
}

/// Counselling calls are absent from the PDF and the CSV in whatever notation they were
/// stored (E.164, national short code, shortened either way; flagged at ingest or only
/// known to today's list), and their charges are in the total.
#[test]
fn counselling_rows_are_absent_in_every_notation() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    let hidden = [
        ("h1", "+498001110111", true),
        ("h2", "+498001110222", false),
        ("h3", "116123", false),
        ("h4", "116xxx", false),
        ("h5", "+498001110xxx", false),
        ("h6", "+49301234567", false),
        ("h7", "+49301234xxx", false),
        ("h8", "116111", false),
        ("h9", "+498001110550", false),
        // Short codes as switches that write every number in E.164 send them.
        ("h10", "+49116123", false),
        ("h11", "+49116xxx", false),
    ];
    let mut rows: Vec<StoredCall> = hidden
        .iter()
        .enumerate()
        .map(|(i, (id, number, flagged))| {
            let t = format!("2026-11-{:02}T10:00:00Z", i + 2);
            call(id, "K1002", &t, number, "landline", "0.1000", *flagged)
        })
        .collect();
    rows.push(call(
        "v1",
        "K1002",
        "2026-11-20T10:00:00Z",
        "+4915112345678",
        "mobile",
        "0.2500",
        false,
    ));
    write(&data, "a.parquet", &rows);
    run(&config(), &data, nov(), &out, &BillOptions::new(created())).unwrap();
    let dir = out.join("2026-11");
    let text: String = pdf_text(&dir.join("K1002.pdf"))
        .lines()
        .filter(|l| !l.contains("Tel. 030 1234567-0"))
        .collect::<Vec<_>>()
        .join("\n");
    let csv = String::from_utf8(std::fs::read(dir.join("K1002.csv")).unwrap()).unwrap();
    for needle in [
        "0800 1110",
        "08001110",
        "+49800",
        "116",
        "030 1234",
        "0301234",
        "+4930",
        "02.11.",
        "03.11.",
        "04.11.",
        "05.11.",
        "06.11.",
        "07.11.",
        "08.11.",
        "09.11.",
        "10.11.",
        "11.11.",
        "12.11.",
    ] {
        assert!(
            !text.contains(needle),
            "{needle} leaked into the PDF:\n{text}"
        );
        assert!(
            !csv.contains(needle),
            "{needle} leaked into the CSV:\n{csv}"
        );
    }
    assert_eq!(csv_rows(&dir.join("K1002.csv")).len(), 1);
    // Rated with today's tariff (K1002, 125 s, 60/1) and, where stored in full, today's zones:
    // the 0800 and 116 numbers are free, the 030 number and `+49116123` (landline by prefix)
    // and the four shortened ones keep landline, 6 × 0,0604 € hidden, in the billing record
    // only; 0,3729 € mobile shown, the EVN's total.
    assert!(
        !text.contains("0,74 €") && text.contains("0,37 €"),
        "{text}"
    );
    let m = Manifest::read(&dir.join(MANIFEST_FILE)).unwrap().unwrap();
    let e = &m.customers["K1002"];
    assert_eq!((e.connections, e.billed_connections), (1, 12));
    assert_eq!(e.total, "0.3729");
    assert_eq!(e.billed_total.as_deref(), Some("0.7353"));
}

/// K1003's plan covers landline and mobile: nothing of it is stored, yet its EVN is on, so it
/// gets an EVN (PDF and an empty CSV) saying there is nothing to itemise, and why.
#[test]
fn all_flatrate_customer_gets_an_evn_that_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    write(&data, "a.parquet", &november());
    let report = run(&config(), &data, nov(), &out, &BillOptions::new(created())).unwrap();
    let k = report
        .customers
        .iter()
        .find(|c| c.customer_id == "K1003")
        .unwrap();
    assert_eq!((k.connections, k.total), (0, Decimal::ZERO));
    let text = pdf_text(&out.join("2026-11/K1003.pdf"));
    assert!(
        text.contains("keine Verbindungen angefallen, die einzeln"),
        "{text}"
    );
    assert!(text.contains("Pauschaltarif (Flatrate)"), "{text}");
    assert!(text.contains("(Festnetz national, Mobilfunk)"), "{text}");
    assert!(text.contains("Özdemir Logistik GmbH & Co. KG"));
    assert!(csv_rows(&out.join("2026-11/K1003.csv")).is_empty());
}

/// K1004's EVN is off: its calls are read (and checked) but it gets no file and no manifest
/// entry; the report counts it.
#[test]
fn evn_off_customer_gets_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    write(&data, "a.parquet", &november());
    let report = run(&config(), &data, nov(), &out, &BillOptions::new(created())).unwrap();
    assert_eq!(report.evn_off, ["K1004"]);
    assert!(names(&out.join("2026-11"))
        .iter()
        .all(|n| !n.starts_with("K1004")));
    let m = Manifest::read(&out.join("2026-11").join(MANIFEST_FILE))
        .unwrap()
        .unwrap();
    assert!(!m.customers.contains_key("K1004"));
    // Asked for by name, still nothing.
    let mut one = BillOptions::new(created());
    one.customer = Some("K1004".into());
    let r = run(&config(), &data, nov(), &tmp.path().join("one"), &one).unwrap();
    assert!(r.customers.is_empty());
    assert_eq!(r.evn_off, ["K1004"]);
}

/// A customer with 5,000 connections (spilled, too): every row in the PDF once, in order,
/// 80+ pages numbered "Seite x von y", the total on the last page; the CSV has every row.
#[test]
fn five_thousand_row_customer_renders_completely() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    let rows: Vec<StoredCall> = (0..5000)
        .map(|i| {
            let t = DateTime::from_timestamp(1_793_487_600 + i * 500, 0).unwrap();
            let mut c = call(
                &format!("r{i:05}"),
                "K1002",
                &t.to_rfc3339(),
                &format!("+49151{:08}", 10_000_000 + i * 7),
                "mobile",
                "0.0001",
                false,
            );
            // Billing rates every call with today's tariff (K1002: mobile 0,1790 €/min, 60/1):
            // the durations make the charges differ.
            c.call.duration_s = 60 + i;
            c
        })
        .collect();
    write(&data, "a.parquet", &rows);
    let mut opts = BillOptions::new(created());
    opts.customer = Some("K1002".into());
    opts.row_budget = 1000;
    let report = run(&config(), &data, nov(), &out, &opts).unwrap();
    assert!(report.spilled);
    let Outcome::Written { pages, .. } = report.customers[0].outcome else {
        panic!("{:?}", report.customers[0].outcome)
    };
    assert!(pages > 80, "{pages}");
    let text = pdf_text(&out.join("2026-11/K1002.pdf"));
    let page_texts: Vec<&str> = text
        .split('\u{c}')
        .filter(|p| !p.trim().is_empty())
        .collect();
    assert_eq!(page_texts.len(), pages);
    for (i, p) in page_texts.iter().enumerate() {
        assert!(p.contains(&format!("Seite {} von {pages}", i + 1)));
    }
    let numbers: Vec<usize> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let nr = w.next()?.parse().ok()?;
            w.next().filter(|d| d.ends_with(".2026")).map(|_| nr)
        })
        .collect();
    assert_eq!(numbers, (1..=5000).collect::<Vec<_>>());
    // Σ 0,1790 € × (60 + i) / 60, each rounded to 4 decimals: 0,1790 + … + 15,0927 = 38.179,25 €.
    let total: Decimal = (0..5000)
        .map(|i| evn_rating::charge(Decimal::new(1790, 4), 60 + i))
        .sum();
    assert_eq!(format::money(total), "38.179,25 €");
    // The summary ends on the last page or, when the notices fill that, on the one before.
    let end = page_texts[page_texts.len() - 2..].join("\n");
    assert!(
        end.lines().any(|l| l.contains("Gesamtsumme (netto)")
            && l.contains(" 5000 ")
            && l.trim_end().ends_with("38.179,25 €")),
        "{end}"
    );
    let csv = csv_rows(&out.join("2026-11/K1002.csv"));
    assert_eq!(csv.len(), 5000);
    assert_eq!(csv[4999][0], "5000");
}

/// A manifest from before CSVs existed: the re-run adds the CSV of the current version
/// without making a new version of an unchanged EVN.
#[test]
fn manifest_from_before_csv_gets_csvs_without_a_new_version() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    write(&data, "a.parquet", &november());
    let cfg = config();
    run(&cfg, &data, nov(), &out, &BillOptions::new(created())).unwrap();
    let dir = out.join("2026-11");
    // Make it look like an older run: no CSV fields, no CSV files.
    let path = dir.join(MANIFEST_FILE);
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for (_, c) in json["customers"].as_object_mut().unwrap() {
        let c = c.as_object_mut().unwrap();
        c.remove("csv_file");
        c.remove("csv_sha256");
        for v in c["versions"].as_array_mut().unwrap() {
            v.as_object_mut().unwrap().remove("csv_file");
            v.as_object_mut().unwrap().remove("csv_sha256");
        }
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    for n in names(&dir).iter().filter(|n| n.ends_with(".csv")) {
        std::fs::remove_file(dir.join(n)).unwrap();
    }
    let old = Manifest::read(&path).unwrap().unwrap();
    assert!(old.customers["K1002"].csv_file.is_none());

    let r = run(&cfg, &data, nov(), &out, &BillOptions::new(created())).unwrap();
    assert_eq!(r.written(), 0);
    assert!(r.manifest_written);
    let m = Manifest::read(&path).unwrap().unwrap();
    let e = &m.customers["K1002"];
    assert_eq!(e.version, 1);
    assert_eq!(e.versions[0].csv_file.as_deref(), Some("K1002.v1.csv"));
    assert_eq!(csv_rows(&dir.join("K1002.v1.csv")).len(), 2);
    assert!(dir.join("K1002.csv").is_file());
}

#[test]
fn evn_setting_in_force_on_the_first_day_decides() {
    let cfg = config();
    // K1005: off until 31 October, on from 1 November.
    assert!(evn_row(&cfg, "K1005", nov()).unwrap().evn);
    assert!(
        !evn_row(&cfg, "K1005", "2026-10".parse().unwrap())
            .unwrap()
            .evn
    );
    // K1001 switched to shortened numbers on 15 November: both rows apply in November.
    assert_eq!(rows_in_month(&cfg, "K1001", nov()).len(), 2);
    assert_eq!(
        rows_in_month(&cfg, "K1001", "2026-12".parse().unwrap()).len(),
        1
    );
    assert!(evn_row(&cfg, "K1001", "2025-12".parse().unwrap()).is_none());
}

#[test]
fn dedup_keeps_the_first_by_start_time() {
    let mut calls: Vec<RatedCall> = [
        call("a", "K1", "2026-11-02T00:00:00Z", "1", "z", "1", false),
        call("a", "K1", "2026-11-01T00:00:00Z", "1", "z", "2", false),
        call("b", "K1", "2026-11-01T00:00:00Z", "1", "z", "3", false),
    ]
    .into_iter()
    .map(|s| s.call)
    .collect();
    assert_eq!(dedup(&mut calls), 1);
    let kept: Vec<(&str, String)> = calls
        .iter()
        .map(|c| (c.cdr_id.as_str(), c.charge_eur.to_string()))
        .collect();
    assert_eq!(kept, [("a", "2".to_owned()), ("b", "3".to_owned())]);
}

proptest::proptest! {
    /// For any month of one customer's calls (any durations, several lines, counselling numbers
    /// in any notation, duplicates that reached storage): every call is billed once, no
    /// counselling number is a row, the rows add up to the line subtotals, and the subtotals
    /// plus the not-itemised line to the total.
    #[test]
    fn any_month_bills_each_call_once_and_adds_up(
        calls in proptest::collection::vec((0usize..8, 0i64..200_000, 0u8..3), 0..50),
        dups in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..10),
    ) {
        const NUMBERS: [&str; 8] = [
            "+4915112345678", "+33123456789", "+498001110111", "116123",
            "116xxx", "+49301234xxx", "+4917612345xxx", "110",
        ];
        let cfg = config();
        let mut rated: Vec<RatedCall> = calls
            .iter()
            .enumerate()
            .map(|(i, &(number, seconds, line))| {
                let t = DateTime::from_timestamp(1_793_600_000 + i as i64 * 3_600, 0).unwrap();
                let mut c = call(&format!("p{i}"), "K1002", &t.to_rfc3339(), NUMBERS[number], "mobile", "0", false).call;
                c.duration_s = seconds;
                c.calling_number = format!("+4989123456{line}").into();
                c
            })
            .collect();
        // What each call costs under today's tariff, as the run rates it.
        let total: Decimal = rated
            .iter()
            .filter_map(|c| evn_rating::rerate(c.clone(), &cfg))
            .map(|c| c.charge_eur)
            .sum();
        let unique = rated.len();
        if unique > 0 {
            for d in &dups {
                rated.push(rated[d.index(unique)].clone());
            }
        }
        // As the run's scan marks rows of a file that names no list version.
        for c in &mut rated {
            c.counselling = cfg.counselling.hides(&c.called_number, c.counselling, None);
        }
        let dropped = dedup(&mut rated);
        proptest::prop_assert_eq!(rated.len(), unique);
        proptest::prop_assert_eq!(dropped, if unique > 0 { dups.len() } else { 0 });
        let doc = build_document(&cfg, nov(), "K1002", rated, created()).unwrap();
        // The EVN's total is its rows'; the billing record has every call.
        proptest::prop_assert_eq!(doc.total + doc.not_itemised.amount, total);
        proptest::prop_assert_eq!(doc.billed, unique);
        let mut subtotals = Decimal::ZERO;
        for g in &doc.groups {
            let rows: Decimal = g.rows.iter().map(|r| r.charge).sum();
            proptest::prop_assert_eq!(rows, g.subtotal);
            subtotals += g.subtotal;
            for r in &g.rows {
                proptest::prop_assert!(!cfg.counselling.contains(&r.called_number), "{}", r.called_number);
            }
        }
        proptest::prop_assert_eq!(subtotals, doc.total);
        proptest::prop_assert_eq!(doc.itemised() + doc.not_itemised.count, doc.billed);
    }
}

/// Issue #8: with data keys, the run reads encrypted Parquet and writes every EVN file sealed;
/// opened with the key they are byte for byte the files of a run without keys, the manifest
/// hashes the plain documents, and a re-run (spilled, too) changes nothing.
#[test]
fn with_data_keys_evns_are_sealed_at_rest_and_open_to_the_plain_files() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = Arc::new(Keyring::new(
        evn_keys::DataKey::from_bytes([9; 32]),
        Vec::new(),
    ));
    let (plain_data, sealed_data) = (tmp.path().join("plain"), tmp.path().join("sealed"));
    write(&plain_data, "a.parquet", &november());
    let dir = evn_store::month_dir(&sealed_data, nov());
    std::fs::create_dir_all(&dir).unwrap();
    let w = WriteOptions {
        keys: Some(Arc::clone(&keys)),
        ..WriteOptions::default()
    };
    evn_store::write_file(&dir.join("a.parquet"), &november(), w).unwrap();

    let cfg = config();
    let (out_plain, out_sealed) = (tmp.path().join("out-plain"), tmp.path().join("out-sealed"));
    run(
        &cfg,
        &plain_data,
        nov(),
        &out_plain,
        &BillOptions::new(created()),
    )
    .unwrap();
    // Without the key the encrypted month is an error, not an empty month.
    let err = run(
        &cfg,
        &sealed_data,
        nov(),
        &out_sealed,
        &BillOptions::new(created()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("encrypt"), "{err}");
    let mut opts = BillOptions::new(created());
    opts.keys = Some(Arc::clone(&keys));
    let report = run(&cfg, &sealed_data, nov(), &out_sealed, &opts).unwrap();
    assert_eq!(report.written(), 4);
    // Metrics count what was published.
    assert_eq!(opts.metrics.rendered(), 4);
    let pages: usize = report
        .customers
        .iter()
        .map(|c| match c.outcome {
            Outcome::Written { pages, .. } => pages,
            Outcome::Unchanged { .. } => 0,
        })
        .sum();
    assert_eq!(opts.metrics.pages(), pages as u64);
    let manifest = Manifest::read(&out_sealed.join("2026-11/manifest.json"))
        .unwrap()
        .unwrap();
    for (id, entry) in &manifest.customers {
        for (numbered, current, sha) in [
            (&entry.versions[0].file, &entry.file, &entry.sha256),
            (
                entry.versions[0].csv_file.as_ref().unwrap(),
                entry.csv_file.as_ref().unwrap(),
                entry.csv_sha256.as_ref().unwrap(),
            ),
        ] {
            let stored = std::fs::read(out_sealed.join("2026-11").join(current)).unwrap();
            assert!(evn_keys::is_sealed(&stored), "{id}: {current} is plain");
            assert!(!stored.windows(5).any(|w| w == id.as_bytes()));
            let opened = keys.open(&stored, &format!("2026-11/{numbered}")).unwrap();
            assert_eq!(&sha256_hex(&opened), sha);
            let plain = std::fs::read(out_plain.join("2026-11").join(current)).unwrap();
            assert_eq!(opened, plain, "{id}: {current}");
            // Sealed for its own name only: under another customer's name it does not open.
            assert!(keys.open(&stored, "2026-11/K9999.v1.pdf").is_err());
        }
    }
    opts.row_budget = 2;
    let again = run(&cfg, &sealed_data, nov(), &out_sealed, &opts).unwrap();
    assert!(again.spilled);
    assert_eq!(again.written(), 0);
    assert!(!again.manifest_written);
    assert_eq!(opts.metrics.rendered(), 4, "nothing new rendered");
}

/// Issue #11: a customer with a password gets a PDF that poppler opens only with it (AES-256);
/// the CSV and the other customers' PDFs stay plain; switching protection on makes a new
/// version, a re-run with it on changes nothing.
#[test]
fn customers_with_a_password_get_protected_pdfs() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    write(&data, "a.parquet", &november());
    let cfg = config();
    run(&cfg, &data, nov(), &out, &BillOptions::new(created())).unwrap();
    let mut opts = BillOptions::new(created());
    opts.pdf_passwords = Some(Arc::new(PdfPasswords::from_pairs([(
        "K1002".to_owned(),
        "Bäckerei-2026".to_owned(),
    )])));
    let report = run(&cfg, &data, nov(), &out, &opts).unwrap();
    let versions: Vec<(&str, &Outcome)> = report
        .customers
        .iter()
        .map(|c| (c.customer_id.as_str(), &c.outcome))
        .collect();
    assert!(versions
        .iter()
        .all(|(id, o)| matches!(o, Outcome::Written { version: 2, .. }) == (*id == "K1002")));
    let dir = out.join("2026-11");
    let pdf = dir.join("K1002.pdf");
    let text = |extra: &[&str]| {
        Command::new("pdftotext")
            .args(extra)
            .arg(&pdf)
            .arg("-")
            .output()
            .unwrap()
    };
    assert!(!text(&[]).status.success(), "opens without the password");
    let opened = text(&["-upw", "Bäckerei-2026"]);
    assert!(opened.status.success());
    assert!(String::from_utf8_lossy(&opened.stdout).contains("Bäckerei Größler e.K."));
    // Version 1 (before protection) is kept as it was; other customers stay plain.
    assert!(pdf_text(&dir.join("K1002.v1.pdf")).contains("Größler"));
    assert!(pdf_text(&dir.join("K1001.pdf")).contains("K1001"));
    let again = run(&cfg, &data, nov(), &out, &opts).unwrap();
    assert_eq!(again.written(), 0);
}

/// Holds `name` in the month folder as another process's run would (`flock`, which is per
/// open file: a second open in this process conflicts like another process).
fn hold(out: &Path, name: &str, op: rustix::fs::FlockOperation) -> std::fs::File {
    let dir = out.join("2026-11");
    std::fs::create_dir_all(&dir).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(name))
        .unwrap();
    rustix::fs::flock(&f, op).unwrap();
    f
}

/// Two runs of a month at once overwrote each other's numbered versions and manifests. A run
/// now holds the month's lock: a second run stops at once, exit 1, naming the lock file, and
/// writes nothing; once the first is gone (its lock released with its file, as when a
/// process dies), the month bills normally.
#[test]
fn a_second_run_of_the_month_is_refused_while_the_first_holds_the_lock() {
    use rustix::fs::FlockOperation::LockExclusive;
    let cfg = config();
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    write(&data, "a.parquet", &november());

    let first = hold(&out, ".bill.lock", LockExclusive);
    let e = run(&cfg, &data, nov(), &out, &BillOptions::new(created())).unwrap_err();
    assert!(matches!(&e, BillError::RunActive { .. }), "{e}");
    assert_eq!(e.exit_code(), 1);
    let msg = e.to_string();
    assert!(msg.contains("2026-11/.bill.lock"), "{msg}");
    assert!(msg.contains("another billing run"), "{msg}");
    assert_eq!(
        names(&out.join("2026-11")),
        [".bill.lock"],
        "nothing written"
    );
    // A shard of the month is refused as well: the whole-month run bills its customers too.
    let mut shard = BillOptions::new(created());
    shard.shard = Some("0/2".parse().unwrap());
    let e = run(&cfg, &data, nov(), &out, &shard).unwrap_err();
    assert!(matches!(&e, BillError::RunActive { .. }), "{e}");

    drop(first);
    let r = run(&cfg, &data, nov(), &out, &BillOptions::new(created())).unwrap();
    assert!(r.manifest_written);
}

/// Shards of one month run at the same time by design (one Indexed Job pod each); the same
/// shard twice, or a whole-month run beside a shard, is refused.
#[test]
fn shards_run_side_by_side_but_not_twice() {
    use rustix::fs::FlockOperation::{LockExclusive, LockShared};
    let cfg = config();
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    write(&data, "a.parquet", &november());
    // Shard 0/2 is running.
    let _month = hold(&out, ".bill.lock", LockShared);
    let _shard0 = hold(&out, ".bill.shard-0-of-2.lock", LockExclusive);
    let with_shard = |s: &str| {
        let mut o = BillOptions::new(created());
        o.shard = Some(s.parse().unwrap());
        o
    };
    run(&cfg, &data, nov(), &out, &with_shard("1/2")).unwrap();
    for opts in [with_shard("0/2"), BillOptions::new(created())] {
        let e = run(&cfg, &data, nov(), &out, &opts).unwrap_err();
        assert!(matches!(&e, BillError::RunActive { .. }), "{e}");
    }
}

/// A refused or failed run leaves no month folder (or EVN folder) it created for its lock.
#[test]
fn a_failed_first_run_leaves_no_folder_for_its_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    write(&data, "a.parquet", &november());
    write(
        &data,
        "b.parquet",
        &[call(
            "x1",
            "K9999",
            "2026-11-09T10:00:00Z",
            "+4915112345678",
            "mobile",
            "0.3728",
            false,
        )],
    );
    run(&config(), &data, nov(), &out, &BillOptions::new(created())).unwrap_err();
    assert!(!out.exists());
}

/// A customer who cancels the EVN from 15 November (a row with `evn` false) gets November's
/// EVN for the calls before that day only (the setting in force at a call's start applies);
/// the later calls are billed, in the total and the not-itemised line, and the EVN says
/// from when it stopped itemising. Asking again on the 20th changes nothing this month.
#[test]
fn an_evn_cancelled_within_the_month_lists_only_the_calls_before_that_day() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    let k1002 = |id, start, called| call(id, "K1002", start, called, "mobile", "0.3729", false);
    write(
        &data,
        "a.parquet",
        &[
            // 14 November 23:59:59 in Berlin: still listed.
            k1002("before", "2026-11-14T22:59:59Z", "+4915112345601"),
            // 15 November 00:00:00 in Berlin: not listed any more.
            k1002("after", "2026-11-14T23:00:00Z", "+4915112345602"),
            k1002("again", "2026-11-21T10:00:00Z", "+4915112345603"),
        ],
    );
    let row = |evn: bool, from: &str| {
        format!("K1002,Bäckerei Größler e.K.,Schloßallee 12,80331,München,office_basic,{evn},false,{from}\n")
    };
    let cfg = edited_config(&tmp.path().join("config"), "customers.csv", |c| {
        format!("{c}{}{}", row(false, "2026-11-15"), row(true, "2026-11-20"))
    });
    run(&cfg, &data, nov(), &out, &BillOptions::new(created())).unwrap();
    let dir = out.join("2026-11");
    let m = Manifest::read(&dir.join(MANIFEST_FILE)).unwrap().unwrap();
    let e = &m.customers["K1002"];
    assert_eq!((e.connections, e.billed_connections), (1, 3));
    assert_eq!(e.total, "0.3729");
    assert_eq!(e.billed_total.as_deref(), Some("1.1187"));
    let text = pdf_text(&dir.join("K1002.pdf"));
    assert!(text.contains("0151 12345601"), "{text}");
    for hidden in [
        "0151 12345602",
        "0151 12345603",
        "15.11.2026 00:00",
        "21.11.2026",
    ] {
        assert!(!text.contains(hidden), "{hidden} listed: {text}");
    }
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("Einzelverbindungsnachweis zum 15.11.2026 abbestellt"),
        "{text}"
    );
    assert!(flat.contains("Gesamtsumme (netto) 1 0,37 €"), "{text}");
    assert_eq!(csv_rows(&dir.join("K1002.csv")).len(), 1);

    // December: the new request of the 20th is in force on the 1st, so every call is listed.
    let dec: BillingMonth = "2026-12".parse().unwrap();
    write_in(
        &data,
        dec,
        "d.parquet",
        &[k1002("dec", "2026-12-02T10:00:00Z", "+4915112345604")],
    );
    run(&cfg, &data, dec, &out, &BillOptions::new(created())).unwrap();
    let text = pdf_text(&out.join("2026-12/K1002.pdf"));
    assert!(text.contains("0151 12345604"), "{text}");
    assert!(!text.contains("abbestellt"), "{text}");
}

/// A counselling call that arrives after the EVN went out makes no new version: one that
/// differed from the last in nothing the customer can see would by its existence tell that
/// such a call was made. The billing record (the manifest) counts it and its charge.
#[test]
fn a_late_counselling_call_makes_no_new_version_but_is_in_the_billing_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    write(&data, "a.parquet", &november());
    run(&config(), &data, nov(), &out, &BillOptions::new(created())).unwrap();
    let dir = out.join("2026-11");
    let before = Manifest::read(&dir.join(MANIFEST_FILE))
        .unwrap()
        .unwrap()
        .customers["K1002"]
        .clone();
    let pdf_before = std::fs::read(dir.join("K1002.pdf")).unwrap();
    write(
        &data,
        "late.parquet",
        &[call(
            "late",
            "K1002",
            "2026-11-20T10:00:00Z",
            "+49301234567",
            "landline",
            "0.0604",
            false,
        )],
    );
    let later = BillOptions::new(NaiveDate::from_ymd_opt(2026, 12, 10).unwrap());
    run(&config(), &data, nov(), &out, &later).unwrap();
    let after = Manifest::read(&dir.join(MANIFEST_FILE))
        .unwrap()
        .unwrap()
        .customers["K1002"]
        .clone();
    assert_eq!(
        (after.version, &after.sha256, &after.total),
        (before.version, &before.sha256, &before.total)
    );
    assert_eq!(std::fs::read(dir.join("K1002.pdf")).unwrap(), pdf_before);
    assert!(!dir
        .join(format!("K1002.v{}.pdf", before.version + 1))
        .exists());
    assert_eq!(after.billed_connections, before.billed_connections + 1);
    let billed = |e: &CustomerEntry| Decimal::from_str(e.billed_total.as_deref().unwrap()).unwrap();
    assert_eq!(
        billed(&after) - billed(&before),
        Decimal::from_str("0.0604").unwrap()
    );
}

/// The days a shortening request covered within a month, for the notice: on, off and on
/// again within a month were told as "until the 9th" only, with a shortened row of the 25th.
#[test]
fn shortening_periods_name_the_days_of_the_month() {
    let row = |shorten: bool, from: &str| CustomerRow {
        customer_id: "K1".into(),
        name: "n".into(),
        street: "s".into(),
        postcode: "p".into(),
        city: "c".into(),
        plan: "office_basic".into(),
        evn: true,
        shorten_numbers: shorten,
        valid_from: from.parse().unwrap(),
        line: 2,
    };
    let d = |s: &str| s.parse::<NaiveDate>().unwrap();
    let month = nov();
    let of = |rows: &[&CustomerRow]| periods(&days_in_force(rows, month), |r| r.shorten_numbers);
    let (off, on) = (row(false, "2026-01-01"), row(true, "2026-01-01"));
    let (on_10, on_15, on_20) = (
        row(true, "2026-11-10"),
        row(true, "2026-11-15"),
        row(true, "2026-11-20"),
    );
    let (off_10, off_20) = (row(false, "2026-11-10"), row(false, "2026-11-20"));
    assert_eq!(of(&[&on]), []);
    assert_eq!(of(&[&off]), []);
    assert_eq!(of(&[&off, &on_15]), [(d("2026-11-15"), d("2026-11-30"))]);
    assert_eq!(of(&[&on, &off_20]), [(d("2026-11-01"), d("2026-11-19"))]);
    assert_eq!(
        of(&[&off, &on_15, &off_20]),
        [(d("2026-11-15"), d("2026-11-19"))]
    );
    assert_eq!(
        of(&[&on, &off_10, &on_20]),
        [
            (d("2026-11-01"), d("2026-11-09")),
            (d("2026-11-20"), d("2026-11-30"))
        ]
    );
    // Two rows that agree are one period.
    assert_eq!(
        of(&[&off, &on_10, &on_15]),
        [(d("2026-11-10"), d("2026-11-30"))]
    );
    assert_eq!(of(&[]), []);
}

/// The notices of an EVN whose settings changed within the month say which days they cover:
/// shortening on, off and on again; a flatrate plan until the 14th, then a plan without one
/// (the notice said landline calls are not listed, above listed landline rows).
#[test]
fn notices_name_the_days_settings_changed_within_the_month() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = edited_config(&tmp.path().join("config"), "customers.csv", |c| {
        format!(
            "{c}K7001,A,B,1,C,office_flat,true,true,2026-01-01\n\
             K7001,A,B,1,C,office_flat,true,false,2026-11-10\n\
             K7001,A,B,1,C,office_basic,true,true,2026-11-15\n"
        )
    });
    let calls = vec![
        call(
            "a",
            "K7001",
            "2026-11-05T10:00:00Z",
            "+4915112345xxx",
            "mobile",
            "0.1490",
            false,
        )
        .call,
        call(
            "b",
            "K7001",
            "2026-11-12T10:00:00Z",
            "+4915112345678",
            "mobile",
            "0.1490",
            false,
        )
        .call,
        call(
            "c",
            "K7001",
            "2026-11-25T10:00:00Z",
            "+4930123456xxx",
            "landline",
            "0.0290",
            false,
        )
        .call,
    ];
    let doc = build_document(&cfg, nov(), "K7001", calls, created()).unwrap();
    let notices = doc.notices().join("\n");
    assert!(
        notices.contains(
            "Auf Ihren Wunsch sind die Zielrufnummern bis zum 09.11.2026 und ab dem 15.11.2026 um die letzten drei Ziffern gekürzt"
        ),
        "{notices}"
    );
    assert!(
        notices.contains("abgegolten sind (Festnetz national bis zum 14.11.2026)"),
        "{notices}"
    );
}

/// A shortened number is hidden on ingest's flag while the list is the one ingest used (the
/// file says which): `+49301234999`, stored as `+49301234xxx` for a customer with shortened
/// numbers, is an ordinary call although the listed `030 1234567` shortens to the same, and
/// it is listed. In a file from before a list update, or one that does not say, the same row
/// is hidden: a number listed since may be behind it.
#[test]
fn a_shortened_number_beside_a_listed_one_is_shown_while_the_list_is_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    // K1002 (no flatrate) asks for shortened numbers from 1 November.
    let cfg = edited_config(&tmp.path().join("config"), "customers.csv", |c| {
        format!("{c}K1002,Bäckerei Größler e.K.,Schloßallee 12,80331,München,office_basic,true,true,2026-11-01\n")
    });
    let row = |id: &str, flagged: bool| {
        call(
            id,
            "K1002",
            "2026-11-20T10:00:00Z",
            "+49301234xxx",
            "landline",
            "0.0604",
            flagged,
        )
    };
    let bill_with = |version: Option<&str>, rows: &[StoredCall]| {
        let root = tmp.path().join(version.unwrap_or("none"));
        let (data, out) = (root.join("data"), root.join("out"));
        let dir = evn_store::month_dir(&data, nov());
        std::fs::create_dir_all(&dir).unwrap();
        let w = WriteOptions {
            counselling_version: version.map(str::to_owned),
            ..WriteOptions::default()
        };
        evn_store::write_file(&dir.join("a.parquet"), rows, w).unwrap();
        run(&cfg, &data, nov(), &out, &BillOptions::new(created())).unwrap();
        csv_rows(&out.join("2026-11/K1002.csv")).len()
    };
    let current = cfg.counselling.version.clone();
    assert_eq!(bill_with(Some(&current), &[row("ordinary", false)]), 1);
    assert_eq!(bill_with(Some(&current), &[row("listed", true)]), 0);
    assert_eq!(
        bill_with(Some("2026-Q3+sha256:old"), &[row("ordinary", false)]),
        0
    );
    assert_eq!(bill_with(None, &[row("ordinary", false)]), 0);
}
