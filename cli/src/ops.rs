//! Operator commands on the local state file: `status` and `feeds list|show|start|stop|reset`.
//!
//! Reading commands open the state file without its lock, so they work while a `run` is
//! going. Commands that change state take the lock, and are refused while a `run` holds
//! it: the running process keeps its own view of the state and would overwrite theirs.
//!
//! The views ([`status_view`], [`list_view`], [`show_view`]) take the definitions and the
//! states from either source, so the cloud commands (`--stack`) print the same shape.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use feedstix::config::{Config, FeedConfig};
use feedstix::cursor::{FeedState, RunState};
use feedstix::local::{self, StateFile};
use feedstix::pipeline::dispatcher::next_due;
use feedstix::ports::StateStore;
use serde_json::json;

/// Which state file a command uses.
pub fn state_path(config: &Path, state: Option<PathBuf>) -> PathBuf {
    state.unwrap_or_else(|| local::default_state_path(config))
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".into())
}

/// Every feed's state by name; a feed with no entry has never run.
pub type States = BTreeMap<String, FeedState>;

/// What is known about queued work, which depends on where the feeds run.
#[derive(Debug, Clone, Copy)]
pub enum Queues {
    /// `feedstix run`: its queues live inside the process, so nothing is queued between runs.
    Local,
    /// The deployed functions: SQS counts messages per queue, not per feed, so the depth is
    /// one figure for all feeds together, when the queue URLs are known.
    Cloud(Option<QueueDepth>),
}

/// Approximate depth of the fetch and page queues (messages waiting or in flight).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Fetch jobs.
    pub fetch_jobs: u64,
    /// Page parts.
    pub page_parts: u64,
}

impl QueueDepth {
    /// Both queues together.
    pub fn total(&self) -> u64 {
        self.fetch_jobs + self.page_parts
    }
}

fn row(feed: &FeedConfig, state: &FeedState, queues: Queues) -> serde_json::Value {
    let next = if state.run_state != RunState::Running {
        None
    } else {
        Some(next_due(state, feed.interval()).unwrap_or_else(Utc::now))
    };
    let mut row = json!({
        "feed": feed.name,
        "kind": feed.kind().as_str(),
        "state": state.run_state.as_str(),
        "last_run": state.status.last_run.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
        "last_success": state.status.last_success.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
        "next_run": next.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
        "cursor": state.cursor.describe(),
        "objects_last_run": state.status.objects_last_run,
        "objects_total": state.status.objects_total,
        "pages_total": state.pages,
        "pages_queued": 0,
        "epoch": state.epoch,
        "last_error": state.status.last_error,
        "consecutive_failures": state.status.consecutive_failures,
        "dropped_stale": state.status.dropped_stale,
        "verify_tls": feed.http.verify_tls,
    });
    if let (Queues::Cloud(depth), Some(obj)) = (queues, row.as_object_mut()) {
        // SQS cannot say how many of a queue's messages belong to one feed: the per-feed
        // figure is unknown (null) and the queues' depth for all feeds is given beside it.
        obj.insert("pages_queued".into(), serde_json::Value::Null);
        obj.insert(
            "queued_all_feeds".into(),
            match depth {
                Some(d) => json!({ "fetch_jobs": d.fetch_jobs, "page_parts": d.page_parts }),
                None => serde_json::Value::Null,
            },
        );
    }
    row
}

/// `feedstix status`.
pub fn status(config: &Config, state: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let states = StateFile::read_only(state)?.all();
    status_view(&config.feeds, &states, Queues::Local, as_json)
}

/// The status table (or JSON rows) of `feeds` with their `states`.
pub fn status_view(
    feeds: &[FeedConfig],
    states: &States,
    queues: Queues,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let rows: Vec<serde_json::Value> = feeds
        .iter()
        .map(|f| row(f, &states.get(&f.name).cloned().unwrap_or_default(), queues))
        .collect();
    if as_json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<24} {:<6} {:<8} {:<20} {:<20} {:>9} {:>9} {:>4}  CURSOR / LAST ERROR",
        "FEED",
        "KIND",
        "STATE",
        "LAST RUN",
        "NEXT RUN",
        "LAST OBJ",
        "TOTAL OBJ",
        "FAIL",
    );
    for (feed, r) in feeds.iter().zip(&rows) {
        let s = states.get(&feed.name).cloned().unwrap_or_default();
        let mut tail = s.cursor.describe();
        if let Some(e) = &s.status.last_error {
            tail = format!("{tail}; error: {e}");
        }
        if !feed.http.verify_tls {
            tail = format!("{tail}; TLS verification OFF");
        }
        outln!(
            "{:<24} {:<6} {:<8} {:<20} {:<20} {:>9} {:>9} {:>4}  {}",
            feed.name,
            feed.kind().as_str(),
            r["state"].as_str().unwrap_or("-"),
            time(s.status.last_run),
            r["next_run"].as_str().unwrap_or("-"),
            s.status.objects_last_run,
            s.status.objects_total,
            s.status.consecutive_failures,
            tail
        );
    }
    match queues {
        Queues::Local => {}
        Queues::Cloud(Some(d)) => outln!(
            "pages queued (all feeds; SQS does not count per feed; approximate): {} fetch job(s), {} page part(s)",
            d.fetch_jobs,
            d.page_parts
        ),
        Queues::Cloud(None) => outln!(
            "pages queued: unknown (give --stack, or --fetch-queue-url and --page-queue-url)"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `feedstix feeds list`.
pub fn list(config: &Config, state: &Path) -> anyhow::Result<ExitCode> {
    let states = StateFile::read_only(state)?.all();
    list_view(&config.feeds, &states)
}

/// The feed list of `feeds` with their `states`.
pub fn list_view(feeds: &[FeedConfig], states: &States) -> anyhow::Result<ExitCode> {
    outln!(
        "{:<24} {:<6} {:<8} {:<9} URL",
        "FEED",
        "KIND",
        "STATE",
        "INTERVAL"
    );
    for feed in feeds {
        let s = states
            .get(&feed.name)
            .map(|s| s.run_state)
            .unwrap_or_default();
        outln!(
            "{:<24} {:<6} {:<8} {:<9} {}",
            feed.name,
            feed.kind().as_str(),
            s.as_str(),
            feedstix::duration::format_duration(feed.interval()),
            feed.url
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn find<'a>(config: &'a Config, name: &str) -> anyhow::Result<&'a FeedConfig> {
    config
        .feed(name)
        .with_context(|| format!("no feed named {name} in {}", config.path.display()))
}

/// `feedstix feeds show`.
pub fn show(config: &Config, state: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let feed = find(config, name)?;
    let s = StateFile::read_only(state)?
        .all()
        .get(name)
        .cloned()
        .unwrap_or_default();
    show_view(feed, &s, Queues::Local)
}

/// One feed's definition, status row and cursor as JSON.
pub fn show_view(feed: &FeedConfig, s: &FeedState, queues: Queues) -> anyhow::Result<ExitCode> {
    let mut definition = serde_json::to_value(feed)?;
    // The mapper is shown by its path; its JSON is long and `verify` shows what it makes.
    if let Some(obj) = definition.as_object_mut() {
        if obj.contains_key("mapper") {
            obj.insert("mapper".into(), json!("(inlined; see mapper_path)"));
        }
    }
    let out =
        json!({ "definition": definition, "status": row(feed, s, queues), "cursor": s.cursor });
    outln!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// `feedstix feeds start|stop`.
pub async fn set_running(
    config: &Config,
    state: &Path,
    name: &str,
    running: bool,
) -> anyhow::Result<ExitCode> {
    find(config, name)?;
    let store = StateFile::open(state)?;
    let run_state = if running {
        RunState::Running
    } else {
        RunState::Stopped
    };
    store
        .set_run_state(name, run_state)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    outln!("{name}: {}", if running { "running" } else { "stopped" });
    Ok(ExitCode::SUCCESS)
}

/// `feedstix feeds reset`.
pub async fn reset(config: &Config, state: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let feed = find(config, name)?;
    let store = StateFile::open(state)?;
    let next = store.reset(name).await.map_err(|e| anyhow::anyhow!(e))?;
    let from = feed
        .import_from
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| "the beginning of the source".into());
    // Locally nothing is queued between runs: the queues live inside the `run` process,
    // which cannot be running while this command holds the state file.
    outln!(
        "{name}: reset to epoch {}; the next run imports from {from}; 0 queued messages of older epochs (local queues do not outlive a run)",
        next.epoch
    );
    Ok(ExitCode::SUCCESS)
}
