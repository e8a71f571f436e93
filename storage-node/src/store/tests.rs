//! Behaviour of the shard store on a real temporary directory.

use super::*;
use crate::config::IoEngineChoice;
use crate::shard_file::BLOCK_SIZE;

const NODE: NodeId = 7;

fn key(n: u8, index: u32) -> ShardKey {
    ShardKey {
        chunk: ChunkId([n; 16]),
        index,
    }
}

fn sample(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

fn hash(data: &[u8]) -> [u8; 32] {
    *blake3::hash(data).as_bytes()
}

async fn must_open(dir: &Path) -> ShardStore {
    let engine = IoEngine::detect(dir, IoEngineChoice::Auto).await.unwrap();
    ShardStore::open(dir, NODE, engine).await.unwrap()
}

async fn must_put(store: &ShardStore, id: ShardKey, data: &Bytes) {
    store.put(id, hash(data), vec![data.clone()]).await.unwrap();
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Flips one bit of the shard file at `data_pos` bytes into its data region.
fn flip_data_byte(store: &ShardStore, id: ShardKey, data_pos: u64) {
    let path = store.path_of(&id);
    let mut bytes = std::fs::read(&path).unwrap();
    let header = ShardHeader::parse(&bytes, bytes.len() as u64).unwrap();
    bytes[(header.data_offset() + data_pos) as usize] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
}

#[tokio::test]
async fn put_then_get_returns_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path()).await;
    let id = key(0xab, 2);
    let data = sample(300_000, 1);
    let info = store
        .put(id, hash(&data), vec![data.clone()])
        .await
        .unwrap();
    assert_eq!(info.length, 300_000);
    let read = store.get(id, 0, 0).await.unwrap();
    assert_eq!(read.data, data);
    assert_eq!(read.info, info);
    let part = store.get(id, 70_000, 4096).await.unwrap();
    assert_eq!(part.data, data[70_000..74_096]);
    assert_eq!(store.stat(id).await.unwrap(), info);
    assert!(store
        .path_of(&id)
        .ends_with(format!("shards/ab/{}", id.file_name())));
}

#[tokio::test]
async fn empty_shard_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path()).await;
    must_put(&store, key(1, 0), &Bytes::new()).await;
    assert!(store.get(key(1, 0), 0, 0).await.unwrap().data.is_empty());
}

#[tokio::test]
async fn put_with_wrong_hash_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path()).await;
    let id = key(3, 0);
    let err = store
        .put(id, [9; 32], vec![sample(1000, 0)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::HashMismatch { .. }), "{err}");
    assert!(matches!(
        store.get(id, 0, 0).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(files_in(&dir.path().join("shards/03")).is_empty());
    assert_eq!(store.usage(), Usage::default());
}

#[tokio::test]
async fn identical_put_is_idempotent_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path()).await;
    let data = sample(5000, 2);
    must_put(&store, key(4, 1), &data).await;
    let once = store.usage();
    must_put(&store, key(4, 1), &data).await;
    assert_eq!(store.usage(), once);
    assert_eq!(once.shard_count, 1);
    assert_eq!(
        once.used_bytes,
        std::fs::metadata(store.path_of(&key(4, 1))).unwrap().len()
    );
    assert_eq!(
        files_in(&dir.path().join("shards/04")),
        ["04040404040404040404040404040404.1"]
    );
}

#[tokio::test]
async fn flipped_byte_is_detected_and_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path()).await;
    let id = key(5, 0);
    must_put(&store, id, &sample(200_000, 3)).await;
    flip_data_byte(&store, id, 123_456);
    let err = store.get(id, 0, 0).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                reason: CorruptReason::Block(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(!store.path_of(&id).exists());
    let quarantined = files_in(&dir.path().join("quarantine"));
    assert_eq!(quarantined.len(), 1);
    assert!(quarantined[0].starts_with(&id.file_name()));
    assert_eq!(
        store.usage(),
        Usage {
            shard_count: 0,
            used_bytes: 0,
            quarantined_count: 1
        }
    );
    assert!(matches!(
        store.get(id, 0, 0).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn an_unreadable_shard_is_quarantined_and_then_missing() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path()).await;
    let (bad, good) = (key(0xe1, 4), key(0xe2, 4));
    must_put(&store, bad, &sample(200_000, 9)).await;
    must_put(&store, good, &sample(200_000, 10)).await;
    // EIO on every read of `bad`'s file (a build without failpoints cannot inject it).
    let spec = format!("return({})", bad.file_name());
    if failpoint::configure(failpoint::SHARD_READ, &spec).is_err() {
        eprintln!("skipped: this build has no failpoints");
        return;
    }
    let err = store.get(bad, 0, 0).await.unwrap_err();
    failpoint::configure(failpoint::SHARD_READ, "off").unwrap();
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                reason: CorruptReason::Unreadable { errno: libc::EIO },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("unreadable"), "{err}");
    assert!(!store.path_of(&bad).exists());
    let quarantined = files_in(&dir.path().join("quarantine"));
    assert_eq!(quarantined.len(), 1);
    assert!(quarantined[0].starts_with(&bad.file_name()));
    assert_eq!(store.usage().shard_count, 1);
    assert_eq!(store.usage().quarantined_count, 1);
    // From now on the node has no such shard; the other one is untouched.
    assert!(matches!(
        store.stat(bad).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store.get(good, 0, 0).await.unwrap().data,
        sample(200_000, 10)
    );
}

#[test]
fn only_media_errors_make_a_shard_unreadable() {
    let of = |errno| CorruptReason::of_read_error(&io::Error::from_raw_os_error(errno));
    assert_eq!(
        of(libc::EIO),
        Some(CorruptReason::Unreadable { errno: libc::EIO })
    );
    assert!(of(libc::EUCLEAN).is_some() && of(libc::EBADMSG).is_some());
    for passing in [libc::EACCES, libc::EMFILE, libc::ENOMEM, libc::EINTR] {
        assert_eq!(of(passing), None, "errno {passing}");
    }
    assert_eq!(
        CorruptReason::of_read_error(&io::Error::other("no errno")),
        None
    );
}

#[tokio::test]
async fn ranged_read_verifies_only_touched_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path()).await;
    let id = key(6, 0);
    let data = sample(10 * BLOCK_SIZE as usize, 4);
    must_put(&store, id, &data).await;
    flip_data_byte(&store, id, 9 * u64::from(BLOCK_SIZE) + 1);
    // Blocks 0..9 are intact: ranges inside them are served.
    let read = store.get(id, 100, 4096).await.unwrap();
    assert_eq!(read.data, data[100..4196]);
    assert_eq!(read.info.blake3, hash(&data));
    assert!(store.path_of(&id).exists());
    // The range touching block 9 finds the damage.
    assert!(matches!(
        store.get(id, 9 * u64::from(BLOCK_SIZE) - 10, 20).await,
        Err(StoreError::Corrupt { .. })
    ));
    assert!(!store.path_of(&id).exists());
}

#[tokio::test]
async fn damaged_header_is_quarantined_on_stat() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path()).await;
    let id = key(7, 3);
    must_put(&store, id, &sample(1000, 5)).await;
    let path = store.path_of(&id);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[15] ^= 0xff; // inside the data length
    std::fs::write(&path, bytes).unwrap();
    let err = store.stat(id).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                reason: CorruptReason::Header(FormatError::BadHeaderChecksum),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(files_in(&dir.path().join("quarantine")).len(), 1);
}

#[tokio::test]
async fn truncated_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path()).await;
    let id = key(8, 0);
    must_put(&store, id, &sample(100_000, 6)).await;
    let path = store.path_of(&id);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    assert!(matches!(
        store.get(id, 0, 10).await,
        Err(StoreError::Corrupt {
            reason: CorruptReason::Header(FormatError::LengthMismatch { .. }),
            ..
        })
    ));
}

#[tokio::test]
async fn range_past_the_end_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path()).await;
    let id = key(9, 0);
    must_put(&store, id, &sample(1000, 7)).await;
    assert!(matches!(
        store.get(id, 990, 11).await,
        Err(StoreError::RangeOutOfBounds {
            shard_len: 1000,
            ..
        })
    ));
    assert!(matches!(
        store.get(id, 1001, 0).await,
        Err(StoreError::RangeOutOfBounds { .. })
    ));
    assert!(store.get(id, 1000, 0).await.unwrap().data.is_empty());
    assert!(store.path_of(&id).exists(), "a bad range is not corruption");
}

#[tokio::test]
async fn delete_reports_whether_it_existed() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path()).await;
    let id = key(10, 0);
    must_put(&store, id, &sample(10, 8)).await;
    assert!(store.delete(id).await.unwrap());
    assert!(!store.delete(id).await.unwrap());
    assert_eq!(store.usage(), Usage::default());
    assert!(matches!(
        store.stat(id).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn usage_is_rebuilt_at_open_and_crash_leftovers_removed() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let store = must_open(dir.path()).await;
        must_put(&store, key(11, 0), &sample(70_000, 9)).await;
        must_put(&store, key(12, 1), &sample(10, 9)).await;
        must_put(&store, key(13, 0), &sample(500, 9)).await;
        flip_data_byte(&store, key(13, 0), 5);
        assert!(store.get(key(13, 0), 0, 0).await.is_err());
        store.usage()
    };
    let leftover = dir.path().join("shards/0b/.0b0b.0.tmp.1.2");
    std::fs::write(&leftover, b"partial").unwrap();
    let store = must_open(dir.path()).await;
    assert_eq!(store.usage(), before);
    assert_eq!(before.shard_count, 2);
    assert_eq!(before.quarantined_count, 1);
    assert!(!leftover.exists());
}

#[tokio::test]
async fn another_node_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(must_open(dir.path()).await);
    let engine = IoEngine::Std(crate::io_engine::std_fs::StdFsEngine);
    let err = ShardStore::open(dir.path(), 8, engine.clone())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            StoreError::Marker(MarkerError::Mismatch {
                found: 7,
                configured: 8,
                ..
            })
        ),
        "{err}"
    );
    // Without the marker, a directory that has shards is refused too.
    std::fs::remove_file(dir.path().join(crate::marker::MARKER_FILE)).unwrap();
    let err = ShardStore::open(dir.path(), 7, engine).await.err().unwrap();
    assert!(
        matches!(err, StoreError::Marker(MarkerError::Missing { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn full_disk_maps_to_no_space_and_leaves_no_partial_shard() {
    let dir = tempfile::tempdir().unwrap();
    drop(must_open(dir.path()).await);
    let store = ShardStore::open(dir.path(), NODE, IoEngine::FullDisk)
        .await
        .unwrap();
    let id = key(14, 0);
    let data = sample(100_000, 10);
    let err = store.put(id, hash(&data), vec![data]).await.unwrap_err();
    assert!(matches!(err, StoreError::NoSpace { .. }), "{err}");
    assert!(files_in(&dir.path().join("shards/0e")).is_empty());
    assert_eq!(store.usage(), Usage::default());
}

#[tokio::test]
async fn capacity_reports_the_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path()).await;
    let cap = store.capacity().unwrap();
    assert!(cap.total_bytes > 0);
    assert!(cap.available_bytes <= cap.total_bytes);
}

#[test]
fn shard_file_names_round_trip() {
    let id = key(0xfe, 12);
    assert_eq!(ShardKey::from_file_name(&id.file_name()), Some(id));
    assert_eq!(ShardKey::from_file_name("fefe.1"), None);
    assert_eq!(ShardKey::from_file_name(&format!("{}.x", id.chunk)), None);
    assert_eq!(ShardKey::from_file_name(&format!("{}.+1", id.chunk)), None);
}

#[tokio::test]
async fn quarantine_is_purged_after_its_retention() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path()).await;
    let id = key(9, 1);
    must_put(&store, id, &sample(100_000, 4)).await;
    flip_data_byte(&store, id, 10);
    assert!(store.get(id, 0, 0).await.is_err());
    assert_eq!(store.usage().quarantined_count, 1);
    assert_eq!(
        store
            .purge_quarantine(std::time::Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        files_in(&dir.path().join("quarantine")).len(),
        1,
        "young files stay"
    );
    assert_eq!(
        store
            .purge_quarantine(std::time::Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    assert!(files_in(&dir.path().join("quarantine")).is_empty());
    assert_eq!(store.usage().quarantined_count, 0);
}

/// A file listed and then deleted (or quarantined) before its time is read is left out
/// of a listing, not an error that ends the scrub or sweep pass (seen in the nemesis run:
/// "list shards in ...: No such file or directory").
#[test]
fn a_file_gone_after_it_was_listed_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("present"), b"x").unwrap();
    std::fs::write(dir.path().join("gone"), b"x").unwrap();
    let entries: Vec<std::fs::DirEntry> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    std::fs::remove_file(dir.path().join("gone")).unwrap();
    for entry in &entries {
        let modified = modified_if_present(entry).unwrap();
        assert_eq!(modified.is_some(), entry.file_name() == "present");
    }
}
