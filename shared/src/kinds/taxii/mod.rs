//! TAXII 2.1 and 2.0 feeds: one collection of a TAXII server, page by page.
//!
//! This module owns the TAXII cursor, the objects request of one page, and the reading of
//! its answer. A *poll* asks for what was added after the cursor's `added_after`; when the
//! server has more than a page, the poll becomes a *walk* over several pages. During a walk
//! the request keeps the walk's original `added_after` and adds the server's `next` token
//! (2.1) or the next `Range` (2.0); only when the server says there is no more does
//! `added_after` move, to the newest date the server reported (its
//! `X-TAXII-Date-Added-Last`, kept verbatim). Moving it earlier, mid-walk, skips or repeats
//! pages (C13); decoding or checking the token breaks servers whose tokens look like ids
//! or numbers (C10).
//!
//! Objects pass on exactly as the server made them: no author or marking is added, since
//! they are the producer's statements, not feedstix's.
//!
//! Submodules: [`address`] (API root check, query building), [`media`] (content types),
//! [`document`] (envelopes, bundles, error messages), [`collections`] (the listing behind
//! `feedstix taxii collections`).

pub mod address;
pub mod collections;
pub mod document;
pub mod media;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{FetchError, ObjectOut, PageEnd, MAX_SKIPS_KEPT};
use crate::config::KindConfig;
use crate::cursor::Cursor;
use crate::feed::Feed;
use crate::http::HttpError;
use crate::ports::{Source, SourceRequest, SourceResponse};
use crate::stix::StixObject;
use media::{Expect, TaxiiVersion};

/// How far ahead of our clock a server date may be before it is refused: servers' clocks
/// drift, but a date hours ahead would make the feed skip everything added until then.
const FUTURE_SKEW: Duration = Duration::minutes(5);

/// Empty pages in a row, all saying `more`, after which the walk is abandoned with an
/// error: an empty page with `more` is legal, an endless run of them is a server loop.
const MAX_EMPTY_PAGES: u32 = 50;

/// Object fingerprints kept for the TAXII 2.0 boundary. Enough for several full pages
/// that share one `date_added`; beyond it a few boundary objects may arrive twice, which
/// deterministic bundle handling tolerates.
const MAX_BOUNDARY: usize = 5_000;

/// Hex digits kept of each boundary fingerprint: 64 bits make a collision between two
/// object versions of one timestamp negligible and keep the cursor small.
const FINGERPRINT_HEX: usize = 16;

/// Where a TAXII feed resumes. Every date is kept as the server wrote it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaxiiCursor {
    /// The `added_after` of the walk in progress, or of the next poll when no walk is in
    /// progress. `None` before the first poll of a feed without `import_from`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added_after: Option<String>,
    /// TAXII 2.1: the server's opaque `next` token while a walk is in progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// TAXII 2.0: the index of the first item of the next `Range` while a walk is in
    /// progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The newest date the server reported for what this feed has fetched
    /// (`X-TAXII-Date-Added-Last`, verbatim, or the newest date found in the objects when
    /// the header was missing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_added: Option<String>,
    /// TAXII 2.0: fingerprints of the object versions fetched at `added_after`, which a
    /// 2.0 server sends again because its `added_after` is inclusive.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub boundary: Vec<String>,
    /// TAXII 2.0: fingerprints of the objects fetched at `last_added` in the walk in
    /// progress; they become `boundary` when the walk ends.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub walk_boundary: Vec<String>,
    /// Empty pages with `more` in a row in the walk in progress.
    #[serde(skip_serializing_if = "is_zero")]
    pub empty_pages: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl TaxiiCursor {
    /// A one-line description for status output.
    pub fn describe(&self) -> String {
        let from = self.added_after.as_deref().unwrap_or("the beginning");
        match (&self.next, self.offset) {
            (Some(next), _) => format!("walking from added_after {from}, next token {next}"),
            (None, Some(offset)) => format!("walking from added_after {from}, at item {offset}"),
            (None, None) => match &self.added_after {
                Some(a) => format!("added after {a}"),
                None => "start".into(),
            },
        }
    }

    fn walking(&self) -> bool {
        self.next.is_some() || self.offset.is_some()
    }
}

/// Why a TAXII request or answer was refused.
#[derive(Debug, thiserror::Error)]
pub enum TaxiiError {
    /// The URL is the server's discovery URL.
    #[error(
        "url {url} is a TAXII discovery URL, not an API root; set url to one of the API \
         roots it lists (`feedstix taxii collections {url}` shows them with their collections)"
    )]
    DiscoveryUrl {
        /// The URL given.
        url: String,
    },
    /// The URL is a collections or objects URL.
    #[error(
        "url {url} points inside the collections of an API root; set url = \"{root}\"{}",
        collection.as_ref().map(|c| format!(" and collection = \"{c}\"")).unwrap_or_default()
    )]
    CollectionsUrl {
        /// The URL given.
        url: String,
        /// The API root to use.
        root: String,
        /// The collection id found in the URL.
        collection: Option<String>,
    },
    /// Transport failure.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// 401 or 403.
    #[error("{url} refused the credentials (HTTP {status}); check the auth settings")]
    Unauthorized {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// Any other status that is not a success.
    #[error("{url} answered HTTP {status}{detail}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// Context starting with ": ", or empty.
        detail: String,
    },
    /// The answer is not a TAXII document of the expected shape.
    #[error("{url}: {reason}")]
    NotTaxii {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

impl From<TaxiiError> for FetchError {
    fn from(e: TaxiiError) -> FetchError {
        match e {
            TaxiiError::Http(h) => FetchError::Http(h),
            TaxiiError::Unauthorized { url, status } => FetchError::Unauthorized { url, status },
            TaxiiError::Status {
                url,
                status,
                detail,
            } => FetchError::Status {
                url,
                status,
                detail,
            },
            TaxiiError::NotTaxii { url, reason } => FetchError::Parse { url, reason },
            config @ (TaxiiError::DiscoveryUrl { .. } | TaxiiError::CollectionsUrl { .. }) => {
                FetchError::Unsupported(config.to_string())
            }
        }
    }
}

/// The feed's TAXII settings, taken from its configuration once per page.
struct Settings<'a> {
    collection: &'a str,
    version: TaxiiVersion,
    page_size: u32,
    match_types: &'a [String],
}

/// Fetches one page of a TAXII feed from `cursor`, pushing its objects to `out`.
///
/// # Errors
/// Refused credentials, a missing collection, a server that speaks another version, a body
/// that is not a TAXII document, and a date in the future all fail the page; the caller
/// keeps the old cursor.
pub async fn fetch_page(
    feed: &Feed,
    cursor: &Cursor,
    source: &dyn Source,
    now: DateTime<Utc>,
    out: &mut dyn ObjectOut,
) -> Result<PageEnd, FetchError> {
    let KindConfig::Taxii {
        collection,
        version,
        page_size,
        match_types,
    } = &feed.config.kind
    else {
        return Err(FetchError::Unsupported(format!(
            "feed {} is not a TAXII feed",
            feed.name()
        )));
    };
    let settings = Settings {
        collection,
        version: TaxiiVersion::parse(version).ok_or_else(|| {
            FetchError::Unsupported(format!(
                "TAXII version \"{version}\" is not supported; expected \"2.1\" or \"2.0\""
            ))
        })?,
        page_size: (*page_size).max(1),
        match_types,
    };
    let root = address::api_root(&feed.config.url)?;
    let previous = match cursor {
        Cursor::Taxii(c) => c.clone(),
        _ => TaxiiCursor::default(),
    };
    // A new poll starts from the stored cursor, or from `import_from` the first time; a
    // walk in progress keeps the value it started from.
    let mut walk = previous.clone();
    if !walk.walking() {
        if walk.added_after.is_none() {
            walk.added_after = feed
                .config
                .import_from
                .map(|d| d.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        }
        walk.walk_boundary.clear();
        walk.empty_pages = 0;
    }

    let request = objects_request(&root, &settings, &walk);
    let url = request.url.clone();
    tracing::debug!(feed = %feed.name(), url = %url, "taxii objects request");
    let response = source.get(request).await.map_err(TaxiiError::from)?;
    let answer = read_answer(response, &url, settings.version)?;
    let page = answer.page;

    // Dates are checked before any object is handed on, so a refused page hands on nothing.
    let page_last = match &answer.date_added_last {
        Some(value) => Some(checked_date(value, &url, now)?),
        None => newest_object_date(&page.objects, now).map(|d| {
            tracing::debug!(feed = %feed.name(), date = %d, "no X-TAXII-Date-Added-Last; using the newest date in the page");
            d
        }),
    };
    if let Some(warning) = &answer.warning {
        tracing::warn!(feed = %feed.name(), url = %url, warning = %warning, "unexpected taxii content type");
    }

    let skipped: Vec<String> = page.skipped.iter().take(MAX_SKIPS_KEPT).cloned().collect();
    for reason in &skipped {
        tracing::warn!(feed = %feed.name(), reason = %reason, "skipped taxii entry");
    }
    let received = page.objects.len();
    let mut fingerprints = Vec::new();
    let mut pushed = 0;
    for object in page.objects {
        let fp = fingerprint(&object);
        let repeat = walk.boundary.contains(&fp);
        if settings.version == TaxiiVersion::V20 {
            fingerprints.push(fp);
        }
        if repeat {
            // A 2.0 server's inclusive `added_after` sends the boundary objects again.
            continue;
        }
        out.push(object).await.map_err(FetchError::Handoff)?;
        pushed += 1;
    }
    if settings.version == TaxiiVersion::V20 {
        note_boundary(&mut walk, page_last.as_ref(), fingerprints, feed.name());
    } else if let Some(last) = &page_last {
        advance_last(&mut walk, last);
    }

    // What the server says about the rest of the walk.
    let more = match settings.version {
        TaxiiVersion::V21 => match (page.more, page.next) {
            (true, Some(next)) => {
                walk.next = Some(next);
                true
            }
            (true, None) => {
                // Without a token the only way on is a new poll from the newest date seen;
                // a page without objects gives no date to move to, so it ends here.
                tracing::warn!(feed = %feed.name(), url = %url, "server says more but sent no next token; continuing from the newest date");
                walk.next = None;
                received > 0 && page_last.is_some()
            }
            (false, _) => {
                walk.next = None;
                false
            }
        },
        TaxiiVersion::V20 => {
            let offset = walk.offset.unwrap_or(0);
            match answer.range {
                Some(r) if received > 0 && r.last + 1 > offset => {
                    let more = match r.total {
                        Some(total) => r.last + 1 < total,
                        None => received as u64 >= u64::from(settings.page_size),
                    };
                    walk.offset = more.then_some(r.last + 1);
                    more
                }
                _ => {
                    walk.offset = None;
                    false
                }
            }
        }
    };

    let next_cursor = if more {
        walk.empty_pages = if received == 0 {
            walk.empty_pages + 1
        } else {
            0
        };
        if walk.empty_pages > MAX_EMPTY_PAGES {
            return Err(FetchError::Parse {
                url,
                reason: format!(
                    "the server sent {} empty pages in a row, each saying there is more; \
                     giving up on this walk",
                    walk.empty_pages
                ),
            });
        }
        if walk.next.is_none() && walk.offset.is_none() {
            // The token-less fallback above: the next poll starts after this page.
            end_walk(walk, &previous)
        } else {
            walk
        }
    } else {
        end_walk(walk, &previous)
    };
    tracing::debug!(feed = %feed.name(), received, pushed, more, cursor = %next_cursor.describe(), "taxii page read");
    Ok(PageEnd {
        cursor: Cursor::Taxii(next_cursor),
        more,
        objects: pushed,
        skipped,
        not_modified: false,
    })
}

/// Builds the objects request of the walk's next page.
fn objects_request(root: &str, settings: &Settings<'_>, walk: &TaxiiCursor) -> SourceRequest {
    let base = address::objects_url(root, settings.collection);
    let limit = settings.page_size.to_string();
    let types = settings.match_types.join(",");
    let mut query: Vec<(&str, &str)> = Vec::new();
    if let Some(after) = &walk.added_after {
        query.push(("added_after", after));
    }
    if settings.version == TaxiiVersion::V21 {
        query.push(("limit", &limit));
    }
    if !types.is_empty() {
        query.push(("match[type]", &types));
    }
    if let (TaxiiVersion::V21, Some(next)) = (settings.version, &walk.next) {
        query.push(("next", next));
    }
    let mut headers = vec![(
        "accept".to_string(),
        settings.version.objects_accept().to_string(),
    )];
    if settings.version == TaxiiVersion::V20 {
        let first = walk.offset.unwrap_or(0);
        let last = first + u64::from(settings.page_size) - 1;
        headers.push(("range".to_string(), format!("items {first}-{last}")));
    }
    SourceRequest {
        url: address::with_query(&base, &query),
        headers,
    }
}

/// A successful objects answer, read.
struct Answer {
    page: document::Page,
    date_added_last: Option<String>,
    range: Option<document::ContentRange>,
    warning: Option<String>,
}

/// Turns a response into a page, or into the error a user can act on.
fn read_answer(
    response: SourceResponse,
    url: &str,
    version: TaxiiVersion,
) -> Result<Answer, TaxiiError> {
    let status = response.status;
    let content_type = response.header("content-type").map(str::to_string);
    let date_added_last = response
        .header("x-taxii-date-added-last")
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    let range = response
        .header("content-range")
        .and_then(document::ContentRange::parse);
    if version == TaxiiVersion::V20 && status == 416 {
        // The requested range starts past the end: the walk is complete.
        return Ok(Answer {
            page: document::Page::default(),
            date_added_last: None,
            range: None,
            warning: None,
        });
    }
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
    let expect = match version {
        TaxiiVersion::V21 => Expect::Taxii,
        TaxiiVersion::V20 => Expect::Stix,
    };
    let not_taxii = |reason: String| TaxiiError::NotTaxii {
        url: url.into(),
        reason,
    };
    let warning = media::judge(content_type.as_deref(), version, expect).map_err(not_taxii)?;
    let page = match version {
        TaxiiVersion::V21 => document::envelope(&body),
        TaxiiVersion::V20 => document::bundle(&body),
    }
    .map_err(not_taxii)?;
    Ok(Answer {
        page,
        date_added_last,
        range,
        warning,
    })
}

/// The error for a status that is not a success, with what the server said about it.
pub(crate) fn status_error(
    status: u16,
    url: &str,
    content_type: Option<&str>,
    body: &[u8],
    version: TaxiiVersion,
) -> TaxiiError {
    let said = document::error_detail(body)
        .map(|d| format!(" (server: {d})"))
        .unwrap_or_default();
    match status {
        401 | 403 => TaxiiError::Unauthorized {
            url: url.into(),
            status,
        },
        404 => TaxiiError::Status {
            url: url.into(),
            status,
            detail: format!(
                ": no such API root or collection; check url (the API root) and collection \
                 (`feedstix taxii collections` lists them){said}"
            ),
        },
        406 | 415 => {
            let speaks = content_type
                .and_then(media::MediaType::parse)
                .and_then(|m| m.version().map(str::to_string))
                .filter(|v| v != version.as_str());
            let advice = match speaks {
                Some(v) => format!(
                    ": the server does not accept TAXII {} and answers in TAXII {v}; set \
                     version = \"{v}\" for this feed",
                    version.as_str()
                ),
                None => format!(
                    ": the server does not accept TAXII {}; try version = \"{}\"",
                    version.as_str(),
                    match version {
                        TaxiiVersion::V21 => "2.0",
                        TaxiiVersion::V20 => "2.1",
                    }
                ),
            };
            TaxiiError::Status {
                url: url.into(),
                status,
                detail: format!("{advice}{said}"),
            }
        }
        _ => TaxiiError::Status {
            url: url.into(),
            status,
            detail: said
                .replacen(" (server: ", ": ", 1)
                .trim_end_matches(')')
                .to_string(),
        },
    }
}

/// Checks a server date: it must be a timestamp and not in the future.
fn checked_date(value: &str, url: &str, now: DateTime<Utc>) -> Result<String, TaxiiError> {
    let parsed = parse_date(value).ok_or_else(|| TaxiiError::NotTaxii {
        url: url.into(),
        reason: format!("X-TAXII-Date-Added-Last \"{value}\" is not a timestamp"),
    })?;
    if parsed > now + FUTURE_SKEW {
        return Err(TaxiiError::NotTaxii {
            url: url.into(),
            reason: format!(
                "X-TAXII-Date-Added-Last {value} is in the future (now {}); refusing to store \
                 it, since the feed would then skip everything added until that date",
                now.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        });
    }
    Ok(value.to_string())
}

fn parse_date(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// The newest date a page's objects give when the server sent no
/// `X-TAXII-Date-Added-Last`: their `date_added` when a server includes it, else their
/// `modified` or `created`. The latter are at or before the date the server added them,
/// so a cursor set from them can fetch an object again but never skip one. Dates in the
/// future are ignored. Never the clock: an object added while this page was read would be
/// lost.
fn newest_object_date(objects: &[StixObject], now: DateTime<Utc>) -> Option<String> {
    let newest = |key: &str| -> Option<(DateTime<Utc>, String)> {
        objects
            .iter()
            .filter_map(|o| o.get(key).and_then(|v| v.as_str()))
            .filter_map(|s| parse_date(s).map(|d| (d, s.to_string())))
            .filter(|(d, _)| *d <= now + FUTURE_SKEW)
            .max_by_key(|(d, _)| *d)
    };
    newest("date_added")
        .or_else(|| {
            let modified = newest("modified");
            let created = newest("created");
            modified.into_iter().chain(created).max_by_key(|(d, _)| *d)
        })
        .map(|(_, s)| s)
}

/// Moves the walk's `last_added` forward to `last` if it is newer.
fn advance_last(walk: &mut TaxiiCursor, last: &str) -> bool {
    let newer = match walk.last_added.as_deref().and_then(parse_date) {
        Some(current) => parse_date(last).is_some_and(|d| d > current),
        None => true,
    };
    if newer {
        walk.last_added = Some(last.to_string());
    }
    newer
}

/// TAXII 2.0: keeps the fingerprints of the objects of pages that end at the walk's
/// newest date, the superset of the objects the next (inclusive) poll sends again.
fn note_boundary(
    walk: &mut TaxiiCursor,
    page_last: Option<&String>,
    fingerprints: Vec<String>,
    feed: &str,
) {
    let Some(last) = page_last else { return };
    let same = walk
        .last_added
        .as_deref()
        .and_then(parse_date)
        .zip(parse_date(last))
        .is_some_and(|(a, b)| a == b);
    if advance_last(walk, last) {
        walk.walk_boundary = fingerprints;
    } else if same {
        walk.walk_boundary.extend(fingerprints);
    }
    dedup_bounded(&mut walk.walk_boundary, feed);
}

fn dedup_bounded(list: &mut Vec<String>, feed: &str) {
    list.sort();
    list.dedup();
    if list.len() > MAX_BOUNDARY {
        tracing::warn!(feed = %feed, kept = MAX_BOUNDARY, found = list.len(), "too many objects share the newest date; some may be fetched twice");
        list.truncate(MAX_BOUNDARY);
    }
}

/// The cursor after a walk: the next poll starts after the newest date seen, or where
/// this one started when the server told nothing.
fn end_walk(mut walk: TaxiiCursor, previous: &TaxiiCursor) -> TaxiiCursor {
    let start = walk.added_after.clone();
    if let Some(last) = walk.last_added.clone() {
        walk.added_after = Some(last);
    }
    let unchanged = match (start.as_deref(), walk.added_after.as_deref()) {
        (Some(a), Some(b)) => parse_date(a) == parse_date(b),
        (None, None) => true,
        _ => false,
    };
    let mut boundary = std::mem::take(&mut walk.walk_boundary);
    if unchanged {
        // Same boundary date as before: what was fetched there is still fetched again.
        boundary.extend(previous.boundary.iter().cloned());
    }
    boundary.sort();
    boundary.dedup();
    boundary.truncate(MAX_BOUNDARY);
    TaxiiCursor {
        added_after: walk.added_after,
        next: None,
        offset: None,
        last_added: walk.last_added,
        boundary,
        walk_boundary: Vec::new(),
        empty_pages: 0,
    }
}

/// A short stable fingerprint of one object version (`id` and `modified`).
fn fingerprint(object: &StixObject) -> String {
    let id = crate::stix::object_id(object);
    let version = object
        .get("modified")
        .or_else(|| object.get("created"))
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let digest = Sha256::digest(format!("{id}|{version}").as_bytes());
    digest
        .iter()
        .take(FINGERPRINT_HEX / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests;
