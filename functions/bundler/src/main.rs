//! Lambda function: the bundler step of the feedstix pipeline (a batch of page parts: bundles to the worker queue).
//!
//! A thin main: the runtime's tracing setup (AWS_LAMBDA_LOG_LEVEL, AWS_LAMBDA_LOG_FORMAT),
//! then the handler. The handler does not yet talk to AWS: the SQS, DynamoDB and S3
//! adapters it needs are not part of this build, so every invocation fails with an error
//! that says so, instead of silently acknowledging messages it did not process.

use lambda_runtime::{service_fn, Error, LambdaEvent};

/// Refuses the event: see the module docs.
async fn handle(event: LambdaEvent<aws_lambda_events::sqs::SqsEvent>) -> Result<(), Error> {
    tracing::error!(request_id = %event.context.request_id, "the AWS adapters are not part of this build");
    Err("feedstix-bundler: the AWS adapters (SQS, DynamoDB) are not part of this build;          use `feedstix run` locally"
        .into())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    lambda_runtime::run(service_fn(handle)).await
}
