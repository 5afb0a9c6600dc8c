//! Hostile review of quick reconnects: defects found (each test fails).

use core::time::Duration;

use redial_core::{Config, ConnectFailure, Event, Instant, Machine, Output, QuickReconnect};

/// The config refuses zero reconnect delays with unlimited tries
/// (`ZeroDelayWithUnlimitedTries`), but a quick-reconnect `probe` below
/// 2 µs passes validation (`probe > 0`) and draws `[probe / 2, probe]` in
/// whole microseconds: `probe = 1 ns` gives a delay of 0 after every
/// refusal, so a client facing a refusing host reconnects in a hot loop
/// for the whole `probe_for` (here 30 s; unbounded with a huge one).
#[test]
fn a_validated_quick_reconnect_never_probes_with_zero_delay() {
    // A probe below 1 ms is refused, naming the field...
    let e = Config::recommended()
        .to_builder()
        .quick_reconnect(Some(QuickReconnect {
            probe: Duration::from_nanos(1),
            probe_for: Duration::from_secs(30),
        }))
        .build()
        .expect_err("a 1 ns probe is refused");
    assert_eq!(e.field(), "quick_reconnect_probe");
    // ...and the shortest accepted one never retries with zero delay.
    let cfg = Config::recommended()
        .to_builder()
        .quick_reconnect(Some(QuickReconnect {
            probe: Duration::from_millis(1),
            probe_for: Duration::from_secs(30),
        }))
        .build()
        .expect("accepted by validation");
    let mut m: Machine<()> = Machine::new(cfg, 1, Instant::ZERO);
    let mut now = Instant::ZERO;
    let mut zero = 0;
    for _ in 0..1000 {
        let mut conn = None;
        while let Some(out) = m.poll_output() {
            match out {
                Output::Connect { conn: c, .. } => conn = Some(c),
                Output::Event(Event::Reconnecting { delay, .. }) if delay.is_zero() => zero += 1,
                _ => {}
            }
        }
        match conn {
            Some(c) => m.handle_connect_failed(now, c, ConnectFailure::Refused),
            None => {
                let (at, _) = m.poll_timeout().expect("a reconnect is due");
                now = at;
                m.handle_timeout(now);
            }
        }
    }
    assert_eq!(
        zero, 0,
        "{zero} refused attempts were retried with zero delay (virtual time advanced to {now:?})"
    );
}

/// The machine's clock counts whole microseconds: a configured duration
/// with a fraction of one (a 500 ns deadline, which the machine used as
/// 0 µs: every op expired at once) is refused, naming the field; whole
/// microseconds, and `Duration::MAX` ("no limit"), are kept.
#[test]
fn durations_with_a_fraction_of_a_microsecond_are_refused() {
    use redial_core::{Backoff, ConfigErrorKind, GiveUp};
    let b = || Config::recommended().to_builder();
    for (builder, field) in [
        (
            b().op_deadline(Some(Duration::from_nanos(500))),
            "op_deadline",
        ),
        (
            b().response_timeout(Some(Duration::from_nanos(2_500))),
            "response_timeout",
        ),
        (
            b().give_up(GiveUp::CoolDown(Duration::from_nanos(1_000_000_001))),
            "cool_down",
        ),
        (
            b().backoff(Backoff::Linear {
                initial: Duration::from_millis(1),
                step: Duration::from_nanos(10),
                max: Duration::from_secs(1),
            }),
            "backoff_step",
        ),
    ] {
        let e = builder.build().expect_err(field);
        assert_eq!(
            (e.field(), e.kind()),
            (field, ConfigErrorKind::FractionOfMicrosecond)
        );
        assert!(
            e.to_string().contains("whole number of microseconds"),
            "{e}"
        );
    }
    b().op_deadline(Some(Duration::from_micros(1)))
        .connect_timeout(Some(Duration::MAX))
        .build()
        .expect("whole microseconds and Duration::MAX are kept");
}
