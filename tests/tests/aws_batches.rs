//! SQS batches on an emulator: one failing job in a batch of ten is the only one delivered
//! again, and a page whose bundles would exceed the worker queue's message limit is split
//! (and a single object larger than a message goes by claim check), nothing lost or cut.

mod aws_support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_support::{Cloud, Http, Reply};
use feedstix::aws::claim::ClaimStore;
use feedstix::aws::dynamo::DynamoFeeds;
use feedstix::aws::handlers::{bundle_batch, fetch_batch, BundlerContext, FetcherContext};
use feedstix::aws::sqs::{Envelope, Queue, SqsJobQueue, SqsPageQueue};
use feedstix::config::Kind;
use feedstix::ports::{FetchJob, PagePart, PageQueue};
use feedstix::stix::StixObject;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_job_in_a_batch_of_ten_is_the_only_one_redelivered() {
    let cloud = Cloud::new(262_144).await;
    let rss =
        std::fs::read(aws_support::examples().join("feeds/cert-advisories.rss")).expect("rss");
    let mut routes = HashMap::new();
    routes.insert(
        "/ok.rss".to_string(),
        Reply {
            status: 200,
            content_type: "application/rss+xml",
            body: rss,
        },
    );
    routes.insert(
        "/broken.rss".to_string(),
        Reply {
            status: 200,
            content_type: "application/rss+xml",
            body: b"<rss><channel><item><title>cut off".to_vec(),
        },
    );
    let http = Http::start(routes, 0).await;

    // Ten feeds; feed-7 serves a broken document.
    let mut text = String::new();
    for i in 0..10 {
        let path = if i == 7 { "broken" } else { "ok" };
        text.push_str(&format!(
            "[[feeds]]\nname = \"feed-{i}\"\nkind = \"rss\"\nurl = \"{}/{path}.rss\"\n\
             allow_private_network = true\n\n",
            http.base
        ));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("feeds.toml");
    std::fs::write(&path, text).expect("write config");
    let config = feedstix::config::load(&path).expect("config");
    let feeds = DynamoFeeds::new(cloud.clients.dynamodb.clone(), &cloud.feeds_table);
    for feed in &config.feeds {
        feeds.put(feed).await.expect("store feed");
    }
    let claims = ClaimStore::new(cloud.clients.s3.clone(), &cloud.bucket);
    let jobs = SqsJobQueue::new(Queue::new(
        cloud.clients.sqs.clone(),
        &cloud.fetch_queue,
        262_144,
        claims,
    ));
    let unsent = jobs
        .send_jobs(
            (0..10)
                .map(|i| FetchJob {
                    feed: format!("feed-{i}"),
                    epoch: 0,
                    page: 0,
                    first: true,
                })
                .collect(),
        )
        .await;
    assert!(unsent.is_empty());

    let fetcher = FetcherContext::new(&cloud.clients, &cloud.fetcher_settings()).with_retry(
        feedstix::http::RetryPolicy {
            attempts: 1,
            ..Default::default()
        },
    );
    let now = chrono::Utc::now();
    let (ids, response) = cloud
        .deliver(&cloud.fetch_queue, |event| {
            fetch_batch(&fetcher, event, now)
        })
        .await
        .expect("a batch");
    assert_eq!(ids.len(), 10, "all ten jobs arrive in one batch");
    assert_eq!(response.batch_item_failures.len(), 1, "{response:?}");
    let failed = &response.batch_item_failures[0].item_identifier;

    // Only the failed job comes back; the nine others were acknowledged.
    let (again, _) = cloud
        .deliver(&cloud.fetch_queue, |event| async move {
            let feeds: Vec<String> = event
                .records
                .iter()
                .map(|r| {
                    serde_json::from_str::<FetchJob>(r.body.as_deref().unwrap_or_default())
                        .expect("job")
                        .feed
                })
                .collect();
            assert_eq!(feeds, vec!["feed-7"]);
            aws_lambda_events::sqs::SqsBatchResponse::default()
        })
        .await
        .expect("the failed job is delivered again");
    assert_eq!(&again, &vec![failed.clone()]);
    assert!(cloud
        .deliver(&cloud.fetch_queue, |_| async { unreachable!() })
        .await
        .is_none());

    // Nine cursors moved; the failed feed's did not, and its status says why.
    let states = fetcher.states();
    for i in 0..10 {
        let state = states
            .load(&format!("feed-{i}"))
            .await
            .expect("load")
            .unwrap_or_default();
        if i == 7 {
            assert_eq!(state.pages, 0);
            assert_eq!(state.status.consecutive_failures, 1);
            assert!(state.status.last_error.is_some());
        } else {
            assert_eq!(state.pages, 1, "feed-{i}");
        }
    }
}

fn indicator(i: usize, description_len: usize) -> StixObject {
    let value = serde_json::json!({
        "type": "indicator",
        "spec_version": "2.1",
        "id": format!("indicator--{:08x}-0000-4000-8000-{:012x}", i, i),
        "created": "2025-01-01T00:00:00.000Z",
        "modified": "2025-01-01T00:00:00.000Z",
        "name": format!("indicator {i}"),
        "description": "d".repeat(description_len),
        "pattern": format!("[ipv4-addr:value = '10.0.{}.{}']", i / 256, i % 256),
        "pattern_type": "stix",
        "valid_from": "2025-01-01T00:00:00Z"
    });
    match value {
        serde_json::Value::Object(map) => map,
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_over_the_message_limit_is_split_and_nothing_is_lost_or_cut() {
    // A small limit makes the split visible with little data.
    let limit = 8 * 1024;
    let cloud = Cloud::new(limit).await;
    let mut objects: Vec<StixObject> = (0..120).map(|i| indicator(i, 300)).collect();
    // One object larger than a whole message: it must travel by claim check.
    objects.push(indicator(999, 20 * 1024));
    let part = PagePart {
        feed: "big-page".into(),
        kind: Kind::Csv,
        epoch: 0,
        page: 0,
        part: 0,
        last: true,
        user: Some("[F] tester".into()),
        objects: objects.clone(),
        support: Vec::new(),
    };

    // The part itself exceeds a message: the page queue carries it by claim check too.
    let claims = ClaimStore::new(cloud.clients.s3.clone(), &cloud.bucket);
    let pages = SqsPageQueue::new(Queue::new(
        cloud.clients.sqs.clone(),
        &cloud.page_queue,
        limit,
        claims,
    ));
    pages.send(part).await.expect("send part");
    let bundler = Arc::new(BundlerContext::new(
        &cloud.clients,
        &cloud.bundler_settings(Envelope::None),
    ));
    let (_, response) = cloud
        .deliver(&cloud.page_queue, |event| {
            let bundler = bundler.clone();
            async move { bundle_batch(&bundler, event).await }
        })
        .await
        .expect("the part arrives");
    assert!(response.batch_item_failures.is_empty(), "{response:?}");

    let messages = cloud.drain(&cloud.worker_queue).await;
    assert!(messages.len() > 2, "split into {} bundles", messages.len());
    let mut received: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut claimed = 0;
    for message in &messages {
        assert!(
            message.raw_len <= limit,
            "a message of {} bytes",
            message.raw_len
        );
        if message.claimed {
            claimed += 1;
        }
        let bundle: serde_json::Value = serde_json::from_slice(&message.body).expect("bundle json");
        assert_eq!(bundle["type"], "bundle");
        for object in bundle["objects"].as_array().expect("objects") {
            let id = object["id"].as_str().expect("id").to_string();
            assert!(
                received.insert(id, object.clone()).is_none(),
                "an object sent twice"
            );
        }
    }
    assert_eq!(
        claimed, 1,
        "only the oversized object's bundle needs a claim check"
    );
    assert_eq!(received.len(), objects.len());
    for object in &objects {
        let id = object["id"].as_str().expect("id");
        assert_eq!(
            received[id],
            serde_json::Value::Object(object.clone()),
            "{id} changed"
        );
    }
}

#[tokio::test]
async fn the_opencti_envelope_carries_the_bundle_and_the_user() {
    let cloud = Cloud::new(262_144).await;
    let claims = ClaimStore::new(cloud.clients.s3.clone(), &cloud.bucket);
    let pages = SqsPageQueue::new(Queue::new(
        cloud.clients.sqs.clone(),
        &cloud.page_queue,
        262_144,
        claims,
    ));
    pages
        .send(PagePart {
            feed: "enveloped".into(),
            kind: Kind::Rss,
            epoch: 0,
            page: 3,
            part: 1,
            last: true,
            user: Some("user-id-1".into()),
            objects: vec![indicator(1, 10)],
            support: Vec::new(),
        })
        .await
        .expect("send part");
    let bundler = BundlerContext::new(&cloud.clients, &cloud.bundler_settings(Envelope::Opencti));
    cloud
        .deliver(&cloud.page_queue, |event| bundle_batch(&bundler, event))
        .await
        .expect("the part arrives");
    let messages = cloud.drain(&cloud.worker_queue).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].attributes.get("sequence").map(String::as_str),
        Some("3.1.0")
    );
    let envelope: serde_json::Value = serde_json::from_slice(&messages[0].body).expect("envelope");
    assert_eq!(envelope["applicant_id"], "user-id-1");
    use base64::Engine as _;
    let content = base64::engine::general_purpose::STANDARD
        .decode(envelope["content"].as_str().expect("content"))
        .expect("base64");
    let bundle: serde_json::Value = serde_json::from_slice(&content).expect("bundle");
    assert_eq!(bundle["objects"][0]["id"], indicator(1, 10)["id"]);
}
