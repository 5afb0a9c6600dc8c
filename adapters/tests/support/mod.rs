//! Test support: private servers on free loopback ports, controlled by pid,
//! a loopback fault proxy, and a tiny line-protocol counter server.
//!
//! Never touches the shared services on 6379/5432; kills only the pids it
//! started; cleans up on drop (so also when a test panics).

#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod flaky;
pub mod line;
pub mod mariadb;
pub mod proxy;

/// The buffering configuration of the restart scenarios: a constant
/// 100 ms backoff without jitter, unlimited reconnect tries, an unbounded
/// buffer without timeout, no retry budget, and the given connect timeout
/// and heartbeat (interval, timeout).
pub fn buffering(
    connect_timeout: Duration,
    heartbeat: (Duration, Duration),
) -> redial::core::ConfigBuilder {
    use redial::core::{Backoff, BufferPolicy, Config, Heartbeat, Jitter, Tries};
    Config::builder()
        .backoff(Backoff::Constant(Duration::from_millis(100)))
        .jitter(Jitter::None)
        .reconnect_tries(Tries::Unlimited)
        .buffer(BufferPolicy::Unbounded)
        .buffer_timeout(None)
        .retry_budget(None)
        .connect_timeout(Some(connect_timeout))
        .heartbeat(Some(Heartbeat {
            interval: heartbeat.0,
            timeout: heartbeat.1,
        }))
}

/// A free port on 127.0.0.1 (bound then released).
/// Runs `f` on a fresh two-worker tokio runtime, failing the test if it
/// takes longer than `limit`.
pub fn run_bounded<F: std::future::Future<Output = ()>>(limit: std::time::Duration, f: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(async {
            tokio::time::timeout(limit, f)
                .await
                .expect("test exceeded its time bound")
        });
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let p = l.local_addr().expect("local addr").port();
    assert!(p != 6379 && p != 5432);
    p
}

/// Finds `bin` on PATH. When missing: prints a loud SKIPPED line and returns
/// `None`, or panics when `REDIAL_REQUIRE_SERVERS=1`.
pub fn require(bin: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(bin))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("REDIAL_REQUIRE_SERVERS").as_deref() == Ok("1") {
            panic!("REDIAL_REQUIRE_SERVERS=1 but `{bin}` is not on PATH");
        }
        eprintln!("\n==================================================");
        eprintln!("SKIPPED: {bin} not found (set REDIAL_REQUIRE_SERVERS=1 to fail instead)");
        eprintln!("==================================================\n");
    }
    found
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_port(port: u16, within: Duration) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let start = Instant::now();
    while start.elapsed() < within {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn signal(pid: u32, sig: libc::c_int) {
    let _ = pid_kill(pid, sig);
}

fn pid_kill(pid: u32, sig: libc::c_int) -> std::io::Result<()> {
    // `kill -<sig> <pid>`: no unsafe code in the tests.
    let name = match sig {
        libc::SIGKILL => "KILL",
        libc::SIGSTOP => "STOP",
        libc::SIGCONT => "CONT",
        _ => "TERM",
    };
    let st = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()?;
    if st.success() {
        Ok(())
    } else {
        Err(std::io::Error::other("kill failed"))
    }
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A temp dir removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "redial-{tag}-{}-{}",
            std::process::id(),
            UNIQUE.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A private redis-server.
pub struct RedisServer {
    pub port: u16,
    bin: PathBuf,
    dir: TempDir,
    extra: Vec<String>,
    child: Option<Child>,
    stopped: bool,
}

impl RedisServer {
    /// Starts one on a free port, or `None` (SKIPPED) when the binary is missing.
    pub fn start() -> Option<RedisServer> {
        Self::start_with(&[])
    }

    /// As [`start`](Self::start), with extra `redis-server` arguments (after
    /// the defaults, so they win: `--enable-debug-command yes`).
    pub fn start_with(extra: &[&str]) -> Option<RedisServer> {
        let bin = require("redis-server")?;
        let mut s = RedisServer {
            port: free_port(),
            bin,
            dir: TempDir::new("redis"),
            extra: extra.iter().map(|a| a.to_string()).collect(),
            child: None,
            stopped: false,
        };
        s.spawn();
        Some(s)
    }

    /// The server's working directory (its `dump.rdb`, a log file named
    /// in the extra arguments).
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir.0)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        assert!(
            wait_port(self.port, Duration::from_secs(10)),
            "redis-server did not listen on {}",
            self.port
        );
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), libc::SIGKILL);
            let _ = c.wait();
        }
        self.stopped = false;
    }

    /// Starts again on the same port: empty, unless a `SAVE` left a
    /// `dump.rdb` in [`dir`](Self::dir), which the new server loads.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGSTOP: the server holds its sockets and answers nothing.
    pub fn pause(&mut self) {
        if let Some(pid) = self.pid() {
            signal(pid, libc::SIGSTOP);
            self.stopped = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        if let Some(pid) = self.pid() {
            signal(pid, libc::SIGCONT);
            self.stopped = false;
        }
    }

    /// Runs `redis-cli`-free admin commands with a plain RESP client.
    pub fn admin(&self, args: &[&str]) -> String {
        resp_command(self.port, args)
    }

    /// Makes this server a replica of `primary` and waits (up to 10 s) until
    /// the replication link is up.
    pub fn replicate_from(&self, primary: &RedisServer) {
        let port = primary.port.to_string();
        let reply = self.admin(&["REPLICAOF", "127.0.0.1", &port]);
        assert!(reply.starts_with("+OK"), "REPLICAOF: {reply:?}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self
            .admin(&["INFO", "replication"])
            .contains("master_link_status:up")
        {
            assert!(Instant::now() < deadline, "replica did not sync");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends one RESP command over a fresh socket and returns the raw reply line.
/// How many clients a redis-server on `port` has connected
/// (`INFO clients`).
pub fn connected_clients(port: u16) -> u64 {
    resp_command(port, &["INFO", "clients"])
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("connected_clients in INFO clients")
}

pub fn resp_command(port: u16, args: &[&str]) -> String {
    resp_command_within(port, args, Duration::from_secs(5))
}

/// As [`resp_command`], waiting up to `within` for the reply (a slow
/// `SAVE`, `DEBUG POPULATE`).
pub fn resp_command_within(port: u16, args: &[&str], within: Duration) -> String {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect for admin");
    s.set_read_timeout(Some(within)).ok();
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{}\r\n", a.len(), a));
    }
    s.write_all(req.as_bytes()).expect("admin write");
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).trim_end().to_string()
}

/// A private PostgreSQL cluster in a temp dir, run as the `postgres` user.
pub struct PgServer {
    pub port: u16,
    dir: TempDir,
    data: PathBuf,
    running: AtomicBool,
}

fn as_postgres(args: &[&str]) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).args(args);
        c
    } else {
        let mut c = Command::new(args[0]);
        c.args(&args[1..]);
        c
    }
}

impl PgServer {
    /// initdb + pg_ctl start, or `None` (SKIPPED) when a binary is missing.
    pub fn start() -> Option<PgServer> {
        require("initdb")?;
        require("pg_ctl")?;
        let dir = TempDir::new("pg");
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir.0)
            .status();
        let data = dir.0.join("data");
        let st = as_postgres(&[
            "initdb",
            "-D",
            data.to_str().expect("utf-8 path"),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run initdb");
        assert!(st.success(), "initdb failed");
        Some(PgServer::launch(dir, data))
    }

    fn opts(&self) -> String {
        format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.0.display()
        )
    }

    fn ctl(&self, extra: &[&str]) {
        let log = self.dir.0.join("log");
        let opts = self.opts();
        let mut args = vec!["pg_ctl", "-D", self.data.to_str().expect("utf-8")];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "-w",
            "-t",
            "30",
            "-o",
            &opts,
            "-l",
            log.to_str().expect("utf-8"),
        ]);
        let st = as_postgres(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run pg_ctl");
        assert!(
            st.success(),
            "pg_ctl {extra:?} failed; see {}",
            log.display()
        );
    }

    pub fn conn_str(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// `pg_ctl restart -m <mode>`.
    pub fn restart(&self, mode: &str) {
        self.ctl(&["restart", "-m", mode]);
    }

    /// `pg_ctl stop -m <mode>` (`immediate`: the postmaster and its backends
    /// quit at once, as in a crash; `fast`: a planned shutdown that ends
    /// the sessions and writes a shutdown checkpoint).
    pub fn stop(&self, mode: &str) {
        self.ctl(&["stop", "-m", mode]);
        self.running.store(false, Ordering::SeqCst);
    }

    /// `pg_ctl promote`: a standby leaves recovery and takes writes
    /// (returns once the promotion is complete).
    pub fn promote(&self) {
        self.ctl(&["promote"]);
    }

    /// A streaming-replication standby of this running primary on another
    /// free port: `pg_basebackup -R` (which writes `standby.signal` and the
    /// `primary_conninfo` to reach this server), then started. The
    /// standby serves read-only sessions and replays this server's WAL
    /// until [`promote`](Self::promote)d.
    pub fn streaming_standby(&self) -> PgServer {
        assert!(require("pg_basebackup").is_some(), "pg_basebackup");
        let dir = TempDir::new("pg-stream");
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir.0)
            .status();
        let data = dir.0.join("data");
        let port = self.port.to_string();
        let st = as_postgres(&[
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-D",
            data.to_str().expect("utf-8 path"),
            "-R",
            "-X",
            "stream",
            "--no-sync",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run pg_basebackup");
        assert!(st.success(), "pg_basebackup failed");
        PgServer::launch(dir, data)
    }

    /// Runs one SQL string with `psql` as the `postgres` user (over this
    /// server's private socket) and returns its unaligned, tuples-only
    /// output.
    pub fn psql(&self, sql: &str) -> String {
        let port = self.port.to_string();
        let host = self.dir.0.to_str().expect("utf-8 path").to_string();
        let out = as_postgres(&[
            "psql", "-X", "-q", "-A", "-t", "-h", &host, "-p", &port, "-U", "postgres", "-d",
            "postgres", "-c", sql,
        ])
        .output()
        .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The postmaster's pid (from postmaster.pid).
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// A standby of this cluster on another free port: this one is stopped,
    /// its data directory copied with a `standby.signal` (no
    /// `primary_conninfo`: it stays in recovery and serves read-only
    /// sessions), and both are started.
    pub fn standby(&self) -> PgServer {
        self.ctl(&["stop", "-m", "fast"]);
        let dir = TempDir::new("pg-standby");
        let data = dir.0.join("data");
        let st = Command::new("cp")
            .arg("-a")
            .arg(&self.data)
            .arg(&data)
            .status()
            .expect("run cp");
        assert!(st.success(), "copy the data directory");
        let _ = std::fs::remove_file(data.join("postmaster.pid"));
        std::fs::write(data.join("standby.signal"), "").expect("standby.signal");
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir.0)
            .status();
        self.ctl(&["start"]);
        PgServer::launch(dir, data)
    }

    /// Starts a server on its data directory, on a free port.
    fn launch(dir: TempDir, data: PathBuf) -> PgServer {
        let s = PgServer {
            port: free_port(),
            dir,
            data,
            running: AtomicBool::new(false),
        };
        s.ctl(&["start"]);
        s.running.store(true, Ordering::SeqCst);
        s
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running.load(Ordering::SeqCst) {
            let pid = self.pid();
            let data = self.data.to_str().unwrap_or_default().to_string();
            let ok = as_postgres(&["pg_ctl", "-D", &data, "stop", "-m", "immediate", "-w"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                if let Some(pid) = pid {
                    signal(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// A background tokio runtime on its own thread, for servers and proxies
/// that must run whatever runtime the test itself uses.
pub struct Background {
    rt: Option<tokio::runtime::Runtime>,
}

impl Background {
    pub fn new() -> Background {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("background runtime");
        Background { rt: Some(rt) }
    }

    pub fn handle(&self) -> tokio::runtime::Handle {
        self.rt.as_ref().expect("runtime").handle().clone()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Shared switches.
#[derive(Default)]
pub struct Flag(pub AtomicBool);

/// Wraps a mutex lock that ignores poisoning.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub type Shared<T> = Arc<Mutex<T>>;
