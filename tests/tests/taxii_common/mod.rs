//! Helpers of the TAXII end-to-end tests: a scripted HTTP server on 127.0.0.1, a runner
//! for one `run --once` over a written configuration, readers of the bundles and state it
//! leaves, and a medallion process started from `FEEDSTIX_MEDALLION`.
#![allow(dead_code)]

use std::collections::{BTreeSet, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use feedstix::config;
use feedstix::cursor::FeedState;
use feedstix::http::RetryPolicy;
use feedstix::local::{FeedSummary, LocalRunner, RunOptions, Shutdown, StateFile};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The folder of the copied captures and cases.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tests/data/taxii")
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers, without Content-Length and Connection (the server adds them).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON answer labelled as a TAXII 2.1 document unless `headers` says otherwise.
    pub fn json(status: u16, headers: &[(&str, &str)], body: &Value) -> Reply {
        let mut h: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        if !h
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            h.push((
                "Content-Type".into(),
                "application/taxii+json;version=2.1".into(),
            ));
        }
        Reply {
            status,
            headers: h,
            body: serde_json::to_vec(body).expect("json"),
        }
    }

    /// A raw capture (status line, headers, blank line, body) from the data folder.
    pub fn capture(name: &str) -> Reply {
        let text = std::fs::read_to_string(data_dir().join(name)).expect("capture exists");
        let (head, body) = text
            .split_once("\r\n\r\n")
            .expect("capture has a blank line");
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .filter(|(n, _)| {
                !n.eq_ignore_ascii_case("content-length") && !n.eq_ignore_ascii_case("connection")
            })
            .collect();
        Reply {
            status,
            headers,
            body: body.as_bytes().to_vec(),
        }
    }

    /// The answers of a scripted exchange (`C10_…json`, `C13_…json`), with the requests a
    /// correct client sends, relative to the collection URL.
    pub fn exchange(name: &str) -> (Vec<Reply>, Vec<String>) {
        let text = std::fs::read_to_string(data_dir().join(name)).expect("case exists");
        let doc: Value = serde_json::from_str(&text).expect("case is JSON");
        let mut replies = Vec::new();
        let mut expected = Vec::new();
        for x in doc["exchanges"].as_array().expect("exchanges") {
            let headers: Vec<(&str, &str)> = x["headers"]
                .as_object()
                .expect("headers")
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str().unwrap_or_default()))
                .collect();
            replies.push(Reply::json(
                x["status"].as_u64().expect("status") as u16,
                &headers,
                &x["body"],
            ));
            expected.push(x["expect_request"].as_str().expect("request").to_string());
        }
        (replies, expected)
    }
}

/// One request the scripted server received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `POST`, ….
    pub method: String,
    /// Path and query, exactly as sent.
    pub target: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A server on 127.0.0.1 that answers each connection's request with the next scripted
/// reply (then closes it), and records what it received. Out of replies, it answers 418.
pub struct Scripted {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    /// Starts serving `replies` in order.
    pub async fn start(replies: Vec<Reply>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let queue = Arc::new(Mutex::new(VecDeque::from(replies)));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let Some(request) = read_request(&mut stream).await else {
                    continue;
                };
                record.lock().expect("lock").push(request);
                let reply = queue.lock().expect("lock").pop_front().unwrap_or(Reply {
                    status: 418,
                    headers: vec![("Content-Type".into(), "text/plain".into())],
                    body: b"no scripted reply left".to_vec(),
                });
                let _ = stream.write_all(&encode(&reply)).await;
                let _ = stream.shutdown().await;
            }
        });
        Scripted { base, seen }
    }

    /// What was received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// The request targets received so far.
    pub fn targets(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.target).collect()
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    // Drain a request body so the client sees a clean answer.
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut have = buffer.len() - head_end - 4;
    while have < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        have += n;
    }
    Some(Seen {
        method,
        target,
        headers,
    })
}

fn encode(reply: &Reply) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {} Scripted\r\n", reply.status);
    for (n, v) in &reply.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        reply.body.len()
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&reply.body);
    bytes
}

/// A folder with a feeds file, a state file, and one output folder per run.
pub struct Workspace {
    /// The temporary folder (removed on drop).
    pub dir: tempfile::TempDir,
    runs: usize,
}

impl Workspace {
    /// Writes `toml` as the feeds file.
    pub fn new(toml: &str) -> Workspace {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("feeds.toml"), toml).expect("write config");
        Workspace { dir, runs: 0 }
    }

    /// The state file.
    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join("feeds.state.json")
    }

    /// Runs `feedstix run --once` for `only` (all feeds when empty), into a fresh output
    /// folder. Returns the summaries and that folder.
    pub async fn run_once(&mut self, only: &[&str]) -> (Vec<FeedSummary>, PathBuf) {
        self.runs += 1;
        let out = self.dir.path().join(format!("out-{}", self.runs));
        let config = config::load(&self.dir.path().join("feeds.toml")).expect("config loads");
        let options = RunOptions {
            out: out.clone(),
            state: self.state_path(),
            only: only.iter().map(|s| s.to_string()).collect(),
            retry: RetryPolicy {
                attempts: 2,
                base: Duration::from_millis(10),
                max: Duration::from_millis(50),
            },
        };
        let summaries = {
            let runner = LocalRunner::new(&config, &options).expect("runner");
            runner
                .run_once(&Shutdown::default())
                .await
                .expect("run completes")
        };
        (summaries, out)
    }

    /// A feed's stored state.
    pub fn state(&self, feed: &str) -> FeedState {
        StateFile::read_only(&self.state_path())
            .expect("state file")
            .all()
            .remove(feed)
            .unwrap_or_default()
    }

    /// The stored TAXII cursor of a feed, as JSON.
    pub fn cursor(&self, feed: &str) -> Value {
        serde_json::to_value(self.state(feed).cursor).expect("cursor serializes")
    }
}

/// Every object in the bundles under `out`, in file order.
pub fn emitted(out: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = walk(out)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut objects = Vec::new();
    for f in files {
        let bundle: Value =
            serde_json::from_slice(&std::fs::read(&f).expect("bundle readable")).expect("json");
        assert_eq!(bundle["type"], "bundle", "{} is a bundle", f.display());
        objects.extend(bundle["objects"].as_array().cloned().unwrap_or_default());
    }
    objects
}

/// The ids of [`emitted`], checking that none repeats.
pub fn emitted_ids(out: &Path) -> BTreeSet<String> {
    let objects = emitted(out);
    let ids: Vec<String> = objects
        .iter()
        .map(|o| o["id"].as_str().expect("id").to_string())
        .collect();
    let set: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(set.len(), ids.len(), "an object was emitted twice");
    set
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A free port on 127.0.0.1 (released before returning; the caller binds it soon after).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running medallion with a generated collection; stopped on drop.
pub struct Medallion {
    child: Child,
    /// Where its configuration, data and log live.
    pub dir: tempfile::TempDir,
    /// The port.
    pub port: u16,
    /// `http://127.0.0.1:PORT/feedstix/`.
    pub api_root: String,
    /// The collection id.
    pub collection: String,
    /// The basic-auth user.
    pub user: String,
    /// Its password.
    pub password: String,
    /// The generated objects, each with the date it was added.
    pub objects: Vec<(Value, String)>,
}

impl Medallion {
    /// Generates `objects` objects served `page_size` per page and starts medallion on them.
    ///
    /// # Panics
    /// When `FEEDSTIX_MEDALLION` is not set, or medallion does not come up within 60 s.
    pub fn start(objects: usize, page_size: usize) -> Medallion {
        let exe = std::env::var("FEEDSTIX_MEDALLION").unwrap_or_else(|_| {
            panic!(
                "FEEDSTIX_MEDALLION is not set: run scripts/test, which installs medallion \
                 into .venv, or set FEEDSTIX_MEDALLION=$PWD/.venv/bin/medallion after \
                 `python3 -m venv .venv && .venv/bin/pip install medallion==3.0.0`"
            )
        });
        let exe = PathBuf::from(exe);
        let python = exe
            .parent()
            .map(|d| d.join("python3"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("python3"));
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/taxii_data.py");
        let generated = Command::new(&python)
            .arg(&script)
            .args(["--dir", &dir.path().to_string_lossy()])
            .args(["--port", &port.to_string()])
            .args(["--objects", &objects.to_string()])
            .args(["--page-size", &page_size.to_string()])
            .output()
            .expect("run the data generator");
        assert!(
            generated.status.success(),
            "data generator failed: {}",
            String::from_utf8_lossy(&generated.stderr)
        );
        let info: Value = serde_json::from_slice(&generated.stdout).expect("generator output");
        let data: Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("data.json")).expect("data file"),
        )
        .expect("data json");
        let collection = &data["feedstix"]["collections"][0];
        let added: Vec<String> = collection["manifest"]
            .as_array()
            .expect("manifest")
            .iter()
            .map(|m| m["date_added"].as_str().expect("date").to_string())
            .collect();
        let generated_objects: Vec<(Value, String)> = collection["objects"]
            .as_array()
            .expect("objects")
            .iter()
            .cloned()
            .zip(added)
            .collect();

        let log = std::fs::File::create(dir.path().join("medallion.log")).expect("log file");
        let child = Command::new(&exe)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg(dir.path().join("medallion.json"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let medallion = Medallion {
            child,
            port,
            api_root: info["api_root"].as_str().expect("api root").to_string(),
            collection: info["collection"].as_str().expect("collection").to_string(),
            user: info["user"].as_str().expect("user").to_string(),
            password: info["password"].as_str().expect("password").to_string(),
            objects: generated_objects,
            dir,
        };
        let started = Instant::now();
        loop {
            if let Ok((status, _)) = medallion.request("GET", "/taxii2/", None) {
                if status == 200 {
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "medallion did not answer within 60 s; see {}",
                medallion.dir.path().join("medallion.log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        medallion
    }

    /// One blocking request with the test user's credentials; returns status and body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let payload = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let credentials = base64(format!("{}:{}", self.user, self.password).as_bytes());
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Basic {credentials}\r\n\
             Accept: application/taxii+json;version=2.1\r\nConnection: close\r\n",
            self.port
        );
        if let Some(p) = &payload {
            head.push_str(&format!(
                "Content-Type: application/taxii+json;version=2.1\r\nContent-Length: {}\r\n",
                p.len()
            ));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        if let Some(p) = &payload {
            stream.write_all(p)?;
        }
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer)?;
        let text = String::from_utf8_lossy(&answer);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.as_bytes().to_vec())
            .unwrap_or_default();
        Ok((status, body))
    }
}

impl Drop for Medallion {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
