//! Lambda function: the bundler step of the feedstix pipeline. A batch of page parts from
//! the page queue in, STIX bundles within the message limit onto the worker queue.
//!
//! A thin main in three steps: read the configuration once (a missing variable fails the
//! cold start with its name), build the clients once, then hand each batch to
//! [`feedstix::aws::handlers::bundle_batch`], which reports failures per message.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use feedstix::aws::handlers::{bundle_batch, BundlerContext};
use feedstix::aws::settings::BundlerSettings;
use feedstix::aws::Clients;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();

    // Configuration first, so a template mistake fails here and names the variable.
    let settings = BundlerSettings::from_env().map_err(|e| {
        tracing::error!(error = %e, "cold start failed");
        e
    })?;

    // Clients once per cold start; every invocation of this instance reuses them.
    let clients = Clients::from_env().await;
    let context = BundlerContext::new(&clients, &settings);
    let context = &context;

    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(bundle_batch(context, event.payload).await)
    }))
    .await
}
