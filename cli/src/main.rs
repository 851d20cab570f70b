//! The `feedstix` command: run feeds locally, verify a feed, check a configuration.
//!
//! A thin edge around the library: parse arguments, set up logging, call in, turn the
//! outcome into output and an exit code (0 success, 1 a feed failed, 2 bad usage or
//! configuration).

/// Prints a line to standard output. A reader that went away (`| head`, a closed `less`)
/// ends the command quietly instead of with a panic: the output was only for them.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_out(format_args!($($arg)*))
    };
}

mod cloud;
mod dlq;
mod progress;
mod taxii;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use feedstix::config::{self, Config};
use feedstix::http::RetryPolicy;
use feedstix::local::{self, FeedSummary, LocalRunner, RunOptions, Shutdown};

mod ops;

/// Threat-intelligence feeds (RSS/Atom, CSV, TAXII, OpenCTI streams) to STIX 2.1 bundles.
#[derive(Parser)]
#[command(name = "feedstix", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log level: error, warn, info, debug or trace (FEEDSTIX_LOG overrides, with
    /// per-module filters such as `feedstix=debug`) [default: info; warn while `run` shows
    /// its progress display on a terminal].
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch feeds and write STIX bundles to a folder.
    ///
    /// With --once, every running feed is fetched until its source has no more pages, then
    /// the command exits. Without it, the command keeps running and fetches each feed on
    /// its own interval until Ctrl-C or SIGTERM, which let the page in flight finish and
    /// commit first.
    ///
    /// Each bundle is written atomically to OUT/<feed>/<sequence>.json; the sequence
    /// continues across runs. The state file keeps each feed's cursor, so a second run on
    /// unchanged sources writes nothing new. One line per feed summarises the run; the exit
    /// code is 1 if any feed failed.
    ///
    /// Example: feedstix run --config examples/feeds.toml --once --out out
    Run(RunArgs),

    /// Fetch a feed's first page and print the bundle of the first entities it makes.
    ///
    /// Changes no state and writes no bundle: use it to check a URL, credentials or a CSV
    /// mapper before running the feed.
    ///
    /// Example: feedstix verify --config examples/feeds.toml --feed urlhaus-sample
    Verify(VerifyArgs),

    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),

    /// Show each feed's state: running or stopped, last and next run, cursor, objects,
    /// last error and consecutive failures.
    ///
    /// Locally it reads the state file without locking it, so it works while `run` is
    /// going. With --stack (or --feeds-table and --state-table) it reads the deployment's
    /// tables instead, and the fetch and page queues' depth: SQS counts messages per queue,
    /// not per feed, so that figure is one footer line (`queued_all_feeds` in JSON) and the
    /// per-feed `pages_queued` is null.
    ///
    /// Example: feedstix status --config examples/feeds.toml --json
    ///
    /// Example: feedstix status --stack feedstix
    Status(StatusArgs),

    /// Feed operations: list, show, start, stop, reset; on a deployed stack also sync, add
    /// and remove.
    #[command(subcommand)]
    Feeds(FeedsCommand),

    /// The dead-letter queues of a deployed stack: list, show and redrive what failed.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),

    /// TAXII server commands.
    #[command(subcommand)]
    Taxii(taxii::TaxiiCommand),
}

#[derive(Args)]
struct StatusArgs {
    #[command(flatten)]
    files: Files,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Where a command finds the feeds: the local configuration and state files, or a
/// deployed stack's tables.
#[derive(Args)]
struct Files {
    /// The feeds file (local mode).
    #[arg(
        long,
        short,
        value_name = "FILE",
        required_unless_present_any = ["stack", "feeds_table"],
        conflicts_with_all = ["stack", "feeds_table"]
    )]
    config: Option<PathBuf>,
    /// State file [default: <config name>.state.json beside the config].
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    #[command(flatten)]
    cloud: cloud::Target,
}

#[derive(Args)]
struct OneFeed {
    #[command(flatten)]
    files: Files,
    /// The feed.
    #[arg(long, value_name = "NAME")]
    feed: String,
}

#[derive(Args)]
struct SyncArgs {
    /// The feeds file whose definitions are stored (mappers inlined).
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,
    #[command(flatten)]
    cloud: cloud::Target,
    /// Also remove stored feeds that the file no longer has.
    #[arg(long)]
    prune: bool,
    /// Show what would be added, changed and removed; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not fetch each new or changed feed's first page before storing it (the file is
    /// still checked offline).
    #[arg(long)]
    no_verify: bool,
}

#[derive(Args)]
struct AddArgs {
    /// The feeds file that defines the feed.
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,
    /// The feed to store.
    #[arg(long, value_name = "NAME")]
    feed: String,
    #[command(flatten)]
    cloud: cloud::Target,
    /// Do not fetch the feed's first page before storing it (the file is still checked
    /// offline).
    #[arg(long)]
    no_verify: bool,
}

#[derive(Args)]
struct RemoveArgs {
    /// The feed to remove.
    #[arg(long, value_name = "NAME")]
    feed: String,
    #[command(flatten)]
    cloud: cloud::Target,
}

/// Each of list, show, start, stop and reset works on the local state file with --config,
/// or on a deployed stack with --stack NAME (or --feeds-table and --state-table).
#[derive(Subcommand)]
enum FeedsCommand {
    /// List the feeds with kind, run state, interval and URL.
    ///
    /// Example: feedstix feeds list --config examples/feeds.toml
    ///
    /// Example: feedstix feeds list --stack feedstix
    List(ListArgs),
    /// Show one feed's definition, status and cursor as JSON.
    ///
    /// Example: feedstix feeds show --config examples/feeds.toml --feed cert-advisories
    ///
    /// Example: feedstix feeds show --stack feedstix --feed cert-advisories
    Show(OneFeed),
    /// Start a stopped feed: it is fetched again on its interval.
    ///
    /// Example: feedstix feeds start --config examples/feeds.toml --feed cert-advisories
    ///
    /// Example: feedstix feeds start --stack feedstix --feed cert-advisories
    Start(OneFeed),
    /// Stop a feed: `run` (or the dispatcher, on a stack) skips it until it is started
    /// again. Locally refused while a `run` holds the state file.
    ///
    /// Example: feedstix feeds stop --config examples/feeds.toml --feed cert-advisories
    ///
    /// Example: feedstix feeds stop --stack feedstix --feed cert-advisories
    Stop(OneFeed),
    /// Reset a feed's state: a new epoch, the cursor back to `import_from`; the next run
    /// imports the source again from there. Locally refused while a `run` holds the state
    /// file. On a stack, queued messages of older epochs are dropped when they arrive; the
    /// command prints how many were dropped so far and how many messages are still queued.
    ///
    /// Example: feedstix feeds reset --config examples/feeds.toml --feed urlhaus-sample
    ///
    /// Example: feedstix feeds reset --stack feedstix --feed urlhaus-sample
    Reset(OneFeed),
    /// Store the feeds of a TOML file in a deployed stack's feeds table.
    ///
    /// Adds new feeds and updates changed ones; --prune also removes stored feeds the file
    /// no longer has; --dry-run prints the difference (added, changed with the keys that
    /// differ, removed, unchanged) and writes nothing. A changed url, collection, kind or
    /// stream_id resets that feed's state (a new epoch, the cursor back to import_from) and
    /// says so. Each new or changed feed is checked first as `verify` does (its first page
    /// is fetched; --no-verify skips that); a file: URL is refused, since the functions
    /// cannot read local files. If any definition fails, nothing is written.
    ///
    /// Example: feedstix feeds sync --config feeds.toml --stack feedstix --dry-run
    ///
    /// Example: feedstix feeds sync --config feeds.toml --feeds-table fx-feeds --state-table fx-state --prune
    Sync(SyncArgs),
    /// Store one feed of a TOML file in a deployed stack's feeds table (checked as `sync`
    /// checks it; an existing definition is updated).
    ///
    /// Example: feedstix feeds add --config feeds.toml --feed urlhaus --stack feedstix
    Add(AddArgs),
    /// Remove one feed from a deployed stack's feeds table. Its state is kept; adding the
    /// feed again starts it on a new epoch.
    ///
    /// Example: feedstix feeds remove --feed urlhaus --stack feedstix
    Remove(RemoveArgs),
}

#[derive(Args)]
struct ListArgs {
    #[command(flatten)]
    files: Files,
}

#[derive(Args)]
struct RunArgs {
    /// The feeds file (TOML, one [[feeds]] table per feed).
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,
    /// Fetch every feed until its source has no more pages, then exit.
    #[arg(long)]
    once: bool,
    /// Output folder for bundles.
    #[arg(long, value_name = "DIR", default_value = "out")]
    out: PathBuf,
    /// State file [default: <config name>.state.json beside the config].
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Only this feed (repeatable).
    #[arg(long = "feed", value_name = "NAME")]
    feeds: Vec<String>,
    /// No progress display, even on a terminal (logs only).
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
struct VerifyArgs {
    /// The feeds file.
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,
    /// The feed to verify.
    #[arg(long, value_name = "NAME")]
    feed: String,
    /// How many entities to show.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a feeds file offline and list its feeds.
    ///
    /// Example: feedstix config check --config examples/feeds.toml
    Check {
        /// The feeds file.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The progress display says per page what the info lines would; both on one terminal
    // would interleave, so the display quiets info unless a level was asked for.
    let quiet = matches!(&cli.command, Command::Run(args) if show_progress(args));
    let level = cli
        .log_level
        .clone()
        .unwrap_or_else(|| if quiet { "warn" } else { "info" }.into());
    init_logging(&level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", without_sdk_debug(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

/// An AWS SDK error's display chain ends with the whole error in debug form (request
/// headers and body included); the chain before it already says what failed and why.
fn without_sdk_debug(message: &str) -> &str {
    const MARKERS: [&str; 5] = [
        " (ServiceError(",
        " (DispatchFailure(",
        " (TimeoutError(",
        " (ResponseError(",
        " (ConstructionFailure(",
    ];
    let cut = MARKERS
        .iter()
        .filter_map(|m| message.find(m))
        .min()
        .unwrap_or(message.len());
    &message[..cut]
}

/// Whether `run` draws its progress display: on a terminal, unless turned off.
fn show_progress(args: &RunArgs) -> bool {
    use std::io::IsTerminal;
    !args.no_progress && std::io::stderr().is_terminal()
}

fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{args}").and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

fn init_logging(level: &str) {
    let filter = std::env::var("FEEDSTIX_LOG")
        .ok()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| {
            // The SDK's credential and region probes warn about every source they try; the
            // command's error already says what failed. They speak again at debug.
            let quiet_sdk = if matches!(level, "debug" | "trace") {
                String::new()
            } else {
                ",aws_config=error".into()
            };
            tracing_subscriber::EnvFilter::try_new(format!("{level}{quiet_sdk}"))
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        });
    use std::io::IsTerminal;
    // Colours only for a person at a terminal; log files and pipes get plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run(args).await,
        Command::Verify(args) => verify(args).await,
        Command::Config(ConfigCommand::Check { config }) => check(config),
        Command::Status(args) => match local_files(&args.files)? {
            None => cloud::status(&args.files.cloud, args.json).await,
            Some((config, state)) => ops::status(&config, &state, args.json),
        },
        Command::Feeds(command) => feeds(command).await,
        Command::Dlq(command) => dlq::run(command).await,
        Command::Taxii(command) => taxii::run(command).await,
    }
}

/// The local configuration and state file of a command, or `None` when it names a
/// deployment instead.
fn local_files(files: &Files) -> anyhow::Result<Option<(Config, PathBuf)>> {
    if files.cloud.given() {
        return Ok(None);
    }
    let Some(path) = &files.config else {
        anyhow::bail!("give --config FILE, or --stack NAME (or --feeds-table and --state-table)");
    };
    Ok(Some((
        load(path)?,
        ops::state_path(path, files.state.clone()),
    )))
}

fn cloud_target(target: &cloud::Target) -> anyhow::Result<&cloud::Target> {
    if !target.given() {
        anyhow::bail!(
            "this command works on a deployed stack: give --stack NAME, or --feeds-table and --state-table"
        );
    }
    Ok(target)
}

async fn feeds(command: FeedsCommand) -> anyhow::Result<ExitCode> {
    match command {
        FeedsCommand::List(args) => match local_files(&args.files)? {
            None => cloud::list(&args.files.cloud).await,
            Some((config, state)) => ops::list(&config, &state),
        },
        FeedsCommand::Show(one) => match local_files(&one.files)? {
            None => cloud::show(&one.files.cloud, &one.feed).await,
            Some((config, state)) => ops::show(&config, &state, &one.feed),
        },
        FeedsCommand::Start(one) => match local_files(&one.files)? {
            None => cloud::set_running(&one.files.cloud, &one.feed, true).await,
            Some((config, state)) => ops::set_running(&config, &state, &one.feed, true).await,
        },
        FeedsCommand::Stop(one) => match local_files(&one.files)? {
            None => cloud::set_running(&one.files.cloud, &one.feed, false).await,
            Some((config, state)) => ops::set_running(&config, &state, &one.feed, false).await,
        },
        FeedsCommand::Reset(one) => match local_files(&one.files)? {
            None => cloud::reset(&one.files.cloud, &one.feed).await,
            Some((config, state)) => ops::reset(&config, &state, &one.feed).await,
        },
        FeedsCommand::Sync(args) => {
            let target = cloud_target(&args.cloud)?;
            let config = load(&args.config)?;
            let options = cloud::SyncOptions {
                only: None,
                prune: args.prune,
                dry_run: args.dry_run,
                verify: !args.no_verify,
            };
            cloud::sync(&config, target, &options).await
        }
        FeedsCommand::Add(args) => {
            let target = cloud_target(&args.cloud)?;
            let config = load(&args.config)?;
            let options = cloud::SyncOptions {
                only: Some(args.feed.clone()),
                prune: false,
                dry_run: false,
                verify: !args.no_verify,
            };
            cloud::sync(&config, target, &options).await
        }
        FeedsCommand::Remove(args) => cloud::remove(cloud_target(&args.cloud)?, &args.feed).await,
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Ok(config::load(path)?)
}

fn check(path: PathBuf) -> anyhow::Result<ExitCode> {
    let config = load(&path)?;
    outln!(
        "{}: {} feed(s), all valid",
        path.display(),
        config.feeds.len()
    );
    for feed in &config.feeds {
        outln!(
            "  {:<32} {:<6} every {:<8} {}",
            feed.name,
            feed.kind(),
            feedstix::duration::format_duration(feed.interval()),
            feed.url
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config)?;
    for name in &args.feeds {
        if config.feed(name).is_none() {
            anyhow::bail!("no feed named {name} in {}", args.config.display());
        }
    }
    let options = RunOptions {
        out: args.out.clone(),
        state: args
            .state
            .clone()
            .unwrap_or_else(|| local::default_state_path(&args.config)),
        only: args.feeds.clone(),
        retry: RetryPolicy::default(),
    };
    let mut runner = LocalRunner::new(&config, &options)?;
    if show_progress(&args) {
        runner = runner.with_progress(progress::terminal());
    }
    let shutdown = Shutdown::default();
    spawn_signal_handler(shutdown.clone());
    tracing::info!(config = %args.config.display(), out = %options.out.display(), state = %options.state.display(), once = args.once, "run started");

    if args.once {
        let summaries = runner
            .run_once(&shutdown)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        print_summaries(&summaries);
        let failed = summaries.iter().any(|s| s.error.is_some());
        return Ok(if failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    let mut failed = false;
    runner
        .run_forever(&shutdown, |summaries| {
            print_summaries(summaries);
            failed |= summaries.iter().any(|s| s.error.is_some());
        })
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_summaries(summaries: &[FeedSummary]) {
    for s in summaries {
        match (&s.error, &s.note) {
            (Some(e), _) => {
                // The error starts with the feed's own name; the line already says it.
                let e = e.strip_prefix(&format!("feed {}: ", s.feed)).unwrap_or(e);
                outln!("{}: failed after {} page(s): {e}", s.feed, s.pages)
            }
            (None, Some(note)) => outln!("{}: not fetched ({note})", s.feed),
            (None, None) => outln!(
                "{}: ok, {} page(s), {} object(s), {} bundle(s), {} byte(s){}",
                s.feed,
                s.pages,
                s.objects,
                s.bundles,
                s.bytes,
                if s.skipped > 0 {
                    format!(", {} skipped", s.skipped)
                } else {
                    String::new()
                }
            ),
        }
    }
}

fn spawn_signal_handler(shutdown: Shutdown) {
    tokio::spawn(async move {
        let mut first = true;
        loop {
            wait_for_signal().await;
            if !first {
                eprintln!("second signal: stopping now");
                std::process::exit(130);
            }
            first = false;
            eprintln!("stopping after the pages in flight (signal again to stop now)");
            shutdown.request();
        }
    });
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config)?;
    let feed = config
        .feed(&args.feed)
        .with_context(|| format!("no feed named {} in {}", args.feed, args.config.display()))?;
    match local::verify(feed, args.limit, RetryPolicy::default()).await {
        Ok((bundle, total, skipped)) => {
            outln!("{}", serde_json::to_string_pretty(&bundle)?);
            let shown = bundle["objects"].as_array().map(Vec::len).unwrap_or(0);
            eprintln!(
                "feed {}: first page makes {total} object(s); the bundle above shows {shown} (first {} plus author and markings)",
                feed.name, args.limit
            );
            for s in skipped {
                eprintln!("  skipped {s}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
