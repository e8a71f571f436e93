//! Conversions between the generated protobuf types and Cairn's own. The scheme mappings
//! here are the only ones: the metadata service and the object API use them too, each
//! wrapping them with its own error type.

use cairn_common::Redundancy;
use cairn_proto::common as pc;

use crate::error::{ClientError, Result};

pub fn redundancy_from_proto(r: Option<pc::Redundancy>) -> Result<Redundancy> {
    let scheme = r
        .and_then(|r| r.scheme)
        .ok_or_else(|| ClientError::Malformed {
            what: "redundancy scheme missing".into(),
        })?;
    redundancy_of(scheme)
        .validate()
        .map_err(|e| ClientError::Malformed {
            what: e.to_string(),
        })
}

/// The scheme a protobuf message names (not yet validated).
pub fn redundancy_of(scheme: pc::redundancy::Scheme) -> Redundancy {
    match scheme {
        pc::redundancy::Scheme::Ec(ec) => Redundancy::Ec { k: ec.k, m: ec.m },
        pc::redundancy::Scheme::Replicas(n) => Redundancy::Replicas { n },
    }
}

pub fn redundancy_to_proto(r: Redundancy) -> pc::Redundancy {
    let scheme = match r {
        Redundancy::Ec { k, m } => pc::redundancy::Scheme::Ec(pc::ErasureCoding { k, m }),
        Redundancy::Replicas { n } => pc::redundancy::Scheme::Replicas(n),
    };
    pc::Redundancy {
        scheme: Some(scheme),
    }
}
