//! One feed item as STIX: the report, the vulnerabilities it names, and the identity its
//! `object_refs` falls back to.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use url::Url;

use crate::stix::object::{organization, timestamp, vulnerability};
use crate::stix::{ids, Provenance, StixObject};

/// Name of the fallback identity when the feed has no title either.
pub(crate) const DEFAULT_SOURCE_NAME: &str = "RSS feed";

/// Report names made from a description stop after this many words or characters.
const NAME_WORDS: usize = 12;
const NAME_CHARS: usize = 100;

/// What the mapping needs of one item, already reduced to plain text.
pub(crate) struct ItemView<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub published: DateTime<Utc>,
    pub link: Option<&'a Url>,
    pub labels: &'a [String],
    /// Every text of the item searched for CVE ids (title, summary, full content).
    pub scan: &'a [&'a str],
}

/// What the mapping needs of the feed.
pub(crate) struct FeedView<'a> {
    pub report_types: &'a [String],
    pub provenance: &'a Provenance,
    /// `source_name` of the external reference: the feed link's host, else "rss".
    pub source_name: &'a str,
    /// Name of the fallback identity: the feed's title, else [`DEFAULT_SOURCE_NAME`].
    pub feed_name: &'a str,
}

/// The objects for one item: dependencies first, the report last.
pub(crate) fn objects(item: &ItemView<'_>, feed: &FeedView<'_>) -> Vec<StixObject> {
    let mut out = Vec::new();
    let mut refs = Vec::new();
    let mut cves: Vec<String> = Vec::new();
    for text in item.scan {
        for cve in CveScanner::new(text) {
            if !cves.contains(&cve) {
                cves.push(cve);
            }
        }
    }
    for cve in &cves {
        let v = vulnerability(cve, feed.provenance, item.published);
        // The object's own id: hashing the name a second time gave the same.
        refs.push(v.get("id").cloned().unwrap_or(Value::Null));
        out.push(v);
    }

    // STIX 2.1 requires a non-empty object_refs. An item that names nothing still came
    // from someone: the configured author, else the feed itself as an organization.
    if refs.is_empty() {
        match feed.provenance.author_id() {
            Some(author) => refs.push(Value::String(author)),
            None => {
                let org = organization(feed.feed_name);
                refs.push(org.get("id").cloned().unwrap_or(Value::Null));
                out.push(org);
            }
        }
    }

    let published = timestamp(item.published);
    let mut report = StixObject::new();
    report.insert("type".into(), json!("report"));
    report.insert("spec_version".into(), json!("2.1"));
    report.insert("id".into(), json!(ids::report_id(item.name, &published)));
    report.insert("created".into(), json!(published));
    report.insert("modified".into(), json!(published));
    report.insert("name".into(), json!(item.name));
    if let Some(d) = item.description.filter(|d| !d.is_empty()) {
        report.insert("description".into(), json!(d));
    }
    report.insert("published".into(), json!(published));
    report.insert("report_types".into(), json!(feed.report_types));
    if !item.labels.is_empty() {
        report.insert("labels".into(), json!(item.labels));
    }
    if let Some(link) = item.link {
        report.insert(
            "external_references".into(),
            json!([{ "source_name": feed.source_name, "url": link.as_str() }]),
        );
    }
    report.insert("object_refs".into(), Value::Array(refs));
    feed.provenance.apply(&mut report);
    out.push(report);
    out
}

/// A name from the first words of a description, marked with `…` when cut.
pub(crate) fn name_from_text(text: &str) -> Option<String> {
    let mut name = String::new();
    let mut cut = false;
    for (i, word) in text.split_ascii_whitespace().enumerate() {
        if i == NAME_WORDS || name.len() + word.len() + 1 > NAME_CHARS {
            cut = true;
            break;
        }
        if !name.is_empty() {
            name.push(' ');
        }
        name.push_str(word);
    }
    if name.is_empty() {
        // A single word longer than the limit: keep its first characters.
        name = text.trim().chars().take(NAME_CHARS).collect();
        cut = name.len() < text.trim().len();
    }
    if name.is_empty() {
        return None;
    }
    if cut {
        name.push('\u{2026}');
    }
    Some(name)
}

/// Finds `CVE-YYYY-NNNN…` case-insensitively, upper-cased. A match must not be glued to a
/// preceding letter or digit, nor followed by another digit past the ones taken.
pub(crate) struct CveScanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> CveScanner<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        CveScanner {
            bytes: text.as_bytes(),
            at: 0,
        }
    }
}

impl Iterator for CveScanner<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let b = self.bytes;
        while self.at + 13 <= b.len() {
            // Jump to the next `c` or `C` first: almost every position of a text fails on
            // its first letter, and testing one byte there is cheaper than four.
            let Some(skip) = b[self.at..b.len() - 12]
                .iter()
                .position(|&c| c | 0x20 == b'c')
            else {
                self.at = b.len();
                break;
            };
            let i = self.at + skip;
            self.at = i + 1;
            if !b[i..i + 4].eq_ignore_ascii_case(b"cve-") {
                continue;
            }
            if i > 0 && b[i - 1].is_ascii_alphanumeric() {
                continue;
            }
            let year = &b[i + 4..i + 8];
            if !year.iter().all(u8::is_ascii_digit) || b[i + 8] != b'-' {
                continue;
            }
            let digits = b[i + 9..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits < 4 {
                continue;
            }
            let end = i + 9 + digits;
            self.at = end;
            let mut id = String::with_capacity(end - i);
            id.push_str("CVE-");
            id.extend(b[i + 4..end].iter().map(|c| *c as char));
            return Some(id);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cve_scanner() {
        let found: Vec<String> = CveScanner::new(
            "see cve-2023-3676, CVE-2023-3955 and (CVE-2021-44228). not xCVE-2020-1234 nor \
             CVE-2020-12 nor CVE-20x0-1234; end CVE-2024-1234567",
        )
        .collect();
        assert_eq!(
            found,
            [
                "CVE-2023-3676",
                "CVE-2023-3955",
                "CVE-2021-44228",
                "CVE-2024-1234567"
            ]
        );
        assert_eq!(CveScanner::new("CVE-2023-").count(), 0);
        assert_eq!(CveScanner::new("").count(), 0);
    }

    #[test]
    fn names_from_text() {
        assert_eq!(name_from_text("  short text "), Some("short text".into()));
        assert_eq!(
            name_from_text(
                "one two three four five six seven eight nine ten eleven twelve thirteen"
            ),
            Some("one two three four five six seven eight nine ten eleven twelve\u{2026}".into())
        );
        assert_eq!(name_from_text("   "), None);
        let long = "x".repeat(150);
        assert_eq!(name_from_text(&long).map(|n| n.chars().count()), Some(101));
    }
}
