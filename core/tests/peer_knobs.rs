//! The knobs peer drivers need: blind resend of ops lost in flight
//! (`retry_lost`) and failing the buffer after K failed reconnect attempts
//! (`fail_buffered_after`, ioredis's `maxRetriesPerRequest`).

mod harness;

use harness::{H, ms};
use redial_core::{Config, ErrorKind, LossKind, OpOptions, OpResult, Tries};

fn legacy() -> redial_core::ConfigBuilder {
    Config::mongodb_legacy().to_builder()
}

#[test]
fn retry_lost_resends_unmarked_ops_and_says_they_may_have_run() {
    let config = legacy()
        .reconnect_interval(ms(10))
        .retry_lost(true)
        .max_op_attempts(2)
        .build()
        .unwrap();
    let (mut h, _) = H::connected(config);
    let plain = h.op();
    let opted_out = h.submit(OpOptions::new().retryable(false));
    h.lose(LossKind::Reset);
    // The op the caller did not mark is kept and sent again…
    assert!(h.is_open(plain));
    // …the one that said no is failed as before.
    assert_eq!(h.kind(opted_out), ErrorKind::ConnectionLost);
    h.until_connect();
    h.connect_ok();
    assert_eq!(h.dispatches_of(plain), 2);
    // Its second loss spends its attempts (max_op_attempts = 2).
    h.lose(LossKind::Reset);
    let e = h.error(plain);
    assert_eq!(e.kind(), ErrorKind::ConnectionLost);
    assert!(e.maybe_executed());
    assert_eq!((e.attempts(), e.runs()), (2, 2), "may have run twice");
    h.finish();
}

#[test]
fn retry_lost_off_keeps_unmarked_ops_single_shot() {
    let config = legacy()
        .reconnect_interval(ms(10))
        .max_op_attempts(3)
        .build()
        .unwrap();
    assert!(!config.retry_lost());
    let (mut h, _) = H::connected(config);
    let plain = h.op();
    let marked = h.submit(OpOptions::new().retryable(true));
    h.lose(LossKind::Reset);
    assert_eq!(h.kind(plain), ErrorKind::ConnectionLost);
    assert!(h.is_open(marked));
    h.until_connect();
    h.connect_ok();
    h.answer(marked, OpResult::Ok);
    assert_eq!(h.outcome(marked).unwrap().unwrap().attempts, 2);
    h.finish();
}

#[test]
fn is_retryable_resolves_against_the_config() {
    let on = legacy().retry_lost(true).build().unwrap();
    let off = legacy().build().unwrap();
    assert!(OpOptions::new().is_retryable(&on));
    assert!(!OpOptions::new().is_retryable(&off));
    assert!(!OpOptions::new().retryable(false).is_retryable(&on));
    assert!(OpOptions::new().retryable(true).is_retryable(&off));
}

/// ioredis 5 (`lib/redis/event_handler.ts`, close handler): after the
/// loss and each failed attempt, `retryAttempts` counts one more close;
/// when it is a multiple of `maxRetriesPerRequest + 1` the queues are
/// flushed with `MaxRetriesPerRequestError`. With k = 2: the loss is close
/// 1, failed attempts 1 and 2 are closes 2 and 3: the buffer fails when
/// the third reconnect is scheduled, i.e. after 2 failed attempts.
#[test]
fn fail_buffered_after_fails_the_buffer_after_k_failed_attempts_and_goes_on() {
    let config = legacy()
        .reconnect_interval(ms(10))
        .reconnect_tries(Tries::Unlimited)
        .fail_buffered_after(Some(2))
        .build()
        .unwrap();
    let (mut h, _) = H::connected(config);
    h.lose(LossKind::Closed); // close 1: reconnect 1 scheduled
    let early = h.op();
    h.until_connect();
    h.connect_fail(); // close 2: reconnect 2 scheduled
    assert!(h.is_open(early));
    let late = h.op();
    h.until_connect();
    h.connect_fail(); // close 3: 3 % 3 == 0, flushed
    for op in [early, late] {
        let e = h.error(op);
        assert_eq!(e.kind(), ErrorKind::ReconnectAttemptsExceeded);
        assert!(!e.maybe_executed());
        assert_eq!(
            e.to_string(),
            "operation failed while waiting for a connection: reconnect attempt 3 reached the per-op limit (reconnecting goes on)"
        );
    }
    // Reconnecting goes on; a new op is buffered and served.
    let next = h.op();
    for _ in 0..2 {
        h.until_connect();
        h.connect_fail(); // closes 4 and 5
    }
    assert!(h.is_open(next));
    h.until_connect();
    h.connect_fail(); // close 6: flushed again
    assert_eq!(h.kind(next), ErrorKind::ReconnectAttemptsExceeded);
    let served = h.op();
    h.until_connect();
    h.connect_ok();
    h.answer(served, OpResult::Ok);
    assert!(h.outcome(served).unwrap().is_ok());
    h.finish();
}

#[test]
fn fail_buffered_after_zero_fails_the_buffer_at_the_loss_and_at_every_failure() {
    let config = legacy()
        .reconnect_interval(ms(10))
        .retry_lost(true)
        .max_op_attempts(3)
        .fail_buffered_after(Some(0))
        .build()
        .unwrap();
    let (mut h, _) = H::connected(config);
    let in_flight = h.op();
    h.lose(LossKind::Reset);
    // Re-queued by retry_lost, then failed by the flush at the loss: it
    // may have run.
    let e = h.error(in_flight);
    assert_eq!(e.kind(), ErrorKind::ReconnectAttemptsExceeded);
    assert!(e.maybe_executed());
    let waiting = h.op();
    assert!(h.is_open(waiting));
    h.until_connect();
    h.connect_fail();
    assert_eq!(h.kind(waiting), ErrorKind::ReconnectAttemptsExceeded);
    h.finish();
}

#[test]
fn fail_buffered_after_resets_with_each_connection() {
    let config = legacy()
        .reconnect_interval(ms(10))
        .fail_buffered_after(Some(1))
        .build()
        .unwrap();
    let (mut h, _) = H::connected(config);
    h.lose(LossKind::Closed); // close 1
    h.until_connect();
    h.connect_ok(); // count starts again
    h.lose(LossKind::Closed); // close 1 again, not 2
    let op = h.op();
    assert!(h.is_open(op));
    h.until_connect();
    h.connect_fail(); // close 2: flushed
    assert_eq!(h.kind(op), ErrorKind::ReconnectAttemptsExceeded);
    h.finish();
}

#[test]
fn fail_buffered_after_is_a_config_key() {
    use redial_core::{ConfigKeys, ConfigValue};
    let mut k = ConfigKeys::new();
    k.set("fail_buffered_after", &ConfigValue::Int(20)).unwrap();
    k.set("retry_lost", &ConfigValue::Bool(true)).unwrap();
    let c = k.build(None, 1).unwrap();
    assert_eq!(c.fail_buffered_after(), Some(20));
    assert!(c.retry_lost());
    let mut k = ConfigKeys::new();
    k.set("fail_buffered_after", &ConfigValue::Text("never".into()))
        .unwrap();
    assert_eq!(k.build(None, 1).unwrap().fail_buffered_after(), None);
    let e = k
        .set("fail_buffered_after", &ConfigValue::Text("soon".into()))
        .unwrap_err();
    assert_eq!(e.key, "fail_buffered_after");
    let e = k
        .set("fail_buffered_after", &ConfigValue::Int(-1))
        .unwrap_err();
    assert_eq!(e.key, "fail_buffered_after");
    // Round trip through the keys of a config.
    let c = legacy()
        .fail_buffered_after(Some(7))
        .retry_lost(true)
        .build()
        .unwrap();
    assert_eq!(ConfigKeys::from_config(&c).build(None, 1).unwrap(), c);
}

// ----- the peer presets, each on the behaviour its docs promise ------------

use redial_core::{Duration, Instant, Output, Preset, State};

fn completed_at(h: &H, op: redial_core::OpId) -> Instant {
    h.log
        .iter()
        .find_map(|(t, o)| match o {
            Output::Complete(c) if c.id == op => Some(*t),
            _ => None,
        })
        .expect("the op completed")
}

#[test]
fn ioredis_v5_resends_lost_ops_and_flushes_the_queue_after_20_failed_attempts() {
    let (mut h, _) = H::connected(Config::from(Preset::IoredisV5));
    let in_flight = h.op();
    let lost_at = h.now;
    h.lose(LossKind::Reset);
    let queued = h.op();
    for _ in 0..19 {
        h.until_connect();
        h.connect_fail();
    }
    assert!(h.is_open(in_flight) && h.is_open(queued));
    h.until_connect();
    h.connect_fail(); // the 20th failed attempt: close 21
    // retryStrategy min(50·n, 2000): 50 + 100 + … + 1000 ms = 10.5 s.
    for op in [in_flight, queued] {
        assert_eq!(h.kind(op), ErrorKind::ReconnectAttemptsExceeded);
        assert_eq!(completed_at(&h, op) - lost_at, ms(10_500));
    }
    assert!(h.error(in_flight).maybe_executed());
    assert!(!h.error(queued).maybe_executed());
    assert_eq!(h.state(), State::Backoff, "reconnecting goes on");
    h.finish();
}

#[test]
fn ioredis_v5_resends_an_op_lost_in_flight_after_the_reconnect() {
    let (mut h, _) = H::connected(Config::from(Preset::IoredisV5));
    let op = h.op();
    h.lose(LossKind::Reset);
    h.until_connect();
    h.connect_ok();
    assert_eq!(h.dispatches_of(op), 2, "sent again: it may run twice");
    h.answer(op, OpResult::Ok);
    let done = h.outcome(op).unwrap().unwrap();
    assert_eq!((done.attempts, done.runs), (2, 2));
    h.finish();
}

#[test]
fn ioredis_v6_delays_are_exponential_plus_up_to_200_ms() {
    let config = Config::from(Preset::IoredisV6);
    for n in 1..=10u32 {
        let (lo, hi) = config.reconnect_delay_bounds(n);
        let nominal = ms((50u64 << (n - 1)).min(5000));
        assert_eq!(lo, nominal, "attempt {n}");
        assert_eq!(hi, nominal + ms(200) - Duration::from_micros(1));
    }
}

#[test]
fn fred_default_never_reconnects_and_later_ops_wait_for_ever() {
    let (mut h, _) = H::connected(Config::from(Preset::FredDefault));
    let in_flight = h.op();
    h.lose(LossKind::Closed);
    assert_eq!(h.kind(in_flight), ErrorKind::ConnectionLost);
    let later = h.op();
    h.advance(Duration::from_secs(86_400));
    assert!(h.is_open(later), "no reconnect, no timeout: it hangs");
    assert_eq!(h.state(), State::Down);
    h.finish();
}

#[test]
fn fred_reconnect_policy_writes_a_lost_op_at_most_3_times() {
    let (mut h, _) = H::connected(Config::from(Preset::FredReconnectPolicy));
    let op = h.op();
    for write in 1..=3 {
        assert_eq!(h.dispatches_of(op), write);
        h.lose(LossKind::Reset);
        if write < 3 {
            h.until_connect();
            h.connect_ok();
        }
    }
    let e = h.error(op);
    assert_eq!(e.kind(), ErrorKind::ConnectionLost);
    assert_eq!(e.attempts(), 3);
    h.finish();
}

#[test]
fn redis_rs_connection_manager_times_out_a_silent_op_and_keeps_the_connection() {
    let (mut h, c) = H::connected(Config::from(Preset::RedisRsConnectionManager));
    let op = h.op();
    let sent = h.now;
    h.advance(ms(500));
    assert_eq!(h.kind(op), ErrorKind::CommandTimeout);
    assert_eq!(completed_at(&h, op) - sent, ms(500));
    assert_eq!(h.state(), State::Connected);
    let next = h.op();
    assert_eq!(h.dispatches().last().map(|d| (d.0, d.1)), Some((next, c)));
    h.finish();
}

#[test]
fn redis_rs_connection_manager_fails_waiters_after_a_round_then_starts_another() {
    let (mut h, _) = H::connected(Config::from(Preset::RedisRsConnectionManager));
    let in_flight = h.op();
    h.lose(LossKind::Reset);
    assert_eq!(h.kind(in_flight), ErrorKind::ConnectionLost, "not retried");
    let waiting = h.op();
    for _ in 0..6 {
        h.until_connect();
        h.connect_fail();
    }
    assert_eq!(h.kind(waiting), ErrorKind::ReconnectFailed);
    // A new round right away: the next op is served.
    let next = h.op();
    h.until_connect();
    h.connect_ok();
    h.answer(next, OpResult::Ok);
    assert!(h.outcome(next).unwrap().is_ok());
    h.finish();
}

#[test]
fn lettuce_fails_an_op_60_s_after_submission_and_fails_the_first_connect_fast() {
    let (mut h, _) = H::connected(Config::from(Preset::Lettuce));
    let op = h.op();
    let submitted = h.now;
    h.lose(LossKind::Reset);
    while h.is_open(op) {
        h.until_connect();
        h.connect_fail();
    }
    assert_eq!(h.kind(op), ErrorKind::DeadlineExceeded);
    assert!(h.error(op).maybe_executed());
    assert_eq!(completed_at(&h, op) - submitted, Duration::from_secs(60));
    h.finish();

    let mut h = H::new(Config::from(Preset::Lettuce));
    h.connect_fail();
    assert_eq!(h.state(), State::Failed);
    h.finish();
}

#[test]
fn mongodb_node_fails_a_waiting_op_after_30_s_and_retries_a_lost_one_once() {
    let (mut h, _) = H::connected(Config::from(Preset::MongodbNode));
    let lost = h.op();
    h.lose(LossKind::Reset);
    let waiting = h.op();
    h.until_connect();
    h.connect_ok();
    assert_eq!(h.dispatches_of(lost), 2);
    h.lose(LossKind::Reset);
    assert_eq!(h.kind(lost), ErrorKind::ConnectionLost, "one retry only");
    assert_eq!(h.dispatches_of(waiting), 1);
    let late = h.op();
    let buffered_at = h.now;
    while h.is_open(late) {
        h.until_connect();
        h.connect_fail();
    }
    assert_eq!(h.kind(late), ErrorKind::BufferTimeout);
    assert_eq!(
        completed_at(&h, late) - buffered_at,
        Duration::from_secs(30)
    );
    h.finish();
}

#[test]
fn a_refused_dispatch_is_not_a_run() {
    let config = legacy().reconnect_interval(ms(10)).build().unwrap();
    let (mut h, _) = H::connected(config);
    let op = h.op();
    h.answer(op, OpResult::WrongServer); // not run: re-queued, server left
    h.until_connect();
    h.connect_ok();
    h.answer(op, OpResult::Ok);
    let done = h.outcome(op).unwrap().unwrap();
    assert_eq!((done.attempts, done.runs), (2, 1));
    h.finish();
}
