//! Identifiers shared by every component.
//!
//! Each id is a newtype so that a partition number can never be passed where a node id is expected. Chunk ids
//! are 32-byte keyed BLAKE3 digests computed by the client; the cluster treats them as opaque, uniformly
//! distributed names and derives the partition from their leading bits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Content address of a chunk: BLAKE3 keyed with the tenant's dedup key over the plaintext.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// Length of a chunk id in bytes.
    pub const LEN: usize = 32;

    /// The partition this chunk belongs to when the cluster has `2^partition_bits` partitions.
    ///
    /// Uses the leading bits of the id, which are uniformly distributed for keyed BLAKE3 output.
    pub fn partition(&self, partition_bits: u8) -> PartitionId {
        if partition_bits == 0 {
            return PartitionId(0);
        }
        let lead = u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]);
        PartitionId(lead >> (32 - u32::from(partition_bits.min(32))))
    }

    /// Lower-case hex form, as shown to operators.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Error returned when text is not a valid 64-digit hex chunk id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunk id {0:?}: expected 64 hex digits")]
pub struct ParseChunkIdError(pub String);

impl FromStr for ChunkId {
    type Err = ParseChunkIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseChunkIdError(s.to_owned()))?;
        Ok(ChunkId(out))
    }
}

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize,
        )]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl From<$inner> for $name {
            fn from(v: $inner) -> Self {
                $name(v)
            }
        }
    };
}

numeric_id!(
    /// A storage node, unique for the life of the cluster.
    NodeId(u64),
    "node-"
);
numeric_id!(
    /// A storage generation: nodes that joined together and share an erasure-code profile.
    GenerationId(u32),
    "gen-"
);
numeric_id!(
    /// A tenant: a dedup and access domain.
    TenantId(u64),
    "tenant-"
);
numeric_id!(
    /// A partition of the chunk id space; the unit of placement and migration.
    PartitionId(u32),
    "p"
);
numeric_id!(
    /// Version of the cluster map; every committed change increments it.
    Epoch(u64),
    "epoch-"
);

/// Position of a shard inside its stripe: `0..k` are data shards, `k..k+m` parity shards.
pub type ShardIndex = u8;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn partition_uses_leading_bits() {
        let mut id = [0u8; 32];
        id[0] = 0b1010_0000;
        let c = ChunkId(id);
        assert_eq!(c.partition(0), PartitionId(0));
        assert_eq!(c.partition(1), PartitionId(1));
        assert_eq!(c.partition(3), PartitionId(0b101));
        assert_eq!(c.partition(32), PartitionId(0xa000_0000));
    }

    proptest! {
        #[test]
        fn partition_is_in_range(bytes in any::<[u8; 32]>(), bits in 0u8..=16) {
            let p = ChunkId(bytes).partition(bits);
            prop_assert!(u64::from(p.0) < (1u64 << bits));
        }

        #[test]
        fn chunk_id_hex_round_trips(bytes in any::<[u8; 32]>()) {
            let id = ChunkId(bytes);
            prop_assert_eq!(id.to_hex().parse::<ChunkId>().unwrap(), id);
        }
    }

    #[test]
    fn bad_hex_is_rejected() {
        assert!("zz".parse::<ChunkId>().is_err());
        assert!("00".repeat(31).parse::<ChunkId>().is_err());
    }
}
