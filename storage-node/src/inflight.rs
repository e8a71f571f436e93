//! Bounds on the shard bytes a node holds in memory for writes not yet stored: one budget
//! per client identity and one for the whole node, so one client streaming large or many
//! shards cannot exhaust the node's memory; past its budget a client's frames are refused
//! at once (RESOURCE_EXHAUSTED) instead of queueing, and others are unaffected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default bytes of unstored shard data one client may have in flight on a node.
pub const DEFAULT_PER_CLIENT_BYTES: usize = 256 << 20;
/// Default for the whole node.
pub const DEFAULT_NODE_BYTES: usize = 1 << 30;
/// Permits count KiB (a semaphore holds at most `usize::MAX >> 3` permits).
const UNIT: usize = 1024;

/// The node's budgets.
pub struct InflightBudget {
    per_client: usize,
    node_bytes: usize,
    node: Arc<Semaphore>,
    clients: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Why bytes could not be reserved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BudgetExceeded {
    #[error("client {client:?} already has {limit} bytes of shard writes in flight on this node")]
    Client { client: String, limit: usize },
    #[error("this node already holds {limit} bytes of shard writes in flight")]
    Node { limit: usize },
}

/// Bytes held until dropped (the write stored or abandoned).
#[derive(Default)]
pub struct Reservation {
    permits: Vec<OwnedSemaphorePermit>,
}

impl InflightBudget {
    pub fn new(per_client: usize, node: usize) -> InflightBudget {
        InflightBudget {
            per_client,
            node_bytes: node,
            node: Arc::new(Semaphore::new(node.div_ceil(UNIT))),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Adds `bytes` for `client` to `held`, or refuses without waiting.
    pub fn reserve(
        &self,
        client: &str,
        bytes: usize,
        held: &mut Reservation,
    ) -> Result<(), BudgetExceeded> {
        let units = u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX);
        let semaphore = {
            let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            // Forget idle clients now and then, so the map stays small.
            if clients.len() > 1024 {
                let full = self.per_client.div_ceil(UNIT);
                clients.retain(|_, s| s.available_permits() < full);
            }
            clients
                .entry(client.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_client.div_ceil(UNIT))))
                .clone()
        };
        let mine = semaphore
            .try_acquire_many_owned(units)
            .map_err(|_| BudgetExceeded::Client {
                client: client.to_string(),
                limit: self.per_client,
            })?;
        let node = self
            .node
            .clone()
            .try_acquire_many_owned(units)
            .map_err(|_| BudgetExceeded::Node {
                limit: self.node_bytes,
            })?;
        held.permits.push(mine);
        held.permits.push(node);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_has_its_own_budget_and_gets_it_back() {
        let budget = InflightBudget::new(10 * UNIT, 25 * UNIT);
        let mut a = Reservation::default();
        budget.reserve("a", 6 * UNIT, &mut a).unwrap();
        assert!(matches!(
            budget.reserve("a", 5 * UNIT, &mut a),
            Err(BudgetExceeded::Client { .. })
        ));
        let mut b = Reservation::default();
        budget.reserve("b", 10 * UNIT, &mut b).unwrap();
        let mut c = Reservation::default();
        assert!(matches!(
            budget.reserve("c", 10 * UNIT, &mut c),
            Err(BudgetExceeded::Node { .. })
        ));
        drop(a);
        budget.reserve("c", 9 * UNIT, &mut c).unwrap();
    }
}
