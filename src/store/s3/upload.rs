//! Multipart upload to S3 with parallel parts.
//!
//! Invariants:
//! - Bytes given to `put_part` are re-cut into parts of exactly
//!   `part_size` bytes (the last may be shorter), numbered in order, so the
//!   object is the concatenation of everything given.
//! - At most `concurrency` parts are in flight; `put_part` waits for a slot,
//!   which bounds memory to about `(concurrency + 1) * part_size`.
//! - The S3 upload is created lazily with the first full part; an upload
//!   smaller than one part becomes a single PutObject.
//! - On any failure, on `abort`, and on drop before `complete`, the S3
//!   upload is aborted (in the background on drop), so no orphaned upload
//!   is left behind.

use super::errors::{Call, map_sdk_error};
use super::{S3Inner, upload_abort};
use crate::store::{ETag, MultipartUpload, PutMode, Result, StoreError};
use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub struct S3Upload {
    inner: Arc<S3Inner>,
    /// The caller's key (without the store prefix).
    key: String,
    buf: BytesMut,
    upload_id: Option<String>,
    next_part: i32,
    slots: Arc<Semaphore>,
    in_flight: JoinSet<Result<CompletedPart>>,
    done: Vec<CompletedPart>,
    /// Set once the upload was completed or aborted.
    finished: bool,
}

impl S3Upload {
    pub(super) fn new(inner: Arc<S3Inner>, key: String) -> Self {
        let slots = Arc::new(Semaphore::new(inner.concurrency));
        Self {
            inner,
            key,
            buf: BytesMut::new(),
            upload_id: None,
            next_part: 1,
            slots,
            in_flight: JoinSet::new(),
            done: Vec::new(),
            finished: false,
        }
    }

    async fn upload_id(&mut self) -> Result<String> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let out = self
            .inner
            .client
            .create_multipart_upload()
            .bucket(&self.inner.bucket)
            .key(self.inner.full_key(&self.key))
            .customize()
            .config_override(self.inner.quick())
            .send()
            .await
            .map_err(|e| map_sdk_error(e, &self.key, Call::Plain))?;
        let id = out.upload_id.ok_or_else(|| StoreError::Other {
            message: format!("server gave no upload id for {}", self.key),
        })?;
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    /// Collects parts that finished, failing on the first failed one.
    fn reap(&mut self) -> Result<()> {
        while let Some(joined) = self.in_flight.try_join_next() {
            self.done.push(joined_part(joined)??);
        }
        Ok(())
    }

    async fn send_part(&mut self, data: Bytes) -> Result<()> {
        let id = self.upload_id().await?;
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        self.reap()?;
        let number = self.next_part;
        self.next_part += 1;
        let inner = self.inner.clone();
        let key = self.key.clone();
        self.in_flight.spawn(async move {
            let _permit = permit;
            let out = inner
                .client
                .upload_part()
                .bucket(&inner.bucket)
                .key(inner.full_key(&key))
                .upload_id(id)
                .part_number(number)
                .content_length(data.len() as i64)
                .body(ByteStream::from(data))
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map_err(|e| map_sdk_error(e, &key, Call::Plain))?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag)
                .build())
        });
        Ok(())
    }

    /// Cuts `data` into parts, copying only what must wait in the buffer.
    async fn put_part_inner(&mut self, mut data: Bytes) -> Result<()> {
        let part = self.inner.part_size;
        if !self.buf.is_empty() {
            let take = (part - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data.split_to(take));
            if self.buf.len() == part {
                let chunk = std::mem::take(&mut self.buf).freeze();
                self.send_part(chunk).await?;
            }
        }
        while data.len() >= part {
            let chunk = data.split_to(part);
            self.send_part(chunk).await?;
        }
        self.buf.extend_from_slice(&data);
        Ok(())
    }

    async fn complete_inner(&mut self) -> Result<ETag> {
        if self.upload_id.is_none() {
            // Smaller than one part: a single PutObject does it.
            let body = std::mem::take(&mut self.buf).freeze();
            return self
                .inner
                .put_single(&self.key, body, &PutMode::Overwrite)
                .await;
        }
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf).freeze();
            self.send_part(rest).await?;
        }
        while let Some(joined) = self.in_flight.join_next().await {
            self.done.push(joined_part(joined)??);
        }
        let mut parts = std::mem::take(&mut self.done);
        parts.sort_by_key(|p| p.part_number);
        let out = self
            .inner
            .client
            .complete_multipart_upload()
            .bucket(&self.inner.bucket)
            .key(self.inner.full_key(&self.key))
            .upload_id(self.upload_id.clone().expect("created above"))
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| map_sdk_error(e, &self.key, Call::Plain))?;
        out.e_tag.map(ETag).ok_or_else(|| StoreError::Other {
            message: format!("server gave no ETag for {}", self.key),
        })
    }

    async fn abort_inner(&mut self) -> Result<()> {
        self.finished = true;
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        match self.upload_id.take() {
            Some(id) => upload_abort(&self.inner, &self.key, &id).await,
            None => Ok(()),
        }
    }
}

fn joined_part(
    joined: std::result::Result<Result<CompletedPart>, tokio::task::JoinError>,
) -> Result<Result<CompletedPart>> {
    joined.map_err(|e| StoreError::Other {
        message: format!("part upload task failed: {e}"),
    })
}

#[async_trait]
impl MultipartUpload for S3Upload {
    async fn put_part(&mut self, data: Bytes) -> Result<()> {
        if self.finished {
            return Err(StoreError::Other {
                message: format!("upload to {} already failed", self.key),
            });
        }
        let result = self.put_part_inner(data).await;
        if result.is_err() {
            let _ = self.abort_inner().await;
        }
        result
    }

    async fn complete(mut self: Box<Self>) -> Result<ETag> {
        if self.finished {
            return Err(StoreError::Other {
                message: format!("upload to {} already failed", self.key),
            });
        }
        let result = self.complete_inner().await;
        match &result {
            Ok(_) => self.finished = true,
            Err(_) => {
                let _ = self.abort_inner().await;
            }
        }
        result
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.abort_inner().await
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let Some(id) = self.upload_id.take() else {
            return;
        };
        // Dropped without complete or abort: abort in the background.
        self.in_flight.abort_all();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let inner = self.inner.clone();
            let key = std::mem::take(&mut self.key);
            handle.spawn(async move {
                if let Err(e) = upload_abort(&inner, &key, &id).await {
                    tracing::warn!("could not abort dropped upload of {key}: {e}");
                }
            });
        } else {
            tracing::warn!(
                "upload of {} dropped outside a runtime; not aborted",
                self.key
            );
        }
    }
}
