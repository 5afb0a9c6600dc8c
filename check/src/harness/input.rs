//! What random bytes decode into: a configuration and a sequence of
//! steps. Small integers are mapped onto durations in milliseconds so that
//! timers actually fire within a few dozen steps.

use arbitrary::{Arbitrary, Unstructured};
use redial_core::{
    Backoff, BufferPolicy, ConfigBuilder, Duration, Heartbeat, OpOptions, RetryBudget, Tries,
};

/// Mirrors a fieldless core enum with a local `Arbitrary` one, so that the
/// byte format of the committed corpus is this crate's own: it does not
/// shift when a core enum gains or reorders a variant (the core's optional
/// `arbitrary` feature would tie the corpus to the core's layout).
macro_rules! mirror {
    ($(#[$doc:meta])* $name:ident => $core:ident { $($v:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum $name { $($v),+ }
        impl From<$name> for redial_core::$core {
            fn from(x: $name) -> Self {
                match x { $($name::$v => redial_core::$core::$v),+ }
            }
        }
    };
}

mirror!(/// [`redial_core::Preset`].
    Preset => Preset { MongodbLegacy, Mongoose, FailFast, Recommended, IoredisV5, IoredisV6, Lettuce, RedisRsConnectionManager, FredDefault, FredReconnectPolicy, MongodbNode });
mirror!(/// [`redial_core::Jitter`].
    Jitter => Jitter { None, Full, Equal, Decorrelated });
mirror!(/// [`redial_core::OverflowPolicy`].
    OverflowPolicy => OverflowPolicy { FailAll, RejectNew, DropOldest });
mirror!(/// [`redial_core::InitialConnect`].
    InitialConnect => InitialConnect { Retry, FailFast });
mirror!(/// [`redial_core::LossKind`].
    LossKind => LossKind { Closed, Reset, TimedOut });
mirror!(/// [`redial_core::OpResult`].
    OpResult => OpResult { Ok, ServerError, ConnectionLost, WrongServer });
mirror!(/// [`redial_core::ConnectFailure`].
    ConnectFailure => ConnectFailure { Refused, TimedOut, Unavailable, Rejected, Panicked, NotPrimary });
mirror!(/// [`redial_core::Role`].
    Role => Role { Primary, Secondary, Unknown });

/// Most steps one input may carry (keeps executions fast).
pub const MAX_STEPS: usize = 200;

/// A duration of `n` milliseconds.
pub fn ms(n: u16) -> Duration {
    Duration::from_millis(u64::from(n))
}

/// A float that is usually small and sensible, sometimes anything at all
/// (NaN, infinities, negatives) so that `build()` sees garbage too.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum FuzzFloat {
    /// `n / 4`.
    Quarters(u8),
    /// Any bit pattern.
    Raw(f64),
}

impl FuzzFloat {
    /// The value.
    pub fn get(self) -> f64 {
        match self {
            FuzzFloat::Quarters(n) => f64::from(n) / 4.0,
            FuzzFloat::Raw(f) => f,
        }
    }
}

/// The buffer policy, including the legacy `bufferMaxEntries` spelling
/// (whose values below -1 are refused by `build()`).
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum FuzzBuffer {
    /// `bufferMaxEntries = -1`.
    Unbounded,
    /// `bufferMaxEntries = 0`.
    Disabled,
    /// Up to `max` ops (0 is refused by `build()`).
    Bounded(u8, OverflowPolicy),
    /// The legacy knob, any small value.
    MaxEntries(i8),
}

/// The backoff policy; every duration in milliseconds.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum FuzzBackoff {
    /// `reconnectInterval`.
    Constant(u16),
    /// initial, step, max.
    Linear(u16, u16, u16),
    /// initial, multiplier, max.
    Exponential(u16, FuzzFloat, u16),
}

/// Every knob of [`ConfigBuilder`], from small values. Many combinations
/// are invalid: `build()` must refuse them with an error, never panic.
#[derive(Arbitrary, Clone, Debug)]
pub struct FuzzConfig {
    /// Starting point.
    pub preset: Preset,
    /// `autoReconnect`.
    pub auto_reconnect: bool,
    /// Buffer policy.
    pub buffer: FuzzBuffer,
    /// `None`: unlimited.
    pub tries: Option<u8>,
    /// Backoff policy.
    pub backoff: FuzzBackoff,
    /// Jitter.
    pub jitter: Jitter,
    /// First-connect behaviour.
    pub initial_connect: InitialConnect,
    /// Milliseconds (0 is refused).
    pub connect_timeout: Option<u16>,
    /// Milliseconds (0 is refused).
    pub socket_timeout: Option<u16>,
    /// Interval and timeout in milliseconds.
    pub heartbeat: Option<(u16, u16)>,
    /// Milliseconds (0 is refused).
    pub response_timeout: Option<u16>,
    /// Milliseconds (0 is refused).
    pub buffer_timeout: Option<u16>,
    /// Milliseconds (0 is refused).
    pub op_deadline: Option<u16>,
    /// Attempts for retryable ops (0 is refused).
    pub max_op_attempts: u8,
    /// Tokens and refund ratio.
    pub retry_budget: Option<(u8, FuzzFloat)>,
    /// Size of the seed list (0 is refused).
    pub endpoints: u8,
    /// Jitter PRNG seed.
    pub seed: u64,
    /// Refuse connections reported as a secondary.
    pub require_primary: bool,
    /// `None`: terminal give-up; else a cool-down in milliseconds (0 is
    /// refused).
    pub cool_down: Option<u16>,
    /// Quick reconnects: probe pace and how long it lasts, in milliseconds
    /// (0 is refused); `None` turns them off, whatever the preset.
    pub quick_reconnect: Option<(u16, u16)>,
    /// Milliseconds (0 is refused).
    pub command_timeout: Option<u16>,
    /// Blind resend of ops lost in flight, unless the op says otherwise.
    pub retry_lost: bool,
    /// Fail the buffer after this many failed reconnect attempts (`n % 8`).
    pub fail_buffered_after: Option<u8>,
    /// Extra jitter in milliseconds (0 is refused).
    pub extra_jitter: Option<u16>,
    /// Keep buffered ops whose deadline cannot be met until the deadline.
    pub keep_unreachable: bool,
}

impl FuzzConfig {
    /// The builder these values describe.
    pub fn builder(&self) -> ConfigBuilder {
        let b = redial_core::Preset::from(self.preset)
            .builder()
            .auto_reconnect(self.auto_reconnect);
        let b = match self.buffer {
            FuzzBuffer::Unbounded => b.buffer(BufferPolicy::Unbounded),
            FuzzBuffer::Disabled => b.buffer(BufferPolicy::Disabled),
            FuzzBuffer::Bounded(max, overflow) => b.buffer(BufferPolicy::Bounded {
                max: usize::from(max),
                overflow: overflow.into(),
            }),
            FuzzBuffer::MaxEntries(n) => b.buffer_max_entries(i64::from(n)),
        };
        let b = b.reconnect_tries(match self.tries {
            Some(n) => Tries::Limited(u32::from(n)),
            None => Tries::Unlimited,
        });
        let b = match self.backoff {
            FuzzBackoff::Constant(d) => b.reconnect_interval(ms(d)),
            FuzzBackoff::Linear(initial, step, max) => b.backoff(Backoff::Linear {
                initial: ms(initial),
                step: ms(step),
                max: ms(max),
            }),
            FuzzBackoff::Exponential(initial, multiplier, max) => b.backoff(Backoff::Exponential {
                initial: ms(initial),
                multiplier: multiplier.get(),
                max: ms(max),
            }),
        };
        b.jitter(self.jitter.into())
            .initial_connect(self.initial_connect.into())
            .connect_timeout(self.connect_timeout.map(ms))
            .socket_timeout(self.socket_timeout.map(ms))
            .heartbeat(self.heartbeat.map(|(interval, timeout)| Heartbeat {
                interval: ms(interval),
                timeout: ms(timeout),
            }))
            .response_timeout(self.response_timeout.map(ms))
            .buffer_timeout(self.buffer_timeout.map(ms))
            .op_deadline(self.op_deadline.map(ms))
            .max_op_attempts(u32::from(self.max_op_attempts))
            .retry_budget(self.retry_budget.map(|(max_tokens, ratio)| RetryBudget {
                max_tokens: u32::from(max_tokens),
                token_ratio: ratio.get(),
            }))
            .endpoints(usize::from(self.endpoints))
            .require_primary(self.require_primary)
            .give_up(match self.cool_down {
                Some(d) => redial_core::GiveUp::CoolDown(ms(d)),
                None => redial_core::GiveUp::Terminal,
            })
            .command_timeout(self.command_timeout.map(ms))
            .retry_lost(self.retry_lost)
            .fail_buffered_after(self.fail_buffered_after.map(|n| u32::from(n % 8)))
            .extra_jitter(self.extra_jitter.map(ms))
            .fail_unreachable_deadlines(!self.keep_unreachable)
            .quick_reconnect(self.quick_reconnect.map(|(probe, probe_for)| {
                redial_core::QuickReconnect {
                    probe: ms(probe),
                    probe_for: ms(probe_for),
                }
            }))
    }
}

impl FuzzConfig {
    /// Makes the values valid, keeping their shape: durations and counts
    /// that must be positive become at least 1, caps at least their start,
    /// multipliers and ratios sensible. Most random runs are decoded this
    /// way (a configuration `build()` refuses ends the run at once, so
    /// raw values alone would spend most runs there).
    pub fn sanitize(&mut self) {
        fn pos(d: &mut Option<u16>) {
            if *d == Some(0) {
                *d = Some(1);
            }
        }
        self.buffer = match self.buffer {
            FuzzBuffer::Bounded(0, p) => FuzzBuffer::Bounded(1, p),
            FuzzBuffer::MaxEntries(n) if n < -1 => FuzzBuffer::MaxEntries(-1),
            b => b,
        };
        self.backoff = match self.backoff {
            FuzzBackoff::Constant(d) => FuzzBackoff::Constant(d.max(1)),
            FuzzBackoff::Linear(initial, step, max) => {
                let initial = initial.max(1);
                FuzzBackoff::Linear(initial, step, max.max(initial))
            }
            FuzzBackoff::Exponential(initial, multiplier, max) => {
                let initial = initial.max(1);
                let quarters = match multiplier {
                    FuzzFloat::Quarters(q) => 4 + q % 13,
                    FuzzFloat::Raw(_) => 8,
                };
                FuzzBackoff::Exponential(initial, FuzzFloat::Quarters(quarters), max.max(initial))
            }
        };
        for d in [
            &mut self.connect_timeout,
            &mut self.socket_timeout,
            &mut self.response_timeout,
            &mut self.buffer_timeout,
            &mut self.op_deadline,
            &mut self.cool_down,
            &mut self.command_timeout,
            &mut self.extra_jitter,
        ] {
            pos(d);
        }
        if let Some((interval, timeout)) = self.heartbeat {
            self.heartbeat = Some((interval.max(1), timeout.max(1)));
        }
        if let Some((probe, probe_for)) = self.quick_reconnect {
            self.quick_reconnect = Some((probe.max(1), probe_for.max(1)));
        }
        self.max_op_attempts = self.max_op_attempts.max(1);
        self.endpoints = 1 + self.endpoints % 4;
        if let Some((tokens, ratio)) = self.retry_budget {
            let q = match ratio {
                FuzzFloat::Quarters(q) => 1 + q % 4,
                FuzzFloat::Raw(_) => 1,
            };
            self.retry_budget = Some((tokens.max(1), FuzzFloat::Quarters(q)));
        }
    }
}

/// Which connection (or connect attempt) an input is about.
#[derive(Clone, Copy, Debug)]
pub enum ConnRef {
    /// The most recent attempt the machine asked for.
    Latest,
    /// The attempt issued `n + 1` attempts before the latest (stale).
    Older(u8),
    /// An id the machine has not issued yet.
    Future(u8),
    /// Any number at all (0 included).
    Raw(u64),
}

impl<'a> Arbitrary<'a> for ConnRef {
    /// Mostly the latest attempt (where the action is), sometimes stale,
    /// future or raw ids.
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? {
            0..=199 => ConnRef::Latest,
            200..=224 => ConnRef::Older(u8::arbitrary(u)?),
            225..=244 => ConnRef::Future(u8::arbitrary(u)?),
            _ => ConnRef::Raw(u64::arbitrary(u)?),
        })
    }
}

/// Which op an input is about.
#[derive(Clone, Copy, Debug)]
pub enum OpRef {
    /// The `n`-th entry (modulo) of the ops the machine dispatched and did
    /// not complete yet, with the connection it was dispatched on.
    InFlight(u8),
    /// The op submitted `n + 1` submissions ago (maybe finished: stale).
    Submitted(u8),
    /// Any number at all.
    Raw(u64),
}

impl<'a> Arbitrary<'a> for OpRef {
    /// Mostly an op in flight, sometimes a recent submission, rarely a raw id.
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? {
            0..=169 => OpRef::InFlight(u8::arbitrary(u)?),
            170..=239 => OpRef::Submitted(u8::arbitrary(u)?),
            _ => OpRef::Raw(u64::arbitrary(u)?),
        })
    }
}

/// How the clock moves.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Jump {
    /// Call `handle_timeout` with the same `now`.
    Zero,
    /// Forward by milliseconds.
    Forward(u16),
    /// Backward by milliseconds (the machine must treat it as the latest time seen).
    Back(u16),
    /// Exactly to the next deadline the machine reports.
    NextTimer,
    /// Forward by minutes.
    Far(u8),
}

/// Options of a submitted op.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct FuzzOpts {
    /// Retryable? (`None`: the config's `retry_lost`.)
    pub retryable: Option<bool>,
    /// Per-op deadline in milliseconds (0 allowed: due at once).
    pub deadline: Option<u16>,
    /// Per-op attempt limit (0 allowed: treated as 1).
    pub max_attempts: Option<u8>,
    /// Per-op command timeout in milliseconds (0 is raised to 1).
    pub command_timeout: Option<u16>,
}

impl FuzzOpts {
    /// As [`OpOptions`].
    pub fn options(self) -> OpOptions {
        let mut o = OpOptions::new();
        o.retryable = self.retryable;
        o.deadline = self.deadline.map(ms);
        o.max_attempts = self.max_attempts.map(u32::from);
        o.command_timeout = self.command_timeout.map(|d| ms(d.max(1)));
        o
    }
}

/// One thing that happens to the machine.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Step {
    /// A connect attempt succeeded.
    Connected(ConnRef),
    /// A connect attempt failed.
    ConnectFailed(ConnRef),
    /// A connection (or attempt) was lost.
    Lost(ConnRef, LossKind),
    /// The application submits an op.
    Submit(FuzzOpts),
    /// An op answer on the connection it was dispatched on.
    Answer(OpRef, OpResult),
    /// An op answer on an arbitrary connection.
    AnswerOn(OpRef, ConnRef, OpResult),
    /// A heartbeat answer.
    HeartbeatOk(ConnRef),
    /// The application cancels an op.
    Cancel(OpRef),
    /// The application closes the client.
    Close,
    /// Time passes (or not, or backwards).
    Wait(Jump),
    /// A connect attempt failed for this reason (`rejected` and
    /// `panicked` are never retried).
    ConnectFailedWith(ConnRef, ConnectFailure),
    /// A heartbeat answer of any kind (an error, a lost or wrong-server
    /// answer included).
    Heartbeat(ConnRef, OpResult),
    /// Server pushback for an op ("not now"), with the server's hint in
    /// milliseconds when it gave one.
    Pushback(OpRef, Option<u16>),
    /// A connect attempt succeeded and the connector found this role.
    ConnectedAs(ConnRef, Role),
    /// The application revives the client.
    Revive,
}

impl<'a> Arbitrary<'a> for Step {
    /// Weighted by how much each input exercises: submits, answers and
    /// time most, `close` rarely (a closed client has little left to do).
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? {
            0..=19 => Step::Connected(ConnRef::arbitrary(u)?),
            20..=29 => Step::ConnectFailed(ConnRef::arbitrary(u)?),
            30..=37 => {
                Step::ConnectFailedWith(ConnRef::arbitrary(u)?, ConnectFailure::arbitrary(u)?)
            }
            38..=45 => Step::ConnectedAs(ConnRef::arbitrary(u)?, Role::arbitrary(u)?),
            46..=57 => Step::Lost(ConnRef::arbitrary(u)?, LossKind::arbitrary(u)?),
            58..=107 => Step::Submit(FuzzOpts::arbitrary(u)?),
            108..=152 => Step::Answer(OpRef::arbitrary(u)?, OpResult::arbitrary(u)?),
            153..=158 => Step::AnswerOn(
                OpRef::arbitrary(u)?,
                ConnRef::arbitrary(u)?,
                OpResult::arbitrary(u)?,
            ),
            159..=168 => Step::Pushback(OpRef::arbitrary(u)?, Option::<u16>::arbitrary(u)?),
            169..=174 => Step::HeartbeatOk(ConnRef::arbitrary(u)?),
            175..=180 => Step::Heartbeat(ConnRef::arbitrary(u)?, OpResult::arbitrary(u)?),
            181..=188 => Step::Cancel(OpRef::arbitrary(u)?),
            189..=248 => Step::Wait(Jump::arbitrary(u)?),
            249..=252 => Step::Revive,
            _ => Step::Close,
        })
    }
}

/// Decodes steps until the bytes run out (or [`MAX_STEPS`]): every byte
/// counts, unlike `Vec::arbitrary_take_rest`, which stops at the first even
/// "continue?" byte.
pub fn steps(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<Step>> {
    let mut steps = Vec::new();
    while !u.is_empty() && steps.len() < MAX_STEPS {
        steps.push(Step::arbitrary(u)?);
    }
    Ok(steps)
}
