//! The output directory: one bundle per file, `DIR/<feed>/<sequence>.json`.
//!
//! Files are written atomically (temporary file, then rename), so a consumer watching the
//! folder never reads half a bundle. The sequence is per feed, zero-padded to 8 digits so
//! names sort in order, and continues across runs: the first write of a run starts after
//! the highest number already in the feed's folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::{BundleMeta, BundleSink, PortError};

/// The directory adapter of [`BundleSink`].
pub struct DirSink {
    root: PathBuf,
    next: Mutex<HashMap<String, u64>>,
    written: Mutex<HashMap<String, (u64, u64)>>,
}

impl DirSink {
    /// A sink writing under `root`.
    pub fn new(root: &Path) -> DirSink {
        DirSink {
            root: root.to_path_buf(),
            next: Mutex::default(),
            written: Mutex::default(),
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
}

#[async_trait]
impl BundleSink for DirSink {
    async fn emit(&self, meta: &BundleMeta, bundle: Vec<u8>) -> Result<(), PortError> {
        let dir = self.root.join(&meta.feed);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create output folder {}: {e}", dir.display()))?;
        let sequence = {
            let mut next = self.next.lock().map_err(|_| "sink lock poisoned")?;
            let n = next
                .entry(meta.feed.clone())
                .or_insert_with(|| Self::highest_existing(&dir) + 1);
            let this = *n;
            *n += 1;
            this
        };
        let path = dir.join(format!("{sequence:08}.json"));
        super::state::write_atomically(&path, &bundle)
            .map_err(|e| format!("cannot write bundle {}: {e}", path.display()))?;
        if let Ok(mut w) = self.written.lock() {
            let entry = w.entry(meta.feed.clone()).or_default();
            entry.0 += 1;
            entry.1 += bundle.len() as u64;
        }
        tracing::debug!(feed = %meta.feed, path = %path.display(), bytes = bundle.len(), "bundle written");
        Ok(())
    }
}
