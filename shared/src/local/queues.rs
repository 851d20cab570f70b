//! In-process queues.
//!
//! Fetch jobs wait in a FIFO per feed, like an SQS FIFO queue with the feed as message
//! group. The page queue does not buffer at all: it bundles each part as it is sent, and
//! returns from a page's last part once every bundle of the page is on disk. Locally there
//! is no durable queue between the fetcher and the bundler, so handing a page on must mean
//! "written", or the cursor could move past data that a crash then loses; it also keeps
//! memory bounded to one part. The parts before the last return as soon as their bundles
//! are written, with the flushes to disk still running (see [`DirSink`]), so the disk's
//! latency overlaps the work on the next part instead of adding to it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::sink::DirSink;
use crate::pipeline::bundler::{self, Bundled};
use crate::ports::{FetchJob, JobQueue, PagePart, PageQueue, PortError, StateStore};

/// Fetch jobs, FIFO per feed.
#[derive(Default)]
pub struct LocalJobQueue {
    jobs: Mutex<HashMap<String, VecDeque<FetchJob>>>,
}

impl LocalJobQueue {
    /// Takes the next job of `feed`, if any.
    pub fn pop(&self, feed: &str) -> Option<FetchJob> {
        self.jobs.lock().ok()?.get_mut(feed)?.pop_front()
    }

    /// Feeds with jobs waiting.
    pub fn feeds(&self) -> Vec<String> {
        self.jobs
            .lock()
            .map(|j| {
                j.iter()
                    .filter(|(_, q)| !q.is_empty())
                    .map(|(f, _)| f.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[async_trait]
impl JobQueue for LocalJobQueue {
    async fn send(&self, job: FetchJob) -> Result<(), PortError> {
        self.jobs
            .lock()
            .map_err(|_| "job queue lock poisoned")?
            .entry(job.feed.clone())
            .or_default()
            .push_back(job);
        Ok(())
    }
}

/// Counters of what the page queue bundled, per feed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PageCounters {
    /// Parts received.
    pub parts: u64,
    /// Bundles written.
    pub bundles: u64,
    /// Objects in them, support objects included.
    pub objects: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// A page queue that bundles on send (see the module docs).
pub struct DirectPageQueue {
    states: Arc<dyn StateStore>,
    sink: Arc<DirSink>,
    max_bundle_bytes: usize,
    counters: Mutex<HashMap<String, PageCounters>>,
}

impl DirectPageQueue {
    /// A queue that bundles into `sink`.
    pub fn new(states: Arc<dyn StateStore>, sink: Arc<DirSink>, max_bundle_bytes: usize) -> Self {
        DirectPageQueue {
            states,
            sink,
            max_bundle_bytes,
            counters: Mutex::default(),
        }
    }

    /// What was bundled for `feed` so far.
    pub fn counters(&self, feed: &str) -> PageCounters {
        self.counters
            .lock()
            .ok()
            .and_then(|c| c.get(feed).copied())
            .unwrap_or_default()
    }
}

#[async_trait]
impl PageQueue for DirectPageQueue {
    async fn send(&self, part: PagePart) -> Result<(), PortError> {
        let feed = part.feed.clone();
        let last = part.last;
        let outcome = bundler::handle(
            part,
            self.states.as_ref(),
            self.sink.as_ref(),
            self.max_bundle_bytes,
        )
        .await?;
        if last {
            // The fetcher commits the cursor once this returns: the page must be on disk.
            self.sink.settle(&feed)?;
        }
        if let Bundled::Emitted {
            bundles,
            objects,
            bytes,
        } = outcome
        {
            let mut counters = self.counters.lock().map_err(|_| "counter lock poisoned")?;
            let c = counters.entry(feed).or_default();
            c.parts += 1;
            c.bundles += u64::from(bundles);
            c.objects += objects;
            c.bytes += bytes;
        }
        Ok(())
    }
}
