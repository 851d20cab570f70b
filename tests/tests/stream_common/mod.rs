//! Helpers of the live-stream end-to-end tests: an OpenCTI-like SSE server on 127.0.0.1,
//! event payloads shaped like a platform's, and a workspace that runs `feedstix run` over
//! a written configuration and reads back what it left.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use feedstix::config;
use feedstix::cursor::FeedState;
use feedstix::http::RetryPolicy;
use feedstix::local::{FeedSummary, LocalRunner, RunOptions, Shutdown, StateFile};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The token the server accepts, and the variable the feeds read it from.
pub const TOKEN: &str = "stream-test-token-3f9a";
/// The environment variable holding [`TOKEN`].
pub const TOKEN_VAR: &str = "FEEDSTIX_STREAM_TEST_TOKEN";
/// The only stream id the server knows.
pub const STREAM_ID: &str = "c0ffee00-1111-4222-8333-444455556666";

/// One event the server holds.
#[derive(Debug, Clone)]
pub struct Held {
    /// `<ms>-<seq>`.
    pub id: String,
    /// `create`, `update`, `merge`, `delete`.
    pub event: String,
    /// The JSON payload.
    pub data: Value,
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Asked {
    /// Path and query.
    pub target: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Asked {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter's value (the values used here need no decoding).
    pub fn query(&self, name: &str) -> Option<String> {
        let (_, query) = self.target.split_once('?')?;
        query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.replace("%3A", ":"))
    }
}

#[derive(Default)]
struct Shared {
    events: Vec<Held>,
    asked: Vec<Asked>,
    /// For the next connections, one entry each: cut the connection after this many body
    /// bytes (inside an event).
    cuts: Vec<usize>,
}

/// An OpenCTI-like live stream on 127.0.0.1: `GET /stream/{STREAM_ID}` with a bearer token;
/// `from` or `Last-Event-ID` resume after an id (from the oldest held when the id is older,
/// as Redis does); a `connected` event without id, then the held events after the start,
/// then heartbeats whose id is the newest position, every 100 ms while the client stays.
/// Deletions are sent whatever `listen-delete` says, so the client must drop them itself.
#[derive(Clone)]
pub struct StreamServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    shared: Arc<Mutex<Shared>>,
}

impl StreamServer {
    /// Starts serving `events`.
    pub async fn start(events: Vec<Held>) -> StreamServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let shared = Arc::new(Mutex::new(Shared {
            events,
            ..Shared::default()
        }));
        let state = shared.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let _ = serve(socket, state).await;
                });
            }
        });
        StreamServer { base, shared }
    }

    /// Appends events (the remote platform changed).
    pub fn push(&self, events: Vec<Held>) {
        self.shared.lock().expect("lock").events.extend(events);
    }

    /// Drops every held event older than `id` (retention trimming).
    pub fn trim_before(&self, id: &str) {
        let key = parse(id);
        self.shared
            .lock()
            .expect("lock")
            .events
            .retain(|e| parse(&e.id) >= key);
    }

    /// Cuts the next connection after `bytes` bytes of body.
    pub fn cut_next_after(&self, bytes: usize) {
        self.shared.lock().expect("lock").cuts.push(bytes);
    }

    /// The requests received so far.
    pub fn asked(&self) -> Vec<Asked> {
        self.shared.lock().expect("lock").asked.clone()
    }
}

fn parse(id: &str) -> (u64, u64) {
    let (a, b) = id.split_once('-').unwrap_or((id, "0"));
    (a.parse().unwrap_or(0), b.parse().unwrap_or(0))
}

async fn serve(mut socket: TcpStream, shared: Arc<Mutex<Shared>>) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.lines();
    let target = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let asked = Asked { target, headers };

    let path = asked
        .target
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string();
    let cut = {
        let mut s = shared.lock().expect("lock");
        s.asked.push(asked.clone());
        if s.cuts.is_empty() {
            None
        } else {
            Some(s.cuts.remove(0))
        }
    };
    if path != format!("/stream/{STREAM_ID}") {
        return reply(
            &mut socket,
            "404 Not Found",
            "This live stream doesnt exists",
        )
        .await;
    }
    if asked.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        return reply(&mut socket, "401 Unauthorized", "not authenticated").await;
    }
    socket
        .write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\
              Cache-Control: no-cache, no-transform\r\nConnection: close\r\n\r\n",
        )
        .await?;

    // The resume point: query `from` first, then the header, as the platform reads them.
    let from = asked
        .query("from")
        .or_else(|| asked.header("last-event-id").map(str::to_string))
        .unwrap_or_else(|| "0-0".into());
    let (backlog, first, last) = {
        let s = shared.lock().expect("lock");
        let start = parse(&from);
        let backlog: Vec<Held> = s
            .events
            .iter()
            .filter(|e| parse(&e.id) > start)
            .cloned()
            .collect();
        let first = s.events.first().map(|e| e.id.clone());
        let last = s.events.last().map(|e| e.id.clone());
        (backlog, first, last)
    };
    let mut body = format!(
        "event: connected\ndata: {}\n\n",
        json!({"lastEventId": last.clone().unwrap_or_else(|| "0-0".into()),
               "firstEventId": first.unwrap_or_else(|| "0-0".into()),
               "streamSize": backlog.len(), "connectionId": "loopback"})
    );
    for e in &backlog {
        body.push_str(&format!(
            "id: {}\nevent: {}\ndata: {}\n\n",
            e.id, e.event, e.data
        ));
    }
    let mut position = backlog.last().map(|e| e.id.clone()).unwrap_or(from);
    body.push_str(&heartbeat(&position));
    let bytes = body.into_bytes();
    if let Some(cut) = cut {
        // A drop in the middle of an event: write part of the body, then close.
        let cut = cut.min(bytes.len());
        write_in_pieces(&mut socket, &bytes[..cut]).await?;
        return socket.shutdown().await;
    }
    write_in_pieces(&mut socket, &bytes).await?;
    // Live: new events as they are pushed, a heartbeat every 100 ms, until the client goes.
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let fresh: Vec<Held> = {
            let s = shared.lock().expect("lock");
            let at = parse(&position);
            s.events
                .iter()
                .filter(|e| parse(&e.id) > at)
                .cloned()
                .collect()
        };
        let mut chunk = String::new();
        for e in &fresh {
            chunk.push_str(&format!(
                "id: {}\nevent: {}\ndata: {}\n\n",
                e.id, e.event, e.data
            ));
            position = e.id.clone();
        }
        chunk.push_str(&heartbeat(&position));
        write_in_pieces(&mut socket, chunk.as_bytes()).await?;
    }
}

fn heartbeat(id: &str) -> String {
    format!("id: {id}\nevent: heartbeat\ndata: \"2024-05-10T13:00:00.000Z\"\n\n")
}

/// Writes in uneven pieces with pauses, so the client sees lines split across reads.
async fn write_in_pieces(socket: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let mut rest = bytes;
    let mut size = 7;
    while !rest.is_empty() {
        let n = size.min(rest.len());
        socket.write_all(&rest[..n]).await?;
        socket.flush().await?;
        rest = &rest[n..];
        size = if size > 900 { 7 } else { size * 3 };
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

async fn reply(socket: &mut TcpStream, status: &str, reason: &str) -> std::io::Result<()> {
    let text = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{reason}",
        reason.len()
    );
    socket.write_all(text.as_bytes()).await?;
    socket.shutdown().await
}

// ---- payloads shaped like an OpenCTI platform's ----

/// OpenCTI's property extension id.
pub const OCTI_EXT: &str = "extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba";

/// An indicator as a platform streams it, with its property extension.
pub fn indicator(n: u32, modified: &str) -> Value {
    json!({
        "id": format!("indicator--7c1d2a4e-0000-5000-8000-{n:012}"),
        "spec_version": "2.1", "type": "indicator",
        "extensions": { OCTI_EXT: {
            "extension_type": "property-extension",
            "id": format!("a1b2c3d4-0000-4000-8000-{n:012}"), "type": "Indicator",
            "created_at": "2024-05-01T08:00:00.000Z", "updated_at": modified,
            "is_inferred": false, "detection": true, "score": 60,
            "main_observable_type": "IPv4-Addr"
        }},
        "created": "2024-05-01T08:00:00.000Z", "modified": modified,
        "revoked": false, "confidence": 70, "lang": "en", "labels": ["c2"],
        "name": format!("198.51.100.{n}"),
        "pattern": format!("[ipv4-addr:value = '198.51.100.{n}']"),
        "pattern_type": "stix", "valid_from": "2024-05-01T08:00:00.000Z"
    })
}

/// A directory observable carrying two extensions, as a platform streams observables.
pub fn directory(path: &str) -> Value {
    json!({
        "id": "directory--3e8f0a77-5b1c-5d2e-8f00-00000000d1d1",
        "spec_version": "2.1", "type": "directory",
        "extensions": {
            OCTI_EXT: { "extension_type": "property-extension",
                        "id": "0d0d0d0d-0000-4000-8000-00000000d1d1", "type": "Directory",
                        "created_at": "2024-05-02T10:00:00.000Z",
                        "updated_at": "2024-05-02T10:00:00.000Z", "is_inferred": false },
            "extension-definition--f93e2c80-4231-4f9a-af8b-95c9bd566a82": {
                "extension_type": "property-extension", "description": "staging", "score": 40 }
        },
        "path": path
    })
}

/// A sighting of indicator `n` whose extension shadows top-level refs with internal ids.
pub fn sighting(n: u32) -> Value {
    json!({
        "id": "sighting--5d4c3b2a-1111-4222-8333-000000005151",
        "spec_version": "2.1", "type": "sighting",
        "extensions": { OCTI_EXT: {
            "extension_type": "property-extension",
            "id": "5151aaaa-0000-4000-8000-000000005151", "type": "stix-sighting-relationship",
            "created_at": "2024-05-03T09:00:00.000Z", "updated_at": "2024-05-03T09:00:00.000Z",
            "is_inferred": false,
            "sighting_of_ref": format!("a1b2c3d4-0000-4000-8000-{n:012}"),
            "sighting_of_type": "Indicator",
            "where_sighted_refs": ["9e9e9e9e-0000-4000-8000-000000000001"],
            "where_sighted_types": ["Country"], "negative": false
        }},
        "created": "2024-05-03T09:00:00.000Z", "modified": "2024-05-03T09:00:00.000Z",
        "confidence": 50, "first_seen": "2024-05-03T08:00:00.000Z",
        "last_seen": "2024-05-03T08:30:00.000Z", "count": 3,
        "sighting_of_ref": format!("indicator--7c1d2a4e-0000-5000-8000-{n:012}"),
        "where_sighted_refs": ["location--0a1b2c3d-4e5f-5a6b-8c7d-000000000001"]
    })
}

/// An event with the platform's envelope around `data`.
pub fn held(id: &str, event: &str, data: Value) -> Held {
    let message = format!("{event}s {}", data["type"].as_str().unwrap_or("object"));
    Held {
        id: id.into(),
        event: event.into(),
        data: json!({
            "version": "4", "type": event, "scope": "external", "message": message,
            "origin": {"user_id": "00000000-0000-4000-8000-0000000000aa"},
            "data": data
        }),
    }
}

/// A merge event: `sources` merged into `target`.
pub fn merge(id: &str, target: Value, sources: Vec<Value>) -> Held {
    Held {
        id: id.into(),
        event: "merge".into(),
        data: json!({
            "version": "4", "type": "merge", "scope": "external", "message": "merges",
            "origin": {"user_id": "00000000-0000-4000-8000-0000000000aa"},
            "data": target, "context": {"sources": sources}
        }),
    }
}

// ---- the runner side ----

/// A feed definition on `base`.
pub fn feed_toml(name: &str, base: &str, stream_id: &str, extra: &str) -> String {
    format!(
        "[[feeds]]\nname = \"{name}\"\nkind = \"stream\"\nurl = \"{base}\"\n\
         stream_id = \"{stream_id}\"\nallow_private_network = true\n\
         auth = {{ type = \"bearer\", token = \"env:{TOKEN_VAR}\" }}\n{extra}\n"
    )
}

/// Sets the token variable (same value from every test, so parallel tests agree).
pub fn set_token() {
    std::env::set_var(TOKEN_VAR, TOKEN);
}

/// A folder with a feeds file, a state file, and one output folder per run.
pub struct Workspace {
    /// The temporary folder.
    pub dir: tempfile::TempDir,
    runs: usize,
}

impl Workspace {
    /// Writes `toml` as the feeds file.
    pub fn new(toml: &str) -> Workspace {
        set_token();
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("feeds.toml"), toml).expect("write config");
        Workspace { dir, runs: 0 }
    }

    /// The parsed configuration.
    pub fn config(&self) -> config::Config {
        config::load(&self.dir.path().join("feeds.toml")).expect("config loads")
    }

    fn options(&mut self) -> RunOptions {
        self.runs += 1;
        RunOptions {
            out: self.dir.path().join(format!("out-{}", self.runs)),
            state: self.dir.path().join("feeds.state.json"),
            only: Vec::new(),
            retry: RetryPolicy {
                attempts: 2,
                base: Duration::from_millis(10),
                max: Duration::from_millis(50),
            },
        }
    }

    /// `feedstix run --once` into a fresh output folder.
    pub async fn run_once(&mut self) -> (Vec<FeedSummary>, PathBuf) {
        let options = self.options();
        let runner = LocalRunner::new(&self.config(), &options).expect("runner");
        let summaries = runner
            .run_once(&Shutdown::default())
            .await
            .expect("run completes");
        (summaries, options.out)
    }

    /// `feedstix run` (continuous) for `duration`, into a fresh output folder.
    pub async fn run_for(&mut self, duration: Duration) -> PathBuf {
        let options = self.options();
        let runner = LocalRunner::new(&self.config(), &options).expect("runner");
        let shutdown = Shutdown::default();
        let stopper = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stopper.request();
        });
        runner
            .run_forever(&shutdown, |_| {})
            .await
            .expect("run completes");
        options.out
    }

    /// A feed's stored state.
    pub fn state(&self, feed: &str) -> FeedState {
        StateFile::read_only(&self.dir.path().join("feeds.state.json"))
            .expect("state file")
            .all()
            .remove(feed)
            .unwrap_or_default()
    }

    /// A feed's stored cursor as JSON.
    pub fn cursor(&self, feed: &str) -> Value {
        serde_json::to_value(self.state(feed).cursor).expect("cursor serializes")
    }
}

/// Every object in the bundles under `out` (all feeds), in sequence order per feed.
pub fn emitted(out: &Path) -> Vec<Value> {
    let mut files = Vec::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    // Sequence numbers, compared as numbers within each feed's folder.
    files.sort_by_key(|p| {
        let seq: u64 = p
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (p.parent().map(Path::to_path_buf), seq)
    });
    let mut objects = Vec::new();
    for f in files {
        let bundle: Value =
            serde_json::from_slice(&std::fs::read(&f).expect("bundle readable")).expect("json");
        assert_eq!(bundle["type"], "bundle", "{} is a bundle", f.display());
        objects.extend(bundle["objects"].as_array().cloned().unwrap_or_default());
    }
    objects
}

/// Objects of one type among [`emitted`].
pub fn of_type(objects: &[Value], stix_type: &str) -> Vec<Value> {
    objects
        .iter()
        .filter(|o| o["type"] == stix_type)
        .cloned()
        .collect()
}

/// Runs the OASIS validator over `out` when `FEEDSTIX_STIX_VALIDATE` names the
/// `scripts/stix-validate` wrapper (scripts/test sets it); returns false when it was not
/// run. Every bundle must be valid.
pub fn validate(out: &Path) -> bool {
    let Ok(script) = std::env::var("FEEDSTIX_STIX_VALIDATE") else {
        return false;
    };
    let result = std::process::Command::new(script)
        .arg(out)
        .output()
        .expect("validator runs");
    let text = String::from_utf8_lossy(&result.stdout).into_owned();
    assert!(result.status.success(), "validator: {text}");
    assert!(text.contains(" 0 invalid"), "validator: {text}");
    true
}
