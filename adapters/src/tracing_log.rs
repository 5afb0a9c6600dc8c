//! `tracing` events for what the core decided (feature `tracing`): the
//! adapter logs the core's outputs and events as it carries them out, and
//! the few facts it feeds in (a submit, an op refused and put back); it
//! decides nothing here.
//!
//! Targets: `redial::op` for op lifecycles (`debug`; a buffer overflow is
//! `warn`), `redial::conn` for connection lifecycles (`info`; a lost or
//! unresponsive connection and a give-up are `warn`, a heartbeat sent is
//! `trace`). Every event is emitted inside the client's `redial.client`
//! span (field `client`: a number unique in the process).
//!
//! With no subscriber listening, each call site costs one check of
//! tracing's global "anything enabled?" flag; fields are formatted only for
//! a subscriber that wants the event.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{Level, Span, debug, info, info_span, trace, warn};

use crate::core::{ConnId, Event, Machine, OpId, OpOptions, OpResult, Output, Role, State};

/// The span of a new client: `redial.client`, with a process-unique id.
pub(crate) fn client_span() -> Span {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    info_span!(target: "redial", "redial.client", client = id)
}

/// Whether a subscriber wants `redial::op` debug events: guards the
/// lookups some of them need, so no subscriber costs no lookup.
pub(crate) fn op_enabled() -> bool {
    tracing::enabled!(target: "redial::op", Level::DEBUG)
}

/// An op was submitted (in state `before`); `retryable`: whether it is
/// resent after a loss in flight (its own choice or the config's).
pub(crate) fn submitted(op: OpId, options: &OpOptions, retryable: bool, before: State) {
    debug!(
        target: "redial::op",
        op = op.get(),
        retryable,
        max_attempts = ?options.max_attempts,
        deadline = ?options.deadline,
        command_timeout = ?options.command_timeout,
        state = before.name(),
        "op submitted"
    );
}

/// A new op waits in the buffer (`buffered`: the buffer's length).
pub(crate) fn buffered(op: OpId, buffered: usize, state: State) {
    debug!(
        target: "redial::op",
        op = op.get(),
        buffered,
        state = state.name(),
        "op buffered"
    );
}

/// An op dispatched on `conn` came back without an outcome and is back in
/// the buffer (its connection closed, or the server refused it: `result`).
pub(crate) fn requeued(op: OpId, conn: ConnId, result: Option<&OpResult>) {
    debug!(
        target: "redial::op",
        op = op.get(),
        conn = conn.get(),
        result = ?result,
        "op re-queued"
    );
}

/// One output of the core, about to be carried out. `connection`: `conn`
/// of a `Close` was a connection (not an attempt that never connected);
/// `words`: what the last connect attempt's error said; `role`: the role
/// the connector found for the connection just reported.
pub(crate) fn output<P>(
    machine: &Machine<P>,
    out: &Output<P>,
    connection: bool,
    words: Option<&str>,
    role: Role,
) {
    match out {
        Output::Connect {
            conn,
            endpoint,
            timeout,
        } => info!(
            target: "redial::conn",
            conn = conn.get(),
            endpoint,
            timeout = ?timeout,
            "connect attempt"
        ),
        Output::Close { conn } => match machine.last_connect_error() {
            Some(failure) if !connection && machine.state() != State::Closed => info!(
                target: "redial::conn",
                conn = conn.get(),
                failure = %failure,
                error = words,
                "connect failed"
            ),
            _ => debug!(target: "redial::conn", conn = conn.get(), "close"),
        },
        Output::Dispatch {
            op,
            conn,
            endpoint,
            time_left,
        } => {
            if !op_enabled() {
                return;
            }
            let attempt = machine.attempts(*op).unwrap_or(0);
            let what = if attempt > 1 {
                "op retried"
            } else {
                "op dispatched"
            };
            debug!(
                target: "redial::op",
                op = op.get(),
                conn = conn.get(),
                endpoint,
                attempt,
                time_left = ?time_left,
                "{what}"
            );
        }
        Output::Heartbeat { conn } => {
            trace!(target: "redial::conn", conn = conn.get(), "heartbeat");
        }
        Output::Complete(done) => match &done.result {
            Ok(d) => debug!(
                target: "redial::op",
                op = done.id.get(),
                kind = "ok",
                may_have_run = true,
                attempts = d.attempts,
                "op completed"
            ),
            Err(e) => debug!(
                target: "redial::op",
                op = done.id.get(),
                kind = %e.kind(),
                may_have_run = e.maybe_executed(),
                attempts = e.attempts(),
                "op completed"
            ),
        },
        Output::Event(e) => event(e, role),
    }
}

fn event(e: &Event, role: Role) {
    match e {
        Event::Connected { conn, endpoint } => info!(
            target: "redial::conn",
            conn = conn.get(),
            endpoint,
            role = %role,
            "connected"
        ),
        Event::Reconnected { conn, endpoint } => info!(
            target: "redial::conn",
            conn = conn.get(),
            endpoint,
            role = %role,
            "reconnected"
        ),
        Event::Disconnected {
            conn,
            endpoint,
            reason,
        } => warn!(
            target: "redial::conn",
            conn = conn.get(),
            endpoint,
            reason = ?reason,
            "connection lost"
        ),
        Event::Reconnecting {
            attempt,
            delay,
            endpoint,
            error,
        } => info!(
            target: "redial::conn",
            attempt,
            delay = ?delay,
            endpoint,
            error = ?error,
            "reconnecting"
        ),
        Event::ReconnectFailed { attempts, error } => warn!(
            target: "redial::conn",
            attempts,
            error = ?error,
            "gave up reconnecting"
        ),
        Event::Unresponsive { conn } => warn!(
            target: "redial::conn",
            conn = conn.get(),
            "connection unresponsive"
        ),
        Event::BufferOverflow { failed } => {
            warn!(target: "redial::op", failed, "buffer overflow");
        }
        Event::Closed => info!(target: "redial::conn", "client closed"),
        other => info!(target: "redial::conn", event = %other, "event"),
    }
}
