//! The orphan sweep: shards that no object references and no write in progress holds
//! (left by a client that died between writing shards and committing, or by a refused
//! commit) are deleted. Only shards older than the grace period are considered, and the
//! metadata leader answers which of them are unknown, so a shard of a live write or of a
//! committed object is never touched. The same loop deletes quarantined shards once their
//! retention has passed (they were reported and rebuilt long before).

use std::sync::Arc;
use std::time::Duration;

use cairn_client::Client;
use tokio_util::sync::CancellationToken;

use crate::store::{ShardKey, ShardStore};

/// Shards examined per metadata round trip.
const BATCH: usize = 2000;

#[derive(Clone, Copy, Debug)]
pub struct SweepConfig {
    /// Shards younger than this are never swept.
    pub grace: Duration,
    /// Time between sweeps.
    pub interval: Duration,
    /// Quarantined shards older than this are deleted.
    pub quarantine_retention: Duration,
}

pub async fn run(
    store: Arc<ShardStore>,
    client: Client,
    config: SweepConfig,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.interval) => {}
        }
        match sweep_once(&store, &client, config.grace).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(shards = n, "deleted orphan shards"),
            Err(e) => tracing::debug!(error = %e, "orphan sweep skipped"),
        }
        match store.purge_quarantine(config.quarantine_retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(files = n, "deleted expired quarantined shards"),
            Err(e) => tracing::warn!(error = %e, "purging the quarantine failed"),
        }
    }
}

/// One pass; returns how many shards were deleted.
pub async fn sweep_once(
    store: &ShardStore,
    client: &Client,
    grace: Duration,
) -> anyhow::Result<usize> {
    // Every old shard, asked about in batches (a fixed first batch would look at the same
    // live shards forever and never reach the orphans behind them).
    let old = store.shards_older_than(grace, usize::MAX).await?;
    let mut deleted = 0;
    for batch in old.chunks(BATCH) {
        let mut chunks: Vec<_> = batch.iter().map(|k| k.chunk).collect();
        chunks.sort();
        chunks.dedup();
        let unknown: std::collections::HashSet<_> = client
            .filter_unknown_chunks(&chunks)
            .await?
            .into_iter()
            .collect();
        for key in batch
            .iter()
            .filter(|k: &&ShardKey| unknown.contains(&k.chunk))
        {
            if store.delete(*key).await? {
                tracing::debug!(shard = %key, "deleted orphan shard");
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}
