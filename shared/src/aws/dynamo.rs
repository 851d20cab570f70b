//! The DynamoDB adapters: the feeds table ([`DynamoFeeds`]) and the state table
//! ([`DynamoStates`]).
//!
//! Feeds table, key `name`: the checked definition ([`FeedConfig`], mapper inlined) as a
//! JSON string in `definition`, plus `kind`, `url` and `interval_secs` at the top level so
//! an operator can read them in the console.
//!
//! State table, key `feed`: the [`FeedState`] as a JSON string in `state`, and beside it
//! the numbers that conditions and counters need: `version` and `epoch` (the condition of
//! every commit), `lease_until` (milliseconds since the epoch; absent when free) and
//! `dropped_stale` (a counter written with `ADD`, outside the versioned state, so counting
//! a stale message never makes a fetcher lose its commit) and `run_state` (written only by
//! an operator, so a commit never undoes a stop). A state too large for an item
//! (a CSV cursor with many row fingerprints) is stored in the claim-check bucket and the
//! item keeps its key in `state_key`.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};

use super::claim::{ClaimStore, STATE_PREFIX};
use super::{sdk_reason, AwsError};
use crate::config::FeedConfig;
use crate::cursor::{Cursor, FeedState, RunState};
use crate::ports::{Commit, FeedStore, PortError, StateStore};

/// DynamoDB's item size limit is 400 KB (names and values together).
pub const ITEM_MAX_BYTES: usize = 400 * 1000;
/// A state JSON larger than this goes to the bucket: the item limit less room for the
/// key, the numeric attributes and their names.
pub const STATE_INLINE_MAX_BYTES: usize = ITEM_MAX_BYTES - 8 * 1024;
/// A feed definition must fit in one item with its top-level attributes; a CSV mapper
/// is a few KiB, so this is a clear error rather than a case to handle.
pub const DEFINITION_MAX_BYTES: usize = ITEM_MAX_BYTES - 8 * 1024;
/// Tries of a reset against fetchers committing at the same time: each commit takes a
/// page's fetch, so a few tries are plenty.
const RESET_ATTEMPTS: u32 = 5;

fn string_attr(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn number_attr(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

/// The run state lives in its own attribute, written only by an operator, so a commit
/// (which writes the whole `state` JSON) can never undo a stop.
fn run_state_attr(item: &HashMap<String, AttributeValue>) -> RunState {
    match string_attr(item, "run_state").as_deref() {
        Some(text) => RunState::parse(text),
        None => RunState::Running,
    }
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The feeds table.
#[derive(Clone, Debug)]
pub struct DynamoFeeds {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoFeeds {
    /// The feeds table `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> DynamoFeeds {
        DynamoFeeds {
            client,
            table: table.into(),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn error(&self, feed: &str, action: &'static str, reason: String) -> AwsError {
        AwsError::Dynamo {
            table: self.table.clone(),
            feed: feed.to_string(),
            action,
            reason,
        }
    }

    fn decode(&self, item: &HashMap<String, AttributeValue>) -> Result<FeedConfig, AwsError> {
        let name = string_attr(item, "name").unwrap_or_default();
        let definition = string_attr(item, "definition")
            .ok_or_else(|| self.error(&name, "reading", "the item has no definition".into()))?;
        serde_json::from_str(&definition).map_err(|e| {
            self.error(
                &name,
                "reading",
                format!("the stored definition does not parse: {e}"),
            )
        })
    }

    /// Adds or replaces one feed definition (for `feeds sync` and the tests).
    ///
    /// # Errors
    /// The write failed, or the definition is larger than an item.
    pub async fn put(&self, feed: &FeedConfig) -> Result<(), AwsError> {
        let definition = serde_json::to_string(feed)
            .map_err(|e| self.error(&feed.name, "encoding", e.to_string()))?;
        if definition.len() > DEFINITION_MAX_BYTES {
            return Err(self.error(
                &feed.name,
                "writing",
                format!(
                    "the definition is {} bytes, more than a table item holds ({} bytes)",
                    definition.len(),
                    DEFINITION_MAX_BYTES
                ),
            ));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .item("name", AttributeValue::S(feed.name.clone()))
            .item("definition", AttributeValue::S(definition))
            .item("kind", AttributeValue::S(feed.kind().as_str().into()))
            .item("url", AttributeValue::S(feed.url.clone()))
            .item("interval_secs", n(feed.interval_secs))
            .send()
            .await
            .map_err(|e| self.error(&feed.name, "writing", sdk_reason(&e)))?;
        Ok(())
    }

    /// Removes one feed definition.
    ///
    /// # Errors
    /// The delete failed.
    pub async fn delete(&self, name: &str) -> Result<(), AwsError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("name", AttributeValue::S(name.into()))
            .send()
            .await
            .map_err(|e| self.error(name, "deleting", sdk_reason(&e)))?;
        Ok(())
    }
}

#[async_trait]
impl FeedStore for DynamoFeeds {
    async fn list(&self) -> Result<Vec<FeedConfig>, PortError> {
        let mut feeds = Vec::new();
        // A scan returns at most 1 MB per call; follow the continuation key to the end.
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.error("*", "listing", sdk_reason(&e)))?;
            for item in page.items() {
                match self.decode(item) {
                    Ok(feed) => feeds.push(feed),
                    // One bad definition must not stop every other feed.
                    Err(e) => tracing::error!(table = %self.table, error = %e, "feed skipped"),
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        feeds.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(feeds)
    }

    async fn get(&self, name: &str) -> Result<Option<FeedConfig>, PortError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("name", AttributeValue::S(name.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error(name, "reading", sdk_reason(&e)))?;
        match output.item {
            Some(item) => Ok(Some(self.decode(&item)?)),
            None => Ok(None),
        }
    }
}

/// The state table.
#[derive(Clone, Debug)]
pub struct DynamoStates {
    client: aws_sdk_dynamodb::Client,
    table: String,
    claims: ClaimStore,
}

impl DynamoStates {
    /// The state table `table`; states too large for an item go to `claims`' bucket.
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        claims: ClaimStore,
    ) -> DynamoStates {
        DynamoStates {
            client,
            table: table.into(),
            claims,
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn error(&self, feed: &str, action: &'static str, reason: String) -> AwsError {
        AwsError::Dynamo {
            table: self.table.clone(),
            feed: feed.to_string(),
            action,
            reason,
        }
    }

    async fn item(&self, feed: &str) -> Result<Option<HashMap<String, AttributeValue>>, AwsError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("feed", AttributeValue::S(feed.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error(feed, "reading state", sdk_reason(&e)))?;
        Ok(output.item)
    }

    /// Writes `stored` (its version already the new one) under `condition`, to the item or,
    /// when too large for one, to the bucket. Deletes the superseded state object, if any.
    async fn write_state(
        &self,
        feed: &str,
        stored: &FeedState,
        condition: &str,
        expected_version: u64,
        also_remove: &str,
    ) -> Result<Commit, PortError> {
        let json = serde_json::to_string(stored)?;

        // A state over the item limit goes to the bucket under a key of its own (a racing
        // writer must not overwrite the winner's object), and the item keeps the key.
        let (set, state_value, new_key) = if json.len() > STATE_INLINE_MAX_BYTES {
            let key = format!(
                "{STATE_PREFIX}{feed}/{}-{}.json",
                stored.version,
                uuid::Uuid::new_v4()
            );
            self.claims.put(&key, json.into_bytes()).await?;
            tracing::info!(feed, key = %key, "state larger than a table item; stored in the bucket");
            let set =
                format!("SET state_key = :s, version = :v, epoch = :e REMOVE #s{also_remove}");
            (set, key.clone(), Some(key))
        } else {
            let set =
                format!("SET #s = :s, version = :v, epoch = :e REMOVE state_key{also_remove}");
            (set, json, None)
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("feed", AttributeValue::S(feed.into()))
            .update_expression(set)
            .condition_expression(condition)
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":s", AttributeValue::S(state_value))
            .expression_attribute_values(":v", n(stored.version))
            .expression_attribute_values(":e", n(stored.epoch))
            .expression_attribute_values(":expected", n(expected_version))
            // The old values of what changed: a superseded state object's key, to delete.
            .return_values(ReturnValue::UpdatedOld)
            .send()
            .await;
        match result {
            Ok(output) => {
                let old_key = output
                    .attributes
                    .as_ref()
                    .and_then(|old| string_attr(old, "state_key"))
                    .filter(|old| Some(old) != new_key.as_ref());
                if let Some(old) = old_key {
                    if let Err(e) = self.claims.delete(&old).await {
                        tracing::warn!(feed, error = %e, "could not delete a superseded state object");
                    }
                }
                Ok(Commit::Committed)
            }
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                if let Some(key) = new_key {
                    let _ = self.claims.delete(&key).await;
                }
                Ok(Commit::Conflict)
            }
            Err(e) => Err(self.error(feed, "writing state", sdk_reason(&e)).into()),
        }
    }
}

#[async_trait]
impl StateStore for DynamoStates {
    async fn load(&self, feed: &str) -> Result<Option<FeedState>, PortError> {
        let Some(item) = self.item(feed).await? else {
            return Ok(None);
        };
        // An item made only by a lease or a drop count has no state yet.
        let Some(version) = number_attr(&item, "version") else {
            let mut state = FeedState::default();
            state.status.dropped_stale = number_attr(&item, "dropped_stale").unwrap_or(0);
            state.run_state = run_state_attr(&item);
            return Ok(Some(state));
        };
        let json = match (string_attr(&item, "state"), string_attr(&item, "state_key")) {
            (_, Some(key)) => String::from_utf8(self.claims.get(&key).await?)
                .map_err(|e| self.error(feed, "reading state", e.to_string()))?,
            (Some(json), None) => json,
            (None, None) => {
                return Err(self
                    .error(
                        feed,
                        "reading state",
                        "the item has a version but no state".into(),
                    )
                    .into())
            }
        };
        let mut state: FeedState = serde_json::from_str(&json).map_err(|e| {
            self.error(
                feed,
                "reading state",
                format!("the stored state does not parse: {e}"),
            )
        })?;
        // The item's numbers are authoritative: they are what the conditions check.
        state.version = version;
        state.epoch = number_attr(&item, "epoch").unwrap_or(0);
        state.status.dropped_stale = number_attr(&item, "dropped_stale").unwrap_or(0);
        state.run_state = run_state_attr(&item);
        Ok(Some(state))
    }

    async fn commit(
        &self,
        feed: &str,
        expected_version: u64,
        state: &FeedState,
    ) -> Result<Commit, PortError> {
        let mut stored = state.clone();
        stored.version = expected_version + 1;
        // The first commit finds no version (at most a lease or a drop count); every later
        // one must find the version it read and the same epoch, or a reset or another
        // fetcher came first.
        let condition = if expected_version == 0 && state.epoch == 0 {
            "attribute_not_exists(version) OR (version = :expected AND epoch = :e)"
        } else {
            "version = :expected AND epoch = :e"
        };
        self.write_state(feed, &stored, condition, expected_version, "")
            .await
    }

    async fn try_lease(
        &self,
        feed: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("feed", AttributeValue::S(feed.into()))
            .update_expression("SET lease_until = :until")
            .condition_expression("attribute_not_exists(lease_until) OR lease_until < :now")
            .expression_attribute_values(":until", n(until.timestamp_millis()))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(e) => Err(self.error(feed, "taking the lease", sdk_reason(&e)).into()),
        }
    }

    async fn release_lease(&self, feed: &str) -> Result<(), PortError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("feed", AttributeValue::S(feed.into()))
            .update_expression("REMOVE lease_until")
            .send()
            .await
            .map_err(|e| self.error(feed, "releasing the lease", sdk_reason(&e)))?;
        Ok(())
    }

    async fn count_dropped(&self, feed: &str, count: u64) -> Result<(), PortError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("feed", AttributeValue::S(feed.into()))
            .update_expression("ADD dropped_stale :n")
            .expression_attribute_values(":n", n(count))
            .send()
            .await
            .map_err(|e| self.error(feed, "counting dropped messages", sdk_reason(&e)))?;
        Ok(())
    }

    async fn reset(&self, feed: &str) -> Result<FeedState, PortError> {
        // Read, bump, write on the version read; a fetcher committing in between makes
        // the write fail, and the reset is tried again on the newer state.
        for _ in 0..RESET_ATTEMPTS {
            let current = self.load(feed).await?.unwrap_or_default();
            let mut next = current.clone();
            next.epoch += 1;
            next.version = current.version + 1;
            next.cursor = Cursor::Start;
            next.status.last_error = None;
            next.status.consecutive_failures = 0;
            let condition = if current.version == 0 {
                "attribute_not_exists(version) OR version = :expected"
            } else {
                "version = :expected"
            };
            match self
                .write_state(feed, &next, condition, current.version, ", lease_until")
                .await?
            {
                Commit::Committed => {
                    tracing::info!(feed, epoch = next.epoch, "feed reset");
                    return Ok(next);
                }
                Commit::Conflict => continue,
            }
        }
        Err(self
            .error(
                feed,
                "resetting",
                format!("the state kept changing during {RESET_ATTEMPTS} attempts; try again"),
            )
            .into())
    }

    async fn set_run_state(&self, feed: &str, run_state: RunState) -> Result<(), PortError> {
        let value = run_state.as_str();
        self.client
            .update_item()
            .table_name(&self.table)
            .key("feed", AttributeValue::S(feed.into()))
            .update_expression("SET run_state = :r")
            .expression_attribute_values(":r", AttributeValue::S(value.into()))
            .send()
            .await
            .map_err(|e| self.error(feed, "setting the run state", sdk_reason(&e)))?;
        Ok(())
    }
}
