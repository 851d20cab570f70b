//! The README's main job, end to end with the real binary: `feedstix run --once` on the
//! shipped examples writes valid bundles for every feed, and a second run writes nothing.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[test]
fn examples_run_once_write_valid_bundles_and_rerun_writes_nothing() {
    let dir = examples_copy();
    let config = dir.path().join("feeds.toml");
    let out = dir.path().join("out");
    let args = [
        "run",
        "--config",
        config.to_str().unwrap(),
        "--once",
        "--out",
        out.to_str().unwrap(),
    ];

    let first = run(&args);
    let report = text(&first);
    assert!(first.status.success(), "first run failed:\n{report}");
    assert!(
        !report.contains('\u{1b}'),
        "colour codes in logs that go to a pipe:\n{report}"
    );
    assert!(
        report.contains("page committed"),
        "no log line per page:\n{report}"
    );
    for feed in [
        "cert-advisories",
        "vendor-research",
        "urlhaus-sample",
        "feodo-sample",
    ] {
        assert!(
            report.contains(&format!("{feed}: ok, 1 page(s)")),
            "no summary for {feed}:\n{report}"
        );
        assert!(!objects(&out, feed).is_empty(), "{feed} wrote no objects");
    }

    // Real outcomes, not just "something was written".
    let reports = ids_of(&out, "cert-advisories", "report");
    assert_eq!(reports.len(), 3, "{reports:?}");
    let vulns: Vec<String> = objects(&out, "cert-advisories")
        .iter()
        .filter(|o| o["type"] == "vulnerability")
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect();
    for cve in ["CVE-2024-21001", "CVE-2024-21002", "CVE-2023-46805"] {
        assert!(
            vulns.contains(&cve.to_string()),
            "{cve} missing from {vulns:?}"
        );
    }
    assert_eq!(ids_of(&out, "vendor-research", "report").len(), 2);
    assert_eq!(ids_of(&out, "urlhaus-sample", "url").len(), 4);
    assert_eq!(ids_of(&out, "urlhaus-sample", "indicator").len(), 4);
    assert_eq!(ids_of(&out, "feodo-sample", "ipv4-addr").len(), 3);
    assert!(ids_of(&out, "urlhaus-sample", "identity")
        .contains("identity--0303206b-ec74-5e9e-81df-e6532e9c1e91"));

    #[cfg(unix)]
    for f in bundle_files(&out) {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{} is not readable by a consumer", f.display());
    }

    let summary = validate(&out);
    assert!(summary.ends_with(" 0 invalid"), "{summary}");

    let files = bundle_files(&out);
    let second = run(&args);
    assert!(
        second.status.success(),
        "second run failed:\n{}",
        text(&second)
    );
    assert_eq!(
        bundle_files(&out),
        files,
        "a second run on unchanged sources wrote bundles"
    );
    assert!(
        text(&second).contains("cert-advisories: ok, 1 page(s), 0 object(s), 0 bundle(s)"),
        "{}",
        text(&second)
    );
}

#[test]
fn sequence_continues_across_runs_when_sources_change() {
    let dir = examples_copy();
    let config = dir.path().join("feeds.toml");
    let out = dir.path().join("out");
    let args = [
        "run",
        "--config",
        config.to_str().unwrap(),
        "--once",
        "--out",
        out.to_str().unwrap(),
        "--feed",
        "feodo-sample",
    ];
    assert!(run(&args).status.success());
    let before = bundle_files(&out);
    assert_eq!(before.len(), 1);

    // One new row: exactly that row's objects come out, in the next file of the sequence.
    let csv = dir.path().join("feeds/feodo-ipblocklist.csv");
    let mut text_csv = std::fs::read_to_string(&csv).unwrap();
    text_csv = text_csv.replace(
        "# END 3 entries",
        "\"2024-03-04 01:02:03\",\"192.0.2.77\",\"443\",\"online\",\"2024-04-02\",\"Dridex\"\n# END 4 entries",
    );
    std::fs::write(&csv, text_csv).unwrap();
    let again = run(&args);
    assert!(again.status.success(), "{}", text(&again));
    let after = bundle_files(&out);
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(
        after[1].ends_with("feodo-sample/00000002.json"),
        "{after:?}"
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&after[1]).unwrap()).unwrap();
    let ips: Vec<&str> = doc["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] == "ipv4-addr")
        .map(|o| o["value"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["192.0.2.77"]);
}

#[test]
fn verify_prints_a_bundle_and_changes_nothing() {
    let dir = examples_copy();
    let config = dir.path().join("feeds.toml");
    let out = run(&[
        "verify",
        "--config",
        config.to_str().unwrap(),
        "--feed",
        "urlhaus-sample",
        "--limit",
        "5",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let bundle: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON bundle");
    let objects = bundle["objects"].as_array().unwrap();
    // Five entities plus the author identity and the marking definition.
    assert_eq!(objects.len(), 7, "{bundle:#}");
    assert!(text(&out).contains("first page makes"), "{}", text(&out));
    assert!(
        !dir.path().join("feeds.state.json").exists(),
        "verify wrote state"
    );
}

#[test]
fn config_check_lists_feeds_and_refuses_bad_files() {
    let dir = examples_copy();
    let config = dir.path().join("feeds.toml");
    let ok = run(&["config", "check", "--config", config.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("4 feed(s), all valid"), "{}", text(&ok));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[feeds]]\nname = \"x\"\nkind = \"csv\"\nurl = \"https://a.example.test/x.csv\"\nreport_types = [\"threat-report\"]\n").unwrap();
    let out = run(&["config", "check", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let msg = text(&out);
    assert!(
        msg.contains("feed x: key `report_types`: applies to rss feeds only, not to a csv feed"),
        "{msg}"
    );
    assert!(msg.contains("feed x: key `mapper`: missing"), "{msg}");
}
