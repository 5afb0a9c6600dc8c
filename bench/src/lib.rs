//! Shared pieces of redial's adapter benchmarks (`cargo bench` in this
//! directory): an in-process TCP echo server, a raw pipelined line client
//! for each runtime (the baseline, and also what redial drives, so the
//! difference between the two is redial's own cost), a redial
//! [`Connector`] over it, a private redis-server, and the workload and
//! statistics helpers.
//!
//! This crate is its own workspace so that the peers it measures against
//! (fred, the `redis` crate's `ConnectionManager`) are never built by the
//! main workspace's `cargo test`.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::{mpsc, oneshot};
use futures::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use futures::{StreamExt, future};
use redial::{Connector, Failure};

#[path = "../../adapters/tests/support/mod.rs"]
#[allow(missing_docs, clippy::all)]
mod support;

pub mod agree;

/// A boxed background task.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

type Reply = oneshot::Sender<io::Result<Vec<u8>>>;

/// A raw pipelined line client: requests are written in order, replies are
/// matched in order (one reply line per request line). Many callers share
/// one connection, as with the `redis` crate's multiplexed connection.
#[derive(Debug, Clone)]
pub struct Pipe {
    tx: mpsc::UnboundedSender<(Vec<u8>, Reply)>,
    closed: Arc<AtomicBool>,
}

impl Pipe {
    /// Starts the writer and reader tasks on `spawn`.
    pub fn new<R, W>(reader: R, writer: W, spawn: impl Fn(Task)) -> Pipe
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded::<(Vec<u8>, Reply)>();
        let pending: Arc<Mutex<VecDeque<Reply>>> = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));

        let (p, c) = (pending.clone(), closed.clone());
        spawn(Box::pin(async move {
            let mut w = BufWriter::new(writer);
            while let Some(first) = rx.next().await {
                let mut next = Some(first);
                let mut ok = true;
                // Write everything already queued, then flush once.
                while let Some((line, reply)) = next.take() {
                    lock(&p).push_back(reply);
                    ok = ok && w.write_all(&line).await.is_ok();
                    next = rx.try_recv().ok();
                }
                if !ok || w.flush().await.is_err() {
                    fail_all(&p, &c);
                    return;
                }
            }
        }));

        let (p, c) = (pending, closed.clone());
        spawn(Box::pin(async move {
            let mut r = BufReader::new(reader);
            let mut line = Vec::with_capacity(64);
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line).await {
                    Ok(n) if n > 0 => {
                        let reply = lock(&p).pop_front();
                        if let Some(reply) = reply {
                            let _ = reply.send(Ok(line.clone()));
                        }
                    }
                    _ => {
                        fail_all(&p, &c);
                        return;
                    }
                }
            }
        }));
        Pipe { tx, closed }
    }

    /// Sends one line (which must end in `\n`) and waits for its reply.
    pub async fn call(&self, line: &[u8]) -> io::Result<Vec<u8>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .unbounded_send((line.to_vec(), reply))
            .map_err(|_| io::Error::from(io::ErrorKind::ConnectionAborted))?;
        answer
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::ConnectionAborted.into()))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn fail_all(pending: &Mutex<VecDeque<Reply>>, closed: &AtomicBool) {
    closed.store(true, Ordering::Release);
    for reply in lock(pending).drain(..) {
        let _ = reply.send(Err(io::ErrorKind::ConnectionReset.into()));
    }
}

/// How one runtime opens a [`Pipe`].
pub trait Net: Send + Sync + 'static {
    /// The runtime's name in reports.
    const NAME: &'static str;
    /// Connects (TCP_NODELAY on) and starts the pipe's tasks on this runtime.
    fn connect(addr: SocketAddr) -> impl Future<Output = io::Result<Pipe>> + Send;
}

/// tokio sockets and tasks.
#[derive(Debug, Clone, Copy)]
pub struct TokioNet;

impl Net for TokioNet {
    const NAME: &'static str = "tokio";
    async fn connect(addr: SocketAddr) -> io::Result<Pipe> {
        use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};
        let s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        Ok(Pipe::new(r.compat(), w.compat_write(), |t| {
            tokio::spawn(t);
        }))
    }
}

/// smol sockets and tasks.
#[derive(Debug, Clone, Copy)]
pub struct SmolNet;

impl Net for SmolNet {
    const NAME: &'static str = "smol";
    async fn connect(addr: SocketAddr) -> io::Result<Pipe> {
        let s = smol::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Pipe::new(s.clone(), s, |t| smol::spawn(t).detach()))
    }
}

/// async-std sockets and tasks (discontinued upstream; measured because
/// redial still supports it).
#[derive(Debug, Clone, Copy)]
pub struct AsyncStdNet;

impl Net for AsyncStdNet {
    const NAME: &'static str = "async-std";
    async fn connect(addr: SocketAddr) -> io::Result<Pipe> {
        let s = async_std::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Pipe::new(s.clone(), s, |t| {
            async_std::task::spawn(t);
        }))
    }
}

/// redial's [`Connector`] over a [`Pipe`]: the redial path runs exactly the
/// raw path underneath, so the difference is redial's own cost.
#[derive(Debug)]
pub struct PipeConnector<N> {
    addr: SocketAddr,
    _net: std::marker::PhantomData<N>,
}

impl<N: Net> PipeConnector<N> {
    /// One endpoint.
    pub fn new(addr: SocketAddr) -> Self {
        PipeConnector {
            addr,
            _net: std::marker::PhantomData,
        }
    }
}

impl<N: Net> Connector for PipeConnector<N> {
    type Conn = Pipe;
    type Op = Vec<u8>;
    type Output = Vec<u8>;
    type Error = io::Error;

    fn endpoints(&self) -> usize {
        1
    }

    fn connect(&self, _endpoint: usize) -> impl Future<Output = io::Result<Pipe>> + Send {
        N::connect(self.addr)
    }

    async fn run(&self, conn: &Pipe, op: &Vec<u8>) -> io::Result<Vec<u8>> {
        conn.call(op).await
    }

    fn classify(&self, _error: &io::Error) -> Failure {
        Failure::ConnectionLost
    }
}

/// An in-memory connector: connects at once, every op answers its own
/// value at once, with no IO and no yield. Through redial it measures the
/// client's own per-op path (submit, dispatch, run, report, complete) and
/// nothing else.
#[derive(Debug, Default)]
pub struct MemConnector;

impl Connector for MemConnector {
    type Conn = ();
    type Op = u64;
    type Output = u64;
    type Error = io::Error;

    fn endpoints(&self) -> usize {
        1
    }

    async fn connect(&self, _endpoint: usize) -> io::Result<()> {
        Ok(())
    }

    async fn run(&self, _conn: &(), op: &u64) -> io::Result<u64> {
        Ok(*op)
    }

    fn classify(&self, _error: &io::Error) -> Failure {
        Failure::ServerError
    }
}

/// An in-process TCP echo server on 127.0.0.1, on its own thread and tokio
/// runtime (so it never shares an executor with the client under test).
pub struct EchoServer {
    addr: SocketAddr,
    _bg: support::Background,
}

impl std::fmt::Debug for EchoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl EchoServer {
    /// Binds a free port and starts echoing every connection's bytes.
    pub fn start() -> io::Result<EchoServer> {
        let bg = support::Background::new();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let handle = bg.handle();
        let listener = {
            let _guard = handle.enter();
            tokio::net::TcpListener::from_std(std_listener)?
        };
        handle.spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        Ok(EchoServer { addr, _bg: bg })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A private redis-server on a free loopback port, started and killed by
/// pid (never the shared service on 6379), removed on drop.
pub struct Redis(support::RedisServer);

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("port", &self.0.port).finish()
    }
}

impl Redis {
    /// Starts one. `None` (after a loud SKIPPED line) when `redis-server`
    /// is not on PATH; panics instead when `REDIAL_REQUIRE_SERVERS=1`.
    pub fn start() -> Option<Redis> {
        support::RedisServer::start().map(Redis)
    }

    /// As [`start`](Self::start), with extra `redis-server` arguments after
    /// the defaults (so they win, also on every restart): `["--appendonly",
    /// "yes"]`.
    pub fn start_with(extra: &[&str]) -> Option<Redis> {
        support::RedisServer::start_with(extra).map(Redis)
    }

    /// SIGSTOP: the process holds its sockets and answers nothing (the
    /// kernel still completes TCP handshakes into its listen backlog).
    pub fn pause(&mut self) {
        self.0.pause();
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&mut self) {
        self.0.resume();
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        self.0.url()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        self.0.kill();
    }

    /// SIGTERM (redis's own graceful shutdown: it closes its clients'
    /// connections and exits), then waits for the process to exit (up to
    /// 10 s, read from `/proc`; SIGKILL after that) and reaps it.
    pub fn terminate(&mut self) {
        if let Some(pid) = self.0.pid() {
            let sent = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            let deadline = Instant::now() + Duration::from_secs(10);
            // Not reaped yet (we are its parent), so the pid is still ours:
            // exited means a zombie (`Z`) or, off Linux, no `/proc` entry.
            while sent && Instant::now() < deadline && !exited(pid) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.0.kill();
    }

    /// `CLIENT KILL TYPE normal` over a fresh raw connection (which the
    /// command skips): the server closes every normal client's connection
    /// and stays up. Returns how many it closed.
    pub fn kill_clients(&self) -> u64 {
        let reply = self.0.admin(&["CLIENT", "KILL", "TYPE", "normal"]);
        reply.trim_start_matches(':').trim().parse().unwrap_or(0)
    }

    /// Starts it again on the same port and returns the instant it was
    /// first seen accepting connections (a 1 ms poll from another thread,
    /// so this is at most about 1 ms late).
    pub fn restart(&mut self) -> Instant {
        let port = self.port();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let poller = std::thread::spawn(move || {
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            while !s.load(Ordering::Acquire) {
                if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(50)).is_ok() {
                    return Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            None
        });
        self.0.restart();
        let seen = poller.join().ok().flatten();
        stop.store(true, Ordering::Release);
        seen.unwrap_or_else(Instant::now)
    }
}

/// The `redis_version` a redis-server on `port` reports (`INFO server`),
/// or `unknown`.
pub fn redis_version(port: u16) -> String {
    support::resp_command(port, &["INFO", "server"])
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map_or_else(|| "unknown".to_string(), |v| v.trim().to_string())
}

/// Whether process `pid` (a child not yet reaped) has exited: its
/// `/proc/<pid>/stat` state is `Z`, or there is no such entry.
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// One batch of a closed-loop workload.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Wall time of the whole batch.
    pub elapsed: Duration,
    /// Each op's latency, in completion order per caller.
    pub latencies: Vec<Duration>,
}

/// Runs `ops` operations split across `callers` concurrent callers, each
/// awaiting its op before issuing the next (all in the current task, so no
/// spawn cost is measured). Panics on an op error: a benchmark against a
/// healthy server has none.
pub async fn run_batch<F, Fut, T, E>(callers: usize, ops: usize, op: F) -> Batch
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    let per = ops / callers.max(1);
    let start = Instant::now();
    let runs = (0..callers).map(|_| async {
        let mut lat = Vec::with_capacity(per);
        for _ in 0..per {
            let t = Instant::now();
            op().await.expect("benchmark op failed");
            lat.push(t.elapsed());
        }
        lat
    });
    let per_caller = future::join_all(runs).await;
    Batch {
        elapsed: start.elapsed(),
        latencies: per_caller.into_iter().flatten().collect(),
    }
}

/// The `p`-quantile (0.0..=1.0) of `sorted` (nearest rank); zero when empty.
pub fn quantile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The median of `values` (sorted in place).
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// `d` in microseconds, as a float.
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `d` in milliseconds, as a float.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_micros(50));
        assert_eq!(quantile(&v, 0.99), Duration::from_micros(99));
        assert_eq!(quantile(&v, 1.0), Duration::from_micros(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
        assert_eq!(median(&mut [3.0, 1.0, 2.0, 10.0]), 2.5);
    }

    #[test]
    fn redis_faults_close_clients_and_the_server_comes_back() {
        let Some(mut server) = Redis::start() else {
            return;
        };
        let addr: SocketAddr = ([127, 0, 0, 1], server.port()).into();
        let accepting = || std::net::TcpStream::connect(addr).is_ok();
        // A client: CLIENT KILL closes it, the server stays up.
        let client = std::net::TcpStream::connect(addr).expect("connect");
        assert!(server.kill_clients() >= 1);
        assert!(accepting());
        drop(client);
        // SIGTERM: down until restarted.
        server.terminate();
        assert!(!accepting());
        let back = server.restart();
        assert!(back.elapsed() < Duration::from_secs(10) && accepting());
        server.kill();
        assert!(!accepting());
        server.restart();
        assert!(accepting());
    }

    #[test]
    fn pipe_matches_replies_in_order_on_each_runtime() {
        let echo = EchoServer::start().expect("echo server");
        let addr = echo.addr();
        let check = |pipe: Pipe| async move {
            let a = pipe.call(b"a\n");
            let b = pipe.call(b"bb\n");
            let (a, b) = future::join(a, b).await;
            assert_eq!(a.expect("a"), b"a\n");
            assert_eq!(b.expect("b"), b"bb\n");
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio")
            .block_on(async { check(TokioNet::connect(addr).await.expect("connect")).await });
        smol::block_on(async { check(SmolNet::connect(addr).await.expect("connect")).await });
        async_std::task::block_on(async {
            check(AsyncStdNet::connect(addr).await.expect("connect")).await
        });
    }
}
