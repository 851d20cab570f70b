//! Byte-level preparation of a feed body: the charset, the byte-order mark, and the XML
//! declaration, ahead of the pull parser.
//!
//! The pull parser reads UTF-8 only, so the body is transcoded on the fly, one bounded
//! chunk at a time. The charset comes from a byte-order mark, else from the XML
//! declaration's `encoding`, else UTF-8. The declaration itself is removed before
//! parsing: feeds get it wrong (`<?xmlversion="1.0"`, blank lines before it) far more often
//! than its content matters, and after transcoding its `encoding` would be a lie.
//!
//! Invalid UTF-8 in a body that claims (or defaults to) UTF-8 is recovered byte sequence
//! by byte sequence as windows-1252, with one warning naming the first offset: such feeds
//! are almost always Latin-1 text served without a declaration, and refusing them would
//! lose every item for a few accented letters.

use std::io::{self, BufRead, Chain, Cursor, Read};

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8, WINDOWS_1252};

/// How many leading bytes are examined for a byte-order mark and declaration. A
/// declaration longer than this is left in place for the parser to judge.
const SNIFF_LEN: usize = 1024;

/// Most raw bytes transcoded per refill, so a body held in one slice is still converted in
/// bounded steps.
const CHUNK: usize = 64 * 1024;

/// The body as a stream of UTF-8, plus what the sniffing found.
pub(crate) struct Prepared<R> {
    /// The transcoded stream.
    pub reader: Transcoder<Chain<Cursor<Vec<u8>>, R>>,
    /// Bytes removed from the front (byte-order mark, blank space, declaration), added to
    /// parser positions so error offsets point into the original body.
    pub skipped: u64,
    /// The encoding used.
    pub encoding: &'static Encoding,
}

/// Reads the first bytes of `body`, decides the encoding and sets up transcoding.
pub(crate) fn prepare<R: BufRead>(mut body: R) -> io::Result<Prepared<R>> {
    let mut head = Vec::with_capacity(SNIFF_LEN);
    while head.len() < SNIFF_LEN {
        let available = body.fill_buf()?;
        if available.is_empty() {
            break;
        }
        let take = available.len().min(SNIFF_LEN - head.len());
        head.extend_from_slice(&available[..take]);
        body.consume(take);
    }

    let mut start = 0;
    let mut encoding = None;
    if head.starts_with(b"\xEF\xBB\xBF") {
        start = 3;
        encoding = Some(UTF_8);
    } else if head.starts_with(b"\xFF\xFE") {
        start = 2;
        encoding = Some(UTF_16LE);
    } else if head.starts_with(b"\xFE\xFF") {
        start = 2;
        encoding = Some(UTF_16BE);
    }

    // Everything below reads ASCII, which UTF-16 is not: a UTF-16 body keeps its
    // declaration and the parser skips it after transcoding.
    if encoding.is_none() || encoding == Some(UTF_8) {
        while head.get(start).is_some_and(u8::is_ascii_whitespace) {
            start += 1;
        }
        if head[start..].starts_with(b"<?xml") {
            if let Some(close) = find(&head[start..], b"?>") {
                let declaration = &head[start..start + close];
                if encoding.is_none() {
                    encoding = declared_encoding(declaration);
                }
                start += close + 2;
            }
        }
    }

    let encoding = encoding.unwrap_or(UTF_8);
    let rest = head.split_off(start);
    Ok(Prepared {
        reader: Transcoder::new(Cursor::new(rest).chain(body), encoding, start as u64),
        skipped: start as u64,
        encoding,
    })
}

/// The encoding a declaration names, if it names one encoding_rs knows. UTF-16 named in
/// an ASCII-readable declaration is a mislabel (the bytes just read were not UTF-16), so
/// it is read as UTF-8.
fn declared_encoding(declaration: &[u8]) -> Option<&'static Encoding> {
    let at = find(declaration, b"encoding")? + b"encoding".len();
    let rest = &declaration[at..];
    let rest = trim_start(rest).strip_prefix(b"=")?;
    let rest = trim_start(rest);
    let quote = *rest.first()?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let end = rest[1..].iter().position(|b| *b == quote)?;
    let label = &rest[1..1 + end];
    match Encoding::for_label(label) {
        Some(e) if e == UTF_16LE || e == UTF_16BE => Some(UTF_8),
        Some(e) => Some(e),
        None => {
            tracing::warn!(
                label = %String::from_utf8_lossy(label),
                "unknown charset in the xml declaration, reading as utf-8"
            );
            None
        }
    }
}

fn trim_start(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !first.is_ascii_whitespace() {
            break;
        }
        bytes = rest;
    }
    bytes
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A `BufRead` of UTF-8 over a body in another (or a doubtful) encoding.
pub(crate) struct Transcoder<R> {
    inner: R,
    mode: Mode,
    out: Vec<u8>,
    pos: usize,
    /// Raw bytes consumed so far (plus the sniffed prefix), for the recovery warning.
    raw_offset: u64,
    /// Bytes of a UTF-8 sequence cut by a chunk boundary.
    carry: Vec<u8>,
    done: bool,
}

enum Mode {
    Utf8 { warned: bool },
    Other(encoding_rs::Decoder),
}

impl<R: BufRead> Transcoder<R> {
    fn new(inner: R, encoding: &'static Encoding, raw_offset: u64) -> Self {
        let mode = if encoding == UTF_8 {
            Mode::Utf8 { warned: false }
        } else {
            Mode::Other(encoding.new_decoder_without_bom_handling())
        };
        Transcoder {
            inner,
            mode,
            out: Vec::new(),
            pos: 0,
            raw_offset,
            carry: Vec::new(),
            done: false,
        }
    }

    /// Converts the next chunk into `out`. Leaves `out` empty only at the end.
    fn refill(&mut self) -> io::Result<()> {
        self.out.clear();
        self.pos = 0;
        while self.out.is_empty() && !self.done {
            let chunk = self.inner.fill_buf()?;
            let take = chunk.len().min(CHUNK);
            let last = take == 0;
            match &mut self.mode {
                Mode::Utf8 { warned } => {
                    // Finish a sequence cut by the previous chunk from the first bytes of
                    // this one, then validate the chunk in place (no copy of the chunk).
                    let mut used = 0;
                    if !self.carry.is_empty() {
                        let width = utf8_width(self.carry[0]);
                        used = width.saturating_sub(self.carry.len()).min(take);
                        self.carry.extend_from_slice(&chunk[..used]);
                        if self.carry.len() >= width || last {
                            let cut = std::mem::take(&mut self.carry);
                            let base = self.raw_offset - (cut.len() - used) as u64;
                            utf8_with_fallback(&cut, true, &mut self.out, base, warned);
                        }
                    }
                    if self.carry.is_empty() {
                        let base = self.raw_offset + used as u64;
                        self.carry = utf8_with_fallback(
                            &chunk[used..take],
                            last,
                            &mut self.out,
                            base,
                            warned,
                        );
                    }
                }
                Mode::Other(decoder) => {
                    let needed = decoder
                        .max_utf8_buffer_length(take)
                        .unwrap_or(take * 4 + 16);
                    let mut text = String::with_capacity(needed);
                    let (_, _, _) = decoder.decode_to_string(&chunk[..take], &mut text, last);
                    self.out.extend_from_slice(text.as_bytes());
                }
            }
            self.inner.consume(take);
            self.raw_offset += take as u64;
            self.done = last;
        }
        Ok(())
    }
}

/// The length of the UTF-8 sequence a lead byte starts (1 for a byte that starts none).
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

/// Appends the valid UTF-8 of `bytes` to `out`, each invalid sequence decoded as
/// windows-1252. Returns an incomplete trailing sequence to carry into the next chunk
/// (none when `last`).
fn utf8_with_fallback(
    bytes: &[u8],
    last: bool,
    out: &mut Vec<u8>,
    base: u64,
    warned: &mut bool,
) -> Vec<u8> {
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                out.extend_from_slice(valid.as_bytes());
                return Vec::new();
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                out.extend_from_slice(valid);
                let bad_len = match e.error_len() {
                    Some(n) => n,
                    None if !last => return after.to_vec(),
                    None => after.len(),
                };
                if !*warned {
                    *warned = true;
                    let offset = base + (bytes.len() - after.len()) as u64;
                    tracing::warn!(offset, "invalid utf-8, reading those bytes as windows-1252");
                }
                let (text, _) = WINDOWS_1252.decode_without_bom_handling(&after[..bad_len]);
                out.extend_from_slice(text.as_bytes());
                rest = &after[bad_len..];
            }
        }
    }
}

impl<R: BufRead> Read for Transcoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Transcoder<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.out.len() {
            self.refill()?;
        }
        Ok(&self.out[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.out.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> (String, &'static str, u64) {
        let prepared = prepare(bytes).expect("in-memory read");
        let mut reader = prepared.reader;
        let mut text = String::new();
        reader
            .read_to_string(&mut text)
            .expect("transcoded text is utf-8");
        (text, prepared.encoding.name(), prepared.skipped)
    }

    #[test]
    fn bom_and_declaration_are_removed() {
        let (text, enc, skipped) = decode_all(b"\xEF\xBB\xBF<?xml version=\"1.0\"?><rss/>");
        assert_eq!((text.as_str(), enc, skipped), ("<rss/>", "UTF-8", 24));
    }

    #[test]
    fn declared_latin1_is_transcoded() {
        let (text, enc, _) =
            decode_all(b"\n\n  <?xml version='1.0' encoding = 'ISO-8859-1' ?><t>F\xF6rder</t>");
        assert_eq!(enc, "windows-1252");
        assert_eq!(text, "<t>F\u{F6}rder</t>");
        let (text, enc, _) =
            decode_all(b"<?xml version=\"1.0\" encoding=\"iso-8859-7\"?><t>\xD4\xF1\xE9</t>");
        assert_eq!(enc, "ISO-8859-7");
        assert_eq!(text, "<t>\u{3a4}\u{3c1}\u{3b9}</t>");
    }

    #[test]
    fn broken_declaration_is_still_removed() {
        let (text, enc, _) = decode_all(b"<?xmlversion=\"1.0\" encoding=\"UTF-8\"?>\n<rss/>");
        assert_eq!((text.as_str(), enc), ("\n<rss/>", "UTF-8"));
    }

    #[test]
    fn invalid_utf8_falls_back_per_sequence() {
        let (text, enc, _) = decode_all(b"<t>caf\xE9 \xE2\x82\xAC ok</t>");
        assert_eq!(enc, "UTF-8");
        assert_eq!(text, "<t>caf\u{E9} \u{20AC} ok</t>");
        let (text, _, _) = decode_all(b"<t>end\xE2\x82");
        assert_eq!(text, "<t>end\u{E2}\u{201A}");
    }

    #[test]
    fn utf8_sequences_split_across_chunks_survive() {
        // A reader that hands out one byte at a time exercises the carry.
        // The sniffing reads the first SNIFF_LEN bytes at once, so the characters sit after.
        let body = format!("<t>{}\u{20AC}\u{E9}x</t>", "x".repeat(SNIFF_LEN));
        let reader = io::BufReader::with_capacity(1, body.as_bytes());
        let prepared = prepare(reader).expect("read");
        let mut text = String::new();
        let mut r = prepared.reader;
        r.read_to_string(&mut text).expect("utf-8");
        assert_eq!(text, body);
    }

    #[test]
    fn utf16_with_bom() {
        let mut bytes = vec![0xFF, 0xFE];
        for unit in "<rss>\u{E9}</rss>".encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        let (text, enc, _) = decode_all(&bytes);
        assert_eq!((text.as_str(), enc), ("<rss>\u{E9}</rss>", "UTF-16LE"));
    }
}
