//! Page-level tests of the TAXII kind against a scripted in-memory source: the requests
//! sent, the cursor after each page, and the errors users see.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::*;
use crate::http::HttpError;
use crate::kinds::ObjectOut;
use crate::ports::{Body, PortError};

/// One scripted answer.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, headers: &[(&str, &str)], body: &Value) -> Reply {
        let mut h: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
            .collect();
        if !h.iter().any(|(n, _)| n == "content-type") {
            h.push((
                "content-type".into(),
                "application/taxii+json;version=2.1".into(),
            ));
        }
        Reply {
            status,
            headers: h,
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }

    /// A raw capture: status line, headers, blank line, body.
    fn capture(name: &str) -> Reply {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/taxii")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Reply {
            status,
            headers,
            body: body.as_bytes().to_vec(),
        }
    }
}

#[derive(Default)]
struct Scripted {
    replies: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<SourceRequest>>,
}

impl Scripted {
    fn new(replies: Vec<Reply>) -> Scripted {
        Scripted {
            replies: Mutex::new(replies.into()),
            seen: Mutex::default(),
        }
    }

    fn urls(&self) -> Vec<String> {
        self.seen
            .lock()
            .map(|s| s.iter().map(|r| r.url.clone()).collect())
            .unwrap_or_default()
    }

    fn header(&self, index: usize, name: &str) -> Option<String> {
        let seen = self.seen.lock().ok()?;
        seen.get(index)?
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

#[async_trait]
impl Source for Scripted {
    async fn get(&self, request: SourceRequest) -> Result<SourceResponse, HttpError> {
        let url = request.url.clone();
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(request);
        }
        let reply = self
            .replies
            .lock()
            .ok()
            .and_then(|mut r| r.pop_front())
            .ok_or_else(|| HttpError::Transport {
                url: url.clone(),
                reason: "no scripted reply left".into(),
            })?;
        Ok(SourceResponse {
            status: reply.status,
            headers: reply.headers,
            body: Body::Memory(reply.body),
            final_url: url,
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

impl Collect {
    fn ids(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|o| crate::stix::object_id(o).to_string())
            .collect()
    }
}

const ROOT: &str = "http://taxii.example.test/api1/";
const OBJECTS: &str = "http://taxii.example.test/api1/collections/col-1/objects/";

fn feed(extra: &str) -> Feed {
    let text = format!(
        "[[feeds]]\nname = \"t\"\nkind = \"taxii\"\nurl = \"{ROOT}\"\ncollection = \"col-1\"\n{extra}\n"
    );
    let (_, feeds) = match crate::config::parse(&text, Path::new(".")) {
        Ok(parsed) => parsed,
        Err(e) => panic!("test config does not parse: {e:?}"),
    };
    match Feed::new(feeds.into_iter().next().expect("one feed")) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    }
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-04T16:00:00Z")
        .expect("valid")
        .with_timezone(&Utc)
}

fn exchange(name: &str) -> Vec<Reply> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/taxii")
        .join(name);
    let text = std::fs::read_to_string(path).expect("fixture");
    let doc: Value = serde_json::from_str(&text).expect("json fixture");
    doc["exchanges"]
        .as_array()
        .expect("exchanges")
        .iter()
        .map(|x| {
            let headers: Vec<(&str, &str)> = x["headers"]
                .as_object()
                .expect("headers")
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str().unwrap_or_default()))
                .collect();
            Reply::json(
                x["status"].as_u64().unwrap_or(0) as u16,
                &headers,
                &x["body"],
            )
        })
        .collect()
}

async fn page(feed: &Feed, cursor: &Cursor, source: &Scripted, out: &mut Collect) -> PageEnd {
    match fetch_page(feed, cursor, source, now(), out).await {
        Ok(end) => end,
        Err(e) => panic!("page failed: {e}"),
    }
}

fn taxii(cursor: &Cursor) -> &TaxiiCursor {
    match cursor {
        Cursor::Taxii(c) => c,
        other => panic!("not a TAXII cursor: {other:?}"),
    }
}

#[tokio::test]
async fn c13_walk_keeps_added_after_and_moves_only_at_the_end() {
    let feed = feed("import_from = \"2024-01-01T00:00:00Z\"\npage_size = 2");
    let source = Scripted::new(exchange("C13_taxii21_next_with_added_after_exchange.json"));
    let mut out = Collect::default();

    let first = page(&feed, &Cursor::Start, &source, &mut out).await;
    assert!(first.more);
    let c = taxii(&first.cursor);
    assert_eq!(c.added_after.as_deref(), Some("2024-01-01T00:00:00Z"));
    assert_eq!(c.next.as_deref(), Some("2"));

    let second = page(&feed, &first.cursor, &source, &mut out).await;
    assert!(!second.more);
    assert_eq!(
        source.urls(),
        vec![
            format!("{OBJECTS}?added_after=2024-01-01T00:00:00Z&limit=2"),
            format!("{OBJECTS}?added_after=2024-01-01T00:00:00Z&limit=2&next=2"),
        ]
    );
    let c = taxii(&second.cursor);
    assert_eq!(
        c.added_after.as_deref(),
        Some("2024-01-06T09:30:00.000000Z")
    );
    assert_eq!(c.next, None);
    assert_eq!(out.0.len(), 3);
    assert_eq!(
        source.header(0, "accept").as_deref(),
        Some("application/taxii+json;version=2.1")
    );
}

#[tokio::test]
async fn c10_opaque_token_is_sent_verbatim_and_the_walk_stops() {
    let feed = feed("");
    let source = Scripted::new(exchange("C10_taxii21_opaque_next_token_exchange.json"));
    let mut out = Collect::default();
    let first = page(&feed, &Cursor::Start, &source, &mut out).await;
    let second = page(&feed, &first.cursor, &source, &mut out).await;
    assert!(first.more && !second.more);
    let urls = source.urls();
    assert_eq!(urls.len(), 2);
    assert!(urls[1].ends_with("&next=Y3Vyc29yOjE="), "{}", urls[1]);
    assert_eq!(
        out.ids(),
        vec![
            "indicator--0b6a1c3e-6c1e-4d2b-9a0e-1f5a2b3c4d01",
            "indicator--0b6a1c3e-6c1e-4d2b-9a0e-1f5a2b3c4d02"
        ]
    );
    assert_eq!(
        taxii(&second.cursor).added_after.as_deref(),
        Some("2024-01-10T10:05:00.000000Z")
    );
}

#[tokio::test]
async fn medallion_pages_reuse_one_token_without_looping() {
    let feed = feed("page_size = 2");
    let page1 = Reply::capture("medallion21_objects_page1_more_next.http");
    let page2 = Reply::capture("medallion21_objects_page1_more_next.http");
    let page3 = Reply::capture("medallion21_objects_page3_last_no_next.http");
    let source = Scripted::new(vec![page1, page2, page3]);
    let mut out = Collect::default();
    let mut cursor = Cursor::Start;
    let mut pages = 0;
    loop {
        let end = page(&feed, &cursor, &source, &mut out).await;
        cursor = end.cursor;
        pages += 1;
        if !end.more {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        taxii(&cursor).added_after.as_deref(),
        Some("2017-12-31T13:49:53.935000Z")
    );
}

#[tokio::test]
async fn empty_page_with_more_continues_the_walk() {
    let feed = feed("import_from = \"2024-01-01\"");
    let source = Scripted::new(vec![Reply::json(
        200,
        &[],
        &serde_json::json!({"more": true, "next": 7, "objects": []}),
    )]);
    let end = page(&feed, &Cursor::Start, &source, &mut Collect::default()).await;
    assert!(end.more);
    let c = taxii(&end.cursor);
    assert_eq!(c.added_after.as_deref(), Some("2024-01-01T00:00:00Z"));
    assert_eq!(c.next.as_deref(), Some("7"));
    assert_eq!(c.empty_pages, 1);
}

#[tokio::test]
async fn empty_body_ends_the_poll_and_keeps_the_cursor() {
    let feed = feed("");
    let source = Scripted::new(vec![Reply::capture(
        "medallion21_objects_added_after_future_empty_body.http",
    )]);
    let before = Cursor::Taxii(TaxiiCursor {
        added_after: Some("2024-03-01T00:00:00.123456Z".into()),
        ..Default::default()
    });
    let end = page(&feed, &before, &source, &mut Collect::default()).await;
    assert!(!end.more);
    assert_eq!(end.objects, 0);
    assert_eq!(
        taxii(&end.cursor).added_after.as_deref(),
        Some("2024-03-01T00:00:00.123456Z")
    );
}

#[tokio::test]
async fn future_date_is_refused_before_any_object_is_handed_on() {
    let feed = feed("");
    let source = Scripted::new(vec![Reply::json(
        200,
        &[("X-TAXII-Date-Added-Last", "2031-01-01T00:00:00.000000Z")],
        &serde_json::json!({"objects": [{"type": "malware", "id": "malware--1"}]}),
    )]);
    let mut out = Collect::default();
    let e = fetch_page(&feed, &Cursor::Start, &source, now(), &mut out)
        .await
        .expect_err("future date");
    assert!(e.to_string().contains("in the future"), "{e}");
    assert!(out.0.is_empty());
}

#[tokio::test]
async fn missing_header_uses_newest_object_date_never_the_clock() {
    let feed = feed("");
    let source = Scripted::new(vec![Reply::json(
        200,
        &[],
        &serde_json::json!({"objects": [
            {"type": "malware", "id": "malware--1", "modified": "2020-05-01T00:00:00.000Z"},
            {"type": "malware", "id": "malware--2", "modified": "2021-05-01T00:00:00.000Z"}
        ]}),
    )]);
    let end = page(&feed, &Cursor::Start, &source, &mut Collect::default()).await;
    assert_eq!(
        taxii(&end.cursor).added_after.as_deref(),
        Some("2021-05-01T00:00:00.000Z")
    );
}

#[tokio::test]
async fn html_body_fails_the_page() {
    let feed = feed("");
    let source = Scripted::new(vec![Reply {
        status: 200,
        headers: vec![("content-type".into(), "text/html".into())],
        body: b"<html><body>Please sign in</body></html>".to_vec(),
    }]);
    let e = fetch_page(
        &feed,
        &Cursor::Start,
        &source,
        now(),
        &mut Collect::default(),
    )
    .await
    .expect_err("html");
    assert!(e.to_string().contains("text/html"), "{e}");
}

#[tokio::test]
async fn not_acceptable_names_the_version_the_server_speaks() {
    let feed = feed("version = \"2.0\"");
    let source = Scripted::new(vec![Reply::capture(
        "medallion21_error_406_taxii20_accept.http",
    )]);
    let e = fetch_page(
        &feed,
        &Cursor::Start,
        &source,
        now(),
        &mut Collect::default(),
    )
    .await
    .expect_err("406");
    let text = e.to_string();
    assert!(text.contains("version = \"2.1\""), "{text}");
    assert!(text.contains("Media type in the Accept header"), "{text}");
}

#[tokio::test]
async fn discovery_url_is_refused_without_a_request() {
    let mut f = feed("");
    f.config.url = "http://taxii.example.test/taxii2/".into();
    let source = Scripted::new(Vec::new());
    let e = fetch_page(&f, &Cursor::Start, &source, now(), &mut Collect::default())
        .await
        .expect_err("discovery");
    assert!(e.to_string().contains("discovery"), "{e}");
    assert!(source.urls().is_empty());
}

fn bundle_reply(status: u16, range: Option<&str>, last: Option<&str>, ids: &[&str]) -> Reply {
    let objects: Vec<Value> = ids
        .iter()
        .map(|id| serde_json::json!({"type": "malware", "id": id, "created": "2017-01-27T13:49:53.997Z", "modified": "2017-01-27T13:49:53.997Z", "name": id, "labels": ["trojan"]}))
        .collect();
    let mut headers = vec![(
        "Content-Type",
        "application/vnd.oasis.stix+json; version=2.0",
    )];
    if let Some(r) = range {
        headers.push(("Content-Range", r));
    }
    if let Some(l) = last {
        headers.push(("X-TAXII-Date-Added-Last", l));
    }
    Reply::json(
        status,
        &headers,
        &serde_json::json!({"type": "bundle", "id": "bundle--1", "spec_version": "2.0", "objects": objects}),
    )
}

#[tokio::test]
async fn taxii20_range_paging_and_inclusive_boundary() {
    let feed = feed("version = \"2.0\"\npage_size = 2");
    let t1 = "2016-11-01T03:04:05Z";
    let t2 = "2017-01-01T00:00:00Z";
    let source = Scripted::new(vec![
        // The capture's shape: fewer items than asked, with the total.
        Reply::capture("medallion20_objects_range_206_bundle.http"),
        bundle_reply(
            206,
            Some("items 1-2/3"),
            Some(t2),
            &["malware--b", "malware--c"],
        ),
        // Next poll: the inclusive server sends the boundary objects again.
        bundle_reply(
            200,
            Some("items 0-1/2"),
            Some(t2),
            &["malware--b", "malware--c"],
        ),
        // And again, with one new object at a later date.
        bundle_reply(
            206,
            Some("items 0-1/3"),
            Some(t2),
            &["malware--b", "malware--c"],
        ),
        bundle_reply(
            206,
            Some("items 2-2/3"),
            Some("2017-02-01T00:00:00Z"),
            &["malware--d"],
        ),
        Reply::capture("medallion20_objects_empty_bundle.http"),
    ]);
    let mut out = Collect::default();

    let p1 = page(&feed, &Cursor::Start, &source, &mut out).await;
    assert!(p1.more);
    assert_eq!(taxii(&p1.cursor).offset, Some(1));
    assert_eq!(taxii(&p1.cursor).last_added.as_deref(), Some(t1));
    let p2 = page(&feed, &p1.cursor, &source, &mut out).await;
    assert!(!p2.more);
    assert_eq!(taxii(&p2.cursor).added_after.as_deref(), Some(t2));
    assert_eq!(taxii(&p2.cursor).boundary.len(), 2);
    assert_eq!(out.0.len(), 3);

    let p3 = page(&feed, &p2.cursor, &source, &mut out).await;
    assert!(!p3.more);
    assert_eq!(p3.objects, 0, "boundary objects are not emitted twice");
    assert_eq!(taxii(&p3.cursor).added_after.as_deref(), Some(t2));

    let p4 = page(&feed, &p3.cursor, &source, &mut out).await;
    assert!(p4.more && p4.objects == 0);
    let p5 = page(&feed, &p4.cursor, &source, &mut out).await;
    assert!(!p5.more && p5.objects == 1);
    assert_eq!(
        taxii(&p5.cursor).added_after.as_deref(),
        Some("2017-02-01T00:00:00Z")
    );
    let p6 = page(&feed, &p5.cursor, &source, &mut out).await;
    assert_eq!(p6.objects, 0);

    assert_eq!(
        out.ids(),
        vec![
            "malware--fdd60b30-b67c-11e3-b0b9-f01faf20d111",
            "malware--b",
            "malware--c",
            "malware--d"
        ]
    );
    assert_eq!(source.header(0, "range").as_deref(), Some("items 0-1"));
    assert_eq!(source.header(1, "range").as_deref(), Some("items 1-2"));
    assert_eq!(
        source.header(0, "accept").as_deref(),
        Some("application/vnd.oasis.stix+json; version=2.0")
    );
    let urls = source.urls();
    assert_eq!(urls[2], format!("{OBJECTS}?added_after={t2}"));
}

#[tokio::test]
async fn taxii20_range_not_satisfiable_ends_the_walk() {
    let feed = feed("version = \"2.0\"\npage_size = 2");
    let source = Scripted::new(vec![Reply {
        status: 416,
        headers: Vec::new(),
        body: Vec::new(),
    }]);
    let before = Cursor::Taxii(TaxiiCursor {
        added_after: Some("2017-01-01T00:00:00Z".into()),
        offset: Some(4),
        last_added: Some("2017-03-01T00:00:00Z".into()),
        ..Default::default()
    });
    let end = page(&feed, &before, &source, &mut Collect::default()).await;
    assert!(!end.more);
    assert_eq!(
        taxii(&end.cursor).added_after.as_deref(),
        Some("2017-03-01T00:00:00Z")
    );
}

#[test]
fn cursor_round_trips_as_data() {
    let c = TaxiiCursor {
        added_after: Some("2024-01-06T09:30:00.000000Z".into()),
        next: Some("Y3Vyc29yOjE=".into()),
        ..Default::default()
    };
    let text = serde_json::to_string(&Cursor::Taxii(c.clone())).expect("serializes");
    assert!(text.contains("2024-01-06T09:30:00.000000Z"));
    let back: Cursor = serde_json::from_str(&text).expect("deserializes");
    assert_eq!(back, Cursor::Taxii(c.clone()));
    assert!(c.describe().contains("next token Y3Vyc29yOjE="));
}
