//! A minimal, runtime-agnostic RESP connector (async-io sockets), enough for
//! `INCR`/`GET`/`PING`: how to implement [`redial::Connector`] yourself.

use futures::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use futures::lock::Mutex;
use redial::{Connector, Failure};

/// An error with its reading.
#[derive(Debug)]
pub(crate) struct RespError(pub(crate) Failure, pub(crate) String);

impl std::fmt::Display for RespError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for RespError {}

fn lost(e: impl std::fmt::Display) -> RespError {
    RespError(Failure::ConnectionLost, e.to_string())
}

/// One request at a time per connection.
pub(crate) struct RespConn(Mutex<BufReader<async_io::Async<std::net::TcpStream>>>);

/// Endpoint i = addrs[i] (`host:port`).
pub(crate) struct Resp {
    pub(crate) addrs: Vec<String>,
}

impl Connector for Resp {
    type Conn = RespConn;
    type Op = Vec<String>;
    type Output = String;
    type Error = RespError;

    fn endpoints(&self) -> usize {
        self.addrs.len()
    }

    async fn connect(&self, endpoint: usize) -> Result<RespConn, RespError> {
        let addr: std::net::SocketAddr = self.addrs[endpoint].parse().map_err(lost)?;
        let s = async_io::Async::<std::net::TcpStream>::connect(addr)
            .await
            .map_err(lost)?;
        Ok(RespConn(Mutex::new(BufReader::new(s))))
    }

    async fn run(&self, conn: &RespConn, args: &Vec<String>) -> Result<String, RespError> {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        let mut s = conn.0.lock().await;
        s.get_mut().write_all(req.as_bytes()).await.map_err(lost)?;
        let mut line = String::new();
        if s.read_line(&mut line).await.map_err(lost)? == 0 {
            return Err(lost("connection closed"));
        }
        let line = line.trim_end().to_string();
        match line.as_bytes().first() {
            Some(b'-') if line.starts_with("-READONLY") => {
                Err(RespError(Failure::WrongServer, line))
            }
            Some(b'-') => Err(RespError(Failure::ServerError, line)),
            Some(b'$') => {
                let mut body = String::new();
                if line != "$-1" {
                    s.read_line(&mut body).await.map_err(lost)?;
                }
                Ok(body.trim_end().to_string())
            }
            _ => Ok(line[1..].to_string()),
        }
    }

    fn classify(&self, e: &RespError) -> Failure {
        e.0
    }

    async fn ping(&self, conn: &RespConn) -> Result<(), RespError> {
        self.run(conn, &vec!["PING".into()]).await.map(drop)
    }
}

/// The redis address from the first argument or `REDIS_ADDR` (`127.0.0.1:6380`).
pub(crate) fn addr() -> String {
    std::env::args()
        .nth(1)
        .or_else(|| std::env::var("REDIS_ADDR").ok())
        .unwrap_or_else(|| {
            eprintln!(
                "usage: pass a private redis-server address (host:port) as argument or REDIS_ADDR"
            );
            std::process::exit(2)
        })
}
