//! `feedstix taxii collections URL`: what a TAXII server offers, so a user can fill in a
//! feed's `url` (the API root) and `collection`.
//!
//! Credentials are given the way a feed gives them, by reference: the flags name
//! environment variables, never the secret itself, so it does not land in shell history.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use feedstix::config::{Auth, HttpOptions, SecretRef};
use feedstix::http::{open_source, RetryPolicy};
use feedstix::kinds::taxii::collections::list_collections;
use feedstix::kinds::taxii::media::TaxiiVersion;
use feedstix::ports::EnvSecrets;

/// TAXII commands.
#[derive(Subcommand)]
pub enum TaxiiCommand {
    /// List the API roots and collections of a TAXII server.
    ///
    /// URL is the discovery URL (https://host/taxii2/), an API root, or a collections URL.
    /// The table shows each collection's API root (a feed's `url`), id (its
    /// `collection`), title, and whether these credentials may read it.
    ///
    /// Example: feedstix taxii collections https://cti.example.org/taxii2/ --token-env OPENCTI_TOKEN
    Collections(CollectionsArgs),
}

/// Arguments of `taxii collections`.
#[derive(Args)]
// `--version` here is the TAXII version, so the program's own version flag steps aside.
#[command(disable_version_flag = true)]
pub struct CollectionsArgs {
    /// Discovery URL, API root or collections URL.
    url: String,
    /// TAXII version the server speaks.
    #[arg(long, default_value = "2.1", value_parser = ["2.1", "2.0"])]
    version: String,
    /// Basic authentication user (with --password-env).
    #[arg(long, requires = "password_env")]
    username: Option<String>,
    /// Environment variable holding the basic-authentication password.
    #[arg(long, value_name = "VAR", requires = "username")]
    password_env: Option<String>,
    /// Environment variable holding a bearer token.
    #[arg(long, value_name = "VAR", conflicts_with_all = ["username", "header"])]
    token_env: Option<String>,
    /// Name of a header carrying an API key (with --header-value-env).
    #[arg(
        long,
        value_name = "NAME",
        requires = "header_value_env",
        conflicts_with = "username"
    )]
    header: Option<String>,
    /// Environment variable holding the value of --header.
    #[arg(long, value_name = "VAR", requires = "header")]
    header_value_env: Option<String>,
    /// Client certificate (PEM), with --key.
    #[arg(long, value_name = "FILE", requires = "key", conflicts_with_all = ["username", "token_env", "header"])]
    cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// A CA bundle (PEM) to trust for this server.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Do not verify the server's TLS certificate (test servers only).
    #[arg(long)]
    insecure: bool,
    /// Allow loopback, link-local and private addresses (local test servers).
    #[arg(long)]
    allow_private_network: bool,
}

impl CollectionsArgs {
    fn auth(&self) -> Auth {
        if let (Some(username), Some(var)) = (&self.username, &self.password_env) {
            return Auth::Basic {
                username: username.clone(),
                password: SecretRef::Env(var.clone()),
            };
        }
        if let Some(var) = &self.token_env {
            return Auth::Bearer {
                token: SecretRef::Env(var.clone()),
            };
        }
        if let (Some(name), Some(var)) = (&self.header, &self.header_value_env) {
            return Auth::Header {
                name: name.clone(),
                value: SecretRef::Env(var.clone()),
            };
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            return Auth::Certificate {
                cert: cert.clone(),
                key: key.clone(),
                ca: None,
            };
        }
        Auth::None
    }
}

/// Runs a TAXII command.
pub async fn run(command: TaxiiCommand) -> anyhow::Result<ExitCode> {
    match command {
        TaxiiCommand::Collections(args) => collections(args).await,
    }
}

async fn collections(args: CollectionsArgs) -> anyhow::Result<ExitCode> {
    let version = TaxiiVersion::parse(&args.version).context("version must be 2.1 or 2.0")?;
    let options = HttpOptions {
        verify_tls: !args.insecure,
        ca: args.ca.clone(),
        allow_private_network: args.allow_private_network,
        auth: args.auth(),
        ..HttpOptions::default()
    };
    let source = open_source(
        &args.url,
        &options,
        &EnvSecrets,
        false,
        RetryPolicy::default(),
    )
    .await?;
    let listing = match list_collections(source.as_ref(), &args.url, version).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            if matches!(
                e,
                feedstix::kinds::taxii::TaxiiError::Http(feedstix::http::HttpError::Refused { .. })
            ) {
                eprintln!("hint: for this command, pass --allow-private-network");
            }
            return Ok(ExitCode::from(1));
        }
    };
    for w in &listing.warnings {
        eprintln!("warning: {w}");
    }
    let root_width = listing
        .rows
        .iter()
        .map(|r| r.api_root.len())
        .chain([8])
        .max()
        .unwrap_or(8);
    let id_width = listing
        .rows
        .iter()
        .map(|r| r.id.len())
        .chain([13])
        .max()
        .unwrap_or(13);
    outln!(
        "{:<root_width$}  {:<id_width$}  {:<8}  TITLE",
        "API ROOT",
        "COLLECTION ID",
        "CAN_READ"
    );
    for r in &listing.rows {
        outln!(
            "{:<root_width$}  {:<id_width$}  {:<8}  {}",
            r.api_root,
            r.id,
            r.can_read,
            r.title
        );
    }
    if listing.rows.is_empty() {
        eprintln!("no collections found at {}", args.url);
    }
    for e in &listing.errors {
        eprintln!("error: {e}");
    }
    Ok(if listing.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    /// Mirrors how the command mounts these subcommands (with a propagated version).
    #[derive(Parser)]
    #[command(name = "feedstix", version, propagate_version = true)]
    struct Probe {
        #[command(subcommand)]
        command: TaxiiCommand,
    }

    #[test]
    fn flags_are_consistent_and_map_to_auth() {
        Probe::command().debug_assert();
        let probe = Probe::try_parse_from([
            "feedstix",
            "collections",
            "https://cti.example.test/taxii2/",
            "--version",
            "2.0",
            "--header",
            "X-API-Key",
            "--header-value-env",
            "CTI_KEY",
        ])
        .expect("parses");
        let TaxiiCommand::Collections(args) = probe.command;
        assert_eq!(args.version, "2.0");
        assert_eq!(
            args.auth(),
            Auth::Header {
                name: "X-API-Key".into(),
                value: SecretRef::Env("CTI_KEY".into())
            }
        );
        assert!(
            Probe::try_parse_from(["feedstix", "collections", "u", "--username", "a"]).is_err()
        );
    }
}
