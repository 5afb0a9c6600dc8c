//! The measured matrix reproduces seed 003's table: each row's behaviour
//! follows from its counts, and the counts differ the way the seed says.

use redial_sim::matrix::{Row, run_matrix};

fn row(rows: &[Row], auto: bool, n: i64) -> &Row {
    rows.iter()
        .find(|r| r.auto_reconnect == auto && r.buffer_max_entries == n)
        .expect("row present")
}

#[test]
fn six_rows_match_the_seed() {
    let rows = run_matrix(3);
    assert_eq!(rows.len(), 6);
    for r in &rows {
        assert!(r.violations.is_empty(), "{r:?}");
    }
    // true, 0: reconnect; no buffering: errors at once until the connection is back.
    let r = row(&rows, true, 0);
    assert!(r.reconnects > 0 && r.failed_fast > 0);
    assert_eq!(
        (
            r.replayed_after_restart,
            r.still_buffered,
            r.failed_after_server_back
        ),
        (0, 0, 0)
    );
    // true, -1: reconnect; buffer everything and replay it.
    let r = row(&rows, true, -1);
    assert!(r.reconnects > 0 && r.replayed_after_restart > 0);
    assert_eq!(
        (r.failed_fast, r.failed_by_overflow, r.still_buffered),
        (0, 0, 0)
    );
    assert_eq!(r.ok, r.submitted);
    // true, N: reconnect; buffer up to N, then error out all buffered ops.
    let r = row(&rows, true, 3);
    assert!(r.reconnects > 0 && r.failed_by_overflow > 0 && r.overflows > 0);
    assert_eq!(
        r.failed_by_overflow % 4,
        0,
        "each overflow fails N buffered + the new op"
    );
    // false, 0: no reconnect; every op errors, for ever.
    let r = row(&rows, false, 0);
    assert_eq!(r.reconnects, 0);
    assert!(r.failed_fast > 0 && r.failed_after_server_back > 0);
    // false, -1: no reconnect; buffered for ever, even after the server is back.
    let r = row(&rows, false, -1);
    assert_eq!(
        (r.reconnects, r.failed_fast, r.failed_by_overflow),
        (0, 0, 0)
    );
    assert!(r.still_buffered > 0);
    // false, N: no reconnect; fill to N, error all out, again and again.
    let r = row(&rows, false, 3);
    assert_eq!(r.reconnects, 0);
    assert!(r.overflows >= 2 && r.failed_after_server_back > 0);
    assert!(r.still_buffered <= 3);
    assert!(
        r.behaviour.contains("errors out every buffered op")
            && r.behaviour.contains("never reconnects"),
        "{r:?}"
    );
}

#[test]
fn the_bound_is_a_parameter() {
    let rows = run_matrix(5);
    let r = row(&rows, false, 5);
    assert_eq!(r.failed_by_overflow % 6, 0, "{r:?}");
}
