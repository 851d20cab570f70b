//! The JSON documents of an objects answer: the TAXII 2.1 envelope, the TAXII 2.0 bundle,
//! the TAXII error message, and the `Content-Range` header of 2.0 paging.
//!
//! A body that is not the expected shape is an error, so the page fails and the cursor
//! stays: a login page or a proxy's error page must never read as "no new objects".
//! Objects themselves are not interpreted beyond `type` and `id`; they pass on exactly as
//! the server made them.

use serde_json::{Map, Value};

use crate::stix::StixObject;

/// One page of objects as the server sent it.
#[derive(Debug, Default)]
pub struct Page {
    /// The objects that have a `type` and an `id`, in server order.
    pub objects: Vec<StixObject>,
    /// Entries that are not usable objects, with the reason.
    pub skipped: Vec<String>,
    /// TAXII 2.1 `more`.
    pub more: bool,
    /// TAXII 2.1 `next`, as a string even when the server sent a number.
    pub next: Option<String>,
}

/// Reads a TAXII 2.1 envelope. `{}` is a valid, empty, final envelope.
pub fn envelope(body: &[u8]) -> Result<Page, String> {
    let map = json_object(body)?;
    if map.get("type").and_then(Value::as_str) == Some("bundle") {
        return Err(
            "the server answered with a STIX bundle, which is how TAXII 2.0 answers; \
             set version = \"2.0\" for this feed"
                .into(),
        );
    }
    refuse_error_message(&map)?;
    let known = ["more", "next", "objects"];
    if !map.is_empty() && !map.keys().any(|k| known.contains(&k.as_str())) {
        return Err(format!(
            "not a TAXII envelope: none of more, next, objects (keys: {})",
            key_list(&map)
        ));
    }
    let more = match map.get("more") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(format!("envelope `more` is {other}, not true or false")),
    };
    let next = match map.get("next") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        // Some servers send the token as a number; it stays opaque, only as text.
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => return Err(format!("envelope `next` is {other}, not a token")),
    };
    let (objects, skipped) = objects(map.get("objects"), "envelope")?;
    Ok(Page {
        objects,
        skipped,
        more,
        next,
    })
}

/// Reads a TAXII 2.0 objects answer: a STIX bundle, possibly without `objects`.
pub fn bundle(body: &[u8]) -> Result<Page, String> {
    let map = json_object(body)?;
    refuse_error_message(&map)?;
    match map.get("type").and_then(Value::as_str) {
        Some("bundle") => {}
        _ if map.contains_key("more")
            || (map.contains_key("objects") && !map.contains_key("type")) =>
        {
            return Err(
                "the server answered with a TAXII 2.1 envelope; set version = \"2.1\" for \
                 this feed"
                    .into(),
            )
        }
        _ => return Err(format!("not a STIX bundle (keys: {})", key_list(&map))),
    }
    let (objects, skipped) = objects(map.get("objects"), "bundle")?;
    Ok(Page {
        objects,
        skipped,
        more: false,
        next: None,
    })
}

/// The `title` and `description` of a TAXII error message, for an error's detail.
pub fn error_detail(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let title = value.get("title").and_then(Value::as_str);
    let description = value.get("description").and_then(Value::as_str);
    match (title, description) {
        (Some(t), Some(d)) => Some(format!("{t}: {d}")),
        (Some(t), None) => Some(t.to_string()),
        (None, Some(d)) => Some(d.to_string()),
        (None, None) => None,
    }
}

/// A TAXII 2.0 `Content-Range: items FIRST-LAST/TOTAL` (TOTAL may be `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// Index of the first item sent.
    pub first: u64,
    /// Index of the last item sent.
    pub last: u64,
    /// Items in the whole result, when the server knows.
    pub total: Option<u64>,
}

impl ContentRange {
    /// Parses the header value; `None` when it is not an `items` range.
    pub fn parse(text: &str) -> Option<ContentRange> {
        let rest = text.trim().strip_prefix("items")?.trim();
        let (span, total) = rest.split_once('/')?;
        let (first, last) = span.trim().split_once('-')?;
        let total = match total.trim() {
            "*" => None,
            t => Some(t.parse().ok()?),
        };
        Some(ContentRange {
            first: first.trim().parse().ok()?,
            last: last.trim().parse().ok()?,
            total,
        })
    }
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!("expected a JSON object, found {}", kind_of(&other))),
        Err(e) => Err(format!(
            "the body is not JSON ({e}); it starts with {:?}",
            preview(body)
        )),
    }
}

fn refuse_error_message(map: &Map<String, Value>) -> Result<(), String> {
    if map.contains_key("http_status")
        || (map.contains_key("title") && !map.contains_key("objects"))
    {
        let detail = error_detail(&serde_json::to_vec(map).unwrap_or_default())
            .unwrap_or_else(|| "no description".into());
        return Err(format!("the server sent a TAXII error message: {detail}"));
    }
    Ok(())
}

type Objects = (Vec<StixObject>, Vec<String>);

fn objects(value: Option<&Value>, container: &str) -> Result<Objects, String> {
    let items = match value {
        None | Some(Value::Null) => return Ok((Vec::new(), Vec::new())),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(format!(
                "{container} `objects` is {}, not a list",
                kind_of(other)
            ))
        }
    };
    let mut objects = Vec::with_capacity(items.len());
    let mut skipped = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let Value::Object(object) = item else {
            skipped.push(format!(
                "objects[{index}]: {} instead of a STIX object",
                kind_of(item)
            ));
            continue;
        };
        let has = |key: &str| {
            object
                .get(key)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        };
        if !has("type") || !has("id") {
            skipped.push(format!("objects[{index}]: no `type` or no `id`"));
            continue;
        }
        objects.push(object.clone());
    }
    Ok((objects, skipped))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn key_list(map: &Map<String, Value>) -> String {
    let keys: Vec<&str> = map.keys().take(8).map(String::as_str).collect();
    if keys.is_empty() {
        "none".into()
    } else {
        keys.join(", ")
    }
}

/// The first characters of a body, for messages about bodies that are not JSON.
fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(60)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_object_is_a_final_empty_envelope() {
        let page = envelope(b"{}").expect("valid");
        assert!(page.objects.is_empty());
        assert!(!page.more);
        assert_eq!(page.next, None);
    }

    #[test]
    fn numeric_next_is_kept_as_text() {
        let page = envelope(br#"{"more": true, "next": 2, "objects": []}"#).expect("valid");
        assert!(page.more);
        assert_eq!(page.next.as_deref(), Some("2"));
    }

    #[test]
    fn html_and_error_messages_are_not_envelopes() {
        let html = envelope(b"<html><body>Sign in</body></html>").expect_err("html");
        assert!(html.contains("not JSON"), "{html}");
        let error = envelope(br#"{"title": "ProcessingError", "http_status": "400"}"#)
            .expect_err("error message");
        assert!(error.contains("ProcessingError"), "{error}");
        let bundle = envelope(br#"{"type": "bundle", "id": "bundle--1", "objects": []}"#)
            .expect_err("bundle");
        assert!(bundle.contains("version = \"2.0\""), "{bundle}");
    }

    #[test]
    fn objects_without_id_are_skipped() {
        let page = envelope(
            br#"{"objects": [{"type": "indicator"}, 3, {"type": "malware", "id": "malware--1"}]}"#,
        )
        .expect("valid");
        assert_eq!(page.objects.len(), 1);
        assert_eq!(page.skipped.len(), 2);
    }

    #[test]
    fn bundle_and_content_range() {
        let page = bundle(
            br#"{"type": "bundle", "id": "bundle--1", "spec_version": "2.0", "objects": []}"#,
        )
        .expect("valid");
        assert!(page.objects.is_empty());
        assert_eq!(
            ContentRange::parse("items 0-0/3"),
            Some(ContentRange {
                first: 0,
                last: 0,
                total: Some(3)
            })
        );
        assert_eq!(
            ContentRange::parse("items 5-9/*").and_then(|r| r.total),
            None
        );
        assert_eq!(ContentRange::parse("bytes 0-1/2"), None);
    }
}
