//! OpenCTI live-stream events and what feedstix makes of them.
//!
//! This module owns the event id (`<ms>-<seq>`, a Redis stream id), the payload of the
//! data events (`create`, `update`, `merge`, `delete`: an envelope whose `data` is the STIX
//! object as the producer made it) and the `x-feedstix-operation` objects that carry a
//! deletion, a merge or a perfect-sync replacement to a consumer (docs/stream.md).

use std::cmp::Ordering;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::stix::object::timestamp;
use crate::stix::{ids, StixObject};

/// The STIX type of the operation objects.
pub const OPERATION_TYPE: &str = "x-feedstix-operation";

/// The fixed creation time of the objects that describe the operation type: the identity
/// and the extension definition never change, so their timestamps must not either.
const DEFINITION_CREATED: &str = "2024-01-01T00:00:00.000Z";

/// A stream position as `(milliseconds, sequence)`, for ordering only; the text the server
/// sent is what is stored and sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventId {
    /// Milliseconds since the epoch.
    pub ms: u64,
    /// Sequence within that millisecond.
    pub seq: u64,
}

impl EventId {
    /// Parses `<ms>-<seq>`; `None` for anything else (the position is then kept but cannot
    /// be compared).
    pub fn parse(text: &str) -> Option<EventId> {
        let (ms, seq) = text.trim().split_once('-')?;
        Some(EventId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// The moment the position was written, when it is a plausible time.
    pub fn time(self) -> Option<DateTime<Utc>> {
        Utc.timestamp_millis_opt(i64::try_from(self.ms).ok()?)
            .single()
    }
}

/// Compares two positions written as text; `None` when either is not `<ms>-<seq>`.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    Some(EventId::parse(a)?.cmp(&EventId::parse(b)?))
}

/// What one data event asks of a consumer.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Create or update: the object's current state, to upsert.
    Upsert(StixObject),
    /// The object was deleted on the remote platform.
    Delete {
        /// The deleted object's id.
        target: String,
    },
    /// `sources` were merged into `target`, which is given in its new state.
    Merge {
        /// The surviving object, merged.
        target: StixObject,
        /// The ids of the objects merged away (deleted by the merge).
        sources: Vec<String>,
    },
}

/// Reads the payload of a `create`, `update`, `merge` or `delete` event.
///
/// # Errors
/// A reason when the payload is not JSON or holds no STIX object with a type and an id;
/// the caller skips the event and reports it.
pub fn read_change(event: &str, data: &str) -> Result<Change, String> {
    let payload: Value =
        serde_json::from_str(data).map_err(|e| format!("payload is not JSON: {e}"))?;
    let object = match payload.get("data") {
        Some(Value::Object(o)) => o.clone(),
        _ => return Err("payload has no `data` object".into()),
    };
    let id = object
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let has_type = object
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    if !has_type || !id.contains("--") {
        return Err("`data` is not a STIX object (no type or id)".into());
    }
    Ok(match event {
        "delete" => Change::Delete { target: id },
        "merge" => {
            let sources = payload
                .pointer("/context/sources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|s| s.get("id").and_then(Value::as_str))
                .filter(|s| s.contains("--") && *s != id)
                .map(str::to_string)
                .collect();
            Change::Merge {
                target: object,
                sources,
            }
        }
        _ => Change::Upsert(object),
    })
}

/// The kinds of operation a consumer applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Delete `target_ref`.
    Delete,
    /// Delete every `source_refs` object, moving its relationships to `target_ref`.
    Merge,
    /// Replace `target_ref` whole with the object upserted before it (perfect sync):
    /// properties the upsert lacks are removed, not kept.
    Replace,
}

impl Operation {
    /// The value of the `operation` property.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Delete => "delete",
            Operation::Merge => "merge",
            Operation::Replace => "replace",
        }
    }
}

/// Where an operation came from, for its id and its properties.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The remote platform's base URL.
    pub url: &'a str,
    /// The stream id.
    pub stream_id: &'a str,
    /// The event id, verbatim.
    pub event_id: &'a str,
}

/// Builds one `x-feedstix-operation` object. Its id is derived from the stream, the event
/// and the operation, so a re-delivered page yields the same object.
pub fn operation(
    op: Operation,
    target: &str,
    sources: &[String],
    origin: Origin<'_>,
    now: DateTime<Utc>,
) -> StixObject {
    let at = EventId::parse(origin.event_id)
        .and_then(EventId::time)
        .unwrap_or(now);
    let key = format!(
        "{}|{}|{}|{}|{}",
        origin.url,
        origin.stream_id,
        origin.event_id,
        op.as_str(),
        target
    );
    let mut object = json!({
        "type": OPERATION_TYPE,
        "spec_version": "2.1",
        "id": format!("{OPERATION_TYPE}--{}", Uuid::new_v5(&ids::NAMESPACE, key.as_bytes())),
        "created": timestamp(at),
        "modified": timestamp(at),
        "operation": op.as_str(),
        "target_ref": target,
        "event_id": origin.event_id,
        "stream_id": origin.stream_id,
        "extensions": { extension_definition_id(): { "extension_type": "new-sdo" } },
    });
    if !sources.is_empty() {
        object["source_refs"] = json!(sources);
    }
    into_object(object)
}

/// The identity that authors the operation extension definition.
pub fn feedstix_identity() -> StixObject {
    into_object(json!({
        "type": "identity",
        "spec_version": "2.1",
        "id": ids::identity_id("feedstix", "system"),
        "created": DEFINITION_CREATED,
        "modified": DEFINITION_CREATED,
        "name": "feedstix",
        "identity_class": "system",
    }))
}

/// The id of the extension definition of `x-feedstix-operation`.
pub fn extension_definition_id() -> String {
    ids::deterministic_id(
        "extension-definition",
        &json!({ "name": "feedstix stream operation", "version": "1.0.0" }),
    )
}

/// The extension definition that declares `x-feedstix-operation` as a new SDO, sent once
/// in every page holding an operation so each bundle explains itself.
pub fn extension_definition() -> StixObject {
    into_object(json!({
        "type": "extension-definition",
        "spec_version": "2.1",
        "id": extension_definition_id(),
        "created_by_ref": ids::identity_id("feedstix", "system"),
        "created": DEFINITION_CREATED,
        "modified": DEFINITION_CREATED,
        "name": "feedstix stream operation",
        "description": "A change a consumer applies to its copy of a remote OpenCTI live \
                        stream: delete target_ref; merge source_refs into target_ref; or \
                        replace target_ref whole with the version upserted before it.",
        "schema": "docs/stream.md in the feedstix repository",
        "version": "1.0.0",
        "extension_types": ["new-sdo"],
    }))
}

fn into_object(value: Value) -> StixObject {
    match value {
        Value::Object(map) => map,
        _ => StixObject::new(),
    }
}
