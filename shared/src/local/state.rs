//! The local state file: every feed's cursor and status in one JSON document, written
//! atomically (a temporary file in the same folder, flushed, then renamed over the old one)
//! so a crash leaves either the old state or the new, never a torn file. A lock file next
//! to it keeps a second `feedstix run` from interleaving with the first.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Config, FeedConfig};
use crate::cursor::{FeedState, RunState};
use crate::ports::{Commit, FeedStore, PortError, StateStore};

/// The state file used when `--state` is not given: beside the configuration, named after it.
pub fn default_state_path(config: &Path) -> PathBuf {
    let stem = config
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("feedstix");
    config.with_file_name(format!("{stem}.state.json"))
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// Another process holds the lock.
    #[error("state file {path} is in use by another feedstix process (lock {lock} is held); wait for it to finish or stop it")]
    Locked {
        /// The state file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// Reading or writing failed.
    #[error("state file {path}: {reason}")]
    Io {
        /// The state file.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Document {
    #[serde(default)]
    feeds: BTreeMap<String, FeedState>,
}

/// The state file adapter of [`StateStore`].
pub struct StateFile {
    path: PathBuf,
    doc: Mutex<Document>,
    // Leases matter only within this process: the lock file already excludes others, and a
    // lease that outlived a crash must not block the next run.
    leases: Mutex<HashMap<String, DateTime<Utc>>>,
    _lock: Option<File>,
}

impl StateFile {
    /// Opens (or starts) the state file and takes its lock for the life of the value.
    pub fn open(path: &Path) -> Result<StateFile, StateFileError> {
        // Through a symbolic link, lock and replace the file it points to: otherwise two
        // names for one state would take two different locks.
        let resolved = resolve_links(path);
        let path = resolved.as_path();
        let io = |reason: String| StateFileError::Io {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| io(format!("cannot create {}: {e}", dir.display())))?;
        }
        let lock_path = lock_path(path);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io(format!("cannot open lock {}: {e}", lock_path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateFileError::Locked {
                    path: path.to_path_buf(),
                    lock: lock_path,
                })
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io(format!("cannot lock {}: {e}", lock_path.display())))
            }
        }
        let mut state = StateFile::read_only(path)?;
        state._lock = Some(lock);
        Ok(state)
    }

    /// Reads the state file without taking the lock, for commands that only look.
    pub fn read_only(path: &Path) -> Result<StateFile, StateFileError> {
        let doc = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateFileError::Io {
                path: path.to_path_buf(),
                reason: format!("not a feedstix state file: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Document::default(),
            Err(e) => {
                return Err(StateFileError::Io {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })
            }
        };
        Ok(StateFile {
            path: path.to_path_buf(),
            doc: Mutex::new(doc),
            leases: Mutex::default(),
            _lock: None,
        })
    }

    /// The state of every feed that has one.
    pub fn all(&self) -> BTreeMap<String, FeedState> {
        self.doc.lock().map(|d| d.feeds.clone()).unwrap_or_default()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn save(&self, doc: &Document) -> Result<(), PortError> {
        let bytes = serde_json::to_vec_pretty(doc)?;
        write_atomically(&self.path, &bytes)
            .map_err(|e| format!("state file {}: cannot write: {e}", self.path.display()).into())
    }
}

/// Follows symbolic links (also dangling ones: the state file may not exist yet).
fn resolve_links(path: &Path) -> PathBuf {
    let mut current = path.to_path_buf();
    // A bound on hops, as the kernel has, so a link loop ends.
    for _ in 0..16 {
        let is_link = std::fs::symlink_metadata(&current).is_ok_and(|m| m.file_type().is_symlink());
        if !is_link {
            break;
        }
        match std::fs::read_link(&current) {
            Ok(target) if target.is_absolute() => current = target,
            Ok(target) => {
                current = current.parent().map(|p| p.join(&target)).unwrap_or(target);
            }
            Err(_) => break,
        }
    }
    current
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".lock");
    path.with_file_name(name)
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so
/// readers see the old content or the new, never a part.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    // Temporary files are private (0600); the result is meant to be read by a consumer,
    // possibly another user, so it gets the usual 0644 before it takes its name.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[async_trait]
impl StateStore for StateFile {
    async fn load(&self, feed: &str) -> Result<Option<FeedState>, PortError> {
        let doc = self.doc.lock().map_err(|_| "state lock poisoned")?;
        Ok(doc.feeds.get(feed).cloned())
    }

    async fn commit(
        &self,
        feed: &str,
        expected_version: u64,
        state: &FeedState,
    ) -> Result<Commit, PortError> {
        let mut doc = self.doc.lock().map_err(|_| "state lock poisoned")?;
        let current = doc.feeds.get(feed).cloned().unwrap_or_default();
        if current.version != expected_version || current.epoch != state.epoch {
            return Ok(Commit::Conflict);
        }
        let mut next = state.clone();
        next.version = expected_version + 1;
        // The drop counter and the run state are written outside the versioned state (see
        // the port's docs); keep the stored ones.
        next.status.dropped_stale = current.status.dropped_stale;
        next.run_state = current.run_state;
        doc.feeds.insert(feed.to_string(), next);
        if let Err(e) = self.save(&doc) {
            doc.feeds.insert(feed.to_string(), current);
            return Err(e);
        }
        Ok(Commit::Committed)
    }

    async fn try_lease(
        &self,
        feed: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        let mut leases = self.leases.lock().map_err(|_| "lease lock poisoned")?;
        match leases.get(feed) {
            Some(held) if *held > now => Ok(false),
            _ => {
                leases.insert(feed.to_string(), until);
                Ok(true)
            }
        }
    }

    async fn release_lease(&self, feed: &str) -> Result<(), PortError> {
        self.leases
            .lock()
            .map_err(|_| "lease lock poisoned")?
            .remove(feed);
        Ok(())
    }

    async fn count_dropped(&self, feed: &str, n: u64) -> Result<(), PortError> {
        let mut doc = self.doc.lock().map_err(|_| "state lock poisoned")?;
        doc.feeds
            .entry(feed.to_string())
            .or_default()
            .status
            .dropped_stale += n;
        self.save(&doc)
    }

    async fn reset(&self, feed: &str) -> Result<FeedState, PortError> {
        let next = {
            let mut doc = self.doc.lock().map_err(|_| "state lock poisoned")?;
            let state = doc.feeds.entry(feed.to_string()).or_default();
            state.epoch += 1;
            state.version += 1;
            state.cursor = crate::cursor::Cursor::Start;
            state.status.last_error = None;
            state.status.consecutive_failures = 0;
            // Due at once: a reset feed should not wait out its interval to re-import.
            state.status.last_run = None;
            let next = state.clone();
            self.save(&doc)?;
            next
        };
        self.leases
            .lock()
            .map_err(|_| "lease lock poisoned")?
            .remove(feed);
        Ok(next)
    }

    async fn set_run_state(&self, feed: &str, run_state: RunState) -> Result<(), PortError> {
        let mut doc = self.doc.lock().map_err(|_| "state lock poisoned")?;
        doc.feeds.entry(feed.to_string()).or_default().run_state = run_state;
        self.save(&doc)
    }
}

/// The feed definitions of a checked configuration file, as a [`FeedStore`].
pub struct ConfigFeeds {
    feeds: Vec<FeedConfig>,
}

impl ConfigFeeds {
    /// The feeds of `config`.
    pub fn new(config: &Config) -> ConfigFeeds {
        ConfigFeeds {
            feeds: config.feeds.clone(),
        }
    }
}

#[async_trait]
impl FeedStore for ConfigFeeds {
    async fn list(&self) -> Result<Vec<FeedConfig>, PortError> {
        Ok(self.feeds.clone())
    }

    async fn get(&self, name: &str) -> Result<Option<FeedConfig>, PortError> {
        Ok(self.feeds.iter().find(|f| f.name == name).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commit_is_conditional_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let store = StateFile::open(&path).unwrap();
        let s = FeedState {
            pages: 1,
            ..Default::default()
        };
        assert_eq!(store.commit("a", 0, &s).await.unwrap(), Commit::Committed);
        // A writer that read version 0 has lost.
        assert_eq!(store.commit("a", 0, &s).await.unwrap(), Commit::Conflict);
        // A reset (new epoch) beats a writer of the old epoch.
        let mut reset = store.load("a").await.unwrap().unwrap();
        reset.epoch = 1;
        assert_eq!(
            store.commit("a", 1, &reset).await.unwrap(),
            Commit::Conflict
        );
        drop(store);
        let again = StateFile::open(&path).unwrap();
        let loaded = again.load("a").await.unwrap().unwrap();
        assert_eq!((loaded.version, loaded.pages), (1, 1));
    }

    #[tokio::test]
    async fn reset_bumps_the_epoch_and_beats_an_old_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateFile::open(&dir.path().join("s.json")).unwrap();
        let s = FeedState {
            pages: 3,
            ..Default::default()
        };
        store.commit("a", 0, &s).await.unwrap();
        let before = store.load("a").await.unwrap().unwrap();
        let reset = store.reset("a").await.unwrap();
        assert_eq!(
            (reset.epoch, reset.cursor.clone()),
            (1, crate::cursor::Cursor::Start)
        );
        // A fetcher that loaded the state before the reset cannot commit over it.
        assert_eq!(
            store.commit("a", before.version, &before).await.unwrap(),
            Commit::Conflict
        );
    }

    #[tokio::test]
    async fn a_commit_never_undoes_a_stop() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateFile::open(&dir.path().join("s.json")).unwrap();
        let loaded = store.load("a").await.unwrap().unwrap_or_default();
        store.set_run_state("a", RunState::Stopped).await.unwrap();
        assert_eq!(
            store.commit("a", loaded.version, &loaded).await.unwrap(),
            Commit::Committed
        );
        assert_eq!(
            store.load("a").await.unwrap().unwrap().run_state,
            RunState::Stopped
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_to_a_locked_state_is_refused_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let _first = StateFile::open(&path).unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(
            StateFile::open(&link),
            Err(StateFileError::Locked { .. })
        ));
    }

    #[test]
    fn second_open_is_refused_while_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let _first = StateFile::open(&path).unwrap();
        let second = StateFile::open(&path);
        assert!(
            matches!(second, Err(StateFileError::Locked { .. })),
            "{:?}",
            second.err()
        );
    }
}
