//! The runtime view of one feed: its checked definition plus what is derived from it once
//! (the provenance applied to created objects, the parsed CSV mapper).

use std::sync::Arc;

use crate::config::{FeedConfig, KindConfig};
use crate::kinds::csv::Mapper;
use crate::stix::Provenance;

/// A feed ready to fetch.
pub struct Feed {
    /// The definition.
    pub config: FeedConfig,
    /// Author and markings for the objects feedstix creates.
    pub provenance: Provenance,
    /// The CSV mapper, for csv feeds.
    pub mapper: Option<Arc<Mapper>>,
}

impl Feed {
    /// Derives the runtime view. Fails only if a stored mapper no longer parses, which a
    /// checked configuration rules out.
    pub fn new(config: FeedConfig) -> Result<Feed, String> {
        let provenance = Provenance {
            author: config.author.clone(),
            markings: config.markings.clone(),
        };
        let mapper = match &config.kind {
            KindConfig::Csv { mapper, .. } => Some(Arc::new(
                Mapper::from_json(mapper)
                    .map_err(|e| format!("feed {}: mapper: {e}", config.name))?,
            )),
            _ => None,
        };
        Ok(Feed {
            config,
            provenance,
            mapper,
        })
    }

    /// The feed's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }
}
