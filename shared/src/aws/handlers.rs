//! What each function does with its event, as library functions: the Lambda mains call
//! them with clients built once at cold start, and the tests call them directly with SQS
//! messages received from an emulator (which cannot trigger a function itself).
//!
//! - [`dispatch_event`]: the schedule's event: due feeds become fetch jobs, sent in batches.
//! - [`fetch_batch`]: a batch of fetch jobs, one page each.
//! - [`bundle_batch`]: a batch of page parts, bundled onto the worker queue.
//!
//! SQS batches report failures per message (`batchItemFailures`), so one bad feed is the
//! only one redelivered. Messages of one FIFO group are handled in order, and once one
//! fails the rest of its group in the batch is reported failed without being handled:
//! handling them would run a feed's later page before the failed one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use tracing::Instrument;

use super::claim::ClaimStore;
use super::dynamo::{DynamoFeeds, DynamoStates};
use super::events::{RunDetail, RunEvents, RUN_COMPLETED, RUN_FAILED};
use super::metrics::Metric;
use super::secrets::AwsSecrets;
use super::settings::{BundlerSettings, DispatcherSettings, FetcherSettings};
use super::sqs::{Queue, SqsJobQueue, SqsPageQueue, WorkerQueue};
use super::Clients;
use crate::feed::Feed;
use crate::http::{open_source, RetryPolicy};
use crate::kinds::FetchError;
use crate::pipeline::bundler::{self, Bundled};
use crate::pipeline::dispatcher::{self, Dispatched};
use crate::pipeline::fetcher::{self, Fetched, FetcherDeps, SourceFactory};
use crate::ports::{
    BundleMeta, BundleSink, FetchJob, JobQueue, PagePart, PortError, Source, StateStore,
};

/// Why the dispatcher's invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Listing feeds, reading state or taking a lease failed.
    #[error("dispatch: {0}")]
    Dispatch(PortError),
    /// Some fetch jobs could not be sent (their leases were released for the next tick).
    #[error("dispatch: fetch jobs not sent for feed(s) {feeds}: {reason}")]
    Send {
        /// The feeds, comma-separated.
        feeds: String,
        /// The first failure.
        reason: String,
    },
}

/// What the dispatcher needs, built once per cold start.
pub struct DispatcherContext {
    feeds: DynamoFeeds,
    states: DynamoStates,
    jobs: SqsJobQueue,
}

impl DispatcherContext {
    /// The adapters over `clients` for `settings`.
    pub fn new(clients: &Clients, settings: &DispatcherSettings) -> DispatcherContext {
        let claims = ClaimStore::new(clients.s3.clone(), &settings.claim_bucket);
        DispatcherContext {
            feeds: DynamoFeeds::new(clients.dynamodb.clone(), &settings.feeds_table),
            states: DynamoStates::new(
                clients.dynamodb.clone(),
                &settings.state_table,
                claims.clone(),
            ),
            jobs: SqsJobQueue::new(Queue::new(
                clients.sqs.clone(),
                &settings.fetch_queue_url,
                crate::config::DEFAULT_MAX_MESSAGE_BYTES,
                claims,
            )),
        }
    }
}

/// Collects the dispatcher's jobs so they go out in batches after the dispatch.
#[derive(Default)]
struct CollectedJobs(Mutex<Vec<FetchJob>>);

#[async_trait]
impl JobQueue for CollectedJobs {
    async fn send(&self, job: FetchJob) -> Result<(), PortError> {
        self.0
            .lock()
            .map_err(|_| "job list lock poisoned")?
            .push(job);
        Ok(())
    }
}

/// Handles one scheduled event: every running feed that is due at `now` gets a lease and
/// a fetch job. `{"force": true}` in the event's detail dispatches every running feed, as
/// `feedstix run --once` does (for a manual invocation).
///
/// Jobs are collected during the dispatch and sent in batches afterwards, also when the
/// dispatch stopped on an error, so every lease taken has its job or is released.
///
/// # Errors
/// A store failure, or jobs that SQS did not accept.
pub async fn dispatch_event(
    ctx: &DispatcherContext,
    event: &EventBridgeEvent<serde_json::Value>,
    now: DateTime<Utc>,
) -> Result<Dispatched, DispatchError> {
    let force = event
        .detail
        .get("force")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let collected = CollectedJobs::default();
    let outcome = dispatcher::dispatch(&ctx.feeds, &ctx.states, &collected, now, force).await;
    let jobs = collected.0.into_inner().unwrap_or_default();

    let failed = ctx.jobs.send_jobs(jobs).await;
    for (job, error) in &failed {
        tracing::error!(feed = %job.feed, error = %error, "fetch job not sent");
        // Without its job the lease would block the feed until it expires.
        if let Err(e) = ctx.states.release_lease(&job.feed).await {
            tracing::warn!(feed = %job.feed, error = %e, "could not release the lease");
        }
    }
    let report = outcome.map_err(DispatchError::Dispatch)?;
    if let Some((_, first)) = failed.first() {
        let feeds = failed
            .iter()
            .map(|(job, _)| job.feed.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(DispatchError::Send {
            feeds,
            reason: first.to_string(),
        });
    }
    tracing::info!(
        enqueued = report.enqueued.len(),
        not_due = report.not_due.len(),
        in_flight = report.in_flight.len(),
        stopped = report.stopped.len(),
        "dispatch done"
    );
    Ok(report)
}

/// Handles the dispatcher's event as whatever JSON arrived: a scheduled EventBridge event,
/// or a hand-made invocation such as `{"detail": {"force": true}}` or `{}`. Anything that
/// is not an EventBridge event is treated as a tick.
///
/// # Errors
/// As [`dispatch_event`].
pub async fn dispatch_payload(
    ctx: &DispatcherContext,
    payload: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<Dispatched, DispatchError> {
    let detail = payload
        .get("detail")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    let event = serde_json::from_value::<EventBridgeEvent<serde_json::Value>>(payload)
        .unwrap_or_else(|_| EventBridgeEvent {
            detail_type: "manual invocation".into(),
            source: "feedstix".into(),
            detail,
            ..EventBridgeEvent::default()
        });
    dispatch_event(ctx, &event, now).await
}

/// Opens sources for the fetcher in a deployment: HTTP(S) only, secrets from AWS.
struct AwsSources {
    secrets: Arc<AwsSecrets>,
    retry: RetryPolicy,
}

#[async_trait]
impl SourceFactory for AwsSources {
    async fn open(&self, feed: &Feed) -> Result<Box<dyn Source>, FetchError> {
        // `file:` URLs are refused here: a function has no business reading its own disk.
        Ok(open_source(
            &feed.config.url,
            &feed.config.http,
            self.secrets.as_ref(),
            false,
            self.retry,
        )
        .await?)
    }
}

/// What the fetcher needs, built once per cold start.
pub struct FetcherContext {
    feeds: DynamoFeeds,
    states: DynamoStates,
    jobs: SqsJobQueue,
    pages: Arc<SqsPageQueue>,
    claims: ClaimStore,
    events: RunEvents,
    sources: AwsSources,
    max_part_bytes: usize,
}

impl FetcherContext {
    /// The adapters over `clients` for `settings`.
    pub fn new(clients: &Clients, settings: &FetcherSettings) -> FetcherContext {
        let claims = ClaimStore::new(clients.s3.clone(), &settings.claim_bucket);
        let queue = |url: &str| {
            Queue::new(
                clients.sqs.clone(),
                url,
                settings.max_message_bytes,
                claims.clone(),
            )
        };
        FetcherContext {
            feeds: DynamoFeeds::new(clients.dynamodb.clone(), &settings.feeds_table),
            states: DynamoStates::new(
                clients.dynamodb.clone(),
                &settings.state_table,
                claims.clone(),
            ),
            jobs: SqsJobQueue::new(queue(&settings.fetch_queue_url)),
            pages: Arc::new(SqsPageQueue::new(queue(&settings.page_queue_url))),
            claims: claims.clone(),
            events: RunEvents::new(clients.events.clone(), &settings.event_bus_name),
            sources: AwsSources {
                secrets: Arc::new(AwsSecrets::new(
                    clients.ssm.clone(),
                    clients.secrets_manager.clone(),
                )),
                retry: RetryPolicy::default(),
            },
            max_part_bytes: settings.max_message_bytes,
        }
    }

    /// The state table adapter, for operator tools and tests.
    pub fn states(&self) -> &dyn StateStore {
        &self.states
    }

    /// Sets the retry policy of source requests (tests shorten it).
    pub fn with_retry(mut self, retry: RetryPolicy) -> FetcherContext {
        self.sources.retry = retry;
        self
    }
}

/// The FIFO group of a record: its `MessageGroupId`, or the message itself on a standard
/// queue, where there is no order to keep.
fn group_of(record: &SqsMessage, index: usize) -> String {
    record
        .attributes
        .get("MessageGroupId")
        .cloned()
        .unwrap_or_else(|| format!("#{index}"))
}

/// Runs `handle` over each record, groups concurrently and each group in order, and
/// collects the ids of the records that failed or were skipped after a failure.
async fn per_record<'a, F, Fut>(records: &'a [SqsMessage], handle: F) -> SqsBatchResponse
where
    F: Fn(&'a SqsMessage) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut groups: Vec<(String, Vec<&SqsMessage>)> = Vec::new();
    let mut index_of: HashMap<String, usize> = HashMap::new();
    for (i, record) in records.iter().enumerate() {
        let group = group_of(record, i);
        let slot = *index_of.entry(group.clone()).or_insert_with(|| {
            groups.push((group, Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.push(record);
    }
    let handle = &handle;
    let failures = join_all(groups.into_iter().map(|(group, records)| async move {
        let mut failed: Vec<String> = Vec::new();
        for record in records {
            let id = record.message_id.clone().unwrap_or_default();
            if !failed.is_empty() {
                tracing::warn!(message_id = %id, group = %group, "skipped after an earlier failure in its group");
                failed.push(id);
                continue;
            }
            if let Err(error) = handle(record).await {
                tracing::error!(message_id = %id, group = %group, error = %error, "message failed");
                failed.push(id);
            }
        }
        failed
    }))
    .await;
    SqsBatchResponse {
        batch_item_failures: failures
            .into_iter()
            .flatten()
            .map(|item_identifier| BatchItemFailure { item_identifier })
            .collect(),
    }
}

/// A record's body, with a claim check resolved.
async fn body_of(claims: &ClaimStore, record: &SqsMessage) -> Result<Vec<u8>, String> {
    let body = record
        .body
        .as_deref()
        .ok_or_else(|| "the message has no body".to_string())?;
    claims.resolve(body).await.map_err(|e| e.to_string())
}

/// Handles a batch of fetch jobs, one page each, and reports the jobs that failed. A
/// failed page publishes `feedstix.run.failed`; a run's last committed page publishes
/// `feedstix.run.completed`.
pub async fn fetch_batch(
    ctx: &FetcherContext,
    event: SqsEvent,
    now: DateTime<Utc>,
) -> SqsBatchResponse {
    let deps = FetcherDeps {
        feeds: &ctx.feeds,
        states: &ctx.states,
        jobs: &ctx.jobs,
        pages: ctx.pages.clone(),
        max_part_bytes: ctx.max_part_bytes,
    };
    let deps = &deps;
    per_record(&event.records, |record| async move {
        let body = body_of(&ctx.claims, record).await?;
        let job: FetchJob =
            serde_json::from_slice(&body).map_err(|e| format!("not a fetch job: {e}"))?;
        let span = tracing::info_span!("fetch", feed = %job.feed, page = job.page);
        fetch_one(ctx, deps, job, now).instrument(span).await
    })
    .await
}

/// One fetch job, with its status event.
async fn fetch_one(
    ctx: &FetcherContext,
    deps: &FetcherDeps<'_>,
    job: FetchJob,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let detail = |objects: u64, skipped: u64, error: Option<String>| RunDetail {
        feed: job.feed.clone(),
        epoch: job.epoch,
        page: job.page,
        objects,
        skipped,
        error,
    };
    let started = std::time::Instant::now();
    let outcome = fetcher::handle(&job, deps, &ctx.sources, now).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match outcome {
        Ok(Fetched::Committed {
            objects,
            more,
            skipped,
            ..
        }) => {
            super::metrics::emit(
                &job.feed,
                &[
                    Metric {
                        name: "Pages",
                        value: 1.0,
                        unit: "Count",
                    },
                    Metric {
                        name: "Objects",
                        value: objects as f64,
                        unit: "Count",
                    },
                    Metric {
                        name: "Skipped",
                        value: skipped.len() as f64,
                        unit: "Count",
                    },
                    Metric {
                        name: "Failures",
                        value: 0.0,
                        unit: "Count",
                    },
                    Metric {
                        name: "SourceLatency",
                        value: ms,
                        unit: "Milliseconds",
                    },
                ],
            );
            if !more {
                let detail = detail(objects, skipped.len() as u64, None);
                ctx.events.publish_best_effort(RUN_COMPLETED, &detail).await;
            }
            Ok(())
        }
        Ok(Fetched::Dropped(reason)) => {
            tracing::info!(feed = %job.feed, page = job.page, reason = %reason, "fetch job dropped");
            Ok(())
        }
        Ok(Fetched::LostRace) => Ok(()),
        Err(error) => {
            super::metrics::emit(
                &job.feed,
                &[
                    Metric {
                        name: "Failures",
                        value: 1.0,
                        unit: "Count",
                    },
                    Metric {
                        name: "SourceLatency",
                        value: ms,
                        unit: "Milliseconds",
                    },
                ],
            );
            let detail = detail(0, 0, Some(error.to_string()));
            ctx.events.publish_best_effort(RUN_FAILED, &detail).await;
            Err(error.to_string())
        }
    }
}

/// What the bundler needs, built once per cold start.
pub struct BundlerContext {
    states: DynamoStates,
    worker: WorkerQueue,
    claims: ClaimStore,
}

impl BundlerContext {
    /// The adapters over `clients` for `settings`.
    pub fn new(clients: &Clients, settings: &BundlerSettings) -> BundlerContext {
        let claims = ClaimStore::new(clients.s3.clone(), &settings.claim_bucket);
        BundlerContext {
            states: DynamoStates::new(
                clients.dynamodb.clone(),
                &settings.state_table,
                claims.clone(),
            ),
            worker: WorkerQueue::new(
                Queue::new(
                    clients.sqs.clone(),
                    &settings.worker_queue_url,
                    settings.max_message_bytes,
                    claims.clone(),
                ),
                settings.envelope,
            ),
            claims,
        }
    }
}

/// Holds one part's bundles until they can go out in batches.
#[derive(Default)]
struct CollectedBundles(Mutex<Vec<(BundleMeta, Vec<u8>)>>);

#[async_trait]
impl BundleSink for CollectedBundles {
    async fn emit(&self, meta: &BundleMeta, bundle: Vec<u8>) -> Result<(), PortError> {
        self.0
            .lock()
            .map_err(|_| "bundle list lock poisoned")?
            .push((meta.clone(), bundle));
        Ok(())
    }
}

/// Handles a batch of page parts: each becomes bundles that fit the worker queue's message
/// limit, sent in batches. A part is acknowledged only once all its bundles are accepted
/// by SQS; a retried part yields the same bundles with the same ids.
pub async fn bundle_batch(ctx: &BundlerContext, event: SqsEvent) -> SqsBatchResponse {
    per_record(&event.records, |record| async move {
        let body = body_of(&ctx.claims, record).await?;
        let part: PagePart =
            serde_json::from_slice(&body).map_err(|e| format!("not a page part: {e}"))?;
        let (feed, page, index) = (part.feed.clone(), part.page, part.part);
        let max_bundle_bytes = ctx.worker.max_bundle_bytes(&part);
        let collected = CollectedBundles::default();
        let outcome = bundler::handle(part, &ctx.states, &collected, max_bundle_bytes)
            .await
            .map_err(|e| format!("feed {feed}: page {page} part {index}: {e}"))?;
        let bundles = collected.0.into_inner().unwrap_or_default();
        ctx.worker
            .send_bundles(bundles)
            .await
            .map_err(|e| format!("feed {feed}: page {page} part {index}: {e}"))?;
        if let Bundled::Emitted {
            bundles,
            objects,
            bytes,
        } = outcome
        {
            tracing::info!(feed = %feed, page, part = index, bundles, objects, bytes, "part bundled");
            super::metrics::emit(
                &feed,
                &[
                    Metric { name: "Bundles", value: f64::from(bundles), unit: "Count" },
                    Metric { name: "BundleBytes", value: bytes as f64, unit: "Bytes" },
                ],
            );
        }
        Ok(())
    })
    .await
}
