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
    }
}

fn write(data: &Path, name: &str, rows: &[StoredCall]) {
    let dir = evn_store::month_dir(data, nov());
    std::fs::create_dir_all(&dir).unwrap();
    evn_store::write_file(&dir.join(name), rows, WriteOptions::default()).unwrap();
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
            "0.3728",
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
fn evn_on_customers_get_pdfs_without_counselling_rows_and_reruns_change_nothing() {
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
    assert!(text.contains("+33123456789"));
    // c7 starts 1 Nov 00:00 in Berlin.
    assert!(text
        .lines()
        .any(|l| l.contains("01.11.2026") && l.contains("00:00:00")));
    // 0.6042 + 0.3728 printed; 3 hidden calls worth 0.1208; the duplicate once.
    assert!(text.contains("Nicht einzeln aufgeführte Verbindungen"));
    assert!(text.contains("1,10 €"), "{text}");
    let k1003 = pdf_text(&dir.join("K1003.pdf"));
    assert!(k1003.contains("keine entgeltpflichtigen Verbindungen"));
    assert!(k1003.contains("Özdemir Logistik GmbH & Co. KG"));
    let k1001 = pdf_text(&dir.join("K1001.pdf"));
    assert!(k1001.contains("0176 12345xxx") && k1001.contains("gekürzt"));
    assert!(k1001.contains("(Festnetz national)"));

    let m = Manifest::read(&dir.join(MANIFEST_FILE)).unwrap().unwrap();
    assert_eq!(m.customers.len(), 4);
    let e = &m.customers["K1002"];
    assert_eq!((e.connections, e.billed_connections, e.version), (2, 5, 1));
    assert_eq!(e.total, "1.0978");
    assert_eq!(e.total_printed, "1.10");
    assert_eq!(
        e.sha256,
        sha256_hex(&std::fs::read(dir.join("K1002.pdf")).unwrap())
    );
    assert_eq!(m.counselling_version, cfg.counselling.version);

    // Same data and config, another day: nothing new, not even the manifest.
    let before = snapshot(&dir);
    let later = BillOptions::new(NaiveDate::from_ymd_opt(2027, 1, 5).unwrap());
    let again = run(&cfg, &data, nov(), &out, &later).unwrap();
    assert_eq!(again.written(), 0);
    assert!(!again.manifest_written);
    assert_eq!(snapshot(&dir), before);

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
}

#[test]
fn chunked_and_sharded_runs_give_the_same_evns() {
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
    let mut small = BillOptions::new(created());
    small.row_budget = 2;
    run(&cfg, &data, nov(), &tmp.path().join("chunked"), &small).unwrap();
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
fn bad_input_is_a_clear_error_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    let cfg = config();
    let opts = BillOptions::new(created());

    let e = run(&cfg, &data, nov(), &out, &opts).unwrap_err();
    assert!(matches!(e, BillError::NoData { .. }), "{e}");
    assert!(e.to_string().contains("billing_month=2026-11"), "{e}");

    let mut rows = november();
    rows.push(call(
        "x1",
        "K9999",
        "2026-11-09T10:00:00Z",
        "+4915112345678",
        "mobile",
        "0.3728",
        false,
    ));
    write(&data, "a.parquet", &rows);
    let e = run(&cfg, &data, nov(), &out, &opts).unwrap_err();
    assert!(
        matches!(&e, BillError::ConfigMismatch { customer_id, .. } if customer_id == "K9999"),
        "{e}"
    );
    assert_eq!(e.exit_code(), 2);
    assert!(!out.exists(), "nothing written on a config mismatch");

    write(&data, "a.parquet", &november());
    std::fs::write(
        evn_store::month_dir(&data, nov()).join("b.parquet"),
        b"not parquet",
    )
    .unwrap();
    let e = run(&cfg, &data, nov(), &out, &opts).unwrap_err();
    assert!(e.to_string().contains("b.parquet"), "{e}");
    assert_eq!(e.exit_code(), 1);
    assert!(!out.exists());

    let mut o = opts.clone();
    o.customer = Some("K0000".into());
    assert!(matches!(
        run(&cfg, &data, nov(), &out, &o),
        Err(BillError::NoSuchCustomer { .. })
    ));
    assert!("3/3".parse::<Shard>().is_err());
    assert!("1/0".parse::<Shard>().is_err());
    assert_eq!(
        "1/4".parse::<Shard>().unwrap(),
        Shard { index: 1, count: 4 }
    );
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
