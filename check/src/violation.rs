//! What the oracles report: a [`Violation`] of one [`ViolationKind`].

use core::fmt;

use redial_core::Instant;

macro_rules! kinds {
    ($($(#[$doc:meta])* $variant:ident = $inv:literal, $name:literal;)*) => {
        /// Every breach the oracles can report. The [`Checker`](crate::Checker)
        /// reports the numbered invariants of DESIGN.md; the
        /// [`Contract`](crate::reference::Contract) reports breaches of the
        /// configured policy around them ([`invariant`](Self::invariant) 0).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum ViolationKind {
            $($(#[$doc])* $variant,)*
        }

        impl ViolationKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [ViolationKind] = &[$(ViolationKind::$variant,)*];

            /// The DESIGN.md invariant it breaches (1–10), or 0 for the
            /// policy contract (see [`Contract`](crate::reference::Contract)).
            pub const fn invariant(self) -> u8 {
                match self {
                    $(ViolationKind::$variant => $inv,)*
                }
            }

            /// A stable snake_case name, as printed in transcripts.
            pub const fn name(self) -> &'static str {
                match self {
                    $(ViolationKind::$variant => $name,)*
                }
            }
        }
    };
}

kinds! {
    /// Invariant 1: an outcome for an id that was never submitted.
    UnknownOutcome = 1, "unknown_outcome";
    /// Invariant 1: a second outcome for an op.
    DoubleOutcome = 1, "double_outcome";
    /// Invariant 1: an op without an outcome at the end.
    MissingOutcome = 1, "missing_outcome";
    /// Invariant 1: an op id handed out twice.
    DuplicateId = 1, "duplicate_id";
    /// Invariant 1: the machine's outstanding/buffered/in-flight counts
    /// disagree with the ops still open.
    OutstandingMismatch = 1, "outstanding_mismatch";
    /// Invariant 1: an outcome reports a number of attempts other than the
    /// dispatches seen.
    AttemptsMismatch = 1, "attempts_mismatch";
    /// Invariant 1: `maybe_executed` contradicts the dispatches seen (never
    /// sent but "may have run", or sent and claimed not run).
    MaybeExecuted = 1, "maybe_executed";
    /// Invariant 2: a dispatch while not connected.
    DispatchNotConnected = 2, "dispatch_not_connected";
    /// Invariant 2: a dispatch on a connection that is not the current one.
    DispatchWrongConn = 2, "dispatch_wrong_conn";
    /// Invariant 2: a dispatch of an op that is not open.
    DispatchUnknownOp = 2, "dispatch_unknown_op";
    /// Invariant 2: a dispatch of an op already in flight.
    DoubleDispatch = 2, "double_dispatch";
    /// Invariant 2: an answer completed an op that was not in flight on the
    /// current connection.
    OkNotInFlight = 2, "ok_not_in_flight";
    /// Invariant 2: a heartbeat on a connection that is not the current one.
    HeartbeatNotCurrent = 2, "heartbeat_not_current";
    /// Invariant 2: the machine's connection differs from what its events said.
    ConnectionMismatch = 2, "connection_mismatch";
    /// Invariant 2: ops in flight differ from the dispatches seen, or are
    /// stranded on a dead connection.
    InFlightMismatch = 2, "in_flight_mismatch";
    /// Invariant 2: the current connection was closed without a
    /// `disconnected` or `closed` event.
    CloseWithoutEvent = 2, "close_without_event";
    /// Invariant 2: a connect or `connected` while a connection is up.
    ConnectWhileConnected = 2, "connect_while_connected";
    /// Invariant 2: connect ids that do not grow, or a `connected` for an
    /// attempt that was not pending.
    ConnectMismatch = 2, "connect_mismatch";
    /// Invariant 2: a connection event about a connection that is not the
    /// current one.
    EventWrongConn = 2, "event_wrong_conn";
    /// Invariant 2: a dispatch on a connection that answered "wrong server".
    DispatchWhileDraining = 2, "dispatch_while_draining";
    /// Invariant 3: more ops buffered than the bound.
    BufferBound = 3, "buffer_bound";
    /// Invariant 3 (and 5): ops left in the buffer while connected.
    BufferNotFlushed = 3, "buffer_not_flushed";
    /// Invariant 4: more dispatches than the op's attempt limit.
    TooManyDispatches = 4, "too_many_dispatches";
    /// Invariant 4: a non-retryable op lost in flight was kept for another
    /// dispatch.
    ResentAfterLoss = 4, "resent_after_loss";
    /// Invariant 5: ops dispatched out of submission order on one connection.
    DispatchOrder = 5, "dispatch_order";
    /// Invariant 6: a connect after a terminal state.
    ConnectAfterTerminal = 6, "connect_after_terminal";
    /// Invariant 6: a dispatch, heartbeat or event after a terminal state.
    OutputAfterTerminal = 6, "output_after_terminal";
    /// Invariant 6: an event after `closed`.
    EventAfterClosed = 6, "event_after_closed";
    /// Invariant 6: an op submitted in a terminal state was kept, or failed
    /// with the wrong kind; or a terminal kind out of place.
    TerminalOutcome = 6, "terminal_outcome";
    /// Invariant 6: a terminal state with ops outstanding.
    TerminalWithOutstanding = 6, "terminal_with_outstanding";
    /// Invariant 6: `reconnect_failed` or `closed` emitted twice.
    TerminalEventTwice = 6, "terminal_event_twice";
    /// Invariant 6: the machine's state disagrees with the terminal events.
    StateMismatch = 6, "state_mismatch";
    /// Invariant 6: a reconnect after a loss with auto-reconnect off.
    ReconnectDisabled = 6, "reconnect_disabled";
    /// Invariant 7: a reconnect delay outside the configured jitter bounds.
    ReconnectDelay = 7, "reconnect_delay";
    /// Invariant 7: a connect before its announced delay.
    ReconnectEarly = 7, "reconnect_early";
    /// Invariant 7: attempt numbering or the `reconnect_tries` budget broken,
    /// or a give-up (or retry) the policy does not allow.
    ReconnectAttempt = 7, "reconnect_attempt";
    /// Invariant 7: a reconnect to another endpoint than announced.
    ReconnectEndpoint = 7, "reconnect_endpoint";
    /// Invariant 7: a connect without a `reconnecting` event before it.
    ConnectWithoutReconnecting = 7, "connect_without_reconnecting";
    /// Invariant 7 (and 10): no timer armed for a due reconnect or deadline.
    TimerMissing = 7, "timer_missing";
    /// Invariant 7: a timer step left a due reconnect unstarted.
    ReconnectLate = 7, "reconnect_late";
    /// Invariant 10: a timer step left an op open past its deadline.
    DeadlineLate = 10, "deadline_late";
    /// Invariant 10: a timer step left an op buffered past its buffer
    /// timeout.
    BufferTimeoutLate = 10, "buffer_timeout_late";
    /// Invariant 10: an op was left waiting for a reconnect that comes at
    /// or after its deadline (it must fail at once with
    /// `deadline_unreachable`, not sleep until its deadline).
    DeadlineNotShortCircuited = 10, "deadline_not_short_circuited";
    /// Invariant 9: an op the server refused on every dispatch (wrong
    /// server, pushback) reported as "may have run".
    RefusedMayHaveRun = 9, "refused_may_have_run";
    /// Invariant 9: a wrong server left while ops were still in flight on
    /// it (their refusals or answers would be lost).
    DrainCutShort = 9, "drain_cut_short";
    /// Policy: an op submitted while connected was not dispatched at once.
    NotDispatched = 0, "not_dispatched";
    /// Policy: buffering is disabled but an op submitted while disconnected
    /// was kept (or failed with another kind than `no_connection`).
    NotFailedFast = 0, "not_failed_fast";
    /// Policy: `buffer_overflow` events and `buffer_overflow` outcomes
    /// disagree.
    OverflowCount = 0, "overflow_count";
    /// Policy: `deadline_exceeded` before the op's deadline.
    EarlyDeadline = 0, "early_deadline";
    /// Policy: an outcome the configuration cannot produce.
    UnexpectedOutcome = 0, "unexpected_outcome";
    /// Policy: an event the configuration cannot produce.
    UnexpectedEvent = 0, "unexpected_event";
    /// Policy: a connect to an endpoint that does not exist, or with
    /// another timeout than configured.
    ConnectTarget = 0, "connect_target";
    /// Policy: a connect attempt never got its `Output::Close` by the end.
    CloseMissing = 0, "close_missing";
    /// Policy: a paused connection (server pushback) got a dispatch during
    /// its wait, or a second probe while one was out.
    PushbackIgnored = 0, "pushback_ignored";
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One breach, as seen from outside the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// What was breached.
    pub kind: ViolationKind,
    /// The machine time at which it was observed.
    pub at: Instant,
    /// What happened, for humans.
    pub message: String,
}

impl Violation {
    /// The DESIGN.md invariant breached (0: the policy contract).
    pub fn invariant(&self) -> u8 {
        self.kind.invariant()
    }
}

impl fmt::Display for Violation {
    /// `[invariant 1 double_outcome at 0.001000s] op#5 completed twice`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[invariant {} {} at {}] {}",
            self.kind.invariant(),
            self.kind.name(),
            self.at,
            self.message
        )
    }
}

/// Where an oracle keeps what it found.
#[derive(Clone, Debug, Default)]
pub(crate) struct Found {
    pub(crate) list: Vec<Violation>,
}

impl Found {
    pub(crate) fn flag(&mut self, kind: ViolationKind, at: Instant, message: String) {
        self.list.push(Violation { kind, at, message });
    }
}

/// Panics with every violation in `list` (one per line) if there is any.
pub(crate) fn assert_none(list: &[Violation]) {
    if !list.is_empty() {
        let mut text = String::new();
        for v in list {
            text.push_str(&format!("\n  {v}"));
        }
        panic!("{} violation(s):{text}", list.len());
    }
}
