//! `cairn cp`: a copy of an object (or a file of a mount: the same namespace) under
//! another name. With `--reflink` the copy shares the source's chunks: one metadata
//! commit, no byte read or written, whatever the size (the `CloneFile` that volume
//! snapshots use). Without it the bytes are read (verified) and stored again, so the
//! copy gets its own bucket's redundancy.
//!
//! Both copy what is committed when the copy starts: writes a mount still buffers (not
//! yet closed or fsynced) are not in it.

use std::ffi::OsStr;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use anyhow::{bail, Context};
use cairn_client::Client;
use cairn_common::fs::ROOT_INO;
use cairn_common::names::validate_key;
use cairn_fuse_mount::backend::{Caller, FileType, FsAttr, FsBackend, FsError};
use cairn_fuse_mount::cluster::ClusterOptions;
use tokio::io::{AsyncRead, ReadBuf};

use super::objects::split_target;

/// Directories `cp` makes for a destination key with `/` in it (as a put does).
const DIR_MODE: u32 = 0o755;

pub async fn copy(
    client: &Client,
    source: &str,
    target: &str,
    reflink: bool,
) -> anyhow::Result<()> {
    let from = split_target(source)?;
    let to = split_target(target)?;
    if reflink {
        let opts = ClusterOptions {
            session_name: "cairn-cp".into(),
            ..ClusterOptions::default()
        };
        let fs = super::session(client.clone(), opts).await?;
        let copied = clone(fs.as_ref(), from, to).await;
        fs.close().await;
        copied.with_context(|| format!("copy {source} to {target} by reference"))?;
        eprintln!("copied {source} to {target} by reference (the chunks are shared)");
        return Ok(());
    }
    let object = client.open(from.0, from.1).await?;
    let size = object.stat.size;
    let (mut pipe_in, pipe_out) = tokio::io::duplex(1 << 20);
    let reading = async {
        let read = client.read(&object, None, &mut pipe_in).await;
        drop(pipe_in);
        read
    };
    // A failed read ends the pipe early: the put sees too few bytes and stores nothing.
    let writing = client.put(
        to.0,
        to.1,
        Exactly {
            inner: pipe_out,
            left: size,
        },
    );
    let (read, put) = tokio::join!(reading, writing);
    read.with_context(|| format!("read {source}"))?;
    let outcome = put.with_context(|| format!("store {target}"))?;
    eprintln!(
        "copied {source} to {target}: {} bytes, generation {}",
        outcome.size, outcome.generation
    );
    Ok(())
}

/// `CloneFile` of `bucket/key` as `bucket/key` (the destination's missing directories
/// made first). The copy keeps the source's mode and owner.
async fn clone(fs: &dyn FsBackend, from: (&str, &str), to: (&str, &str)) -> anyhow::Result<()> {
    let (src_dir, src_name) = walk(fs, from, false).await?;
    let src = lookup(fs, src_dir, src_name)
        .await?
        .with_context(|| format!("{}/{} does not exist", from.0, from.1))?;
    if src.kind != FileType::File {
        bail!("{}/{} is not a regular file", from.0, from.1);
    }
    let (dir, name) = walk(fs, to, true).await?;
    let owner = Caller {
        uid: src.uid,
        gid: src.gid,
        pid: std::process::id(),
    };
    match fs
        .clone_file(src.ino, dir, OsStr::new(name), src.mode & 0o7777, owner)
        .await
    {
        Ok(_) => Ok(()),
        Err(FsError::Exists) => bail!("{}/{} exists; remove it first", to.0, to.1),
        Err(e) => Err(e.into()),
    }
}

/// The directory that holds `bucket/key` and the key's last component; `make`: missing
/// directories are made.
async fn walk<'k>(
    fs: &dyn FsBackend,
    (bucket, key): (&str, &'k str),
    make: bool,
) -> anyhow::Result<(u64, &'k str)> {
    validate_key(key).with_context(|| format!("{bucket}/{key}"))?;
    let mut parts: Vec<&str> = key.split('/').collect();
    let name = parts.pop().expect("split yields at least one part");
    let mut dir = lookup(fs, ROOT_INO, bucket)
        .await?
        .with_context(|| format!("bucket {bucket} does not exist"))?
        .ino;
    for part in parts {
        dir = match lookup(fs, dir, part).await? {
            Some(attr) if attr.kind == FileType::Dir => attr.ino,
            Some(_) => bail!("{bucket}/{key}: {part} is not a directory"),
            None if make => match fs
                .mkdir(dir, OsStr::new(part), DIR_MODE, Caller::ROOT)
                .await
            {
                Ok(attr) => attr.ino,
                // Made by someone else meanwhile.
                Err(FsError::Exists) => {
                    lookup(fs, dir, part)
                        .await?
                        .with_context(|| format!("{bucket}/{key}: {part} vanished"))?
                        .ino
                }
                Err(e) => return Err(e.into()),
            },
            None => bail!("{bucket}/{key} does not exist"),
        };
    }
    Ok((dir, name))
}

async fn lookup(fs: &dyn FsBackend, dir: u64, name: &str) -> anyhow::Result<Option<FsAttr>> {
    match fs.lookup(dir, OsStr::new(name)).await {
        Ok(attr) => Ok(Some(attr)),
        Err(FsError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A reader that must yield exactly `left` more bytes: ending early is an error, so a
/// put fed by it never commits a truncated copy.
struct Exactly<R> {
    inner: R,
    left: u64,
}

impl<R: AsyncRead + Unpin> AsyncRead for Exactly<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let n = (buf.filled().len() - before) as u64;
            if n == 0 && self.left > 0 {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the source ended {} bytes early", self.left),
                )));
            }
            self.left = self.left.saturating_sub(n);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::Exactly;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_source_that_ends_early_is_an_error_and_an_exact_one_is_not() {
        let mut short = Exactly {
            inner: &b"12345"[..],
            left: 6,
        };
        let mut out = Vec::new();
        let err = short.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("1 bytes early"), "{err}");

        let mut exact = Exactly {
            inner: &b"123456"[..],
            left: 6,
        };
        let mut out = Vec::new();
        exact.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"123456");
    }
}
