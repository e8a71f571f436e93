//! Micro-benchmarks of the storage node's shard store (durable put: hash, write,
//! fdatasync, rename, directory fsync; verified get) at 4 KiB, 64 KiB and 1 MiB through the
//! engine the node would pick (io_uring here), and of the client's per-chunk CPU work
//! (encode a 4 MiB chunk as 4+2 and blake3 every shard).
//! Run: cargo bench -p cairn-benches --bench store (results: BENCHMARKS.md);
//! `cargo test --benches` runs each once (so in `.ci/run`, they never rot).

use bytes::Bytes;
use cairn_common::erasure::Codec;
use cairn_common::{ChunkId, Redundancy};
use cairn_storage_node::io_engine::IoEngine;
use cairn_storage_node::store::{ShardKey, ShardStore};
use cairn_storage_node::IoEngineChoice;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

fn shard_store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::Builder::new()
        .prefix("cairn-store-bench")
        .tempdir_in("/var/tmp")
        .expect("temp dir");
    let store = rt.block_on(async {
        let engine = IoEngine::detect(dir.path(), IoEngineChoice::Auto)
            .await
            .expect("io engine");
        ShardStore::open(dir.path(), 1, engine)
            .await
            .expect("open store")
    });
    let mut group = c.benchmark_group(format!("store_{}", store.engine().name()));
    group.sample_size(20);
    for size in [4 << 10, 64 << 10, 1 << 20] {
        let bytes = Bytes::from(data(size));
        let hash = *blake3::hash(&bytes).as_bytes();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("put", size), &bytes, |b, bytes| {
            b.iter(|| {
                let key = ShardKey {
                    chunk: ChunkId::random(),
                    index: 0,
                };
                rt.block_on(store.put(key, hash, vec![bytes.clone()]))
                    .expect("put")
            })
        });
        let key = ShardKey {
            chunk: ChunkId::random(),
            index: 0,
        };
        rt.block_on(store.put(key, hash, vec![bytes.clone()]))
            .expect("put");
        group.bench_function(BenchmarkId::new("get", size), |b| {
            b.iter(|| rt.block_on(store.get(key, 0, size as u64)).expect("get"))
        });
    }
    group.finish();
}

fn client_chunk_cpu(c: &mut Criterion) {
    let codec = Codec::new(Redundancy::Ec { k: 4, m: 2 }).expect("codec");
    let chunk = data(4 << 20);
    let mut group = c.benchmark_group("client_chunk");
    group.throughput(Throughput::Bytes(chunk.len() as u64));
    group.sample_size(20);
    group.bench_function("encode_4+2_and_blake3_4MiB", |b| {
        b.iter(|| {
            let shards = codec.encode(black_box(&chunk));
            let hashes: Vec<[u8; 32]> =
                shards.iter().map(|s| *blake3::hash(s).as_bytes()).collect();
            black_box(hashes)
        })
    });
    group.finish();
}

criterion_group!(benches, shard_store, client_chunk_cpu);
criterion_main!(benches);
