//! One test per seed scenario and per modern knob, driven by the harness
//! (manual clock, checker on every step). Each checks exact error kinds,
//! messages, `maybe_executed` flags and event sequences.

mod harness;

use harness::{H, ms};
use redial_core::{
    Backoff, BufferPolicy, Config, ConnId, ConnectFailure, DisconnectReason, Duration, ErrorKind,
    Event, Heartbeat, InitialConnect, Instant, Jitter, LossKind, Machine, OpId, OpOptions,
    OpResult, Output, OverflowPolicy, RetryBudget, Role, State, Tries,
};

fn mongoose() -> redial_core::ConfigBuilder {
    Config::mongoose().to_builder()
}

fn legacy() -> redial_core::ConfigBuilder {
    Config::mongodb_legacy().to_builder()
}

fn reconnecting(attempt: u32, delay: Duration, endpoint: usize) -> Event {
    Event::Reconnecting {
        attempt,
        delay,
        endpoint,
        error: None,
    }
}

/// `reconnecting` after a connect attempt that timed out.
fn reconnecting_timed_out(attempt: u32, delay: Duration, endpoint: usize) -> Event {
    Event::Reconnecting {
        attempt,
        delay,
        endpoint,
        error: Some(ConnectFailure::TimedOut),
    }
}

/// `reconnecting` after a refused connect attempt.
fn reconnecting_refused(attempt: u32, delay: Duration, endpoint: usize) -> Event {
    Event::Reconnecting {
        attempt,
        delay,
        endpoint,
        error: Some(ConnectFailure::Refused),
    }
}

// ----- seed 002: mongoose when MongoDB goes down -------------------------------

#[test]
fn seed002_buffers_until_reconnect() {
    let (mut h, c1) = H::connected(Config::mongoose());
    h.now += ms(500);
    h.lose(LossKind::Closed); // server.stop()
    // "Finished query" won't print until after "connected".
    let q = h.op();
    assert!(h.is_open(q));
    assert_eq!(h.m.buffered(), 1);
    // The driver tries every second; the server is still down at 1.5 s...
    let (_, _) = h.until_connect();
    assert_eq!(h.now, Instant::from_millis(1500));
    h.connect_fail();
    assert_eq!(h.m.buffered(), 1, "still buffered after a failed attempt");
    // ...and back by the attempt at 2.5 s.
    let (_, _) = h.until_connect();
    assert_eq!(h.now, Instant::from_millis(2500));
    let c2 = h.connect_ok(); // server.start()
    assert_ne!(c1, c2);
    assert_eq!(h.dispatches().last(), Some(&(q, c2, 0)));
    h.answer(q, OpResult::Ok);
    let done = h.outcome(q).unwrap().unwrap();
    assert_eq!((done.conn, done.attempts), (c2, 1));
    let names = h.event_names();
    assert_eq!(names[..3], ["connected", "disconnected", "reconnecting"]);
    // mongoose emits `connected` along with `reconnected` (seed 002: "these
    // events are interchangeable"), so an `on('connected')` handler also
    // sees the reconnection.
    assert_eq!(names[names.len() - 2..], ["reconnected", "connected"]);
    assert_eq!(
        names.iter().filter(|n| **n == "reconnected").count(),
        1,
        "{names:?}"
    );
    h.finish();
    // The legacy driver alone does not.
    let (mut h, _) = H::connected(Config::mongodb_legacy());
    h.now += ms(500);
    h.lose(LossKind::Closed);
    h.until_connect();
    h.connect_ok();
    assert_eq!(h.event_names().last(), Some(&"reconnected"));
}

#[test]
fn seed002_fail_fast_with_buffering_off() {
    let (mut h, _) = H::connected(Config::fail_fast());
    h.lose(LossKind::Closed);
    let q = h.op();
    let e = h.error(q);
    assert_eq!(e.kind(), ErrorKind::NoConnection);
    assert_eq!(e.kind().name(), "no_connection");
    assert_eq!(e.to_string(), "no connection available for operation");
    assert!(!e.maybe_executed());
    assert_eq!(e.attempts(), 0);
    // It still reconnects (autoReconnect stays on) and ops work again.
    h.until_connect();
    h.connect_ok();
    let r = h.op();
    assert_eq!(h.dispatches_of(r), 1);
    h.finish();
}

#[test]
fn seed002_reconnect_tries_2_interval_100_then_topology_destroyed() {
    let config = mongoose()
        .reconnect_tries(Tries::Limited(2))
        .reconnect_interval(ms(100))
        .build()
        .unwrap();
    let (mut h, c1) = H::connected(config);
    h.lose(LossKind::Closed);
    let during = h.op(); // starts while the driver is trying to reconnect
    for _ in 0..2 {
        h.until_connect();
        h.connect_fail();
    }
    assert_eq!(h.state(), State::Failed);
    let e = h.error(during);
    assert_eq!(e.kind(), ErrorKind::ReconnectFailed);
    assert_eq!(
        e.to_string(),
        "failed to reconnect after 2 attempts with interval 100 ms"
    );
    assert!(!e.maybe_executed());
    let after = h.op(); // after the driver gave up
    let e = h.error(after);
    assert_eq!(e.kind(), ErrorKind::TopologyDestroyed);
    assert_eq!(e.to_string(), "topology was destroyed");
    assert!(!e.maybe_executed());
    // Never again, even if the server restarts.
    h.advance(Duration::from_secs(3600));
    let connects = h.connects();
    assert_eq!(
        connects.iter().map(|c| c.0.as_millis()).collect::<Vec<_>>(),
        [0, 100, 200]
    );
    assert_eq!(h.m.poll_timeout(), None);
    assert_eq!(
        h.events(),
        [
            Event::Connected {
                conn: c1,
                endpoint: 0
            },
            Event::Disconnected {
                conn: c1,
                endpoint: 0,
                reason: DisconnectReason::Lost(LossKind::Closed)
            },
            reconnecting(1, ms(100), 0),
            reconnecting_refused(2, ms(100), 0),
            Event::ReconnectFailed {
                attempts: 2,
                error: Some(ConnectFailure::Refused)
            },
        ]
    );
    h.finish();
    assert_eq!(h.event_names().last(), Some(&"closed"));
}

#[test]
fn reconnect_failed_message_names_the_backoff_when_not_constant() {
    let config = legacy()
        .reconnect_tries(Tries::Limited(3))
        .backoff(Backoff::Exponential {
            initial: ms(100),
            multiplier: 2.0,
            max: ms(300),
        })
        .build()
        .unwrap();
    let (mut h, _) = H::connected(config);
    h.lose(LossKind::Reset);
    let q = h.op();
    for _ in 0..3 {
        h.until_connect();
        h.connect_fail();
    }
    assert_eq!(
        h.error(q).to_string(),
        "failed to reconnect after 3 attempts with backoff from 100 ms up to 300 ms"
    );
    assert_eq!(
        h.connects()
            .iter()
            .map(|c| c.0.as_millis())
            .collect::<Vec<_>>(),
        [0, 100, 300, 600]
    );
    h.finish();
}

#[test]
fn reconnect_tries_zero_gives_up_at_once_after_a_loss() {
    let config = legacy().reconnect_tries(Tries::Limited(0)).build().unwrap();
    let (mut h, _) = H::connected(config);
    let t = h.submit(OpOptions::new().retryable(true).max_attempts(3));
    h.lose(LossKind::Reset);
    assert_eq!(h.state(), State::Failed);
    let e = h.error(t);
    assert_eq!(e.kind(), ErrorKind::ReconnectFailed);
    assert!(e.maybe_executed(), "it was in flight");
    assert_eq!(
        e.to_string(),
        "failed to reconnect after 0 attempts with interval 1000 ms"
    );
    h.finish();
}

// ----- seed 003: socketTimeoutMS churn --------------------------------------------

#[test]
fn seed003_low_socket_timeout_closes_idle_connections_again_and_again() {
    let config = legacy()
        .socket_timeout(Some(ms(50)))
        .reconnect_interval(ms(100))
        .build()
        .unwrap();
    let (mut h, _) = H::connected(config);
    let mut reconnects = 0;
    while h.now < Instant::from_secs(3) {
        h.until_connect();
        h.connect_ok();
        reconnects += 1;
    }
    // Every connection dies 50 ms after it went idle, reconnect 100 ms later.
    let idle = h
        .events()
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Disconnected {
                    reason: DisconnectReason::Idle,
                    ..
                }
            )
        })
        .count();
    assert_eq!(reconnects, 20, "a 150 ms cycle over 3 s");
    assert_eq!(idle, 20);
    // The machine closes the idle socket itself.
    assert_eq!(
        h.log
            .iter()
            .filter(|(_, o)| matches!(o, Output::Close { .. }))
            .count(),
        20
    );
    // An op in flight longer than the idle timeout keeps the connection.
    let q = h.op();
    h.advance(ms(500));
    assert!(h.is_open(q));
    assert!(h.m.connection().is_some());
    h.answer(q, OpResult::Ok);
    h.advance(ms(49));
    assert!(h.m.connection().is_some());
    h.advance(ms(1));
    assert!(h.m.connection().is_none(), "idle 50 ms after the answer");
    h.finish();
}

// ----- seeds 000/001: restart of the master, failover with a seed list -------------

#[test]
fn seed000_restart_of_db0_reconnects_to_the_same_endpoint() {
    let (mut h, c1) = H::connected(Config::mongodb_legacy());
    let in_flight = h.op();
    h.lose(LossKind::Closed);
    assert_eq!(h.kind(in_flight), ErrorKind::ConnectionLost);
    let buffered = h.op();
    let (c2, ep) = h.until_connect();
    assert_eq!(ep, 0);
    assert_eq!(h.now.as_millis(), 1000);
    h.connect_ok();
    assert_eq!(h.dispatches().last(), Some(&(buffered, c2, 0)));
    assert!(c2 > c1);
    h.finish();
}

#[test]
fn seed000_failover_wrong_server_moves_to_the_next_endpoint_and_requeues() {
    let config = legacy()
        .endpoints(3)
        .reconnect_interval(ms(10))
        .build()
        .unwrap();
    let (mut h, c1) = H::connected(config);
    let a = h.op();
    let b = h.op();
    // db.0 was demoted: it answers `a` with READONLY. Nothing more is sent
    // there, but `b`, already in flight, keeps its answer: the connection
    // drains.
    h.answer(a, OpResult::WrongServer);
    assert_eq!(h.state(), State::Draining);
    assert!(!h.last.contains(&Output::Close { conn: c1 }));
    assert!(h.is_open(a) && h.is_open(b));
    let c = h.op(); // submitted while draining: buffered, not sent to db.0
    assert_eq!(h.dispatches_of(c), 0);
    // `b` is refused too: it did not run either. Now nothing is in flight:
    // db.0 is closed and the next endpoint tried.
    h.answer(b, OpResult::WrongServer);
    assert!(h.last.contains(&Output::Close { conn: c1 }));
    assert!(h.last.contains(&Output::Event(Event::Disconnected {
        conn: c1,
        endpoint: 0,
        reason: DisconnectReason::WrongServer
    })));
    assert!(h.last.contains(&Output::Event(reconnecting(1, ms(10), 1))));
    assert!(h.is_open(a) && h.is_open(b) && h.is_open(c));
    // The next endpoint (db.1) also fails; rotate to db.2, the new primary.
    let (_, ep) = h.until_connect();
    assert_eq!(ep, 1);
    h.connect_fail();
    let (c3, ep) = h.until_connect();
    assert_eq!(ep, 2);
    h.connect_ok();
    // All three go to the new primary in submission order.
    let on_c3: Vec<OpId> = h
        .dispatches()
        .into_iter()
        .filter(|(_, conn, _)| *conn == c3)
        .map(|(op, _, _)| op)
        .collect();
    assert_eq!(on_c3, [a, b, c]);
    for op in [a, b, c] {
        h.answer(op, OpResult::Ok);
    }
    let done = h.outcome(a).unwrap().unwrap();
    assert_eq!((done.endpoint, done.attempts), (2, 2));
    assert_eq!(h.dispatches_of(a), 2, "sent twice, run once");
    h.finish();
}

#[test]
fn wrong_server_with_no_room_fails_the_op_as_not_run() {
    let config = legacy().buffer_max_entries(0).endpoints(2).build().unwrap();
    let (mut h, _) = H::connected(config);
    let a = h.op();
    h.answer(a, OpResult::WrongServer);
    let e = h.error(a);
    assert_eq!(e.kind(), ErrorKind::NoConnection);
    assert!(
        !e.maybe_executed(),
        "answered wrong-server: certainly not run"
    );
    assert_eq!(e.attempts(), 1);
    h.finish();
}

// ----- seed 004: clean close, reset, silent loss; retrying transactions -------------

#[test]
fn seed004_clean_close_and_reset_are_reported_as_such() {
    for kind in [LossKind::Closed, LossKind::Reset, LossKind::TimedOut] {
        let (mut h, c1) = H::connected(Config::mongodb_legacy());
        let q = h.op();
        h.lose(kind);
        assert!(h.events().contains(&Event::Disconnected {
            conn: c1,
            endpoint: 0,
            reason: DisconnectReason::Lost(kind)
        }));
        let e = h.error(q);
        assert_eq!(e.kind(), ErrorKind::ConnectionLost);
        assert_eq!(
            e.to_string(),
            "connection lost while the operation was in flight"
        );
        assert!(e.maybe_executed());
        assert_eq!(h.dispatches_of(q), 1, "never re-sent");
        h.finish();
    }
}

#[test]
fn seed004_silent_loss_is_detected_by_the_heartbeat() {
    let config = legacy()
        .heartbeat(Some(Heartbeat {
            interval: ms(1000),
            timeout: ms(300),
        }))
        .build()
        .unwrap();
    let (mut h, c1) = H::connected(config);
    // Healthy for a while: heartbeats answered.
    h.advance(ms(5000));
    assert_eq!(
        h.log
            .iter()
            .filter(|(_, o)| matches!(o, Output::Heartbeat { .. }))
            .count(),
        5
    );
    assert!(h.m.connection().is_some());
    // The failover: the server goes silent.
    h.answer_heartbeats = false;
    let q = h.op();
    h.advance(ms(1299));
    assert!(h.m.connection().is_some(), "not yet");
    h.advance(ms(1));
    assert!(h.m.connection().is_none());
    let n = h.events().len();
    assert_eq!(
        h.events()[n - 3..],
        [
            Event::Unresponsive { conn: c1 },
            Event::Disconnected {
                conn: c1,
                endpoint: 0,
                reason: DisconnectReason::Unresponsive
            },
            reconnecting(1, ms(1000), 0),
        ]
    );
    assert!(h.log.iter().any(|(_, o)| *o == Output::Close { conn: c1 }));
    let e = h.error(q);
    assert_eq!(e.kind(), ErrorKind::ConnectionLost);
    assert!(e.maybe_executed(), "a silent server may have run it");
    h.finish();
}

#[test]
fn response_timeout_declares_the_connection_dead() {
    let config = legacy().response_timeout(Some(ms(200))).build().unwrap();
    let (mut h, c1) = H::connected(config);
    let q = h.op();
    h.advance(ms(199));
    assert!(h.is_open(q));
    h.advance(ms(1));
    assert!(h.events().contains(&Event::Unresponsive { conn: c1 }));
    assert_eq!(h.kind(q), ErrorKind::ConnectionLost);
    h.finish();
}

#[test]
fn seed004_retryable_transaction_is_retried_up_to_5_attempts() {
    let config = legacy().reconnect_interval(ms(10)).build().unwrap();
    let (mut h, _) = H::connected(config);
    let tx = h.submit(OpOptions::new().retryable(true).max_attempts(5));
    for attempt in 1..=5 {
        assert_eq!(h.dispatches_of(tx), attempt);
        h.lose(LossKind::Reset);
        if attempt < 5 {
            assert!(h.is_open(tx), "re-queued after attempt {attempt}");
            h.until_connect();
            h.connect_ok();
        }
    }
    let e = h.error(tx);
    assert_eq!(e.kind(), ErrorKind::ConnectionLost);
    assert!(e.maybe_executed());
    assert_eq!(e.attempts(), 5);
    h.finish();
}

#[test]
fn retryable_op_succeeds_on_its_third_attempt_and_keeps_its_place() {
    let config = legacy().reconnect_interval(ms(10)).build().unwrap();
    let (mut h, _) = H::connected(config);
    let tx = h.submit(OpOptions::new().retryable(true).max_attempts(5));
    let plain = h.op();
    h.lose(LossKind::Closed);
    assert_eq!(h.kind(plain), ErrorKind::ConnectionLost);
    let later = h.op();
    h.until_connect();
    let c2 = h.connect_ok();
    // Re-queued at the front: tx before the op submitted later.
    let on_c2: Vec<_> = h
        .dispatches()
        .iter()
        .filter(|d| d.1 == c2)
        .map(|d| d.0)
        .collect();
    assert_eq!(on_c2, [tx, later]);
    h.lose(LossKind::Closed);
    h.until_connect();
    h.connect_ok();
    h.answer(tx, OpResult::Ok);
    assert_eq!(h.outcome(tx).unwrap().unwrap().attempts, 3);
    h.finish();
}

#[test]
fn server_errors_are_final_and_not_retried() {
    let (mut h, _) = H::connected(Config::mongodb_legacy());
    let tx = h.submit(OpOptions::new().retryable(true).max_attempts(5));
    h.answer(tx, OpResult::ServerError);
    let e = h.error(tx);
    assert_eq!(e.kind(), ErrorKind::ServerError);
    assert_eq!(e.to_string(), "server returned an error");
    assert!(e.maybe_executed());
    assert_eq!(h.dispatches_of(tx), 1);
    h.finish();
}

#[test]
fn op_result_connection_lost_drops_the_connection() {
    let (mut h, c1) = H::connected(Config::mongodb_legacy());
    let a = h.op();
    let b = h.submit(OpOptions::new().retryable(true).max_attempts(2));
    h.answer(a, OpResult::ConnectionLost);
    assert!(h.events().contains(&Event::Disconnected {
        conn: c1,
        endpoint: 0,
        reason: DisconnectReason::Lost(LossKind::Reset)
    }));
    assert_eq!(h.kind(a), ErrorKind::ConnectionLost);
    assert!(h.is_open(b));
    h.finish();
}

#[test]
fn retry_budget_exhaustion_stops_the_retry_storm() {
    let config = legacy()
        .reconnect_interval(ms(10))
        .retry_budget(Some(RetryBudget {
            max_tokens: 4,
            token_ratio: 1.0,
        }))
        .build()
        .unwrap();
    let (mut h, _) = H::connected(config);
    assert_eq!(h.m.retry_tokens(), Some(4));
    let opts = OpOptions::new().retryable(true).max_attempts(10);
    let a = h.submit(opts);
    h.lose(LossKind::Reset); // 4 -> 3 tokens: 3 > 4/2, retry
    assert!(h.is_open(a));
    assert_eq!(h.m.retry_tokens(), Some(3));
    h.until_connect();
    h.connect_ok();
    h.lose(LossKind::Reset); // 3 -> 2 tokens: 2 is not above half: refused
    let e = h.error(a);
    assert_eq!(e.kind(), ErrorKind::RetryBudgetExhausted);
    assert_eq!(
        e.to_string(),
        "connection lost and the retry budget is exhausted"
    );
    assert!(e.maybe_executed());
    assert_eq!(e.attempts(), 2);
    // Successes refill the bucket (ratio 1.0 per success, capped at 4).
    h.until_connect();
    h.connect_ok();
    for _ in 0..5 {
        let q = h.op();
        h.answer(q, OpResult::Ok);
    }
    assert_eq!(h.m.retry_tokens(), Some(4));
    let b = h.submit(opts);
    h.lose(LossKind::Reset);
    assert!(h.is_open(b), "budget refilled: retried again");
    h.finish();
}

// ----- timeouts, deadlines, cancel, close --------------------------------------------

#[test]
fn buffer_timeout_fails_a_buffered_op_after_exactly_the_wait() {
    // mongoose's bufferTimeoutMS (10 s), with no reconnect so nothing else happens.
    let config = mongoose().auto_reconnect(false).build().unwrap();
    let (mut h, _) = H::connected(config);
    h.lose(LossKind::Closed);
    h.now += ms(123);
    let q = h.op();
    h.advance(ms(9_999));
    assert!(h.is_open(q));
    h.advance(ms(1));
    let e = h.error(q);
    assert_eq!(e.kind(), ErrorKind::BufferTimeout);
    assert_eq!(
        e.to_string(),
        "operation timed out while buffered waiting for a connection"
    );
    assert!(!e.maybe_executed());
    let at = h
        .log
        .iter()
        .find(|(_, o)| matches!(o, Output::Complete(c) if c.id == q))
        .unwrap()
        .0;
    assert_eq!(at.as_millis(), 10_123);
    h.finish();
}

#[test]
fn deadlines_fail_buffered_and_in_flight_ops_and_late_answers_are_ignored() {
    let (mut h, c1) = H::connected(Config::mongodb_legacy());
    let in_flight = h.submit(OpOptions::new().deadline(ms(300)));
    h.advance(ms(299));
    assert!(h.is_open(in_flight));
    h.advance(ms(1));
    let e = h.error(in_flight);
    assert_eq!(e.kind(), ErrorKind::DeadlineExceeded);
    assert_eq!(e.to_string(), "operation deadline exceeded");
    assert!(e.maybe_executed(), "it was sent");
    // The late answer is stale: nothing happens.
    h.m.handle_op_result(h.now, in_flight, c1, OpResult::Ok);
    assert!(h.drain().is_empty());

    h.lose(LossKind::Closed);
    // The next attempt is 1 s away (legacy interval): an op whose 50 ms
    // deadline comes first fails at once (seed 003's "Confusion": never
    // sleep past a deadline).
    let buffered = h.submit(OpOptions::new().deadline(ms(50)));
    let e = h.error(buffered);
    assert_eq!(e.kind(), ErrorKind::DeadlineUnreachable);
    assert!(!e.maybe_executed());
    // One that the attempt could still serve waits for it...
    let later = h.submit(OpOptions::new().deadline(ms(1500)));
    let (_, _) = h.until_connect();
    // ...and while that attempt is under way (30 s connect timeout) an op
    // with a 50 ms deadline waits and fails at its deadline.
    let connecting = h.submit(OpOptions::new().deadline(ms(50)));
    h.advance(ms(50));
    assert_eq!(h.kind(connecting), ErrorKind::DeadlineExceeded);
    assert!(h.is_open(later));
    // The attempt is refused: the next is 1 s later, after `later`'s
    // deadline: it fails now, not at its deadline.
    let refused_at = h.now;
    h.connect_fail();
    assert_eq!(h.kind(later), ErrorKind::DeadlineUnreachable);
    assert_eq!(h.now, refused_at);
    // The config's default deadline applies to ops without one.
    let config = legacy().op_deadline(Some(ms(70))).build().unwrap();
    let (mut h2, _) = H::connected(config);
    let q = h2.op();
    h2.advance(ms(70));
    assert_eq!(h2.kind(q), ErrorKind::DeadlineExceeded);
    h2.finish();
    h.finish();
}

#[test]
fn cancel_reports_whether_the_op_may_have_run() {
    let (mut h, _) = H::connected(Config::mongodb_legacy());
    let sent = h.op();
    h.cancel(sent);
    let e = h.error(sent);
    assert_eq!(e.kind(), ErrorKind::Cancelled);
    assert_eq!(e.to_string(), "operation cancelled");
    assert!(e.maybe_executed());
    h.lose(LossKind::Closed);
    let waiting = h.op();
    h.cancel(waiting);
    assert!(!h.error(waiting).maybe_executed());
    // Cancelling twice, or an id never issued, does nothing.
    h.m.cancel(h.now, waiting);
    h.m.cancel(h.now, redial_core::OpId::from_raw(12_345));
    assert!(h.drain().is_empty());
    h.finish();
}

#[test]
fn close_fails_everything_once_and_is_terminal() {
    let (mut h, c1) = H::connected(Config::mongodb_legacy());
    let sent = h.op();
    h.close();
    assert_eq!(h.last.first(), Some(&Output::Close { conn: c1 }));
    assert_eq!(h.last.last(), Some(&Output::Event(Event::Closed)));
    let e = h.error(sent);
    assert_eq!(e.kind(), ErrorKind::Closed);
    assert_eq!(e.to_string(), "client closed");
    assert!(e.maybe_executed());
    let late = h.op();
    assert_eq!(h.kind(late), ErrorKind::Closed);
    assert!(!h.error(late).maybe_executed());
    h.close();
    assert!(h.last.is_empty(), "idempotent");
    h.advance(Duration::from_secs(3600));
    assert_eq!(h.connects().len(), 1);
    assert_eq!(
        h.event_names().iter().filter(|n| **n == "closed").count(),
        1
    );

    // Closing while buffered ops wait: they fail as not run.
    let (mut h, _) = H::connected(Config::mongodb_legacy());
    h.lose(LossKind::Reset);
    let b = h.op();
    let (attempt, _) = h.until_connect();
    h.close();
    assert!(h.last.contains(&Output::Close { conn: attempt }));
    assert!(!h.error(b).maybe_executed());
    // A connect that completes after close is closed and revives nothing.
    assert_eq!(
        h.connected_report(attempt),
        [Output::Close { conn: attempt }]
    );
    assert_eq!(h.state(), State::Closed);
    h.finish();
}

#[test]
fn stale_ids_are_ignored_and_a_late_connect_is_closed() {
    let config = legacy()
        .connect_timeout(Some(ms(100)))
        .reconnect_interval(ms(50))
        .build()
        .unwrap();
    let (mut h, c1) = H::connected(config);
    let q = h.op();
    h.lose(LossKind::Reset);
    let b = h.op();
    let (c2, _) = h.until_connect();
    // The attempt times out.
    h.advance(ms(100));
    assert!(h.last.contains(&Output::Close { conn: c2 }));
    assert!(
        h.last
            .contains(&Output::Event(reconnecting_timed_out(2, ms(50), 0)))
    );
    assert_eq!(h.state(), State::Backoff);
    // A late "connected" for it must not revive anything.
    assert_eq!(h.connected_report(c2), [Output::Close { conn: c2 }]);
    assert_eq!(h.state(), State::Backoff);
    assert!(h.is_open(b));
    // Stale reports about the old connection and attempt: nothing at all.
    h.m.handle_connection_lost(h.now, c1, LossKind::Closed);
    h.m.handle_connect_failed(h.now, c2, ConnectFailure::Refused);
    h.m.handle_op_result(h.now, q, c1, OpResult::Ok);
    h.m.handle_heartbeat_ok(h.now, c1);
    assert!(h.drain().is_empty());
    // An id the machine never issued is not even closed.
    assert!(h.connected_report(ConnId::from_raw(999)).is_empty());
    let (c3, _) = h.until_connect();
    assert!(c3 > c2);
    h.connect_ok();
    assert_eq!(h.dispatches().last().map(|d| d.0), Some(b));
    h.finish();
}

// ----- overflow policies ---------------------------------------------------------------

fn bounded(max: usize, overflow: OverflowPolicy) -> Config {
    legacy()
        .buffer(BufferPolicy::Bounded { max, overflow })
        .build()
        .unwrap()
}

#[test]
fn overflow_reject_new_keeps_the_buffer() {
    let (mut h, _) = H::connected(bounded(2, OverflowPolicy::RejectNew));
    h.lose(LossKind::Closed);
    let a = h.op();
    let b = h.op();
    let c = h.op();
    assert_eq!(h.kind(c), ErrorKind::BufferOverflow);
    assert!(
        h.last
            .contains(&Output::Event(Event::BufferOverflow { failed: 1 }))
    );
    assert!(h.is_open(a) && h.is_open(b));
    h.until_connect();
    let conn = h.connect_ok();
    let replayed: Vec<_> = h
        .dispatches()
        .iter()
        .filter(|d| d.1 == conn)
        .map(|d| d.0)
        .collect();
    assert_eq!(replayed, [a, b]);
    h.finish();
}

#[test]
fn overflow_drop_oldest_keeps_the_newest() {
    let (mut h, _) = H::connected(bounded(2, OverflowPolicy::DropOldest));
    h.lose(LossKind::Closed);
    let a = h.op();
    let b = h.op();
    let c = h.op();
    let e = h.error(a);
    assert_eq!(e.kind(), ErrorKind::BufferOverflow);
    assert!(!e.maybe_executed());
    assert!(
        h.last
            .contains(&Output::Event(Event::BufferOverflow { failed: 1 }))
    );
    assert_eq!(h.m.buffered(), 2);
    h.until_connect();
    let conn = h.connect_ok();
    let replayed: Vec<_> = h
        .dispatches()
        .iter()
        .filter(|d| d.1 == conn)
        .map(|d| d.0)
        .collect();
    assert_eq!(replayed, [b, c]);
    h.finish();
}

// ----- backoff and jitter --------------------------------------------------------------

/// Loses the connection, then fails `n` reconnect attempts; returns the
/// announced delays and checks each connect came exactly that long after.
fn delays(config: Config, seed: u64, n: usize) -> (Vec<Duration>, String) {
    let mut h = H::with_seed(config, seed);
    h.connect_ok();
    h.lose(LossKind::Reset);
    let mut out = Vec::new();
    for _ in 0..n {
        let (announced_at, delay) = h
            .log
            .iter()
            .rev()
            .find_map(|(t, o)| match o {
                Output::Event(Event::Reconnecting { delay, .. }) => Some((*t, *delay)),
                _ => None,
            })
            .unwrap();
        h.until_connect();
        assert_eq!(h.now, announced_at + delay, "connect exactly `delay` after");
        out.push(delay);
        h.connect_fail();
    }
    h.finish();
    (out, h.transcript())
}

#[test]
fn backoff_without_jitter_follows_the_policy_exactly() {
    let exp = legacy()
        .reconnect_tries(Tries::Unlimited)
        .backoff(Backoff::Exponential {
            initial: ms(100),
            multiplier: 2.0,
            max: ms(1000),
        })
        .build()
        .unwrap();
    assert_eq!(
        delays(exp, 1, 7).0,
        [100, 200, 400, 800, 1000, 1000, 1000].map(ms)
    );
    let lin = legacy()
        .backoff(Backoff::Linear {
            initial: ms(100),
            step: ms(50),
            max: ms(220),
        })
        .build()
        .unwrap();
    assert_eq!(delays(lin, 1, 5).0, [100, 150, 200, 220, 220].map(ms));
}

#[test]
fn jitter_stays_within_bounds_and_is_deterministic_per_seed() {
    let base = legacy()
        .reconnect_tries(Tries::Unlimited)
        .backoff(Backoff::Exponential {
            initial: ms(100),
            multiplier: 2.0,
            max: ms(2000),
        });
    for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
        let config = base.clone().jitter(jitter).build().unwrap();
        let mut distinct = std::collections::BTreeSet::new();
        for seed in 0..20 {
            // The checker (inside the harness) flags any delay outside
            // `reconnect_delay_bounds`; check it here too.
            let (ds, transcript) = delays(config.clone(), seed, 12);
            for (i, d) in ds.iter().enumerate() {
                let (lo, hi) = config.reconnect_delay_bounds(i as u32 + 1);
                assert!(lo <= *d && *d <= hi, "{jitter:?} attempt {}: {d:?}", i + 1);
            }
            // Same seed, same everything.
            assert_eq!(delays(config.clone(), seed, 12).1, transcript);
            distinct.insert(ds);
        }
        assert!(distinct.len() > 15, "{jitter:?}: seeds must matter");
    }
}

#[test]
fn equal_jitter_respects_the_lower_bound_at_odd_microseconds() {
    // Nominal 3 µs: equal jitter must stay in [1.5 µs, 3 µs]. The machine
    // works in whole microseconds, so only 2 or 3 µs are valid draws.
    let config = legacy()
        .reconnect_tries(Tries::Limited(50))
        .reconnect_interval(Duration::from_micros(3))
        .jitter(Jitter::Equal)
        .build()
        .unwrap();
    for seed in 0..10 {
        let (ds, _) = delays(config.clone(), seed, 50);
        for d in ds {
            assert!(
                d >= Duration::from_nanos(1500) && d <= Duration::from_micros(3),
                "{d:?}"
            );
        }
    }
}

// ----- initial connect ------------------------------------------------------------------

#[test]
fn initial_connect_fail_fast_gives_up_at_once() {
    let config = legacy()
        .initial_connect(InitialConnect::FailFast)
        .build()
        .unwrap();
    let mut h = H::new(config);
    let q = h.op(); // buffered while connecting
    assert!(h.is_open(q));
    h.connect_fail();
    assert_eq!(h.state(), State::Failed);
    assert_eq!(
        h.events(),
        [Event::ReconnectFailed {
            attempts: 0,
            error: Some(ConnectFailure::Refused)
        }]
    );
    let e = h.error(q);
    assert_eq!(e.kind(), ErrorKind::ReconnectFailed);
    assert_eq!(
        e.to_string(),
        "failed to connect: the initial connection attempt failed"
    );
    let later = h.op();
    assert_eq!(h.kind(later), ErrorKind::TopologyDestroyed);
    h.advance(Duration::from_secs(60));
    assert_eq!(h.connects().len(), 1);
    h.finish();
}

#[test]
fn initial_connect_retry_backs_off_and_then_says_connected() {
    let config = legacy()
        .initial_connect(InitialConnect::Retry)
        .reconnect_interval(ms(250))
        .endpoints(2)
        .build()
        .unwrap();
    let mut h = H::new(config);
    let q = h.op();
    h.connect_fail();
    assert_eq!(h.events(), [reconnecting_refused(1, ms(250), 1)]);
    let (_, ep) = h.until_connect();
    assert_eq!((h.now.as_millis(), ep), (250, 1));
    h.connect_fail();
    let (_, ep) = h.until_connect();
    assert_eq!((h.now.as_millis(), ep), (500, 0));
    let c = h.connect_ok();
    assert_eq!(
        h.events().last(),
        Some(&Event::Connected {
            conn: c,
            endpoint: 0
        }),
        "the first connection is `connected`, not `reconnected`"
    );
    assert_eq!(h.dispatches_of(q), 1);
    h.finish();
}

#[test]
fn initial_connect_timeout_counts_as_a_failed_attempt() {
    let config = legacy()
        .initial_connect(InitialConnect::Retry)
        .connect_timeout(Some(ms(100)))
        .reconnect_tries(Tries::Limited(1))
        .reconnect_interval(ms(10))
        .build()
        .unwrap();
    let mut h = H::new(config);
    let (c1, _) = h.pending.unwrap();
    h.advance(ms(100));
    assert!(h.last.contains(&Output::Close { conn: c1 }));
    h.until_connect();
    h.advance(ms(100));
    assert_eq!(h.state(), State::Failed);
    assert_eq!(
        h.events().last(),
        Some(&Event::ReconnectFailed {
            attempts: 1,
            error: Some(ConnectFailure::TimedOut)
        })
    );
    h.finish();
}

// ----- determinism -----------------------------------------------------------------------

fn scripted(seed: u64) -> String {
    let config = Config::recommended()
        .to_builder()
        .endpoints(3)
        .socket_timeout(Some(ms(700)))
        .build()
        .unwrap();
    let mut h = H::with_seed(config, seed);
    h.connect_fail();
    h.until_connect();
    h.connect_ok();
    let a = h.submit(OpOptions::new().retryable(true));
    let b = h.op();
    h.answer(b, OpResult::WrongServer);
    for _ in 0..3 {
        h.until_connect();
        h.connect_fail();
    }
    h.until_connect();
    h.connect_ok();
    h.answer(a, OpResult::Ok);
    h.advance(Duration::from_secs(20));
    h.finish();
    h.transcript()
}

#[test]
fn same_seed_and_inputs_give_the_same_outputs() {
    assert_eq!(scripted(42), scripted(42));
    assert_ne!(
        scripted(42),
        scripted(43),
        "full jitter depends on the seed"
    );
}

// ----- small contracts --------------------------------------------------------------------

#[test]
fn a_heartbeat_answer_after_its_timeout_is_stale() {
    let config = legacy()
        .heartbeat(Some(Heartbeat {
            interval: ms(100),
            timeout: ms(50),
        }))
        .build()
        .unwrap();
    let (mut h, c1) = H::connected(config);
    h.answer_heartbeats = false;
    h.advance(ms(150));
    assert!(h.events().contains(&Event::Unresponsive { conn: c1 }));
    // The answer finally arrives: too late, nothing is revived.
    h.m.handle_heartbeat_ok(h.now, c1);
    assert!(h.drain().is_empty());
    assert_eq!(h.m.connection(), None);
    assert_eq!(h.state(), State::Backoff);
    h.finish();
}

#[test]
fn time_that_goes_backwards_counts_as_the_latest_time_seen() {
    let (mut h, _) = H::connected(Config::mongodb_legacy());
    h.now = Instant::from_millis(500);
    h.m.handle_timeout(h.now);
    h.drain();
    // A clock that disagrees: an input stamped 400 ms earlier.
    h.now = Instant::from_millis(100);
    let q = h.submit(OpOptions::new().deadline(ms(100)));
    assert_eq!(h.m.now(), Instant::from_millis(500));
    h.advance_to(Instant::from_millis(599));
    assert!(h.is_open(q), "the deadline counts from 500 ms, not 100 ms");
    h.advance_to(Instant::from_millis(600));
    assert_eq!(h.kind(q), ErrorKind::DeadlineExceeded);
    h.finish();
}

#[test]
fn error_kind_names_are_the_stable_contract() {
    assert_eq!(
        ErrorKind::ALL.map(|k| k.name()),
        [
            "no_connection",
            "buffer_overflow",
            "buffer_timeout",
            "reconnect_failed",
            "topology_destroyed",
            "connection_lost",
            "deadline_exceeded",
            "retry_budget_exhausted",
            "closed",
            "server_error",
            "cancelled",
            "server_busy",
            "deadline_unreachable",
            "command_timeout",
            "reconnect_attempts_exceeded",
        ]
    );
}

#[test]
fn a_lone_non_primary_host_spends_the_reconnect_budget() {
    // Seed 000/001 with a single host that comes back as a secondary: every
    // connect succeeds, every op is answered "not primary". A connection to
    // the wrong server is a failed attempt, so the budget still runs out
    // (before the fix the counter reset on each connect and the op bounced
    // for ever).
    let config = legacy()
        .reconnect_tries(Tries::Limited(3))
        .reconnect_interval(ms(100))
        .build()
        .unwrap();
    let (mut h, _) = H::connected(config);
    let a = h.op();
    for _ in 0..3 {
        h.answer(a, OpResult::WrongServer);
        assert!(h.is_open(a), "not run: re-queued");
        h.until_connect();
        h.connect_ok();
    }
    h.answer(a, OpResult::WrongServer);
    assert_eq!(h.state(), State::Failed);
    let e = h.error(a);
    assert_eq!(e.kind(), ErrorKind::ReconnectFailed);
    assert!(!e.maybe_executed(), "every answer was wrong-server");
    assert_eq!(e.attempts(), 4);
    assert_eq!(
        h.event_names()
            .iter()
            .filter(|n| **n == "reconnect_failed")
            .count(),
        1
    );
    h.finish();
}

// ----- the driver's former decisions, now the core's (issue 10) ---------------

#[test]
fn a_rejected_connect_is_not_retried_and_says_why() {
    // Unlimited tries: a refused attempt is retried for ever, a rejected one
    // (a wrong password, an unknown database) is not.
    let config = Config::recommended();
    let mut h = H::new(config);
    let q = h.op();
    h.connect_fail_with(ConnectFailure::Refused);
    assert_eq!(h.state(), State::Backoff);
    h.until_connect();
    h.connect_fail_with(ConnectFailure::Rejected);
    assert_eq!(h.state(), State::Failed);
    assert_eq!(h.m.last_connect_error(), Some(ConnectFailure::Rejected));
    assert_eq!(
        h.events().last(),
        Some(&Event::ReconnectFailed {
            attempts: 1,
            error: Some(ConnectFailure::Rejected)
        })
    );
    let e = h.error(q);
    assert_eq!(e.kind(), ErrorKind::ReconnectFailed);
    assert_eq!(e.connect_error(), Some(ConnectFailure::Rejected));
    assert_eq!(
        e.to_string(),
        "failed to connect: the connection was rejected (not retried)"
    );
    assert!(!e.maybe_executed());
    h.advance(Duration::from_secs(60));
    assert_eq!(h.connects().len(), 2, "never retried");
    h.finish();
}

#[test]
fn every_kind_of_retried_connect_failure_is_announced_with_the_next_attempt() {
    for why in [
        ConnectFailure::Refused,
        ConnectFailure::TimedOut,
        ConnectFailure::Unavailable,
    ] {
        let config = legacy()
            .initial_connect(InitialConnect::Retry)
            .reconnect_interval(ms(10))
            .build()
            .unwrap();
        let mut h = H::new(config);
        h.connect_fail_with(why);
        assert_eq!(
            h.events(),
            [Event::Reconnecting {
                attempt: 1,
                delay: ms(10),
                endpoint: 0,
                error: Some(why)
            }]
        );
        h.until_connect();
        h.connect_ok();
        assert_eq!(h.m.last_connect_error(), None, "a success clears it");
        h.finish();
    }
}

#[test]
fn a_connection_reported_lost_is_closed_by_the_core() {
    // The driver frees a connection only when the core says so: a Close
    // follows every loss, also one the driver reported itself.
    let (mut h, c1) = H::connected(legacy().build().unwrap());
    h.lose(LossKind::Reset);
    assert!(h.last.contains(&Output::Close { conn: c1 }));
    let (c2, _) = h.until_connect();
    h.connect_fail();
    assert!(h.last.contains(&Output::Close { conn: c2 }));
    h.finish();
}

#[test]
fn a_long_op_survives_the_heartbeat() {
    // recommended(): heartbeat every 5 s (3 s timeout), response timeout
    // 15 s. A healthy 10 s transaction is not killed by a ping queued behind
    // it: no ping is sent while it is in flight.
    let (mut h, c1) = H::connected(Config::recommended());
    let q = h.op();
    h.advance(ms(10_000));
    assert!(h.m.connection().is_some(), "a busy connection is not dead");
    assert!(
        !h.log
            .iter()
            .any(|(_, o)| matches!(o, Output::Heartbeat { .. })),
        "no ping while the op is in flight"
    );
    h.answer(q, OpResult::Ok);
    assert!(h.outcome(q).is_some_and(|r| r.is_ok()));
    // Idle again: the overdue ping goes out on the next timer step.
    h.advance(ms(1));
    assert!(h.last.contains(&Output::Heartbeat { conn: c1 }));
    h.finish();
}

#[test]
fn a_silent_loss_with_an_op_in_flight_is_detected_by_the_response_timeout() {
    let (mut h, c1) = H::connected(Config::recommended());
    h.answer_heartbeats = false;
    let q = h.op();
    h.advance(ms(14_999));
    assert!(h.m.connection().is_some(), "not yet");
    h.advance(ms(1));
    assert!(h.m.connection().is_none());
    assert!(h.events().contains(&Event::Unresponsive { conn: c1 }));
    assert_eq!(h.kind(q), ErrorKind::ConnectionLost);
    h.finish();
}

#[test]
fn the_core_reads_a_failed_heartbeat() {
    let config = legacy()
        .heartbeat(Some(Heartbeat {
            interval: ms(100),
            timeout: ms(50),
        }))
        .build()
        .unwrap();
    let (mut h, c1) = H::connected(config.clone());
    h.answer_heartbeats = false;
    h.advance(ms(100));
    assert!(h.last.contains(&Output::Heartbeat { conn: c1 }));
    // The server answered with an error: the connection is alive.
    h.m.handle_heartbeat(h.now, c1, OpResult::ServerError);
    h.drain();
    h.advance(ms(60));
    assert!(h.m.connection().is_some());
    // The next ping finds the connection broken.
    h.advance(ms(40));
    h.m.handle_heartbeat(h.now, c1, OpResult::ConnectionLost);
    h.drain();
    assert!(h.m.connection().is_none());
    assert!(h.last.contains(&Output::Close { conn: c1 }));
    assert!(h.events().contains(&Event::Disconnected {
        conn: c1,
        endpoint: 0,
        reason: DisconnectReason::Lost(LossKind::Reset)
    }));
    h.finish();
}

// ----- nothing hangs (issue 14) ------------------------------------------------

#[test]
fn time_at_the_end_of_the_clock_never_hangs() {
    // Unlimited tries, refused connects, a clock that reaches Instant::MAX:
    // every timer saturates there. It used to refire for ever inside one
    // handle_timeout call (growing its output queue).
    let config = Config::recommended()
        .to_builder()
        .op_deadline(Some(Duration::from_secs(1)))
        .build()
        .unwrap();
    let start = Instant::from_micros(u64::MAX - 10_000_000);
    let mut m: Machine<u32> = Machine::new(config, 1, start);
    let mut now = start;
    let mut outputs = 0usize;
    m.submit(now, 1, OpOptions::new());
    // Refusals are probed every 50-100 ms (quick reconnects): enough
    // rounds to reach the end of the clock.
    for _ in 0..400 {
        while let Some(out) = m.poll_output() {
            outputs += 1;
            if let Output::Connect { conn, .. } = out {
                m.handle_connect_failed(now, conn, ConnectFailure::Refused);
            }
        }
        now = m.poll_timeout().map_or(Instant::MAX, |(t, _)| t);
        m.handle_timeout(now);
    }
    while m.poll_output().is_some() {
        outputs += 1;
    }
    assert_eq!(m.now(), Instant::MAX);
    assert_eq!(
        m.poll_timeout(),
        None,
        "nothing is due at the end of the clock"
    );
    m.handle_timeout(Instant::MAX);
    assert!(m.poll_output().is_none());
    assert!(outputs < 1000, "{outputs} outputs");
}

// ----- failover that loses nothing: draining, roles, pushback, give-up -----

/// The ops dispatched on `conn`, in order.
fn sent_on(h: &H, conn: ConnId) -> Vec<OpId> {
    h.dispatches()
        .into_iter()
        .filter(|(_, c, _)| *c == conn)
        .map(|(op, _, _)| op)
        .collect()
}

#[test]
fn draining_keeps_answers_in_flight_and_leaves_once_nothing_is_out() {
    let config = legacy().endpoints(2).build().unwrap();
    let (mut h, c1) = H::connected(config);
    let (a, b, c) = (h.op(), h.op(), h.op());
    h.answer(b, OpResult::WrongServer); // b refused: db.0 was demoted
    assert_eq!(h.state(), State::Draining);
    h.answer(a, OpResult::Ok); // a had already run: its answer counts
    assert!(h.outcome(a).unwrap().is_ok());
    assert_eq!(h.state(), State::Draining, "c is still out");
    h.cancel(c); // the last op out leaves another way: the drain ends
    assert!(h.last.contains(&Output::Close { conn: c1 }));
    assert!(h.is_open(b));
    let e = h.error(c);
    assert!(e.maybe_executed(), "c was sent and never answered");
    let (_, ep) = h.until_connect();
    assert_eq!(ep, 1);
    let c2 = h.connect_ok();
    assert_eq!(sent_on(&h, c2), [b]);
    h.answer(b, OpResult::Ok);
    h.finish();
}

#[test]
fn a_secondary_is_refused_before_anything_is_sent_or_announced() {
    let config = legacy()
        .endpoints(2)
        .reconnect_interval(ms(10))
        .initial_connect(InitialConnect::Retry)
        .require_primary(true)
        .build()
        .unwrap();
    let mut h = H::new(config);
    let q = h.op(); // buffered while connecting
    let (c1, ep) = h.pending.expect("first attempt");
    assert_eq!(ep, 0);
    h.pending = None;
    h.m.handle_connected_as(h.now, c1, Role::Secondary);
    h.drain();
    assert!(h.last.contains(&Output::Close { conn: c1 }));
    assert!(h.last.contains(&Output::Event(Event::Reconnecting {
        attempt: 1,
        delay: ms(10),
        endpoint: 1,
        error: Some(ConnectFailure::NotPrimary),
    })));
    assert!(!h.event_names().contains(&"connected"));
    assert_eq!(h.dispatches_of(q), 0);
    let (c2, ep) = h.until_connect();
    assert_eq!(ep, 1);
    h.pending = None;
    h.m.handle_connected_as(h.now, c2, Role::Primary);
    h.drain();
    assert_eq!(h.event_names().last(), Some(&"connected"));
    assert_eq!(sent_on(&h, c2), [q]);
    h.answer(q, OpResult::Ok);
    h.finish();
}

#[test]
fn without_the_role_check_a_reported_secondary_is_used() {
    let config = legacy().require_primary(false).build().unwrap();
    let mut h = H::new(config);
    let (c1, _) = h.pending.take().unwrap();
    h.m.handle_connected_as(h.now, c1, Role::Secondary);
    h.drain();
    assert_eq!(h.state(), State::Connected);
    assert_eq!(h.event_names().last(), Some(&"connected"));
    h.finish();
}

#[test]
fn pushback_requeues_holds_and_probes_one_op_at_a_time() {
    let config = legacy().reconnect_interval(ms(100)).build().unwrap();
    let (mut h, c1) = H::connected(config);
    let (a, b, c) = (h.op(), h.op(), h.op());
    h.answer(
        a,
        OpResult::Pushback {
            retry_after: Some(ms(300)),
        },
    );
    assert_eq!(h.state(), State::Paused);
    assert!(h.is_open(a));
    h.answer(b, OpResult::Ok); // already running: its answer counts
    let d = h.op(); // held: the server said "not now"
    assert_eq!(h.dispatches_of(d), 0);
    h.answer(c, OpResult::Pushback { retry_after: None });
    assert_eq!(sent_on(&h, c1).len(), 3);
    h.advance(ms(299));
    assert_eq!(sent_on(&h, c1).len(), 3, "nothing before the hint");
    h.advance(ms(1));
    assert_eq!(sent_on(&h, c1)[3..], [a], "one probe: the oldest");
    h.answer(a, OpResult::Ok);
    assert_eq!(h.state(), State::Connected);
    assert_eq!(
        sent_on(&h, c1)[4..],
        [c, d],
        "the rest, in submission order"
    );
    h.answer(c, OpResult::Ok);
    h.answer(d, OpResult::Ok);
    let done = h.outcome(a).unwrap().unwrap();
    assert_eq!(done.attempts, 2);
    h.finish();
}

#[test]
fn pushback_without_budget_fails_the_op_as_not_run() {
    let config = legacy()
        .reconnect_interval(ms(100))
        .retry_budget(Some(RetryBudget {
            max_tokens: 4,
            token_ratio: 0.1,
        }))
        .build()
        .unwrap();
    let (mut h, _) = H::connected(config);
    let a = h.op();
    // The first refusal is of a first send: not a retry, not charged.
    h.answer(a, OpResult::Pushback { retry_after: None });
    h.advance(ms(100)); // the probe
    assert_eq!(h.dispatches_of(a), 2);
    // Refusing the re-send is refusing a retry: 4 → 3 tokens, allowed.
    h.answer(a, OpResult::Pushback { retry_after: None });
    assert!(h.is_open(a));
    h.advance(ms(100)); // the next probe
    assert_eq!(h.dispatches_of(a), 3);
    // 3 → 2 tokens, not above half: the op fails now, on the refusal.
    h.answer(a, OpResult::Pushback { retry_after: None });
    let e = h.error(a);
    assert_eq!(e.kind(), ErrorKind::ServerBusy);
    assert!(!e.maybe_executed(), "refused every time: it did not run");
    assert!(e.to_string().contains("did not run"), "{e}");
    h.finish();
}

#[test]
fn terminal_give_up_says_why_and_revive_starts_over() {
    let config = legacy()
        .reconnect_tries(Tries::Limited(2))
        .reconnect_interval(ms(100))
        .build()
        .unwrap();
    let (mut h, _) = H::connected(config);
    h.advance(ms(50));
    h.lose(LossKind::Reset);
    for _ in 0..2 {
        h.until_connect();
        h.connect_fail_with(ConnectFailure::TimedOut);
    }
    assert_eq!(h.state(), State::Failed);
    let why = h.m.gave_up().expect("gave up");
    assert_eq!(
        (why.attempts, why.since_loss, why.error),
        (2, ms(200), Some(ConnectFailure::TimedOut))
    );
    let late = h.op();
    assert_eq!(h.kind(late), ErrorKind::TopologyDestroyed);
    h.m.revive(h.now);
    h.drain();
    assert!(h.m.gave_up().is_none());
    assert_eq!(h.state(), State::Connecting);
    let c = h.connect_ok();
    assert_eq!(h.event_names().last(), Some(&"reconnected"));
    let q = h.op();
    assert_eq!(sent_on(&h, c), [q]);
    h.answer(q, OpResult::Ok);
    h.finish();
}

#[test]
fn cool_down_give_up_resumes_with_a_fresh_budget_after_the_pause() {
    let config = legacy()
        .reconnect_tries(Tries::Limited(1))
        .reconnect_interval(ms(100))
        .give_up(redial_core::GiveUp::CoolDown(Duration::from_secs(10)))
        .build()
        .unwrap();
    let (mut h, _) = H::connected(config);
    h.lose(LossKind::Closed);
    let buffered = h.op();
    h.until_connect();
    h.connect_fail();
    // reconnect_failed, the buffered op fails with it, then the pause.
    assert_eq!(h.kind(buffered), ErrorKind::ReconnectFailed);
    assert!(h.last.contains(&Output::Event(Event::Reconnecting {
        attempt: 1,
        delay: Duration::from_secs(10),
        endpoint: 0,
        error: Some(ConnectFailure::Refused),
    })));
    assert_eq!(h.state(), State::Backoff);
    assert!(h.m.gave_up().is_some());
    let waiting = h.op(); // buffered, not "topology destroyed"
    assert!(h.is_open(waiting));
    let t0 = h.now;
    h.until_connect();
    assert_eq!(h.now, t0 + Duration::from_secs(10));
    let c = h.connect_ok();
    assert!(h.m.gave_up().is_none());
    assert_eq!(sent_on(&h, c), [waiting]);
    h.answer(waiting, OpResult::Ok);
    h.finish();
}

#[test]
fn a_zero_cool_down_is_refused() {
    let e = legacy()
        .give_up(redial_core::GiveUp::CoolDown(Duration::ZERO))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "give_up");
}

#[test]
fn a_long_pushback_never_stalls_the_connection_for_good() {
    // The budget allows only a few retries; the server pushes back for
    // much longer. Refused ops run out of budget and fail `server_busy`,
    // but fresh ops still go out as probes, so the connection takes work
    // again as soon as the server does.
    let config = legacy()
        .reconnect_interval(ms(100))
        .retry_budget(Some(RetryBudget {
            max_tokens: 4,
            token_ratio: 0.1,
        }))
        .build()
        .unwrap();
    let (mut h, c1) = H::connected(config);
    let mut busy = Vec::new();
    for _ in 0..30 {
        let op = h.op();
        busy.push(op);
        // Whatever is out now (the probe) is pushed back.
        let out: Vec<OpId> = h
            .dispatches()
            .into_iter()
            .map(|(op, _, _)| op)
            .filter(|op| h.is_open(*op) && h.m.payload(*op).is_some())
            .collect();
        for op in out {
            if h.m.state() != State::Closed {
                h.answer(op, OpResult::Pushback { retry_after: None });
            }
        }
        h.advance(ms(100));
    }
    assert!(
        busy.iter()
            .any(|op| !h.is_open(*op) && h.kind(*op) == ErrorKind::ServerBusy)
    );
    // The server is back: the probe out now is answered, the rest flow.
    let probe = h
        .dispatches()
        .into_iter()
        .rev()
        .map(|(op, _, _)| op)
        .find(|op| h.is_open(*op))
        .expect("a probe is out");
    h.answer(probe, OpResult::Ok);
    assert_eq!(h.state(), State::Connected);
    let later = h.op();
    assert_eq!(sent_on(&h, c1).last(), Some(&later));
    h.answer(later, OpResult::Ok);
    let left: Vec<OpId> = busy.iter().copied().filter(|op| h.is_open(*op)).collect();
    for op in left {
        h.answer(op, OpResult::Ok);
    }
    h.finish();
}

#[test]
fn a_drain_ended_by_a_timer_starts_an_undelayed_reconnect_in_the_same_step() {
    // Found by the CI's fuzz run: the last op in flight on a draining
    // wrong server passes its deadline in a timer step; the drain ends and
    // a reconnect with no delay is due at once — the same `handle_timeout`
    // must start it (nothing due may be left behind).
    let config = legacy()
        .endpoints(2)
        .reconnect_interval(ms(0))
        .build()
        .unwrap();
    let (mut h, c1) = H::connected(config);
    let a = h.submit(OpOptions::new().deadline(ms(100)));
    let b = h.op();
    h.answer(b, OpResult::WrongServer);
    assert_eq!(h.state(), State::Draining);
    h.now = Instant::ZERO + ms(100);
    h.m.handle_timeout(h.now);
    h.drain();
    assert_eq!(h.kind(a), ErrorKind::DeadlineExceeded);
    assert!(h.last.contains(&Output::Close { conn: c1 }));
    assert!(
        h.last
            .iter()
            .any(|o| matches!(o, Output::Connect { endpoint: 1, .. })),
        "{:?}",
        h.last
    );
    h.connect_ok();
    h.answer(b, OpResult::Ok);
    h.finish();
}

// ----- quick reconnects (recommended) ----------------------------------------

/// The delays of every `reconnecting` event so far, with their errors.
fn announced(h: &H) -> Vec<(Duration, Option<ConnectFailure>)> {
    h.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Reconnecting { delay, error, .. } => Some((delay, error)),
            _ => None,
        })
        .collect()
}

#[test]
fn quick_reconnect_retries_a_lost_connection_at_once_then_probes_refusals() {
    let (mut h, _) = H::connected(Config::recommended());
    h.advance(Duration::from_secs(2));
    h.lose(LossKind::Reset);
    // The first attempt after a loss of a connection up 2 s: no wait.
    assert_eq!(announced(&h), vec![(Duration::ZERO, None)]);
    h.until_connect();
    // Refused (the server is restarting): probed every 50-100 ms.
    for _ in 0..20 {
        h.connect_fail();
        h.until_connect();
    }
    let d = announced(&h);
    assert_eq!(d.len(), 21);
    for (delay, error) in &d[1..] {
        assert_eq!(*error, Some(ConnectFailure::Refused));
        assert!(
            *delay >= ms(50) && *delay <= ms(100),
            "probe delay {delay:?}"
        );
    }
    // The server is back: connected within one probe.
    h.connect_ok();
    assert_eq!(h.state(), State::Connected);
}

#[test]
fn quick_reconnect_paces_everything_else_by_the_backoff() {
    // Timeouts, a loaded server and refusals past `probe_for` wait the
    // backoff (100 ms x2 <= 5 s, full jitter), counted over those attempts.
    let (mut h, _) = H::connected(Config::recommended());
    h.advance(Duration::from_secs(2));
    h.lose(LossKind::Reset);
    h.until_connect();
    h.connect_fail_with(ConnectFailure::TimedOut);
    h.until_connect();
    h.connect_fail_with(ConnectFailure::Unavailable);
    h.until_connect();
    h.connect_fail_with(ConnectFailure::Unavailable);
    let d = announced(&h);
    assert_eq!(d[0].0, Duration::ZERO);
    assert!(d[1].0 <= ms(100), "backoff attempt 1: {:?}", d[1]);
    assert!(d[2].0 <= ms(200), "backoff attempt 2: {:?}", d[2]);
    assert!(d[3].0 <= ms(400), "backoff attempt 3: {:?}", d[3]);
    // Refusals go on for 30 s at the probe's pace, then the backoff's.
    let lost_at = h.now;
    let mut n = 0;
    while h.now.saturating_duration_since(lost_at) < Duration::from_secs(40) {
        h.until_connect();
        h.connect_fail();
        n += 1;
    }
    let after: Vec<_> = announced(&h)
        .into_iter()
        .skip(4)
        .filter(|(d, _)| *d > ms(100))
        .collect();
    assert!(
        !after.is_empty(),
        "the backoff took over after 30 s ({n} attempts)"
    );
}

#[test]
fn quick_reconnect_does_not_spin_on_a_server_that_drops_new_connections() {
    // A connection that dies within QuickReconnect::MIN_UPTIME is paced
    // like a failed attempt: no reconnect loop at zero delay.
    let (mut h, _) = H::connected(Config::recommended());
    for _ in 0..10 {
        h.advance(ms(10));
        h.lose(LossKind::Closed);
        h.until_connect();
        h.connect_ok();
    }
    let d = announced(&h);
    assert_eq!(d.len(), 10);
    assert!(
        d.iter().all(|(delay, _)| *delay > Duration::ZERO),
        "young connections wait: {d:?}"
    );
}

#[test]
fn legacy_presets_have_no_quick_reconnect() {
    for c in [
        Config::mongodb_legacy(),
        Config::mongoose(),
        Config::fail_fast(),
    ] {
        assert_eq!(c.quick_reconnect(), None);
    }
    let (mut h, _) = H::connected(Config::mongodb_legacy());
    h.advance(Duration::from_secs(5));
    h.lose(LossKind::Reset);
    assert_eq!(announced(&h), vec![(Duration::from_secs(1), None)]);
}

#[test]
fn quick_reconnect_durations_must_be_positive() {
    for (q, field) in [
        (
            redial_core::QuickReconnect {
                probe: Duration::ZERO,
                probe_for: Duration::from_secs(1),
            },
            "quick_reconnect_probe",
        ),
        (
            redial_core::QuickReconnect {
                probe: ms(1),
                probe_for: Duration::ZERO,
            },
            "quick_reconnect_probe_for",
        ),
    ] {
        let e = Config::builder()
            .quick_reconnect(Some(q))
            .build()
            .unwrap_err();
        assert_eq!(e.field(), field);
    }
}

// ----- seed 003's "Confusion": command timeouts and unreachable deadlines ---

#[test]
fn command_timeout_fails_the_op_and_keeps_the_connection() {
    let config = Config::recommended()
        .to_builder()
        .command_timeout(Some(ms(200)))
        .build()
        .unwrap();
    let (mut h, c1) = H::connected(config);
    let slow = h.op();
    let patient = h.submit(OpOptions::new().command_timeout(Duration::from_secs(2)));
    h.advance(ms(199));
    assert!(h.is_open(slow));
    h.advance(ms(1));
    let e = h.error(slow);
    assert_eq!(e.kind(), ErrorKind::CommandTimeout);
    assert!(e.maybe_executed(), "it was sent: it may have run");
    assert_eq!(e.attempts(), 1);
    // The connection stays: no loss, the next op goes out on it.
    assert_eq!(h.state(), State::Connected);
    assert!(!h.event_names().contains(&"disconnected"));
    let next = h.op();
    assert_eq!(h.dispatches().last().map(|d| d.1), Some(c1));
    h.answer(next, OpResult::Ok);
    assert!(h.outcome(next).unwrap().is_ok());
    // The late answer of the timed-out op is ignored.
    h.m.handle_op_result(h.now, slow, c1, OpResult::Ok);
    assert!(h.drain().is_empty());
    // The per-op timeout (2 s) outlives the config's.
    assert!(h.is_open(patient));
    h.answer(patient, OpResult::Ok);
    assert!(h.outcome(patient).unwrap().is_ok());
    h.finish();
}

#[test]
fn response_timeout_still_declares_the_connection_dead() {
    // A command timeout longer than the response timeout changes nothing:
    // the connection is declared unresponsive first.
    let config = Config::recommended()
        .to_builder()
        .response_timeout(Some(ms(500)))
        .command_timeout(Some(Duration::from_secs(1)))
        .build()
        .unwrap();
    let (mut h, _) = H::connected(config);
    let q = h.op();
    h.advance(ms(500));
    assert_eq!(h.kind(q), ErrorKind::ConnectionLost);
    assert!(h.event_names().contains(&"unresponsive"));
    h.finish();
}

#[test]
fn a_deadline_before_the_end_of_a_pushback_wait_fails_at_once() {
    let (mut h, _) = H::connected(Config::recommended());
    let first = h.op();
    h.answer(
        first,
        OpResult::Pushback {
            retry_after: Some(Duration::from_secs(2)),
        },
    );
    assert_eq!(h.state(), State::Paused);
    let hurried = h.submit(OpOptions::new().deadline(ms(500)));
    assert_eq!(h.kind(hurried), ErrorKind::DeadlineUnreachable);
    let calm = h.submit(OpOptions::new().deadline(Duration::from_secs(5)));
    assert!(h.is_open(calm));
    h.finish();
}
