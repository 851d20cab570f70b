//! The whole cloud path on an emulator: a scheduled event into the dispatcher's handler,
//! the fetch jobs received from the fetch queue and handed to the fetcher's handler, the
//! pages to the bundler's handler, and the bundles read back from the worker queue, for an
//! RSS and a CSV feed served over loopback HTTP. The worker queue must hold the same
//! objects that `feedstix run` writes locally for the same feeds.

mod aws_support;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_support::{examples, ids_in, Cloud, Http, Reply};
use feedstix::aws::dynamo::DynamoFeeds;
use feedstix::aws::handlers::{
    bundle_batch, dispatch_payload, fetch_batch, BundlerContext, DispatcherContext, FetcherContext,
};
use feedstix::aws::sqs::Envelope;
use feedstix::local::{LocalRunner, RunOptions, Shutdown};

fn scheduled_event() -> serde_json::Value {
    serde_json::json!({
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2025-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/feedstix-tick"],
        "detail": {}
    })
}

async fn serve_examples() -> Http {
    let read =
        |name: &str| std::fs::read(examples().join("feeds").join(name)).expect("example feed");
    let mut routes = HashMap::new();
    routes.insert(
        "/cert-advisories.rss".to_string(),
        Reply {
            status: 200,
            content_type: "application/rss+xml",
            body: read("cert-advisories.rss"),
        },
    );
    routes.insert(
        "/urlhaus-recent.csv".to_string(),
        Reply {
            status: 200,
            content_type: "text/csv",
            body: read("urlhaus-recent.csv"),
        },
    );
    Http::start(routes, 0).await
}

/// The two example feeds, read over loopback HTTP.
fn config(dir: &std::path::Path, base: &str) -> feedstix::config::Config {
    std::fs::create_dir_all(dir.join("mappers")).expect("mkdir");
    std::fs::copy(
        examples().join("mappers/urlhaus.json"),
        dir.join("mappers/urlhaus.json"),
    )
    .expect("copy mapper");
    let text = format!(
        r#"
[[feeds]]
name = "cert-advisories"
kind = "rss"
url = "{base}/cert-advisories.rss"
interval = "1h"
author = "Example CERT"
markings = ["TLP:CLEAR"]
user = "[F] Example CERT"
allow_private_network = true

[[feeds]]
name = "urlhaus-sample"
kind = "csv"
url = "{base}/urlhaus-recent.csv"
interval = "30m"
mapper = "mappers/urlhaus.json"
author = "abuse.ch"
markings = ["TLP:CLEAR"]
allow_private_network = true
"#
    );
    let path = dir.join("feeds.toml");
    std::fs::write(&path, text).expect("write config");
    feedstix::config::load(&path).expect("the test configuration is valid")
}

/// Object ids per feed written by a local `run --once`.
async fn local_ids(
    config: &feedstix::config::Config,
    dir: &std::path::Path,
) -> BTreeMap<String, BTreeSet<String>> {
    let out = dir.join("out");
    let options = RunOptions {
        out: out.clone(),
        state: dir.join("local.state.json"),
        only: Vec::new(),
        retry: feedstix::http::RetryPolicy::default(),
    };
    let runner = LocalRunner::new(config, &options).expect("local runner");
    let summaries = runner
        .run_once(&Shutdown::default())
        .await
        .expect("local run");
    assert!(summaries.iter().all(|s| s.error.is_none()), "{summaries:?}");
    let mut ids = BTreeMap::new();
    for feed in &config.feeds {
        let mut bodies = Vec::new();
        for entry in std::fs::read_dir(out.join(&feed.name)).expect("feed output") {
            bodies.push(std::fs::read(entry.expect("entry").path()).expect("bundle"));
        }
        ids.insert(feed.name.clone(), ids_in(&bodies));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_event_to_worker_queue_matches_a_local_run() {
    let cloud = Cloud::new(feedstix::config::DEFAULT_MAX_MESSAGE_BYTES).await;
    cloud.route_events().await;
    let http = serve_examples().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), &http.base);

    // The feeds table holds the same definitions as the file.
    let feeds = DynamoFeeds::new(cloud.clients.dynamodb.clone(), &cloud.feeds_table);
    for feed in &config.feeds {
        feeds.put(feed).await.expect("store feed");
    }

    // The schedule fires: one job per due feed.
    let dispatcher = DispatcherContext::new(&cloud.clients, &cloud.dispatcher_settings());
    let now = chrono::Utc::now();
    let report = dispatch_payload(&dispatcher, scheduled_event(), now)
        .await
        .expect("dispatch");
    assert_eq!(report.enqueued, vec!["cert-advisories", "urlhaus-sample"]);

    // Lambda's event sources, played by hand until both queues are empty.
    let fetcher = FetcherContext::new(&cloud.clients, &cloud.fetcher_settings());
    let bundler = BundlerContext::new(&cloud.clients, &cloud.bundler_settings(Envelope::None));
    for _round in 0..20 {
        let fetched = cloud
            .deliver(&cloud.fetch_queue, |event| {
                fetch_batch(&fetcher, event, now)
            })
            .await;
        if let Some((_, response)) = &fetched {
            assert!(response.batch_item_failures.is_empty(), "{response:?}");
        }
        let bundled = cloud
            .deliver(&cloud.page_queue, |event| bundle_batch(&bundler, event))
            .await;
        if let Some((_, response)) = &bundled {
            assert!(response.batch_item_failures.is_empty(), "{response:?}");
        }
        if fetched.is_none() && bundled.is_none() {
            break;
        }
    }

    // The worker queue: one bundle per message, with the attributes a consumer routes on.
    let messages = cloud.drain(&cloud.worker_queue).await;
    assert!(!messages.is_empty());
    let mut cloud_bodies: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for message in &messages {
        let feed = message
            .attributes
            .get("feed")
            .expect("feed attribute")
            .clone();
        let kind = message.attributes.get("kind").expect("kind attribute");
        assert_eq!(
            kind,
            if feed == "cert-advisories" {
                "rss"
            } else {
                "csv"
            }
        );
        assert_eq!(
            message.attributes.get("epoch").map(String::as_str),
            Some("0")
        );
        let sequence = message
            .attributes
            .get("sequence")
            .expect("sequence attribute");
        assert_eq!(sequence.split('.').count(), 3, "{sequence}");
        let user = message.attributes.get("user").map(String::as_str);
        let expected_user = (feed == "cert-advisories").then_some("[F] Example CERT");
        assert_eq!(user, expected_user);
        assert!(message.raw_len <= cloud.max_message_bytes);
        cloud_bodies
            .entry(feed)
            .or_default()
            .push(message.body.clone());
    }
    let cloud_ids: BTreeMap<String, BTreeSet<String>> = cloud_bodies
        .iter()
        .map(|(feed, bodies)| (feed.clone(), ids_in(bodies)))
        .collect();

    // The same feeds run locally give the same objects.
    let local = local_ids(&config, dir.path()).await;
    assert_eq!(cloud_ids, local);
    assert!(cloud_ids["cert-advisories"]
        .iter()
        .any(|id| id.starts_with("report--")));
    assert!(cloud_ids["urlhaus-sample"]
        .iter()
        .any(|id| id.starts_with("indicator--") || id.starts_with("url--")));

    // Cursors committed and leases released: the next tick finds nothing due.
    let states = fetcher.states();
    for feed in ["cert-advisories", "urlhaus-sample"] {
        let state = states.load(feed).await.expect("load").expect("state");
        assert_eq!(state.version, 1, "{feed}");
        assert!(state.status.last_success.is_some(), "{feed}");
    }
    let again = dispatch_payload(
        &dispatcher,
        scheduled_event(),
        now + chrono::Duration::minutes(5),
    )
    .await
    .expect("second dispatch");
    assert!(again.enqueued.is_empty(), "{again:?}");
    assert_eq!(again.not_due.len(), 2);

    // One status event per feed run, routed by a rule on the default bus.
    let events = cloud.drain(&cloud.events_queue).await;
    let mut completed: Vec<String> = events
        .iter()
        .map(|m| serde_json::from_slice::<serde_json::Value>(&m.body).expect("event json"))
        .filter(|e| e["detail-type"] == "feedstix.run.completed" && e["source"] == "feedstix")
        .map(|e| e["detail"]["feed"].as_str().unwrap_or_default().to_string())
        .collect();
    completed.sort();
    assert_eq!(completed, vec!["cert-advisories", "urlhaus-sample"]);
}
