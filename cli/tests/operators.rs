//! Operator commands with the real binary on the local state file: status (table and
//! JSON), feeds list/show/stop/start/reset.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[test]
fn stop_start_reset_and_status_work_on_the_state_file() {
    let dir = examples_copy();
    let config = dir.path().join("feeds.toml");
    let c = config.to_str().unwrap();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();

    let stop = run(&["feeds", "stop", "--config", c, "--feed", "cert-advisories"]);
    assert!(stop.status.success(), "{}", text(&stop));
    let first = run(&["run", "--config", c, "--once", "--out", o]);
    assert!(
        text(&first).contains("cert-advisories: not fetched (stopped)"),
        "{}",
        text(&first)
    );
    assert!(objects(&out, "cert-advisories").is_empty());

    let list = text(&run(&["feeds", "list", "--config", c]));
    assert!(
        list.lines()
            .any(|l| l.starts_with("cert-advisories") && l.contains("stopped")),
        "{list}"
    );

    assert!(
        run(&["feeds", "start", "--config", c, "--feed", "cert-advisories"])
            .status
            .success()
    );
    let second = run(&["run", "--config", c, "--once", "--out", o]);
    assert!(
        text(&second).contains("cert-advisories: ok, 1 page(s), 6 object(s)"),
        "{}",
        text(&second)
    );

    let status = run(&["status", "--config", c, "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let cert = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["feed"] == "cert-advisories")
        .unwrap();
    assert_eq!(cert["state"], "running");
    assert_eq!(cert["objects_total"], 6);
    assert_eq!(cert["cursor"], "newest item 2024-03-06T14:00:00+00:00");
    assert_eq!(cert["consecutive_failures"], 0);
    assert_eq!(cert["epoch"], 0);
    let table = text(&run(&["status", "--config", c]));
    assert!(table.lines().next().unwrap().starts_with("FEED"), "{table}");
    assert_eq!(table.lines().count(), 5, "{table}");

    // A reset re-imports from the start: the same reports come out again, in new files.
    let reset = run(&["feeds", "reset", "--config", c, "--feed", "cert-advisories"]);
    assert!(
        text(&reset).contains("cert-advisories: reset to epoch 1"),
        "{}",
        text(&reset)
    );
    let before = ids_of(&out, "cert-advisories", "report");
    let third = run(&["run", "--config", c, "--once", "--out", o]);
    assert!(
        text(&third).contains("cert-advisories: ok, 1 page(s), 6 object(s)"),
        "{}",
        text(&third)
    );
    assert!(
        text(&third).contains("vendor-research: ok, 1 page(s), 0 object(s)"),
        "{}",
        text(&third)
    );
    assert_eq!(ids_of(&out, "cert-advisories", "report"), before);
    assert_eq!(
        bundle_files(&out.join("..").join("out"))
            .iter()
            .filter(|f| f.to_string_lossy().contains("cert-advisories"))
            .count(),
        2
    );

    let show = run(&["feeds", "show", "--config", c, "--feed", "cert-advisories"]);
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["status"]["epoch"], 1);
    assert_eq!(shown["definition"]["kind"], "rss");
    assert_eq!(shown["cursor"]["kind"], "rss");

    let unknown = run(&["feeds", "stop", "--config", c, "--feed", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown).contains("no feed named nope"),
        "{}",
        text(&unknown)
    );
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    use std::io::{BufRead, BufReader};
    let dir = examples_copy();
    let config = dir.path().join("feeds.toml");
    let mut child = feedstix()
        .args([
            "verify",
            "--config",
            config.to_str().unwrap(),
            "--feed",
            "urlhaus-sample",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first.trim(), "{");
    // The reader is dropped here, as `| head -1` would.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.status.success() || out.status.code() == Some(0),
        "{:?}: {stderr}",
        out.status
    );
}
