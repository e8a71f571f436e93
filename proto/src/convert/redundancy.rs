//! Redundancy schemes on the wire (`cairn.common.v1.Redundancy`).

use cairn_common::Redundancy;

use super::WireError;
use crate::common as pc;

/// The scheme a message names, validated; `field` names it in the error.
pub fn redundancy(r: Option<pc::Redundancy>, field: &'static str) -> Result<Redundancy, WireError> {
    match r.and_then(|r| r.scheme) {
        None => Err(WireError::Missing { field }),
        Some(scheme) => of_scheme(scheme)
            .validate()
            .map_err(|e| WireError::invalid(field, e)),
    }
}

/// [`redundancy`], with [`Redundancy::DEFAULT`] when the message names none.
pub fn redundancy_or_default(
    r: Option<pc::Redundancy>,
    field: &'static str,
) -> Result<Redundancy, WireError> {
    match r.and_then(|r| r.scheme) {
        None => Ok(Redundancy::DEFAULT),
        scheme => redundancy(Some(pc::Redundancy { scheme }), field),
    }
}

fn of_scheme(scheme: pc::redundancy::Scheme) -> Redundancy {
    match scheme {
        pc::redundancy::Scheme::Ec(ec) => Redundancy::Ec { k: ec.k, m: ec.m },
        pc::redundancy::Scheme::Replicas(n) => Redundancy::Replicas { n },
    }
}

impl From<Redundancy> for pc::Redundancy {
    fn from(r: Redundancy) -> pc::Redundancy {
        let scheme = match r {
            Redundancy::Ec { k, m } => pc::redundancy::Scheme::Ec(pc::ErasureCoding { k, m }),
            Redundancy::Replicas { n } => pc::redundancy::Scheme::Replicas(n),
        };
        pc::Redundancy {
            scheme: Some(scheme),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_round_trip_and_bad_ones_are_refused() {
        for r in [Redundancy::Ec { k: 4, m: 2 }, Redundancy::Replicas { n: 3 }] {
            assert_eq!(redundancy(Some(r.into()), "r"), Ok(r));
        }
        assert_eq!(
            redundancy(None, "r"),
            Err(WireError::Missing { field: "r" })
        );
        assert_eq!(redundancy_or_default(None, "r"), Ok(Redundancy::DEFAULT));
        let too_wide = pc::Redundancy::from(Redundancy::Ec { k: 99, m: 2 });
        assert!(matches!(
            redundancy_or_default(Some(too_wide), "r"),
            Err(WireError::Invalid { field: "r", .. })
        ));
    }
}
