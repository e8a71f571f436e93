//! Property tests (fuzzing) of the protobuf conversions at the edge: chunk descriptions
//! and redundancy schemes arrive from the network and must be refused, not panicked on,
//! when malformed; what is accepted converts back unchanged.

use cairn_common::chunk::ChunkMeta;
use cairn_common::ChunkId;
use cairn_proto::common as pc;
use cairn_proto::convert;
use cairn_proto::meta as pm;
use proptest::prelude::*;

fn redundancy() -> impl Strategy<Value = Option<pc::Redundancy>> {
    prop_oneof![
        Just(None),
        Just(Some(pc::Redundancy { scheme: None })),
        (any::<u32>(), any::<u32>()).prop_map(|(k, m)| Some(pc::Redundancy {
            scheme: Some(pc::redundancy::Scheme::Ec(pc::ErasureCoding {
                k: k % 40,
                m: m % 40
            })),
        })),
        any::<u32>().prop_map(|n| Some(pc::Redundancy {
            scheme: Some(pc::redundancy::Scheme::Replicas(n % 12)),
        })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn chunks_from_the_network_convert_or_are_refused(
        chunk_id in prop::collection::vec(any::<u8>(), 0..20),
        size in any::<u64>(),
        hashes in prop::collection::vec(prop::collection::vec(any::<u8>(), 30..34), 0..8),
        shards in prop::collection::vec((any::<u32>(), any::<u64>()), 0..8),
        redundancy in redundancy(),
    ) {
        let chunk = pm::Chunk {
            chunk_id: chunk_id.into(),
            size,
            shard_hashes: hashes.into_iter().map(Into::into).collect(),
            shards: shards
                .into_iter()
                .map(|(index, node_id)| pm::ShardPlacement { index: index % 10, node_id })
                .collect(),
            redundancy,
        };
        if let Ok((id, meta)) = <(ChunkId, ChunkMeta)>::try_from(chunk.clone()) {
            let back = pm::Chunk::from((&id, &meta));
            prop_assert_eq!(<(ChunkId, ChunkMeta)>::try_from(back).ok(), Some((id, meta)));
        }
        let _ = convert::redundancy(chunk.redundancy, "redundancy");
    }
}
