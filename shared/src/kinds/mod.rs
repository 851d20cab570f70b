//! Feed kinds: each turns one page of its source into STIX objects and a new cursor.
//!
//! This file holds what the kinds share: the page contract ([`fetch_page`]), the error
//! type, and the HTTP status rules. Parsing and mapping live in each kind's module; those
//! parsers are synchronous pull parsers over a buffered reader, driven from here one item
//! (or one slice of rows) at a time, so a page streams to the page queue instead of
//! being held whole.

pub mod csv;
pub mod rss;
pub mod stream;
pub mod taxii;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::config::KindConfig;
use crate::cursor::Cursor;
use crate::feed::Feed;
use crate::http::HttpError;
use crate::ports::{PortError, Source, SourceRequest, SourceResponse};
use crate::stix::StixObject;

/// Rows mapped per CSV slice between two hand-offs to the page writer.
const CSV_SLICE_ROWS: usize = 1_000;

/// Checks a CSV mapper's JSON text the way a csv feed will load it.
pub fn check_mapper(text: &str) -> Result<(), String> {
    csv::Mapper::from_json(text)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Receives a page's objects as the kind produces them.
#[async_trait]
pub trait ObjectOut: Send {
    /// Takes one object. An error stops the page.
    async fn push(&mut self, object: StixObject) -> Result<(), PortError>;
}

/// How a page ended.
#[derive(Debug, Clone, PartialEq)]
pub struct PageEnd {
    /// The cursor after this page.
    pub cursor: Cursor,
    /// The source has more pages now.
    pub more: bool,
    /// Objects pushed.
    pub objects: u64,
    /// Items or rows skipped, each with its reason (bounded).
    pub skipped: Vec<String>,
    /// The source answered "not modified".
    pub not_modified: bool,
}

/// Why a page failed. The page's cursor does not move.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Transport, address, size or retry failure.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The server refused the credentials.
    #[error("{url} refused the credentials (HTTP {status}); check the feed's auth settings")]
    Unauthorized {
        /// The URL.
        url: String,
        /// 401 or 403.
        status: u16,
    },
    /// Access refused to a feed that sends no credentials.
    #[error("{url} refused access (HTTP {status}) and this feed sends no credentials; if the source needs them, set the feed's auth")]
    Forbidden {
        /// The URL.
        url: String,
        /// 401 or 403.
        status: u16,
    },
    /// Nothing at the URL.
    #[error("{url} was not found (HTTP 404)")]
    NotFound {
        /// The URL.
        url: String,
    },
    /// Any other unexpected status.
    #[error("{url} answered HTTP {status}{detail}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// Extra context from the body, starting with ": ", or empty.
        detail: String,
    },
    /// The body is not what the kind expects.
    #[error("{url}: {reason}")]
    Parse {
        /// The URL.
        url: String,
        /// What is wrong, with position.
        reason: String,
    },
    /// The next stage refused the page.
    #[error("cannot hand the page on: {0}")]
    Handoff(PortError),
    /// The kind is not available in this build.
    #[error("{0}")]
    Unsupported(String),
}

/// Fetches one page of `feed` from `cursor`, pushing its objects to `out` as they are made.
///
/// # Errors
/// Any failure fails the whole page; the caller keeps the old cursor, so the page is
/// fetched again next time (objects already pushed are delivered twice, which the
/// deterministic ids make harmless).
pub async fn fetch_page(
    feed: &Feed,
    cursor: &Cursor,
    source: &dyn Source,
    now: DateTime<Utc>,
    out: &mut dyn ObjectOut,
) -> Result<PageEnd, FetchError> {
    match &feed.config.kind {
        KindConfig::Rss { report_types } => {
            rss_page(feed, report_types, cursor, source, now, out).await
        }
        KindConfig::Csv { .. } => csv_page(feed, cursor, source, now, out).await,
        KindConfig::Taxii { .. } => taxii::fetch_page(feed, cursor, source, now, out).await,
        KindConfig::Stream { .. } => stream::fetch_page(feed, cursor, source, now, out).await,
    }
}

/// Maps an HTTP status that is not a success to the error users should see. `has_auth`
/// tells a refusal of the feed's credentials from a source that wants some.
pub fn check_status(
    response: &SourceResponse,
    url: &str,
    has_auth: bool,
) -> Result<(), FetchError> {
    match response.status {
        200..=299 | 304 => Ok(()),
        401 | 403 if has_auth => Err(FetchError::Unauthorized {
            url: url.into(),
            status: response.status,
        }),
        401 | 403 => Err(FetchError::Forbidden {
            url: url.into(),
            status: response.status,
        }),
        404 | 410 => Err(FetchError::NotFound { url: url.into() }),
        status => Err(FetchError::Status {
            url: url.into(),
            status,
            detail: String::new(),
        }),
    }
}

fn conditional_headers(etag: Option<&str>, last_modified: Option<&str>) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    if let Some(e) = etag {
        headers.push(("if-none-match".to_string(), e.to_string()));
    }
    if let Some(l) = last_modified {
        headers.push(("if-modified-since".to_string(), l.to_string()));
    }
    headers
}

fn unchanged(cursor: Cursor) -> PageEnd {
    PageEnd {
        cursor,
        more: false,
        objects: 0,
        skipped: Vec::new(),
        not_modified: true,
    }
}

/// Recognises a body that is plainly not CSV, from its first bytes: a JSON document (the
/// answer abuse.ch and others give when rate-limiting) or markup (an HTML error or login
/// page). Such a body would otherwise parse as a CSV without rows and look like an
/// unchanged feed, moving the cursor past an outage.
fn not_csv(reader: &mut Box<dyn std::io::BufRead + Send>) -> Option<&'static str> {
    let head = reader.fill_buf().ok()?;
    let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let first = head.iter().find(|b| !b.is_ascii_whitespace())?;
    match first {
        b'{' | b'[' => Some("JSON"),
        b'<' => Some("HTML or XML"),
        _ => None,
    }
}

/// Bounded list of skip reasons kept per page: enough to act on, not a second copy of a
/// broken file.
const MAX_SKIPS_KEPT: usize = 100;

/// A document fetched with a conditional GET: `None` when the source says it has not
/// changed since the validators in the cursor.
struct Document {
    reader: Box<dyn std::io::BufRead + Send>,
    etag: Option<String>,
    last_modified: Option<String>,
}

async fn get_document(
    source: &dyn Source,
    feed: &Feed,
    etag: Option<&str>,
    last_modified: Option<&str>,
) -> Result<Option<Document>, FetchError> {
    let url = feed.config.url.as_str();
    let request = SourceRequest {
        url: url.into(),
        headers: conditional_headers(etag, last_modified),
    };
    let response = source.get(request).await?;
    check_status(
        &response,
        url,
        feed.config.http.auth != crate::config::Auth::None,
    )?;
    if response.status == 304 {
        return Ok(None);
    }
    let etag = response.header("etag").map(str::to_string);
    let last_modified = response.header("last-modified").map(str::to_string);
    let reader = response.body.reader().map_err(|e| FetchError::Parse {
        url: url.into(),
        reason: format!("cannot read body: {e}"),
    })?;
    Ok(Some(Document {
        reader,
        etag,
        last_modified,
    }))
}

async fn rss_page(
    feed: &Feed,
    report_types: &[String],
    cursor: &Cursor,
    source: &dyn Source,
    now: DateTime<Utc>,
    out: &mut dyn ObjectOut,
) -> Result<PageEnd, FetchError> {
    let url = feed.config.url.as_str();
    let previous = match cursor {
        Cursor::Rss(c) => c.clone(),
        _ => rss::RssCursor::default(),
    };
    let doc = get_document(
        source,
        feed,
        previous.etag.as_deref(),
        previous.last_modified.as_deref(),
    );
    let Some(Document {
        reader,
        etag,
        last_modified,
    }) = doc.await?
    else {
        return Ok(unchanged(Cursor::Rss(previous)));
    };
    let settings = rss::RssSettings {
        report_types: report_types.to_vec(),
    };
    let mut pager = rss::RssPager::new(
        reader,
        &previous,
        &settings,
        &feed.provenance,
        feed.config.import_from,
        now,
    )
    .map_err(|e| FetchError::Parse {
        url: url.into(),
        reason: e.to_string(),
    })?;
    let mut objects = 0;
    let mut skipped = Vec::new();
    while let Some(item) = pager.next_item() {
        match item.map_err(|e| FetchError::Parse {
            url: url.into(),
            reason: e.to_string(),
        })? {
            rss::ItemOutcome::New(items) => {
                for object in items {
                    out.push(object).await.map_err(FetchError::Handoff)?;
                    objects += 1;
                }
            }
            rss::ItemOutcome::Old => {}
            rss::ItemOutcome::Skipped { item, reason } => {
                tracing::warn!(feed = %feed.name(), item = %item, reason = %reason, "skipped item");
                if skipped.len() < MAX_SKIPS_KEPT {
                    skipped.push(format!("item {item}: {reason}"));
                }
            }
        }
    }
    let mut next = pager.finish();
    next.etag = etag;
    next.last_modified = last_modified;
    Ok(PageEnd {
        cursor: Cursor::Rss(next),
        more: false,
        objects,
        skipped,
        not_modified: false,
    })
}

async fn csv_page(
    feed: &Feed,
    cursor: &Cursor,
    source: &dyn Source,
    now: DateTime<Utc>,
    out: &mut dyn ObjectOut,
) -> Result<PageEnd, FetchError> {
    let url = feed.config.url.as_str();
    let Some(mapper) = feed.mapper.as_deref() else {
        return Err(FetchError::Unsupported("csv feed without a mapper".into()));
    };
    let previous = match cursor {
        Cursor::Csv(c) => c.clone(),
        _ => csv::CsvCursor::default(),
    };
    let doc = get_document(
        source,
        feed,
        previous.etag.as_deref(),
        previous.last_modified.as_deref(),
    );
    let Some(Document {
        mut reader,
        etag,
        last_modified,
    }) = doc.await?
    else {
        return Ok(unchanged(Cursor::Csv(previous)));
    };
    if let Some(what) = not_csv(&mut reader) {
        return Err(FetchError::Parse {
            url: url.into(),
            reason: format!("the body is {what}, not CSV (an error page or a rate-limit answer?)"),
        });
    }
    let parse = |e: csv::CsvError| FetchError::Parse {
        url: url.into(),
        reason: e.to_string(),
    };
    let mut pager = csv::CsvPager::new(
        reader,
        mapper,
        &previous,
        &feed.provenance,
        feed.config.import_from,
        now,
    )
    .map_err(parse)?;
    let mut objects = 0;
    while let Some(slice) = pager.next_slice(CSV_SLICE_ROWS).map_err(parse)? {
        for object in slice {
            out.push(object).await.map_err(FetchError::Handoff)?;
            objects += 1;
        }
    }
    let skipped: Vec<String> = pager
        .skipped()
        .iter()
        .take(MAX_SKIPS_KEPT)
        .map(|s| format!("line {}: {}", s.line, s.reason))
        .collect();
    for s in &skipped {
        tracing::warn!(feed = %feed.name(), row = %s, "skipped row");
    }
    let mut next = pager.finish();
    next.etag = etag;
    next.last_modified = last_modified;
    Ok(PageEnd {
        cursor: Cursor::Csv(next),
        more: false,
        objects,
        skipped,
        not_modified: false,
    })
}
