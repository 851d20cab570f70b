//! OpenCTI live-stream feeds: follow another platform's stream of changes, page by page.
//!
//! This module owns the stream cursor, the connection to `GET {url}/stream/{stream_id}`,
//! the page loop and what each event becomes. Submodules: [`sse`] (the wire format, fed
//! bytes as they arrive) and [`event`] (event ids, payloads, operation objects).
//!
//! A stream never ends, so a page is the events read within a bounded time or count
//! ([`PageLimits`]). The cursor is the id of the last event consumed, kept verbatim
//! (`<ms>-<seq>`, both parts): the next page asks the platform to resume after it, with
//! `from` and `Last-Event-ID`. Heartbeats carry the platform's own position and move the
//! cursor too, so a quiet filtered stream does not make the next page replay what the
//! platform already scanned.
//!
//! A page ends with `more = false` once it has *caught up*: at the first heartbeat at or
//! past the end of the backlog that the `connected` event announced. It ends with
//! `more = true` when it reached its event count, or its time limit while still behind.
//! If the connection drops mid-page the client reconnects with backoff from the last event
//! consumed; an event cut in the middle was never dispatched, so nothing is lost or
//! doubled within the page. Across pages, the fetcher commits the cursor only after the
//! page is handed on, so a failed page is read again from the last committed event.
//!
//! Objects pass on exactly as the producer made them. Deletions and merges become
//! `x-feedstix-operation` objects when the feed takes deletions into account (see
//! docs/stream.md for their shape); otherwise they are counted and dropped.

pub mod event;
pub mod sse;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{FetchError, ObjectOut, PageEnd, MAX_SKIPS_KEPT};
use crate::config::KindConfig;
use crate::cursor::Cursor;
use crate::feed::Feed;
use crate::ports::{Source, SourceRequest, StreamingResponse};
use crate::stix::StixObject;
use event::{Change, Operation, Origin};
use sse::{SseEvent, SseReader};

/// Events per page: a page must fit one function invocation with its hand-off, and 5,000
/// OpenCTI events (a few KiB each) are a few dozen queue messages.
pub const PAGE_MAX_EVENTS: u64 = 5_000;

/// Reading time per page: well inside a Lambda's 15-minute cap, leaving room to hand the
/// page on and commit; short enough that a busy stream commits its progress often.
pub const PAGE_MAX_TIME: Duration = Duration::from_secs(60);

/// How long a new connection may take to send its `connected` event. OpenCTI sends it
/// before anything else, so silence this long means the URL is not a live stream.
pub const CONNECTED_WAIT: Duration = Duration::from_secs(10);

/// Reconnections in a row without a single event before the page fails.
const MAX_RECONNECTS: u32 = 5;

/// First reconnection delay; doubled each time, capped at [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Time added to the page's limit for the HTTP request itself, so the transport never cuts
/// the connection before the page loop ends it cleanly.
const REQUEST_SLACK: Duration = Duration::from_secs(30);

/// Where a stream feed resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamCursor {
    /// The id of the last event consumed, verbatim (`<ms>-<seq>`). `None` before the first
    /// page: the feed then starts at its `import_from`, or at the start of the stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_event_id: Option<String>,
    /// Set when the remote no longer held the position this feed resumed from (its
    /// retention had moved past it): events in between may be lost. Kept until the feed is
    /// reset, so `status` keeps saying so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap: Option<String>,
}

impl StreamCursor {
    /// A one-line description for status output.
    pub fn describe(&self) -> String {
        let at = match &self.last_event_id {
            Some(id) => match event::EventId::parse(id).and_then(event::EventId::time) {
                Some(t) => format!(
                    "after event {id} ({})",
                    t.to_rfc3339_opts(SecondsFormat::Millis, true)
                ),
                None => format!("after event {id}"),
            },
            None => "start".into(),
        };
        match &self.gap {
            Some(gap) => format!("{at}; warning: {gap}"),
            None => at,
        }
    }
}

/// The bounds of one page, and of the connection attempts within it.
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    /// Events consumed (heartbeats included) before the page ends with `more`.
    pub max_events: u64,
    /// Reading time before the page ends.
    pub max_time: Duration,
    /// How long a connection may take to send `connected`.
    pub connected_wait: Duration,
    /// Reconnections in a row without progress before the page fails.
    pub max_reconnects: u32,
    /// The first reconnection delay.
    pub backoff: Duration,
}

impl Default for PageLimits {
    fn default() -> Self {
        PageLimits {
            max_events: PAGE_MAX_EVENTS,
            max_time: PAGE_MAX_TIME,
            connected_wait: CONNECTED_WAIT,
            max_reconnects: MAX_RECONNECTS,
            backoff: BACKOFF_BASE,
        }
    }
}

impl PageLimits {
    /// The bounds of `feedstix verify`: a few seconds, no reconnection, so a wrong URL,
    /// token or stream id is reported at once.
    pub fn preview(max_objects: usize) -> PageLimits {
        PageLimits {
            max_events: max_objects.max(1) as u64,
            max_time: Duration::from_secs(4),
            connected_wait: Duration::from_secs(3),
            max_reconnects: 0,
            backoff: BACKOFF_BASE,
        }
    }
}

/// A stream feed's settings, taken from its configuration once per page.
struct Settings<'a> {
    base_url: &'a str,
    stream_id: &'a str,
    listen_deletions: bool,
    no_dependencies: bool,
    perfect_sync: bool,
    import_from: Option<DateTime<Utc>>,
    /// Cap on one event, from the feed's `max_response_bytes`.
    max_event_bytes: usize,
}

impl<'a> Settings<'a> {
    fn of(feed: &'a Feed) -> Result<Settings<'a>, FetchError> {
        let KindConfig::Stream {
            stream_id,
            listen_deletions,
            no_dependencies,
            perfect_sync,
        } = &feed.config.kind
        else {
            return Err(FetchError::Unsupported(format!(
                "feed {} is not a stream feed",
                feed.name()
            )));
        };
        Ok(Settings {
            base_url: &feed.config.url,
            stream_id,
            listen_deletions: *listen_deletions,
            no_dependencies: *no_dependencies,
            perfect_sync: *perfect_sync,
            import_from: feed.config.import_from,
            max_event_bytes: usize::try_from(feed.config.http.max_response_bytes)
                .unwrap_or(usize::MAX),
        })
    }

    /// `{url}/stream/{stream_id}`, the id as one path segment.
    fn stream_url(&self) -> Result<url::Url, FetchError> {
        let bad =
            |reason: String| FetchError::Unsupported(format!("url {}: {reason}", self.base_url));
        let mut url = url::Url::parse(self.base_url).map_err(|e| bad(e.to_string()))?;
        url.set_query(None);
        url.path_segments_mut()
            .map_err(|()| bad("cannot take a path".into()))?
            .pop_if_empty()
            .push("stream")
            .push(self.stream_id);
        Ok(url)
    }

    /// The request resuming after `position` (or from the feed's start), with the options
    /// spelled as the platform reads them: query parameters (which it prefers to headers)
    /// plus `Last-Event-ID`, the standard SSE resume header, when resuming after an event.
    fn request(&self, position: Option<&str>) -> Result<SourceRequest, FetchError> {
        let mut url = self.stream_url()?;
        let from = match (position, self.import_from) {
            (Some(id), _) => id.to_string(),
            (None, Some(date)) => date.to_rfc3339_opts(SecondsFormat::Millis, true),
            // `0-0` asks for the whole retained stream: an empty `import_from` means
            // everything, never "from now".
            (None, None) => "0-0".into(),
        };
        let flag = |b: bool| if b { "true" } else { "false" };
        url.query_pairs_mut()
            .append_pair("from", &from)
            .append_pair("listen-delete", flag(self.listen_deletions))
            .append_pair("no-dependencies", flag(self.no_dependencies))
            .append_pair("with-inferences", "false");
        let mut headers = vec![
            ("accept".to_string(), "text/event-stream".to_string()),
            ("cache-control".to_string(), "no-cache".to_string()),
        ];
        if let Some(id) = position {
            headers.push(("last-event-id".to_string(), id.to_string()));
        }
        Ok(SourceRequest {
            url: url.to_string(),
            headers,
        })
    }
}

/// Fetches one page of a stream feed from `cursor`, with the default [`PageLimits`].
///
/// # Errors
/// A refused token, an unknown stream, a URL that is not a live stream, an event larger
/// than the feed allows, or a connection that keeps dropping without progress. The cursor
/// then stays where it was.
pub async fn fetch_page(
    feed: &Feed,
    cursor: &Cursor,
    source: &dyn Source,
    now: DateTime<Utc>,
    out: &mut dyn ObjectOut,
) -> Result<PageEnd, FetchError> {
    fetch_page_with(feed, cursor, source, now, out, &PageLimits::default()).await
}

/// [`fetch_page`] with explicit limits (tests, and `verify` with [`PageLimits::preview`]).
///
/// # Errors
/// As [`fetch_page`].
pub async fn fetch_page_with(
    feed: &Feed,
    cursor: &Cursor,
    source: &dyn Source,
    now: DateTime<Utc>,
    out: &mut dyn ObjectOut,
    limits: &PageLimits,
) -> Result<PageEnd, FetchError> {
    let settings = Settings::of(feed)?;
    let previous = match cursor {
        Cursor::Stream(c) => c.clone(),
        _ => StreamCursor::default(),
    };
    let mut page = Page::new(feed.name(), &settings, previous, now, out);
    let stop = page.run(source, limits).await?;
    Ok(page.finish(stop))
}

/// Why a page stopped reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The first heartbeat at or past the announced backlog.
    CaughtUp,
    /// The event count was reached.
    Full,
    /// The next event touches an object this page already changed the other way (an
    /// upsert then a delete of one id): it opens the next page, so the bundler, which
    /// orders objects by type, cannot put the two in the wrong order.
    Conflict,
    /// The time limit.
    Time,
}

/// What one received event did to the page.
enum Step {
    Continue,
    Stop(Stop),
}

/// One page in progress.
struct Page<'a> {
    feed: &'a str,
    settings: &'a Settings<'a>,
    out: &'a mut dyn ObjectOut,
    now: DateTime<Utc>,
    cursor: StreamCursor,
    /// The position the page started from, to judge retention against.
    resumed_from: Option<String>,
    /// The newest event id the remote held when it announced the connection.
    backlog_end: Option<String>,
    consumed: u64,
    objects: u64,
    skipped: Vec<String>,
    dropped_deletes: u64,
    dropped_merges: u64,
    upserted: HashSet<String>,
    operated: HashSet<String>,
    definition_sent: bool,
}

impl<'a> Page<'a> {
    fn new(
        feed: &'a str,
        settings: &'a Settings<'a>,
        cursor: StreamCursor,
        now: DateTime<Utc>,
        out: &'a mut dyn ObjectOut,
    ) -> Page<'a> {
        Page {
            feed,
            settings,
            out,
            now,
            resumed_from: cursor.last_event_id.clone(),
            cursor,
            backlog_end: None,
            consumed: 0,
            objects: 0,
            skipped: Vec::new(),
            dropped_deletes: 0,
            dropped_merges: 0,
            upserted: HashSet::new(),
            operated: HashSet::new(),
            definition_sent: false,
        }
    }

    /// Connects, reads, and reconnects after drops until the page stops.
    async fn run(&mut self, source: &dyn Source, limits: &PageLimits) -> Result<Stop, FetchError> {
        let deadline = Instant::now() + limits.max_time;
        let mut failures: u32 = 0;
        loop {
            if Instant::now() >= deadline {
                return Ok(Stop::Time);
            }
            let request = self
                .settings
                .request(self.cursor.last_event_id.as_deref())?;
            let url = request.url.clone();
            let budget = deadline.saturating_duration_since(Instant::now()) + REQUEST_SLACK;
            let opened = tokio::time::timeout_at(deadline, source.open_stream(request, budget));
            let dropped = match opened.await {
                Err(_) => return Ok(Stop::Time),
                Ok(Err(e)) => {
                    // Refused addresses and bad URLs never get better by retrying.
                    if matches!(
                        e,
                        crate::http::HttpError::Refused { .. }
                            | crate::http::HttpError::BadUrl { .. }
                    ) {
                        return Err(e.into());
                    }
                    FetchError::from(e)
                }
                Ok(Ok(response)) => {
                    if let Some(error) = self.judge(&url, &response)? {
                        error
                    } else {
                        let before = self.consumed;
                        match self.read(&url, response, deadline, limits).await? {
                            Ok(stop) => return Ok(stop),
                            Err(drop) => {
                                if self.consumed > before {
                                    failures = 0;
                                }
                                drop
                            }
                        }
                    }
                }
            };
            failures += 1;
            if failures > limits.max_reconnects {
                return Err(dropped);
            }
            let delay = limits
                .backoff
                .saturating_mul(1 << (failures - 1).min(8))
                .min(BACKOFF_MAX);
            tracing::warn!(
                feed = %self.feed,
                url = %url,
                attempt = failures,
                delay_ms = delay.as_millis() as u64,
                resume_after = self.cursor.last_event_id.as_deref().unwrap_or("start"),
                error = %dropped,
                "stream connection lost; reconnecting"
            );
            if Instant::now() + delay >= deadline {
                return Ok(Stop::Time);
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// Checks a new connection's status and type: `Ok(None)` to read it, `Ok(Some(e))` for
    /// a transient failure worth a reconnection, `Err` for one that is not.
    fn judge(
        &self,
        url: &str,
        response: &StreamingResponse,
    ) -> Result<Option<FetchError>, FetchError> {
        let status = response.status;
        let fail = |detail: &str| FetchError::Status {
            url: url.into(),
            status,
            detail: detail.into(),
        };
        match status {
            200..=299 => {}
            401 | 403 => {
                return Err(fail(
                    ": the platform refused the token (check the feed's auth; recent OpenCTI \
                     versions also answer 401 for a stream id this user cannot see)",
                ))
            }
            404 => {
                return Err(fail(&format!(
                    ": no live stream `{}` here (check stream_id, and that url is the \
                     platform's base URL without a path)",
                    self.settings.stream_id
                )))
            }
            410 => return Err(fail(": the live stream is stopped on the remote platform")),
            408 | 429 | 500..=599 => return Ok(Some(fail(""))),
            _ => return Err(fail("")),
        }
        let content_type = response.header("content-type").unwrap_or("none");
        if !content_type
            .to_ascii_lowercase()
            .contains("text/event-stream")
        {
            return Err(FetchError::Parse {
                url: url.into(),
                reason: format!(
                    "answered with content type {content_type}, not an event stream; check \
                     that url is the OpenCTI platform's base URL"
                ),
            });
        }
        Ok(None)
    }

    /// Reads one connection. `Ok(Ok(stop))` ends the page, `Ok(Err(e))` is a drop to
    /// reconnect after, `Err` fails the page.
    async fn read(
        &mut self,
        url: &str,
        mut response: StreamingResponse,
        deadline: Instant,
        limits: &PageLimits,
    ) -> Result<Result<Stop, FetchError>, FetchError> {
        let mut reader = SseReader::new(self.settings.max_event_bytes);
        let connected_by = Instant::now() + limits.connected_wait;
        let mut connected = false;
        loop {
            let wait_until = if connected {
                deadline
            } else {
                deadline.min(connected_by)
            };
            let chunk = match tokio::time::timeout_at(wait_until, response.body.next()).await {
                Err(_) if connected || Instant::now() < connected_by => return Ok(Ok(Stop::Time)),
                Err(_) => {
                    return Err(FetchError::Parse {
                        url: url.into(),
                        reason: format!(
                            "no `connected` event within {} s; is url the OpenCTI platform's \
                             base URL?",
                            limits.connected_wait.as_secs()
                        ),
                    })
                }
                Ok(None) => {
                    return Ok(Err(FetchError::Parse {
                        url: url.into(),
                        reason: "the platform closed the stream".into(),
                    }))
                }
                Ok(Some(Err(e))) => return Ok(Err(e.into())),
                Ok(Some(Ok(bytes))) => bytes,
            };
            let events = reader.feed(&chunk).map_err(|e| FetchError::Parse {
                url: url.into(),
                reason: e.to_string(),
            })?;
            for event in events {
                if event.event == "connected" {
                    connected = true;
                    self.connected(&event);
                    continue;
                }
                if let Step::Stop(stop) = self.handle(event).await? {
                    return Ok(Ok(stop));
                }
                if self.consumed >= limits.max_events {
                    return Ok(Ok(Stop::Full));
                }
            }
        }
    }

    /// The `connected` event: where the remote's retained stream starts and ends.
    fn connected(&mut self, event: &SseEvent) {
        let info: serde_json::Value = serde_json::from_str(&event.data).unwrap_or_default();
        let text = |key: &str| info.get(key).and_then(|v| v.as_str()).map(str::to_string);
        self.backlog_end = text("lastEventId");
        tracing::debug!(
            feed = %self.feed,
            first = text("firstEventId").as_deref().unwrap_or("?"),
            last = self.backlog_end.as_deref().unwrap_or("?"),
            "stream connected"
        );
        // Retention: resuming after an id older than the oldest the remote keeps means the
        // events in between may be gone. The platform resumes from its oldest event by
        // itself; what matters is that the operator hears about the gap.
        let (Some(first), Some(ours)) = (text("firstEventId"), self.resumed_from.as_deref()) else {
            return;
        };
        if event::compare(&first, ours) == Some(std::cmp::Ordering::Greater) {
            let note = format!(
                "the remote no longer holds event {ours} (its oldest is {first}); resumed from \
                 its oldest event, and events in between may be lost"
            );
            tracing::warn!(
                feed = %self.feed,
                resume_after = %ours,
                oldest = %first,
                "stream retention passed the cursor"
            );
            self.skip(note.clone());
            self.cursor.gap = Some(note);
            // Said once per page, not once per reconnection.
            self.resumed_from = None;
        }
    }

    async fn handle(&mut self, event: SseEvent) -> Result<Step, FetchError> {
        let Some(id) = event.id.clone() else {
            // Without an id an event cannot be resumed after; OpenCTI sends only
            // `connected` that way.
            tracing::debug!(feed = %self.feed, event = %event.event, "event without id ignored");
            return Ok(Step::Continue);
        };
        match event.event.as_str() {
            "heartbeat" => {
                self.advance(&id);
                let caught_up = match &self.backlog_end {
                    None => true,
                    Some(end) => event::compare(&id, end) != Some(std::cmp::Ordering::Less),
                };
                if caught_up {
                    return Ok(Step::Stop(Stop::CaughtUp));
                }
            }
            "create" | "update" | "merge" | "delete" => {
                let change = match event::read_change(&event.event, &event.data) {
                    Ok(c) => c,
                    Err(reason) => {
                        tracing::warn!(
                            feed = %self.feed,
                            event_id = %id,
                            reason = %reason,
                            "skipped stream event"
                        );
                        self.skip(format!("event {id} ({}): {reason}", event.event));
                        self.advance(&id);
                        return Ok(Step::Continue);
                    }
                };
                if self.conflicts(&change) {
                    return Ok(Step::Stop(Stop::Conflict));
                }
                self.apply(&event.event, &id, change).await?;
                self.advance(&id);
            }
            other => {
                // Older platforms send `sync` and others; their id is still a position.
                tracing::debug!(
                    feed = %self.feed,
                    event = %other,
                    event_id = %id,
                    "stream event ignored"
                );
                self.advance(&id);
            }
        }
        Ok(Step::Continue)
    }

    /// Whether `change` must open a new page (see [`Stop::Conflict`]).
    fn conflicts(&self, change: &Change) -> bool {
        match change {
            Change::Upsert(o) => self.operated.contains(crate::stix::object_id(o)),
            Change::Delete { target } => {
                self.settings.listen_deletions && self.upserted.contains(target)
            }
            Change::Merge { target, sources } => {
                self.operated.contains(crate::stix::object_id(target))
                    || (self.settings.listen_deletions
                        && sources.iter().any(|s| self.upserted.contains(s)))
            }
        }
    }

    async fn apply(&mut self, kind: &str, id: &str, change: Change) -> Result<(), FetchError> {
        let origin = Origin {
            url: self.settings.base_url,
            stream_id: self.settings.stream_id,
            event_id: id,
        };
        match change {
            Change::Upsert(object) => {
                let target = crate::stix::object_id(&object).to_string();
                self.upsert(object).await?;
                if kind == "update" && self.settings.perfect_sync {
                    let op = event::operation(Operation::Replace, &target, &[], origin, self.now);
                    self.operation(op, &target).await?;
                }
            }
            Change::Delete { target } => {
                if !self.settings.listen_deletions {
                    self.dropped_deletes += 1;
                    return Ok(());
                }
                let op = event::operation(Operation::Delete, &target, &[], origin, self.now);
                self.operation(op, &target).await?;
            }
            Change::Merge { target, sources } => {
                let target_id = crate::stix::object_id(&target).to_string();
                // The merged object's new state is data like any update; only the deletion
                // of its sources depends on the feed taking deletions into account.
                self.upsert(target).await?;
                if !self.settings.listen_deletions {
                    self.dropped_merges += 1;
                    return Ok(());
                }
                let op = event::operation(Operation::Merge, &target_id, &sources, origin, self.now);
                for s in &sources {
                    self.operated.insert(s.clone());
                }
                self.push(op).await?;
            }
        }
        Ok(())
    }

    async fn upsert(&mut self, object: StixObject) -> Result<(), FetchError> {
        self.upserted
            .insert(crate::stix::object_id(&object).to_string());
        self.push(object).await
    }

    async fn operation(&mut self, op: StixObject, target: &str) -> Result<(), FetchError> {
        self.operated.insert(target.to_string());
        self.push(op).await
    }

    async fn push(&mut self, object: StixObject) -> Result<(), FetchError> {
        let is_operation =
            object.get("type").and_then(|t| t.as_str()) == Some(event::OPERATION_TYPE);
        if is_operation && !self.definition_sent {
            // The definitions travel with the page's first operation, so every bundle
            // holding one can be understood on its own (the bundler orders them first).
            self.definition_sent = true;
            for support in [event::feedstix_identity(), event::extension_definition()] {
                self.out.push(support).await.map_err(FetchError::Handoff)?;
                self.objects += 1;
            }
        }
        self.out.push(object).await.map_err(FetchError::Handoff)?;
        self.objects += 1;
        Ok(())
    }

    /// Moves the position to `id` (never backwards: a heartbeat right after a connection
    /// may repeat the position asked for).
    fn advance(&mut self, id: &str) {
        self.consumed += 1;
        let newer = match &self.cursor.last_event_id {
            None => true,
            Some(current) => event::compare(id, current) != Some(std::cmp::Ordering::Less),
        };
        if newer {
            self.cursor.last_event_id = Some(id.to_string());
        }
    }

    fn skip(&mut self, reason: String) {
        if self.skipped.len() < MAX_SKIPS_KEPT {
            self.skipped.push(reason);
        }
    }

    fn finish(mut self, stop: Stop) -> PageEnd {
        if self.dropped_deletes + self.dropped_merges > 0 {
            self.skip(format!(
                "{} delete and {} merge event(s) not applied: listen_deletions is off",
                self.dropped_deletes, self.dropped_merges
            ));
        }
        let behind = match (&self.backlog_end, &self.cursor.last_event_id) {
            (Some(end), Some(at)) => event::compare(at, end) == Some(std::cmp::Ordering::Less),
            (Some(_), None) => true,
            _ => false,
        };
        let more = match stop {
            Stop::CaughtUp => false,
            Stop::Full | Stop::Conflict => true,
            Stop::Time => behind,
        };
        tracing::debug!(
            feed = %self.feed,
            stop = ?stop,
            events = self.consumed,
            objects = self.objects,
            dropped_deletes = self.dropped_deletes,
            dropped_merges = self.dropped_merges,
            at = self.cursor.last_event_id.as_deref().unwrap_or("start"),
            more,
            "stream page read"
        );
        PageEnd {
            cursor: Cursor::Stream(self.cursor),
            more,
            objects: self.objects,
            skipped: self.skipped,
            not_modified: false,
        }
    }
}
