//! Secret references resolved at run time: `env:` from the environment, `ssm:` from SSM
//! Parameter Store (decrypted), `secretsmanager:` from Secrets Manager.
//!
//! Values are cached for a short time, so a warm function fetching many pages of one feed
//! does not call SSM for every page, while a rotated secret is picked up within a minute.
//! Values are never logged; errors name the reference only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::sdk_reason;
use crate::config::SecretRef;
use crate::ports::{PortError, Secrets};

/// How long a resolved value is reused: short enough to follow a rotation quickly.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

/// The AWS adapter of [`Secrets`].
pub struct AwsSecrets {
    ssm: aws_sdk_ssm::Client,
    secrets_manager: aws_sdk_secretsmanager::Client,
    cache: Mutex<HashMap<String, (Instant, String)>>,
}

impl std::fmt::Debug for AwsSecrets {
    // The cache holds secret values: keep them out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSecrets").finish_non_exhaustive()
    }
}

impl AwsSecrets {
    /// Resolves through these clients.
    pub fn new(
        ssm: aws_sdk_ssm::Client,
        secrets_manager: aws_sdk_secretsmanager::Client,
    ) -> AwsSecrets {
        AwsSecrets {
            ssm,
            secrets_manager,
            cache: Mutex::default(),
        }
    }

    fn cached(&self, key: &str) -> Option<String> {
        let cache = self.cache.lock().ok()?;
        let (at, value) = cache.get(key)?;
        (at.elapsed() < CACHE_TTL).then(|| value.clone())
    }

    async fn fetch(&self, reference: &SecretRef) -> Result<String, PortError> {
        let failed =
            |reason: String| -> PortError { format!("secret {reference}: {reason}").into() };
        match reference {
            SecretRef::Env(name) => std::env::var(name)
                .map_err(|_| failed(format!("environment variable {name} is not set"))),
            SecretRef::Ssm(name) => {
                let output = self
                    .ssm
                    .get_parameter()
                    .name(name)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| failed(sdk_reason(&e)))?;
                output
                    .parameter
                    .and_then(|p| p.value)
                    .ok_or_else(|| failed("the parameter has no value".into()))
            }
            SecretRef::SecretsManager(name) => {
                let output = self
                    .secrets_manager
                    .get_secret_value()
                    .secret_id(name)
                    .send()
                    .await
                    .map_err(|e| failed(sdk_reason(&e)))?;
                // Binary secrets are not supported: credentials for a feed are text.
                output
                    .secret_string
                    .ok_or_else(|| failed("the secret has no string value".into()))
            }
        }
    }
}

#[async_trait]
impl Secrets for AwsSecrets {
    async fn resolve(&self, reference: &SecretRef) -> Result<String, PortError> {
        let key = reference.to_string();
        if let Some(value) = self.cached(&key) {
            return Ok(value);
        }
        let value = self.fetch(reference).await?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, (Instant::now(), value.clone()));
        }
        Ok(value)
    }
}
