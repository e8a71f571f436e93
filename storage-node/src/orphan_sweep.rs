//! The orphan sweep: shards that no object references and no write in progress holds
//! (left by a client that died between writing shards and committing, or by a refused
//! commit) are deleted. Only shards whose files are older than the grace period are
//! considered, and the metadata leader answers which of them are unknown, so a shard of a
//! live write or of a committed object is never touched. The same loop deletes
//! quarantined shards once their retention has passed (they were reported and rebuilt long
//! before).
//!
//! File ages come from the wall clock, which can jump (an NTP step, a wrong clock fixed):
//! a jump forward makes a shard written a second ago look hours old, and right after a
//! leader change nothing else protects a write in progress. So a shard found unknown is
//! only a suspect; it is deleted once it has stayed unknown for a whole grace period by
//! this process's monotonic clock ([`Suspects`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_client::error::ClientError;
use cairn_client::Client;
use cairn_common::ChunkId;
use tokio_util::sync::CancellationToken;

use crate::store::{ShardKey, ShardStore};

/// Chunks asked about per metadata round trip.
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
    let mut suspects = Suspects::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.interval) => {}
        }
        match sweep_once(&store, &client, config.grace, &mut suspects).await {
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

/// Shards found unknown to the metadata service, with the monotonic time each was first
/// found so.
#[derive(Debug, Default)]
pub struct Suspects {
    first_seen: HashMap<ShardKey, Instant>,
}

impl Suspects {
    /// Records the shards found unknown in a pass at `now` (forgetting suspects that are
    /// no longer unknown) and returns those unknown for at least `grace`.
    pub fn confirm(
        &mut self,
        unknown: &[ShardKey],
        now: Instant,
        grace: Duration,
    ) -> Vec<ShardKey> {
        let mut next = HashMap::with_capacity(unknown.len());
        for key in unknown {
            let since = self.first_seen.get(key).copied().unwrap_or(now);
            next.insert(*key, since);
        }
        self.first_seen = next;
        let mut confirmed: Vec<ShardKey> = self
            .first_seen
            .iter()
            .filter(|(_, since)| now.saturating_duration_since(**since) >= grace)
            .map(|(key, _)| *key)
            .collect();
        confirmed.sort();
        confirmed
    }
}

/// Which of `chunks` the metadata service does not know (neither committed nor being
/// written), asked in batches of [`BATCH`] distinct chunks. The sweep and the scrub's
/// orphan count both ask through this.
pub async fn unknown_chunks(
    client: &Client,
    chunks: impl IntoIterator<Item = ChunkId>,
) -> Result<HashSet<ChunkId>, ClientError> {
    let mut chunks: Vec<ChunkId> = chunks.into_iter().collect();
    chunks.sort();
    chunks.dedup();
    let mut unknown = HashSet::new();
    for batch in chunks.chunks(BATCH) {
        unknown.extend(client.filter_unknown_chunks(batch).await?);
    }
    Ok(unknown)
}

/// One pass; returns how many shards were deleted.
pub async fn sweep_once(
    store: &ShardStore,
    client: &Client,
    grace: Duration,
    suspects: &mut Suspects,
) -> anyhow::Result<usize> {
    // Every old shard (a fixed first batch would look at the same live shards forever
    // and never reach the orphans behind them).
    let old = store.shards_older_than(grace, usize::MAX).await?;
    let unknown = unknown_chunks(client, old.iter().map(|k| k.chunk)).await?;
    let unknown_now: Vec<ShardKey> = old
        .into_iter()
        .filter(|k| unknown.contains(&k.chunk))
        .collect();
    let mut deleted = 0;
    for key in suspects.confirm(&unknown_now, Instant::now(), grace) {
        if store.delete(key).await? {
            tracing::debug!(shard = %key, "deleted orphan shard");
            deleted += 1;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_common::ChunkId;

    fn shard(n: u8) -> ShardKey {
        ShardKey {
            chunk: ChunkId::from_slice(&[n; 16]).unwrap(),
            index: 0,
        }
    }

    const GRACE: Duration = Duration::from_secs(3600);

    #[test]
    fn a_shard_is_deleted_only_after_a_monotonic_grace_period_of_being_unknown() {
        let mut s = Suspects::default();
        let t0 = Instant::now();
        // The wall clock jumped: fresh shards look an hour old and are unknown right after
        // a leader change. Found once: not deleted.
        assert!(s.confirm(&[shard(1), shard(2)], t0, GRACE).is_empty());
        // Their write commits (shard 1 becomes known); later passes within the grace
        // period delete nothing either.
        assert!(s.confirm(&[shard(2)], t0 + GRACE / 2, GRACE).is_empty());
        // A whole grace period of being unknown: shard 2 is an orphan; shard 1 was
        // forgotten and is never deleted.
        assert_eq!(s.confirm(&[shard(2)], t0 + GRACE, GRACE), vec![shard(2)]);
        assert!(!s.first_seen.contains_key(&shard(1)));
    }

    #[test]
    fn a_suspect_that_was_known_in_between_starts_over() {
        let mut s = Suspects::default();
        let t0 = Instant::now();
        s.confirm(&[shard(3)], t0, GRACE);
        s.confirm(&[], t0 + GRACE / 2, GRACE);
        assert!(s.confirm(&[shard(3)], t0 + GRACE, GRACE).is_empty());
        assert_eq!(
            s.confirm(&[shard(3)], t0 + 2 * GRACE, GRACE),
            vec![shard(3)]
        );
    }
}
