//! The bundler: page parts in, size-bounded STIX bundles out.

use crate::ports::{BundleMeta, BundleSink, PagePart, PortError, StateStore};
use crate::stix::bundle::compose;

/// What one part came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bundled {
    /// Bundles emitted, and the objects in them (support objects included).
    Emitted {
        /// Bundles.
        bundles: u32,
        /// Objects.
        objects: u64,
        /// Bytes.
        bytes: u64,
    },
    /// The part belongs to an epoch before the feed's last reset.
    DroppedStale,
}

/// Bundles one page part and emits the bundles in order.
///
/// # Errors
/// A sink or store failure; the caller retries the whole part, and deterministic bundle
/// ids make a retried emission identical to the first.
pub async fn handle(
    part: PagePart,
    states: &dyn StateStore,
    sink: &dyn BundleSink,
    max_bundle_bytes: usize,
) -> Result<Bundled, PortError> {
    let epoch = states.load(&part.feed).await?.map(|s| s.epoch).unwrap_or(0);
    if part.epoch < epoch {
        tracing::info!(feed = %part.feed, page = part.page, part = part.part, "dropped a part of an older epoch");
        states.count_dropped(&part.feed, 1).await?;
        return Ok(Bundled::DroppedStale);
    }
    let seed = format!("{}/{}/{}/{}", part.feed, part.epoch, part.page, part.part);
    let composed = compose(part.objects, &part.support, max_bundle_bytes, &seed);
    let (mut objects, mut bytes) = (0u64, 0u64);
    let count = composed.len() as u32;
    for (index, bundle) in composed.into_iter().enumerate() {
        let meta = BundleMeta {
            feed: part.feed.clone(),
            kind: part.kind,
            epoch: part.epoch,
            page: part.page,
            part: part.part,
            index: index as u32,
            user: part.user.clone(),
        };
        objects += bundle.objects as u64;
        bytes += bundle.json.len() as u64;
        sink.emit(&meta, bundle.json).await?;
    }
    Ok(Bundled::Emitted {
        bundles: count,
        objects,
        bytes,
    })
}
