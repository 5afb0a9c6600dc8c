//! Agreement: the same fault schedules under the real peers and under the
//! simulator with the matching preset, op by op.
//!
//! A [`Schedule`] is a workload (op `i` submitted at `OFFSET + i ×
//! interval`, each op `RPUSH <key> <i>` awaited in its own task) and one
//! fault on a private `redis-server` (SIGKILL + restart, SIGSTOP +
//! SIGCONT, `CLIENT KILL TYPE normal`, SIGTERM + restart). The server runs
//! with `appendonly yes`, `appendfsync always`, so a write it acknowledged
//! survives the SIGKILL, and afterwards `LRANGE` says how many times each
//! op actually ran: 0, 1, or 2 and more (duplicated).
//!
//! [`run_real`] drives every peer it is given ([`PEERS`], and
//! [`IOREDIS_PEERS`] — Node.js processes — when [`ioredis_available`])
//! against the server at once
//! (so all of them see the very same fault), each with its own key;
//! [`run_sim`] replays the same schedule — with the fault times as measured
//! in the real run — as a timeline under the peer's preset through the
//! simulator's fast loop (deterministic: the same timeline gives the same
//! fates); [`compare`] aligns the two by op index.
//!
//! Classes ([`Class`]): `ok`; `failed` (an error was reported; the real
//! side says whether it ran, from `LRANGE`; the simulator whether it *may*
//! have run); `hung` (no outcome by the run's cut-off); `duplicated` (real:
//! ran twice or more, whatever was reported; simulator: dispatched again
//! after a dispatch lost in flight — the simulated world cannot say whether
//! the lost dispatch ran, so this is "may have run twice").

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fred::prelude::{ClientLike, ListInterface, ReconnectPolicy};
use serde::Serialize;

use crate::Redis;

/// The first op is submitted this long after the run's start (the sim's
/// client connects at 0).
pub const OFFSET: Duration = Duration::from_millis(10);

/// `redis-server` arguments of the agreement runs: every write is on disk
/// before it is acknowledged, and a restart reads it back.
pub const SERVER_ARGS: [&str; 4] = ["--appendonly", "yes", "--appendfsync", "always"];

/// The simulated network of the timelines: loopback-like one-way latency
/// and server time per op.
const SIM_NETWORK: &str = "latency = \"50us\"\nservice_time = \"20us\"\n";

/// The simulator's seed (its jitter draws).
const SIM_SEED: u64 = 7;

/// One real peer and the simulator preset that stands for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Peer {
    /// The peer's name (also the preset's name once the core has it).
    pub name: &'static str,
    /// The `[config] preset` its timelines run under.
    pub preset: &'static str,
    /// The client library and version measured, and its settings.
    pub client: &'static str,
}

/// The peers and their presets: the one table to change.
pub const PEERS: [Peer; 3] = [
    Peer {
        name: "fred-default",
        preset: "fred-default",
        client: "fred 10.1, default Builder (no reconnect policy), RESP2",
    },
    Peer {
        name: "fred-reconnect-policy",
        preset: "fred-reconnect-policy",
        client: "fred 10.1, ReconnectPolicy::default() (constant 1 s + 0–100 ms jitter, unlimited), RESP2",
    },
    Peer {
        name: "redis-rs-connection-manager",
        preset: "redis-rs-connection-manager",
        client: "redis 1.8 aio::ConnectionManager, ConnectionManagerConfig::default(), RESP2",
    },
];

/// The real ioredis peers: a Node.js process each (`agree/ioredis_peer.mjs`,
/// with ioredis from `agree/node_modules`: `cd bench/agree && npm ci`),
/// every option at its default. Run only when [`ioredis_available`] says
/// so (the `agree` binary prints a SKIPPED line otherwise); not in
/// [`PEERS`], so the tests never need `node`.
pub const IOREDIS_PEERS: [Peer; 2] = [
    Peer {
        name: "ioredis-v5",
        preset: "ioredis-v5",
        client: "ioredis 5.11.1 (Node.js), new Redis(port, host): every option at its default, RESP2",
    },
    Peer {
        name: "ioredis-v6",
        preset: "ioredis-v6",
        client: "ioredis 6.1.0 (Node.js, npm alias ioredis6), new Redis(port, host): every option at its default (RESP3)",
    },
];

/// The npm module (in `agree/node_modules`) of a Node.js peer; `None`: a
/// Rust peer.
pub fn node_module(peer: &str) -> Option<&'static str> {
    match peer {
        "ioredis-v5" => Some("ioredis"),
        "ioredis-v6" => Some("ioredis6"),
        _ => None,
    }
}

/// The directory of the Node.js peer (`bench/agree`).
pub fn node_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("agree")
}

/// `Ok("node v20.20.2, ioredis 5.11.1, ioredis6 6.1.0")` when `node` runs
/// and both modules are installed in `agree/node_modules`; `Err(why)`
/// otherwise.
pub fn ioredis_available() -> Result<String, String> {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("node: {e}"))?;
    if !node.status.success() {
        return Err("node --version failed".into());
    }
    let mut found = vec![format!(
        "node {}",
        String::from_utf8_lossy(&node.stdout).trim()
    )];
    for m in ["ioredis", "ioredis6"] {
        let path = node_dir().join("node_modules").join(m).join("package.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(short)?;
        found.push(format!("{m} {}", v["version"].as_str().unwrap_or("?")));
    }
    Ok(found.join(", "))
}

/// The fault of a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Fault {
    /// SIGKILL, restarted on the same port after `down`.
    Kill {
        /// From the kill to the restart.
        #[serde(serialize_with = "ser_ms")]
        down: Duration,
    },
    /// SIGSTOP, SIGCONT after `stopped`.
    Stop {
        /// From SIGSTOP to SIGCONT.
        #[serde(serialize_with = "ser_ms")]
        stopped: Duration,
    },
    /// SIGSTOP, then SIGKILL while stopped after `stopped`, restarted on
    /// the same port `down` after the kill: what was sent during the stop
    /// was never read, and is lost in flight at the kill.
    StopThenKill {
        /// From SIGSTOP to SIGKILL.
        #[serde(serialize_with = "ser_ms")]
        stopped: Duration,
        /// From SIGKILL to the restart.
        #[serde(serialize_with = "ser_ms")]
        down: Duration,
    },
    /// `CLIENT KILL TYPE normal` from a separate connection: every client
    /// connection closed, the server stays up.
    KillConnections,
    /// SIGTERM (a clean shutdown: clients' connections closed, the process
    /// exits), restarted on the same port after `down`.
    Term {
        /// From SIGTERM to the restart.
        #[serde(serialize_with = "ser_ms")]
        down: Duration,
    },
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Fault {
    /// Words for the report.
    pub fn describe(&self) -> String {
        let s = |d: &Duration| format!("{}", d.as_secs_f64());
        match self {
            Fault::Kill { down } => format!("SIGKILL, restart {} s later", s(down)),
            Fault::Stop { stopped } => format!("SIGSTOP, SIGCONT {} s later", s(stopped)),
            Fault::StopThenKill { stopped, down } => format!(
                "SIGSTOP, SIGKILL {} s later, restart {} s after that",
                s(stopped),
                s(down)
            ),
            Fault::KillConnections => "CLIENT KILL TYPE normal (server stays up)".into(),
            Fault::Term { down } => {
                format!("SIGTERM (clean shutdown), restart {} s later", s(down))
            }
        }
    }
}

/// A workload and one fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Schedule {
    /// Short name (`kill-restart`).
    pub name: &'static str,
    /// Ops submitted.
    pub ops: u64,
    /// Between two submissions.
    #[serde(serialize_with = "ser_ms")]
    pub interval: Duration,
    /// The fault, this long after the start.
    #[serde(serialize_with = "ser_ms")]
    pub fault_at: Duration,
    /// What happens.
    pub fault: Fault,
    /// An op with no outcome this long after the start is hung (and the
    /// run ends here at the latest).
    #[serde(serialize_with = "ser_ms")]
    pub cutoff: Duration,
}

impl Schedule {
    /// The submission time of op `i` after the start.
    pub fn submit_at(&self, i: u64) -> Duration {
        OFFSET + self.interval * u32::try_from(i).unwrap_or(u32::MAX)
    }
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Ops every 20 ms for 8 s, the fault at 2 s, cut-off 12 s after the last
/// submission.
const fn full(name: &'static str, fault: Fault) -> Schedule {
    Schedule {
        name,
        ops: 400,
        interval: ms(20),
        fault_at: ms(2000),
        fault,
        cutoff: ms(20_010),
    }
}

/// The schedules of the full run.
pub fn schedules() -> Vec<Schedule> {
    vec![
        full("kill-restart", Fault::Kill { down: ms(2000) }),
        full("sigstop", Fault::Stop { stopped: ms(3000) }),
        full("connection-kill", Fault::KillConnections),
        full("sigterm-restart", Fault::Term { down: ms(2000) }),
        full(
            "sigstop-then-kill",
            Fault::StopThenKill {
                stopped: ms(1000),
                down: ms(1000),
            },
        ),
        // Down 15 s: longer than ioredis 5's 20 failed reconnects (~10.5
        // s), so its `maxRetriesPerRequest` fails what is queued; the
        // cut-off leaves 7 s after the restart.
        Schedule {
            cutoff: ms(24_010),
            ..full("kill-long", Fault::Kill { down: ms(15_000) })
        },
    ]
}

/// A short schedule for the tests: ops every 20 ms for 2 s, every client
/// connection killed at 1 s, cut-off 4 s after the start.
pub fn quick_connection_kill() -> Schedule {
    Schedule {
        name: "connection-kill-short",
        ops: 100,
        interval: ms(20),
        fault_at: ms(1000),
        fault: Fault::KillConnections,
        cutoff: ms(4010),
    }
}

/// An op's class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Reported success (and ran once).
    Ok,
    /// Reported an error (and ran at most once).
    Failed,
    /// No outcome by the cut-off (ran at most once).
    Hung,
    /// Ran twice or more (real), or may have run twice (simulator).
    Duplicated,
}

impl Class {
    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Class::Ok => "ok",
            Class::Failed => "failed",
            Class::Hung => "hung",
            Class::Duplicated => "duplicated",
        }
    }
}

/// What the real client reported for one op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "outcome", content = "error")]
pub enum Reported {
    /// Success.
    Ok,
    /// An error (its text, shortened).
    Failed(String),
    /// Nothing by the cut-off.
    Hung,
}

/// One op of a real run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RealOp {
    /// What the client reported.
    pub reported: Reported,
    /// From submission to the outcome, µs (`None`: hung).
    pub took_us: Option<u64>,
    /// How many times `LRANGE` shows it.
    pub executions: u64,
}

impl RealOp {
    /// Its class.
    pub fn class(&self) -> Class {
        if self.executions >= 2 {
            return Class::Duplicated;
        }
        match self.reported {
            Reported::Ok => Class::Ok,
            Reported::Failed(_) => Class::Failed,
            Reported::Hung => Class::Hung,
        }
    }
}

/// When the fault happened, as measured (µs after the run's start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Marks {
    /// The fault (kill, SIGSTOP, CLIENT KILL, SIGTERM) was sent.
    pub sent_us: u64,
    /// It had taken effect: the killed or terminated process reaped, the
    /// SIGSTOP delivered, the CLIENT KILL answered. The simulated fault
    /// starts here.
    pub fault_us: u64,
    /// [`Fault::StopThenKill`]: the SIGKILL had taken effect (process
    /// reaped); 0 otherwise.
    pub kill_us: u64,
    /// The server accepted connections again (restart), got SIGCONT, or
    /// answered the CLIENT KILL.
    pub back_us: u64,
    /// CLIENT KILL: how many connections it closed.
    pub killed: u64,
}

/// One peer's real run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RealRun {
    /// The peer.
    pub peer: &'static str,
    /// Op `i` at index `i`.
    pub ops: Vec<RealOp>,
    /// Entries in the list that are no op index of this run (0 expected).
    pub strays: u64,
    /// A Node.js peer: the round trip of its `go`, µs — its clock lags the
    /// harness's by at most this. `None`: a Rust peer (the same clock).
    pub clock_lag_us: Option<u64>,
}

/// One op of a simulated run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimOp {
    /// `ok`, `failed <kind> (may have run | not run)`, or `pending`.
    pub fate: String,
    /// Dispatches.
    pub attempts: u32,
    /// Dispatches the server did not refuse (each may have run): 2 or
    /// more, sent again after a loss in flight.
    pub runs: u32,
    /// The op may have run (always true on success).
    pub maybe_executed: bool,
    /// From submission to the outcome, µs (`None`: pending at the cut-off).
    pub took_us: Option<u64>,
}

impl SimOp {
    /// Its class: sent again after a loss in flight is "duplicated" (may
    /// have run twice) whatever the outcome.
    pub fn class(&self) -> Class {
        if self.runs >= 2 {
            Class::Duplicated
        } else if self.took_us.is_none() {
            Class::Hung
        } else if self.fate == "ok" {
            Class::Ok
        } else {
            Class::Failed
        }
    }
}

/// Ops counted by class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Class ok.
    pub ok: u64,
    /// Class failed.
    pub failed: u64,
    /// Of the failed: ran (real) or may have run (simulator).
    pub failed_ran: u64,
    /// Class hung.
    pub hung: u64,
    /// Class duplicated.
    pub duplicated: u64,
}

impl Counts {
    fn add(&mut self, c: Class, ran: bool) {
        match c {
            Class::Ok => self.ok += 1,
            Class::Failed => {
                self.failed += 1;
                self.failed_ran += u64::from(ran);
            }
            Class::Hung => self.hung += 1,
            Class::Duplicated => self.duplicated += 1,
        }
    }
}

/// A group of ops whose class differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// Real class.
    pub real: Class,
    /// Simulated class.
    pub sim: Class,
    /// How many ops.
    pub count: u64,
    /// First and last op index.
    pub ops: (u64, u64),
    /// First and last submission, ms after the start.
    pub submitted_ms: (u64, u64),
    /// Why, when the cause is known (see [`why`]).
    pub why: &'static str,
}

/// One scenario × peer.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The schedule.
    pub scenario: &'static str,
    /// The peer.
    pub peer: &'static str,
    /// Its preset in the simulator.
    pub preset: &'static str,
    /// Real counts.
    pub real: Counts,
    /// Simulated counts.
    pub sim: Counts,
    /// Ops in the same class on both sides.
    pub agree: u64,
    /// Ops compared.
    pub total: u64,
    /// Where they differ, largest group first.
    pub differences: Vec<Difference>,
    /// Real ops that reported success but are missing from the list.
    pub acked_missing: u64,
    /// Invariant violations of the simulated run (none expected).
    pub violations: Vec<String>,
}

impl Row {
    /// `agree / total` in percent.
    pub fn agreement_pct(&self) -> f64 {
        if self.total == 0 {
            100.0
        } else {
            self.agree as f64 * 100.0 / self.total as f64
        }
    }
}

/// Known causes of a disagreement, by peer, fault, (real, simulated)
/// class and whether the real ops of the group ran (at least once);
/// "not explained" otherwise (the ops are in the JSON).
pub fn why(peer: &str, fault: &Fault, real: Class, sim: Class, real_ran: bool) -> &'static str {
    use Class::*;
    let closes = matches!(
        fault,
        Fault::Kill { .. } | Fault::Term { .. } | Fault::KillConnections
    );
    match (real, sim) {
        (Failed, Ok) if closes && real_ran => {
            "in flight at the real fault: the server ran it and the connection closed before the reply left (redis's clean shutdown exits with replies unsent), so the peer failed it; the simulated server had answered it before the fault (the real one answers more slowly around a fault)"
        }
        (Duplicated, Ok) if closes => {
            "ran twice for real: in flight at the real fault, the server ran it and the connection closed before the reply left, and the peer wrote it again after the reconnect (the hazard the class flags); the simulated server had answered it before the fault (the real one answers more slowly around a fault)"
        }
        (Failed, Ok) if peer == "redis-rs-connection-manager" && closes => {
            "RESP2 ConnectionManager: nothing reads the closed connection for it, so the first op after the close is written to it, fails (not run) and only then starts the reconnect; the simulated client sees the close itself and holds that op for the reconnect (not reproduced by the preset, its docs say so)"
        }
        (Ok, Duplicated) => {
            "resent after a loss in flight: the simulator reports what the client can know (may have run twice); for real it ran once, so its lost first write never ran (it was never read: in these schedules, by a stopped server)"
        }
        (Duplicated, _) => {
            "ran twice for real: the peer resent an op lost in flight that had run; the simulated client did not resend it"
        }
        (Failed, Ok) => {
            "the peer failed it: in flight at the real fault (the real server answered more slowly than the simulated one), or failed while disconnected where the preset holds it"
        }
        (Ok, Failed) => "the preset fails an op the peer held or resent",
        (Hung, _) => "the peer gave no outcome by the cut-off; the preset did",
        (_, Hung) => "the preset gave no outcome by the cut-off; the peer did",
        _ => "not explained (see the ops in --json)",
    }
}

type OpFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type OpFn = Arc<dyn Fn(u64) -> OpFuture + Send + Sync>;

fn short(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// Connects `peer` to `url`, its ops pushing to `key`.
async fn connect(peer: &Peer, url: &str, key: String) -> Result<OpFn, String> {
    let key: Arc<str> = key.into();
    match peer.name {
        "fred-default" | "fred-reconnect-policy" => {
            let config = fred::prelude::Config::from_url(url).map_err(short)?;
            let mut builder = fred::prelude::Builder::from_config(config);
            if peer.name == "fred-reconnect-policy" {
                builder.set_policy(ReconnectPolicy::default());
            }
            let client = builder.build().map_err(short)?;
            client.init().await.map_err(short)?;
            Ok(Arc::new(move |i| {
                let (c, key) = (client.clone(), key.clone());
                Box::pin(async move {
                    c.rpush::<i64, _, _>(&*key, i as i64)
                        .await
                        .map(drop)
                        .map_err(short)
                })
            }))
        }
        "redis-rs-connection-manager" => {
            let client = redis::Client::open(url).map_err(short)?;
            let manager = client
                .get_connection_manager_with_config(redis::aio::ConnectionManagerConfig::default())
                .await
                .map_err(short)?;
            Ok(Arc::new(move |i| {
                let (mut m, key) = (manager.clone(), key.clone());
                Box::pin(async move {
                    redis::cmd("RPUSH")
                        .arg(&*key)
                        .arg(i)
                        .query_async::<i64>(&mut m)
                        .await
                        .map(drop)
                        .map_err(short)
                })
            }))
        }
        other => Err(format!("no driver for peer `{other}`")),
    }
}

/// How many times each op index appears in `key` (and how many entries
/// are no index below `ops`).
async fn executions(url: &str, key: &str, ops: u64) -> Result<(Vec<u64>, u64), String> {
    let client = redis::Client::open(url).map_err(short)?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(short)?;
    let list: Vec<String> = redis::cmd("LRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .map_err(short)?;
    let mut counts = vec![0u64; usize::try_from(ops).unwrap_or(0)];
    let mut strays = 0;
    for v in list {
        match v.parse::<usize>().ok().and_then(|i| counts.get_mut(i)) {
            Some(c) => *c += 1,
            None => strays += 1,
        }
    }
    Ok((counts, strays))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn micros_since(t0: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(t0).as_micros()).unwrap_or(u64::MAX)
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

type Slot = Option<(Reported, Option<u64>)>;

/// A Node.js peer: `agree/ioredis_peer.mjs` connected and waiting for
/// `go` (see the script for the protocol).
struct NodePeer {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<(Instant, String)>,
    go_at: Option<Instant>,
}

impl Drop for NodePeer {
    fn drop(&mut self) {
        // Our own child: gone already, or killed now.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl NodePeer {
    /// Starts the script and waits (up to 15 s) until the client is ready.
    fn spawn(module: &str, port: u16, key: &str, s: &Schedule) -> Result<NodePeer, String> {
        use std::io::BufRead as _;
        use std::process::{Command, Stdio};
        let ms = |d: Duration| d.as_millis().to_string();
        let mut child = Command::new("node")
            .current_dir(node_dir())
            .arg("ioredis_peer.mjs")
            .arg(module)
            .arg(port.to_string())
            .arg(key)
            .arg(s.ops.to_string())
            .arg(ms(s.interval))
            .arg(ms(OFFSET))
            .arg(ms(s.cutoff))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("node: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("node: no stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        let peer = NodePeer {
            child,
            stdin,
            lines,
            go_at: None,
        };
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match peer.lines.recv_timeout(left) {
                Ok((_, l)) if l.contains("\"ready\"") => return Ok(peer),
                Ok(_) => {}
                Err(_) => return Err("node: not ready within 15 s".into()),
            }
        }
    }

    /// Starts its clock: writes `go`.
    fn go(&mut self) -> Result<(), String> {
        use std::io::Write as _;
        let stdin = self.stdin.as_mut().ok_or("node: stdin closed")?;
        self.go_at = Some(Instant::now());
        stdin
            .write_all(b"go\n")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("node: go: {e}"))
    }

    /// Waits for its report (printed at the cut-off) and its exit. Returns
    /// op `i` at index `i`, and the round trip of `go` (µs: how much the
    /// script's clock may lag the harness's, at most).
    fn finish(mut self, n: usize, until: Instant) -> Result<(Vec<Slot>, Option<u64>), String> {
        let mut slots: Vec<Slot> = vec![None; n];
        let mut lag = None;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let (at, line) = self
                .lines
                .recv_timeout(left)
                .map_err(|_| "node: no report by the cut-off + 10 s".to_string())?;
            let v: serde_json::Value =
                serde_json::from_str(&line).map_err(|e| format!("node: {e}: {line}"))?;
            if v["go"].as_bool() == Some(true) {
                lag = self.go_at.map(|g| micros_since(g, at));
            } else if v["end"].as_bool() == Some(true) {
                break;
            } else if let Some(i) = v["op"].as_u64() {
                let took = match (v["submit_us"].as_u64(), v["done_us"].as_u64()) {
                    (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                    _ => None,
                };
                let r = match v["outcome"].as_str() {
                    Some("ok") => Reported::Ok,
                    Some("error") => Reported::Failed(short(v["error"].as_str().unwrap_or("?"))),
                    _ => Reported::Hung,
                };
                let took = if r == Reported::Hung { None } else { took };
                if let Some(slot) = slots.get_mut(usize::try_from(i).unwrap_or(usize::MAX)) {
                    *slot = Some((r, took));
                }
            }
        }
        // It exits on its own right after `end`.
        let exit_by = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < exit_by {
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok((slots, lag))
    }
}

/// Runs `schedule` against `server` with every peer in `peers` connected
/// at once, each pushing to its own key (`agree:<tag>:<schedule>:<peer>`).
/// Returns the fault times as measured and each peer's ops. The server is
/// up again when it returns. Errors: a peer could not connect, the
/// runtime could not start, or the list could not be read afterwards.
pub fn run_real(
    server: &mut Redis,
    schedule: &Schedule,
    peers: &[Peer],
    tag: &str,
) -> Result<(Marks, Vec<RealRun>), String> {
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(short)?;
    let keys: Vec<String> = peers
        .iter()
        .map(|p| format!("agree:{tag}:{}:{}", schedule.name, p.name))
        .collect();
    // A Rust peer is an op function on this runtime; a Node.js one, its
    // own process (connected and waiting for `go`).
    let mut nodes: Vec<Option<NodePeer>> = Vec::new();
    for (p, key) in peers.iter().zip(&keys) {
        nodes.push(match node_module(p.name) {
            Some(m) => Some(
                NodePeer::spawn(m, server.port(), key, schedule)
                    .map_err(|e| format!("{}: connect: {e}", p.name))?,
            ),
            None => None,
        });
    }
    let ops: Vec<Option<OpFn>> = rt.block_on(async {
        let mut ops = Vec::new();
        for (p, key) in peers.iter().zip(&keys) {
            if node_module(p.name).is_some() {
                ops.push(None);
                continue;
            }
            let op = connect(p, &url, key.clone())
                .await
                .map_err(|e| format!("{}: connect: {e}", p.name))?;
            ops.push(Some(op));
        }
        Ok::<_, String>(ops)
    })?;

    let t0 = Instant::now();
    for (p, node) in peers.iter().zip(nodes.iter_mut()) {
        if let Some(node) = node {
            node.go().map_err(|e| format!("{}: {e}", p.name))?;
        }
    }
    let cutoff = tokio::time::Instant::from_std(t0 + schedule.cutoff);
    type Log = Arc<Mutex<Vec<Slot>>>;
    let n = usize::try_from(schedule.ops).unwrap_or(0);
    let logs: Vec<Log> = peers
        .iter()
        .map(|_| Arc::new(Mutex::new(vec![None; n])))
        .collect();
    let mut drivers = Vec::new();
    for (op, log) in ops.iter().zip(&logs) {
        let Some(op) = op else { continue };
        let (op, log, s) = (op.clone(), log.clone(), schedule.clone());
        drivers.push(rt.spawn(async move {
            let mut tasks = Vec::new();
            for i in 0..s.ops {
                let at = tokio::time::Instant::from_std(t0 + s.submit_at(i));
                tokio::time::sleep_until(at).await;
                let (op, log) = (op.clone(), log.clone());
                tasks.push(tokio::spawn(async move {
                    let issued = Instant::now();
                    let r = match tokio::time::timeout_at(cutoff, op(i)).await {
                        Ok(Ok(())) => Reported::Ok,
                        Ok(Err(e)) => Reported::Failed(e),
                        Err(_) => Reported::Hung,
                    };
                    let took = (r != Reported::Hung).then(|| micros_since(issued, Instant::now()));
                    if let Some(slot) = lock(&log).get_mut(usize::try_from(i).unwrap_or(usize::MAX))
                    {
                        *slot = Some((r, took));
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        }));
    }

    // The fault, from this thread (the runtime keeps driving the ops).
    sleep_until(t0 + schedule.fault_at);
    let mut marks = Marks {
        sent_us: micros_since(t0, Instant::now()),
        ..Marks::default()
    };
    let done = |m: &mut Marks| m.fault_us = micros_since(t0, Instant::now());
    match schedule.fault {
        Fault::Kill { down } => {
            server.kill();
            done(&mut marks);
            sleep_until(t0 + schedule.fault_at + down);
            marks.back_us = micros_since(t0, server.restart());
        }
        Fault::Term { down } => {
            server.terminate();
            done(&mut marks);
            sleep_until(t0 + schedule.fault_at + down);
            marks.back_us = micros_since(t0, server.restart());
        }
        Fault::Stop { stopped } => {
            server.pause();
            done(&mut marks);
            sleep_until(t0 + schedule.fault_at + stopped);
            marks.back_us = micros_since(t0, Instant::now());
            server.resume();
        }
        Fault::StopThenKill { stopped, down } => {
            server.pause();
            done(&mut marks);
            sleep_until(t0 + schedule.fault_at + stopped);
            server.kill();
            marks.kill_us = micros_since(t0, Instant::now());
            sleep_until(t0 + schedule.fault_at + stopped + down);
            marks.back_us = micros_since(t0, server.restart());
        }
        Fault::KillConnections => {
            marks.killed = server.kill_clients();
            done(&mut marks);
            marks.back_us = marks.fault_us;
        }
    }
    rt.block_on(async {
        for d in drivers {
            let _ = d.await;
        }
    });
    // The Node.js peers report at the cut-off and exit.
    let mut lags = vec![None; peers.len()];
    for ((p, node), (log, lag)) in peers
        .iter()
        .zip(nodes)
        .zip(logs.iter().zip(lags.iter_mut()))
    {
        if let Some(node) = node {
            let (slots, l) = node
                .finish(n, t0 + schedule.cutoff + Duration::from_secs(10))
                .map_err(|e| format!("{}: {e}", p.name))?;
            *lock(log) = slots;
            *lag = l;
        }
    }
    // The clients go with their runtime (a hung op cannot run later,
    // after the list was read).
    drop(ops);
    rt.shutdown_timeout(Duration::from_secs(1));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(short)?;
    let mut runs = Vec::new();
    for (((p, key), log), clock_lag_us) in peers.iter().zip(&keys).zip(&logs).zip(lags) {
        let (counts, strays) = rt
            .block_on(executions(&url, key, schedule.ops))
            .map_err(|e| format!("{}: LRANGE: {e}", p.name))?;
        let ops = lock(log)
            .iter()
            .zip(counts)
            .map(|(slot, executions)| {
                let (reported, took_us) = slot.clone().unwrap_or((Reported::Hung, None));
                RealOp {
                    reported,
                    took_us,
                    executions,
                }
            })
            .collect();
        runs.push(RealRun {
            peer: p.name,
            ops,
            strays,
            clock_lag_us,
        });
    }
    Ok((marks, runs))
}

/// The timeline of `schedule` under `preset`, with the fault at the
/// measured `marks`: SIGKILL is `crash` (connections reset, connects
/// refused) until the restart was seen accepting; SIGTERM is `down`
/// (connections closed); SIGSTOP is `pause` until SIGCONT (nothing closed,
/// what reached the server answered on resume); a killed connection is
/// `down` with the server back 1 µs later (before any client can see the
/// loss, so no connect is ever refused): what `CLIENT KILL` does.
pub fn timeline(schedule: &Schedule, preset: &str, marks: &Marks) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "name = \"agree: {} under {preset}\"", schedule.name);
    let _ = writeln!(t, "seed = {SIM_SEED}");
    let _ = writeln!(t, "until = \"{}us\"", schedule.cutoff.as_micros());
    let _ = writeln!(t, "\n[config]\npreset = \"{preset}\"");
    let _ = writeln!(t, "\n[network]\n{SIM_NETWORK}");
    let _ = writeln!(
        t,
        "[[workload]]\nsubmit = \"op\"\nevery = \"{}us\"\nfrom = \"{}us\"\nuntil = \"{}us\"\n",
        schedule.interval.as_micros(),
        OFFSET.as_micros(),
        schedule
            .submit_at(schedule.ops.saturating_sub(1))
            .as_micros()
            + 1
    );
    let down = marks.back_us.saturating_sub(marks.fault_us).max(1);
    let mut steps = match schedule.fault {
        Fault::Kill { .. } => vec![(marks.fault_us, "crash", down)],
        Fault::Term { .. } => vec![(marks.fault_us, "down", down)],
        Fault::Stop { .. } => vec![(marks.fault_us, "pause", down)],
        Fault::KillConnections => vec![(marks.fault_us, "down", 1)],
        // The crash ends the pause (it cancels the pause's own end) and
        // drops whatever the paused server had been sent.
        Fault::StopThenKill { .. } => vec![
            (marks.fault_us, "pause", down),
            (
                marks.kill_us.max(marks.fault_us),
                "crash",
                marks.back_us.saturating_sub(marks.kill_us).max(1),
            ),
        ],
    };
    steps.sort_by_key(|s| s.0);
    for (at, action, for_) in steps {
        let _ = writeln!(
            t,
            "[[step]]\nat = \"{at}us\"\nserver = \"{action}\"\nfor = \"{for_}us\"\n"
        );
    }
    t
}

/// Runs `schedule`'s timeline under `preset` in the simulator's fast loop.
/// Returns op `i` at index `i` and the run's invariant violations. Errors:
/// the timeline does not parse (an unknown preset, say).
pub fn run_sim(
    schedule: &Schedule,
    preset: &str,
    marks: &Marks,
) -> Result<(Vec<SimOp>, Vec<String>), String> {
    let text = timeline(schedule, preset, marks);
    let tl = redial_sim::Timeline::parse(&text, "agree.toml").map_err(short)?;
    let n = usize::try_from(schedule.ops).unwrap_or(0);
    let mut ops = vec![
        SimOp {
            fate: "pending".into(),
            attempts: 0,
            runs: 0,
            maybe_executed: false,
            took_us: None,
        };
        n
    ];
    let summary = redial_sim::run(&tl, &redial_sim::RunOptions::default(), |line| {
        if let redial_sim::Line::Op(o) = line {
            let fate = match &o.result {
                Ok(_) => "ok".to_string(),
                Err((kind, _)) => format!(
                    "failed {kind} ({})",
                    if o.maybe_executed {
                        "may have run"
                    } else {
                        "not run"
                    }
                ),
            };
            let i = usize::try_from(o.id.saturating_sub(1)).unwrap_or(usize::MAX);
            if let Some(slot) = ops.get_mut(i) {
                *slot = SimOp {
                    fate,
                    attempts: o.attempts,
                    runs: o.runs,
                    maybe_executed: o.maybe_executed,
                    took_us: Some(o.t_us.saturating_sub(o.submitted_us)),
                };
            }
        }
    });
    Ok((ops, summary.violations))
}

/// Aligns a real run and a simulated run by op index.
pub fn compare(
    schedule: &Schedule,
    peer: &Peer,
    real: &RealRun,
    sim: &[SimOp],
    violations: Vec<String>,
) -> Row {
    let mut row = Row {
        scenario: schedule.name,
        peer: peer.name,
        preset: peer.preset,
        real: Counts::default(),
        sim: Counts::default(),
        agree: 0,
        total: 0,
        differences: Vec::new(),
        acked_missing: 0,
        violations,
    };
    // (real, sim) -> (count, first op, last op, some real op ran)
    let mut groups: BTreeMap<(Class, Class), (u64, u64, u64, bool)> = BTreeMap::new();
    for (i, (r, s)) in real.ops.iter().zip(sim).enumerate() {
        let i = i as u64;
        let (rc, sc) = (r.class(), s.class());
        row.real.add(rc, r.executions >= 1);
        row.sim.add(sc, s.maybe_executed);
        row.acked_missing += u64::from(r.reported == Reported::Ok && r.executions == 0);
        row.total += 1;
        if rc == sc {
            row.agree += 1;
        } else {
            let g = groups.entry((rc, sc)).or_insert((0, i, i, false));
            g.0 += 1;
            g.2 = i;
            g.3 |= r.executions >= 1;
        }
    }
    let at = |i: u64| u64::try_from(schedule.submit_at(i).as_millis()).unwrap_or(u64::MAX);
    row.differences = groups
        .into_iter()
        .map(|((real, sim), (count, a, b, ran))| Difference {
            real,
            sim,
            count,
            ops: (a, b),
            submitted_ms: (at(a), at(b)),
            why: why(peer.name, &schedule.fault, real, sim, ran),
        })
        .collect();
    row.differences.sort_by_key(|d| std::cmp::Reverse(d.count));
    row
}

/// One scenario's result: the schedule, the measured fault, the rows, and
/// each peer's ops side by side (for the JSON).
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    /// The schedule.
    pub schedule: Schedule,
    /// The fault as measured.
    pub marks: Marks,
    /// One row per peer.
    pub rows: Vec<Row>,
    /// Per peer: the timeline the simulator ran, and every op both ways.
    pub detail: Vec<PeerDetail>,
}

/// One peer's ops in one scenario, both ways.
#[derive(Clone, Debug, Serialize)]
pub struct PeerDetail {
    /// The peer.
    pub peer: &'static str,
    /// The timeline (replay it: `redial-sim replay FILE`).
    pub timeline: String,
    /// Real ops.
    pub real: Vec<RealOp>,
    /// Simulated ops.
    pub sim: Vec<SimOp>,
    /// List entries that were no op of the run.
    pub strays: u64,
    /// A Node.js peer: how much its clock may lag the harness's, µs.
    pub clock_lag_us: Option<u64>,
}

/// Runs `schedule` for real against `server` and in the simulator, for
/// every peer in `peers`.
pub fn run_scenario(
    server: &mut Redis,
    schedule: &Schedule,
    peers: &[Peer],
    tag: &str,
) -> Result<ScenarioResult, String> {
    let (marks, real) = run_real(server, schedule, peers, tag)?;
    let mut rows = Vec::new();
    let mut detail = Vec::new();
    for (p, r) in peers.iter().zip(real) {
        let (sim, violations) = run_sim(schedule, p.preset, &marks)?;
        rows.push(compare(schedule, p, &r, &sim, violations));
        detail.push(PeerDetail {
            peer: p.name,
            timeline: timeline(schedule, p.preset, &marks),
            real: r.ops,
            sim,
            strays: r.strays,
            clock_lag_us: r.clock_lag_us,
        });
    }
    Ok(ScenarioResult {
        schedule: schedule.clone(),
        marks,
        rows,
        detail,
    })
}

fn counts_cell(c: &Counts) -> String {
    format!(
        "{} / {} ({} ran) / {} / {}",
        c.ok, c.failed, c.failed_ran, c.hung, c.duplicated
    )
}

/// The results as a markdown table, then the differences.
pub fn render_markdown(results: &[ScenarioResult]) -> String {
    let mut out = String::new();
    out.push_str(
        "| scenario | peer (sim preset) | real: ok / failed (ran) / hung / dup | sim: ok / failed (may have run) / hung / dup | same class | where they differ (real → sim) |\n|---|---|---|---|---|---|\n",
    );
    for s in results {
        for r in &s.rows {
            let diffs: Vec<String> = r
                .differences
                .iter()
                .map(|d| {
                    format!(
                        "{} {} → {} (ops {}–{}, {}–{} ms)",
                        d.count,
                        d.real.name(),
                        d.sim.name(),
                        d.ops.0,
                        d.ops.1,
                        d.submitted_ms.0,
                        d.submitted_ms.1
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} ({}) | {} | {} | {:.1} % ({}/{}) | {} |",
                s.schedule.name,
                r.peer,
                r.preset,
                counts_cell(&r.real),
                counts_cell(&r.sim),
                r.agreement_pct(),
                r.agree,
                r.total,
                if diffs.is_empty() {
                    "—".to_string()
                } else {
                    diffs.join("; ")
                }
            );
        }
    }
    out.push('\n');
    for s in results {
        let _ = writeln!(
            out,
            "- **{}**: {}; measured: sent at {:.3} s, in effect at {:.3} s, back at {:.3} s{}",
            s.schedule.name,
            s.schedule.fault.describe(),
            s.marks.sent_us as f64 / 1e6,
            s.marks.fault_us as f64 / 1e6,
            s.marks.back_us as f64 / 1e6,
            if s.schedule.fault == Fault::KillConnections {
                format!(" ({} connections killed)", s.marks.killed)
            } else {
                String::new()
            }
        );
        for r in &s.rows {
            for d in &r.differences {
                let _ = writeln!(
                    out,
                    "  - {}: {} {} → {}: {}",
                    r.peer,
                    d.count,
                    d.real.name(),
                    d.sim.name(),
                    d.why
                );
            }
            if r.acked_missing > 0 {
                let _ = writeln!(
                    out,
                    "  - {}: {} ops reported ok but missing from the list",
                    r.peer, r.acked_missing
                );
            }
            for v in &r.violations {
                let _ = writeln!(out, "  - {}: simulator VIOLATION {v}", r.peer);
            }
        }
    }
    out
}
