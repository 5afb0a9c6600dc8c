//! redial on smol against a redis-server:
//! `redis-server --port 6380 --save "" & cargo run -p redial --features smol --example smol_redis -- 127.0.0.1:6380`
//! Kill and restart the server while it runs: the counter keeps going.

#[path = "common/resp.rs"]
mod resp;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redial::core::Config;
use redial::runtime::SmolRuntime;
use redial::{CallOptions, Client};

fn main() {
    smol::block_on(async {
        let client = Client::builder(resp::Resp {
            addrs: vec![resp::addr()],
        })
        .config(Config::recommended())
        .runtime(Arc::new(SmolRuntime))
        .build()
        .expect("client");
        let mut events = client.events();
        smol::spawn(async move {
            while let Some(e) = events.next().await {
                eprintln!("event: {e}");
            }
        })
        .detach();
        for _ in 0..20 {
            let op = vec!["INCR".to_string(), "redial:example".to_string()];
            match client.call_with(op, CallOptions::default()).await {
                Ok(n) => println!("INCR -> {n}"),
                Err(e) => println!("INCR failed: {e} (may have run: {})", e.maybe_executed()),
            }
            async_io::Timer::after(Duration::from_millis(250)).await;
        }
        client.close().await;
    });
}
