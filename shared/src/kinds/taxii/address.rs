//! TAXII addresses: checking that a feed's `url` is an API root, and building the objects
//! URL with its query.
//!
//! The query is written by hand rather than through a form encoder because filter values
//! travel verbatim: a timestamp keeps its colons and every digit, and an opaque `next`
//! token keeps its `=` padding, exactly as the server wrote them (C10, C13). Only the
//! characters that would break the query (`&`, `+`, `#`, `%`, spaces, controls) are
//! percent-encoded.

use super::TaxiiError;

/// Checks that `url` is a TAXII API root and returns it without a trailing slash, query or
/// fragment.
///
/// # Errors
/// A discovery URL (`…/taxii2/`, `…/taxii/`) or a collections URL (`…/collections/…`) is
/// refused with a message naming the URL to use instead.
pub fn api_root(url: &str) -> Result<String, TaxiiError> {
    let parsed = url::Url::parse(url).map_err(|e| TaxiiError::NotTaxii {
        url: url.into(),
        reason: format!("not a URL: {e}"),
    })?;
    let segments: Vec<&str> = parsed.path().split('/').filter(|s| !s.is_empty()).collect();
    if let Some(at) = segments.iter().position(|s| *s == "collections") {
        let mut root = parsed.clone();
        root.set_query(None);
        root.set_fragment(None);
        root.set_path(&format!("/{}/", segments[..at].join("/")));
        return Err(TaxiiError::CollectionsUrl {
            url: url.into(),
            root: root.to_string(),
            collection: segments.get(at + 1).map(|s| s.to_string()),
        });
    }
    if matches!(segments.last(), Some(&"taxii2") | Some(&"taxii")) {
        return Err(TaxiiError::DiscoveryUrl { url: url.into() });
    }
    let mut root = parsed;
    root.set_query(None);
    root.set_fragment(None);
    Ok(root.as_str().trim_end_matches('/').to_string())
}

/// The objects URL of `collection` under `root` (as returned by [`api_root`]).
pub fn objects_url(root: &str, collection: &str) -> String {
    format!("{root}/collections/{}/objects/", encode(collection, false))
}

/// Appends `pairs` as a query to `base`, values kept verbatim where the query allows it.
pub fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return base.to_string();
    }
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v, true)))
        .collect();
    format!("{base}?{}", query.join("&"))
}

/// Percent-encodes what would change the meaning of a path segment (`in_query` false) or
/// of a query value (`in_query` true).
fn encode(text: &str, in_query: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'-' | b'.' | b'_' | b'~' | b':' | b'@' | b'!' | b'$' | b'*'
            )
            || (in_query && matches!(byte, b',' | b'=' | b'/' | b'?' | b';' | b'(' | b')'));
        if keep {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_root_is_kept_without_trailing_slash() {
        let root = api_root("https://cti.example.test/taxii2/root/").expect("an API root");
        assert_eq!(root, "https://cti.example.test/taxii2/root");
        assert_eq!(
            objects_url(&root, "abc-1"),
            "https://cti.example.test/taxii2/root/collections/abc-1/objects/"
        );
    }

    #[test]
    fn discovery_url_is_refused_with_advice() {
        let e = api_root("https://cti.example.test/taxii2/").expect_err("discovery");
        let text = e.to_string();
        assert!(text.contains("discovery"), "{text}");
        assert!(text.contains("feedstix taxii collections"), "{text}");
    }

    #[test]
    fn collections_url_names_the_api_root_and_id() {
        let e = api_root("http://127.0.0.1:5000/trustgroup1/collections/91a7b528/objects/")
            .expect_err("collections URL");
        let text = e.to_string();
        assert!(
            text.contains("url = \"http://127.0.0.1:5000/trustgroup1/\""),
            "{text}"
        );
        assert!(text.contains("collection = \"91a7b528\""), "{text}");
    }

    #[test]
    fn query_values_travel_verbatim() {
        let url = with_query(
            "http://h.test/r/collections/c/objects/",
            &[
                ("added_after", "2024-01-01T00:00:00.123456Z"),
                ("match[type]", "indicator,malware"),
                ("next", "Y3Vyc29yOjE="),
            ],
        );
        assert_eq!(
            url,
            "http://h.test/r/collections/c/objects/?added_after=2024-01-01T00:00:00.123456Z\
             &match[type]=indicator,malware&next=Y3Vyc29yOjE="
        );
        assert_eq!(encode("a+b&c d", true), "a%2Bb%26c%20d");
    }
}
