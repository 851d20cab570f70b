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
    /// per-module filters such as `feedstix=debug`).
    #[arg(long, global = true, default_value = "info", value_name = "LEVEL")]
    log_level: String,

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
    /// Reads the state file without locking it, so it works while `run` is going.
    ///
    /// Example: feedstix status --config examples/feeds.toml --json
    Status(StatusArgs),

    /// Feed operations: list, show, start, stop, reset.
    #[command(subcommand)]
    Feeds(FeedsCommand),

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

/// The configuration and state files of a command.
#[derive(Args)]
struct Files {
    /// The feeds file.
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,
    /// State file [default: <config name>.state.json beside the config].
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
}

#[derive(Args)]
struct OneFeed {
    #[command(flatten)]
    files: Files,
    /// The feed.
    #[arg(long, value_name = "NAME")]
    feed: String,
}

#[derive(Subcommand)]
enum FeedsCommand {
    /// List the feeds with kind, run state, interval and URL.
    ///
    /// Example: feedstix feeds list --config examples/feeds.toml
    List(Files),
    /// Show one feed's definition, status and cursor as JSON.
    ///
    /// Example: feedstix feeds show --config examples/feeds.toml --feed cert-advisories
    Show(OneFeed),
    /// Start a stopped feed: it is fetched again on its interval.
    ///
    /// Example: feedstix feeds start --config examples/feeds.toml --feed cert-advisories
    Start(OneFeed),
    /// Stop a feed: `run` skips it until it is started again. Refused while a `run` holds
    /// the state file.
    ///
    /// Example: feedstix feeds stop --config examples/feeds.toml --feed cert-advisories
    Stop(OneFeed),
    /// Reset a feed's state: a new epoch, the cursor back to `import_from`; the next run
    /// imports the source again from there. Refused while a `run` holds the state file.
    ///
    /// Example: feedstix feeds reset --config examples/feeds.toml --feed urlhaus-sample
    Reset(OneFeed),
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
    init_logging(&cli.log_level);
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
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
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
            tracing_subscriber::EnvFilter::try_new(level)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run(args).await,
        Command::Verify(args) => verify(args).await,
        Command::Config(ConfigCommand::Check { config }) => check(config),
        Command::Status(args) => {
            let config = load(&args.files.config)?;
            ops::status(
                &config,
                &ops::state_path(&args.files.config, args.files.state),
                args.json,
            )
        }
        Command::Feeds(command) => feeds(command).await,
        Command::Taxii(command) => taxii::run(command).await,
    }
}

async fn feeds(command: FeedsCommand) -> anyhow::Result<ExitCode> {
    match command {
        FeedsCommand::List(files) => {
            let config = load(&files.config)?;
            ops::list(&config, &ops::state_path(&files.config, files.state))
        }
        FeedsCommand::Show(one) => {
            let config = load(&one.files.config)?;
            ops::show(
                &config,
                &ops::state_path(&one.files.config, one.files.state),
                &one.feed,
            )
        }
        FeedsCommand::Start(one) => {
            let config = load(&one.files.config)?;
            ops::set_running(
                &config,
                &ops::state_path(&one.files.config, one.files.state),
                &one.feed,
                true,
            )
            .await
        }
        FeedsCommand::Stop(one) => {
            let config = load(&one.files.config)?;
            ops::set_running(
                &config,
                &ops::state_path(&one.files.config, one.files.state),
                &one.feed,
                false,
            )
            .await
        }
        FeedsCommand::Reset(one) => {
            let config = load(&one.files.config)?;
            ops::reset(
                &config,
                &ops::state_path(&one.files.config, one.files.state),
                &one.feed,
            )
            .await
        }
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
    let runner = LocalRunner::new(&config, &options)?;
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
