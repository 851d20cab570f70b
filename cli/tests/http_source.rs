//! The HTTP rules every kind shares, with the real binary against a loopback server:
//! credentials by reference for each auth type, retries of 5xx and 429 honouring
//! Retry-After, and the refusal of private addresses unless a feed allows them.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;

const RSS: &str = r#"<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<item><title>One</title><guid>g1</guid><pubDate>Mon, 01 Jan 2024 10:00:00 GMT</pubDate></item></channel></rss>"#;

fn config(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("feeds.toml");
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn each_auth_type_sends_its_credentials_from_the_environment() {
    let server = Server::start(|_| Canned::ok("application/rss+xml", RSS));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            r#"
[[feeds]]
name = "basic"
kind = "rss"
url = "{u}/basic"
allow_private_network = true
auth = {{ type = "basic", username = "reader", password = "env:FS_TEST_PASSWORD" }}

[[feeds]]
name = "bearer"
kind = "rss"
url = "{u}/bearer"
allow_private_network = true
auth = {{ type = "bearer", token = "env:FS_TEST_TOKEN" }}

[[feeds]]
name = "header"
kind = "rss"
url = "{u}/header"
allow_private_network = true
user_agent = "feed-tester/1"
auth = {{ type = "header", name = "X-API-Key", value = "env:FS_TEST_KEY" }}
"#,
            u = server.url
        ),
    );
    let out = dir.path().join("out");
    // Logs at the most verbose level: a secret must not leak there either.
    let result = feedstix()
        .args([
            "--log-level",
            "trace",
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--once",
            "--out",
            out.to_str().unwrap(),
        ])
        .env("FS_TEST_PASSWORD", "pa55word")
        .env("FS_TEST_TOKEN", "tok-123")
        .env("FS_TEST_KEY", "key-456")
        .output()
        .unwrap();
    assert!(result.status.success(), "{}", text(&result));
    let requests = server
        .requests
        .lock()
        .unwrap()
        .join("\n")
        .to_ascii_lowercase();
    assert!(
        requests.contains("authorization: basic cmvhzgvyonbhntv3b3jk"),
        "{requests}"
    );
    assert!(
        requests.contains("authorization: bearer tok-123"),
        "{requests}"
    );
    assert!(requests.contains("x-api-key: key-456"), "{requests}");
    assert!(requests.contains("user-agent: feed-tester/1"), "{requests}");
    // No secret value in what the command printed or stored.
    let state = std::fs::read_to_string(dir.path().join("feeds.state.json")).unwrap();
    let bundles: String = bundle_files(&out)
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(!bundles.is_empty());
    assert!(text(&result).contains("TRACE"), "trace logging was not on");
    for secret in ["pa55word", "tok-123", "key-456", "cmVhZGVyOnBhNTV3b3Jk"] {
        for (place, haystack) in [
            ("output and logs", text(&result)),
            ("state", state.clone()),
            ("bundles", bundles.clone()),
        ] {
            assert!(
                !haystack.contains(secret),
                "{secret} leaked into the {place}"
            );
        }
    }

    // A missing variable fails that feed only, naming the reference, not a value.
    let missing = feedstix()
        .args([
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--once",
            "--out",
            out.to_str().unwrap(),
        ])
        .env("FS_TEST_PASSWORD", "pa55word")
        .env("FS_TEST_KEY", "key-456")
        .env_remove("FS_TEST_TOKEN")
        .output()
        .unwrap();
    let report = text(&missing);
    assert_eq!(missing.status.code(), Some(1), "{report}");
    assert!(
        report.contains("bearer: failed") && report.contains("env:FS_TEST_TOKEN"),
        "{report}"
    );
}

#[test]
fn server_errors_and_429_are_retried_honouring_retry_after() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let server = Server::start(move |_| match seen.fetch_add(1, Ordering::SeqCst) {
        0 => Canned {
            status: 503,
            headers: vec![],
            body: b"busy".to_vec(),
        },
        1 => Canned {
            status: 429,
            headers: vec![("Retry-After".into(), "1".into())],
            body: vec![],
        },
        _ => Canned::ok("application/rss+xml", RSS),
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!("[[feeds]]\nname = \"flaky\"\nkind = \"rss\"\nurl = \"{}/f\"\nallow_private_network = true\n", server.url),
    );
    let out = dir.path().join("out");
    let started = std::time::Instant::now();
    let result = run_once(&cfg, &out);
    assert!(result.status.success(), "{}", text(&result));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    assert!(
        text(&result).contains("flaky: ok, 1 page(s), 2 object(s)"),
        "{}",
        text(&result)
    );
}

#[test]
fn a_refusal_names_the_credentials_only_when_the_feed_sends_some() {
    let server = Server::start(|_| Canned {
        status: 403,
        headers: vec![],
        body: b"no".to_vec(),
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "[[feeds]]\nname = \"open\"\nkind = \"rss\"\nurl = \"{u}/a\"\nallow_private_network = true\n\n[[feeds]]\nname = \"keyed\"\nkind = \"rss\"\nurl = \"{u}/b\"\nallow_private_network = true\nauth = {{ type = \"bearer\", token = \"env:FS_T\" }}\n",
            u = server.url
        ),
    );
    let out = dir.path().join("out");
    let result = feedstix()
        .args([
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--once",
            "--out",
            out.to_str().unwrap(),
        ])
        .env("FS_T", "t")
        .output()
        .unwrap();
    let report = text(&result);
    let line = |feed: &str| {
        report
            .lines()
            .find(|l| l.starts_with(&format!("{feed}: failed")))
            .unwrap()
            .to_string()
    };
    assert!(
        line("open").contains("this feed sends no credentials"),
        "{report}"
    );
    assert!(
        line("keyed").contains("refused the credentials (HTTP 403)"),
        "{report}"
    );
}

#[test]
fn a_server_that_keeps_failing_fails_the_feed_with_the_status() {
    let server = Server::start(|_| Canned {
        status: 502,
        headers: vec![],
        body: b"bad gateway".to_vec(),
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!("[[feeds]]\nname = \"down\"\nkind = \"rss\"\nurl = \"{}/f\"\nallow_private_network = true\n", server.url),
    );
    let out = dir.path().join("out");
    let result = run_once(&cfg, &out);
    let report = text(&result);
    assert_eq!(result.status.code(), Some(1), "{report}");
    assert!(
        report.contains("down: failed") && report.contains("answered HTTP 502 after 4 attempt(s)"),
        "{report}"
    );
    assert_eq!(server.count(), 4);
}

#[test]
fn private_addresses_are_refused_unless_the_feed_allows_them() {
    let server = Server::start(|_| Canned::ok("application/rss+xml", RSS));
    let dir = tempfile::tempdir().unwrap();
    let port = server.url.rsplit(':').next().unwrap().to_string();
    let cfg = config(
        dir.path(),
        &format!(
            "[[feeds]]\nname = \"literal\"\nkind = \"rss\"\nurl = \"{}/f\"\n\n[[feeds]]\nname = \"by-name\"\nkind = \"rss\"\nurl = \"http://localhost:{port}/f\"\n",
            server.url
        ),
    );
    let out = dir.path().join("out");
    let result = run_once(&cfg, &out);
    let report = text(&result);
    assert_eq!(result.status.code(), Some(1), "{report}");
    assert!(
        report.contains("literal: failed") && report.contains("127.0.0.1 is not a public address"),
        "{report}"
    );
    assert!(
        report.contains("by-name: failed")
            && report.contains("resolves only to non-public addresses"),
        "{report}"
    );
    assert!(report.contains("allow_private_network = true"), "{report}");
    assert_eq!(server.count(), 0, "a refused feed must not connect");
}
