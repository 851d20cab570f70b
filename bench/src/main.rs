//! `feedstix-bench`: the feedstix benchmark (run it through `scripts/bench`).
//!
//! `all` generates seeded inputs, runs the release `feedstix run --once` on each as its own
//! process (pinned to one core when `taskset` exists; the fastest of `--runs`, 3 by
//! default) and prints one table row per case: items, seconds, items per second, peak RSS,
//! CPU time, output bytes, and beside them the floors on the same input (the plain read
//! and the parse alone). TAXII and the live stream are served from memory by loopback
//! stand-ins (`servers`). Each case also runs at a tenth of its size, so a reader can see
//! how peak memory follows the source's size. Then it measures the Lambda binaries:
//! stripped size, and the time from spawn until the first "next invocation" request
//! reaches a local runtime API stand-in.
//!
//! The other subcommands are the pieces, for poking at one case by hand:
//! `gen KIND FILE N`, `taxii-serve N`, `lambda-ready BIN...`, and the hidden
//! `parse-only KIND FILE` that `all` times as a floor.
//!
//! This is a benchmark, not a test: nothing here runs under `cargo test` but the unit
//! tests of the generators.

mod floor;
mod gen;
mod servers;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The seed of every generated input unless `--seed` says otherwise.
const DEFAULT_SEED: u64 = 20_240_930;

/// How often a function's cold start is measured; the median is reported.
const READY_RUNS: usize = 7;

const USAGE: &str = "\
usage: feedstix-bench all [--feedstix BIN] [--functions DIR] [--work DIR] [--repo DIR]
                          [--scale F] [--seed N] [--runs N] [--only CASE,...]
                          [--function-env K=V]...
       feedstix-bench gen rss|atom|csv FILE N [--seed N]
       feedstix-bench taxii-serve N [--seed N]
       feedstix-bench lambda-ready BIN... [--function-env K=V]...";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("feedstix-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Options of the `all` subcommand (and the flags the others share).
struct Options {
    feedstix: PathBuf,
    functions: PathBuf,
    work: PathBuf,
    repo: PathBuf,
    scale: f64,
    seed: u64,
    only: Option<Vec<String>>,
    runs: usize,
    function_env: Vec<(String, String)>,
    positional: Vec<String>,
}

fn parse_options(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        feedstix: PathBuf::from("target/release/feedstix"),
        functions: PathBuf::from("target/release"),
        work: PathBuf::from("target/bench"),
        repo: PathBuf::from("."),
        scale: 1.0,
        seed: DEFAULT_SEED,
        only: None,
        runs: 3,
        function_env: Vec::new(),
        positional: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .with_context(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--feedstix" => o.feedstix = value()?.into(),
            "--functions" => o.functions = value()?.into(),
            "--work" => o.work = value()?.into(),
            "--repo" => o.repo = value()?.into(),
            "--scale" => o.scale = value()?.parse().context("--scale")?,
            "--seed" => o.seed = value()?.parse().context("--seed")?,
            "--runs" => o.runs = value()?.parse().context("--runs")?,
            "--only" => o.only = Some(value()?.split(',').map(str::to_string).collect()),
            "--function-env" => {
                let v = value()?;
                let (k, v) = v.split_once('=').context("--function-env takes K=V")?;
                o.function_env.push((k.into(), v.into()));
            }
            flag if flag.starts_with("--") => bail!("unknown flag {flag}\n{USAGE}"),
            _ => o.positional.push(arg.clone()),
        }
    }
    Ok(o)
}

fn run(args: &[String]) -> anyhow::Result<()> {
    let Some((command, rest)) = args.split_first() else {
        bail!("{USAGE}");
    };
    let o = parse_options(rest)?;
    let pos = |i: usize| {
        o.positional
            .get(i)
            .map(String::as_str)
            .with_context(|| format!("missing argument\n{USAGE}"))
    };
    match command.as_str() {
        "all" => all(&o),
        "gen" => {
            let n: u64 = pos(2)?.parse().context("N")?;
            generate(pos(0)?, Path::new(pos(1)?), n, o.seed)
        }
        "parse-only" => {
            let path = Path::new(pos(1)?);
            let items = match pos(0)? {
                "rss" | "atom" => floor::xml_items(path)?,
                "csv" => floor::csv_rows(path)?,
                other => bail!("parse-only: unknown kind {other}"),
            };
            println!("{items}");
            Ok(())
        }
        "taxii-serve" => {
            let n: u64 = pos(0)?.parse().context("N")?;
            let server = servers::serve_taxii(gen::taxii_objects(n, o.seed))?;
            println!(
                "serving {n} objects: api root {} collection {}",
                server.api_root(),
                servers::COLLECTION
            );
            loop {
                std::thread::park();
            }
        }
        "lambda-ready" => {
            for bin in &o.positional {
                let r = lambda_ready(Path::new(bin), &o.function_env)?;
                println!("{}", r.line());
            }
            Ok(())
        }
        _ => bail!("unknown command {command}\n{USAGE}"),
    }
}

fn generate(kind: &str, path: &Path, n: u64, seed: u64) -> anyhow::Result<()> {
    match kind {
        "rss" => gen::rss(path, n, seed),
        "atom" => gen::atom(path, n, seed),
        "csv" => gen::urlhaus_csv(path, n, seed),
        other => bail!("gen: unknown kind {other}"),
    }
    .with_context(|| format!("writing {}", path.display()))
}

/// What one process cost.
#[derive(Debug, Default, Clone)]
struct Cost {
    wall: f64,
    user: f64,
    sys: f64,
    peak_kib: u64,
    stdout: String,
}

impl Cost {
    fn peak_mib(&self) -> f64 {
        self.peak_kib as f64 / 1024.0
    }
}

/// Runs `program args` to completion, pinned to CPU 0 when `taskset` exists, and measures
/// it with GNU time (peak RSS, user and system time); without GNU time, by sampling
/// `/proc/PID/status` (VmHWM) and `/proc/PID/stat` until it exits.
fn measure(program: &Path, args: &[&str], dir: &Path) -> anyhow::Result<Cost> {
    let pin = Path::new("/usr/bin/taskset").exists();
    let gnu_time = Path::new("/usr/bin/time").exists();
    let report = dir.join(".time");
    let mut cmd;
    if gnu_time {
        cmd = Command::new("/usr/bin/time");
        cmd.args(["-f", "%U %S %M", "-o"]).arg(&report);
        if pin {
            cmd.args(["/usr/bin/taskset", "-c", "0"]);
        }
        cmd.arg(program);
    } else if pin {
        cmd = Command::new("/usr/bin/taskset");
        cmd.args(["-c", "0"]).arg(program);
    } else {
        cmd = Command::new(program);
    }
    cmd.args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let mut sampled = Cost::default();
    if !gnu_time {
        // Sample until exit; VmHWM only grows, so the last sample is the peak but for the
        // final few milliseconds.
        let pid = child.id();
        while child.try_wait()?.is_none() {
            if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                if let Some(kib) = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                {
                    sampled.peak_kib = kib;
                }
            }
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split(' ').collect();
                let tick = |i: usize| {
                    fields
                        .get(i)
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or(0.0)
                        / 100.0
                };
                sampled.user = tick(12);
                sampled.sys = tick(13);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let output = child.wait_with_output()?;
    let wall = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!(
            "{} {} failed ({}): {}",
            program.display(),
            args.join(" "),
            output.status,
            tail(&String::from_utf8_lossy(&output.stderr), 2000)
        );
    }
    let mut cost = if gnu_time {
        let text = std::fs::read_to_string(&report).context("reading GNU time's report")?;
        let f: Vec<&str> = text.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        Cost {
            user: num(0),
            sys: num(1),
            peak_kib: num(2) as u64,
            ..Cost::default()
        }
    } else {
        sampled
    };
    cost.wall = wall;
    cost.stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    Ok(cost)
}

fn tail(text: &str, max: usize) -> &str {
    let start = text.len().saturating_sub(max);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    &text[start..]
}

/// Seconds `cat FILE > /dev/null` takes.
fn cat_seconds(path: &Path) -> anyhow::Result<f64> {
    let started = Instant::now();
    let status = Command::new("cat")
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .context("running cat")?;
    if !status.success() {
        bail!("cat {} failed", path.display());
    }
    Ok(started.elapsed().as_secs_f64())
}

/// One row of the results table.
struct Row {
    case: String,
    items: u64,
    objects: u64,
    run: Cost,
    output_bytes: u64,
    input_bytes: u64,
    /// The plain read: `cat` for a file, a bare HTTP client for TAXII.
    read_floor: f64,
    /// The parse alone (for TAXII: the bare client plus JSON parsing of each page).
    parse_floor: Option<Cost>,
}

impl Row {
    fn markdown(&self) -> String {
        let per_s = self.items as f64 / self.run.wall;
        // In-process floors (TAXII, stream) have no peak of their own to show.
        let parse = self
            .parse_floor
            .as_ref()
            .map_or("-".into(), |p| match p.peak_kib {
                0 => format!("{:.2} s", p.wall),
                _ => format!("{:.2} s ({:.1} MiB)", p.wall, p.peak_mib()),
            });
        format!(
            "| {} | {} | {} | {:.2} | {} | {:.1} | {:.2} | {} | {} | {:.3} s | {} |",
            self.case,
            thousands(self.items),
            thousands(self.objects),
            self.run.wall,
            thousands(per_s as u64),
            self.run.peak_mib(),
            self.run.user + self.run.sys,
            thousands(self.output_bytes),
            thousands(self.input_bytes),
            self.read_floor,
            parse,
        )
    }
}

const TABLE_HEAD: &str = "\
| case | items | objects out | seconds | items/s | peak RSS MiB | CPU s | output bytes | input bytes | floor: read | floor: parse only |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// The objects count from feedstix's summary line (`name: ok, …, N object(s), …`).
fn objects_from_summary(stdout: &str) -> u64 {
    stdout
        .split(',')
        .find_map(|part| part.trim().strip_suffix(" object(s)"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// A case: a name, the kind, its size, and the feed table for its feeds.toml.
struct Case {
    name: String,
    kind: &'static str,
    items: u64,
}

fn all(o: &Options) -> anyhow::Result<()> {
    let work = absolute(&o.work)?;
    let feedstix = absolute(&o.feedstix)?;
    if !feedstix.exists() {
        bail!(
            "{} does not exist; build it with cargo build --release -p feedstix-cli",
            feedstix.display()
        );
    }
    std::fs::create_dir_all(&work)?;
    let me = std::env::current_exe()?;
    let scaled = |n: u64| ((n as f64 * o.scale).round() as u64).max(10);
    let mut cases = Vec::new();
    for (kind, full) in [
        ("rss", 100_000),
        ("atom", 100_000),
        ("csv", 1_000_000),
        ("taxii", 50_000),
        ("stream", 100_000),
    ] {
        for n in [scaled(full) / 10, scaled(full)] {
            cases.push(Case {
                name: format!("{kind}-{n}"),
                kind,
                items: n,
            });
        }
    }
    let wanted = |c: &Case| {
        o.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|w| c.name == *w || c.kind == w))
    };

    println!("{}", machine_line());
    println!();
    println!("{TABLE_HEAD}");
    let mut notes = Vec::new();
    for case in cases.iter().filter(|c| wanted(c)) {
        match run_case(case, o, &work, &feedstix, &me) {
            Ok(row) => {
                println!("{}", row.markdown());
                if matches!(case.kind, "taxii" | "stream") {
                    let cpu = row.run.user + row.run.sys;
                    notes.push(format!(
                        "{}: feedstix CPU {:.3} s per 1,000 objects (user {:.2} s + sys {:.2} s); \
                         a bare client reads the same {} in {:.2} s",
                        case.name,
                        cpu / (row.items as f64 / 1000.0),
                        row.run.user,
                        row.run.sys,
                        if case.kind == "taxii" {
                            "pages"
                        } else {
                            "stream"
                        },
                        row.read_floor
                    ));
                }
            }
            Err(e) => println!("| {} | failed: {e:#} |", case.name),
        }
    }
    for n in &notes {
        println!("\n{n}");
    }

    println!("\n| Lambda binary | stripped size MiB | ready after spawn (median of {READY_RUNS}) | slowest |\n|---|---:|---:|---:|");
    for name in [
        "feedstix-dispatcher",
        "feedstix-fetcher",
        "feedstix-bundler",
    ] {
        let bin = absolute(&o.functions)?.join(name);
        if !bin.exists() {
            println!("| {name} | not built | | |");
            continue;
        }
        match lambda_ready(&bin, &o.function_env) {
            Ok(r) => println!("{}", r.line()),
            Err(e) => println!("| {name} | failed: {e:#} | | |"),
        }
    }
    println!("\nafter: {}", load());
    Ok(())
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| {
            format!(
                "load average {}",
                l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
            )
        })
        .unwrap_or_default()
}

/// Date, cores, CPU model and load, for the README.
fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut line = format!("{date}; {cores} core(s), {cpu}; {}", load());
    let _ = write!(
        line,
        "; feedstix pinned to one core: {}",
        if Path::new("/usr/bin/taskset").exists() {
            "yes (taskset -c 0)"
        } else {
            "no"
        }
    );
    line
}

fn run_case(
    case: &Case,
    o: &Options,
    work: &Path,
    feedstix: &Path,
    me: &Path,
) -> anyhow::Result<Row> {
    let dir = work.join(&case.name);
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_file(dir.join("state.json"));
    std::fs::create_dir_all(&dir)?;

    let common =
        "author = \"Bench Author\"\nmarkings = [\"TLP:CLEAR\"]\nmax_response_bytes = 4294967296\n";
    let (feed, input, server, stream) = match case.kind {
        "rss" | "atom" | "csv" => {
            let ext = if case.kind == "csv" { "csv" } else { "xml" };
            let input = work.join(format!("{}-{}-seed{}.{ext}", case.kind, case.items, o.seed));
            if !input.exists() {
                let partial = input.with_extension("partial");
                generate(case.kind, &partial, case.items, o.seed)?;
                std::fs::rename(&partial, &input)?;
            }
            let extra = if case.kind == "csv" {
                let mapper = absolute(&o.repo)?.join("examples/mappers/urlhaus.json");
                std::fs::copy(&mapper, dir.join("urlhaus.json"))
                    .with_context(|| format!("copying {}", mapper.display()))?;
                "kind = \"csv\"\nmapper = \"urlhaus.json\"\n".to_string()
            } else {
                "kind = \"rss\"\n".to_string()
            };
            (
                format!("url = \"file:{}\"\n{extra}", input.display()),
                Some(input),
                None,
                None,
            )
        }
        "taxii" => {
            let server = servers::serve_taxii(gen::taxii_objects(case.items, o.seed))?;
            let feed = format!(
                "kind = \"taxii\"\nurl = \"{}\"\ncollection = \"{}\"\npage_size = 1000\nallow_private_network = true\n",
                server.api_root(),
                servers::COLLECTION
            );
            (feed, None, Some(server), None)
        }
        "stream" => {
            let server = servers::serve_stream(gen::taxii_objects(case.items, o.seed))?;
            let feed = format!(
                "kind = \"stream\"\nurl = \"http://{}\"\nstream_id = \"{}\"\nallow_private_network = true\n",
                server.addr,
                servers::STREAM_ID
            );
            (feed, None, None, Some(server))
        }
        other => bail!("unknown kind {other}"),
    };
    let config = format!("[[feeds]]\nname = \"bench\"\n{feed}{common}");
    std::fs::write(dir.join("feeds.toml"), config)?;

    // Best of `runs` by wall time: on a shared machine the slow runs measure the
    // neighbours. Each run starts from an empty output folder and no state.
    let mut best: Option<Cost> = None;
    for _ in 0..o.runs.max(1) {
        let _ = std::fs::remove_dir_all(&out);
        let _ = std::fs::remove_file(dir.join("state.json"));
        let run = measure(
            feedstix,
            &[
                "run",
                "--config",
                "feeds.toml",
                "--once",
                "--out",
                "out",
                "--state",
                "state.json",
                "--log-level",
                "warn",
            ],
            &dir,
        )?;
        if best.as_ref().is_none_or(|b| run.wall < b.wall) {
            best = Some(run);
        }
    }
    let run = best.context("no run")?;
    let objects = objects_from_summary(&run.stdout);
    let output_bytes = dir_bytes(&out);

    let (read_floor, parse_floor, input_bytes) = match (&input, &server, &stream) {
        (Some(input), _, _) => {
            let mut read = f64::MAX;
            for _ in 0..o.runs.max(1) {
                read = read.min(cat_seconds(input)?);
            }
            let kind = if case.kind == "atom" {
                "rss"
            } else {
                case.kind
            };
            let mut parse: Option<Cost> = None;
            for _ in 0..o.runs.max(1) {
                let p = measure(
                    me,
                    &["parse-only", kind, &input.display().to_string()],
                    &dir,
                )?;
                if parse.as_ref().is_none_or(|b| p.wall < b.wall) {
                    parse = Some(p);
                }
            }
            let parse = parse.context("no parse run")?;
            let counted: u64 = parse.stdout.trim().parse().unwrap_or(0);
            if counted != case.items {
                bail!(
                    "parse-only counted {counted} items, expected {}",
                    case.items
                );
            }
            (read, Some(parse), std::fs::metadata(input)?.len())
        }
        (None, Some(server), _) => {
            let started = Instant::now();
            let (bytes, _) = servers::taxii_walk(server, 1000, false)?;
            let read = started.elapsed().as_secs_f64();
            let started = Instant::now();
            let (_, parsed) = servers::taxii_walk(server, 1000, true)?;
            let parse = Cost {
                wall: started.elapsed().as_secs_f64(),
                ..Cost::default()
            };
            if parsed != case.items {
                bail!(
                    "the bare walk saw {parsed} objects, expected {}",
                    case.items
                );
            }
            (read, Some(parse), bytes)
        }
        (None, None, Some(server)) => {
            let started = Instant::now();
            let (bytes, _) = servers::stream_walk(server, false)?;
            let read = started.elapsed().as_secs_f64();
            let started = Instant::now();
            let (_, events) = servers::stream_walk(server, true)?;
            let parse = Cost {
                wall: started.elapsed().as_secs_f64(),
                ..Cost::default()
            };
            if events != case.items {
                bail!(
                    "the bare stream read saw {events} events, expected {}",
                    case.items
                );
            }
            (read, Some(parse), bytes)
        }
        _ => unreachable!("every case has an input or a server"),
    };
    Ok(Row {
        case: case.name.clone(),
        items: case.items,
        objects,
        run,
        output_bytes,
        input_bytes,
        read_floor,
        parse_floor,
    })
}

/// The functions' own settings, as the SAM template sets them, with placeholder values.
const FUNCTION_ENV: [(&str, &str); 7] = [
    ("FEEDS_TABLE", "feedstix-bench-feeds"),
    ("STATE_TABLE", "feedstix-bench-state"),
    (
        "FETCH_QUEUE_URL",
        "http://127.0.0.1:9/000000000000/fetch.fifo",
    ),
    (
        "PAGE_QUEUE_URL",
        "http://127.0.0.1:9/000000000000/pages.fifo",
    ),
    ("WORKER_QUEUE_URL", "http://127.0.0.1:9/000000000000/worker"),
    ("CLAIM_BUCKET", "feedstix-bench-claims"),
    ("EVENT_BUS_NAME", "default"),
];

/// A function binary's size and cold-start readiness.
struct Ready {
    name: String,
    bytes: u64,
    median_ms: f64,
    max_ms: f64,
}

impl Ready {
    fn line(&self) -> String {
        format!(
            "| {} | {:.2} | {:.1} ms | {:.1} ms |",
            self.name,
            self.bytes as f64 / (1024.0 * 1024.0),
            self.median_ms,
            self.max_ms
        )
    }
}

/// Spawns `bin` against the runtime API stand-in [`READY_RUNS`] times and times spawn to
/// first poll.
fn lambda_ready(bin: &Path, extra_env: &[(String, String)]) -> anyhow::Result<Ready> {
    let name = bin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bytes = std::fs::metadata(bin)
        .with_context(|| format!("{}", bin.display()))?
        .len();
    let mut times = Vec::with_capacity(READY_RUNS);
    for _ in 0..READY_RUNS {
        let api = servers::RuntimeApi::start()?;
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            // What the functions read at cold start (shared/src/aws/settings.rs), with
            // placeholder values: nothing is called before the first event arrives.
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(FUNCTION_ENV.iter().copied())
            .envs(extra_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let spawned = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let arrived = api.first_poll(Duration::from_secs(5));
        let _ = child.kill();
        let output = child.wait_with_output()?;
        match arrived {
            Some(at) => times.push(at.duration_since(spawned).as_secs_f64() * 1000.0),
            None => bail!(
                "{name} never asked for an event ({}): {}",
                output.status,
                tail(&String::from_utf8_lossy(&output.stderr), 600)
            ),
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(Ready {
        name,
        bytes,
        median_ms: times[times.len() / 2],
        max_ms: times[times.len() - 1],
    })
}
