//! The RSS/Atom feed kind: one fetched document in, one STIX report per new item out, and
//! the cursor that tells the next run which items were already handed on.
//!
//! This module owns reading the document (RSS 0.9x, RSS 1.0/RDF, RSS 2.0, Atom 0.3 and
//! 1.0), deciding which items are new, and mapping each item to STIX. Fetching (ETag,
//! Last-Modified) and slicing the output into messages belong to the HTTP glue and the
//! pipeline; they only carry [`RssCursor::etag`] and [`RssCursor::last_modified`] through.
//!
//! # Reading
//!
//! [`RssPager`] is a pull parser over the body ([`quick_xml::NsReader`]); no tree of the
//! document is built, and the text kept for one item is bounded by
//! [`MAX_ITEM_TEXT_BYTES`]. Elements are recognised by namespace URI and local name, never
//! by prefix, so `atom10:link` or `a10:updated` work like `link` in an Atom document.
//! The body is transcoded to UTF-8 first (see `decode`): byte-order mark, declared
//! charset, blank lines or a broken `<?xml` declaration are all handled there; invalid
//! UTF-8 is read as windows-1252 with a warning. Undeclared HTML entities (`&nbsp;`) are
//! resolved from a table instead of failing the document; a DOCTYPE that declares
//! entities is refused, because expanding them is how entity-bomb documents attack.
//!
//! A document-level problem (not XML, not a feed, cut off before its end) fails the whole
//! page with an [`RssError`]; a problem with one item only skips that item with a reason.
//!
//! # Mapping
//!
//! - `name`: the title; else the item link; else the first words of the description.
//! - `description`: plain text of the full content (`content:encoded`, Atom `content`),
//!   else of the summary (`description`, Atom `summary`). Full content is preferred
//!   because advisories often name their CVEs only in the body.
//! - `published` (= `created` = `modified`): `pubDate`, else Atom `published`/`issued`,
//!   else `dc:date`, else Atom `updated`/`modified`; the first that parses wins.
//! - `labels`: the categories (Atom `label`, else `term`), trimmed and de-duplicated.
//! - `external_references`: the item link (`feedburner:origLink` before the proxied
//!   link; relative links resolved against `xml:base`, else the feed link), with the feed
//!   link's host as `source_name` (else `rss`).
//! - `object_refs`: one `vulnerability` per CVE id named anywhere in the item, emitted
//!   before the report. An item that names none references the configured author
//!   identity; without an author, an organization named after the feed title (else
//!   "RSS feed") is emitted and referenced. STIX 2.1 requires the list to be non-empty,
//!   and the feed itself is the honest answer to "what is this report about".
//!
//! # New items
//!
//! An item with a date is new when it is later than [`RssCursor::newest`], or at exactly
//! that date with a key (guid, else Atom id, else link, else a hash of title and
//! description) not in [`RssCursor::ids_at_newest`]; so items sharing the newest date are
//! never lost. Items older than `import_from` are old. An item without a readable date
//! gets the time it was first seen, remembered in [`RssCursor::first_seen`]; it is new
//! exactly when its key is not remembered there, and keeps its first-seen time (hence its
//! report id) in later runs.
//!
//! Known limits: an item published late with a date older than the cursor is not seen
//! (the design keys on dates); `first_seen` keeps [`FIRST_SEEN_CAP`] keys, so in a feed
//! with more dateless items than that the oldest come back once as new with a new id;
//! a single text node is buffered whole by the pull parser before the item limit can
//! apply (the fetcher's response-size limit bounds it).

mod date;
mod decode;
mod entities;
mod html;
mod report;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Chain, Cursor};

use chrono::{DateTime, Utc};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use sha2::{Digest, Sha256};
use url::Url;

use crate::stix::{Provenance, StixObject};

/// An item whose text exceeds this is skipped: it is not a news item but a dump, and
/// keeping it would let one item take the function's memory.
pub const MAX_ITEM_TEXT_BYTES: usize = 8 * 1024 * 1024;

/// Deepest element nesting accepted. Real feeds nest a few levels (plus some HTML inside
/// content); a document nested thousands deep is an attack on the parser's stacks, whose
/// cost grows with depth, so it fails the page instead of stalling it.
pub const MAX_DEPTH: usize = 256;

/// How many dateless items the cursor remembers. The cursor is stored in a table item
/// (400 KiB at most); 5000 keys of typical length stay well under it.
pub const FIRST_SEEN_CAP: usize = 5000;

/// The report type used when the feed configures none.
const DEFAULT_REPORT_TYPE: &str = "threat-report";

/// Settings of an rss feed that the mapping needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RssSettings {
    /// `report_types` of every report; empty means `["threat-report"]`.
    pub report_types: Vec<String>,
}

/// Where an rss feed resumes: what was already handed on, and the HTTP validators.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RssCursor {
    /// The newest item date handed on so far.
    pub newest: Option<DateTime<Utc>>,
    /// Keys of the items seen at exactly [`Self::newest`]: a later item at the same date
    /// is still new.
    pub ids_at_newest: Vec<String>,
    /// Items without a date: key → the time they were first seen, which serves as their
    /// published date. Bounded by [`FIRST_SEEN_CAP`], oldest evicted first.
    pub first_seen: BTreeMap<String, DateTime<Utc>>,
    /// The ETag of the last fetch, set by the HTTP glue and kept as is here.
    pub etag: Option<String>,
    /// The Last-Modified of the last fetch, set by the HTTP glue and kept as is here.
    pub last_modified: Option<String>,
}

/// What one item of the document gave.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemOutcome {
    /// A new item: its vulnerabilities and identities first, the report last.
    New(Vec<StixObject>),
    /// Already handed on in an earlier run, or older than `import_from`.
    Old,
    /// An item that cannot become a report; reported and skipped, the page goes on.
    Skipped {
        /// The item's key (guid, link, …) or position, for the operator.
        item: String,
        /// Why it was skipped.
        reason: String,
    },
}

/// A document-level failure: the page fails and the cursor does not move.
#[derive(Debug, thiserror::Error)]
pub enum RssError {
    /// The body could not be read.
    #[error("reading the feed body failed at byte {offset}: {source}")]
    Io {
        /// Position in the body.
        offset: u64,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Not well-formed XML (beyond what is recovered: entities, declaration, charset).
    #[error("malformed XML at byte {offset}: {message}")]
    Malformed {
        /// Position in the body (for a non-UTF-8 body, in its UTF-8 transcoding).
        offset: u64,
        /// What the parser found.
        message: String,
    },
    /// Well-formed, but not a feed (an HTML error page, say).
    #[error("not an RSS or Atom document: the root element is <{root}>")]
    NotAFeed {
        /// The root element as written.
        root: String,
    },
    /// No root element at all (an empty body, plain text, JSON).
    #[error("not an RSS or Atom document: no root element found")]
    NoRoot,
    /// The document ends inside an element.
    #[error("document ends before </{element}> (truncated?)")]
    Truncated {
        /// The innermost feed element left open.
        element: String,
    },
    /// A DOCTYPE declares entities, which are never expanded.
    #[error("document type at byte {offset} declares entities (<!ENTITY>): refused, entity expansion is not supported")]
    EntityDeclaration {
        /// Position of the DOCTYPE.
        offset: u64,
    },
    /// Elements nested deeper than [`MAX_DEPTH`].
    #[error("elements nested more than {limit} levels deep at byte {offset}: refused")]
    TooDeep {
        /// Position of the element that went too deep.
        offset: u64,
        /// The limit.
        limit: usize,
    },
}

/// Streams the items of one RSS or Atom document.
///
/// Call [`Self::next_item`] until it returns `None`, then [`Self::finish`] for the cursor
/// to store. After an `Err` the page has failed: the cursor must not be stored.
pub struct RssPager<R: BufRead> {
    reader: NsReader<decode::Transcoder<Chain<Cursor<Vec<u8>>, R>>>,
    buf: Vec<u8>,
    state: State,
    /// Bytes removed before parsing, added to parser positions in error messages.
    skipped: u64,
    done: bool,
}

/// Every parsing decision, kept apart from the reader so the borrow of an event (which
/// lives in the reader's buffer) and the state can be used together.
struct State {
    format: Option<Format>,
    stack: Vec<Frame>,
    capture: Option<Capture>,
    item: Option<RawItem>,
    items_seen: usize,

    feed_title: Option<String>,
    feed_link: Option<Url>,
    feed_self: Option<Url>,

    settings_report_types: Vec<String>,
    provenance: Provenance,
    import_from: Option<DateTime<Utc>>,
    now: DateTime<Utc>,

    old: RssCursor,
    old_ids: HashSet<String>,
    first_seen: BTreeMap<String, DateTime<Utc>>,
    /// Keys handed on (or found old) in this document, as 128-bit hashes (see
    /// [`key_hash`]): a repeated item is old. Hashes rather than the keys themselves, so a
    /// document of a hundred thousand items costs a couple of megabytes here, not ten.
    keys_this_run: HashSet<u128>,
    doc_newest: Option<DateTime<Utc>>,
    doc_ids_at_newest: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Rss,
    Rdf,
    Atom,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ns {
    /// No namespace, or one of the RSS namespaces (RSS 1.0, 0.90, Userland's 2.0).
    Rss,
    Atom,
    Dc,
    Content,
    Rdf,
    Feedburner,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Root,
    Channel,
    Item,
    Other,
}

struct Frame {
    role: Role,
    base: Option<Url>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    FeedTitle,
    FeedLink,
    Title,
    Link,
    OrigLink,
    Guid,
    AtomId,
    PubDate,
    DcDate,
    Published,
    Updated,
    Description,
    Content,
    Category,
}

/// How a captured element's text is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// An identifier, URL or date: references resolved, trimmed.
    Raw,
    /// Plain text: references resolved, white space collapsed.
    Text,
    /// Escaped HTML (or, when the element has child elements, raw markup).
    Html,
    /// Inline XHTML markup.
    Xhtml,
}

struct Capture {
    field: Field,
    kind: Kind,
    /// Stack depth of the captured element.
    depth: usize,
    /// The element's content as markup: text as escaped in the document, CDATA escaped,
    /// child elements as tags. Every kind is read from this one form.
    markup: String,
    children: bool,
}

#[derive(Default)]
struct RawItem {
    title: Option<String>,
    link: Option<Url>,
    orig_link: Option<Url>,
    guid: Option<String>,
    guid_is_permalink: bool,
    atom_id: Option<String>,
    pub_date: Option<String>,
    dc_date: Option<String>,
    published: Option<String>,
    updated: Option<String>,
    description: Option<String>,
    content: Option<String>,
    categories: Vec<String>,
    text_bytes: usize,
    oversized: bool,
}

const NS_ATOM: &[&[u8]] = &[b"http://www.w3.org/2005/Atom", b"http://purl.org/atom/ns#"];
const NS_RSS: &[&[u8]] = &[
    b"http://purl.org/rss/1.0/",
    b"http://my.netscape.com/rdf/simple/0.9/",
    b"http://backend.userland.com/rss2",
    b"http://blogs.law.harvard.edu/tech/rss",
];
const NS_DC: &[u8] = b"http://purl.org/dc/elements/1.1/";
const NS_CONTENT: &[u8] = b"http://purl.org/rss/1.0/modules/content/";
const NS_RDF: &[u8] = b"http://www.w3.org/1999/02/22-rdf-syntax-ns#";
const NS_FEEDBURNER: &[u8] = b"http://rssnamespace.org/feedburner/ext/1.0";

fn classify(ns: ResolveResult<'_>) -> Ns {
    match ns {
        ResolveResult::Unbound => Ns::Rss,
        ResolveResult::Bound(n) => {
            let uri = n.into_inner();
            if NS_ATOM.contains(&uri) {
                Ns::Atom
            } else if NS_RSS.contains(&uri) {
                Ns::Rss
            } else if uri == NS_DC {
                Ns::Dc
            } else if uri == NS_CONTENT {
                Ns::Content
            } else if uri == NS_RDF {
                Ns::Rdf
            } else if uri == NS_FEEDBURNER {
                Ns::Feedburner
            } else {
                Ns::Other
            }
        }
        ResolveResult::Unknown(_) => Ns::Other,
    }
}

enum Step {
    Continue,
    Item(ItemOutcome),
    End,
}

impl<R: BufRead> RssPager<R> {
    /// Starts reading `body` and checks that it is a feed.
    ///
    /// `cursor` is the one stored by the previous run (default for the first run);
    /// `import_from` makes older items old; `now` is the first-seen time of dateless items.
    ///
    /// # Errors
    ///
    /// Fails when the body cannot be read, is not XML, or its root element is not
    /// `rss`, `rdf:RDF` or Atom's `feed`.
    pub fn new(
        body: R,
        cursor: &RssCursor,
        settings: &RssSettings,
        provenance: &Provenance,
        import_from: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Self, RssError> {
        let prepared =
            decode::prepare(body).map_err(|source| RssError::Io { offset: 0, source })?;
        if prepared.encoding != encoding_rs::UTF_8 {
            tracing::debug!(
                encoding = prepared.encoding.name(),
                "transcoding the feed body"
            );
        }
        let mut reader = NsReader::from_reader(prepared.reader);
        reader.config_mut().trim_text(false);

        let report_types = if settings.report_types.is_empty() {
            vec![DEFAULT_REPORT_TYPE.to_owned()]
        } else {
            settings.report_types.clone()
        };
        let state = State {
            format: None,
            stack: Vec::new(),
            capture: None,
            item: None,
            items_seen: 0,
            feed_title: None,
            feed_link: None,
            feed_self: None,
            settings_report_types: report_types,
            provenance: provenance.clone(),
            import_from,
            now,
            old_ids: cursor.ids_at_newest.iter().cloned().collect(),
            first_seen: cursor.first_seen.clone(),
            old: cursor.clone(),
            keys_this_run: HashSet::new(),
            doc_newest: None,
            doc_ids_at_newest: Vec::new(),
        };
        let mut pager = RssPager {
            reader,
            buf: Vec::new(),
            state,
            skipped: prepared.skipped,
            done: false,
        };

        // Read up to the root element so that a non-feed fails here, before any item.
        while pager.state.format.is_none() {
            match pager.step()? {
                Step::Continue => {}
                Step::End => return Err(RssError::NoRoot),
                Step::Item(_) => break,
            }
        }
        Ok(pager)
    }

    /// The next item's outcome; `None` at the end of the document (or after an error).
    ///
    /// An `Err` is a document-level failure (malformed XML, truncated document, entity
    /// declarations): the page fails and [`Self::finish`] must not be used.
    pub fn next_item(&mut self) -> Option<Result<ItemOutcome, RssError>> {
        while !self.done {
            match self.step() {
                Ok(Step::Continue) => {}
                Ok(Step::Item(outcome)) => return Some(Ok(outcome)),
                Ok(Step::End) => self.done = true,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }

    /// The cursor to store once [`Self::next_item`] has returned `None` without an error.
    pub fn finish(self) -> RssCursor {
        self.state.into_cursor()
    }

    /// Reads one event and applies it.
    fn step(&mut self) -> Result<Step, RssError> {
        // A huge text node grows the buffer; do not keep that memory for the next events.
        if self.buf.capacity() > 1024 * 1024 {
            self.buf = Vec::new();
        }
        self.buf.clear();
        let (ns, event) = match self.reader.read_resolved_event_into(&mut self.buf) {
            Ok((ns, event)) => (classify(ns), event),
            Err(e) => {
                let offset = self.reader.error_position() + self.skipped;
                return Err(match e {
                    quick_xml::Error::Io(io) => RssError::Io {
                        offset,
                        source: std::io::Error::new(io.kind(), io.to_string()),
                    },
                    other => RssError::Malformed {
                        offset,
                        message: other.to_string(),
                    },
                });
            }
        };
        let position = self.skipped + self.reader.buffer_position();
        let state = &mut self.state;
        match event {
            Event::Start(_) if state.stack.len() >= MAX_DEPTH => {
                return Err(RssError::TooDeep {
                    offset: position,
                    limit: MAX_DEPTH,
                });
            }
            Event::Start(e) => state.start(ns, &e, false)?,
            Event::Empty(e) => {
                state.start(ns, &e, true)?;
                return Ok(state
                    .end(e.name().as_ref(), true)
                    .map_or(Step::Continue, Step::Item));
            }
            Event::End(e) => {
                let outcome = state.end(e.name().as_ref(), false);
                return Ok(outcome.map_or(Step::Continue, Step::Item));
            }
            Event::Text(t) => state.text(&String::from_utf8_lossy(&t), false),
            Event::CData(c) => state.text(&String::from_utf8_lossy(&c), true),
            Event::DocType(d) if d.windows(8).any(|w| w.eq_ignore_ascii_case(b"<!ENTITY")) => {
                return Err(RssError::EntityDeclaration { offset: position });
            }
            Event::Eof => {
                if let Some(element) = state.open_element() {
                    return Err(RssError::Truncated { element });
                }
                return Ok(Step::End);
            }
            _ => {}
        }
        Ok(Step::Continue)
    }
}

impl State {
    fn start(&mut self, ns: Ns, e: &BytesStart<'_>, empty: bool) -> Result<(), RssError> {
        let local = e.local_name();
        let local = local.as_ref();
        let base = xml_base(e, self.base());

        // Inside a captured element every child is markup of that element.
        if let Some(capture) = self.capture.as_mut() {
            capture.children = true;
            if let Some(item) = self.item.as_mut() {
                item.text_bytes += e.len() + 2;
            }
            if !self.item.as_ref().is_some_and(|i| i.oversized) {
                capture.markup.push('<');
                capture.markup.push_str(&String::from_utf8_lossy(e));
                capture.markup.push_str(if empty { "/>" } else { ">" });
            }
            self.stack.push(Frame {
                role: Role::Other,
                base,
            });
            self.check_item_size();
            return Ok(());
        }

        let parent = self.stack.last().map(|f| f.role);
        let role = match parent {
            None => {
                let format = match (ns, local) {
                    (Ns::Rss, b"rss") => Format::Rss,
                    (Ns::Rdf, b"RDF") => Format::Rdf,
                    (Ns::Atom, b"feed") => Format::Atom,
                    _ => {
                        return Err(RssError::NotAFeed {
                            root: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
                        })
                    }
                };
                self.format = Some(format);
                Role::Root
            }
            Some(Role::Root) if ns == Ns::Rss && local == b"channel" => Role::Channel,
            Some(Role::Root | Role::Channel)
                if self.format != Some(Format::Atom) && ns == Ns::Rss && local == b"item" =>
            {
                self.begin_item();
                Role::Item
            }
            Some(Role::Root)
                if self.format == Some(Format::Atom) && ns == Ns::Atom && local == b"entry" =>
            {
                self.begin_item();
                Role::Item
            }
            Some(Role::Item) => {
                self.item_element(ns, local, e, base.as_ref());
                Role::Other
            }
            Some(Role::Channel) => {
                self.feed_element(ns, local, e, base.as_ref());
                Role::Other
            }
            Some(Role::Root) if self.format == Some(Format::Atom) => {
                self.feed_element(ns, local, e, base.as_ref());
                Role::Other
            }
            _ => Role::Other,
        };
        self.stack.push(Frame { role, base });
        if let Some(capture) = self.capture.as_mut() {
            if capture.depth == 0 {
                capture.depth = self.stack.len();
            }
        }
        Ok(())
    }

    /// Applies the end of the innermost element; returns an outcome when it closes an item.
    fn end(&mut self, raw_name: &[u8], empty: bool) -> Option<ItemOutcome> {
        let depth = self.stack.len();
        if let Some(capture) = self.capture.as_mut() {
            if depth > capture.depth {
                // Empty elements already closed themselves with "/>".
                if !empty && !self.item.as_ref().is_some_and(|i| i.oversized) {
                    capture.markup.push_str("</");
                    capture.markup.push_str(&String::from_utf8_lossy(raw_name));
                    capture.markup.push('>');
                }
            } else if let Some(capture) = self.capture.take() {
                self.finish_capture(capture);
            }
        }
        let frame = self.stack.pop()?;
        if frame.role == Role::Item {
            let item = self.item.take()?;
            return Some(self.finish_item(item));
        }
        None
    }

    fn text(&mut self, text: &str, cdata: bool) {
        if let Some(item) = self.item.as_mut() {
            item.text_bytes += text.len();
        }
        self.check_item_size();
        if self.item.as_ref().is_some_and(|i| i.oversized) {
            return;
        }
        let Some(capture) = self.capture.as_mut() else {
            return;
        };
        if cdata {
            // CDATA is literal text; escape it so the markup form stays uniform.
            for c in text.chars() {
                match c {
                    '&' => capture.markup.push_str("&amp;"),
                    '<' => capture.markup.push_str("&lt;"),
                    '>' => capture.markup.push_str("&gt;"),
                    c => capture.markup.push(c),
                }
            }
        } else {
            capture.markup.push_str(text);
        }
    }

    fn check_item_size(&mut self) {
        if let Some(item) = self.item.as_mut() {
            if !item.oversized && item.text_bytes > MAX_ITEM_TEXT_BYTES {
                item.oversized = true;
                if let Some(capture) = self.capture.as_mut() {
                    capture.markup = String::new();
                }
            }
        }
    }

    /// The nearest `xml:base` in scope.
    fn base(&self) -> Option<&Url> {
        self.stack.iter().rev().find_map(|f| f.base.as_ref())
    }

    /// The innermost open feed element, for the truncation message.
    fn open_element(&self) -> Option<String> {
        let frame = self
            .stack
            .iter()
            .rev()
            .find(|f| f.role != Role::Other)
            .or(self.stack.last())?;
        let name = match (frame.role, self.format) {
            (Role::Item, Some(Format::Atom)) => "entry",
            (Role::Item, _) => "item",
            (Role::Channel, _) => "channel",
            (_, Some(Format::Atom)) => "feed",
            (_, Some(Format::Rdf)) => "rdf:RDF",
            _ => "rss",
        };
        Some(name.to_owned())
    }

    fn begin_item(&mut self) {
        self.items_seen += 1;
        self.item = Some(RawItem::default());
    }

    fn begin_capture(&mut self, field: Field, kind: Kind) {
        // The depth is set once the element's frame is pushed.
        self.capture = Some(Capture {
            field,
            kind,
            depth: 0,
            markup: String::new(),
            children: false,
        });
    }

    fn feed_element(&mut self, ns: Ns, local: &[u8], e: &BytesStart<'_>, base: Option<&Url>) {
        match (ns, local) {
            (Ns::Rss | Ns::Atom, b"title") => {
                let kind = if ns == Ns::Atom {
                    atom_kind(e)
                } else {
                    Kind::Text
                };
                self.begin_capture(Field::FeedTitle, kind);
            }
            (Ns::Rss, b"link") => self.begin_capture(Field::FeedLink, Kind::Raw),
            (Ns::Atom, b"link") => {
                let (href, rel) = link_attributes(e);
                let base = base.cloned().or_else(|| self.base().cloned());
                let Some(url) = href.and_then(|h| resolve(&h, base.as_ref(), None)) else {
                    return;
                };
                match rel.as_deref() {
                    None | Some("alternate") if self.feed_link.is_none() => {
                        self.feed_link = Some(url)
                    }
                    Some("self") if self.feed_self.is_none() => self.feed_self = Some(url),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn item_element(&mut self, ns: Ns, local: &[u8], e: &BytesStart<'_>, base: Option<&Url>) {
        let (field, kind) = match (ns, local) {
            (Ns::Rss, b"title") => (Field::Title, Kind::Text),
            (Ns::Atom, b"title") => (Field::Title, atom_kind(e)),
            (Ns::Rss, b"link") => (Field::Link, Kind::Raw),
            (Ns::Atom, b"link") => {
                let (href, rel) = link_attributes(e);
                if matches!(rel.as_deref(), None | Some("alternate")) {
                    let base = base.cloned().or_else(|| self.base().cloned());
                    let url =
                        href.and_then(|h| resolve(&h, base.as_ref(), self.feed_link.as_ref()));
                    if let (Some(item), Some(url)) = (self.item.as_mut(), url) {
                        item.link.get_or_insert(url);
                    }
                }
                return;
            }
            (Ns::Feedburner, b"origLink") => (Field::OrigLink, Kind::Raw),
            (Ns::Rss, b"guid") => {
                let permalink = attribute(e, b"isPermaLink");
                if let Some(item) = self.item.as_mut() {
                    item.guid_is_permalink =
                        !permalink.is_some_and(|p| p.trim().eq_ignore_ascii_case("false"));
                }
                (Field::Guid, Kind::Raw)
            }
            (Ns::Atom, b"id") => (Field::AtomId, Kind::Raw),
            (Ns::Rss, b"pubDate") => (Field::PubDate, Kind::Raw),
            (Ns::Dc, b"date") => (Field::DcDate, Kind::Raw),
            (Ns::Atom, b"published" | b"issued") => (Field::Published, Kind::Raw),
            (Ns::Atom, b"updated" | b"modified") => (Field::Updated, Kind::Raw),
            (Ns::Rss, b"description") => (Field::Description, Kind::Html),
            (Ns::Dc, b"description") => (Field::Description, Kind::Text),
            (Ns::Atom, b"summary") => (Field::Description, atom_kind(e)),
            (Ns::Content, b"encoded") => (Field::Content, Kind::Html),
            (Ns::Atom, b"content") => (Field::Content, atom_kind(e)),
            (Ns::Rss, b"category") | (Ns::Dc, b"subject") => (Field::Category, Kind::Text),
            (Ns::Atom, b"category") => {
                let label = attribute(e, b"label").filter(|l| !l.trim().is_empty());
                if let Some(term) = label.or_else(|| attribute(e, b"term")) {
                    self.add_category(html::collapse(&term));
                }
                return;
            }
            _ => return,
        };
        self.begin_capture(field, kind);
    }

    fn add_category(&mut self, category: String) {
        if let Some(item) = self.item.as_mut() {
            if !category.is_empty() && !item.categories.contains(&category) {
                item.categories.push(category);
            }
        }
    }

    fn finish_capture(&mut self, capture: Capture) {
        let text = match capture.kind {
            Kind::Raw => html::collapse(&capture.markup),
            Kind::Text if capture.children => html::to_text(&capture.markup),
            Kind::Text => html::collapse(&capture.markup),
            Kind::Html if capture.children => html::to_text(&capture.markup),
            Kind::Html => html::to_text(&entities::decode(&capture.markup)),
            Kind::Xhtml => html::to_text(&capture.markup),
        };
        let value = Some(text).filter(|t| !t.is_empty());
        match capture.field {
            Field::FeedTitle => self.feed_title = self.feed_title.take().or(value),
            Field::FeedLink => {
                if self.feed_link.is_none() {
                    let base = self.base().cloned();
                    self.feed_link = value.and_then(|v| resolve(&v, base.as_ref(), None));
                }
            }
            Field::Category => {
                if let Some(v) = value {
                    self.add_category(v);
                }
            }
            Field::Link | Field::OrigLink => {
                let Some(v) = value else { return };
                let url = resolve(&v, self.base(), self.feed_link.as_ref());
                let Some(item) = self.item.as_mut() else {
                    return;
                };
                let slot = if capture.field == Field::Link {
                    &mut item.link
                } else {
                    &mut item.orig_link
                };
                if slot.is_none() {
                    *slot = url;
                }
            }
            field => {
                let Some(item) = self.item.as_mut() else {
                    return;
                };
                let Some(v) = value else { return };
                let slot = match field {
                    Field::Title => &mut item.title,
                    Field::Guid => &mut item.guid,
                    Field::AtomId => &mut item.atom_id,
                    Field::PubDate => &mut item.pub_date,
                    Field::DcDate => &mut item.dc_date,
                    Field::Published => &mut item.published,
                    Field::Updated => &mut item.updated,
                    Field::Description => &mut item.description,
                    Field::Content => &mut item.content,
                    _ => return,
                };
                if slot.is_none() {
                    *slot = Some(v);
                }
            }
        }
    }

    /// Decides new or old, and maps a new item.
    fn finish_item(&mut self, item: RawItem) -> ItemOutcome {
        let key = item.key();
        if item.oversized {
            tracing::warn!(item = %key, "item skipped: text over the size limit");
            return ItemOutcome::Skipped {
                item: key,
                reason: format!(
                    "item text exceeds {} MiB",
                    MAX_ITEM_TEXT_BYTES / (1024 * 1024)
                ),
            };
        }

        let link = item
            .orig_link
            .clone()
            .or_else(|| item.link.clone())
            .or_else(|| {
                // A guid that is a permalink is the item's address when no link is given.
                item.guid
                    .as_deref()
                    .filter(|_| item.guid_is_permalink)
                    .and_then(|g| Url::parse(g).ok())
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
            });
        let body = item.content.as_deref().or(item.description.as_deref());
        let name = item
            .title
            .clone()
            .or_else(|| link.as_ref().map(|l| l.to_string()))
            .or_else(|| body.and_then(report::name_from_text));
        let Some(name) = name else {
            tracing::warn!(item = %key, "item skipped: nothing to name the report after");
            return ItemOutcome::Skipped {
                item: key,
                reason: "no title, link or description to name the report after".into(),
            };
        };

        let (published, is_new) = match item.date() {
            Some(published) => {
                self.note_dated(published, &key);
                let seen = match self.old.newest {
                    Some(newest) if published < newest => true,
                    Some(newest) if published == newest => self.old_ids.contains(&key),
                    _ => false,
                };
                let too_old = self.import_from.is_some_and(|from| published < from);
                (published, !seen && !too_old)
            }
            None => {
                let known = self.old.first_seen.contains_key(&key);
                let first = *self.first_seen.entry(key.clone()).or_insert(self.now);
                tracing::debug!(item = %key, first_seen = %first, "item without a readable date");
                (first, !known)
            }
        };
        // The same item twice in one document is handed on once.
        let repeated = !self.keys_this_run.insert(key_hash(&key));
        if !is_new || repeated {
            tracing::debug!(item = %key, "item already handed on");
            return ItemOutcome::Old;
        }

        let source_name = self
            .feed_link
            .as_ref()
            .or(self.feed_self.as_ref())
            .and_then(|u| u.host_str())
            .unwrap_or("rss")
            .to_owned();
        let feed_name = self
            .feed_title
            .as_deref()
            .unwrap_or(report::DEFAULT_SOURCE_NAME);
        let scan: Vec<&str> = [
            Some(name.as_str()),
            item.description.as_deref(),
            item.content.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        let view = report::ItemView {
            name: &name,
            description: body,
            published,
            link: link.as_ref(),
            labels: &item.categories,
            scan: &scan,
        };
        let feed = report::FeedView {
            report_types: &self.settings_report_types,
            provenance: &self.provenance,
            source_name: &source_name,
            feed_name,
        };
        tracing::debug!(item = %key, name = %name, "new item");
        ItemOutcome::New(report::objects(&view, &feed))
    }

    /// Tracks the newest date of the document and the keys at that date.
    fn note_dated(&mut self, published: DateTime<Utc>, key: &str) {
        match self.doc_newest {
            Some(newest) if published < newest => {}
            Some(newest) if published == newest => {
                if !self.doc_ids_at_newest.iter().any(|k| k == key) {
                    self.doc_ids_at_newest.push(key.to_owned());
                }
            }
            _ => {
                self.doc_newest = Some(published);
                self.doc_ids_at_newest = vec![key.to_owned()];
            }
        }
    }

    fn into_cursor(self) -> RssCursor {
        let old = self.old;
        let (newest, ids_at_newest) = match (old.newest, self.doc_newest) {
            (Some(o), Some(d)) if d == o => {
                let mut ids = old.ids_at_newest;
                for k in self.doc_ids_at_newest {
                    if !ids.contains(&k) {
                        ids.push(k);
                    }
                }
                (Some(o), ids)
            }
            (Some(o), Some(d)) if d < o => (Some(o), old.ids_at_newest),
            (_, Some(d)) => (Some(d), self.doc_ids_at_newest),
            (o, None) => (o, old.ids_at_newest),
        };
        RssCursor {
            newest,
            ids_at_newest,
            first_seen: evict(self.first_seen, &self.keys_this_run),
            etag: old.etag,
            last_modified: old.last_modified,
        }
    }
}

/// An item key's 128-bit hash. A collision would take the second of two distinct items for
/// a repeat of the first and drop it; for a document of a million items its chance is
/// about 2^-88, far below that of an undetected disk error.
fn key_hash(key: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key.as_bytes())
}

/// Keeps `first_seen` within [`FIRST_SEEN_CAP`]: keys absent from the current document go
/// first, oldest first, because a key still in the feed would come back as a new item.
fn evict(
    mut first_seen: BTreeMap<String, DateTime<Utc>>,
    present: &HashSet<u128>,
) -> BTreeMap<String, DateTime<Utc>> {
    if first_seen.len() <= FIRST_SEEN_CAP {
        return first_seen;
    }
    let mut order: Vec<(bool, DateTime<Utc>, String)> = first_seen
        .iter()
        .map(|(k, t)| (present.contains(&key_hash(k)), *t, k.clone()))
        .collect();
    order.sort();
    let excess = first_seen.len() - FIRST_SEEN_CAP;
    for (_, _, key) in order.into_iter().take(excess) {
        first_seen.remove(&key);
    }
    first_seen
}

impl RawItem {
    /// The identity of the item across runs: guid, Atom id, link, else a content hash.
    fn key(&self) -> String {
        if let Some(k) = self.guid.as_ref().or(self.atom_id.as_ref()) {
            return k.clone();
        }
        if let Some(link) = self.orig_link.as_ref().or(self.link.as_ref()) {
            return link.to_string();
        }
        let mut hash = Sha256::new();
        hash.update(self.title.as_deref().unwrap_or_default());
        hash.update("\n");
        hash.update(
            self.description
                .as_deref()
                .or(self.content.as_deref())
                .unwrap_or_default(),
        );
        let digest = hash.finalize();
        let mut key = String::with_capacity(7 + 64);
        key.push_str("sha256:");
        for b in digest {
            key.push_str(&format!("{b:02x}"));
        }
        key
    }

    /// The first readable date in order of preference.
    fn date(&self) -> Option<DateTime<Utc>> {
        let candidates = [
            &self.pub_date,
            &self.published,
            &self.dc_date,
            &self.updated,
        ];
        let mut unreadable = None;
        for text in candidates.into_iter().flatten() {
            match date::parse(text) {
                Some(d) => return Some(d),
                None => unreadable = Some(text),
            }
        }
        if let Some(text) = unreadable {
            tracing::warn!(date = %text, "unreadable item date, treating the item as dateless");
        }
        None
    }
}

/// The `type` of an Atom text construct (and Atom 0.3's `mode`).
fn atom_kind(e: &BytesStart<'_>) -> Kind {
    if attribute(e, b"mode").is_some_and(|m| m.trim() == "escaped") {
        return Kind::Html;
    }
    match attribute(e, b"type").map(|t| t.trim().to_ascii_lowercase()) {
        None => Kind::Text,
        Some(t) if t == "text" || t == "text/plain" => Kind::Text,
        Some(t) if t == "xhtml" => Kind::Xhtml,
        // `html`, or a MIME type like text/html whose markup may be raw child elements.
        Some(t) if t.contains("html") || t.contains("xml") => Kind::Html,
        Some(_) => Kind::Text,
    }
}

/// An attribute value by its qualified name, references resolved.
fn attribute(e: &BytesStart<'_>, name: &[u8]) -> Option<String> {
    e.attributes()
        .with_checks(false)
        .flatten()
        .find(|a| a.key.as_ref() == name)
        .map(|a| entities::decode(&String::from_utf8_lossy(&a.value)))
}

fn link_attributes(e: &BytesStart<'_>) -> (Option<String>, Option<String>) {
    let href = attribute(e, b"href")
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty());
    let rel = attribute(e, b"rel").map(|r| r.trim().to_ascii_lowercase());
    (href, rel)
}

/// The `xml:base` an element sets, resolved against the one in scope.
fn xml_base(e: &BytesStart<'_>, outer: Option<&Url>) -> Option<Url> {
    if e.attributes_raw().is_empty() {
        return None;
    }
    let raw = attribute(e, b"xml:base")?;
    resolve(raw.trim(), outer, None)
}

/// An absolute URL from a link as written: absolute as is, relative against `base`, else
/// against `fallback`. `None` when it cannot be made absolute.
fn resolve(link: &str, base: Option<&Url>, fallback: Option<&Url>) -> Option<Url> {
    let link = link.trim();
    if link.is_empty() {
        return None;
    }
    match Url::parse(link) {
        Ok(url) => Some(url),
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            base.or(fallback).and_then(|b| b.join(link).ok())
        }
        Err(e) => {
            tracing::debug!(link, error = %e, "unusable link");
            None
        }
    }
}
