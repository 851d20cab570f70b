//! The functions' configuration: environment variables read once at cold start into typed
//! structs. A missing or malformed variable fails the cold start with its name, so a
//! template mistake shows in the first invocation's log instead of as odd behaviour later.
//!
//! The variable names are those the SAM template (`infra/template.yaml`) sets.

use crate::config::{DEFAULT_MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES_LIMIT};

use super::events::DEFAULT_BUS;
use super::sqs::Envelope;

/// Feeds table name.
pub const FEEDS_TABLE: &str = "FEEDS_TABLE";
/// State table name.
pub const STATE_TABLE: &str = "STATE_TABLE";
/// Fetch queue URL.
pub const FETCH_QUEUE_URL: &str = "FETCH_QUEUE_URL";
/// Page queue URL.
pub const PAGE_QUEUE_URL: &str = "PAGE_QUEUE_URL";
/// Worker queue URL.
pub const WORKER_QUEUE_URL: &str = "WORKER_QUEUE_URL";
/// Claim-check bucket name.
pub const CLAIM_BUCKET: &str = "CLAIM_BUCKET";
/// Message size limit of the queues, in bytes (optional; 256 KiB).
pub const MAX_MESSAGE_BYTES: &str = "MAX_MESSAGE_BYTES";
/// `none` or `opencti` (optional; `none`).
pub const WORKER_ENVELOPE: &str = "WORKER_ENVELOPE";
/// Event bus for status events (optional; `default`).
pub const EVENT_BUS_NAME: &str = "EVENT_BUS_NAME";

/// Why the configuration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A required variable is not set.
    #[error("environment variable {name} is not set; the function's template must set it")]
    Missing {
        /// The variable.
        name: &'static str,
    },
    /// A variable has a value that cannot be used.
    #[error("environment variable {name}={value:?} is not valid: expected {expected}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is expected.
        expected: String,
    },
}

/// Reads variables through a lookup, so tests need not change the process environment.
struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Reader<'_> {
    fn required(&self, name: &'static str) -> Result<String, SettingsError> {
        (self.lookup)(name)
            .filter(|v| !v.trim().is_empty())
            .ok_or(SettingsError::Missing { name })
    }

    fn optional(&self, name: &'static str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    fn message_bytes(&self) -> Result<usize, SettingsError> {
        let Some(value) = self.optional(MAX_MESSAGE_BYTES) else {
            return Ok(DEFAULT_MAX_MESSAGE_BYTES);
        };
        match value.trim().parse::<usize>() {
            Ok(n) if (1024..=MAX_MESSAGE_BYTES_LIMIT).contains(&n) => Ok(n),
            _ => Err(SettingsError::Invalid {
                name: MAX_MESSAGE_BYTES,
                value,
                expected: format!("a number of bytes from 1024 to {MAX_MESSAGE_BYTES_LIMIT}"),
            }),
        }
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The dispatcher's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatcherSettings {
    /// Feeds table.
    pub feeds_table: String,
    /// State table.
    pub state_table: String,
    /// Fetch queue.
    pub fetch_queue_url: String,
    /// Claim-check bucket (jobs are small, but the queue adapter needs one).
    pub claim_bucket: String,
}

impl DispatcherSettings {
    /// From the process environment.
    ///
    /// # Errors
    /// A variable is missing or invalid.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(&process_env)
    }

    /// From any lookup.
    ///
    /// # Errors
    /// A variable is missing or invalid.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let env = Reader { lookup };
        Ok(DispatcherSettings {
            feeds_table: env.required(FEEDS_TABLE)?,
            state_table: env.required(STATE_TABLE)?,
            fetch_queue_url: env.required(FETCH_QUEUE_URL)?,
            claim_bucket: env.required(CLAIM_BUCKET)?,
        })
    }
}

/// The fetcher's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetcherSettings {
    /// Feeds table.
    pub feeds_table: String,
    /// State table.
    pub state_table: String,
    /// Fetch queue, for the next page's job.
    pub fetch_queue_url: String,
    /// Page queue.
    pub page_queue_url: String,
    /// Claim-check bucket.
    pub claim_bucket: String,
    /// Message size limit.
    pub max_message_bytes: usize,
    /// Event bus for status events.
    pub event_bus_name: String,
}

impl FetcherSettings {
    /// From the process environment.
    ///
    /// # Errors
    /// A variable is missing or invalid.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(&process_env)
    }

    /// From any lookup.
    ///
    /// # Errors
    /// A variable is missing or invalid.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let env = Reader { lookup };
        Ok(FetcherSettings {
            feeds_table: env.required(FEEDS_TABLE)?,
            state_table: env.required(STATE_TABLE)?,
            fetch_queue_url: env.required(FETCH_QUEUE_URL)?,
            page_queue_url: env.required(PAGE_QUEUE_URL)?,
            claim_bucket: env.required(CLAIM_BUCKET)?,
            max_message_bytes: env.message_bytes()?,
            event_bus_name: env
                .optional(EVENT_BUS_NAME)
                .unwrap_or_else(|| DEFAULT_BUS.into()),
        })
    }
}

/// The bundler's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundlerSettings {
    /// State table (for the epoch check and the stale counter).
    pub state_table: String,
    /// Worker queue.
    pub worker_queue_url: String,
    /// Claim-check bucket.
    pub claim_bucket: String,
    /// Message size limit of the worker queue.
    pub max_message_bytes: usize,
    /// How bundles are laid out in messages.
    pub envelope: Envelope,
}

impl BundlerSettings {
    /// From the process environment.
    ///
    /// # Errors
    /// A variable is missing or invalid.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(&process_env)
    }

    /// From any lookup.
    ///
    /// # Errors
    /// A variable is missing or invalid.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let env = Reader { lookup };
        let envelope = match env.optional(WORKER_ENVELOPE) {
            None => Envelope::None,
            Some(value) => Envelope::parse(&value).ok_or_else(|| SettingsError::Invalid {
                name: WORKER_ENVELOPE,
                value,
                expected: "none or opencti".into(),
            })?,
        };
        Ok(BundlerSettings {
            state_table: env.required(STATE_TABLE)?,
            worker_queue_url: env.required(WORKER_QUEUE_URL)?,
            claim_bucket: env.required(CLAIM_BUCKET)?,
            max_message_bytes: env.message_bytes()?,
            envelope,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn a_missing_variable_is_named() {
        let env = lookup(&[(FEEDS_TABLE, "f"), (STATE_TABLE, "s")]);
        assert_eq!(
            DispatcherSettings::from_lookup(&env),
            Err(SettingsError::Missing {
                name: FETCH_QUEUE_URL
            })
        );
    }

    #[test]
    fn optional_variables_take_their_defaults_and_bad_values_are_refused() {
        let env = lookup(&[
            (STATE_TABLE, "s"),
            (WORKER_QUEUE_URL, "http://q"),
            (CLAIM_BUCKET, "b"),
        ]);
        let settings = BundlerSettings::from_lookup(&env).expect("complete settings");
        assert_eq!(settings.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
        assert_eq!(settings.envelope, Envelope::None);

        let env = lookup(&[
            (STATE_TABLE, "s"),
            (WORKER_QUEUE_URL, "http://q"),
            (CLAIM_BUCKET, "b"),
            (MAX_MESSAGE_BYTES, "2000000"),
        ]);
        assert!(matches!(
            BundlerSettings::from_lookup(&env),
            Err(SettingsError::Invalid {
                name: MAX_MESSAGE_BYTES,
                ..
            })
        ));
    }
}
