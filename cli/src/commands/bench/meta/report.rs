//! The meta bench's report: per phase the figures, the cluster's inode count and every
//! metadata replica's resident memory, as text or JSON.

use cairn_client::Client;
use serde::Serialize;

use super::super::PhaseReport;
use crate::commands::status::human_bytes;

/// One replica's resident memory at the end of a phase.
#[derive(Debug, Serialize)]
pub(super) struct ReplicaMemory {
    pub(super) id: u64,
    pub(super) addr: String,
    /// `None` when the replica could not be asked or does not know (not Linux).
    pub(super) resident_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
}

/// What the cluster looked like at the end of a phase.
#[derive(Debug, Serialize)]
pub(super) struct ClusterView {
    /// The namespace's inodes (`cairn status`); `None` if the status call failed.
    pub(super) inodes: Option<u64>,
    pub(super) replicas: Vec<ReplicaMemory>,
}

#[derive(Debug, Serialize)]
pub(super) struct MetaPhaseReport {
    #[serde(flatten)]
    pub(super) figures: PhaseReport,
    /// Directory entries read (list), files touched (the other phases).
    pub(super) items: u64,
    #[serde(flatten)]
    pub(super) cluster: ClusterView,
}

#[derive(Debug, Serialize)]
pub(super) struct FillReport {
    pub(super) files: u64,
    pub(super) batches: u64,
    pub(super) seconds: f64,
    pub(super) files_per_sec: f64,
    #[serde(flatten)]
    pub(super) cluster: ClusterView,
}

#[derive(Debug, Serialize)]
pub(super) struct MetaBenchReport {
    pub(super) workload: &'static str,
    pub(super) bucket: String,
    /// The run's directory, as a path in the bucket.
    pub(super) root: String,
    pub(super) dirs: usize,
    /// `--files`, when each phase makes one pass; else phases ran for `duration_secs`.
    pub(super) files: Option<u64>,
    pub(super) duration_secs: Option<u64>,
    pub(super) concurrency: usize,
    /// Directories this run made (its own, the `dirs`, the fill's, missing prefix ones).
    pub(super) directories_made: u64,
    pub(super) fill: Option<FillReport>,
    pub(super) phases: Vec<MetaPhaseReport>,
    /// Whether the files were kept (`--keep`): no delete phase, no clean-up.
    pub(super) kept: bool,
}

/// The inode count and every replica's resident memory now.
pub(super) async fn cluster_view(client: &Client) -> ClusterView {
    let status = match client.status().await {
        Ok(status) => status,
        Err(e) => {
            eprintln!("cairn bench: cluster status: {e}");
            return ClusterView {
                inodes: None,
                replicas: Vec::new(),
            };
        }
    };
    let replicas = client
        .replica_statuses(&status.replicas)
        .await
        .into_iter()
        .map(|r| match r.status {
            Ok(own) => ReplicaMemory {
                id: r.id,
                addr: r.addr,
                resident_bytes: (own.resident_bytes > 0).then_some(own.resident_bytes),
                error: None,
            },
            Err(e) => ReplicaMemory {
                id: r.id,
                addr: r.addr,
                resident_bytes: None,
                error: Some(e.to_string()),
            },
        })
        .collect();
    ClusterView {
        inodes: Some(status.inodes),
        replicas,
    }
}

fn memory(view: &ClusterView) -> String {
    let replicas: Vec<String> = view
        .replicas
        .iter()
        .map(|r| match r.resident_bytes {
            Some(b) => format!("{}: {}", r.id, human_bytes(b)),
            None => format!("{}: ?", r.id),
        })
        .collect();
    format!(
        "inodes {}  rss {}",
        view.inodes.map_or("?".to_string(), |n| n.to_string()),
        replicas.join(", ")
    )
}

pub(super) fn print_phase(r: &MetaPhaseReport) {
    let f = &r.figures;
    println!(
        "{:<7} {:>8} ops {:>9.1} ops/s  p50 {:>8.2} ms  p99 {:>8.2} ms  p99.9 {:>8.2} ms  errors {}  {}",
        f.phase, f.ops, f.ops_per_sec, f.p50_ms, f.p99_ms, f.p999_ms, f.errors, memory(&r.cluster)
    );
}

pub(super) fn print_fill(r: &FillReport) {
    println!(
        "fill    {:>8} files in {} batches, {:.1} s, {:.0} files/s  {}",
        r.files,
        r.batches,
        r.seconds,
        r.files_per_sec,
        memory(&r.cluster)
    );
}
