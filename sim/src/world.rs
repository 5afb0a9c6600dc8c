//! The simulated world: servers (health, role, loading after a restart,
//! busy spells), connections to them and the network between, shared by
//! the fast loop ([`crate::run`]) and by the simulated connector that the
//! real driver runs against ([`crate::through_driver`]). It answers "when does this message arrive,
//! and what does it say" — never what the client does about it.
//!
//! A message's delay depends only on what it is (which connection, which
//! op, which ping), never on the order in which it was asked for, so both
//! loops see the same network whatever order their requests come in.

use core::time::Duration;
use std::collections::BTreeMap;

use redial_core::{Instant, LossKind, OpResult};

use crate::timeline::{Role, ServerAction, Timeline, server_step_text};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Health {
    Up,
    Down,
    Blackhole,
    /// Stopped (SIGSTOP) until then: what reaches it waits for then.
    Paused(Instant),
}

struct Server {
    name: String,
    health: Health,
    role: Role,
    /// Bumped whenever connections to it die.
    epoch: u64,
    /// Bumped by every server step but `busy` (a `for` undo only applies
    /// if no later step touched the server).
    generation: u64,
    /// How long it loads after each restart.
    loading: Duration,
    /// Loading until then: ops are answered with pushback (no hint).
    loading_until: Option<Instant>,
    /// Busy until then: ops are answered with pushback, with `busy_hint`.
    busy_until: Option<Instant>,
    busy_hint: Option<Duration>,
    /// Bumped by every `busy` step and by what ends one early (`down`,
    /// `crash`): the end of a busy spell is announced only for the latest.
    busy_generation: u64,
}

impl Server {
    /// When a message arriving at `at` is taken up: at once, or when a
    /// paused server resumes.
    fn taken_up(&self, at: Instant) -> Instant {
        match self.health {
            Health::Paused(until) if at < until => until,
            _ => at,
        }
    }

    /// Up, or paused (it will answer).
    fn answers(&self) -> bool {
        matches!(self.health, Health::Up | Health::Paused(_))
    }

    /// Whether the server pushes back an op it receives at `now`, and with
    /// what hint: loading (no hint) or busy.
    fn pushback(&self, now: Instant) -> Option<Option<Duration>> {
        if self.loading_until.is_some_and(|t| now < t) {
            Some(None)
        } else if self.busy_until.is_some_and(|t| now < t) {
            Some(self.busy_hint)
        } else {
            None
        }
    }
}

/// A losses list: (connection, when the client sees it, how).
pub(crate) type Losses = Vec<(u64, Instant, LossKind)>;

/// The undo of a server step with `for`, to deliver at its instant.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Undo {
    endpoint: usize,
    action: ServerAction,
    /// The server's `generation` (for a busy spell, its `busy_generation`)
    /// when the step ran.
    generation: u64,
}

/// What a scripted server step (or its undo) did: the transcript's words,
/// the losses the client will see, and the undo to schedule, if any.
pub(crate) struct Stepped {
    pub(crate) text: String,
    pub(crate) losses: Losses,
    pub(crate) undo: Option<(Instant, Undo)>,
}

struct NetConn {
    /// Index into the timeline's endpoints.
    endpoint: usize,
    established: bool,
    epoch: u64,
    pings: u64,
}

/// What a connect attempt meets: an answer at `at` (`ok` or refused), or
/// nothing ever (a blackholed server).
pub(crate) type ConnectReply = Option<(Instant, bool)>;

pub(crate) struct Net {
    servers: Vec<Server>,
    conns: BTreeMap<u64, NetConn>,
    latency: Duration,
    jitter_us: u64,
    service_time: Duration,
    seed: u64,
}

const CONNECT: u64 = 1;
const DISPATCH: u64 = 2;
const PING: u64 = 3;
const LOSS: u64 = 4;

/// SplitMix64's finaliser: a well-mixed 64-bit hash.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Net {
    pub(crate) fn new(tl: &Timeline, seed: u64) -> Net {
        Net {
            servers: tl
                .endpoints
                .iter()
                .map(|e| Server {
                    name: e.name.clone(),
                    health: if e.up { Health::Up } else { Health::Down },
                    role: e.role,
                    epoch: 0,
                    generation: 0,
                    loading: e.loading,
                    loading_until: None,
                    busy_until: None,
                    busy_hint: None,
                    busy_generation: 0,
                })
                .collect(),
            conns: BTreeMap::new(),
            latency: tl.network.latency,
            jitter_us: u64::try_from(tl.network.jitter.as_micros()).unwrap_or(u64::MAX),
            service_time: tl.network.service_time,
            seed: mix(seed ^ 0x005E_ED0F_5111),
        }
    }

    /// One-way delay of message `(kind, a, b)`, hop `i` of it.
    fn hop(&self, kind: u64, a: u64, b: u64, i: u64) -> Duration {
        let extra = match self.jitter_us {
            0 => 0,
            j => {
                let h = mix(self.seed ^ mix(kind ^ mix(a ^ mix(b ^ mix(i)))));
                h % j.saturating_add(1)
            }
        };
        self.latency + Duration::from_micros(extra)
    }

    fn rtt(&self, kind: u64, a: u64, b: u64) -> Duration {
        self.hop(kind, a, b, 0) + self.hop(kind, a, b, 1)
    }

    /// Connection `id` is attempted to `endpoint` (timeline index) at `now`.
    pub(crate) fn connect(&mut self, now: Instant, id: u64, endpoint: usize) -> ConnectReply {
        let epoch = self.servers[endpoint].epoch;
        self.conns.insert(
            id,
            NetConn {
                endpoint,
                established: false,
                epoch,
                pings: 0,
            },
        );
        let at = now + self.rtt(CONNECT, id, 0);
        match self.servers[endpoint].health {
            Health::Up => Some((at, true)),
            // The kernel accepts; the handshake is answered on resume.
            Health::Paused(_) => {
                let arrives = now + self.hop(CONNECT, id, 0, 0);
                let s = &self.servers[endpoint];
                Some((s.taken_up(arrives) + self.hop(CONNECT, id, 0, 1), true))
            }
            Health::Down => Some((at, false)),
            Health::Blackhole => None,
        }
    }

    /// The connect answer for `id` arrives: whether it reaches the client
    /// (and the connection is then established, or gone if refused).
    pub(crate) fn connect_arrives(&mut self, id: u64, ok: bool) -> bool {
        if !self.deliverable(id) {
            return false;
        }
        if ok {
            if let Some(c) = self.conns.get_mut(&id) {
                c.established = true;
            }
        } else {
            self.conns.remove(&id);
        }
        true
    }

    /// The client sends op `seq` on `id` at `now`: its answer and when it
    /// arrives, if the server can answer at all.
    pub(crate) fn dispatch(
        &mut self,
        now: Instant,
        id: u64,
        seq: u64,
        server_error: bool,
    ) -> Option<(Instant, OpResult)> {
        let c = self.conns.get(&id)?;
        let server = &self.servers[c.endpoint];
        if !c.established || !server.answers() {
            return None;
        }
        let rtt = self.rtt(DISPATCH, seq, id);
        // A paused server takes it up when it resumes (then `start` is
        // later than `now` by the wait): the answer leaves that much later.
        let (start, held) = match server.health {
            Health::Paused(_) => {
                let arrives = now + self.hop(DISPATCH, seq, id, 0);
                let taken = server.taken_up(arrives);
                (taken, taken - arrives)
            }
            _ => (now, Duration::ZERO),
        };
        let now = now + held;
        if let Some(retry_after) = server.pushback(start) {
            // Refused before it runs: no service time.
            return Some((now + rtt, OpResult::Pushback { retry_after }));
        }
        Some(match (server.role, server_error) {
            (Role::Secondary, _) => (now + rtt, OpResult::WrongServer),
            (Role::Primary, false) => (now + rtt + self.service_time, OpResult::Ok),
            (Role::Primary, true) => (now + rtt + self.service_time, OpResult::ServerError),
        })
    }

    /// The role of the server behind connection `id`, as a connector that
    /// checks it on connect (`ROLE`, `pg_is_in_recovery()`) reads it.
    pub(crate) fn role(&self, id: u64) -> redial_core::Role {
        match self.conns.get(&id).map(|c| self.servers[c.endpoint].role) {
            Some(Role::Primary) => redial_core::Role::Primary,
            Some(Role::Secondary) => redial_core::Role::Secondary,
            None => redial_core::Role::Unknown,
        }
    }

    /// The client pings `id` at `now`: when the answer arrives, if ever.
    pub(crate) fn ping(&mut self, now: Instant, id: u64) -> Option<Instant> {
        let c = self.conns.get_mut(&id)?;
        let server = &self.servers[c.endpoint];
        if !c.established || !server.answers() {
            return None;
        }
        c.pings += 1;
        let n = c.pings;
        let arrives = now + self.hop(PING, id, n, 0);
        Some(server.taken_up(arrives) + self.hop(PING, id, n, 1))
    }

    /// A message from the server side of `id` reaches the client only if
    /// the connection still exists, the server did not die since, and the
    /// server is not blackholed.
    pub(crate) fn deliverable(&self, id: u64) -> bool {
        self.conns.get(&id).is_some_and(|c| {
            let s = &self.servers[c.endpoint];
            s.epoch == c.epoch && s.health != Health::Blackhole
        })
    }

    /// The client closed `id` (or gave up on the attempt).
    pub(crate) fn close(&mut self, id: u64) {
        self.conns.remove(&id);
    }

    /// The timeline's server step at `now`: `action` on `endpoint`, undone
    /// after `for_` unless a later step touches the server first.
    pub(crate) fn step(
        &mut self,
        now: Instant,
        endpoint: usize,
        action: ServerAction,
        for_: Option<Duration>,
    ) -> Stepped {
        let server = &mut self.servers[endpoint];
        let generation = if let ServerAction::Busy { .. } = action {
            // A busy spell is load, not a change of state: it cancels no
            // other step's undo, and its end is its own.
            server.busy_generation += 1;
            server.busy_generation
        } else {
            server.generation += 1;
            server.generation
        };
        let undo = for_.map(|d| {
            let undo = Undo {
                endpoint,
                action: action.restore(),
                generation,
            };
            (now + d, undo)
        });
        let text = server_step_text(&server.name, action, for_);
        let losses = self.server(now, endpoint, action, for_);
        let text = self.loading_note(now, endpoint, action, text);
        Stepped { text, losses, undo }
    }

    /// The transcript's words for `action` on `endpoint`, once applied at
    /// `now`: a restart says how long the server will load.
    fn loading_note(
        &self,
        now: Instant,
        endpoint: usize,
        action: ServerAction,
        text: String,
    ) -> String {
        let server = &self.servers[endpoint];
        if action == ServerAction::Up && server.loading_until.is_some_and(|t| t > now) {
            format!("{text} (loading for {} ms)", server.loading.as_millis())
        } else {
            text
        }
    }

    /// A step's undo comes due at `now`: applied unless a later step
    /// touched the server (then `None`).
    pub(crate) fn undo(&mut self, now: Instant, u: Undo) -> Option<Stepped> {
        let server = &mut self.servers[u.endpoint];
        if let ServerAction::Busy { .. } = u.action {
            // The end of a busy spell (unless a later one, or a restart,
            // took its place).
            if server.busy_generation != u.generation {
                return None;
            }
            server.busy_until = None;
            server.busy_hint = None;
            return Some(Stepped {
                text: format!("server {} no longer busy", server.name),
                losses: Vec::new(),
                undo: None,
            });
        }
        if server.generation != u.generation {
            return None;
        }
        let text = server_step_text(&server.name, u.action, None);
        let losses = self.server(now, u.endpoint, u.action, None);
        let text = self.loading_note(now, u.endpoint, u.action, text);
        Some(Stepped {
            text,
            losses,
            undo: None,
        })
    }

    /// Applies a server action at `now`; returns the losses the client will
    /// see, and when.
    fn server(
        &mut self,
        now: Instant,
        endpoint: usize,
        action: ServerAction,
        for_: Option<Duration>,
    ) -> Losses {
        let mut losses = Vec::new();
        let mut kill = |net: &mut Net, kind: LossKind| {
            net.servers[endpoint].epoch += 1;
            let dead: Vec<u64> = net
                .conns
                .iter()
                .filter(|(_, c)| c.endpoint == endpoint)
                .map(|(id, _)| *id)
                .collect();
            for id in dead {
                net.conns.remove(&id);
                losses.push((id, now + net.hop(LOSS, id, 0, 0), kind));
            }
        };
        let health = self.servers[endpoint].health;
        match action {
            ServerAction::Up => {
                let s = &mut self.servers[endpoint];
                if health == Health::Down && !s.loading.is_zero() {
                    // A restart: the data set loads again.
                    s.loading_until = Some(now + s.loading);
                }
                s.health = Health::Up;
            }
            ServerAction::Down | ServerAction::Crash => {
                let s = &mut self.servers[endpoint];
                // The process stops: whatever it was loading or busy with
                // ends with it.
                s.loading_until = None;
                if s.busy_until.take().is_some() {
                    s.busy_generation += 1;
                }
                s.busy_hint = None;
                if health != Health::Down {
                    let kind = if action == ServerAction::Down {
                        LossKind::Closed
                    } else {
                        LossKind::Reset
                    };
                    kill(self, kind);
                }
                self.servers[endpoint].health = Health::Down;
            }
            ServerAction::Blackhole => {
                if health == Health::Up {
                    self.servers[endpoint].health = Health::Blackhole;
                }
            }
            ServerAction::Pause => {
                // What reaches it meanwhile is answered at the end (the
                // answers already promised stay promised if a later step
                // ends the pause early; a crash or stop drops them).
                if health == Health::Up {
                    let until = now + for_.unwrap_or(Duration::ZERO);
                    self.servers[endpoint].health = Health::Paused(until);
                }
            }
            ServerAction::Promote => self.servers[endpoint].role = Role::Primary,
            ServerAction::Demote => self.servers[endpoint].role = Role::Secondary,
            ServerAction::Busy { retry_after } => {
                let s = &mut self.servers[endpoint];
                s.busy_until = Some(now + for_.unwrap_or(Duration::ZERO));
                s.busy_hint = retry_after;
            }
        }
        losses
    }
}
