//! A tiny line protocol (a counter server) and its runtime-agnostic
//! connector (async-io sockets work under tokio, smol and async-std).
//!
//! Requests: `INCR`, `GET`, `ERR`, `PING`. Replies: a number, `+PONG`,
//! `-ERR …`, or `-READONLY …` when the server is read-only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use futures::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use futures::lock::Mutex;
use redial::{Connector, Failure};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

use super::Background;

/// The counter server.
pub struct LineServer {
    pub port: u16,
    pub counter: Arc<AtomicI64>,
    pub readonly: Arc<AtomicBool>,
    _bg: Background,
}

impl LineServer {
    pub fn start() -> LineServer {
        let bg = Background::new();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind line server");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().expect("addr").port();
        let counter = Arc::new(AtomicI64::new(0));
        let readonly = Arc::new(AtomicBool::new(false));
        let (c, ro) = (counter.clone(), readonly.clone());
        bg.handle().spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                let (c, ro) = (c.clone(), ro.clone());
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut lines = tokio::io::BufReader::new(r).lines();
                    while let Ok(Some(l)) = lines.next_line().await {
                        let reply = match l.trim() {
                            "INCR" if ro.load(Ordering::SeqCst) => {
                                "-READONLY read-only server".to_string()
                            }
                            "INCR" => (c.fetch_add(1, Ordering::SeqCst) + 1).to_string(),
                            "GET" => c.load(Ordering::SeqCst).to_string(),
                            "PING" => "+PONG".to_string(),
                            _ => "-ERR unknown command".to_string(),
                        };
                        if w.write_all(format!("{reply}\n").as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        LineServer {
            port,
            counter,
            readonly,
            _bg: bg,
        }
    }
}

/// The connector's error.
#[derive(Debug)]
pub struct LineError {
    pub failure: Failure,
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.failure, self.message)
    }
}

impl std::error::Error for LineError {}

fn lost(e: impl std::fmt::Display) -> LineError {
    LineError {
        failure: Failure::ConnectionLost,
        message: e.to_string(),
    }
}

type Stream = BufReader<async_io::Async<std::net::TcpStream>>;

/// One op at a time per connection (a mutex around the socket).
pub struct LineConn(Mutex<Stream>);

/// Connects to a list of ports (endpoint i = ports[i]).
pub struct LineConnector {
    pub ports: Vec<u16>,
}

impl LineConnector {
    async fn roundtrip(conn: &LineConn, req: &str) -> Result<String, LineError> {
        let mut s = conn.0.lock().await;
        s.get_mut()
            .write_all(format!("{req}\n").as_bytes())
            .await
            .map_err(lost)?;
        let mut line = String::new();
        let n = s.read_line(&mut line).await.map_err(lost)?;
        if n == 0 {
            return Err(lost("closed by peer"));
        }
        Ok(line.trim().to_string())
    }
}

impl Connector for LineConnector {
    type Conn = LineConn;
    type Op = &'static str;
    type Output = i64;
    type Error = LineError;

    fn endpoints(&self) -> usize {
        self.ports.len()
    }

    async fn connect(&self, endpoint: usize) -> Result<LineConn, LineError> {
        let port = self.ports[endpoint % self.ports.len()];
        let s = async_io::Async::<std::net::TcpStream>::connect(([127, 0, 0, 1], port))
            .await
            .map_err(lost)?;
        Ok(LineConn(Mutex::new(BufReader::new(s))))
    }

    async fn run(&self, conn: &LineConn, op: &&'static str) -> Result<i64, LineError> {
        let reply = Self::roundtrip(conn, op).await?;
        if let Some(m) = reply.strip_prefix("-READONLY") {
            return Err(LineError {
                failure: Failure::WrongServer,
                message: m.trim().to_string(),
            });
        }
        if let Some(m) = reply.strip_prefix('-') {
            return Err(LineError {
                failure: Failure::ServerError,
                message: m.to_string(),
            });
        }
        reply.parse().map_err(|_| LineError {
            failure: Failure::ServerError,
            message: format!("bad reply {reply:?}"),
        })
    }

    fn classify(&self, error: &LineError) -> Failure {
        error.failure
    }

    async fn ping(&self, conn: &LineConn) -> Result<(), LineError> {
        Self::roundtrip(conn, "PING").await.map(drop)
    }
}
