//! The NBD protocol's wire format, as far as this server speaks it: the fixed-newstyle
//! handshake (greeting, options and their replies, the `NBD_OPT_GO`/`NBD_OPT_INFO`
//! information), and the transmission phase's requests and simple replies. Pure: bytes
//! in, values out and back; the IO is in `handshake.rs` and `transmission.rs`.
//!
//! The numbers are the protocol's (`doc/proto.md` of the NBD project); every integer is
//! big-endian on the wire.

/// The greeting's first word, "NBDMAGIC".
pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// "IHAVEOPT": the greeting's second word, and the start of every option request.
pub const OPTION_MAGIC: u64 = 0x4948_4156_454f_5054;
/// The start of every option reply.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// The start of every transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// The start of every simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

/// Handshake flags the server sends.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
/// Client flags.
pub const CLIENT_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const CLIENT_NO_ZEROES: u32 = 1 << 1;

/// Transmission flags (per export).
pub const TX_HAS_FLAGS: u16 = 1 << 0;
pub const TX_READ_ONLY: u16 = 1 << 1;
pub const TX_SEND_FLUSH: u16 = 1 << 2;
pub const TX_SEND_FUA: u16 = 1 << 3;
pub const TX_SEND_TRIM: u16 = 1 << 5;
pub const TX_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub const TX_CAN_MULTI_CONN: u16 = 1 << 8;

/// Option numbers.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;

/// Option reply types.
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
pub const REP_ERR_INVALID: u32 = (1 << 31) + 3;
pub const REP_ERR_UNKNOWN: u32 = (1 << 31) + 6;

/// `NBD_REP_INFO` kinds.
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

/// Command flags.
pub const CMD_FLAG_FUA: u16 = 1 << 0;
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;

/// Errors a reply may carry (the protocol's numbers, equal to Linux errno values).
pub const EPERM: u32 = 1;
pub const EIO: u32 = 5;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;
pub const EOVERFLOW: u32 = 75;
pub const ENOTSUP: u32 = 95;

/// Bytes of a request header.
pub const REQUEST_LEN: usize = 28;

/// The greeting a fixed-newstyle server opens with.
pub fn greeting() -> [u8; 18] {
    let mut out = [0u8; 18];
    out[..8].copy_from_slice(&NBD_MAGIC.to_be_bytes());
    out[8..16].copy_from_slice(&OPTION_MAGIC.to_be_bytes());
    out[16..].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    out
}

/// An option request's header: magic, option, length of the data that follows.
pub fn parse_option_header(header: &[u8; 16]) -> Result<(u32, u32), ProtocolError> {
    let magic = u64::from_be_bytes(header[..8].try_into().expect("8 bytes"));
    if magic != OPTION_MAGIC {
        return Err(ProtocolError::BadMagic("option"));
    }
    let option = u32::from_be_bytes(header[8..12].try_into().expect("4 bytes"));
    let len = u32::from_be_bytes(header[12..16].try_into().expect("4 bytes"));
    Ok((option, len))
}

/// An option reply: header and data.
pub fn option_reply(option: u32, reply: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + data.len());
    out.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// The data of `NBD_OPT_INFO` and `NBD_OPT_GO`: the export's name and the information
/// kinds the client asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct InfoRequest {
    pub name: Vec<u8>,
    pub wanted: Vec<u16>,
}

pub fn parse_info_request(data: &[u8]) -> Result<InfoRequest, ProtocolError> {
    let short = || ProtocolError::Malformed("NBD_OPT_GO/INFO data is too short");
    let name_len = u32::from_be_bytes(data.get(..4).ok_or_else(short)?.try_into().expect("4"));
    let name_end = 4usize
        .checked_add(name_len as usize)
        .filter(|&end| end + 2 <= data.len())
        .ok_or_else(short)?;
    let name = data[4..name_end].to_vec();
    let count = u16::from_be_bytes(data[name_end..name_end + 2].try_into().expect("2"));
    let rest = &data[name_end + 2..];
    if rest.len() != usize::from(count) * 2 {
        return Err(ProtocolError::Malformed(
            "NBD_OPT_GO/INFO: the number of information requests does not match the length",
        ));
    }
    let wanted = rest
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    Ok(InfoRequest { name, wanted })
}

/// What the server tells a client about an export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportInfo {
    pub size: u64,
    pub flags: u16,
    /// Smallest, preferred and largest request sizes.
    pub block_sizes: (u32, u32, u32),
    pub description: String,
}

/// The data of `NBD_REP_INFO` / `NBD_INFO_EXPORT`.
pub fn info_export(info: &ExportInfo) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&INFO_EXPORT.to_be_bytes());
    out.extend_from_slice(&info.size.to_be_bytes());
    out.extend_from_slice(&info.flags.to_be_bytes());
    out
}

/// The data of `NBD_REP_INFO` / `NBD_INFO_BLOCK_SIZE`.
pub fn info_block_size(info: &ExportInfo) -> Vec<u8> {
    let (min, preferred, max) = info.block_sizes;
    let mut out = Vec::with_capacity(14);
    out.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    for v in [min, preferred, max] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

/// The data of `NBD_REP_INFO` carrying a name or description (`kind`).
pub fn info_text(kind: u16, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + text.len());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(text);
    out
}

/// The data of `NBD_REP_SERVER` (one export in `NBD_OPT_LIST`'s answer).
pub fn server_entry(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + name.len());
    out.extend_from_slice(&(name.len() as u32).to_be_bytes());
    out.extend_from_slice(name);
    out
}

/// The server's answer to `NBD_OPT_EXPORT_NAME` (the old way to choose an export): size,
/// flags and, unless the client said `NO_ZEROES`, 124 bytes of zeros.
pub fn export_name_reply(info: &ExportInfo, no_zeroes: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(134);
    out.extend_from_slice(&info.size.to_be_bytes());
    out.extend_from_slice(&info.flags.to_be_bytes());
    if !no_zeroes {
        out.extend_from_slice(&[0u8; 124]);
    }
    out
}

/// A transmission request's command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Read,
    Write,
    Disconnect,
    Flush,
    Trim,
    WriteZeroes,
    /// A command this server does not offer (`NBD_CMD_CACHE`, `BLOCK_STATUS`, ...).
    Other(u16),
}

impl Command {
    fn from_wire(n: u16) -> Command {
        match n {
            0 => Command::Read,
            1 => Command::Write,
            2 => Command::Disconnect,
            3 => Command::Flush,
            4 => Command::Trim,
            6 => Command::WriteZeroes,
            other => Command::Other(other),
        }
    }
}

/// One transmission request header (a `Write`'s data follows it on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub flags: u16,
    pub command: Command,
    /// The client's cookie, echoed in the reply.
    pub cookie: u64,
    pub offset: u64,
    pub len: u32,
}

impl Request {
    pub fn parse(header: &[u8; REQUEST_LEN]) -> Result<Request, ProtocolError> {
        let magic = u32::from_be_bytes(header[..4].try_into().expect("4 bytes"));
        if magic != REQUEST_MAGIC {
            return Err(ProtocolError::BadMagic("request"));
        }
        Ok(Request {
            flags: u16::from_be_bytes(header[4..6].try_into().expect("2 bytes")),
            command: Command::from_wire(u16::from_be_bytes(
                header[6..8].try_into().expect("2 bytes"),
            )),
            cookie: u64::from_be_bytes(header[8..16].try_into().expect("8 bytes")),
            offset: u64::from_be_bytes(header[16..24].try_into().expect("8 bytes")),
            len: u32::from_be_bytes(header[24..28].try_into().expect("4 bytes")),
        })
    }

    pub fn fua(&self) -> bool {
        self.flags & CMD_FLAG_FUA != 0
    }
}

/// A simple reply's header (a successful `Read`'s data follows it).
pub fn simple_reply(error: u32, cookie: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&error.to_be_bytes());
    out[8..].copy_from_slice(&cookie.to_be_bytes());
    out
}

/// A client broke the protocol; the connection is closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("bad {0} magic")]
    BadMagic(&'static str),
    #[error("{0}")]
    Malformed(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_is_the_fixed_newstyle_one() {
        let g = greeting();
        assert_eq!(&g[..8], b"NBDMAGIC");
        assert_eq!(&g[8..16], b"IHAVEOPT");
        assert_eq!(&g[16..], &[0, 3]);
    }

    #[test]
    fn option_headers_and_replies_round_trip_the_wire_layout() {
        let mut header = [0u8; 16];
        header[..8].copy_from_slice(b"IHAVEOPT");
        header[8..12].copy_from_slice(&OPT_GO.to_be_bytes());
        header[12..].copy_from_slice(&9u32.to_be_bytes());
        assert_eq!(parse_option_header(&header), Ok((OPT_GO, 9)));
        header[0] = b'X';
        assert_eq!(
            parse_option_header(&header),
            Err(ProtocolError::BadMagic("option"))
        );

        let reply = option_reply(OPT_GO, REP_ACK, b"ab");
        assert_eq!(&reply[..8], &OPTION_REPLY_MAGIC.to_be_bytes());
        assert_eq!(&reply[8..12], &[0, 0, 0, 7]);
        assert_eq!(&reply[12..16], &[0, 0, 0, 1]);
        assert_eq!(&reply[16..20], &[0, 0, 0, 2]);
        assert_eq!(&reply[20..], b"ab");
    }

    #[test]
    fn info_requests_parse_and_malformed_ones_are_refused() {
        let mut data = Vec::new();
        data.extend_from_slice(&3u32.to_be_bytes());
        data.extend_from_slice(b"vol");
        data.extend_from_slice(&2u16.to_be_bytes());
        data.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        data.extend_from_slice(&INFO_NAME.to_be_bytes());
        assert_eq!(
            parse_info_request(&data),
            Ok(InfoRequest {
                name: b"vol".to_vec(),
                wanted: vec![INFO_BLOCK_SIZE, INFO_NAME],
            })
        );
        // One request announced, two present; a name longer than the data; nothing.
        let mut wrong_count = data.clone();
        wrong_count[7..9].copy_from_slice(&1u16.to_be_bytes());
        let mut long_name = data.clone();
        long_name[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        for bad in [&wrong_count[..], &long_name[..], &[][..], &data[..5]] {
            assert!(
                matches!(parse_info_request(bad), Err(ProtocolError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn export_information_has_the_protocols_layout() {
        let info = ExportInfo {
            size: 1 << 30,
            flags: TX_HAS_FLAGS | TX_SEND_FLUSH,
            block_sizes: (1, 4096, 32 << 20),
            description: String::new(),
        };
        assert_eq!(
            info_export(&info),
            [&[0, 0][..], &(1u64 << 30).to_be_bytes(), &[0, 5]].concat()
        );
        assert_eq!(
            info_block_size(&info),
            [
                &[0, 3][..],
                &1u32.to_be_bytes(),
                &4096u32.to_be_bytes(),
                &(32u32 << 20).to_be_bytes()
            ]
            .concat()
        );
        assert_eq!(export_name_reply(&info, true).len(), 10);
        assert_eq!(export_name_reply(&info, false).len(), 134);
        assert_eq!(server_entry(b"v"), [0, 0, 0, 1, b'v']);
    }

    #[test]
    fn requests_parse_with_their_flags_and_unknown_commands_are_kept() {
        let mut header = [0u8; REQUEST_LEN];
        header[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        header[4..6].copy_from_slice(&CMD_FLAG_FUA.to_be_bytes());
        header[6..8].copy_from_slice(&1u16.to_be_bytes());
        header[8..16].copy_from_slice(&77u64.to_be_bytes());
        header[16..24].copy_from_slice(&4096u64.to_be_bytes());
        header[24..].copy_from_slice(&512u32.to_be_bytes());
        let r = Request::parse(&header).expect("parse");
        assert_eq!(r.command, Command::Write);
        assert!(r.fua());
        assert_eq!((r.cookie, r.offset, r.len), (77, 4096, 512));
        header[6..8].copy_from_slice(&5u16.to_be_bytes());
        assert_eq!(
            Request::parse(&header).expect("parse").command,
            Command::Other(5)
        );
        header[0] = 0;
        assert_eq!(
            Request::parse(&header),
            Err(ProtocolError::BadMagic("request"))
        );
        let reply = simple_reply(EIO, 77);
        assert_eq!(&reply[..4], &SIMPLE_REPLY_MAGIC.to_be_bytes());
        assert_eq!(&reply[4..8], &[0, 0, 0, 5]);
        assert_eq!(&reply[8..], &77u64.to_be_bytes());
    }
}
