//! A loopback fault proxy: pass, cut, reset, blackhole, delay, refuse.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{Background, lock};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Accept and hold connections, forward nothing (a silent, half-open link).
    Blackhole,
    /// Forward every chunk after this delay.
    Delay(Duration),
    /// Close new connections at once.
    Refuse,
}

struct Inner {
    mode: Mode,
    conns: Vec<(std::net::TcpStream, JoinHandle<()>)>,
}

pub struct Proxy {
    pub port: u16,
    upstream: u16,
    inner: Arc<Mutex<Inner>>,
    accept: Mutex<Option<JoinHandle<()>>>,
    bg: Background,
}

impl Proxy {
    /// A proxy on a free port forwarding to 127.0.0.1:`upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let bg = Background::new();
        let inner = Arc::new(Mutex::new(Inner {
            mode: Mode::Pass,
            conns: Vec::new(),
        }));
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = std_listener.local_addr().expect("addr").port();
        let p = Proxy {
            port,
            upstream,
            inner,
            accept: Mutex::new(None),
            bg,
        };
        p.listen(std_listener);
        p
    }

    fn listen(&self, std_listener: std::net::TcpListener) {
        std_listener.set_nonblocking(true).expect("nonblocking");
        let (i2, h, upstream) = (self.inner.clone(), self.bg.handle(), self.upstream);
        let task = self.bg.handle().spawn(async move {
            let listener = TcpListener::from_std(std_listener).expect("listener");
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    drop(client);
                    continue;
                };
                let Ok(raw) = client.into_std() else { continue };
                let Ok(keep) = raw.try_clone() else { continue };
                let Ok(client) = TcpStream::from_std(raw) else {
                    continue;
                };
                let task = h.spawn(pipe(client, server, i2.clone()));
                lock(&i2).conns.push((keep, task));
            }
        });
        *lock(&self.accept) = Some(task);
    }

    /// Switches mode. `Refuse` closes the listening socket (connection
    /// refused); any other mode listens again on the same port.
    pub fn set(&self, mode: Mode) {
        lock(&self.inner).mode = mode;
        let mut accept = lock(&self.accept);
        if mode == Mode::Refuse {
            if let Some(t) = accept.take() {
                t.abort();
            }
            // Wait until the listener is really closed.
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        } else if accept.is_none() {
            drop(accept);
            let l = loop {
                match std::net::TcpListener::bind(("127.0.0.1", self.port)) {
                    Ok(l) => break l,
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            };
            self.listen(l);
        }
    }

    /// Closes every open connection (FIN).
    pub fn cut(&self) {
        let conns = std::mem::take(&mut lock(&self.inner).conns);
        for (s, t) in conns {
            t.abort();
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Resets every open connection (RST: linger 0).
    pub fn reset(&self) {
        let conns = std::mem::take(&mut lock(&self.inner).conns);
        let _enter = self.bg.handle().enter();
        for (s, t) in conns {
            t.abort();
            if let Ok(t) = TcpStream::from_std(s) {
                #[allow(deprecated)]
                let _ = t.set_linger(Some(Duration::ZERO));
                drop(t);
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(t) = lock(&self.accept).take() {
            t.abort();
        }
        self.cut();
        let _ = &self.bg;
    }
}

async fn pipe(client: TcpStream, server: TcpStream, inner: Arc<Mutex<Inner>>) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let a = tokio::spawn(one_way(cr, sw, inner.clone()));
    let b = tokio::spawn(one_way(sr, cw, inner));
    let _guard = AbortOnDrop(vec![a.abort_handle(), b.abort_handle()]);
    let _ = tokio::join!(a, b);
}

struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

async fn one_way(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    inner: Arc<Mutex<Inner>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mode = lock(&inner).mode;
        match mode {
            Mode::Blackhole => continue,
            Mode::Delay(d) => tokio::time::sleep(d).await,
            Mode::Pass | Mode::Refuse => {}
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
