//! Flight recorder traces in the simulator: `replay-trace` (the exact
//! replay, printed as `replay` prints a run) and `derive-timeline` (a
//! timeline of what the trace shows of the world and the application).
//! The format and the replay itself are `redial::trace`'s.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use redial::trace::{Header, Input, Record, Replay};
use redial_core::{Instant, OpId, Output};

use crate::output::{Line, Summary};
use crate::run::{event_line, op_line};
use crate::timeline::Timeline;

pub use redial::trace::{Mismatch, TRACE_VERSION, replay};

/// The `[config]` table of a trace's header, as TOML lines.
pub(crate) fn config_toml(h: &Header) -> String {
    let mut s = String::from("[config]\n");
    for (k, v) in h.config.entries() {
        let _ = writeln!(s, "{k} = {v}");
    }
    s
}

/// A timeline with the trace's config and its endpoints named `ep0`,
/// `ep1`, … (what a transcript needs to name them).
fn names_timeline(h: &Header) -> Result<Timeline, String> {
    let mut s = format!("seed = {}\n\n{}", h.seed, config_toml(h));
    for i in 0..h.endpoints.max(1) {
        let _ = write!(s, "\n[[endpoint]]\nname = \"ep{i}\"\n");
    }
    Timeline::parse(&s, "trace header").map_err(|e| e.to_string())
}

/// The transcript of a replayed trace, in `replay`'s lines: the core's
/// events and every op's outcome (labelled `op`, or `retryable op`, and
/// numbered in submission order as `replay` numbers them).
pub fn transcript(r: &Replay) -> Result<(Vec<Line>, Summary), String> {
    let tl = names_timeline(&r.header)?;
    let mut lines = Vec::new();
    let mut summary = Summary::default();
    // Per op: submitted at, label, first dispatch.
    let mut ops: BTreeMap<OpId, (u64, Instant, &'static str, Option<Instant>)> = BTreeMap::new();
    let mut events = 0u64;
    for rec in &r.records {
        match rec {
            Record::In(t, Input::Submit { op, options }) => {
                summary.submitted += 1;
                let label = if options.retryable == Some(true) {
                    "retryable op"
                } else {
                    "op"
                };
                ops.insert(*op, (summary.submitted, *t, label, None));
            }
            Record::In(..) => events += 1,
            Record::Out(t, Output::Dispatch { op, .. }) => {
                if let Some(o) = ops.get_mut(op) {
                    o.3.get_or_insert(*t);
                }
            }
            Record::Out(_, Output::Connect { .. }) => summary.connect_attempts += 1,
            Record::Out(t, Output::Event(e)) => lines.push(event_line(&tl, *t, e)),
            Record::Out(t, Output::Complete(c)) => {
                let (seq, submitted, label, first) =
                    ops.remove(&c.id).unwrap_or((0, *t, "op", None));
                let line = op_line(
                    &tl,
                    *t,
                    (seq, label.to_string(), submitted, first),
                    &c.result,
                );
                summary.count(&line);
                lines.push(Line::Op(line));
            }
            Record::Out(..) => {}
        }
    }
    summary.events = events;
    summary.pending = ops.len() as u64;
    Ok((lines, summary))
}

/// Runs a replayed trace's inputs through a machine with `redial-check`'s
/// oracles attached (the invariants and the policy contract, as `replay`
/// checks a timeline) and returns what they found. The machine is the
/// replay's (same config, seed and inputs), so its outputs are the
/// trace's; a trace that ends with the client closed is also checked for
/// every op having had its outcome.
pub fn check(r: &Replay) -> Result<Vec<String>, String> {
    use redial_check::Checked;
    let config = r
        .header
        .config
        .build(None, r.header.endpoints.max(1))
        .map_err(|e| format!("config: {e}"))?;
    let mut m: Checked<()> = Checked::new(config, r.header.seed, r.header.t0);
    while m.poll_output().is_some() {}
    for rec in &r.records {
        let Record::In(t, input) = rec else {
            continue;
        };
        let now = *t;
        match *input {
            Input::Submit { options, .. } => {
                m.submit(now, (), options);
            }
            Input::Cancel { op } => m.cancel(now, op),
            Input::Close => m.close(now),
            Input::Revive => m.revive(now),
            Input::Connected { conn, role } => m.handle_connected_as(now, conn, role),
            Input::ConnectFailed { conn, why } => m.handle_connect_failed(now, conn, why),
            Input::ConnectionLost { conn, kind } => m.handle_connection_lost(now, conn, kind),
            Input::OpResult { op, conn, result } => m.handle_op_result(now, op, conn, result),
            Input::Heartbeat { conn, result } => m.handle_heartbeat(now, conn, result),
            Input::Timeout => m.handle_timeout(now),
            _ => return Err(format!("an input this build cannot check: {input:?}")),
        }
        while m.poll_output().is_some() {}
    }
    if m.state() == redial_core::State::Closed {
        m.finish();
    }
    Ok(m.violations().map(ToString::to_string).collect())
}

/// Replays a trace and renders its transcript, with the oracles' findings
/// in the summary's `violations`: `Err` names the first record that does
/// not replay.
pub fn replay_transcript(text: &str) -> Result<(Vec<Line>, Summary), String> {
    let r = replay(text).map_err(|m| m.to_string())?;
    let (lines, mut summary) = transcript(&r)?;
    summary.violations = check(&r)?;
    Ok((lines, summary))
}
