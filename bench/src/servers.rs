//! The two loopback stand-ins the benchmark needs: a TAXII 2.1 server answering one
//! collection from memory, and the Lambda runtime API's "next invocation" endpoint.
//!
//! Both are plain HTTP/1.1 over `std::net` with a thread per connection: the point is to
//! cost the measured process nothing it would not pay against a real server. medallion is
//! not used because its memory backend slows down with the square of the collection size,
//! which would measure medallion. Only what feedstix sends is understood; anything else
//! gets a 404.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use crate::gen::TaxiiObject;

/// The collection id the TAXII stand-in serves.
pub const COLLECTION: &str = "6b2f1a54-bench-4c1e-9a7d-feedstix0001";

/// One parsed request line and the headers' end; bodies are not expected (GET only).
struct Request {
    path: String,
    query: Vec<(String, String)>,
}

/// Reads one request head from `reader`; `None` when the client closed the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let target = line.split_whitespace().nth(1)?.to_string();
    // Skip the headers: nothing in them changes the answer.
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        if header == "\r\n" || header == "\n" {
            break;
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), percent_decode(v))
        })
        .collect();
    Some(Request {
        path: path.to_string(),
        query,
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, &str)], body: &[u8]) -> bool {
    let mut head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).is_ok() && stream.write_all(body).is_ok()
}

/// A running TAXII stand-in.
pub struct TaxiiServer {
    /// Where it listens.
    pub addr: SocketAddr,
}

impl TaxiiServer {
    /// The API root feedstix is configured with.
    pub fn api_root(&self) -> String {
        format!("http://{}/bench/", self.addr)
    }
}

/// Serves `objects` as one TAXII 2.1 collection on 127.0.0.1 (an ephemeral port) until the
/// process exits. Pages follow `limit` and an opaque `next` (the index of the page's first
/// object); `added_after` filters by `date_added`; each page carries
/// `X-TAXII-Date-Added-First` and `-Last`.
pub fn serve_taxii(objects: Vec<TaxiiObject>) -> std::io::Result<TaxiiServer> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let objects = Arc::new(objects);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let objects = objects.clone();
            std::thread::spawn(move || taxii_connection(stream, &objects));
        }
    });
    Ok(TaxiiServer { addr })
}

fn taxii_connection(stream: TcpStream, objects: &[TaxiiObject]) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let objects_path = format!("/bench/collections/{COLLECTION}/objects/");
    while let Some(request) = read_request(&mut reader) {
        if request.path != objects_path {
            if !respond(&mut writer, "404 Not Found", &[], b"") {
                return;
            }
            continue;
        }
        let param = |name: &str| {
            request
                .query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let limit = param("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(1000)
            .clamp(1, 10_000);
        // Object dates increase, so `added_after` is a binary search.
        let after = param("added_after").map_or(0, |a| {
            objects.partition_point(|o| o.date_added.as_str() <= a)
        });
        let start = param("next")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(after);
        let end = (start + limit).min(objects.len());
        let page = &objects[start.min(end)..end];
        let mut body =
            Vec::with_capacity(page.iter().map(|o| o.json.len() + 1).sum::<usize>() + 64);
        let more = end < objects.len();
        body.extend_from_slice(format!("{{\"more\":{more},").as_bytes());
        if more {
            body.extend_from_slice(format!("\"next\":\"{end}\",").as_bytes());
        }
        body.extend_from_slice(b"\"objects\":[");
        for (i, o) in page.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(o.json.as_bytes());
        }
        body.extend_from_slice(b"]}");
        let mut headers = vec![("content-type", "application/taxii+json;version=2.1")];
        if let (Some(first), Some(last)) = (page.first(), page.last()) {
            headers.push(("x-taxii-date-added-first", first.date_added.as_str()));
            headers.push(("x-taxii-date-added-last", last.date_added.as_str()));
        }
        if !respond(&mut writer, "200 OK", &headers, &body) {
            return;
        }
    }
}

/// Fetches every page of the stand-in's collection with a bare client and drops it: the
/// floor of a TAXII walk (what the server and the loopback cost without feedstix).
/// Returns the pages' total bytes and, when `parse` is set, checks each page parses as JSON.
pub fn taxii_walk(server: &TaxiiServer, limit: usize, parse: bool) -> std::io::Result<(u64, u64)> {
    let stream = TcpStream::connect(server.addr)?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut next: Option<String> = None;
    let (mut bytes, mut objects) = (0u64, 0u64);
    loop {
        let mut target = format!("/bench/collections/{COLLECTION}/objects/?limit={limit}");
        if let Some(n) = &next {
            target.push_str("&next=");
            target.push_str(n);
        }
        write!(
            writer,
            "GET {target} HTTP/1.1\r\nhost: {}\r\n\r\n",
            server.addr
        )?;
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        bytes += length as u64;
        let page: serde_json::Value = if parse {
            serde_json::from_slice(&body).map_err(std::io::Error::other)?
        } else {
            // The floor without parsing still needs the next token, found by hand.
            let text = String::from_utf8_lossy(&body[..body.len().min(64)]).into_owned();
            let token = text
                .split_once("\"next\":\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(t, _)| t.to_string());
            serde_json::json!({ "next": token, "objects": [] })
        };
        objects += page["objects"].as_array().map_or(0, |a| a.len() as u64);
        match page["next"].as_str() {
            Some(n) => next = Some(n.to_string()),
            None => return Ok((bytes, objects)),
        }
    }
}

/// The live stream the SSE stand-in serves.
pub const STREAM_ID: &str = "bench-live-stream";

/// A running OpenCTI live-stream stand-in.
pub struct StreamServer {
    /// Where it listens; the feed's `url` is `http://` and this.
    pub addr: SocketAddr,
}

/// One held stream event: its position and its whole SSE text.
struct StreamEvent {
    position: (u64, u64),
    text: String,
}

/// Serves `objects` as `create` events of one OpenCTI live stream on 127.0.0.1 (an
/// ephemeral port), answering `GET /stream/<id>` as the platform does: a `connected` event
/// naming the oldest and newest ids, every event after `from` (or `Last-Event-ID`), then a
/// heartbeat at the newest id, then a heartbeat a second while the client stays.
pub fn serve_stream(objects: Vec<TaxiiObject>) -> std::io::Result<StreamServer> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    // One event per millisecond from a fixed start, so ids are `<ms>-0`.
    let start_ms = 1_727_000_000_000u64;
    let events: Vec<StreamEvent> = objects
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            let ms = start_ms + i as u64;
            let kind = o.json.split('"').nth(3).unwrap_or("object").to_string();
            StreamEvent {
                position: (ms, 0),
                text: format!(
                    "id: {ms}-0\nevent: create\ndata: {{\"version\":\"4\",\"type\":\"create\",\
                     \"scope\":\"external\",\"message\":\"creates a {kind}\",\"origin\":\
                     {{\"user_id\":\"00000000-0000-4000-8000-0000000000aa\"}},\"data\":{}}}\n\n",
                    o.json
                ),
            }
        })
        .collect();
    let events = Arc::new(events);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let events = events.clone();
            std::thread::spawn(move || stream_connection(stream, &events));
        }
    });
    Ok(StreamServer { addr })
}

fn parse_position(text: &str) -> Option<(u64, u64)> {
    let (ms, seq) = text.trim().split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn stream_connection(stream: TcpStream, events: &[StreamEvent]) {
    let _ = stream.set_nodelay(true);
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let Some(request) = read_request(&mut reader) else {
        return;
    };
    let mut writer = std::io::BufWriter::with_capacity(64 * 1024, writer);
    if request.path != format!("/stream/{STREAM_ID}") {
        let _ = respond(writer.get_mut(), "404 Not Found", &[], b"");
        return;
    }
    let from = request
        .query
        .iter()
        .find(|(k, _)| k == "from")
        .and_then(|(_, v)| parse_position(v))
        .unwrap_or((0, 0));
    let start = events.partition_point(|e| e.position <= from);
    let id = |p: (u64, u64)| format!("{}-{}", p.0, p.1);
    let (first, last) = match (events.first(), events.last()) {
        (Some(f), Some(l)) => (id(f.position), id(l.position)),
        _ => ("0-0".to_string(), "0-0".to_string()),
    };
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
                connection: close\r\n\r\n";
    let connected = format!(
        "event: connected\ndata: {{\"lastEventId\":\"{last}\",\"firstEventId\":\"{first}\",\
         \"streamSize\":{},\"connectionId\":\"bench\"}}\n\n",
        events.len() - start
    );
    if writer.write_all(head.as_bytes()).is_err() || writer.write_all(connected.as_bytes()).is_err()
    {
        return;
    }
    for e in &events[start..] {
        // The client leaves after a full page: the write fails and the thread ends.
        if writer.write_all(e.text.as_bytes()).is_err() {
            return;
        }
    }
    let position = events.last().map_or(from, |e| e.position).max(from);
    let heartbeat = format!(
        "id: {}\nevent: heartbeat\ndata: \"2024-09-30T00:00:00.000Z\"\n\n",
        id(position)
    );
    loop {
        if writer.write_all(heartbeat.as_bytes()).is_err() || writer.flush().is_err() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// Reads the whole stand-in stream once with a bare client, up to the caught-up
/// heartbeat: the floor of a stream case. Returns the bytes read and the events seen;
/// with `parse`, each event's data is parsed as JSON too.
pub fn stream_walk(server: &StreamServer, parse: bool) -> std::io::Result<(u64, u64)> {
    let stream = TcpStream::connect(server.addr)?;
    let mut writer = stream.try_clone()?;
    write!(
        writer,
        "GET /stream/{STREAM_ID}?from=0-0 HTTP/1.1\r\nhost: {}\r\naccept: text/event-stream\r\n\r\n",
        server.addr
    )?;
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let (mut bytes, mut events) = (0u64, 0u64);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            return Ok((bytes, events));
        }
        bytes += n as u64;
        if line.starts_with("event: heartbeat") {
            return Ok((bytes, events));
        }
        if let Some(data) = line.strip_prefix("data: ") {
            if line.len() > 200 {
                events += 1;
                if parse {
                    let _: serde_json::Value =
                        serde_json::from_str(data).map_err(std::io::Error::other)?;
                }
            }
        }
    }
}

/// The Lambda runtime API stand-in: waits for the first `GET
/// /2018-06-01/runtime/invocation/next` and reports when it arrived. The function is never
/// given an event; the caller kills it once it has asked for one.
pub struct RuntimeApi {
    /// Where it listens; `AWS_LAMBDA_RUNTIME_API` is this as `host:port`.
    pub addr: SocketAddr,
    arrived: mpsc::Receiver<Instant>,
}

impl RuntimeApi {
    /// Starts listening on 127.0.0.1 (an ephemeral port).
    pub fn start() -> std::io::Result<RuntimeApi> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (tx, arrived) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let Ok(mut writer) = stream.try_clone() else {
                        return;
                    };
                    let mut reader = BufReader::new(stream);
                    while let Some(request) = read_request(&mut reader) {
                        if request.path == "/2018-06-01/runtime/invocation/next" {
                            let _ = tx.send(Instant::now());
                            // Hold the long poll open, as the real API does between events.
                            std::thread::park();
                            return;
                        }
                        let _ = respond(&mut writer, "202 Accepted", &[], b"{}");
                    }
                });
            }
        });
        Ok(RuntimeApi { addr, arrived })
    }

    /// When the first "next invocation" request arrived, waiting at most `timeout`.
    pub fn first_poll(&self, timeout: std::time::Duration) -> Option<Instant> {
        self.arrived.recv_timeout(timeout).ok()
    }
}
