//! Issue 8: retention (six months after the send date, legal holds, crash safety), the
//! customer's export, and erasure, through the real binary on Parquet written by evn-store.
//! Issue 9: the same tests with `--data` and `--evn` given as object store URLs (`file://`
//! over the same folders, through the object store protocol: change records instead of
//! renames), and what an interrupted run leaves on an object store.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::support::*;

struct Fixture {
    _tmp: tempfile::TempDir,
    config: PathBuf,
    data: PathBuf,
    evn: PathBuf,
    /// Commands get `file://` URLs of `data` and `evn` (the object store code path).
    url: bool,
}

/// How the commands are told where data and EVNs are.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Local,
    Url,
}
use Mode::*;

const JAN_A: &str = "cdrs+0+00000000000000000000-00000000000000000006.parquet";
const JAN_B: &str = "cdrs+1+00000000000000000000-00000000000000000000.parquet";
const MAR: &str = "cdrs+0+00000000000000000007-00000000000000000009.parquet";
const MAY: &str = "cdrs+0+00000000000000000010-00000000000000000010.parquet";

/// 2026-01 billed 2026-02-03 (K1001, K1002, K9), 2026-03 billed 2026-04-02 (K1001, K9),
/// 2026-05 not billed. K9 is a former customer: not in customers.csv.
fn fixture(keys: Option<std::sync::Arc<evn_store::Keyring>>) -> Fixture {
    fixture_in(Local, keys)
}

fn fixture_in(mode: Mode, keys: Option<std::sync::Arc<evn_store::Keyring>>) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let (config, data, evn) = (root.join("config"), root.join("data"), root.join("evn"));
    std::fs::create_dir_all(&config).unwrap();
    for f in std::fs::read_dir(config_dir()).unwrap() {
        let p = f.unwrap().path();
        std::fs::copy(&p, config.join(p.file_name().unwrap())).unwrap();
    }
    let c = |id: &str, m: &str, i: u32| privacy_call(id, m, i, false);
    let jan_a = vec![
        c("K1001", "2026-01", 0),
        c("K1002", "2026-01", 1),
        c("K9", "2026-01", 2),
        c("K1001", "2026-01", 3),
        c("K1002", "2026-01", 4),
        c("K9", "2026-01", 5),
        c("K1001", "2026-01", 6),
    ];
    write_month_file(&data, "2026-01", JAN_A, &jan_a, keys.clone());
    write_month_file(
        &data,
        "2026-01",
        JAN_B,
        &[c("K1001", "2026-01", 7)],
        keys.clone(),
    );
    let mar = vec![
        c("K1001", "2026-03", 7),
        privacy_call("K1001", "2026-03", 8, true),
        c("K9", "2026-03", 9),
    ];
    write_month_file(&data, "2026-03", MAR, &mar, keys.clone());
    write_month_file(&data, "2026-05", MAY, &[c("K1002", "2026-05", 10)], keys);
    write_billed_month(&evn, "2026-01", "2026-02-03", &["K1001", "K1002", "K9"]);
    write_billed_month(&evn, "2026-03", "2026-04-02", &["K1001", "K9"]);
    Fixture {
        _tmp: tmp,
        config,
        data,
        evn,
        url: matches!(mode, Url),
    }
}

impl Fixture {
    /// `--data` as the commands get it.
    fn data_arg(&self) -> String {
        self.arg(&self.data)
    }

    fn evn_arg(&self) -> String {
        self.arg(&self.evn)
    }

    fn arg(&self, dir: &Path) -> String {
        if self.url {
            format!("file://{}", dir.display())
        } else {
            dir.display().to_string()
        }
    }

    fn run(&self, sub: &str, extra: &[&str]) -> Output {
        let (c, d, e) = (
            self.config.to_str().unwrap(),
            self.data_arg(),
            self.evn_arg(),
        );
        let mut args = vec![sub, "--config", c, "--data", &d, "--evn", &e];
        args.extend_from_slice(extra);
        evn(&args)
    }

    fn retention(&self, today: &str) -> String {
        let out = self.run("retention", &["--today", today]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn hold(&self, lines: &[&str]) {
        let mut text = "customer_id,month,reason,since\n".to_owned();
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        std::fs::write(self.config.join("legal-holds.csv"), text).unwrap();
    }

    /// The data and EVN directories (the config is the test's to change).
    fn tree(&self) -> std::collections::BTreeMap<String, String> {
        let mut t = tree(&self.data);
        t.extend(
            tree(&self.evn)
                .into_iter()
                .map(|(k, v)| (format!("evn/{k}"), v)),
        );
        t
    }

    /// Every stored row as evn's readers see it (on an object store: with a change under way
    /// applied).
    fn rows(&self) -> Vec<evn_store::StoredCall> {
        let at: evn_store::Location = self.data_arg().parse().unwrap();
        let mut rows = Vec::new();
        for month in at.list_months().unwrap() {
            rows.extend(at.read_month_with(month, None).unwrap());
        }
        rows
    }

    /// (month, customer) of every stored row, sorted.
    fn stored(&self) -> Vec<(String, String)> {
        let mut rows: Vec<_> = self
            .rows()
            .into_iter()
            .map(|r| (r.call.billing_month.to_string(), r.call.customer_id.into()))
            .collect();
        rows.sort();
        rows
    }

    fn evn_files(&self, month: &str) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(self.evn.join(month)) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    fn manifest_customers(&self, month: &str) -> Vec<String> {
        let text = std::fs::read(self.evn.join(month).join("manifest.json")).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        v["customers"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }
}

fn months(rows: &[(String, String)]) -> Vec<String> {
    let mut m: Vec<String> = rows.iter().map(|(m, _)| m.clone()).collect();
    m.dedup();
    m
}

#[test]
fn retention_keeps_through_the_boundary_and_deletes_the_day_after() {
    for mode in [Local, Url] {
        let f = fixture_in(mode, None);
        let before = f.tree();
        // 2026-02-03 + 6 months = 2026-08-03: the last day January may be kept.
        for today in ["2026-08-02", "2026-08-03"] {
            let out = f.retention(today);
            assert!(
                out.contains("keep 2026-01: billed 2026-02-03, kept until 2026-08-03"),
                "{out}"
            );
            assert_eq!(f.tree(), before, "{today}: nothing changes");
        }
        let out = f.retention("2026-08-04");
        assert!(
            out.contains("delete 2026-01: billed 2026-02-03, retention ended 2026-08-03"),
            "{out}"
        );
        assert!(out.contains("delete traffic data 2026-01"), "{out}");
        assert!(out.contains("delete EVNs 2026-01"), "{out}");
        assert!(out.contains("keep 2026-05: not billed yet"), "{out}");
        assert_eq!(months(&f.stored()), ["2026-03", "2026-05"]);
        assert!(!f.evn.join("2026-01").exists());
        assert!(!f.data.join("cdrs/billing_month=2026-01").exists());
        assert!(f.evn.join("2026-03/manifest.json").exists());
        // Nothing hidden left behind, and a re-run has nothing to do.
        let after = f.tree();
        assert!(
            after.keys().all(|k| !k.contains(".deleting-")
                && !k.contains("_change")
                && !k.contains("_deleting")),
            "{after:?}"
        );
        let again = f.retention("2026-08-04");
        assert!(again.lines().all(|l| !l.starts_with("delete")), "{again}");
        assert_eq!(f.tree(), after);
    }
}

#[test]
fn a_month_never_billed_is_kept_with_a_warning_when_old() {
    for mode in [Local, Url] {
        let f = fixture_in(mode, None);
        let out = f.retention("2027-06-01");
        assert!(
            out.contains("keep 2026-05: WARNING never billed, ended more than 12 months ago"),
            "{out}"
        );
        assert_eq!(f.stored(), [("2026-05".to_owned(), "K1002".to_owned())]);
    }
}

/// TDDDG § 10 counts six months from the bill: K1002's January was billed again on 15 June
/// (late CDRs), so K1002's January rows and EVNs stay until 15 December; everyone else's
/// January goes six months after 3 February, as it would without the re-bill.
#[test]
fn a_later_bill_keeps_only_that_customer_s_month_longer() {
    let f = fixture_in(Local, None);
    let manifest = f.evn.join("2026-01/manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let versions = m["customers"]["K1002"]["versions"].as_array_mut().unwrap();
    let mut v2 = versions[0].clone();
    v2["version"] = 2.into();
    v2["file"] = "K1002.v2.pdf".into();
    v2["created"] = "2026-06-15".into();
    versions.push(v2);
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    std::fs::write(f.evn.join("2026-01/K1002.v2.pdf"), "EVN v2").unwrap();

    let out = f.retention("2026-08-04");
    assert!(
        out.contains("delete 2026-01 except K1002 (billed again later"),
        "{out}"
    );
    let jan: Vec<_> = f
        .stored()
        .into_iter()
        .filter(|(m, _)| m == "2026-01")
        .collect();
    assert_eq!(jan, vec![("2026-01".to_owned(), "K1002".to_owned()); 2]);
    assert_eq!(f.manifest_customers("2026-01"), ["K1002"]);
    assert_eq!(
        f.evn_files("2026-01"),
        [
            "K1002.pdf",
            "K1002.v1.csv",
            "K1002.v1.pdf",
            "K1002.v2.pdf",
            "manifest.json"
        ]
    );

    let out = f.retention("2026-12-15");
    assert!(out.contains("keep 2026-01: billed 2026-06-15"), "{out}");
    let out = f.retention("2026-12-16");
    assert!(out.contains("delete 2026-01: billed 2026-06-15"), "{out}");
    assert!(f.stored().iter().all(|(m, _)| m != "2026-01"));
    assert!(!f.evn.join("2026-01").exists() || f.evn_files("2026-01").is_empty());
}

#[test]
fn a_legal_hold_keeps_only_the_held_customer_until_it_is_lifted() {
    for mode in [Local, Url] {
        let f = fixture_in(mode, None);
        f.hold(&["K1002,2026-01,objection of 2026-02-20 (ticket 4711),2026-02-21"]);
        let out = f.retention("2026-08-04");
        assert!(
            out.contains("delete 2026-01 except legal holds of K1002"),
            "{out}"
        );
        // JAN_A is rewritten to K1002's rows; JAN_B (K1001 only) goes.
        assert!(
            out.contains(&format!(
                "rewrite traffic data file {}/cdrs/billing_month=2026-01/{JAN_A}",
                f.data_arg()
            )),
            "{out}"
        );
        assert!(out.contains("(all 1 rows)"), "{out}");
        let jan: Vec<_> = f
            .stored()
            .into_iter()
            .filter(|(m, _)| m == "2026-01")
            .collect();
        assert_eq!(jan, vec![("2026-01".to_owned(), "K1002".to_owned()); 2]);
        // The rewritten rows are the held customer's rows exactly, provenance columns included.
        let mut kept: Vec<_> = stored_rows(&f.data)
            .into_iter()
            .filter(|r| r.call.billing_month.to_string() == "2026-01")
            .collect();
        kept.sort_by_key(|r| r.source_offset);
        assert_eq!(
            kept,
            [1, 4].map(|i| privacy_call("K1002", "2026-01", i, false))
        );
        assert!(
            kept[0].provenance.is_some(),
            "call 1 came from a switch format"
        );
        assert_eq!(
            f.evn_files("2026-01"),
            ["K1002.pdf", "K1002.v1.csv", "K1002.v1.pdf", "manifest.json"]
        );
        assert_eq!(f.manifest_customers("2026-01"), ["K1002"]);
        // March has no hold: it goes when its own six months are over, whatever January's hold.
        assert!(f.evn.join("2026-03").exists());

        // A re-run with the hold in place changes nothing more.
        let held = f.tree();
        f.retention("2026-08-05");
        assert_eq!(f.tree(), held);

        // Lifting the hold: the next run deletes the rest.
        f.hold(&[]);
        let out = f.retention("2026-08-05");
        assert!(out.contains("delete traffic data 2026-01"), "{out}");
        assert!(!f.evn.join("2026-01").exists());
        assert!(f.stored().iter().all(|(m, _)| m != "2026-01"));
    }
}

#[test]
fn dry_run_changes_nothing() {
    for mode in [Local, Url] {
        let f = fixture_in(mode, None);
        f.hold(&["K1002,2026-01,objection,2026-02-21"]);
        let stale = f
            .data
            .join("_staging/dead-writer/billing_month=2026-01+x.parquet");
        std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
        std::fs::write(&stale, "rows").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(8 * 86_400);
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let before = f.tree();
        let out = f.run("retention", &["--today", "2027-01-01", "--dry-run"]);
        assert!(out.status.success());
        let out = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.contains("[dry run] delete 2026-01 except legal holds of K1002"),
            "{out}"
        );
        assert!(out.contains("[dry run] rewrite traffic data file"), "{out}");
        assert!(
            out.contains("[dry run] delete traffic data 2026-03"),
            "{out}"
        );
        assert!(out.contains("[dry run] delete stale staging file"), "{out}");
        assert_eq!(f.tree(), before);
    }
}

#[test]
fn an_interrupted_deletion_is_invisible_and_finished_by_the_next_run() {
    let f = fixture(None);
    // The state a kill -9 leaves between the rename and the end of the removal: January
    // renamed and half removed, the EVN folder renamed, a rewrite's temp file in March.
    let cdrs = f.data.join("cdrs");
    std::fs::rename(
        cdrs.join("billing_month=2026-01"),
        cdrs.join(".deleting-billing_month=2026-01"),
    )
    .unwrap();
    std::fs::remove_file(cdrs.join(".deleting-billing_month=2026-01").join(JAN_B)).unwrap();
    std::fs::rename(f.evn.join("2026-01"), f.evn.join(".deleting-2026-01")).unwrap();
    let tmp = cdrs
        .join("billing_month=2026-03")
        .join(format!(".{MAR}.privacy-tmp"));
    std::fs::write(&tmp, "half a parquet file").unwrap();

    // Readers never see the half-deleted month: not the store, not the export, not billing.
    assert_eq!(months(&f.stored()), ["2026-03", "2026-05"]);
    let out = evn(&[
        "export",
        "--customer",
        "K1001",
        "--data",
        f.data.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(!String::from_utf8(out.stdout)
        .unwrap()
        .contains("\"2026-01\""));

    // The next run (inside every retention period) only finishes the leftovers.
    let out = f.retention("2026-02-10");
    assert_eq!(
        out.matches("remove leftover of an interrupted run").count(),
        3,
        "{out}"
    );
    let after = f.tree();
    assert!(
        after
            .keys()
            .all(|k| !k.contains(".deleting-") && !k.contains("privacy-tmp")),
        "{after:?}"
    );
    assert_eq!(months(&f.stored()), ["2026-03", "2026-05"]);
    assert_eq!(f.evn_files("2026-03").len(), 7);
}

/// Issue #9: what a killed retention run leaves on an object store (a committed change half
/// carried out, replacements uploaded without their record, an EVN month whose deletion had
/// begun) is invisible to readers and finished by the next run.
#[test]
fn an_interrupted_change_on_an_object_store_is_invisible_and_finished_by_the_next_run() {
    let f = fixture_in(Url, None);
    let march_before: Vec<_> = f
        .tree()
        .into_iter()
        .filter(|(k, _)| k.contains("2026-03"))
        .collect();
    // January's data: a committed deletion of the whole month, JAN_B already gone.
    let jan = f.data.join("cdrs/billing_month=2026-01");
    let change =
        serde_json::json!({"month": "2026-01", "files": {JAN_A: "delete", JAN_B: "delete"}});
    std::fs::write(jan.join("_change.json"), change.to_string()).unwrap();
    std::fs::remove_file(jan.join(JAN_B)).unwrap();
    // March's data: a rewrite uploaded, killed before its change record (the commit point).
    let upload = f.data.join("cdrs/billing_month=2026-03/_rewrite");
    std::fs::create_dir_all(&upload).unwrap();
    std::fs::write(upload.join(MAR), "half a parquet file").unwrap();
    // January's EVNs: the deletion mark written and the manifest deleted, the files not yet.
    std::fs::write(f.evn.join("2026-01/_deleting.json"), "{}").unwrap();
    std::fs::remove_file(f.evn.join("2026-01/manifest.json")).unwrap();

    // Readers see January deleted and March as it was: the store, the export.
    assert_eq!(months(&f.stored()), ["2026-03", "2026-05"]);
    let exported = export(&f.data_arg(), "K1001", &[]);
    assert!(!exported.contains("\"2026-01\""), "{exported}");
    assert_eq!(
        exported.lines().count(),
        1,
        "March's one call that is not counselling"
    );

    let out = f.retention("2026-02-10");
    assert_eq!(
        out.matches("remove leftover of an interrupted run").count(),
        3,
        "{out}"
    );
    let after = f.tree();
    assert!(
        after.keys().all(|k| !k.contains("2026-01")
            && !k.contains("_change")
            && !k.contains("_rewrite")
            && !k.contains("_deleting")),
        "{after:?}"
    );
    let march_after: Vec<_> = after
        .into_iter()
        .filter(|(k, _)| k.contains("2026-03"))
        .collect();
    assert_eq!(march_after, march_before);
    assert_eq!(months(&f.stored()), ["2026-03", "2026-05"]);
    // Nothing left to finish.
    let again = f.retention("2026-02-10");
    assert!(!again.contains("remove leftover"), "{again}");
}

#[test]
fn retention_sweeps_stale_staging_files_but_not_what_recovery_needs() {
    for mode in [Local, Url] {
        let f = fixture_in(mode, None);
        let dir = f.data.join("_staging/w1");
        std::fs::create_dir_all(&dir).unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(8 * 86_400);
        let (stale, fresh, needed) = (
            dir.join("stale.parquet"),
            dir.join("fresh.parquet"),
            dir.join("needed.parquet"),
        );
        for p in [&stale, &fresh, &needed] {
            std::fs::write(p, "rows").unwrap();
        }
        for p in [&stale, &needed] {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let record = f.data.join("_ingest/cdrs/0");
        std::fs::create_dir_all(&record).unwrap();
        let commit = serde_json::json!({"topic": "cdrs", "partition": 0, "first": 11, "last": 11, "writer": "w1",
            "files": [{"month": "2026-05", "staging": "_staging/w1/needed.parquet",
                       "file": "cdrs/billing_month=2026-05/x.parquet", "rows": 1, "bytes": 4}]});
        std::fs::write(record.join("11.json"), commit.to_string()).unwrap();
        let out = f.retention("2026-02-10");
        assert!(out.contains("delete stale staging file"), "{out}");
        assert!(!stale.exists());
        assert!(fresh.exists() && needed.exists());
    }
}

#[test]
fn a_malformed_legal_holds_file_is_a_configuration_error() {
    for mode in [Local, Url] {
        let f = fixture_in(mode, None);
        f.hold(&[
            "K1002,2026-01,objection,2026-02-21",
            "K1003,January,objection,2026-02-21",
        ]);
        let before = f.tree();
        let out = f.run("retention", &["--today", "2027-01-01"]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("legal-holds.csv:3: month"), "{err}");
        assert_eq!(f.tree(), before);
    }
}

/// A hold naming nobody the month has anything of is a typo that would let retention delete
/// the disputed data: retention and erase stop with exit 2 and change nothing.
#[test]
fn a_legal_hold_that_matches_nothing_stops_retention_and_erase() {
    for mode in [Local, Url] {
        let f = fixture_in(mode, None);
        let before = f.tree();
        let refused = |args: &[&str], why: &str| {
            let out = f.run(args[0], &args[1..]);
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(err.contains(why), "{err}");
            assert_eq!(f.tree(), before, "{args:?} changed something");
        };
        f.hold(&[
            "K1002,2026-01,objection,2026-02-21",
            "k1002,2026-01,objection of 2026-02-20,2026-02-21",
        ]);
        refused(
            &["retention", "--today", "2027-01-01"],
            "legal-holds.csv:3: the hold names k1002 in 2026-01, who has no stored calls, EVNs or bill in that month (K1002 has: mind the spelling)",
        );
        f.hold(&["K1002,2026-02,objection,2026-03-21"]);
        refused(
            &["retention", "--today", "2027-01-01", "--dry-run"],
            "legal-holds.csv:2: the hold names K1002 in 2026-02",
        );
        f.hold(&["k9,2026-01,objection,2026-02-21"]);
        refused(
            &["erase", "--customer", "K9", "--today", "2027-01-01"],
            "(K9 has: mind the spelling)",
        );
    }
}

#[test]
fn retention_with_a_hold_keeps_encrypted_data_encrypted() {
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), format!("{}\n", "ab".repeat(32))).unwrap();
    let keys = std::sync::Arc::new(evn_store::Keyring::load(key_file.path()).unwrap());
    for mode in [Local, Url] {
        let f = fixture_in(mode, Some(keys.clone()));
        f.hold(&["K1002,2026-01,objection,2026-02-21"]);
        let (c, d, e) = (f.config.to_str().unwrap(), &f.data_arg(), &f.evn_arg());
        let args = [
            "retention",
            "--config",
            c,
            "--data",
            d,
            "--evn",
            e,
            "--today",
            "2026-08-04",
        ];
        // Without the key the held month cannot be rewritten: an error, and nothing changes.
        let before = f.tree();
        let out = evn_env(&args, &[], &["EVN_DATA_KEY_FILE"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(f.tree(), before);
        let out = evn_env(
            &args,
            &[("EVN_DATA_KEY_FILE", key_file.path().to_str().unwrap())],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let file = f.data.join("cdrs/billing_month=2026-01").join(JAN_A);
        assert!(
            evn_store::read_file(&file, &mut |_| {}).is_err(),
            "still encrypted"
        );
        let mut held = Vec::new();
        evn_store::read_file_with(&file, Some(&keys), &mut |r| held.push(r.call.customer_id))
            .unwrap();
        assert_eq!(held, ["K1002", "K1002"]);
    }
}

fn export(data: &str, customer: &str, format: &[&str]) -> String {
    let mut args = vec!["export", "--customer", customer, "--data", data];
    args.extend_from_slice(format);
    let out = evn(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn export_equals_the_stored_rows_without_counselling_calls() {
    for mode in [Local, Url] {
        let f = fixture_in(mode, None);
        let expected: Vec<evn_store::StoredCall> = stored_rows(&f.data)
            .into_iter()
            .filter(|r| r.call.customer_id == "K1001" && !r.call.counselling)
            .collect();
        assert_eq!(expected.len(), 5);
        let jsonl = export(&f.data_arg(), "K1001", &[]);
        let lines: Vec<serde_json::Value> = jsonl
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), expected.len(), "{jsonl}");
        for (line, row) in lines.iter().zip(&expected) {
            let c = &row.call;
            assert_eq!(line["billing_month"], c.billing_month.to_string());
            assert_eq!(line["customer_id"], "K1001");
            assert_eq!(line["cdr_id"], c.cdr_id.as_str());
            assert_eq!(line["called_number"], c.called_number.as_str());
            assert_eq!(line["calling_number"], c.calling_number.as_str());
            assert_eq!(line["duration_s"], c.duration_s);
            assert_eq!(line["charge_eur"], c.charge_eur.to_string());
            assert_eq!(
                line["start_time"]
                    .as_str()
                    .unwrap()
                    .parse::<chrono::DateTime<chrono::Utc>>()
                    .unwrap(),
                c.start_time
            );
            assert_eq!(line["source_offset"], row.source_offset);
            let provenance = row.provenance.as_ref();
            assert_eq!(
                line["source_format"],
                serde_json::json!(provenance.map(|p| &p.format))
            );
            assert_eq!(
                line["source_record_id"],
                serde_json::json!(provenance.map(|p| &p.record_id))
            );
        }
        assert!(
            !jsonl.contains("+498001110111"),
            "counselling calls are withheld"
        );
        let csv = export(&f.data_arg(), "K1001", &["--format", "csv"]);
        let mut csv_lines = csv.lines();
        assert!(csv_lines
            .next()
            .unwrap()
            .starts_with("billing_month,customer_id,start_time,"));
        assert_eq!(csv_lines.count(), expected.len());
        // A customer without data: the header only.
        assert_eq!(
            export(&f.data_arg(), "K4242", &["--format", "csv"])
                .lines()
                .count(),
            1
        );
        assert_eq!(export(&f.data_arg(), "K4242", &[]), "");
    }
}

/// What the EVN hides the export withholds: a number put on the counselling list after its
/// calls were ingested is withheld once `--config` gives today's list. A second stored copy of
/// a call (same switch and CDR id, e.g. from two partitions) is exported once, as it is billed.
#[test]
fn export_applies_todays_counselling_list_and_leaves_out_second_copies() {
    let f = fixture_in(Local, None);
    let copy = privacy_call("K1001", "2026-01", 3, false);
    let dup = "cdrs+2+00000000000000000000-00000000000000000000.parquet";
    write_month_file(&f.data, "2026-01", dup, &[copy], None);
    let before = export(&f.data_arg(), "K1001", &[]);
    assert_eq!(before.lines().count(), 5, "{before}");
    assert!(before.contains("+4915112345003"));

    let list = f.config.join("counselling-numbers.txt");
    let mut text = std::fs::read_to_string(&list).unwrap();
    text.push_str("+49 151 12345003\n");
    std::fs::write(&list, text).unwrap();
    let config = f.config.display().to_string();
    let after = export(&f.data_arg(), "K1001", &["--config", &config]);
    assert_eq!(after.lines().count(), 4, "{after}");
    assert!(!after.contains("+4915112345003"), "{after}");
}

#[test]
fn erase_refuses_while_the_law_needs_the_data_and_succeeds_after() {
    for mode in [Local, Url] {
        let f = fixture_in(mode, None);
        let before = f.tree();
        let stored_before = f.stored();
        let refused = |today: &str, why: &str| {
            let out = f.run("erase", &["--customer", "K9", "--today", today]);
            assert_eq!(out.status.code(), Some(1));
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(err.contains(why), "{err}");
            assert!(err.contains("nothing was changed"), "{err}");
            assert_eq!(f.tree(), before, "a refusal changes nothing");
        };
        // A current customer is never erased.
        let out = f.run("erase", &["--customer", "K1001", "--today", "2027-01-01"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("still listed in customers.csv"));
        // A legal hold.
        f.hold(&["K9,2026-01,objection of 2026-02-20,2026-02-21"]);
        refused("2026-07-01", "legal hold on 2026-01");
        // March billed 2026-04-02: disputable through 2026-05-28 (8 weeks).
        f.hold(&[]);
        std::fs::remove_file(f.config.join("legal-holds.csv")).unwrap();
        refused("2026-05-28", "can be disputed until 2026-05-28");

        let out = f.run("erase", &["--customer", "K9", "--today", "2026-05-29"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.contains("erased K9: 3 stored calls, 6 EVN files"),
            "{out}"
        );
        let others: Vec<_> = stored_before
            .into_iter()
            .filter(|(_, c)| c != "K9")
            .collect();
        assert_eq!(
            f.stored(),
            others,
            "everyone else's rows are untouched, K9's are gone"
        );
        for month in ["2026-01", "2026-03"] {
            assert!(f.evn_files(month).iter().all(|n| !n.starts_with("K9.")));
            assert!(!f.manifest_customers(month).contains(&"K9".to_owned()));
        }
        assert_eq!(f.manifest_customers("2026-01"), ["K1001", "K1002"]);
    }
}

#[test]
fn erase_waits_for_a_month_not_billed_yet() {
    for mode in [Local, Url] {
        let f = fixture_in(mode, None);
        write_month_file(
            &f.data,
            "2026-06",
            "cdrs+0+x.parquet",
            &[privacy_call("K9", "2026-06", 1, false)],
            None,
        );
        let out = f.run(
            "erase",
            &["--customer", "K9", "--today", "2026-07-01", "--dry-run"],
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr)
            .contains("2026-06 holds their calls and is not billed yet"));
    }
}

/// Issue #8: retention killed with SIGKILL at every moment of its run (increasing delays
/// until a run gets through) never leaves a month that readers see half deleted: January is
/// either as it was or as it will be, never a mix; the next run finishes it. Once a plain
/// deletion, once with a legal hold (the month's files rewritten).
#[test]
fn retention_killed_at_any_moment_never_shows_a_half_deleted_month() {
    for (mode, hold) in [(Local, false), (Local, true), (Url, false), (Url, true)] {
        let f = fixture_in(mode, None);
        // Many files, so that a run takes long enough to be interrupted inside the month.
        for i in 0..120u32 {
            write_month_file(
                &f.data,
                "2026-01",
                &format!("cdrs+2+{i:020}-{i:020}.parquet"),
                &[
                    privacy_call("K1001", "2026-01", 20 + i, false),
                    privacy_call("K1002", "2026-01", 20 + i, false),
                ],
                None,
            );
        }
        if hold {
            f.hold(&["K1002,2026-01,objection (ticket 4711),2026-02-21"]);
        }
        let january = |f: &Fixture| -> Vec<(String, String)> {
            f.stored()
                .into_iter()
                .filter(|(m, _)| m == "2026-01")
                .collect()
        };
        let before = january(&f);
        let after: Vec<_> = if hold {
            before
                .iter()
                .filter(|(_, c)| c == "K1002")
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let march = f
            .tree()
            .into_iter()
            .filter(|(k, _)| k.contains("2026-03") && !k.ends_with('/'))
            .count();
        let (mut kills, mut mid_way) = (0, 0);
        let mut delay = Duration::from_millis(2);
        loop {
            let mut child = std::process::Command::new(bin())
                .args([
                    "retention",
                    "--config",
                    f.config.to_str().unwrap(),
                    "--data",
                    &f.data_arg(),
                    "--evn",
                    &f.evn_arg(),
                    "--today",
                    "2026-09-01",
                ])
                .env("EVN_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(delay);
            let finished = child.try_wait().unwrap().is_some();
            let _ = child.kill();
            let status = child.wait().unwrap();
            let now = january(&f);
            assert!(
                now == before || now == after,
                "{mode:?}, hold {hold}, killed after {delay:?}: January shows {} of {} rows",
                now.len(),
                before.len()
            );
            if finished {
                assert!(status.success(), "{mode:?}, hold {hold}: {status}");
                break;
            }
            kills += 1;
            if now != before {
                mid_way += 1;
            }
            assert!(kills < 200, "retention never finished");
            // Fine steps at first, then growing: a loaded machine may need seconds per run.
            delay += (delay / 12).max(Duration::from_micros(500));
        }
        // Whatever the last kill left, the next run finishes it and the result is the same.
        f.retention("2026-09-01");
        assert_eq!(january(&f), after, "{mode:?}, hold {hold}");
        let mut tree = f.tree();
        // object_store's `file://` writes a PUT or copy to `<name>#<n>` and renames it: a
        // killed one leaves that file, which its listings skip (S3 has no such thing). Only
        // objects count here.
        tree.retain(|k, _| !k.contains('#') && !k.ends_with('/'));
        assert!(
            tree.keys().all(|k| !k.contains(".deleting-")
                && !k.contains(".rewriting-")
                && !k.contains("privacy-tmp")
                && !k.contains("_change.json")
                && !k.contains("_rewrite")
                && !k.contains("_deleting")),
            "{tree:?}"
        );
        assert_eq!(tree.keys().filter(|k| k.contains("2026-03")).count(), march);
        eprintln!(
            "{mode:?}, hold {hold}: {kills} runs killed, {mid_way} after January had changed"
        );
    }
}

/// A mistyped or unmounted local `--data` or `--evn` used to be read as an empty store:
/// "0 months", "0 calls", "erased", exit 0.
#[test]
fn a_missing_local_folder_is_a_usage_error_naming_the_flag() {
    let f = fixture(None);
    let missing = f.data.with_file_name("no-such-folder");
    let (c, d, e, m) = (
        f.config.to_str().unwrap(),
        f.data.to_str().unwrap(),
        f.evn.to_str().unwrap(),
        missing.to_str().unwrap(),
    );
    let today = ["--today", "2027-01-01"];
    let retention = |data, evn| {
        [
            &["retention", "--config", c, "--data", data, "--evn", evn][..],
            &today,
        ]
        .concat()
    };
    let erase = |data, evn| {
        let args = [
            "erase",
            "--customer",
            "K9",
            "--config",
            c,
            "--data",
            data,
            "--evn",
            evn,
        ];
        [&args[..], &today].concat()
    };
    let before = f.tree();
    for (flag, args) in [
        ("--data", retention(m, e)),
        ("--evn", retention(d, m)),
        ("--data", vec!["export", "--customer", "K1001", "--data", m]),
        ("--data", erase(m, e)),
        ("--evn", erase(d, m)),
    ] {
        let out = evn(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("{flag} {m}: no such folder")),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert!(!missing.exists());
    assert_eq!(f.tree(), before);

    // An existing empty folder is an empty store, and an object store prefix is never checked.
    let empty = f.data.with_file_name("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(export(empty.to_str().unwrap(), "K1001", &[]), "");
    assert_eq!(export(&format!("file://{m}"), "K1001", &[]), "");
}

/// `s3:/bucket` (one slash) was a local path: the data went to a folder named `s3:`.
#[test]
fn a_url_missing_a_slash_is_refused_not_written_to_a_local_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config_dir();
    let c = config.to_str().unwrap();
    for (scheme, args) in [
        (
            "s3",
            vec!["export", "--customer", "K1001", "--data", "s3:/bucket/data"],
        ),
        (
            "gs",
            vec![
                "bill",
                "--config",
                c,
                "--data",
                "gs:/bucket/data",
                "--month",
                "2026-01",
                "--out",
                "evn",
            ],
        ),
        (
            "file",
            vec![
                "bill",
                "--config",
                c,
                "--data",
                "data",
                "--month",
                "2026-01",
                "--out",
                "file:/srv/evn",
            ],
        ),
    ] {
        let out = std::process::Command::new(bin())
            .args(&args)
            .current_dir(tmp.path())
            .env("EVN_LOG", "warn")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("write {scheme}://")),
            "{args:?}: {err}"
        );
        assert!(!tmp.path().join(format!("{scheme}:")).exists(), "{args:?}");
    }
}

/// Traffic data is nobody else's business: started with umask 000, the whole pipeline (the
/// demo: broker, ingest, billing run) still creates nothing that other users may read, write
/// or enter.
#[test]
fn nothing_evn_writes_is_open_to_other_users() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = std::process::Command::new("sh")
        .args(["-c", r#"umask 000 && exec "$0" demo --dir "$1""#])
        .arg(bin())
        .arg(&dir)
        .env("EVN_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut seen, mut stack) = (0, vec![dir.clone()]);
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            let mode = meta.permissions().mode() & 0o777;
            assert_eq!(
                mode & 0o007,
                0,
                "{} is open to others: {mode:o}",
                e.path().display()
            );
            seen += 1;
            if meta.is_dir() {
                stack.push(e.path());
            }
        }
    }
    let pdfs = walk(&dir.join("evn"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "pdf"))
        .count();
    assert!(pdfs >= 2 && seen > 10, "{seen} entries, {pdfs} EVNs");
}
