//! Micro-benchmarks of the data path's CPU work: Reed-Solomon encode and single-shard
//! reconstruct (reed-solomon-erasure with SIMD vs reed-solomon-simd, 4+2 and 8+3), blake3
//! at the sizes the data path hashes, and memcpy as the machine's memory-bandwidth yardstick.
//! Run: cargo bench -p cairn-benches --bench coding (results: BENCHMARKS.md).

use criterion::{
    black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput,
};
use reed_solomon_erasure::galois_8::ReedSolomon;

const SHARD: usize = 1 << 20;

fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

fn reed_solomon(c: &mut Criterion) {
    for (k, m) in [(4usize, 2usize), (8, 3)] {
        let mut group = c.benchmark_group(format!("rs_{k}+{m}"));
        group.throughput(Throughput::Bytes((k * SHARD) as u64));
        group.sample_size(20);
        let originals: Vec<Vec<u8>> = (0..k)
            .map(|i| data(SHARD + i))
            .map(|mut v| {
                v.truncate(SHARD);
                v
            })
            .collect();

        let rse = ReedSolomon::new(k, m).unwrap();
        group.bench_function("erasure_encode", |b| {
            let mut shards: Vec<Vec<u8>> = originals.clone();
            shards.resize(k + m, vec![0u8; SHARD]);
            b.iter(|| rse.encode(black_box(&mut shards)).unwrap())
        });
        let mut full: Vec<Vec<u8>> = originals.clone();
        full.resize(k + m, vec![0u8; SHARD]);
        rse.encode(&mut full).unwrap();
        // Setup (copying the surviving shards) is excluded from the timing.
        group.bench_function("erasure_reconstruct_one", |b| {
            b.iter_batched(
                || {
                    let mut partial: Vec<Option<Vec<u8>>> =
                        full.iter().cloned().map(Some).collect();
                    partial[0] = None;
                    partial
                },
                |mut partial| {
                    rse.reconstruct_data(black_box(&mut partial)).unwrap();
                    partial
                },
                BatchSize::LargeInput,
            )
        });

        let refs: Vec<&[u8]> = originals.iter().map(|v| v.as_slice()).collect();
        group.bench_function("simd_encode", |b| {
            b.iter(|| reed_solomon_simd::encode(k, m, black_box(&refs)).unwrap())
        });
        let recovery = reed_solomon_simd::encode(k, m, &refs).unwrap();
        group.bench_function("simd_reconstruct_one", |b| {
            b.iter(|| {
                let originals_left = (1..k).map(|i| (i, refs[i]));
                let recovery_used = [(0usize, recovery[0].as_slice())];
                reed_solomon_simd::decode(k, m, originals_left, recovery_used).unwrap()
            })
        });
        group.finish();
    }
}

fn hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("blake3");
    for size in [4usize << 10, 64 << 10, 1 << 20] {
        let input = data(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &input, |b, input| {
            b.iter(|| blake3::hash(black_box(input)))
        });
    }
    group.finish();
}

fn memcpy(c: &mut Criterion) {
    let mut group = c.benchmark_group("memcpy");
    let size = 64usize << 20;
    let src = data(size);
    let mut dst = vec![0u8; size];
    group.throughput(Throughput::Bytes(size as u64));
    group.sample_size(20);
    group.bench_function("64MiB", |b| b.iter(|| dst.copy_from_slice(black_box(&src))));
    group.finish();
}

fn codec(c: &mut Criterion) {
    use cairn_common::erasure::Codec;
    use cairn_common::Redundancy;
    let mut group = c.benchmark_group("cairn_codec_4+2");
    let chunk = data(4 << 20);
    group.throughput(Throughput::Bytes(chunk.len() as u64));
    group.sample_size(20);
    let codec = Codec::new(Redundancy::Ec { k: 4, m: 2 }).unwrap();
    group.bench_function("encode_4MiB_chunk", |b| {
        b.iter(|| codec.encode(black_box(&chunk)))
    });
    let shards = codec.encode(&chunk);
    group.bench_function("decode_4MiB_chunk_missing_one", |b| {
        b.iter_batched(
            || {
                let mut partial: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
                partial[1] = None;
                partial
            },
            |partial| codec.decode(partial, chunk.len()).unwrap(),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, reed_solomon, hashing, memcpy, codec);
criterion_main!(benches);
