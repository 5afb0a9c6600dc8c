//! A connector of your own, for a runtime the ready redis connector does
//! not run on (async-std: redis 1.x dropped it): redis's *inline* commands
//! over an async-io socket — one line out (`INCR counter`), one line back
//! (`:1`, `+PONG`, `-ERR …`). No RESP codec: one-line replies only, which
//! is all `INCR` and `PING` need. How to implement [`redial::Connector`].

use futures::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use futures::lock::Mutex;
use redial::{Connector, Failure};

/// An error with its reading.
#[derive(Debug)]
pub(crate) struct InlineError(pub(crate) Failure, pub(crate) String);

impl std::fmt::Display for InlineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for InlineError {}

fn lost(e: impl std::fmt::Display) -> InlineError {
    InlineError(Failure::ConnectionLost, e.to_string())
}

/// One command at a time per connection.
pub(crate) struct InlineConn(Mutex<BufReader<async_io::Async<std::net::TcpStream>>>);

/// Endpoint i = addrs[i] (`host:port`).
pub(crate) struct Inline {
    pub(crate) addrs: Vec<String>,
}

impl Connector for Inline {
    type Conn = InlineConn;
    /// An inline command: `INCR counter`.
    type Op = String;
    /// The reply line without its type byte: `1`, `PONG`.
    type Output = String;
    type Error = InlineError;

    fn endpoints(&self) -> usize {
        self.addrs.len()
    }

    async fn connect(&self, endpoint: usize) -> Result<InlineConn, InlineError> {
        let addr = self
            .addrs
            .get(endpoint)
            .ok_or_else(|| lost("no such endpoint"))?;
        let addr: std::net::SocketAddr = addr.parse().map_err(lost)?;
        let s = async_io::Async::<std::net::TcpStream>::connect(addr)
            .await
            .map_err(lost)?;
        Ok(InlineConn(Mutex::new(BufReader::new(s))))
    }

    async fn run(&self, conn: &InlineConn, command: &String) -> Result<String, InlineError> {
        let mut s = conn.0.lock().await;
        let line = format!("{}\r\n", command.trim_end());
        s.get_mut().write_all(line.as_bytes()).await.map_err(lost)?;
        let mut reply = String::new();
        if s.read_line(&mut reply).await.map_err(lost)? == 0 {
            return Err(lost("connection closed"));
        }
        let reply = reply.trim_end();
        match reply.split_at_checked(1) {
            Some(("-", e)) if e.starts_with("READONLY") => {
                Err(InlineError(Failure::WrongServer, e.into()))
            }
            Some(("-", e)) => Err(InlineError(Failure::ServerError, e.into())),
            Some((":" | "+", v)) => Ok(v.into()),
            // The rest of a bulk or array reply would be left unread: the
            // connection can no longer be trusted.
            _ => Err(lost(format!("not a one-line reply: {reply:?}"))),
        }
    }

    fn classify(&self, e: &InlineError) -> Failure {
        e.0
    }

    async fn ping(&self, conn: &InlineConn) -> Result<(), InlineError> {
        self.run(conn, &"PING".to_string()).await.map(drop)
    }
}
