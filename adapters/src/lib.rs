//! # redial
//!
//! Keeps a client's connection to a data store alive across restarts,
//! crashes and failovers. Every decision (reconnect, buffer, retry, fail)
//! is taken by the sans-IO machine of [`redial_core`], re-exported as
//! [`core`]; this crate only carries those decisions out on a real async
//! runtime: one generic driver task per [`Client`], a small [`Runtime`]
//! seam (tokio, smol, async-std), and a [`Connector`] you implement (or
//! take ready-made: [`redis`](crate::redis), [`postgres`](crate::postgres)).
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use redial::{Client, core::Config, redis::RedisConnector};
//!
//! let connector = RedisConnector::new(["redis://127.0.0.1:6380"])?;
//! let client = Client::new(Config::recommended(), connector);
//! let n = client.call(::redis::cmd("INCR").arg("hits").clone()).await?;
//! println!("{n:?}");
//! client.close().await;
//! # Ok(()) }
//! ```
//!
//! ## Features
//!
//! - `tokio` (default), `smol`, `async-std` (discontinued upstream: prefer
//!   `smol`) — the runtimes.
//! - `redis`, `postgres` — ready connectors (tokio based).

#![forbid(unsafe_code)]

pub use redial_core as core;

mod client;
mod connector;
mod driver;
pub mod runtime;

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;

pub use client::{Builder, Call, CallOptions, CallResult, Client, Error, Events};
pub use connector::{Connector, Failure};
pub use runtime::{AsyncTimer, Runtime, default_runtime};
