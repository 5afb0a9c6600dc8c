//! `Client::stats()` through the real driver: the core's counters after a
//! scripted outage (a lost connection, refused reconnects, a retried op),
//! and the time without a connection growing while the client waits.

#![cfg(feature = "tokio")]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use redial::CallOptions;
use redial::core::{ConnectFailure, State};
use support::flaky::{Flaky, client, config};

#[test]
fn stats_count_a_scripted_outage() {
    support::run_bounded(Duration::from_secs(20), async {
        let flaky = Flaky::default();
        let script = flaky.script.clone();
        let client = client(flaky, config());
        assert_eq!(client.call(1).await.expect("first op"), 1);
        let before = client.stats();
        assert_eq!(before.state, State::Connected);
        assert_eq!(
            (before.connect_attempts, before.connects, before.reconnects),
            (1, 1, 0)
        );
        assert_eq!((before.retries, before.requeues), (0, 0));

        // The op's run loses the connection; three reconnects are refused,
        // the fourth succeeds and the op goes out again.
        script.refuse.store(3, Ordering::SeqCst);
        script.lose_next.store(true, Ordering::SeqCst);
        let started = std::time::Instant::now();
        let answer = client
            .call_with(2, CallOptions::new().retryable(true).max_attempts(3))
            .await
            .expect("retried op");
        let elapsed = started.elapsed();
        assert_eq!(answer, 2);
        let s = client.stats();
        assert_eq!(s.state, State::Connected);
        assert_eq!(
            (s.connect_attempts, s.connects, s.reconnects),
            (5, 2, 1),
            "{s:?}"
        );
        assert_eq!((s.retries, s.requeues), (1, 1), "{s:?}");
        assert_eq!((s.buffered, s.in_flight), (0, 0));
        assert_eq!(s.last_connect_error, None, "the last attempt succeeded");
        assert_eq!(s.retry_tokens, None, "no budget configured");
        // Four backoff waits of 20 ms (after the loss and after each
        // refusal), at most the outage's wall time.
        let outage = s.disconnected - before.disconnected;
        assert!(outage >= Duration::from_millis(80), "{outage:?}");
        assert!(outage <= elapsed, "{outage:?} > {elapsed:?}");
        client.close().await;
        assert_eq!(client.stats().state, State::Closed);
    });
}

#[test]
fn stats_show_the_refusals_and_the_time_without_a_connection_growing() {
    support::run_bounded(Duration::from_secs(20), async {
        let flaky = Flaky::default();
        flaky.script.refuse.store(u32::MAX, Ordering::SeqCst);
        let client = client(flaky, config());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let first = client.stats();
        assert!(
            matches!(first.state, State::Backoff | State::Connecting),
            "{first:?}"
        );
        assert_eq!(first.connects, 0);
        assert!(first.connect_attempts >= 2, "{first:?}");
        assert_eq!(first.last_connect_error, Some(ConnectFailure::Refused));
        tokio::time::sleep(Duration::from_millis(60)).await;
        let later = client.stats();
        assert!(
            later.disconnected >= first.disconnected + Duration::from_millis(60),
            "{first:?} then {later:?}"
        );
        assert!(later.connect_attempts > first.connect_attempts);
        client.close().await;
    });
}
