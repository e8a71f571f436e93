//! The fixed-newstyle handshake, server side: the greeting, then the client's options
//! until it chooses the export (`NBD_OPT_GO`, or the older `NBD_OPT_EXPORT_NAME`) or
//! gives up. `NBD_OPT_INFO` and `NBD_OPT_LIST` are answered; every other option (TLS,
//! structured replies, metadata contexts) is declined with `NBD_REP_ERR_UNSUP`, which
//! clients take as "use the baseline protocol".

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::protocol::*;

/// The largest option data accepted (export names are at most 4 KiB by the protocol).
const MAX_OPTION_DATA: u32 = 64 << 10;
/// The most options one client may send before choosing an export.
const MAX_OPTIONS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("handshake IO: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("handshake: the client does not speak fixed newstyle (flags {0:#x})")]
    NotFixedNewstyle(u32),
    #[error("handshake: option data of {0} bytes")]
    OptionTooLong(u32),
    #[error("handshake: more than {MAX_OPTIONS} options")]
    TooManyOptions,
    #[error("handshake: the client asked for export {0:?}, which this server does not serve")]
    UnknownExport(String),
}

/// How the handshake ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The client chose the export: transmission begins.
    Transmission,
    /// The client went away (`NBD_OPT_ABORT`, or it closed after listing).
    Aborted,
}

/// Whether a client asking for `requested` means this server's export `name` (an empty
/// name is the default export).
fn is_ours(requested: &[u8], name: &str) -> bool {
    requested.is_empty() || requested == name.as_bytes()
}

/// Runs the handshake for a server that serves one export, `name`, described by `info`.
pub async fn negotiate<S>(
    stream: &mut S,
    name: &str,
    info: &ExportInfo,
) -> Result<Outcome, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(&greeting()).await?;
    stream.flush().await?;
    let client_flags = stream.read_u32().await?;
    if client_flags & CLIENT_FIXED_NEWSTYLE == 0
        || client_flags & !(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES) != 0
    {
        return Err(HandshakeError::NotFixedNewstyle(client_flags));
    }
    let no_zeroes = client_flags & CLIENT_NO_ZEROES != 0;
    for _ in 0..MAX_OPTIONS {
        let mut header = [0u8; 16];
        match stream.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(Outcome::Aborted),
            Err(e) => return Err(e.into()),
        }
        let (option, len) = parse_option_header(&header)?;
        if len > MAX_OPTION_DATA {
            return Err(HandshakeError::OptionTooLong(len));
        }
        let mut data = vec![0u8; len as usize];
        stream.read_exact(&mut data).await?;
        let reply = |kind, data: &[u8]| option_reply(option, kind, data);
        match option {
            OPT_EXPORT_NAME => {
                if !is_ours(&data, name) {
                    // The protocol has no error reply here: the server closes.
                    return Err(HandshakeError::UnknownExport(
                        String::from_utf8_lossy(&data).into_owned(),
                    ));
                }
                stream
                    .write_all(&export_name_reply(info, no_zeroes))
                    .await?;
                stream.flush().await?;
                return Ok(Outcome::Transmission);
            }
            OPT_ABORT => {
                // The client may close without reading the answer.
                let _ = stream.write_all(&reply(REP_ACK, &[])).await;
                let _ = stream.flush().await;
                return Ok(Outcome::Aborted);
            }
            OPT_LIST if !data.is_empty() => {
                stream.write_all(&reply(REP_ERR_INVALID, &[])).await?;
            }
            OPT_LIST => {
                stream
                    .write_all(&reply(REP_SERVER, &server_entry(name.as_bytes())))
                    .await?;
                stream.write_all(&reply(REP_ACK, &[])).await?;
            }
            OPT_INFO | OPT_GO => match parse_info_request(&data) {
                Err(e) => {
                    let detail = e.to_string();
                    stream
                        .write_all(&reply(REP_ERR_INVALID, detail.as_bytes()))
                        .await?;
                }
                Ok(request) if !is_ours(&request.name, name) => {
                    let detail = format!(
                        "no export {:?} here",
                        String::from_utf8_lossy(&request.name)
                    );
                    stream
                        .write_all(&reply(REP_ERR_UNKNOWN, detail.as_bytes()))
                        .await?;
                }
                Ok(request) => {
                    stream
                        .write_all(&reply(REP_INFO, &info_export(info)))
                        .await?;
                    // Sent unasked too: a minimum of 1 byte asks nothing of the client.
                    stream
                        .write_all(&reply(REP_INFO, &info_block_size(info)))
                        .await?;
                    if request.wanted.contains(&INFO_NAME) {
                        let text = info_text(INFO_NAME, name.as_bytes());
                        stream.write_all(&reply(REP_INFO, &text)).await?;
                    }
                    if request.wanted.contains(&INFO_DESCRIPTION) {
                        let text = info_text(INFO_DESCRIPTION, info.description.as_bytes());
                        stream.write_all(&reply(REP_INFO, &text)).await?;
                    }
                    stream.write_all(&reply(REP_ACK, &[])).await?;
                    if option == OPT_GO {
                        stream.flush().await?;
                        return Ok(Outcome::Transmission);
                    }
                }
            },
            _ => {
                stream.write_all(&reply(REP_ERR_UNSUP, &[])).await?;
            }
        }
        stream.flush().await?;
    }
    Err(HandshakeError::TooManyOptions)
}
