//! Builders for the STIX objects feedstix creates itself: author identities, TLP marking
//! definitions, reports, indicators, observables, vulnerabilities, relationships.
//!
//! Every builder gives a deterministic id (see [`super::ids`]) and deterministic
//! timestamps, so fetching the same source item twice yields the same object.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::ids;
use super::StixObject;

/// Formats a timestamp the way STIX 2.1 expects: UTC, `Z`, millisecond precision.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The fixed creation time of the standard TLP marking definitions.
const TLP_CREATED: &str = "2017-01-20T00:00:00.000Z";

/// A Traffic Light Protocol marking, with the ids OpenCTI uses for each level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Tlp {
    /// TLP:CLEAR, which shares the id of STIX's TLP:WHITE.
    #[serde(rename = "TLP:CLEAR")]
    Clear,
    /// TLP:GREEN.
    #[serde(rename = "TLP:GREEN")]
    Green,
    /// TLP:AMBER.
    #[serde(rename = "TLP:AMBER")]
    Amber,
    /// TLP:AMBER+STRICT, which has no STIX standard object; OpenCTI's id is used.
    #[serde(rename = "TLP:AMBER+STRICT")]
    AmberStrict,
    /// TLP:RED.
    #[serde(rename = "TLP:RED")]
    Red,
}

impl Tlp {
    /// All levels, in the order a configuration error lists them.
    pub const ALL: [Tlp; 5] = [
        Tlp::Clear,
        Tlp::Green,
        Tlp::Amber,
        Tlp::AmberStrict,
        Tlp::Red,
    ];

    /// Parses `TLP:CLEAR` and friends, case-insensitively; `TLP:WHITE` means CLEAR.
    pub fn parse(text: &str) -> Option<Tlp> {
        match text.trim().to_ascii_uppercase().as_str() {
            "TLP:CLEAR" | "TLP:WHITE" => Some(Tlp::Clear),
            "TLP:GREEN" => Some(Tlp::Green),
            "TLP:AMBER" => Some(Tlp::Amber),
            "TLP:AMBER+STRICT" => Some(Tlp::AmberStrict),
            "TLP:RED" => Some(Tlp::Red),
            _ => None,
        }
    }

    /// The configuration spelling, `TLP:CLEAR` and so on.
    pub fn name(self) -> &'static str {
        match self {
            Tlp::Clear => "TLP:CLEAR",
            Tlp::Green => "TLP:GREEN",
            Tlp::Amber => "TLP:AMBER",
            Tlp::AmberStrict => "TLP:AMBER+STRICT",
            Tlp::Red => "TLP:RED",
        }
    }

    /// The marking definition's id.
    pub fn id(self) -> &'static str {
        match self {
            Tlp::Clear => "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
            Tlp::Green => "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
            Tlp::Amber => "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
            Tlp::AmberStrict => "marking-definition--826578e1-40ad-459f-bc73-ede076f81f37",
            Tlp::Red => "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
        }
    }

    /// The marking definition object. The four levels STIX defines are emitted exactly as
    /// the STIX 2.1 specification gives them (TLP:CLEAR as the TLP:WHITE object it shares
    /// an id with), so validators and consumers recognise them; AMBER+STRICT, which STIX
    /// lacks, is a statement marking under OpenCTI's id.
    pub fn definition(self) -> StixObject {
        let (name, level) = match self {
            Tlp::Clear => ("TLP:WHITE", "white"),
            Tlp::Green => ("TLP:GREEN", "green"),
            Tlp::Amber => ("TLP:AMBER", "amber"),
            Tlp::Red => ("TLP:RED", "red"),
            Tlp::AmberStrict => {
                return into_object(json!({
                    "type": "marking-definition",
                    "spec_version": "2.1",
                    "id": self.id(),
                    "created": TLP_CREATED,
                    "name": "TLP:AMBER+STRICT",
                    "definition_type": "statement",
                    "definition": { "statement": "TLP:AMBER+STRICT" },
                }))
            }
        };
        into_object(json!({
            "type": "marking-definition",
            "spec_version": "2.1",
            "id": self.id(),
            "created": TLP_CREATED,
            "name": name,
            "definition_type": "tlp",
            "definition": { "tlp": level },
        }))
    }
}

/// Who made an object and how it may be shared: applied to the objects feedstix creates
/// (never to objects that arrive as STIX).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Provenance {
    /// The author organisation's name, if the feed names one.
    pub author: Option<String>,
    /// The TLP markings to apply.
    pub markings: Vec<Tlp>,
}

impl Provenance {
    /// The author identity's id, if there is an author.
    pub fn author_id(&self) -> Option<String> {
        self.author.as_deref().map(organization_id)
    }

    /// Adds `created_by_ref` and `object_marking_refs` to an object that feedstix made.
    pub fn apply(&self, object: &mut StixObject) {
        if let Some(id) = self.author_id() {
            object.insert("created_by_ref".into(), Value::String(id));
        }
        if !self.markings.is_empty() {
            let refs = self
                .markings
                .iter()
                .map(|m| Value::String(m.id().into()))
                .collect();
            object.insert("object_marking_refs".into(), Value::Array(refs));
        }
    }

    /// The objects a consumer needs to resolve this provenance's references.
    pub fn objects(&self) -> Vec<StixObject> {
        let mut out: Vec<StixObject> = self
            .author
            .as_deref()
            .map(organization)
            .into_iter()
            .collect();
        out.extend(self.markings.iter().map(|m| m.definition()));
        out
    }
}

/// The id of the organisation identity `name`, remembered for the last name asked on this
/// thread: a feed asks for its author's id for every object it makes, and computing it is
/// a SHA-1 each time (4% of an RSS run before it was remembered).
fn organization_id(name: &str) -> String {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(String, String)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match last.as_ref() {
            Some((cached, id)) if cached == name => id.clone(),
            _ => {
                let id = ids::identity_id(name, "organization");
                *last = Some((name.to_string(), id.clone()));
                id
            }
        }
    })
}

/// An organisation identity, used as the author of created objects.
pub fn organization(name: &str) -> StixObject {
    into_object(json!({
        "type": "identity",
        "spec_version": "2.1",
        "id": ids::identity_id(name, "organization"),
        "created": TLP_CREATED,
        "modified": TLP_CREATED,
        "name": name.trim(),
        "identity_class": "organization",
    }))
}

/// A vulnerability named by its CVE (or other) id.
pub fn vulnerability(name: &str, provenance: &Provenance, at: DateTime<Utc>) -> StixObject {
    let mut o = into_object(json!({
        "type": "vulnerability",
        "spec_version": "2.1",
        "id": ids::named_sdo_id("vulnerability", name),
        "created": timestamp(at),
        "modified": timestamp(at),
        "name": name,
    }));
    if name.to_ascii_uppercase().starts_with("CVE-") {
        o.insert(
            "external_references".into(),
            json!([{ "source_name": "cve", "external_id": name }]),
        );
    }
    provenance.apply(&mut o);
    o
}

/// A cyber-observable whose identity is its `value` (ipv4-addr, domain-name, url, …).
/// SCOs carry no `created_by_ref`; markings apply.
pub fn value_observable(stix_type: &str, value: &str, provenance: &Provenance) -> StixObject {
    let mut o = into_object(json!({
        "type": stix_type,
        "spec_version": "2.1",
        "id": ids::value_sco_id(stix_type, value),
        "value": value,
    }));
    if !provenance.markings.is_empty() {
        let refs = provenance
            .markings
            .iter()
            .map(|m| Value::String(m.id().into()))
            .collect();
        o.insert("object_marking_refs".into(), Value::Array(refs));
    }
    o
}

/// A relationship between two objects.
pub fn relationship(
    relationship_type: &str,
    source_ref: &str,
    target_ref: &str,
    provenance: &Provenance,
    at: DateTime<Utc>,
) -> StixObject {
    let mut o = into_object(json!({
        "type": "relationship",
        "spec_version": "2.1",
        "id": ids::relationship_id(relationship_type, source_ref, target_ref, None, None),
        "created": timestamp(at),
        "modified": timestamp(at),
        "relationship_type": relationship_type,
        "source_ref": source_ref,
        "target_ref": target_ref,
    }));
    provenance.apply(&mut o);
    o
}

/// Unwraps a `json!` object literal; only called on literals that are objects.
pub(crate) fn into_object(value: Value) -> StixObject {
    match value {
        Value::Object(map) => map,
        _ => StixObject::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlp_parse_roundtrip() {
        for t in Tlp::ALL {
            assert_eq!(Tlp::parse(t.name()), Some(t));
            assert_eq!(t.definition()["id"], t.id());
        }
        assert_eq!(Tlp::parse("tlp:white"), Some(Tlp::Clear));
        assert_eq!(Tlp::parse("TLP:PURPLE"), None);
    }

    #[test]
    fn provenance_applies_author_and_markings() {
        let p = Provenance {
            author: Some("abuse.ch".into()),
            markings: vec![Tlp::Green],
        };
        let mut o = StixObject::new();
        p.apply(&mut o);
        assert_eq!(
            o["created_by_ref"],
            "identity--0303206b-ec74-5e9e-81df-e6532e9c1e91"
        );
        assert_eq!(o["object_marking_refs"][0], Tlp::Green.id());
        // The remembered id follows the name asked for.
        let other = Provenance {
            author: Some("Other Org".into()),
            markings: Vec::new(),
        };
        assert_eq!(
            other.author_id(),
            Some(ids::identity_id("Other Org", "organization"))
        );
        assert_eq!(
            p.author_id(),
            Some(ids::identity_id("abuse.ch", "organization"))
        );
        assert_eq!(p.objects().len(), 2);
    }
}
