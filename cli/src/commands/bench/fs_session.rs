//! The metadata bench's session with the metadata service. It speaks the mounts'
//! filesystem protocol (`cairn_common::fs`) as `cairn-mount` does: one session, its
//! lease renewed in the background, every change numbered so that a retry after a lost
//! answer gets the first answer; but with no kernel, cache or data path in between, so
//! what is timed is the metadata service alone.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_client::{Client, ClientError};
use cairn_common::fs::{
    FsAttr, FsChange, FsErrorKind, FsFailure, FsQuery, FsReply, FsRequest, Ino, NewNode, SessionId,
};

/// Entries per `ReadDir` request.
pub const READDIR_PAGE: u32 = 1000;
/// Mode of what the bench creates.
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// Why one filesystem call of the bench failed.
#[derive(Debug, thiserror::Error)]
pub enum FsCallError {
    /// The metadata service answered and refused (the namespace's verdict).
    #[error("{op}: {failure}")]
    Refused {
        op: &'static str,
        failure: FsFailure,
    },
    /// No answer: no leader, a connection failure, or a refusal at the gRPC level.
    #[error("{op}: {source}")]
    Call {
        op: &'static str,
        #[source]
        source: ClientError,
    },
    #[error("{op}: the metadata service answered {reply}, not what the protocol promises")]
    Unexpected { op: &'static str, reply: String },
}

impl FsCallError {
    /// The namespace's reason, when it refused.
    pub fn kind(&self) -> Option<FsErrorKind> {
        match self {
            FsCallError::Refused { failure, .. } => Some(failure.kind),
            _ => None,
        }
    }
}

pub type FsCallResult<T> = Result<T, FsCallError>;

pub struct FsSession {
    client: Client,
    pub id: SessionId,
    next_seq: AtomicU64,
    /// Set when the service said the session ended (its lease ran out).
    fenced: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl FsSession {
    /// Opens a session named `name` and starts renewing its lease every quarter lease.
    pub async fn open(client: &Client, name: &str) -> FsCallResult<FsSession> {
        const OP: &str = "open a session";
        let reply = call(client, OP, &FsRequest::OpenSession { name: name.into() }).await?;
        let FsReply::Session { id, lease_ms } = reply else {
            return Err(unexpected(OP, &reply));
        };
        let lease = Duration::from_millis(lease_ms.max(1000));
        let fenced = Arc::new(AtomicBool::new(false));
        let renewer = tokio::spawn(renew(client.clone(), id, lease, fenced.clone()));
        Ok(FsSession {
            client: client.clone(),
            id,
            next_seq: AtomicU64::new(1),
            fenced,
            renewer,
        })
    }

    /// Whether the service ended this session (every change is then refused).
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Relaxed)
    }

    /// Ends the session (best effort: an unclosed one ends when its lease runs out).
    pub async fn close(self) {
        self.renewer.abort();
        let request = FsRequest::CloseSession { session: self.id };
        if let Err(e) = call(&self.client, "close the session", &request).await {
            eprintln!("cairn bench: {e} (it ends by itself when its lease runs out)");
        }
    }

    async fn change(&self, op: &'static str, change: FsChange) -> FsCallResult<FsReply> {
        let request = FsRequest::Change {
            session: self.id,
            change,
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
        };
        call(&self.client, op, &request).await
    }

    async fn query(&self, op: &'static str, query: FsQuery) -> FsCallResult<FsReply> {
        let request = FsRequest::Query {
            session: self.id,
            query,
        };
        call(&self.client, op, &request).await
    }

    async fn make(
        &self,
        op: &'static str,
        parent: Ino,
        name: &str,
        node: NewNode,
    ) -> FsCallResult<Ino> {
        let mode = if node == NewNode::Dir {
            DIR_MODE
        } else {
            FILE_MODE
        };
        let change = FsChange::Create {
            parent,
            name: name.into(),
            node,
            mode,
            uid: 0,
            gid: 0,
            hold: false,
        };
        match self.change(op, change).await? {
            FsReply::Attr(attr) => Ok(attr.ino),
            other => Err(unexpected(op, &other)),
        }
    }

    pub async fn mkdir(&self, parent: Ino, name: &str) -> FsCallResult<Ino> {
        self.make("mkdir", parent, name, NewNode::Dir).await
    }

    /// Creates an empty file (not opened: no hold).
    pub async fn create(&self, parent: Ino, name: &str) -> FsCallResult<Ino> {
        self.make("create", parent, name, NewNode::File).await
    }

    pub async fn lookup(&self, parent: Ino, name: &str) -> FsCallResult<FsAttr> {
        let query = FsQuery::Lookup {
            parent,
            name: name.into(),
        };
        match self.query("lookup", query).await? {
            FsReply::Attr(attr) => Ok(attr),
            other => Err(unexpected("lookup", &other)),
        }
    }

    /// Reads the whole directory, [`READDIR_PAGE`] entries a request (at most
    /// `max_pages` requests); returns how many entries it holds.
    pub async fn read_dir(&self, dir: Ino, max_pages: u64) -> FsCallResult<u64> {
        let mut after = None;
        let mut entries = 0u64;
        for _ in 0..max_pages {
            let query = FsQuery::ReadDir {
                ino: dir,
                after: after.take(),
                limit: READDIR_PAGE,
            };
            let page = match self.query("readdir", query).await? {
                FsReply::Entries(page) => page,
                other => return Err(unexpected("readdir", &other)),
            };
            entries += page.len() as u64;
            match page.last() {
                Some(last) if page.len() == READDIR_PAGE as usize => {
                    after = Some(last.name.clone())
                }
                _ => return Ok(entries),
            }
        }
        Ok(entries)
    }

    pub async fn rename(&self, from: (Ino, &str), to: (Ino, &str)) -> FsCallResult<()> {
        let change = FsChange::Rename {
            parent: from.0,
            name: from.1.into(),
            new_parent: to.0,
            new_name: to.1.into(),
            noreplace: true,
            exchange: false,
        };
        self.done("rename", change).await
    }

    /// Removes a file, or (`dir`) an empty directory.
    pub async fn unlink(&self, parent: Ino, name: &str, dir: bool) -> FsCallResult<()> {
        let op = if dir { "rmdir" } else { "unlink" };
        let change = FsChange::Unlink {
            parent,
            name: name.into(),
            dir,
        };
        self.done(op, change).await
    }

    /// `CreateMany`: `count` empty files `prefix{first..}` in `parent`, in one entry.
    pub async fn create_many(
        &self,
        parent: Ino,
        prefix: &str,
        first: u64,
        count: u32,
    ) -> FsCallResult<()> {
        let change = FsChange::CreateMany {
            parent,
            prefix: prefix.into(),
            first,
            count,
            mode: FILE_MODE,
            uid: 0,
            gid: 0,
        };
        self.done("bulk create", change).await
    }

    /// `RemoveMany`: removes what the matching `create_many` made.
    pub async fn remove_many(
        &self,
        parent: Ino,
        prefix: &str,
        first: u64,
        count: u32,
    ) -> FsCallResult<()> {
        let change = FsChange::RemoveMany {
            parent,
            prefix: prefix.into(),
            first,
            count,
        };
        self.done("bulk remove", change).await
    }

    async fn done(&self, op: &'static str, change: FsChange) -> FsCallResult<()> {
        match self.change(op, change).await? {
            FsReply::Done => Ok(()),
            other => Err(unexpected(op, &other)),
        }
    }
}

impl Drop for FsSession {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

async fn call(client: &Client, op: &'static str, request: &FsRequest) -> FsCallResult<FsReply> {
    match client.fs_call(request).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(failure)) => Err(FsCallError::Refused { op, failure }),
        Err(source) => Err(FsCallError::Call { op, source }),
    }
}

fn unexpected(op: &'static str, reply: &FsReply) -> FsCallError {
    let mut text = format!("{reply:?}");
    text.truncate(200);
    FsCallError::Unexpected { op, reply: text }
}

/// Renews the lease every quarter lease until the task is aborted or the service says
/// the session ended.
async fn renew(client: Client, session: SessionId, lease: Duration, fenced: Arc<AtomicBool>) {
    let client = client.with_meta_retry(lease / 2);
    let request = FsRequest::RenewSession { session };
    loop {
        tokio::time::sleep(lease / 4).await;
        match client.fs_call(&request).await {
            Ok(Ok(_)) => {}
            Ok(Err(f)) if f.kind == FsErrorKind::Fenced => {
                fenced.store(true, Ordering::Relaxed);
                eprintln!("cairn bench: the metadata service ended the bench's session: {f}");
                return;
            }
            Ok(Err(f)) => eprintln!("cairn bench: lease renewal refused: {f}"),
            Err(e) => eprintln!("cairn bench: lease renewal failed (retrying): {e}"),
        }
    }
}
