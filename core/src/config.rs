//! Configuration: every knob, four presets, and validation.
//!
//! Build a [`Config`] with [`Config::builder`] (which starts from
//! [`Preset::Recommended`]) or from a preset ([`Preset::builder`],
//! [`Config::mongodb_legacy`], …), override what you need, and call
//! [`ConfigBuilder::build`], which validates the whole set and returns a
//! [`ConfigError`] naming the field and the reason.
//!
//! Field names in errors are the snake_case names used by the simulator's
//! timeline files (`reconnect_interval`, `buffer_max_entries`, …).

use core::fmt;
use core::str::FromStr;
use core::time::Duration;

/// What happens to operations submitted while there is no connection.
///
/// The legacy MongoDB knob `bufferMaxEntries` maps onto this:
/// `-1` → [`Unbounded`](BufferPolicy::Unbounded), `0` →
/// [`Disabled`](BufferPolicy::Disabled), `N > 0` →
/// [`Bounded`](BufferPolicy::Bounded) with [`OverflowPolicy::FailAll`]
/// (see [`ConfigBuilder::buffer_max_entries`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferPolicy {
    /// Buffer every operation; memory is the only bound (`bufferMaxEntries = -1`).
    Unbounded,
    /// Never buffer: an operation submitted while disconnected fails at once
    /// with `no_connection` (`bufferMaxEntries = 0`).
    Disabled,
    /// Buffer up to `max` operations; what happens beyond is `overflow`.
    Bounded {
        /// The most operations the buffer holds (at least 1).
        max: usize,
        /// What to do with the operation that does not fit.
        overflow: OverflowPolicy,
    },
}

impl BufferPolicy {
    /// The most operations the buffer may hold (`None` = unbounded).
    pub fn bound(&self) -> Option<usize> {
        match *self {
            BufferPolicy::Unbounded => None,
            BufferPolicy::Disabled => Some(0),
            BufferPolicy::Bounded { max, .. } => Some(max),
        }
    }
}

/// What a bounded buffer does when an operation arrives and it is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum OverflowPolicy {
    /// Legacy MongoDB behaviour (seed 003): error out **every** buffered
    /// operation and the new one with `buffer_overflow`; the buffer then
    /// fills again from empty.
    FailAll,
    /// Keep the buffer, fail the new operation with `buffer_overflow`.
    RejectNew,
    /// Fail the oldest buffered operation with `buffer_overflow`, buffer the new one.
    DropOldest,
}

/// How many reconnect attempts follow a loss before giving up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tries {
    /// At most this many attempts (`reconnectTries`); then `reconnect_failed`.
    Limited(u32),
    /// Never give up.
    Unlimited,
}

/// What happens when the reconnect budget ([`Tries`]) is spent (or a
/// connect failure that is never retried comes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GiveUp {
    /// The legacy row: `reconnect_failed`, buffered ops fail with it, and
    /// the client stays down — later ops fail with `topology was
    /// destroyed` — until [`Machine::revive`](crate::Machine::revive).
    Terminal,
    /// `reconnect_failed`, buffered ops fail with it, then reconnecting
    /// resumes after this pause with a fresh budget (attempt 1 is announced
    /// with the pause as its delay). New ops meanwhile are buffered as while
    /// reconnecting.
    CoolDown(Duration),
}

/// The nominal delay before reconnect attempt `n` (1-based), before jitter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Backoff {
    /// The same delay before every attempt (`reconnectInterval`).
    Constant(Duration),
    /// `initial + step × (n − 1)`, capped at `max`.
    Linear {
        /// Delay before the first attempt.
        initial: Duration,
        /// Added for each further attempt.
        step: Duration,
        /// Cap.
        max: Duration,
    },
    /// `initial × multiplier^(n − 1)`, capped at `max`.
    Exponential {
        /// Delay before the first attempt (> 0).
        initial: Duration,
        /// Growth factor (≥ 1, finite).
        multiplier: f64,
        /// Cap (≥ `initial`).
        max: Duration,
    },
}

impl Backoff {
    /// The smallest nominal delay (used as the base of decorrelated jitter).
    pub fn base(&self) -> Duration {
        match *self {
            Backoff::Constant(d) => d,
            Backoff::Linear { initial, .. } | Backoff::Exponential { initial, .. } => initial,
        }
    }

    /// The largest nominal delay (the cap).
    pub fn cap(&self) -> Duration {
        match *self {
            Backoff::Constant(d) => d,
            Backoff::Linear { max, .. } | Backoff::Exponential { max, .. } => max,
        }
    }

    /// The nominal delay before attempt `n` (1-based; 0 is treated as 1).
    pub fn nominal(&self, n: u32) -> Duration {
        let k = n.max(1) - 1;
        match *self {
            Backoff::Constant(d) => d,
            Backoff::Linear { initial, step, max } => step
                .checked_mul(k)
                .and_then(|s| initial.checked_add(s))
                .unwrap_or(max)
                .min(max),
            Backoff::Exponential {
                initial,
                multiplier,
                max,
            } => {
                // Stays deterministic: IEEE-754 multiplication, no libm.
                // Step by step for the first 64 attempts (where every
                // practical backoff reaches its cap), then by squaring, so
                // an attempt costs O(log n) even when the delay never
                // reaches the cap (multiplier 1.0, or barely above).
                const STEPWISE: u32 = 64;
                let cap = max.as_secs_f64();
                let mut d = initial;
                for _ in 0..k.min(STEPWISE) {
                    if d >= max {
                        return max;
                    }
                    let next = d.as_secs_f64() * multiplier;
                    d = if next.is_finite() && next < cap {
                        Duration::from_secs_f64(next)
                    } else {
                        max
                    };
                }
                if k <= STEPWISE || d >= max {
                    return d.min(max);
                }
                // d × multiplier^(k − 64), by squaring, saturating at the cap.
                let (mut rest, mut base, mut x) = (k - STEPWISE, multiplier, d.as_secs_f64());
                while rest > 0 {
                    if rest & 1 == 1 {
                        x *= base;
                        if !(x.is_finite() && x < cap) {
                            return max;
                        }
                    }
                    rest >>= 1;
                    if rest > 0 {
                        base *= base;
                        if !base.is_finite() {
                            return max;
                        }
                    }
                }
                Duration::from_secs_f64(x).min(max)
            }
        }
    }
}

/// Randomisation applied to each nominal backoff delay `d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Jitter {
    /// Exactly `d` (legacy drivers).
    None,
    /// Uniform in `[0, d]` ("full jitter").
    Full,
    /// Uniform in `[d/2, d]` ("equal jitter").
    Equal,
    /// Uniform in `[base, 3 × previous delay]`, capped at the backoff cap
    /// ("decorrelated jitter"; the nominal delay is ignored).
    Decorrelated,
}

/// What to do when the very first connection attempt fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum InitialConnect {
    /// Retry like a reconnect: same backoff, same `reconnect_tries` budget.
    Retry,
    /// Give up at once: the client goes to the terminal `Failed` state
    /// (legacy drivers reject the initial `connect()` this way).
    FailFast,
}

/// Silent-loss detection: a heartbeat every `interval` while connected; no
/// answer within `timeout` declares the connection dead (`unresponsive`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// Time between heartbeats (> 0).
    pub interval: Duration,
    /// How long to wait for an answer (> 0).
    pub timeout: Duration,
}

/// Reconnect pacing by why the connection or the last attempt failed, on
/// top of the [`Backoff`] (see [`ConfigBuilder::quick_reconnect`]). What
/// each attempt costs the server decides how soon the next one comes:
///
/// - **after the loss of an established connection**, the first attempt
///   is made at once (delay 0): most losses find the server still up (a
///   killed connection, an idle timeout, a failover to a ready standby),
///   and waiting would only add to the outage. Only for a connection that
///   was up at least [`QuickReconnect::MIN_UPTIME`]: one that dies younger
///   is paced by the backoff like a failed attempt, so a server that
///   accepts and drops at once cannot drive a hot loop;
/// - **after an attempt refused at once** ([`ConnectFailure::Refused`]:
///   nothing listening, the host answered with a reset), the next attempt
///   comes after a delay drawn uniformly from `[probe / 2, probe]`, for the
///   first `probe_for` after the loss. A refused attempt costs the server
///   nothing (its process is not there) and a restart is over in seconds,
///   so probing at that pace finds the server within `probe` of its
///   return;
/// - **after anything else** (a connect timeout: an unreachable host,
///   where each attempt holds resources for the whole timeout; a server
///   that answered it cannot serve now, or is not the primary; a refusal
///   past `probe_for`), the [`Backoff`] with its [`Jitter`], counted over
///   these attempts only (the first of them is the backoff's attempt 1).
///
/// Every attempt counts against [`Tries`] all the same: with quick
/// reconnects a limited `reconnect_tries` is spent much sooner, so it is
/// meant for unlimited tries (as in [`Preset::Recommended`]).
///
/// [`ConnectFailure::Refused`]: crate::ConnectFailure::Refused
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuickReconnect {
    /// The pace of attempts after a refusal (at least 1 ms): each delay is
    /// uniform in `[probe / 2, probe]`.
    pub probe: Duration,
    /// How long after the loss (or the start) refusals are retried at that
    /// pace (> 0); later ones are paced by the backoff.
    pub probe_for: Duration,
}

impl QuickReconnect {
    /// A lost connection is retried at once only if it was up at least
    /// this long.
    pub const MIN_UPTIME: Duration = Duration::from_secs(1);
}

/// A retry budget shared by all operation retries, as in gRPC's retry
/// throttling: the bucket starts full with `max_tokens`; every operation
/// lost in flight costs one token, every success gives back `token_ratio`;
/// a retry is allowed only while more than half the bucket is left. A
/// failover therefore cannot turn into a retry storm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudget {
    /// Bucket size (≥ 1).
    pub max_tokens: u32,
    /// Tokens refunded per successful operation (> 0, finite, ≤ `max_tokens`).
    pub token_ratio: f64,
}

/// Which knob a [`ConfigError`] is about, and why it was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The value must be greater than zero (use `None` to turn a timeout off).
    MustBePositive,
    /// A zero reconnect delay with unlimited tries would spin for ever.
    ZeroDelayWithUnlimitedTries,
    /// A backoff cap below its starting delay.
    CapBelowStart,
    /// An exponential multiplier below 1 (or not a finite number).
    MultiplierBelowOne,
    /// A legacy `bufferMaxEntries` below -1.
    BufferEntriesBelowMinusOne,
    /// A number that is not finite (NaN or infinite).
    NotFinite,
    /// A retry budget refund larger than the bucket.
    RatioAboveMaxTokens,
    /// A quick-reconnect probe below one millisecond (its delays, drawn
    /// in whole microseconds from `[probe / 2, probe]`, could be zero: a
    /// tight loop).
    BelowOneMillisecond,
    /// A duration that is not a whole number of microseconds (500 ns,
    /// 1.5 µs): the machine's clock counts whole microseconds, so such a
    /// value would be cut to what the machine can use (a 500 ns deadline
    /// to none at all), and a trace or a timeline could not hold it.
    FractionOfMicrosecond,
}

/// A refused configuration: which field and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    kind: ConfigErrorKind,
}

impl ConfigError {
    pub(crate) const fn new(field: &'static str, kind: ConfigErrorKind) -> Self {
        ConfigError { field, kind }
    }

    /// The snake_case name of the offending field (as in timeline files).
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why it was refused.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// A one-line human reason.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            ConfigErrorKind::MustBePositive => "must be greater than zero (turn it off instead)",
            ConfigErrorKind::ZeroDelayWithUnlimitedTries => {
                "a zero reconnect delay with unlimited reconnect_tries would reconnect in a tight loop"
            }
            ConfigErrorKind::CapBelowStart => "the backoff cap is below the initial delay",
            ConfigErrorKind::MultiplierBelowOne => "the multiplier must be a finite number >= 1",
            ConfigErrorKind::BufferEntriesBelowMinusOne => {
                "must be -1 (unbounded), 0 (no buffering) or a positive bound"
            }
            ConfigErrorKind::NotFinite => "must be a finite number",
            ConfigErrorKind::RatioAboveMaxTokens => "must not exceed retry_budget_tokens",
            ConfigErrorKind::BelowOneMillisecond => {
                "must be at least 1 ms (shorter probes could retry with no delay at all)"
            }
            ConfigErrorKind::FractionOfMicrosecond => {
                "must be a whole number of microseconds (the machine's clock counts microseconds)"
            }
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.field, self.reason())
    }
}

impl core::error::Error for ConfigError {}

/// A named starting point for a [`Config`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[non_exhaustive]
pub enum Preset {
    /// MongoDB Node.js driver 2.x defaults (seed 003): `autoReconnect: true`,
    /// `bufferMaxEntries: -1`, `reconnectTries: 30`, `reconnectInterval:
    /// 1000`, no jitter, `connectTimeoutMS: 30000`, initial connect fails fast.
    MongodbLegacy,
    /// The legacy driver under mongoose 5+: the same, plus mongoose's
    /// `bufferTimeoutMS: 10000` (a buffered op fails after 10 s), and
    /// mongoose's `connected` event on every reconnection too (seed 002:
    /// "these events are interchangeable"; see
    /// [`ConfigBuilder::connected_on_reconnect`]).
    Mongoose,
    /// Seed 002's fail-fast example: both buffers off (`bufferMaxEntries: 0`,
    /// `bufferCommands: false`), otherwise legacy reconnects.
    FailFast,
    /// What we recommend in production; see [`Config::recommended`].
    Recommended,
    /// ioredis 5 (read: 5.11.1, `built/redis/RedisOptions.js`,
    /// `built/redis/event_handler.js`): `retryStrategy` `min(50·n, 2000)`
    /// ms (linear 50 ms steps to 2 s, no jitter, never gives up),
    /// unbounded offline queue, `connectTimeout` 10 s, no command or socket
    /// timeout, the first connect retried like a reconnect.
    /// `autoResendUnfulfilledCommands: true` — **ops lost in flight are
    /// resent after the reconnect, any number of times: they may run
    /// twice** ([`ConfigBuilder::retry_lost`], attempts unlimited) —
    /// and `maxRetriesPerRequest: 20`
    /// ([`ConfigBuilder::fail_buffered_after`]`(Some(20))`: after 20 failed
    /// reconnect attempts, ~10.5 s against a refusing server, every queued
    /// op fails). A silent server (SIGSTOP) leaves ops waiting for ever.
    /// Not reproduced: the connect timeout covers TCP only (a stopped
    /// server hangs the handshake, freezing ioredis's count); its count
    /// resets on `ready`, ours on connect.
    IoredisV5,
    /// ioredis 6 (read: 6.1.0): as [`Preset::IoredisV5`] but
    /// `retryStrategy` `min(50·2^(n−1), 5000) + random·200` ms (exponential
    /// from 50 ms to 5 s, plus [`ConfigBuilder::extra_jitter`] of 200 ms;
    /// the first `maxRetriesPerRequest` flush comes after ~71–75 s).
    /// **Resends ops lost in flight: they may run twice.**
    IoredisV6,
    /// Lettuce 7 (read: 7.7.0.RELEASE, `ClientOptions.java`,
    /// `resource/Delay.java`, `RedisURI.java`): auto-reconnect for ever with
    /// `Delay.exponential()` (1 ms doubling to 30 s, no jitter), unbounded
    /// request queue, `SocketOptions` connect timeout 10 s, the command
    /// timeout of 60 s counted from submission and keeping the connection
    /// ([`ConfigBuilder::op_deadline`]), the first connect failing fast.
    /// At-least-once mode: **ops in flight when the connection drops are
    /// replayed after the reconnect, with no attempt limit: they may run
    /// twice**. Not reproduced: a 60 s handshake timeout separate from
    /// the 10 s TCP one; on a reset (not a clean close) Lettuce fails the
    /// oldest op in flight and replays the rest.
    Lettuce,
    /// The `redis` crate's `aio::ConnectionManager` (read: redis 1.8.1,
    /// `src/aio/connection_manager.rs`, with backon 1.6.0): a per-request
    /// `response_timeout` of 500 ms that fails the op and keeps the
    /// connection ([`ConfigBuilder::command_timeout`]), `connection_timeout`
    /// 1 s, `number_of_retries` 6 with delays in `[d, 2d)`, `d = 100 ms ×
    /// 2^(n−1)` (exponential from 200 ms with [`Jitter::Equal`]); ops in
    /// flight at a loss fail (`connection_lost`), ops submitted while it
    /// reconnects wait for it, and when the round of attempts fails they
    /// get its error and a new round starts (a 1 ms cool-down here). Not
    /// reproduced: it reconnects only once an op fails (no reconnect while
    /// idle), its first attempt of a round is immediate, and an
    /// authentication failure latches.
    RedisRsConnectionManager,
    /// fred 10 with no reconnect policy, its default (read: 10.1.0,
    /// `src/types/config.rs`, `src/router/`): a lost connection is never
    /// re-established; ops in flight fail, later ops wait for ever (no
    /// default command timeout). Connect timeout 10 s; the first connect
    /// fails fast.
    FredDefault,
    /// fred 10 with `ReconnectPolicy::default()` (read: 10.1.0,
    /// `src/types/config.rs`: constant 1 s, `DEFAULT_JITTER_MS` 100, no
    /// attempt limit; `max_command_attempts` 3): reconnect every 1 s plus
    /// 0–99 ms ([`ConfigBuilder::extra_jitter`]), unbounded queue, no
    /// command timeout (a silent server leaves ops waiting for ever).
    /// **Ops lost in flight are written again, up to 3 writes: they may run
    /// twice.**
    FredReconnectPolicy,
    /// The MongoDB Node.js driver 6 (read: 6.22.0,
    /// `src/connection_string.ts`, `src/operations/execute_operation.ts`;
    /// 7.x keeps these): an op waits up to `serverSelectionTimeoutMS` 30 s
    /// for a server ([`ConfigBuilder::buffer_timeout`]), retryable reads and
    /// writes are retried once after a network error (2 attempts),
    /// `connectTimeoutMS` 30 s, no socket timeout, the monitor checks every
    /// 10 s and declares a silent server dead after 30 s (a heartbeat here;
    /// the driver's runs on its own connection), and probes every 500 ms
    /// while ops wait. Retryable writes carry a transaction number the
    /// server deduplicates, so the driver's retry does not run a write
    /// twice; redial cannot know that, and reports them as "may have run
    /// twice" like any resend.
    MongodbNode,
}

impl Preset {
    /// A builder holding this preset's values.
    pub fn builder(self) -> ConfigBuilder {
        let legacy = ConfigBuilder {
            auto_reconnect: true,
            buffer: BufferPolicy::Unbounded,
            reconnect_tries: Tries::Limited(30),
            backoff: Backoff::Constant(Duration::from_millis(1000)),
            jitter: Jitter::None,
            initial_connect: InitialConnect::FailFast,
            connect_timeout: Some(Duration::from_secs(30)),
            socket_timeout: None,
            heartbeat: None,
            response_timeout: None,
            buffer_timeout: None,
            op_deadline: None,
            max_op_attempts: 1,
            retry_budget: None,
            endpoints: 1,
            require_primary: false,
            give_up: GiveUp::Terminal,
            quick_reconnect: None,
            command_timeout: None,
            connected_on_reconnect: false,
            retry_lost: false,
            fail_buffered_after: None,
            extra_jitter: None,
            fail_unreachable_deadlines: true,
            deferred: None,
        };
        let peer = ConfigBuilder {
            fail_unreachable_deadlines: false,
            initial_connect: InitialConnect::Retry,
            reconnect_tries: Tries::Unlimited,
            connect_timeout: Some(Duration::from_secs(10)),
            ..legacy
        };
        match self {
            Preset::IoredisV5 => ConfigBuilder {
                backoff: Backoff::Linear {
                    initial: Duration::from_millis(50),
                    step: Duration::from_millis(50),
                    max: Duration::from_millis(2000),
                },
                retry_lost: true,
                max_op_attempts: u32::MAX,
                fail_buffered_after: Some(20),
                ..peer
            },
            Preset::IoredisV6 => ConfigBuilder {
                backoff: Backoff::Exponential {
                    initial: Duration::from_millis(50),
                    multiplier: 2.0,
                    max: Duration::from_millis(5000),
                },
                extra_jitter: Some(Duration::from_millis(200)),
                retry_lost: true,
                max_op_attempts: u32::MAX,
                fail_buffered_after: Some(20),
                ..peer
            },
            Preset::Lettuce => ConfigBuilder {
                backoff: Backoff::Exponential {
                    initial: Duration::from_millis(1),
                    multiplier: 2.0,
                    max: Duration::from_secs(30),
                },
                initial_connect: InitialConnect::FailFast,
                op_deadline: Some(Duration::from_secs(60)),
                retry_lost: true,
                max_op_attempts: u32::MAX,
                ..peer
            },
            Preset::RedisRsConnectionManager => ConfigBuilder {
                reconnect_tries: Tries::Limited(6),
                backoff: Backoff::Exponential {
                    initial: Duration::from_millis(200),
                    multiplier: 2.0,
                    max: Duration::from_secs(120),
                },
                jitter: Jitter::Equal,
                connect_timeout: Some(Duration::from_secs(1)),
                command_timeout: Some(Duration::from_millis(500)),
                give_up: GiveUp::CoolDown(Duration::from_millis(1)),
                ..peer
            },
            Preset::FredDefault => ConfigBuilder {
                auto_reconnect: false,
                initial_connect: InitialConnect::FailFast,
                ..peer
            },
            Preset::FredReconnectPolicy => ConfigBuilder {
                backoff: Backoff::Constant(Duration::from_secs(1)),
                extra_jitter: Some(Duration::from_millis(100)),
                initial_connect: InitialConnect::FailFast,
                retry_lost: true,
                max_op_attempts: 3,
                ..peer
            },
            Preset::MongodbNode => ConfigBuilder {
                backoff: Backoff::Constant(Duration::from_millis(500)),
                connect_timeout: Some(Duration::from_secs(30)),
                heartbeat: Some(Heartbeat {
                    interval: Duration::from_secs(10),
                    timeout: Duration::from_secs(30),
                }),
                buffer_timeout: Some(Duration::from_secs(30)),
                retry_lost: true,
                max_op_attempts: 2,
                ..peer
            },
            Preset::MongodbLegacy => legacy,
            Preset::Mongoose => ConfigBuilder {
                buffer_timeout: Some(Duration::from_secs(10)),
                connected_on_reconnect: true,
                ..legacy
            },
            Preset::FailFast => ConfigBuilder {
                buffer: BufferPolicy::Disabled,
                ..legacy
            },
            Preset::Recommended => ConfigBuilder {
                auto_reconnect: true,
                buffer: BufferPolicy::Bounded {
                    max: 1024,
                    overflow: OverflowPolicy::RejectNew,
                },
                reconnect_tries: Tries::Unlimited,
                backoff: Backoff::Exponential {
                    initial: Duration::from_millis(100),
                    multiplier: 2.0,
                    max: Duration::from_secs(5),
                },
                jitter: Jitter::Full,
                initial_connect: InitialConnect::Retry,
                connect_timeout: Some(Duration::from_secs(5)),
                socket_timeout: None,
                heartbeat: Some(Heartbeat {
                    interval: Duration::from_secs(5),
                    timeout: Duration::from_secs(3),
                }),
                response_timeout: Some(Duration::from_secs(15)),
                buffer_timeout: Some(Duration::from_secs(10)),
                op_deadline: None,
                max_op_attempts: 3,
                retry_budget: Some(RetryBudget {
                    max_tokens: 10,
                    token_ratio: 0.1,
                }),
                endpoints: 1,
                require_primary: true,
                give_up: GiveUp::Terminal,
                quick_reconnect: Some(QuickReconnect {
                    probe: Duration::from_millis(100),
                    probe_for: Duration::from_secs(30),
                }),
                command_timeout: None,
                connected_on_reconnect: false,
                retry_lost: false,
                fail_buffered_after: None,
                extra_jitter: None,
                fail_unreachable_deadlines: true,
                deferred: None,
            },
        }
    }
}

/// The error of parsing one of the config's named choices
/// ([`Preset`], [`Jitter`], [`InitialConnect`], [`OverflowPolicy`]) from a
/// string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownName {
    what: &'static str,
    expected: &'static str,
}

impl UnknownName {
    /// What was being parsed (`preset`, `jitter`, `initial_connect`, `overflow policy`).
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// The accepted names, as a phrase (`none, full, equal or decorrelated`).
    pub fn expected(&self) -> &'static str {
        self.expected
    }
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {}: expected {}", self.what, self.expected)
    }
}

impl core::error::Error for UnknownName {}

/// `name()` and `FromStr` (kebab-case; `_` accepted for `-`) for a
/// fieldless config enum.
macro_rules! named_choice {
    ($ty:ident, $what:literal, $expected:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every choice, in a stable order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The kebab-case name, as accepted by `FromStr`.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::ALL
                    .iter()
                    .copied()
                    .find(|v| v.name().replace_dash_eq(s))
                    .ok_or(UnknownName { what: $what, expected: $expected })
            }
        }
    };
}

named_choice!(Preset, "preset", "one of mongodb-legacy, mongoose, fail-fast, recommended, ioredis-v5, ioredis-v6, lettuce, redis-rs-connection-manager, fred-default, fred-reconnect-policy, mongodb-node", {
    MongodbLegacy => "mongodb-legacy",
    Mongoose => "mongoose",
    FailFast => "fail-fast",
    Recommended => "recommended",
    IoredisV5 => "ioredis-v5",
    IoredisV6 => "ioredis-v6",
    Lettuce => "lettuce",
    RedisRsConnectionManager => "redis-rs-connection-manager",
    FredDefault => "fred-default",
    FredReconnectPolicy => "fred-reconnect-policy",
    MongodbNode => "mongodb-node",
});

named_choice!(Jitter, "jitter", "none, full, equal or decorrelated", {
    None => "none",
    Full => "full",
    Equal => "equal",
    Decorrelated => "decorrelated",
});

named_choice!(InitialConnect, "initial_connect", "retry or fail-fast", {
    Retry => "retry",
    FailFast => "fail-fast",
});

named_choice!(OverflowPolicy, "overflow policy", "fail-all, reject-new or drop-oldest", {
    FailAll => "fail-all",
    RejectNew => "reject-new",
    DropOldest => "drop-oldest",
});

trait DashEq {
    fn replace_dash_eq(&self, other: &str) -> bool;
}

impl DashEq for str {
    /// `mongodb_legacy` is accepted for `mongodb-legacy`.
    fn replace_dash_eq(&self, other: &str) -> bool {
        self.len() == other.len()
            && self
                .bytes()
                .zip(other.bytes())
                .all(|(a, b)| a == b || (a == b'-' && b == b'_'))
    }
}

/// A validated configuration. Build one with [`Config::builder`] or a preset.
///
/// `Config` is immutable; [`Config::to_builder`] gives a builder holding its
/// values to derive a variant.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub(crate) b: ConfigBuilder,
    /// Retry budget in milli-tokens: (capacity, refund per success).
    pub(crate) budget_milli: Option<(u64, u64)>,
}

impl Config {
    /// A builder starting from [`Preset::Recommended`].
    pub fn builder() -> ConfigBuilder {
        Preset::Recommended.builder()
    }

    /// [`Preset::MongodbLegacy`], built.
    pub fn mongodb_legacy() -> Config {
        Preset::MongodbLegacy.build_valid()
    }

    /// [`Preset::Mongoose`], built.
    pub fn mongoose() -> Config {
        Preset::Mongoose.build_valid()
    }

    /// [`Preset::FailFast`], built.
    pub fn fail_fast() -> Config {
        Preset::FailFast.build_valid()
    }

    /// What we would tell a team to use in production:
    ///
    /// - a bounded buffer (1024 ops, reject-new on overflow) so an outage
    ///   cannot eat all memory, with a 10 s buffer timeout so no op hangs for
    ///   ever (mongoose's `bufferTimeoutMS` default);
    /// - quick reconnects ([`QuickReconnect`]): a lost connection is retried
    ///   at once, and while the server refuses (restarting) it is probed
    ///   every 50–100 ms for up to 30 s, so a client is back within about
    ///   100 ms of the server's return; everything else (timeouts, a
    ///   loaded server, a secondary, refusals after 30 s) waits an
    ///   exponential backoff 100 ms × 2 capped at 5 s with full jitter, so a
    ///   fleet of clients does not reconnect in lock-step where it would
    ///   cost the server;
    /// - unlimited reconnect tries: a client that gives up silently is worse
    ///   than one that keeps trying;
    /// - initial connect retried like a reconnect; 5 s connect timeout;
    /// - a heartbeat every 5 s answered within 3 s, to catch silent loss
    ///   (seed 004: a failover can look like nothing at all);
    /// - up to 3 attempts for ops marked retryable, throttled by a gRPC-style
    ///   retry budget of 10 tokens refunded at 0.1 per success;
    /// - the role check on connect (`require_primary`): a connection the
    ///   connector reports as a secondary is refused before anything is sent.
    pub fn recommended() -> Config {
        Preset::Recommended.build_valid()
    }

    /// A builder holding this configuration's values.
    pub fn to_builder(&self) -> ConfigBuilder {
        self.b.clone()
    }

    /// Whether lost connections are re-established (`autoReconnect`).
    pub fn auto_reconnect(&self) -> bool {
        self.b.auto_reconnect
    }
    /// The buffer policy while disconnected.
    pub fn buffer(&self) -> BufferPolicy {
        self.b.buffer
    }
    /// The reconnect budget.
    pub fn reconnect_tries(&self) -> Tries {
        self.b.reconnect_tries
    }
    /// The backoff between reconnect attempts.
    pub fn backoff(&self) -> Backoff {
        self.b.backoff
    }
    /// The jitter applied to each backoff delay.
    pub fn jitter(&self) -> Jitter {
        self.b.jitter
    }
    /// What happens when the first connect attempt fails.
    pub fn initial_connect(&self) -> InitialConnect {
        self.b.initial_connect
    }
    /// Timeout of one connect attempt.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.b.connect_timeout
    }
    /// Idle timeout of an established connection (legacy `socketTimeoutMS`).
    pub fn socket_timeout(&self) -> Option<Duration> {
        self.b.socket_timeout
    }
    /// Heartbeat settings.
    pub fn heartbeat(&self) -> Option<Heartbeat> {
        self.b.heartbeat
    }
    /// How long an op may stay in flight before the connection is declared dead.
    pub fn response_timeout(&self) -> Option<Duration> {
        self.b.response_timeout
    }
    /// Whether `connected` is emitted with every `reconnected` (mongoose).
    pub fn connected_on_reconnect(&self) -> bool {
        self.b.connected_on_reconnect
    }
    /// How long each dispatch may wait for its answer before the op fails
    /// (the connection stays).
    pub fn command_timeout(&self) -> Option<Duration> {
        self.b.command_timeout
    }
    /// How long an op may wait in the buffer (mongoose `bufferTimeoutMS`).
    pub fn buffer_timeout(&self) -> Option<Duration> {
        self.b.buffer_timeout
    }
    /// The deadline applied to ops submitted without one.
    pub fn op_deadline(&self) -> Option<Duration> {
        self.b.op_deadline
    }
    /// Attempts for ops marked retryable (≥ 1).
    pub fn max_op_attempts(&self) -> u32 {
        self.b.max_op_attempts
    }
    /// Whether ops not marked either way are sent again after a loss in
    /// flight (see [`ConfigBuilder::retry_lost`]).
    pub fn retry_lost(&self) -> bool {
        self.b.retry_lost
    }
    /// Buffered ops fail after this many failed reconnect attempts (see
    /// [`ConfigBuilder::fail_buffered_after`]).
    pub fn fail_buffered_after(&self) -> Option<u32> {
        self.b.fail_buffered_after
    }
    /// The random delay added to every reconnect delay (see
    /// [`ConfigBuilder::extra_jitter`]).
    pub fn extra_jitter(&self) -> Option<Duration> {
        self.b.extra_jitter
    }
    /// Whether a buffered op whose deadline comes before the client can
    /// send it fails at once (see [`ConfigBuilder::fail_unreachable_deadlines`]).
    pub fn fail_unreachable_deadlines(&self) -> bool {
        self.b.fail_unreachable_deadlines
    }
    /// The shared retry budget.
    pub fn retry_budget(&self) -> Option<RetryBudget> {
        self.b.retry_budget
    }
    /// Number of endpoints in the seed list (≥ 1).
    pub fn endpoints(&self) -> usize {
        self.b.endpoints
    }
    /// Whether a connection the connector reports as a secondary is refused
    /// before anything is dispatched on it ([`crate::ConnectFailure::NotPrimary`]).
    pub fn require_primary(&self) -> bool {
        self.b.require_primary
    }
    /// What happens when the reconnect budget is spent.
    pub fn give_up(&self) -> GiveUp {
        self.b.give_up
    }
    /// Reconnect pacing by why the last attempt failed, if on.
    pub fn quick_reconnect(&self) -> Option<QuickReconnect> {
        self.b.quick_reconnect
    }

    /// The range a jittered delay before reconnect attempt `n` falls in.
    ///
    /// Decorrelated jitter depends on the previous delay; its range is
    /// `[base, cap]` overall.
    pub fn reconnect_delay_bounds(&self, n: u32) -> (Duration, Duration) {
        let d = self.b.backoff.nominal(n);
        let (lo, hi) = match self.b.jitter {
            Jitter::None => (d, d),
            Jitter::Full => (Duration::ZERO, d),
            Jitter::Equal => (d / 2, d),
            Jitter::Decorrelated => (self.b.backoff.base(), self.b.backoff.cap()),
        };
        // The extra jitter is drawn in whole microseconds below `j`.
        let extra = self.b.extra_jitter.map_or(Duration::ZERO, |j| {
            j.saturating_sub(Duration::from_micros(1))
        });
        (lo, hi.saturating_add(extra))
    }
}

impl Default for Config {
    /// [`Config::recommended`].
    fn default() -> Self {
        Config::recommended()
    }
}

impl From<Preset> for Config {
    /// The preset's config, built (every preset is valid).
    fn from(p: Preset) -> Config {
        p.build_valid()
    }
}

impl Preset {
    fn build_valid(self) -> Config {
        // Every preset is a constant that the tests validate; a failure here
        // is a bug in this file, never in user input.
        self.builder()
            .build()
            .expect("preset values are valid (checked by tests)")
    }
}

/// Builds a [`Config`]; every setter takes and returns the builder.
///
/// Timeouts are `Option<Duration>`: `None` turns them off; `Some(ZERO)` is
/// refused by [`build`](ConfigBuilder::build) so that "off" is never spelt
/// two ways.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigBuilder {
    pub(crate) auto_reconnect: bool,
    pub(crate) buffer: BufferPolicy,
    pub(crate) reconnect_tries: Tries,
    pub(crate) backoff: Backoff,
    pub(crate) jitter: Jitter,
    pub(crate) initial_connect: InitialConnect,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) socket_timeout: Option<Duration>,
    pub(crate) heartbeat: Option<Heartbeat>,
    pub(crate) response_timeout: Option<Duration>,
    pub(crate) buffer_timeout: Option<Duration>,
    pub(crate) op_deadline: Option<Duration>,
    pub(crate) max_op_attempts: u32,
    pub(crate) retry_budget: Option<RetryBudget>,
    pub(crate) endpoints: usize,
    pub(crate) require_primary: bool,
    pub(crate) give_up: GiveUp,
    pub(crate) quick_reconnect: Option<QuickReconnect>,
    pub(crate) command_timeout: Option<Duration>,
    pub(crate) connected_on_reconnect: bool,
    pub(crate) retry_lost: bool,
    pub(crate) fail_buffered_after: Option<u32>,
    pub(crate) extra_jitter: Option<Duration>,
    pub(crate) fail_unreachable_deadlines: bool,
    /// An error found by a setter that cannot fail on the spot.
    deferred: Option<ConfigError>,
}

impl Default for ConfigBuilder {
    /// [`Preset::Recommended`]'s values.
    fn default() -> Self {
        Preset::Recommended.builder()
    }
}

impl ConfigBuilder {
    /// Same as [`Config::builder`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Re-establish lost connections (`autoReconnect`).
    pub fn auto_reconnect(mut self, on: bool) -> Self {
        self.auto_reconnect = on;
        self
    }

    /// The buffer policy.
    pub fn buffer(mut self, policy: BufferPolicy) -> Self {
        self.buffer = policy;
        self
    }

    /// Legacy `bufferMaxEntries`: `-1` unbounded, `0` disabled, `N > 0`
    /// bounded with the legacy fail-all overflow. Below `-1` is refused by
    /// `build()`.
    pub fn buffer_max_entries(mut self, n: i64) -> Self {
        self.buffer = match n {
            -1 => BufferPolicy::Unbounded,
            0 => BufferPolicy::Disabled,
            n if n > 0 => BufferPolicy::Bounded {
                max: usize::try_from(n).unwrap_or(usize::MAX),
                overflow: OverflowPolicy::FailAll,
            },
            _ => {
                self.deferred.get_or_insert(ConfigError::new(
                    "buffer_max_entries",
                    ConfigErrorKind::BufferEntriesBelowMinusOne,
                ));
                self.buffer
            }
        };
        self
    }

    /// The reconnect budget (`reconnectTries`).
    pub fn reconnect_tries(mut self, tries: Tries) -> Self {
        self.reconnect_tries = tries;
        self
    }

    /// Constant backoff (`reconnectInterval`).
    pub fn reconnect_interval(mut self, interval: Duration) -> Self {
        self.backoff = Backoff::Constant(interval);
        self
    }

    /// Any backoff policy.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Jitter on each backoff delay.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// What happens when the very first connect attempt fails.
    pub fn initial_connect(mut self, initial: InitialConnect) -> Self {
        self.initial_connect = initial;
        self
    }

    /// Timeout of one connect attempt.
    pub fn connect_timeout(mut self, t: Option<Duration>) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Idle timeout: a connection with no op in flight for this long is
    /// closed (legacy `socketTimeoutMS`; heartbeats do not count as use).
    pub fn socket_timeout(mut self, t: Option<Duration>) -> Self {
        self.socket_timeout = t;
        self
    }

    /// Heartbeat settings (silent-loss detection).
    pub fn heartbeat(mut self, h: Option<Heartbeat>) -> Self {
        self.heartbeat = h;
        self
    }

    /// An op in flight longer than this declares the connection dead.
    pub fn response_timeout(mut self, t: Option<Duration>) -> Self {
        self.response_timeout = t;
        self
    }

    /// Each dispatch of an op may wait this long for its answer; then the
    /// op fails with `command_timeout` (it may have run; not retried) and
    /// **the connection stays** — unlike
    /// [`response_timeout`](Self::response_timeout), which declares the
    /// connection dead. Per op: [`OpOptions::command_timeout`](crate::OpOptions::command_timeout).
    /// Off in every preset (ioredis `commandTimeout`, the `redis` crate's
    /// `response_timeout`).
    pub fn command_timeout(mut self, t: Option<Duration>) -> Self {
        self.command_timeout = t;
        self
    }

    /// Emit [`Event::Connected`](crate::Event::Connected) right after every
    /// [`Event::Reconnected`](crate::Event::Reconnected), for the same
    /// connection, as mongoose does (seed 002: its `connected` and
    /// `reconnected` events "are interchangeable"), so a ported
    /// `on('connected')` handler also sees reconnections. On in
    /// [`Preset::Mongoose`], off elsewhere.
    pub fn connected_on_reconnect(mut self, on: bool) -> Self {
        self.connected_on_reconnect = on;
        self
    }

    /// The legacy `socketTimeoutMS`, as the legacy driver meant it: both an
    /// idle timeout ([`socket_timeout`](Self::socket_timeout): a connection
    /// with nothing in flight this long is closed) and an in-flight limit
    /// ([`response_timeout`](Self::response_timeout): an op waiting this
    /// long for its answer declares the connection dead, failing every op
    /// in flight on it). Seed 003's trap: it also kills long-running
    /// operations. What you probably want instead: a per-op deadline
    /// (`maxTimeMS`), or a [`command_timeout`](Self::command_timeout),
    /// which fails the op and keeps the connection.
    pub fn legacy_socket_timeout(self, t: Duration) -> Self {
        self.socket_timeout(Some(t)).response_timeout(Some(t))
    }

    /// An op waiting in the buffer longer than this fails with `buffer_timeout`.
    pub fn buffer_timeout(mut self, t: Option<Duration>) -> Self {
        self.buffer_timeout = t;
        self
    }

    /// The deadline for ops submitted without one.
    pub fn op_deadline(mut self, t: Option<Duration>) -> Self {
        self.op_deadline = t;
        self
    }

    /// Attempts for ops marked retryable (≥ 1).
    pub fn max_op_attempts(mut self, n: u32) -> Self {
        self.max_op_attempts = n;
        self
    }

    /// Blind resend: send every op lost in flight again after the
    /// reconnect, up to [`max_op_attempts`](Self::max_op_attempts), unless
    /// the op itself says otherwise ([`OpOptions::retryable`]). Off by
    /// default.
    ///
    /// **An op lost in flight may have run**: the server may have executed
    /// it and only the answer was lost. Sending it again can make it run
    /// twice (an `INCR` counted twice, a payment taken twice). Only turn
    /// this on when every op is idempotent, or to reproduce a driver that
    /// does it (ioredis `autoResendUnfulfilledCommands`, Lettuce's
    /// at-least-once mode, fred's `max_command_attempts`); `redial-sim
    /// compare` counts the ops it resends as "may run twice".
    ///
    /// [`OpOptions::retryable`]: crate::OpOptions::retryable
    pub fn retry_lost(mut self, on: bool) -> Self {
        self.retry_lost = on;
        self
    }

    /// Fail every buffered op once `k` reconnect attempts in a row have
    /// failed, and again every `k + 1` failed attempts after that, as
    /// ioredis's `maxRetriesPerRequest` does (it flushes its queues when
    /// its count of closes since the last connect is a multiple of
    /// `k + 1`; the loss itself is the first close). The ops fail with
    /// [`ErrorKind::ReconnectAttemptsExceeded`]; reconnecting goes on, and
    /// ops submitted later are buffered again. `Some(0)` fails the buffer
    /// at the loss and at every failed attempt; `None` (the default) never.
    ///
    /// [`ErrorKind::ReconnectAttemptsExceeded`]: crate::ErrorKind::ReconnectAttemptsExceeded
    pub fn fail_buffered_after(mut self, k: Option<u32>) -> Self {
        self.fail_buffered_after = k;
        self
    }

    /// Adds a delay drawn uniformly from `[0, j)` (whole microseconds) to
    /// every backoff delay, after the [`Backoff`]'s cap and the
    /// [`Jitter`], as ioredis 6 (`+ random·200 ms`) and fred (`+ 0–99 ms`)
    /// do. Under [`QuickReconnect`] the immediate retry and the probes
    /// after a refusal keep their own pace (nothing added), and a
    /// [`GiveUp::CoolDown`] pause is exact. `None` (the default) adds
    /// nothing; `Some(ZERO)` is refused.
    pub fn extra_jitter(mut self, j: Option<Duration>) -> Self {
        self.extra_jitter = j;
        self
    }

    /// Fail a buffered op at once with
    /// [`ErrorKind::DeadlineUnreachable`](crate::ErrorKind::DeadlineUnreachable)
    /// when its deadline comes before the next reconnect attempt (or the
    /// end of a pushback wait), instead of letting it wait for the deadline
    /// (on by default: the caller learns sooner, and the op certainly did
    /// not run). The peer presets turn it off: no peer driver does this, so
    /// their ops fail with `deadline_exceeded` at the deadline.
    pub fn fail_unreachable_deadlines(mut self, on: bool) -> Self {
        self.fail_unreachable_deadlines = on;
        self
    }

    /// The shared retry budget (`None`: retries limited only by attempts).
    pub fn retry_budget(mut self, b: Option<RetryBudget>) -> Self {
        self.retry_budget = b;
        self
    }

    /// Refuse a connection the connector reports as a secondary
    /// ([`Machine::handle_connected_as`](crate::Machine::handle_connected_as)
    /// with [`Role::Secondary`](crate::Role::Secondary)): it counts as a
    /// failed attempt (`not_primary`) and the next endpoint is tried, before
    /// anything is dispatched or `connected`/`reconnected` is announced.
    /// Off in the legacy presets, on in [`Preset::Recommended`].
    pub fn require_primary(mut self, on: bool) -> Self {
        self.require_primary = on;
        self
    }

    /// What happens when the reconnect budget is spent (default:
    /// [`GiveUp::Terminal`]). A cool-down must be positive.
    pub fn give_up(mut self, policy: GiveUp) -> Self {
        self.give_up = policy;
        self
    }

    /// Reconnect pacing by why the connection or the last attempt failed
    /// (see [`QuickReconnect`]): `None` paces every attempt by the backoff
    /// (the legacy presets); [`Preset::Recommended`] has
    /// `Some(QuickReconnect { probe: 100 ms, probe_for: 30 s })`. The probe
    /// must be at least 1 ms, `probe_for` positive.
    pub fn quick_reconnect(mut self, q: Option<QuickReconnect>) -> Self {
        self.quick_reconnect = q;
        self
    }

    /// Number of endpoints in the seed list (≥ 1).
    pub fn endpoints(mut self, n: usize) -> Self {
        self.endpoints = n;
        self
    }

    /// The first duration set to a fraction of a microsecond, by its
    /// field's name (as in timeline files).
    fn first_fractional_microsecond(&self) -> Option<&'static str> {
        let mut all: [(&'static str, Option<Duration>); 16] = [
            ("connect_timeout", self.connect_timeout),
            ("socket_timeout", self.socket_timeout),
            ("response_timeout", self.response_timeout),
            ("command_timeout", self.command_timeout),
            ("buffer_timeout", self.buffer_timeout),
            ("op_deadline", self.op_deadline),
            ("heartbeat_interval", self.heartbeat.map(|h| h.interval)),
            ("heartbeat_timeout", self.heartbeat.map(|h| h.timeout)),
            ("probe", self.quick_reconnect.map(|q| q.probe)),
            ("probe_for", self.quick_reconnect.map(|q| q.probe_for)),
            ("cool_down", None),
            ("reconnect_interval", None),
            ("backoff_initial", None),
            ("backoff_step", None),
            ("backoff_max", None),
            ("extra_jitter", self.extra_jitter),
        ];
        if let GiveUp::CoolDown(d) = self.give_up {
            all[10].1 = Some(d);
        }
        match self.backoff {
            Backoff::Constant(d) => all[11].1 = Some(d),
            Backoff::Linear { initial, step, max } => {
                all[12].1 = Some(initial);
                all[13].1 = Some(step);
                all[14].1 = Some(max);
            }
            Backoff::Exponential { initial, max, .. } => {
                all[12].1 = Some(initial);
                all[14].1 = Some(max);
            }
        }
        all.into_iter()
            // Past `u64::MAX` µs the machine saturates (for ever), whatever
            // the nanoseconds: `Duration::MAX` is a fine "no limit".
            .find(|(_, d)| {
                d.is_some_and(|d| {
                    d.subsec_nanos() % 1_000 != 0 && d.as_micros() < u128::from(u64::MAX)
                })
            })
            .map(|(field, _)| field)
    }

    /// Validates every field and returns the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        use ConfigErrorKind as K;
        let err = |field, kind| Err(ConfigError::new(field, kind));
        if let Some(e) = self.deferred {
            return Err(e);
        }
        if self.endpoints == 0 {
            return err("endpoints", K::MustBePositive);
        }
        if self.give_up == GiveUp::CoolDown(Duration::ZERO) {
            return err("give_up", K::MustBePositive);
        }
        if let BufferPolicy::Bounded { max: 0, .. } = self.buffer {
            return err("buffer_max_entries", K::MustBePositive);
        }
        match self.backoff {
            Backoff::Constant(d) => {
                if d.is_zero() && self.reconnect_tries == Tries::Unlimited {
                    return err("reconnect_interval", K::ZeroDelayWithUnlimitedTries);
                }
            }
            Backoff::Linear { initial, step, max } => {
                if max < initial {
                    return err("backoff_max", K::CapBelowStart);
                }
                if max.is_zero() && self.reconnect_tries == Tries::Unlimited {
                    return err("backoff_max", K::ZeroDelayWithUnlimitedTries);
                }
                // `initial + step × (n−1)` stays zero for ever.
                if initial.is_zero() && step.is_zero() && self.reconnect_tries == Tries::Unlimited {
                    return err("backoff_step", K::ZeroDelayWithUnlimitedTries);
                }
            }
            Backoff::Exponential {
                initial,
                multiplier,
                max,
            } => {
                if !(multiplier.is_finite() && multiplier >= 1.0) {
                    return err("backoff_multiplier", K::MultiplierBelowOne);
                }
                if initial.is_zero() {
                    return err("backoff_initial", K::MustBePositive);
                }
                if max < initial {
                    return err("backoff_max", K::CapBelowStart);
                }
            }
        }
        if self.backoff.cap().is_zero()
            && self.jitter != Jitter::None
            && self.reconnect_tries == Tries::Unlimited
        {
            return err("reconnect_interval", K::ZeroDelayWithUnlimitedTries);
        }
        // Decorrelated jitter grows from the base (`[base, 3 × previous]`):
        // on a zero base every delay is zero.
        if self.backoff.base().is_zero()
            && self.jitter == Jitter::Decorrelated
            && self.reconnect_tries == Tries::Unlimited
        {
            return err("jitter", K::ZeroDelayWithUnlimitedTries);
        }
        for (field, t) in [
            ("connect_timeout", self.connect_timeout),
            ("socket_timeout", self.socket_timeout),
            ("response_timeout", self.response_timeout),
            ("command_timeout", self.command_timeout),
            ("buffer_timeout", self.buffer_timeout),
            ("op_deadline", self.op_deadline),
            ("extra_jitter", self.extra_jitter),
        ] {
            if t == Some(Duration::ZERO) {
                return err(field, K::MustBePositive);
            }
        }
        if let Some(q) = self.quick_reconnect {
            if q.probe < Duration::from_millis(1) {
                return err("quick_reconnect_probe", K::BelowOneMillisecond);
            }
            if q.probe_for.is_zero() {
                return err("quick_reconnect_probe_for", K::MustBePositive);
            }
        }
        if let Some(h) = self.heartbeat {
            if h.interval.is_zero() {
                return err("heartbeat_interval", K::MustBePositive);
            }
            if h.timeout.is_zero() {
                return err("heartbeat_timeout", K::MustBePositive);
            }
        }
        if self.max_op_attempts == 0 {
            return err("max_op_attempts", K::MustBePositive);
        }
        if let Some(field) = self.first_fractional_microsecond() {
            return err(field, K::FractionOfMicrosecond);
        }
        let budget_milli = match self.retry_budget {
            None => None,
            Some(b) => {
                if b.max_tokens == 0 {
                    return err("retry_budget_tokens", K::MustBePositive);
                }
                if !b.token_ratio.is_finite() {
                    return err("retry_budget_ratio", K::NotFinite);
                }
                if b.token_ratio <= 0.0 {
                    return err("retry_budget_ratio", K::MustBePositive);
                }
                if b.token_ratio > f64::from(b.max_tokens) {
                    return err("retry_budget_ratio", K::RatioAboveMaxTokens);
                }
                // Fixed point (1/1000 token) so the bucket never drifts.
                let refund = ((b.token_ratio * 1000.0) as u64).max(1);
                Some((u64::from(b.max_tokens) * 1000, refund))
            }
        };
        Ok(Config {
            b: self,
            budget_milli,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn named_choices_round_trip_and_name_the_field_on_error() {
        for j in Jitter::ALL {
            assert_eq!(j.name().parse::<Jitter>(), Ok(*j));
        }
        for i in InitialConnect::ALL {
            assert_eq!(i.name().parse::<InitialConnect>(), Ok(*i));
        }
        for o in OverflowPolicy::ALL {
            assert_eq!(o.name().parse::<OverflowPolicy>(), Ok(*o));
        }
        assert_eq!("fail_fast".parse(), Ok(InitialConnect::FailFast));
        assert_eq!("drop-oldest".parse(), Ok(OverflowPolicy::DropOldest));
        let e = "jittery".parse::<Jitter>().unwrap_err();
        assert_eq!(e.what(), "jitter");
        assert_eq!(
            alloc::format!("{e}"),
            "unknown jitter: expected none, full, equal or decorrelated"
        );
        assert!(
            "Full".parse::<Jitter>().is_err(),
            "names are case-sensitive"
        );
    }

    #[test]
    fn every_zero_delay_loop_is_refused_with_unlimited_tries() {
        let unlimited = || Config::builder().reconnect_tries(Tries::Unlimited);
        // Linear {0, +0}: every delay is zero, whatever the cap.
        let e = unlimited()
            .jitter(Jitter::None)
            .backoff(Backoff::Linear {
                initial: Duration::ZERO,
                step: Duration::ZERO,
                max: ms(500),
            })
            .build()
            .unwrap_err();
        assert_eq!(
            (e.field(), e.kind()),
            ("backoff_step", ConfigErrorKind::ZeroDelayWithUnlimitedTries)
        );
        // Decorrelated jitter on a zero base draws zero for ever.
        let e = unlimited()
            .jitter(Jitter::Decorrelated)
            .backoff(Backoff::Linear {
                initial: Duration::ZERO,
                step: ms(10),
                max: ms(500),
            })
            .build()
            .unwrap_err();
        assert_eq!(
            (e.field(), e.kind()),
            ("jitter", ConfigErrorKind::ZeroDelayWithUnlimitedTries)
        );
        // A linear backoff that only starts at zero is fine, and so is a
        // zero delay with a limited budget.
        assert!(
            unlimited()
                .jitter(Jitter::None)
                .backoff(Backoff::Linear {
                    initial: Duration::ZERO,
                    step: ms(10),
                    max: ms(500),
                })
                .build()
                .is_ok()
        );
        assert!(
            Config::builder()
                .reconnect_tries(Tries::Limited(3))
                .jitter(Jitter::Decorrelated)
                .backoff(Backoff::Linear {
                    initial: Duration::ZERO,
                    step: Duration::ZERO,
                    max: ms(500),
                })
                .build()
                .is_ok()
        );
    }

    #[test]
    fn exponential_backoff_costs_o_log_n_per_attempt_and_matches_stepping() {
        // Multiplier 1.0 never reaches the cap: attempt 10^9 used to take a
        // billion multiplications.
        let flat = Backoff::Exponential {
            initial: ms(100),
            multiplier: 1.0,
            max: ms(5000),
        };
        assert_eq!(flat.nominal(1_000_000_000), ms(100));
        assert_eq!(flat.nominal(u32::MAX), ms(100));
        // Barely above 1: grows slowly, reaches the cap eventually, never passes it.
        let slow = Backoff::Exponential {
            initial: ms(100),
            multiplier: 1.000_001,
            max: ms(5000),
        };
        let mut last = Duration::ZERO;
        for n in [1, 64, 65, 1000, 100_000, 1_000_000, 10_000_000, u32::MAX] {
            let d = slow.nominal(n);
            assert!(d >= last && d <= ms(5000), "attempt {n}: {d:?}");
            last = d;
        }
        assert_eq!(slow.nominal(u32::MAX), ms(5000));
        // Up to attempt 64 the delays are the step-by-step products.
        let usual = Backoff::Exponential {
            initial: ms(100),
            multiplier: 2.0,
            max: ms(5000),
        };
        assert_eq!(usual.nominal(1), ms(100));
        assert_eq!(usual.nominal(3), ms(400));
        assert_eq!(usual.nominal(7), ms(5000));
        assert_eq!(usual.nominal(1_000_000), ms(5000));
    }

    #[test]
    fn presets_are_valid_and_named() {
        for &p in Preset::ALL {
            assert!(p.builder().build().is_ok(), "{p}");
            assert_eq!(p.name().parse::<Preset>(), Ok(p));
        }
        assert_eq!(
            "mongodb_legacy".parse::<Preset>(),
            Ok(Preset::MongodbLegacy)
        );
        let e = "nope".parse::<Preset>().unwrap_err();
        assert_eq!(
            alloc::format!("{e}"),
            "unknown preset: expected one of mongodb-legacy, mongoose, fail-fast, recommended, ioredis-v5, ioredis-v6, lettuce, redis-rs-connection-manager, fred-default, fred-reconnect-policy, mongodb-node"
        );
        let legacy = Config::mongodb_legacy();
        assert!(legacy.auto_reconnect());
        assert_eq!(legacy.buffer(), BufferPolicy::Unbounded);
        assert_eq!(legacy.reconnect_tries(), Tries::Limited(30));
        assert_eq!(legacy.backoff(), Backoff::Constant(ms(1000)));
        assert_eq!(legacy.jitter(), Jitter::None);
        assert_eq!(Config::mongoose().buffer_timeout(), Some(ms(10_000)));
        assert_eq!(Config::fail_fast().buffer(), BufferPolicy::Disabled);
        let rec = Config::recommended();
        assert!(matches!(rec.buffer(), BufferPolicy::Bounded { .. }));
        assert_eq!(rec.reconnect_tries(), Tries::Unlimited);
        assert_eq!(rec.jitter(), Jitter::Full);
        assert!(rec.heartbeat().is_some() && rec.retry_budget().is_some());
        assert_eq!(Config::default(), rec);
    }

    #[test]
    fn bad_configs_name_the_field_and_reason() {
        let cases: [(ConfigBuilder, &str, ConfigErrorKind); 12] = [
            (
                Config::builder()
                    .reconnect_tries(Tries::Unlimited)
                    .reconnect_interval(Duration::ZERO),
                "reconnect_interval",
                ConfigErrorKind::ZeroDelayWithUnlimitedTries,
            ),
            (
                Config::builder().backoff(Backoff::Exponential {
                    initial: ms(500),
                    multiplier: 2.0,
                    max: ms(100),
                }),
                "backoff_max",
                ConfigErrorKind::CapBelowStart,
            ),
            (
                Config::builder().backoff(Backoff::Exponential {
                    initial: ms(100),
                    multiplier: 0.5,
                    max: ms(1000),
                }),
                "backoff_multiplier",
                ConfigErrorKind::MultiplierBelowOne,
            ),
            (
                Config::builder().backoff(Backoff::Exponential {
                    initial: ms(100),
                    multiplier: f64::NAN,
                    max: ms(1000),
                }),
                "backoff_multiplier",
                ConfigErrorKind::MultiplierBelowOne,
            ),
            (
                Config::builder().backoff(Backoff::Linear {
                    initial: ms(100),
                    step: ms(10),
                    max: ms(50),
                }),
                "backoff_max",
                ConfigErrorKind::CapBelowStart,
            ),
            (
                Config::builder().buffer_max_entries(-2),
                "buffer_max_entries",
                ConfigErrorKind::BufferEntriesBelowMinusOne,
            ),
            (
                Config::builder().connect_timeout(Some(Duration::ZERO)),
                "connect_timeout",
                ConfigErrorKind::MustBePositive,
            ),
            (
                Config::builder().heartbeat(Some(Heartbeat {
                    interval: ms(10),
                    timeout: Duration::ZERO,
                })),
                "heartbeat_timeout",
                ConfigErrorKind::MustBePositive,
            ),
            (
                Config::builder().max_op_attempts(0),
                "max_op_attempts",
                ConfigErrorKind::MustBePositive,
            ),
            (
                Config::builder().endpoints(0),
                "endpoints",
                ConfigErrorKind::MustBePositive,
            ),
            (
                Config::builder().retry_budget(Some(RetryBudget {
                    max_tokens: 10,
                    token_ratio: -1.0,
                })),
                "retry_budget_ratio",
                ConfigErrorKind::MustBePositive,
            ),
            (
                Config::builder().buffer(BufferPolicy::Bounded {
                    max: 0,
                    overflow: OverflowPolicy::FailAll,
                }),
                "buffer_max_entries",
                ConfigErrorKind::MustBePositive,
            ),
        ];
        for (builder, field, kind) in cases {
            let e = builder.build().unwrap_err();
            assert_eq!((e.field(), e.kind()), (field, kind), "{e}");
            let text = alloc::format!("{e}");
            assert!(
                text.starts_with(&alloc::format!("invalid `{field}`: ")),
                "{text}"
            );
        }
        // Limited tries with a zero interval is fine: it cannot spin for ever.
        assert!(
            Config::builder()
                .reconnect_tries(Tries::Limited(3))
                .reconnect_interval(Duration::ZERO)
                .build()
                .is_ok()
        );
    }

    #[test]
    fn legacy_buffer_mapping() {
        let b = |n| {
            Config::builder()
                .buffer_max_entries(n)
                .build()
                .unwrap()
                .buffer()
        };
        assert_eq!(b(-1), BufferPolicy::Unbounded);
        assert_eq!(b(0), BufferPolicy::Disabled);
        assert_eq!(
            b(5),
            BufferPolicy::Bounded {
                max: 5,
                overflow: OverflowPolicy::FailAll
            }
        );
    }

    #[test]
    fn backoff_nominal_delays() {
        let lin = Backoff::Linear {
            initial: ms(100),
            step: ms(50),
            max: ms(220),
        };
        assert_eq!(
            [1, 2, 3, 4].map(|n| lin.nominal(n)),
            [ms(100), ms(150), ms(200), ms(220)]
        );
        let exp = Backoff::Exponential {
            initial: ms(100),
            multiplier: 2.0,
            max: ms(1000),
        };
        assert_eq!(
            [1, 2, 3, 4, 5, 60].map(|n| exp.nominal(n)),
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        assert_eq!(Backoff::Constant(ms(7)).nominal(u32::MAX), ms(7));
    }
}
