//! What a run prints: transcript lines, JSON lines and the summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// Readable transcript (default).
    #[default]
    Text,
    /// JSON lines.
    Json,
}

/// An op's outcome, as printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpLine {
    /// Completion time, µs.
    pub t_us: u64,
    /// 1-based submission number.
    pub id: u64,
    /// The op's label.
    pub label: String,
    /// Submission time, µs.
    pub submitted_us: u64,
    /// First dispatch time, µs (`None`: never sent).
    pub first_dispatch_us: Option<u64>,
    /// `Ok(endpoint name)` or `Err((error kind name, message))`.
    pub result: Result<String, (String, String)>,
    /// Dispatches (wrong-server answers included).
    pub attempts: u32,
    /// Whether the op may have run (always true on success).
    pub maybe_executed: bool,
    /// Dispatches the server did not refuse: each may have run. Two or
    /// more: the op was sent again after a loss in flight and **may have
    /// run twice** (a retryable op, or `retry_lost`).
    pub runs: u32,
}

/// One transcript line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// An op got its outcome.
    Op(OpLine),
    /// The machine emitted an event.
    Event {
        /// Time, µs.
        t_us: u64,
        /// snake_case event name.
        event: &'static str,
        /// Extra fields, in print order.
        fields: Vec<(&'static str, Field)>,
        /// The human text.
        text: String,
    },
    /// The world changed (a server step, the client closed). Text only.
    World {
        /// Time, µs.
        t_us: u64,
        /// What happened.
        text: String,
    },
}

/// A field value of an event line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Field {
    /// A number.
    Num(u64),
    /// A string.
    Str(String),
}

/// The last line of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Ops submitted.
    pub submitted: u64,
    /// Ops that succeeded.
    pub ok: u64,
    /// Ops that failed.
    pub failed: u64,
    /// Ops with no outcome when the run stopped.
    pub pending: u64,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// The most ops the buffer held at once.
    pub max_buffered: u64,
    /// Connect attempts started.
    pub connect_attempts: u64,
    /// Ops sent again after a loss in flight: each may have run twice
    /// (retryable ops, or every op under `retry_lost`). In JSON only when
    /// not zero.
    #[serde(skip_serializing_if = "is_zero")]
    pub may_have_run_twice: u64,
    /// Invariant violations (empty when all held).
    pub violations: Vec<String>,
    /// Simulated events processed (world messages, scripted steps and
    /// machine timer wake-ups); not printed.
    #[serde(skip)]
    pub events: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Summary {
    /// Counts one op's outcome ([`OpLine::result`], [`OpLine::runs`]).
    pub fn count(&mut self, o: &OpLine) {
        if o.runs >= 2 {
            self.may_have_run_twice += 1;
        }
        match &o.result {
            Ok(_) => self.ok += 1,
            Err((kind, _)) => {
                self.failed += 1;
                *self.errors.entry(kind.clone()).or_default() += 1;
            }
        }
    }
}

fn ms(us: u64) -> String {
    format!("{:>4}.{:03}s", us / 1_000_000, (us / 1_000) % 1_000)
}

#[derive(Serialize)]
struct JsonOp<'a> {
    t_ms: u64,
    #[serde(rename = "type")]
    ty: &'static str,
    id: u64,
    label: &'a str,
    submitted_ms: u64,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    attempts: u32,
    maybe_executed: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    may_have_run_twice: bool,
}

#[derive(Serialize)]
struct JsonSummary<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    #[serde(flatten)]
    s: &'a Summary,
}

/// Appends one line (with its newline) in `format` to `out`. World lines
/// are only written in the text format.
pub fn write_line(out: &mut String, format: Format, line: &Line) {
    match (format, line) {
        (Format::Text, Line::Op(o)) => {
            let _ = write!(
                out,
                "[{}] Finished {} #{} (submitted at {}): ",
                ms(o.t_us),
                o.label,
                o.id,
                ms(o.submitted_us).trim_start()
            );
            let twice = if o.runs >= 2 {
                ", sent again after a loss in flight: may have run twice"
            } else {
                ""
            };
            match &o.result {
                Ok(ep) => {
                    let _ = writeln!(out, "ok on {ep} (attempts {}{twice})", o.attempts);
                }
                Err((kind, msg)) => {
                    let _ = writeln!(
                        out,
                        "error {kind}: {msg} (attempts {}{})",
                        o.attempts,
                        if !twice.is_empty() {
                            twice
                        } else if o.maybe_executed {
                            ", may have run"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        (Format::Text, Line::Event { t_us, text, .. }) => {
            let _ = writeln!(out, "[{}] -> {text}", ms(*t_us));
        }
        (Format::Text, Line::World { t_us, text }) => {
            let _ = writeln!(out, "[{}] == {text}", ms(*t_us));
        }
        (Format::Json, Line::Op(o)) => {
            let (outcome, endpoint, error, message) = match &o.result {
                Ok(ep) => ("ok", Some(ep.as_str()), None, None),
                Err((k, m)) => ("error", None, Some(k.as_str()), Some(m.as_str())),
            };
            let j = JsonOp {
                t_ms: o.t_us / 1000,
                ty: "op",
                id: o.id,
                label: &o.label,
                submitted_ms: o.submitted_us / 1000,
                outcome,
                endpoint,
                error,
                message,
                attempts: o.attempts,
                maybe_executed: o.maybe_executed,
                may_have_run_twice: o.runs >= 2,
            };
            out.push_str(&serde_json::to_string(&j).expect("plain data serializes"));
            out.push('\n');
        }
        (
            Format::Json,
            Line::Event {
                t_us,
                event,
                fields,
                ..
            },
        ) => {
            let mut s = format!(
                "{{\"t_ms\":{},\"type\":\"event\",\"event\":\"{event}\"",
                t_us / 1000
            );
            for (k, v) in fields {
                let _ = write!(
                    s,
                    ",\"{k}\":{}",
                    serde_json::to_string(v).expect("plain data serializes")
                );
            }
            s.push_str("}\n");
            out.push_str(&s);
        }
        (Format::Json, Line::World { .. }) => {}
    }
}

impl Summary {
    /// Appends the summary line in `format`.
    pub fn write(&self, out: &mut String, format: Format) {
        match format {
            Format::Json => {
                let j = JsonSummary {
                    ty: "summary",
                    s: self,
                };
                out.push_str(&serde_json::to_string(&j).expect("plain data serializes"));
                out.push('\n');
            }
            Format::Text => {
                let errors: Vec<String> = self
                    .errors
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "summary: {} submitted, {} ok, {} failed{}, {} pending; max buffered {}; {} connect attempts",
                    self.submitted,
                    self.ok,
                    self.failed,
                    if errors.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", errors.join(", "))
                    },
                    self.pending,
                    self.max_buffered,
                    self.connect_attempts
                );
                if self.may_have_run_twice > 0 {
                    let _ = writeln!(
                        out,
                        "warning: {} {} sent again after a loss in flight and may have run twice (retryable ops, or `retry_lost`)",
                        self.may_have_run_twice,
                        if self.may_have_run_twice == 1 {
                            "op was"
                        } else {
                            "ops were"
                        }
                    );
                }
                if self.violations.is_empty() {
                    out.push_str("invariants: all held\n");
                } else {
                    for v in &self.violations {
                        let _ = writeln!(out, "VIOLATION {v}");
                    }
                }
            }
        }
    }
}
