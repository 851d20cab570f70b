//! The three steps of the pipeline, written against the ports only.
//!
//! - [`dispatcher`]: picks the feeds that are due, leases them, enqueues one fetch job each.
//! - [`fetcher`]: one job = one page of one feed: fetch, decode, hand the page on in parts,
//!   then commit the cursor, then enqueue the next page's job if the source has more.
//! - [`bundler`]: one page part in, size-bounded STIX bundles out.
//!
//! The order inside the fetcher is the delivery contract: a page reaches the page queue
//! before its cursor moves, so a crash in between re-fetches the page and never skips it.

pub mod bundler;
pub mod dispatcher;
pub mod fetcher;

use std::time::Duration;

/// How long a dispatched feed stays leased without a fetcher finishing it. Longer than one
/// fetcher invocation (15 minutes at most in Lambda), so a slow page is not fetched twice
/// in parallel; short enough that a crashed fetcher does not stall its feed for long.
pub const LEASE: Duration = Duration::from_secs(20 * 60);

#[cfg(test)]
mod tests;

#[cfg(test)]
mod faults;
