//! Unit tests of the stream kind: the SSE reader on split input (case C12), event ids and
//! payloads, and the page loop against a scripted in-memory source.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::sse::{SseError, SseReader};
use super::*;
use crate::config::{FeedConfig, HttpOptions};
use crate::http::HttpError;
use crate::ports::{PortError, SourceResponse};

/// A C12-shaped capture written for these tests: `connected` without an id, one `create`
/// whose long data line is the one that gets split, then a heartbeat.
fn c12_like() -> Vec<u8> {
    let create = json!({
        "version": "4", "type": "create", "scope": "external",
        "message": "creates a Domain-Name `beacon.example.test`",
        "origin": {"user_id": "00000000-0000-4000-8000-00000000abcd"},
        "data": {
            "id": "domain-name--1b2c3d4e-0000-5000-8000-000000000042",
            "spec_version": "2.1", "type": "domain-name", "value": "beacon.example.test",
            "extensions": {"extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba":
                {"extension_type": "property-extension", "score": 80, "type": "Domain-Name"}}
        }
    });
    format!(
        "event: connected\ndata: {{\"lastEventId\":\"1710000000000-0\",\"connectionId\":\"t\"}}\n\n\
         id: 1710000000700-0\nevent: create\ndata: {create}\n\n\
         id: 1710000004000-0\nevent: heartbeat\ndata: \"2024-03-09T16:00:04.000Z\"\n\n"
    )
    .into_bytes()
}

/// Feeds `chunks` to a fresh reader; returns the events and the last id seen.
fn read_all(chunks: &[&[u8]]) -> (Vec<sse::SseEvent>, Option<String>) {
    let mut reader = SseReader::new(1 << 20);
    let mut events = Vec::new();
    for c in chunks {
        events.extend(reader.feed(c).expect("within limits"));
    }
    let last = events.iter().filter_map(|e| e.id.clone()).next_back();
    (events, last)
}

fn check_c12(events: &[sse::SseEvent], last: Option<String>, how: &str) {
    let creates: Vec<&sse::SseEvent> = events.iter().filter(|e| e.event == "create").collect();
    assert_eq!(creates.len(), 1, "{how}");
    let payload: Value = serde_json::from_str(&creates[0].data).expect("whole JSON");
    assert_eq!(payload["data"]["value"], "beacon.example.test", "{how}");
    assert_eq!(
        payload["data"]["extensions"]["extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba"]
            ["score"],
        80
    );
    assert_eq!(last.as_deref(), Some("1710000004000-0"), "{how}");
    let connected = events
        .iter()
        .find(|e| e.event == "connected")
        .expect("connected");
    assert_eq!(connected.id, None, "{how}");
}

#[test]
fn c12_every_two_way_split_gives_one_create() {
    let bytes = c12_like();
    for cut in 0..=bytes.len() {
        let (a, b) = bytes.split_at(cut);
        let (events, last) = read_all(&[a, b]);
        check_c12(&events, last, &format!("split at {cut}"));
    }
}

#[test]
fn c12_one_byte_chunks_give_one_create() {
    let bytes = c12_like();
    let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
    let (events, last) = read_all(&chunks);
    check_c12(&events, last, "1-byte chunks");
}

#[test]
fn c12_with_crlf_line_ends_and_every_split() {
    let bytes = String::from_utf8(c12_like())
        .expect("utf-8")
        .replace('\n', "\r\n")
        .into_bytes();
    for cut in 0..=bytes.len() {
        let (a, b) = bytes.split_at(cut);
        let (events, last) = read_all(&[a, b]);
        assert_eq!(events.len(), 3, "split at {cut}: {events:?}");
        check_c12(&events, last, &format!("crlf split at {cut}"));
    }
}

#[test]
fn reader_follows_the_format() {
    let text = "\u{feff}: a comment\rid: 1-0\revent: x\rdata: a\rdata:b\r\r\
                data: no event name\n\nid\nevent: y\n\nid: 2-0\n\n";
    let (events, _) = read_all(&[text.as_bytes()]);
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0].event, "x");
    assert_eq!(events[0].data, "a\nb");
    assert_eq!(events[0].id.as_deref(), Some("1-0"));
    assert_eq!(events[1].event, "message");
    assert_eq!(events[1].id, None);
    // An empty `id` and no data dispatches nothing; an id alone still moves the position.
    assert_eq!(events[2].id.as_deref(), Some("2-0"));
}

#[test]
fn reader_drops_an_event_cut_by_the_end_of_the_connection() {
    let (events, _) = read_all(&[b"id: 5-0\nevent: create\ndata: {\"partial\":"]);
    assert!(events.is_empty());
}

#[test]
fn reader_refuses_an_endless_line() {
    let mut reader = SseReader::new(64);
    let line = vec![b'a'; 100];
    assert_eq!(reader.feed(&line), Err(SseError::TooLarge { limit: 64 }));
}

#[test]
fn event_ids_compare_both_parts() {
    assert_eq!(
        event::compare("1700000000000-2", "1700000000000-10"),
        Some(std::cmp::Ordering::Less)
    );
    assert_eq!(
        event::compare("1700000000001-0", "1700000000000-99"),
        Some(std::cmp::Ordering::Greater)
    );
    assert_eq!(event::compare("abc", "1-0"), None);
    let t = event::EventId::parse("1700000000500-0")
        .and_then(event::EventId::time)
        .expect("time");
    assert_eq!(t.to_rfc3339(), "2023-11-14T22:13:20.500+00:00");
}

#[test]
fn payloads_become_changes() {
    let obj = json!({"type": "indicator", "id": "indicator--a"});
    let merge = json!({"type": "merge", "data": obj, "context": {"sources": [
        {"type": "indicator", "id": "indicator--b"}, {"type": "indicator", "id": "indicator--c"}]}});
    match event::read_change("merge", &merge.to_string()).expect("merge") {
        Change::Merge { target, sources } => {
            assert_eq!(crate::stix::object_id(&target), "indicator--a");
            assert_eq!(sources, vec!["indicator--b", "indicator--c"]);
        }
        other => panic!("{other:?}"),
    }
    let delete = json!({"type": "delete", "data": obj});
    assert_eq!(
        event::read_change("delete", &delete.to_string()),
        Ok(Change::Delete {
            target: "indicator--a".into()
        })
    );
    assert!(event::read_change("create", "{\"data\": 3}").is_err());
    assert!(event::read_change("create", "not json").is_err());
}

// ---- the page loop against a scripted source ----

/// One scripted connection.
struct Conn {
    status: u16,
    content_type: &'static str,
    chunks: Vec<Vec<u8>>,
    /// Keep the connection open after the last chunk (a live server), or close it.
    hold_open: bool,
}

impl Conn {
    fn sse(text: &str, hold_open: bool) -> Conn {
        Conn {
            status: 200,
            content_type: "text/event-stream; charset=utf-8",
            chunks: vec![text.as_bytes().to_vec()],
            hold_open,
        }
    }
}

#[derive(Default)]
struct Scripted {
    conns: Mutex<VecDeque<Conn>>,
    asked: Mutex<Vec<SourceRequest>>,
}

impl Scripted {
    fn new(conns: Vec<Conn>) -> Scripted {
        Scripted {
            conns: Mutex::new(conns.into()),
            asked: Mutex::default(),
        }
    }

    fn asked(&self) -> Vec<SourceRequest> {
        self.asked.lock().expect("lock").clone()
    }
}

#[async_trait]
impl Source for Scripted {
    async fn get(&self, request: SourceRequest) -> Result<SourceResponse, HttpError> {
        Err(HttpError::BadUrl {
            url: request.url,
            reason: "not used".into(),
        })
    }

    async fn open_stream(
        &self,
        request: SourceRequest,
        _max: Duration,
    ) -> Result<StreamingResponse, HttpError> {
        self.asked.lock().expect("lock").push(request.clone());
        let next = self.conns.lock().expect("lock").pop_front();
        let Some(conn) = next else {
            return Err(HttpError::Transport {
                url: request.url,
                reason: "connection refused".into(),
            });
        };
        let chunks = futures_util::stream::iter(
            conn.chunks
                .into_iter()
                .map(|c| Ok::<_, HttpError>(bytes::Bytes::from(c))),
        );
        let body: crate::ports::ChunkStream = if conn.hold_open {
            Box::pin(chunks.chain(futures_util::stream::pending()))
        } else {
            Box::pin(chunks)
        };
        Ok(StreamingResponse {
            status: conn.status,
            headers: vec![("content-type".into(), conn.content_type.into())],
            final_url: request.url,
            body,
        })
    }
}

#[derive(Default)]
struct Collect(Vec<StixObject>);

#[async_trait]
impl ObjectOut for Collect {
    async fn push(&mut self, object: StixObject) -> Result<(), PortError> {
        self.0.push(object);
        Ok(())
    }
}

fn feed(listen_deletions: bool, perfect_sync: bool) -> Feed {
    Feed::new(FeedConfig {
        name: "remote".into(),
        url: "https://octi.example.test/".into(),
        interval_secs: 3600,
        import_from: None,
        author: None,
        markings: Vec::new(),
        user: None,
        http: HttpOptions::default(),
        pause_after_failures: 10,
        kind: KindConfig::Stream {
            stream_id: "live-1".into(),
            listen_deletions,
            no_dependencies: true,
            perfect_sync,
        },
    })
    .expect("feed")
}

fn limits() -> PageLimits {
    PageLimits {
        max_events: 100,
        max_time: Duration::from_secs(30),
        connected_wait: Duration::from_secs(5),
        max_reconnects: 2,
        backoff: Duration::from_millis(10),
    }
}

fn data_event(id: &str, kind: &str, data: Value) -> String {
    format!(
        "id: {id}\nevent: {kind}\ndata: {}\n\n",
        json!({"version": "4", "type": kind, "data": data})
    )
}

fn indicator(n: u32) -> Value {
    json!({"type": "indicator", "spec_version": "2.1",
           "id": format!("indicator--00000000-0000-4000-8000-{n:012}"),
           "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z",
           "pattern": "[ipv4-addr:value = '203.0.113.1']", "pattern_type": "stix",
           "valid_from": "2024-01-01T00:00:00Z"})
}

fn connected(last: &str, first: &str) -> String {
    format!(
        "event: connected\ndata: {}\n\n",
        json!({"lastEventId": last, "firstEventId": first, "connectionId": "c"})
    )
}

fn heartbeat(id: &str) -> String {
    format!("id: {id}\nevent: heartbeat\ndata: \"2024-01-01T00:00:00.000Z\"\n\n")
}

async fn page(
    feed: &Feed,
    cursor: &Cursor,
    source: &Scripted,
    limits: &PageLimits,
) -> (Result<PageEnd, FetchError>, Vec<StixObject>) {
    let mut out = Collect::default();
    let end = fetch_page_with(feed, cursor, source, Utc::now(), &mut out, limits).await;
    (end, out.0)
}

fn stream_cursor(end: &PageEnd) -> StreamCursor {
    match &end.cursor {
        Cursor::Stream(c) => c.clone(),
        other => panic!("{other:?}"),
    }
}

fn types(objects: &[StixObject]) -> Vec<String> {
    objects
        .iter()
        .map(|o| o["type"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn first_page_asks_for_everything_and_stops_when_caught_up() {
    let text = connected("1-1", "1-0")
        + &data_event("1-0", "create", indicator(1))
        + &data_event("1-1", "update", indicator(1))
        + &heartbeat("1-1");
    let source = Scripted::new(vec![Conn::sse(&text, true)]);
    let (end, objects) = page(&feed(false, false), &Cursor::Start, &source, &limits()).await;
    let end = end.expect("page");
    assert!(!end.more);
    assert_eq!(end.objects, 2);
    assert_eq!(types(&objects), vec!["indicator", "indicator"]);
    assert_eq!(stream_cursor(&end).last_event_id.as_deref(), Some("1-1"));
    let asked = source.asked();
    assert_eq!(asked.len(), 1);
    assert_eq!(
        asked[0].url,
        "https://octi.example.test/stream/live-1?from=0-0&listen-delete=false&no-dependencies=true&with-inferences=false"
    );
    assert!(!asked[0].headers.iter().any(|(n, _)| n == "last-event-id"));
}

#[tokio::test]
async fn heartbeats_before_the_backlog_end_do_not_stop_the_page() {
    let text = connected("5-0", "1-0")
        + &heartbeat("2-0")
        + &data_event("5-0", "create", indicator(5))
        + &heartbeat("6-0");
    let source = Scripted::new(vec![Conn::sse(&text, true)]);
    let (end, objects) = page(&feed(false, false), &Cursor::Start, &source, &limits()).await;
    let end = end.expect("page");
    assert_eq!(objects.len(), 1);
    assert_eq!(stream_cursor(&end).last_event_id.as_deref(), Some("6-0"));
    assert!(!end.more);
}

#[tokio::test]
async fn resumes_after_the_cursor_with_last_event_id() {
    let cursor = Cursor::Stream(StreamCursor {
        last_event_id: Some("1700000000000-12".into()),
        gap: None,
    });
    let text = connected("1700000000000-12", "1600000000000-0") + &heartbeat("1700000000000-12");
    let source = Scripted::new(vec![Conn::sse(&text, true)]);
    let (end, _) = page(&feed(true, false), &cursor, &source, &limits()).await;
    let end = end.expect("page");
    assert!(end.skipped.is_empty(), "{:?}", end.skipped);
    let asked = &source.asked()[0];
    assert!(
        asked
            .url
            .contains("from=1700000000000-12&listen-delete=true"),
        "{}",
        asked.url
    );
    assert!(asked
        .headers
        .contains(&("last-event-id".into(), "1700000000000-12".into())));
}

#[tokio::test]
async fn page_full_says_more() {
    let mut text = connected("9-0", "1-0");
    for n in 1..=5 {
        text += &data_event(&format!("{n}-0"), "create", indicator(n));
    }
    let source = Scripted::new(vec![Conn::sse(&text, true)]);
    let limits = PageLimits {
        max_events: 3,
        ..limits()
    };
    let (end, objects) = page(&feed(false, false), &Cursor::Start, &source, &limits).await;
    let end = end.expect("page");
    assert!(end.more);
    assert_eq!(objects.len(), 3);
    assert_eq!(stream_cursor(&end).last_event_id.as_deref(), Some("3-0"));
}

#[tokio::test]
async fn time_limit_while_behind_says_more() {
    let text = connected("9-0", "1-0") + &data_event("1-0", "create", indicator(1));
    let source = Scripted::new(vec![Conn::sse(&text, true)]);
    let limits = PageLimits {
        max_time: Duration::from_millis(300),
        ..limits()
    };
    let (end, _) = page(&feed(false, false), &Cursor::Start, &source, &limits).await;
    let end = end.expect("page");
    assert!(end.more);
    assert_eq!(stream_cursor(&end).last_event_id.as_deref(), Some("1-0"));
}

#[tokio::test]
async fn deletions_are_dropped_unless_asked() {
    let text = connected("3-0", "1-0")
        + &data_event("1-0", "delete", indicator(1))
        + &data_event(
            "2-0",
            "merge",
            json!({"type": "indicator", "id": "indicator--00000000-0000-4000-8000-000000000002"}),
        )
        + &heartbeat("3-0");
    let source = Scripted::new(vec![Conn::sse(&text, true)]);
    let (end, objects) = page(&feed(false, false), &Cursor::Start, &source, &limits()).await;
    let end = end.expect("page");
    // The merge's target is still upserted; the delete and the merge's deletions are not.
    assert_eq!(types(&objects), vec!["indicator"]);
    assert_eq!(
        end.skipped,
        vec!["1 delete and 1 merge event(s) not applied: listen_deletions is off"]
    );
    assert_eq!(stream_cursor(&end).last_event_id.as_deref(), Some("3-0"));
}

#[tokio::test]
async fn deletions_and_merges_become_operations_when_asked() {
    let merge =
        json!({"type": "merge", "data": indicator(2), "context": {"sources": [indicator(3)]}});
    let text = connected("3-0", "1-0")
        + &data_event("1-0", "delete", indicator(1))
        + &format!("id: 2-0\nevent: merge\ndata: {merge}\n\n")
        + &heartbeat("3-0");
    let source = Scripted::new(vec![Conn::sse(&text, true)]);
    let (end, objects) = page(&feed(true, false), &Cursor::Start, &source, &limits()).await;
    let end = end.expect("page");
    assert!(end.skipped.is_empty());
    assert_eq!(
        types(&objects),
        vec![
            "identity",
            "extension-definition",
            event::OPERATION_TYPE,
            "indicator",
            event::OPERATION_TYPE
        ]
    );
    assert_eq!(objects[2]["operation"], "delete");
    assert_eq!(objects[2]["target_ref"], indicator(1)["id"]);
    assert_eq!(objects[2]["event_id"], "1-0");
    assert_eq!(objects[4]["operation"], "merge");
    assert_eq!(objects[4]["target_ref"], indicator(2)["id"]);
    assert_eq!(objects[4]["source_refs"], json!([indicator(3)["id"]]));
}

#[tokio::test]
async fn perfect_sync_marks_updates_as_replacements() {
    let text = connected("2-0", "1-0")
        + &data_event("1-0", "create", indicator(1))
        + &data_event("2-0", "update", indicator(1))
        + &heartbeat("2-0");
    let source = Scripted::new(vec![Conn::sse(&text, true)]);
    let (_, objects) = page(&feed(false, true), &Cursor::Start, &source, &limits()).await;
    let ops: Vec<&StixObject> = objects
        .iter()
        .filter(|o| o["type"] == event::OPERATION_TYPE)
        .collect();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0]["operation"], "replace");
}

#[tokio::test]
async fn an_upsert_then_a_delete_of_one_id_split_into_two_pages() {
    let text = connected("3-0", "1-0")
        + &data_event("1-0", "create", indicator(1))
        + &data_event("2-0", "delete", indicator(1))
        + &heartbeat("3-0");
    let source = Scripted::new(vec![Conn::sse(&text, true)]);
    let (end, objects) = page(&feed(true, false), &Cursor::Start, &source, &limits()).await;
    let end = end.expect("page");
    assert!(end.more);
    assert_eq!(types(&objects), vec!["indicator"]);
    assert_eq!(stream_cursor(&end).last_event_id.as_deref(), Some("1-0"));
}

#[tokio::test]
async fn a_drop_mid_event_reconnects_and_loses_nothing() {
    let full = connected("3-0", "1-0")
        + &data_event("1-0", "create", indicator(1))
        + &data_event("2-0", "create", indicator(2));
    // Cut inside the second event's data line.
    let cut = full.len() - 40;
    let first = Conn::sse(&full[..cut], false);
    let second = Conn::sse(
        &(connected("3-0", "1-0")
            + &data_event("2-0", "create", indicator(2))
            + &data_event("3-0", "create", indicator(3))
            + &heartbeat("3-0")),
        true,
    );
    let source = Scripted::new(vec![first, second]);
    let (end, objects) = page(&feed(false, false), &Cursor::Start, &source, &limits()).await;
    let end = end.expect("page");
    let ids: Vec<&str> = objects.iter().map(crate::stix::object_id).collect();
    assert_eq!(
        ids,
        vec![
            "indicator--00000000-0000-4000-8000-000000000001",
            "indicator--00000000-0000-4000-8000-000000000002",
            "indicator--00000000-0000-4000-8000-000000000003"
        ]
    );
    let asked = source.asked();
    assert_eq!(asked.len(), 2);
    assert!(asked[1].url.contains("from=1-0&"), "{}", asked[1].url);
    assert!(!end.more);
}

#[tokio::test]
async fn retention_past_the_cursor_is_reported() {
    let cursor = Cursor::Stream(StreamCursor {
        last_event_id: Some("100-0".into()),
        gap: None,
    });
    let text = connected("300-0", "200-0")
        + &data_event("200-0", "create", indicator(1))
        + &heartbeat("300-0");
    let source = Scripted::new(vec![Conn::sse(&text, true)]);
    let (end, objects) = page(&feed(false, false), &cursor, &source, &limits()).await;
    let end = end.expect("page");
    assert_eq!(
        objects.len(),
        1,
        "resumed from the oldest event, not from now"
    );
    assert_eq!(end.skipped.len(), 1);
    assert!(
        end.skipped[0].contains("no longer holds event 100-0"),
        "{:?}",
        end.skipped
    );
    let c = stream_cursor(&end);
    assert!(c.gap.is_some());
    assert!(Cursor::Stream(c).describe().contains("warning"));
}

#[tokio::test]
async fn refused_token_and_unknown_stream_are_clear_errors() {
    for (status, expect) in [(401, "refused the token"), (404, "no live stream `live-1`")] {
        let conn = Conn {
            status,
            content_type: "text/plain",
            chunks: Vec::new(),
            hold_open: false,
        };
        let source = Scripted::new(vec![conn]);
        let (end, _) = page(&feed(false, false), &Cursor::Start, &source, &limits()).await;
        let e = end.expect_err("fails").to_string();
        assert!(e.contains(expect), "{e}");
        assert!(e.contains("https://octi.example.test/stream/live-1"), "{e}");
        assert_eq!(source.asked().len(), 1, "no retry of {status}");
    }
}

#[tokio::test]
async fn html_instead_of_a_stream_is_refused() {
    let conn = Conn {
        status: 200,
        content_type: "text/html",
        chunks: vec![b"<html></html>".to_vec()],
        hold_open: false,
    };
    let source = Scripted::new(vec![conn]);
    let (end, _) = page(&feed(false, false), &Cursor::Start, &source, &limits()).await;
    let e = end.expect_err("fails").to_string();
    assert!(e.contains("not an event stream"), "{e}");
}

#[tokio::test]
async fn a_stream_that_keeps_dropping_fails_the_page() {
    let source = Scripted::new(vec![
        Conn::sse(&connected("5-0", "1-0"), false),
        Conn::sse(&connected("5-0", "1-0"), false),
        Conn::sse(&connected("5-0", "1-0"), false),
    ]);
    let (end, _) = page(&feed(false, false), &Cursor::Start, &source, &limits()).await;
    let e = end.expect_err("fails").to_string();
    assert!(e.contains("closed the stream"), "{e}");
    assert_eq!(source.asked().len(), 3);
}

#[tokio::test]
async fn a_bad_payload_is_skipped_and_the_cursor_moves_past_it() {
    let text = connected("2-0", "1-0")
        + "id: 1-0\nevent: create\ndata: {\"data\": 7}\n\n"
        + &data_event("2-0", "create", indicator(2))
        + &heartbeat("2-0");
    let source = Scripted::new(vec![Conn::sse(&text, true)]);
    let (end, objects) = page(&feed(false, false), &Cursor::Start, &source, &limits()).await;
    let end = end.expect("page");
    assert_eq!(objects.len(), 1);
    assert_eq!(end.skipped.len(), 1);
    assert!(end.skipped[0].starts_with("event 1-0 (create)"));
}
