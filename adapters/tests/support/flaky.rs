//! An in-memory connector whose outages a test scripts: it connects at
//! once unless told to refuse the next few attempts; an op answers its own
//! number, or, when told to, fails as a lost connection (as a server that
//! went away mid-op).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use redial::{Connector, Failure};

/// What the test tells the connector.
#[derive(Debug, Default)]
pub struct Script {
    /// Connect attempts still to refuse.
    pub refuse: AtomicU32,
    /// The next op's run fails as a lost connection.
    pub lose_next: AtomicBool,
    /// The next this many op runs fail as lost connections.
    pub lose: AtomicU32,
}

/// The connector; clone `script` before handing it to the client.
#[derive(Debug, Default)]
pub struct Flaky {
    pub script: Arc<Script>,
}

impl Connector for Flaky {
    type Conn = ();
    type Op = u32;
    type Output = u32;
    type Error = std::io::Error;

    fn endpoints(&self) -> usize {
        1
    }
    async fn connect(&self, _: usize) -> Result<(), std::io::Error> {
        let refused = self
            .script
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refused {
            Err(std::io::ErrorKind::ConnectionRefused.into())
        } else {
            Ok(())
        }
    }
    async fn run(&self, _: &(), op: &u32) -> Result<u32, std::io::Error> {
        let lose = self
            .script
            .lose
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if self.script.lose_next.swap(false, Ordering::SeqCst) || lose {
            Err(std::io::ErrorKind::ConnectionReset.into())
        } else {
            Ok(*op)
        }
    }
    fn classify(&self, e: &std::io::Error) -> Failure {
        if e.kind() == std::io::ErrorKind::ConnectionReset {
            Failure::ConnectionLost
        } else {
            Failure::ServerError
        }
    }
}

/// A client of `flaky` with `config`, on the default (tokio) runtime.
pub fn client(flaky: Flaky, config: redial::core::ConfigBuilder) -> redial::Client<Flaky> {
    redial::Client::builder(flaky)
        .config(config.build().expect("config"))
        .build()
        .expect("client")
}

/// A first connect retried like a reconnect, a constant 20 ms backoff without jitter or quick reconnects, no retry
/// budget, no heartbeat: every delay of an outage is the script's.
pub fn config() -> redial::core::ConfigBuilder {
    use redial::core::{Backoff, Config, InitialConnect, Jitter, Tries};
    Config::recommended()
        .to_builder()
        .initial_connect(InitialConnect::Retry)
        .backoff(Backoff::Constant(std::time::Duration::from_millis(20)))
        .jitter(Jitter::None)
        .quick_reconnect(None)
        .reconnect_tries(Tries::Unlimited)
        .retry_budget(None)
        .heartbeat(None)
}
