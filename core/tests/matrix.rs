//! The autoReconnect × bufferMaxEntries matrix of seed 003 (DESIGN.md), one
//! test per row, each driving a real machine through a loss with the
//! invariant checker attached to every step.

mod harness;

use harness::H;
use redial_core::{
    BufferPolicy, Config, Duration, ErrorKind, Event, LossKind, OpId, OverflowPolicy, State,
};

/// The legacy driver with the row's two knobs.
fn row(auto_reconnect: bool, buffer_max_entries: i64) -> Config {
    Config::mongodb_legacy()
        .to_builder()
        .auto_reconnect(auto_reconnect)
        .buffer_max_entries(buffer_max_entries)
        .build()
        .expect("valid row config")
}

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn row_true_0_reconnects_and_fails_every_op_at_once_until_back() {
    let (mut h, _c1) = H::connected(row(true, 0));
    h.lose(LossKind::Closed);
    assert_eq!(h.state(), State::Backoff);
    // While disconnected every op fails at once, certainly not run.
    let a = h.op();
    let e = h.error(a);
    assert_eq!(e.kind(), ErrorKind::NoConnection);
    assert_eq!(e.to_string(), "no connection available for operation");
    assert!(!e.maybe_executed());
    assert_eq!(h.m.buffered(), 0);
    // The reconnect happens after the interval; first try fails, still no buffering.
    let (_, _) = h.until_connect();
    assert_eq!(h.now.as_millis(), 1000);
    h.connect_fail();
    let b = h.op();
    assert_eq!(h.kind(b), ErrorKind::NoConnection);
    h.until_connect();
    h.connect_ok();
    assert!(matches!(h.events().last(), Some(Event::Reconnected { .. })));
    // Back: ops are dispatched again.
    let c = h.op();
    assert!(h.is_open(c));
    assert_eq!(h.dispatches_of(c), 1);
    assert_eq!(h.connects().len(), 3);
    h.finish();
}

#[test]
fn row_true_minus1_buffers_everything_and_replays_in_order() {
    let (mut h, c1) = H::connected(row(true, -1));
    h.lose(LossKind::Reset);
    let ops: Vec<OpId> = (0..200).map(|_| h.op()).collect();
    assert_eq!(h.m.buffered(), 200);
    assert!(ops.iter().all(|&o| h.is_open(o)));
    // Two failed reconnects: still buffered, nothing fails.
    for _ in 0..2 {
        h.until_connect();
        h.connect_fail();
    }
    assert_eq!(h.m.buffered(), 200);
    h.until_connect();
    let c2 = h.connect_ok();
    assert_ne!(c1, c2);
    let replayed: Vec<OpId> = h
        .dispatches()
        .iter()
        .filter(|d| d.1 == c2)
        .map(|d| d.0)
        .collect();
    assert_eq!(replayed, ops, "replayed in submission order");
    assert_eq!(h.m.buffered(), 0);
    assert_eq!(h.m.in_flight(), 200);
    h.finish();
}

#[test]
fn row_true_n_overflow_fails_all_buffered_ops_again_and_again() {
    let (mut h, _) = H::connected(row(true, 3));
    assert_eq!(
        h.m.config().buffer(),
        BufferPolicy::Bounded {
            max: 3,
            overflow: OverflowPolicy::FailAll
        }
    );
    h.lose(LossKind::Closed);
    for round in 0..3 {
        let first: Vec<OpId> = (0..3).map(|_| h.op()).collect();
        assert_eq!(h.m.buffered(), 3, "round {round}");
        assert!(first.iter().all(|&o| h.is_open(o)));
        let fourth = h.op();
        // N+1th op: every buffered op and the new one fail.
        assert_eq!(h.m.buffered(), 0);
        for &o in first.iter().chain([&fourth]) {
            let e = h.error(o);
            assert_eq!(e.kind(), ErrorKind::BufferOverflow);
            assert_eq!(e.to_string(), "operation buffer overflowed");
            assert!(!e.maybe_executed());
        }
        assert_eq!(
            h.last
                .iter()
                .filter_map(|o| match o {
                    redial_core::Output::Event(Event::BufferOverflow { failed }) => Some(*failed),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            [4]
        );
    }
    // It keeps reconnecting; buffered ops are replayed when back.
    let kept: Vec<OpId> = (0..2).map(|_| h.op()).collect();
    h.until_connect();
    let c = h.connect_ok();
    assert_eq!(
        h.dispatches()
            .iter()
            .filter(|d| d.1 == c)
            .map(|d| d.0)
            .collect::<Vec<_>>(),
        kept
    );
    h.finish();
}

#[test]
fn row_false_0_no_reconnect_and_every_op_fails_for_ever() {
    let (mut h, _) = H::connected(row(false, 0));
    h.lose(LossKind::Closed);
    assert_eq!(h.state(), State::Down);
    assert_eq!(h.m.poll_timeout(), None, "nothing left to wait for");
    for _ in 0..5 {
        let a = h.op();
        assert_eq!(h.kind(a), ErrorKind::NoConnection);
        h.advance(HOUR);
    }
    assert_eq!(h.connects().len(), 1, "no reconnect, ever");
    assert!(!h.event_names().contains(&"reconnecting"));
    assert_eq!(h.state(), State::Down);
    h.finish();
}

#[test]
fn row_false_minus1_buffers_for_ever_the_legacy_trap() {
    let (mut h, _) = H::connected(row(false, -1));
    h.lose(LossKind::Reset);
    let ops: Vec<OpId> = (0..50).map(|_| h.op()).collect();
    // Time passes (the server came back long ago): nothing happens.
    for _ in 0..24 {
        h.advance(HOUR);
    }
    assert_eq!(h.connects().len(), 1, "never reconnects");
    assert_eq!(h.m.buffered(), 50);
    assert!(ops.iter().all(|&o| h.is_open(o)), "buffered for ever");
    assert_eq!(h.state(), State::Down);
    assert_eq!(h.m.poll_timeout(), None);
    // Only closing the client ends them.
    h.finish();
    assert!(ops.iter().all(|&o| h.kind(o) == ErrorKind::Closed));
}

#[test]
fn row_false_n_fills_then_fails_all_again_and_again_without_reconnect() {
    let (mut h, _) = H::connected(row(false, 2));
    h.lose(LossKind::TimedOut);
    for _ in 0..4 {
        let a = h.op();
        let b = h.op();
        assert!(h.is_open(a) && h.is_open(b));
        h.advance(HOUR);
        assert!(h.is_open(a) && h.is_open(b), "no timeout, no reconnect");
        let c = h.op();
        for o in [a, b, c] {
            assert_eq!(h.kind(o), ErrorKind::BufferOverflow);
        }
    }
    assert_eq!(
        h.event_names()
            .iter()
            .filter(|n| **n == "buffer_overflow")
            .count(),
        4
    );
    assert_eq!(h.connects().len(), 1);
    let left = h.op();
    h.finish();
    assert_eq!(h.kind(left), ErrorKind::Closed);
}
