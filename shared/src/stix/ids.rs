//! Deterministic STIX ids.
//!
//! The same source item must always yield the same id, so that a consumer can upsert and
//! at-least-once delivery stays harmless. An id is `<type>--` followed by a UUIDv5 in the
//! namespace OpenCTI and the STIX 2.1 specification use for SCOs, computed over the RFC 8785
//! canonical JSON of the type's id-contributing properties. Which properties contribute,
//! and how they are normalised (lower-cased names, trimmed patterns), follows OpenCTI's
//! rules for SDOs and the STIX 2.1 specification for SCOs, so ids agree with objects that
//! OpenCTI itself creates.

use serde_json::{Map, Value};
use uuid::Uuid;

/// The UUIDv5 namespace of STIX 2.1 SCO ids, which OpenCTI reuses for its SDO ids.
pub const NAMESPACE: Uuid = Uuid::from_u128(0x00abedb4_aa42_466c_9c01_fed23315a9b7);

/// Computes `<stix_type>--<uuidv5>` over the canonical JSON of `props`.
///
/// Empty values (null, `""`, empty arrays and objects) are dropped first, as OpenCTI does,
/// so an absent optional property and an empty one give the same id.
pub fn deterministic_id(stix_type: &str, props: &Value) -> String {
    let canonical = canonical_json(&drop_empty(props));
    format!(
        "{stix_type}--{}",
        Uuid::new_v5(&NAMESPACE, canonical.as_bytes())
    )
}

/// The id of a report: lower-cased trimmed name plus the published timestamp as written.
pub fn report_id(name: &str, published: &str) -> String {
    deterministic_id(
        "report",
        &serde_json::json!({ "name": normalize_name(name), "published": published }),
    )
}

/// The id of an indicator: its pattern, trimmed.
pub fn indicator_id(pattern: &str) -> String {
    deterministic_id(
        "indicator",
        &serde_json::json!({ "pattern": pattern.trim() }),
    )
}

/// The id of an identity: lower-cased trimmed name plus identity class.
pub fn identity_id(name: &str, identity_class: &str) -> String {
    deterministic_id(
        "identity",
        &serde_json::json!({ "name": normalize_name(name), "identity_class": identity_class }),
    )
}

/// The id of an SDO identified by its name alone (malware, tool, vulnerability, …).
pub fn named_sdo_id(stix_type: &str, name: &str) -> String {
    deterministic_id(
        stix_type,
        &serde_json::json!({ "name": normalize_name(name) }),
    )
}

/// The id of an attack pattern: its MITRE id (lower-cased) when known, else its name.
pub fn attack_pattern_id(name: &str, mitre_id: Option<&str>) -> String {
    match mitre_id.map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => deterministic_id(
            "attack-pattern",
            &serde_json::json!({ "x_mitre_id": m.to_lowercase() }),
        ),
        None => named_sdo_id("attack-pattern", name),
    }
}

/// The id of a relationship: its type, both ends, and its start and stop times if any.
pub fn relationship_id(
    relationship_type: &str,
    source_ref: &str,
    target_ref: &str,
    start_time: Option<&str>,
    stop_time: Option<&str>,
) -> String {
    deterministic_id(
        "relationship",
        &serde_json::json!({
            "relationship_type": relationship_type,
            "source_ref": source_ref,
            "target_ref": target_ref,
            "start_time": start_time,
            "stop_time": stop_time,
        }),
    )
}

/// The id of an SCO whose only contributing property is `value` (ipv4-addr, ipv6-addr,
/// domain-name, url, email-addr, mac-addr, …).
pub fn value_sco_id(stix_type: &str, value: &str) -> String {
    deterministic_id(stix_type, &serde_json::json!({ "value": value }))
}

/// The id of a file SCO: one hash chosen by the specification's priority (MD5, SHA-1,
/// SHA-256, SHA-512), else the file name. `None` when the file has neither.
pub fn file_id(hashes: &Map<String, Value>, name: Option<&str>) -> Option<String> {
    const PRIORITY: [&str; 4] = ["MD5", "SHA-1", "SHA-256", "SHA-512"];
    for algo in PRIORITY {
        if let Some(Value::String(h)) = hashes.get(algo) {
            if !h.is_empty() {
                return Some(deterministic_id(
                    "file",
                    &serde_json::json!({ "hashes": { algo: h } }),
                ));
            }
        }
    }
    name.filter(|n| !n.is_empty())
        .map(|n| deterministic_id("file", &serde_json::json!({ "name": n })))
}

/// Lower-cases and trims a name the way OpenCTI does before hashing it.
pub fn normalize_name(name: &str) -> String {
    name.trim().to_lowercase()
}

fn drop_empty(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !is_empty(v))
                .map(|(k, v)| (k.clone(), drop_empty(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Serializes `value` as RFC 8785 (JSON Canonicalization Scheme) text.
///
/// Keys are sorted by their UTF-16 code units and strings are escaped as ECMAScript's
/// `JSON.stringify` does. Numbers: integers are exact; other numbers use the shortest
/// round-trip form, which matches ECMAScript except for exponents outside 1e-7..1e21,
/// which no id-contributing property of a feed carries.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every pair of the reference vectors, computed with OpenCTI's own library.
    #[test]
    fn reference_vectors() {
        let doc: Value =
            serde_json::from_str(include_str!("../../tests/data/id_vectors.json")).unwrap();
        let vectors = doc["vectors"].as_array().unwrap();
        assert!(vectors.len() >= 14);
        for v in vectors {
            let kind = v["kind"].as_str().unwrap();
            let input = &v["input"];
            let s = |k: &str| input[k].as_str().unwrap_or_default();
            let got = match kind {
                "report" => report_id(s("name"), s("published")),
                "indicator" => indicator_id(s("pattern")),
                "identity" => identity_id(s("name"), s("identity_class")),
                "threat-actor" => deterministic_id(
                    kind,
                    &json!({"name": normalize_name(s("name")), "opencti_type": s("opencti_type")}),
                ),
                "attack-pattern" => attack_pattern_id(s("name"), input["x_mitre_id"].as_str()),
                "relationship" => relationship_id(
                    s("relationship_type"),
                    s("source_ref"),
                    s("target_ref"),
                    None,
                    None,
                ),
                "file" => file_id(input["hashes"].as_object().unwrap(), None).unwrap(),
                "domain-name" | "ipv4-addr" | "url" => value_sco_id(kind, s("value")),
                _ => named_sdo_id(kind, s("name")),
            };
            assert_eq!(got, v["id"].as_str().unwrap(), "vector {v}");
        }
    }

    #[test]
    fn canonical_form_sorts_keys_and_escapes() {
        let v = json!({"b": "x\ny\u{1}", "a": [1, true, null], "é": "ü"});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":[1,true,null],"b":"x\ny\u0001","é":"ü"}"#
        );
    }

    #[test]
    fn empty_values_do_not_contribute() {
        assert_eq!(
            relationship_id("uses", "a--1", "b--2", None, Some("")),
            deterministic_id(
                "relationship",
                &json!({"relationship_type": "uses", "source_ref": "a--1", "target_ref": "b--2"})
            )
        );
    }

    #[test]
    fn file_hash_priority() {
        let hashes = json!({"SHA-256": "aa", "MD5": "bb"});
        let id = file_id(hashes.as_object().unwrap(), Some("x.exe")).unwrap();
        assert_eq!(
            id,
            deterministic_id("file", &json!({"hashes": {"MD5": "bb"}}))
        );
        assert!(file_id(&Map::new(), None).is_none());
    }
}
