//! Fetching from a feed's source: HTTP(S) over reqwest with rustls, and `file:` URLs for
//! local runs.
//!
//! This module owns the transport rules every kind shares: TLS verification on by default,
//! a private CA, client certificates, credentials from secret references, a timeout and a
//! body cap per request, retries of 429 and 5xx with exponential backoff, jitter and
//! `Retry-After`, and the refusal of loopback, link-local and private addresses unless a
//! feed allows them. The address check runs in the DNS resolver, so it applies to the
//! address actually connected to and to every redirect hop.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{Auth, HttpOptions};
use crate::ports::{Body, Secrets, Source, SourceRequest, SourceResponse, StreamingResponse};

/// Bodies up to this size stay in memory; larger ones are spooled to a temporary file.
const SPOOL_THRESHOLD: usize = 512 * 1024;
/// Redirect hops followed before giving up; each hop is checked like the first request.
const MAX_REDIRECTS: usize = 10;

/// Why a request to a source failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL is unusable.
    #[error("bad source URL {url}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The address is not allowed for this feed.
    #[error("refused to connect to {url}: {reason} (set allow_private_network = true for a feed that must reach it)")]
    Refused {
        /// The URL.
        url: String,
        /// Which address and why.
        reason: String,
    },
    /// The connection or the transfer failed.
    #[error("request to {url} failed: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// The cause, with its chain.
        reason: String,
    },
    /// The server kept answering 429 or 5xx.
    #[error("{url} answered HTTP {status} after {attempts} attempt(s)")]
    Status {
        /// The URL.
        url: String,
        /// The last status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// The body is larger than the feed allows.
    #[error("response from {url} exceeds max_response_bytes ({limit} bytes)")]
    TooLarge {
        /// The URL.
        url: String,
        /// The cap.
        limit: u64,
    },
    /// A local file could not be read.
    #[error("cannot read {path}: {reason}")]
    File {
        /// The path.
        path: String,
        /// The cause.
        reason: String,
    },
    /// The client could not be built (bad CA, certificate or proxy).
    #[error("cannot set up HTTP for this feed: {0}")]
    Setup(String),
}

/// How failed requests are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Delay before the first retry; doubled each time, with jitter.
    pub base: Duration,
    /// Cap on one delay, `Retry-After` included.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
    }
}

/// Opens a source for a feed's URL: HTTP(S) through reqwest, or a local file when local
/// files are allowed (never in a deployment).
pub async fn open_source(
    url: &str,
    options: &HttpOptions,
    secrets: &dyn Secrets,
    allow_files: bool,
    retry: RetryPolicy,
) -> Result<Box<dyn Source>, HttpError> {
    if url.starts_with("file:") {
        if !allow_files {
            return Err(HttpError::BadUrl {
                url: url.into(),
                reason: "file: URLs are for local runs only".into(),
            });
        }
        return Ok(Box::new(FileSource {
            max_bytes: options.max_response_bytes,
        }));
    }
    Ok(Box::new(HttpSource::new(options, secrets, retry).await?))
}

/// A source over HTTP(S).
pub struct HttpSource {
    client: reqwest::Client,
    max_bytes: u64,
    allow_private: bool,
    retry: RetryPolicy,
}

impl HttpSource {
    /// Builds the client for one feed's settings, resolving its credentials.
    pub async fn new(
        options: &HttpOptions,
        secrets: &dyn Secrets,
        retry: RetryPolicy,
    ) -> Result<HttpSource, HttpError> {
        let setup = |e: String| HttpError::Setup(e);
        let mut headers = HeaderMap::new();
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(Duration::from_secs(options.timeout_secs))
            .connect_timeout(Duration::from_secs(options.timeout_secs.min(30)))
            .user_agent(
                options
                    .user_agent
                    .clone()
                    .unwrap_or_else(|| format!("feedstix/{}", env!("CARGO_PKG_VERSION"))),
            )
            .dns_resolver(Arc::new(CheckedResolver {
                allow_private: options.allow_private_network,
            }))
            .redirect(redirect_policy(options.allow_private_network))
            .danger_accept_invalid_certs(!options.verify_tls);
        if let Some(ca) = &options.ca {
            builder = add_ca(builder, ca)?;
        }
        if let Some(proxy) = &options.proxy {
            let p = reqwest::Proxy::all(proxy).map_err(|e| setup(format!("proxy {proxy}: {e}")))?;
            builder = builder.proxy(p);
        } else {
            builder = builder.no_proxy();
        }
        match &options.auth {
            Auth::None => {}
            Auth::Basic { username, password } => {
                let password = resolve(secrets, password).await?;
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}").as_bytes());
                headers.insert(
                    reqwest::header::AUTHORIZATION,
                    sensitive(&format!("Basic {token}"))?,
                );
            }
            Auth::Bearer { token } => {
                let token = resolve(secrets, token).await?;
                headers.insert(
                    reqwest::header::AUTHORIZATION,
                    sensitive(&format!("Bearer {token}"))?,
                );
            }
            Auth::Header { name, value } => {
                let value = resolve(secrets, value).await?;
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| setup(format!("header name {name}: {e}")))?;
                headers.insert(name, sensitive(&value)?);
            }
            Auth::Certificate { cert, key, ca } => {
                let mut pem = std::fs::read(cert)
                    .map_err(|e| setup(format!("client certificate {}: {e}", cert.display())))?;
                pem.push(b'\n');
                pem.extend(
                    std::fs::read(key)
                        .map_err(|e| setup(format!("client key {}: {e}", key.display())))?,
                );
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| setup(format!("client certificate {}: {e}", cert.display())))?;
                builder = builder.identity(identity);
                if let Some(ca) = ca {
                    builder = add_ca(builder, ca)?;
                }
            }
        }
        let client = builder
            .default_headers(headers)
            .build()
            .map_err(|e| setup(error_chain(&e)))?;
        Ok(HttpSource {
            client,
            max_bytes: options.max_response_bytes,
            allow_private: options.allow_private_network,
            retry,
        })
    }

    async fn attempt(&self, request: &SourceRequest) -> Result<SourceResponse, Attempt> {
        let url = &request.url;
        let mut req = self.client.get(url);
        for (name, value) in &request.headers {
            req = req.header(name, value);
        }
        let response = req.send().await.map_err(|e| classify(url, e))?;
        let status = response.status().as_u16();
        let final_url = response.url().to_string();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        if status == 429 || status >= 500 {
            let retry_after = headers
                .iter()
                .find(|(n, _)| n == "retry-after")
                .and_then(|(_, v)| parse_retry_after(v));
            return Err(Attempt::Retry {
                status,
                retry_after,
            });
        }
        let body = self
            .read_body(url, response)
            .await
            .map_err(Attempt::Fatal)?;
        Ok(SourceResponse {
            status,
            headers,
            body,
            final_url,
        })
    }

    async fn read_body(&self, url: &str, response: reqwest::Response) -> Result<Body, HttpError> {
        if response
            .content_length()
            .is_some_and(|n| n > self.max_bytes)
        {
            return Err(HttpError::TooLarge {
                url: url.into(),
                limit: self.max_bytes,
            });
        }
        let mut stream = response.bytes_stream();
        let mut memory: Vec<u8> = Vec::new();
        let mut file: Option<std::fs::File> = None;
        let mut total: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| HttpError::Transport {
                url: url.into(),
                reason: format!("body interrupted after {total} bytes: {}", error_chain(&e)),
            })?;
            total += chunk.len() as u64;
            if total > self.max_bytes {
                return Err(HttpError::TooLarge {
                    url: url.into(),
                    limit: self.max_bytes,
                });
            }
            let spool_err = |e: std::io::Error| HttpError::Transport {
                url: url.into(),
                reason: format!("cannot spool the body to a temporary file: {e}"),
            };
            match &mut file {
                Some(f) => f.write_all(&chunk).map_err(spool_err)?,
                None if memory.len() + chunk.len() > SPOOL_THRESHOLD => {
                    let mut f = tempfile::tempfile().map_err(spool_err)?;
                    f.write_all(&memory).map_err(spool_err)?;
                    f.write_all(&chunk).map_err(spool_err)?;
                    memory = Vec::new();
                    file = Some(f);
                }
                None => memory.extend_from_slice(&chunk),
            }
        }
        Ok(match file {
            Some(f) => Body::Spooled(f),
            None => Body::Memory(memory),
        })
    }
}

enum Attempt {
    Retry {
        status: u16,
        retry_after: Option<Duration>,
    },
    Transient(HttpError),
    Fatal(HttpError),
}

#[async_trait]
impl Source for HttpSource {
    async fn get(&self, request: SourceRequest) -> Result<SourceResponse, HttpError> {
        check_literal_host(&request.url, self.allow_private)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (error, retry_after) = match self.attempt(&request).await {
                Ok(r) => return Ok(r),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Transient(e)) => (e, None),
                Err(Attempt::Retry {
                    status,
                    retry_after,
                }) => (
                    HttpError::Status {
                        url: request.url.clone(),
                        status,
                        attempts: attempt,
                    },
                    retry_after,
                ),
            };
            if attempt >= self.retry.attempts {
                return Err(error);
            }
            let delay = backoff(self.retry, attempt, retry_after);
            tracing::warn!(url = %request.url, attempt, delay_ms = delay.as_millis() as u64, error = %error, "retrying source request");
            tokio::time::sleep(delay).await;
        }
    }

    async fn open_stream(
        &self,
        request: SourceRequest,
        max_duration: Duration,
    ) -> Result<StreamingResponse, HttpError> {
        self.stream_request(request, max_duration).await
    }
}

impl HttpSource {
    /// The streaming GET behind [`Source::open_stream`]: the same client, credentials and
    /// address checks as [`Source::get`], with the request's time limit raised from the
    /// feed's `timeout` to `max_duration` so a live connection is not cut at 60 s.
    async fn stream_request(
        &self,
        request: SourceRequest,
        max_duration: Duration,
    ) -> Result<StreamingResponse, HttpError> {
        check_literal_host(&request.url, self.allow_private)?;
        let url = request.url.clone();
        let mut req = self.client.get(&url).timeout(max_duration);
        for (name, value) in &request.headers {
            req = req.header(name, value);
        }
        let response = req.send().await.map_err(|e| match classify(&url, e) {
            Attempt::Fatal(e) | Attempt::Transient(e) => e,
            Attempt::Retry { status, .. } => HttpError::Status {
                url: url.clone(),
                status,
                attempts: 1,
            },
        })?;
        let status = response.status().as_u16();
        let final_url = response.url().to_string();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response.bytes_stream().map(move |chunk| {
            chunk.map_err(|e| HttpError::Transport {
                url: url.clone(),
                reason: format!("stream interrupted: {}", error_chain(&e)),
            })
        });
        Ok(StreamingResponse {
            status,
            headers,
            final_url,
            body: Box::pin(body),
        })
    }
}

/// The delay before retry number `attempt` (1-based): `Retry-After` when the server gave
/// one, else exponential from `base` with up to 50 % random jitter, so that many feeds
/// failing together do not retry in lockstep. Both are capped at `max`.
pub fn backoff(policy: RetryPolicy, attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(after) = retry_after {
        return after.min(policy.max);
    }
    let exp = policy.base.saturating_mul(1u32 << (attempt - 1).min(16));
    let jitter = exp.mul_f64(jitter_fraction() * 0.5);
    (exp + jitter).min(policy.max)
}

fn jitter_fraction() -> f64 {
    // A fresh v4 UUID is 122 random bits from the OS; 16 of them are plenty for jitter and
    // spare a dependency on a random-number crate.
    let bytes = uuid::Uuid::new_v4().into_bytes();
    f64::from(u16::from_le_bytes([bytes[0], bytes[1]])) / f64::from(u16::MAX)
}

/// Parses `Retry-After` as delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

fn classify(url: &str, e: reqwest::Error) -> Attempt {
    let reason = error_chain(&e);
    if reason.contains(REFUSED_MARK) {
        let reason = reason
            .split(REFUSED_MARK)
            .nth(1)
            .unwrap_or(&reason)
            .trim_start_matches(": ")
            .to_string();
        return Attempt::Fatal(HttpError::Refused {
            url: url.into(),
            reason,
        });
    }
    if e.is_builder() || e.is_redirect() {
        return Attempt::Fatal(HttpError::Transport {
            url: url.into(),
            reason,
        });
    }
    Attempt::Transient(HttpError::Transport {
        url: url.into(),
        reason,
    })
}

/// An error with its causes, `a: b: c`, since reqwest's top-level message alone rarely says
/// what went wrong (certificate, DNS, refused connection).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

async fn resolve(secrets: &dyn Secrets, r: &crate::config::SecretRef) -> Result<String, HttpError> {
    secrets
        .resolve(r)
        .await
        .map_err(|e| HttpError::Setup(e.to_string()))
}

fn sensitive(value: &str) -> Result<HeaderValue, HttpError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        HttpError::Setup("a credential holds characters a header cannot carry".into())
    })?;
    v.set_sensitive(true);
    Ok(v)
}

fn add_ca(
    builder: reqwest::ClientBuilder,
    path: &std::path::Path,
) -> Result<reqwest::ClientBuilder, HttpError> {
    let pem = std::fs::read(path)
        .map_err(|e| HttpError::Setup(format!("CA bundle {}: {e}", path.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| HttpError::Setup(format!("CA bundle {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(HttpError::Setup(format!(
            "CA bundle {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs
        .into_iter()
        .fold(builder, |b, c| b.add_root_certificate(c)))
}

/// The text that marks a resolver refusal inside reqwest's error chain.
const REFUSED_MARK: &str = "feedstix-refused";

/// Whether a feed may connect to `ip`. Link-local addresses (169.254.0.0/16, fe80::/10)
/// are refused even with `allow_private_network`: that is where cloud metadata services
/// answer, and no feed server lives there, while a local test server on loopback or a
/// private network is a real need.
pub fn is_allowed(ip: IpAddr, allow_private: bool) -> bool {
    !is_link_local(ip) && (allow_private || is_public(ip))
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.is_link_local(),
            None => (v6.segments()[0] & 0xffc0) == 0xfe80,
        },
    }
}

/// Whether an address is one a feed may reach without `allow_private_network`.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // carrier-grade NAT
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] == 0x64 && s[1] == 0xff9b)) // NAT64 can reach private IPv4
        }
    }
}

fn check_literal_host(url: &str, allow_private: bool) -> Result<(), HttpError> {
    let parsed = url::Url::parse(url).map_err(|e| HttpError::BadUrl {
        url: url.into(),
        reason: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(HttpError::BadUrl {
            url: url.into(),
            reason: format!("scheme {} is not http or https", parsed.scheme()),
        });
    }
    let ip = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        _ => return Ok(()),
    };
    if is_allowed(ip, allow_private) {
        Ok(())
    } else if is_link_local(ip) {
        Err(HttpError::Refused {
            url: url.into(),
            reason: format!("{ip} is a link-local (cloud metadata) address, never allowed"),
        })
    } else {
        Err(HttpError::Refused {
            url: url.into(),
            reason: format!("{ip} is not a public address"),
        })
    }
}

fn redirect_policy(allow_private: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        let scheme = attempt.url().scheme().to_string();
        if !matches!(scheme.as_str(), "http" | "https") {
            let target = attempt.url().to_string();
            return attempt.error(format!(
                "{REFUSED_MARK}: redirect to {target} refused: only http and https are followed"
            ));
        }
        // Names are checked again by the resolver; literal addresses are checked here.
        match check_literal_host(attempt.url().as_str(), allow_private) {
            Ok(()) => attempt.follow(),
            Err(e) => attempt.error(format!("{REFUSED_MARK}: redirect {e}")),
        }
    })
}

/// Resolves names with the system resolver and drops non-public addresses unless the feed
/// allows them, so that a public name pointing at a private address is refused too.
struct CheckedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let total = addrs.len();
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| is_allowed(a.ip(), allow_private))
                .collect();
            if allowed.is_empty() && total > 0 {
                let e: Box<dyn std::error::Error + Send + Sync> =
                    format!("{REFUSED_MARK}: {host} resolves only to non-public addresses").into();
                return Err(e);
            }
            let iter: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(iter)
        })
    }
}

/// A source reading local files (`file:` URLs), for laptops and tests.
pub struct FileSource {
    max_bytes: u64,
}

#[async_trait]
impl Source for FileSource {
    async fn get(&self, request: SourceRequest) -> Result<SourceResponse, HttpError> {
        let url = url::Url::parse(&request.url).map_err(|e| HttpError::BadUrl {
            url: request.url.clone(),
            reason: e.to_string(),
        })?;
        let path = url.to_file_path().map_err(|()| HttpError::BadUrl {
            url: request.url.clone(),
            reason: "not a local file path".into(),
        })?;
        let file_err = |e: std::io::Error| HttpError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let file = std::fs::File::open(&path).map_err(file_err)?;
        let len = file.metadata().map_err(file_err)?.len();
        if len > self.max_bytes {
            return Err(HttpError::TooLarge {
                url: request.url,
                limit: self.max_bytes,
            });
        }
        Ok(SourceResponse {
            status: 200,
            headers: Vec::new(),
            body: Body::Spooled(file),
            final_url: request.url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_address_rules() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "fc00::2",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "93.184.216.34"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn literal_private_hosts_are_refused_unless_allowed() {
        assert!(matches!(
            check_literal_host("http://169.254.169.254/latest/meta-data", false),
            Err(HttpError::Refused { .. })
        ));
        assert!(check_literal_host("http://[::1]:8080/", false).is_err());
        assert!(check_literal_host("http://127.0.0.1:8080/", true).is_ok());
        // Metadata addresses stay refused even where private networks are allowed.
        for metadata in [
            "http://169.254.169.254/latest/",
            "http://[fe80::1]/",
            "http://[::ffff:169.254.169.254]/",
        ] {
            let err = check_literal_host(metadata, true).unwrap_err().to_string();
            assert!(err.contains("link-local"), "{err}");
        }
        assert!(check_literal_host("http://feeds.example.test/", false).is_ok());
    }

    #[test]
    fn retry_after_and_backoff() {
        let p = RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            backoff(p, 1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            backoff(p, 1, Some(Duration::from_secs(300))),
            Duration::from_secs(5)
        );
        let d = backoff(p, 3, None);
        assert!(
            d >= Duration::from_millis(400) && d <= Duration::from_millis(600),
            "{d:?}"
        );
        assert!(parse_retry_after("soon").is_none());
    }
}
