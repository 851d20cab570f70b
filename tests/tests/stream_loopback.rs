//! Live-stream feeds end to end against an OpenCTI-like SSE server on 127.0.0.1: every
//! event emitted, resume after the committed event, a connection cut mid-event, deletions
//! only when asked, clear errors for a refused token and an unknown stream, retention
//! passing the cursor, `verify`, and a continuous run following the stream.

mod stream_common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use feedstix::http::RetryPolicy;
use serde_json::Value;
use stream_common::*;

const OPERATION: &str = "x-feedstix-operation";

fn backlog() -> Vec<Held> {
    vec![
        held(
            "1715000000000-0",
            "create",
            indicator(1, "2024-05-06T12:53:20.000Z"),
        ),
        held(
            "1715000000000-1",
            "create",
            indicator(2, "2024-05-06T12:53:20.000Z"),
        ),
        held("1715000001000-0", "create", directory("C:\\staging")),
        held("1715000002000-0", "create", sighting(2)),
        held(
            "1715000003000-0",
            "update",
            indicator(1, "2024-05-06T12:53:23.000Z"),
        ),
    ]
}

fn ids(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| o["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn every_event_is_emitted_as_the_producer_made_it() {
    let server = StreamServer::start(backlog()).await;
    let mut ws = Workspace::new(&feed_toml("remote", &server.base, STREAM_ID, ""));
    let (summaries, out) = ws.run_once().await;
    assert_eq!(summaries[0].error, None, "{summaries:?}");
    assert_eq!(summaries[0].objects, 5);

    let objects = emitted(&out);
    let unique: BTreeSet<String> = ids(&objects).into_iter().collect();
    assert_eq!(
        unique.len(),
        4,
        "indicator 1 (twice: create, update) is one id"
    );
    // The update wins: the bundle carries the newest version, untouched.
    let first = objects
        .iter()
        .find(|o| o["id"] == indicator(1, "")["id"])
        .expect("indicator 1");
    assert_eq!(first["modified"], "2024-05-06T12:53:23.000Z");
    assert_eq!(first, &indicator(1, "2024-05-06T12:53:23.000Z"));
    let dir = &of_type(&objects, "directory")[0];
    assert_eq!(dir, &directory("C:\\staging"), "extensions pass through");
    assert!(of_type(&objects, OPERATION).is_empty());

    let cursor = ws.cursor("remote");
    assert_eq!(cursor["kind"], "stream");
    assert_eq!(cursor["last_event_id"], "1715000003000-0");
    let asked = server.asked();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].query("from").as_deref(), Some("0-0"));
    assert_eq!(asked[0].query("listen-delete").as_deref(), Some("false"));
    assert_eq!(asked[0].query("no-dependencies").as_deref(), Some("false"));
    assert_eq!(asked[0].header("accept"), Some("text/event-stream"));
    validate(&out);
}

#[tokio::test]
async fn a_second_run_resumes_after_the_committed_event() {
    let server = StreamServer::start(backlog()).await;
    let mut ws = Workspace::new(&feed_toml("remote", &server.base, STREAM_ID, ""));
    ws.run_once().await;
    server.push(vec![
        held(
            "1715000009000-0",
            "create",
            indicator(9, "2024-05-06T12:53:29.000Z"),
        ),
        held(
            "1715000009000-1",
            "update",
            indicator(2, "2024-05-06T12:53:29.000Z"),
        ),
    ]);
    let (summaries, out) = ws.run_once().await;
    assert_eq!(summaries[0].error, None);
    let objects = emitted(&out);
    let expected: Vec<String> = [indicator(9, ""), indicator(2, "")]
        .iter()
        .map(|v| v["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids(&objects), expected);
    let second = &server.asked()[1];
    assert_eq!(second.query("from").as_deref(), Some("1715000003000-0"));
    assert_eq!(second.header("last-event-id"), Some("1715000003000-0"));
    assert_eq!(ws.cursor("remote")["last_event_id"], "1715000009000-1");

    // Nothing new: a run emits nothing and keeps the position.
    let (summaries, out) = ws.run_once().await;
    assert_eq!(summaries[0].objects, 0);
    assert!(emitted(&out).is_empty());
    assert_eq!(ws.cursor("remote")["last_event_id"], "1715000009000-1");
}

#[tokio::test]
async fn a_connection_cut_mid_event_resumes_without_loss() {
    let server = StreamServer::start(backlog()).await;
    // Cut the first connection inside the fourth event (the sighting's data line).
    let mut body = String::from("event: connected\ndata: {}\n\n");
    for e in &backlog()[..3] {
        body.push_str(&format!(
            "id: {}\nevent: {}\ndata: {}\n\n",
            e.id, e.event, e.data
        ));
    }
    server.cut_next_after(body.len() + 200);
    let mut ws = Workspace::new(&feed_toml("remote", &server.base, STREAM_ID, ""));
    let (summaries, out) = ws.run_once().await;
    assert_eq!(summaries[0].error, None, "{summaries:?}");

    let objects = emitted(&out);
    let all: Vec<String> = ids(&objects);
    let unique: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(all.len(), unique.len(), "no object twice: {all:?}");
    assert_eq!(unique.len(), 4, "nothing lost: {all:?}");
    assert_eq!(of_type(&objects, "sighting").len(), 1);

    let asked = server.asked();
    assert_eq!(asked.len(), 2, "one reconnection");
    // The reconnection resumes after the last whole event: the directory (third event).
    assert_eq!(asked[1].query("from").as_deref(), Some("1715000001000-0"));
    assert_eq!(ws.cursor("remote")["last_event_id"], "1715000003000-0");
}

#[tokio::test]
async fn a_failed_page_keeps_the_cursor_and_the_next_run_re_emits_only_after_it() {
    let server = StreamServer::start(backlog()).await;
    let mut ws = Workspace::new(&feed_toml("remote", &server.base, STREAM_ID, ""));
    ws.run_once().await;
    let before = ws.cursor("remote");
    server.push(vec![held(
        "1715000010000-0",
        "create",
        indicator(10, "2024-05-06T12:53:30.000Z"),
    )]);
    // Every connection of the next run dies early: the page fails, the cursor stays.
    for _ in 0..6 {
        server.cut_next_after(30);
    }
    let (summaries, _) = ws.run_once().await;
    let error = summaries[0].error.clone().expect("page failed");
    assert!(error.contains("remote"), "{error}");
    assert!(error.contains(&server.base), "{error}");
    assert_eq!(ws.cursor("remote"), before);
    assert!(ws.state("remote").status.last_error.is_some());

    let (summaries, out) = ws.run_once().await;
    assert_eq!(summaries[0].error, None);
    assert_eq!(
        ids(&emitted(&out)),
        vec![indicator(10, "")["id"]
            .as_str()
            .unwrap_or_default()
            .to_string()]
    );
}

fn deletion_events() -> Vec<Held> {
    vec![
        held(
            "1715000000000-0",
            "create",
            indicator(1, "2024-05-06T12:53:20.000Z"),
        ),
        held(
            "1715000000500-0",
            "create",
            indicator(4, "2024-05-06T12:53:20.500Z"),
        ),
        held(
            "1715000001000-0",
            "delete",
            indicator(1, "2024-05-06T12:53:21.000Z"),
        ),
        merge(
            "1715000002000-0",
            indicator(5, "2024-05-06T12:53:22.000Z"),
            vec![indicator(4, "2024-05-06T12:53:20.500Z")],
        ),
        held(
            "1715000003000-0",
            "update",
            indicator(5, "2024-05-06T12:53:23.000Z"),
        ),
    ]
}

#[tokio::test]
async fn deletions_appear_only_when_asked() {
    let server = StreamServer::start(deletion_events()).await;
    let toml = feed_toml("plain", &server.base, STREAM_ID, "")
        + &feed_toml(
            "mirror",
            &server.base,
            STREAM_ID,
            "listen_deletions = true\nperfect_sync = true\nno_dependencies = true",
        );
    let mut ws = Workspace::new(&toml);
    let (summaries, out) = ws.run_once().await;
    for s in &summaries {
        assert_eq!(s.error, None, "{s:?}");
    }

    let plain = emitted(&out.join("plain"));
    assert!(of_type(&plain, OPERATION).is_empty());
    assert_eq!(
        of_type(&plain, "indicator").len(),
        3,
        "1, 4 and the merged 5"
    );
    let plain_summary = summaries.iter().find(|s| s.feed == "plain").expect("plain");
    assert_eq!(plain_summary.skipped, 1, "the count of dropped deletions");

    let mirror = emitted(&out.join("mirror"));
    let ops = of_type(&mirror, OPERATION);
    let what: Vec<(String, String)> = ops
        .iter()
        .map(|o| {
            (
                o["operation"].as_str().unwrap_or_default().to_string(),
                o["target_ref"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let id = |n: u32| {
        indicator(n, "")["id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        what,
        vec![
            ("delete".to_string(), id(1)),
            ("merge".to_string(), id(5)),
            ("replace".to_string(), id(5)),
        ]
    );
    assert_eq!(ops[1]["source_refs"], serde_json::json!([id(4)]));
    assert_eq!(ops[0]["event_id"], "1715000001000-0");
    // The delete of an id upserted earlier in a page opens a new page (so the bundler
    // cannot reorder them); the definitions travel with the page holding operations.
    assert_eq!(of_type(&mirror, "extension-definition").len(), 1);
    let mirror_asked = server
        .asked()
        .into_iter()
        .filter(|a| a.query("listen-delete").as_deref() == Some("true"))
        .count();
    assert!(mirror_asked >= 1);
    assert!(validate(&out) || std::env::var("FEEDSTIX_STIX_VALIDATE").is_err());
}

#[tokio::test]
async fn a_refused_token_and_an_unknown_stream_are_clear_errors() {
    let server = StreamServer::start(backlog()).await;
    let toml = feed_toml("unknown", &server.base, "no-such-stream", "")
        + &format!(
            "[[feeds]]\nname = \"badtoken\"\nkind = \"stream\"\nurl = \"{}\"\n\
             stream_id = \"{STREAM_ID}\"\nallow_private_network = true\n\
             auth = {{ type = \"bearer\", token = \"env:FEEDSTIX_STREAM_TEST_WRONG\" }}\n",
            server.base
        );
    std::env::set_var("FEEDSTIX_STREAM_TEST_WRONG", "not-the-token");
    let mut ws = Workspace::new(&toml);
    let started = Instant::now();
    let (summaries, _) = ws.run_once().await;
    assert!(started.elapsed() < Duration::from_secs(5), "no retry loop");

    let unknown = summaries
        .iter()
        .find(|s| s.feed == "unknown")
        .expect("unknown");
    let e = unknown.error.clone().expect("fails");
    assert!(e.contains("feed unknown"), "{e}");
    assert!(e.contains("HTTP 404"), "{e}");
    assert!(e.contains("no live stream `no-such-stream`"), "{e}");
    assert!(
        e.contains(&format!("{}/stream/no-such-stream", server.base)),
        "{e}"
    );

    let bad = summaries
        .iter()
        .find(|s| s.feed == "badtoken")
        .expect("badtoken");
    let e = bad.error.clone().expect("fails");
    assert!(e.contains("HTTP 401"), "{e}");
    assert!(e.contains("refused the token"), "{e}");
    assert!(!e.contains("not-the-token"), "the token never appears: {e}");
    let stored = ws
        .state("badtoken")
        .status
        .last_error
        .expect("status keeps the cause");
    assert!(e.ends_with(&stored), "{stored}");
    assert_eq!(ws.cursor("badtoken")["kind"], "start");
}

#[tokio::test]
async fn retention_past_the_cursor_is_reported_and_reading_goes_on_from_the_oldest() {
    let server = StreamServer::start(backlog()).await;
    let mut ws = Workspace::new(&feed_toml("remote", &server.base, STREAM_ID, ""));
    ws.run_once().await;
    assert_eq!(ws.cursor("remote")["last_event_id"], "1715000003000-0");

    // While the feed was away, the platform received more and trimmed past our position.
    server.push(vec![
        held(
            "1715000005000-0",
            "create",
            indicator(5, "2024-05-06T12:53:25.000Z"),
        ),
        held(
            "1715000006000-0",
            "create",
            indicator(6, "2024-05-06T12:53:26.000Z"),
        ),
        held(
            "1715000007000-0",
            "create",
            indicator(7, "2024-05-06T12:53:27.000Z"),
        ),
    ]);
    server.trim_before("1715000006000-0");
    let (summaries, out) = ws.run_once().await;
    assert_eq!(summaries[0].error, None);
    assert_eq!(summaries[0].skipped, 1, "the gap is reported");
    let got = ids(&emitted(&out));
    assert_eq!(
        got.len(),
        2,
        "from the oldest held event, not from now: {got:?}"
    );

    let cursor = ws.cursor("remote");
    let gap = cursor["gap"].as_str().expect("gap kept in the cursor");
    assert!(
        gap.contains("no longer holds event 1715000003000-0"),
        "{gap}"
    );
    assert!(ws.state("remote").cursor.describe().contains("warning"));
}

#[tokio::test]
async fn verify_connects_and_reports_within_seconds() {
    set_token();
    let server = StreamServer::start(backlog()).await;
    let feeds = |name: &str, base: &str, id: &str| {
        let toml = feed_toml(name, base, id, "");
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("feeds.toml");
        std::fs::write(&path, toml).expect("write");
        let config = feedstix::config::load(&path).expect("config");
        config.feeds[0].clone()
    };

    let started = Instant::now();
    let good = feeds("good", &server.base, STREAM_ID);
    let (bundle, total, notes) = feedstix::local::verify(&good, 50, RetryPolicy::default())
        .await
        .expect("verify succeeds");
    assert!(started.elapsed() < Duration::from_secs(6));
    assert_eq!(total, 5);
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(bundle["objects"].as_array().map(Vec::len), Some(4));

    let started = Instant::now();
    let wrong_path = feeds("wrongurl", &format!("{}/graphql", server.base), STREAM_ID);
    let e = feedstix::local::verify(&wrong_path, 50, RetryPolicy::default())
        .await
        .expect_err("wrong url");
    assert!(
        e.contains("HTTP 404") && e.contains("/graphql/stream/"),
        "{e}"
    );

    let unknown = feeds("unknown", &server.base, "nope");
    let e = feedstix::local::verify(&unknown, 50, RetryPolicy::default())
        .await
        .expect_err("unknown stream");
    assert!(e.contains("no live stream `nope`"), "{e}");

    // Nothing listens there: refused at once, not after a long timeout.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dead = feeds("dead", &format!("http://127.0.0.1:{closed}"), STREAM_ID);
    let e = feedstix::local::verify(&dead, 50, RetryPolicy::default())
        .await
        .expect_err("nothing there");
    assert!(e.contains("feed dead"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn verify_says_when_the_url_is_not_a_live_stream() {
    set_token();
    // A server that accepts and says nothing: no `connected` within the preview's wait.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
                .await;
            held.push(socket);
        }
    });
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("feeds.toml");
    std::fs::write(&path, feed_toml("silent", &base, STREAM_ID, "")).expect("write");
    let config = feedstix::config::load(&path).expect("config");
    let started = Instant::now();
    let e = feedstix::local::verify(&config.feeds[0], 50, RetryPolicy::default())
        .await
        .expect_err("no connected event");
    assert!(e.contains("no `connected` event"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[tokio::test]
async fn a_continuous_run_follows_the_stream_without_busy_looping() {
    let server = StreamServer::start(backlog()).await;
    let mut ws = Workspace::new(&feed_toml("remote", &server.base, STREAM_ID, ""));
    let pusher = server.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        pusher.push(vec![held(
            "1715000020000-0",
            "create",
            indicator(20, "2024-05-06T12:53:40.000Z"),
        )]);
    });
    let out = ws.run_for(Duration::from_secs(4)).await;
    let got: BTreeSet<String> = ids(&emitted(&out)).into_iter().collect();
    assert!(
        got.contains(indicator(20, "")["id"].as_str().unwrap_or_default()),
        "the event pushed later arrived: {got:?}"
    );
    assert_eq!(got.len(), 5);
    assert_eq!(ws.cursor("remote")["last_event_id"], "1715000020000-0");
    // About one connection per second while idle (each waits for a heartbeat), not a
    // tight loop.
    let connections = server.asked().len();
    assert!((2..=8).contains(&connections), "{connections} connections");
}
