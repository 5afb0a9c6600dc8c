//! A fleet of clients against one server: what a reconnect policy costs the
//! server when thousands of clients use it at once.
//!
//! Each of the `clients` clients is its own [`Machine`] with its own seed
//! (derived from the fleet's seed and its index) and the same [`Config`].
//! They share one simulated server and a network with a fixed round trip.
//! One fault strikes at `fault_at`:
//!
//! - [`FleetFault::Restart`]: the server process dies (every connection is
//!   reset) and comes back after `outage`. While it is down, connect
//!   attempts are refused at once by its host (a reset after one round
//!   trip): they reach the host, not the server.
//! - [`FleetFault::KillConnections`]: every connection is reset while the
//!   server stays up (a proxy restart, `CLIENT KILL`, an idle sweep).
//! - [`FleetFault::Blackhole`]: the network drops everything for `outage`
//!   (no answer to connects, ops or heartbeats); when it heals, the
//!   connections that survived carry traffic again.
//!
//! Optionally the server completes at most `accept_rate` connects per
//! second (a token bucket holding a tenth of a second's worth): attempts
//! beyond that are answered "cannot serve now" (`unavailable`, as a server
//! at its connection limit or still loading answers), which the clients
//! see as a loaded server.
//!
//! Every client submits an op every `op_every` (spread evenly over the
//! fleet); each op is answered after one round trip on a live connection.
//!
//! The report counts, per second of virtual time, the connect attempts
//! that reached the listening server (accepted or turned away), those
//! refused by its host while it was down, and those lost in the
//! blackhole; the peak of the first kind in the ten seconds after the
//! server's return; per client the time from the server's return (the
//! fault, for a killed connection) to its first connection after it; and
//! every op's fate.
//!
//! Deterministic: one event queue ordered by (time, sequence), no hash
//! iteration, the clients' seeds derived from the fleet's. Work grows
//! linearly with clients × (ops + attempts + heartbeats); memory with the
//! clients (a machine each) plus the events in flight.

use core::time::Duration;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write as _;

use redial_core::{
    Config, ConnId, ConnectFailure, Event, Instant, LossKind, Machine, OpId, OpOptions, OpResult,
    Output,
};

/// The fault that strikes the fleet's server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FleetFault {
    /// The server dies and restarts after `outage`.
    Restart {
        /// How long it is down.
        outage: Duration,
    },
    /// Every connection is reset; the server stays up.
    KillConnections,
    /// The network drops everything for `outage`.
    Blackhole {
        /// How long nothing gets through.
        outage: Duration,
    },
}

impl FleetFault {
    /// How long the server cannot be reached.
    pub fn outage(self) -> Duration {
        match self {
            FleetFault::Restart { outage } | FleetFault::Blackhole { outage } => outage,
            FleetFault::KillConnections => Duration::ZERO,
        }
    }

    /// A short name (`restart`, `kill-connections`, `blackhole`).
    pub fn name(self) -> &'static str {
        match self {
            FleetFault::Restart { .. } => "restart",
            FleetFault::KillConnections => "kill-connections",
            FleetFault::Blackhole { .. } => "blackhole",
        }
    }
}

/// What to simulate. [`FleetOptions::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    /// Number of clients (≥ 1; at most [`FleetOptions::MAX_CLIENTS`]).
    pub clients: usize,
    /// Every client's configuration.
    pub config: Config,
    /// Seeds every client's jitter (client `i` gets a seed derived from
    /// this and `i`).
    pub seed: u64,
    /// When the fault strikes (clients are all connected well before).
    pub fault_at: Duration,
    /// The fault.
    pub fault: FleetFault,
    /// The end of the run.
    pub until: Duration,
    /// Each client submits one op this often (`None`: no ops).
    pub op_every: Option<Duration>,
    /// Network round trip (> 0).
    pub rtt: Duration,
    /// Connects the server completes per second (`None`: unlimited).
    pub accept_rate: Option<u32>,
}

impl FleetOptions {
    /// The most clients a run takes (memory: a machine each, about 1 KB).
    pub const MAX_CLIENTS: usize = 1_000_000;

    /// 10,000 clients, a 2 s restart at 10 s, 60 s in all, an op per
    /// client every second, a 1 ms round trip, no accept limit.
    pub fn new(config: Config) -> FleetOptions {
        FleetOptions {
            clients: 10_000,
            config,
            seed: 0,
            fault_at: Duration::from_secs(10),
            fault: FleetFault::Restart {
                outage: Duration::from_secs(2),
            },
            until: Duration::from_secs(60),
            op_every: Some(Duration::from_secs(1)),
            rtt: Duration::from_millis(1),
            accept_rate: None,
        }
    }

    /// When the server can be reached again.
    pub fn back_at(&self) -> Duration {
        self.fault_at.saturating_add(self.fault.outage())
    }

    fn validate(&self) -> Result<(), String> {
        if self.clients == 0 || self.clients > Self::MAX_CLIENTS {
            return Err(format!(
                "`clients` must be between 1 and {}",
                Self::MAX_CLIENTS
            ));
        }
        if self.rtt.is_zero() {
            return Err("`rtt` must be greater than zero".into());
        }
        if self.op_every.is_some_and(|d| d.is_zero()) {
            return Err("`op_every` must be greater than zero".into());
        }
        if self.accept_rate == Some(0) {
            return Err("`accept_rate` must be greater than zero".into());
        }
        if self.back_at() >= self.until {
            return Err("the server must be back before `until`".into());
        }
        Ok(())
    }
}

/// Connect attempts in one second of virtual time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Second {
    /// Attempts the listening server completed.
    pub accepted: u64,
    /// Attempts the listening server turned away (over `accept_rate`).
    pub turned_away: u64,
    /// Attempts refused by the host while the server was down.
    pub refused: u64,
    /// Attempts lost in a blackhole (they time out).
    pub lost: u64,
}

impl Second {
    /// Attempts that reached the listening server.
    pub fn received(&self) -> u64 {
        self.accepted + self.turned_away
    }
}

/// What a fleet run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetReport {
    /// Clients simulated.
    pub clients: usize,
    /// When the server could be reached again.
    pub back_at: Duration,
    /// Connect attempts per second of virtual time, for the seconds that
    /// saw any (key: the second since the start). Sparse, so memory grows
    /// with the attempts, not with the length of the run.
    pub seconds: BTreeMap<u64, Second>,
    /// Per client that recovered, the time from `back_at` to its first
    /// connection after the fault (or, if its connection survived a
    /// blackhole, its first op answered after it healed), sorted.
    pub recovery: Vec<Duration>,
    /// Clients with no connection after the fault by the end of the run.
    pub not_recovered: usize,
    /// Ops submitted.
    pub ops: u64,
    /// Op outcomes: `ok`, or the error kind's name (`+maybe_run` when the
    /// op may have run); ops still open at the end are closed and counted
    /// as `closed`. (Two kinds that differ only by may-have-run are
    /// counted apart.)
    pub fates: BTreeMap<String, u64>,
}

impl FleetReport {
    /// The most attempts the listening server received in one second,
    /// among the ten seconds from its return.
    pub fn peak_at_return(&self) -> u64 {
        let from = self.back_at.as_secs();
        self.seconds
            .range(from..from.saturating_add(10))
            .map(|(_, s)| s.received())
            .max()
            .unwrap_or(0)
    }

    /// Every attempt, whatever became of it.
    pub fn attempts(&self) -> u64 {
        self.seconds
            .values()
            .map(|s| s.received() + s.refused + s.lost)
            .sum()
    }

    /// The recovery time at quantile `q` (0..=1) of the clients that
    /// recovered (`None` if none did).
    pub fn recovery_quantile(&self, q: f64) -> Option<Duration> {
        if self.recovery.is_empty() {
            return None;
        }
        let last = self.recovery.len() - 1;
        // Nearest rank; q is clamped so any input is safe.
        let rank = (q.clamp(0.0, 1.0) * last as f64).round() as usize;
        Some(self.recovery[rank.min(last)])
    }

    /// A human-readable report: the summary, then one line per second
    /// that saw an attempt.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let ms = |d: Option<Duration>| {
            d.map_or("-".to_string(), |d| {
                format!("{:.1} ms", d.as_secs_f64() * 1e3)
            })
        };
        let _ = writeln!(s, "clients: {}", self.clients);
        let _ = writeln!(s, "server back at: {:.3} s", self.back_at.as_secs_f64());
        let _ = writeln!(
            s,
            "recovery after the return: median {}, p99 {}, max {}; not recovered: {}",
            ms(self.recovery_quantile(0.5)),
            ms(self.recovery_quantile(0.99)),
            ms(self.recovery_quantile(1.0)),
            self.not_recovered
        );
        let _ = writeln!(
            s,
            "peak connects/s received by the server in the 10 s from its return: {}",
            self.peak_at_return()
        );
        let _ = writeln!(s, "connect attempts in all: {}", self.attempts());
        let _ = writeln!(s, "ops: {}", self.ops);
        for (fate, n) in &self.fates {
            let _ = writeln!(s, "  {fate}: {n}");
        }
        let _ = writeln!(
            s,
            "second  accepted  turned_away  refused(host)  lost(blackhole)"
        );
        for (i, sec) in &self.seconds {
            let _ = writeln!(
                s,
                "{i:>6}  {:>8}  {:>11}  {:>13}  {:>15}",
                sec.accepted, sec.turned_away, sec.refused, sec.lost
            );
        }
        s
    }

    /// The report as one JSON object (stable key order).
    pub fn to_json(&self) -> String {
        let us = |d: Option<Duration>| d.map_or("null".to_string(), |d| d.as_micros().to_string());
        let mut s = String::from("{");
        let _ = write!(
            s,
            "\"clients\":{},\"back_at_us\":{},\"recovery_us\":{{\"median\":{},\"p99\":{},\"max\":{}}},\"not_recovered\":{},\"peak_at_return\":{},\"attempts\":{},\"ops\":{},\"fates\":{{",
            self.clients,
            self.back_at.as_micros(),
            us(self.recovery_quantile(0.5)),
            us(self.recovery_quantile(0.99)),
            us(self.recovery_quantile(1.0)),
            self.not_recovered,
            self.peak_at_return(),
            self.attempts(),
            self.ops
        );
        for (i, (fate, n)) in self.fates.iter().enumerate() {
            let _ = write!(s, "{}\"{fate}\":{n}", if i > 0 { "," } else { "" });
        }
        // One entry per second that saw an attempt:
        // [second, accepted, turned_away, refused, lost].
        s.push_str("},\"seconds\":[");
        for (n, (i, sec)) in self.seconds.iter().enumerate() {
            let _ = write!(
                s,
                "{}[{i},{},{},{},{}]",
                if n > 0 { "," } else { "" },
                sec.accepted,
                sec.turned_away,
                sec.refused,
                sec.lost
            );
        }
        s.push_str("]}\n");
        s
    }
}

/// What the world delivers to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// The fault strikes / ends.
    FaultStart,
    FaultEnd,
    /// The client's machine has a timer due (may be stale).
    Timer(usize),
    /// The client submits an op.
    Submit(usize),
    /// A connect attempt's answer (accepted in this server epoch).
    Connected(usize, ConnId, u64),
    Refused(usize, ConnId),
    Unavailable(usize, ConnId),
    /// An op's or a heartbeat's answer, for a connection of this epoch.
    OpOk(usize, OpId, ConnId, u64),
    HeartbeatOk(usize, ConnId, u64),
    /// The connection was reset.
    Reset(usize, ConnId, u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Up,
    Down,
    Blackhole,
}

struct Client {
    m: Machine<()>,
    /// The timer instant queued for this client (re-queued when the
    /// machine's deadline moves earlier; stale entries are skipped).
    armed: Option<Instant>,
    /// The established connection and the server epoch it belongs to.
    conn: Option<(ConnId, u64)>,
    /// Connected after the fault.
    recovered: Option<Instant>,
    /// When its last connect attempt started.
    attempt_at: Instant,
}

struct World<'a> {
    o: &'a FleetOptions,
    now: Instant,
    seq: u64,
    queue: BinaryHeap<Reverse<(Instant, u64, Ev)>>,
    clients: Vec<Client>,
    health: Health,
    /// Bumped when connections die (restart, kill).
    epoch: u64,
    /// Accept tokens in milli-connects, and when they were last topped up.
    tokens: u64,
    tokens_at: Instant,
    fault_at: Instant,
    back: Instant,
    seconds: BTreeMap<u64, Second>,
    ops: u64,
    fates: BTreeMap<(&'static str, bool), u64>,
    /// Ops and heartbeats sent into a blackhole: TCP delivers them once
    /// it heals (`None`: a heartbeat).
    held: Vec<(usize, Option<OpId>, ConnId, u64)>,
}

fn instant(d: Duration) -> Instant {
    Instant::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The seed of client `i`: splitmix64 of the fleet's seed and `i`.
fn client_seed(seed: u64, i: usize) -> u64 {
    let mut z = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl World<'_> {
    fn at(&mut self, t: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((t, self.seq, ev)));
    }

    fn half_rtt(&self) -> Duration {
        self.o.rtt / 2
    }

    fn second(&mut self, t: Instant) -> &mut Second {
        self.seconds.entry(t.since_origin().as_secs()).or_default()
    }

    /// Takes an accept token at `t`, if the server has one.
    fn accept_token(&mut self, t: Instant) -> bool {
        let Some(rate) = self.o.accept_rate else {
            return true;
        };
        let rate = u64::from(rate);
        let cap = (rate * 100).max(1000); // a tenth of a second's worth, ≥ 1
        let elapsed = t.saturating_duration_since(self.tokens_at).as_micros();
        let refill = u64::try_from(elapsed * u128::from(rate) / 1000).unwrap_or(u64::MAX);
        self.tokens = self.tokens.saturating_add(refill).min(cap);
        self.tokens_at = t;
        if self.tokens >= 1000 {
            self.tokens -= 1000;
            true
        } else {
            false
        }
    }

    /// An op (or a heartbeat) sent on `conn`: answered after a round trip
    /// if the connection is alive, held in a blackhole, lost otherwise
    /// (its reset is on the way).
    fn send(&mut self, c: usize, op: Option<OpId>, conn: ConnId) {
        let Some((id, epoch)) = self.clients[c].conn else {
            return;
        };
        if id != conn || epoch != self.epoch {
            return;
        }
        match self.health {
            Health::Up => {
                let t = self.now + self.o.rtt;
                self.at(t, Self::answer(c, op, conn, epoch));
            }
            Health::Blackhole => self.held.push((c, op, conn, epoch)),
            Health::Down => {}
        }
    }

    fn answer(c: usize, op: Option<OpId>, conn: ConnId, epoch: u64) -> Ev {
        match op {
            Some(op) => Ev::OpOk(c, op, conn, epoch),
            None => Ev::HeartbeatOk(c, conn, epoch),
        }
    }

    /// A connect attempt reaches the server side at `arrive`; its answer
    /// (if any) comes at `answer`.
    fn connect(&mut self, c: usize, conn: ConnId, arrive: Instant, answer: Instant) {
        match self.health {
            Health::Down => {
                self.second(arrive).refused += 1;
                self.at(answer, Ev::Refused(c, conn));
            }
            Health::Blackhole => self.second(arrive).lost += 1,
            Health::Up => {
                if self.accept_token(arrive) {
                    self.second(arrive).accepted += 1;
                    let epoch = self.epoch;
                    self.at(answer, Ev::Connected(c, conn, epoch));
                } else {
                    self.second(arrive).turned_away += 1;
                    self.at(answer, Ev::Unavailable(c, conn));
                }
            }
        }
    }

    /// Feeds the client's outputs to the world, then re-queues its timer.
    fn drain(&mut self, c: usize) {
        let now = self.now;
        let arrive = now + self.half_rtt();
        let answer = now + self.o.rtt;
        while let Some(out) = self.clients[c].m.poll_output() {
            match out {
                Output::Connect { conn, .. } => {
                    self.clients[c].attempt_at = now;
                    self.connect(c, conn, arrive, answer);
                }
                Output::Dispatch { op, conn, .. } => self.send(c, Some(op), conn),
                Output::Heartbeat { conn } => self.send(c, None, conn),
                Output::Close { conn } => {
                    if self.clients[c].conn.is_some_and(|(id, _)| id == conn) {
                        self.clients[c].conn = None;
                    }
                }
                Output::Complete(done) => {
                    let fate = match done.result {
                        Ok(_) => {
                            let cl = &mut self.clients[c];
                            if now >= self.back && cl.recovered.is_none() {
                                cl.recovered = Some(now);
                            }
                            ("ok", false)
                        }
                        Err(e) => (e.kind().name(), e.maybe_executed()),
                    };
                    *self.fates.entry(fate).or_insert(0) += 1;
                }
                Output::Event(Event::Connected { conn, .. } | Event::Reconnected { conn, .. }) => {
                    let cl = &mut self.clients[c];
                    cl.conn = Some((conn, self.epoch));
                    // A connection from an attempt made before the fault
                    // (answered after it) is not a recovery.
                    if cl.attempt_at > self.fault_at && cl.recovered.is_none() {
                        cl.recovered = Some(now);
                    }
                }
                Output::Event(_) => {}
            }
        }
        let next = self.clients[c].m.poll_timeout().map(|(t, _)| t);
        if let Some(t) = next {
            let armed = self.clients[c].armed;
            if armed.is_none_or(|a| t < a || a < now) {
                self.clients[c].armed = Some(t);
                self.at(t, Ev::Timer(c));
            }
        }
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::FaultStart => {
                match self.o.fault {
                    FleetFault::Restart { .. } => self.health = Health::Down,
                    FleetFault::Blackhole { .. } => self.health = Health::Blackhole,
                    FleetFault::KillConnections => {}
                }
                if !matches!(self.o.fault, FleetFault::Blackhole { .. }) {
                    // Every connection dies; its client hears of it half a
                    // round trip later.
                    self.epoch += 1;
                    let t = now + self.half_rtt();
                    for c in 0..self.clients.len() {
                        if let Some((conn, epoch)) = self.clients[c].conn {
                            self.at(t, Ev::Reset(c, conn, epoch));
                        }
                    }
                }
            }
            Ev::FaultEnd => {
                self.health = Health::Up;
                let t = now + self.o.rtt;
                for (c, op, conn, epoch) in std::mem::take(&mut self.held) {
                    self.at(t, Self::answer(c, op, conn, epoch));
                }
            }
            Ev::Timer(c) => {
                if self.clients[c].armed == Some(now) {
                    self.clients[c].armed = None;
                }
                if self.clients[c]
                    .m
                    .poll_timeout()
                    .is_some_and(|(t, _)| t <= now)
                {
                    self.clients[c].m.handle_timeout(now);
                }
                self.drain(c);
            }
            Ev::Submit(c) => {
                self.ops += 1;
                self.clients[c].m.submit(now, (), OpOptions::new());
                if let Some(every) = self.o.op_every {
                    let next = now + every;
                    if next < instant(self.o.until) {
                        self.at(next, Ev::Submit(c));
                    }
                }
                self.drain(c);
            }
            Ev::Connected(c, conn, epoch) => {
                self.clients[c].m.handle_connected(now, conn);
                self.drain(c);
                if epoch != self.epoch && self.clients[c].conn.is_some_and(|(id, _)| id == conn) {
                    // The server died between accepting and the answer.
                    self.clients[c].conn = Some((conn, epoch));
                    self.at(now, Ev::Reset(c, conn, epoch));
                }
            }
            Ev::Refused(c, conn) => {
                self.clients[c]
                    .m
                    .handle_connect_failed(now, conn, ConnectFailure::Refused);
                self.drain(c);
            }
            Ev::Unavailable(c, conn) => {
                self.clients[c]
                    .m
                    .handle_connect_failed(now, conn, ConnectFailure::Unavailable);
                self.drain(c);
            }
            Ev::OpOk(c, op, conn, epoch) => {
                if epoch == self.epoch {
                    self.clients[c]
                        .m
                        .handle_op_result(now, op, conn, OpResult::Ok);
                    self.drain(c);
                }
            }
            Ev::HeartbeatOk(c, conn, epoch) => {
                if epoch == self.epoch {
                    self.clients[c].m.handle_heartbeat_ok(now, conn);
                    self.drain(c);
                }
            }
            Ev::Reset(c, conn, epoch) => {
                if self.clients[c].conn == Some((conn, epoch)) {
                    self.clients[c]
                        .m
                        .handle_connection_lost(now, conn, LossKind::Reset);
                    self.drain(c);
                }
            }
        }
    }
}

/// Runs the fleet. Errors name the option that is out of range.
pub fn run_fleet(o: &FleetOptions) -> Result<FleetReport, String> {
    o.validate()?;
    let start = Instant::ZERO;
    let mut w = World {
        o,
        now: start,
        seq: 0,
        queue: BinaryHeap::new(),
        clients: Vec::with_capacity(o.clients),
        health: Health::Up,
        epoch: 0,
        tokens: u64::from(o.accept_rate.unwrap_or(0)) * 100,
        tokens_at: start,
        fault_at: instant(o.fault_at),
        back: instant(o.back_at()),
        seconds: BTreeMap::new(),
        ops: 0,
        fates: BTreeMap::new(),
        held: Vec::new(),
    };
    for i in 0..o.clients {
        w.clients.push(Client {
            m: Machine::new(o.config.clone(), client_seed(o.seed, i), start),
            armed: None,
            conn: None,
            recovered: None,
            attempt_at: start,
        });
        w.drain(i);
        if let Some(every) = o.op_every {
            // Spread evenly: client i starts at i/N of the period.
            let offset = every.mul_f64(i as f64 / o.clients as f64);
            w.at(instant(offset), Ev::Submit(i));
        }
    }
    w.at(instant(o.fault_at), Ev::FaultStart);
    if o.fault != FleetFault::KillConnections {
        // Even a zero outage ends (queued after its start).
        w.at(instant(o.back_at()), Ev::FaultEnd);
    }
    let until = instant(o.until);
    while let Some(Reverse((t, _, ev))) = w.queue.pop() {
        if t > until {
            break;
        }
        w.now = t;
        w.handle(ev);
    }
    w.now = until;
    for c in 0..w.clients.len() {
        w.clients[c].m.close(until);
        w.drain(c);
    }
    let back = instant(o.back_at());
    let mut recovery: Vec<Duration> = w
        .clients
        .iter()
        .filter_map(|c| c.recovered.map(|t| t.saturating_duration_since(back)))
        .collect();
    recovery.sort_unstable();
    let not_recovered = o.clients - recovery.len();
    Ok(FleetReport {
        clients: o.clients,
        back_at: o.back_at(),
        seconds: w.seconds,
        recovery,
        not_recovered,
        ops: w.ops,
        fates: w
            .fates
            .into_iter()
            .map(|((kind, maybe_run), n)| {
                let name = if maybe_run {
                    format!("{kind}+maybe_run")
                } else {
                    kind.to_string()
                };
                (name, n)
            })
            .collect(),
    })
}

/// The reconnect policies the trade-off table compares: `recommended()`
/// as shipped, its quick-reconnect pace at 50 ms and 200 ms, the same
/// preset with quick reconnects off (full-jitter exponential backoff
/// alone: the previous `recommended()`) and with equal and decorrelated
/// jitter, and the legacy constant 1 s interval (`mongodb-legacy`, with
/// unlimited tries so a long outage does not end in a give-up).
pub fn policies() -> Vec<(&'static str, Config)> {
    use redial_core::{Jitter, QuickReconnect, Tries};
    let rec = Config::recommended;
    let quick = |probe_ms| {
        rec()
            .to_builder()
            .quick_reconnect(Some(QuickReconnect {
                probe: Duration::from_millis(probe_ms),
                probe_for: Duration::from_secs(30),
            }))
            .build()
            .expect("valid")
    };
    let slow = |jitter| {
        rec()
            .to_builder()
            .quick_reconnect(None)
            .jitter(jitter)
            .build()
            .expect("valid")
    };
    vec![
        ("recommended (quick, probe 100 ms)", rec()),
        ("quick, probe 50 ms", quick(50)),
        ("quick, probe 200 ms", quick(200)),
        (
            "exponential 100 ms x2 <= 5 s, full jitter (no quick)",
            slow(Jitter::Full),
        ),
        ("exponential, equal jitter (no quick)", slow(Jitter::Equal)),
        (
            "exponential, decorrelated jitter (no quick)",
            slow(Jitter::Decorrelated),
        ),
        (
            "constant 1 s, no jitter (mongodb-legacy, unlimited tries)",
            Config::mongodb_legacy()
                .to_builder()
                .reconnect_tries(Tries::Unlimited)
                .build()
                .expect("valid"),
        ),
    ]
}

/// The faults of the trade-off table: restarts of 0.3 s, 2 s and 10 s,
/// and killed connections.
pub fn table_faults() -> Vec<FleetFault> {
    vec![
        FleetFault::Restart {
            outage: Duration::from_millis(300),
        },
        FleetFault::Restart {
            outage: Duration::from_secs(2),
        },
        FleetFault::Restart {
            outage: Duration::from_secs(10),
        },
        FleetFault::KillConnections,
    ]
}

/// The trade-off table as markdown: for each policy and fault, the median
/// and max recovery after the server's return, the peak connects/s the
/// listening server received in the ten seconds from its return, and the
/// connect attempts in all (refused ones included). `base` gives every
/// option but the config and the fault.
pub fn policy_table(base: &FleetOptions) -> Result<String, String> {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| policy | fault | recovery median | recovery max | not recovered | peak connects/s at return | attempts (all) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for (name, config) in policies() {
        for fault in table_faults() {
            let o = FleetOptions {
                config: config.clone(),
                fault,
                ..base.clone()
            };
            let r = run_fleet(&o)?;
            let ms = |d: Option<Duration>| {
                d.map_or("-".to_string(), |d| {
                    format!("{:.1} ms", d.as_secs_f64() * 1e3)
                })
            };
            let what = match fault {
                FleetFault::KillConnections => "killed connections".to_string(),
                f => format!("{} {:.1} s", f.name(), f.outage().as_secs_f64()),
            };
            let _ = writeln!(
                s,
                "| {name} | {what} | {} | {} | {} | {} | {} |",
                ms(r.recovery_quantile(0.5)),
                ms(r.recovery_quantile(1.0)),
                r.not_recovered,
                r.peak_at_return(),
                r.attempts()
            );
        }
    }
    Ok(s)
}
