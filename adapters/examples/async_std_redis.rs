//! redial on async-std (discontinued upstream: prefer smol) against a
//! redis-server, with a connector of its own: the redis crate 1.x has no
//! async-std support, so the ready `RedisConnector` does not run here.
//! `common/inline.rs` speaks redis's inline commands (one line each way),
//! enough for `INCR`:
//! `redis-server --port 6380 --save "" & cargo run -p redial --features async-std --example async_std_redis -- 127.0.0.1:6380`
//! Kill and restart the server while it runs: the counter keeps going.

#[path = "common/inline.rs"]
mod inline;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redial::core::Config;
use redial::runtime::AsyncStdRuntime;
use redial::{CallOptions, Client};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("REDIS_ADDR").ok())
        .ok_or("pass a private redis-server address (127.0.0.1:6380) as argument or REDIS_ADDR")?;
    async_std::task::block_on(async {
        let client = Client::builder(inline::Inline { addrs: vec![addr] })
            .config(Config::recommended())
            .runtime(Arc::new(AsyncStdRuntime))
            .build()?;
        let mut events = client.events();
        async_std::task::spawn(async move {
            while let Some(e) = events.next().await {
                eprintln!("event: {e}");
            }
        });
        for _ in 0..20 {
            let op = "INCR redial:example".to_string();
            match client.call_with(op, CallOptions::default()).await {
                Ok(n) => println!("INCR -> {n}"),
                Err(e) => println!("INCR failed: {e} (may have run: {})", e.maybe_executed()),
            }
            async_io::Timer::after(Duration::from_millis(250)).await;
        }
        client.close().await;
        Ok(())
    })
}
