//! The delivery contract of the fetcher, checked with fakes of the ports: a page reaches
//! the page queue before its cursor moves, a failure anywhere before the commit leaves the
//! cursor where it was, stale and duplicate jobs are dropped, and of two racing fetchers
//! exactly one commits.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{TimeZone, Utc};

use super::fetcher::{self, Fetched, FetcherDeps, SourceFactory};
use crate::config::{FeedConfig, HttpOptions, KindConfig};
use crate::cursor::{Cursor, FeedState};
use crate::feed::Feed;
use crate::http::HttpError;
use crate::kinds::FetchError;
use crate::local::{ConfigFeeds, LocalJobQueue, StateFile};
use crate::ports::{
    Body, Commit, FetchJob, PagePart, PageQueue, PortError, Source, SourceRequest, SourceResponse,
    StateStore,
};

fn rss(items: &[(&str, &str)]) -> Vec<u8> {
    let mut doc =
        String::from(r#"<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>"#);
    for (guid, date) in items {
        doc.push_str(&format!(
            "<item><title>Item {guid} about CVE-2024-{guid}</title><guid>{guid}</guid><pubDate>{date}</pubDate></item>"
        ));
    }
    doc.push_str("</channel></rss>");
    doc.into_bytes()
}

fn feed() -> FeedConfig {
    FeedConfig {
        name: "f".into(),
        url: "https://feed.example.test/rss".into(),
        interval_secs: 3_600,
        import_from: None,
        author: Some("Example".into()),
        markings: Vec::new(),
        user: None,
        http: HttpOptions::default(),
        pause_after_failures: 10,
        kind: KindConfig::Rss {
            report_types: vec!["threat-report".into()],
        },
    }
}

/// A source that serves the current body and can wait at a barrier first.
struct FakeSource {
    body: Arc<Mutex<Vec<u8>>>,
    barrier: Option<Arc<tokio::sync::Barrier>>,
}

#[async_trait]
impl Source for FakeSource {
    async fn get(&self, request: SourceRequest) -> Result<SourceResponse, HttpError> {
        if let Some(b) = &self.barrier {
            b.wait().await;
        }
        let body = self
            .body
            .lock()
            .map_err(|_| HttpError::Setup("poisoned".into()))?
            .clone();
        Ok(SourceResponse {
            status: 200,
            headers: Vec::new(),
            body: Body::Memory(body),
            final_url: request.url,
        })
    }
}

struct Sources {
    body: Arc<Mutex<Vec<u8>>>,
    barrier: Option<Arc<tokio::sync::Barrier>>,
}

#[async_trait]
impl SourceFactory for Sources {
    async fn open(&self, _feed: &Feed) -> Result<Box<dyn Source>, FetchError> {
        Ok(Box::new(FakeSource {
            body: self.body.clone(),
            barrier: self.barrier.clone(),
        }))
    }
}

/// A page queue that records parts and can refuse the n-th one.
#[derive(Default)]
struct Pages {
    parts: Mutex<Vec<PagePart>>,
    fail_at: Mutex<Option<usize>>,
}

impl Pages {
    fn report_ids(&self) -> BTreeSet<String> {
        self.parts
            .lock()
            .unwrap()
            .iter()
            .flat_map(|p| p.objects.iter())
            .filter(|o| o["type"] == "report")
            .map(|o| o["id"].as_str().unwrap().to_string())
            .collect()
    }
}

#[async_trait]
impl PageQueue for Pages {
    async fn send(&self, part: PagePart) -> Result<(), PortError> {
        let mut parts = self.parts.lock().unwrap();
        if *self.fail_at.lock().unwrap() == Some(parts.len()) {
            return Err("page queue unavailable".into());
        }
        parts.push(part);
        Ok(())
    }
}

/// A state store whose commits can be made to fail, as a crash right after the hand-off
/// would leave things.
struct CrashingStore {
    inner: StateFile,
    fail_commits: Mutex<bool>,
}

#[async_trait]
impl StateStore for CrashingStore {
    async fn load(&self, feed: &str) -> Result<Option<FeedState>, PortError> {
        self.inner.load(feed).await
    }
    async fn commit(&self, feed: &str, v: u64, s: &FeedState) -> Result<Commit, PortError> {
        if *self.fail_commits.lock().unwrap() {
            return Err("state store timed out".into());
        }
        self.inner.commit(feed, v, s).await
    }
    async fn try_lease(
        &self,
        f: &str,
        n: chrono::DateTime<Utc>,
        u: chrono::DateTime<Utc>,
    ) -> Result<bool, PortError> {
        self.inner.try_lease(f, n, u).await
    }
    async fn release_lease(&self, f: &str) -> Result<(), PortError> {
        self.inner.release_lease(f).await
    }
    async fn count_dropped(&self, f: &str, n: u64) -> Result<(), PortError> {
        self.inner.count_dropped(f, n).await
    }
    async fn reset(&self, f: &str) -> Result<FeedState, PortError> {
        self.inner.reset(f).await
    }
    async fn set_run_state(&self, f: &str, r: crate::cursor::RunState) -> Result<(), PortError> {
        self.inner.set_run_state(f, r).await
    }
}

struct World {
    _dir: tempfile::TempDir,
    feeds: ConfigFeeds,
    states: CrashingStore,
    jobs: LocalJobQueue,
    pages: Arc<Pages>,
    body: Arc<Mutex<Vec<u8>>>,
}

impl World {
    fn new(body: Vec<u8>) -> World {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config {
            path: dir.path().join("c.toml"),
            settings: Default::default(),
            feeds: vec![feed()],
        };
        World {
            states: CrashingStore {
                inner: StateFile::open(&dir.path().join("s.json")).unwrap(),
                fail_commits: Mutex::new(false),
            },
            _dir: dir,
            feeds: ConfigFeeds::new(&config),
            jobs: LocalJobQueue::default(),
            pages: Arc::new(Pages::default()),
            body: Arc::new(Mutex::new(body)),
        }
    }

    fn deps(&self) -> FetcherDeps<'_> {
        FetcherDeps {
            feeds: &self.feeds,
            states: &self.states,
            jobs: &self.jobs,
            pages: self.pages.clone(),
            max_part_bytes: 4 * 1024,
        }
    }

    async fn fetch(&self, page: u64) -> Result<Fetched, fetcher::FetcherError> {
        let state = self.states.load("f").await.unwrap().unwrap_or_default();
        let job = FetchJob {
            feed: "f".into(),
            epoch: state.epoch,
            page,
            first: true,
        };
        let sources = Sources {
            body: self.body.clone(),
            barrier: None,
        };
        fetcher::handle(
            &job,
            &self.deps(),
            &sources,
            Utc.with_ymd_and_hms(2024, 6, 1, 0, 0, 0).unwrap(),
        )
        .await
    }

    async fn state(&self) -> FeedState {
        self.states.load("f").await.unwrap().unwrap_or_default()
    }
}

const D1: &str = "Mon, 01 Jan 2024 10:00:00 GMT";
const D2: &str = "Tue, 02 Jan 2024 10:00:00 GMT";

#[tokio::test]
async fn a_failed_hand_off_keeps_the_cursor_and_the_next_fetch_resends_everything() {
    let items: Vec<(String, &str)> = (1000..1040).map(|i| (i.to_string(), D1)).collect();
    let items: Vec<(&str, &str)> = items.iter().map(|(g, d)| (g.as_str(), *d)).collect();
    let w = World::new(rss(&items));
    *w.pages.fail_at.lock().unwrap() = Some(2);

    let err = w.fetch(0).await.unwrap_err().to_string();
    assert!(
        err.contains("feed f") && err.contains("page queue unavailable"),
        "{err}"
    );
    let s = w.state().await;
    assert_eq!((s.cursor.clone(), s.pages), (Cursor::Start, 0));
    assert_eq!(s.status.consecutive_failures, 1);
    assert!(
        w.pages.parts.lock().unwrap().len() == 2,
        "parts before the failure were handed on"
    );

    *w.pages.fail_at.lock().unwrap() = None;
    let ok = w.fetch(0).await.unwrap();
    assert!(
        matches!(ok, Fetched::Committed { objects: 80, .. }),
        "{ok:?}"
    );
    assert_eq!(
        w.pages.report_ids().len(),
        40,
        "every item reached the page queue"
    );
    let s = w.state().await;
    assert_eq!(
        (
            s.pages,
            s.status.consecutive_failures,
            s.status.last_error.clone()
        ),
        (1, 0, None)
    );
}

#[tokio::test]
async fn a_crash_between_hand_off_and_commit_only_refetches_that_page() {
    let w = World::new(rss(&[("1", D1), ("2", D1)]));
    *w.states.fail_commits.lock().unwrap() = true;
    assert!(w.fetch(0).await.is_err());
    let first: BTreeSet<String> = w.pages.report_ids();
    assert_eq!(first.len(), 2);
    assert_eq!(
        w.state().await.cursor,
        Cursor::Start,
        "the cursor must not move"
    );

    // The store is back: the same page is fetched again and yields the same ids.
    *w.states.fail_commits.lock().unwrap() = false;
    w.pages.parts.lock().unwrap().clear();
    w.fetch(0).await.unwrap();
    assert_eq!(w.pages.report_ids(), first);

    // New items after the commit: only they come out next time.
    *w.body.lock().unwrap() = rss(&[("1", D1), ("2", D1), ("3", D2)]);
    w.pages.parts.lock().unwrap().clear();
    w.fetch(1).await.unwrap();
    assert_eq!(w.pages.report_ids().len(), 1);
}

#[tokio::test]
async fn stale_and_duplicate_jobs_are_dropped_without_fetching() {
    let w = World::new(rss(&[("1", D1)]));
    w.fetch(0).await.unwrap();
    let parts = w.pages.parts.lock().unwrap().len();

    // A redelivered job of a page that was already committed.
    let again = w.fetch(0).await.unwrap();
    assert!(
        matches!(again, Fetched::Dropped(ref why) if why.contains("already committed")),
        "{again:?}"
    );

    // A job of another epoch than the feed's (made before a reset).
    let stale = FetchJob {
        feed: "f".into(),
        epoch: 7,
        page: 2,
        first: true,
    };
    let sources = Sources {
        body: w.body.clone(),
        barrier: None,
    };
    let got = fetcher::handle(&stale, &w.deps(), &sources, Utc::now())
        .await
        .unwrap();
    assert!(
        matches!(got, Fetched::Dropped(ref why) if why.contains("epoch 7")),
        "{got:?}"
    );
    assert_eq!(w.state().await.status.dropped_stale, 1);
    assert_eq!(
        w.pages.parts.lock().unwrap().len(),
        parts,
        "nothing was fetched or handed on"
    );
}

#[tokio::test]
async fn of_two_racing_fetchers_exactly_one_commits() {
    let w = World::new(rss(&[("1", D1), ("2", D2)]));
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let job = FetchJob {
        feed: "f".into(),
        epoch: 0,
        page: 0,
        first: true,
    };
    let a = Sources {
        body: w.body.clone(),
        barrier: Some(barrier.clone()),
    };
    let b = Sources {
        body: w.body.clone(),
        barrier: Some(barrier),
    };
    let deps = w.deps();
    let now = Utc::now();
    let (ra, rb) = tokio::join!(
        fetcher::handle(&job, &deps, &a, now),
        fetcher::handle(&job, &deps, &b, now)
    );
    let outcomes = [ra.unwrap(), rb.unwrap()];
    let committed = outcomes
        .iter()
        .filter(|o| matches!(o, Fetched::Committed { .. }))
        .count();
    let lost = outcomes
        .iter()
        .filter(|o| matches!(o, Fetched::LostRace))
        .count();
    assert_eq!((committed, lost), (1, 1), "{outcomes:?}");
    let s = w.state().await;
    assert_eq!((s.pages, s.version), (1, 1), "one commit, never a fork");
}

#[tokio::test]
async fn a_feed_that_keeps_failing_is_paused_until_started_again() {
    let w = World::new(b"<html><body>maintenance</body></html>".to_vec());
    for attempt in 1..=crate::config::DEFAULT_PAUSE_AFTER_FAILURES {
        assert!(w.fetch(0).await.is_err());
        let s = w.state().await;
        assert_eq!(s.status.consecutive_failures, attempt);
        let expected = if attempt < crate::config::DEFAULT_PAUSE_AFTER_FAILURES {
            crate::cursor::RunState::Running
        } else {
            crate::cursor::RunState::Paused
        };
        assert_eq!(s.run_state, expected, "after {attempt} failure(s)");
    }
    // A paused feed is neither dispatched nor fetched.
    let report = super::dispatcher::dispatch(&w.feeds, &w.states, &w.jobs, Utc::now(), true)
        .await
        .unwrap();
    assert_eq!(report.stopped, vec!["f".to_string()]);
    assert!(
        matches!(w.fetch(0).await.unwrap(), Fetched::Dropped(ref why) if why == "feed is paused")
    );

    // Started again with the source fixed, it resumes from where it was.
    w.states
        .set_run_state("f", crate::cursor::RunState::Running)
        .await
        .unwrap();
    *w.body.lock().unwrap() = rss(&[("1", D1)]);
    let resumed = w.fetch(0).await.unwrap();
    assert!(matches!(resumed, Fetched::Committed { .. }), "{resumed:?}");
    assert_eq!(w.pages.report_ids().len(), 1);
    assert_eq!(w.state().await.status.consecutive_failures, 0);
}
