//! Maps aws-sdk-s3 errors to [`StoreError`] so the engine can act on them.
//!
//! Invariant: the mapping depends only on the error kind, HTTP status and
//! S3 error code, never on message text.

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
/// prefix) into a [`StoreError`].
pub fn map_sdk_error<E>(err: SdkError<E>, key: &str, call: Call) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_string);
    let message = format!("{}", DisplayErrorContext(&err));
    let transient = |message: String| StoreError::Transient {
        message,
        retry_after: None,
    };
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            return transient(message);
        }
        SdkError::ConstructionFailure(_) => return StoreError::Other { message },
        _ => {}
    }
    let key = key.to_string();
    match (status, code.as_deref()) {
        (_, Some("NoSuchBucket")) => StoreError::BucketMissing { message },
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
        | (Some(401 | 403), _) => StoreError::Auth { message },
        (_, Some("SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable"))
        | (Some(408 | 429 | 500 | 502 | 503 | 504), _) => transient(message),
        _ => StoreError::Other { message },
    }
}

/// An error from reading a response body (the connection broke).
pub fn body_error(key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Transient {
        message: format!("reading {key} failed: {e}"),
        retry_after: None,
    }
}
