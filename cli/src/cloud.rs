//! The commands against a deployed stack: where its tables and queues are (`--stack NAME`,
//! read from the CloudFormation outputs, or the names given one by one), `feeds
//! sync|add|remove`, and the cloud side of `status` and `feeds list|show|start|stop|reset`.
//!
//! Every client honours `AWS_ENDPOINT_URL`, so the same commands work on an emulator.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;

use anyhow::{bail, Context};
use aws_sdk_sqs::types::QueueAttributeName;
use clap::Args;
use feedstix::aws::claim::ClaimStore;
use feedstix::aws::dynamo::{DynamoFeeds, DynamoStates};
use feedstix::aws::{load_sdk_config, Clients};
use feedstix::config::{Config, FeedConfig};
use feedstix::cursor::RunState;
use feedstix::http::RetryPolicy;
use feedstix::ports::{FeedStore, StateStore};

use crate::ops::{self, QueueDepth, Queues, States};

/// Output names of infra/template.yaml.
pub mod outputs {
    /// The feeds table.
    pub const FEEDS_TABLE: &str = "FeedsTableName";
    /// The state table.
    pub const STATE_TABLE: &str = "StateTableName";
    /// The claim-check bucket.
    pub const BUCKET: &str = "ClaimBucketName";
    /// The fetch queue.
    pub const FETCH_QUEUE: &str = "FetchQueueUrl";
    /// The fetch queue's dead-letter queue.
    pub const FETCH_DLQ: &str = "FetchDeadLetterQueueUrl";
    /// The page queue.
    pub const PAGE_QUEUE: &str = "PageQueueUrl";
    /// The page queue's dead-letter queue.
    pub const PAGE_DLQ: &str = "PageDeadLetterQueueUrl";
    /// The worker queue.
    pub const WORKER_QUEUE: &str = "WorkerQueueUrl";
    /// The worker queue's dead-letter queue (only when the stack created the worker queue).
    pub const WORKER_DLQ: &str = "WorkerDeadLetterQueueUrl";
}

/// Where a deployed stack keeps its feeds: a stack's outputs, or the names themselves.
#[derive(Args, Debug, Clone, Default)]
pub struct Target {
    /// A deployed feedstix stack: the tables, queues and bucket are read from its outputs
    /// (CloudFormation DescribeStacks, in the region of AWS_REGION or the profile).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["feeds_table", "state_table"])]
    pub stack: Option<String>,
    /// The feeds table (instead of --stack; needs --state-table).
    #[arg(long, value_name = "TABLE", requires = "state_table")]
    pub feeds_table: Option<String>,
    /// The state table (instead of --stack; needs --feeds-table).
    #[arg(long, value_name = "TABLE", requires = "feeds_table")]
    pub state_table: Option<String>,
    /// The claim-check bucket, where states too large for a table item are kept
    /// [default with --stack: its ClaimBucketName output].
    #[arg(long, value_name = "BUCKET")]
    pub bucket: Option<String>,
    /// The fetch queue, for the queue depth in `status` and `feeds reset`
    /// [default with --stack: its FetchQueueUrl output].
    #[arg(long, value_name = "URL")]
    pub fetch_queue_url: Option<String>,
    /// The page queue, for the queue depth in `status` and `feeds reset`
    /// [default with --stack: its PageQueueUrl output].
    #[arg(long, value_name = "URL")]
    pub page_queue_url: Option<String>,
}

impl Target {
    /// Whether a stack or tables were given, i.e. the command works on the cloud.
    pub fn given(&self) -> bool {
        self.stack.is_some() || self.feeds_table.is_some()
    }
}

/// Reads a stack's outputs.
pub async fn stack_outputs(
    sdk: &aws_config::SdkConfig,
    stack: &str,
) -> anyhow::Result<HashMap<String, String>> {
    let cfn = aws_sdk_cloudformation::Client::new(sdk);
    let answer = cfn
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| {
            use aws_sdk_cloudformation::error::ProvideErrorMetadata;
            let reason = match (e.code(), e.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                _ => aws_sdk_cloudformation::error::DisplayErrorContext(&e).to_string(),
            };
            anyhow::anyhow!(
                "stack {stack}: cannot read its outputs (region {}): {reason}",
                sdk.region()
                    .map(|r| r.as_ref())
                    .unwrap_or("not set; set AWS_REGION"),
            )
        })?;
    let found = answer
        .stacks()
        .first()
        .with_context(|| format!("stack {stack}: not found"))?;
    Ok(found
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect())
}

/// One output of a stack, or an error naming the stack and the output.
pub fn output(outputs: &HashMap<String, String>, stack: &str, key: &str) -> anyhow::Result<String> {
    outputs.get(key).cloned().with_context(|| {
        format!("stack {stack} has no output {key}: is it a feedstix stack (infra/template.yaml)?")
    })
}

/// The tables, bucket and queues of a deployment, with the clients to reach them.
pub struct Cloud {
    /// Every service client.
    pub clients: Clients,
    /// The feeds table.
    pub feeds: DynamoFeeds,
    /// The state table.
    pub states: DynamoStates,
    /// The fetch queue, if known.
    pub fetch_queue: Option<String>,
    /// The page queue, if known.
    pub page_queue: Option<String>,
    /// How the names were found, for messages: `stack NAME` or `tables A and B`.
    pub source: String,
}

impl Cloud {
    /// Resolves `target` (reading the stack's outputs when one is named).
    pub async fn connect(target: &Target) -> anyhow::Result<Cloud> {
        let sdk = load_sdk_config().await;
        let clients = Clients::new(&sdk);
        let (feeds_table, state_table, bucket, fetch_queue, page_queue, source) =
            match (&target.stack, &target.feeds_table, &target.state_table) {
                (Some(stack), _, _) => {
                    let out = stack_outputs(&sdk, stack).await?;
                    (
                        output(&out, stack, outputs::FEEDS_TABLE)?,
                        output(&out, stack, outputs::STATE_TABLE)?,
                        target
                            .bucket
                            .clone()
                            .or_else(|| out.get(outputs::BUCKET).cloned()),
                        target
                            .fetch_queue_url
                            .clone()
                            .or_else(|| out.get(outputs::FETCH_QUEUE).cloned()),
                        target
                            .page_queue_url
                            .clone()
                            .or_else(|| out.get(outputs::PAGE_QUEUE).cloned()),
                        format!("stack {stack}"),
                    )
                }
                (None, Some(feeds), Some(state)) => (
                    feeds.clone(),
                    state.clone(),
                    target.bucket.clone(),
                    target.fetch_queue_url.clone(),
                    target.page_queue_url.clone(),
                    format!("tables {feeds} and {state}"),
                ),
                _ => bail!(
                    "no deployment named: give --stack NAME, or --feeds-table and --state-table"
                ),
            };
        // Without a bucket, a state kept there (a very large CSV cursor) cannot be read; the
        // error then says which option was missing.
        let claims = ClaimStore::new(
            clients.s3.clone(),
            bucket
                .clone()
                .unwrap_or_else(|| "(no --bucket given)".into()),
        );
        Ok(Cloud {
            feeds: DynamoFeeds::new(clients.dynamodb.clone(), feeds_table),
            states: DynamoStates::new(clients.dynamodb.clone(), state_table, claims),
            clients,
            fetch_queue,
            page_queue,
            source,
        })
    }

    /// Every stored definition, by name.
    pub async fn definitions(&self) -> anyhow::Result<Vec<FeedConfig>> {
        self.feeds.list().await.map_err(|e| anyhow::anyhow!(e))
    }

    /// One stored definition, or an error naming the table.
    pub async fn definition(&self, name: &str) -> anyhow::Result<FeedConfig> {
        self.feeds
            .get(name)
            .await
            .map_err(|e| anyhow::anyhow!(e))?
            .with_context(|| format!("no feed named {name} in table {}", self.feeds.table()))
    }

    /// The states of `feeds`.
    pub async fn states_of(&self, feeds: &[FeedConfig]) -> anyhow::Result<States> {
        let mut states = BTreeMap::new();
        for feed in feeds {
            if let Some(state) = self
                .states
                .load(&feed.name)
                .await
                .map_err(|e| anyhow::anyhow!(e))?
            {
                states.insert(feed.name.clone(), state);
            }
        }
        Ok(states)
    }

    /// The approximate depth of the fetch and page queues, when both are known.
    pub async fn depth(&self) -> anyhow::Result<Option<QueueDepth>> {
        let (Some(fetch), Some(page)) = (&self.fetch_queue, &self.page_queue) else {
            return Ok(None);
        };
        Ok(Some(QueueDepth {
            fetch_jobs: queue_depth(&self.clients.sqs, fetch).await?,
            page_parts: queue_depth(&self.clients.sqs, page).await?,
        }))
    }
}

/// Messages waiting or in flight on a queue (SQS's approximate counts).
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<u64> {
    let answer = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "queue {url}: cannot read its depth: {}",
                aws_sdk_sqs::error::DisplayErrorContext(&e)
            )
        })?;
    let attributes = answer.attributes.unwrap_or_default();
    let count = |name: &QueueAttributeName| {
        attributes
            .get(name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(count(&QueueAttributeName::ApproximateNumberOfMessages)
        + count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
}

/// `feedstix status` on a deployment.
pub async fn status(target: &Target, as_json: bool) -> anyhow::Result<ExitCode> {
    let cloud = Cloud::connect(target).await?;
    let feeds = cloud.definitions().await?;
    let states = cloud.states_of(&feeds).await?;
    let depth = cloud.depth().await?;
    ops::status_view(&feeds, &states, Queues::Cloud(depth), as_json)
}

/// `feedstix feeds list` on a deployment.
pub async fn list(target: &Target) -> anyhow::Result<ExitCode> {
    let cloud = Cloud::connect(target).await?;
    let feeds = cloud.definitions().await?;
    let states = cloud.states_of(&feeds).await?;
    ops::list_view(&feeds, &states)
}

/// `feedstix feeds show` on a deployment.
pub async fn show(target: &Target, name: &str) -> anyhow::Result<ExitCode> {
    let cloud = Cloud::connect(target).await?;
    let feed = cloud.definition(name).await?;
    let state = cloud.states_of(std::slice::from_ref(&feed)).await?;
    let depth = cloud.depth().await?;
    ops::show_view(
        &feed,
        &state.get(name).cloned().unwrap_or_default(),
        Queues::Cloud(depth),
    )
}

/// `feedstix feeds start|stop` on a deployment.
pub async fn set_running(target: &Target, name: &str, running: bool) -> anyhow::Result<ExitCode> {
    let cloud = Cloud::connect(target).await?;
    cloud.definition(name).await?;
    let run_state = if running {
        RunState::Running
    } else {
        RunState::Stopped
    };
    cloud
        .states
        .set_run_state(name, run_state)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    outln!("{name}: {}", if running { "running" } else { "stopped" });
    Ok(ExitCode::SUCCESS)
}

/// `feedstix feeds reset` on a deployment.
pub async fn reset(target: &Target, name: &str) -> anyhow::Result<ExitCode> {
    let cloud = Cloud::connect(target).await?;
    let feed = cloud.definition(name).await?;
    let next = cloud
        .states
        .reset(name)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let from = feed
        .import_from
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| "the beginning of the source".into());
    outln!(
        "{name}: reset to epoch {}; the next run imports from {from}",
        next.epoch
    );
    outln!(
        "{name}: {} message(s) of older epochs dropped so far (counted as they arrive)",
        next.status.dropped_stale
    );
    match cloud.depth().await? {
        Some(d) => outln!(
            "{name}: still queued: about {} message(s) ({} fetch job(s), {} page part(s); SQS counts all feeds together), dropped when they arrive if of an older epoch",
            d.total(),
            d.fetch_jobs,
            d.page_parts
        ),
        None => outln!(
            "{name}: still queued: unknown (give --stack, or --fetch-queue-url and --page-queue-url)"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// What `feeds sync` and `feeds add` do.
pub struct SyncOptions {
    /// Only this feed of the file (`feeds add`).
    pub only: Option<String>,
    /// Remove stored feeds that the file no longer has.
    pub prune: bool,
    /// Show the difference and write nothing.
    pub dry_run: bool,
    /// Fetch each new or changed feed's first page before storing it.
    pub verify: bool,
}

/// A changed key whose new value makes the stored cursor meaningless: the feed is reset.
const RESETTING_KEYS: [&str; 4] = ["url", "collection", "kind", "stream_id"];

/// The keys whose values differ between two definitions: top-level keys, and `http.KEY`
/// inside the HTTP settings.
fn changed_keys(old: &FeedConfig, new: &FeedConfig) -> anyhow::Result<Vec<String>> {
    let old = serde_json::to_value(old)?;
    let new = serde_json::to_value(new)?;
    let empty = serde_json::Map::new();
    let (old, new) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut changed = Vec::new();
    for key in keys {
        let (a, b) = (old.get(key), new.get(key));
        if a == b {
            continue;
        }
        match (
            a.and_then(serde_json::Value::as_object),
            b.and_then(serde_json::Value::as_object),
        ) {
            (Some(a), Some(b)) => {
                let mut inner: Vec<&String> = a.keys().chain(b.keys()).collect();
                inner.sort();
                inner.dedup();
                for k in inner {
                    if a.get(k) != b.get(k) {
                        changed.push(format!("{key}.{k}"));
                    }
                }
            }
            _ => changed.push(key.clone()),
        }
    }
    Ok(changed)
}

/// Why a definition cannot be stored for the functions, if it cannot.
fn lambda_problem(feed: &FeedConfig) -> Option<String> {
    if feed.url.starts_with("file:") {
        return Some(format!(
            "feed {}: url {} is a file: URL, which the functions in Lambda cannot read; \
             serve the file over https:// or run this feed locally with `feedstix run`",
            feed.name, feed.url
        ));
    }
    None
}

/// What sync found for one feed.
enum Change {
    Added { leftover_state: bool },
    Changed { keys: Vec<String> },
    Unchanged,
}

/// `feedstix feeds sync` and `feedstix feeds add`.
pub async fn sync(
    config: &Config,
    target: &Target,
    options: &SyncOptions,
) -> anyhow::Result<ExitCode> {
    let file = config.path.display().to_string();
    let wanted: Vec<&FeedConfig> = match &options.only {
        Some(name) => vec![config
            .feed(name)
            .with_context(|| format!("no feed named {name} in {file}"))?],
        None => config.feeds.iter().collect(),
    };
    let cloud = Cloud::connect(target).await?;
    let table = cloud.feeds.table().to_string();
    let stored: BTreeMap<String, FeedConfig> = cloud
        .definitions()
        .await?
        .into_iter()
        .map(|f| (f.name.clone(), f))
        .collect();

    // Decide everything first: nothing is written unless every definition passes.
    let mut plan: Vec<(&FeedConfig, Change)> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for feed in &wanted {
        let change = match stored.get(&feed.name) {
            None => {
                let leftover = cloud
                    .states
                    .load(&feed.name)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?
                    .is_some_and(|s| s.version > 0 || s.epoch > 0);
                Change::Added {
                    leftover_state: leftover,
                }
            }
            Some(old) => {
                let keys = changed_keys(old, feed)?;
                if keys.is_empty() {
                    Change::Unchanged
                } else {
                    Change::Changed { keys }
                }
            }
        };
        if !matches!(change, Change::Unchanged) {
            if let Some(problem) = lambda_problem(feed) {
                problems.push(problem);
            }
        }
        plan.push((feed, change));
    }
    let removed: Vec<&String> = if options.only.is_some() {
        Vec::new()
    } else {
        stored
            .keys()
            .filter(|name| config.feed(name).is_none())
            .collect()
    };
    if problems.is_empty() && options.verify {
        for (feed, change) in &plan {
            if matches!(change, Change::Unchanged) {
                continue;
            }
            eprintln!("verifying {} ({})", feed.name, feed.url);
            if let Err(e) = feedstix::local::verify(feed, 1, RetryPolicy::default()).await {
                let e = if e.starts_with(&format!("feed {}", feed.name)) {
                    e
                } else {
                    format!("feed {}: {e}", feed.name)
                };
                problems.push(format!(
                    "{e} (check it with `feedstix verify`, or store it anyway with --no-verify)"
                ));
            }
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error: {p}");
        }
        bail!(
            "{} definition(s) of {file} cannot be stored; nothing was written to table {table}",
            problems.len()
        );
    }

    // The difference.
    let prefix = if options.dry_run { "would be " } else { "" };
    let (mut added, mut changed, mut unchanged) = (0, 0, 0);
    for (feed, change) in &plan {
        match change {
            Change::Added { leftover_state } => {
                added += 1;
                outln!(
                    "{prefix}added      {}{}",
                    feed.name,
                    if *leftover_state {
                        " (its earlier state is reset to a new epoch)"
                    } else {
                        ""
                    }
                );
            }
            Change::Changed { keys } => {
                changed += 1;
                let resets = keys.iter().any(|k| RESETTING_KEYS.contains(&k.as_str()));
                outln!(
                    "{prefix}changed    {}: {}{}",
                    feed.name,
                    keys.join(", "),
                    if resets && options.dry_run {
                        " (its state would be reset to a new epoch)"
                    } else {
                        ""
                    }
                );
            }
            Change::Unchanged => {
                unchanged += 1;
                outln!("unchanged  {}", feed.name);
            }
        }
    }
    for name in &removed {
        if options.prune {
            outln!("{prefix}removed    {name} (not in {file})");
        } else {
            outln!("kept       {name} (not in {file}; --prune removes it)");
        }
    }

    if !options.dry_run {
        for (feed, change) in &plan {
            let reset_why = match change {
                Change::Unchanged => continue,
                Change::Added { leftover_state } => {
                    leftover_state.then(|| "it was added again".to_string())
                }
                Change::Changed { keys } => {
                    let resetting: Vec<&str> = keys
                        .iter()
                        .map(String::as_str)
                        .filter(|k| RESETTING_KEYS.contains(k))
                        .collect();
                    (!resetting.is_empty()).then(|| format!("{} changed", resetting.join(", ")))
                }
            };
            cloud.feeds.put(feed).await?;
            if let Some(why) = reset_why {
                let next = cloud
                    .states
                    .reset(&feed.name)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?;
                outln!(
                    "reset      {}: {why}; state reset to epoch {} (cursor back to import_from; queued messages of older epochs are dropped)",
                    feed.name,
                    next.epoch
                );
            }
        }
        if options.prune {
            for name in &removed {
                cloud.feeds.delete(name).await?;
            }
        }
    }
    let removed_count = if options.prune { removed.len() } else { 0 };
    outln!(
        "{}: {added} added, {changed} changed, {removed_count} removed, {unchanged} unchanged{}",
        cloud.source,
        if options.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `feedstix feeds remove`.
pub async fn remove(target: &Target, name: &str) -> anyhow::Result<ExitCode> {
    let cloud = Cloud::connect(target).await?;
    cloud.definition(name).await?;
    cloud.feeds.delete(name).await?;
    outln!(
        "{name}: removed from table {}; its state stays in table {} (adding the feed again starts a new epoch)",
        cloud.feeds.table(),
        cloud.states.table()
    );
    Ok(ExitCode::SUCCESS)
}
