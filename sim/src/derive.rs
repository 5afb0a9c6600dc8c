//! What-if: a timeline derived from a flight recorder trace, and how well
//! its replay under the recorded config predicts what the ops really did.
//!
//! A trace records what the client saw, not the world. The derivation
//! reads the world back from it with these rules (also in `TRACE.md` and
//! `redial-sim derive-timeline --help`):
//!
//! - a connect that **succeeded** ⇒ its server was up (with the role the
//!   connector found) from the moment the connect was sent;
//! - a connect **refused** (or `unavailable`) ⇒ down when it was sent;
//!   **timed out** ⇒ blackholed when it was sent; `not_primary` ⇒ up as a
//!   secondary;
//! - a connection **lost** (the `disconnected` event: a loss the
//!   connection, an op or a ping reported) ⇒ the server went down
//!   (`closed`), crashed (`reset`) or went silent (`timed_out`) one
//!   latency before the client saw it — or, if a request on it was left
//!   unanswered, before that request's answer would have come back (one
//!   round trip and the service time after the first such request was
//!   sent: it died with the request in flight);
//! - a connection declared **unresponsive** (heartbeat or response
//!   timeout) ⇒ blackholed halfway between its last answer and the first
//!   request on it left unanswered (either end is consistent with the
//!   records; halfway leaves the replayed client, whose round trips and
//!   timers are not exactly production's, the most room on both sides);
//! - an op answered **wrong server** ⇒ the server was a secondary when the
//!   op was sent; **pushback** ⇒ busy (with the hint) from that dispatch to
//!   the next dispatch on that server that was answered otherwise;
//!   `server_error` ⇒ the op is marked `server_error = true`;
//! - what the trace cannot know is placed at the first record that shows
//!   it: a server that died between two records is dead from the first
//!   record that shows it dead (minus one latency for a loss), however
//!   long before that it died; a server that comes back is up right after
//!   the last record that shows it down or silent (the earliest instant
//!   the records allow: a server that came back while nobody tried is seen
//!   back only at the next connect that succeeded, and it may have been
//!   back much earlier); a connect the machine gave up on (its connect
//!   timeout) ⇒ blackholed from when it was sent; a server nobody talked
//!   to keeps its last known state;
//! - the network: one latency for every server, half the shorter of the
//!   (lower) median connect round trip and the median op round trip; the
//!   service time is what the median op round trip adds to it; no jitter;
//! - the application: every submit at its time with its options (label
//!   `op`, or `retryable op`), a cancel as the op's `cancel_after`, close
//!   and revive as client steps; `until` is the trace's last record plus
//!   1 s (an op answered at the very end still finishes in the replay). A
//!   per-op command timeout has no timeline key: it is dropped (a comment
//!   says so).
//!
//! Same trace, same bytes: nothing depends on anything but the records.

use core::fmt;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::output::Line;
use crate::run::{RunOptions, run};
use crate::timeline::Timeline;

/// A trace a timeline cannot be derived from: the line (1-based) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeriveError {
    /// 1-based line of the trace.
    pub line: usize,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for DeriveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for DeriveError {}

fn err(line: usize, message: impl Into<String>) -> DeriveError {
    DeriveError {
        line,
        message: message.into(),
    }
}

/// What the world was doing, as one record shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fact {
    /// Up, as a primary (`Some(true)`), a secondary (`Some(false)`) or
    /// either.
    Up(Option<bool>),
    Down,
    Crash,
    Blackhole,
    /// Pushing back, with this hint (µs).
    Busy(Option<u64>),
    /// Answered an op other than with pushback.
    NotBusy,
}

struct Observed {
    t: u64,
    /// For a down or silent server: it is known to be so until then (a
    /// return is placed right after).
    proven: u64,
    /// Shift back by one latency (a loss, seen one latency late).
    early: bool,
    /// A loss that left this request (sent then) unanswered: it died before
    /// the answer would have come back.
    cap: Option<u64>,
    line: usize,
    endpoint: usize,
    fact: Fact,
    why: String,
}

/// The outcome of one op: `ok` or an error kind, and whether it may have run.
pub type Outcome = (String, bool);

/// One op the application submitted.
#[derive(Clone, Debug)]
struct Op {
    line: usize,
    t: u64,
    retryable: Option<bool>,
    deadline_us: Option<u64>,
    max_attempts: Option<u64>,
    command_timeout_us: Option<u64>,
    cancel: Option<(u64, usize)>,
    server_error: bool,
    outcome: Option<Outcome>,
}

struct Conn {
    endpoint: usize,
    sent: u64,
    line: usize,
    closed: bool,
    /// The connect was answered (connected or failed).
    answered: bool,
    /// The last answer on it (or its connect's success): (time, line).
    last_answer: (u64, usize),
    /// The first request sent on it after its last answer: (time, line).
    unanswered: Option<(u64, usize)>,
}

/// What a trace says, read once.
struct Read {
    seed: u64,
    config: String,
    endpoints: usize,
    last_t: u64,
    ops: Vec<Op>,
    facts: Vec<Observed>,
    client: Vec<(u64, usize, &'static str)>,
    connect_rtt: Vec<u64>,
    op_rtt: Vec<u64>,
}

fn u(v: &Value, key: &str, line: usize) -> Result<u64, DeriveError> {
    v.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| err(line, format!("`{key}` must be a non-negative integer")))
}

fn opt_u(v: &Value, key: &str, line: usize) -> Result<Option<u64>, DeriveError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x.as_u64().map(Some).ok_or_else(|| {
            err(
                line,
                format!("`{key}` must be a non-negative integer or null"),
            )
        }),
    }
}

fn s<'a>(v: &'a Value, key: &str, line: usize) -> Result<&'a str, DeriveError> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| err(line, format!("`{key}` must be a string")))
}

fn read(text: &str) -> Result<Read, DeriveError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let Some((_, first)) = lines.next() else {
        return Err(err(1, "empty file: not a trace"));
    };
    let header = redial::trace::parse_header(first.trim_end_matches('\r'))
        .map_err(|m| err(m.line, m.expected))?;
    header
        .config
        .build(None, header.endpoints.max(1))
        .map_err(|e| err(1, format!("config: {e}")))?;
    let mut r = Read {
        seed: header.seed,
        config: crate::trace::config_toml(&header),
        endpoints: header.endpoints.max(1),
        last_t: header.t0.as_micros(),
        ops: Vec::new(),
        facts: Vec::new(),
        client: Vec::new(),
        connect_rtt: Vec::new(),
        op_rtt: Vec::new(),
    };
    let mut op_index: BTreeMap<u64, usize> = BTreeMap::new();
    let mut conns: BTreeMap<u64, Conn> = BTreeMap::new();
    // Op id → (connection, sent at) of its latest dispatch.
    let mut dispatched: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for (n, line) in lines {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).map_err(|e| err(n, format!("not a JSON record: {e}")))?;
        let t = u(&v, "t", n)?;
        if t < r.last_t {
            return Err(err(
                n,
                format!("time runs backwards: {t} µs after {} µs", r.last_t),
            ));
        }
        r.last_t = t;
        let mut extra: Option<Observed> = None;
        let mut fact = |conn: &Conn, at: u64, early: bool, fact: Fact, why: String| {
            r.facts.push(Observed {
                t: at,
                proven: if early || fact == Fact::Blackhole {
                    t
                } else {
                    at
                },
                early,
                cap: None,
                line: n,
                endpoint: conn.endpoint,
                fact,
                why,
            });
        };
        if let Some(kind) = v.get("in").and_then(Value::as_str) {
            match kind {
                "submit" => {
                    let id = u(&v, "op", n)?;
                    let o = v
                        .get("options")
                        .filter(|o| o.is_object())
                        .ok_or_else(|| err(n, "`options` must be an object"))?;
                    let op = Op {
                        line: n,
                        t,
                        retryable: match o.get("retryable") {
                            Some(Value::Null) => None,
                            Some(Value::Bool(b)) => Some(*b),
                            _ => {
                                return Err(err(n, "`retryable` must be true, false or null"));
                            }
                        },
                        deadline_us: opt_u(o, "deadline_us", n)?,
                        max_attempts: opt_u(o, "max_attempts", n)?,
                        command_timeout_us: opt_u(o, "command_timeout_us", n)?,
                        cancel: None,
                        server_error: false,
                        outcome: None,
                    };
                    op_index.insert(id, r.ops.len());
                    r.ops.push(op);
                }
                "cancel" => {
                    let id = u(&v, "op", n)?;
                    if let Some(&i) = op_index.get(&id) {
                        let op = &mut r.ops[i];
                        if op.cancel.is_none() && op.outcome.is_none() {
                            op.cancel = Some((t, n));
                        }
                    }
                }
                "close" => r.client.push((t, n, "close")),
                "revive" => r.client.push((t, n, "revive")),
                "connected" => {
                    let c = u(&v, "conn", n)?;
                    let role = match s(&v, "role", n)? {
                        "primary" => Some(true),
                        "secondary" => Some(false),
                        "unknown" => None,
                        other => return Err(err(n, format!("unknown role `{other}`"))),
                    };
                    if let Some(conn) = conns.get_mut(&c) {
                        conn.last_answer = (t, n);
                        conn.answered = true;
                    }
                    if let Some(conn) = conns.get(&c) {
                        r.connect_rtt.push(t - conn.sent);
                        fact(
                            conn,
                            conn.sent,
                            false,
                            Fact::Up(role),
                            format!("connect (line {}) succeeded", conn.line),
                        );
                    }
                }
                "connect_failed" => {
                    let c = u(&v, "conn", n)?;
                    let why = s(&v, "why", n)?;
                    let f = match why {
                        "refused" | "unavailable" => Some(Fact::Down),
                        "timed_out" => Some(Fact::Blackhole),
                        "not_primary" => Some(Fact::Up(Some(false))),
                        "rejected" | "panicked" => None,
                        other => return Err(err(n, format!("unknown connect failure `{other}`"))),
                    };
                    if let Some(conn) = conns.get_mut(&c) {
                        conn.answered = true;
                    }
                    if let (Some(f), Some(conn)) = (f, conns.get(&c)) {
                        fact(
                            conn,
                            conn.sent,
                            false,
                            f,
                            format!("connect (line {}) failed: {why}", conn.line),
                        );
                    }
                }
                "connection_lost" => {
                    // The loss itself is read from the `disconnected` event
                    // (it also covers losses an op's or a ping's result
                    // reported); only the record is checked here.
                    u(&v, "conn", n)?;
                    let kind = s(&v, "kind", n)?;
                    if !["closed", "reset", "timed_out"].contains(&kind) {
                        return Err(err(n, format!("unknown loss `{kind}`")));
                    }
                }
                "op_result" | "heartbeat" => {
                    let c = u(&v, "conn", n)?;
                    let result = s(&v, "result", n)?;
                    let op = if kind == "op_result" {
                        Some(u(&v, "op", n)?)
                    } else {
                        None
                    };
                    let sent = op
                        .and_then(|id| dispatched.get(&id))
                        .filter(|(dc, _)| *dc == c)
                        .map(|(_, at)| *at);
                    if let Some(conn) = conns.get_mut(&c).filter(|_| result != "connection_lost") {
                        conn.last_answer = (t, n);
                        conn.unanswered = None;
                    }
                    let Some(conn) = conns.get(&c) else {
                        continue;
                    };
                    let at = sent.unwrap_or(t);
                    match result {
                        "ok" | "server_error" => {
                            if let (Some(sent), "ok", Some(_)) = (sent, result, op) {
                                r.op_rtt.push(t - sent);
                            }
                            if result == "server_error" {
                                if let Some(&i) = op.and_then(|id| op_index.get(&id)) {
                                    r.ops[i].server_error = true;
                                }
                            }
                            if op.is_some() {
                                fact(conn, at, false, Fact::NotBusy, format!("{kind} {result}"));
                            }
                        }
                        "wrong_server" => fact(
                            conn,
                            at,
                            false,
                            Fact::Up(Some(false)),
                            format!("{kind} wrong_server"),
                        ),
                        "pushback" => {
                            let hint = opt_u(&v, "retry_after_us", n)?;
                            fact(
                                conn,
                                at,
                                false,
                                Fact::Busy(hint),
                                format!("{kind} pushback"),
                            );
                        }
                        "connection_lost" => {}
                        other => return Err(err(n, format!("unknown result `{other}`"))),
                    }
                }
                "timeout" => {}
                other => return Err(err(n, format!("unknown input `{other}`"))),
            }
        } else if let Some(kind) = v.get("out").and_then(Value::as_str) {
            match kind {
                "connect" => {
                    let c = u(&v, "conn", n)?;
                    let endpoint = usize::try_from(u(&v, "endpoint", n)?).unwrap_or(usize::MAX);
                    if endpoint >= r.endpoints {
                        return Err(err(
                            n,
                            format!(
                                "endpoint {endpoint}: the header lists {} endpoint(s)",
                                r.endpoints
                            ),
                        ));
                    }
                    conns.insert(
                        c,
                        Conn {
                            endpoint,
                            sent: t,
                            line: n,
                            closed: false,
                            answered: false,
                            last_answer: (t, n),
                            unanswered: None,
                        },
                    );
                }
                "close" => {
                    let c = u(&v, "conn", n)?;
                    let by_app = r.client.iter().any(|(_, _, a)| *a == "close");
                    if let Some(conn) = conns
                        .get(&c)
                        .filter(|c| !c.answered && !c.closed && !by_app)
                    {
                        // The machine gave up on a connect nobody answered:
                        // its connect timeout (or a close while connecting).
                        r.facts.push(Observed {
                            t: conn.sent,
                            proven: t,
                            early: false,
                            cap: None,
                            line: n,
                            endpoint: conn.endpoint,
                            fact: Fact::Blackhole,
                            why: format!("connect (line {}) never answered", conn.line),
                        });
                    }
                    if let Some(conn) = conns.get_mut(&c) {
                        conn.closed = true;
                    }
                }
                "dispatch" | "heartbeat" => {
                    let c = u(&v, "conn", n)?;
                    if kind == "dispatch" {
                        dispatched.insert(u(&v, "op", n)?, (c, t));
                    }
                    if let Some(conn) = conns.get_mut(&c) {
                        conn.unanswered.get_or_insert((t, n));
                    }
                }
                "complete" => {
                    let id = u(&v, "op", n)?;
                    let ok = v
                        .get("ok")
                        .and_then(Value::as_bool)
                        .ok_or_else(|| err(n, "`ok` must be true or false"))?;
                    let outcome = if ok {
                        ("ok".to_string(), true)
                    } else {
                        (
                            s(&v, "kind", n)?.to_string(),
                            v.get("maybe_executed")
                                .and_then(Value::as_bool)
                                .ok_or_else(|| err(n, "`maybe_executed` must be true or false"))?,
                        )
                    };
                    if let Some(&i) = op_index.get(&id) {
                        r.ops[i].outcome.get_or_insert(outcome);
                    }
                }
                "event" => {
                    let name = s(&v, "event", n)?;
                    let reason = v.get("reason").and_then(Value::as_str);
                    let lost = match reason {
                        Some("closed") => Some(Fact::Down),
                        Some("reset") => Some(Fact::Crash),
                        Some("timed_out") => Some(Fact::Blackhole),
                        _ => None,
                    };
                    if let (Some(f), "disconnected") = (lost, name) {
                        let c = u(&v, "conn", n)?;
                        if let Some(conn) = conns.get(&c) {
                            // Seen one latency late; and before the first
                            // request left unanswered arrived, if any (it
                            // died with it in flight).
                            extra = Some(Observed {
                                t,
                                proven: t,
                                early: true,
                                cap: conn.unanswered.map(|(at, _)| at),
                                line: n,
                                endpoint: conn.endpoint,
                                fact: f,
                                why: format!(
                                    "connection lost ({}){}",
                                    reason.unwrap_or_default(),
                                    conn.unanswered.map_or_else(String::new, |(_, l)| format!(
                                        ", with the request of line {l} unanswered"
                                    ))
                                ),
                            });
                        }
                    }
                    if name == "disconnected" && reason == Some("unresponsive") {
                        let c = u(&v, "conn", n)?;
                        if let Some(conn) = conns.get(&c) {
                            let (a, from) = conn.last_answer;
                            let (b, to) = conn.unanswered.unwrap_or((t, n));
                            fact(
                                conn,
                                a + b.saturating_sub(a) / 2,
                                false,
                                Fact::Blackhole,
                                format!(
                                    "unresponsive; silent between its last answer (line {from}) and its first request left unanswered (line {to}): halfway"
                                ),
                            );
                        }
                    }
                }
                other => return Err(err(n, format!("unknown output `{other}`"))),
            }
        } else {
            return Err(err(n, "a record needs `in` or `out`"));
        }
        r.facts.extend(extra);
    }
    Ok(r)
}

fn median(v: &mut [u64]) -> Option<u64> {
    v.sort_unstable();
    // The lower median: with two samples, the smaller (a stalled
    // server's slow answer is not the network).
    v.get(v.len().saturating_sub(1) / 2).copied()
}

/// One step of the derived timeline, before it is written.
struct Out {
    t: u64,
    line: usize,
    text: String,
}

/// Derives a timeline (TOML) from a trace: the recorded config, the
/// servers' ups and downs as the records show them, the network's latency
/// and the application's ops, closes and revives at their times. Comments
/// name the trace line each step comes from. Deterministic: the same trace
/// gives the same bytes. A bounded dump that dropped records derives too
/// (from what it kept). Errors name the trace's line.
pub fn timeline_from_trace(text: &str) -> Result<String, DeriveError> {
    let mut r = read(text)?;
    let connect_median = median(&mut r.connect_rtt);
    let op_median = median(&mut r.op_rtt);
    // The shorter of the median connect and op round trips is the network
    // (a connect may pay a handshake, an op the server's work): half of it
    // each way; an op adds the service time to that.
    let latency = match (connect_median, op_median) {
        (Some(c), Some(o)) => Some(c.min(o)),
        (c, o) => c.or(o),
    }
    .map_or(1000, |rtt| (rtt / 2).max(1));
    let service = op_median.map_or(0, |rtt| rtt.saturating_sub(2 * latency));

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Derived by `redial-sim derive-timeline` from a flight recorder trace.\n\
         # The world is what the records show (README: \"Record in production\"):\n\
         # a server is up from a connect that succeeded, down from one refused,\n\
         # blackholed from one that timed out, or halfway between the last answer\n\
         # and the first request left unanswered on a connection found\n\
         # unresponsive, down (closed), crashed\n\
         # (reset) or silent one latency before a connection loss was seen.\n\
         # What no record shows: a death is put at the first record that shows it,\n\
         # a return right after the last record that shows it down or silent."
    );
    let _ = writeln!(out, "name = \"derived from a trace\"\nseed = {}", r.seed);
    // A second past the last record: the replay's round trips are not
    // production's, so an op answered at the very end still finishes.
    let _ = writeln!(
        out,
        "# the trace's last record plus 1 s\nuntil = \"{}us\"\n",
        r.last_t.saturating_add(1_000_000)
    );
    out.push_str(&r.config);
    let _ = writeln!(
        out,
        "\n[network]\n# half the shorter of the median connect round trip ({} us over {} connects)\n# and the median op round trip ({} us over {} ops answered ok)\nlatency = \"{latency}us\"\n# what the median op round trip adds to the network's\nservice_time = \"{service}us\"\njitter = \"0ms\"",
        connect_median.map_or_else(|| "none".to_string(), |m| m.to_string()),
        r.connect_rtt.len(),
        op_median.map_or_else(|| "none".to_string(), |m| m.to_string()),
        r.op_rtt.len()
    );

    // The servers: facts per endpoint in time order, steps on each change.
    let mut steps: Vec<Out> = Vec::new();
    let mut by_ep: BTreeMap<usize, Vec<&Observed>> = BTreeMap::new();
    for f in &r.facts {
        by_ep.entry(f.endpoint).or_default().push(f);
    }
    let mut initial: BTreeMap<usize, (bool, bool, String)> = BTreeMap::new();
    for (&ep, facts) in &mut by_ep {
        let at = |f: &Observed| {
            let t = if f.early {
                f.t.saturating_sub(latency)
            } else {
                f.t
            };
            // Before the answer to the request it took would have come
            // back (one round trip and the service time after it was sent).
            f.cap
                .map_or(t, |c| t.min((c + 2 * latency + service).saturating_sub(1)))
        };
        facts.sort_by_key(|f| (at(f), f.line));
        let name = format!("ep{ep}");
        // Health: 0 up, 1 down, 2 blackhole.
        let first_health = facts.iter().find_map(|f| match f.fact {
            Fact::Up(_) | Fact::Blackhole => Some((0u8, f.line)),
            Fact::Down | Fact::Crash => Some((1, f.line)),
            _ => None,
        });
        let first_role = facts.iter().find_map(|f| match f.fact {
            Fact::Up(Some(p)) => Some(p),
            _ => None,
        });
        let mut health = first_health.map_or(0, |h| h.0);
        let mut primary = first_role.unwrap_or(true);
        initial.insert(
            ep,
            (
                health == 0,
                primary,
                first_health.map_or_else(
                    || "no record shows it".to_string(),
                    |(_, l)| format!("line {l}"),
                ),
            ),
        );
        let mut last = 0u64;
        // The last record that shows it down or silent, and when that step ran.
        let mut down_proven = (0u64, 0usize);
        let mut down_step = 0u64;
        let mut busy: Option<(u64, usize, Option<u64>)> = None;
        let close_busy = |steps: &mut Vec<Out>,
                          busy: &mut Option<(u64, usize, Option<u64>)>,
                          end: u64| {
            if let Some((from, line, hint)) = busy.take() {
                let mut text = format!(
                    "# line {line}: pushback until the next other answer\n[[step]]\nat = \"{from}us\"\nserver = \"busy\"\nendpoint = \"{name}\"\nfor = \"{}us\"\n",
                    end.saturating_sub(from).max(1)
                );
                if let Some(h) = hint {
                    let _ = writeln!(text, "retry_after = \"{h}us\"");
                }
                steps.push(Out {
                    t: from,
                    line,
                    text,
                });
            }
        };
        for f in facts.iter() {
            let t = at(f).max(last);
            last = t;
            let step = |action: &str| Out {
                t,
                line: f.line,
                text: format!(
                    "# line {}: {}\n[[step]]\nat = \"{t}us\"\nserver = \"{action}\"\nendpoint = \"{name}\"\n",
                    f.line, f.why
                ),
            };
            match f.fact {
                Fact::Up(role) => {
                    if health != 0 {
                        let from = down_proven.0.max(down_step);
                        let up = (from + t.saturating_sub(from) / 2).max(down_step);
                        // It came back in the role it was found in.
                        if let Some(p) = role.filter(|p| *p != primary) {
                            steps.push(Out {
                                t: up,
                                line: f.line,
                                text: format!(
                                    "# line {}: {}; back as a {}\n[[step]]\nat = \"{up}us\"\nserver = \"{}\"\nendpoint = \"{name}\"\n",
                                    f.line,
                                    f.why,
                                    if p { "primary" } else { "secondary" },
                                    if p { "promote" } else { "demote" }
                                ),
                            });
                            primary = p;
                        }
                        steps.push(Out {
                            t: up,
                            line: f.line,
                            text: format!(
                                "# line {}: {}; up halfway from line {}, the last record that shows it down\n[[step]]\nat = \"{up}us\"\nserver = \"up\"\nendpoint = \"{name}\"\n",
                                f.line, f.why, down_proven.1
                            ),
                        });
                        health = 0;
                    }
                    if let Some(p) = role {
                        if p != primary {
                            steps.push(step(if p { "promote" } else { "demote" }));
                            primary = p;
                        }
                    }
                }
                Fact::Down | Fact::Crash => {
                    close_busy(&mut steps, &mut busy, t);
                    down_proven = down_proven.max((f.proven, f.line));
                    if health != 1 {
                        down_step = t;
                        steps.push(step(if f.fact == Fact::Down {
                            "down"
                        } else {
                            "crash"
                        }));
                        health = 1;
                    }
                }
                Fact::Blackhole => {
                    down_proven = down_proven.max((f.proven, f.line));
                    if health != 2 {
                        down_step = t;
                        steps.push(step("blackhole"));
                        health = 2;
                    }
                }
                Fact::Busy(hint) => {
                    busy.get_or_insert((t, f.line, hint));
                }
                Fact::NotBusy => close_busy(&mut steps, &mut busy, t),
            }
        }
        close_busy(&mut steps, &mut busy, r.last_t.max(last));
    }
    for ep in 0..r.endpoints {
        let (up, primary, why) =
            initial
                .get(&ep)
                .cloned()
                .unwrap_or((true, true, "no record shows it".into()));
        let _ = writeln!(
            out,
            "\n[[endpoint]]\n# at t = 0: as the first record about it shows ({why})\nname = \"ep{ep}\"\nrole = \"{}\"\nup = {up}",
            if primary { "primary" } else { "secondary" }
        );
    }

    // The application.
    for op in &r.ops {
        let mut text = format!("# line {}: submit\n", op.line);
        if let Some(c) = op.command_timeout_us {
            let _ = writeln!(
                text,
                "# its command timeout ({c} us) has no timeline key: dropped"
            );
        }
        let _ = write!(
            text,
            "[[step]]\nat = \"{}us\"\nsubmit = \"{}\"\n",
            op.t,
            if op.retryable == Some(true) {
                "retryable op"
            } else {
                "op"
            }
        );
        if let Some(r) = op.retryable {
            let _ = writeln!(text, "retryable = {r}");
        }
        if let Some(d) = op.deadline_us.filter(|d| *d > 0) {
            let _ = writeln!(text, "deadline = \"{d}us\"");
        }
        if let Some(m) = op.max_attempts.filter(|m| *m > 0) {
            let _ = writeln!(text, "max_attempts = {}", m.min(u64::from(u32::MAX)));
        }
        if op.server_error {
            text.push_str("server_error = true\n");
        }
        if let Some((t, line)) = op.cancel {
            let _ = writeln!(
                text,
                "cancel_after = \"{}us\" # line {line}: cancel",
                t.saturating_sub(op.t).max(1)
            );
        }
        steps.push(Out {
            t: op.t,
            line: op.line,
            text,
        });
    }
    for &(t, line, action) in &r.client {
        steps.push(Out {
            t,
            line,
            text: format!(
                "# line {line}: {action}\n[[step]]\nat = \"{t}us\"\nclient = \"{action}\"\n"
            ),
        });
    }
    steps.sort_by_key(|s| (s.t, s.line));
    for s in steps {
        out.push('\n');
        out.push_str(&s.text);
    }
    Ok(out)
}

/// How well a derived timeline predicts a trace's ops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fidelity {
    /// Ops in the trace.
    pub ops: u64,
    /// Ops whose outcome kind and may-have-run agree.
    pub agree: u64,
    /// Per recorded outcome (`ok`, an error kind, `pending`): (agree, all).
    pub by_outcome: BTreeMap<String, (u64, u64)>,
    /// Each disagreement: the op (submission order, from 1), its trace
    /// line, what the trace says and what the derived timeline predicted.
    pub disagreements: Vec<String>,
    /// Invariant violations in the derived timeline's run.
    pub violations: Vec<String>,
}

impl fmt::Display for Fidelity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} ops agree (", self.agree, self.ops)?;
        for (i, (k, (a, n))) in self.by_outcome.iter().enumerate() {
            write!(f, "{}{k} {a}/{n}", if i == 0 { "" } else { ", " })?;
        }
        f.write_str(")")
    }
}

fn outcome_text(o: Option<&Outcome>) -> String {
    match o {
        None => "pending".into(),
        Some((k, _)) if k == "ok" => "ok".into(),
        Some((k, m)) => format!("{k} (maybe_executed {m})"),
    }
}

/// Derives a timeline from `trace`, replays it under the recorded config
/// (the fast loop, with the invariants checked) and pairs the ops by
/// submission order: an op agrees when both say `ok`, or both fail with
/// the same kind and the same may-have-run, or both are still pending.
pub fn fidelity(trace: &str) -> Result<Fidelity, DeriveError> {
    let toml = timeline_from_trace(trace)?;
    let tl = Timeline::parse(&toml, "derived.toml").map_err(|e| {
        err(
            0,
            format!("the derived timeline does not parse (a bug): {e}"),
        )
    })?;
    let recorded = read(trace)?.ops;
    let mut predicted: BTreeMap<u64, Outcome> = BTreeMap::new();
    let summary = run(&tl, &RunOptions::default(), |l| {
        if let Line::Op(o) = l {
            let v = match &o.result {
                Ok(_) => ("ok".to_string(), true),
                Err((k, _)) => (k.clone(), o.maybe_executed),
            };
            predicted.insert(o.id, v);
        }
    });
    let mut f = Fidelity {
        violations: summary.violations,
        ..Fidelity::default()
    };
    for (i, op) in recorded.iter().enumerate() {
        let seq = i as u64 + 1;
        let truth = op.outcome.as_ref();
        let guess = predicted.get(&seq);
        let key = truth.map_or_else(|| "pending".to_string(), |o| o.0.clone());
        let e = f.by_outcome.entry(key).or_default();
        e.1 += 1;
        f.ops += 1;
        if truth == guess {
            e.0 += 1;
            f.agree += 1;
        } else {
            f.disagreements.push(format!(
                "op {seq} (line {}, submitted at {} us): the trace has {}, the derived timeline predicts {}",
                op.line,
                op.t,
                outcome_text(truth),
                outcome_text(guess)
            ));
        }
    }
    Ok(f)
}
