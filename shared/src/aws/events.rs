//! Status events on EventBridge: one per feed run, so users can route alerts with a rule
//! on the default bus instead of polling the state table.
//!
//! Source `feedstix`; detail type `feedstix.run.completed` when a run's last page was
//! committed, `feedstix.run.failed` when a page failed (the cursor did not move). Events
//! are best effort: the data path never fails because a status event could not be sent.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde::Serialize;

use super::{sdk_reason, AwsError};

/// The `source` of every feedstix event.
pub const SOURCE: &str = "feedstix";
/// Detail type of a run whose last page was committed.
pub const RUN_COMPLETED: &str = "feedstix.run.completed";
/// Detail type of a run that stopped on a failed page.
pub const RUN_FAILED: &str = "feedstix.run.failed";
/// The bus used when none is configured.
pub const DEFAULT_BUS: &str = "default";

/// The detail of a run event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunDetail {
    /// The feed.
    pub feed: String,
    /// The feed's epoch.
    pub epoch: u64,
    /// The page the run ended on.
    pub page: u64,
    /// Objects handed on by the run's last page.
    pub objects: u64,
    /// Items or rows skipped on that page.
    pub skipped: u64,
    /// Why the page failed, for a failed run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Publishes run events.
#[derive(Clone, Debug)]
pub struct RunEvents {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl RunEvents {
    /// A publisher to `bus` (`default` for the account's default bus).
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> RunEvents {
        RunEvents {
            client,
            bus: bus.into(),
        }
    }

    /// Sends one event.
    ///
    /// # Errors
    /// EventBridge refused the call or the entry.
    pub async fn publish(&self, detail_type: &str, detail: &RunDetail) -> Result<(), AwsError> {
        let error = |reason: String| AwsError::Events {
            bus: self.bus.clone(),
            reason,
        };
        let json = serde_json::to_string(detail).map_err(|e| error(e.to_string()))?;
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(detail_type)
            .detail(json)
            .resources(format!("feedstix:feed/{}", detail.feed))
            .build();
        let output = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| error(sdk_reason(&e)))?;
        if output.failed_entry_count > 0 {
            let reason = output
                .entries()
                .iter()
                .filter_map(|e| e.error_message())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(error(reason));
        }
        Ok(())
    }

    /// Sends one event, logging instead of failing (see the module docs).
    pub async fn publish_best_effort(&self, detail_type: &str, detail: &RunDetail) {
        if let Err(e) = self.publish(detail_type, detail).await {
            tracing::warn!(feed = %detail.feed, error = %e, "status event not sent");
        }
    }
}
