//! The `redial-sim` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use redial_sim::{Format, RunOptions, Timeline, matrix, run_formatted};

#[derive(Parser)]
#[command(
    name = "redial-sim",
    version,
    about = "Replay failure timelines against redial-core on a virtual clock",
    after_help = "Examples:\n  redial-sim matrix\n  redial-sim replay sim/timelines/mongoose-buffer-until-reconnect.toml\n  redial-sim replay sim/timelines/mongoose-reconnect-failed.toml --format json\n\nExit codes: 0 every invariant held, 1 an invariant was violated, 2 bad input."
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

#[derive(Subcommand)]
enum Cmd {
    /// Replay one timeline file and print what happened.
    #[command(
        after_help = "Examples:\n  redial-sim replay sim/timelines/mongoose-buffer-until-reconnect.toml\n  redial-sim replay sim/timelines/driver-defaults.toml --format json\n  redial-sim replay my.toml --seed 42"
    )]
    Replay {
        /// The timeline (TOML).
        file: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Fmt,
        /// Override the timeline's seed.
        #[arg(long)]
        seed: Option<u64>,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Replay { file, format, seed } => {
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{file}: cannot read: {e}");
                    return ExitCode::from(2);
                }
            };
            let tl = match Timeline::parse(&text, &file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let opts = RunOptions {
                seed,
                ..RunOptions::default()
            };
            let (out, summary) = run_formatted(&tl, &opts, format.into());
            print!("{out}");
            if summary.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
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
