//! Write preconditions on the wire (`cairn.common.v1.Precondition`).

use cairn_common::Precondition;

use super::WireError;
use crate::common as pc;
use crate::common::precondition::Condition;

/// The condition a message sets, if any.
pub fn precondition(p: Option<pc::Precondition>) -> Result<Option<Precondition>, WireError> {
    match p.and_then(|p| p.condition) {
        None => Ok(None),
        Some(Condition::IfAbsent(true)) => Ok(Some(Precondition::IfAbsent)),
        Some(Condition::IfAbsent(false)) => Err(WireError::invalid(
            "precondition",
            "if_absent must be true when set",
        )),
        Some(Condition::IfGenerationMatch(g)) => Ok(Some(Precondition::IfGeneration(g))),
    }
}

impl From<Precondition> for pc::Precondition {
    fn from(p: Precondition) -> pc::Precondition {
        pc::Precondition {
            condition: Some(match p {
                Precondition::IfAbsent => Condition::IfAbsent(true),
                Precondition::IfGeneration(g) => Condition::IfGenerationMatch(g),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_round_trip_and_a_false_if_absent_is_refused() {
        for p in [Precondition::IfAbsent, Precondition::IfGeneration(7)] {
            assert_eq!(precondition(Some(p.into())), Ok(Some(p)));
        }
        assert_eq!(precondition(None), Ok(None));
        assert_eq!(precondition(Some(pc::Precondition::default())), Ok(None));
        let unset = pc::Precondition {
            condition: Some(Condition::IfAbsent(false)),
        };
        assert!(precondition(Some(unset)).is_err());
    }
}
