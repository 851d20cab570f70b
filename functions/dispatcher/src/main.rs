//! Lambda function: the dispatcher step of the feedstix pipeline. The schedule's event in,
//! one fetch job on the fetch queue for every running feed that is due.
//!
//! A thin main in three steps: read the configuration once (a missing variable fails the
//! cold start with its name), build the clients once, then hand each event to
//! [`feedstix::aws::handlers::dispatch_payload`].

use feedstix::aws::handlers::{dispatch_payload, DispatcherContext};
use feedstix::aws::settings::DispatcherSettings;
use feedstix::aws::Clients;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();

    // Configuration first, so a template mistake fails here and names the variable.
    let settings = DispatcherSettings::from_env().map_err(|e| {
        tracing::error!(error = %e, "cold start failed");
        e
    })?;

    // Clients once per cold start; every invocation of this instance reuses them.
    let clients = Clients::from_env().await;
    let context = DispatcherContext::new(&clients, &settings);
    let context = &context;

    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            // Boxed: the dispatch future is deep, and the runtime's service nests it again.
            let report =
                Box::pin(dispatch_payload(context, event.payload, chrono::Utc::now())).await?;
            Ok::<_, Error>(serde_json::json!({
                "enqueued": report.enqueued,
                "not_due": report.not_due.len(),
                "in_flight": report.in_flight,
                "stopped": report.stopped.len(),
            }))
        },
    ))
    .await
}
