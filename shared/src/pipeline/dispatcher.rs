//! The dispatcher: which feeds are due, and one fetch job for each.

use chrono::{DateTime, Utc};

use crate::cursor::{FeedState, RunState};
use crate::ports::{FeedStore, FetchJob, JobQueue, PortError, StateStore};

/// What one dispatch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dispatched {
    /// Feeds a job was enqueued for.
    pub enqueued: Vec<String>,
    /// Feeds not due yet.
    pub not_due: Vec<String>,
    /// Feeds stopped by an operator or paused after failures.
    pub stopped: Vec<String>,
    /// Feeds whose lease is held (a page is in flight).
    pub in_flight: Vec<String>,
}

/// When a feed is next due: its interval after its last run, or now if it never ran.
pub fn next_due(state: &FeedState, interval: std::time::Duration) -> Option<DateTime<Utc>> {
    let last = state.status.last_run?;
    // Checked: a stored definition may carry any interval; saturate instead of panicking.
    let step = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX);
    Some(
        last.checked_add_signed(step)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    )
}

/// Enqueues a fetch job for every running feed that is due at `now` (every running feed
/// when `force` is set, as `run --once` wants) and whose lease can be taken.
///
/// # Errors
/// A store or queue failure stops the dispatch; feeds already enqueued stay enqueued and
/// hold their lease, so a retried dispatch does not enqueue them twice.
pub async fn dispatch(
    feeds: &dyn FeedStore,
    states: &dyn StateStore,
    jobs: &dyn JobQueue,
    now: DateTime<Utc>,
    force: bool,
) -> Result<Dispatched, PortError> {
    let mut report = Dispatched::default();
    for feed in feeds.list().await? {
        let state = states.load(&feed.name).await?.unwrap_or_default();
        if state.run_state != RunState::Running {
            report.stopped.push(feed.name);
            continue;
        }
        let due = force || next_due(&state, feed.interval()).is_none_or(|at| at <= now);
        if !due {
            report.not_due.push(feed.name);
            continue;
        }
        let until =
            now + chrono::Duration::from_std(super::LEASE).unwrap_or(chrono::Duration::minutes(20));
        if !states.try_lease(&feed.name, now, until).await? {
            tracing::debug!(feed = %feed.name, "feed still in flight; not dispatched");
            report.in_flight.push(feed.name);
            continue;
        }
        jobs.send(FetchJob {
            feed: feed.name.clone(),
            epoch: state.epoch,
            page: state.pages,
            first: true,
        })
        .await?;
        tracing::debug!(feed = %feed.name, page = state.pages, "fetch job enqueued");
        report.enqueued.push(feed.name);
    }
    Ok(report)
}
