//! The floors printed beside each case: what reading the file costs (`cat`), and what the
//! kind's parser costs alone, with no mapping, no STIX and no output.
//!
//! "The same parser" means the same crate configured as the kind configures it: quick-xml's
//! namespace-resolving pull reader with text kept untrimmed for RSS and Atom, the csv
//! crate's byte-record reader (flexible, `#` comments, `,` separator) for CSV. The kind
//! adds charset sniffing and the mapping on top; this is the part no mapping can remove.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::Context;
use quick_xml::events::Event;
use quick_xml::NsReader;

/// Reads an RSS or Atom document with the kind's XML reader and counts its items.
pub fn xml_items(path: &Path) -> anyhow::Result<u64> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = NsReader::from_reader(BufReader::with_capacity(64 * 1024, file));
    reader.config_mut().trim_text(false);
    let mut buf = Vec::with_capacity(64 * 1024);
    let (mut items, mut text_bytes) = (0u64, 0usize);
    loop {
        match reader.read_resolved_event_into(&mut buf)? {
            (_, Event::Start(e)) if matches!(e.local_name().as_ref(), b"item" | b"entry") => {
                items += 1;
            }
            // Text is checked as UTF-8, as the kind does before it keeps any.
            (_, Event::Text(t)) => text_bytes += std::str::from_utf8(&t)?.len(),
            (_, Event::Eof) => break,
            _ => {}
        }
        buf.clear();
    }
    std::hint::black_box(text_bytes);
    Ok(items)
}

/// Reads a CSV with the kind's reader settings and counts its data records.
pub fn csv_rows(path: &Path) -> anyhow::Result<u64> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b',')
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .from_reader(BufReader::with_capacity(64 * 1024, file));
    let mut record = csv::ByteRecord::new();
    let mut rows = 0u64;
    while reader.read_byte_record(&mut record)? {
        rows += 1;
    }
    Ok(rows)
}
