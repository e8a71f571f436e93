//! Typed failure reasons carried across gRPC: a server attaches an [`ErrorReason`] to a
//! status's details and a client reads it back, so nothing is recognised by the text of
//! an error message.

use prost::Message;

use crate::common::{ErrorDetail, ErrorReason};

/// `status` carrying `reason` in its details.
pub fn with_reason(
    code: tonic::Code,
    message: impl Into<String>,
    reason: ErrorReason,
) -> tonic::Status {
    let detail = ErrorDetail {
        reason: reason as i32,
    };
    tonic::Status::with_details(code, message, detail.encode_to_vec().into())
}

/// The reason a status carries, if it carries a known one.
pub fn reason_of(status: &tonic::Status) -> Option<ErrorReason> {
    let detail = ErrorDetail::decode(status.details()).ok()?;
    match ErrorReason::try_from(detail.reason).ok()? {
        ErrorReason::Unspecified => None,
        reason => Some(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_survives_the_status_and_plain_statuses_have_none() {
        let s = with_reason(
            tonic::Code::ResourceExhausted,
            "disk full",
            ErrorReason::NoSpace,
        );
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(s.message(), "disk full");
        assert_eq!(reason_of(&s), Some(ErrorReason::NoSpace));
        assert_eq!(reason_of(&tonic::Status::resource_exhausted("busy")), None);
        let garbage = tonic::Status::with_details(tonic::Code::Internal, "x", vec![0xff; 3].into());
        assert_eq!(reason_of(&garbage), None);
    }
}
