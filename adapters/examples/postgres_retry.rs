//! Seed 004's pattern: on a lost connection, retry the whole transaction,
//! never a single statement. The transaction is made idempotent (an upsert
//! keyed by a client-chosen id), so a retry after an unknown outcome is safe.
//!
//! `cargo run -p redial --features postgres --example postgres_retry -- "host=127.0.0.1 port=5433 user=postgres"`
//! Run `pg_ctl restart -m immediate` while it runs.

use std::time::Duration;

use redial::core::Config;
use redial::postgres::{PgOp, PostgresConnector};
use redial::{CallOptions, Client};

fn transfer(id: i64) -> PgOp<u64> {
    PgOp::new(move |c| {
        Box::pin(async move {
            let tx = c.transaction().await?;
            let n = tx
                .execute(
                    "INSERT INTO transfers (id, amount) VALUES ($1, 10) ON CONFLICT (id) DO NOTHING",
                    &[&id],
                )
                .await?;
            tx.commit().await?;
            Ok(n)
        })
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let conn = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PG_CONN").ok())
        .ok_or("pass a private PostgreSQL connection string as argument or PG_CONN")?;
    let client = Client::new(Config::recommended(), PostgresConnector::new([conn])?)?;
    let setup = PgOp::new(|c| {
        Box::pin(async move {
            c.batch_execute(
                "CREATE TABLE IF NOT EXISTS transfers (id bigint PRIMARY KEY, amount int)",
            )
            .await
            .map(|_| 0)
        })
    });
    client
        .call_with(setup, CallOptions::new().retryable(true))
        .await?;
    for id in 1..=40 {
        // Retryable: the core re-runs it after a connection loss, in order,
        // within its attempt limit and the retry budget. Seed 004's loop
        // makes a first try plus up to 5 retries: 6 attempts in all.
        match client
            .call_with(
                transfer(id),
                CallOptions::new().retryable(true).max_attempts(6),
            )
            .await
        {
            Ok(n) => println!("transfer {id}: committed ({n} row)"),
            Err(e) => println!("transfer {id}: {e} (may have run: {})", e.maybe_executed()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.close().await;
    Ok(())
}
