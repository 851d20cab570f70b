//! Bad input and process control, with the real binary: each broken source gives one clear
//! error naming the feed and the cause, its cursor does not move, the other feeds are
//! unaffected; a second run on the same state is refused; SIGTERM stops cleanly.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

const GOOD_RSS: &str = r#"<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<item><title>Advisory about CVE-2024-0001</title><link>https://a.example.test/1</link>
<guid>a-1</guid><pubDate>Mon, 01 Jan 2024 10:00:00 GMT</pubDate></item></channel></rss>"#;

fn write_config(dir: &std::path::Path, server: &str) -> std::path::PathBuf {
    let mappers =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mappers/feodo.json");
    let config = format!(
        r#"
[[feeds]]
name = "good-rss"
kind = "rss"
url = "{server}/good.xml"
allow_private_network = true

[[feeds]]
name = "broken-xml"
kind = "rss"
url = "{server}/broken.xml"
allow_private_network = true

[[feeds]]
name = "html-page"
kind = "rss"
url = "{server}/index.html"
allow_private_network = true

[[feeds]]
name = "wrong-csv"
kind = "csv"
url = "{server}/wrong.csv"
mapper = "{mapper}"
allow_private_network = true
"#,
        mapper = mappers.display()
    );
    let path = dir.join("feeds.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn serve() -> Server {
    Server::start(|head| {
        let path = head.split_whitespace().nth(1).unwrap_or("/");
        match path {
            "/good.xml" => {
                if head.to_ascii_lowercase().contains("if-none-match: \"v1\"") {
                    return Canned { status: 304, headers: vec![], body: vec![] };
                }
                let mut c = Canned::ok("application/rss+xml", GOOD_RSS);
                c.headers.push(("ETag".into(), "\"v1\"".into()));
                c
            }
            "/broken.xml" => Canned::ok(
                "application/rss+xml",
                "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>x</title><item><title>a</titel></item></channel></rss>",
            ),
            "/index.html" => Canned::ok(
                "text/html",
                "<!DOCTYPE html><html><head><title>Welcome</title></head><body><p>Hello</p></body></html>",
            ),
            "/wrong.csv" => Canned::ok("text/csv", "just,two\nfields,here\n"),
            _ => Canned { status: 404, headers: vec![], body: b"not found".to_vec() },
        }
    })
}

#[test]
fn broken_sources_fail_alone_with_clear_errors_and_keep_their_cursor() {
    let server = serve();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server.url);
    let out = dir.path().join("out");
    let args = [
        "run",
        "--config",
        config.to_str().unwrap(),
        "--once",
        "--out",
        out.to_str().unwrap(),
    ];

    let result = run(&args);
    let report = text(&result);
    assert_eq!(result.status.code(), Some(1), "{report}");
    assert!(
        report.contains("good-rss: ok, 1 page(s), 2 object(s)"),
        "{report}"
    );
    for (feed, cause) in [
        ("broken-xml", "broken.xml"),
        ("html-page", "index.html"),
        ("wrong-csv", "wrong.csv"),
    ] {
        let line = report
            .lines()
            .find(|l| l.starts_with(&format!("{feed}: failed")))
            .unwrap_or_else(|| panic!("no failure line for {feed}:\n{report}"));
        assert!(line.contains(cause), "{line}");
    }
    assert!(report.contains("not an RSS or Atom document"), "{report}");

    // The failing feeds' cursors did not move; their status says why.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("feeds.state.json")).unwrap())
            .unwrap();
    for (feed, path) in [
        ("broken-xml", "/broken.xml"),
        ("html-page", "/index.html"),
        ("wrong-csv", "/wrong.csv"),
    ] {
        let s = &state["feeds"][feed];
        assert_eq!(s["cursor"]["kind"], "start", "{feed}: {s:#}");
        assert_eq!(s["pages"], 0, "{feed}");
        assert_eq!(s["status"]["consecutive_failures"], 1, "{feed}");
        assert!(
            s["status"]["last_error"].as_str().unwrap().contains(path),
            "{feed}: {s:#}"
        );
    }
    assert_eq!(state["feeds"]["good-rss"]["cursor"]["etag"], "\"v1\"");

    // The next run asks conditionally and the good feed's source answers 304.
    let before = server.count();
    let again = run(&args);
    assert_eq!(again.status.code(), Some(1));
    let good_requests: Vec<String> = server.requests.lock().unwrap()[before..]
        .iter()
        .filter(|r| r.starts_with("GET /good.xml"))
        .cloned()
        .collect();
    assert_eq!(good_requests.len(), 1);
    assert!(
        good_requests[0]
            .to_ascii_lowercase()
            .contains("if-none-match: \"v1\""),
        "{good_requests:?}"
    );
    assert_eq!(ids_of(&out, "good-rss", "report").len(), 1);
}

#[test]
fn a_second_run_on_the_same_state_is_refused_and_sigterm_stops_cleanly() {
    let dir = examples_copy();
    let config = dir.path().join("feeds.toml");
    let out = dir.path().join("out");
    let mut child = feedstix()
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Wait for the first round to write the example bundles.
    let start = Instant::now();
    while bundle_files(&out).len() < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the continuous run wrote nothing"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let second = run_once(&config, &out);
    assert_eq!(second.status.code(), Some(2));
    assert!(
        text(&second).contains("is in use by another feedstix process"),
        "{}",
        text(&second)
    );

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    loop {
        if let Some(code) = child.try_wait().unwrap() {
            assert!(code.success(), "exit after SIGTERM: {code:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("cert-advisories: ok"));

    // The lock went with the process: a new run may start.
    let third = run_once(&config, &out);
    assert!(third.status.success(), "{}", text(&third));
}

#[test]
fn an_error_answer_fails_a_csv_feed_and_a_cut_row_is_skipped_not_mapped() {
    const URLHAUS_HEAD: &str = "# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n\
\"1\",\"2024-09-12 10:00:01\",\"http://198.51.100.7/i\",\"online\",\"\",\"malware_download\",\"elf\",\"https://u.example.test/1\",\"r\"\n";
    let server = Server::start(|head| match head.split_whitespace().nth(1).unwrap_or("/") {
        "/limited.csv" => Canned::ok("application/json", r#"{"query_status":"rate_limited"}"#),
        "/cut.csv" => Canned::ok(
            "text/csv",
            format!("{URLHAUS_HEAD}\"2\",\"2024-09-12 10:00:05\",\"https://cdn.example.test/up"),
        ),
        _ => Canned {
            status: 404,
            headers: vec![],
            body: vec![],
        },
    });
    let mapper =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mappers/urlhaus.json");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("feeds.toml");
    std::fs::write(
        &config,
        format!(
            "[[feeds]]\nname = \"limited\"\nkind = \"csv\"\nurl = \"{u}/limited.csv\"\nmapper = \"{m}\"\nallow_private_network = true\n\n\
             [[feeds]]\nname = \"cut\"\nkind = \"csv\"\nurl = \"{u}/cut.csv\"\nmapper = \"{m}\"\nallow_private_network = true\n",
            u = server.url,
            m = mapper.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let result = run_once(&config, &out);
    let report = text(&result);
    assert_eq!(result.status.code(), Some(1), "{report}");
    assert!(
        report.contains("limited: failed") && report.contains("the body is JSON, not CSV"),
        "{report}"
    );
    assert!(
        report.contains("cut: ok, 1 page(s)") && report.contains("1 skipped"),
        "{report}"
    );
    let urls: Vec<String> = objects(&out, "cut")
        .iter()
        .filter(|o| o["type"] == "url")
        .map(|o| o["value"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        urls,
        ["http://198.51.100.7/i"],
        "the cut row must not become an object"
    );
}
