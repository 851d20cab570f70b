//! Local adapters and the runner behind `feedstix run`: a state file instead of DynamoDB,
//! in-process queues instead of SQS, an output directory instead of the worker queue.

mod queues;
mod runner;
mod sink;
mod state;

pub use queues::{DirectPageQueue, LocalJobQueue};
pub use runner::{verify, FeedSummary, LocalRunner, Progress, ProgressFn, RunOptions, Shutdown};
pub use sink::DirSink;
pub use state::{default_state_path, ConfigFeeds, StateFile, StateFileError};
