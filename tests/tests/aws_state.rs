//! The state table on an emulator: conditional commits (two fetchers racing on one feed,
//! exactly one commits), leases, the stale-message counter outside the versioned state,
//! reset, and a state larger than a DynamoDB item kept in the bucket.

mod aws_support;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_support::{Cloud, Http, Reply};
use feedstix::aws::claim::ClaimStore;
use feedstix::aws::dynamo::{DynamoFeeds, DynamoStates};
use feedstix::aws::sqs::{Queue, SqsJobQueue, SqsPageQueue};
use feedstix::cursor::{FeedState, RunState};
use feedstix::feed::Feed;
use feedstix::http::{open_source, RetryPolicy};
use feedstix::kinds::FetchError;
use feedstix::pipeline::fetcher::{self, Fetched, FetcherDeps, SourceFactory};
use feedstix::ports::{Commit, EnvSecrets, FetchJob, Source, StateStore};

fn states(cloud: &Cloud) -> DynamoStates {
    DynamoStates::new(
        cloud.clients.dynamodb.clone(),
        &cloud.state_table,
        ClaimStore::new(cloud.clients.s3.clone(), &cloud.bucket),
    )
}

// moto's server handles requests on several threads without a lock around DynamoDB's
// conditional checks, so two conditional writes landing in the same instant can both pass
// there (DynamoDB itself evaluates a condition and its write atomically). The tests
// therefore let both writers read the same version at the same time, and only order the
// writes themselves.
#[tokio::test]
async fn two_writers_of_one_version_let_exactly_one_win() {
    let cloud = Cloud::new(262_144).await;
    let store = states(&cloud);
    // Both writers read the feed before either writes.
    let read_a = store.load("raced").await.expect("load").unwrap_or_default();
    let read_b = store.load("raced").await.expect("load").unwrap_or_default();
    assert_eq!((read_a.version, read_b.version), (0, 0));
    let a = FeedState {
        pages: 10,
        ..read_a
    };
    let b = FeedState {
        pages: 20,
        ..read_b
    };
    assert_eq!(
        store.commit("raced", 0, &a).await.expect("commit"),
        Commit::Committed
    );
    assert_eq!(
        store.commit("raced", 0, &b).await.expect("commit"),
        Commit::Conflict
    );
    let stored = store.load("raced").await.expect("load").expect("state");
    assert_eq!((stored.version, stored.pages), (1, 10));

    // The loser reads again and commits on the new version.
    assert_eq!(
        store.commit("raced", 1, &b).await.expect("commit"),
        Commit::Committed
    );
    assert_eq!(
        store
            .load("raced")
            .await
            .expect("load")
            .expect("state")
            .version,
        2
    );
}

/// Sources over HTTP as in a deployment (no `file:`), with one attempt per request.
struct HttpSources;

#[async_trait]
impl SourceFactory for HttpSources {
    async fn open(&self, feed: &Feed) -> Result<Box<dyn Source>, FetchError> {
        let retry = RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        };
        Ok(open_source(
            &feed.config.url,
            &feed.config.http,
            &EnvSecrets,
            false,
            retry,
        )
        .await?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_fetchers_racing_on_one_feed_commit_once() {
    let cloud = Cloud::new(262_144).await;
    let rss =
        std::fs::read(aws_support::examples().join("feeds/cert-advisories.rss")).expect("rss");
    let mut routes = HashMap::new();
    routes.insert(
        "/feed.rss".to_string(),
        Reply {
            status: 200,
            content_type: "application/rss+xml",
            body: rss,
        },
    );
    // Both requests are held until both have arrived, so both fetchers have read version
    // 0 before either can commit; the replies then go out a moment apart, which orders
    // the two commits (see the note above on moto's conditional writes).
    let http = Http::start(routes, 2).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("feeds.toml");
    std::fs::write(
        &path,
        format!(
            "[[feeds]]\nname = \"raced\"\nkind = \"rss\"\nurl = \"{}/feed.rss\"\n\
             allow_private_network = true\n",
            http.base
        ),
    )
    .expect("write config");
    let config = feedstix::config::load(&path).expect("config");

    let claims = ClaimStore::new(cloud.clients.s3.clone(), &cloud.bucket);
    let feeds = DynamoFeeds::new(cloud.clients.dynamodb.clone(), &cloud.feeds_table);
    feeds.put(&config.feeds[0]).await.expect("store feed");
    let store = states(&cloud);
    let queue = |url: &str| Queue::new(cloud.clients.sqs.clone(), url, 262_144, claims.clone());
    let jobs = SqsJobQueue::new(queue(&cloud.fetch_queue));
    let deps = FetcherDeps {
        feeds: &feeds,
        states: &store,
        jobs: &jobs,
        pages: Arc::new(SqsPageQueue::new(queue(&cloud.page_queue))),
        max_part_bytes: 262_144,
    };
    let job = FetchJob {
        feed: "raced".into(),
        epoch: 0,
        page: 0,
        first: true,
    };
    let now = chrono::Utc::now();
    let (a, b) = tokio::join!(
        fetcher::handle(&job, &deps, &HttpSources, now),
        fetcher::handle(&job, &deps, &HttpSources, now)
    );
    let outcomes = [a.expect("first fetcher"), b.expect("second fetcher")];
    assert_eq!(http.requests.load(std::sync::atomic::Ordering::SeqCst), 2);
    let committed = outcomes
        .iter()
        .filter(|o| matches!(o, Fetched::Committed { .. }))
        .count();
    let lost = outcomes.iter().filter(|o| **o == Fetched::LostRace).count();
    assert_eq!((committed, lost), (1, 1), "{outcomes:?}");
    let state = store.load("raced").await.expect("load").expect("state");
    assert_eq!((state.version, state.pages), (1, 1));
}

#[tokio::test]
async fn leases_are_exclusive_until_released_or_expired() {
    let cloud = Cloud::new(262_144).await;
    let store = states(&cloud);
    let now = chrono::Utc::now();
    let until = now + chrono::Duration::minutes(20);
    assert!(store.try_lease("leased", now, until).await.expect("lease"));
    assert!(!store.try_lease("leased", now, until).await.expect("lease"));
    // Past its end the lease can be taken again, as after a crashed fetcher.
    let later = until + chrono::Duration::seconds(1);
    assert!(store
        .try_lease("leased", later, later + chrono::Duration::minutes(20))
        .await
        .expect("lease"));
    store.release_lease("leased").await.expect("release");
    assert!(store.try_lease("leased", now, until).await.expect("lease"));
    // A lease alone is not a state: the first commit still succeeds on version 0.
    assert_eq!(
        store
            .commit("leased", 0, &FeedState::default())
            .await
            .expect("commit"),
        Commit::Committed
    );
}

#[tokio::test]
async fn dropped_counts_stop_and_reset_never_make_a_commit_lose_or_win_wrongly() {
    let cloud = Cloud::new(262_144).await;
    let store = states(&cloud);
    store.count_dropped("f", 2).await.expect("count");
    assert_eq!(
        store
            .commit("f", 0, &FeedState::default())
            .await
            .expect("commit"),
        Commit::Committed
    );
    store.count_dropped("f", 3).await.expect("count");
    let state = store.load("f").await.expect("load").expect("state");
    assert_eq!((state.version, state.status.dropped_stale), (1, 5));
    // Counting did not change the version: this commit still wins.
    assert_eq!(
        store.commit("f", 1, &state).await.expect("commit"),
        Commit::Committed
    );

    // A stop is not undone by a fetcher that read the state before it.
    let before = store.load("f").await.expect("load").expect("state");
    store
        .set_run_state("f", RunState::Stopped)
        .await
        .expect("stop");
    assert_eq!(
        store
            .commit("f", before.version, &before)
            .await
            .expect("commit"),
        Commit::Committed
    );
    let after = store.load("f").await.expect("load").expect("state");
    assert_eq!(after.run_state, RunState::Stopped);

    // A reset bumps the epoch; a fetcher of the old epoch loses.
    let reset = store.reset("f").await.expect("reset");
    assert_eq!(reset.epoch, 1);
    assert_eq!(
        store
            .commit("f", after.version, &after)
            .await
            .expect("commit"),
        Commit::Conflict
    );
    let current = store.load("f").await.expect("load").expect("state");
    assert_eq!((current.epoch, current.version), (1, reset.version));
}

#[tokio::test]
async fn a_state_larger_than_an_item_is_kept_in_the_bucket() {
    let cloud = Cloud::new(262_144).await;
    let store = states(&cloud);
    let mut big = FeedState::default();
    // Over DynamoDB's 400 KB item limit, as a CSV cursor with many fingerprints can be.
    big.status.last_error = Some("x".repeat(600 * 1024));
    assert_eq!(
        store.commit("big", 0, &big).await.expect("commit"),
        Commit::Committed
    );
    let loaded = store.load("big").await.expect("load").expect("state");
    assert_eq!(loaded.status.last_error, big.status.last_error);
    assert_eq!(loaded.version, 1);

    let listed = |cloud: &Cloud| {
        let s3 = cloud.clients.s3.clone();
        let bucket = cloud.bucket.clone();
        async move {
            s3.list_objects_v2()
                .bucket(bucket)
                .prefix("state/big/")
                .send()
                .await
                .expect("list")
                .key_count
                .unwrap_or(0)
        }
    };
    assert_eq!(listed(&cloud).await, 1);

    // Back under the limit, the state returns to the item and the object is removed.
    let small = FeedState::default();
    assert_eq!(
        store.commit("big", 1, &small).await.expect("commit"),
        Commit::Committed
    );
    assert_eq!(
        store
            .load("big")
            .await
            .expect("load")
            .expect("state")
            .status
            .last_error,
        None
    );
    assert_eq!(listed(&cloud).await, 0);
}
