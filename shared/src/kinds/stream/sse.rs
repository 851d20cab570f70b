//! A server-sent events reader that is fed bytes as they arrive.
//!
//! This module owns the SSE wire format (the WHATWG `text/event-stream` rules): lines end
//! with LF, CR LF or a lone CR; a line starting with `:` is a comment; `event`, `data`, `id`
//! and `retry` are fields; a blank line dispatches the event collected so far. Bytes are
//! kept until a line is complete, so a `data:` line cut anywhere by the network (case C12)
//! is never handed out in pieces. An event still open when the connection ends is thrown
//! away, as the format requires: its `id` was never confirmed.
//!
//! One deliberate difference from a browser: an event without an `id:` line carries `None`
//! instead of inheriting the previous id, and an empty `id:` does not reset anything. The
//! caller keeps its own last id, so an OpenCTI `connected` event (which has no id) can never
//! move a stored position back to the start.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, `message` when absent.
    pub event: String,
    /// The `data:` lines joined by `\n`.
    pub data: String,
    /// The `id:` field when the event had a non-empty one.
    pub id: Option<String>,
}

/// Why the reader refused its input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    /// One line or one event grew past the cap: a hostile or broken server.
    #[error("an event is larger than {limit} bytes")]
    TooLarge {
        /// The cap in bytes.
        limit: usize,
    },
}

/// The incremental reader: [`SseReader::feed`] takes a chunk and returns the events it
/// completed.
#[derive(Debug)]
pub struct SseReader {
    /// Bytes of the line not yet ended.
    line: Vec<u8>,
    /// The previous chunk ended with CR: a LF at the start of the next one is the same
    /// line end, not an empty line (which would dispatch an event too early).
    after_cr: bool,
    /// Nothing read yet: a leading byte-order mark is dropped.
    at_start: bool,
    event: Option<String>,
    data: String,
    /// Whether any `data` field was seen; an event with none is not dispatched.
    has_data: bool,
    id: Option<String>,
    /// Bytes held for the event being collected, checked against `limit`.
    held: usize,
    limit: usize,
}

impl SseReader {
    /// A reader refusing any event larger than `limit` bytes.
    pub fn new(limit: usize) -> SseReader {
        SseReader {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            event: None,
            data: String::new(),
            has_data: false,
            id: None,
            held: 0,
            limit,
        }
    }

    /// Takes the next bytes of the body and returns the events they complete, in order.
    ///
    /// # Errors
    /// [`SseError::TooLarge`] when one event exceeds the cap; the reader should then be
    /// dropped with its connection.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        if self.at_start && !chunk.is_empty() {
            // The BOM may itself arrive split; keep bytes until the three are seen or ruled out.
            self.line.extend_from_slice(chunk);
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            if self.line.len() < BOM.len() && BOM.starts_with(&self.line) {
                return Ok(out);
            }
            self.at_start = false;
            let pending = std::mem::take(&mut self.line);
            let rest = pending.strip_prefix(BOM).unwrap_or(&pending);
            self.scan(rest, &mut out)?;
            return Ok(out);
        }
        if self.after_cr {
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
            self.after_cr = false;
        }
        self.scan(chunk, &mut out)?;
        Ok(out)
    }

    fn scan(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i..].iter().position(|b| *b == b'\n' || *b == b'\r') {
                None => {
                    self.line.extend_from_slice(&bytes[i..]);
                    self.check_size()?;
                    return Ok(());
                }
                Some(at) => {
                    self.line.extend_from_slice(&bytes[i..i + at]);
                    self.check_size()?;
                    let end = i + at;
                    i = end + 1;
                    if bytes[end] == b'\r' {
                        if i < bytes.len() {
                            if bytes[i] == b'\n' {
                                i += 1;
                            }
                        } else {
                            self.after_cr = true;
                        }
                    }
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.line_done(&line) {
                        out.push(event);
                    }
                }
            }
        }
        Ok(())
    }

    fn check_size(&self) -> Result<(), SseError> {
        if self.held + self.line.len() > self.limit {
            return Err(SseError::TooLarge { limit: self.limit });
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return None;
        }
        self.held += line.len();
        let (name, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match name {
            b"event" => self.event = Some(value.into_owned()),
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            // An id holding NUL is ignored by the format; an empty one is kept out of the
            // caller's position (see the module docs).
            b"id" if !value.contains('\0') && !value.is_empty() => {
                self.id = Some(value.into_owned())
            }
            // `retry` is the server's reconnection hint; the client keeps its own backoff.
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        let id = self.id.take();
        let data = std::mem::take(&mut self.data);
        let has_data = std::mem::replace(&mut self.has_data, false);
        self.held = 0;
        // An event with an id but no data still moves the position (OpenCTI never sends
        // one, but a server may use it to skip over filtered events).
        if !has_data && id.is_none() {
            return None;
        }
        Some(SseEvent {
            event: event
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "message".into()),
            data,
            id,
        })
    }
}
