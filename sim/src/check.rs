//! On-the-fly invariant checks (DESIGN.md, "Invariants"), from outside the
//! machine: what was submitted, what came out, what the machine reports.

use std::collections::BTreeMap;

use redial_core::{Config, ConnId, Event, Instant, Machine, OpId, OpOptions, Output, State};

struct OpState {
    seq: u64,
    retryable: bool,
    max_attempts: u32,
    dispatches: u32,
    redirects: u32,
}

/// Watches one machine; collects violations as readable strings.
pub(crate) struct Checker {
    cfg: Config,
    ops: BTreeMap<OpId, OpState>,
    current: Option<ConnId>,
    terminal: bool,
    expect_connect_at: Option<Instant>,
    must_complete: Vec<OpId>,
    last_first_dispatch: Option<u64>,
    violations: Vec<String>,
}

impl Checker {
    pub(crate) fn new(cfg: &Config) -> Self {
        Checker {
            cfg: cfg.clone(),
            ops: BTreeMap::new(),
            current: None,
            terminal: false,
            expect_connect_at: None,
            must_complete: Vec::new(),
            last_first_dispatch: None,
            violations: Vec::new(),
        }
    }

    fn violate(&mut self, now: Instant, n: u8, what: String) {
        self.violations
            .push(format!("t={now} invariant {n}: {what}"));
    }

    pub(crate) fn on_submit(&mut self, id: OpId, seq: u64, opts: &OpOptions, before: State) {
        let max_attempts = if opts.retryable {
            opts.max_attempts
                .unwrap_or(self.cfg.max_op_attempts())
                .max(1)
        } else {
            1
        };
        self.ops.insert(
            id,
            OpState {
                seq,
                retryable: opts.retryable,
                max_attempts,
                dispatches: 0,
                redirects: 0,
            },
        );
        if before.is_terminal() {
            self.must_complete.push(id);
        }
    }

    /// The simulator answered this op "wrong server" (it did not run).
    pub(crate) fn on_wrong_server(&mut self, op: OpId) {
        if let Some(o) = self.ops.get_mut(&op) {
            o.redirects += 1;
        }
    }

    pub(crate) fn on_output<P>(&mut self, now: Instant, out: &Output<P>) {
        match out {
            Output::Connect { .. } => {
                if self.terminal {
                    self.violate(now, 6, "connect started after a terminal state".into());
                }
                if let Some(at) = self.expect_connect_at.take() {
                    if at != now {
                        self.violate(
                            now,
                            7,
                            format!("reconnect attempt started at {now}, scheduled for {at}"),
                        );
                    }
                }
            }
            Output::Dispatch { op, conn, .. } => {
                if self.current != Some(*conn) {
                    self.violate(
                        now,
                        2,
                        format!("{op} dispatched on {conn}, which is not the current connection"),
                    );
                }
                let Some(o) = self.ops.get_mut(op) else {
                    self.violate(now, 1, format!("{op} dispatched but not outstanding"));
                    return;
                };
                o.dispatches += 1;
                let executions = o.dispatches - o.redirects;
                let (first, seq) = (o.dispatches == 1, o.seq);
                let limit = if o.retryable { o.max_attempts } else { 1 };
                if executions > limit {
                    self.violate(
                        now,
                        4,
                        format!("{op} sent {executions} times, limit {limit}"),
                    );
                }
                if first {
                    if self.last_first_dispatch.is_some_and(|l| l > seq) {
                        self.violate(now, 5, format!("{op} dispatched out of submission order"));
                    }
                    self.last_first_dispatch = Some(seq);
                }
            }
            Output::Complete(c) => {
                if self.ops.remove(&c.id).is_none() {
                    self.violate(
                        now,
                        1,
                        format!("{} completed but was not outstanding (twice?)", c.id),
                    );
                }
                self.must_complete.retain(|id| *id != c.id);
            }
            Output::Event(e) => match e {
                Event::Connected { conn, .. } | Event::Reconnected { conn, .. } => {
                    self.current = Some(*conn)
                }
                Event::Disconnected { .. } => self.current = None,
                Event::ReconnectFailed { .. } | Event::Closed => {
                    self.terminal = true;
                    self.expect_connect_at = None;
                }
                Event::Reconnecting { attempt, delay, .. } => {
                    let (lo, hi) = self.cfg.reconnect_delay_bounds(*attempt);
                    if *delay < lo || *delay > hi {
                        self.violate(
                            now,
                            7,
                            format!(
                                "reconnect delay {delay:?} for attempt {attempt} outside [{lo:?}, {hi:?}]"
                            ),
                        );
                    }
                    self.expect_connect_at = Some(now + *delay);
                }
                _ => {}
            },
            Output::Close { .. } | Output::Heartbeat { .. } => {}
        }
    }

    pub(crate) fn after_step<P>(&mut self, now: Instant, m: &Machine<P>) {
        self.last_first_dispatch = None;
        if let Some(bound) = self.cfg.buffer().bound() {
            if m.buffered() > bound {
                self.violate(
                    now,
                    3,
                    format!("buffer holds {} ops, bound {bound}", m.buffered()),
                );
            }
        }
        if !self.must_complete.is_empty() {
            let ids = std::mem::take(&mut self.must_complete);
            for id in ids {
                self.violate(
                    now,
                    6,
                    format!("{id} submitted after a terminal state did not fail at once"),
                );
            }
        }
        if m.outstanding() != self.ops.len() {
            self.violate(
                now,
                1,
                format!(
                    "machine holds {} outstanding ops, {} submitted without an outcome",
                    m.outstanding(),
                    self.ops.len()
                ),
            );
        }
    }

    pub(crate) fn violations(&self) -> &[String] {
        &self.violations
    }
}
