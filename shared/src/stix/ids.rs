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
    typed_id(stix_type, &canonical)
}

/// `<stix_type>--<uuidv5 of canonical>`, written into one allocation.
fn typed_id(stix_type: &str, canonical: &str) -> String {
    let uuid = Uuid::new_v5(&NAMESPACE, canonical.as_bytes());
    let mut id = String::with_capacity(stix_type.len() + 2 + uuid::fmt::Hyphenated::LENGTH);
    id.push_str(stix_type);
    id.push_str("--");
    id.push_str(
        uuid.hyphenated()
            .encode_lower(&mut [0u8; uuid::fmt::Hyphenated::LENGTH]),
    );
    id
}

/// The id over string properties only, without building a JSON value: every builder below
/// but `file_id` has only string properties, and ids are made for every object of every
/// row, so this path matters. `props` must be sorted by key (the canonical order, which
/// for the ASCII keys used here is byte order); empty values are dropped as
/// [`deterministic_id`] drops them, and the text written is the same canonical JSON, so
/// both paths give the same id (checked by the tests below).
fn string_props_id(stix_type: &str, props: &[(&str, &str)]) -> String {
    debug_assert!(props
        .windows(2)
        .all(|w| w[0].0 < w[1].0 && w[0].0.is_ascii()));
    let mut canonical = String::with_capacity(
        2 + props
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>(),
    );
    canonical.push('{');
    for (key, value) in props.iter().filter(|(_, v)| !v.is_empty()) {
        if canonical.len() > 1 {
            canonical.push(',');
        }
        write_string(key, &mut canonical);
        canonical.push(':');
        write_string(value, &mut canonical);
    }
    canonical.push('}');
    typed_id(stix_type, &canonical)
}

/// The id of a report: lower-cased trimmed name plus the published timestamp as written.
pub fn report_id(name: &str, published: &str) -> String {
    string_props_id(
        "report",
        &[("name", &normalize_name(name)), ("published", published)],
    )
}

/// The id of an indicator: its pattern, trimmed.
pub fn indicator_id(pattern: &str) -> String {
    string_props_id("indicator", &[("pattern", pattern.trim())])
}

/// The id of an identity: lower-cased trimmed name plus identity class.
pub fn identity_id(name: &str, identity_class: &str) -> String {
    string_props_id(
        "identity",
        &[
            ("identity_class", identity_class),
            ("name", &normalize_name(name)),
        ],
    )
}

/// The id of an SDO identified by its name alone (malware, tool, vulnerability, …).
pub fn named_sdo_id(stix_type: &str, name: &str) -> String {
    string_props_id(stix_type, &[("name", &normalize_name(name))])
}

/// The id of an attack pattern: its MITRE id (lower-cased) when known, else its name.
pub fn attack_pattern_id(name: &str, mitre_id: Option<&str>) -> String {
    match mitre_id.map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => string_props_id("attack-pattern", &[("x_mitre_id", &m.to_lowercase())]),
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
    string_props_id(
        "relationship",
        &[
            ("relationship_type", relationship_type),
            ("source_ref", source_ref),
            ("start_time", start_time.unwrap_or_default()),
            ("stop_time", stop_time.unwrap_or_default()),
            ("target_ref", target_ref),
        ],
    )
}

/// The id of an SCO whose only contributing property is `value` (ipv4-addr, ipv6-addr,
/// domain-name, url, email-addr, mac-addr, …).
pub fn value_sco_id(stix_type: &str, value: &str) -> String {
    string_props_id(stix_type, &[("value", value)])
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
        .map(|n| string_props_id("file", &[("name", n)]))
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
    // Runs of characters that need no escape are copied whole: ids hash URLs and names,
    // which rarely hold anything to escape.
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(escape);
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
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

    /// The string-only path writes the same canonical text as the generic one, escapes
    /// and empty values included.
    #[test]
    fn string_path_matches_generic_path() {
        let tricky = [
            "",
            "plain",
            "Quote \" and \\ backslash",
            "ctl \u{1}\u{8}\u{c}\n\r\t\u{1f} end",
            "é ü 漢字 \u{1F600} \u{7f}",
            "[url:value = 'http://198.51.100.7:40123/i']",
        ];
        for a in tricky {
            for b in tricky {
                assert_eq!(
                    relationship_id("uses", a, b, Some(a), None),
                    deterministic_id(
                        "relationship",
                        &json!({"relationship_type": "uses", "source_ref": a, "target_ref": b,
                                "start_time": a, "stop_time": null})
                    ),
                    "{a:?} {b:?}"
                );
                assert_eq!(
                    report_id(a, b),
                    deterministic_id(
                        "report",
                        &json!({"name": normalize_name(a), "published": b})
                    )
                );
                assert_eq!(
                    identity_id(a, b),
                    deterministic_id(
                        "identity",
                        &json!({"name": normalize_name(a), "identity_class": b})
                    )
                );
            }
            assert_eq!(
                value_sco_id("url", a),
                deterministic_id("url", &json!({"value": a}))
            );
            assert_eq!(
                indicator_id(a),
                deterministic_id("indicator", &json!({"pattern": a.trim()}))
            );
            assert_eq!(
                attack_pattern_id("x", Some(a)),
                if a.trim().is_empty() {
                    named_sdo_id("attack-pattern", "x")
                } else {
                    deterministic_id(
                        "attack-pattern",
                        &json!({"x_mitre_id": a.trim().to_lowercase()}),
                    )
                }
            );
            assert_eq!(
                file_id(&Map::new(), Some(a)),
                (!a.is_empty()).then(|| deterministic_id("file", &json!({"name": a})))
            );
        }
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
