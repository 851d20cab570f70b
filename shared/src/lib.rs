//! feedstix: threat-intelligence feeds in, STIX 2.1 bundles out.
//!
//! The library owns everything the `feedstix` command and the three Lambda functions do;
//! their mains only read configuration, build clients and call in here.
//!
//! Map of the modules:
//!
//! - [`config`]: the TOML feed definitions, validated before anything runs.
//! - [`feed`]: the runtime view of one feed (settings resolved, mapper loaded).
//! - [`cursor`]: each kind's resume point, stored as data.
//! - [`kinds`]: one module per feed kind (RSS/Atom, CSV, TAXII), turning a source page
//!   into STIX objects and a new cursor.
//! - [`stix`]: deterministic ids, the objects feedstix creates, bundle composition.
//! - [`ports`]: the small traits the pipeline needs (queues, stores, sink, HTTP, clock).
//! - [`http`]: the HTTP source over reqwest, and `file://` for local runs.
//! - [`pipeline`]: dispatcher, fetcher and bundler, written against the ports only.
//! - [`local`]: the local adapters (in-process queues, state file, output directory) and
//!   the runner behind `feedstix run`.
//! - [`duration`]: interval parsing (`30m`, `1h`, `PT1H`).

#[cfg(feature = "aws")]
pub mod aws;
pub mod config;
pub mod cursor;
pub mod duration;
pub mod feed;
pub mod http;
pub mod kinds;
pub mod local;
pub mod pipeline;
pub mod ports;
pub mod stix;
