//! The io_uring IO backend: one dedicated thread owns the ring.
//!
//! Callers send a [`Request`] over a channel (with a tokio oneshot for the reply) and poke
//! an eventfd. The thread keeps a read of that eventfd armed in the ring, so one
//! `io_uring_enter` waits for either new requests or IO completions. Each pass it drains
//! the channel, pushes as many SQEs as fit (batching all waiting requests into one
//! submit), waits for at least one CQE and handles every CQE ready. Each request's file
//! and buffer live in the thread's table until its last CQE, so a caller that drops its
//! future cannot free memory the kernel still uses. Short reads and writes are resubmitted
//! for the remainder.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use io_uring::{opcode, types, IoUring};
use tokio::sync::oneshot;

use super::SharedFile;

/// Submission queue size; the completion queue is twice that, so with at most this many
/// operations in flight (plus the eventfd read) it cannot overflow.
const RING_ENTRIES: u32 = 128;
const MAX_IN_FLIGHT: usize = RING_ENTRIES as usize - 1;
/// Largest single read or write SQE; longer buffers are done in several.
const MAX_IO_BYTES: usize = 1 << 30;
/// `user_data` of the eventfd read.
const WAKE_TOKEN: u64 = 0;

/// Cheap to clone; the ring thread stops when the last clone is dropped.
#[derive(Clone)]
pub struct UringEngine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for UringEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UringEngine")
    }
}

struct Inner {
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    wake: Arc<OwnedFd>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

enum Op {
    Write(Bytes),
    Read(Vec<u8>),
    Sync { data_only: bool },
}

struct Request {
    file: SharedFile,
    offset: u64,
    op: Op,
    /// Bytes done so far (reads and writes).
    done: usize,
    reply: oneshot::Sender<io::Result<Vec<u8>>>,
}

impl UringEngine {
    /// Builds the ring and starts its thread.
    pub fn new() -> io::Result<UringEngine> {
        let ring = IoUring::new(RING_ENTRIES)?;
        // SAFETY: eventfd has no memory-safety preconditions; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let (tx, rx) = mpsc::channel();
        let thread_wake = wake.clone();
        let thread = std::thread::Builder::new()
            .name("cairn-uring".into())
            .spawn(move || RingThread::new(ring, rx, thread_wake).run())?;
        Ok(UringEngine {
            inner: Arc::new(Inner {
                tx: Mutex::new(Some(tx)),
                wake,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    pub async fn write_all_at(&self, file: &SharedFile, offset: u64, buf: Bytes) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        self.call(file, offset, Op::Write(buf)).await.map(drop)
    }

    pub async fn read_exact_at(
        &self,
        file: &SharedFile,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        self.call(file, offset, Op::Read(vec![0u8; len])).await
    }

    /// `fdatasync` when `data_only`, else `fsync`.
    pub async fn sync(&self, file: &SharedFile, data_only: bool) -> io::Result<()> {
        self.call(file, 0, Op::Sync { data_only }).await.map(drop)
    }

    async fn call(&self, file: &SharedFile, offset: u64, op: Op) -> io::Result<Vec<u8>> {
        let (reply, rx) = oneshot::channel();
        let request = Request {
            file: file.clone(),
            offset,
            op,
            done: 0,
            reply,
        };
        {
            let tx = self.inner.tx.lock().unwrap_or_else(|p| p.into_inner());
            tx.as_ref()
                .ok_or_else(stopped)?
                .send(request)
                .map_err(|_| stopped())?;
        }
        poke(self.inner.wake.as_raw_fd());
        rx.await.map_err(|_| stopped())?
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel and poking the eventfd makes the thread finish what is in
        // flight and exit.
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        poke(self.wake.as_raw_fd());
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("the io_uring thread has stopped")
}

/// Adds one to the eventfd counter, waking the ring thread's armed read.
fn poke(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to a descriptor we own. A failure (counter
    // saturated) still leaves the eventfd readable, which is all a wake-up needs.
    unsafe {
        libc::write(fd, (&one as *const u64).cast(), 8);
    }
}

struct RingThread {
    ring: IoUring,
    rx: mpsc::Receiver<Request>,
    wake: Arc<OwnedFd>,
    /// Where the eventfd read lands; boxed so its address is stable while armed.
    wake_buf: Box<[u8; 8]>,
    wake_armed: bool,
    /// Requests by token, from receipt until the reply is sent.
    table: HashMap<u64, Request>,
    /// Tokens whose next SQE is not yet in the ring.
    ready: VecDeque<u64>,
    in_flight: usize,
    next_token: u64,
}

impl RingThread {
    fn new(ring: IoUring, rx: mpsc::Receiver<Request>, wake: Arc<OwnedFd>) -> RingThread {
        RingThread {
            ring,
            rx,
            wake,
            wake_buf: Box::new([0; 8]),
            wake_armed: false,
            table: HashMap::new(),
            ready: VecDeque::new(),
            in_flight: 0,
            next_token: WAKE_TOKEN + 1,
        }
    }

    fn run(mut self) {
        let mut closing = false;
        loop {
            if !closing {
                closing = self.drain_channel();
            }
            if closing && self.table.is_empty() {
                break;
            }
            if !closing && !self.wake_armed {
                self.arm_wake();
            }
            self.push_ready();
            self.submit_and_wait();
            self.reap();
        }
        // The armed eventfd read points into `wake_buf`: complete it before freeing.
        if self.wake_armed {
            poke(self.wake.as_raw_fd());
            while self.wake_armed {
                self.submit_and_wait();
                self.reap();
            }
        }
    }

    /// Takes every waiting request; true when all senders are gone.
    fn drain_channel(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(request) => {
                    let token = self.next_token;
                    self.next_token += 1;
                    self.table.insert(token, request);
                    self.ready.push_back(token);
                }
                Err(mpsc::TryRecvError::Empty) => return false,
                Err(mpsc::TryRecvError::Disconnected) => return true,
            }
        }
    }

    fn arm_wake(&mut self) {
        let entry = opcode::Read::new(
            types::Fd(self.wake.as_raw_fd()),
            self.wake_buf.as_mut_ptr(),
            8,
        )
        .build()
        .user_data(WAKE_TOKEN);
        // SAFETY: `wake_buf` and the eventfd outlive the operation: `run` waits for this
        // read to complete before returning.
        if unsafe { self.ring.submission().push(&entry) }.is_ok() {
            self.wake_armed = true;
        }
    }

    fn push_ready(&mut self) {
        while self.in_flight < MAX_IN_FLIGHT {
            let Some(&token) = self.ready.front() else {
                break;
            };
            let Some(request) = self.table.get_mut(&token) else {
                self.ready.pop_front();
                continue;
            };
            let entry = sqe_for(request).user_data(token);
            // SAFETY: the request (its file and buffer) stays in `table` until its CQE is
            // handled; `sqe_for` points only inside the request's own buffer.
            if unsafe { self.ring.submission().push(&entry) }.is_err() {
                break; // queue full: the next submit makes room
            }
            self.ready.pop_front();
            self.in_flight += 1;
        }
    }

    fn submit_and_wait(&mut self) {
        match self.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                ) => {}
            Err(e) => {
                // The kernel may still own our buffers; there is no safe way to go on.
                tracing::error!(error = %e, "io_uring_enter failed; aborting");
                std::process::abort();
            }
        }
    }

    fn reap(&mut self) {
        let completions: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|cqe| (cqe.user_data(), cqe.result()))
            .collect();
        for (token, result) in completions {
            if token == WAKE_TOKEN {
                self.wake_armed = false;
                continue;
            }
            self.in_flight -= 1;
            self.complete(token, result);
        }
    }

    fn complete(&mut self, token: u64, result: i32) {
        let Some(request) = self.table.get_mut(&token) else {
            return;
        };
        if result < 0 {
            let err = io::Error::from_raw_os_error(-result);
            if matches!(-result, libc::EINTR | libc::EAGAIN) {
                self.ready.push_back(token);
            } else {
                self.finish(token, Err(err));
            }
            return;
        }
        let n = result as usize;
        let total = match &request.op {
            Op::Sync { .. } => {
                self.finish(token, Ok(Vec::new()));
                return;
            }
            Op::Write(buf) => buf.len(),
            Op::Read(buf) => buf.len(),
        };
        if n == 0 {
            let err = match request.op {
                Op::Write(_) => io::Error::new(io::ErrorKind::WriteZero, "write returned 0"),
                _ => io::Error::new(io::ErrorKind::UnexpectedEof, "end of file"),
            };
            self.finish(token, Err(err));
            return;
        }
        request.done += n;
        if request.done < total {
            self.ready.push_back(token);
            return;
        }
        let Some(request) = self.table.remove(&token) else {
            return;
        };
        let out = match request.op {
            Op::Read(buf) => buf,
            _ => Vec::new(),
        };
        let _ = request.reply.send(Ok(out));
    }

    fn finish(&mut self, token: u64, result: io::Result<Vec<u8>>) {
        if let Some(request) = self.table.remove(&token) {
            let _ = request.reply.send(result);
        }
    }
}

/// The next SQE for `request`: the rest of its read or write, or its sync.
fn sqe_for(request: &mut Request) -> io_uring::squeue::Entry {
    let fd = types::Fd(request.file.as_raw_fd());
    let offset = request.offset + request.done as u64;
    match &mut request.op {
        Op::Write(buf) => {
            let rest = &buf[request.done..];
            let len = rest.len().min(MAX_IO_BYTES) as u32;
            opcode::Write::new(fd, rest.as_ptr(), len)
                .offset(offset)
                .build()
        }
        Op::Read(buf) => {
            let rest = &mut buf[request.done..];
            let len = rest.len().min(MAX_IO_BYTES) as u32;
            opcode::Read::new(fd, rest.as_mut_ptr(), len)
                .offset(offset)
                .build()
        }
        Op::Sync { data_only } => {
            let flags = if *data_only {
                types::FsyncFlags::DATASYNC
            } else {
                types::FsyncFlags::empty()
            };
            opcode::Fsync::new(fd).flags(flags).build()
        }
    }
}
