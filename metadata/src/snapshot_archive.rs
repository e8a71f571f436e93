//! A state snapshot on the wire: the files of a RocksDB checkpoint as one byte stream,
//! read straight from the checkpoint (nothing is copied to build it) and unpacked on the
//! receiving replica into a new database directory as its bytes arrive.
//!
//! Layout: the magic `CAIRNSNAP1`, a little-endian u32 file count, then per file a u16
//! name length, the name and a u64 length; then the files' bytes in that order.
//!
//! `SnapshotData` is openraft's snapshot type: an outgoing archive (read, seek) or one
//! being unpacked as it arrives (write; seek back for a resend).

use std::io::{self, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

const MAGIC: &[u8] = b"CAIRNSNAP1";
/// Longest file name accepted (RocksDB's are short: `000123.sst`, `MANIFEST-000005`).
const NAME_MAX: usize = 255;
/// Most files accepted in one archive.
const FILES_MAX: u32 = 1_000_000;

/// A checkpoint directory's files as one stream.
pub struct ArchiveReader {
    header: Vec<u8>,
    files: Vec<(std::fs::File, u64)>,
    len: u64,
    pos: u64,
}

impl ArchiveReader {
    /// Opens every file of `dir` (a flat checkpoint directory).
    pub fn open(dir: &Path) -> io::Result<Self> {
        let mut entries: Vec<(String, std::fs::File, u64)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            let name = entry.file_name().into_string().map_err(|n| {
                io::Error::new(io::ErrorKind::InvalidData, format!("file name {n:?}"))
            })?;
            let file = std::fs::File::open(entry.path())?;
            let len = file.metadata()?.len();
            entries.push((name, file, len));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (name, _, len) in &entries {
            header.extend_from_slice(&(name.len() as u16).to_le_bytes());
            header.extend_from_slice(name.as_bytes());
            header.extend_from_slice(&len.to_le_bytes());
        }
        let len = header.len() as u64 + entries.iter().map(|e| e.2).sum::<u64>();
        Ok(ArchiveReader {
            header,
            files: entries.into_iter().map(|(_, f, l)| (f, l)).collect(),
            len,
            pos: 0,
        })
    }

    /// Fills `out` from the current position, short only at the end of the archive;
    /// returns how much it filled.
    pub fn read_full(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut len = 0;
        while len < out.len() {
            match self.read(&mut out[len..])? {
                0 => break,
                n => len += n,
            }
        }
        Ok(len)
    }

    /// Back to the first byte.
    pub fn rewind(&mut self) {
        self.pos = 0;
    }

    /// Bytes in the whole stream.
    pub fn total_bytes(&self) -> u64 {
        self.len
    }

    /// Reads at the current position (blocking: a local file, one chunk at a time).
    pub fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let header_len = self.header.len() as u64;
        if self.pos < header_len {
            let from = self.pos as usize;
            let n = out.len().min(self.header.len() - from);
            out[..n].copy_from_slice(&self.header[from..from + n]);
            self.pos += n as u64;
            return Ok(n);
        }
        let mut start = header_len;
        for (file, len) in &self.files {
            if self.pos < start + len {
                let offset = self.pos - start;
                let want = out.len().min((len - offset) as usize);
                let n = file.read_at(&mut out[..want], offset)?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "a checkpoint file shrank while being sent",
                    ));
                }
                self.pos += n as u64;
                return Ok(n);
            }
            start += len;
        }
        Ok(0)
    }
}

/// Largest archive header accepted (a checkpoint has hundreds of files, not millions).
const HEADER_MAX: usize = 16 << 20;

/// The file list at the start of an archive: each file's name and length.
#[derive(Debug, PartialEq)]
struct Header {
    files: Vec<(String, u64)>,
    /// Bytes of the header itself.
    len: u64,
}

/// Parses the header at the start of `bytes`: `None` while more bytes are needed.
fn parse_header(bytes: &[u8]) -> io::Result<Option<Header>> {
    fn take<'a>(bytes: &'a [u8], at: &mut usize, n: usize) -> Option<&'a [u8]> {
        let out = bytes.get(*at..*at + n)?;
        *at += n;
        Some(out)
    }
    let mut at = 0;
    let Some(magic) = take(bytes, &mut at, MAGIC.len()) else {
        return Ok(None);
    };
    if magic != MAGIC {
        return Err(invalid("not a Cairn state snapshot (bad magic)"));
    }
    let Some(count) = take(bytes, &mut at, 4) else {
        return Ok(None);
    };
    let count = u32::from_le_bytes(count.try_into().expect("4 bytes"));
    if count > FILES_MAX {
        return Err(invalid(format!("{count} files in one snapshot")));
    }
    let mut files = Vec::new();
    for _ in 0..count {
        let Some(name_len) = take(bytes, &mut at, 2) else {
            return Ok(None);
        };
        let name_len = u16::from_le_bytes(name_len.try_into().expect("2 bytes")) as usize;
        if name_len == 0 || name_len > NAME_MAX {
            return Err(invalid(format!("file name of {name_len} bytes")));
        }
        let Some(name) = take(bytes, &mut at, name_len) else {
            return Ok(None);
        };
        let name = String::from_utf8(name.to_vec()).map_err(|_| invalid("file name not UTF-8"))?;
        if name.contains('/') || name == "." || name == ".." {
            return Err(invalid(format!("file name {name:?}")));
        }
        let Some(len) = take(bytes, &mut at, 8) else {
            return Ok(None);
        };
        files.push((name, u64::from_le_bytes(len.try_into().expect("8 bytes"))));
    }
    Ok(Some(Header {
        files,
        len: at as u64,
    }))
}

/// Unpacks an archive into a new directory as its bytes arrive: every byte is written
/// once, straight into its file, and nothing is buffered but the header.
pub struct ArchiveWriter {
    dir: PathBuf,
    /// Where the next write lands (a seek back makes the next bytes a resend).
    pos: u64,
    /// Bytes received so far, from the start without a gap.
    received: u64,
    /// The header's bytes until it parses.
    pending_header: Vec<u8>,
    /// The files, each with the stream offset of its first byte, once the header parsed.
    files: Vec<(std::fs::File, u64, u64)>,
    /// The whole stream's length, once the header parsed.
    total: Option<u64>,
    /// Syncs each file as soon as its last byte is written, while later files arrive.
    syncer: Option<Syncer>,
}

/// A thread that syncs the files sent to it, one after the other.
struct Syncer {
    files: std::sync::mpsc::Sender<std::fs::File>,
    thread: std::thread::JoinHandle<io::Result<()>>,
}

impl Syncer {
    fn start() -> io::Result<Syncer> {
        let (files, todo) = std::sync::mpsc::channel::<std::fs::File>();
        let thread = std::thread::Builder::new()
            .name("snapshot-sync".into())
            .spawn(move || todo.iter().try_for_each(|file| file.sync_data()))?;
        Ok(Syncer { files, thread })
    }

    /// Queues `file` for syncing (a failed sync is reported by `finish`).
    fn sync(&self, file: &std::fs::File) -> io::Result<()> {
        let _ = self.files.send(file.try_clone()?);
        Ok(())
    }

    /// Waits for every queued sync.
    fn finish(self) -> io::Result<()> {
        drop(self.files);
        self.thread
            .join()
            .map_err(|_| io::Error::other("the snapshot sync thread panicked"))?
    }
}

impl ArchiveWriter {
    /// Creates `dir` (which must not exist) to unpack into.
    pub fn create(dir: PathBuf) -> io::Result<Self> {
        std::fs::create_dir(&dir)?;
        Ok(ArchiveWriter {
            dir,
            pos: 0,
            received: 0,
            pending_header: Vec::new(),
            files: Vec::new(),
            total: None,
            syncer: None,
        })
    }

    /// The directory being filled.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `data` at the current position (blocking: local files). Bytes before what
    /// was already received are a resend and skipped; a position past it is a gap.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.pos > self.received {
            return Err(invalid(format!(
                "a write at byte {} of a snapshot received up to byte {}",
                self.pos, self.received
            )));
        }
        let skip = ((self.received - self.pos) as usize).min(data.len());
        self.pos += data.len() as u64;
        let mut data = &data[skip..];
        if data.is_empty() {
            return Ok(());
        }
        if self.total.is_none() {
            let room = HEADER_MAX - self.pending_header.len();
            let n = data.len().min(room);
            self.pending_header.extend_from_slice(&data[..n]);
            match parse_header(&self.pending_header)? {
                None if n == room => {
                    return Err(invalid(format!("a header longer than {HEADER_MAX} bytes")))
                }
                None => {
                    self.received += n as u64;
                    return Ok(());
                }
                Some(header) => {
                    let before = self.pending_header.len() - n;
                    let used = header.len as usize - before;
                    self.received += used as u64;
                    data = &data[used..];
                    self.open_files(header)?;
                }
            }
        }
        let total = self.total.expect("the header parsed");
        if self.received + data.len() as u64 > total {
            return Err(invalid(format!(
                "{} bytes past the end of a snapshot of {total} bytes",
                self.received + data.len() as u64 - total
            )));
        }
        while !data.is_empty() {
            // The file holding byte `received`: the last one starting at or before it.
            let at = self.received;
            let i = self.files.partition_point(|f| f.1 <= at) - 1;
            let (file, start, len) = &self.files[i];
            let n = data.len().min((start + len - at) as usize);
            file.write_all_at(&data[..n], at - start)?;
            if at + n as u64 == start + len {
                self.syncer
                    .as_ref()
                    .expect("started with the files")
                    .sync(file)?;
            }
            self.received += n as u64;
            data = &data[n..];
        }
        Ok(())
    }

    fn open_files(&mut self, header: Header) -> io::Result<()> {
        let syncer = Syncer::start()?;
        let mut start = header.len;
        for (name, len) in header.files {
            let file = std::fs::File::create_new(self.dir.join(&name))?;
            if len == 0 {
                syncer.sync(&file)?;
            }
            self.files.push((file, start, len));
            start += len;
        }
        self.syncer = Some(syncer);
        self.total = Some(start);
        self.pending_header = Vec::new();
        Ok(())
    }

    /// Whether every byte of the archive arrived.
    pub fn check_complete(&self) -> io::Result<()> {
        match self.total {
            Some(total) if self.received == total => Ok(()),
            total => Err(invalid(format!(
                "the snapshot ended after {} of {} bytes",
                self.received,
                total.map_or("?".into(), |t| t.to_string())
            ))),
        }
    }

    /// Checks that every byte arrived, waits until every file is synced, syncs the
    /// directory, and returns it.
    pub fn finish(mut self) -> io::Result<PathBuf> {
        self.check_complete()?;
        if let Some(syncer) = self.syncer.take() {
            syncer.finish()?;
        }
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(std::mem::take(&mut self.dir))
    }
}

impl Drop for ArchiveWriter {
    /// A snapshot that was not finished (a broken transfer, a refused archive) leaves
    /// nothing behind.
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// openraft's snapshot data: an archive to send, or one being received.
pub enum SnapshotData {
    Outgoing(ArchiveReader),
    Incoming(ArchiveWriter),
}

impl SnapshotData {
    /// Unpacks this snapshot into `dir` and returns it: a received one is already there
    /// (moved to `dir`); an outgoing one (openraft's storage tests install those) is
    /// copied.
    pub fn into_dir(self, dir: &Path) -> io::Result<()> {
        let received = match self {
            SnapshotData::Incoming(writer) => writer.finish()?,
            SnapshotData::Outgoing(mut reader) => {
                let tmp = dir.with_extension("unpacking");
                let mut writer = ArchiveWriter::create(tmp)?;
                let mut buf = vec![0; 1 << 20];
                reader.rewind();
                loop {
                    let n = reader.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    writer.write(&buf[..n])?;
                }
                writer.finish()?
            }
        };
        std::fs::rename(&received, dir)?;
        std::fs::File::open(dir.parent().unwrap_or(Path::new(".")))?.sync_all()
    }
}

impl AsyncRead for SnapshotData {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SnapshotData::Outgoing(reader) => {
                let n = reader.read(buf.initialize_unfilled())?;
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            SnapshotData::Incoming(_) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "a snapshot being received is write only",
            ))),
        }
    }
}

impl AsyncWrite for SnapshotData {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SnapshotData::Outgoing(_) => Poll::Ready(Err(read_only())),
            SnapshotData::Incoming(writer) => Poll::Ready(writer.write(data).map(|()| data.len())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let (pos, len) = match self.get_mut() {
            SnapshotData::Outgoing(reader) => (&mut reader.pos, Some(reader.len)),
            SnapshotData::Incoming(writer) => (&mut writer.pos, writer.total),
        };
        let target = match position {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => len.and_then(|l| l.checked_add_signed(d)),
            SeekFrom::Current(d) => pos.checked_add_signed(d),
        };
        *pos = target.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek outside the snapshot")
        })?;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(match self.get_mut() {
            SnapshotData::Outgoing(reader) => reader.pos,
            SnapshotData::Incoming(writer) => writer.pos,
        }))
    }
}

fn read_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "an outgoing snapshot is read only",
    )
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive_of(files: &[(&str, Vec<u8>)]) -> (tempfile::TempDir, Vec<u8>) {
        let src = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            std::fs::write(src.path().join(name), bytes).unwrap();
        }
        let mut reader = ArchiveReader::open(src.path()).unwrap();
        let mut bytes = vec![0; reader.total_bytes() as usize];
        assert_eq!(reader.read_full(&mut bytes).unwrap(), bytes.len());
        assert_eq!(
            reader.read(&mut [0; 8]).unwrap(),
            0,
            "the stream ends at its length"
        );
        (src, bytes)
    }

    fn sample() -> (tempfile::TempDir, Vec<u8>) {
        let sst: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        archive_of(&[
            ("000007.sst", sst),
            ("CURRENT", b"MANIFEST-000005\n".to_vec()),
            ("empty", Vec::new()),
        ])
    }

    #[test]
    fn pieces_of_any_size_unpack_to_the_same_files_and_resends_are_skipped() {
        let (src, bytes) = sample();
        for piece in [1, 7, 13, 4096, 65_537, bytes.len()] {
            let dst = tempfile::tempdir().unwrap();
            let mut data =
                SnapshotData::Incoming(ArchiveWriter::create(dst.path().join("incoming")).unwrap());
            let SnapshotData::Incoming(writer) = &mut data else {
                unreachable!()
            };
            let mut at = 0;
            while at < bytes.len() {
                let end = (at + piece).min(bytes.len());
                writer.write(&bytes[at..end]).unwrap();
                // A chunk sent again (its answer was lost): from a little before.
                if at > 3 && end % 3 == 0 {
                    writer.pos = at as u64 - 3;
                    writer.write(&bytes[at - 3..end]).unwrap();
                }
                at = end;
            }
            let out = dst.path().join("db");
            data.into_dir(&out).unwrap();
            for name in ["000007.sst", "CURRENT", "empty"] {
                assert_eq!(
                    std::fs::read(out.join(name)).unwrap(),
                    std::fs::read(src.path().join(name)).unwrap(),
                    "{name}, pieces of {piece}"
                );
            }
        }
    }

    #[test]
    fn an_outgoing_archive_installs_by_copy() {
        let (src, _) = sample();
        let dst = tempfile::tempdir().unwrap();
        let out = dst.path().join("db");
        let mut reader = ArchiveReader::open(src.path()).unwrap();
        reader.read(&mut [0; 100]).unwrap(); // a sender had read some of it
        SnapshotData::Outgoing(reader).into_dir(&out).unwrap();
        assert_eq!(
            std::fs::read(out.join("000007.sst")).unwrap(),
            std::fs::read(src.path().join("000007.sst")).unwrap()
        );
    }

    #[test]
    fn every_prefix_of_a_header_asks_for_more() {
        let (_src, bytes) = sample();
        let full = parse_header(&bytes).unwrap().unwrap();
        assert_eq!(full.files.len(), 3);
        for n in 0..full.len as usize {
            assert_eq!(parse_header(&bytes[..n]).unwrap(), None, "{n} bytes");
        }
    }

    #[test]
    fn truncated_overlong_gapped_or_hostile_archives_are_refused() {
        let (_src, bytes) = sample();
        let dst = tempfile::tempdir().unwrap();
        let unpack = |name: &str, bytes: &[u8]| -> io::Result<PathBuf> {
            let mut writer = ArchiveWriter::create(dst.path().join(name))?;
            writer.write(bytes)?;
            writer.finish()
        };
        let err = unpack("t", &bytes[..bytes.len() - 1]).unwrap_err();
        let want = format!("after {} of {} bytes", bytes.len() - 1, bytes.len());
        assert!(err.to_string().contains(&want), "{err}");
        let mut longer = bytes.clone();
        longer.push(0);
        let err = unpack("l", &longer).unwrap_err();
        assert!(err.to_string().contains("1 bytes past the end"), "{err}");
        let mut hostile = bytes.clone();
        let at = MAGIC.len() + 4 + 2;
        hostile[at..at + 1].copy_from_slice(b"/");
        let err = unpack("h", &hostile).unwrap_err();
        assert!(err.to_string().contains("file name"), "{err}");
        let err = unpack("g", b"garbage of some length").unwrap_err();
        assert!(err.to_string().contains("bad magic"), "{err}");
        let err = unpack("e", b"").unwrap_err();
        assert!(err.to_string().contains("after 0 of ? bytes"), "{err}");
        for name in ["t", "l", "h", "g", "e"] {
            assert!(!dst.path().join(name).exists(), "{name} left behind");
        }

        let mut writer = ArchiveWriter::create(dst.path().join("gap")).unwrap();
        writer.write(&bytes[..100]).unwrap();
        writer.pos = 200;
        let err = writer.write(&bytes[200..300]).unwrap_err();
        assert!(err.to_string().contains("received up to byte 100"), "{err}");
    }
}
