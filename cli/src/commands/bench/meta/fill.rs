//! What the meta bench makes besides the measured files: the bulk fill (`--fill`) and the
//! clean-up of everything the run made.

use std::time::Instant;

use anyhow::bail;
use cairn_client::Client;
use cairn_common::fs::{bulk_name, FsErrorKind, Ino, MAX_BULK_FILES};
use futures::StreamExt;

use super::report::{cluster_view, FillReport};
use super::{BenchArgs, FsSession, Tree, FILL_FILES_PER_DIR, FILL_IN_FLIGHT, FILL_PREFIX};

/// What the run made besides the measured files, for the clean-up.
#[derive(Default)]
pub(super) struct Made {
    /// Prefix directories this run made, outermost first: (parent, name).
    pub(super) prefix: Vec<(Ino, String)>,
    /// The run's directory: (parent, name, ino).
    pub(super) root: Option<(Ino, String, Ino)>,
    /// The `d{i}` directories made, in order.
    pub(super) dirs: Vec<Ino>,
    /// The `fill-K` directories made, in order.
    pub(super) fill_dirs: Vec<Ino>,
    /// Bulk batches applied: (directory, first, count).
    pub(super) fill_batches: Vec<(Ino, u64, u32)>,
}

impl Made {
    pub(super) fn directories(&self) -> u64 {
        (self.prefix.len()
            + usize::from(self.root.is_some())
            + self.dirs.len()
            + self.fill_dirs.len()) as u64
    }
}

/// Adds `--fill` empty files in bulk batches under `fill-K` directories of `root`.
pub(super) async fn fill(
    client: &Client,
    args: &BenchArgs,
    session: &FsSession,
    root: Ino,
    made: &mut Made,
) -> anyhow::Result<FillReport> {
    let total = args.fill;
    for k in 0..total.div_ceil(FILL_FILES_PER_DIR) {
        made.fill_dirs
            .push(session.mkdir(root, &format!("fill-{k}")).await?);
    }
    let batch = u64::from(MAX_BULK_FILES);
    let batches: Vec<(Ino, u64, u32)> = (0..total.div_ceil(batch))
        .map(|b| {
            let first = b * batch;
            let count = (total - first).min(batch) as u32;
            (
                made.fill_dirs[(first / FILL_FILES_PER_DIR) as usize],
                first,
                count,
            )
        })
        .collect();
    let bar = crate::commands::progress::count_bar(total, "files");
    let start = Instant::now();
    let mut applied = futures::stream::iter(batches.iter().copied())
        .map(|(dir, first, count)| async move {
            let result = session.create_many(dir, FILL_PREFIX, first, count).await;
            ((dir, first, count), result)
        })
        .buffer_unordered(FILL_IN_FLIGHT);
    let mut failed = None;
    while let Some((done, result)) = applied.next().await {
        match result {
            Ok(()) => {
                made.fill_batches.push(done);
                bar.inc(u64::from(done.2));
            }
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    bar.finish_and_clear();
    if let Some(e) = failed {
        return Err(anyhow::Error::new(e).context(format!(
            "fill: {} of {} files made",
            made.fill_batches
                .iter()
                .map(|b| u64::from(b.2))
                .sum::<u64>(),
            total
        )));
    }
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    Ok(FillReport {
        files: total,
        batches: batches.len() as u64,
        seconds,
        files_per_sec: total as f64 / seconds,
        cluster: cluster_view(client).await,
    })
}

/// Removes what the run made (the files the delete phase left, the fill, the
/// directories); fails naming what is left.
pub(super) async fn clean_up(session: &FsSession, made: &Made, tree: &Tree) -> anyhow::Result<()> {
    let mut left = Vec::new();
    for p in (0..tree.created.len()).filter(|p| !tree.deleted[*p]) {
        let (dir, name) = tree.location(p);
        if let Err(e) = session.unlink(dir, &name, false).await {
            left.push(format!("{name}: {e}"));
        }
    }
    let removals = futures::stream::iter(made.fill_batches.iter().copied())
        .map(|(dir, first, count)| async move {
            session
                .remove_many(dir, FILL_PREFIX, first, count)
                .await
                .map_err(|e| format!("{}..: {e}", bulk_name(FILL_PREFIX, first)))
        })
        .buffer_unordered(FILL_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    left.extend(removals.into_iter().filter_map(Result::err));
    if let Some((_, _, root)) = &made.root {
        for (d, _) in made.dirs.iter().enumerate() {
            if let Err(e) = session.unlink(*root, &format!("d{d}"), true).await {
                left.push(format!("d{d}: {e}"));
            }
        }
        for (k, _) in made.fill_dirs.iter().enumerate() {
            if let Err(e) = session.unlink(*root, &format!("fill-{k}"), true).await {
                left.push(format!("fill-{k}: {e}"));
            }
        }
    }
    if let Some((parent, name, _)) = &made.root {
        if let Err(e) = session.unlink(*parent, name, true).await {
            left.push(format!("{name}: {e}"));
        }
    }
    // Prefix directories this run made, innermost first; another run may be using one.
    for (parent, name) in made.prefix.iter().rev() {
        match session.unlink(*parent, name, true).await {
            Err(e) if e.kind() == Some(FsErrorKind::NotEmpty) => break,
            Err(e) => left.push(format!("{name}: {e}")),
            Ok(()) => {}
        }
    }
    if !left.is_empty() {
        bail!(
            "clean-up left {} entries behind, first: {}",
            left.len(),
            left[0]
        );
    }
    Ok(())
}
