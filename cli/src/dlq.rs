//! `feedstix dlq list|show|redrive`: the dead-letter queues of a deployed stack.
//!
//! SQS moves a message to its dead-letter queue as it was sent; it cannot carry why the
//! last delivery failed. The reason shown is the feed's last error from the state table
//! (what the fetcher recorded when the page failed); the function's log line
//! `message failed` names the message id with the exact error.
//!
//! Looking at a queue means receiving its messages: `list` and `show` receive them with a
//! short visibility timeout and make them visible again at once. `redrive` receives, sends
//! each message to its source queue (same body and attributes, same FIFO group, a new
//! deduplication id so SQS does not drop it as a repeat) and only then deletes it from the
//! dead-letter queue.

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;

use anyhow::Context;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand, ValueEnum};
use feedstix::aws::claim::{parse_claim, ClaimStore};
use feedstix::aws::dynamo::DynamoStates;
use feedstix::aws::{load_sdk_config, Clients};
use feedstix::ports::StateStore;
use serde_json::json;

use crate::cloud::{output, outputs, stack_outputs};

/// Seconds a listed message stays hidden before it is made visible again (it is made
/// visible at once after listing; this only bounds a listing that is interrupted).
const PEEK_VISIBILITY_SECS: i32 = 30;
/// Seconds a message being redriven stays hidden while it is copied.
const REDRIVE_VISIBILITY_SECS: i32 = 120;

/// Dead-letter queue commands.
#[derive(Subcommand)]
pub enum DlqCommand {
    /// List the messages of the dead-letter queues: queue, message id, feed, receive count,
    /// when it was first sent, and the feed's last error as the likely reason.
    ///
    /// SQS keeps no failure reason with a message; the reason shown is the feed's last
    /// error from the state table. The function logs (`message failed`, with the message
    /// id) have the exact error. Listing receives the messages and makes them visible
    /// again, which adds one to their receive count.
    ///
    /// Example: feedstix dlq list --stack feedstix
    ///
    /// Example: feedstix dlq list --dlq-url https://sqs.…/fx-page-dlq.fifo --queue-url https://sqs.…/fx-page.fifo
    List(ListArgs),
    /// Print one dead-letter message as JSON: attributes, feed, the feed's last error, and
    /// the body (a claim check resolved when the bucket is known).
    ///
    /// Example: feedstix dlq show --stack feedstix --message-id 3f1c…
    Show(ShowArgs),
    /// Send dead-letter messages back to their source queue, once the cause is fixed.
    ///
    /// Each message is sent with the same body and attributes (on a FIFO queue, the same
    /// message group and a new deduplication id) and then deleted from the dead-letter
    /// queue. A message of an older epoch (its feed was reset since) is dropped and counted
    /// by the function, as usual.
    ///
    /// Example: feedstix dlq redrive --stack feedstix --queue page
    ///
    /// Example: feedstix dlq redrive --stack feedstix --message-id 3f1c…
    Redrive(RedriveArgs),
}

/// Which dead-letter queue of a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// Fetch jobs (FetchDeadLetterQueueUrl).
    Fetch,
    /// Page parts (PageDeadLetterQueueUrl).
    Page,
    /// Bundles the worker queue's consumer gave up on (WorkerDeadLetterQueueUrl).
    Worker,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Fetch => "fetch",
            Which::Page => "page",
            Which::Worker => "worker",
        }
    }
}

/// Which dead-letter queues a command works on.
#[derive(Args, Debug, Clone)]
pub struct DlqTarget {
    /// A deployed feedstix stack: its dead-letter queues, source queues, state table and
    /// bucket are read from its outputs.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["dlq_url", "queue_url"])]
    stack: Option<String>,
    /// With --stack, only this dead-letter queue [default: all of them].
    #[arg(long, value_enum, requires = "stack")]
    queue: Option<Which>,
    /// A dead-letter queue's URL (instead of --stack; needs --queue-url).
    #[arg(long, value_name = "URL", requires = "queue_url")]
    dlq_url: Option<String>,
    /// The queue whose dead letters those are: where `redrive` sends them.
    #[arg(long, value_name = "URL", requires = "dlq_url")]
    queue_url: Option<String>,
    /// The state table, for each feed's last error [default with --stack: its output].
    #[arg(long, value_name = "TABLE")]
    state_table: Option<String>,
    /// The claim-check bucket, to show claimed bodies [default with --stack: its output].
    #[arg(long, value_name = "BUCKET")]
    bucket: Option<String>,
    /// At most this many messages per dead-letter queue.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    max: usize,
}

/// `dlq list`.
#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    target: DlqTarget,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `dlq show`.
#[derive(Args)]
pub struct ShowArgs {
    #[command(flatten)]
    target: DlqTarget,
    /// The message's id (as `dlq list` shows it).
    #[arg(long, value_name = "ID")]
    message_id: String,
}

/// `dlq redrive`.
#[derive(Args)]
pub struct RedriveArgs {
    #[command(flatten)]
    target: DlqTarget,
    /// Only this message (repeatable) [default: every message].
    #[arg(long = "message-id", value_name = "ID")]
    message_ids: Vec<String>,
    /// Only the messages of this feed.
    #[arg(long, value_name = "NAME")]
    feed: Option<String>,
}

/// A dead-letter queue and the queue its messages came from.
struct Pair {
    label: String,
    dlq: String,
    source: String,
}

/// The resolved queues, clients and helpers.
struct Dlqs {
    clients: Clients,
    pairs: Vec<Pair>,
    states: Option<DynamoStates>,
    claims: Option<ClaimStore>,
    max: usize,
}

async fn connect(target: &DlqTarget) -> anyhow::Result<Dlqs> {
    let sdk = load_sdk_config().await;
    let clients = Clients::new(&sdk);
    let (pairs, state_table, bucket) = match (&target.stack, &target.dlq_url, &target.queue_url) {
        (Some(stack), _, _) => {
            let out = stack_outputs(&sdk, stack).await?;
            let mut pairs = Vec::new();
            for which in [Which::Fetch, Which::Page, Which::Worker] {
                if target.queue.is_some_and(|q| q != which) {
                    continue;
                }
                let (dlq_key, source_key) = match which {
                    Which::Fetch => (outputs::FETCH_DLQ, outputs::FETCH_QUEUE),
                    Which::Page => (outputs::PAGE_DLQ, outputs::PAGE_QUEUE),
                    Which::Worker => (outputs::WORKER_DLQ, outputs::WORKER_QUEUE),
                };
                // A stack using an existing worker queue has no worker dead-letter queue.
                if which == Which::Worker && !out.contains_key(dlq_key) {
                    if target.queue == Some(Which::Worker) {
                        anyhow::bail!(
                            "stack {stack} has no output {dlq_key}: it sends bundles to an existing worker queue, whose dead-letter queue (if any) it does not manage"
                        );
                    }
                    continue;
                }
                pairs.push(Pair {
                    label: which.name().into(),
                    dlq: output(&out, stack, dlq_key)?,
                    source: output(&out, stack, source_key)?,
                });
            }
            (
                pairs,
                target
                    .state_table
                    .clone()
                    .or_else(|| out.get(outputs::STATE_TABLE).cloned()),
                target
                    .bucket
                    .clone()
                    .or_else(|| out.get(outputs::BUCKET).cloned()),
            )
        }
        (None, Some(dlq), Some(source)) => (
            vec![Pair {
                label: "dlq".into(),
                dlq: dlq.clone(),
                source: source.clone(),
            }],
            target.state_table.clone(),
            target.bucket.clone(),
        ),
        _ => anyhow::bail!(
            "no dead-letter queue named: give --stack NAME, or --dlq-url and --queue-url"
        ),
    };
    let claims = bucket.map(|b| ClaimStore::new(clients.s3.clone(), b));
    let states = state_table.map(|table| {
        DynamoStates::new(
            clients.dynamodb.clone(),
            table,
            claims
                .clone()
                .unwrap_or_else(|| ClaimStore::new(clients.s3.clone(), "(no --bucket given)")),
        )
    });
    Ok(Dlqs {
        clients,
        pairs,
        states,
        claims,
        max: target.max,
    })
}

fn sqs_error(queue: &str, action: &str, e: impl std::error::Error + 'static) -> anyhow::Error {
    anyhow::anyhow!(
        "queue {queue}: {action}: {}",
        aws_sdk_sqs::error::DisplayErrorContext(e)
    )
}

/// One batch of messages received from `queue`, hidden for `visibility` seconds.
async fn receive(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    visibility: i32,
) -> anyhow::Result<Vec<Message>> {
    let answer = sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .wait_time_seconds(0)
        .visibility_timeout(visibility)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .map_err(|e| sqs_error(queue, "receiving", e))?;
    Ok(answer.messages.unwrap_or_default())
}

/// Makes messages visible again at once.
async fn release(sqs: &aws_sdk_sqs::Client, queue: &str, messages: &[Message]) {
    for m in messages {
        if let Some(handle) = m.receipt_handle() {
            if let Err(e) = sqs
                .change_message_visibility()
                .queue_url(queue)
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await
            {
                // Not fatal: the message reappears when its visibility timeout ends.
                tracing::warn!(queue, error = %aws_sdk_sqs::error::DisplayErrorContext(e), "could not make a message visible again");
            }
        }
    }
}

/// Every message of `queue` (up to `max`), received and made visible again.
///
/// On a FIFO queue, SQS holds back the rest of a message group while some of its messages
/// are hidden, so a group with more than ten dead messages shows its first ten.
async fn peek(sqs: &aws_sdk_sqs::Client, queue: &str, max: usize) -> anyhow::Result<Vec<Message>> {
    let mut seen = HashSet::new();
    let mut all = Vec::new();
    let outcome = async {
        while all.len() < max {
            let batch = receive(sqs, queue, PEEK_VISIBILITY_SECS).await?;
            if batch.is_empty() {
                break;
            }
            let mut new = 0;
            for m in batch {
                if seen.insert(m.message_id().unwrap_or_default().to_string()) {
                    all.push(m);
                    new += 1;
                }
            }
            if new == 0 {
                break;
            }
        }
        anyhow::Ok(())
    }
    .await;
    release(sqs, queue, &all).await;
    outcome?;
    all.truncate(max);
    Ok(all)
}

fn system_attribute(m: &Message, name: MessageSystemAttributeName) -> Option<&str> {
    m.attributes()
        .and_then(|a| a.get(&name))
        .map(String::as_str)
}

/// The feed a message belongs to: its `feed` attribute (page parts, bundles), the `feed`
/// field of its body (fetch jobs), or its FIFO group (the feed's name).
fn feed_of(m: &Message) -> Option<String> {
    if let Some(feed) = m
        .message_attributes()
        .and_then(|a| a.get("feed"))
        .and_then(|v| v.string_value())
    {
        return Some(feed.to_string());
    }
    let body = m.body().unwrap_or_default();
    if parse_claim(body).is_none() {
        if let Ok(doc) = serde_json::from_str::<serde_json::Value>(body) {
            if let Some(feed) = doc.get("feed").and_then(|f| f.as_str()) {
                return Some(feed.to_string());
            }
        }
    }
    system_attribute(m, MessageSystemAttributeName::MessageGroupId).map(str::to_string)
}

fn sent_at(m: &Message) -> Option<String> {
    system_attribute(m, MessageSystemAttributeName::SentTimestamp)
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn receive_count(m: &Message) -> u64 {
    system_attribute(m, MessageSystemAttributeName::ApproximateReceiveCount)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

impl Dlqs {
    /// The last error of each feed, looked up once per feed.
    async fn reasons(
        &self,
        feeds: impl Iterator<Item = String>,
    ) -> BTreeMap<String, Option<String>> {
        let mut out = BTreeMap::new();
        let Some(states) = &self.states else {
            return out;
        };
        for feed in feeds {
            if out.contains_key(&feed) {
                continue;
            }
            let reason = match states.load(&feed).await {
                Ok(state) => state.and_then(|s| s.status.last_error),
                Err(e) => Some(format!("(cannot read the feed's state: {e})")),
            };
            out.insert(feed, reason);
        }
        out
    }

    fn describe(
        &self,
        pair: &Pair,
        m: &Message,
        reasons: &BTreeMap<String, Option<String>>,
    ) -> serde_json::Value {
        let feed = feed_of(m);
        let reason = feed
            .as_ref()
            .and_then(|f| reasons.get(f).cloned().flatten());
        json!({
            "queue": pair.label,
            "dead_letter_queue": pair.dlq,
            "source_queue": pair.source,
            "message_id": m.message_id(),
            "feed": feed,
            "receive_count": receive_count(m),
            "sent": sent_at(m),
            "message_group": system_attribute(m, MessageSystemAttributeName::MessageGroupId),
            "claim_check": parse_claim(m.body().unwrap_or_default()).is_some(),
            "last_error_of_feed": reason,
        })
    }
}

/// Runs a `dlq` command.
pub async fn run(command: DlqCommand) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::List(args) => list(&args.target, args.json).await,
        DlqCommand::Show(args) => show(&args.target, &args.message_id).await,
        DlqCommand::Redrive(args) => redrive(&args).await,
    }
}

async fn list(target: &DlqTarget, as_json: bool) -> anyhow::Result<ExitCode> {
    let dlqs = connect(target).await?;
    let mut found: Vec<(&Pair, Message)> = Vec::new();
    for pair in &dlqs.pairs {
        for m in peek(&dlqs.clients.sqs, &pair.dlq, dlqs.max).await? {
            found.push((pair, m));
        }
    }
    let reasons = dlqs
        .reasons(found.iter().filter_map(|(_, m)| feed_of(m)))
        .await;
    let rows: Vec<serde_json::Value> = found
        .iter()
        .map(|(pair, m)| dlqs.describe(pair, m, &reasons))
        .collect();
    if as_json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<7} {:<38} {:<24} {:>8} {:<20}  LAST ERROR OF THE FEED",
        "QUEUE",
        "MESSAGE ID",
        "FEED",
        "RECEIVES",
        "SENT"
    );
    for r in &rows {
        let text = |k: &str| r[k].as_str().unwrap_or("-").to_string();
        outln!(
            "{:<7} {:<38} {:<24} {:>8} {:<20}  {}",
            text("queue"),
            text("message_id"),
            text("feed"),
            r["receive_count"],
            text("sent"),
            text("last_error_of_feed")
        );
    }
    let queues: Vec<String> = dlqs
        .pairs
        .iter()
        .map(|p| format!("{} ({})", p.label, p.dlq))
        .collect();
    outln!(
        "{} message(s) in {}",
        rows.len(),
        if queues.is_empty() {
            "no dead-letter queue".to_string()
        } else {
            queues.join(", ")
        }
    );
    Ok(ExitCode::SUCCESS)
}

async fn show(target: &DlqTarget, id: &str) -> anyhow::Result<ExitCode> {
    let dlqs = connect(target).await?;
    for pair in &dlqs.pairs {
        let messages = peek(&dlqs.clients.sqs, &pair.dlq, dlqs.max).await?;
        let Some(m) = messages.iter().find(|m| m.message_id() == Some(id)) else {
            continue;
        };
        let reasons = dlqs.reasons(feed_of(m).into_iter()).await;
        let mut doc = dlqs.describe(pair, m, &reasons);
        let raw = m.body().unwrap_or_default();
        let body = match (&dlqs.claims, parse_claim(raw)) {
            (Some(claims), Some(_)) => {
                let bytes = claims
                    .resolve(raw)
                    .await
                    .with_context(|| format!("message {id}: cannot read its claim-checked body"))?;
                String::from_utf8_lossy(&bytes).into_owned()
            }
            _ => raw.to_string(),
        };
        let attributes: BTreeMap<String, String> = m
            .message_attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| (k.clone(), v.string_value().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("attributes".into(), json!(attributes));
            obj.insert(
                "body".into(),
                serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
            );
        }
        outln!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    let queues: Vec<&str> = dlqs.pairs.iter().map(|p| p.dlq.as_str()).collect();
    anyhow::bail!("no message {id} in {}", queues.join(", "))
}

/// Sends one dead-letter message back to `source` as it was.
async fn send_back(sqs: &aws_sdk_sqs::Client, source: &str, m: &Message) -> anyhow::Result<()> {
    let mut request = sqs
        .send_message()
        .queue_url(source)
        .message_body(m.body().unwrap_or_default())
        .set_message_attributes(m.message_attributes().cloned());
    if source.ends_with(".fifo") {
        let group = system_attribute(m, MessageSystemAttributeName::MessageGroupId)
            .map(str::to_string)
            .or_else(|| feed_of(m))
            .unwrap_or_else(|| "redriven".into());
        request = request
            .message_group_id(group)
            .message_deduplication_id(format!("redrive-{}", uuid::Uuid::new_v4().simple()));
    }
    request
        .send()
        .await
        .map_err(|e| sqs_error(source, "sending a redriven message", e))?;
    Ok(())
}

async fn redrive(args: &RedriveArgs) -> anyhow::Result<ExitCode> {
    let dlqs = connect(&args.target).await?;
    let sqs = &dlqs.clients.sqs;
    let wanted = |m: &Message| {
        (args.message_ids.is_empty()
            || args
                .message_ids
                .iter()
                .any(|id| Some(id.as_str()) == m.message_id()))
            && (args.feed.is_none() || feed_of(m) == args.feed)
    };
    let mut total = 0;
    for pair in &dlqs.pairs {
        let mut held: Vec<Message> = Vec::new();
        let mut moved = 0usize;
        let outcome = async {
            while moved + held.len() < dlqs.max {
                let batch = receive(sqs, &pair.dlq, REDRIVE_VISIBILITY_SECS).await?;
                if batch.is_empty() {
                    break;
                }
                for m in batch {
                    if !wanted(&m) {
                        held.push(m);
                        continue;
                    }
                    let id = m.message_id().unwrap_or_default().to_string();
                    // Sent before deleted: a failure in between leaves a copy in both
                    // queues, never in neither.
                    send_back(sqs, &pair.source, &m).await?;
                    sqs.delete_message()
                        .queue_url(&pair.dlq)
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .send()
                        .await
                        .map_err(|e| sqs_error(&pair.dlq, "deleting a redriven message", e))?;
                    outln!(
                        "redriven {} {id} (feed {})",
                        pair.label,
                        feed_of(&m).unwrap_or_else(|| "-".into())
                    );
                    moved += 1;
                }
            }
            anyhow::Ok(())
        }
        .await;
        release(sqs, &pair.dlq, &held).await;
        outcome?;
        outln!(
            "{}: {moved} message(s) sent back from {} to {}",
            pair.label,
            pair.dlq,
            pair.source
        );
        total += moved;
    }
    if !args.message_ids.is_empty() && total < args.message_ids.len() {
        anyhow::bail!(
            "{} of the {} message id(s) given were not found in the dead-letter queue(s)",
            args.message_ids.len() - total,
            args.message_ids.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
