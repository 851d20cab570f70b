//! The listing behind `feedstix taxii collections URL`: the API roots a server offers and
//! the collections of each, so a user can pick a feed's `url` and `collection`.
//!
//! The URL may be the discovery URL (every API root it lists is asked), an API root, or a
//! collections URL. One API root that fails does not hide the others: its error is part of
//! the listing.

use serde_json::Value;

use super::media::{self, Expect, TaxiiVersion};
use super::{address, document, status_error, TaxiiError};
use crate::ports::{Source, SourceRequest};

/// One collection of one API root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionRow {
    /// The API root, as a feed's `url` takes it.
    pub api_root: String,
    /// The collection id, as a feed's `collection` takes it.
    pub id: String,
    /// The collection's title (empty when the server gives none).
    pub title: String,
    /// Whether the credentials used may read it.
    pub can_read: bool,
}

/// What a server offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Every collection found, in server order.
    pub rows: Vec<CollectionRow>,
    /// Oddities that did not stop the listing (mislabelled content types).
    pub warnings: Vec<String>,
    /// API roots that could not be listed, each with its error.
    pub errors: Vec<String>,
}

/// Lists the API roots and collections reachable from `url`.
///
/// # Errors
/// When the URL itself cannot be read (transport, credentials, not a TAXII document). The
/// failure of one API root among several is recorded in [`Listing::errors`] instead.
pub async fn list_collections(
    source: &dyn Source,
    url: &str,
    version: TaxiiVersion,
) -> Result<Listing, TaxiiError> {
    let mut listing = Listing::default();
    match address::api_root(url) {
        Err(TaxiiError::CollectionsUrl { root, .. }) => {
            let root = root.trim_end_matches('/').to_string();
            read_collections(source, &root, version, &mut listing).await?;
            return Ok(listing);
        }
        Err(TaxiiError::DiscoveryUrl { .. }) | Ok(_) => {}
        Err(other) => return Err(other),
    }

    let first = format!("{}/", url.trim_end_matches('/'));
    let document = get_json(source, &first, version, &mut listing.warnings).await?;
    let roots: Vec<String> = match document.get("api_roots").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|r| resolve(&first, r))
            .collect(),
        // Not a discovery document: the URL is an API root itself.
        None => vec![first.trim_end_matches('/').to_string()],
    };
    let several = roots.len() > 1 || document.get("api_roots").is_some();
    for root in roots {
        match read_collections(source, &root, version, &mut listing).await {
            Ok(()) => {}
            Err(e) if several => listing.errors.push(format!("API root {root}: {e}")),
            Err(e) => return Err(e),
        }
    }
    Ok(listing)
}

async fn read_collections(
    source: &dyn Source,
    root: &str,
    version: TaxiiVersion,
    listing: &mut Listing,
) -> Result<(), TaxiiError> {
    let url = format!("{root}/collections/");
    let document = get_json(source, &url, version, &mut listing.warnings).await?;
    let collections = match document.get("collections") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(list)) => list,
        Some(_) => {
            return Err(TaxiiError::NotTaxii {
                url,
                reason: "`collections` is not a list".into(),
            })
        }
    };
    for c in collections {
        let Some(id) = c.get("id").and_then(Value::as_str) else {
            listing
                .warnings
                .push(format!("{url}: a collection without an id was left out"));
            continue;
        };
        listing.rows.push(CollectionRow {
            api_root: format!("{root}/"),
            id: id.to_string(),
            title: c
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            can_read: c.get("can_read").and_then(Value::as_bool).unwrap_or(false),
        });
    }
    Ok(())
}

async fn get_json(
    source: &dyn Source,
    url: &str,
    version: TaxiiVersion,
    warnings: &mut Vec<String>,
) -> Result<serde_json::Map<String, Value>, TaxiiError> {
    let response = source
        .get(SourceRequest {
            url: url.into(),
            headers: vec![("accept".into(), version.taxii_accept().into())],
        })
        .await?;
    let status = response.status;
    let content_type = response.header("content-type").map(str::to_string);
    let body = response
        .body
        .into_bytes()
        .map_err(|e| TaxiiError::NotTaxii {
            url: url.into(),
            reason: format!("cannot read the body: {e}"),
        })?;
    if !(200..=299).contains(&status) {
        return Err(status_error(
            status,
            url,
            content_type.as_deref(),
            &body,
            version,
        ));
    }
    let not_taxii = |reason: String| TaxiiError::NotTaxii {
        url: url.into(),
        reason,
    };
    if let Some(w) =
        media::judge(content_type.as_deref(), version, Expect::Taxii).map_err(not_taxii)?
    {
        tracing::warn!(url = %url, warning = %w, "unexpected taxii content type");
        warnings.push(format!("{url}: {w}"));
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => {
            if map.contains_key("http_status") {
                let detail = document::error_detail(&body).unwrap_or_default();
                return Err(not_taxii(format!(
                    "the server sent a TAXII error message: {detail}"
                )));
            }
            Ok(map)
        }
        Ok(_) => Err(not_taxii("expected a JSON object".into())),
        Err(e) => Err(not_taxii(format!("the body is not JSON: {e}"))),
    }
}

/// Resolves an API root as a discovery document lists it (absolute, or relative to the
/// discovery URL) to a URL without a trailing slash.
fn resolve(discovery: &str, root: &str) -> Option<String> {
    let base = url::Url::parse(discovery).ok()?;
    let joined = base.join(root).ok()?;
    Some(joined.as_str().trim_end_matches('/').to_string())
}
