//! Group commit on the leader: client writes that arrive while earlier entries are being
//! made durable share one Raft entry (`Command::Batch`), so one synced log write and one
//! replication round carry many commands.
//!
//! openraft 0.9.25 appends and syncs each `client_write` as its own entry, one after the
//! other inside its core task (`RaftCore::process_raft_msg` runs the engine's commands
//! after every message, and `append_to_log` waits for the flush), so concurrent writers
//! queue behind one fsync each. Here, at most [`MAX_IN_FLIGHT`] entry is in flight;
//! every write that arrives meanwhile is queued, and the next entry takes the whole
//! queue (up to [`MAX_BATCH_COMMANDS`] commands and [`MAX_BATCH_BYTES`]) as one
//! entry. A lone writer never waits: with a free slot its command goes at once, alone,
//! in the same entry it always had. A command of [`SOLO_BYTES`] or more (bulk creates,
//! large extent maps) is never batched.
//!
//! Semantics are those of separate entries: the commands of a batch apply in order, each
//! with its own result (`CommandResult::Batch`), a refusal of one changes nothing for
//! the others, and if the entry fails (leadership lost) every writer in it gets the same
//! error and retries, as it would have alone.

use std::collections::VecDeque;
use std::sync::Arc;

use metrics::counter;
use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::namespace::{Batch, Command, CommandResult};
use crate::types::Raft;

/// Entries this leader has in flight at once; writes beyond them wait and are batched.
/// One is best: openraft appends entries one after another anyway, so a second entry
/// in flight only splits the waiting writers into smaller batches (release build, 64
/// writers: 4,674 commits/s with one, 4,261 with two, 4,167 with four; BENCHMARKS.md).
pub const MAX_IN_FLIGHT: usize = 1;
/// Commands in one batched entry at most.
pub const MAX_BATCH_COMMANDS: usize = 256;
/// Encoded bytes of the commands in one batched entry at most (a replication message
/// carries up to openraft's 300 entries in `network::MAX_RAFT_MESSAGE_BYTES`).
pub const MAX_BATCH_BYTES: usize = 128 * 1024;
/// A command this large or larger gets an entry of its own.
pub const SOLO_BYTES: usize = 64 * 1024;

pub type RaftWriteError = RaftError<u64, ClientWriteError<u64, BasicNode>>;

/// Why a write got no result.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Raft(#[from] Box<RaftWriteError>),
    #[error("the metadata write queue has stopped (the replica is shutting down); retry")]
    Stopped,
    #[error("a batched entry of {sent} commands applied with {got} results")]
    ResultCount { sent: usize, got: usize },
}

/// A client write waiting for its entry.
struct Waiting {
    command: Command,
    /// Its encoded size (`postcard`), for the batch limits.
    bytes: usize,
    reply: oneshot::Sender<Result<CommandResult, WriteError>>,
}

/// The handle writers submit commands through; the batching task ends when every handle
/// is dropped.
pub struct GroupCommit {
    queue: mpsc::UnboundedSender<Waiting>,
}

impl GroupCommit {
    /// Starts the batching task for `raft` (on the current tokio runtime).
    pub fn start(raft: Raft) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        GroupCommit { queue }
    }

    /// Commits `command` (alone or in a batch) and returns its result once applied.
    pub async fn write(&self, command: Command) -> Result<CommandResult, WriteError> {
        let bytes = encoded_len(&command);
        let (reply, result) = oneshot::channel();
        self.queue
            .send(Waiting {
                command,
                bytes,
                reply,
            })
            .map_err(|_| WriteError::Stopped)?;
        result.await.map_err(|_| WriteError::Stopped)?
    }
}

fn encoded_len(command: &Command) -> usize {
    postcard::serialize_with_flavor(command, postcard::ser_flavors::Size::default())
        .unwrap_or(usize::MAX)
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<Waiting>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut queue = VecDeque::new();
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(w) => queue.push_back(w),
                None => return,
            }
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // Everything that arrived while no slot was free joins the queue.
        while let Ok(w) = rx.try_recv() {
            queue.push_back(w);
        }
        let batch = take_batch(&mut queue);
        let raft = raft.clone();
        tokio::spawn(async move {
            commit(&raft, batch).await;
            drop(slot);
        });
    }
}

/// The writes of the next entry, from the front of `queue`: the first always; then as
/// many more as the limits allow, stopping before the first that does not fit (order is
/// kept: a write never overtakes one queued before it).
fn take_batch(queue: &mut VecDeque<Waiting>) -> Vec<Waiting> {
    let Some(first) = queue.pop_front() else {
        return Vec::new();
    };
    let mut bytes = first.bytes;
    let mut batch = vec![first];
    if bytes >= SOLO_BYTES {
        return batch;
    }
    while let Some(next) = queue.front() {
        let fits = batch.len() < MAX_BATCH_COMMANDS
            && next.bytes < SOLO_BYTES
            && bytes.saturating_add(next.bytes) <= MAX_BATCH_BYTES;
        if !fits {
            break;
        }
        bytes += next.bytes;
        batch.push(queue.pop_front().expect("front exists"));
    }
    batch
}

async fn commit(raft: &Raft, mut batch: Vec<Waiting>) {
    counter!("cairn_meta_group_commit_entries_total").increment(1);
    counter!("cairn_meta_group_commit_commands_total").increment(batch.len() as u64);
    if batch.len() == 1 {
        let Waiting { command, reply, .. } = batch.pop().expect("one");
        let result = raft.client_write(command).await.map(|r| r.data);
        let _ = reply.send(result.map_err(|e| WriteError::Raft(Box::new(e))));
        return;
    }
    let (commands, replies): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|w| (w.command, w.reply)).unzip();
    let sent = commands.len();
    match raft.client_write(Command::Batch(Batch(commands))).await {
        Ok(written) => match written.data {
            CommandResult::Batch(results) if results.len() == sent => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            CommandResult::Batch(results) => {
                let got = results.len();
                for reply in replies {
                    let _ = reply.send(Err(WriteError::ResultCount { sent, got }));
                }
            }
            // A refusal of the whole batch (`NestedBatch`, impossible from here) or a
            // result of another kind: each command gets it.
            other => {
                for reply in replies {
                    let _ = reply.send(Ok(other.clone()));
                }
            }
        },
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(WriteError::Raft(Box::new(e.clone()))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(
        bytes: usize,
    ) -> (
        Waiting,
        oneshot::Receiver<Result<CommandResult, WriteError>>,
    ) {
        let (reply, rx) = oneshot::channel();
        let command = Command::GcDone {
            seqs: vec![bytes as u64],
        };
        (
            Waiting {
                command,
                bytes,
                reply,
            },
            rx,
        )
    }

    fn queue_of(sizes: &[usize]) -> VecDeque<Waiting> {
        sizes.iter().map(|&b| waiting(b).0).collect()
    }

    fn sizes(batch: &[Waiting]) -> Vec<usize> {
        batch.iter().map(|w| w.bytes).collect()
    }

    #[test]
    fn a_batch_takes_the_queue_in_order_up_to_the_limits() {
        let mut q = queue_of(&[10, 20, 30]);
        assert_eq!(sizes(&take_batch(&mut q)), [10, 20, 30]);
        assert!(q.is_empty());
        assert!(take_batch(&mut q).is_empty());

        let mut q = queue_of(&vec![1; MAX_BATCH_COMMANDS + 5]);
        assert_eq!(take_batch(&mut q).len(), MAX_BATCH_COMMANDS);
        assert_eq!(take_batch(&mut q).len(), 5);

        let big = SOLO_BYTES - 1;
        let mut q = queue_of(&[big, big, big, 10]);
        assert_eq!(sizes(&take_batch(&mut q)), [big, big]);
        assert_eq!(sizes(&take_batch(&mut q)), [big, 10]);
    }

    #[test]
    fn a_large_command_is_never_batched_and_nothing_overtakes_it() {
        let mut q = queue_of(&[10, SOLO_BYTES, 20]);
        assert_eq!(sizes(&take_batch(&mut q)), [10]);
        assert_eq!(sizes(&take_batch(&mut q)), [SOLO_BYTES]);
        assert_eq!(sizes(&take_batch(&mut q)), [20]);
    }

    #[test]
    fn encoded_len_is_the_codec_body() {
        let cmd = Command::GcDone {
            seqs: vec![1, 2, 3],
        };
        let record = crate::codec::encode(&cmd).unwrap();
        assert_eq!(encoded_len(&cmd), record.len() - 1);
    }
}
