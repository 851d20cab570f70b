//! TAXII feeds end to end against a scripted server on 127.0.0.1: the cases C10, C11 and
//! C13, medallion's captured answers (406, `{}`, TAXII 2.0 ranges), and the failures that
//! must leave the cursor where it was.

mod taxii_common;

use serde_json::json;
use taxii_common::{emitted, emitted_ids, Reply, Scripted, Workspace};

const COLLECTION: &str = "col-1";

fn feed_toml(base: &str, extra: &str) -> String {
    format!(
        "[[feeds]]\nname = \"tx\"\nkind = \"taxii\"\nurl = \"{base}/api1/\"\n\
         collection = \"{COLLECTION}\"\nallow_private_network = true\n{extra}\n"
    )
}

fn collection_path(target: &str) -> String {
    target.replace(&format!("/api1/collections/{COLLECTION}"), "{collection}")
}

fn indicator(n: u32) -> serde_json::Value {
    json!({
        "type": "indicator", "spec_version": "2.1",
        "id": format!("indicator--5f1d2c3b-0000-4000-8000-{n:012}"),
        "created": "2024-01-10T10:00:00.000Z", "modified": "2024-01-10T10:00:00.000Z",
        "pattern": format!("[ipv4-addr:value = '203.0.113.{n}']"),
        "pattern_type": "stix", "valid_from": "2024-01-10T10:00:00Z"
    })
}

#[tokio::test]
async fn c10_opaque_next_token_two_requests() {
    let (replies, expected) = Reply::exchange("C10_taxii21_opaque_next_token_exchange.json");
    let server = Scripted::start(replies).await;
    let mut ws = Workspace::new(&feed_toml(&server.base, ""));
    let (summaries, out) = ws.run_once(&[]).await;
    assert_eq!(summaries[0].error, None);

    let targets = server.targets();
    assert_eq!(targets.len(), 2, "exactly two requests: {targets:?}");
    assert!(targets[1].ends_with("&next=Y3Vyc29yOjE="), "{}", targets[1]);
    assert!(expected[1].ends_with("next=Y3Vyc29yOjE="));
    let patterns: Vec<String> = emitted(&out)
        .iter()
        .map(|o| o["pattern"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        patterns,
        vec![
            "[ipv4-addr:value = '198.51.100.1']",
            "[ipv4-addr:value = '198.51.100.2']"
        ]
    );
    assert_eq!(
        ws.cursor("tx")["added_after"],
        "2024-01-10T10:05:00.000000Z"
    );
}

#[tokio::test]
async fn c13_next_keeps_original_added_after() {
    let (replies, expected) = Reply::exchange("C13_taxii21_next_with_added_after_exchange.json");
    let server = Scripted::start(replies).await;
    let mut ws = Workspace::new(&feed_toml(
        &server.base,
        "import_from = \"2024-01-01T00:00:00Z\"\npage_size = 2",
    ));
    let (summaries, out) = ws.run_once(&[]).await;
    assert_eq!(summaries[0].error, None);
    assert_eq!(summaries[0].pages, 2);

    let sent: Vec<String> = server
        .seen()
        .iter()
        .map(|s| format!("{} {}", s.method, collection_path(&s.target)))
        .collect();
    assert_eq!(sent, expected);
    assert_eq!(emitted_ids(&out).len(), 3);
    let cursor = ws.cursor("tx");
    assert_eq!(cursor["added_after"], "2024-01-06T09:30:00.000000Z");
    assert!(cursor.get("next").is_none(), "{cursor}");
    for s in server.seen() {
        assert_eq!(
            s.header("accept"),
            Some("application/taxii+json;version=2.1")
        );
    }
}

#[tokio::test]
async fn c11_collections_listing_accepts_mislabelled_type() {
    use feedstix::config::HttpOptions;
    use feedstix::http::{HttpSource, RetryPolicy};
    use feedstix::kinds::taxii::collections::list_collections;
    use feedstix::kinds::taxii::media::TaxiiVersion;
    use feedstix::ports::EnvSecrets;

    let server = Scripted::start(vec![Reply::capture(
        "C11_taxii21_collections_content_type_params.http",
    )])
    .await;
    let options = HttpOptions {
        allow_private_network: true,
        ..HttpOptions::default()
    };
    let source = HttpSource::new(&options, &EnvSecrets, RetryPolicy::default())
        .await
        .expect("source");
    let url = format!("{}/api1/collections/", server.base);
    let listing = list_collections(&source, &url, TaxiiVersion::V21)
        .await
        .expect("listing");
    assert_eq!(listing.rows.len(), 1);
    assert_eq!(listing.rows[0].id, "x-example-collection-0001");
    assert_eq!(listing.rows[0].title, "Example techniques");
    assert!(listing.rows[0].can_read);
    assert_eq!(listing.rows[0].api_root, format!("{}/api1/", server.base));
    assert_eq!(listing.warnings.len(), 1, "{:?}", listing.warnings);
    assert!(listing.warnings[0].contains("application/stix+json"));
    assert_eq!(server.targets(), vec!["/api1/collections/"]);
}

#[tokio::test]
async fn discovery_listing_walks_every_api_root() {
    use feedstix::config::HttpOptions;
    use feedstix::http::{HttpSource, RetryPolicy};
    use feedstix::kinds::taxii::collections::list_collections;
    use feedstix::kinds::taxii::media::TaxiiVersion;
    use feedstix::ports::EnvSecrets;

    let server = Scripted::start(vec![
        Reply::json(200, &[], &json!({"title": "d", "api_roots": ["/api1/", "/api2/"]})),
        Reply::json(
            200,
            &[],
            &json!({"collections": [{"id": "a", "title": "A", "can_read": true, "can_write": false}]}),
        ),
        Reply::json(403, &[], &json!({"title": "Forbidden", "http_status": "403"})),
    ])
    .await;
    let options = HttpOptions {
        allow_private_network: true,
        ..HttpOptions::default()
    };
    let source = HttpSource::new(&options, &EnvSecrets, RetryPolicy::default())
        .await
        .expect("source");
    let listing = list_collections(
        &source,
        &format!("{}/taxii2/", server.base),
        TaxiiVersion::V21,
    )
    .await
    .expect("listing");
    assert_eq!(listing.rows.len(), 1);
    assert_eq!(listing.errors.len(), 1, "{:?}", listing.errors);
    assert!(listing.errors[0].contains("refused the credentials"));
    assert_eq!(
        server.targets(),
        vec!["/taxii2/", "/api1/collections/", "/api2/collections/"]
    );
}

#[tokio::test]
async fn not_acceptable_says_which_version_the_server_speaks() {
    let server = Scripted::start(vec![Reply::capture(
        "medallion21_error_406_taxii20_accept.http",
    )])
    .await;
    let mut ws = Workspace::new(&feed_toml(&server.base, "version = \"2.0\""));
    let (summaries, _) = ws.run_once(&[]).await;
    let error = summaries[0].error.clone().expect("the page fails");
    assert!(error.contains("406"), "{error}");
    assert!(error.contains("version = \"2.1\""), "{error}");
    assert_eq!(
        server.seen()[0].header("accept"),
        Some("application/vnd.oasis.stix+json; version=2.0")
    );
}

#[tokio::test]
async fn empty_object_body_is_the_end_and_keeps_the_cursor() {
    let server = Scripted::start(vec![
        Reply::json(
            200,
            &[("X-TAXII-Date-Added-Last", "2024-03-01T10:00:00.123456Z")],
            &json!({"more": false, "objects": [indicator(1)]}),
        ),
        Reply::capture("medallion21_objects_added_after_future_empty_body.http"),
    ])
    .await;
    let mut ws = Workspace::new(&feed_toml(&server.base, ""));
    ws.run_once(&[]).await;
    let (summaries, out) = ws.run_once(&[]).await;
    assert_eq!(summaries[0].error, None);
    assert_eq!(summaries[0].objects, 0);
    assert!(emitted(&out).is_empty());
    assert_eq!(
        ws.cursor("tx")["added_after"],
        "2024-03-01T10:00:00.123456Z"
    );
    assert!(server.targets()[1].contains("added_after=2024-03-01T10:00:00.123456Z&limit=1000"));
}

/// Runs one good page (cursor at `2024-03-01T10:00:00.123456Z`), then `bad`; returns the
/// second run's error.
async fn fails_without_moving(bad: Reply) -> String {
    let good = Reply::json(
        200,
        &[("X-TAXII-Date-Added-Last", "2024-03-01T10:00:00.123456Z")],
        &json!({"more": false, "objects": [indicator(1)]}),
    );
    let server = Scripted::start(vec![good, bad]).await;
    let mut ws = Workspace::new(&feed_toml(&server.base, ""));
    ws.run_once(&[]).await;
    let before = ws.cursor("tx");
    let (summaries, out) = ws.run_once(&[]).await;
    assert_eq!(ws.cursor("tx"), before, "the cursor did not move");
    assert!(emitted(&out).is_empty(), "a failed page emits nothing");
    summaries[0].error.clone().expect("the page fails")
}

#[tokio::test]
async fn future_date_added_last_is_refused() {
    let error = fails_without_moving(Reply::json(
        200,
        &[("X-TAXII-Date-Added-Last", "2099-01-01T00:00:00.000000Z")],
        &json!({"more": false, "objects": [indicator(2)]}),
    ))
    .await;
    assert!(error.contains("in the future"), "{error}");
}

#[tokio::test]
async fn html_body_is_not_an_envelope() {
    let error = fails_without_moving(Reply {
        status: 200,
        headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
        body: b"<!doctype html><title>Sign in</title>".to_vec(),
    })
    .await;
    assert!(error.contains("text/html"), "{error}");
    let error = fails_without_moving(Reply {
        status: 200,
        headers: vec![(
            "Content-Type".into(),
            "application/taxii+json;version=2.1".into(),
        )],
        body: b"<!doctype html><title>Sign in</title>".to_vec(),
    })
    .await;
    assert!(error.contains("not JSON"), "{error}");
}

#[tokio::test]
async fn unauthorized_names_the_feed_and_the_credentials() {
    let error = fails_without_moving(Reply::json(
        401,
        &[(
            "WWW-Authenticate",
            "Basic realm=\"Authentication Required\"",
        )],
        &json!({"title": "Unauthorized", "http_status": "401"}),
    ))
    .await;
    assert!(error.starts_with("feed tx: "), "{error}");
    assert!(
        error.contains("refused the credentials (HTTP 401)"),
        "{error}"
    );
}

#[tokio::test]
async fn not_found_names_the_url() {
    let error = fails_without_moving(Reply::json(
        404,
        &[],
        &json!({"title": "ProcessingError", "http_status": "404", "description": "Collection 'col-1' not found"}),
    ))
    .await;
    assert!(
        error.contains("/api1/collections/col-1/objects/"),
        "{error}"
    );
    assert!(error.contains("404"), "{error}");
    assert!(error.contains("Collection 'col-1' not found"), "{error}");
}

#[tokio::test]
async fn discovery_url_as_feed_url_is_a_clear_error() {
    let server = Scripted::start(Vec::new()).await;
    let toml = feed_toml(&server.base, "").replace("/api1/", "/taxii2/");
    let mut ws = Workspace::new(&toml);
    let (summaries, _) = ws.run_once(&[]).await;
    let error = summaries[0].error.clone().expect("refused");
    assert!(error.contains("discovery URL"), "{error}");
    assert!(error.contains("feedstix taxii collections"), "{error}");
    assert!(server.targets().is_empty());
}

fn bundle20(status: u16, range: &str, last: &str, ids: &[&str]) -> Reply {
    let objects: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| {
            json!({"type": "malware", "id": id, "created": "2017-01-27T13:49:53.997Z",
                   "modified": "2017-01-27T13:49:53.997Z", "name": id, "labels": ["trojan"]})
        })
        .collect();
    Reply::json(
        status,
        &[
            (
                "Content-Type",
                "application/vnd.oasis.stix+json; version=2.0",
            ),
            ("Accept-Ranges", "items"),
            ("Content-Range", range),
            ("X-TAXII-Date-Added-Last", last),
        ],
        &json!({"type": "bundle", "id": "bundle--eda1104b-453d-49a2-af67-cca2e4eaf455",
                "spec_version": "2.0", "objects": objects}),
    )
}

#[tokio::test]
async fn taxii20_range_paging_with_inclusive_boundary() {
    let b = "malware--0d4b6c1e-0000-4000-8000-000000000002";
    let c = "malware--0d4b6c1e-0000-4000-8000-000000000003";
    let t = "2017-01-01T00:00:00Z";
    let server = Scripted::start(vec![
        // Run 1: asked for 0-1, the server sends one item of three (the capture), then the
        // other two.
        Reply::capture("medallion20_objects_range_206_bundle.http"),
        bundle20(206, "items 1-2/3", t, &[b, c]),
        // Run 2: `added_after` is inclusive, so the boundary objects come again.
        bundle20(206, "items 0-1/2", t, &[b, c]),
        // Run 3: nothing at all.
        Reply::capture("medallion20_objects_empty_bundle.http"),
    ])
    .await;
    let mut ws = Workspace::new(&feed_toml(&server.base, "version = \"2.0\"\npage_size = 2"));

    let (s1, out1) = ws.run_once(&[]).await;
    assert_eq!(s1[0].error, None);
    assert_eq!(s1[0].pages, 2);
    assert_eq!(emitted_ids(&out1).len(), 3);
    assert_eq!(ws.cursor("tx")["added_after"], t);

    let (s2, out2) = ws.run_once(&[]).await;
    assert_eq!(s2[0].error, None);
    assert!(
        emitted(&out2).is_empty(),
        "boundary objects are not emitted twice"
    );
    assert_eq!(ws.cursor("tx")["added_after"], t);

    let (s3, out3) = ws.run_once(&[]).await;
    assert_eq!(s3[0].error, None);
    assert!(emitted(&out3).is_empty());

    let seen = server.seen();
    let ranges: Vec<Option<&str>> = seen.iter().map(|s| s.header("range")).collect();
    assert_eq!(
        ranges,
        vec![
            Some("items 0-1"),
            Some("items 1-2"),
            Some("items 0-1"),
            Some("items 0-1")
        ]
    );
    assert_eq!(
        server.targets()[2],
        format!("/api1/collections/{COLLECTION}/objects/?added_after={t}")
    );
    assert!(seen
        .iter()
        .all(|s| s.header("accept") == Some("application/vnd.oasis.stix+json; version=2.0")));
}
