//! The fetcher: one job is one page of one feed.
//!
//! Order of work, which is the delivery contract: fetch and decode the page while handing
//! it to the page queue in parts; only then commit the new cursor with a conditional write;
//! only then enqueue the next page's job. A failure anywhere before the commit leaves the
//! cursor where it was.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::cursor::{FeedState, RunState};
use crate::feed::Feed;
use crate::kinds::{self, FetchError, ObjectOut, PageEnd};
use crate::ports::{
    Commit, FeedStore, FetchJob, JobQueue, PagePart, PageQueue, PortError, Source, StateStore,
};
use crate::stix::{json, StixObject};

/// What a fetch job came to, when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    /// The page was handed on and its cursor committed.
    Committed {
        /// Objects handed on.
        objects: u64,
        /// Parts sent to the page queue.
        parts: u32,
        /// A job for the next page was enqueued.
        more: bool,
        /// Items or rows skipped, with reasons.
        skipped: Vec<String>,
    },
    /// The job was of an older epoch, an already committed page, a removed or a stopped
    /// feed: dropped without fetching.
    Dropped(String),
    /// The page was handed on but another writer committed first; this fetcher stops and
    /// the page's objects arrive twice, which deterministic ids make harmless.
    LostRace,
}

/// Why a job failed. The cursor did not move.
#[derive(Debug, thiserror::Error)]
pub enum FetcherError {
    /// The page failed.
    #[error("feed {feed}: {source}")]
    Page {
        /// The feed.
        feed: String,
        /// The cause.
        source: FetchError,
    },
    /// A store or queue failed.
    #[error("feed {feed}: {context}: {source}")]
    Port {
        /// The feed.
        feed: String,
        /// What was being done.
        context: &'static str,
        /// The cause.
        source: PortError,
    },
}

/// What the fetcher needs.
pub struct FetcherDeps<'a> {
    /// Feed definitions.
    pub feeds: &'a dyn FeedStore,
    /// Feed state.
    pub states: &'a dyn StateStore,
    /// Where the next page's job goes.
    pub jobs: &'a dyn JobQueue,
    /// Where pages go.
    pub pages: Arc<dyn PageQueue>,
    /// Size limit of one page part.
    pub max_part_bytes: usize,
}

/// Opens the source of a feed; a function so that local runs, functions and tests choose
/// their transports.
#[async_trait]
pub trait SourceFactory: Send + Sync {
    /// The source for `feed`.
    async fn open(&self, feed: &Feed) -> Result<Box<dyn Source>, FetchError>;
}

/// Handles one fetch job (see the module docs for the order of work).
///
/// # Errors
/// A failed page is recorded in the feed's status (last error, consecutive failures) and
/// returned, so that the caller can retry it or send it to a dead-letter queue.
pub async fn handle(
    job: &FetchJob,
    deps: &FetcherDeps<'_>,
    sources: &dyn SourceFactory,
    now: DateTime<Utc>,
) -> Result<Fetched, FetcherError> {
    let feed_name = job.feed.as_str();
    let port = |context: &'static str| {
        move |source: PortError| FetcherError::Port {
            feed: feed_name.into(),
            context,
            source,
        }
    };
    let Some(config) = deps
        .feeds
        .get(feed_name)
        .await
        .map_err(port("loading the feed"))?
    else {
        return Ok(Fetched::Dropped(format!(
            "feed {feed_name} no longer exists"
        )));
    };
    let mut state = deps
        .states
        .load(feed_name)
        .await
        .map_err(port("loading state"))?
        .unwrap_or_default();
    if job.epoch != state.epoch {
        record_stale(deps.states, feed_name).await;
        return Ok(Fetched::Dropped(format!(
            "job of epoch {} after a reset to epoch {}",
            job.epoch, state.epoch
        )));
    }
    if job.page != state.pages {
        // A redelivered job of the page just committed: the fetcher that committed it may
        // have died before enqueueing the next page's job or releasing the lease. Doing
        // that again is idempotent (a duplicate next job is dropped here in turn), and it
        // keeps a walk from stalling until the lease expires.
        if job.page + 1 == state.pages {
            follow_up(deps, feed_name, state.epoch, state.pages, state.more).await?;
        }
        return Ok(Fetched::Dropped(format!(
            "page {} was already committed (next page is {})",
            job.page, state.pages
        )));
    }
    if state.run_state != RunState::Running {
        deps.states
            .release_lease(feed_name)
            .await
            .map_err(port("releasing the lease"))?;
        return Ok(Fetched::Dropped(format!(
            "feed is {}",
            state.run_state.as_str()
        )));
    }
    let pause_after = config.pause_after_failures;
    let feed = Feed::new(config).map_err(|e| FetcherError::Page {
        feed: feed_name.into(),
        source: FetchError::Unsupported(e),
    })?;

    let started = Instant::now();
    let mut writer = PartWriter::new(&feed, job, deps.pages.clone(), deps.max_part_bytes);
    let result = match sources.open(&feed).await {
        Ok(source) => {
            kinds::fetch_page(&feed, &state.cursor, source.as_ref(), now, &mut writer).await
        }
        Err(e) => Err(e),
    };
    let result = match result {
        Ok(end) => writer
            .finish()
            .await
            .map(|sent| (end, sent))
            .map_err(FetchError::Handoff),
        Err(e) => Err(e),
    };
    let (mut end, (parts, bytes)) = match result {
        Ok(ok) => ok,
        Err(error) => {
            record_failure(deps.states, feed_name, &state, &error, now, pause_after).await;
            let _ = deps.states.release_lease(feed_name).await;
            return Err(FetcherError::Page {
                feed: feed_name.into(),
                source: error,
            });
        }
    };

    // The page is handed on: now, and only now, the cursor may move.
    let next = committed_state(&mut state, &mut end, job.first, now);
    match deps
        .states
        .commit(feed_name, state.version, &next)
        .await
        .map_err(port("committing the cursor"))?
    {
        Commit::Committed => {}
        Commit::Conflict => {
            tracing::warn!(feed = %feed_name, page = job.page, "cursor changed under this fetcher; stopping");
            return Ok(Fetched::LostRace);
        }
    }
    tracing::info!(
        feed = %feed_name,
        page = job.page,
        objects = end.objects,
        parts,
        bytes,
        skipped = end.skipped.len(),
        not_modified = end.not_modified,
        more = end.more,
        ms = started.elapsed().as_millis() as u64,
        "page committed"
    );
    follow_up(deps, feed_name, state.epoch, next.pages, end.more).await?;
    Ok(Fetched::Committed {
        objects: end.objects,
        parts,
        more: end.more,
        skipped: end.skipped,
    })
}

/// The state after `end`. Cursors are moved, not copied: a CSV cursor holds eight bytes
/// per row of the file, and two extra copies of it were most of a large run's peak memory.
fn committed_state(
    state: &mut FeedState,
    end: &mut PageEnd,
    first: bool,
    now: DateTime<Utc>,
) -> FeedState {
    let previous = std::mem::take(&mut state.cursor);
    let mut next = state.clone();
    state.cursor = previous;
    next.cursor = std::mem::take(&mut end.cursor);
    next.pages += 1;
    next.more = end.more;
    next.status.last_run = Some(now);
    next.status.last_success = Some(now);
    next.status.objects_last_run = if first {
        end.objects
    } else {
        state.status.objects_last_run + end.objects
    };
    next.status.objects_total += end.objects;
    next.status.last_error = None;
    next.status.consecutive_failures = 0;
    next
}

/// After a committed page: enqueues the job of page `page` when the source has more, else
/// gives the feed's lease back so the dispatcher may schedule it again.
async fn follow_up(
    deps: &FetcherDeps<'_>,
    feed: &str,
    epoch: u64,
    page: u64,
    more: bool,
) -> Result<(), FetcherError> {
    let port = |context: &'static str| {
        move |source: PortError| FetcherError::Port {
            feed: feed.into(),
            context,
            source,
        }
    };
    if more {
        let job = FetchJob {
            feed: feed.into(),
            epoch,
            page,
            first: false,
        };
        deps.jobs
            .send(job)
            .await
            .map_err(port("enqueueing the next page"))
    } else {
        deps.states
            .release_lease(feed)
            .await
            .map_err(port("releasing the lease"))
    }
}

/// Records a failed page in the feed's status. Best effort: the failure itself is what
/// the caller reports, and a conflicting writer has newer state anyway.
async fn record_failure(
    states: &dyn StateStore,
    feed: &str,
    state: &FeedState,
    error: &FetchError,
    now: DateTime<Utc>,
    pause_after: u32,
) {
    let mut next = state.clone();
    next.status.last_run = Some(now);
    next.status.last_error = Some(error.to_string());
    next.status.consecutive_failures += 1;
    if let Err(e) = states.commit(feed, state.version, &next).await {
        tracing::warn!(feed = %feed, error = %e, "could not record the failure in the feed's status");
        return;
    }
    // A source that keeps failing is paused rather than retried forever: each retry costs
    // a request to someone else's server and an invocation, and the status already says
    // what is wrong. An operator starts it again once the cause is fixed.
    if pause_after > 0 && next.status.consecutive_failures >= pause_after {
        match states.set_run_state(feed, RunState::Paused).await {
            Ok(()) => tracing::error!(
                feed = %feed,
                failures = next.status.consecutive_failures,
                "feed paused after consecutive failures; `feedstix feeds start` resumes it"
            ),
            Err(e) => tracing::warn!(feed = %feed, error = %e, "could not pause the feed"),
        }
    }
}

async fn record_stale(states: &dyn StateStore, feed: &str) {
    if let Err(e) = states.count_dropped(feed, 1).await {
        tracing::warn!(feed = %feed, error = %e, "could not count a dropped stale message");
    }
}

/// Collects a page's objects into parts no larger than the message limit and sends each
/// part as soon as the next one starts, so a page of any size streams through with one
/// part in memory. The last part is held back until the page ends, to flag it as last.
pub struct PartWriter {
    template: PagePart,
    queue: Arc<dyn PageQueue>,
    max_bytes: usize,
    buffer: Vec<StixObject>,
    bytes: usize,
    sent: u32,
    /// Serialized bytes of every object pushed, for the page's log line and metrics.
    total: u64,
}

impl PartWriter {
    /// A writer for one page of `feed`.
    pub fn new(feed: &Feed, job: &FetchJob, queue: Arc<dyn PageQueue>, max_bytes: usize) -> Self {
        let template = PagePart {
            feed: feed.name().into(),
            kind: feed.config.kind(),
            epoch: job.epoch,
            page: job.page,
            part: 0,
            last: false,
            user: feed.config.user.clone(),
            objects: Vec::new(),
            support: feed.provenance.objects(),
        };
        let support_bytes: usize = template.support.iter().map(json::object_len).sum();
        // Room for the part's own fields and the support objects it carries.
        let max_bytes = max_bytes.saturating_sub(1024 + support_bytes).max(1024);
        PartWriter {
            template,
            queue,
            max_bytes,
            buffer: Vec::new(),
            bytes: 0,
            sent: 0,
            total: 0,
        }
    }

    async fn flush(&mut self, last: bool) -> Result<(), PortError> {
        let mut part = self.template.clone();
        part.part = self.sent;
        part.last = last;
        // The next part is likely as long as this one: sized once instead of regrown.
        let capacity = self.buffer.len();
        part.objects = std::mem::replace(&mut self.buffer, Vec::with_capacity(capacity));
        self.bytes = 0;
        self.queue.send(part).await?;
        self.sent += 1;
        Ok(())
    }

    /// Sends the last part. Returns the number of parts sent and the objects' serialized
    /// bytes; a page without objects sends
    /// none, since there is nothing to bundle.
    pub async fn finish(mut self) -> Result<(u32, u64), PortError> {
        if !self.buffer.is_empty() {
            self.flush(true).await?;
        }
        Ok((self.sent, self.total))
    }
}

#[async_trait]
impl ObjectOut for PartWriter {
    async fn push(&mut self, object: StixObject) -> Result<(), PortError> {
        // Counted, not serialized: the bundler serializes each object once, when it
        // writes it.
        let size = json::object_len(&object) + 1;
        if !self.buffer.is_empty() && self.bytes + size > self.max_bytes {
            self.flush(false).await?;
        }
        self.bytes += size;
        self.total += size as u64;
        self.buffer.push(object);
        Ok(())
    }
}
