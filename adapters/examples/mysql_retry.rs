//! Seed 004's pattern against MySQL / MariaDB: on a lost connection,
//! retry the whole transaction, never a single statement. The transaction
//! is made idempotent (an insert keyed by a client-chosen id that ignores
//! a duplicate), so a retry after an unknown outcome is safe.
//!
//! `cargo run -p redial --features mysql --example mysql_retry -- mysql://app:app@127.0.0.1:3307/redial`
//! (or the URL in `MYSQL_URL`; default `mysql://root@127.0.0.1:3306/test`:
//! point it at a server of your own).
//! Kill and restart the server while it runs.

use std::time::Duration;

use mysql_async::TxOpts;
use mysql_async::prelude::Queryable;
use redial::core::Config;
use redial::mysql::{MySqlConnector, MySqlOp};
use redial::{CallOptions, Client};

fn transfer(id: i64) -> MySqlOp<u64> {
    MySqlOp::new(move |c| {
        Box::pin(async move {
            let mut tx = c.start_transaction(TxOpts::default()).await?;
            tx.exec_drop(
                "INSERT IGNORE INTO transfers (id, amount) VALUES (?, 10)",
                (id,),
            )
            .await?;
            let n = tx.affected_rows();
            tx.commit().await?;
            Ok(n)
        })
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("MYSQL_URL").ok())
        .unwrap_or_else(|| "mysql://root@127.0.0.1:3306/test".to_string());
    println!("connecting to {url}");
    let client = Client::new(Config::recommended(), MySqlConnector::new([url])?)?;
    let setup = MySqlOp::new(|c| {
        Box::pin(async move {
            c.query_drop("CREATE TABLE IF NOT EXISTS transfers (id BIGINT PRIMARY KEY, amount INT)")
                .await
                .map(|()| 0)
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
