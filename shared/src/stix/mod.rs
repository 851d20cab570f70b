//! STIX 2.1: deterministic ids, the objects feedstix creates, and bundle composition.
//!
//! Objects are kept as `serde_json::Value` maps rather than typed structs: objects that
//! arrive from TAXII or a live stream must pass through exactly as their producer made
//! them, with properties and extensions no typed model would know.

pub mod bundle;
pub mod ids;
pub mod json;
pub mod object;

pub use object::{Provenance, Tlp};

/// One STIX object as JSON. Always a JSON object with at least `type` and `id`.
pub type StixObject = serde_json::Map<String, serde_json::Value>;

/// The `id` of an object, or `""` when it has none (which validation refuses earlier).
pub fn object_id(object: &StixObject) -> &str {
    object
        .get("id")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
}
