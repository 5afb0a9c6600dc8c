//! `Machine::stats`: each counter pinned on a scripted run, and every
//! counter that the outputs show checked against a count made by hand from
//! them on random runs of `redial-check`'s generator.

mod harness;

use std::collections::BTreeSet;

use arbitrary::Unstructured;
use harness::{H, ms};
use proptest::prelude::*;
use redial_check::Checked;
use redial_check::harness::{Harness, input};
use redial_core::{
    Backoff, Config, ConnectFailure, Duration, Event, Instant, Jitter, LossKind, OpOptions,
    OpResult, Output, RetryBudget, State, Stats,
};

fn config() -> Config {
    Config::recommended()
        .to_builder()
        .backoff(Backoff::Constant(ms(100)))
        .jitter(Jitter::None)
        .quick_reconnect(None)
        .connect_timeout(None)
        .heartbeat(None)
        .response_timeout(None)
        .socket_timeout(None)
        .op_deadline(None)
        .retry_budget(Some(RetryBudget {
            max_tokens: 10,
            token_ratio: 0.5,
        }))
        .build()
        .expect("valid")
}

/// Connect attempts, connects, reconnects, retries, requeues.
fn counts(s: &Stats) -> (u64, u64, u64, u64, u64) {
    (
        s.connect_attempts,
        s.connects,
        s.reconnects,
        s.retries,
        s.requeues,
    )
}

#[test]
fn a_fresh_machine_has_made_one_attempt_and_nothing_else() {
    let h = H::new(config());
    let s = h.m.stats(Instant::ZERO);
    assert_eq!(s.state, State::Connecting);
    assert_eq!(counts(&s), (1, 0, 0, 0, 0));
    assert_eq!((s.buffered, s.in_flight), (0, 0));
    assert_eq!(s.retry_tokens, Some(10));
    assert_eq!(s.disconnected, Duration::ZERO);
    assert_eq!(s.last_connect_error, None);
}

#[test]
fn every_counter_on_a_scripted_outage() {
    let mut h = H::new(config());
    // 5 ms connecting, refused: backoff 100 ms, the second attempt.
    h.advance(ms(5));
    h.connect_fail();
    let s = h.m.stats(h.now);
    assert_eq!(s.state, State::Backoff);
    assert_eq!(s.last_connect_error, Some(ConnectFailure::Refused));
    assert_eq!(s.disconnected, ms(5));
    let buffered = h.submit(OpOptions::new().retryable(true).max_attempts(5));
    assert_eq!(h.m.stats(h.now).buffered, 1);
    h.until_connect();
    assert_eq!(h.now, Instant::ZERO + ms(105));
    h.advance(ms(3));
    h.connect_ok();
    let s = h.m.stats(h.now);
    assert_eq!(s.state, State::Connected);
    assert_eq!((s.connect_attempts, s.connects, s.reconnects), (2, 1, 0));
    assert_eq!(s.last_connect_error, None);
    assert_eq!(s.disconnected, ms(108));
    // The buffered op went out on the first connection: a first dispatch.
    assert_eq!((s.buffered, s.in_flight, s.retries), (0, 1, 0));
    // Connected time does not count, even with no input for a while.
    h.advance(ms(50));
    assert_eq!(h.m.stats(h.now).disconnected, ms(108));

    // The connection is lost with the op in flight: re-queued, a token
    // charged.
    h.lose(LossKind::Reset);
    let s = h.m.stats(h.now);
    assert_eq!((s.requeues, s.retries, s.buffered), (1, 0, 1));
    assert_eq!(s.retry_tokens, Some(9));
    // Whatever delay the backoff picks, the time until the next connect
    // is disconnected time.
    let lost_at = h.now;
    h.until_connect();
    h.advance(ms(7));
    let down = h.now.saturating_duration_since(lost_at);
    h.connect_ok();
    let s = h.m.stats(h.now);
    assert_eq!((s.connect_attempts, s.connects, s.reconnects), (3, 2, 1));
    assert_eq!(s.retries, 1, "the op went out a second time");
    assert_eq!(s.disconnected, ms(108) + down);

    // The server pushes the re-sent op back: re-queued again (a retry
    // refused costs a token), then probed: a third dispatch.
    h.answer(
        buffered,
        OpResult::Pushback {
            retry_after: Some(ms(20)),
        },
    );
    let s = h.m.stats(h.now);
    assert_eq!(s.state, State::Paused);
    assert_eq!((s.requeues, s.retries, s.buffered), (2, 1, 1));
    assert_eq!(s.retry_tokens, Some(8));
    h.advance(ms(20));
    let s = h.m.stats(h.now);
    assert_eq!((s.retries, s.in_flight), (2, 1));
    h.answer(buffered, OpResult::Ok);
    assert!(h.outcome(buffered).is_some_and(|r| r.is_ok()));
    let s = h.m.stats(h.now);
    assert_eq!(s.retry_tokens, Some(8), "8.5 tokens: 8 whole ones");
    assert_eq!(s.disconnected, ms(108) + down, "paused is connected");

    // Closed time is not disconnected time.
    h.close();
    let s = h.m.stats(h.now + Duration::from_secs(60));
    assert_eq!(s.state, State::Closed);
    assert_eq!(s.disconnected, ms(108) + down);
    assert_eq!(counts(&s), (3, 2, 1, 2, 2));
}

#[test]
fn stats_counts_up_to_the_given_now_without_advancing_the_machine() {
    let mut h = H::new(config());
    h.advance(ms(5));
    h.connect_fail();
    let at = h.m.now();
    let s = h.m.stats(at + ms(40));
    assert_eq!(s.disconnected, ms(45));
    assert_eq!(h.m.now(), at, "a query");
    // An earlier `now` counts as the machine's.
    assert_eq!(h.m.stats(Instant::ZERO).disconnected, ms(5));
}

#[test]
fn a_secondary_refused_is_an_attempt_not_a_connect() {
    let mut h = H::new(config().to_builder().require_primary(true).build().unwrap());
    let (conn, _) = h.pending.take().expect("first attempt");
    h.m.handle_connected_as(h.now, conn, redial_core::Role::Secondary);
    h.drain();
    let s = h.m.stats(h.now);
    assert_eq!((s.connect_attempts, s.connects), (1, 0));
    assert_eq!(s.last_connect_error, Some(ConnectFailure::NotPrimary));
}

fn without_connection(s: State) -> bool {
    matches!(
        s,
        State::Connecting | State::Backoff | State::Down | State::Failed
    )
}

/// Runs the generator's steps against `config`, counting by hand from the
/// outputs (and the state and clock around each step), and compares.
fn hand_count(config: &Config, data: &[u8]) {
    let Ok(steps) = input::steps(&mut Unstructured::new(data)) else {
        return;
    };
    let mut h = Harness::new(Checked::new(config.clone(), 3, Instant::ZERO));
    let (mut attempts, mut connects, mut reconnects, mut retries) = (1u64, 0u64, 0u64, 0u64);
    let mut disconnected = Duration::ZERO;
    let mut sent = BTreeSet::new();
    for step in steps {
        let (before, state) = (h.m.now(), h.m.state());
        h.apply(step);
        h.drain(|out| match out {
            Output::Connect { .. } => attempts += 1,
            Output::Dispatch { op, .. } if !sent.insert(*op) => retries += 1,
            Output::Event(Event::Connected { .. }) => connects += 1,
            Output::Event(Event::Reconnected { .. }) => {
                connects += 1;
                reconnects += 1;
            }
            _ => {}
        });
        if without_connection(state) {
            disconnected += h.m.now().saturating_duration_since(before);
        }
        let s = h.m.stats(h.m.now());
        assert_eq!(s.state, h.m.state());
        assert_eq!(
            (s.connect_attempts, s.connects, s.reconnects, s.retries),
            (attempts, connects, reconnects, retries),
            "after {step:?}"
        );
        assert_eq!(s.disconnected, disconnected, "after {step:?}");
        assert_eq!((s.buffered, s.in_flight), (h.m.buffered(), h.m.in_flight()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn counters_match_a_hand_count_on_random_runs(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        let cfg = Config::recommended()
            .to_builder()
            .connected_on_reconnect(false)
            .endpoints(2)
            .build()
            .expect("valid");
        hand_count(&cfg, &data);
        hand_count(&config(), &data);
    }
}
