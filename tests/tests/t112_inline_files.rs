//! Inline file bytes (issue #18): a small file written through one mount lives in the
//! metadata (no chunk), grows past the inline threshold (its new bytes go to chunks),
//! is overwritten across the boundary, shrinks back and grows again, and reads
//! byte-identical at every step through a second mount and through the object API;
//! the metadata leader is killed in the middle. Then `cairn inline set` leaves no budget,
//! and lowers the threshold while the file is open: the writes refused inline go to
//! chunks, and everything still reads back.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_common::Redundancy;
use cairn_tests::{assert_same_bytes, random_bytes, TestCluster};

struct Mounts {
    tc: TestCluster,
    writer: PathBuf,
    reader: PathBuf,
}

async fn cluster_with_two_mounts() -> Mounts {
    let mut tc = TestCluster::start(3, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    let mut roots = Vec::new();
    for name in ["mnt-writer", "mnt-reader"] {
        let mountpoint = tc.dir().join(name);
        tc.cluster
            .add_mount(&mountpoint, &[])
            .await
            .expect("mount the cluster");
        roots.push(mountpoint.canonicalize().unwrap().join("default"));
    }
    let reader = roots.pop().unwrap();
    let writer = roots.pop().unwrap();
    Mounts { tc, writer, reader }
}

/// Writes `data` at `offset` of `path` (no truncation) and closes it.
fn write_at(path: &Path, offset: u64, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {path:?}: {e}"));
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(data).unwrap();
    drop(f);
}

fn truncate(path: &Path, size: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(size)
        .unwrap();
}

/// The model of the file: `data` at `offset`, zeros in any gap.
fn model_write(model: &mut Vec<u8>, offset: usize, data: &[u8]) {
    if model.len() < offset + data.len() {
        model.resize(offset + data.len(), 0);
    }
    model[offset..offset + data.len()].copy_from_slice(data);
}

impl Mounts {
    /// The file reads as `model` through the other mount and the object API.
    async fn check(&self, step: &str, model: &[u8]) {
        let through_mount = std::fs::read(self.reader.join("f"))
            .unwrap_or_else(|e| panic!("{step}: read through the second mount: {e}"));
        assert_same_bytes(
            &format!("{step}, through the second mount"),
            &through_mount,
            model,
        );
        self.tc.must_get_equal("default", "f", model).await;
    }

    fn set_inline_limits(&self, max_bytes: u64, budget_bytes: u64) {
        let out = self.tc.cli(&[
            "inline",
            "set",
            "--max-bytes",
            &max_bytes.to_string(),
            "--budget-bytes",
            &budget_bytes.to_string(),
        ]);
        assert!(
            out.status.success(),
            "cairn inline set: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The cluster's inline bytes and chunks now.
    async fn inline_and_chunks(&self) -> (u64, u64) {
        let s = self
            .tc
            .client
            .clone()
            .with_meta_retry(Duration::from_secs(30))
            .status()
            .await
            .expect("cluster status");
        (s.inline_bytes, s.chunks)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_file_grows_past_the_threshold_and_shrinks_back_across_a_leader_kill() {
    let mut m = cluster_with_two_mounts().await;
    let path = m.writer.join("f");
    let mut model = Vec::new();

    // A small file: inline, no chunk.
    let (_, chunks_before) = m.inline_and_chunks().await;
    let head = random_bytes(3000, 1);
    write_at(&path, 0, &head);
    model_write(&mut model, 0, &head);
    m.check("small file", &model).await;
    assert_eq!(
        m.inline_and_chunks().await,
        (3000, chunks_before),
        "a small file is stored inline, in no chunk"
    );

    // Grows within the threshold: still inline.
    let more = random_bytes(40_000, 2);
    write_at(&path, 3000, &more);
    model_write(&mut model, 3000, &more);
    m.check("grown within the threshold", &model).await;
    assert_eq!(m.inline_and_chunks().await, (43_000, chunks_before));

    // Grows past the threshold (64 KiB by default): the new bytes go to chunks.
    let tail = random_bytes(200_000, 3);
    write_at(&path, 43_000, &tail);
    model_write(&mut model, 43_000, &tail);
    m.check("grown past the threshold", &model).await;
    let (inline, chunks) = m.inline_and_chunks().await;
    assert_eq!(inline, 43_000, "the head stays inline");
    assert!(chunks > chunks_before, "the tail is in a chunk");

    // The leader dies; everything reads back through the new one.
    let old = m.tc.leader().await;
    m.tc.cluster.kill(&format!("meta-{old}"));
    m.tc.wait_status("a new leader", Duration::from_secs(30), |s| {
        s.leader_id != 0 && s.leader_id != old
    })
    .await;
    m.check("after the leader was killed", &model).await;

    // An inline overwrite across the end of the inline bytes, into the chunk's bytes.
    let patch = random_bytes(10_000, 4);
    write_at(&path, 40_000, &patch);
    model_write(&mut model, 40_000, &patch);
    m.check("overwritten across the inline boundary", &model)
        .await;
    assert_eq!(m.inline_and_chunks().await.0, 50_000);

    // Shrinks back below the threshold, then grows inline again over the hole.
    truncate(&path, 10_000);
    model.truncate(10_000);
    m.check("shrunk back", &model).await;
    assert_eq!(m.inline_and_chunks().await.0, 10_000);
    truncate(&path, 20_000);
    model.resize(20_000, 0);
    m.check("grown by truncation: a hole", &model).await;
    let again = random_bytes(5_000, 5);
    write_at(&path, 30_000, &again);
    model_write(&mut model, 30_000, &again);
    m.check("grown inline again", &model).await;
    assert_eq!(m.inline_and_chunks().await.0, 35_000);

    // The budget used up: a write that would grow the inline bytes is refused inline
    // and goes to a chunk instead.
    m.set_inline_limits(64 << 10, 1);
    let (_, chunks_before) = m.inline_and_chunks().await;
    let past_budget = random_bytes(1_000, 6);
    write_at(&path, 40_000, &past_budget);
    model_write(&mut model, 40_000, &past_budget);
    m.check("a write past the budget", &model).await;
    let (inline, chunks) = m.inline_and_chunks().await;
    assert_eq!(inline, 35_000, "no inline byte more");
    assert!(chunks > chunks_before, "the refused bytes went to a chunk");

    // The threshold lowered while the file is open here (the mount still knows the one
    // of its open): the write is refused inline and goes to a chunk, over the inline
    // bytes.
    let mut open = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    m.set_inline_limits(0, 1 << 30);
    let (_, chunks_before) = m.inline_and_chunks().await;
    let chunked = random_bytes(1_000, 7);
    open.seek(SeekFrom::Start(100)).unwrap();
    open.write_all(&chunked).unwrap();
    drop(open);
    model_write(&mut model, 100, &chunked);
    m.check("a chunk over the inline bytes", &model).await;
    let (inline, chunks) = m.inline_and_chunks().await;
    assert_eq!(inline, 35_000, "inline bytes stay under the new extent");
    assert!(
        chunks > chunks_before,
        "{chunks} chunks, {chunks_before} before"
    );

    // Removing the file frees its inline bytes.
    std::fs::remove_file(&path).unwrap();
    m.tc.wait_status("inline bytes freed", Duration::from_secs(10), |s| {
        s.inline_bytes == 0
    })
    .await;
}
