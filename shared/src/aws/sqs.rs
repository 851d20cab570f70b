//! The SQS adapters: the fetch queue ([`SqsJobQueue`]), the page queue ([`SqsPageQueue`])
//! and the worker queue ([`WorkerQueue`]).
//!
//! Fetch and page queues are FIFO with the feed as message group, so one feed's jobs and
//! pages stay in order while feeds run in parallel. Their deduplication ids are built from
//! the feed, epoch, page and part (content-based deduplication stays off): a page re-sent
//! within SQS's five-minute window after a retry is then dropped by SQS instead of being
//! bundled twice.
//!
//! The worker queue gets one bundle per message with attributes naming the feed, kind,
//! epoch, sequence (`page.part.index`) and the user responsible for data creation. It may
//! be a standard or a FIFO queue (a `.fifo` URL), and may carry the bundle as is or in an
//! OpenCTI-worker envelope.
//!
//! Any body that, with its attributes, would exceed the queue's message size limit goes by
//! claim check ([`super::claim`]).

use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::claim::{ClaimStore, BUNDLES_PREFIX, PAGES_PREFIX};
use super::{sdk_reason, AwsError};
use crate::ports::{BundleMeta, BundleSink, FetchJob, JobQueue, PagePart, PageQueue, PortError};

/// Entries in one `SendMessageBatch` call: SQS accepts at most ten.
pub const BATCH_MAX_ENTRIES: usize = 10;
/// Total payload of one `SendMessageBatch` call (bodies and attributes): 256 KiB is what
/// every region and emulator accepts for a batch, whatever the queue's message limit.
pub const BATCH_MAX_BYTES: usize = 256 * 1024;
/// Longest FIFO message group id and deduplication id SQS accepts.
pub const FIFO_ID_MAX: usize = 128;
/// Message attributes per message SQS accepts; the worker queue uses five.
pub const MAX_ATTRIBUTES: usize = 10;

/// How bundles are laid out in worker-queue messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Envelope {
    /// The bundle's JSON is the message body.
    #[default]
    None,
    /// OpenCTI's worker format: `{"type":"bundle","applicant_id":USER,"content":BASE64}`,
    /// for sites whose OpenCTI workers read this queue directly.
    Opencti,
}

impl Envelope {
    /// Parses the `WORKER_ENVELOPE` setting.
    pub fn parse(text: &str) -> Option<Envelope> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "none" => Some(Envelope::None),
            "opencti" => Some(Envelope::Opencti),
            _ => None,
        }
    }
}

/// One message attribute: its name, SQS data type and value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attribute {
    name: &'static str,
    data_type: &'static str,
    value: String,
}

impl Attribute {
    fn string(name: &'static str, value: impl Into<String>) -> Attribute {
        Attribute {
            name,
            data_type: "String",
            value: value.into(),
        }
    }

    fn number(name: &'static str, value: u64) -> Attribute {
        Attribute {
            name,
            data_type: "Number",
            value: value.to_string(),
        }
    }

    fn to_sdk(&self) -> Result<MessageAttributeValue, AwsError> {
        MessageAttributeValue::builder()
            .data_type(self.data_type)
            .string_value(&self.value)
            .build()
            .map_err(|e| AwsError::Decode {
                what: format!("message attribute {}", self.name),
                reason: e.to_string(),
            })
    }
}

/// The size SQS charges a message against its limit: the body plus each attribute's
/// name, data type and value.
fn charged_size(body_len: usize, attributes: &[Attribute]) -> usize {
    body_len
        + attributes
            .iter()
            .map(|a| a.name.len() + a.data_type.len() + a.value.len())
            .sum::<usize>()
}

/// One message ready to send.
#[derive(Debug, Clone)]
struct Outgoing {
    body: Vec<u8>,
    group: String,
    dedup: String,
    attributes: Vec<Attribute>,
    /// Where the body goes if it is too large for a message.
    claim_key: String,
}

/// A FIFO id within SQS's length and character rules. Feed names are letters, digits and
/// `-`, so ids fit as they are; a longer one is shortened to a hash rather than cut, which
/// could make two ids equal.
fn fifo_id(id: String) -> String {
    if id.len() <= FIFO_ID_MAX {
        return id;
    }
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(id.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// One queue and what sending to it needs.
#[derive(Clone, Debug)]
pub struct Queue {
    sqs: aws_sdk_sqs::Client,
    url: String,
    fifo: bool,
    max_message_bytes: usize,
    claims: ClaimStore,
}

impl Queue {
    /// A queue at `url`; FIFO when the URL names a `.fifo` queue, as SQS requires of FIFO
    /// queue names. `max_message_bytes` is the queue's message size limit.
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        url: impl Into<String>,
        max_message_bytes: usize,
        claims: ClaimStore,
    ) -> Queue {
        let url = url.into();
        Queue {
            sqs,
            fifo: url.ends_with(".fifo"),
            url,
            max_message_bytes,
            claims,
        }
    }

    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the queue is FIFO.
    pub fn is_fifo(&self) -> bool {
        self.fifo
    }

    /// The message size limit.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    fn error(&self, action: &'static str, reason: String) -> AwsError {
        AwsError::Sqs {
            queue: self.url.clone(),
            action,
            reason,
        }
    }

    /// The body to send: the message itself, or a claim check when it would not fit.
    async fn body(&self, message: &Outgoing) -> Result<String, AwsError> {
        if charged_size(message.body.len(), &message.attributes) <= self.max_message_bytes {
            return String::from_utf8(message.body.clone())
                .map_err(|e| self.error("encoding a message", e.to_string()));
        }
        tracing::debug!(
            queue = %self.url,
            key = %message.claim_key,
            bytes = message.body.len(),
            "message over the size limit; sending a claim check"
        );
        self.claims
            .check_in(&message.claim_key, message.body.clone())
            .await
    }

    async fn send_one(&self, message: Outgoing) -> Result<(), AwsError> {
        let body = self.body(&message).await?;
        let mut request = self
            .sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body);
        if self.fifo {
            request = request
                .message_group_id(&message.group)
                .message_deduplication_id(&message.dedup);
        }
        for attribute in &message.attributes {
            request = request.message_attributes(attribute.name, attribute.to_sdk()?);
        }
        request
            .send()
            .await
            .map_err(|e| self.error("sending a message", sdk_reason(&e)))?;
        Ok(())
    }

    /// Sends `messages` in as few `SendMessageBatch` calls as the entry and size limits
    /// allow, in order. Returns the indexes (into `messages`) that SQS did not accept, with
    /// the reason, so the caller can fail exactly the work they came from.
    async fn send_all(&self, messages: Vec<Outgoing>) -> Vec<(usize, AwsError)> {
        let mut failed = Vec::new();
        let mut batch: Vec<(usize, String, Outgoing)> = Vec::new();
        let mut batch_bytes = 0;
        for (index, message) in messages.into_iter().enumerate() {
            let body = match self.body(&message).await {
                Ok(body) => body,
                Err(e) => {
                    failed.push((index, e));
                    continue;
                }
            };
            let size = charged_size(body.len(), &message.attributes);
            if !batch.is_empty()
                && (batch.len() == BATCH_MAX_ENTRIES || batch_bytes + size > BATCH_MAX_BYTES)
            {
                failed.extend(self.send_batch(std::mem::take(&mut batch)).await);
                batch_bytes = 0;
            }
            batch_bytes += size;
            batch.push((index, body, message));
        }
        if !batch.is_empty() {
            failed.extend(self.send_batch(batch).await);
        }
        failed
    }

    async fn send_batch(&self, batch: Vec<(usize, String, Outgoing)>) -> Vec<(usize, AwsError)> {
        let indexes: Vec<usize> = batch.iter().map(|(i, _, _)| *i).collect();
        let fail_all = |reason: String| {
            indexes
                .iter()
                .map(|i| (*i, self.error("sending a batch", reason.clone())))
                .collect::<Vec<_>>()
        };
        let mut entries = Vec::with_capacity(batch.len());
        for (index, body, message) in batch {
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .message_body(body);
            if self.fifo {
                entry = entry
                    .message_group_id(&message.group)
                    .message_deduplication_id(&message.dedup);
            }
            for attribute in &message.attributes {
                match attribute.to_sdk() {
                    Ok(value) => entry = entry.message_attributes(attribute.name, value),
                    Err(e) => return fail_all(e.to_string()),
                }
            }
            match entry.build() {
                Ok(entry) => entries.push(entry),
                Err(e) => return fail_all(e.to_string()),
            }
        }
        let output = match self
            .sqs
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) => return fail_all(sdk_reason(&e)),
        };
        output
            .failed
            .into_iter()
            .map(|entry| {
                let index = entry.id.parse().unwrap_or(usize::MAX);
                let reason = format!("{}: {}", entry.code, entry.message.unwrap_or_default());
                (index, self.error("sending a batch entry", reason))
            })
            .collect()
    }
}

/// The fetch queue.
#[derive(Clone, Debug)]
pub struct SqsJobQueue {
    queue: Queue,
}

impl SqsJobQueue {
    /// The fetch queue over `queue`.
    pub fn new(queue: Queue) -> SqsJobQueue {
        SqsJobQueue { queue }
    }

    fn outgoing(job: &FetchJob) -> Result<Outgoing, AwsError> {
        let body = serde_json::to_vec(job).map_err(|e| AwsError::Decode {
            what: format!("fetch job of feed {}", job.feed),
            reason: e.to_string(),
        })?;
        Ok(Outgoing {
            body,
            group: fifo_id(job.feed.clone()),
            dedup: fifo_id(format!("{}/{}/{}", job.feed, job.epoch, job.page)),
            attributes: Vec::new(),
            claim_key: format!("jobs/{}/{}/{}.json", job.feed, job.epoch, job.page),
        })
    }

    /// Sends many jobs in batches; returns the jobs that could not be sent, with why.
    pub async fn send_jobs(&self, jobs: Vec<FetchJob>) -> Vec<(FetchJob, AwsError)> {
        let mut failed = Vec::new();
        let mut outgoing = Vec::new();
        let mut sent_jobs = Vec::new();
        for job in jobs {
            match Self::outgoing(&job) {
                Ok(message) => {
                    outgoing.push(message);
                    sent_jobs.push(job);
                }
                Err(e) => failed.push((job, e)),
            }
        }
        for (index, error) in self.queue.send_all(outgoing).await {
            if let Some(job) = sent_jobs.get(index) {
                failed.push((job.clone(), error));
            }
        }
        failed
    }
}

#[async_trait::async_trait]
impl JobQueue for SqsJobQueue {
    async fn send(&self, job: FetchJob) -> Result<(), PortError> {
        Ok(self.queue.send_one(Self::outgoing(&job)?).await?)
    }
}

/// The page queue.
#[derive(Clone, Debug)]
pub struct SqsPageQueue {
    queue: Queue,
}

impl SqsPageQueue {
    /// The page queue over `queue`.
    pub fn new(queue: Queue) -> SqsPageQueue {
        SqsPageQueue { queue }
    }
}

#[async_trait::async_trait]
impl PageQueue for SqsPageQueue {
    /// Sends one part at a time: parts are near the message limit, so a batch would hold
    /// one anyway, and the fetcher streams a page with one part in memory.
    async fn send(&self, part: PagePart) -> Result<(), PortError> {
        let id = format!("{}/{}/{}/{}", part.feed, part.epoch, part.page, part.part);
        let body = serde_json::to_vec(&part).map_err(|e| AwsError::Decode {
            what: format!("page part {id}"),
            reason: e.to_string(),
        })?;
        let message = Outgoing {
            body,
            group: fifo_id(part.feed.clone()),
            dedup: fifo_id(id.clone()),
            attributes: vec![
                Attribute::string("feed", part.feed.as_str()),
                Attribute::number("epoch", part.epoch),
            ],
            claim_key: format!("{PAGES_PREFIX}{id}.json"),
        };
        self.queue.send_one(message).await?;
        tracing::debug!(feed = %part.feed, page = part.page, part = part.part, "page part sent");
        Ok(())
    }
}

/// The worker queue: one bundle per message.
#[derive(Clone, Debug)]
pub struct WorkerQueue {
    queue: Queue,
    envelope: Envelope,
}

/// The worker format of OpenCTI.
#[derive(Serialize)]
struct OpenctiEnvelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    applicant_id: Option<&'a str>,
    content: String,
}

impl WorkerQueue {
    /// The worker queue over `queue`, with bundles laid out as `envelope` says.
    pub fn new(queue: Queue, envelope: Envelope) -> WorkerQueue {
        WorkerQueue { queue, envelope }
    }

    /// The queue underneath.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    fn attributes(meta: &BundleMeta) -> Vec<Attribute> {
        let mut attributes = vec![
            Attribute::string("feed", meta.feed.as_str()),
            Attribute::string("kind", meta.kind.as_str()),
            Attribute::number("epoch", meta.epoch),
            Attribute::string(
                "sequence",
                format!("{}.{}.{}", meta.page, meta.part, meta.index),
            ),
        ];
        if let Some(user) = &meta.user {
            attributes.push(Attribute::string("user", user.as_str()));
        }
        debug_assert!(attributes.len() <= MAX_ATTRIBUTES);
        attributes
    }

    /// The largest bundle whose message (attributes and envelope included) fits the
    /// queue's limit, for the bundles of `part`. The bundler splits to this size, so only
    /// a single object larger than a message ever needs a claim check.
    pub fn max_bundle_bytes(&self, part: &PagePart) -> usize {
        let widest = BundleMeta {
            feed: part.feed.clone(),
            kind: part.kind,
            epoch: part.epoch,
            page: part.page,
            part: part.part,
            index: u32::MAX,
            user: part.user.clone(),
        };
        let attributes = charged_size(0, &Self::attributes(&widest));
        let room = self.queue.max_message_bytes.saturating_sub(attributes);
        match self.envelope {
            Envelope::None => room,
            Envelope::Opencti => {
                // The envelope's own fields, then base64's four bytes for every three.
                let fixed = 64 + part.user.as_deref().map_or(0, str::len);
                room.saturating_sub(fixed) / 4 * 3
            }
        }
    }

    fn outgoing(&self, meta: &BundleMeta, bundle: Vec<u8>) -> Result<Outgoing, AwsError> {
        let id = format!(
            "{}/{}/{}/{}/{}",
            meta.feed, meta.epoch, meta.page, meta.part, meta.index
        );
        let body = match self.envelope {
            Envelope::None => bundle,
            Envelope::Opencti => serde_json::to_vec(&OpenctiEnvelope {
                kind: "bundle",
                applicant_id: meta.user.as_deref(),
                content: base64::engine::general_purpose::STANDARD.encode(&bundle),
            })
            .map_err(|e| AwsError::Decode {
                what: format!("envelope of bundle {id}"),
                reason: e.to_string(),
            })?,
        };
        Ok(Outgoing {
            body,
            group: fifo_id(meta.feed.clone()),
            dedup: fifo_id(id.clone()),
            attributes: Self::attributes(meta),
            claim_key: format!("{BUNDLES_PREFIX}{id}.json"),
        })
    }

    /// Sends bundles in batches, in order. Returns the first failure: the caller fails the
    /// page part they came from, and a retry re-sends the same bundles (same ids).
    ///
    /// # Errors
    /// Any bundle SQS did not accept.
    pub async fn send_bundles(&self, bundles: Vec<(BundleMeta, Vec<u8>)>) -> Result<(), AwsError> {
        let mut outgoing = Vec::with_capacity(bundles.len());
        for (meta, bundle) in bundles {
            outgoing.push(self.outgoing(&meta, bundle)?);
        }
        match self.queue.send_all(outgoing).await.into_iter().next() {
            Some((_, error)) => Err(error),
            None => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl BundleSink for WorkerQueue {
    async fn emit(&self, meta: &BundleMeta, bundle: Vec<u8>) -> Result<(), PortError> {
        Ok(self.queue.send_one(self.outgoing(meta, bundle)?).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fifo_ids_become_hashes_and_short_ones_stay() {
        assert_eq!(fifo_id("feed/0/1/2".into()), "feed/0/1/2");
        let long = fifo_id("x".repeat(200));
        assert_eq!(long.len(), 64);
        assert_ne!(long, fifo_id("x".repeat(201)));
    }

    #[test]
    fn charged_size_counts_attribute_names_types_and_values() {
        let attributes = vec![
            Attribute::string("feed", "abc"),
            Attribute::number("epoch", 12),
        ];
        assert_eq!(
            charged_size(10, &attributes),
            10 + (4 + 6 + 3) + (5 + 6 + 2)
        );
    }

    #[test]
    fn envelope_setting_parses() {
        assert_eq!(Envelope::parse(""), Some(Envelope::None));
        assert_eq!(Envelope::parse("OpenCTI"), Some(Envelope::Opencti));
        assert_eq!(Envelope::parse("xml"), None);
    }
}
