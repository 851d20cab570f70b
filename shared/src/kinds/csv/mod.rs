//! Placeholder until the CSV module lands (same public API).
#![allow(missing_docs, unused_variables, dead_code)]
use std::io::Read;

use chrono::{DateTime, Utc};

use crate::stix::{Provenance, StixObject};

pub struct Mapper;
#[derive(Debug, thiserror::Error)]
pub enum MapperError {
    #[error("not implemented")]
    Todo,
}
impl Mapper {
    pub fn from_json(text: &str) -> Result<Mapper, MapperError> {
        Err(MapperError::Todo)
    }
}
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fingerprints(Vec<u64>);
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CsvCursor {
    pub content_hash: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub fingerprints: Fingerprints,
}
#[derive(Debug, Clone)]
pub struct RowSkip {
    pub line: u64,
    pub reason: String,
}
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("not implemented")]
    Todo,
}
pub struct CsvPager<R: Read> {
    r: R,
}
impl<R: Read> CsvPager<R> {
    pub fn new(
        body: R,
        mapper: &Mapper,
        cursor: &CsvCursor,
        provenance: &Provenance,
        import_from: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Self, CsvError> {
        Err(CsvError::Todo)
    }
    pub fn next_slice(&mut self, max_rows: usize) -> Result<Option<Vec<StixObject>>, CsvError> {
        Ok(None)
    }
    pub fn skipped(&self) -> &[RowSkip] {
        &[]
    }
    pub fn rows_read(&self) -> u64 {
        0
    }
    pub fn finish(self) -> CsvCursor {
        CsvCursor::default()
    }
}
