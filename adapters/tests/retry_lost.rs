//! Blind resend (`retry_lost`) through the real driver: an op the caller
//! did not mark is sent again after a loss in flight, and the error it
//! ends with says how many of its dispatches may have run
//! (`Error::runs`); one that said `retryable(false)` is not resent.

#![cfg(feature = "tokio")]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use redial::CallOptions;
use redial::core::ErrorKind;
use support::flaky::{Flaky, client, config};

#[test]
fn unmarked_ops_are_resent_and_report_their_runs() {
    support::run_bounded(Duration::from_secs(20), async {
        let flaky = Flaky::default();
        let script = flaky.script.clone();
        let client = client(flaky, config().retry_lost(true).max_op_attempts(2));
        assert_eq!(client.call(1).await.expect("first op"), 1);

        // Lost once, resent, answered.
        script.lose.store(1, Ordering::SeqCst);
        assert_eq!(client.call(2).await.expect("resent op"), 2);

        // Lost on both of its attempts: it may have run twice.
        script.lose.store(2, Ordering::SeqCst);
        let e = client.call(3).await.expect_err("lost twice");
        assert_eq!(e.kind(), ErrorKind::ConnectionLost);
        assert!(e.maybe_executed());
        assert_eq!((e.attempts(), e.runs()), (2, 2), "{e:?}");

        // An op that opts out is not resent: one run.
        script.lose.store(1, Ordering::SeqCst);
        let e = client
            .call_with(4, CallOptions::new().retryable(false))
            .await
            .expect_err("lost, not resent");
        assert_eq!(e.kind(), ErrorKind::ConnectionLost);
        assert_eq!((e.attempts(), e.runs()), (1, 1), "{e:?}");
        assert_eq!(client.call(5).await.expect("after"), 5);
        client.close().await;
    });
}

#[test]
fn without_retry_lost_an_unmarked_op_is_not_resent() {
    support::run_bounded(Duration::from_secs(20), async {
        let flaky = Flaky::default();
        let script = flaky.script.clone();
        let client = client(flaky, config().max_op_attempts(3));
        assert_eq!(client.call(1).await.expect("first op"), 1);
        script.lose.store(1, Ordering::SeqCst);
        let e = client.call(2).await.expect_err("lost");
        assert_eq!(
            (e.kind(), e.attempts(), e.runs()),
            (ErrorKind::ConnectionLost, 1, 1)
        );
        client.close().await;
    });
}
