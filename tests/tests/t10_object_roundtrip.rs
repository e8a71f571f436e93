//! Objects round-trip byte for byte through a real cluster (3 metadata replicas, 6
//! storage nodes, ec 4+2), whole and by range, and listings page through 10,000 keys.

use cairn_common::Redundancy;
use cairn_tests::{random_bytes, TestCluster};

/// Small chunks keep the test fast while crossing chunk boundaries the same way.
const CHUNK: usize = 256 * 1024;

async fn cluster() -> TestCluster {
    TestCluster::start_with(3, 6, Redundancy::Ec { k: 4, m: 2 }, |spec| {
        spec.chunk_size = CHUNK
    })
    .await
}

/// Puts objects of 0 B, 1 B, chunk-1, chunk, chunk+1, several chunks and 100 MiB of random
/// bytes; gets each back and compares; proves sizes at and around chunk boundaries work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_every_size_round_trip_byte_identical() {
    let tc = cluster().await;
    let sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 17, 100 << 20];
    for (i, &size) in sizes.iter().enumerate() {
        let data = random_bytes(size, i as u64);
        let key = format!("sizes/obj-{size}");
        tc.must_put("default", &key, &data).await;
        tc.must_get_equal("default", &key, &data).await;
        let stat = tc.client.stat("default", &key).await.unwrap();
        assert_eq!(stat.size, size as u64);
        assert_eq!(stat.chunks, size.div_ceil(CHUNK));
    }

    // `cairn stat` prints the modification time as a date; `--json` keeps the number.
    let key = "default/sizes/obj-1";
    let stat = tc.client.stat("default", "sizes/obj-1").await.unwrap();
    let text = tc.cli(&["stat", key]);
    assert!(text.status.success(), "{text:?}");
    let text = String::from_utf8_lossy(&text.stdout);
    let mtime_line = text.lines().find(|l| l.starts_with("mtime:")).unwrap();
    let date = mtime_line["mtime:".len()..].trim();
    let parsed = time::OffsetDateTime::parse(date, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("mtime {date:?} is not an RFC 3339 date: {e}"));
    assert_eq!(parsed.unix_timestamp(), stat.mtime as i64);
    let json = tc.cli(&["stat", key, "--json"]);
    assert!(json.status.success(), "{json:?}");
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["mtime"].as_u64(), Some(stat.mtime));
}

/// Ranged reads return exactly the requested bytes, including ranges that span chunk
/// boundaries, empty ranges and the last byte; a range past the end is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_reads_return_exact_slices() {
    let tc = cluster().await;
    let data = random_bytes(3 * CHUNK + 1000, 42);
    tc.must_put("default", "ranged", &data).await;
    let ranges = [
        (0, 1),
        (0, data.len()),
        (CHUNK - 10, CHUNK + 10),
        (CHUNK, 2 * CHUNK),
        (100, 100),
        (data.len() - 1, data.len()),
        (2 * CHUNK + 5, 3 * CHUNK + 999),
    ];
    for (start, end) in ranges {
        let mut out = Vec::new();
        tc.client
            .get(
                "default",
                "ranged",
                Some(start as u64..end as u64),
                &mut out,
            )
            .await
            .unwrap();
        assert_eq!(out, &data[start..end], "range {start}..{end}");
    }
    let mut out = Vec::new();
    let err = tc
        .client
        .get(
            "default",
            "ranged",
            Some(0..data.len() as u64 + 1),
            &mut out,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, cairn_client::ClientError::InvalidArgument { .. }),
        "{err}"
    );
}

/// Lists 10,000 keys page by page (1,000 per page) and with prefixes; every key appears
/// exactly once, in byte order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_through_ten_thousand_keys() {
    let tc = cluster().await;
    let mut keys: Vec<String> = (0..10_000)
        .map(|i| format!("list/d{}/k{:05}", i % 10, i))
        .collect();
    // Empty objects: the listing, not the data path, is under test here.
    let puts = futures_like_parallel(&tc, &keys, 64).await;
    assert_eq!(puts, keys.len());
    keys.sort();
    let mut listed = Vec::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let page = tc
            .client
            .list_page("default", "list/", &after, 1000)
            .await
            .unwrap();
        pages += 1;
        assert!(page.objects.len() <= 1000);
        listed.extend(page.objects.iter().map(|o| o.key.clone()));
        if !page.truncated {
            break;
        }
        after = page.objects.last().unwrap().key.clone();
    }
    assert_eq!(listed, keys);
    assert!(pages >= 10, "{pages} pages");
    let d3 = tc.client.list_all("default", "list/d3/").await.unwrap();
    assert_eq!(d3.len(), 1000);
    assert!(d3.iter().all(|o| o.key.starts_with("list/d3/")));
    let none = tc.client.list_all("default", "list/zz").await.unwrap();
    assert!(none.is_empty());
}

/// Puts empty objects under `keys` with `parallel` puts in flight; returns how many.
async fn futures_like_parallel(tc: &TestCluster, keys: &[String], parallel: usize) -> usize {
    let mut set = tokio::task::JoinSet::new();
    let mut done = 0;
    for key in keys {
        if set.len() >= parallel {
            set.join_next().await.unwrap().unwrap();
            done += 1;
        }
        let client = tc.client.clone();
        let key = key.clone();
        set.spawn(async move {
            client
                .put("default", &key, &[][..])
                .await
                .unwrap_or_else(|e| panic!("put {key}: {e}"));
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
        done += 1;
    }
    done
}

/// Deleting an object removes it from listings and reclaims its shard files on the
/// storage nodes (garbage collection runs on the leader).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_reclaims_shards() {
    let tc = cluster().await;
    let data = random_bytes(2 * CHUNK, 7);
    tc.must_put("default", "gone", &data).await;
    assert_eq!(tc.shard_files().len(), 2 * 6);
    tc.client.delete("default", "gone").await.unwrap();
    assert!(matches!(
        tc.client.stat("default", "gone").await,
        Err(cairn_client::ClientError::NotFound { .. })
    ));
    tc.wait_status("gc to finish", std::time::Duration::from_secs(30), |s| {
        s.pending_gc_shards == 0
    })
    .await;
    assert_eq!(tc.shard_files(), Vec::<std::path::PathBuf>::new());
}

/// `cairn cp --reflink` copies by reference: the copy reads back identical, no chunk or
/// shard is added, it keeps its bytes when the source is overwritten and removed, and its
/// chunks are collected only once it is removed too. `cairn cp` without it stores the
/// bytes again (into a bucket of other redundancy). A destination that exists and a
/// missing source are refused with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_reflink_shares_chunks_and_plain_cp_copies_bytes() {
    let tc = cluster().await;
    let data = random_bytes(5 * CHUNK + 17, 11);
    tc.must_put("default", "dir/src", &data).await;
    let chunks = tc.client.status().await.unwrap().chunks;
    let shards = tc.shard_files().len();

    let out = tc.cli(&["cp", "--reflink", "default/dir/src", "default/copies/a/b"]);
    assert!(out.status.success(), "{out:?}");
    tc.must_get_equal("default", "copies/a/b", &data).await;
    assert_eq!(
        tc.client.status().await.unwrap().chunks,
        chunks,
        "no chunk added"
    );
    assert_eq!(tc.shard_files().len(), shards, "no shard added");

    let out = tc.cli(&["cp", "--reflink", "default/dir/src", "default/copies/a/b"]);
    assert!(!out.status.success(), "an existing destination is refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exists"), "{err}");
    let out = tc.cli(&["cp", "--reflink", "default/dir/none", "default/x"]);
    assert!(!out.status.success(), "a missing source is refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");

    // The source overwritten, then removed: the copy keeps its bytes and its chunks.
    let other = random_bytes(CHUNK + 5, 12);
    tc.must_put("default", "dir/src", &other).await;
    tc.client.delete("default", "dir/src").await.unwrap();
    tc.wait_status(
        "gc of the overwritten source",
        std::time::Duration::from_secs(30),
        |s| s.pending_gc_shards == 0,
    )
    .await;
    assert_eq!(
        tc.client.status().await.unwrap().chunks,
        chunks,
        "the copy's chunks stay"
    );
    tc.must_get_equal("default", "copies/a/b", &data).await;

    // A plain copy into a bucket of other redundancy stores the bytes again.
    tc.client
        .create_bucket("mirror", Redundancy::Replicas { n: 2 })
        .await
        .unwrap();
    let out = tc.cli(&["cp", "default/copies/a/b", "mirror/b"]);
    assert!(out.status.success(), "{out:?}");
    tc.must_get_equal("mirror", "b", &data).await;
    assert_eq!(
        tc.client.status().await.unwrap().chunks,
        2 * chunks,
        "the plain copy has chunks of its own"
    );

    tc.client.delete("default", "copies/a/b").await.unwrap();
    tc.client.delete("mirror", "b").await.unwrap();
    tc.wait_status(
        "gc of every copy",
        std::time::Duration::from_secs(30),
        |s| s.chunks == 0 && s.pending_gc_shards == 0,
    )
    .await;
    assert_eq!(tc.shard_files(), Vec::<std::path::PathBuf>::new());
}
