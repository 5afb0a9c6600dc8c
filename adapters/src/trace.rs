//! The flight recorder's trace format (version [`TRACE_VERSION`]) and its
//! exact replay. The format is documented in `TRACE.md` at the root of the
//! repository.
//!
//! A trace is JSON lines: a header (the format version, the core's
//! version, the seed, the clock at the start, the endpoint count and the
//! config as the keys of a timeline's `[config]` table), then one record
//! per input the driver fed the core and one per output the core
//! produced, in order. [`replay`] feeds the inputs to a fresh
//! [`Machine`] and checks that it produces the recorded outputs, byte for
//! byte: the records of outputs are written by [`output_record`] on both
//! sides.

use std::fmt::{self, Write as _};

use serde_json::Value;

use crate::core::{
    ConfigKeys, ConfigValue, ConnId, ConnectFailure, Event, Instant, LossKind, Machine, OpId,
    OpOptions, OpResult, Output, Role,
};

/// The version of the trace format this crate writes and reads.
pub const TRACE_VERSION: u64 = 1;

/// An input of the core, as a trace records it.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Input {
    /// [`Machine::submit`]: the op got id `op`.
    Submit {
        /// The id the machine gave it.
        op: OpId,
        /// Its options.
        options: OpOptions,
    },
    /// [`Machine::cancel`].
    Cancel {
        /// The op.
        op: OpId,
    },
    /// [`Machine::close`].
    Close,
    /// [`Machine::revive`].
    Revive,
    /// [`Machine::handle_connected_as`].
    Connected {
        /// The attempt.
        conn: ConnId,
        /// The role the connector found.
        role: Role,
    },
    /// [`Machine::handle_connect_failed`].
    ConnectFailed {
        /// The attempt.
        conn: ConnId,
        /// Why, as the connector read it.
        why: ConnectFailure,
    },
    /// [`Machine::handle_connection_lost`].
    ConnectionLost {
        /// The connection.
        conn: ConnId,
        /// How it ended.
        kind: LossKind,
    },
    /// [`Machine::handle_op_result`].
    OpResult {
        /// The op.
        op: OpId,
        /// The connection it ran on.
        conn: ConnId,
        /// What the caller observed.
        result: OpResult,
    },
    /// [`Machine::handle_heartbeat`].
    Heartbeat {
        /// The connection.
        conn: ConnId,
        /// The ping's answer.
        result: OpResult,
    },
    /// [`Machine::handle_timeout`].
    Timeout,
}

impl Input {
    /// Feeds this input to `m` at `now`; for a submit, the id the machine
    /// gave the op.
    pub fn feed(&self, m: &mut Machine<()>, now: Instant) -> Option<OpId> {
        match *self {
            Input::Submit { options, .. } => return Some(m.submit(now, (), options)),
            Input::Cancel { op } => m.cancel(now, op),
            Input::Close => m.close(now),
            Input::Revive => m.revive(now),
            Input::Connected { conn, role } => m.handle_connected_as(now, conn, role),
            Input::ConnectFailed { conn, why } => m.handle_connect_failed(now, conn, why),
            Input::ConnectionLost { conn, kind } => m.handle_connection_lost(now, conn, kind),
            Input::OpResult { op, conn, result } => m.handle_op_result(now, op, conn, result),
            Input::Heartbeat { conn, result } => m.handle_heartbeat(now, conn, result),
            Input::Timeout => m.handle_timeout(now),
        }
        None
    }
}

const ROLES: [Role; 3] = [Role::Primary, Role::Secondary, Role::Unknown];
const FAILURES: [ConnectFailure; 6] = [
    ConnectFailure::Refused,
    ConnectFailure::TimedOut,
    ConnectFailure::Unavailable,
    ConnectFailure::Rejected,
    ConnectFailure::Panicked,
    ConnectFailure::NotPrimary,
];
const LOSSES: [(LossKind, &str); 3] = [
    (LossKind::Closed, "closed"),
    (LossKind::Reset, "reset"),
    (LossKind::TimedOut, "timed_out"),
];

fn loss_name(k: LossKind) -> &'static str {
    LOSSES
        .iter()
        .find(|(l, _)| *l == k)
        .map_or("reset", |(_, n)| n)
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "null".into(), |n| n.to_string())
}

fn us(d: Option<core::time::Duration>) -> String {
    opt(d.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)))
}

fn result_fields(out: &mut String, r: &OpResult) {
    let (name, after) = match r {
        OpResult::Ok => ("ok", None),
        OpResult::ServerError => ("server_error", None),
        OpResult::ConnectionLost => ("connection_lost", None),
        OpResult::WrongServer => ("wrong_server", None),
        OpResult::Pushback { retry_after } => ("pushback", Some(us(*retry_after))),
        _ => ("connection_lost", None),
    };
    let _ = write!(out, ",\"result\":\"{name}\"");
    if let Some(a) = after {
        let _ = write!(out, ",\"retry_after_us\":{a}");
    }
}

/// The record of an input fed at `t` (one JSON object, no newline).
pub fn input_record(t: Instant, input: &Input) -> String {
    let mut s = format!("{{\"t\":{},\"in\":", t.as_micros());
    let _ = match input {
        Input::Submit { op, options } => write!(
            s,
            "\"submit\",\"op\":{},\"options\":{{\"retryable\":{},\"deadline_us\":{},\"max_attempts\":{},\"command_timeout_us\":{}}}",
            op.get(),
            match options.retryable {
                None => "null",
                Some(true) => "true",
                Some(false) => "false",
            },
            us(options.deadline),
            opt(options.max_attempts.map(u64::from)),
            us(options.command_timeout)
        ),
        Input::Cancel { op } => write!(s, "\"cancel\",\"op\":{}", op.get()),
        Input::Close => write!(s, "\"close\""),
        Input::Revive => write!(s, "\"revive\""),
        Input::Connected { conn, role } => write!(
            s,
            "\"connected\",\"conn\":{},\"role\":\"{}\"",
            conn.get(),
            role.name()
        ),
        Input::ConnectFailed { conn, why } => write!(
            s,
            "\"connect_failed\",\"conn\":{},\"why\":\"{}\"",
            conn.get(),
            why.name()
        ),
        Input::ConnectionLost { conn, kind } => write!(
            s,
            "\"connection_lost\",\"conn\":{},\"kind\":\"{}\"",
            conn.get(),
            loss_name(*kind)
        ),
        Input::OpResult { op, conn, result } => {
            let _ = write!(
                s,
                "\"op_result\",\"op\":{},\"conn\":{}",
                op.get(),
                conn.get()
            );
            result_fields(&mut s, result);
            Ok(())
        }
        Input::Heartbeat { conn, result } => {
            let _ = write!(s, "\"heartbeat\",\"conn\":{}", conn.get());
            result_fields(&mut s, result);
            Ok(())
        }
        Input::Timeout => write!(s, "\"timeout\""),
    };
    s.push('}');
    s
}

fn event_fields(s: &mut String, e: &Event) {
    let _ = write!(s, "\"event\":\"{}\"", e.name());
    let _ = match *e {
        Event::Connected { conn, endpoint } | Event::Reconnected { conn, endpoint } => {
            write!(s, ",\"conn\":{},\"endpoint\":{endpoint}", conn.get())
        }
        Event::Disconnected {
            conn,
            endpoint,
            reason,
        } => write!(
            s,
            ",\"conn\":{},\"endpoint\":{endpoint},\"reason\":\"{}\"",
            conn.get(),
            reason.name()
        ),
        Event::Reconnecting {
            attempt,
            delay,
            endpoint,
            error,
        } => write!(
            s,
            ",\"attempt\":{attempt},\"delay_us\":{},\"endpoint\":{endpoint},\"error\":{}",
            us(Some(delay)),
            error.map_or_else(|| "null".into(), |e| format!("\"{}\"", e.name()))
        ),
        Event::ReconnectFailed { attempts, error } => write!(
            s,
            ",\"attempts\":{attempts},\"error\":{}",
            error.map_or_else(|| "null".into(), |e| format!("\"{}\"", e.name()))
        ),
        Event::BufferOverflow { failed } => write!(s, ",\"failed\":{failed}"),
        Event::Unresponsive { conn } => write!(s, ",\"conn\":{}", conn.get()),
        _ => Ok(()),
    };
}

/// The record of an output produced at `t` (one JSON object, no newline).
/// The payload is not recorded.
pub fn output_record<P>(t: Instant, output: &Output<P>) -> String {
    let mut s = format!("{{\"t\":{},\"out\":", t.as_micros());
    let _ = match output {
        Output::Connect {
            conn,
            endpoint,
            timeout,
        } => write!(
            s,
            "\"connect\",\"conn\":{},\"endpoint\":{endpoint},\"timeout_us\":{}",
            conn.get(),
            us(*timeout)
        ),
        Output::Close { conn } => write!(s, "\"close\",\"conn\":{}", conn.get()),
        Output::Dispatch {
            op,
            conn,
            endpoint,
            time_left,
        } => write!(
            s,
            "\"dispatch\",\"op\":{},\"conn\":{},\"endpoint\":{endpoint},\"time_left_us\":{}",
            op.get(),
            conn.get(),
            us(*time_left)
        ),
        Output::Heartbeat { conn } => write!(s, "\"heartbeat\",\"conn\":{}", conn.get()),
        Output::Complete(c) => match &c.result {
            Ok(d) => write!(
                s,
                "\"complete\",\"op\":{},\"ok\":true,\"conn\":{},\"endpoint\":{},\"attempts\":{}",
                c.id.get(),
                d.conn.get(),
                d.endpoint,
                d.attempts
            ),
            Err(e) => write!(
                s,
                "\"complete\",\"op\":{},\"ok\":false,\"kind\":\"{}\",\"maybe_executed\":{},\"attempts\":{},\"connect_error\":{}",
                c.id.get(),
                e.kind().name(),
                e.maybe_executed(),
                e.attempts(),
                e.connect_error()
                    .map_or_else(|| "null".into(), |f| format!("\"{}\"", f.name()))
            ),
        },
        Output::Event(e) => {
            s.push_str("\"event\",");
            event_fields(&mut s, e);
            Ok(())
        }
    };
    s.push('}');
    s
}

/// The header of a trace: everything a fresh machine needs.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Header {
    /// The format version ([`TRACE_VERSION`]).
    pub version: u64,
    /// The version of `redial-core` that recorded it.
    pub core_version: String,
    /// The jitter seed.
    pub seed: u64,
    /// The machine's clock when it was built.
    pub t0: Instant,
    /// The endpoint count.
    pub endpoints: usize,
    /// Records dropped before the first one kept (a bounded dump that
    /// overflowed; 0 for a whole run).
    pub dropped: u64,
    /// The config, as `[config]` keys.
    pub config: ConfigKeys,
}

/// The header record (one JSON object, no newline).
pub fn header_record(seed: u64, t0: Instant, config: &crate::core::Config, dropped: u64) -> String {
    let mut s = format!(
        "{{\"redial_trace\":{TRACE_VERSION},\"core_version\":\"{}\",\"seed\":{seed},\"t0_us\":{},\"endpoints\":{},\"dropped\":{dropped},\"config\":{{",
        crate::core::VERSION,
        t0.as_micros(),
        config.endpoints()
    );
    for (i, (k, v)) in ConfigKeys::from_config(config).entries().iter().enumerate() {
        let _ = write!(s, "{}\"{k}\":{v}", if i == 0 { "" } else { "," });
    }
    s.push_str("}}");
    s
}

/// Why a trace does not replay: the line (1-based) of the first record
/// that differs or cannot be read, and what was expected there and what
/// came instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// 1-based line of the trace (one past the last line: the trace ended
    /// too soon).
    pub line: usize,
    /// What the trace holds there (or what was wrong with it).
    pub expected: String,
    /// What the machine produced instead (empty for an unreadable record).
    pub got: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.got.is_empty() {
            write!(f, "line {}: {}", self.line, self.expected)
        } else {
            write!(
                f,
                "line {}: the trace has\n  {}\nthe machine produced\n  {}",
                self.line, self.expected, self.got
            )
        }
    }
}

impl std::error::Error for Mismatch {}

/// One record of a replayed trace (an input or an output: there is no
/// third kind).
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// An input, fed at its time.
    In(Instant, Input),
    /// An output the machine produced (and the trace held).
    Out(Instant, Output<()>),
}

/// A trace that replayed exactly.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Replay {
    /// Its header.
    pub header: Header,
    /// Every record, in order.
    pub records: Vec<Record>,
    /// The recorded core version differs from this one (the replay matched
    /// all the same).
    pub other_version: bool,
}

fn unreadable(line: usize, what: impl Into<String>) -> Mismatch {
    Mismatch {
        line,
        expected: what.into(),
        got: String::new(),
    }
}

fn field_u64(v: &Value, key: &str, line: usize) -> Result<u64, Mismatch> {
    v.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| unreadable(line, format!("`{key}` must be a non-negative integer")))
}

fn field_opt_us(
    v: &Value,
    key: &str,
    line: usize,
) -> Result<Option<core::time::Duration>, Mismatch> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_u64()
            .map(|n| Some(core::time::Duration::from_micros(n)))
            .ok_or_else(|| unreadable(line, format!("`{key}` must be microseconds or null"))),
    }
}

fn field_str<'a>(v: &'a Value, key: &str, line: usize) -> Result<&'a str, Mismatch> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| unreadable(line, format!("`{key}` must be a string")))
}

fn op_result(v: &Value, line: usize) -> Result<OpResult, Mismatch> {
    Ok(match field_str(v, "result", line)? {
        "ok" => OpResult::Ok,
        "server_error" => OpResult::ServerError,
        "connection_lost" => OpResult::ConnectionLost,
        "wrong_server" => OpResult::WrongServer,
        "pushback" => OpResult::Pushback {
            retry_after: field_opt_us(v, "retry_after_us", line)?,
        },
        other => return Err(unreadable(line, format!("unknown result `{other}`"))),
    })
}

/// Reads the header record (the trace's first line).
pub fn parse_header(text: &str) -> Result<Header, Mismatch> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| unreadable(1, format!("not a trace header (JSON: {e})")))?;
    let version = v
        .get("redial_trace")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            unreadable(
                1,
                "not a redial trace: the header has no `redial_trace` version",
            )
        })?;
    if version != TRACE_VERSION {
        return Err(unreadable(
            1,
            format!("trace format version {version}: this build reads version {TRACE_VERSION}"),
        ));
    }
    let core_version = field_str(&v, "core_version", 1)?.to_string();
    let seed = field_u64(&v, "seed", 1)?;
    let t0 = Instant::from_micros(field_u64(&v, "t0_us", 1)?);
    let endpoints = usize::try_from(field_u64(&v, "endpoints", 1)?).unwrap_or(usize::MAX);
    let dropped = field_u64(&v, "dropped", 1)?;
    let mut config = ConfigKeys::new();
    let table = v
        .get("config")
        .and_then(Value::as_object)
        .ok_or_else(|| unreadable(1, "the header's `config` must be an object"))?;
    for (k, x) in table {
        let value = match x {
            Value::Bool(b) => ConfigValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => ConfigValue::Int(i),
                None => ConfigValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => ConfigValue::Text(s.clone()),
            _ => {
                return Err(unreadable(
                    1,
                    format!("config key `{k}`: unsupported value {x}"),
                ));
            }
        };
        config
            .set(k, &value)
            .map_err(|e| unreadable(1, format!("config: {e}")))?;
    }
    Ok(Header {
        version,
        core_version,
        seed,
        t0,
        endpoints,
        dropped,
        config,
    })
}

fn parse_input(v: &Value, kind: &str, line: usize) -> Result<Input, Mismatch> {
    let conn = || field_u64(v, "conn", line).map(ConnId::from_raw);
    let op = || field_u64(v, "op", line).map(OpId::from_raw);
    Ok(match kind {
        "submit" => {
            let o = v
                .get("options")
                .filter(|o| o.is_object())
                .ok_or_else(|| unreadable(line, "`options` must be an object"))?;
            let mut options = OpOptions::new();
            options.retryable = match o.get("retryable") {
                Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                _ => {
                    return Err(unreadable(
                        line,
                        "`retryable` must be true, false or null (the config decides)",
                    ));
                }
            };
            options.deadline = field_opt_us(o, "deadline_us", line)?;
            options.command_timeout = field_opt_us(o, "command_timeout_us", line)?;
            options.max_attempts = match o.get("max_attempts") {
                None | Some(Value::Null) => None,
                Some(x) => Some(
                    x.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| unreadable(line, "`max_attempts` must be a u32 or null"))?,
                ),
            };
            Input::Submit { op: op()?, options }
        }
        "cancel" => Input::Cancel { op: op()? },
        "close" => Input::Close,
        "revive" => Input::Revive,
        "timeout" => Input::Timeout,
        "connected" => {
            let name = field_str(v, "role", line)?;
            let role = ROLES
                .into_iter()
                .find(|r| r.name() == name)
                .ok_or_else(|| unreadable(line, format!("unknown role `{name}`")))?;
            Input::Connected {
                conn: conn()?,
                role,
            }
        }
        "connect_failed" => {
            let name = field_str(v, "why", line)?;
            let why = FAILURES
                .into_iter()
                .find(|r| r.name() == name)
                .ok_or_else(|| unreadable(line, format!("unknown connect failure `{name}`")))?;
            Input::ConnectFailed { conn: conn()?, why }
        }
        "connection_lost" => {
            let name = field_str(v, "kind", line)?;
            let kind = LOSSES
                .iter()
                .find(|(_, n)| *n == name)
                .map(|(k, _)| *k)
                .ok_or_else(|| unreadable(line, format!("unknown loss kind `{name}`")))?;
            Input::ConnectionLost {
                conn: conn()?,
                kind,
            }
        }
        "op_result" => Input::OpResult {
            op: op()?,
            conn: conn()?,
            result: op_result(v, line)?,
        },
        "heartbeat" => Input::Heartbeat {
            conn: conn()?,
            result: op_result(v, line)?,
        },
        other => return Err(unreadable(line, format!("unknown input `{other}`"))),
    })
}

/// Replays a trace: builds `Machine::new(config, seed, t0)` from its
/// header, feeds every recorded input at its time, and checks that every
/// output the machine produces is the next record, byte for byte. Returns
/// the records replayed, or the first that differs (an edited, truncated
/// or foreign trace), never panicking on any input.
pub fn replay(text: &str) -> Result<Replay, Mismatch> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let Some((_, first)) = lines.next() else {
        return Err(unreadable(1, "empty file: not a trace"));
    };
    let header = parse_header(first)?;
    if header.dropped > 0 {
        return Err(unreadable(
            1,
            format!(
                "a bounded dump that dropped the run's first {} records: the machine's state at its first record is unknown, so it cannot be replayed exactly (derive a timeline from it instead)",
                header.dropped
            ),
        ));
    }
    let config = header
        .config
        .build(None, header.endpoints.max(1))
        .map_err(|e| unreadable(1, format!("config: {e}")))?;
    // A recorder writes every key of the config explicitly: a key missing
    // (or one that does not read back) would silently take the default
    // preset's value, and the replay would differ later, far from the cause.
    let canonical = ConfigKeys::from_config(&config).entries();
    let given = header.config.entries();
    if let Some((k, v)) = canonical.iter().find(|e| !given.contains(e)) {
        let found = given.iter().find(|(g, _)| g == k).map_or_else(
            || "it is missing".to_string(),
            |(_, g)| format!("it is {g}"),
        );
        return Err(unreadable(
            1,
            format!(
                "config: `{k}` must be {v} for this config (a recorder writes every key): {found}"
            ),
        ));
    }
    if let Some((k, _)) = given.iter().find(|e| !canonical.contains(e)) {
        return Err(unreadable(
            1,
            format!("config: `{k}` does not apply to this config (a recorder never writes it)"),
        ));
    }
    let other_version = header.core_version != crate::core::VERSION;
    let note = |mut m: Mismatch| {
        if other_version {
            m.expected.push_str(&format!(
                " (recorded by redial-core {}, replayed by {})",
                header.core_version,
                crate::core::VERSION
            ));
        }
        m
    };
    let mut m: Machine<()> = Machine::new(config, header.seed, header.t0);
    let mut pending: std::collections::VecDeque<Output<()>> =
        std::iter::from_fn(|| m.poll_output()).collect();
    let mut records = Vec::new();
    let mut last_line = 1;
    for (n, text) in lines {
        last_line = n;
        let text = text.trim_end_matches('\r');
        if text.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(text)
            .map_err(|e| note(unreadable(n, format!("not a JSON record: {e}"))))?;
        let t = Instant::from_micros(field_u64(&v, "t", n).map_err(note)?);
        if let Some(kind) = v.get("in").and_then(Value::as_str) {
            if let Some(out) = pending.pop_front() {
                return Err(note(Mismatch {
                    line: n,
                    expected: text.to_string(),
                    got: output_record(m.now(), &out),
                }));
            }
            let input = parse_input(&v, kind, n).map_err(note)?;
            if t < m.now() {
                return Err(note(unreadable(
                    n,
                    format!(
                        "time runs backwards: {} µs after {} µs",
                        t.as_micros(),
                        m.now().as_micros()
                    ),
                )));
            }
            let id = input.feed(&mut m, t);
            if let (Some(id), Input::Submit { op, .. }) = (id, input) {
                if id != op {
                    return Err(note(Mismatch {
                        line: n,
                        expected: text.to_string(),
                        got: format!("the submit got op id {}", id.get()),
                    }));
                }
            }
            records.push(Record::In(t, input));
            pending.extend(std::iter::from_fn(|| m.poll_output()));
        } else if v.get("out").and_then(Value::as_str).is_some() {
            let Some(out) = pending.pop_front() else {
                return Err(note(Mismatch {
                    line: n,
                    expected: text.to_string(),
                    got: "no output".into(),
                }));
            };
            let got = output_record(m.now(), &out);
            if got != text {
                return Err(note(Mismatch {
                    line: n,
                    expected: text.to_string(),
                    got,
                }));
            }
            records.push(Record::Out(m.now(), out));
        } else {
            return Err(note(unreadable(n, "a record needs `in` or `out`")));
        }
    }
    if let Some(out) = pending.pop_front() {
        return Err(note(Mismatch {
            line: last_line + 1,
            expected: "the end of the trace (truncated?)".into(),
            got: output_record(m.now(), &out),
        }));
    }
    Ok(Replay {
        header,
        records,
        other_version,
    })
}
