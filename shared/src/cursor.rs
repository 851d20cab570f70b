//! Each feed's resume point and run state, as stored between runs.
//!
//! A cursor is data in the kind's own shape (a TAXII `next` token kept verbatim, the
//! newest RSS date with the ids seen at it, a CSV content hash with row fingerprints), never
//! a string parsed and re-formatted, so resuming is exact.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::kinds::csv::CsvCursor;
use crate::kinds::rss::RssCursor;
use crate::kinds::stream::StreamCursor;
use crate::kinds::taxii::TaxiiCursor;

/// Where a feed resumes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Cursor {
    /// Nothing fetched yet (or reset): start at the feed's `import_from`.
    #[default]
    Start,
    /// RSS/Atom.
    Rss(RssCursor),
    /// CSV.
    Csv(CsvCursor),
    /// TAXII.
    Taxii(TaxiiCursor),
    /// OpenCTI live stream.
    Stream(StreamCursor),
}

impl Cursor {
    /// A one-line description for status output.
    pub fn describe(&self) -> String {
        match self {
            Cursor::Start => "start".into(),
            Cursor::Rss(c) => match &c.newest {
                Some(d) => format!("newest item {}", d.to_rfc3339()),
                None => "no dated item yet".into(),
            },
            Cursor::Csv(c) => match &c.content_hash {
                Some(h) => format!("version sha256:{}", &h[..h.len().min(12)]),
                None => "no version yet".into(),
            },
            Cursor::Taxii(c) => c.describe(),
            Cursor::Stream(c) => c.describe(),
        }
    }
}

/// Whether a feed runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Fetched on its interval.
    #[default]
    Running,
    /// Stopped by an operator.
    Stopped,
    /// Paused by feedstix after too many failures in a row, until an operator starts it.
    Paused,
}

impl RunState {
    /// The stored and displayed spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Stopped => "stopped",
            RunState::Paused => "paused",
        }
    }

    /// Parses the stored spelling; anything unknown reads as running.
    pub fn parse(text: &str) -> RunState {
        match text {
            "stopped" => RunState::Stopped,
            "paused" => RunState::Paused,
            _ => RunState::Running,
        }
    }
}

/// Everything kept about one feed between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeedState {
    /// Where the next page starts.
    pub cursor: Cursor,
    /// Bumped by a reset; messages of an older epoch are dropped on arrival.
    pub epoch: u64,
    /// Bumped by every committed write; the condition of the next write.
    pub version: u64,
    /// Pages committed since the feed began (numbers the next page).
    pub pages: u64,
    /// The last committed page said the source has more: a job for page `pages` is due.
    pub more: bool,
    /// Running or stopped.
    pub run_state: RunState,
    /// What happened last.
    pub status: Status,
}

/// The outcome counters of a feed, for `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    /// When the last page finished (either way).
    pub last_run: Option<DateTime<Utc>>,
    /// When the last page was committed.
    pub last_success: Option<DateTime<Utc>>,
    /// Objects emitted by the last run (all its pages).
    pub objects_last_run: u64,
    /// Objects emitted since the feed began.
    pub objects_total: u64,
    /// The last error, if the last page failed.
    pub last_error: Option<String>,
    /// Failed pages in a row.
    pub consecutive_failures: u32,
    /// Messages of an older epoch dropped on arrival.
    pub dropped_stale: u64,
}
