//! The timeline format: parsing, validation and error positions.

use core::fmt;
use core::ops::Range;
use core::time::Duration;
use std::collections::BTreeMap;

use redial_core::{Config, ConfigKeys, Preset, Tries};
use serde::Deserialize;
use toml::Spanned;

use crate::duration::Dur;

/// A bad timeline: where (file, 1-based line and column) and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineError {
    /// The file name given to [`Timeline::parse`].
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for TimelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path, self.line, self.column, self.message
        )
    }
}

impl std::error::Error for TimelineError {}

/// 1-based (line, column) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut start = offset;
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

struct Ctx<'a> {
    text: &'a str,
    path: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> TimelineError {
        let (line, column) = line_col(self.text, span.start);
        TimelineError {
            path: self.path.to_string(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// The role of a simulated server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Accepts ops.
    Primary,
    /// Answers ops with "not primary" (`WrongServer`).
    Secondary,
}

/// One simulated server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Its name (`db.0`), used in steps and transcripts.
    pub name: String,
    /// Its role at t = 0.
    pub role: Role,
    /// Whether it is up at t = 0.
    pub up: bool,
    /// Whether the client's seed list names it (a server the client does
    /// not know about can still exist, e.g. the new primary of a failover
    /// when the client was given a single host).
    pub listed: bool,
    /// How long it loads its data set each time it (re)starts — comes up
    /// after `down` or `crash`: it accepts connections meanwhile but
    /// answers every op with pushback (Redis `LOADING`). Zero: none. A
    /// server up at t = 0 has finished loading.
    pub loading: Duration,
}

/// The simulated network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    /// One-way latency.
    pub latency: Duration,
    /// Server time per op.
    pub service_time: Duration,
    /// Extra one-way latency drawn uniformly in `[0, jitter]` from the
    /// timeline's seed, per message.
    pub jitter: Duration,
}

/// What a `server = "..."` step does to its endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerAction {
    /// Back up (from down, crash or blackhole): accepts connections again.
    Up,
    /// Clean stop: connections are closed (FIN), connects refused.
    Down,
    /// Crash: connections are reset, connects refused.
    Crash,
    /// Silent: nothing answers, connects time out, nothing is closed.
    Blackhole,
    /// Paused for the step's `for` (required), as a process under SIGSTOP
    /// until its SIGCONT: nothing is closed and nothing answered meanwhile,
    /// but nothing is lost either — connects complete and ops sent to it
    /// run and are answered when it resumes, in order (the kernel queued
    /// them), unless the client gave up on them first.
    Pause,
    /// Becomes primary.
    Promote,
    /// Becomes secondary: ops are answered "not primary".
    Demote,
    /// Busy for the step's `for` (required): it answers every op with
    /// pushback ("not now", not run: Redis `BUSY`, PostgreSQL 57P03), with
    /// this hint of how long to wait, if any. Connections and pings are
    /// unaffected; a `down` or `crash` ends it.
    Busy {
        /// The server's hint (`retry_after`), if it gives one.
        retry_after: Option<Duration>,
    },
}

impl ServerAction {
    /// The timeline spelling.
    pub fn name(self) -> &'static str {
        match self {
            ServerAction::Up => "up",
            ServerAction::Down => "down",
            ServerAction::Crash => "crash",
            ServerAction::Blackhole => "blackhole",
            ServerAction::Pause => "pause",
            ServerAction::Promote => "promote",
            ServerAction::Demote => "demote",
            ServerAction::Busy { .. } => "busy",
        }
    }

    /// What `for = ...` restores this action to. `busy` has no opposite
    /// step: its `for` is its length, and it ends on its own (it is
    /// returned unchanged).
    pub fn restore(self) -> ServerAction {
        match self {
            ServerAction::Promote => ServerAction::Demote,
            ServerAction::Demote => ServerAction::Promote,
            ServerAction::Busy { .. } => self,
            _ => ServerAction::Up,
        }
    }

    fn parse(s: &str) -> Option<ServerAction> {
        [
            ServerAction::Up,
            ServerAction::Down,
            ServerAction::Crash,
            ServerAction::Blackhole,
            ServerAction::Pause,
            ServerAction::Promote,
            ServerAction::Demote,
            ServerAction::Busy { retry_after: None },
        ]
        .into_iter()
        .find(|a| a.name() == s)
    }
}

/// What a `client = "..."` step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAction {
    /// The application closes the client.
    Close,
    /// The application revives the client (`Client::revive`,
    /// `Machine::revive`): reconnecting starts now with a fresh budget —
    /// after a terminal give-up, a loss with auto-reconnect off, or during
    /// a backoff or cool-down wait; ignored otherwise.
    Revive,
}

impl ClientAction {
    /// The timeline spelling (and the transcript's words: `client close`).
    pub fn name(self) -> &'static str {
        match self {
            ClientAction::Close => "close",
            ClientAction::Revive => "revive",
        }
    }
}

/// Ops to submit (a `submit = ...` step, or each tick of a workload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submit {
    /// The op's label (`findOne`).
    pub label: String,
    /// Marked retryable (`Some(true)`) or not (`Some(false)`); `None`:
    /// the config's `retry_lost` decides.
    pub retryable: Option<bool>,
    /// Per-op deadline.
    pub deadline: Option<Duration>,
    /// Per-op attempt limit (retryable ops).
    pub max_attempts: Option<u32>,
    /// How many ops at that instant.
    pub count: u32,
    /// The server answers this op with an error of its own.
    pub server_error: bool,
    /// When this op completes (either way), the application submits an op
    /// with this label (seed 003's insert callback issuing findOne).
    pub then: Option<String>,
    /// The caller gives up this long after submitting (drops its call
    /// future, which cancels the op), if it has no outcome by then.
    pub cancel_after: Option<Duration>,
}

impl Submit {
    /// The follow-up op a `then` submits: one plain op with this label.
    pub fn follow_up(label: String) -> Submit {
        Submit {
            label,
            retryable: None,
            deadline: None,
            max_attempts: None,
            count: 1,
            server_error: false,
            then: None,
            cancel_after: None,
        }
    }
}

/// The transcript's words for a server step on endpoint `name`.
pub(crate) fn server_step_text(name: &str, action: ServerAction, for_: Option<Duration>) -> String {
    let mut text = match for_ {
        Some(d) => format!("server {name} {} for {} ms", action.name(), d.as_millis()),
        None => format!("server {name} {}", action.name()),
    };
    if let ServerAction::Busy {
        retry_after: Some(hint),
    } = action
    {
        text.push_str(&format!(" (retry after {} ms)", hint.as_millis()));
    }
    text
}

/// What a step does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepAction {
    /// A server changes.
    Server {
        /// What happens.
        action: ServerAction,
        /// Index into [`Timeline::endpoints`].
        endpoint: usize,
        /// Undo after this long (see [`ServerAction::restore`]).
        for_: Option<Duration>,
    },
    /// The application submits ops.
    Submit(Submit),
    /// The application acts on the client.
    Client(ClientAction),
}

/// One scripted instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Virtual time.
    pub at: Duration,
    /// What happens.
    pub action: StepAction,
}

/// Periodic ops: at `from`, `from + every`, … while `< until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// What is submitted at each tick.
    pub submit: Submit,
    /// Period (> 0).
    pub every: Duration,
    /// First tick.
    pub from: Duration,
    /// No tick at or after this time.
    pub until: Duration,
}

impl Workload {
    /// When tick `n` (0-based) falls, if before `until`.
    pub fn tick_at(&self, n: u64) -> Option<Duration> {
        u32::try_from(n)
            .ok()
            .and_then(|k| self.every.checked_mul(k))
            .and_then(|d| self.from.checked_add(d))
            .filter(|t| *t < self.until)
    }
}

/// A parsed, validated timeline.
#[derive(Clone, Debug)]
pub struct Timeline {
    /// File name (for messages).
    pub path: String,
    /// Optional title.
    pub name: Option<String>,
    /// Seeds the machine's jitter and the network's jitter.
    pub seed: u64,
    /// Stop at this virtual time.
    pub until: Option<Duration>,
    /// The preset the config started from.
    pub preset: Preset,
    /// The machine's configuration.
    pub config: Config,
    /// The network.
    pub network: Network,
    /// Simulated servers; the client's seed list is the `listed` ones, in order.
    pub endpoints: Vec<Endpoint>,
    /// Steps, sorted by time (file order kept for equal times).
    pub steps: Vec<Step>,
    /// Workloads.
    pub workloads: Vec<Workload>,
    raw_config: RawConfig,
    text: String,
}

// ----- raw serde shapes ------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeline {
    name: Option<String>,
    seed: Option<u64>,
    until: Option<Dur>,
    #[serde(default)]
    config: RawConfig,
    #[serde(default)]
    network: RawNetwork,
    #[serde(default)]
    endpoint: Vec<RawEndpoint>,
    #[serde(default)]
    step: Vec<RawStep>,
    #[serde(default)]
    workload: Vec<RawWorkload>,
}

type S<T> = Option<Spanned<T>>;

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    preset: S<String>,
    auto_reconnect: S<bool>,
    buffer_max_entries: S<i64>,
    overflow: S<String>,
    reconnect_tries: S<RawTries>,
    reconnect_interval: S<Dur>,
    backoff: S<String>,
    backoff_initial: S<Dur>,
    backoff_step: S<Dur>,
    backoff_multiplier: S<f64>,
    backoff_max: S<Dur>,
    jitter: S<String>,
    require_primary: S<bool>,
    give_up: S<String>,
    cool_down: S<Dur>,
    quick_reconnect: S<bool>,
    probe: S<Dur>,
    probe_for: S<Dur>,
    initial_connect: S<String>,
    connect_timeout: S<Dur>,
    socket_timeout: S<Dur>,
    heartbeat_interval: S<Dur>,
    heartbeat_timeout: S<Dur>,
    response_timeout: S<Dur>,
    command_timeout: S<Dur>,
    legacy_socket_timeout: S<Dur>,
    connected_on_reconnect: S<bool>,
    buffer_timeout: S<Dur>,
    op_deadline: S<Dur>,
    max_op_attempts: S<u32>,
    retry_lost: S<bool>,
    fail_buffered_after: S<CountOr<Never>>,
    extra_jitter: S<Dur>,
    fail_unreachable_deadlines: S<bool>,
    retry_budget_tokens: S<u32>,
    retry_budget_ratio: S<f64>,
}

/// A count, or a word meaning "no count" (`"unlimited"`, `"never"`).
#[derive(Clone, Copy, Debug)]
struct CountOr<W>(Option<u32>, core::marker::PhantomData<W>);

/// The word and key of a [`CountOr`].
trait CountWord {
    const KEY: &'static str;
    const WORD: &'static str;
}

#[derive(Clone, Copy, Debug)]
struct Unlimited;
impl CountWord for Unlimited {
    const KEY: &'static str = "reconnect_tries";
    const WORD: &'static str = "unlimited";
}

#[derive(Clone, Copy, Debug)]
struct Never;
impl CountWord for Never {
    const KEY: &'static str = "fail_buffered_after";
    const WORD: &'static str = "never";
}

type RawTries = CountOr<Unlimited>;

impl RawTries {
    fn tries(&self) -> Tries {
        self.0.map_or(Tries::Unlimited, Tries::Limited)
    }
}

fn out_of_range<E: serde::de::Error>(key: &str, word: &str, v: impl fmt::Display) -> E {
    E::custom(format!(
        "{key} {v} is out of range: expected 0..=4294967295 or \"{word}\""
    ))
}

/// Names printed in the transcript (labels, endpoint names) hold no control
/// character: a newline would forge transcript lines.
fn printable(cx: &Ctx<'_>, v: &Spanned<String>, what: &str) -> Result<(), TimelineError> {
    if v.get_ref().chars().any(char::is_control) {
        return Err(cx.err(
            v.span(),
            format!("{what} must not contain control characters (newline, tab, …)"),
        ));
    }
    Ok(())
}

impl<'de, W: CountWord> Deserialize<'de> for CountOr<W> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<W>(core::marker::PhantomData<W>);
        impl<W: CountWord> serde::de::Visitor<'_> for V<W> {
            type Value = CountOr<W>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a non-negative integer or \"{}\"", W::WORD)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u32::try_from(v)
                    .map(|n| CountOr(Some(n), self.0))
                    .map_err(|_| out_of_range(W::KEY, W::WORD, v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                u32::try_from(v)
                    .map(|n| CountOr(Some(n), self.0))
                    .map_err(|_| out_of_range(W::KEY, W::WORD, v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == W::WORD {
                    Ok(CountOr(None, self.0))
                } else {
                    Err(E::custom(format!(
                        "expected an integer or \"{}\", found \"{v}\"",
                        W::WORD
                    )))
                }
            }
        }
        d.deserialize_any(V(core::marker::PhantomData))
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    latency: Option<Dur>,
    service_time: Option<Dur>,
    jitter: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    name: Spanned<String>,
    role: Option<Role>,
    up: Option<bool>,
    listed: Option<bool>,
    loading: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    at: Spanned<Dur>,
    server: S<String>,
    endpoint: S<String>,
    #[serde(rename = "for")]
    for_: Option<Dur>,
    submit: S<String>,
    retryable: Option<bool>,
    deadline: Option<Dur>,
    max_attempts: S<u32>,
    count: S<u32>,
    server_error: Option<bool>,
    then: Option<String>,
    cancel_after: Option<Dur>,
    client: S<String>,
    retry_after: S<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    submit: Spanned<String>,
    every: Spanned<Dur>,
    from: Option<Dur>,
    until: Spanned<Dur>,
    retryable: Option<bool>,
    deadline: Option<Dur>,
    max_attempts: S<u32>,
    count: S<u32>,
    server_error: Option<bool>,
    then: Option<String>,
    cancel_after: Option<Dur>,
}

// ----- parsing ------------------------------------------------------------

impl Timeline {
    /// Parses and validates a timeline. `path` only names the file in errors.
    ///
    /// Every error carries the 1-based line and column of the offending key
    /// or value and says what was expected.
    pub fn parse(text: &str, path: &str) -> Result<Timeline, TimelineError> {
        let cx = Ctx { text, path };
        let raw: RawTimeline = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            cx.err(span, e.message().trim_end().to_string())
        })?;

        let (preset, config) = build_config(&cx, &raw.config, None)?;

        let mut endpoints = Vec::new();
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for e in &raw.endpoint {
            printable(&cx, &e.name, "an endpoint name")?;
            let name = e.name.get_ref().clone();
            if name.is_empty() {
                return Err(cx.err(e.name.span(), "endpoint name must not be empty"));
            }
            if names.insert(name.clone(), endpoints.len()).is_some() {
                return Err(cx.err(e.name.span(), format!("duplicate endpoint `{name}`")));
            }
            endpoints.push(Endpoint {
                name,
                role: e.role.unwrap_or(Role::Primary),
                up: e.up.unwrap_or(true),
                listed: e.listed.unwrap_or(true),
                loading: e.loading.map_or(Duration::ZERO, |d| d.0),
            });
        }
        if endpoints.is_empty() {
            names.insert("db.0".into(), 0);
            endpoints.push(Endpoint {
                name: "db.0".into(),
                role: Role::Primary,
                up: true,
                listed: true,
                loading: Duration::ZERO,
            });
        }
        let listed = endpoints.iter().filter(|e| e.listed).count();
        if listed == 0 {
            let span = raw.endpoint.first().map_or(0..0, |e| e.name.span());
            return Err(cx.err(
                span,
                "no endpoint is listed: the client needs at least one endpoint with `listed = true`",
            ));
        }
        let config = config
            .to_builder()
            .endpoints(listed)
            .build()
            .map_err(|e| cx.err(0..0, e.to_string()))?;

        let endpoint_index = |s: &S<String>| -> Result<usize, TimelineError> {
            match s {
                None => Ok(0),
                Some(s) => names.get(s.get_ref()).copied().ok_or_else(|| {
                    let known: Vec<&str> = names.keys().map(String::as_str).collect();
                    cx.err(
                        s.span(),
                        format!(
                            "unknown endpoint `{}`: expected one of {}",
                            s.get_ref(),
                            known.join(", ")
                        ),
                    )
                }),
            }
        };

        let mut steps = Vec::new();
        for s in &raw.step {
            let at = s.at.get_ref().0;
            let actions = [s.server.is_some(), s.submit.is_some(), s.client.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if actions != 1 {
                return Err(cx.err(
                    s.at.span(),
                    "a step needs exactly one of `server`, `submit` or `client`",
                ));
            }
            let submit_only = [
                ("retryable", s.retryable.is_some()),
                ("deadline", s.deadline.is_some()),
                ("max_attempts", s.max_attempts.is_some()),
                ("count", s.count.is_some()),
                ("server_error", s.server_error.is_some()),
                ("then", s.then.is_some()),
                ("cancel_after", s.cancel_after.is_some()),
            ];
            if let Some(r) = &s.retry_after {
                if s.server.as_ref().is_none_or(|a| a.get_ref() != "busy") {
                    return Err(cx.err(
                        r.span(),
                        "`retry_after` only applies to `server = \"busy\"` steps",
                    ));
                }
            }
            let action = if let Some(server) = &s.server {
                if let Some((k, _)) = submit_only.iter().find(|(_, set)| *set) {
                    return Err(
                        cx.err(s.at.span(), format!("`{k}` only applies to `submit` steps"))
                    );
                }
                let mut action = ServerAction::parse(server.get_ref()).ok_or_else(|| {
                    cx.err(
                        server.span(),
                        format!(
                            "unknown server action `{}`: expected up, down, crash, blackhole, pause, promote, demote or busy",
                            server.get_ref()
                        ),
                    )
                })?;
                if action == ServerAction::Pause && s.for_.is_none() {
                    return Err(cx.err(
                        server.span(),
                        "`server = \"pause\"` needs `for` (how long the server is stopped)",
                    ));
                }
                if let ServerAction::Busy { retry_after } = &mut action {
                    if s.for_.is_none() {
                        return Err(cx.err(
                            server.span(),
                            "`server = \"busy\"` needs `for` (how long the server pushes back)",
                        ));
                    }
                    *retry_after = s.retry_after.as_ref().map(|r| r.get_ref().0);
                }
                StepAction::Server {
                    action,
                    endpoint: endpoint_index(&s.endpoint)?,
                    for_: s.for_.map(|d| d.0),
                }
            } else if let Some(label) = &s.submit {
                if let Some(e) = &s.endpoint {
                    return Err(cx.err(e.span(), "`endpoint` only applies to `server` steps"));
                }
                if s.for_.is_some() {
                    return Err(cx.err(s.at.span(), "`for` only applies to `server` steps"));
                }
                StepAction::Submit(submit(
                    &cx,
                    label,
                    s.retryable,
                    s.deadline,
                    &s.max_attempts,
                    &s.count,
                    s.server_error,
                    &s.then,
                    s.cancel_after,
                )?)
            } else if let Some(client) = &s.client {
                if s.endpoint.is_some() || s.for_.is_some() || submit_only.iter().any(|(_, b)| *b) {
                    return Err(cx.err(s.at.span(), "a `client` step takes no other key than `at`"));
                }
                match client.get_ref().as_str() {
                    "close" => StepAction::Client(ClientAction::Close),
                    "revive" => StepAction::Client(ClientAction::Revive),
                    other => {
                        return Err(cx.err(
                            client.span(),
                            format!("unknown client action `{other}`: expected close or revive"),
                        ));
                    }
                }
            } else {
                unreachable!("exactly one action checked above")
            };
            steps.push(Step { at, action });
        }
        steps.sort_by_key(|s| s.at);

        let mut workloads = Vec::new();
        for w in &raw.workload {
            let every = w.every.get_ref().0;
            if every.is_zero() {
                return Err(cx.err(w.every.span(), "`every` must be greater than zero"));
            }
            workloads.push(Workload {
                submit: submit(
                    &cx,
                    &w.submit,
                    w.retryable,
                    w.deadline,
                    &w.max_attempts,
                    &w.count,
                    w.server_error,
                    &w.then,
                    w.cancel_after,
                )?,
                every,
                from: w.from.map_or(Duration::ZERO, |d| d.0),
                until: w.until.get_ref().0,
            });
        }

        let network = Network {
            latency: raw
                .network
                .latency
                .map_or(Duration::from_millis(1), |d| d.0),
            service_time: raw
                .network
                .service_time
                .map_or(Duration::from_millis(1), |d| d.0),
            jitter: raw.network.jitter.map_or(Duration::ZERO, |d| d.0),
        };

        Ok(Timeline {
            path: path.to_string(),
            name: raw.name,
            seed: raw.seed.unwrap_or(0),
            until: raw.until.map(|d| d.0),
            preset,
            config,
            network,
            endpoints,
            steps,
            workloads,
            raw_config: raw.config,
            text: text.to_string(),
        })
    }

    /// The same timeline with its `[config]` rebuilt on top of another
    /// preset (the file's other config keys still override it).
    pub fn with_preset(&self, preset: Preset) -> Result<Timeline, TimelineError> {
        let cx = Ctx {
            text: &self.text,
            path: &self.path,
        };
        let (_, config) = build_config(&cx, &self.raw_config, Some(preset))?;
        let listed = self.endpoints.iter().filter(|e| e.listed).count();
        let config = config
            .to_builder()
            .endpoints(listed)
            .build()
            .map_err(|e| cx.err(0..0, e.to_string()))?;
        Ok(Timeline {
            preset,
            config,
            ..self.clone()
        })
    }

    /// The same timeline under another configuration, taken whole (not
    /// merged with this file's `[config]` keys): `other`'s config, with
    /// this timeline's endpoint count. What `compare --config` and
    /// `replay --config` run (a derived timeline sets every key, so a
    /// preset alone would change nothing in it).
    pub fn with_config(&self, other: &Timeline) -> Result<Timeline, TimelineError> {
        let listed = self.endpoints.iter().filter(|e| e.listed).count();
        let config = other
            .config
            .to_builder()
            .endpoints(listed)
            .build()
            .map_err(|e| TimelineError {
                path: other.path.clone(),
                line: 1,
                column: 1,
                message: e.to_string(),
            })?;
        Ok(Timeline {
            preset: other.preset,
            config,
            raw_config: other.raw_config.clone(),
            text: other.text.clone(),
            ..self.clone()
        })
    }

    /// The endpoint name a machine endpoint index (seed-list position) stands for.
    pub fn listed_endpoint(&self, index: usize) -> usize {
        self.endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| e.listed)
            .nth(index)
            .map_or(0, |(i, _)| i)
    }
}

/// The most ops one step may submit at once.
pub const MAX_COUNT: u32 = 1_000_000;

#[allow(clippy::too_many_arguments)]
fn submit(
    cx: &Ctx<'_>,
    label: &Spanned<String>,
    retryable: Option<bool>,
    deadline: Option<Dur>,
    max_attempts: &S<u32>,
    count: &S<u32>,
    server_error: Option<bool>,
    then: &Option<String>,
    cancel_after: Option<Dur>,
) -> Result<Submit, TimelineError> {
    printable(cx, label, "a label")?;
    if then
        .as_ref()
        .is_some_and(|t| t.chars().any(char::is_control))
    {
        return Err(cx.err(
            label.span(),
            "`then` must not contain control characters (newline, tab, …)",
        ));
    }
    if let Some(c) = count {
        if *c.get_ref() == 0 || *c.get_ref() > MAX_COUNT {
            return Err(cx.err(
                c.span(),
                format!("`count` must be between 1 and {MAX_COUNT}"),
            ));
        }
    }
    if let Some(m) = max_attempts {
        if *m.get_ref() == 0 {
            return Err(cx.err(m.span(), "`max_attempts` must be at least 1"));
        }
    }
    if cancel_after.is_some_and(|d| d.0.is_zero()) {
        return Err(cx.err(
            label.span(),
            "`cancel_after` must be greater than zero (leave it out for never)",
        ));
    }
    if deadline.is_some_and(|d| d.0.is_zero()) {
        return Err(cx.err(
            label.span(),
            "`deadline` must be greater than zero (leave it out for none)",
        ));
    }
    Ok(Submit {
        label: label.get_ref().clone(),
        retryable,
        deadline: deadline.map(|d| d.0),
        max_attempts: max_attempts.as_ref().map(|m| *m.get_ref()),
        count: count.as_ref().map_or(1, |c| *c.get_ref()),
        server_error: server_error.unwrap_or(false),
        then: then.clone(),
        cancel_after: cancel_after.map(|d| d.0),
    })
}

/// The `[config]` table as the core's [`ConfigKeys`]: the one mapping
/// between config keys and the builder lives there (a trace's header uses
/// it too); the spans stay here, for the error's line and column.
fn config_keys(c: &RawConfig) -> ConfigKeys {
    fn v<T: Clone>(s: &S<T>) -> Option<T> {
        s.as_ref().map(|s| s.get_ref().clone())
    }
    fn d(s: &S<Dur>) -> Option<Duration> {
        s.as_ref().map(|s| s.get_ref().0)
    }
    let mut k = ConfigKeys::new();
    k.preset = v(&c.preset);
    k.auto_reconnect = v(&c.auto_reconnect);
    k.buffer_max_entries = v(&c.buffer_max_entries);
    k.overflow = v(&c.overflow);
    k.reconnect_tries = c.reconnect_tries.as_ref().map(|t| t.get_ref().tries());
    k.reconnect_interval = d(&c.reconnect_interval);
    k.backoff = v(&c.backoff);
    k.backoff_initial = d(&c.backoff_initial);
    k.backoff_step = d(&c.backoff_step);
    k.backoff_multiplier = v(&c.backoff_multiplier);
    k.backoff_max = d(&c.backoff_max);
    k.jitter = v(&c.jitter);
    k.require_primary = v(&c.require_primary);
    k.give_up = v(&c.give_up);
    k.cool_down = d(&c.cool_down);
    k.quick_reconnect = v(&c.quick_reconnect);
    k.probe = d(&c.probe);
    k.probe_for = d(&c.probe_for);
    k.initial_connect = v(&c.initial_connect);
    k.connect_timeout = d(&c.connect_timeout);
    k.socket_timeout = d(&c.socket_timeout);
    k.heartbeat_interval = d(&c.heartbeat_interval);
    k.heartbeat_timeout = d(&c.heartbeat_timeout);
    k.response_timeout = d(&c.response_timeout);
    k.command_timeout = d(&c.command_timeout);
    k.legacy_socket_timeout = d(&c.legacy_socket_timeout);
    k.connected_on_reconnect = v(&c.connected_on_reconnect);
    k.buffer_timeout = d(&c.buffer_timeout);
    k.op_deadline = d(&c.op_deadline);
    k.max_op_attempts = v(&c.max_op_attempts);
    k.retry_lost = v(&c.retry_lost);
    k.fail_buffered_after = c.fail_buffered_after.as_ref().map(|t| t.get_ref().0);
    k.extra_jitter = d(&c.extra_jitter);
    k.fail_unreachable_deadlines = v(&c.fail_unreachable_deadlines);
    k.retry_budget_tokens = v(&c.retry_budget_tokens);
    k.retry_budget_ratio = v(&c.retry_budget_ratio);
    k
}

fn build_config(
    cx: &Ctx<'_>,
    c: &RawConfig,
    preset_override: Option<Preset>,
) -> Result<(Preset, Config), TimelineError> {
    let keys = config_keys(c);
    let at = |e: redial_core::KeyError| {
        let span = config_key_span(c, e.key)
            .or_else(|| c.preset.as_ref().map(|p| p.span()))
            .unwrap_or(0..0);
        cx.err(span, e.message)
    };
    let preset = keys.preset(preset_override).map_err(at)?;
    let config = keys.build(Some(preset), 1).map_err(at)?;
    Ok((preset, config))
}

/// The span of the `[config]` key a [`redial_core::ConfigError`] names.
fn config_key_span(c: &RawConfig, field: &str) -> Option<Range<usize>> {
    fn sp<T>(s: &S<T>) -> Option<Range<usize>> {
        s.as_ref().map(|s| s.span())
    }
    match field {
        "buffer_max_entries" => sp(&c.buffer_max_entries),
        "reconnect_interval" => sp(&c.reconnect_interval).or(sp(&c.reconnect_tries)),
        "backoff_max" => sp(&c.backoff_max).or(sp(&c.backoff)),
        "backoff_multiplier" => sp(&c.backoff_multiplier).or(sp(&c.backoff)),
        "backoff_initial" => sp(&c.backoff_initial).or(sp(&c.reconnect_interval)),
        "connect_timeout" => sp(&c.connect_timeout),
        "socket_timeout" => sp(&c.socket_timeout).or(sp(&c.legacy_socket_timeout)),
        "heartbeat_interval" => sp(&c.heartbeat_interval),
        "heartbeat_timeout" => sp(&c.heartbeat_timeout),
        "response_timeout" => sp(&c.response_timeout).or(sp(&c.legacy_socket_timeout)),
        "command_timeout" => sp(&c.command_timeout),
        "buffer_timeout" => sp(&c.buffer_timeout),
        "op_deadline" => sp(&c.op_deadline),
        "max_op_attempts" => sp(&c.max_op_attempts),
        "retry_lost" => sp(&c.retry_lost),
        "fail_buffered_after" => sp(&c.fail_buffered_after),
        "extra_jitter" => sp(&c.extra_jitter),
        "fail_unreachable_deadlines" => sp(&c.fail_unreachable_deadlines),
        "retry_budget_tokens" => sp(&c.retry_budget_tokens),
        "retry_budget_ratio" => sp(&c.retry_budget_ratio),
        "give_up" => sp(&c.cool_down).or(sp(&c.give_up)),
        "quick_reconnect_probe" => sp(&c.probe).or(sp(&c.quick_reconnect)),
        "quick_reconnect_probe_for" => sp(&c.probe_for).or(sp(&c.quick_reconnect)),
        "preset" => sp(&c.preset),
        "auto_reconnect" => sp(&c.auto_reconnect),
        "overflow" => sp(&c.overflow),
        "reconnect_tries" => sp(&c.reconnect_tries),
        "backoff" => sp(&c.backoff),
        "backoff_step" => sp(&c.backoff_step),
        "jitter" => sp(&c.jitter),
        "require_primary" => sp(&c.require_primary),
        "cool_down" => sp(&c.cool_down),
        "quick_reconnect" => sp(&c.quick_reconnect),
        "probe" => sp(&c.probe),
        "probe_for" => sp(&c.probe_for),
        "initial_connect" => sp(&c.initial_connect),
        "legacy_socket_timeout" => sp(&c.legacy_socket_timeout),
        "connected_on_reconnect" => sp(&c.connected_on_reconnect),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
