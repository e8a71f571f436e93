//! Conversions from the generated protobuf types to the client's own.

use cairn_common::Redundancy;
use cairn_proto::common as pc;

use crate::error::{ClientError, Result};

pub fn redundancy_from_proto(r: Option<pc::Redundancy>) -> Result<Redundancy> {
    let scheme = r
        .and_then(|r| r.scheme)
        .ok_or_else(|| ClientError::Malformed {
            what: "redundancy scheme missing".into(),
        })?;
    let r = match scheme {
        pc::redundancy::Scheme::Ec(ec) => Redundancy::Ec { k: ec.k, m: ec.m },
        pc::redundancy::Scheme::Replicas(n) => Redundancy::Replicas { n },
    };
    r.validate().map_err(|e| ClientError::Malformed {
        what: e.to_string(),
    })
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
