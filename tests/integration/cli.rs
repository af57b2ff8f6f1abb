//! `evn validate` and configuration errors through the real binary.

use crate::support::*;

fn copy_config(dir: &std::path::Path) {
    for f in [
        "provider.toml",
        "tariffs.toml",
        "customers.csv",
        "counselling-numbers.txt",
    ] {
        std::fs::copy(config_dir().join(f), dir.join(f)).unwrap();
    }
}

#[test]
fn validate_accepts_the_example_configuration() {
    let out = evn(&["validate", "--config", config_dir().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("customers:    5"), "{text}");
    assert!(text.contains("counselling:  6 numbers"), "{text}");
}

#[test]
fn float_price_is_exit_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    copy_config(dir.path());
    let tariffs = std::fs::read_to_string(dir.path().join("tariffs.toml")).unwrap();
    std::fs::write(
        dir.path().join("tariffs.toml"),
        tariffs.replacen(r#"per_minute = "0.1490""#, "per_minute = 0.149", 1),
    )
    .unwrap();
    let out = evn(&["validate", "--config", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    let line = 1 + tariffs
        .lines()
        .position(|l| l.contains(r#"per_minute = "0.1490""#))
        .unwrap();
    assert!(err.contains(&format!("tariffs.toml:{line}:")), "{err}");
    assert!(err.contains("floats are not allowed"), "{err}");
}

#[test]
fn unknown_plan_is_exit_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    copy_config(dir.path());
    let mut csv = std::fs::read_to_string(dir.path().join("customers.csv")).unwrap();
    csv.push_str("K2000,Neu GmbH,Weg 1,12345,Ort,gold,true,false,2026-01-01\n");
    std::fs::write(dir.path().join("customers.csv"), csv).unwrap();
    let out = evn(&["validate", "--config", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("customers.csv:9: customer K2000: unknown plan \"gold\""),
        "{err}"
    );
}

#[test]
fn ingest_with_bad_config_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = evn(&[
        "ingest",
        "--brokers",
        "127.0.0.1:1",
        "--topic",
        "t",
        "--group",
        "g",
        "--config",
        dir.path().to_str().unwrap(),
        "--data",
        dir.path().join("d").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!dir.path().join("d").exists());
}

/// Logs piped to a file or a journal carried ANSI colour codes around every field.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let data = tempfile::tempdir().unwrap();
    let args = [
        "export",
        "--customer",
        "K1001",
        "--data",
        data.path().to_str().unwrap(),
    ];
    let out = evn_env(
        &args,
        &[("EVN_LOG", "info")],
        &["NO_COLOR", "EVN_DATA_KEY_FILE"],
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("EVN_DATA_KEY_FILE is not set"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

/// `--exit-when-idle=-1` (or nan, inf, 1e30) panicked in `Duration::from_secs_f64`: exit 101.
#[test]
fn ingest_refuses_an_exit_when_idle_no_duration_holds() {
    let data = tempfile::tempdir().unwrap();
    let (c, d) = (
        config_dir().to_str().unwrap().to_owned(),
        data.path().to_str().unwrap().to_owned(),
    );
    for idle in ["-1", "nan", "inf", "1e30"] {
        let idle = format!("--exit-when-idle={idle}");
        let args = [
            "ingest",
            "--brokers",
            "127.0.0.1:1",
            "--topic",
            "cdrs",
            "--group",
            "g",
            "--config",
            &c,
            "--data",
            &d,
            &idle,
        ];
        let out = evn(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{idle}: {err}");
        assert!(err.contains("is not between 0 and"), "{idle}: {err}");
        assert!(!err.contains("panicked"), "{idle}: {err}");
    }
}

/// `evn validate | head -1` panicked writing to the closed pipe (exit 101) when head had gone
/// first. Here stdout is a pipe whose reader is gone before evn starts, so every write fails.
#[test]
fn a_closed_stdout_ends_the_output_not_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let (config, d) = (
        config_dir().to_str().unwrap().to_owned(),
        dir.path().to_str().unwrap().to_owned(),
    );
    let export = ["export", "--customer", "K1001", "--data", &d];
    for args in [
        &["validate", "--config", &config][..],
        &[&export[..], &["--format", "csv"]].concat(),
        &["retention", "--config", &config, "--data", &d, "--evn", &d],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(bin())
            .args(args)
            .env("EVN_LOG", "warn")
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("error"), "{args:?}: {err}");
    }
}

/// A customer name the EVN font cannot show (CJK, emoji) is accepted with a warning naming the
/// line and the characters: they would print blank in the PDF.
#[test]
fn validate_warns_about_characters_the_evn_font_lacks() {
    let dir = tempfile::tempdir().unwrap();
    copy_config(dir.path());
    let customers = dir.path().join("customers.csv");
    let mut text = std::fs::read_to_string(&customers).unwrap();
    text.push_str(
        "K7001,株式会社 Rakete 🚀,Hauptstraße 1,10115,Berlin,office_basic,true,false,2026-01-01\n",
    );
    std::fs::write(&customers, &text).unwrap();
    let line = text.lines().count();
    let out = evn(&["validate", "--config", dir.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("customers.csv line {line}: customer K7001")),
        "{stderr}"
    );
    for c in ['株', '式', '会', '社', '🚀'] {
        assert!(stderr.contains(c), "{c} in {stderr}");
    }
    assert!(!stderr.contains("K1001"), "umlauts print: {stderr}");
}
