//! Helpers for the command's end-to-end tests: run the real binary, serve files over HTTP
//! on 127.0.0.1, read bundles back, call the OASIS validator.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// The `feedstix` binary built for these tests.
pub fn feedstix() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_feedstix"));
    cmd.env_remove("FEEDSTIX_LOG");
    cmd
}

/// Runs the binary with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    feedstix()
        .args(args)
        .output()
        .expect("the feedstix binary runs")
}

/// `feedstix run --config CONFIG --once --out OUT`, the command most tests start with.
pub fn run_once(config: &Path, out: &Path) -> Output {
    let (config, out) = (config.to_string_lossy(), out.to_string_lossy());
    run(&["run", "--config", &config, "--once", "--out", &out])
}

/// Text of stdout and stderr together, for assertions on messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Copies the shipped examples into a fresh folder, so runs do not touch the repository.
pub fn examples_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    copy_dir(&src, dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read examples") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else if !entry.file_name().to_string_lossy().contains(".state.json") {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Every bundle file under `out`, sorted.
pub fn bundle_files(out: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(feeds) = std::fs::read_dir(out) else {
        return files;
    };
    for feed in feeds.flatten() {
        for f in std::fs::read_dir(feed.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if f.path().extension().is_some_and(|e| e == "json") {
                files.push(f.path());
            }
        }
    }
    files.sort();
    files
}

/// The objects of every bundle of one feed, in file order.
pub fn objects(out: &Path, feed: &str) -> Vec<serde_json::Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(out.join(feed))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for f in files {
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&f).expect("read bundle")).expect("json");
        assert_eq!(doc["type"], "bundle", "{}", f.display());
        all.extend(doc["objects"].as_array().cloned().unwrap_or_default());
    }
    all
}

/// Ids of the objects of `feed` with type `stix_type`.
pub fn ids_of(out: &Path, feed: &str, stix_type: &str) -> BTreeSet<String> {
    objects(out, feed)
        .iter()
        .filter(|o| o["type"] == stix_type)
        .map(|o| o["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Runs the OASIS STIX 2.1 validator (scripts/stix-validate, installed by scripts/test)
/// on a folder and returns its summary line. Panics if the validator is not installed, or
/// if any bundle is invalid.
pub fn validate(dir: &Path) -> String {
    let script = std::env::var("FEEDSTIX_STIX_VALIDATE").expect(
        "FEEDSTIX_STIX_VALIDATE is not set: run the tests with scripts/test, which installs \
         the OASIS validator",
    );
    let out = Command::new(&script)
        .arg(dir)
        .output()
        .expect("the validator runs");
    let report = text(&out);
    assert!(out.status.success(), "validator found problems:\n{report}");
    report.lines().last().unwrap_or_default().to_string()
}

/// One canned HTTP response.
#[derive(Clone)]
pub struct Canned {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Canned {
    /// 200 with a body and a content type.
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Canned {
        Canned {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 that answers every request with a handler's
/// response and records the requests it saw (request line and headers).
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Requests seen: the request line followed by the header lines.
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts a server whose answers come from `handler(request_text)`.
    pub fn start(handler: impl Fn(&str) -> Canned + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let handler = Arc::new(handler);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                let handler = handler.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    loop {
                        let mut head = String::new();
                        let mut content_length = 0usize;
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some(v) =
                                line.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                content_length = v.trim().parse().unwrap_or(0);
                            }
                            head.push_str(&line);
                        }
                        let mut body = vec![0; content_length];
                        let _ = reader.read_exact(&mut body);
                        seen.lock().expect("lock").push(head.clone());
                        let answer = handler(&head);
                        let mut out = stream.try_clone().expect("clone");
                        let mut response = format!(
                            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
                            answer.status,
                            answer.body.len()
                        );
                        for (n, v) in &answer.headers {
                            response.push_str(&format!("{n}: {v}\r\n"));
                        }
                        response.push_str("\r\n");
                        if out.write_all(response.as_bytes()).is_err()
                            || out.write_all(&answer.body).is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Server { url, requests }
    }

    /// How many requests were made.
    pub fn count(&self) -> usize {
        self.requests.lock().expect("lock").len()
    }
}
