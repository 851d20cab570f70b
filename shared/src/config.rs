//! The feed definitions: one `[[feeds]]` table per feed in a TOML file.
//!
//! The file is checked whole before anything runs. Every problem is reported at once,
//! each naming the feed, the key and what is expected, because a pipeline that starts
//! with half its feeds and a typo in the rest fails at three in the morning instead of at
//! the keyboard. The checked form, [`FeedConfig`], is also what a deployment stores in its
//! feeds table, with the mapper inlined, so local and cloud share one format.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use toml::Value;

use crate::duration::parse_duration;
use crate::stix::Tlp;

/// Shortest interval: more often is hammering a source, not following it.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Longest interval: a year; longer values are typos, and would overflow date arithmetic.
pub const MAX_INTERVAL: Duration = Duration::from_secs(365 * 86_400);
/// Longest request timeout accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3_600);

/// Failed pages in a row after which a feed is paused by default: enough to ride out an
/// outage of a few hours at common intervals, few enough not to hammer a dead source.
pub const DEFAULT_PAUSE_AFTER_FAILURES: u32 = 10;

fn default_pause_after_failures() -> u32 {
    DEFAULT_PAUSE_AFTER_FAILURES
}

/// Default HTTP timeout for one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default cap on one response body: big enough for a full URLhaus export, small enough
/// that a hostile endless body cannot fill a Lambda's disk or memory.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 100 * 1024 * 1024;
/// Default TAXII page size (sent as `limit`).
pub const DEFAULT_TAXII_PAGE_SIZE: u32 = 1000;
/// Default size limit of one output message: SQS's default maximum message size.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Upper bound of the message size setting: SQS's largest allowed maximum.
pub const MAX_MESSAGE_BYTES_LIMIT: usize = 1024 * 1024;

/// The kind of a feed's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// RSS 0.9x/1.0/2.0 and Atom documents.
    Rss,
    /// CSV over HTTP with a CSV mapper.
    Csv,
    /// A TAXII 2.x collection.
    Taxii,
    /// An OpenCTI live stream.
    Stream,
}

impl Kind {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Rss => "rss",
            Kind::Csv => "csv",
            Kind::Taxii => "taxii",
            Kind::Stream => "stream",
        }
    }

    fn parse(text: &str) -> Option<Kind> {
        match text {
            "rss" => Some(Kind::Rss),
            "csv" => Some(Kind::Csv),
            "taxii" => Some(Kind::Taxii),
            "stream" => Some(Kind::Stream),
            _ => None,
        }
    }

    /// The keys that only this kind accepts.
    fn own_keys(self) -> &'static [&'static str] {
        match self {
            Kind::Rss => &["report_types"],
            Kind::Csv => &["mapper"],
            Kind::Taxii => &["collection", "version", "page_size", "match_types"],
            Kind::Stream => &[
                "stream_id",
                "listen_deletions",
                "no_dependencies",
                "perfect_sync",
            ],
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Keys every kind accepts.
const COMMON_KEYS: &[&str] = &[
    "name",
    "kind",
    "url",
    "interval",
    "import_from",
    "author",
    "markings",
    "user",
    "auth",
    "verify_tls",
    "ca",
    "timeout",
    "max_response_bytes",
    "user_agent",
    "proxy",
    "allow_private_network",
    "pause_after_failures",
];

/// A reference to a secret, resolved at run time and never stored or logged as a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SecretRef {
    /// `env:NAME`: an environment variable.
    Env(String),
    /// `ssm:/path`: an SSM parameter (SecureString).
    Ssm(String),
    /// `secretsmanager:name`: a Secrets Manager secret.
    SecretsManager(String),
}

impl SecretRef {
    /// Parses `env:NAME`, `ssm:NAME` or `secretsmanager:NAME`.
    pub fn parse(text: &str) -> Result<SecretRef, String> {
        let (scheme, name) = text.split_once(':').unwrap_or(("", ""));
        if name.is_empty() {
            return Err(
                "a secret reference; expected \"env:NAME\", \"ssm:NAME\" or \
                 \"secretsmanager:NAME\" (secrets are never written inline)"
                    .into(),
            );
        }
        match scheme {
            "env" => Ok(SecretRef::Env(name.into())),
            "ssm" => Ok(SecretRef::Ssm(name.into())),
            "secretsmanager" => Ok(SecretRef::SecretsManager(name.into())),
            _ => Err(format!(
                "an unknown secret scheme \"{scheme}:\"; expected \"env:\", \"ssm:\" or \
                 \"secretsmanager:\" (secrets are never written inline)"
            )),
        }
    }
}

impl TryFrom<String> for SecretRef {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        SecretRef::parse(&text)
    }
}

impl From<SecretRef> for String {
    fn from(r: SecretRef) -> String {
        r.to_string()
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "env:{n}"),
            SecretRef::Ssm(n) => write!(f, "ssm:{n}"),
            SecretRef::SecretsManager(n) => write!(f, "secretsmanager:{n}"),
        }
    }
}

/// How a feed authenticates to its source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// HTTP basic authentication.
    Basic {
        /// The user name (not a secret).
        username: String,
        /// The password, by reference.
        password: SecretRef,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token, by reference.
        token: SecretRef,
    },
    /// A custom header such as `X-API-Key`.
    Header {
        /// The header name.
        name: String,
        /// The header value, by reference.
        value: SecretRef,
    },
    /// A TLS client certificate.
    Certificate {
        /// PEM certificate file.
        cert: PathBuf,
        /// PEM private key file.
        key: PathBuf,
        /// Optional PEM CA bundle to trust for this source.
        ca: Option<PathBuf>,
    },
}

/// HTTP settings common to every kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpOptions {
    /// Verify the server's TLS certificate. On unless a feed turns it off.
    pub verify_tls: bool,
    /// A private CA bundle (PEM file) to trust in addition to the system roots.
    pub ca: Option<PathBuf>,
    /// Timeout of one request, in seconds.
    pub timeout_secs: u64,
    /// Cap on one response body, in bytes.
    pub max_response_bytes: u64,
    /// The User-Agent header; `feedstix/<version>` by default.
    pub user_agent: Option<String>,
    /// An HTTP(S) or SOCKS5 proxy URL.
    pub proxy: Option<String>,
    /// Allow requests to loopback, link-local and private addresses (local test setups).
    pub allow_private_network: bool,
    /// Credentials.
    pub auth: Auth,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            verify_tls: true,
            ca: None,
            timeout_secs: DEFAULT_TIMEOUT.as_secs(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            user_agent: None,
            proxy: None,
            allow_private_network: false,
            auth: Auth::None,
        }
    }
}

/// The settings that only one kind has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum KindConfig {
    /// RSS/Atom.
    Rss {
        /// Report types given to every report (`threat-report` by default).
        report_types: Vec<String>,
    },
    /// CSV with a mapper.
    Csv {
        /// The CSV mapper's JSON text, inlined from the file the configuration names.
        mapper: String,
        /// Where the mapper was read from, for messages.
        mapper_path: Option<PathBuf>,
    },
    /// TAXII 2.x.
    Taxii {
        /// The collection id.
        collection: String,
        /// `2.1` or `2.0`.
        version: String,
        /// Objects per request (`limit`).
        page_size: u32,
        /// Only these STIX types, if given (`match[type]`).
        match_types: Vec<String>,
    },
    /// OpenCTI live stream.
    Stream {
        /// The stream id on the remote platform.
        stream_id: String,
        /// Take deletions into account.
        listen_deletions: bool,
        /// Avoid dependency resolution.
        no_dependencies: bool,
        /// Perfect synchronization.
        perfect_sync: bool,
    },
}

impl KindConfig {
    /// The kind these settings belong to.
    pub fn kind(&self) -> Kind {
        match self {
            KindConfig::Rss { .. } => Kind::Rss,
            KindConfig::Csv { .. } => Kind::Csv,
            KindConfig::Taxii { .. } => Kind::Taxii,
            KindConfig::Stream { .. } => Kind::Stream,
        }
    }
}

/// One checked feed definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedConfig {
    /// Unique name: letters, digits and `-`.
    pub name: String,
    /// Source URL (`http(s)://`, or `file://` for local runs).
    pub url: String,
    /// How often the feed is fetched, in seconds.
    pub interval_secs: u64,
    /// Nothing older is imported.
    pub import_from: Option<DateTime<Utc>>,
    /// Author organisation of the objects feedstix creates.
    pub author: Option<String>,
    /// TLP markings of the objects feedstix creates.
    pub markings: Vec<Tlp>,
    /// The user responsible for data creation, carried with every bundle.
    pub user: Option<String>,
    /// HTTP settings.
    pub http: HttpOptions,
    /// Failed pages in a row after which the feed is paused (0: never).
    #[serde(default = "default_pause_after_failures")]
    pub pause_after_failures: u32,
    /// Kind-specific settings.
    #[serde(flatten)]
    pub kind: KindConfig,
}

impl FeedConfig {
    /// The feed's kind.
    pub fn kind(&self) -> Kind {
        self.kind.kind()
    }

    /// The interval as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }
}

/// Settings of the whole file, under `[settings]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Size limit of one output message (bundle), in bytes.
    pub max_message_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// A checked configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where it was read from.
    pub path: PathBuf,
    /// File-wide settings.
    pub settings: Settings,
    /// The feeds, in file order.
    pub feeds: Vec<FeedConfig>,
}

impl Config {
    /// Finds a feed by name.
    pub fn feed(&self, name: &str) -> Option<&FeedConfig> {
        self.feeds.iter().find(|f| f.name == name)
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The feed's name, or its position when it has no usable name.
    pub feed: Option<String>,
    /// The key at fault.
    pub key: Option<String>,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(feed) = &self.feed {
            write!(f, "feed {feed}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("configuration {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The file is TOML but some definitions are wrong.
    #[error("configuration {path} has {} problem(s):\n{}", problems.len(), list(problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads and checks a configuration file. Relative paths in it (mappers, certificates,
/// `file:` URLs) are resolved against the file's folder.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&text, &base)
        .map_err(|e| match e {
            ParseFailure::Syntax(message) => ConfigError::Syntax {
                path: path.to_path_buf(),
                message,
            },
            ParseFailure::Invalid(problems) => ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            },
        })
        .map(|(settings, feeds)| Config {
            path: path.to_path_buf(),
            settings,
            feeds,
        })
}

/// Why [`parse`] refused a text.
#[derive(Debug)]
pub enum ParseFailure {
    /// Not TOML.
    Syntax(String),
    /// Wrong definitions.
    Invalid(Vec<Problem>),
}

/// Parses and checks configuration text; `base` resolves relative paths.
pub fn parse(text: &str, base: &Path) -> Result<(Settings, Vec<FeedConfig>), ParseFailure> {
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ParseFailure::Syntax(e.to_string().trim_end().to_string()))?;
    let mut problems = Vec::new();
    let mut settings = Settings::default();
    let mut feeds = Vec::new();
    for (key, value) in &doc {
        match key.as_str() {
            "feeds" => match value.as_array() {
                Some(items) => {
                    let mut names = BTreeSet::new();
                    for (i, item) in items.iter().enumerate() {
                        let mut checker = FeedChecker::new(i, base, &mut problems);
                        if let Some(feed) = checker.check(item) {
                            if !names.insert(feed.name.clone()) {
                                problems.push(Problem {
                                    feed: Some(feed.name.clone()),
                                    key: Some("name".into()),
                                    message: "this name is used by an earlier feed; names \
                                              must be unique"
                                        .into(),
                                });
                            }
                            feeds.push(feed);
                        }
                    }
                }
                None => problems.push(top(key, "expected [[feeds]] tables")),
            },
            "settings" => settings = check_settings(value, &mut problems),
            other => problems.push(top(
                other,
                "unknown top-level key; expected [[feeds]] tables and an optional [settings]",
            )),
        }
    }
    if problems.is_empty() {
        Ok((settings, feeds))
    } else {
        Err(ParseFailure::Invalid(problems))
    }
}

fn top(key: &str, message: &str) -> Problem {
    Problem {
        feed: None,
        key: Some(key.into()),
        message: message.into(),
    }
}

fn check_settings(value: &Value, problems: &mut Vec<Problem>) -> Settings {
    let mut settings = Settings::default();
    let Some(table) = value.as_table() else {
        problems.push(top("settings", "expected a [settings] table"));
        return settings;
    };
    for (key, value) in table {
        match key.as_str() {
            "max_message_bytes" => match value.as_integer() {
                Some(n) if n >= 16 * 1024 && n as usize <= MAX_MESSAGE_BYTES_LIMIT => {
                    settings.max_message_bytes = n as usize
                }
                _ => problems.push(top(
                    "settings.max_message_bytes",
                    "expected a whole number of bytes from 16384 to 1048576 (SQS's limit)",
                )),
            },
            other => problems.push(top(
                &format!("settings.{other}"),
                "unknown setting; expected max_message_bytes",
            )),
        }
    }
    settings
}

/// Checks one `[[feeds]]` table, recording problems instead of stopping at the first.
struct FeedChecker<'a> {
    label: String,
    base: &'a Path,
    problems: &'a mut Vec<Problem>,
    failed: bool,
}

impl<'a> FeedChecker<'a> {
    fn new(index: usize, base: &'a Path, problems: &'a mut Vec<Problem>) -> Self {
        FeedChecker {
            label: format!("#{}", index + 1),
            base,
            problems,
            failed: false,
        }
    }

    fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.failed = true;
        self.problems.push(Problem {
            feed: Some(self.label.clone()),
            key: Some(key.into()),
            message: message.into(),
        });
    }

    fn check(&mut self, item: &Value) -> Option<FeedConfig> {
        let Some(t) = item.as_table() else {
            self.problem("feeds", "expected a table");
            return None;
        };

        // The name first, so that every later message can name the feed.
        match t.get("name").map(|v| v.as_str()) {
            Some(Some(n)) if valid_name(n) => self.label = n.to_string(),
            Some(Some(n)) => {
                self.label = format!("{} ({n:?})", self.label);
                self.problem(
                    "name",
                    "expected letters, digits and '-' only (1 to 64 of them)",
                )
            }
            Some(None) => self.problem("name", "expected a string"),
            None => self.problem("name", "missing; every feed needs a unique name"),
        }
        let kind = match t.get("kind").map(|v| v.as_str()) {
            Some(Some(k)) => match Kind::parse(k) {
                Some(kind) => Some(kind),
                None => {
                    self.problem(
                        "kind",
                        format!("\"{k}\" is not a kind; expected rss, csv, taxii or stream"),
                    );
                    None
                }
            },
            Some(None) => {
                self.problem("kind", "expected a string: rss, csv, taxii or stream");
                None
            }
            None => {
                self.problem("kind", "missing; expected rss, csv, taxii or stream");
                None
            }
        };

        // Keys that do not exist, or that belong to another kind, are refused rather than
        // silently ignored: a misspelt `verify_tls` must not leave verification in an
        // unexpected state.
        for key in t.keys() {
            if COMMON_KEYS.contains(&key.as_str()) {
                continue;
            }
            let owner = [Kind::Rss, Kind::Csv, Kind::Taxii, Kind::Stream]
                .into_iter()
                .find(|k| k.own_keys().contains(&key.as_str()));
            match (owner, kind) {
                (Some(o), Some(k)) if o == k => {}
                (Some(o), Some(k)) => {
                    self.problem(key, format!("applies to {o} feeds only, not to a {k} feed"))
                }
                (Some(_), None) => {}
                (None, _) => self.problem(key, "unknown key"),
            }
        }

        let url = self.url(t, kind);
        let interval_secs = match t.get("interval") {
            None => 3_600,
            Some(v) => match v.as_str().map(parse_duration) {
                Some(Ok(d)) if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&d) => {
                    self.problem(
                        "interval",
                        "expected a duration from 10s to 365d (how often the feed is fetched)",
                    );
                    0
                }
                Some(Ok(d)) => d.as_secs(),
                Some(Err(e)) => {
                    self.problem("interval", e);
                    0
                }
                None => {
                    self.problem(
                        "interval",
                        "expected a string such as \"30m\", \"1h\" or \"PT1H\"",
                    );
                    0
                }
            },
        };
        let import_from = self.opt_date(t, "import_from");
        let author = self.opt_string(t, "author");
        let user = self.opt_string(t, "user");
        let markings = self.markings(t);
        let pause_after_failures = match t.get("pause_after_failures") {
            None => DEFAULT_PAUSE_AFTER_FAILURES,
            Some(v) => match v.as_integer() {
                Some(n) if (0..=10_000).contains(&n) => n as u32,
                _ => {
                    self.problem(
                        "pause_after_failures",
                        "expected a whole number of failed pages in a row (0 never pauses)",
                    );
                    DEFAULT_PAUSE_AFTER_FAILURES
                }
            },
        };
        let http = self.http(t, kind);
        let kind_config = kind.and_then(|k| self.kind_config(k, t));
        if self.failed {
            return None;
        }
        Some(FeedConfig {
            name: self.label.clone(),
            url: url?,
            interval_secs,
            import_from,
            author,
            markings,
            user,
            http,
            pause_after_failures,
            kind: kind_config?,
        })
    }

    fn url(&mut self, t: &toml::Table, kind: Option<Kind>) -> Option<String> {
        let Some(raw) = t.get("url") else {
            self.problem(
                "url",
                "missing; expected an http(s):// URL, or file: for local runs",
            );
            return None;
        };
        let Some(raw) = raw.as_str() else {
            self.problem("url", "expected a string");
            return None;
        };
        // `file:relative/path` is resolved against the configuration's folder so that a
        // configuration and its sample files can move together.
        if let Some(rest) = raw.strip_prefix("file:") {
            if matches!(kind, Some(Kind::Taxii) | Some(Kind::Stream)) {
                self.problem(
                    "url",
                    "a file: URL cannot serve a TAXII server or a live stream",
                );
                return None;
            }
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let full = if Path::new(path).is_absolute() {
                PathBuf::from(path)
            } else {
                self.base.join(path)
            };
            let full = std::path::absolute(&full).unwrap_or(full);
            return match url::Url::from_file_path(&full) {
                Ok(u) => Some(u.to_string()),
                Err(()) => {
                    self.problem(
                        "url",
                        format!("cannot make a file URL of {}", full.display()),
                    );
                    None
                }
            };
        }
        match url::Url::parse(raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                Some(u.to_string())
            }
            Ok(u) => {
                self.problem(
                    "url",
                    format!(
                        "scheme \"{}\" is not supported; expected http://, https:// or file:",
                        u.scheme()
                    ),
                );
                None
            }
            Err(e) => {
                self.problem("url", format!("\"{raw}\" is not a URL ({e})"));
                None
            }
        }
    }

    fn opt_string(&mut self, t: &toml::Table, key: &str) -> Option<String> {
        match t.get(key) {
            None => None,
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(_) => {
                self.problem(key, "expected a non-empty string");
                None
            }
        }
    }

    fn opt_bool(&mut self, t: &toml::Table, key: &str, default: bool) -> bool {
        match t.get(key) {
            None => default,
            Some(Value::Boolean(b)) => *b,
            Some(_) => {
                self.problem(key, "expected true or false");
                default
            }
        }
    }

    fn opt_path(&mut self, t: &toml::Table, key: &str) -> Option<PathBuf> {
        self.opt_string(t, key).map(|p| self.base.join(p))
    }

    fn string_list(&mut self, t: &toml::Table, key: &str) -> Vec<String> {
        match t.get(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    match item.as_str().map(str::trim) {
                        Some(s) if !s.is_empty() => out.push(s.to_string()),
                        _ => {
                            self.problem(key, "expected a list of non-empty strings");
                            return Vec::new();
                        }
                    }
                }
                out
            }
            Some(_) => {
                self.problem(key, "expected a list of strings");
                Vec::new()
            }
        }
    }

    fn opt_date(&mut self, t: &toml::Table, key: &str) -> Option<DateTime<Utc>> {
        let parsed = match t.get(key)? {
            Value::String(s) if s.trim().is_empty() => return None,
            Value::String(s) => DateTime::parse_from_rfc3339(s.trim())
                .map(|d| d.with_timezone(&Utc))
                .ok()
                .or_else(|| {
                    chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                        .map(|d| d.and_utc())
                }),
            Value::Datetime(d) => DateTime::parse_from_rfc3339(&d.to_string())
                .map(|d| d.with_timezone(&Utc))
                .ok()
                .or_else(|| {
                    chrono::NaiveDate::parse_from_str(&d.to_string(), "%Y-%m-%d")
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                        .map(|d| d.and_utc())
                }),
            _ => None,
        };
        if parsed.is_none() {
            self.problem(key, "expected an RFC 3339 date such as \"2024-01-01T00:00:00Z\" or a day \"2024-01-01\"");
        }
        parsed
    }

    fn markings(&mut self, t: &toml::Table) -> Vec<Tlp> {
        let mut out = Vec::new();
        for m in self.string_list(t, "markings") {
            match Tlp::parse(&m) {
                Some(tlp) if !out.contains(&tlp) => out.push(tlp),
                Some(_) => {}
                None => self.problem(
                    "markings",
                    format!("\"{m}\" is not a TLP marking; expected TLP:CLEAR, TLP:GREEN, TLP:AMBER, TLP:AMBER+STRICT or TLP:RED"),
                ),
            }
        }
        out
    }

    fn http(&mut self, t: &toml::Table, kind: Option<Kind>) -> HttpOptions {
        let mut h = HttpOptions {
            verify_tls: self.opt_bool(t, "verify_tls", true),
            allow_private_network: self.opt_bool(t, "allow_private_network", false),
            ca: self.opt_path(t, "ca"),
            user_agent: self.opt_string(t, "user_agent"),
            ..HttpOptions::default()
        };
        if let Some(v) = t.get("timeout") {
            match v.as_str().map(parse_duration) {
                Some(Ok(d)) if d > MAX_TIMEOUT => {
                    self.problem("timeout", "expected a duration of at most 1h")
                }
                Some(Ok(d)) => h.timeout_secs = d.as_secs(),
                Some(Err(e)) => self.problem("timeout", e),
                None => self.problem("timeout", "expected a string such as \"30s\" or \"2m\""),
            }
        }
        if let Some(v) = t.get("max_response_bytes") {
            match v.as_integer() {
                Some(n) if n > 0 => h.max_response_bytes = n as u64,
                _ => self.problem(
                    "max_response_bytes",
                    "expected a positive whole number of bytes",
                ),
            }
        }
        if let Some(p) = self.opt_string(t, "proxy") {
            match url::Url::parse(&p) {
                Ok(u) if matches!(u.scheme(), "http" | "https" | "socks5" | "socks5h") => {
                    h.proxy = Some(p)
                }
                _ => self.problem(
                    "proxy",
                    "expected a proxy URL: http://, https:// or socks5://",
                ),
            }
        }
        if let Some(v) = t.get("auth") {
            if let Some(a) = self.auth(v) {
                h.auth = a;
            }
            if matches!(kind, Some(Kind::Stream))
                && !matches!(h.auth, Auth::Bearer { .. } | Auth::None)
            {
                self.problem("auth", "a live stream takes a bearer token: { type = \"bearer\", token = \"env:NAME\" }");
            }
        }
        h
    }

    fn auth(&mut self, v: &Value) -> Option<Auth> {
        let Some(t) = v.as_table() else {
            self.problem(
                "auth",
                "expected an inline table such as { type = \"bearer\", token = \"env:TOKEN\" }",
            );
            return None;
        };
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("");
        let allowed: &[&str] = match kind {
            "none" => &["type"],
            "basic" => &["type", "username", "password"],
            "bearer" => &["type", "token"],
            "header" => &["type", "name", "value"],
            "certificate" => &["type", "cert", "key", "ca"],
            _ => {
                self.problem(
                    "auth.type",
                    "expected none, basic, bearer, header or certificate",
                );
                return None;
            }
        };
        for key in t.keys() {
            if !allowed.contains(&key.as_str()) {
                self.problem(
                    &format!("auth.{key}"),
                    format!(
                        "not a setting of {kind} auth; expected {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
        let text = |this: &mut Self, key: &str| -> Option<String> {
            match t.get(key).and_then(Value::as_str) {
                Some(s) if !s.is_empty() => Some(s.to_string()),
                _ => {
                    this.problem(
                        &format!("auth.{key}"),
                        "missing; expected a non-empty string",
                    );
                    None
                }
            }
        };
        let secret = |this: &mut Self, key: &str| -> Option<SecretRef> {
            let raw = text(this, key)?;
            match SecretRef::parse(&raw) {
                Ok(r) => Some(r),
                Err(e) => {
                    // The value itself is not repeated: it may be the secret.
                    this.problem(&format!("auth.{key}"), format!("expected {e}"));
                    None
                }
            }
        };
        match kind {
            "none" => Some(Auth::None),
            "basic" => {
                let username = text(self, "username");
                let password = secret(self, "password");
                Some(Auth::Basic {
                    username: username?,
                    password: password?,
                })
            }
            "bearer" => Some(Auth::Bearer {
                token: secret(self, "token")?,
            }),
            "header" => {
                let name = text(self, "name");
                if let Some(n) = &name {
                    if reqwest::header::HeaderName::from_bytes(n.as_bytes()).is_err() {
                        self.problem("auth.name", format!("\"{n}\" is not a valid header name"));
                    }
                }
                let value = secret(self, "value");
                Some(Auth::Header {
                    name: name?,
                    value: value?,
                })
            }
            _ => {
                let cert = text(self, "cert").map(|p| self.base.join(p));
                let key = text(self, "key").map(|p| self.base.join(p));
                let ca = t
                    .get("ca")
                    .and_then(Value::as_str)
                    .map(|p| self.base.join(p));
                Some(Auth::Certificate {
                    cert: cert?,
                    key: key?,
                    ca,
                })
            }
        }
    }

    fn kind_config(&mut self, kind: Kind, t: &toml::Table) -> Option<KindConfig> {
        match kind {
            Kind::Rss => {
                let mut report_types = self.string_list(t, "report_types");
                if report_types.is_empty() {
                    report_types.push("threat-report".into());
                }
                Some(KindConfig::Rss { report_types })
            }
            Kind::Csv => {
                let Some(path) = self.opt_path(t, "mapper") else {
                    self.problem(
                        "mapper",
                        "missing; a csv feed needs a CSV mapper file (OpenCTI's mapper JSON)",
                    );
                    return None;
                };
                match std::fs::read_to_string(&path) {
                    Ok(mapper) => match crate::kinds::check_mapper(&mapper) {
                        Ok(()) => Some(KindConfig::Csv {
                            mapper,
                            mapper_path: Some(path),
                        }),
                        Err(e) => {
                            self.problem("mapper", format!("{}: {e}", path.display()));
                            None
                        }
                    },
                    Err(e) => {
                        self.problem("mapper", format!("cannot read {}: {e}", path.display()));
                        None
                    }
                }
            }
            Kind::Taxii => {
                let collection = self.opt_string(t, "collection");
                if collection.is_none() {
                    self.problem("collection", "missing; expected the collection id (`feedstix taxii collections URL` lists them)");
                }
                let version = self
                    .opt_string(t, "version")
                    .unwrap_or_else(|| "2.1".into());
                if version != "2.1" && version != "2.0" {
                    self.problem(
                        "version",
                        format!("\"{version}\" is not supported; expected \"2.1\" or \"2.0\""),
                    );
                }
                let page_size = match t.get("page_size") {
                    None => DEFAULT_TAXII_PAGE_SIZE,
                    Some(v) => match v.as_integer() {
                        Some(n) if (1..=100_000).contains(&n) => n as u32,
                        _ => {
                            self.problem("page_size", "expected a whole number from 1 to 100000");
                            DEFAULT_TAXII_PAGE_SIZE
                        }
                    },
                };
                let match_types = self.string_list(t, "match_types");
                Some(KindConfig::Taxii {
                    collection: collection?,
                    version,
                    page_size,
                    match_types,
                })
            }
            Kind::Stream => {
                let stream_id = self.opt_string(t, "stream_id");
                if stream_id.is_none() {
                    self.problem(
                        "stream_id",
                        "missing; expected the id of the live stream on the remote platform",
                    );
                }
                Some(KindConfig::Stream {
                    stream_id: stream_id?,
                    listen_deletions: self.opt_bool(t, "listen_deletions", false),
                    no_dependencies: self.opt_bool(t, "no_dependencies", false),
                    perfect_sync: self.opt_bool(t, "perfect_sync", false),
                })
            }
        }
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match parse(text, Path::new("/cfg")) {
            Err(ParseFailure::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
            Err(ParseFailure::Syntax(s)) => vec![format!("syntax: {s}")],
            Ok(_) => Vec::new(),
        }
    }

    #[test]
    fn a_full_rss_and_taxii_definition_parses_with_defaults() {
        let (settings, feeds) = parse(
            r#"
            [settings]
            max_message_bytes = 524288

            [[feeds]]
            name = "cert-news"
            kind = "rss"
            url = "https://cert.example.test/feed.xml"
            interval = "PT30M"
            import_from = "2024-01-01"
            author = "Example CERT"
            markings = ["TLP:GREEN", "tlp:green"]

            [[feeds]]
            name = "isac"
            kind = "taxii"
            url = "https://taxii.example.test/api1/"
            collection = "91a7b528-80eb-42ed-a74d-c6fbd5a26116"
            auth = { type = "basic", username = "reader", password = "env:TAXII_PASSWORD" }
            verify_tls = false
            timeout = "2m"
            "#,
            Path::new("/cfg"),
        )
        .unwrap();
        assert_eq!(settings.max_message_bytes, 524_288);
        let rss = &feeds[0];
        assert_eq!(rss.interval_secs, 1_800);
        assert_eq!(rss.markings, vec![Tlp::Green]);
        assert_eq!(
            rss.import_from.unwrap().to_rfc3339(),
            "2024-01-01T00:00:00+00:00"
        );
        assert_eq!(
            rss.kind,
            KindConfig::Rss {
                report_types: vec!["threat-report".into()]
            }
        );
        assert!(rss.http.verify_tls);
        assert_eq!(rss.http.max_response_bytes, DEFAULT_MAX_RESPONSE_BYTES);
        let taxii = &feeds[1];
        assert!(!taxii.http.verify_tls);
        assert_eq!(taxii.http.timeout_secs, 120);
        assert_eq!(
            taxii.http.auth,
            Auth::Basic {
                username: "reader".into(),
                password: SecretRef::Env("TAXII_PASSWORD".into())
            }
        );
        match &taxii.kind {
            KindConfig::Taxii {
                version, page_size, ..
            } => {
                assert_eq!(
                    (version.as_str(), *page_size),
                    ("2.1", DEFAULT_TAXII_PAGE_SIZE)
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_problem_names_feed_and_key() {
        let got = problems(
            r#"
            [[feeds]]
            name = "a"
            kind = "rss"
            url = "https://x.example.test/"
            interval = "5x"
            timeout = "100000000000d"
            verfy_tls = false
            collection = "abc"
            markings = ["TLP:PURPLE"]

            [[feeds]]
            name = "b c"
            kind = "gopher"
            "#,
        );
        let expect = [
            "feed a: key `verfy_tls`: unknown key",
            "feed a: key `collection`: applies to taxii feeds only, not to a rss feed",
            "feed a: key `interval`: \"5x\" is not a duration",
            "feed a: key `timeout`: expected a duration of at most 1h",
            "feed a: key `markings`: \"TLP:PURPLE\" is not a TLP marking",
            "feed #2 (\"b c\"): key `name`: expected letters, digits and '-' only",
            "key `kind`: \"gopher\" is not a kind",
            "key `url`: missing",
        ];
        for e in expect {
            assert!(
                got.iter().any(|g| g.contains(e)),
                "missing {e:?} in {got:#?}"
            );
        }
    }

    #[test]
    fn inline_secrets_are_refused_without_echoing_them() {
        let got = problems(
            r#"
            [[feeds]]
            name = "t"
            kind = "taxii"
            url = "https://taxii.example.test/api1/"
            collection = "c"
            auth = { type = "bearer", token = "s3cr3t-token-value" }
            "#,
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].contains("feed t: key `auth.token`: expected a secret reference"),
            "{got:?}"
        );
        assert!(!got[0].contains("s3cr3t"), "the secret leaked into {got:?}");
    }

    #[test]
    fn duplicate_names_and_missing_required_keys() {
        let got = problems(
            r#"
            [[feeds]]
            name = "same"
            kind = "taxii"
            url = "https://a.example.test/api/"

            [[feeds]]
            name = "same"
            kind = "rss"
            url = "https://b.example.test/rss"

            [[feeds]]
            name = "s"
            kind = "stream"
            url = "https://opencti.example.test"
            "#,
        );
        assert!(
            got.iter()
                .any(|g| g.contains("feed same: key `collection`: missing")),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|g| g.contains("feed s: key `stream_id`: missing")),
            "{got:?}"
        );
        // The duplicate check runs on feeds that are otherwise valid.
        let dup = problems(
            "[[feeds]]\nname='x'\nkind='rss'\nurl='https://a.example.test/'\n[[feeds]]\nname='x'\nkind='rss'\nurl='https://b.example.test/'\n",
        );
        assert_eq!(
            dup,
            vec!["feed x: key `name`: this name is used by an earlier feed; names must be unique"]
        );
    }

    #[test]
    fn file_urls_resolve_against_the_config_folder() {
        let (_, feeds) = parse(
            "[[feeds]]\nname='f'\nkind='rss'\nurl='file:feeds/a.xml'\n",
            Path::new("/cfg/dir"),
        )
        .unwrap();
        assert_eq!(feeds[0].url, "file:///cfg/dir/feeds/a.xml");
        let bad = problems("[[feeds]]\nname='f'\nkind='rss'\nurl='ftp://x.example.test/a'\n");
        assert!(
            bad[0].contains("scheme \"ftp\" is not supported"),
            "{bad:?}"
        );
    }

    #[test]
    fn intervals_outside_ten_seconds_to_a_year_are_refused() {
        for bad in ["1s", "100000000000d", "366d"] {
            let got = problems(&format!(
                "[[feeds]]\nname='f'\nkind='rss'\nurl='https://a.example.test/'\ninterval='{bad}'\n"
            ));
            assert_eq!(
                got,
                vec!["feed f: key `interval`: expected a duration from 10s to 365d (how often the feed is fetched)"],
                "{bad}"
            );
        }
    }

    #[test]
    fn syntax_errors_and_unknown_top_level_keys() {
        assert!(problems("[[feeds]\n")[0].starts_with("syntax:"));
        assert_eq!(
            problems("feed = 1\n"),
            vec!["key `feed`: unknown top-level key; expected [[feeds]] tables and an optional [settings]"]
        );
    }
}
