//! The core without async: one thread, a blocking `std::net` socket, and
//! the machine deciding everything. Sends `INCR` once a second (20 times)
//! to a redis-server; kill and restart the server while it runs:
//!
//! ```sh
//! redis-server --port 6380 --save "" &
//! cargo run -p redial-core --example blocking_redis -- 127.0.0.1:6380
//! ```
//!
//! The loop is the driving contract of the crate docs: carry out every
//! output, feed back what happened with `now`, sleep until `poll_timeout`.
//! One op at a time, so a blocking round trip per dispatch is enough.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant as Clock};

use redial_core::{Config, ConnId, ConnectFailure, Instant, Machine, OpOptions, OpResult, Output};

/// One connection: the socket, read through a buffer.
struct Conn {
    id: ConnId,
    reader: BufReader<TcpStream>,
}

/// Sends one RESP command and reads a one-line reply.
fn round_trip(conn: &mut Conn, args: &[&str]) -> std::io::Result<String> {
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    conn.reader.get_mut().write_all(req.as_bytes())?;
    let mut line = String::new();
    if conn.reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end().to_string())
}

fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6380".into())
        .parse()
        .expect("usage: blocking_redis HOST:PORT");
    let start = Clock::now();
    let now = || Instant::from_micros(start.elapsed().as_micros() as u64);
    let mut m: Machine<&str> = Machine::new(Config::recommended(), 7, now());
    let mut conn: Option<Conn> = None;
    let mut next_op = Duration::ZERO;
    let mut sent = 0;
    while sent < 20 || m.outstanding() > 0 {
        // The application: one INCR a second.
        if sent < 20 && start.elapsed() >= next_op {
            m.submit(now(), "INCR", OpOptions::new().retryable(true));
            sent += 1;
            next_op += Duration::from_secs(1);
        }
        // Carry out every output; each may feed an input back.
        while let Some(out) = m.poll_output() {
            match out {
                Output::Connect {
                    conn: id, timeout, ..
                } => {
                    let t = timeout.unwrap_or(Duration::from_secs(5));
                    match TcpStream::connect_timeout(&addr, t) {
                        Ok(s) => {
                            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                            conn = Some(Conn {
                                id,
                                reader: BufReader::new(s),
                            });
                            m.handle_connected(now(), id);
                        }
                        Err(_) => m.handle_connect_failed(now(), id, ConnectFailure::Refused),
                    }
                }
                Output::Close { conn: id } => {
                    if conn.as_ref().is_some_and(|c| c.id == id) {
                        conn = None;
                    }
                }
                Output::Dispatch { op, conn: id, .. } => {
                    let cmd = *m.payload(op).expect("dispatched ops are outstanding");
                    let Some(c) = conn.as_mut().filter(|c| c.id == id) else {
                        continue;
                    };
                    let result = match round_trip(c, &[cmd, "redial:blocking"]) {
                        Ok(reply) if reply.starts_with("-READONLY") => OpResult::WrongServer,
                        Ok(reply) if reply.starts_with('-') => OpResult::ServerError,
                        Ok(reply) => {
                            println!("{cmd} -> {reply}");
                            OpResult::Ok
                        }
                        Err(_) => OpResult::ConnectionLost,
                    };
                    m.handle_op_result(now(), op, id, result);
                }
                Output::Heartbeat { conn: id } => {
                    let Some(c) = conn.as_mut().filter(|c| c.id == id) else {
                        continue;
                    };
                    let result = match round_trip(c, &["PING"]) {
                        Ok(_) => OpResult::Ok,
                        Err(_) => OpResult::ConnectionLost,
                    };
                    m.handle_heartbeat(now(), id, result);
                }
                Output::Complete(done) => {
                    if let Err(e) = done.result {
                        println!(
                            "{} failed: {e} (may have run: {})",
                            done.payload,
                            e.maybe_executed()
                        );
                    }
                }
                Output::Event(e) => eprintln!("event: {e}"),
            }
        }
        // Sleep until the machine's next timer or the next op, whichever first.
        let wake = m
            .poll_timeout()
            .map(|(t, _)| Duration::from_micros(t.as_micros()));
        let next_op = (sent < 20).then_some(next_op);
        let until = match (wake, next_op) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => start.elapsed() + Duration::from_millis(100),
        };
        if let Some(d) = until.checked_sub(start.elapsed()) {
            std::thread::sleep(d);
        }
        // (A closed socket is seen by the next op or ping: no reader thread.)
        m.handle_timeout(now());
    }
    m.close(now());
}
