//! PostgreSQL ops shared by the postgres scenarios (included with
//! `#[path]`: the bench, which compiles `support/mod.rs`, has no postgres).

use redial::postgres::PgOp;

/// One transaction inserting `id` into table `t`.
pub(crate) fn insert(id: i64) -> PgOp<()> {
    PgOp::new(move |c| {
        Box::pin(async move {
            let tx = c.transaction().await?;
            tx.execute("INSERT INTO t (id) VALUES ($1)", &[&id]).await?;
            tx.commit().await
        })
    })
}
