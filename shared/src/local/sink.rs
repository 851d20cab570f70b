//! The output directory: one bundle per file, `DIR/<feed>/<sequence>.json`.
//!
//! Files are written atomically (temporary file, flushed to disk, then renamed), so a
//! consumer watching the folder never reads half a bundle, even after a crash. The
//! sequence is per feed, zero-padded to 8 digits so names sort in order, and continues
//! across runs: the first write of a run starts after the highest number already in the
//! feed's folder.
//!
//! Flushing is what a bundle costs most: one `fsync` waits for the disk (milliseconds),
//! against microseconds to compose the bundle. So [`DirSink::emit`] writes the temporary
//! file and returns, and a few threads flush files side by side (the file system groups
//! concurrent flushes into one journal commit) and rename them in sequence order. The
//! delivery contract needs every bundle of a page on disk before the page's cursor moves,
//! not before the next bundle is composed: [`DirSink::settle`] waits for all flushes and
//! renames and flushes the folders, and the local page queue calls it on a page's last
//! part, which the fetcher sends before it commits. At most [`MAX_IN_FLIGHT`] bundles wait
//! at a time, so memory and open files stay bounded.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use async_trait::async_trait;
use tempfile::NamedTempFile;

use crate::ports::{BundleMeta, BundleSink, PortError};

/// Threads flushing bundles. Flushes mostly wait on the disk, so a few more than the cores
/// pay off: on a virtual disk, eight concurrent flushes cost about a quarter of eight in a
/// row.
const FLUSH_THREADS: usize = 8;

/// Bundles written but not yet flushed and renamed, at most; `emit` waits beyond that.
/// Each holds an open file, not its bytes (those are in the page cache).
pub const MAX_IN_FLIGHT: usize = 64;

/// The directory adapter of [`BundleSink`].
pub struct DirSink {
    root: PathBuf,
    next: Mutex<HashMap<String, u64>>,
    written: Mutex<HashMap<String, (u64, u64)>>,
    flusher: Arc<Flusher>,
    /// Hands bundles to the flush threads; started on the first bundle.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
}

/// One written bundle on its way to its final name.
struct Job {
    tmp: NamedTempFile,
    path: PathBuf,
    feed: String,
    sequence: u64,
}

/// What the flush threads share with `emit` and `settle`.
#[derive(Default)]
struct Flusher {
    state: Mutex<FlushState>,
    changed: Condvar,
}

#[derive(Default)]
struct FlushState {
    /// Bundles handed over and not yet renamed (or failed), all feeds together.
    in_flight: usize,
    feeds: HashMap<String, FeedFlush>,
}

/// One feed's bundles between `emit` and their final names.
#[derive(Default)]
struct FeedFlush {
    /// Bundles handed over and not yet renamed (or failed).
    in_flight: usize,
    /// The next sequence to rename, so files appear in order.
    next_rename: u64,
    /// Flushed bundles waiting for an earlier one; `None` for one that failed.
    flushed: BTreeMap<u64, Option<(NamedTempFile, PathBuf)>>,
    /// The feed's folder, when it got files since the last settle (its entries need a
    /// flush too).
    folder: Option<PathBuf>,
    /// The first failure since the last settle.
    error: Option<String>,
}

impl Flusher {
    fn lock(&self) -> MutexGuard<'_, FlushState> {
        // A panic in a flush thread cannot leave the counts half-updated in a way that
        // matters more than losing the whole sink, so a poisoned lock is taken over.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Flushes one bundle and renames every bundle of its feed that is now next in line.
    fn flush(&self, job: Job) {
        let flushed = job.tmp.as_file().sync_all();
        let ready = match flushed {
            Ok(()) => Ok((job.tmp, job.path)),
            Err(e) => Err(format!("cannot flush bundle {}: {e}", job.path.display())),
        };
        self.done(&job.feed, job.sequence, ready);
    }

    /// Records a bundle as flushed (or failed) and renames the feed's bundles that are now
    /// next in line; a failed one only gives up its place.
    fn done(&self, feed: &str, sequence: u64, ready: Result<(NamedTempFile, PathBuf), String>) {
        let mut state = self.lock();
        let FlushState { in_flight, feeds } = &mut *state;
        let f = feeds.entry(feed.to_string()).or_default();
        match ready {
            Ok(done) => {
                f.flushed.insert(sequence, Some(done));
            }
            Err(e) => {
                f.error.get_or_insert(e);
                f.flushed.insert(sequence, None);
            }
        }
        while let Some(entry) = f.flushed.remove(&f.next_rename) {
            if let Some((tmp, path)) = entry {
                match tmp.persist(&path) {
                    Ok(_) => f.folder = path.parent().map(Path::to_path_buf),
                    Err(e) => {
                        f.error.get_or_insert_with(|| {
                            format!("cannot write bundle {}: {}", path.display(), e.error)
                        });
                    }
                }
            }
            f.next_rename += 1;
            f.in_flight -= 1;
            *in_flight -= 1;
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Waits until `done` holds.
    fn wait_until(&self, done: impl Fn(&FlushState) -> bool) -> MutexGuard<'_, FlushState> {
        let mut state = self.lock();
        while !done(&state) {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state
    }

    /// Waits for `feeds`' bundles (every feed's when `None`), then flushes their folders.
    fn settle(&self, feed: Option<&str>) -> Result<(), PortError> {
        let chosen = |name: &str| feed.is_none_or(|f| f == name);
        let mut state = self.wait_until(|s| {
            s.feeds
                .iter()
                .all(|(name, f)| !chosen(name) || f.in_flight == 0)
        });
        let mut folders = Vec::new();
        let mut error = None;
        for (_, f) in state.feeds.iter_mut().filter(|(name, _)| chosen(name)) {
            folders.extend(f.folder.take());
            if let Some(e) = f.error.take() {
                error.get_or_insert(e);
            }
        }
        drop(state);
        for folder in folders {
            std::fs::File::open(&folder)
                .and_then(|f| f.sync_all())
                .map_err(|e| format!("cannot flush output folder {}: {e}", folder.display()))?;
        }
        match error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

impl DirSink {
    /// A sink writing under `root`.
    pub fn new(root: &Path) -> DirSink {
        DirSink {
            root: root.to_path_buf(),
            next: Mutex::default(),
            written: Mutex::default(),
            flusher: Arc::default(),
            jobs: Mutex::default(),
        }
    }

    /// Bundles and bytes written for `feed` by this sink.
    pub fn written(&self, feed: &str) -> (u64, u64) {
        self.written
            .lock()
            .ok()
            .and_then(|w| w.get(feed).copied())
            .unwrap_or((0, 0))
    }

    /// Returns once every bundle emitted so far for `feed` is flushed to disk under its
    /// final name, with the folder's entries flushed too: after this, a crash loses none of
    /// them. Other feeds' bundles are not waited for.
    ///
    /// # Errors
    /// The first bundle of the feed that could not be flushed or renamed since the last
    /// call. The bundles after it are still written; the page must be handed on again.
    pub fn settle(&self, feed: &str) -> Result<(), PortError> {
        self.flusher.settle(Some(feed))
    }

    fn highest_existing(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                name.strip_suffix(".json")?.parse::<u64>().ok()
            })
            .max()
            .unwrap_or(0)
    }

    /// Hands a written bundle to the flush threads, starting them on first use.
    fn hand_over(&self, job: Job) -> Result<(), PortError> {
        let mut jobs = self.jobs.lock().map_err(|_| "sink lock poisoned")?;
        let sender = jobs.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            let rx = Arc::new(Mutex::new(rx));
            for _ in 0..FLUSH_THREADS {
                let (rx, flusher) = (rx.clone(), self.flusher.clone());
                std::thread::spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => flusher.flush(job),
                        Err(_) => return,
                    }
                });
            }
            tx
        });
        sender
            .send(job)
            .map_err(|_| "the bundle flush threads stopped".into())
    }
}

impl Drop for DirSink {
    /// Bundles still in flight are finished rather than left as temporary files.
    fn drop(&mut self) {
        if let Err(e) = self.flusher.settle(None) {
            tracing::warn!(error = %e, "a bundle could not be written while closing the output");
        }
    }
}

#[async_trait]
impl BundleSink for DirSink {
    async fn emit(&self, meta: &BundleMeta, bundle: Vec<u8>) -> Result<(), PortError> {
        let dir = self.root.join(&meta.feed);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create output folder {}: {e}", dir.display()))?;
        // Sequences are taken under the flush state's lock, so a new feed's first number
        // and its first rename agree.
        let mut state = self.flusher.wait_until(|s| s.in_flight < MAX_IN_FLIGHT);
        let sequence = {
            let mut next = self.next.lock().map_err(|_| "sink lock poisoned")?;
            let f = state.feeds.entry(meta.feed.clone()).or_default();
            let n = next.entry(meta.feed.clone()).or_insert_with(|| {
                let first = Self::highest_existing(&dir) + 1;
                f.next_rename = first;
                first
            });
            let this = *n;
            *n += 1;
            f.in_flight += 1;
            this
        };
        state.in_flight += 1;
        drop(state);

        let path = dir.join(format!("{sequence:08}.json"));
        let written = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .and_then(|mut tmp| {
                readable(tmp.as_file())?;
                tmp.write_all(&bundle).map(|()| tmp)
            });
        let tmp = match written {
            Ok(tmp) => tmp,
            Err(e) => {
                // Counted as done, so the sequence after it is not held back forever.
                let e = format!("cannot write bundle {}: {e}", path.display());
                self.flusher.done(&meta.feed, sequence, Err(e.clone()));
                return Err(e.into());
            }
        };
        let job = Job {
            tmp,
            path: path.clone(),
            feed: meta.feed.clone(),
            sequence,
        };
        if let Err(e) = self.hand_over(job) {
            self.flusher.done(&meta.feed, sequence, Err(e.to_string()));
            return Err(e);
        }
        if let Ok(mut w) = self.written.lock() {
            let entry = w.entry(meta.feed.clone()).or_default();
            entry.0 += 1;
            entry.1 += bundle.len() as u64;
        }
        tracing::debug!(feed = %meta.feed, path = %path.display(), bytes = bundle.len(), "bundle written");
        Ok(())
    }
}

/// Temporary files are private (0600); a bundle is meant for a consumer, possibly another
/// user, so it gets the usual 0644 before it takes its name (as the state module's
/// atomic writes do).
fn readable(file: &std::fs::File) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Kind;

    fn meta(feed: &str) -> BundleMeta {
        BundleMeta {
            feed: feed.into(),
            kind: Kind::Csv,
            epoch: 0,
            page: 0,
            part: 0,
            index: 0,
            user: None,
        }
    }

    /// Many bundles of two feeds: after settle every one is under its final name, in
    /// sequence, with its own content, and no temporary file is left.
    #[tokio::test]
    async fn settle_leaves_every_bundle_in_sequence() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/00000007.json"), b"old").unwrap();
        let sink = DirSink::new(dir.path());
        for i in 0..(MAX_IN_FLIGHT as u64 * 3) {
            let feed = if i % 3 == 0 { "b" } else { "a" };
            sink.emit(&meta(feed), format!("{{\"n\":{i}}}").into_bytes())
                .await
                .unwrap();
        }
        sink.settle("a").unwrap();
        sink.settle("b").unwrap();
        let listing = |feed: &str| {
            let mut names: Vec<String> = std::fs::read_dir(dir.path().join(feed))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        let numbered = |from: u64, count: u64| -> Vec<String> {
            (from..from + count)
                .map(|n| format!("{n:08}.json"))
                .collect()
        };
        // Feed a continues after the file already there; b starts at 1.
        assert_eq!(listing("a"), numbered(7, 1 + 2 * MAX_IN_FLIGHT as u64));
        assert_eq!(listing("b"), numbered(1, MAX_IN_FLIGHT as u64));
        assert_eq!(
            std::fs::read(dir.path().join("b/00000002.json")).unwrap(),
            b"{\"n\":3}"
        );
        assert_eq!(
            sink.written("a").0 + sink.written("b").0,
            MAX_IN_FLIGHT as u64 * 3
        );
    }
}
