//! The autoReconnect × bufferMaxEntries matrix (seed 003), measured.
//!
//! Each of the six rows is one simulation of seed 003's script — every
//! second the application inserts, and when the insert returns it runs a
//! findOne — while the server stops for a few seconds and comes back. The
//! table is built from what the runs did; the behaviour line is derived
//! from the counts.

use serde::Serialize;

use crate::output::Line;
use crate::run::{RunOptions, run};
use crate::timeline::Timeline;

/// When the server stops in the matrix workload (ms).
pub const STOP_MS: u64 = 4_500;
/// How long it stays down (ms).
pub const DOWN_MS: u64 = 5_000;

/// One row of the matrix: what one run did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    /// `autoReconnect`.
    pub auto_reconnect: bool,
    /// `bufferMaxEntries`.
    pub buffer_max_entries: i64,
    /// Ops submitted.
    pub submitted: u64,
    /// Ops that succeeded.
    pub ok: u64,
    /// Ops that failed at the instant they were submitted.
    pub failed_fast: u64,
    /// Ops failed with `buffer_overflow`.
    pub failed_by_overflow: u64,
    /// `buffer_overflow` events.
    pub overflows: u64,
    /// Ops that failed otherwise.
    pub failed_other: u64,
    /// Ops that waited in the buffer and succeeded once reconnected.
    pub replayed_after_restart: u64,
    /// Ops still waiting when the run ended.
    pub still_buffered: u64,
    /// Ops submitted after the server came back that failed.
    pub failed_after_server_back: u64,
    /// `reconnected` events.
    pub reconnects: u64,
    /// Invariant violations.
    pub violations: Vec<String>,
    /// One line derived from the counts.
    pub behaviour: String,
}

/// The timeline of one row (TOML text; it is parsed like any file).
pub fn timeline_text(auto_reconnect: bool, buffer_max_entries: i64) -> String {
    format!(
        r#"name = "seed 003 matrix: autoReconnect={auto_reconnect}, bufferMaxEntries={buffer_max_entries}"
until = "30s"

[config]
preset = "mongodb-legacy"
auto_reconnect = {auto_reconnect}
buffer_max_entries = {buffer_max_entries}

[[workload]]
submit = "insert"
then = "findOne"
every = "1s"
from = "1s"
until = "20s"

[[step]]
at = {STOP_MS}
server = "down"
for = {DOWN_MS}
"#
    )
}

/// Runs one row.
pub fn run_row(auto_reconnect: bool, buffer_max_entries: i64) -> Row {
    let text = timeline_text(auto_reconnect, buffer_max_entries);
    let tl = Timeline::parse(&text, "<matrix>").expect("the matrix timeline is valid");
    let back_us = (STOP_MS + DOWN_MS) * 1000;
    let mut row = Row {
        auto_reconnect,
        buffer_max_entries,
        submitted: 0,
        ok: 0,
        failed_fast: 0,
        failed_by_overflow: 0,
        overflows: 0,
        failed_other: 0,
        replayed_after_restart: 0,
        still_buffered: 0,
        failed_after_server_back: 0,
        reconnects: 0,
        violations: Vec::new(),
        behaviour: String::new(),
    };
    let summary = run(&tl, &RunOptions::default(), |line| match line {
        Line::Op(o) => match &o.result {
            Ok(_) => {
                row.ok += 1;
                if o.first_dispatch_us.is_some_and(|d| d > o.submitted_us) {
                    row.replayed_after_restart += 1;
                }
            }
            Err((kind, _)) => {
                if kind == "buffer_overflow" {
                    row.failed_by_overflow += 1;
                } else if o.t_us == o.submitted_us {
                    row.failed_fast += 1;
                } else {
                    row.failed_other += 1;
                }
                if o.submitted_us >= back_us {
                    row.failed_after_server_back += 1;
                }
            }
        },
        Line::Event { event, .. } => match *event {
            "reconnected" => row.reconnects += 1,
            "buffer_overflow" => row.overflows += 1,
            _ => {}
        },
        Line::World { .. } => {}
    });
    row.submitted = summary.submitted;
    row.still_buffered = summary.pending;
    row.violations = summary.violations;
    row.behaviour = behaviour(&row);
    row
}

/// The behaviour line, from the counts only.
pub fn behaviour(r: &Row) -> String {
    let mut parts = Vec::new();
    parts.push(if r.reconnects > 0 {
        "reconnects".to_string()
    } else {
        "never reconnects".to_string()
    });
    if r.failed_fast > 0 && r.replayed_after_restart == 0 && r.failed_by_overflow == 0 {
        parts.push(format!(
            "does not buffer: {} errored at once",
            ops(r.failed_fast)
        ));
    }
    if r.replayed_after_restart > 0 {
        parts.push(format!(
            "buffers while down and replays {} in order after the restart",
            ops(r.replayed_after_restart)
        ));
    }
    if r.failed_by_overflow > 0 {
        parts.push(format!(
            "buffers up to the bound, then errors out every buffered op ({} in {})",
            ops(r.failed_by_overflow),
            plural(r.overflows, "overflow")
        ));
    }
    if r.still_buffered > 0 {
        parts.push(format!(
            "{} still buffered at the end",
            ops(r.still_buffered)
        ));
    }
    if r.failed_after_server_back > 0 {
        parts.push("ops keep failing after the server is back".to_string());
    } else if r.still_buffered > 0 && r.ok > 0 && r.reconnects == 0 {
        parts.push("nothing runs after the server is back (the legacy trap)".to_string());
    }
    parts.join("; ")
}

/// The six rows, in the seed's order (`max_entries` is the N > 0 row).
pub fn run_matrix(max_entries: i64) -> Vec<Row> {
    let mut rows = Vec::new();
    for auto in [true, false] {
        for n in [0, -1, max_entries] {
            rows.push(run_row(auto, n));
        }
    }
    rows
}

/// The table as text.
pub fn render_text(rows: &[Row]) -> String {
    let mut out = String::from(
        "seed 003: insert then findOne every second; the server stops at 4.5s and is back at 9.5s\n\n",
    );
    out.push_str(&format!(
        "{:<13} {:>16} {:>4} {:>11} {:>18} {:>22} {:>14}  behaviour\n",
        "autoReconnect",
        "bufferMaxEntries",
        "ok",
        "failed fast",
        "failed by overflow",
        "replayed after restart",
        "still buffered"
    ));
    for r in rows {
        out.push_str(&format!(
            "{:<13} {:>16} {:>4} {:>11} {:>18} {:>22} {:>14}  {}\n",
            r.auto_reconnect,
            r.buffer_max_entries,
            r.ok,
            r.failed_fast,
            r.failed_by_overflow,
            r.replayed_after_restart,
            r.still_buffered,
            r.behaviour
        ));
        for v in &r.violations {
            out.push_str(&format!("  VIOLATION {v}\n"));
        }
    }
    out
}

/// `1 op`, `3 ops`.
fn ops(n: impl Into<u64>) -> String {
    plural(n, "op")
}

/// `1 overflow`, `2 overflows`.
fn plural(n: impl Into<u64>, what: &str) -> String {
    match n.into() {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}
