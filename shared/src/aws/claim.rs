//! The S3 claim check: a body too large for one SQS message (or a cursor too large for one
//! DynamoDB item) is stored in the bucket, and the message carries only where it is:
//!
//! ```json
//! {"claim_check": {"bucket": "feedstix-claims-…", "key": "pages/feed/0/3/0.json"}}
//! ```
//!
//! Nothing is truncated. The receiving side resolves the reference before decoding. Stored
//! bodies are not deleted when consumed, because SQS may deliver a message again after a
//! failure and the body must still be there; the template's lifecycle rule expires them.

use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};

use super::{sdk_reason, AwsError};

/// The key prefix of page parts stored by claim check.
pub const PAGES_PREFIX: &str = "pages/";
/// The key prefix of bundles stored by claim check.
pub const BUNDLES_PREFIX: &str = "bundles/";
/// The key prefix of cursors too large for a state-table item.
pub const STATE_PREFIX: &str = "state/";

/// Where a claimed body is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRef {
    /// The bucket.
    pub bucket: String,
    /// The object key.
    pub key: String,
}

/// The message body that stands for a claimed body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimMessage {
    claim_check: ClaimRef,
}

/// The claim-check bucket.
#[derive(Clone, Debug)]
pub struct ClaimStore {
    s3: aws_sdk_s3::Client,
    bucket: String,
}

impl ClaimStore {
    /// The store over `bucket`.
    pub fn new(s3: aws_sdk_s3::Client, bucket: impl Into<String>) -> ClaimStore {
        ClaimStore {
            s3,
            bucket: bucket.into(),
        }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Stores `body` under `key` and returns the message body that refers to it.
    ///
    /// # Errors
    /// The S3 write failed; nothing was sent, so the caller's message is not lost either.
    pub async fn check_in(&self, key: &str, body: Vec<u8>) -> Result<String, AwsError> {
        self.put(key, body).await?;
        let message = ClaimMessage {
            claim_check: ClaimRef {
                bucket: self.bucket.clone(),
                key: key.to_string(),
            },
        };
        serde_json::to_string(&message).map_err(|e| AwsError::Decode {
            what: format!("claim check {key}"),
            reason: e.to_string(),
        })
    }

    /// The body a message stands for: the message itself, or the claimed object when the
    /// message is a claim check. A claim check naming another bucket is refused: the
    /// functions may read only their own bucket, and a message should not choose otherwise.
    ///
    /// # Errors
    /// The claimed object is missing or unreadable, or names another bucket.
    pub async fn resolve(&self, body: &str) -> Result<Vec<u8>, AwsError> {
        let Some(claim) = parse_claim(body) else {
            return Ok(body.as_bytes().to_vec());
        };
        if claim.bucket != self.bucket {
            return Err(AwsError::S3 {
                bucket: claim.bucket,
                key: claim.key,
                action: "resolving a claim check",
                reason: format!("only the claim-check bucket {} is read", self.bucket),
            });
        }
        self.get(&claim.key).await
    }

    /// Writes one object.
    pub(crate) async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), AwsError> {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.error(key, "storing", &e))?;
        tracing::debug!(bucket = %self.bucket, key, "claim-check object stored");
        Ok(())
    }

    /// Reads one object whole.
    pub(crate) async fn get(&self, key: &str) -> Result<Vec<u8>, AwsError> {
        let object = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error(key, "reading", &e))?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| self.error(key, "reading the body of", &e))?;
        Ok(bytes.into_bytes().to_vec())
    }

    /// Deletes one object; used for superseded cursors.
    pub(crate) async fn delete(&self, key: &str) -> Result<(), AwsError> {
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error(key, "deleting", &e))?;
        Ok(())
    }

    fn error(
        &self,
        key: &str,
        action: &'static str,
        e: &(dyn std::error::Error + 'static),
    ) -> AwsError {
        AwsError::S3 {
            bucket: self.bucket.clone(),
            key: key.to_string(),
            action,
            reason: sdk_reason(e),
        }
    }
}

/// The reference in a claim-check message, or `None` for any other body. Checked on the
/// opening bytes first so an ordinary large body is not parsed twice.
pub fn parse_claim(body: &str) -> Option<ClaimRef> {
    let start = body.trim_start();
    if !start.starts_with("{\"claim_check\"") || body.len() > 4096 {
        return None;
    }
    serde_json::from_str::<ClaimMessage>(body)
        .ok()
        .map(|m| m.claim_check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_messages_are_recognised_and_other_bodies_are_not() {
        let body = r#"{"claim_check":{"bucket":"b","key":"pages/f/0/1/0.json"}}"#;
        assert_eq!(
            parse_claim(body),
            Some(ClaimRef {
                bucket: "b".into(),
                key: "pages/f/0/1/0.json".into()
            })
        );
        assert_eq!(parse_claim(r#"{"feed":"f","objects":[]}"#), None);
        assert_eq!(
            parse_claim(r#"{"claim_check":{"bucket":"b","key":"k"},"x":1}"#),
            None
        );
    }
}
