//! Helpers for the cloud command tests: a local AWS emulator (moto's server or LocalStack)
//! named by `AWS_ENDPOINT_URL`, fresh randomly named tables and queues per test, feeds
//! files written to a temporary folder, and the real binary run against them.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_sqs::types::QueueAttributeName;
use feedstix::aws::Clients;

/// The emulator's endpoint, or a failure that says how to start one.
pub fn endpoint() -> String {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "AWS_ENDPOINT_URL is not set: the cloud command tests run against a local AWS \
             emulator. Start one (`.venv/bin/moto_server -H 127.0.0.1 -p 4566 &`) and export \
             AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_ACCESS_KEY_ID=test \
             AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 (scripts/test does this)"
        ),
    }
}

/// One test's resources on the emulator.
pub struct Deployment {
    pub clients: Clients,
    pub prefix: String,
    pub feeds_table: String,
    pub state_table: String,
    pub fetch_queue: String,
    pub fetch_dlq: String,
    pub page_queue: String,
    pub page_dlq: String,
    pub worker_queue: String,
    pub worker_dlq: String,
    pub dir: tempfile::TempDir,
}

impl Deployment {
    /// Fresh tables and queues with random names, so tests share one emulator.
    pub async fn new() -> Deployment {
        endpoint();
        let clients = Clients::from_env().await;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("cli{}", &id[..10]);
        let feeds_table = format!("{prefix}-feeds");
        let state_table = format!("{prefix}-state");
        table(&clients, &feeds_table, "name").await;
        table(&clients, &state_table, "feed").await;
        let fetch_dlq = queue(&clients, &format!("{prefix}-fetch-dlq.fifo")).await;
        let fetch_queue = queue(&clients, &format!("{prefix}-fetch.fifo")).await;
        let page_dlq = queue(&clients, &format!("{prefix}-page-dlq.fifo")).await;
        let page_queue = queue(&clients, &format!("{prefix}-page.fifo")).await;
        let worker_dlq = queue(&clients, &format!("{prefix}-worker-dlq")).await;
        let worker_queue = queue(&clients, &format!("{prefix}-worker")).await;
        Deployment {
            clients,
            prefix,
            feeds_table,
            state_table,
            fetch_queue,
            fetch_dlq,
            page_queue,
            page_dlq,
            worker_queue,
            worker_dlq,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The options naming the tables and queues explicitly.
    pub fn tables(&self) -> Vec<String> {
        [
            "--feeds-table",
            &self.feeds_table,
            "--state-table",
            &self.state_table,
            "--fetch-queue-url",
            &self.fetch_queue,
            "--page-queue-url",
            &self.page_queue,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Writes a feeds file (and the files it names) into the test's folder.
    pub fn feeds_file(&self, name: &str, toml: &str) -> PathBuf {
        let mappers = self.dir.path().join("mappers");
        std::fs::create_dir_all(&mappers).unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mappers");
        for m in ["urlhaus.json", "feodo.json"] {
            std::fs::copy(shipped.join(m), mappers.join(m)).unwrap();
        }
        let path = self.dir.path().join(name);
        std::fs::write(&path, toml).unwrap();
        path
    }

    /// Runs the binary with `args` followed by the table options.
    pub fn run_on_tables(&self, args: &[&str]) -> Output {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(self.tables());
        run(&all)
    }

    /// A stored definition's JSON, or `None`.
    pub async fn stored(&self, feed: &str) -> Option<serde_json::Value> {
        let item = self
            .clients
            .dynamodb
            .get_item()
            .table_name(&self.feeds_table)
            .key(
                "name",
                aws_sdk_dynamodb::types::AttributeValue::S(feed.into()),
            )
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item?;
        let definition = item.get("definition")?.as_s().ok()?;
        Some(serde_json::from_str(definition).unwrap())
    }

    /// How many feeds the table holds.
    pub async fn stored_count(&self) -> usize {
        self.clients
            .dynamodb
            .scan()
            .table_name(&self.feeds_table)
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .items()
            .len()
    }

    /// The states table adapter.
    pub fn states(&self) -> feedstix::aws::dynamo::DynamoStates {
        feedstix::aws::dynamo::DynamoStates::new(
            self.clients.dynamodb.clone(),
            &self.state_table,
            feedstix::aws::claim::ClaimStore::new(self.clients.s3.clone(), "unused"),
        )
    }

    /// Sends one message to `queue` (FIFO when its URL says so).
    pub async fn send(&self, queue: &str, body: &str, group: &str, feed: Option<&str>) -> String {
        let mut request = self
            .clients
            .sqs
            .send_message()
            .queue_url(queue)
            .message_body(body);
        if queue.ends_with(".fifo") {
            request = request
                .message_group_id(group)
                .message_deduplication_id(uuid::Uuid::new_v4().simple().to_string());
        }
        if let Some(feed) = feed {
            request = request.message_attributes(
                "feed",
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(feed)
                    .build()
                    .unwrap(),
            );
        }
        request.send().await.unwrap().message_id.unwrap()
    }

    /// Every message now on `queue`, deleted as read: (body, group, feed attribute).
    pub async fn drain(&self, queue: &str) -> Vec<(String, Option<String>, Option<String>)> {
        let mut out = Vec::new();
        loop {
            let batch = self
                .clients
                .sqs
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await
                .unwrap()
                .messages
                .unwrap_or_default();
            if batch.is_empty() {
                return out;
            }
            for m in batch {
                let group = m
                    .attributes()
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                    })
                    .cloned();
                let feed = m
                    .message_attributes()
                    .and_then(|a| a.get("feed"))
                    .and_then(|v| v.string_value())
                    .map(str::to_string);
                out.push((m.body().unwrap_or_default().to_string(), group, feed));
                self.clients
                    .sqs
                    .delete_message()
                    .queue_url(queue)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

async fn table(clients: &Clients, name: &str, key: &str) {
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
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("create table {name}: {e:?}"));
}

async fn queue(clients: &Clients, name: &str) -> String {
    let mut request = clients.sqs.create_queue().queue_name(name);
    if name.ends_with(".fifo") {
        request = request
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::ContentBasedDeduplication, "false");
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("create queue {name}: {e:?}"))
        .queue_url
        .unwrap()
}

/// The binary.
pub fn feedstix() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_feedstix"));
    cmd.env_remove("FEEDSTIX_LOG");
    cmd
}

/// Runs the binary with `args`.
pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    feedstix().args(args).output().expect("the binary runs")
}

/// Standard output and error together.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Standard output as JSON.
pub fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// A feeds file with two RSS feeds and one CSV feed on example.invalid URLs (stored with
/// --no-verify; the URLs are never fetched).
pub const THREE_FEEDS: &str = r#"
[[feeds]]
name = "alpha"
kind = "rss"
url = "https://alpha.example.invalid/feed.xml"
interval = "1h"

[[feeds]]
name = "beta"
kind = "rss"
url = "https://beta.example.invalid/feed.xml"
interval = "30m"

[[feeds]]
name = "gamma"
kind = "csv"
url = "https://gamma.example.invalid/list.csv"
interval = "15m"
mapper = "mappers/urlhaus.json"
"#;
