//! Helpers for the AWS tests: an emulator account (moto's server, or LocalStack) named by
//! `AWS_ENDPOINT_URL`, with fresh queues, tables and a bucket per test; a loopback HTTP
//! server for feed sources; and a driver that plays Lambda's SQS event source, which the
//! emulator does not have: receive a batch, call the handler, delete what succeeded and
//! make the reported failures visible again.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use feedstix::aws::settings::{BundlerSettings, DispatcherSettings, FetcherSettings};
use feedstix::aws::sqs::Envelope;
use feedstix::aws::Clients;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Fails the test with a message that says how to run it, when no emulator is named.
pub fn endpoint() -> String {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "AWS_ENDPOINT_URL is not set: the AWS tests need a local emulator. Start one \
             (`moto_server -H 127.0.0.1 -p 4566`) and export AWS_ENDPOINT_URL, \
             AWS_ACCESS_KEY_ID=test, AWS_SECRET_ACCESS_KEY=test, AWS_DEFAULT_REGION=us-east-1; \
             scripts/test does this"
        ),
    }
}

/// One test's resources on the emulator.
pub struct Cloud {
    pub clients: Clients,
    pub prefix: String,
    pub feeds_table: String,
    pub state_table: String,
    pub bucket: String,
    pub fetch_queue: String,
    pub page_queue: String,
    pub worker_queue: String,
    pub events_queue: String,
    pub max_message_bytes: usize,
}

impl Cloud {
    /// Fresh resources with random names, so tests run in parallel on one emulator.
    pub async fn new(max_message_bytes: usize) -> Cloud {
        endpoint();
        let clients = Clients::from_env().await;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("fx{}", &id[..10]);
        let feeds_table = format!("{prefix}-feeds");
        let state_table = format!("{prefix}-state");
        let bucket = format!("{prefix}-claims");
        create_table(&clients, &feeds_table, "name").await;
        create_table(&clients, &state_table, "feed").await;
        clients
            .s3
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create bucket");
        let fetch_queue =
            create_queue(&clients, &format!("{prefix}-fetch.fifo"), max_message_bytes).await;
        let page_queue =
            create_queue(&clients, &format!("{prefix}-page.fifo"), max_message_bytes).await;
        let worker_queue =
            create_queue(&clients, &format!("{prefix}-worker"), max_message_bytes).await;
        let events_queue = create_queue(&clients, &format!("{prefix}-events"), 262_144).await;
        Cloud {
            clients,
            prefix,
            feeds_table,
            state_table,
            bucket,
            fetch_queue,
            page_queue,
            worker_queue,
            events_queue,
            max_message_bytes,
        }
    }

    /// The settings each function would read from its environment.
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |name| {
            Some(match name {
                "FEEDS_TABLE" => self.feeds_table.clone(),
                "STATE_TABLE" => self.state_table.clone(),
                "FETCH_QUEUE_URL" => self.fetch_queue.clone(),
                "PAGE_QUEUE_URL" => self.page_queue.clone(),
                "WORKER_QUEUE_URL" => self.worker_queue.clone(),
                "CLAIM_BUCKET" => self.bucket.clone(),
                "MAX_MESSAGE_BYTES" => self.max_message_bytes.to_string(),
                _ => return None,
            })
        }
    }

    pub fn dispatcher_settings(&self) -> DispatcherSettings {
        DispatcherSettings::from_lookup(&self.lookup()).expect("dispatcher settings")
    }

    pub fn fetcher_settings(&self) -> FetcherSettings {
        FetcherSettings::from_lookup(&self.lookup()).expect("fetcher settings")
    }

    pub fn bundler_settings(&self, envelope: Envelope) -> BundlerSettings {
        let mut settings = BundlerSettings::from_lookup(&self.lookup()).expect("bundler settings");
        settings.envelope = envelope;
        settings
    }

    /// Routes feedstix status events on the default bus to this test's events queue.
    pub async fn route_events(&self) {
        let arn = self
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(&self.events_queue)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue arn")
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("queue arn attribute");
        let rule = format!("{}-runs", self.prefix);
        self.clients
            .events
            .put_rule()
            .name(&rule)
            .event_pattern(r#"{"source":["feedstix"]}"#)
            .send()
            .await
            .expect("put rule");
        self.clients
            .events
            .put_targets()
            .rule(&rule)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("events-queue")
                    .arn(arn)
                    .build()
                    .expect("target"),
            )
            .send()
            .await
            .expect("put targets");
    }

    /// Every message now on `queue`, deleted as read, claim checks resolved.
    pub async fn drain(&self, queue: &str) -> Vec<Received> {
        let mut out = Vec::new();
        loop {
            let batch = receive(&self.clients, queue).await;
            if batch.is_empty() {
                return out;
            }
            for message in batch {
                let body = message.body().unwrap_or_default().to_string();
                let resolved = self.resolve(&body).await;
                let attributes = message
                    .message_attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| {
                                (k.clone(), v.string_value().unwrap_or_default().to_string())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                self.clients
                    .sqs
                    .delete_message()
                    .queue_url(queue)
                    .receipt_handle(message.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete message");
                out.push(Received {
                    raw_len: body.len(),
                    claimed: feedstix::aws::claim::parse_claim(&body).is_some(),
                    body: resolved,
                    attributes,
                });
            }
        }
    }

    async fn resolve(&self, body: &str) -> Vec<u8> {
        let claims = feedstix::aws::claim::ClaimStore::new(self.clients.s3.clone(), &self.bucket);
        claims.resolve(body).await.expect("claim check resolves")
    }

    /// Plays the SQS event source once: receives up to ten messages, hands them to
    /// `handler` as one event, deletes those not reported failed and makes the failed
    /// ones visible again at once. Returns the batch's message ids and the response, or
    /// `None` when the queue was empty.
    pub async fn deliver<F, Fut>(
        &self,
        queue: &str,
        handler: F,
    ) -> Option<(Vec<String>, SqsBatchResponse)>
    where
        F: FnOnce(SqsEvent) -> Fut,
        Fut: std::future::Future<Output = SqsBatchResponse>,
    {
        let batch = receive(&self.clients, queue).await;
        if batch.is_empty() {
            return None;
        }
        let handles: HashMap<String, String> = batch
            .iter()
            .map(|m| {
                (
                    m.message_id().unwrap_or_default().to_string(),
                    m.receipt_handle().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let ids: Vec<String> = batch
            .iter()
            .map(|m| m.message_id().unwrap_or_default().to_string())
            .collect();
        let event = SqsEvent {
            records: batch.into_iter().map(to_lambda_record).collect(),
        };
        let response = handler(event).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        for (id, handle) in &handles {
            if failed.contains(&id.as_str()) {
                self.clients
                    .sqs
                    .change_message_visibility()
                    .queue_url(queue)
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .expect("make visible again");
            } else {
                self.clients
                    .sqs
                    .delete_message()
                    .queue_url(queue)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .expect("delete message");
            }
        }
        Some((ids, response))
    }
}

/// One message read back.
#[derive(Debug, Clone)]
pub struct Received {
    /// The body as sent (a claim check for a large one).
    pub raw_len: usize,
    /// Whether it came by claim check.
    pub claimed: bool,
    /// The body, claim check resolved.
    pub body: Vec<u8>,
    /// The message attributes' string values.
    pub attributes: HashMap<String, String>,
}

async fn create_table(clients: &Clients, name: &str, key: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    clients
        .dynamodb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .send()
        .await
        .expect("create table");
}

async fn create_queue(clients: &Clients, name: &str, max_message_bytes: usize) -> String {
    let mut request = clients
        .sqs
        .create_queue()
        .queue_name(name)
        .attributes(
            QueueAttributeName::MaximumMessageSize,
            max_message_bytes.to_string(),
        )
        .attributes(QueueAttributeName::VisibilityTimeout, "60");
    if name.ends_with(".fifo") {
        request = request
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::ContentBasedDeduplication, "false");
    }
    request
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url")
}

async fn receive(clients: &Clients, queue: &str) -> Vec<aws_sdk_sqs::types::Message> {
    clients
        .sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .wait_time_seconds(0)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default()
}

/// The shape Lambda gives a handler for one received message.
fn to_lambda_record(message: aws_sdk_sqs::types::Message) -> SqsMessage {
    let attributes = message
        .attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    SqsMessage {
        message_id: message.message_id().map(str::to_string),
        receipt_handle: message.receipt_handle().map(str::to_string),
        body: message.body().map(str::to_string),
        attributes,
        event_source: Some("aws:sqs".into()),
        ..SqsMessage::default()
    }
}

/// What the loopback server answers for one path.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// An HTTP/1.1 server on 127.0.0.1 serving canned replies by path; an unknown path is a
/// 404. With `hold_until`, the first replies wait until that many requests have arrived,
/// so two fetchers can be made to read the same state before either commits; held replies
/// then leave a second apart, in arrival order.
pub struct Http {
    pub base: String,
    pub requests: Arc<AtomicUsize>,
}

impl Http {
    pub async fn start(routes: HashMap<String, Reply>, hold_until: usize) -> Http {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let routes = Arc::new(routes);
        let counter = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let routes = routes.clone();
                let counter = counter.clone();
                let gate = gate.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let seen = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    if seen >= hold_until {
                        gate.notify_waiters();
                    } else {
                        let _ = tokio::time::timeout(
                            std::time::Duration::from_secs(10),
                            gate.notified(),
                        )
                        .await;
                    }
                    if hold_until > 1 && seen <= hold_until {
                        let stagger = 1000 * (seen as u64 - 1);
                        tokio::time::sleep(std::time::Duration::from_millis(stagger)).await;
                    }
                    let reply = routes.get(&path).cloned().unwrap_or(Reply {
                        status: 404,
                        content_type: "text/plain",
                        body: b"not found".to_vec(),
                    });
                    let head = format!(
                        "HTTP/1.1 {} X\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        reply.status,
                        reply.content_type,
                        reply.body.len()
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&reply.body).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Http { base, requests }
    }
}

/// The repository's examples folder.
pub fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The ids of the objects of every bundle in `bodies`.
pub fn ids_in(bodies: &[Vec<u8>]) -> std::collections::BTreeSet<String> {
    bodies
        .iter()
        .flat_map(|b| {
            let bundle: serde_json::Value = serde_json::from_slice(b).expect("a bundle");
            bundle["objects"]
                .as_array()
                .expect("objects")
                .iter()
                .map(|o| o["id"].as_str().expect("id").to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}
