//! The deployment files parse and say what operations need: kinds, images, probes, limits,
//! non-root, no secret inlined, and only flags the binary really has.

use std::collections::BTreeSet;

use serde_yaml_ng::Value;

use crate::support::*;

fn k8s_docs() -> Vec<(String, Value)> {
    let dir = repo().join("deploy/k8s");
    let mut docs = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = <Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            docs.push((f.file_name().unwrap().to_string_lossy().into_owned(), v));
        }
    }
    docs
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn str_of(v: &Value, path: &[&str]) -> String {
    s(v, path)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{path:?} missing"))
        .to_owned()
}

/// The pod spec of a workload, wherever its kind keeps it.
fn pod_spec(v: &Value) -> Option<&Value> {
    match v.get("kind")?.as_str()? {
        "Deployment" | "StatefulSet" => s(v, &["spec", "template", "spec"]),
        "CronJob" => s(v, &["spec", "jobTemplate", "spec", "template", "spec"]),
        _ => None,
    }
}

fn help(sub: &str) -> String {
    let out = evn(&[sub, "--help"]);
    assert!(out.status.success(), "evn {sub} --help");
    String::from_utf8(out.stdout).unwrap()
}

/// Every `--flag` in `text` is one `evn <sub>` accepts.
fn assert_flags_exist(sub: &str, text: &str) {
    let help = help(sub);
    for flag in text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
    {
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "`evn {sub}` has no flag {flag}"
        );
    }
}

#[test]
fn kubernetes_manifests_parse_and_are_fit_to_run() {
    let docs = k8s_docs();
    let kinds: BTreeSet<String> = docs.iter().map(|(_, d)| str_of(d, &["kind"])).collect();
    for k in [
        "Namespace",
        "Deployment",
        "CronJob",
        "Service",
        "PersistentVolumeClaim",
    ] {
        assert!(kinds.contains(k), "a {k} is deployed");
    }
    assert!(
        !kinds.contains("Secret"),
        "secrets are created by the operator, never committed"
    );
    let mut workloads = 0;
    for (file, doc) in &docs {
        let Some(pod) = pod_spec(doc) else { continue };
        workloads += 1;
        assert_eq!(
            s(pod, &["securityContext", "runAsNonRoot"]).and_then(Value::as_bool),
            Some(true),
            "{file}: pods run as non-root"
        );
        for c in pod["containers"].as_sequence().unwrap() {
            let image = str_of(c, &["image"]);
            assert!(
                image.contains("/evn:") && !image.ends_with(":latest"),
                "{file}: a pinned evn image, not {image}"
            );
            assert!(
                s(c, &["resources", "requests", "cpu"]).is_some()
                    && s(c, &["resources", "limits", "memory"]).is_some(),
                "{file}: requests and a memory limit"
            );
            assert_eq!(
                s(c, &["securityContext", "allowPrivilegeEscalation"]).and_then(Value::as_bool),
                Some(false),
                "{file}"
            );
            for e in c
                .get("env")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                let name = str_of(e, &["name"]);
                let sensitive = ["SECRET", "PASSWORD", "TOKEN"]
                    .iter()
                    .any(|w| name.contains(w))
                    || (name.contains("KEY") && !name.ends_with("_FILE"));
                if sensitive {
                    assert!(
                        s(e, &["valueFrom", "secretKeyRef"]).is_some(),
                        "{file}: {name} comes from a Secret, never inline"
                    );
                }
            }
            let args: Vec<String> = c
                .get("args")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect();
            let kind = str_of(doc, &["kind"]);
            if kind == "Deployment" {
                // Long-running: both probes, over HTTP endpoints the binary serves.
                for probe in ["livenessProbe", "readinessProbe"] {
                    let path = str_of(c, &[probe, "httpGet", "path"]);
                    assert!(
                        ["/healthz", "/readyz"].contains(&path.as_str()),
                        "{file}: {probe} {path}"
                    );
                }
                let sub = args[0].clone();
                assert_flags_exist(&sub, &args[1..].join(" "));
            } else if args.first().is_some_and(|a| a == "retention") {
                // Daily retention (issue 8): plain arguments, no shell.
                assert_flags_exist("retention", &args[1..].join(" "));
            } else {
                // The billing job runs through a shell for the month arithmetic.
                let script = args.join(" ");
                assert!(script.contains("evn bill"), "{file}: {script}");
                assert!(script.contains("--shard"), "{file}: sharded");
                assert_flags_exist("bill", &script.replace("date -d", "date"));
            }
        }
        let billing = serde_yaml_ng::to_string(pod).unwrap().contains("evn bill");
        if str_of(doc, &["kind"]) == "CronJob" && billing {
            let job = s(doc, &["spec", "jobTemplate", "spec"]).unwrap();
            assert_eq!(str_of(job, &["completionMode"]), "Indexed");
            let n = job["completions"].as_u64().unwrap();
            let script = serde_yaml_ng::to_string(pod).unwrap();
            assert!(
                script.contains(&format!("/{n}")),
                "{file}: --shard I/{n} matches completions"
            );
        }
    }
    assert_eq!(workloads, 4, "ingest, billing, retention, portal");
    let kustomization =
        std::fs::read_to_string(repo().join("deploy/k8s/kustomization.yaml")).unwrap();
    for f in std::fs::read_dir(repo().join("deploy/k8s")).unwrap() {
        let name = f.unwrap().file_name().to_string_lossy().into_owned();
        if name != "kustomization.yaml" {
            assert!(
                kustomization.contains(&name),
                "{name} is in kustomization.yaml"
            );
        }
    }
}

#[test]
fn compose_runs_a_real_kraft_kafka_and_inlines_no_secret() {
    let text = std::fs::read_to_string(repo().join("deploy/docker-compose.yml")).unwrap();
    let mut v: Value = serde_yaml_ng::from_str(&text).unwrap();
    v.apply_merge().unwrap();
    let services = v["services"].as_mapping().unwrap();
    let kafka = &v["services"]["kafka"];
    assert!(str_of(kafka, &["image"]).starts_with("apache/kafka:"));
    assert!(str_of(kafka, &["environment", "KAFKA_PROCESS_ROLES"]).contains("controller"));
    for name in ["ingest", "serve"] {
        let svc = &v["services"][name];
        let cmd: Vec<&str> = svc["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(cmd[0], name);
        assert_flags_exist(name, &cmd[1..].join(" "));
    }
    assert!(services.len() >= 4);
    let secret = str_of(
        &v["services"]["serve"],
        &["environment", "EVN_PORTAL_SECRET"],
    );
    assert!(
        secret.starts_with("${"),
        "the portal secret comes from the environment"
    );
}

#[test]
fn dockerfile_is_multi_stage_and_runs_unprivileged() {
    let text = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let froms = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "multi-stage");
    let user = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "{user}"
    );
    assert!(text.contains("--locked"), "builds what Cargo.lock pins");
}
