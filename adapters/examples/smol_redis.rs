//! redial on smol with the ready redis connector (the redis crate's own
//! smol support):
//! `redis-server --port 6380 --save "" & cargo run -p redial --no-default-features --features smol,redis --example smol_redis -- redis://127.0.0.1:6380`
//! Kill and restart the server while it runs: calls made during the outage
//! wait in the buffer and complete once it is back.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redial::core::Config;
use redial::redis::{RedisConnector, redis};
use redial::runtime::SmolRuntime;
use redial::{CallOptions, Client};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("REDIS_URL").ok())
        .ok_or(
            "pass a private redis-server URL (redis://127.0.0.1:6380) as argument or REDIS_URL",
        )?;
    smol::block_on(async {
        let client = Client::builder(RedisConnector::new([url.as_str()])?)
            .config(Config::recommended())
            .runtime(Arc::new(SmolRuntime))
            .build()?;
        let mut events = client.events();
        smol::spawn(async move {
            while let Some(e) = events.next().await {
                eprintln!("event: {e}");
            }
        })
        .detach();
        for _ in 0..20 {
            // The re-exported crate: the connector's own `Cmd` type.
            let incr = redis::cmd("INCR").arg("redial:example").clone();
            match client.call_with(incr, CallOptions::default()).await {
                Ok(n) => println!("INCR -> {n:?}"),
                Err(e) => println!("INCR failed: {e} (may have run: {})", e.maybe_executed()),
            }
            async_io::Timer::after(Duration::from_millis(250)).await;
        }
        client.close().await;
        Ok(())
    })
}
