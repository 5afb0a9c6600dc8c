//! # redial-sim
//!
//! Replays failure timelines against the real [`redial_core::Machine`] on a
//! virtual clock. The simulator only plays the world — servers that go
//! down, crash, go silent or change role, a network with latency, and an
//! application that submits ops — and carries out the machine's outputs. It
//! takes no decision of its own about ops or connections.
//!
//! ```
//! let text = r#"
//! [config]
//! preset = "mongodb-legacy"
//!
//! [[step]]
//! at = "1s"
//! server = "down"
//! for = "2s"
//!
//! [[step]]
//! at = "1500ms"
//! submit = "findOne"
//! "#;
//! let timeline = redial_sim::Timeline::parse(text, "example.toml").unwrap();
//! let (out, summary) = redial_sim::run_to_string(&timeline, &redial_sim::RunOptions::default());
//! assert_eq!(summary.ok, 1);
//! assert!(summary.violations.is_empty());
//! assert!(out.contains("findOne"));
//! ```

pub use redial_core as core;

pub mod compare;
pub mod derive;
mod duration;
pub mod explore;
pub mod fleet;
pub mod matrix;
mod output;
mod run;
pub mod svg;
mod through_driver;
mod timeline;
pub mod trace;
pub mod vrt;
mod world;

pub use duration::{MAX_DURATION, parse_duration};
pub use output::{Field, Format, Line, OpLine, Summary, write_line};
pub use run::{Observed, PendingOp, RunOptions, run, run_formatted, run_observed, run_to_string};
pub use through_driver::{
    Divergence, SimConn, SimConnector, SimError, SimOp, compare_with_fast_loop,
    record_through_driver, run_through_driver, run_through_driver_formatted,
    run_through_driver_recorded,
};
pub use timeline::{
    ClientAction, Endpoint, MAX_COUNT, Network, Role, ServerAction, Step, StepAction, Submit,
    Timeline, TimelineError, Workload,
};

/// A long synthetic timeline for benchmarks: `hours` of virtual time,
/// `ops` ops spread evenly (one workload), and `outages` clean server stops
/// of 5 s each, evenly spaced, under the `mongodb-legacy` preset (buffer
/// everything, reconnect every second).
pub fn soak_timeline(hours: u64, ops: u64, outages: u64) -> String {
    use std::fmt::Write as _;
    let total_ms = hours * 3_600_000;
    let every_us = (total_ms * 1000 / ops.max(1)).max(1);
    let mut s = format!(
        "name = \"soak: {hours} h, {ops} ops, {outages} outages\"\nuntil = \"{}ms\"\n\n[config]\npreset = \"mongodb-legacy\"\n\n[[workload]]\nsubmit = \"op\"\nevery = \"{every_us}us\"\nfrom = \"0ms\"\nuntil = \"{total_ms}ms\"\n",
        total_ms + 60_000
    );
    let gap = total_ms / outages.max(1);
    for i in 0..outages {
        let _ = write!(
            s,
            "\n[[step]]\nat = \"{}ms\"\nserver = \"down\"\nfor = \"5s\"\n",
            i * gap + gap / 2
        );
    }
    s
}
