//! The version of Cairn's RPC protocol, and the check that keeps daemons more than one
//! version apart from talking to each other.
//!
//! Every connection a [`Transport`](crate::Transport) makes names its release and
//! protocol in its user agent (`cairn/RELEASE cairn-protocol/N`), and every RPC handler
//! checks the caller's in [`authorize()`](crate::authorize()): a caller whose protocol is
//! more than one version from this daemon's is refused (`FAILED_PRECONDITION`) before
//! anything is done, naming both versions. A caller that names none (a client of the
//! public object API such as Python's grpcio, or a release from before protocol
//! versions) is served: the protobuf schemas stay compatible within one version.
//!
//! Raise [`PROTOCOL_VERSION`] when a change to an RPC is not one protobuf absorbs (a
//! field whose meaning changes, a message an older peer would misread). Added fields and
//! RPCs need no new version. A rolling upgrade then works one version at a time.

use std::ops::RangeInclusive;

/// This build's protocol.
pub const PROTOCOL_VERSION: u32 = 1;

const TOKEN: &str = "cairn-protocol/";

/// The caller protocols a daemon of this build serves: one version either side.
pub fn accepted() -> RangeInclusive<u32> {
    PROTOCOL_VERSION.saturating_sub(1)..=PROTOCOL_VERSION + 1
}

/// The user agent of this build's connections.
pub(crate) fn user_agent() -> String {
    format!(
        "cairn/{} {TOKEN}{PROTOCOL_VERSION}",
        env!("CARGO_PKG_VERSION")
    )
}

/// The protocol a request's user agent names, if it names one.
pub fn caller_protocol(metadata: &tonic::metadata::MetadataMap) -> Option<u32> {
    let agent = metadata.get("user-agent")?.to_str().ok()?;
    agent
        .split_whitespace()
        .find_map(|part| part.strip_prefix(TOKEN)?.parse().ok())
}

/// Refuses a request whose caller speaks a protocol this build does not serve.
#[allow(clippy::result_large_err)]
pub fn check<T>(request: &tonic::Request<T>, method: &str) -> Result<(), tonic::Status> {
    match caller_protocol(request.metadata()) {
        Some(theirs) if !accepted().contains(&theirs) => {
            let agent = request
                .metadata()
                .get("user-agent")
                .and_then(|a| a.to_str().ok())
                .unwrap_or("?");
            Err(tonic::Status::failed_precondition(format!(
                "{method}: the caller ({agent}) speaks Cairn protocol {theirs}; this daemon \
                 (release {}) speaks protocol {PROTOCOL_VERSION} and serves protocols {} to \
                 {}: upgrade one version at a time (docs/deploy.md, \"Upgrading\")",
                env!("CARGO_PKG_VERSION"),
                accepted().start(),
                accepted().end()
            )))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(agent: Option<&str>) -> tonic::Request<()> {
        let mut request = tonic::Request::new(());
        if let Some(agent) = agent {
            request
                .metadata_mut()
                .insert("user-agent", agent.parse().unwrap());
        }
        request
    }

    #[test]
    fn callers_one_version_apart_are_served_and_others_refused() {
        let own = user_agent();
        assert_eq!(
            caller_protocol(request(Some(&own)).metadata()),
            Some(PROTOCOL_VERSION)
        );
        // tonic appends its own name to ours.
        let with_tonic = format!("{own} tonic/0.14.9");
        assert!(check(&request(Some(&with_tonic)), "X").is_ok());
        for v in [PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1] {
            let agent = format!("cairn/9.9.9 {TOKEN}{v} tonic/0.14.9");
            assert!(check(&request(Some(&agent)), "X").is_ok(), "{v}");
        }
        let far = format!("cairn/9.9.9 {TOKEN}{}", PROTOCOL_VERSION + 2);
        let refused = check(&request(Some(&far)), "PutShard").unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(
            refused
                .message()
                .contains(&format!("speaks Cairn protocol {}", PROTOCOL_VERSION + 2)),
            "{}",
            refused.message()
        );
        // Foreign clients, and Cairn releases from before protocol versions.
        assert!(check(&request(Some("grpc-python/1.76.0 grpc-c/50.0.0")), "X").is_ok());
        assert!(check(&request(None), "X").is_ok());
    }
}
