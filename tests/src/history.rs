//! The fault-injection workload's record: every operation with its invocation and return
//! times and its result, and the checks run over it afterwards.
//!
//! Values are self-describing: a put's bytes are its unique write id followed by bytes
//! derived from that id, so any read can be checked on the spot (bytes that are not
//! exactly some write's payload are corrupt or phantom) and names the write it saw.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use rand::{RngCore, SeedableRng};

use crate::linearizability::{check_register, RegisterOp, TimedOp, Verdict};

/// The bytes of write `id`: its id and its length (8 bytes each, little-endian), then
/// bytes seeded by the id. Any change, truncation or extension shows.
pub fn payload(id: u64, len: usize) -> Vec<u8> {
    let len = len.max(16);
    let mut out = vec![0u8; len];
    out[..8].copy_from_slice(&id.to_le_bytes());
    out[8..16].copy_from_slice(&(len as u64).to_le_bytes());
    rand::rngs::StdRng::seed_from_u64(id).fill_bytes(&mut out[16..]);
    out
}

/// The write id of `bytes`, if they are exactly that write's payload.
pub fn payload_id(bytes: &[u8]) -> Result<u64, String> {
    let field = |at: usize| -> Option<u64> {
        let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
        Some(u64::from_le_bytes(b))
    };
    let (Some(id), Some(_)) = (field(0), field(8)) else {
        return Err(format!("{} bytes: shorter than any payload", bytes.len()));
    };
    if payload(id, bytes.len()) != bytes {
        return Err(format!(
            "{} bytes claiming write {id} differ from its payload",
            bytes.len()
        ));
    }
    Ok(id)
}

/// One finished (or given up) operation on a key.
#[derive(Clone, Debug)]
pub struct Entry {
    pub worker: usize,
    pub key: String,
    pub op: RegisterOp,
    /// Nanoseconds since the history began.
    pub call: u64,
    /// `None`: the outcome is unknown (error or timeout of a write).
    pub ret: Option<u64>,
}

/// Shared by the workload's workers.
pub struct History {
    start: Instant,
    entries: Mutex<Vec<Entry>>,
    violations: Mutex<Vec<String>>,
}

impl Default for History {
    fn default() -> Self {
        History {
            start: Instant::now(),
            entries: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
        }
    }
}

/// What the checks found.
#[derive(Debug, Default)]
pub struct Report {
    pub operations: usize,
    pub unknown_outcomes: usize,
    pub keys: usize,
    /// Every problem found; empty when every invariant held.
    pub violations: Vec<String>,
}

impl History {
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn record(&self, entry: Entry) {
        self.entries.lock().unwrap().push(entry);
    }

    /// The read of `key` made after the faults (invoked at `call`, saw `seen`).
    pub fn record_final_read(&self, key: &str, call: u64, seen: Option<u64>) {
        self.record(Entry {
            worker: usize::MAX,
            key: key.to_owned(),
            op: RegisterOp::Get(seen),
            call,
            ret: Some(self.now()),
        });
    }

    /// A problem seen while running (a read of bytes no write produced).
    pub fn violation(&self, what: String) {
        eprintln!("VIOLATION: {what}");
        self.violations.lock().unwrap().push(what);
    }

    /// Writes every operation, key by key in invocation order, for reading a failure.
    pub fn write_to(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::fmt::Write;
        let mut entries = self.entries();
        entries.sort_by(|a, b| (&a.key, a.call).cmp(&(&b.key, b.call)));
        let mut out = String::new();
        for e in &entries {
            let ret = e.ret.map_or("unknown".to_owned(), |r| r.to_string());
            let _ = writeln!(
                out,
                "{} worker {} {:?} call {} ret {}",
                e.key, e.worker, e.op, e.call, ret
            );
        }
        for v in self.violations.lock().unwrap().iter() {
            let _ = writeln!(out, "VIOLATION {v}");
        }
        std::fs::write(path, out)
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().unwrap().clone()
    }

    /// Runs every check: reads name writes that exist on the same key and were invoked
    /// before the read returned (no phantom reads), and each key's history is
    /// linearizable.
    pub fn check(&self, max_steps_per_key: u64) -> Report {
        let entries = self.entries();
        let mut report = Report {
            operations: entries.len(),
            unknown_outcomes: entries.iter().filter(|e| e.ret.is_none()).count(),
            violations: self.violations.lock().unwrap().clone(),
            ..Report::default()
        };
        let writes: HashMap<u64, &Entry> = entries
            .iter()
            .filter_map(|e| match e.op {
                RegisterOp::Put(id) => Some((id, e)),
                _ => None,
            })
            .collect();
        for e in &entries {
            let RegisterOp::Get(Some(id)) = e.op else {
                continue;
            };
            match writes.get(&id) {
                None => report.violations.push(format!(
                    "{}: worker {} read write {id}, which was never issued",
                    e.key, e.worker
                )),
                Some(w) if w.key != e.key => report.violations.push(format!(
                    "{}: worker {} read write {id}, which was a put of {}",
                    e.key, e.worker, w.key
                )),
                Some(w) if e.ret.is_some_and(|r| w.call > r) => report.violations.push(format!(
                    "{}: worker {} read write {id} before it was issued",
                    e.key, e.worker
                )),
                Some(_) => {}
            }
        }
        let mut per_key: BTreeMap<&str, Vec<TimedOp>> = BTreeMap::new();
        for e in &entries {
            per_key.entry(&e.key).or_default().push(TimedOp {
                op: e.op,
                call: e.call,
                ret: e.ret,
            });
        }
        report.keys = per_key.len();
        for (key, ops) in per_key {
            match check_register(&ops, None, max_steps_per_key) {
                Verdict::Linearizable => {}
                Verdict::NotLinearizable { longest } => report.violations.push(format!(
                    "{key}: not linearizable ({} operations; no order places more than the \
                     first {longest} completed ones)",
                    ops.len()
                )),
                Verdict::Inconclusive { steps } => report.violations.push(format!(
                    "{key}: linearizability check inconclusive after {steps} steps ({} \
                     operations): shorten the run or raise the budget",
                    ops.len()
                )),
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_their_write_and_detect_any_change() {
        let p = payload(42, 1000);
        assert_eq!(payload_id(&p), Ok(42));
        let mut flipped = p.clone();
        flipped[500] ^= 1;
        assert!(payload_id(&flipped).is_err());
        assert!(payload_id(&p[..999]).is_err());
        assert!(payload_id(b"short").is_err());
    }

    fn entry(key: &str, op: RegisterOp, call: u64, ret: u64) -> Entry {
        Entry {
            worker: 0,
            key: key.into(),
            op,
            call,
            ret: Some(ret),
        }
    }

    #[test]
    fn reads_of_unissued_or_other_keys_writes_are_violations() {
        let h = History::default();
        h.record(entry("a", RegisterOp::Put(1), 0, 1));
        h.record(entry("a", RegisterOp::Get(Some(1)), 2, 3));
        assert!(h.check(10_000).violations.is_empty());
        h.record(entry("b", RegisterOp::Get(Some(1)), 4, 5));
        h.record(entry("a", RegisterOp::Get(Some(9)), 6, 7));
        let report = h.check(10_000);
        assert!(report
            .violations
            .iter()
            .any(|v| v.contains("which was a put of a")));
        assert!(report.violations.iter().any(|v| v.contains("never issued")));
    }

    #[test]
    fn a_lost_acknowledged_write_is_reported_per_key() {
        let h = History::default();
        h.record(entry("k", RegisterOp::Put(1), 0, 1));
        h.record(entry("k", RegisterOp::Put(2), 2, 3));
        h.record(entry("k", RegisterOp::Get(Some(1)), 4, 5));
        let report = h.check(10_000);
        assert_eq!(report.keys, 1);
        assert!(report.violations[0].contains("k: not linearizable"));
    }
}
