//! This mount's session with the metadata service: opened at mount, renewed in the
//! background, closed at unmount. The mount fences itself as soon as the service says
//! the session ended, or when it could not renew for a whole lease (the service will
//! end it by then): from that moment every operation fails with `ESTALE`, so a frozen
//! or cut-off mount can never write over the host that took its place.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_client::Client;
use cairn_common::fs::{FsErrorKind, FsReply, FsRequest, SessionId};

use crate::backend::FsError;

/// Pause before retrying a failed renewal.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

pub struct Session {
    pub id: SessionId,
    lease: Duration,
    fenced: AtomicBool,
    /// Wakes the calls waiting on [`Session::fenced`].
    fenced_now: tokio::sync::Notify,
    /// When the last successful renewal was sent.
    renewed: Mutex<Instant>,
}

impl Session {
    pub async fn open(client: &Client, name: String) -> Result<Arc<Session>, FsError> {
        let sent = Instant::now();
        let reply = client
            .fs_call(&FsRequest::OpenSession { name })
            .await
            .map_err(|e| super::wire::unavailable("open a session", e))?
            .map_err(super::wire::refused)?;
        let FsReply::Session { id, lease_ms } = reply else {
            return Err(FsError::InvalidArgument);
        };
        Ok(Arc::new(Session {
            id,
            lease: Duration::from_millis(lease_ms.max(1000)),
            fenced: AtomicBool::new(false),
            fenced_now: tokio::sync::Notify::new(),
            renewed: Mutex::new(sent),
        }))
    }

    /// `Stale` once fenced (or once a whole lease passed without renewal).
    pub fn check(&self) -> Result<(), FsError> {
        if self.fenced.load(Ordering::Acquire) {
            return Err(FsError::Stale);
        }
        let renewed = *self.renewed.lock().expect("session lock poisoned");
        if renewed.elapsed() >= self.lease {
            self.fence("no lease renewal succeeded for a whole lease");
            return Err(FsError::Stale);
        }
        Ok(())
    }

    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    pub fn fence(&self, why: &str) {
        if !self.fenced.swap(true, Ordering::AcqRel) {
            tracing::error!(
                session = self.id,
                why,
                "this mount is fenced: every operation now fails with ESTALE; unmount and mount again"
            );
        }
        self.fenced_now.notify_waiters();
    }

    /// Returns once the session is fenced. Calls to the metadata service race this, so a
    /// call still retrying against a cluster that is gone ends with `ESTALE` when the mount
    /// fences itself, instead of keeping an application (or `umount`, which asks for
    /// `statfs`) waiting through every retry. Cancel safe.
    pub async fn fenced(&self) {
        loop {
            let woken = self.fenced_now.notified();
            if self.is_fenced() {
                return;
            }
            woken.await;
        }
    }

    /// Renews the lease every quarter lease until fenced. A failed renewal is retried at
    /// once (after a short pause), and no attempt may hold on to one replica for more
    /// than a fifth of the lease: one frozen or cut-off replica (or a connection stuck
    /// after a partition) must not cost the mount its lease while others could answer.
    pub async fn renew_forever(self: Arc<Self>, client: Client) {
        let period = self.lease / 4;
        let client = client
            .with_meta_attempt_timeout(self.lease / 5)
            .with_meta_retry(self.lease / 2);
        let mut pause = period;
        while !self.is_fenced() {
            tokio::time::sleep(pause).await;
            pause = RETRY_PAUSE;
            let sent = Instant::now();
            let request = FsRequest::RenewSession { session: self.id };
            match tokio::time::timeout(self.lease / 2, client.fs_call(&request)).await {
                Ok(Ok(Ok(_))) => {
                    *self.renewed.lock().expect("session lock poisoned") = sent;
                    pause = period;
                }
                Ok(Ok(Err(f))) if f.kind == FsErrorKind::Fenced => {
                    self.fence("the metadata service ended this session");
                }
                Ok(Ok(Err(f))) => tracing::warn!(error = %f, "lease renewal refused"),
                Ok(Err(e)) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
                Err(_) => tracing::warn!("lease renewal timed out; retrying"),
            }
            // Surfaces a lapse in the log even while the mount is idle.
            let _ = self.check();
        }
    }

    /// Ends the session (at unmount): its locks are released at once.
    pub async fn close(&self, client: &Client) {
        if self.is_fenced() {
            return;
        }
        let request = FsRequest::CloseSession { session: self.id };
        if let Err(e) = client.fs_call(&request).await {
            tracing::warn!(error = %e, "could not close the session; its lease will expire");
        }
    }
}
