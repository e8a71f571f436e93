//! Scrub: re-read every shard on this node, in shard order, verifying each 64 KiB block
//! against the shard's hash table. A corrupt shard, or one the disk cannot read (EIO), is
//! quarantined by the store (kept aside, never deleted) and reported to the metadata
//! service, whose repair worker rebuilds it on another node. A shard that cannot be
//! checked for another reason is counted and left for the next pass: one bad file never
//! ends a pass. Runs on a schedule and on demand (`cairn scrub`), throttled so client IO
//! keeps priority; one pass at a time.
//!
//! A pass also asks the metadata service which of the verified shards' chunks it does not
//! know (neither committed nor being written) and counts them as orphans: shards of a
//! write whose client died before committing, or of writes made after the backup that a
//! restored metadata service was built from (lost writes, reported here rather than left
//! silently half-present). The scrub deletes none of them: the orphan sweep does, once
//! they have stayed unknown for its grace period.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_client::Client;
use cairn_common::NodeId;
use tokio_util::sync::CancellationToken;

use crate::io_engine::error_chain;
use crate::orphan_sweep::unknown_chunks;
use crate::store::{CorruptReason, ShardStore, StoreError};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrubReport {
    pub checked: u64,
    /// Shards found corrupt or unreadable: quarantined and reported lost.
    pub corrupt: u64,
    /// Of `corrupt`, those the disk could not read (EIO).
    pub unreadable: u64,
    /// Shards that could not be checked (an error other than corruption); the next pass
    /// tries them again.
    pub failed: u64,
    pub bytes: u64,
    /// Verified shards of chunks the metadata service does not know, and their bytes.
    pub orphans: u64,
    pub orphan_bytes: u64,
    /// The metadata service could not be asked about orphans this pass.
    pub orphans_unchecked: bool,
}

pub struct Scrubber {
    store: Arc<ShardStore>,
    /// Reports lost shards (as the node's gateway, like a reader).
    client: Client,
    /// Asks which chunks are unknown (as this node, like the orphan sweep).
    node_client: Client,
    node: NodeId,
    bytes_per_sec: u64,
    running: tokio::sync::Mutex<()>,
}

impl Scrubber {
    pub fn new(
        store: Arc<ShardStore>,
        client: Client,
        node_client: Client,
        node: NodeId,
        bytes_per_sec: u64,
    ) -> Self {
        Scrubber {
            store,
            client,
            node_client,
            node,
            bytes_per_sec: bytes_per_sec.max(1),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// One full pass over the node's shards. Fails only when the shards cannot be listed.
    pub async fn pass(&self) -> Result<ScrubReport, StoreError> {
        let _one_at_a_time = self.running.lock().await;
        let started = Instant::now();
        let mut keys = self
            .store
            .shards_older_than(Duration::ZERO, usize::MAX)
            .await?;
        keys.sort_unstable();
        let mut report = ScrubReport::default();
        let mut verified = Vec::with_capacity(keys.len());
        for key in keys {
            match self.store.get(key, 0, 0).await {
                Ok(read) => {
                    report.bytes += read.data.len() as u64;
                    verified.push((key, read.data.len() as u64));
                }
                Err(StoreError::Corrupt { id, reason } | StoreError::Unopenable { id, reason }) => {
                    report.corrupt += 1;
                    if matches!(reason, CorruptReason::Unreadable { .. }) {
                        report.unreadable += 1;
                    }
                    metrics::counter!("cairn_node_scrub_corrupt_shards_total").increment(1);
                    tracing::warn!(shard = %id, %reason, "scrub found a corrupt shard");
                    self.client
                        .report_lost(id.chunk, &[(id.index, self.node)])
                        .await;
                }
                // Deleted meanwhile (garbage collection): nothing to verify.
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => {
                    report.failed += 1;
                    metrics::counter!("cairn_node_scrub_failed_shards_total").increment(1);
                    tracing::warn!(shard = %key, error = %error_chain(&e), "scrub could not check a shard");
                    continue;
                }
            }
            report.checked += 1;
            metrics::counter!("cairn_node_scrub_checked_shards_total").increment(1);
            let due = Duration::from_secs_f64(report.bytes as f64 / self.bytes_per_sec as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        match unknown_chunks(&self.node_client, verified.iter().map(|(k, _)| k.chunk)).await {
            Ok(unknown) => {
                for (key, len) in &verified {
                    if unknown.contains(&key.chunk) {
                        report.orphans += 1;
                        report.orphan_bytes += len;
                    }
                }
            }
            Err(e) => {
                report.orphans_unchecked = true;
                tracing::warn!(error = %e, "scrub could not ask the metadata service about orphans");
            }
        }
        if report.orphans > 0 {
            tracing::warn!(
                shards = report.orphans,
                bytes = report.orphan_bytes,
                "scrub found shards of chunks the metadata service does not know: writes \
                 never committed, or made after the backup a restored metadata service \
                 was built from; the orphan sweep deletes them after its grace period"
            );
        }
        tracing::info!(
            checked = report.checked,
            corrupt = report.corrupt,
            unreadable = report.unreadable,
            failed = report.failed,
            bytes = report.bytes,
            orphans = report.orphans,
            "scrub pass finished"
        );
        Ok(report)
    }
}

/// Scrubs every `interval` until shutdown.
pub async fn run(scrubber: Arc<Scrubber>, interval: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if let Err(e) = scrubber.pass().await {
            tracing::warn!(error = %e, "scrub pass failed");
        }
    }
}
