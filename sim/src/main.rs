//! The `redial-sim` command line.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use redial_sim::core::Preset;
use redial_sim::{
    Format, Line, Observed, RunOptions, Summary, Timeline, compare, explore, matrix, run,
    run_observed, run_through_driver, svg, write_line,
};

/// Streams a transcript to stdout as it is made (memory stays proportional
/// to what is outstanding, not to the run's length). A closed pipe (`| head`)
/// ends the program quietly; any other write error is reported (exit 2).
struct Stream {
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
    format: Format,
    buf: String,
}

impl Stream {
    fn new(format: Format) -> Stream {
        Stream {
            out: std::io::BufWriter::new(std::io::stdout().lock()),
            format,
            buf: String::new(),
        }
    }

    fn emit(&mut self) {
        use std::io::Write;
        if let Err(e) = self.out.write_all(self.buf.as_bytes()) {
            Self::fail(&e);
        }
        self.buf.clear();
    }

    fn line(&mut self, l: &Line) {
        write_line(&mut self.buf, self.format, l);
        self.emit();
    }

    fn finish(mut self, summary: &Summary) {
        use std::io::Write;
        summary.write(&mut self.buf, self.format);
        self.emit();
        if let Err(e) = self.out.flush() {
            Self::fail(&e);
        }
    }

    fn fail(e: &std::io::Error) -> ! {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing the transcript: {e}");
        std::process::exit(2);
    }
}

#[derive(Parser)]
#[command(
    name = "redial-sim",
    version,
    about = "Replay failure timelines against redial-core on a virtual clock",
    after_help = "Examples:\n  redial-sim matrix\n  redial-sim explore --runs 100000\n  redial-sim compare sim/timelines/restart-db0.toml --presets mongodb-legacy,recommended\n  redial-sim replay sim/timelines/mongoose-buffer-until-reconnect.toml\n  redial-sim replay sim/timelines/mongoose-reconnect-failed.toml --format json\n\nExit codes: 0 every invariant held, 1 an invariant was violated, 2 bad input."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Fmt {
    Text,
    Json,
}

impl From<Fmt> for Format {
    fn from(f: Fmt) -> Format {
        match f {
            Fmt::Text => Format::Text,
            Fmt::Json => Format::Json,
        }
    }
}

/// `replay` and `compare` can also draw: `svg` writes the picture to
/// stdout instead of the transcript.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ViewFmt {
    Text,
    Json,
    Svg,
}

impl ViewFmt {
    /// The transcript format (`None`: the picture instead).
    fn transcript(self) -> Option<Format> {
        match self {
            ViewFmt::Text => Some(Format::Text),
            ViewFmt::Json => Some(Format::Json),
            ViewFmt::Svg => None,
        }
    }
}

/// Creates the `--svg` file before the run, so a bad path fails at once
/// (exit 2) rather than after the transcript. A path naming one of the
/// run's input files (the timeline, a `--config` file) is refused: creating
/// it would truncate the input (`replay t.toml --svg t.toml`).
fn svg_file(
    path: Option<&str>,
    inputs: &[&str],
) -> Result<Option<(String, std::fs::File)>, ExitCode> {
    let Some(path) = path else { return Ok(None) };
    if let Ok(target) = std::fs::canonicalize(path) {
        if let Some(input) = inputs
            .iter()
            .find(|i| std::fs::canonicalize(i).is_ok_and(|i| i == target))
        {
            eprintln!(
                "error: --svg {path}: that is the input file {input}; refusing to overwrite it"
            );
            return Err(ExitCode::from(2));
        }
    }
    match std::fs::File::create(path) {
        Ok(f) => Ok(Some((path.to_string(), f))),
        Err(e) => {
            eprintln!("error: --svg {path}: cannot write: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// Writes the picture to stdout (`--format svg`) and/or the `--svg` file.
fn emit_svg(
    picture: &str,
    to_stdout: bool,
    file: Option<(String, std::fs::File)>,
) -> Result<(), ExitCode> {
    if to_stdout {
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(picture.as_bytes()).and_then(|()| out.flush()) {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("error: writing the picture: {e}");
                return Err(ExitCode::from(2));
            }
        }
    }
    if let Some((path, mut f)) = file {
        if let Err(e) = f.write_all(picture.as_bytes()).and_then(|()| f.flush()) {
            eprintln!("error: --svg {path}: cannot write: {e}");
            return Err(ExitCode::from(2));
        }
    }
    Ok(())
}

#[derive(Clone, Copy, ValueEnum)]
enum FaultArg {
    Restart,
    KillConnections,
    Blackhole,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replay one timeline file and print what happened.
    #[command(
        after_help = "Examples:\n  redial-sim replay sim/timelines/mongoose-buffer-until-reconnect.toml\n  redial-sim replay sim/timelines/driver-defaults.toml --format json\n  redial-sim replay my.toml --seed 42\n  redial-sim replay sim/timelines/app-callers-give-up.toml --through-driver\n  redial-sim replay sim/timelines/app-callers-give-up.toml --diff"
    )]
    Replay {
        /// The timeline (TOML).
        file: String,
        /// Output format (`svg`: a picture of the run instead of the
        /// transcript).
        #[arg(long, value_enum, default_value = "text")]
        format: ViewFmt,
        /// Also draw the run as an SVG picture into this file (the
        /// transcript still goes to stdout).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["through_driver", "diff"])]
        svg: Option<String>,
        /// Override the timeline's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Run it through the real driver (`redial::Client` on a virtual
        /// clock against the simulated world) instead of the fast loop.
        #[arg(long)]
        through_driver: bool,
        /// Run it both ways and report where the driver and the fast loop
        /// disagree (exit 1 if they do).
        #[arg(long, conflicts_with = "through_driver")]
        diff: bool,
        /// Run it under this configuration instead of the file's `[config]`
        /// (taken whole): a timeline file's `[config]` table or a preset
        /// name.
        #[arg(long, value_name = "FILE|PRESET")]
        config: Option<String>,
    },
    /// Derive a timeline from a flight recorder trace: the recorded config,
    /// the servers' ups and downs as the records show them, the latency,
    /// and the application's ops with their options, at their times.
    #[command(
        name = "derive-timeline",
        after_help = DERIVE_HELP
    )]
    DeriveTimeline {
        /// The trace (JSON lines, from `redial::FlightRecorder`).
        file: String,
        /// Write the timeline here instead of stdout.
        #[arg(short, long)]
        out: Option<String>,
        /// Also replay it under the recorded config and print how many ops
        /// it predicts as the trace has them (to stderr).
        #[arg(long)]
        fidelity: bool,
    },
    /// Replay a flight recorder trace exactly: feed its inputs to a fresh
    /// machine, check every output against the trace and the run against
    /// the invariants, print the transcript.
    #[command(
        name = "replay-trace",
        after_help = "Examples:\n  redial-sim replay-trace sim/traces/redis-kill-restart.jsonl\n  redial-sim replay-trace trace.jsonl --format json\n\nThe replayed run is checked against the invariants and the policy contract (redial-check), as `replay` checks a timeline.\n\nExit codes: 0 the trace replayed exactly and every invariant held, 1 a record differs (its line is named) or an invariant was violated, 2 unreadable file."
    )]
    ReplayTrace {
        /// The trace (JSON lines, from `redial::FlightRecorder`).
        file: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Fmt,
    },
    /// Run seed 003's workload under the six autoReconnect × bufferMaxEntries combinations.
    #[command(
        after_help = "Examples:\n  redial-sim matrix\n  redial-sim matrix --max-entries 5 --format json"
    )]
    Matrix {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Fmt,
        /// The bound used for the bufferMaxEntries = N > 0 rows.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i64).range(1..))]
        max_entries: i64,
    },
    /// Replay one timeline under several presets, side by side.
    #[command(
        after_help = "Examples:\n  redial-sim compare sim/timelines/restart-db0.toml --presets mongodb-legacy,fail-fast,recommended\n  redial-sim compare sim/timelines/pg-silent-loss.toml --presets mongoose,recommended --format json\n  redial-sim compare derived.toml --config derived.toml,recommended,my-service.toml\n  redial-sim compare sim/timelines/restart-db0.toml --config ioredis-v5,fred-reconnect-policy,recommended --diff"
    )]
    Compare {
        /// The timeline (TOML).
        file: String,
        /// Comma-separated presets: mongodb-legacy, mongoose, fail-fast,
        /// recommended, or a peer's defaults: ioredis-v5, ioredis-v6,
        /// lettuce, redis-rs-connection-manager, fred-default,
        /// fred-reconnect-policy, mongodb-node. Each is the base; the
        /// file's own `[config]` keys still apply on top (`--config
        /// PRESET` takes a preset whole).
        #[arg(long, value_delimiter = ',', required_unless_present = "config")]
        presets: Vec<String>,
        /// Comma-separated configurations, each taken whole in place of the
        /// file's `[config]`: a timeline file (its `[config]` table) or a
        /// preset name (the preset alone). What a derived timeline needs:
        /// it sets every key, so `--presets` would change nothing in it.
        #[arg(long, value_delimiter = ',', value_name = "FILE|PRESET")]
        config: Vec<String>,
        /// Also list the ops whose fate differs between the first column
        /// and each other one, grouped ("412 `op` ops: buffered, then ok
        /// after 120–480 ms → failed no_connection (not run) after 0 ms");
        /// with `--format json`, one `{"diff": …}` line per group after
        /// the columns.
        #[arg(long)]
        diff: bool,
        /// Output format (`svg`: one picture, a group of bands per column,
        /// instead of the table).
        #[arg(long, value_enum, default_value = "text")]
        format: ViewFmt,
        /// Also draw the columns as an SVG picture into this file (the
        /// table still goes to stdout).
        #[arg(long, value_name = "FILE")]
        svg: Option<String>,
    },
    /// Run a fleet of clients against one server through a restart (or a
    /// connection kill, or a blackhole): the connect storm the server sees
    /// and how fast every client recovers.
    #[command(
        after_help = "Examples:\n  redial-sim fleet\n  redial-sim fleet --clients 10000 --outage 10s --preset mongodb-legacy\n  redial-sim fleet --fault kill-connections --format json\n  redial-sim fleet --config my-service.toml --accept-rate 2000\n  redial-sim fleet --table --clients 10000\n\nCounts per second of virtual time the connect attempts the listening server received (accepted or turned away over --accept-rate), those its host refused while it was down, and those lost in a blackhole; the peak received in the 10 s from the server's return; each client's recovery (from the server's return to its first connection, or first answered op after a blackhole); every op's fate. Deterministic for a seed."
    )]
    Fleet {
        /// Number of clients (1 to 1,000,000).
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        /// Every client's preset: mongodb-legacy, mongoose, fail-fast, recommended, or a peer preset (ioredis-v5, ioredis-v6, lettuce, redis-rs-connection-manager, fred-default, fred-reconnect-policy, mongodb-node) [default: recommended].
        #[arg(long)]
        preset: Option<String>,
        /// Take every client's configuration from this timeline file's `[config]` table.
        #[arg(long, value_name = "FILE", conflicts_with = "preset")]
        config: Option<String>,
        /// The fault.
        #[arg(long, value_enum, default_value = "restart")]
        fault: FaultArg,
        /// When the fault strikes.
        #[arg(long, default_value = "10s")]
        at: String,
        /// How long the server is down (restart) or unreachable (blackhole).
        #[arg(long, default_value = "2s")]
        outage: String,
        /// The end of the run.
        #[arg(long, default_value = "60s")]
        until: String,
        /// Each client submits an op this often (`off`: none).
        #[arg(long, default_value = "1s")]
        op_every: String,
        /// Network round trip.
        #[arg(long, default_value = "1ms")]
        rtt: String,
        /// Connects the server completes per second (default: unlimited).
        #[arg(long)]
        accept_rate: Option<u32>,
        /// Seeds the clients' jitter.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Fmt,
        /// Print the policy trade-off table (several policies × restarts of
        /// 0.3 s, 2 s, 10 s and killed connections) instead, as markdown.
        #[arg(long, conflicts_with_all = ["preset", "config", "fault", "outage"])]
        table: bool,
    },
    /// Run random timelines against the invariants; shrink and save a failure.
    #[command(
        after_help = "Examples:\n  redial-sim explore --runs 1000\n  redial-sim explore --runs 100000 --seed 7 --out failure.toml\n  redial-sim explore --runs 10000 --through-driver\n  redial-sim explore --runs 10000 --config my-service.toml\n  redial-sim explore --machine --runs 1000000\n\nRun i uses seed S+i; a failure prints its seed and writes a shrunk timeline that `redial-sim replay` reproduces (with --machine: the run's input bytes, which the `machine` fuzz target and `redial_check::harness::run_bytes` reproduce)."
    )]
    Explore {
        /// How many random timelines.
        #[arg(long, default_value_t = 1000)]
        runs: u64,
        /// The first run's seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where to write the shrunk failing timeline (with --machine: the
        /// failing run's input bytes) [default: explore-failure.toml, or
        /// explore-failure.bin with --machine].
        #[arg(long)]
        out: Option<String>,
        /// Also run each timeline through the real driver and require the
        /// same fates and events as the fast loop.
        #[arg(long)]
        through_driver: bool,
        /// Pin the configuration to this timeline file's `[config]` table
        /// (the world is still random): check *your* configuration.
        #[arg(long, value_name = "FILE")]
        config: Option<String>,
        /// Explore below the world: random machine runs from redial-check's
        /// generator (any configuration, any input sequence; the `machine`
        /// fuzz target's body). A failing input's bytes go to `--out`.
        #[arg(long, conflicts_with_all = ["through_driver", "config"])]
        machine: bool,
    },
}

const DERIVE_HELP: &str = "What a trace cannot know, and how it is filled in:
  - a connect that succeeded: its server was up (with the role found) from when the connect was sent;
    refused (or unavailable): down then; timed out: blackholed then; not_primary: a secondary;
  - a server that comes back is up right after the last record that shows it down or silent
    (the earliest instant the records allow);
  - a connection lost (as the disconnected event says): down (closed), crashed (reset) or silent (timed_out)
    one latency before the client saw it, or before the answer to the first request it left unanswered
    would have come back;
  - a connection found unresponsive: blackholed halfway between its last answer and its first request left unanswered;
  - a connect the machine gave up on (its connect timeout): blackholed from when it was sent;
  - wrong_server: a secondary when the op was sent; pushback: busy (with its hint) until the next other answer;
    server_error: that op is marked server_error;
  - when exactly a server died between two records is unknown: it dies at the first record that shows it;
    a server that came back while nobody tried is known to be back only from the next connect that succeeded;
  - one latency for all servers (half the shorter of the median connect and op round trips), the service time
    the median op round trip adds, no jitter;
  - until: the trace's last record plus 1 s;
  - every submit at its time with retryable, deadline and max_attempts (a per-op command timeout has no
    timeline key and is dropped, with a comment); a cancel is the op's cancel_after; close and revive are client steps;
  - comments name the trace line of each step; the same trace gives the same bytes.

Examples:
  redial-sim derive-timeline sim/traces/redis-kill-restart.jsonl -o derived.toml
  redial-sim compare derived.toml --config derived.toml,recommended,fail-fast
  redial-sim replay derived.toml --config recommended

Exit codes: 0 written, 2 unreadable trace (its line is named) or unwritable output.";

/// The timeline under `spec`: a preset name (the preset alone) or a
/// timeline file (its `[config]`), taken whole.
fn with_config(tl: &Timeline, spec: &str) -> Result<Timeline, ExitCode> {
    let base = match spec.trim().parse::<Preset>() {
        Ok(p) => Timeline::parse(&format!("[config]\npreset = \"{}\"\n", p.name()), spec).map_err(
            |e| {
                eprintln!("error: {e}");
                ExitCode::from(2)
            },
        )?,
        Err(_) => read_timeline(spec)?,
    };
    tl.with_config(&base).map_err(|e| {
        eprintln!("error: --config {spec}: {e}");
        ExitCode::from(2)
    })
}

fn read_timeline(file: &str) -> Result<Timeline, ExitCode> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        eprintln!("{file}: cannot read: {e}");
        ExitCode::from(2)
    })?;
    Timeline::parse(&text, file).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

/// Parses a duration option, naming it in the error.
fn duration_arg(name: &str, v: &str) -> Result<std::time::Duration, ExitCode> {
    redial_sim::parse_duration(v).map_err(|e| {
        eprintln!("error: --{name}: `{v}`: {e}");
        ExitCode::from(2)
    })
}

#[allow(clippy::too_many_arguments)]
fn fleet(
    clients: usize,
    preset: Option<String>,
    config: Option<String>,
    fault: FaultArg,
    times: [(&str, &str); 5],
    accept_rate: Option<u32>,
    seed: u64,
    format: Fmt,
    table: bool,
) -> ExitCode {
    use redial_sim::fleet::{FleetFault, FleetOptions, policy_table, run_fleet};
    let mut d = [std::time::Duration::ZERO; 5];
    for (i, (name, v)) in times.iter().enumerate() {
        if *name == "op-every" && *v == "off" {
            continue;
        }
        match duration_arg(name, v) {
            Ok(x) => d[i] = x,
            Err(code) => return code,
        }
    }
    let [at, outage, until, op_every, rtt] = d;
    let cfg = match (&preset, &config) {
        (_, Some(file)) => match read_timeline(file) {
            Ok(t) => t.config,
            Err(code) => return code,
        },
        (Some(p), None) => match p.trim().parse::<Preset>() {
            Ok(p) => match p.builder().build() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: --preset: {e}");
                    return ExitCode::from(2);
                }
            },
            Err(e) => {
                eprintln!("error: --preset: `{p}`: {e}");
                return ExitCode::from(2);
            }
        },
        (None, None) => redial_sim::core::Config::recommended(),
    };
    let o = FleetOptions {
        clients,
        config: cfg,
        seed,
        fault_at: at,
        fault: match fault {
            FaultArg::Restart => FleetFault::Restart { outage },
            FaultArg::KillConnections => FleetFault::KillConnections,
            FaultArg::Blackhole => FleetFault::Blackhole { outage },
        },
        until,
        op_every: (times[3].1 != "off").then_some(op_every),
        rtt,
        accept_rate,
    };
    let started = std::time::Instant::now();
    let out = if table {
        // The table's longest outage is 10 s: leave room after it.
        let base = FleetOptions {
            until: o.until.max(o.fault_at + std::time::Duration::from_secs(20)),
            ..o
        };
        policy_table(&base)
    } else {
        run_fleet(&o).map(|r| match format {
            Fmt::Text => r.to_text(),
            Fmt::Json => r.to_json(),
        })
    };
    match out {
        Ok(s) => {
            print!("{s}");
            eprintln!("fleet: {:.2} s", started.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Fleet {
            clients,
            preset,
            config,
            fault,
            at,
            outage,
            until,
            op_every,
            rtt,
            accept_rate,
            seed,
            format,
            table,
        } => fleet(
            clients,
            preset,
            config,
            fault,
            [
                ("at", &at),
                ("outage", &outage),
                ("until", &until),
                ("op-every", &op_every),
                ("rtt", &rtt),
            ],
            accept_rate,
            seed,
            format,
            table,
        ),
        Cmd::Compare {
            file,
            presets,
            config,
            diff,
            format,
            svg: svg_path,
        } => {
            if diff && format == ViewFmt::Svg {
                eprintln!("error: --diff prints text or JSON; draw with --svg FILE beside it");
                return ExitCode::from(2);
            }
            let tl = match read_timeline(&file) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let mut runs = Vec::new();
            let mut ps = Vec::new();
            for p in &presets {
                match p.trim().parse::<Preset>() {
                    Ok(p) => ps.push(p),
                    Err(e) => {
                        eprintln!("error: --presets: `{p}`: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            for p in ps {
                match tl.with_preset(p) {
                    Ok(t) => runs.push((p.name().to_string(), t)),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            for spec in &config {
                match with_config(&tl, spec) {
                    Ok(t) => runs.push((spec.clone(), t)),
                    Err(code) => return code,
                }
            }
            let inputs: Vec<&str> = std::iter::once(file.as_str())
                .chain(config.iter().map(String::as_str))
                .collect();
            let svg_out = match svg_file(svg_path.as_deref(), &inputs) {
                Ok(f) => f,
                Err(code) => return code,
            };
            let cols = compare::compare_timelines(&runs, &RunOptions::default());
            if format == ViewFmt::Svg || svg_out.is_some() {
                let picture = svg::compare_svg(&tl, &runs, &RunOptions::default());
                if let Err(code) = emit_svg(&picture, format == ViewFmt::Svg, svg_out) {
                    return code;
                }
            }
            match format {
                ViewFmt::Svg => {}
                ViewFmt::Text => print!("{}", compare::render_text(&cols)),
                ViewFmt::Json => {
                    for c in &cols {
                        println!(
                            "{}",
                            serde_json::to_string(c).expect("plain data serializes")
                        );
                    }
                }
            }
            if diff {
                for b in cols.iter().skip(1) {
                    let a = &cols[0];
                    let changes = compare::fate_diff(a, b);
                    match format {
                        ViewFmt::Text | ViewFmt::Svg => {
                            print!("\n{}", compare::render_diff(&changes, a, b));
                        }
                        ViewFmt::Json => {
                            for c in &changes {
                                println!("{}", serde_json::json!({ "diff": c }));
                            }
                        }
                    }
                }
            }
            if cols.iter().all(|c| c.violations.is_empty()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Cmd::Explore {
            runs,
            seed,
            out,
            through_driver,
            config,
            machine,
        } => {
            if machine {
                let out = out.unwrap_or_else(|| "explore-failure.bin".into());
                return explore_machine(runs, seed, &out);
            }
            let out = out.unwrap_or_else(|| "explore-failure.toml".into());
            let pinned = match config.as_deref().map(|file| {
                std::fs::read_to_string(file)
                    .map_err(|e| format!("{file}: cannot read: {e}"))
                    .and_then(|text| explore::config_lines(&text, file))
            }) {
                Some(Err(e)) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
                Some(Ok(lines)) => Some(lines),
                None => None,
            };
            let started = std::time::Instant::now();
            let mode = if through_driver {
                explore::Mode::ThroughDriver
            } else {
                explore::Mode::Fast
            };
            let progress = |n| eprintln!("explore: {n} timelines, no violation so far");
            let e = match &pinned {
                Some(lines) => explore::explore_config(runs, seed, mode, lines, progress),
                None => explore::explore_with(runs, seed, mode, progress),
            };
            let secs = started.elapsed().as_secs_f64();
            match e.failures.first() {
                None => {
                    println!(
                        "explore: {} random timelines (seeds {seed}..{}), {} skipped as invalid configs, no invariant violated{} ({secs:.1} s)",
                        e.runs,
                        seed.wrapping_add(e.runs),
                        e.skipped,
                        if through_driver {
                            ", the driver agreed with the fast loop on every one"
                        } else {
                            ""
                        }
                    );
                    if let Some(file) = &config {
                        println!("(configuration pinned from {file}; the world was random)");
                    }
                    ExitCode::SUCCESS
                }
                Some((s, violations, toml)) => {
                    println!(
                        "explore: run with seed {s} violated an invariant{}:",
                        if through_driver {
                            " or the driver disagreed with the fast loop"
                        } else {
                            ""
                        }
                    );
                    for v in violations {
                        println!("  {v}");
                    }
                    if let Err(err) = std::fs::write(&out, toml) {
                        eprintln!("{out}: cannot write: {err}");
                    }
                    println!(
                        "shrunk timeline written to {out}; reproduce with: redial-sim replay {out}{}  (or: redial-sim explore --runs 1 --seed {s}{})",
                        if through_driver { " --diff" } else { "" },
                        if through_driver {
                            " --through-driver"
                        } else {
                            ""
                        }
                    );
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Replay {
            file,
            format,
            svg: svg_path,
            seed,
            through_driver,
            diff,
            config,
        } => {
            if format == ViewFmt::Svg && (through_driver || diff) {
                eprintln!(
                    "error: --format svg draws the fast loop's run; it does not go with --through-driver or --diff"
                );
                return ExitCode::from(2);
            }
            let mut tl = match read_timeline(&file) {
                Ok(t) => t,
                Err(code) => return code,
            };
            if let Some(spec) = &config {
                tl = match with_config(&tl, spec) {
                    Ok(t) => t,
                    Err(code) => return code,
                };
            }
            let opts = RunOptions {
                seed,
                ..RunOptions::default()
            };
            if diff {
                let d = redial_sim::compare_with_fast_loop(&tl, &opts);
                if d.is_empty() {
                    println!(
                        "{file}: the driver and the fast loop agree on every op's fate, the events and the world; invariants held in both"
                    );
                    return ExitCode::SUCCESS;
                }
                println!("{file}: the driver and the fast loop disagree:");
                for line in d.differences.iter().chain(&d.violations) {
                    println!("  {line}");
                }
                return ExitCode::from(1);
            }
            let inputs: Vec<&str> = std::iter::once(file.as_str())
                .chain(config.as_deref())
                .collect();
            let svg_out = match svg_file(svg_path.as_deref(), &inputs) {
                Ok(f) => f,
                Err(code) => return code,
            };
            let summary = if format == ViewFmt::Svg || svg_out.is_some() {
                let name = config.clone().unwrap_or_else(|| svg::config_name(&tl));
                let mut track = svg::Track::new(name.clone());
                let mut obs = Observed::default();
                let mut stream = format.transcript().map(Stream::new);
                let summary = run_observed(
                    &tl,
                    &opts,
                    |l| {
                        track.line(l);
                        if let Some(s) = stream.as_mut() {
                            s.line(l);
                        }
                    },
                    &mut obs,
                );
                if let Some(s) = stream {
                    s.finish(&summary);
                }
                track.finish(&summary, &obs);
                let picture = svg::render(&tl, &format!("config: {name}"), &[track]);
                if let Err(code) = emit_svg(&picture, format == ViewFmt::Svg, svg_out) {
                    return code;
                }
                summary
            } else {
                let mut stream = Stream::new(format.transcript().unwrap_or(Format::Text));
                let summary = if through_driver {
                    run_through_driver(&tl, &opts, |l| stream.line(l))
                } else {
                    run(&tl, &opts, |l| stream.line(l))
                };
                stream.finish(&summary);
                summary
            };
            if summary.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Cmd::ReplayTrace { file, format } => {
            let text = match std::fs::read(&file) {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(e) => {
                    eprintln!("{file}: cannot read: {e}");
                    return ExitCode::from(2);
                }
            };
            match redial_sim::trace::replay_transcript(&text) {
                Ok((lines, summary)) => {
                    let mut stream = Stream::new(format.into());
                    for l in &lines {
                        stream.line(l);
                    }
                    stream.finish(&summary);
                    if summary.violations.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("{file}: does not replay: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::DeriveTimeline {
            file,
            out,
            fidelity,
        } => derive(&file, out.as_deref(), fidelity),
        Cmd::Matrix {
            format,
            max_entries,
        } => {
            let rows = matrix::run_matrix(max_entries);
            match format {
                Fmt::Text => print!("{}", matrix::render_text(&rows)),
                Fmt::Json => {
                    for r in &rows {
                        println!(
                            "{}",
                            serde_json::to_string(r).expect("plain data serializes")
                        );
                    }
                }
            }
            if rows.iter().all(|r| r.violations.is_empty()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// `derive-timeline`.
fn derive(file: &str, out: Option<&str>, fidelity: bool) -> ExitCode {
    let text = match std::fs::read(file) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            eprintln!("{file}: cannot read: {e}");
            return ExitCode::from(2);
        }
    };
    let toml = match redial_sim::derive::timeline_from_trace(&text) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {file}: {e}");
            return ExitCode::from(2);
        }
    };
    match out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &toml) {
                eprintln!("{path}: cannot write: {e}");
                return ExitCode::from(2);
            }
        }
        None => print!("{toml}"),
    }
    if fidelity {
        match redial_sim::derive::fidelity(&text) {
            Ok(f) => {
                eprintln!("fidelity {file}: {f}");
                for d in f.disagreements.iter().chain(&f.violations) {
                    eprintln!("  {d}");
                }
            }
            Err(e) => {
                eprintln!("error: {file}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::SUCCESS
}

/// `explore --machine`.
fn explore_machine(runs: u64, seed: u64, out: &str) -> ExitCode {
    let started = std::time::Instant::now();
    // The harness's panics are the findings: report them once, below,
    // with where they were raised (an `expect` in the core says a lot).
    let hook = std::panic::take_hook();
    let location = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let seen = location.clone();
    std::panic::set_hook(Box::new(move |info| {
        if let (Some(l), Ok(mut slot)) = (info.location(), seen.lock()) {
            *slot = Some(l.to_string());
        }
    }));
    let result = explore::explore_machine(runs, seed, |n| {
        eprintln!("explore: {n} machine runs, no violation so far")
    });
    std::panic::set_hook(hook);
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(n) => {
            let _ = writeln!(
                std::io::stdout(),
                "explore: {n} random machine runs (seeds {seed}..{}), no invariant, contract or model disagreement ({secs:.1} s)",
                seed.wrapping_add(n)
            );
            ExitCode::SUCCESS
        }
        Err(f) => {
            let at = location
                .lock()
                .ok()
                .and_then(|l| l.clone())
                .unwrap_or_else(|| "an unknown place".into());
            let _ = writeln!(
                std::io::stdout(),
                "explore: machine run with seed {} failed (panicked at {at}):\n{}",
                f.seed,
                f.message
            );
            match std::fs::write(out, &f.bytes) {
                Ok(()) => {
                    let path = std::fs::canonicalize(out)
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|_| out.to_string());
                    let _ = writeln!(
                        std::io::stdout(),
                        "its input bytes are in {path}; reproduce with: redial-sim explore --machine --runs 1 --seed {}  (or, in fuzz/: cargo run --release --example replay -- machine {path})",
                        f.seed
                    );
                }
                Err(err) => {
                    eprintln!("{out}: cannot write the failing input: {err}");
                    let _ = writeln!(
                        std::io::stdout(),
                        "reproduce with: redial-sim explore --machine --runs 1 --seed {}",
                        f.seed
                    );
                }
            }
            ExitCode::from(1)
        }
    }
}
