//! TAXII and STIX media types: parsing `Content-Type` values and judging them.
//!
//! Servers disagree on spelling: parameters come in any order, with or without spaces,
//! with a `charset`, and some label a TAXII document as STIX (C11). The judge accepts any
//! JSON-like type whose shape the caller then checks, and says what was odd so the caller
//! can warn; only types that cannot be JSON at all (HTML login pages, plain text) are
//! refused.

/// The TAXII protocol version a feed speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaxiiVersion {
    /// TAXII 2.1: envelopes, `limit` and `next`.
    V21,
    /// TAXII 2.0: STIX bundles, `Range: items N-M`.
    V20,
}

impl TaxiiVersion {
    /// Parses the configuration spelling, `"2.1"` or `"2.0"`.
    pub fn parse(text: &str) -> Option<TaxiiVersion> {
        match text.trim() {
            "2.1" => Some(TaxiiVersion::V21),
            "2.0" => Some(TaxiiVersion::V20),
            _ => None,
        }
    }

    /// The version number as written in media types and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            TaxiiVersion::V21 => "2.1",
            TaxiiVersion::V20 => "2.0",
        }
    }

    /// The `Accept` value of an objects request.
    pub fn objects_accept(self) -> &'static str {
        match self {
            TaxiiVersion::V21 => "application/taxii+json;version=2.1",
            TaxiiVersion::V20 => "application/vnd.oasis.stix+json; version=2.0",
        }
    }

    /// The `Accept` value of a discovery, API root or collections request.
    pub fn taxii_accept(self) -> &'static str {
        match self {
            TaxiiVersion::V21 => "application/taxii+json;version=2.1",
            TaxiiVersion::V20 => "application/vnd.oasis.taxii+json; version=2.0",
        }
    }
}

/// A parsed media type: `type/subtype` in lower case and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    /// `type/subtype`, lower-cased.
    pub essence: String,
    /// Parameters in the order given, names lower-cased, values unquoted.
    pub params: Vec<(String, String)>,
}

impl MediaType {
    /// Parses a `Content-Type` value; `None` when it has no `type/subtype`.
    pub fn parse(text: &str) -> Option<MediaType> {
        let mut parts = text.split(';');
        let essence = parts.next()?.trim().to_ascii_lowercase();
        if !essence.contains('/') {
            return None;
        }
        let params = parts
            .filter_map(|p| {
                let (name, value) = p.split_once('=')?;
                let value = value.trim().trim_matches('"').to_string();
                Some((name.trim().to_ascii_lowercase(), value))
            })
            .collect();
        Some(MediaType { essence, params })
    }

    /// The value of parameter `name` (lower-case).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The TAXII or STIX version this type announces, guessing 2.0 from the `vnd.oasis`
    /// spellings that only TAXII 2.0 used.
    pub fn version(&self) -> Option<&str> {
        self.param("version").or_else(|| {
            self.essence
                .starts_with("application/vnd.oasis.")
                .then_some("2.0")
        })
    }

    fn is_json_like(&self) -> bool {
        self.essence == "application/json" || self.essence.ends_with("+json")
    }
}

/// Which document a response was expected to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A TAXII resource (discovery, API root, collections, a 2.1 envelope).
    Taxii,
    /// A STIX bundle (TAXII 2.0 objects).
    Stix,
}

/// Judges a response's `Content-Type` against what the request asked for.
///
/// Returns a warning when the type is usable but not the one asked for (the body's shape
/// decides), and an error when it cannot be a TAXII or STIX JSON document at all.
pub fn judge(
    content_type: Option<&str>,
    version: TaxiiVersion,
    expect: Expect,
) -> Result<Option<String>, String> {
    let Some(raw) = content_type else {
        return Ok(Some(
            "the response has no Content-Type; reading it as JSON".into(),
        ));
    };
    let Some(media) = MediaType::parse(raw) else {
        return Err(format!(
            "the response's Content-Type \"{raw}\" is not a media type"
        ));
    };
    if !media.is_json_like() {
        return Err(format!(
            "the server answered \"{raw}\", not a TAXII {} JSON document",
            version.as_str()
        ));
    }
    let wanted = match (version, expect) {
        (TaxiiVersion::V21, _) => "application/taxii+json",
        (TaxiiVersion::V20, Expect::Taxii) => "application/vnd.oasis.taxii+json",
        (TaxiiVersion::V20, Expect::Stix) => "application/vnd.oasis.stix+json",
    };
    let mut odd = Vec::new();
    if media.essence != wanted {
        odd.push(format!("type {} instead of {wanted}", media.essence));
    }
    match media.version() {
        Some(v) if v != version.as_str() => {
            odd.push(format!("version {v} instead of {}", version.as_str()))
        }
        _ => {}
    }
    Ok((!odd.is_empty()).then(|| {
        format!(
            "the server labelled its answer \"{raw}\" ({}); reading it anyway",
            odd.join(", ")
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_in_any_order_with_charset() {
        let a = MediaType::parse("application/taxii+json; version=2.1; charset=utf-8");
        let b = MediaType::parse("application/taxii+json;charset=UTF-8;version=\"2.1\"");
        for m in [a, b] {
            let m = m.expect("parses");
            assert_eq!(m.essence, "application/taxii+json");
            assert_eq!(m.version(), Some("2.1"));
        }
        let j = judge(
            Some("application/taxii+json; version=2.1; charset=utf-8"),
            TaxiiVersion::V21,
            Expect::Taxii,
        );
        assert_eq!(j, Ok(None));
    }

    #[test]
    fn stix_label_on_taxii_document_is_accepted_with_a_warning() {
        let j = judge(
            Some("application/stix+json; charset=utf-8; version=2.1"),
            TaxiiVersion::V21,
            Expect::Taxii,
        );
        let warning = j.expect("accepted").expect("warns");
        assert!(warning.contains("application/stix+json"), "{warning}");
    }

    #[test]
    fn taxii20_types_are_recognised() {
        let j = judge(
            Some("application/vnd.oasis.stix+json; version=2.0"),
            TaxiiVersion::V20,
            Expect::Stix,
        );
        assert_eq!(j, Ok(None));
        let m = MediaType::parse("application/vnd.oasis.taxii+json").expect("parses");
        assert_eq!(m.version(), Some("2.0"));
    }

    #[test]
    fn html_is_refused() {
        let j = judge(
            Some("text/html; charset=utf-8"),
            TaxiiVersion::V21,
            Expect::Taxii,
        );
        assert!(j.is_err());
    }
}
