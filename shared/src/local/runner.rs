//! The local runner: dispatcher, fetcher and bundler in one process.
//!
//! `run --once` dispatches every running feed and drains each feed's pages until its
//! source has no more; without `--once` the runner wakes at the next due time of any feed
//! and dispatches those that are due. Feeds run in parallel, pages of one feed in order.
//! A live-stream feed that caught up without error is due again at once in a continuous
//! run, so it follows its remote; each of its pages waits for the remote's next heartbeat,
//! so an idle remote is not polled in a busy loop.
//! A shutdown request lets every page in flight finish and commit, then stops.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::Notify;

use super::queues::{DirectPageQueue, LocalJobQueue};
use super::sink::DirSink;
use super::state::{ConfigFeeds, StateFile};
use crate::config::{Config, FeedConfig, Kind};
use crate::cursor::{Cursor, FeedState};
use crate::feed::Feed;
use crate::http::{open_source, RetryPolicy};
use crate::kinds::{self, FetchError, ObjectOut};
use crate::pipeline::dispatcher::{self, next_due};
use crate::pipeline::fetcher::{self, Fetched, FetcherDeps, SourceFactory};
use crate::ports::{EnvSecrets, FeedStore, PortError, Source, StateStore};
use crate::stix::StixObject;

/// Feeds fetched at the same time. Two cores and I/O-bound fetches: a few in parallel keep
/// the machine busy without opening dozens of connections at once.
const PARALLEL_FEEDS: usize = 4;

/// A shutdown request shared by the runner and the signal handler.
#[derive(Clone, Default)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl Shutdown {
    /// Asks the runner to stop after the pages in flight.
    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    async fn wait(&self, timeout: Duration) {
        if self.requested() {
            return;
        }
        let _ = tokio::time::timeout(timeout, self.notify.notified()).await;
    }
}

/// Where the runner reads and writes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The output directory.
    pub out: PathBuf,
    /// The state file.
    pub state: PathBuf,
    /// Only these feeds (all when empty).
    pub only: Vec<String>,
    /// Retry policy of source requests.
    pub retry: RetryPolicy,
}

/// One feed's outcome of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedSummary {
    /// The feed.
    pub feed: String,
    /// Pages committed.
    pub pages: u64,
    /// Objects fetched.
    pub objects: u64,
    /// Bundles written.
    pub bundles: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Items or rows skipped.
    pub skipped: u64,
    /// The error that stopped the feed, if any.
    pub error: Option<String>,
    /// Why the feed was not fetched, if it was not (stopped, in flight, not due).
    pub note: Option<String>,
}

/// The local runner.
pub struct LocalRunner {
    feeds: Vec<FeedConfig>,
    feed_store: Arc<ConfigFeeds>,
    following: Following,
    states: Arc<StateFile>,
    sink: Arc<DirSink>,
    jobs: Arc<LocalJobQueue>,
    pages: Arc<DirectPageQueue>,
    retry: RetryPolicy,
}

/// The feeds as a continuous run dispatches them: a stream feed whose last page went well
/// is due at once (see the module docs); one that failed waits its interval like any other
/// feed, so a wrong token is not retried every second.
struct Following {
    feeds: Arc<ConfigFeeds>,
    states: Arc<StateFile>,
}

fn follows_now(feed: &FeedConfig, state: &FeedState) -> bool {
    feed.kind() == Kind::Stream && state.status.consecutive_failures == 0
}

#[async_trait]
impl FeedStore for Following {
    async fn list(&self) -> Result<Vec<FeedConfig>, PortError> {
        let mut feeds = self.feeds.list().await?;
        for feed in &mut feeds {
            let state = self.states.load(&feed.name).await?.unwrap_or_default();
            if follows_now(feed, &state) {
                feed.interval_secs = 0;
            }
        }
        Ok(feeds)
    }

    async fn get(&self, name: &str) -> Result<Option<FeedConfig>, PortError> {
        self.feeds.get(name).await
    }
}

struct LocalSources {
    retry: RetryPolicy,
}

#[async_trait]
impl SourceFactory for LocalSources {
    async fn open(&self, feed: &Feed) -> Result<Box<dyn Source>, FetchError> {
        Ok(open_source(
            &feed.config.url,
            &feed.config.http,
            &EnvSecrets,
            true,
            self.retry,
        )
        .await?)
    }
}

impl LocalRunner {
    /// Opens the state file (taking its lock) and the output directory.
    pub fn new(
        config: &Config,
        options: &RunOptions,
    ) -> Result<LocalRunner, super::StateFileError> {
        let feeds: Vec<FeedConfig> = config
            .feeds
            .iter()
            .filter(|f| options.only.is_empty() || options.only.contains(&f.name))
            .cloned()
            .collect();
        let filtered = Config {
            feeds: feeds.clone(),
            ..config.clone()
        };
        let states = Arc::new(StateFile::open(&options.state)?);
        let sink = Arc::new(DirSink::new(&options.out));
        let pages = Arc::new(DirectPageQueue::new(
            states.clone(),
            sink.clone(),
            config.settings.max_message_bytes,
        ));
        let feed_store = Arc::new(ConfigFeeds::new(&filtered));
        Ok(LocalRunner {
            feeds,
            following: Following {
                feeds: feed_store.clone(),
                states: states.clone(),
            },
            feed_store,
            states,
            sink,
            jobs: Arc::new(LocalJobQueue::default()),
            pages,
            retry: options.retry,
        })
    }

    /// Fetches every running feed until its source has no more pages.
    pub async fn run_once(&self, shutdown: &Shutdown) -> Result<Vec<FeedSummary>, PortError> {
        self.round(true, shutdown).await
    }

    /// Runs until `shutdown`, fetching each feed on its own interval. `on_round` sees the
    /// summaries of every round that fetched something.
    pub async fn run_forever(
        &self,
        shutdown: &Shutdown,
        mut on_round: impl FnMut(&[FeedSummary]),
    ) -> Result<(), PortError> {
        while !shutdown.requested() {
            let summaries = self.round(false, shutdown).await?;
            let fetched: Vec<FeedSummary> =
                summaries.into_iter().filter(|s| s.note.is_none()).collect();
            if !fetched.is_empty() {
                on_round(&fetched);
            }
            let wait = self.until_next_due().await;
            tracing::debug!(seconds = wait.as_secs(), "waiting for the next due feed");
            shutdown.wait(wait).await;
        }
        Ok(())
    }

    async fn until_next_due(&self) -> Duration {
        let now = Utc::now();
        let mut soonest = Duration::from_secs(3_600);
        for feed in &self.feeds {
            let state = self
                .states
                .load(&feed.name)
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            let wait = match next_due(&state, feed.interval()) {
                _ if follows_now(feed, &state) => Duration::ZERO,
                Some(at) => (at - now).to_std().unwrap_or(Duration::ZERO),
                None => Duration::ZERO,
            };
            soonest = soonest.min(wait);
        }
        soonest.max(Duration::from_secs(1))
    }

    async fn round(&self, force: bool, shutdown: &Shutdown) -> Result<Vec<FeedSummary>, PortError> {
        let feeds: &dyn FeedStore = if force {
            self.feed_store.as_ref()
        } else {
            &self.following
        };
        let dispatched = dispatcher::dispatch(
            feeds,
            self.states.as_ref(),
            self.jobs.as_ref(),
            Utc::now(),
            force,
        )
        .await?;
        let mut summaries: Vec<FeedSummary> = Vec::new();
        for (list, note) in [
            (&dispatched.stopped, "stopped"),
            (&dispatched.in_flight, "in flight"),
            (&dispatched.not_due, "not due"),
        ] {
            summaries.extend(list.iter().map(|f| FeedSummary {
                feed: f.clone(),
                note: Some(note.into()),
                ..Default::default()
            }));
        }

        let semaphore = Arc::new(tokio::sync::Semaphore::new(PARALLEL_FEEDS));
        let mut tasks = tokio::task::JoinSet::new();
        for feed in dispatched.enqueued {
            let permit = semaphore.clone();
            let runner = self.worker();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let _permit = permit.acquire_owned().await;
                runner.drain(feed, &shutdown).await
            });
        }
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(summary) => summaries.push(summary),
                Err(e) => return Err(format!("a feed task failed: {e}").into()),
            }
        }
        let order: Vec<&String> = self.feeds.iter().map(|f| &f.name).collect();
        summaries.sort_by_key(|s| order.iter().position(|n| **n == s.feed));
        Ok(summaries)
    }

    fn worker(&self) -> Worker {
        Worker {
            feed_store: self.feed_store.clone(),
            states: self.states.clone(),
            jobs: self.jobs.clone(),
            pages: self.pages.clone(),
            sink: self.sink.clone(),
            retry: self.retry,
        }
    }
}

/// What one feed's task needs; cheap clones of the runner's adapters.
struct Worker {
    feed_store: Arc<ConfigFeeds>,
    states: Arc<StateFile>,
    jobs: Arc<LocalJobQueue>,
    pages: Arc<DirectPageQueue>,
    sink: Arc<DirSink>,
    retry: RetryPolicy,
}

impl Worker {
    async fn drain(&self, feed: String, shutdown: &Shutdown) -> FeedSummary {
        let before = self.pages.counters(&feed);
        let written_before = self.sink.written(&feed);
        let mut summary = FeedSummary {
            feed: feed.clone(),
            ..Default::default()
        };
        let sources = LocalSources { retry: self.retry };
        let deps = FetcherDeps {
            feeds: self.feed_store.as_ref(),
            states: self.states.as_ref(),
            jobs: self.jobs.as_ref(),
            pages: self.pages.clone(),
            max_part_bytes: crate::config::DEFAULT_MAX_MESSAGE_BYTES,
        };
        while let Some(job) = self.jobs.pop(&feed) {
            match fetcher::handle(&job, &deps, &sources, Utc::now()).await {
                Ok(Fetched::Committed {
                    objects, skipped, ..
                }) => {
                    summary.pages += 1;
                    summary.objects += objects;
                    summary.skipped += skipped.len() as u64;
                }
                Ok(Fetched::Dropped(why)) => {
                    tracing::info!(feed = %feed, reason = %why, "job dropped")
                }
                Ok(Fetched::LostRace) => {
                    summary.error =
                        Some("another writer committed this feed's cursor first".into());
                    break;
                }
                Err(e) => {
                    tracing::error!(feed = %feed, error = %e, "page failed; cursor unchanged");
                    summary.error = Some(e.to_string());
                    break;
                }
            }
            if shutdown.requested() {
                // The page in flight has committed; the lease goes back so the next run
                // resumes right where this one stopped.
                let _ = self.states.release_lease(&feed).await;
                break;
            }
        }
        // Jobs left behind by a shutdown are dropped: the committed cursor is the resume
        // point, and the next run dispatches the feed afresh.
        while self.jobs.pop(&feed).is_some() {}
        let after = self.pages.counters(&feed);
        let written_after = self.sink.written(&feed);
        summary.bundles = after.bundles - before.bundles;
        summary.bytes = written_after.1 - written_before.1;
        summary
    }
}

/// Collects the first objects of a page for `verify`, ignoring the rest.
struct Preview {
    limit: usize,
    objects: Vec<StixObject>,
    total: u64,
}

#[async_trait]
impl ObjectOut for Preview {
    async fn push(&mut self, object: StixObject) -> Result<(), PortError> {
        self.total += 1;
        if self.objects.len() < self.limit {
            self.objects.push(object);
        }
        Ok(())
    }
}

/// Fetches the first page of a feed from its start and returns a bundle of the first
/// `limit` entities it would produce, plus the page's total object count. Changes no state.
pub async fn verify(
    config: &FeedConfig,
    limit: usize,
    retry: RetryPolicy,
) -> Result<(serde_json::Value, u64, Vec<String>), String> {
    let feed = Feed::new(config.clone())?;
    let source = LocalSources { retry }
        .open(&feed)
        .await
        .map_err(|e| format!("feed {}: {e}", feed.name()))?;
    let mut preview = Preview {
        limit,
        objects: Vec::new(),
        total: 0,
    };
    let end = match feed.config.kind() {
        // A stream never ends: connect, wait for `connected`, show what arrives within a
        // few seconds.
        Kind::Stream => {
            let limits = kinds::stream::PageLimits::preview(limit);
            let (now, cursor) = (Utc::now(), Cursor::Start);
            kinds::stream::fetch_page_with(
                &feed,
                &cursor,
                source.as_ref(),
                now,
                &mut preview,
                &limits,
            )
            .await
        }
        _ => {
            kinds::fetch_page(
                &feed,
                &Cursor::Start,
                source.as_ref(),
                Utc::now(),
                &mut preview,
            )
            .await
        }
    }
    .map_err(|e| format!("feed {}: {e}", feed.name()))?;
    let bundles = crate::stix::bundle::compose(
        preview.objects,
        &feed.provenance.objects(),
        usize::MAX,
        &format!("verify/{}", feed.name()),
    );
    let bundle = match bundles.into_iter().next() {
        Some(b) => serde_json::from_slice(&b.json).map_err(|e| e.to_string())?,
        None => {
            serde_json::json!({"type": "bundle", "id": format!("bundle--{}", uuid::Uuid::new_v4()), "objects": []})
        }
    };
    Ok((bundle, preview.total, end.skipped))
}
