//! Lambda function: the fetcher step of the feedstix pipeline. A batch of fetch jobs from
//! the fetch queue in, one page per job onto the page queue.
//!
//! A thin main in three steps: read the configuration once (a missing variable fails the
//! cold start with its name), build the clients once, then hand each batch to
//! [`feedstix::aws::handlers::fetch_batch`], which reports failures per message so that
//! only the failed jobs are delivered again.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use feedstix::aws::handlers::{fetch_batch, FetcherContext};
use feedstix::aws::settings::FetcherSettings;
use feedstix::aws::Clients;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();

    // Configuration first, so a template mistake fails here and names the variable.
    let settings = FetcherSettings::from_env().map_err(|e| {
        tracing::error!(error = %e, "cold start failed");
        e
    })?;

    // Clients once per cold start; every invocation of this instance reuses them.
    let clients = Clients::from_env().await;
    let context = FetcherContext::new(&clients, &settings);
    let context = &context;

    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(fetch_batch(context, event.payload, chrono::Utc::now()).await)
    }))
    .await
}
