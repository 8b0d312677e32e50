//! Maps aws-sdk-s3 errors to [`StoreError`] so the engine can act on them.
//!
//! Invariant: the mapping depends only on the error kind, HTTP status, S3
//! error code and the presence of S3's request-id header, never on message
//! text.

use crate::store::StoreError;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// What the failed call was, for the mapping of ambiguous answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// A put or complete that carried If-None-Match or If-Match: 409
    /// (ConditionalRequestConflict) means another writer won.
    ConditionalWrite,
    /// Anything else.
    Plain,
}

/// Converts an SDK error about `key` (the caller's key, without the store
/// prefix) into a [`StoreError`] whose message is one short phrase (the S3
/// error code, or what failed on the network); the SDK's full report
/// (headers, body) is logged at debug level only.
///
/// An error answer without an S3 error code and without the
/// `x-amz-request-id` header every S3 server sends is not from an S3
/// server (a web server, a proxy's error page): [`StoreError::Other`]
/// saying so, never "not found".
pub fn map_sdk_error<E>(err: SdkError<E>, key: &str, call: Call) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    tracing::debug!(
        "S3 request about {key:?} failed: {}",
        DisplayErrorContext(&err)
    );
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_string);
    let from_s3 = err
        .raw_response()
        .is_some_and(|r| r.headers().contains_key("x-amz-request-id"));
    let transient = |message: String| StoreError::Transient {
        message,
        retry_after: None,
    };
    match &err {
        SdkError::TimeoutError(_) => return transient("no answer in time".into()),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            return transient(root_cause(&err));
        }
        SdkError::ConstructionFailure(_) => {
            return StoreError::Other {
                message: root_cause(&err),
            };
        }
        _ => {}
    }
    let said = match (&code, status) {
        (Some(code), _) => code.clone(),
        (None, Some(status)) => format!("HTTP {status}"),
        (None, None) => root_cause(&err),
    };
    if code.is_none() && !from_s3 && status.is_some_and(|s| s >= 300) {
        return StoreError::Other {
            message: format!("{said} without an S3 error code or request id"),
        };
    }
    let key = key.to_string();
    match (status, code.as_deref()) {
        (_, Some("NoSuchBucket")) => StoreError::BucketMissing { message: said },
        (_, Some("KeyTooLongError")) => StoreError::InvalidKey {
            key,
            reason: "too long for this server",
        },
        (_, Some("NoSuchKey" | "NotFound")) | (Some(404), _) => StoreError::NotFound { key },
        (_, Some("PreconditionFailed")) | (Some(412), _) => StoreError::PreconditionFailed { key },
        (Some(409), _) | (_, Some("ConditionalRequestConflict"))
            if call == Call::ConditionalWrite =>
        {
            StoreError::PreconditionFailed { key }
        }
        (
            _,
            Some(
                "AccessDenied"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "InvalidToken",
            ),
        )
        | (Some(401 | 403), _) => StoreError::Auth { message: said },
        (_, Some("SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable"))
        | (Some(408 | 429 | 500 | 502 | 503 | 504), _) => transient(said),
        _ => StoreError::Other {
            message: match err.message() {
                Some(m) => format!("{said}: {m}"),
                None => said,
            },
        },
    }
}

/// The innermost cause of an error, e.g. "Connection refused (os error
/// 111)" beneath the SDK's layers of "dispatch failure: io error: ...".
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// An error from reading a response body (the connection broke).
pub fn body_error(key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Transient {
        message: format!("reading {key} failed: {e}"),
        retry_after: None,
    }
}
