//! redial on tokio with the ready redis connector:
//! `redis-server --port 6380 --save "" & cargo run -p redial --features redis --example tokio_redis -- redis://127.0.0.1:6380`
//! Kill and restart the server while it runs: calls made during the outage
//! wait in the buffer and complete once it is back.

use std::time::Duration;

use futures::StreamExt;
use redial::core::Config;
use redial::redis::{RedisConnector, redis};
use redial::{CallOptions, Client};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("REDIS_URL").ok())
        .ok_or(
            "pass a private redis-server URL (redis://127.0.0.1:6380) as argument or REDIS_URL",
        )?;
    let client = Client::new(Config::recommended(), RedisConnector::new([url.as_str()])?)?;
    let mut events = client.events();
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            eprintln!("event: {e}");
        }
    });
    for _ in 0..20 {
        let incr = redis::cmd("INCR").arg("redial:example").clone();
        match client.call_with(incr, CallOptions::default()).await {
            Ok(n) => println!("INCR -> {n:?}"),
            Err(e) => println!("INCR failed: {e} (may have run: {})", e.maybe_executed()),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    client.close().await;
    Ok(())
}
