//! The configuration as key/value pairs: the keys of a timeline's
//! `[config]` table, which are also the keys of a flight recorder trace's
//! header. [`ConfigKeys`] is the one mapping between those keys and
//! [`ConfigBuilder`]: the simulator's timeline parser and the trace
//! reader both build a [`Config`] through it, and
//! [`ConfigKeys::from_config`] writes a config back out as keys that build
//! the same config.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;
use core::time::Duration;

use crate::config::{
    Backoff, BufferPolicy, Config, ConfigBuilder, GiveUp, Heartbeat, InitialConnect, Jitter,
    OverflowPolicy, Preset, QuickReconnect, RetryBudget, Tries, UnknownName,
};

/// The longest duration a key may hold: 100 years (far from the end of the
/// machine's microsecond clock, about 584,000 years, so no sum of such
/// durations can saturate it).
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600 + 25 * 24 * 3600);

fn too_large(s: impl fmt::Display) -> String {
    format!("duration `{s}` is too large: durations must be at most 100 years")
}

/// Parses `"250ms"`, `"1.5s"`, `"2m"`, `"1h"`, `"10us"` into a duration.
///
/// The number is a non-negative decimal; the unit is one of `us` (or `µs`),
/// `ms`, `s`, `m` (or `min`), `h`. Precision below one microsecond is
/// refused, and so is anything above [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.starts_with('-') {
        return Err(format!(
            "duration `{s}` is negative; durations must be >= 0"
        ));
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("duration `{s}` has no unit: expected e.g. \"250ms\", \"1.5s\", \"2m\" (or an integer number of milliseconds)"))?;
    let (num, unit) = s.split_at(split);
    let unit_us: u128 = match unit {
        "us" | "µs" => 1,
        "ms" => 1_000,
        "s" => 1_000_000,
        "m" | "min" => 60_000_000,
        "h" => 3_600_000_000,
        _ => {
            return Err(format!(
                "duration `{s}` has an unknown unit `{unit}`: expected us, ms, s, m or h"
            ));
        }
    };
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(format!("duration `{s}` is not a number followed by a unit"));
    }
    let int_v: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| too_large(s))?
    };
    let mut frac_us: u128 = 0;
    let mut scale = unit_us;
    for c in frac.chars() {
        let digit = u128::from(c.to_digit(10).unwrap_or(0));
        if scale % 10 != 0 {
            if digit != 0 {
                return Err(format!("duration `{s}` is more precise than a microsecond"));
            }
            continue;
        }
        scale /= 10;
        frac_us += digit * scale;
    }
    let total = int_v
        .checked_mul(unit_us)
        .and_then(|v| v.checked_add(frac_us))
        .filter(|v| *v <= MAX_DURATION.as_micros())
        .ok_or_else(|| too_large(s))?;
    Ok(Duration::from_micros(total as u64))
}

/// A duration as [`parse_duration`] reads it back exactly: in the largest
/// of `h`, `m`, `s`, `ms`, `us` that divides it (`"0ms"` for zero).
pub fn format_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us == 0 {
        return "0ms".to_string();
    }
    for (unit, n) in [
        ("h", 3_600_000_000u128),
        ("m", 60_000_000),
        ("s", 1_000_000),
        ("ms", 1_000),
    ] {
        if us % n == 0 {
            return format!("{}{unit}", us / n);
        }
    }
    format!("{us}us")
}

/// A value of a config key, as a file holds it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ConfigValue {
    /// `true` / `false`.
    Bool(bool),
    /// An integer (for a duration key: milliseconds).
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// Text: a name (`"exponential"`), a duration (`"250ms"`), `"unlimited"`.
    Text(String),
}

impl fmt::Display for ConfigValue {
    /// As TOML and JSON both read it: `true`, `12`, `2.0`, `"250ms"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigValue::Bool(b) => write!(f, "{b}"),
            ConfigValue::Int(n) => write!(f, "{n}"),
            ConfigValue::Float(x) => write!(f, "{x:?}"),
            ConfigValue::Text(s) => {
                f.write_str("\"")?;
                for c in s.chars() {
                    match c {
                        '"' => f.write_str("\\\"")?,
                        '\\' => f.write_str("\\\\")?,
                        c if c.is_control() => write!(f, "\\u{:04x}", c as u32)?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("\"")
            }
        }
    }
}

/// A key that could not be read or a set of keys that does not make a
/// valid config: which key (or, for a value the builder refused, the
/// [`ConfigError::field`](crate::ConfigError::field) it names), and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyError {
    /// The key (or builder field) at fault; `""` when none is.
    pub key: &'static str,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl core::error::Error for KeyError {}

/// The config keys, each `None` when not given. Building starts from a
/// preset (the `preset` key, or [`Preset::MongodbLegacy`]) and applies
/// every key given, with the timeline file's rules (documented in the
/// README's timeline format): `0` turns a timeout off, `backoff_*` keys tune
/// the preset's backoff shape unless `backoff` names one, and so on.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
#[allow(missing_docs)] // each field is the key of the same name
pub struct ConfigKeys {
    pub preset: Option<String>,
    pub auto_reconnect: Option<bool>,
    pub buffer_max_entries: Option<i64>,
    pub overflow: Option<String>,
    pub reconnect_tries: Option<Tries>,
    pub reconnect_interval: Option<Duration>,
    pub backoff: Option<String>,
    pub backoff_initial: Option<Duration>,
    pub backoff_step: Option<Duration>,
    pub backoff_multiplier: Option<f64>,
    pub backoff_max: Option<Duration>,
    pub jitter: Option<String>,
    pub require_primary: Option<bool>,
    pub give_up: Option<String>,
    pub cool_down: Option<Duration>,
    pub quick_reconnect: Option<bool>,
    pub probe: Option<Duration>,
    pub probe_for: Option<Duration>,
    pub initial_connect: Option<String>,
    pub connect_timeout: Option<Duration>,
    pub socket_timeout: Option<Duration>,
    pub heartbeat_interval: Option<Duration>,
    pub heartbeat_timeout: Option<Duration>,
    pub response_timeout: Option<Duration>,
    pub command_timeout: Option<Duration>,
    pub legacy_socket_timeout: Option<Duration>,
    pub connected_on_reconnect: Option<bool>,
    pub buffer_timeout: Option<Duration>,
    pub op_deadline: Option<Duration>,
    pub max_op_attempts: Option<u32>,
    pub retry_lost: Option<bool>,
    pub extra_jitter: Option<Duration>,
    pub fail_unreachable_deadlines: Option<bool>,
    /// `Some(None)`: `"never"`.
    pub fail_buffered_after: Option<Option<u32>>,
    pub retry_budget_tokens: Option<u32>,
    pub retry_budget_ratio: Option<f64>,
}

/// Every key, in the order [`ConfigKeys::entries`] lists them.
pub const KEYS: &[&str] = &[
    "preset",
    "auto_reconnect",
    "buffer_max_entries",
    "overflow",
    "reconnect_tries",
    "reconnect_interval",
    "backoff",
    "backoff_initial",
    "backoff_step",
    "backoff_multiplier",
    "backoff_max",
    "jitter",
    "require_primary",
    "give_up",
    "cool_down",
    "quick_reconnect",
    "probe",
    "probe_for",
    "initial_connect",
    "connect_timeout",
    "socket_timeout",
    "heartbeat_interval",
    "heartbeat_timeout",
    "response_timeout",
    "command_timeout",
    "legacy_socket_timeout",
    "connected_on_reconnect",
    "buffer_timeout",
    "op_deadline",
    "max_op_attempts",
    "retry_lost",
    "fail_buffered_after",
    "extra_jitter",
    "fail_unreachable_deadlines",
    "retry_budget_tokens",
    "retry_budget_ratio",
];

fn err(key: &'static str, message: impl Into<String>) -> KeyError {
    KeyError {
        key,
        message: message.into(),
    }
}

fn name<T: FromStr<Err = UnknownName>>(key: &'static str, v: &str) -> Result<T, KeyError> {
    v.parse::<T>().map_err(|e| {
        err(
            key,
            format!("unknown {} `{v}`: expected {}", e.what(), e.expected()),
        )
    })
}

/// `0` turns a timeout off.
fn off(d: Option<Duration>) -> Option<Option<Duration>> {
    d.map(|d| (!d.is_zero()).then_some(d))
}

impl ConfigKeys {
    /// No key given.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` from a value as a file holds it. Durations are text
    /// (`"250ms"`) or an integer number of milliseconds; `reconnect_tries`
    /// is an integer or `"unlimited"`.
    pub fn set(&mut self, key: &str, value: &ConfigValue) -> Result<(), KeyError> {
        let Some(&k) = KEYS.iter().find(|k| **k == key) else {
            return Err(err("", format!("unknown config key `{key}`")));
        };
        let kind = |what: &str| err(k, format!("`{k}` must be {what}, found {value}"));
        let text = || match value {
            ConfigValue::Text(s) => Ok(s.clone()),
            _ => Err(kind("a string")),
        };
        let boolean = || match value {
            ConfigValue::Bool(b) => Ok(*b),
            _ => Err(kind("true or false")),
        };
        let duration = || match value {
            ConfigValue::Text(s) => parse_duration(s).map_err(|m| err(k, m)),
            ConfigValue::Int(n) => u64::try_from(*n)
                .ok()
                .map(Duration::from_millis)
                .filter(|d| *d <= MAX_DURATION)
                .ok_or_else(|| err(k, format!("duration {n} is out of range"))),
            _ => Err(kind(
                "a duration (\"250ms\", or an integer number of milliseconds)",
            )),
        };
        let float = || match value {
            ConfigValue::Float(x) => Ok(*x),
            ConfigValue::Int(n) => Ok(*n as f64),
            _ => Err(kind("a number")),
        };
        let u32_ = || match value {
            ConfigValue::Int(n) => u32::try_from(*n).map_err(|_| {
                err(
                    k,
                    format!("`{k}` {n} is out of range: expected 0..=4294967295"),
                )
            }),
            _ => Err(kind("a non-negative integer")),
        };
        match k {
            "preset" => self.preset = Some(text()?),
            "auto_reconnect" => self.auto_reconnect = Some(boolean()?),
            "buffer_max_entries" => match value {
                ConfigValue::Int(n) => self.buffer_max_entries = Some(*n),
                _ => return Err(kind("an integer")),
            },
            "overflow" => self.overflow = Some(text()?),
            "reconnect_tries" => {
                self.reconnect_tries = Some(match value {
                    ConfigValue::Text(s) if s == "unlimited" => Tries::Unlimited,
                    ConfigValue::Int(n) => Tries::Limited(u32::try_from(*n).map_err(|_| {
                        err(k, format!("reconnect_tries {n} is out of range: expected 0..=4294967295 or \"unlimited\""))
                    })?),
                    _ => return Err(kind("an integer or \"unlimited\"")),
                });
            }
            "reconnect_interval" => self.reconnect_interval = Some(duration()?),
            "backoff" => self.backoff = Some(text()?),
            "backoff_initial" => self.backoff_initial = Some(duration()?),
            "backoff_step" => self.backoff_step = Some(duration()?),
            "backoff_multiplier" => self.backoff_multiplier = Some(float()?),
            "backoff_max" => self.backoff_max = Some(duration()?),
            "jitter" => self.jitter = Some(text()?),
            "require_primary" => self.require_primary = Some(boolean()?),
            "give_up" => self.give_up = Some(text()?),
            "cool_down" => self.cool_down = Some(duration()?),
            "quick_reconnect" => self.quick_reconnect = Some(boolean()?),
            "probe" => self.probe = Some(duration()?),
            "probe_for" => self.probe_for = Some(duration()?),
            "initial_connect" => self.initial_connect = Some(text()?),
            "connect_timeout" => self.connect_timeout = Some(duration()?),
            "socket_timeout" => self.socket_timeout = Some(duration()?),
            "heartbeat_interval" => self.heartbeat_interval = Some(duration()?),
            "heartbeat_timeout" => self.heartbeat_timeout = Some(duration()?),
            "response_timeout" => self.response_timeout = Some(duration()?),
            "command_timeout" => self.command_timeout = Some(duration()?),
            "legacy_socket_timeout" => self.legacy_socket_timeout = Some(duration()?),
            "connected_on_reconnect" => self.connected_on_reconnect = Some(boolean()?),
            "buffer_timeout" => self.buffer_timeout = Some(duration()?),
            "op_deadline" => self.op_deadline = Some(duration()?),
            "max_op_attempts" => self.max_op_attempts = Some(u32_()?),
            "retry_lost" => self.retry_lost = Some(boolean()?),
            "extra_jitter" => self.extra_jitter = Some(duration()?),
            "fail_unreachable_deadlines" => self.fail_unreachable_deadlines = Some(boolean()?),
            "fail_buffered_after" => {
                self.fail_buffered_after = Some(match value {
                    ConfigValue::Text(s) if s == "never" => None,
                    ConfigValue::Int(_) => Some(u32_()?),
                    _ => return Err(kind("a non-negative integer or \"never\"")),
                });
            }
            "retry_budget_tokens" => self.retry_budget_tokens = Some(u32_()?),
            "retry_budget_ratio" => self.retry_budget_ratio = Some(float()?),
            _ => return Err(err("", format!("unknown config key `{key}`"))),
        }
        Ok(())
    }

    /// The keys given, in [`KEYS`] order, with their values as a file
    /// holds them (durations as [`format_duration`] text).
    pub fn entries(&self) -> Vec<(&'static str, ConfigValue)> {
        let t = |s: &Option<String>| s.clone().map(ConfigValue::Text);
        let b = |v: Option<bool>| v.map(ConfigValue::Bool);
        let d = |v: Option<Duration>| v.map(|d| ConfigValue::Text(format_duration(d)));
        let f = |v: Option<f64>| v.map(ConfigValue::Float);
        let n = |v: Option<u32>| v.map(|n| ConfigValue::Int(i64::from(n)));
        let values = [
            t(&self.preset),
            b(self.auto_reconnect),
            self.buffer_max_entries.map(ConfigValue::Int),
            t(&self.overflow),
            self.reconnect_tries.map(|r| match r {
                Tries::Unlimited => ConfigValue::Text("unlimited".into()),
                Tries::Limited(n) => ConfigValue::Int(i64::from(n)),
            }),
            d(self.reconnect_interval),
            t(&self.backoff),
            d(self.backoff_initial),
            d(self.backoff_step),
            f(self.backoff_multiplier),
            d(self.backoff_max),
            t(&self.jitter),
            b(self.require_primary),
            t(&self.give_up),
            d(self.cool_down),
            b(self.quick_reconnect),
            d(self.probe),
            d(self.probe_for),
            t(&self.initial_connect),
            d(self.connect_timeout),
            d(self.socket_timeout),
            d(self.heartbeat_interval),
            d(self.heartbeat_timeout),
            d(self.response_timeout),
            d(self.command_timeout),
            d(self.legacy_socket_timeout),
            b(self.connected_on_reconnect),
            d(self.buffer_timeout),
            d(self.op_deadline),
            n(self.max_op_attempts),
            b(self.retry_lost),
            self.fail_buffered_after.map(|v| match v {
                None => ConfigValue::Text("never".into()),
                Some(n) => ConfigValue::Int(i64::from(n)),
            }),
            d(self.extra_jitter),
            b(self.fail_unreachable_deadlines),
            n(self.retry_budget_tokens),
            f(self.retry_budget_ratio),
        ];
        KEYS.iter()
            .zip(values)
            .filter_map(|(k, v)| v.map(|v| (*k, v)))
            .collect()
    }

    /// Every key a config is made of, given explicitly (no preset): built
    /// with [`build`](Self::build) and the same endpoint count, they give
    /// back the same config.
    pub fn from_config(c: &Config) -> ConfigKeys {
        let zero = |d: Option<Duration>| Some(d.unwrap_or(Duration::ZERO));
        let (buffer_max_entries, overflow) = match c.buffer() {
            BufferPolicy::Unbounded => (-1, None),
            BufferPolicy::Disabled => (0, None),
            BufferPolicy::Bounded { max, overflow } => (
                i64::try_from(max).unwrap_or(i64::MAX),
                Some(overflow.name().to_string()),
            ),
        };
        let mut k = ConfigKeys {
            auto_reconnect: Some(c.auto_reconnect()),
            buffer_max_entries: Some(buffer_max_entries),
            overflow,
            reconnect_tries: Some(c.reconnect_tries()),
            jitter: Some(c.jitter().name().to_string()),
            require_primary: Some(c.require_primary()),
            initial_connect: Some(c.initial_connect().name().to_string()),
            connect_timeout: zero(c.connect_timeout()),
            socket_timeout: zero(c.socket_timeout()),
            heartbeat_interval: Some(c.heartbeat().map_or(Duration::ZERO, |h| h.interval)),
            heartbeat_timeout: c.heartbeat().map(|h| h.timeout),
            response_timeout: zero(c.response_timeout()),
            command_timeout: zero(c.command_timeout()),
            connected_on_reconnect: Some(c.connected_on_reconnect()),
            buffer_timeout: zero(c.buffer_timeout()),
            op_deadline: zero(c.op_deadline()),
            max_op_attempts: Some(c.max_op_attempts()),
            retry_lost: Some(c.retry_lost()),
            fail_buffered_after: Some(c.fail_buffered_after()),
            extra_jitter: zero(c.extra_jitter()),
            fail_unreachable_deadlines: Some(c.fail_unreachable_deadlines()),
            retry_budget_tokens: Some(c.retry_budget().map_or(0, |r| r.max_tokens)),
            retry_budget_ratio: c.retry_budget().map(|r| r.token_ratio),
            ..ConfigKeys::default()
        };
        match c.backoff() {
            Backoff::Constant(d) => {
                k.backoff = Some("constant".into());
                k.reconnect_interval = Some(d);
            }
            Backoff::Linear { initial, step, max } => {
                k.backoff = Some("linear".into());
                k.backoff_initial = Some(initial);
                k.backoff_step = Some(step);
                k.backoff_max = Some(max);
            }
            Backoff::Exponential {
                initial,
                multiplier,
                max,
            } => {
                k.backoff = Some("exponential".into());
                k.backoff_initial = Some(initial);
                k.backoff_multiplier = Some(multiplier);
                k.backoff_max = Some(max);
            }
        }
        match c.give_up() {
            GiveUp::CoolDown(d) => {
                k.give_up = Some("cool-down".into());
                k.cool_down = Some(d);
            }
            _ => k.give_up = Some("terminal".into()),
        }
        match c.quick_reconnect() {
            Some(q) => {
                k.quick_reconnect = Some(true);
                k.probe = Some(q.probe);
                k.probe_for = Some(q.probe_for);
            }
            None => k.quick_reconnect = Some(false),
        }
        k
    }

    /// The preset building starts from: `preset_override`, else the
    /// `preset` key, else [`Preset::MongodbLegacy`].
    pub fn preset(&self, preset_override: Option<Preset>) -> Result<Preset, KeyError> {
        match (preset_override, &self.preset) {
            (Some(p), _) => Ok(p),
            (None, None) => Ok(Preset::MongodbLegacy),
            (None, Some(p)) => name::<Preset>("preset", p),
        }
    }

    /// Builds the config for `endpoints` endpoints, on top of the preset
    /// ([`preset`](Self::preset)). The error names the key at fault.
    pub fn build(
        &self,
        preset_override: Option<Preset>,
        endpoints: usize,
    ) -> Result<Config, KeyError> {
        let preset = self.preset(preset_override)?;
        let base = preset.builder();
        let start = base.clone().build().expect("presets are valid");
        let mut b: ConfigBuilder = base.endpoints(endpoints);
        if let Some(v) = self.auto_reconnect {
            b = b.auto_reconnect(v);
        }
        if let Some(v) = self.buffer_max_entries {
            b = b.buffer_max_entries(v);
        }
        if let Some(v) = &self.overflow {
            let policy: OverflowPolicy = name("overflow", v)?;
            let probe = b
                .clone()
                .build()
                .map_err(|e| err("overflow", e.to_string()))?;
            match probe.buffer() {
                BufferPolicy::Bounded { max, .. } => {
                    b = b.buffer(BufferPolicy::Bounded {
                        max,
                        overflow: policy,
                    });
                }
                _ => {
                    return Err(err(
                        "overflow",
                        "`overflow` needs a bounded buffer (buffer_max_entries > 0)",
                    ));
                }
            }
        }
        if let Some(v) = self.reconnect_tries {
            b = b.reconnect_tries(v);
        }
        // Backoff: `backoff` picks the shape; without it, `backoff_*` keys
        // tune the preset's shape, and `reconnect_interval` alone is the
        // legacy constant interval (with linear/exponential, the initial
        // delay). A `backoff_*` key is refused, naming the key, on a shape
        // it does not apply to.
        let cur = start.backoff();
        let tunes = self.backoff_initial.is_some()
            || self.backoff_step.is_some()
            || self.backoff_multiplier.is_some()
            || self.backoff_max.is_some();
        let shape = match self.backoff.as_deref() {
            None if !tunes => "constant",
            None => match cur {
                Backoff::Constant(_) => "constant",
                Backoff::Linear { .. } => "linear",
                Backoff::Exponential { .. } => "exponential",
            },
            Some(k @ ("constant" | "linear" | "exponential")) => k,
            Some(other) => {
                return Err(err(
                    "backoff",
                    format!("unknown backoff `{other}`: expected constant, linear or exponential"),
                ));
            }
        };
        let misplaced = [
            (
                "backoff_initial",
                self.backoff_initial.is_some(),
                shape == "constant",
            ),
            (
                "backoff_step",
                self.backoff_step.is_some(),
                shape != "linear",
            ),
            (
                "backoff_multiplier",
                self.backoff_multiplier.is_some(),
                shape != "exponential",
            ),
            (
                "backoff_max",
                self.backoff_max.is_some(),
                shape == "constant",
            ),
        ];
        for (key, given, wrong) in misplaced {
            if given && wrong {
                return Err(err(
                    key,
                    format!(
                        "`{key}` does not apply to a {shape} backoff (set `backoff` to the shape it tunes)"
                    ),
                ));
            }
        }
        let initial = self
            .backoff_initial
            .or(self.reconnect_interval)
            .unwrap_or(cur.base());
        let max = self.backoff_max.unwrap_or(cur.cap());
        let backoff = match shape {
            "constant" => self.reconnect_interval.map(Backoff::Constant).or_else(|| {
                self.backoff
                    .is_some()
                    .then_some(Backoff::Constant(cur.base()))
            }),
            "linear" => Some(Backoff::Linear {
                initial,
                step: self.backoff_step.unwrap_or(match cur {
                    Backoff::Linear { step, .. } => step,
                    _ => cur.base(),
                }),
                max,
            }),
            _ => Some(Backoff::Exponential {
                initial,
                multiplier: self.backoff_multiplier.unwrap_or(match cur {
                    Backoff::Exponential { multiplier, .. } => multiplier,
                    _ => 2.0,
                }),
                max,
            }),
        };
        if let Some(bk) = backoff {
            b = b.backoff(bk);
        }
        if let Some(v) = &self.jitter {
            b = b.jitter(name::<Jitter>("jitter", v)?);
        }
        if let Some(v) = &self.initial_connect {
            b = b.initial_connect(name::<InitialConnect>("initial_connect", v)?);
        }
        if let Some(t) = off(self.connect_timeout) {
            b = b.connect_timeout(t);
        }
        if let Some(t) = off(self.socket_timeout) {
            b = b.socket_timeout(t);
        }
        if self.heartbeat_interval.is_some() || self.heartbeat_timeout.is_some() {
            let cur = start.heartbeat();
            let interval = off(self.heartbeat_interval).unwrap_or(cur.map(|h| h.interval));
            let timeout = self
                .heartbeat_timeout
                .or(cur.map(|h| h.timeout))
                .unwrap_or(Duration::from_secs(1));
            b = b.heartbeat(interval.map(|interval| Heartbeat { interval, timeout }));
        }
        if let Some(t) = off(self.response_timeout) {
            b = b.response_timeout(t);
        }
        if let Some(t) = off(self.command_timeout) {
            b = b.command_timeout(t);
        }
        if let Some(d) = self.legacy_socket_timeout {
            if self.socket_timeout.is_some() || self.response_timeout.is_some() {
                let clash = if self.socket_timeout.is_some() {
                    "socket_timeout"
                } else {
                    "response_timeout"
                };
                return Err(err(
                    clash,
                    "`legacy_socket_timeout` sets both `socket_timeout` and `response_timeout`: give it alone",
                ));
            }
            if d.is_zero() {
                return Err(err(
                    "legacy_socket_timeout",
                    "`legacy_socket_timeout` must be greater than zero (leave it out for none)",
                ));
            }
            b = b.legacy_socket_timeout(d);
        }
        if let Some(v) = self.connected_on_reconnect {
            b = b.connected_on_reconnect(v);
        }
        if let Some(t) = off(self.buffer_timeout) {
            b = b.buffer_timeout(t);
        }
        if let Some(t) = off(self.op_deadline) {
            b = b.op_deadline(t);
        }
        if let Some(v) = self.max_op_attempts {
            b = b.max_op_attempts(v);
        }
        if let Some(v) = self.retry_lost {
            b = b.retry_lost(v);
        }
        if let Some(v) = self.fail_buffered_after {
            b = b.fail_buffered_after(v);
        }
        if let Some(t) = off(self.extra_jitter) {
            b = b.extra_jitter(t);
        }
        if let Some(v) = self.fail_unreachable_deadlines {
            b = b.fail_unreachable_deadlines(v);
        }
        if let Some(v) = self.require_primary {
            b = b.require_primary(v);
        }
        if let Some(policy) = self.give_up_policy()? {
            b = b.give_up(policy);
        }
        if let Some(q) = self.quick(start.quick_reconnect())? {
            b = b.quick_reconnect(q);
        }
        if self.retry_budget_tokens.is_some() || self.retry_budget_ratio.is_some() {
            let cur = start.retry_budget();
            let tokens = self
                .retry_budget_tokens
                .or(cur.map(|r| r.max_tokens))
                .unwrap_or(10);
            let ratio = self
                .retry_budget_ratio
                .or(cur.map(|r| r.token_ratio))
                .unwrap_or(0.1);
            b = b.retry_budget((tokens > 0).then_some(RetryBudget {
                max_tokens: tokens,
                token_ratio: ratio,
            }));
        }
        b.build().map_err(|e| err(e.field(), e.to_string()))
    }

    /// `give_up = "terminal" | "cool-down"` and `cool_down = "<duration>"`
    /// (the pause; alone, it means `give_up = "cool-down"`). `None`: the
    /// preset's.
    fn give_up_policy(&self) -> Result<Option<GiveUp>, KeyError> {
        if self.cool_down.is_some_and(|d| d.is_zero()) {
            return Err(err(
                "cool_down",
                "`cool_down` must be greater than zero (for no cool-down, leave it out: the give-up is then terminal)",
            ));
        }
        match self.give_up.as_deref() {
            None => Ok(self.cool_down.map(GiveUp::CoolDown)),
            Some(v) => match (v, self.cool_down) {
                ("terminal", None) => Ok(Some(GiveUp::Terminal)),
                ("terminal", Some(_)) => Err(err(
                    "cool_down",
                    "`cool_down` does not apply to `give_up = \"terminal\"` (set `give_up = \"cool-down\"`, or leave `give_up` out)",
                )),
                ("cool-down", Some(d)) => Ok(Some(GiveUp::CoolDown(d))),
                ("cool-down", None) => Err(err(
                    "give_up",
                    "`give_up = \"cool-down\"` needs `cool_down = \"<duration>\"` (the pause before reconnecting resumes)",
                )),
                (other, _) => Err(err(
                    "give_up",
                    format!("unknown give_up `{other}`: expected terminal or cool-down"),
                )),
            },
        }
    }

    /// `quick_reconnect = true | false`, `probe` and `probe_for` (either
    /// alone turns them on, the other from the preset or 100 ms / 30 s).
    /// `None`: the preset's.
    fn quick(
        &self,
        preset: Option<QuickReconnect>,
    ) -> Result<Option<Option<QuickReconnect>>, KeyError> {
        let tuned = if self.probe.is_some() {
            Some("probe")
        } else if self.probe_for.is_some() {
            Some("probe_for")
        } else {
            None
        };
        if let (Some(false), Some(key)) = (self.quick_reconnect, tuned) {
            return Err(err(
                key,
                "`probe`/`probe_for` do not apply with `quick_reconnect = false`",
            ));
        }
        let on = match (self.quick_reconnect, tuned) {
            (Some(on), _) => on,
            (None, Some(_)) => true,
            (None, None) => return Ok(None),
        };
        if !on {
            return Ok(Some(None));
        }
        let base = preset.unwrap_or(QuickReconnect {
            probe: Duration::from_millis(100),
            probe_for: Duration::from_secs(30),
        });
        Ok(Some(Some(QuickReconnect {
            probe: self.probe.unwrap_or(base.probe),
            probe_for: self.probe_for.unwrap_or(base.probe_for),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(c: &Config) {
        let keys = ConfigKeys::from_config(c);
        // Through the text form too.
        let mut again = ConfigKeys::new();
        for (k, v) in keys.entries() {
            again.set(k, &v).unwrap();
        }
        assert_eq!(again, keys);
        for p in Preset::ALL {
            let built = keys.build(Some(*p), c.endpoints()).unwrap();
            assert_eq!(&built, c, "from preset {p}");
        }
    }

    #[test]
    fn every_preset_round_trips() {
        for p in Preset::ALL {
            round_trip(&p.builder().endpoints(3).build().unwrap());
        }
    }

    #[test]
    fn variants_round_trip() {
        let ms = Duration::from_millis;
        let b = Preset::Recommended.builder();
        for c in [
            b.clone().buffer_max_entries(5),
            b.clone().buffer(BufferPolicy::Bounded {
                max: 7,
                overflow: OverflowPolicy::DropOldest,
            }),
            b.clone()
                .buffer_max_entries(0)
                .reconnect_tries(Tries::Limited(4)),
            b.clone().backoff(Backoff::Linear {
                initial: ms(10),
                step: Duration::from_micros(1500),
                max: ms(900),
            }),
            b.clone().backoff(Backoff::Exponential {
                initial: ms(3),
                multiplier: 1.7,
                max: Duration::from_secs(61),
            }),
            b.clone()
                .give_up(GiveUp::CoolDown(ms(2500)))
                .quick_reconnect(None),
            b.clone()
                .heartbeat(None)
                .retry_budget(Some(RetryBudget {
                    max_tokens: 3,
                    token_ratio: 0.3,
                }))
                .legacy_socket_timeout(ms(70))
                .command_timeout(Some(ms(9)))
                .op_deadline(Some(ms(11)))
                .buffer_timeout(Some(ms(12))),
        ] {
            round_trip(&c.build().unwrap());
        }
    }

    #[test]
    fn durations_format_and_parse_back() {
        for us in [
            0u64,
            1,
            999,
            1000,
            1500,
            60_000_000,
            3_600_000_000,
            90_061_000_001,
        ] {
            let d = Duration::from_micros(us);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{us}");
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
    }

    #[test]
    fn errors_name_the_key() {
        let mut k = ConfigKeys::new();
        assert_eq!(
            k.set("nope", &ConfigValue::Bool(true)).unwrap_err().message,
            "unknown config key `nope`"
        );
        let e = k
            .set("connect_timeout", &ConfigValue::Bool(true))
            .unwrap_err();
        assert_eq!(e.key, "connect_timeout");
        k.set("jitter", &ConfigValue::Text("wobbly".into()))
            .unwrap();
        let e = k.build(None, 1).unwrap_err();
        assert_eq!(e.key, "jitter");
        assert!(e.message.contains("unknown jitter `wobbly`"), "{e}");
    }

    #[test]
    fn values_print_as_toml_and_json_read_them() {
        assert_eq!(ConfigValue::Float(2.0).to_string(), "2.0");
        assert_eq!(
            ConfigValue::Text("a\"b\n".into()).to_string(),
            "\"a\\\"b\\u000a\""
        );
    }
}
