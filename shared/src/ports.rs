//! The small traits the pipeline needs from the outside world.
//!
//! Each port has a local adapter (in [`crate::local`]) and, for a deployment, an AWS one.
//! Domain code names only these traits, never an SDK type, so the dispatcher, fetcher and
//! bundler run unchanged in one process or as three functions.

use std::io::{BufRead, BufReader, Read, Seek};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{FeedConfig, Kind};
use crate::cursor::{FeedState, RunState};
use crate::stix::StixObject;

/// A boxed error from an adapter, with its context already in the message.
pub type PortError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One fetch job: fetch the next page of a feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchJob {
    /// The feed's name.
    pub feed: String,
    /// The feed's epoch when the job was made; a job of an older epoch is dropped.
    pub epoch: u64,
    /// The page number this job fetches (the feed's `pages` counter when made).
    pub page: u64,
    /// True for the first page of a run (the dispatcher's job), false for follow-ups.
    pub first: bool,
}

/// One part of one page on its way to the bundler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PagePart {
    /// The feed's name.
    pub feed: String,
    /// The feed's kind.
    pub kind: Kind,
    /// The epoch the page was fetched in.
    pub epoch: u64,
    /// The page number.
    pub page: u64,
    /// The part's index within the page, from 0.
    pub part: u32,
    /// True on the page's last part.
    pub last: bool,
    /// The user responsible for data creation.
    pub user: Option<String>,
    /// The page's objects in this part.
    pub objects: Vec<StixObject>,
    /// Objects the page's objects refer to and a consumer needs (author identity, marking
    /// definitions); the bundler adds those that a bundle references.
    pub support: Vec<StixObject>,
}

/// What a bundle carries beside its objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleMeta {
    /// The feed's name.
    pub feed: String,
    /// The feed's kind.
    pub kind: Kind,
    /// The epoch the objects were fetched in.
    pub epoch: u64,
    /// The page the bundle came from.
    pub page: u64,
    /// The part of that page.
    pub part: u32,
    /// The bundle's index within the part.
    pub index: u32,
    /// The user responsible for data creation.
    pub user: Option<String>,
}

/// Where fetch jobs go.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Enqueues a job. Jobs of one feed stay in order.
    async fn send(&self, job: FetchJob) -> Result<(), PortError>;
}

/// Where pages go.
#[async_trait]
pub trait PageQueue: Send + Sync {
    /// Enqueues a page part. Parts of one feed stay in order.
    async fn send(&self, part: PagePart) -> Result<(), PortError>;
}

/// Where bundles go.
#[async_trait]
pub trait BundleSink: Send + Sync {
    /// Hands on one serialized bundle; returns once it is durable.
    async fn emit(&self, meta: &BundleMeta, bundle: Vec<u8>) -> Result<(), PortError>;
}

/// The result of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// The write happened.
    Committed,
    /// The stored version or epoch differed: someone else wrote first.
    Conflict,
}

/// Where feed state lives.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The feed's state, or `None` before its first run.
    async fn load(&self, feed: &str) -> Result<Option<FeedState>, PortError>;

    /// Writes `state` if the stored state still has version `expected_version` and epoch
    /// `state.epoch` (a reset in between bumps the epoch and wins). The stored version
    /// becomes `expected_version + 1`.
    async fn commit(
        &self,
        feed: &str,
        expected_version: u64,
        state: &FeedState,
    ) -> Result<Commit, PortError>;

    /// Takes the feed's lease until `until` if it is free or expired at `now`, so one
    /// fetch of a feed is in flight at a time.
    async fn try_lease(
        &self,
        feed: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, PortError>;

    /// Gives the lease back early.
    async fn release_lease(&self, feed: &str) -> Result<(), PortError>;

    /// Adds `n` to the feed's count of messages dropped for belonging to an older epoch.
    /// A plain counter outside the versioned state, so counting never makes a fetcher
    /// lose its conditional write.
    async fn count_dropped(&self, feed: &str, n: u64) -> Result<(), PortError>;

    /// Resets a feed: bumps its epoch (so every queued message of the old epoch is dropped
    /// on arrival, and a fetcher of the old epoch loses its commit), puts the cursor back
    /// to the start (the feed's `import_from`), clears its error count and lease. Returns
    /// the new state.
    async fn reset(&self, feed: &str) -> Result<FeedState, PortError>;

    /// Starts or stops a feed. Unconditional: a commit never changes the run state, so an
    /// operator's stop is not undone by a fetcher that read the state before it.
    async fn set_run_state(&self, feed: &str, run_state: RunState) -> Result<(), PortError>;
}

/// Where feed definitions live.
#[async_trait]
pub trait FeedStore: Send + Sync {
    /// Every defined feed.
    async fn list(&self) -> Result<Vec<FeedConfig>, PortError>;
    /// One feed by name.
    async fn get(&self, name: &str) -> Result<Option<FeedConfig>, PortError>;
}

/// The current time; a port so that tests control it.
pub trait Clock: Send + Sync {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// One request to a source.
#[derive(Debug, Clone, Default)]
pub struct SourceRequest {
    /// The URL.
    pub url: String,
    /// Extra headers (`Accept`, `Range`, conditional-GET validators).
    pub headers: Vec<(String, String)>,
}

/// A response body: spooled to a temporary file once it is larger than a few hundred
/// KiB, so that a large source is parsed from disk with bounded memory.
#[derive(Debug)]
pub enum Body {
    /// Small bodies stay in memory.
    Memory(Vec<u8>),
    /// Large bodies live in an anonymous temporary file, rewound to the start.
    Spooled(std::fs::File),
}

impl Body {
    /// A buffered reader over the body from its start.
    pub fn reader(self) -> std::io::Result<Box<dyn BufRead + Send>> {
        Ok(match self {
            Body::Memory(bytes) => Box::new(std::io::Cursor::new(bytes)),
            Body::Spooled(mut file) => {
                file.rewind()?;
                Box::new(BufReader::with_capacity(64 * 1024, file))
            }
        })
    }

    /// Reads the whole body into memory (for small JSON documents such as TAXII pages).
    pub fn into_bytes(self) -> std::io::Result<Vec<u8>> {
        match self {
            Body::Memory(bytes) => Ok(bytes),
            Body::Spooled(mut file) => {
                file.rewind()?;
                let mut out = Vec::new();
                file.read_to_end(&mut out)?;
                Ok(out)
            }
        }
    }
}

/// One response from a source.
#[derive(Debug)]
pub struct SourceResponse {
    /// The HTTP status (200 for a file).
    pub status: u16,
    /// Response headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (empty for 304).
    pub body: Body,
    /// The URL finally answered, after redirects.
    pub final_url: String,
}

impl SourceResponse {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A body read as it arrives, chunk by chunk, for sources that never end (live streams).
pub type ChunkStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, crate::http::HttpError>> + Send>,
>;

/// The answer to a streaming GET: status and headers at once, the body as it comes.
pub struct StreamingResponse {
    /// The HTTP status.
    pub status: u16,
    /// Response headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The URL finally answered, after redirects.
    pub final_url: String,
    /// The body's chunks; dropping it closes the connection.
    pub body: ChunkStream,
}

impl StreamingResponse {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Fetches from a feed's source.
#[async_trait]
pub trait Source: Send + Sync {
    /// Performs one GET. Transport failures, refused addresses, oversize bodies, and 429 or
    /// 5xx answers still failing after the adapter's retries are errors; every other status
    /// is a response for the feed kind to judge (TAXII reads the body of a 406, say).
    async fn get(&self, request: SourceRequest) -> Result<SourceResponse, crate::http::HttpError>;

    /// Opens a GET whose body is read as it arrives and may last up to `max_duration`
    /// (a live stream). No retries and no body cap here: the caller reconnects with its own
    /// backoff and bounds each event. Any status is returned for the caller to judge.
    ///
    /// Sources that cannot hold a connection open (local files) keep this default, which
    /// refuses.
    async fn open_stream(
        &self,
        request: SourceRequest,
        max_duration: std::time::Duration,
    ) -> Result<StreamingResponse, crate::http::HttpError> {
        let _ = max_duration;
        Err(crate::http::HttpError::BadUrl {
            url: request.url,
            reason: "this source cannot hold a connection open; a live stream needs http(s)".into(),
        })
    }
}

/// Resolves secret references (`env:`, `ssm:`, `secretsmanager:`) at run time.
#[async_trait]
pub trait Secrets: Send + Sync {
    /// The secret's value. The error names the reference, never a value.
    async fn resolve(&self, reference: &crate::config::SecretRef) -> Result<String, PortError>;
}

/// Resolves `env:` references from the process environment; the other schemes need a
/// deployment's adapter and are refused with a message saying so.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvSecrets;

#[async_trait]
impl Secrets for EnvSecrets {
    async fn resolve(&self, reference: &crate::config::SecretRef) -> Result<String, PortError> {
        use crate::config::SecretRef;
        match reference {
            SecretRef::Env(name) => std::env::var(name).map_err(|_| {
                format!("secret {reference}: environment variable {name} is not set").into()
            }),
            other => Err(format!(
                "secret {other}: ssm: and secretsmanager: references are resolved only when \
                 running with AWS credentials"
            )
            .into()),
        }
    }
}
