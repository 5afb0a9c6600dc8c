//! Hostile review of the peer knobs: what the docs now say about
//! `extra_jitter` (it pads backoff delays only), pinned; and
//! `fail_buffered_after` at its extremes.

mod harness;

use core::time::Duration;

use harness::{H, ms};
use redial_core::{
    Config, ConnectFailure, ErrorKind, Event, GiveUp, LossKind, QuickReconnect, Tries,
};

fn delays(h: &H) -> Vec<Duration> {
    h.events()
        .iter()
        .filter_map(|e| match e {
            Event::Reconnecting { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect()
}

/// The README used to say `extra_jitter` is added to "every reconnect
/// delay"; quick reconnects' immediate retry and refusal probes, and the
/// cool-down pause, never got it. The docs now say "every backoff delay";
/// this pins the behaviour they describe.
#[test]
fn extra_jitter_pads_backoff_delays_only() {
    let config = Config::recommended()
        .to_builder()
        .extra_jitter(Some(Duration::from_secs(60)))
        .quick_reconnect(Some(QuickReconnect {
            probe: ms(100),
            probe_for: Duration::from_secs(30),
        }))
        .reconnect_tries(Tries::Limited(3))
        .give_up(GiveUp::CoolDown(ms(700)))
        .build()
        .unwrap();
    let (mut h, _) = H::connected(config);
    h.advance(Duration::from_secs(2)); // an old connection: retried at once
    h.lose(LossKind::Closed);
    for _ in 0..3 {
        h.until_connect();
        h.connect_fail_with(ConnectFailure::Refused);
    }
    let d = delays(&h);
    // Immediate retry, two probes in [50, 100] ms, then the exact cool-down.
    assert_eq!(d[0], Duration::ZERO, "{d:?}");
    assert!(
        d[1..3].iter().all(|x| *x >= ms(50) && *x <= ms(100)),
        "{d:?}"
    );
    assert_eq!(d[3], ms(700), "{d:?}");
    // A connect timeout is paced by the backoff: padded.
    h.until_connect();
    h.connect_fail_with(ConnectFailure::TimedOut);
    let d = delays(&h);
    let (lo, hi) = Config::recommended()
        .to_builder()
        .extra_jitter(Some(Duration::from_secs(60)))
        .build()
        .unwrap()
        .reconnect_delay_bounds(1);
    assert!(d[4] >= lo && d[4] <= hi, "{d:?}");
    h.finish();
}

/// `fail_buffered_after = 4294967295` (the largest the key takes) must not
/// overflow `k + 1`, and `0` flushes at the loss and after every failure,
/// the ops buffered in between each getting exactly one outcome.
#[test]
fn fail_buffered_after_extremes() {
    for k in [0, u32::MAX - 1, u32::MAX] {
        let config = Config::mongodb_legacy()
            .to_builder()
            .reconnect_interval(ms(10))
            .reconnect_tries(Tries::Unlimited)
            .fail_buffered_after(Some(k))
            .build()
            .unwrap();
        let (mut h, _) = H::connected(config);
        h.lose(LossKind::Closed);
        let mut ops = Vec::new();
        for _ in 0..50 {
            ops.push(h.op());
            h.until_connect();
            h.connect_fail();
        }
        for op in ops {
            if k == 0 {
                assert_eq!(h.kind(op), ErrorKind::ReconnectAttemptsExceeded);
            } else {
                assert!(h.is_open(op));
            }
        }
        h.finish();
    }
}
