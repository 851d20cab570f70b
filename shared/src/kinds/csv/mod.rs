//! The CSV feed kind: a CSV file fetched over HTTP, turned into STIX by an OpenCTI CSV
//! mapper.
//!
//! This module owns reading the body and mapping its rows; fetching and storing the cursor
//! belong to the pipeline. Its parts:
//!
//! - [`mapper`]: the mapper JSON (the three shapes OpenCTI exports), checked at load.
//! - [`dates`]: `pattern_date` and date guessing.
//! - [`objects`]: one row to STIX objects.
//! - [`cursor`]: [`CsvCursor`], the content hash and row fingerprints of the last version.
//! - this file: [`CsvPager`], which streams the body, finds the header, skips comment lines,
//!   and hands on only the rows that are new since the previous version, a slice at a time.
//!
//! The body is never held whole: it is hashed as it is read, and each row costs a reused
//! record buffer, one 64-bit fingerprint kept for the next run, and its mapped objects.

mod cursor;
mod dates;
mod mapper;
mod objects;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, Chain, Cursor, Read};

use chrono::{DateTime, Utc};
use csv::ByteRecord;
use sha2::{Digest, Sha256};

pub use cursor::{CsvCursor, Fingerprints};
pub use mapper::{supported_entity_types, Mapper, MapperError};

use mapper::ColumnRef;
use objects::{Cells, RowBuilder};

use crate::stix::{object_id, Provenance, StixObject};

/// How many data rows are read before deciding whether the file fits its mapper at all.
const PROBE_ROWS: usize = 10;

/// How many skipped rows are kept with their reason; the rest are only counted.
const MAX_KEPT_SKIPS: usize = 100;

/// Longest comment or blank line accepted before the data starts: a banner line longer than
/// this is not a banner, and reading it whole would let a hostile body exhaust memory.
const MAX_PREAMBLE_LINE: u64 = 1 << 20;

/// Why a CSV body could not be read with its mapper.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// Reading the body failed.
    #[error("reading the csv body failed near line {line}: {source}")]
    Io {
        /// The last line read.
        line: u64,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line before the data is too long to be a comment or a header.
    #[error("line {line} before the csv data is longer than {MAX_PREAMBLE_LINE} bytes")]
    LineTooLong {
        /// Where.
        line: u64,
    },
    /// The mapper expects a header and the body has none.
    #[error("the csv body has no header row, which mapper `{mapper}` expects")]
    NoHeader {
        /// The mapper's name.
        mapper: String,
    },
    /// The mapper names a column the header does not have.
    #[error(
        "column `{column}` of mapper `{mapper}` is not in the header at line {line} \
         (header: {header})"
    )]
    ColumnNotInHeader {
        /// The mapper's name.
        mapper: String,
        /// The column as the mapper names it.
        column: String,
        /// The header's line.
        line: u64,
        /// The header's names, comma-separated.
        header: String,
    },
    /// The mapper names columns by header text but says the file has no header.
    #[error("mapper `{mapper}` names column `{column}` by header text but has_header is false")]
    NamesWithoutHeader {
        /// The mapper's name.
        mapper: String,
        /// The column named.
        column: String,
    },
    /// The file does not fit the mapper: a column it needs is beyond every row, or every
    /// one of the first rows fails.
    #[error("the csv does not fit mapper `{mapper}`: line {line}: {reason}")]
    Mismatch {
        /// The mapper's name.
        mapper: String,
        /// The first line showing the problem.
        line: u64,
        /// What is wrong.
        reason: String,
    },
}

/// A row that was read but gave no objects, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSkip {
    /// The line the record starts on (1-based, counting every line of the body).
    pub line: u64,
    /// Why it was skipped.
    pub reason: String,
}

/// Counts bytes into SHA-256 as they are read, so the content hash needs no second pass.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Drops spaces that follow a separator outside quotes, when a feed writes `"a", "b"`.
///
/// To a CSV parser the space makes the opening quote literal, so a quoted cell holding the
/// separator (`"Agentemis,BEACON"`) would split in two. Only switched on when the first
/// line shows that habit: the quote tracking here assumes well-formed quoting, which such
/// fully quoted files have. Cells are trimmed anyway, so nothing of value is lost.
struct SpaceAfterSeparator<R> {
    inner: R,
    enabled: bool,
    separator: u8,
    in_quotes: bool,
    after_separator: bool,
}

impl<R: Read> Read for SpaceAfterSeparator<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.inner.read(buf)?;
            if !self.enabled || n == 0 {
                return Ok(n);
            }
            let mut kept = 0;
            for i in 0..n {
                let b = buf[i];
                if b == b' ' && self.after_separator && !self.in_quotes {
                    continue;
                }
                self.after_separator = b == self.separator && !self.in_quotes;
                if b == b'"' {
                    self.in_quotes = !self.in_quotes;
                }
                buf[kept] = b;
                kept += 1;
            }
            // A buffer of nothing but dropped spaces is not the end of the input.
            if kept > 0 {
                return Ok(kept);
            }
        }
    }
}

/// Whether a line writes its separators followed by a space and a quote: `"a", "b"`.
fn spaced_quotes(line: &[u8], separator: u8) -> bool {
    line.windows(3)
        .any(|w| w[0] == separator && w[1] == b' ' && w[2] == b'"')
}

type Source<R> = SpaceAfterSeparator<Chain<Cursor<Vec<u8>>, BufReader<HashingReader<R>>>>;

/// Streams a CSV body through a mapper, handing on the rows that are new since the
/// previous version, a bounded slice at a time.
pub struct CsvPager<R: Read> {
    reader: csv::Reader<Source<R>>,
    builder: RowBuilder,
    mapper_name: String,
    /// Field index of each mapper column slot, resolved against this file's header.
    fields: Vec<usize>,
    previous: CsvCursor,
    import_from: Option<DateTime<Utc>>,
    /// Lines consumed before the CSV reader started (banner, blank lines, comment header).
    line_offset: u64,
    /// The first record, when it turned out to be data rather than a header.
    held: Option<ByteRecord>,
    record: ByteRecord,
    /// Fingerprint input, reused across rows.
    key: Vec<u8>,
    seen: Vec<u64>,
    rows_read: u64,
    skips: Vec<RowSkip>,
    skipped_total: u64,
    probed: bool,
    /// Rows mapped while probing, not yet handed on.
    ready: VecDeque<Vec<StixObject>>,
    at_end: bool,
    /// Objects a row usually gives (one per representation), to size slices.
    objects_per_row: usize,
}

impl<R: Read> CsvPager<R> {
    /// Opens a body: skips the banner, finds the header when the mapper expects one, and
    /// resolves the mapper's columns against it.
    ///
    /// `import_from` drops rows whose date (first mapped `valid_from`, `first_seen` or
    /// `start_time`) is older; `now` stands in for dates a row does not give.
    ///
    /// # Errors
    ///
    /// [`CsvError`] when the body cannot be read, has no header, or lacks a named column.
    pub fn new(
        body: R,
        mapper: &Mapper,
        cursor: &CsvCursor,
        provenance: &Provenance,
        import_from: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Self, CsvError> {
        let mut input = BufReader::with_capacity(
            64 * 1024,
            HashingReader {
                inner: body,
                hasher: Sha256::new(),
            },
        );

        // The banner: blank lines and comment lines before the first record. Read line by
        // line (no record can be open yet), remembering the last comment, which is where
        // abuse.ch and others put the header.
        let mut line_offset = 0u64;
        let mut last_comment: Option<(u64, String)> = None;
        let mut first_line = Vec::new();
        loop {
            first_line.clear();
            let n = (&mut input)
                .take(MAX_PREAMBLE_LINE)
                .read_until(b'\n', &mut first_line)
                .map_err(|source| CsvError::Io {
                    line: line_offset,
                    source,
                })?;
            if n == 0 {
                break;
            }
            if first_line.len() as u64 >= MAX_PREAMBLE_LINE && !first_line.ends_with(b"\n") {
                return Err(CsvError::LineTooLong {
                    line: line_offset + 1,
                });
            }
            if line_offset == 0 && first_line.starts_with(b"\xEF\xBB\xBF") {
                first_line.drain(..3);
            }
            let trimmed = first_line.trim_ascii();
            let is_comment = mapper
                .skip_line_char
                .is_some_and(|c| trimmed.first() == Some(&c));
            if !trimmed.is_empty() && !is_comment {
                break;
            }
            line_offset += 1;
            if is_comment {
                let text = String::from_utf8_lossy(&trimmed[1..]).trim().to_string();
                if !text.is_empty() {
                    last_comment = Some((line_offset, text));
                }
            }
        }

        let mut reader = csv::ReaderBuilder::new()
            .delimiter(mapper.separator)
            .has_headers(false)
            .flexible(true)
            .comment(mapper.skip_line_char)
            .from_reader(SpaceAfterSeparator {
                enabled: spaced_quotes(&first_line, mapper.separator),
                separator: mapper.separator,
                in_quotes: false,
                after_separator: false,
                inner: Cursor::new(first_line).chain(input),
            });

        let (fields, held) = resolve_header(&mut reader, mapper, last_comment, line_offset)?;
        Ok(CsvPager {
            reader,
            builder: RowBuilder::new(mapper, provenance, now),
            mapper_name: mapper.name().to_string(),
            fields,
            previous: cursor.clone(),
            import_from,
            line_offset,
            held,
            record: ByteRecord::new(),
            key: Vec::with_capacity(256),
            seen: Vec::new(),
            rows_read: 0,
            skips: Vec::new(),
            skipped_total: 0,
            probed: false,
            ready: VecDeque::new(),
            at_end: false,
            objects_per_row: mapper.representations.len().max(1),
        })
    }

    /// Up to `max_rows` further rows that are new (not in the previous version's
    /// fingerprints), mapped; `Ok(None)` once the body is exhausted. Rows that give no
    /// objects are skipped and listed in [`CsvPager::skipped`]. Objects repeated within
    /// the slice (the same malware on every row) appear once.
    ///
    /// # Errors
    ///
    /// [`CsvError::Mismatch`] on the first call when the file does not fit the mapper;
    /// [`CsvError::Io`] when reading fails.
    pub fn next_slice(&mut self, max_rows: usize) -> Result<Option<Vec<StixObject>>, CsvError> {
        let max_rows = max_rows.max(1);
        if !self.probed {
            self.probe()?;
        }
        // Sized once: growing a slice of thousands of objects step by step costs a series
        // of large reallocations, which the allocator pays for in heap consolidation.
        let mut out = Vec::with_capacity(max_rows.min(4096) * self.objects_per_row);
        let mut rows = 0;
        while rows < max_rows {
            let Some(objects) = self.ready.pop_front() else {
                break;
            };
            out.extend(objects);
            rows += 1;
        }
        while rows < max_rows && !self.at_end {
            if !self.read_record()? {
                self.at_end = true;
                break;
            }
            if self.map_current(&mut out)?.emitted {
                rows += 1;
            }
        }
        if rows == 0 {
            return Ok(None);
        }
        dedupe(&mut out);
        Ok(Some(out))
    }

    /// Rows skipped so far, with the reason: the first hundred (see
    /// [`CsvPager::skipped_total`] for the count).
    pub fn skipped(&self) -> &[RowSkip] {
        &self.skips
    }

    /// How many rows were skipped in all.
    pub fn skipped_total(&self) -> u64 {
        self.skipped_total
    }

    /// Data rows read so far (the header and comment lines are not rows).
    pub fn rows_read(&self) -> u64 {
        self.rows_read
    }

    /// The cursor for the next run: this body's content hash and the fingerprints of all
    /// its rows, with the ETag and Last-Modified carried through.
    ///
    /// Called before the body is exhausted, it returns the previous cursor unchanged:
    /// the rows already handed on will come again next run (delivery is at least once),
    /// but none is lost.
    pub fn finish(self) -> CsvCursor {
        if !self.at_end {
            tracing::debug!(mapper = %self.mapper_name, "csv pager finished early; cursor unchanged");
            return self.previous;
        }
        if self.skipped_total > 0 {
            tracing::info!(
                mapper = %self.mapper_name,
                rows = self.rows_read,
                skipped = self.skipped_total,
                "csv rows skipped"
            );
        }
        let (_, input) = self.reader.into_inner().inner.into_inner();
        let hash = input.into_inner().hasher.finalize();
        CsvCursor {
            content_hash: Some(hex(&hash)),
            etag: self.previous.etag,
            last_modified: self.previous.last_modified,
            fingerprints: Fingerprints::from_unsorted(self.seen),
        }
    }

    /// Reads the next data record into `self.record`; false at the end of the body.
    fn read_record(&mut self) -> Result<bool, CsvError> {
        if let Some(held) = self.held.take() {
            self.record = held;
            return Ok(true);
        }
        loop {
            match self.reader.read_byte_record(&mut self.record) {
                Ok(true) => {
                    // A line holding only spaces or separators carries nothing.
                    if self.record.iter().all(|f| f.trim_ascii().is_empty()) {
                        continue;
                    }
                    return Ok(true);
                }
                Ok(false) => return Ok(false),
                Err(e) => {
                    let line = self.line_offset + e.position().map_or(0, |p| p.line());
                    match e.into_kind() {
                        csv::ErrorKind::Io(source) => return Err(CsvError::Io { line, source }),
                        other => {
                            // Only reachable for encoding problems; skip the record.
                            self.skip(line, format!("unreadable record: {other:?}"));
                        }
                    }
                }
            }
        }
    }

    fn line(&self) -> u64 {
        self.line_offset + self.record.position().map_or(0, |p| p.line())
    }

    /// Fingerprints and maps the current record, appending its objects to `out` when it is
    /// new and maps to something.
    fn map_current(&mut self, out: &mut Vec<StixObject>) -> Result<Mapped, CsvError> {
        self.rows_read += 1;
        self.key.clear();
        for field in self.record.iter() {
            self.key.extend_from_slice(field.trim_ascii());
            // Unit separator: cannot come from a text field by accident, keeps `a,bc` ≠ `ab,c`.
            self.key.push(0x1f);
        }
        let fingerprint = xxhash_rust::xxh3::xxh3_64(&self.key);
        self.seen.push(fingerprint);
        if self.previous.fingerprints.contains(fingerprint) {
            return Ok(Mapped {
                emitted: false,
                failed: None,
            });
        }
        // A row without a field the mapper reads is cut short (a truncated download, a
        // broken line): mapping it would make objects from partial values (a URL cut in
        // the middle names another resource), so it is skipped with the reason instead.
        if let Some(&needed) = self.fields.iter().max() {
            if self.record.len() <= needed {
                let line = self.line();
                let reason = format!(
                    "the row has {} field(s) but the mapper reads field {} (a cut-off or broken row?)",
                    self.record.len(),
                    needed + 1
                );
                self.skip(line, reason.clone());
                return Ok(Mapped {
                    emitted: false,
                    failed: Some(RowSkip { line, reason }),
                });
            }
        }
        let start = out.len();
        let cells = Cells {
            record: &self.record,
            fields: &self.fields,
        };
        match self.builder.build(&cells, out) {
            Ok(date) => {
                if let (Some(d), Some(from)) = (date, self.import_from) {
                    if d < from {
                        out.truncate(start);
                        return Ok(Mapped {
                            emitted: false,
                            failed: None,
                        });
                    }
                }
                Ok(Mapped {
                    emitted: true,
                    failed: None,
                })
            }
            Err(reason) => {
                out.truncate(start);
                let line = self.line();
                self.skip(line, reason.clone());
                Ok(Mapped {
                    emitted: false,
                    failed: Some(RowSkip { line, reason }),
                })
            }
        }
    }

    fn skip(&mut self, line: u64, reason: String) {
        self.skipped_total += 1;
        if self.skips.len() < MAX_KEPT_SKIPS {
            tracing::warn!(mapper = %self.mapper_name, line, reason = %reason, "csv row skipped");
            self.skips.push(RowSkip { line, reason });
        } else {
            tracing::debug!(mapper = %self.mapper_name, line, reason = %reason, "csv row skipped");
        }
    }

    /// Reads the first rows and decides whether the file fits the mapper at all, so that a
    /// wrong mapper gives one clear error rather than a skip on every row.
    fn probe(&mut self) -> Result<(), CsvError> {
        self.probed = true;
        let mut max_fields = 0usize;
        let mut first_line = None;
        let (mut mapped, mut failed) = (0usize, None);
        for _ in 0..PROBE_ROWS {
            if !self.read_record()? {
                self.at_end = true;
                break;
            }
            max_fields = max_fields.max(self.record.len());
            first_line.get_or_insert(self.line());
            let mut objects = Vec::new();
            let outcome = self.map_current(&mut objects)?;
            if outcome.emitted {
                self.ready.push_back(objects);
                mapped += 1;
            } else if let Some(skip) = outcome.failed {
                failed.get_or_insert(skip);
            } else {
                // Already handed on last time, or older than import_from: not a misfit.
                mapped += 1;
            }
        }
        let Some(first_line) = first_line else {
            return Ok(());
        };
        if let Some((slot, &index)) = self.fields.iter().enumerate().max_by_key(|(_, i)| **i) {
            if index >= max_fields {
                let column = self.builder.column_label(slot);
                return Err(CsvError::Mismatch {
                    mapper: self.mapper_name.clone(),
                    line: first_line,
                    reason: format!(
                        "the mapper reads column {column} (field {}) but the first rows have at most {max_fields} fields",
                        index + 1
                    ),
                });
            }
        }
        if mapped == 0 {
            if let Some(skip) = failed {
                return Err(CsvError::Mismatch {
                    mapper: self.mapper_name.clone(),
                    line: skip.line,
                    reason: format!(
                        "none of the first {} rows maps to an object; the first fails with: {}",
                        self.rows_read, skip.reason
                    ),
                });
            }
        }
        Ok(())
    }
}

/// What became of one record.
struct Mapped {
    emitted: bool,
    failed: Option<RowSkip>,
}

/// Removes repeated objects (same id), keeping the first. Ids are borrowed, not copied:
/// this runs on every slice.
fn dedupe(objects: &mut Vec<StixObject>) {
    let keep: Vec<bool> = {
        let mut seen: HashSet<&str> = HashSet::with_capacity(objects.len());
        objects.iter().map(|o| seen.insert(object_id(o))).collect()
    };
    let mut flags = keep.into_iter();
    objects.retain(|_| flags.next().unwrap_or(true));
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Cleans a header cell for comparison: trimmed, unquoted, lower-cased.
fn header_name(raw: &[u8]) -> String {
    let t = raw.trim_ascii();
    let t = match t {
        [b'"', inner @ .., b'"'] => inner.trim_ascii(),
        _ => t,
    };
    String::from_utf8_lossy(t).to_lowercase()
}

/// Whether a cell looks like data rather than a column name: numbers, dates and addresses
/// start with a digit; URLs, e-mail addresses and domain names have their telltale signs.
fn looks_like_data(cell: &str) -> bool {
    cell.starts_with(|c: char| c.is_ascii_digit())
        || cell.contains("://")
        || cell.contains('@')
        || (cell.contains('.') && !cell.contains(char::is_whitespace) && !cell.ends_with(')'))
}

/// Finds the header (the first record, or the last comment line before the data), and
/// resolves every mapper column to a field index. Returns the first record when it is data.
fn resolve_header<R: Read>(
    reader: &mut csv::Reader<R>,
    mapper: &Mapper,
    last_comment: Option<(u64, String)>,
    line_offset: u64,
) -> Result<(Vec<usize>, Option<ByteRecord>), CsvError> {
    let io = |line: u64| {
        move |e: csv::Error| CsvError::Io {
            line,
            source: std::io::Error::other(e.to_string()),
        }
    };
    if !mapper.has_header {
        if let Some(c) = mapper
            .columns
            .iter()
            .find(|c| matches!(c, ColumnRef::Names(_)))
        {
            return Err(CsvError::NamesWithoutHeader {
                mapper: mapper.name().to_string(),
                column: c.label(),
            });
        }
        return Ok((letters(mapper), None));
    }

    let mut first = ByteRecord::new();
    let has_first = reader
        .read_byte_record(&mut first)
        .map_err(io(line_offset))?;
    let first_line = line_offset + first.position().map_or(1, |p| p.line());
    let first_names: Vec<String> = first.iter().map(header_name).collect();

    // The commented header, split with the file's own separator and quoting.
    let comment_names: Option<(u64, Vec<String>)> = last_comment.and_then(|(line, text)| {
        let mut r = csv::ReaderBuilder::new()
            .delimiter(mapper.separator)
            .has_headers(false)
            .flexible(true)
            .from_reader(SpaceAfterSeparator {
                enabled: spaced_quotes(text.as_bytes(), mapper.separator),
                separator: mapper.separator,
                in_quotes: false,
                after_separator: false,
                inner: text.as_bytes(),
            });
        let mut rec = ByteRecord::new();
        match r.read_byte_record(&mut rec) {
            Ok(true) if rec.len() >= 2 => Some((line, rec.iter().map(header_name).collect())),
            _ => None,
        }
    });

    // How many of the mapper's named columns a candidate header has.
    let resolved = |names: &[String]| {
        mapper
            .columns
            .iter()
            .filter(|c| match c {
                ColumnRef::Letter(..) => false,
                ColumnRef::Names(alts) => alts.iter().any(|a| names.contains(a)),
            })
            .count()
    };
    let first_is_header = !has_first
        || match &comment_names {
            None => true,
            // Names decide: the commented line is the header when it has more of them.
            Some((_, names)) if mapper.uses_names() => resolved(names) <= resolved(&first_names),
            // Letters only: the first record is the header unless it looks like data.
            Some(_) => !first_names.iter().any(|c| looks_like_data(c)),
        };
    let (header_line, names, held) = if first_is_header {
        if !has_first {
            return Err(CsvError::NoHeader {
                mapper: mapper.name().to_string(),
            });
        }
        (first_line, first_names, None)
    } else {
        let (line, names) = comment_names.unwrap_or_default();
        (line, names, Some(first))
    };
    tracing::debug!(mapper = %mapper.name(), line = header_line, header = ?names, "csv header");

    let mut fields = Vec::with_capacity(mapper.columns.len());
    for column in &mapper.columns {
        let index = match column {
            ColumnRef::Letter(i, _) => Some(*i),
            ColumnRef::Names(alts) => alts.iter().find_map(|a| names.iter().position(|n| n == a)),
        };
        match index {
            Some(i) => fields.push(i),
            None => {
                return Err(CsvError::ColumnNotInHeader {
                    mapper: mapper.name().to_string(),
                    column: column.label(),
                    line: header_line,
                    header: names.join(", "),
                })
            }
        }
    }
    Ok((fields, held))
}

fn letters(mapper: &Mapper) -> Vec<usize> {
    mapper
        .columns
        .iter()
        .map(|c| match c {
            ColumnRef::Letter(i, _) => *i,
            ColumnRef::Names(_) => usize::MAX,
        })
        .collect()
}

/// The first `limit` entities the mapper makes from a body, ignoring any cursor, with the
/// relationships among them: what `verify` shows before a feed is saved.
///
/// # Errors
///
/// As [`CsvPager::new`] and [`CsvPager::next_slice`].
pub fn preview<R: Read>(
    body: R,
    mapper: &Mapper,
    provenance: &Provenance,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<StixObject>, CsvError> {
    let mut pager = CsvPager::new(body, mapper, &CsvCursor::default(), provenance, None, now)?;
    let mut out: Vec<StixObject> = Vec::new();
    let is_entity = |o: &StixObject| o.get("type").and_then(|t| t.as_str()) != Some("relationship");
    while out.iter().filter(|o| is_entity(o)).count() < limit {
        match pager.next_slice(1)? {
            Some(objects) => out.extend(objects),
            None => break,
        }
    }
    dedupe(&mut out);
    let mut entities = 0;
    let mut kept: HashSet<String> = HashSet::new();
    out.retain(|o| {
        if is_entity(o) {
            entities += 1;
            if entities <= limit {
                kept.insert(object_id(o).to_string());
                return true;
            }
            return false;
        }
        true
    });
    out.retain(|o| {
        is_entity(o)
            || ["source_ref", "target_ref"].iter().all(|k| {
                o.get(*k)
                    .and_then(|v| v.as_str())
                    .is_some_and(|id| kept.contains(id))
            })
    });
    Ok(out)
}
