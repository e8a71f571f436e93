//! The NBD server over a real TCP connection, with a volume on the in-memory reference
//! backend: the handshake's answers, each command, the errors a bad request gets, and
//! the catalog's rules. (The cluster, real NBD clients and fencing are in
//! `tests/tests/t200_block_volumes.rs`.)

use std::ffi::OsStr;
use std::sync::Arc;

use cairn_common::fs::ROOT_INO;
use cairn_fuse_mount::backend::{Caller, FsBackend};
use cairn_fuse_mount::memory::{MemoryBackend, MemoryOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::protocol::*;
use crate::catalog::{Catalog, CatalogError};
use crate::device::{BlockDevice, DeviceError};
use crate::volume::{AttachError, Volume};

const SIZE: u64 = 1 << 20;

async fn catalog_with_volume() -> (Arc<dyn FsBackend>, Catalog) {
    let fs: Arc<dyn FsBackend> = Arc::new(MemoryBackend::new(MemoryOptions::default()));
    let catalog = Catalog::new(fs.clone());
    let mkdir = |bucket: String| {
        let fs = fs.clone();
        async move {
            let root = Caller {
                uid: 0,
                gid: 0,
                pid: 0,
            };
            fs.mkdir(ROOT_INO, OsStr::new(&bucket), 0o755, root)
                .await
                .map(|_| ())
        }
    };
    catalog.create("v", SIZE, mkdir).await.expect("create");
    (fs, catalog)
}

/// A server for volume `v` on an ephemeral port; stops when the test's runtime ends.
async fn server() -> std::net::SocketAddr {
    let (fs, _) = catalog_with_volume().await;
    serve(Volume::attach(fs, "v").await.expect("attach")).await
}

async fn serve(volume: Volume) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(super::serve(
        listener,
        "v",
        Arc::new(volume),
        std::future::pending(),
    ));
    addr
}

/// Connects and reads the greeting; sends the client flags.
async fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut greeting = [0u8; 18];
    s.read_exact(&mut greeting).await.expect("greeting");
    assert_eq!(&greeting[..16], b"NBDMAGICIHAVEOPT");
    s.write_u32(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES)
        .await
        .expect("flags");
    s
}

async fn send_option(s: &mut TcpStream, option: u32, data: &[u8]) {
    s.write_u64(OPTION_MAGIC).await.unwrap();
    s.write_u32(option).await.unwrap();
    s.write_u32(data.len() as u32).await.unwrap();
    s.write_all(data).await.unwrap();
}

/// One option reply: (type, data).
async fn option_reply(s: &mut TcpStream, option: u32) -> (u32, Vec<u8>) {
    assert_eq!(s.read_u64().await.unwrap(), OPTION_REPLY_MAGIC);
    assert_eq!(s.read_u32().await.unwrap(), option);
    let kind = s.read_u32().await.unwrap();
    let len = s.read_u32().await.unwrap();
    let mut data = vec![0u8; len as usize];
    s.read_exact(&mut data).await.unwrap();
    (kind, data)
}

fn go_data(name: &str) -> Vec<u8> {
    let mut data = (name.len() as u32).to_be_bytes().to_vec();
    data.extend_from_slice(name.as_bytes());
    data.extend_from_slice(&0u16.to_be_bytes());
    data
}

/// Connects and chooses export `v` with `NBD_OPT_GO`; returns the size and flags.
async fn attach(addr: std::net::SocketAddr) -> (TcpStream, u64, u16) {
    let mut s = connect(addr).await;
    send_option(&mut s, OPT_GO, &go_data("v")).await;
    let (mut size, mut flags) = (0, 0);
    loop {
        let (kind, data) = option_reply(&mut s, OPT_GO).await;
        match kind {
            REP_ACK => return (s, size, flags),
            REP_INFO if data[..2] == INFO_EXPORT.to_be_bytes() => {
                size = u64::from_be_bytes(data[2..10].try_into().unwrap());
                flags = u16::from_be_bytes(data[10..12].try_into().unwrap());
            }
            REP_INFO => {}
            other => panic!("reply {other:#x} to GO"),
        }
    }
}

async fn request(s: &mut TcpStream, command: u16, flags: u16, offset: u64, len: u32, data: &[u8]) {
    let mut header = Vec::with_capacity(REQUEST_LEN + data.len());
    header.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
    header.extend_from_slice(&flags.to_be_bytes());
    header.extend_from_slice(&command.to_be_bytes());
    header.extend_from_slice(&(offset ^ 0x5a5a).to_be_bytes()); // the cookie
    header.extend_from_slice(&offset.to_be_bytes());
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(data);
    s.write_all(&header).await.unwrap();
}

/// A simple reply's error, checking its cookie.
async fn reply(s: &mut TcpStream, offset: u64) -> u32 {
    assert_eq!(s.read_u32().await.unwrap(), SIMPLE_REPLY_MAGIC);
    let error = s.read_u32().await.unwrap();
    assert_eq!(
        s.read_u64().await.unwrap(),
        offset ^ 0x5a5a,
        "cookie echoed"
    );
    error
}

async fn read(s: &mut TcpStream, offset: u64, len: u32) -> Result<Vec<u8>, u32> {
    request(s, 0, 0, offset, len, &[]).await;
    match reply(s, offset).await {
        0 => {
            let mut data = vec![0u8; len as usize];
            s.read_exact(&mut data).await.unwrap();
            Ok(data)
        }
        e => Err(e),
    }
}

#[tokio::test]
async fn the_handshake_lists_informs_refuses_unknown_exports_and_declines_other_options() {
    let addr = server().await;
    let mut s = connect(addr).await;

    send_option(&mut s, OPT_LIST, &[]).await;
    assert_eq!(
        option_reply(&mut s, OPT_LIST).await,
        (REP_SERVER, server_entry(b"v"))
    );
    assert_eq!(option_reply(&mut s, OPT_LIST).await.0, REP_ACK);

    send_option(&mut s, OPT_INFO, &go_data("other")).await;
    assert_eq!(option_reply(&mut s, OPT_INFO).await.0, REP_ERR_UNKNOWN);
    send_option(&mut s, OPT_INFO, &[0, 0]).await;
    assert_eq!(option_reply(&mut s, OPT_INFO).await.0, REP_ERR_INVALID);
    // Structured replies (8): declined, the client stays on simple replies.
    send_option(&mut s, 8, &[]).await;
    assert_eq!(option_reply(&mut s, 8).await.0, REP_ERR_UNSUP);

    // INFO on the default (empty) name answers with the export and its block sizes.
    send_option(&mut s, OPT_INFO, &go_data("")).await;
    let (kind, export) = option_reply(&mut s, OPT_INFO).await;
    assert_eq!(kind, REP_INFO);
    assert_eq!(&export[..2], &INFO_EXPORT.to_be_bytes());
    assert_eq!(u64::from_be_bytes(export[2..10].try_into().unwrap()), SIZE);
    let (kind, sizes) = option_reply(&mut s, OPT_INFO).await;
    assert_eq!(
        (kind, &sizes[..2]),
        (REP_INFO, &INFO_BLOCK_SIZE.to_be_bytes()[..])
    );
    assert_eq!(option_reply(&mut s, OPT_INFO).await.0, REP_ACK);

    send_option(&mut s, OPT_ABORT, &[]).await;
    assert_eq!(option_reply(&mut s, OPT_ABORT).await.0, REP_ACK);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.expect("closed");
    assert!(rest.is_empty());

    // A client not speaking fixed newstyle is dropped at once.
    let mut old = TcpStream::connect(addr).await.unwrap();
    let mut greeting = [0u8; 18];
    old.read_exact(&mut greeting).await.unwrap();
    old.write_u32(0).await.unwrap();
    let mut rest = Vec::new();
    old.read_to_end(&mut rest).await.expect("closed");
    assert!(rest.is_empty());
}

#[tokio::test]
async fn commands_read_write_zero_flush_and_refuse_what_is_out_of_range() {
    let addr = server().await;
    let (mut s, size, flags) = attach(addr).await;
    assert_eq!(size, SIZE);
    for flag in [
        TX_HAS_FLAGS,
        TX_SEND_FLUSH,
        TX_SEND_FUA,
        TX_SEND_TRIM,
        TX_SEND_WRITE_ZEROES,
    ] {
        assert_ne!(flags & flag, 0, "flag {flag:#x}");
    }
    assert_eq!(flags & TX_READ_ONLY, 0);

    assert_eq!(read(&mut s, 1000, 10).await, Ok(vec![0; 10]), "a hole");
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    request(&mut s, 1, CMD_FLAG_FUA, 777, data.len() as u32, &data).await;
    assert_eq!(reply(&mut s, 777).await, 0);
    assert_eq!(read(&mut s, 777, 10_000).await, Ok(data.clone()));

    // TRIM and WRITE_ZEROES (with and without NO_HOLE) read back as zeros.
    request(&mut s, 4, 0, 1000, 100, &[]).await;
    assert_eq!(reply(&mut s, 1000).await, 0);
    request(&mut s, 6, 0, 2000, 100, &[]).await;
    assert_eq!(reply(&mut s, 2000).await, 0);
    request(&mut s, 6, CMD_FLAG_NO_HOLE | CMD_FLAG_FUA, 3000, 100, &[]).await;
    assert_eq!(reply(&mut s, 3000).await, 0);
    let mut expected = data.clone();
    for at in [1000, 2000, 3000] {
        expected[at - 777..at - 777 + 100].fill(0);
    }
    assert_eq!(read(&mut s, 777, 10_000).await, Ok(expected));
    request(&mut s, 3, 0, 0, 0, &[]).await;
    assert_eq!(reply(&mut s, 0).await, 0, "flush");

    // Past the end: refused, nothing written; the connection stays usable.
    assert_eq!(read(&mut s, SIZE - 5, 10).await, Err(EINVAL));
    request(&mut s, 1, 0, SIZE - 5, 10, &[7; 10]).await;
    assert_eq!(reply(&mut s, SIZE - 5).await, ENOSPC);
    request(&mut s, 6, 0, SIZE, 1, &[]).await;
    assert_eq!(reply(&mut s, SIZE).await, ENOSPC);
    assert_eq!(read(&mut s, SIZE - 5, 5).await, Ok(vec![0; 5]));
    assert_eq!(read(&mut s, 0, 64 << 20).await, Err(EOVERFLOW));
    // Unknown commands (CACHE, BLOCK_STATUS) are invalid here.
    request(&mut s, 5, 0, 0, 10, &[]).await;
    assert_eq!(reply(&mut s, 0).await, EINVAL);

    // Another connection sees the writes (multi-connection consistency).
    let (mut other, _, _) = attach(addr).await;
    assert_eq!(read(&mut other, 777, 3).await, Ok(data[..3].to_vec()));

    request(&mut s, 2, 0, 0, 0, &[]).await;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.expect("closed after DISC");
    assert!(rest.is_empty());
}

#[tokio::test]
async fn the_catalog_checks_names_and_sizes_and_refuses_changes_to_an_attached_volume() {
    let (fs, catalog) = catalog_with_volume().await;
    let nothing = |_bucket: String| async { Ok::<(), std::io::Error>(()) };
    assert!(matches!(
        catalog.create("v", SIZE, nothing).await,
        Err(CatalogError::Exists(_))
    ));
    for bad in ["", "V", "-v", &"a".repeat(60)] {
        assert!(
            matches!(
                catalog.create(bad, SIZE, nothing).await,
                Err(CatalogError::BadName(_))
            ),
            "{bad:?}"
        );
    }
    for size in [0, 1000, u64::MAX] {
        assert!(matches!(
            catalog.create("w", size, nothing).await,
            Err(CatalogError::BadSize(_))
        ));
    }
    let list = catalog.list().await.expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].name.as_str(), list[0].size), ("v", SIZE));
    assert!(!list[0].attached);

    assert!(matches!(
        catalog.resize("v", SIZE / 2, false).await,
        Err(CatalogError::Shrink { .. })
    ));
    catalog.resize("v", 2 * SIZE, false).await.expect("grow");
    assert_eq!(catalog.list().await.unwrap()[0].size, 2 * SIZE);

    // While attached: shown, and neither resized nor removed.
    let volume = Volume::attach(fs.clone(), "v").await.expect("attach");
    assert!(catalog.list().await.unwrap()[0].attached);
    assert!(matches!(
        catalog.resize("v", 4 * SIZE, false).await,
        Err(CatalogError::Attached(_))
    ));
    assert!(matches!(
        catalog.remove("v").await,
        Err(CatalogError::Attached(_))
    ));
    assert!(matches!(
        Volume::attach(fs.clone(), "missing").await,
        Err(AttachError::Catalog(CatalogError::NotFound(_)))
    ));
    volume.detach().await.expect("detach");
    catalog.remove("v").await.expect("remove");
    assert!(catalog.list().await.unwrap().is_empty());
    assert!(matches!(
        catalog.remove("v").await,
        Err(CatalogError::NotFound(_))
    ));
}

#[tokio::test]
async fn snapshots_are_read_only_copies_and_keep_their_volume() {
    let (fs, catalog) = catalog_with_volume().await;
    let volume = Volume::attach(fs.clone(), "v").await.expect("attach");
    volume.write(0, b"first", false).await.expect("write");
    volume.flush().await.expect("flush");
    catalog.snapshot("v", "s1").await.expect("snapshot");
    assert!(matches!(
        catalog.snapshot("v", "s1").await,
        Err(CatalogError::SnapshotExists(_))
    ));
    assert!(matches!(
        catalog.snapshot("v", "Bad").await,
        Err(CatalogError::BadName(_))
    ));
    volume.write(0, b"later", false).await.expect("write");

    let snap = Volume::open_snapshot(fs.clone(), "v", "s1")
        .await
        .expect("open the snapshot");
    assert!(snap.read_only());
    assert_eq!(snap.read(0, 5).await.expect("read"), b"first");
    assert!(matches!(
        snap.write(0, b"x", false).await,
        Err(DeviceError::ReadOnly)
    ));
    assert_eq!(volume.read(0, 5).await.expect("read"), b"later");
    snap.detach().await.expect("close the snapshot");

    // Over NBD: flagged read-only, and a write is refused with EPERM.
    let snap = Volume::open_snapshot(fs.clone(), "v", "s1")
        .await
        .expect("open the snapshot");
    let addr = serve(snap).await;
    let (mut s, _, flags) = attach(addr).await;
    assert_ne!(flags & TX_READ_ONLY, 0);
    request(&mut s, 1, 0, 0, 1, b"x").await;
    assert_eq!(reply(&mut s, 0).await, EPERM);
    assert_eq!(read(&mut s, 0, 5).await, Ok(b"first".to_vec()));
    volume.detach().await.expect("detach");

    assert_eq!(catalog.list().await.unwrap()[0].snapshots, vec!["s1"]);
    assert!(matches!(
        catalog.remove("v").await,
        Err(CatalogError::HasSnapshots { count: 1, .. })
    ));
    assert!(matches!(
        catalog.remove_snapshot("v", "s2").await,
        Err(CatalogError::SnapshotNotFound(_))
    ));
    catalog
        .remove_snapshot("v", "s1")
        .await
        .expect("remove the snapshot");
    catalog.remove("v").await.expect("remove the volume");
}
