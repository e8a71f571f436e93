//! A per-key linearizability checker for a register with put, delete and get, after Wing &
//! Gong with Lowe's memoization ("WGL"): search for an order of the operations that
//! respects real time (an operation that returned before another was invoked comes first)
//! and in which every get returns the value the register holds at that point.
//!
//! An operation whose outcome is unknown (an error or a timeout: it may or may not have
//! taken effect, now or later) has no return time: the search may place it anywhere after
//! its invocation or leave it out (one that no read observed is left out from the start:
//! placing a value nobody saw can only make an order harder to find, never easier).
//! Configurations already explored (which operations are
//! placed, the register's value) are remembered, so each is searched once; a budget of
//! steps bounds the search and an exhausted budget is reported, never taken for success.

use std::collections::HashSet;

/// What one operation did to (or saw in) the register. Values are write ids: the workload
/// gives every put a unique one, so a read names the write it saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegisterOp {
    Put(u64),
    Delete,
    /// The value read (`None`: the key did not exist).
    Get(Option<u64>),
}

/// One operation of a history: invoked at `call`, returned at `ret` (`None`: unknown
/// outcome). Times are any monotonic unit (the workload uses nanoseconds since its start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedOp {
    pub op: RegisterOp,
    pub call: u64,
    pub ret: Option<u64>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order exists; `longest` is the longest prefix of completed operations (by call
    /// time) the search could place, the place to start reading the history.
    NotLinearizable {
        longest: usize,
    },
    /// The step budget ran out before an answer: not a pass.
    Inconclusive {
        steps: u64,
    },
}

/// Checks one key's history, starting from `initial` (`None`: the key does not exist).
pub fn check_register(history: &[TimedOp], initial: Option<u64>, max_steps: u64) -> Verdict {
    let observed: HashSet<u64> = history
        .iter()
        .filter_map(|o| match o.op {
            RegisterOp::Get(Some(v)) => Some(v),
            _ => None,
        })
        .collect();
    let mut ops: Vec<TimedOp> = history
        .iter()
        .filter(|o| !matches!((o.op, o.ret), (RegisterOp::Put(v), None) if !observed.contains(&v)))
        .copied()
        .collect();
    ops.sort_by_key(|o| o.call);
    let n = ops.len();
    let completed: Vec<usize> = (0..n).filter(|&i| ops[i].ret.is_some()).collect();
    let mut placed = vec![false; n];
    let mut seen: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
    // Depth-first search with an explicit stack of (op placed, value before it).
    let mut stack: Vec<(usize, Option<u64>)> = Vec::new();
    let mut value = initial;
    let mut next_candidate = 0usize;
    let mut steps = 0u64;
    let mut longest = 0usize;
    loop {
        if completed.iter().all(|&i| placed[i]) {
            return Verdict::Linearizable;
        }
        steps += 1;
        if steps > max_steps {
            return Verdict::Inconclusive { steps };
        }
        // An operation can go next only if it was invoked before every unplaced completed
        // operation returned.
        let deadline = (0..n)
            .filter(|&i| !placed[i])
            .filter_map(|i| ops[i].ret)
            .min()
            .unwrap_or(u64::MAX);
        let mut advanced = false;
        let mut i = next_candidate;
        while i < n && ops[i].call <= deadline {
            if !placed[i] {
                if let Some(after) = apply(ops[i].op, value) {
                    placed[i] = true;
                    let key = (bits(&placed), after);
                    if seen.insert(key) {
                        stack.push((i, value));
                        value = after;
                        next_candidate = 0;
                        advanced = true;
                        let done = completed.iter().take_while(|&&c| placed[c]).count();
                        longest = longest.max(done);
                        break;
                    }
                    placed[i] = false;
                }
            }
            i += 1;
        }
        if advanced {
            continue;
        }
        // Dead end: undo the last placement and try the next candidate after it.
        match stack.pop() {
            Some((last, before)) => {
                placed[last] = false;
                value = before;
                next_candidate = last + 1;
            }
            None => return Verdict::NotLinearizable { longest },
        }
    }
}

/// The register after `op`, or `None` if `op` cannot happen in state `value`.
fn apply(op: RegisterOp, value: Option<u64>) -> Option<Option<u64>> {
    match op {
        RegisterOp::Put(v) => Some(Some(v)),
        RegisterOp::Delete => Some(None),
        RegisterOp::Get(seen) => (seen == value).then_some(value),
    }
}

fn bits(placed: &[bool]) -> Vec<u64> {
    let mut out = vec![0u64; placed.len().div_ceil(64)];
    for (i, &p) in placed.iter().enumerate() {
        if p {
            out[i / 64] |= 1 << (i % 64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use RegisterOp::*;

    fn op(op: RegisterOp, call: u64, ret: u64) -> TimedOp {
        TimedOp {
            op,
            call,
            ret: Some(ret),
        }
    }

    fn unknown(op: RegisterOp, call: u64) -> TimedOp {
        TimedOp {
            op,
            call,
            ret: None,
        }
    }

    const BUDGET: u64 = 1_000_000;

    #[test]
    fn sequential_reads_of_the_last_write_pass() {
        let h = [
            op(Put(1), 0, 1),
            op(Get(Some(1)), 2, 3),
            op(Delete, 4, 5),
            op(Get(None), 6, 7),
        ];
        assert_eq!(check_register(&h, None, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_after_a_completed_write_fails() {
        let h = [op(Put(1), 0, 1), op(Put(2), 2, 3), op(Get(Some(1)), 4, 5)];
        assert!(matches!(
            check_register(&h, None, BUDGET),
            Verdict::NotLinearizable { .. }
        ));
    }

    #[test]
    fn concurrent_operations_may_be_ordered_either_way() {
        // Put(2) overlaps both reads: one read before it, one after is fine.
        let h = [
            op(Put(1), 0, 1),
            op(Put(2), 2, 10),
            op(Get(Some(2)), 3, 4),
            op(Get(Some(1)), 5, 6),
        ];
        // The second read saw the old value after the first saw the new one: not allowed.
        assert!(matches!(
            check_register(&h, None, BUDGET),
            Verdict::NotLinearizable { .. }
        ));
        let h = [
            op(Put(1), 0, 1),
            op(Put(2), 2, 10),
            op(Get(Some(1)), 3, 4),
            op(Get(Some(2)), 5, 6),
        ];
        assert_eq!(check_register(&h, None, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn a_read_of_a_value_never_written_fails() {
        let h = [op(Put(1), 0, 1), op(Get(Some(7)), 2, 3)];
        assert!(matches!(
            check_register(&h, None, BUDGET),
            Verdict::NotLinearizable { .. }
        ));
    }

    #[test]
    fn unknown_outcomes_may_take_effect_late_or_never() {
        // The failed put took effect after a later read: allowed.
        let h = [
            unknown(Put(1), 0),
            op(Get(None), 5, 6),
            op(Get(Some(1)), 7, 8),
        ];
        assert_eq!(check_register(&h, None, BUDGET), Verdict::Linearizable);
        // ... or never.
        let h = [unknown(Put(1), 0), op(Get(None), 5, 6)];
        assert_eq!(check_register(&h, None, BUDGET), Verdict::Linearizable);
        // But not before it was invoked.
        let h = [op(Get(Some(1)), 0, 1), unknown(Put(1), 2)];
        assert!(matches!(
            check_register(&h, None, BUDGET),
            Verdict::NotLinearizable { .. }
        ));
    }

    #[test]
    fn an_acknowledged_write_that_vanished_fails() {
        // The lost-write shape: Put(2) completed, then every later read shows Put(1).
        let h = [
            op(Put(1), 0, 1),
            op(Put(2), 2, 3),
            op(Get(Some(2)), 4, 5),
            op(Get(Some(1)), 6, 7),
        ];
        assert!(matches!(
            check_register(&h, None, BUDGET),
            Verdict::NotLinearizable { .. }
        ));
    }

    #[test]
    fn many_concurrent_clients_are_checked_within_the_budget() {
        // Four clients, 200 operations, all overlapping in groups of four: a valid
        // history (each group's reads see the group's last put in call order).
        let mut h = Vec::new();
        for g in 0..50u64 {
            let t = g * 100;
            h.push(op(Put(g * 10 + 1), t, t + 50));
            h.push(op(Put(g * 10 + 2), t + 1, t + 51));
            h.push(op(Get(Some(g * 10 + 2)), t + 60, t + 70));
            h.push(op(Get(Some(g * 10 + 2)), t + 61, t + 71));
        }
        assert_eq!(check_register(&h, None, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn an_exhausted_budget_is_inconclusive() {
        let h = [
            op(Put(1), 0, 10),
            op(Put(2), 1, 11),
            op(Get(Some(1)), 12, 13),
        ];
        assert!(matches!(
            check_register(&h, None, 1),
            Verdict::Inconclusive { .. }
        ));
    }
}
