//! The AWS deployment's adapters and the three functions' handler logic.
//!
//! Built only with the `aws` feature. Each adapter implements a port of [`crate::ports`],
//! so the dispatcher, fetcher and bundler run here exactly as in `feedstix run`:
//!
//! - [`sqs`]: the fetch and page queues (FIFO, the feed as message group) and the worker
//!   queue that receives the bundles, with batch sends and message-size accounting.
//! - [`claim`]: the S3 claim check for a body larger than one message, and for cursors
//!   larger than one DynamoDB item.
//! - [`dynamo`]: the feeds table and the state table (conditional commits, leases, the
//!   stale-message counter).
//! - [`events`]: one EventBridge status event per feed run.
//! - [`secrets`]: `env:`, `ssm:` and `secretsmanager:` references, cached briefly.
//! - [`settings`]: the functions' configuration, read from environment variables once.
//! - [`handlers`]: what each function does with its event; the Lambda mains and the tests
//!   both call these.
//!
//! Every client honours `AWS_ENDPOINT_URL` (aws-config reads it), which is how the tests
//! run against moto's server and how a user points the functions at LocalStack.

pub mod claim;
pub mod dynamo;
pub mod events;
pub mod handlers;
pub mod metrics;
pub mod secrets;
pub mod settings;
pub mod sqs;

use aws_config::SdkConfig;

/// Why an AWS adapter failed, naming the resource involved. SDK errors are kept as their
/// full display chain (service code and message), which is what an operator acts on.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// An SQS call failed.
    #[error("queue {queue}: {action}: {reason}")]
    Sqs {
        /// The queue URL.
        queue: String,
        /// What was being done.
        action: &'static str,
        /// The cause.
        reason: String,
    },
    /// A DynamoDB call failed.
    #[error("table {table}: {action} (feed {feed}): {reason}")]
    Dynamo {
        /// The table name.
        table: String,
        /// The feed involved.
        feed: String,
        /// What was being done.
        action: &'static str,
        /// The cause.
        reason: String,
    },
    /// An S3 call failed.
    #[error("bucket {bucket}: {action} {key}: {reason}")]
    S3 {
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
        /// What was being done.
        action: &'static str,
        /// The cause.
        reason: String,
    },
    /// An EventBridge call failed.
    #[error("event bus {bus}: {reason}")]
    Events {
        /// The bus name.
        bus: String,
        /// The cause.
        reason: String,
    },
    /// A message or item did not have the expected shape.
    #[error("{what}: {reason}")]
    Decode {
        /// What was being decoded (queue message, table item).
        what: String,
        /// The cause.
        reason: String,
    },
}

/// The display chain of an SDK error: the service's error code and message, not only
/// "service error".
pub(crate) fn sdk_reason(error: &(dyn std::error::Error + 'static)) -> String {
    aws_sdk_sqs::error::DisplayErrorContext(error).to_string()
}

/// Loads the shared SDK configuration (region, credentials, `AWS_ENDPOINT_URL`) from the
/// environment, with one HTTPS client on rustls and ring shared by every service client.
pub async fn load_sdk_config() -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await
}

/// The service clients, built once per process (a Lambda cold start) and shared.
#[derive(Clone, Debug)]
pub struct Clients {
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// S3, for claim checks and large cursors.
    pub s3: aws_sdk_s3::Client,
    /// EventBridge.
    pub events: aws_sdk_eventbridge::Client,
    /// SSM Parameter Store, for `ssm:` secrets.
    pub ssm: aws_sdk_ssm::Client,
    /// Secrets Manager, for `secretsmanager:` secrets.
    pub secrets_manager: aws_sdk_secretsmanager::Client,
}

impl Clients {
    /// Every client from one SDK configuration. S3 uses path-style addressing when an
    /// endpoint override is set, since emulators on 127.0.0.1 cannot serve virtual-host
    /// bucket names.
    pub fn new(config: &SdkConfig) -> Clients {
        let s3_config = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        Clients {
            sqs: aws_sdk_sqs::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            events: aws_sdk_eventbridge::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
            secrets_manager: aws_sdk_secretsmanager::Client::new(config),
        }
    }

    /// Loads the configuration from the environment and builds every client.
    pub async fn from_env() -> Clients {
        Clients::new(&load_sdk_config().await)
    }
}
