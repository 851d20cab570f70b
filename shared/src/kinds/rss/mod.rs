//! Placeholder until the RSS/Atom module lands (same public API).
#![allow(missing_docs, unused_variables, dead_code)]
use std::collections::BTreeMap;
use std::io::BufRead;

use chrono::{DateTime, Utc};

use crate::stix::{Provenance, StixObject};

pub struct RssSettings {
    pub report_types: Vec<String>,
}
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RssCursor {
    pub newest: Option<DateTime<Utc>>,
    pub ids_at_newest: Vec<String>,
    pub first_seen: BTreeMap<String, DateTime<Utc>>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}
pub enum ItemOutcome {
    New(Vec<StixObject>),
    Old,
    Skipped { item: String, reason: String },
}
#[derive(Debug, thiserror::Error)]
pub enum RssError {
    #[error("not implemented")]
    Todo,
}
pub struct RssPager<R: BufRead> {
    r: R,
    c: RssCursor,
}
impl<R: BufRead> RssPager<R> {
    pub fn new(
        body: R,
        cursor: &RssCursor,
        settings: &RssSettings,
        provenance: &Provenance,
        import_from: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Self, RssError> {
        Err(RssError::Todo)
    }
    pub fn next_item(&mut self) -> Option<Result<ItemOutcome, RssError>> {
        None
    }
    pub fn finish(self) -> RssCursor {
        self.c
    }
}
