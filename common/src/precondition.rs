//! Conditions on an object's current version for a write to happen (put-if-absent,
//! compare-and-swap on the generation). The one definition: the client sets them, the
//! metadata state machine checks them in its apply.

use serde::{Deserialize, Serialize};

/// A condition on the current object for a write to happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precondition {
    /// The key must not exist.
    IfAbsent,
    /// The key must exist with exactly this generation.
    IfGeneration(u64),
}

impl std::fmt::Display for Precondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Precondition::IfAbsent => f.write_str("if-absent"),
            Precondition::IfGeneration(g) => write!(f, "if-generation-match {g}"),
        }
    }
}

impl Precondition {
    /// Whether the condition holds for an object whose current generation is `current`
    /// (`None`: no such object).
    pub fn holds(self, current: Option<u64>) -> bool {
        match self {
            Precondition::IfAbsent => current.is_none(),
            Precondition::IfGeneration(g) => current == Some(g),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_absent_needs_no_object_and_if_generation_the_same_one() {
        assert!(Precondition::IfAbsent.holds(None));
        assert!(!Precondition::IfAbsent.holds(Some(1)));
        assert!(Precondition::IfGeneration(3).holds(Some(3)));
        assert!(!Precondition::IfGeneration(3).holds(Some(4)));
        assert!(!Precondition::IfGeneration(3).holds(None));
    }
}
