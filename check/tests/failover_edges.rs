//! Edge cases of the failover semantics (draining, pushback, roles, give-up,
//! revive) found by a hostile review; each runs under both oracles.
#![allow(dead_code, clippy::all)]
use std::collections::HashMap;
use std::time::Duration;

use redial_check::Checked;
use redial_core::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

struct H {
    m: Checked<u32>,
    now: Instant,
    log: Vec<String>,
    outcomes: HashMap<OpId, Vec<Result<Done, OpError>>>,
    connects: Vec<(ConnId, usize)>,
    dispatches: Vec<(OpId, ConnId)>,
    closes: Vec<ConnId>,
    events: Vec<Event>,
}

impl H {
    fn new(cfg: Config) -> H {
        let mut h = H {
            m: Checked::new(cfg, 1, Instant::ZERO),
            now: Instant::ZERO,
            log: vec![],
            outcomes: HashMap::new(),
            connects: vec![],
            dispatches: vec![],
            closes: vec![],
            events: vec![],
        };
        h.drain();
        h
    }
    fn drain(&mut self) {
        while let Some(o) = self.m.poll_output() {
            self.log.push(format!(
                "{:>8} {:?}",
                self.now.as_millis(),
                match &o {
                    Output::Complete(c) => format!(
                        "Complete {:?} {:?}",
                        c.id,
                        c.result.as_ref().map_err(|e| (
                            e.kind(),
                            e.maybe_executed(),
                            e.attempts(),
                            e.to_string()
                        ))
                    ),
                    x => format!("{:?}", x),
                }
            ));
            match o {
                Output::Connect { conn, endpoint, .. } => self.connects.push((conn, endpoint)),
                Output::Dispatch { op, conn, .. } => self.dispatches.push((op, conn)),
                Output::Close { conn } => self.closes.push(conn),
                Output::Complete(c) => self.outcomes.entry(c.id).or_default().push(c.result),
                Output::Event(e) => self.events.push(e),
                Output::Heartbeat { .. } => {}
            }
        }
    }
    fn at(&mut self, t: u64) {
        self.now = Instant::from_millis(t);
    }
    fn tick(&mut self, t: u64) {
        self.at(t);
        self.m.handle_timeout(self.now);
        self.drain();
    }
    fn last_conn(&self) -> ConnId {
        self.connects.last().unwrap().0
    }
    fn connected(&mut self, role: Role) {
        let c = self.last_conn();
        self.m.handle_connected_as(self.now, c, role);
        self.drain();
    }
    fn submit(&mut self, o: OpOptions) -> OpId {
        let n = self.m.outstanding() as u32;
        let id = self.m.submit(self.now, n, o);
        self.drain();
        id
    }
    fn answer(&mut self, op: OpId, r: OpResult) {
        let c = self.dispatches.iter().rev().find(|d| d.0 == op).unwrap().1;
        self.m.handle_op_result(self.now, op, c, r);
        self.drain();
    }
    fn in_flight_ids(&self) -> Vec<OpId> {
        let mut v: Vec<OpId> = self
            .dispatches
            .iter()
            .filter(|(op, c)| {
                self.outcomes.get(op).is_none() && self.m.connection().map(|x| x.0) == Some(*c)
            })
            .map(|d| d.0)
            .collect();
        v.dedup();
        v
    }
    fn outcome(&self, op: OpId) -> Option<&Result<Done, OpError>> {
        let v = self.outcomes.get(&op)?;
        assert_eq!(v.len(), 1, "op {op:?} has {} outcomes", v.len());
        v.first()
    }
    fn dump(&self) {
        for l in &self.log {
            eprintln!("{l}");
        }
    }
    fn run_timers_until(&mut self, t: u64) {
        loop {
            match self.m.poll_timeout() {
                Some((at, _)) if at.as_millis() <= t => {
                    self.now = at;
                    self.m.handle_timeout(at);
                    self.drain();
                }
                _ => break,
            }
        }
        self.at(t);
    }
}

// ---------------------------------------------------------------------------

#[test]
fn a_huge_pushback_hint_is_capped() {
    let cfg = Config::builder()
        .heartbeat(None)
        .response_timeout(None)
        .buffer_timeout(None)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.connected(Role::Primary);
    let a = h.submit(OpOptions::new());
    h.at(10);
    h.answer(
        a,
        OpResult::Pushback {
            retry_after: Some(Duration::from_millis(u64::MAX)),
        },
    );
    eprintln!("state {:?} timeout {:?}", h.m.state(), h.m.poll_timeout());
    h.dump();
    h.m.assert_ok();
    assert!(
        h.m.poll_timeout().is_some(),
        "paused with no timer at all: the client never probes again (hang)"
    );
}

#[test]
fn a_year_long_hint_is_capped_too() {
    let cfg = Config::builder()
        .heartbeat(None)
        .response_timeout(None)
        .buffer_timeout(None)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.connected(Role::Primary);
    let a = h.submit(OpOptions::new());
    h.at(10);
    h.answer(
        a,
        OpResult::Pushback {
            retry_after: Some(Duration::from_secs(365 * 86400)),
        },
    );
    eprintln!("state {:?} timeout {:?}", h.m.state(), h.m.poll_timeout());
    assert!(
        h.m.poll_timeout().unwrap().0 < Instant::from_secs(3600),
        "a one-year hint holds the connection for a year (no cap)"
    );
}

#[test]
fn zero_hint() {
    let cfg = Config::builder()
        .heartbeat(None)
        .response_timeout(None)
        .buffer_timeout(None)
        .retry_budget(None)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.connected(Role::Primary);
    let a = h.submit(OpOptions::new());
    for i in 0..5 {
        h.answer(
            a,
            OpResult::Pushback {
                retry_after: Some(Duration::ZERO),
            },
        );
        let t = h.m.poll_timeout();
        eprintln!("{i}: {:?} {:?}", h.m.state(), t);
        let t = t.unwrap().0.as_millis();
        h.tick(t);
    }
    h.m.assert_ok();
}

#[test]
fn disabled_buffer_pushback_fails_server_busy_not_run() {
    let cfg = Config::fail_fast();
    let mut h = H::new(cfg);
    h.connected(Role::Primary);
    let a = h.submit(OpOptions::new());
    h.answer(a, OpResult::Pushback { retry_after: None });
    let b = h.submit(OpOptions::new());
    h.m.assert_ok();
    let ea = h
        .outcome(a)
        .expect("a has its outcome")
        .as_ref()
        .unwrap_err();
    assert_eq!(ea.kind(), ErrorKind::ServerBusy, "refused, nowhere to wait");
    assert!(!ea.maybe_executed());
    // Submitted while the connection is paused, buffering off: fails fast.
    let eb = h
        .outcome(b)
        .expect("b has its outcome")
        .as_ref()
        .unwrap_err();
    assert_eq!(eb.kind(), ErrorKind::NoConnection);
    assert!(!eb.maybe_executed());
}

#[test]
fn disabled_buffer_wrong_server() {
    let cfg = Config::fail_fast();
    let mut h = H::new(cfg);
    h.connected(Role::Primary);
    let a = h.submit(OpOptions::new());
    h.answer(a, OpResult::WrongServer);
    h.m.assert_ok();
    let e = h
        .outcome(a)
        .expect("a has its outcome")
        .as_ref()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoConnection);
    assert!(!e.maybe_executed(), "refused: it did not run");
}

#[test]
fn full_buffer_refused_op_kind() {
    for ov in [
        OverflowPolicy::RejectNew,
        OverflowPolicy::DropOldest,
        OverflowPolicy::FailAll,
    ] {
        let cfg = Config::builder()
            .heartbeat(None)
            .response_timeout(None)
            .buffer_timeout(None)
            .buffer(BufferPolicy::Bounded {
                max: 2,
                overflow: ov,
            })
            .build()
            .unwrap();
        let mut h = H::new(cfg);
        h.connected(Role::Primary);
        let a = h.submit(OpOptions::new());
        let b = h.submit(OpOptions::new());
        let c = h.submit(OpOptions::new());
        h.answer(
            a,
            OpResult::Pushback {
                retry_after: Some(ms(100)),
            },
        );
        let d = h.submit(OpOptions::new());
        let e = h.submit(OpOptions::new()); // buffer: a, d, e? (max 2)
        h.answer(b, OpResult::Pushback { retry_after: None });
        h.answer(c, OpResult::Pushback { retry_after: None });
        h.m.assert_ok();
        // Nothing here ran: every failure says so; refused ops that found
        // no room fail `server_busy`.
        for op in [a, b, c, d, e] {
            if let Some(Err(err)) = h.outcome(op) {
                assert!(!err.maybe_executed(), "{ov:?}: {op:?} {err}");
            }
        }
        for op in [b, c] {
            if let Some(Err(err)) = h.outcome(op) {
                assert_eq!(err.kind(), ErrorKind::ServerBusy, "{ov:?}: {op:?}");
            }
        }
    }
}

#[test]
fn pushback_probe_gets_wrong_server_then_loss() {
    let cfg = Config::builder()
        .heartbeat(None)
        .response_timeout(None)
        .buffer_timeout(None)
        .endpoints(2)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.connected(Role::Primary);
    let a = h.submit(OpOptions::new().retryable(true));
    let b = h.submit(OpOptions::new().retryable(true));
    h.answer(
        a,
        OpResult::Pushback {
            retry_after: Some(ms(50)),
        },
    );
    h.tick(50); // probe a
    h.answer(a, OpResult::WrongServer); // draining, b still in flight
    assert_eq!(h.m.state(), State::Draining);
    h.at(60);
    h.answer(b, OpResult::Pushback { retry_after: None });
    eprintln!("state {:?}", h.m.state());
    h.run_timers_until(1000);
    h.connected(Role::Primary);
    h.at(1100);
    for op in h.in_flight_ids() {
        h.answer(op, OpResult::ConnectionLost);
        break;
    }
    h.run_timers_until(3000);
    h.dump();
    h.m.assert_ok();
    for (n, op) in [("a", a), ("b", b)] {
        eprintln!(
            "{n}: {:?}",
            h.outcome(op).map(|r| r.as_ref().map_err(|e| (
                e.kind(),
                e.maybe_executed(),
                e.attempts()
            )))
        );
    }
}

#[test]
fn require_primary_all_secondaries() {
    // recommended: unlimited tries, exponential backoff
    let cfg = Config::builder().endpoints(3).build().unwrap();
    let mut h = H::new(cfg);
    let a = h.submit(OpOptions::new());
    for _ in 0..200 {
        h.connected(Role::Secondary);
        match h.m.poll_timeout() {
            Some((t, _)) => {
                let t = t.as_millis();
                h.tick(t);
            }
            None => break,
        }
        if h.now.as_millis() > 120_000 {
            break;
        }
    }
    eprintln!(
        "connects {} by {} ms; state {:?}; a={:?}",
        h.connects.len(),
        h.now.as_millis(),
        h.m.state(),
        h.outcome(a).map(|r| r.as_ref().map_err(|e| e.to_string()))
    );
    h.m.assert_ok();
}

#[test]
fn require_primary_all_secondaries_legacy_limited() {
    let cfg = Config::mongodb_legacy()
        .to_builder()
        .require_primary(true)
        .endpoints(2)
        .reconnect_tries(Tries::Limited(3))
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    let a = h.submit(OpOptions::new());
    for _ in 0..20 {
        if h.m.state() == State::Connecting {
            h.connected(Role::Secondary);
        }
        match h.m.poll_timeout() {
            Some((t, _)) => {
                let t = t.as_millis();
                h.tick(t);
            }
            None => break,
        }
    }
    let b = h.submit(OpOptions::new());
    h.dump();
    eprintln!("gave_up {:?}", h.m.gave_up());
    for (n, op) in [("a", a), ("b", b)] {
        eprintln!(
            "{n}: {:?}",
            h.outcome(op).map(|r| r.as_ref().map_err(|e| (
                e.kind(),
                e.to_string(),
                e.connect_error()
            )))
        );
    }
    h.m.assert_ok();
}

#[test]
fn failfast_initial_secondary_then_refused() {
    let cfg = Config::mongodb_legacy()
        .to_builder()
        .require_primary(true)
        .endpoints(2)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.connected(Role::Secondary);
    let t = h.m.poll_timeout().unwrap().0.as_millis();
    h.tick(t);
    let c = h.last_conn();
    h.m.handle_connect_failed(h.now, c, ConnectFailure::Refused);
    h.drain();
    h.m.assert_ok();
    // Past a secondary, the first real failure still fails fast.
    assert_eq!(h.m.state(), State::Failed);
    assert_eq!(h.m.gave_up().map(|g| g.attempts), Some(1));
}

#[test]
fn cool_down_tries_zero_and_rejected() {
    let cfg = Config::mongodb_legacy()
        .to_builder()
        .reconnect_tries(Tries::Limited(0))
        .give_up(GiveUp::CoolDown(ms(500)))
        .initial_connect(InitialConnect::Retry)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    let a = h.submit(OpOptions::new());
    let c = h.last_conn();
    h.m.handle_connect_failed(h.now, c, ConnectFailure::Rejected);
    h.drain();
    let b = h.submit(OpOptions::new());
    h.run_timers_until(600);
    h.connected(Role::Primary);
    h.at(610);
    if let Some(op) = h.in_flight_ids().first().copied() {
        h.answer(op, OpResult::Ok);
    }
    // now lose the connection: tries 0 → give up at once → cool-down
    let c = h.m.connection().unwrap().0;
    h.m.handle_connection_lost(h.now, c, LossKind::Reset);
    h.drain();
    let d = h.submit(OpOptions::new());
    h.run_timers_until(5000);
    h.dump();
    for (n, op) in [("a", a), ("b", b), ("d", d)] {
        eprintln!(
            "{n}: {:?}",
            h.outcome(op)
                .map(|r| r.as_ref().map_err(|e| (e.kind(), e.to_string())))
        );
    }
    eprintln!("gave_up {:?} state {:?}", h.m.gave_up(), h.m.state());
    h.m.assert_ok();
}

#[test]
fn revive_everywhere() {
    let cfg = Config::builder()
        .heartbeat(None)
        .response_timeout(None)
        .buffer_timeout(None)
        .endpoints(2)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.m.revive(h.now);
    h.drain(); // connecting
    h.connected(Role::Primary);
    let a = h.submit(OpOptions::new());
    let b = h.submit(OpOptions::new());
    h.answer(
        a,
        OpResult::Pushback {
            retry_after: Some(ms(100)),
        },
    );
    h.m.revive(h.now);
    h.drain(); // paused
    eprintln!("after revive while paused: {:?}", h.m.state());
    h.answer(b, OpResult::WrongServer);
    eprintln!("state {:?}", h.m.state());
    h.m.revive(h.now);
    h.drain(); // backoff
    eprintln!("after revive in backoff: {:?}", h.m.state());
    h.m.close(h.now);
    h.drain();
    h.m.revive(h.now);
    h.drain();
    h.dump();
    h.m.assert_ok();
    for op in [a, b] {
        assert!(h.outcome(op).is_some());
    }
}

#[test]
fn close_while_paused_and_draining() {
    for wrong in [false, true] {
        let cfg = Config::builder()
            .heartbeat(None)
            .response_timeout(None)
            .buffer_timeout(None)
            .build()
            .unwrap();
        let mut h = H::new(cfg);
        h.connected(Role::Primary);
        let a = h.submit(OpOptions::new());
        let b = h.submit(OpOptions::new());
        h.answer(
            a,
            if wrong {
                OpResult::WrongServer
            } else {
                OpResult::Pushback { retry_after: None }
            },
        );
        let c = h.submit(OpOptions::new());
        h.m.close(h.now);
        h.drain();
        for (n, op) in [("a", a), ("b", b), ("c", c)] {
            let r = h.outcome(op).unwrap().as_ref().unwrap_err();
            eprintln!("{wrong} {n}: {:?} maybe={}", r.kind(), r.maybe_executed());
        }
        assert!(!h.outcome(a).unwrap().as_ref().unwrap_err().maybe_executed());
        h.m.assert_ok();
    }
}

#[test]
fn probe_cancel_and_deadline() {
    let cfg = Config::builder()
        .heartbeat(None)
        .response_timeout(None)
        .buffer_timeout(None)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.connected(Role::Primary);
    let a = h.submit(OpOptions::new().deadline(ms(300)));
    h.answer(
        a,
        OpResult::Pushback {
            retry_after: Some(ms(100)),
        },
    );
    let b = h.submit(OpOptions::new());
    let c = h.submit(OpOptions::new());
    h.tick(100); // probe a
    h.m.cancel(h.now, a);
    h.drain(); // probe b should go out
    h.tick(150);
    h.answer(
        b,
        OpResult::Pushback {
            retry_after: Some(ms(100)),
        },
    );
    h.tick(250); // probe b again (charged)
    h.answer(b, OpResult::Ok); // flush c
    h.dump();
    h.m.assert_ok();
    assert!(h.outcome(c).is_some() || h.in_flight_ids().contains(&c));
}

#[test]
fn many_in_flight_all_refused_order() {
    let cfg = Config::builder()
        .heartbeat(None)
        .response_timeout(None)
        .buffer_timeout(None)
        .retry_budget(None)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.connected(Role::Primary);
    let ops: Vec<OpId> = (0..50).map(|_| h.submit(OpOptions::new())).collect();
    // answer in reverse order, all pushback
    for op in ops.iter().rev() {
        h.answer(
            *op,
            OpResult::Pushback {
                retry_after: Some(ms(10)),
            },
        );
    }
    let late = h.submit(OpOptions::new());
    h.tick(10);
    let first_probe = h.dispatches.last().unwrap().0;
    assert_eq!(first_probe, ops[0], "probe should be the oldest");
    h.answer(first_probe, OpResult::Ok);
    let order: Vec<OpId> = h
        .dispatches
        .iter()
        .rev()
        .take(50)
        .rev()
        .map(|d| d.0)
        .collect();
    let mut expect: Vec<OpId> = ops[1..].to_vec();
    expect.push(late);
    assert_eq!(order, expect);
    for op in h.in_flight_ids() {
        h.answer(op, OpResult::Ok);
    }
    for op in ops.iter().chain([&late]) {
        let r = h.outcome(*op).unwrap().as_ref().unwrap();
        if *op != ops[0] && *op != late {
            assert_eq!(r.attempts, 2);
        }
    }
    h.m.assert_ok();
}

#[test]
fn budget_exhaustion_by_pushback_then_loss() {
    // recommended: budget 10 tokens, retries allowed while > 5
    let cfg = Config::builder()
        .heartbeat(None)
        .response_timeout(None)
        .buffer_timeout(None)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.connected(Role::Primary);
    let a = h.submit(OpOptions::new());
    let mut t = 0;
    for _ in 0..10 {
        if let Some(op) = h.in_flight_ids().first().copied() {
            h.answer(
                op,
                OpResult::Pushback {
                    retry_after: Some(ms(10)),
                },
            );
        }
        t += 10;
        h.tick(t);
    }
    eprintln!("tokens {:?}", h.m.retry_tokens());
    // server recovers; retryable op lost in flight now
    let b = h.submit(OpOptions::new().retryable(true));
    h.at(t + 5);
    h.answer(b, OpResult::ConnectionLost);
    h.run_timers_until(t + 2000);
    h.dump();
    eprintln!(
        "a {:?}\nb {:?}",
        h.outcome(a).map(|r| r
            .as_ref()
            .map_err(|e| (e.kind(), e.maybe_executed(), e.attempts()))),
        h.outcome(b).map(|r| r
            .as_ref()
            .map_err(|e| (e.kind(), e.maybe_executed(), e.attempts())))
    );
    h.m.assert_ok();
}

#[test]
fn buffer_timeout_is_not_late_behind_a_requeued_op() {
    // recommended: buffer_timeout 10 s
    let cfg = Config::builder()
        .heartbeat(None)
        .response_timeout(None)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.connected(Role::Primary);
    let a = h.submit(OpOptions::new());
    let b = h.submit(OpOptions::new());
    h.at(100);
    h.answer(
        b,
        OpResult::Pushback {
            retry_after: Some(Duration::from_secs(60)),
        },
    );
    h.at(200);
    let x = h.submit(OpOptions::new());
    h.at(9000);
    h.answer(a, OpResult::Pushback { retry_after: None }); // a back at the front, since = 9 s
    eprintln!("next timer {:?}", h.m.poll_timeout());
    h.run_timers_until(30_000);
    h.dump();
    h.m.assert_ok();
    for (n, op) in [("a", a), ("b", b), ("x", x)] {
        eprintln!(
            "{n}: {:?}",
            h.outcome(op).map(|r| r.as_ref().map_err(|e| e.kind()))
        );
    }
    let t_x = h
        .log
        .iter()
        .find(|l| l.contains(&format!("Complete {:?}", x)))
        .cloned();
    eprintln!("x completed: {t_x:?}");
    assert!(
        t_x.unwrap().trim_start().starts_with("10200"),
        "x (buffered at 0.2 s) should time out at 10.2 s"
    );
}

#[test]
fn buffer_timeout_is_not_late_behind_a_lost_retryable() {
    let cfg = Config::builder()
        .heartbeat(None)
        .response_timeout(None)
        .endpoints(2)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.connected(Role::Primary);
    let a = h.submit(OpOptions::new().retryable(true));
    let b = h.submit(OpOptions::new());
    h.at(100);
    h.answer(b, OpResult::WrongServer); // draining; a still in flight
    h.at(200);
    let x = h.submit(OpOptions::new());
    h.at(9000);
    h.answer(a, OpResult::ConnectionLost); // a re-queued at the front with since = 9 s
    // never reconnect: every connect attempt is refused
    for _ in 0..100 {
        match h.m.poll_timeout() {
            Some((t, _)) if t.as_millis() <= 40_000 => {
                h.now = t;
                h.m.handle_timeout(t);
                h.drain();
            }
            _ => break,
        }
        if h.m.state() == State::Connecting {
            let c = h.last_conn();
            h.m.handle_connect_failed(h.now, c, ConnectFailure::Refused);
            h.drain();
        }
    }
    h.m.assert_ok();
    // Buffered at 0.1 s (b, refused) and 0.2 s (x): they time out 10 s
    // later, not behind `a`, put back ahead of them at 9 s.
    for (op, at) in [(b, "10100"), (x, "10200")] {
        let t = h
            .log
            .iter()
            .find(|l| l.contains(&format!("Complete {:?}", op)))
            .cloned()
            .unwrap_or_default();
        assert!(t.trim_start().starts_with(at), "{op:?}: {t}");
        assert!(t.contains("BufferTimeout"), "{op:?}: {t}");
    }
}

#[test]
fn flush_resend_of_refused_ops_uncharged() {
    let cfg = Config::builder()
        .heartbeat(None)
        .response_timeout(None)
        .buffer_timeout(None)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.connected(Role::Primary);
    let ops: Vec<OpId> = (0..4).map(|_| h.submit(OpOptions::new())).collect();
    for op in &ops {
        h.answer(
            *op,
            OpResult::Pushback {
                retry_after: Some(ms(10)),
            },
        );
    }
    let before = h.m.retry_tokens();
    h.tick(10);
    assert_eq!(h.m.retry_tokens(), before, "a probe is not charged");
    h.answer(ops[0], OpResult::Ok);
    assert_eq!(
        h.m.in_flight(),
        3,
        "the rest flow once the probe is answered"
    );
    assert_eq!(h.m.retry_tokens(), before, "and are not charged either");
    h.m.assert_ok();
}

#[test]
fn since_loss_after_revive() {
    let cfg = Config::mongodb_legacy()
        .to_builder()
        .reconnect_tries(Tries::Limited(1))
        .reconnect_interval(ms(100))
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.connected(Role::Primary);
    h.at(1000);
    let c = h.m.connection().unwrap().0;
    h.m.handle_connection_lost(h.now, c, LossKind::Reset);
    h.drain();
    h.tick(1100);
    let c = h.last_conn();
    h.m.handle_connect_failed(h.now, c, ConnectFailure::Refused);
    h.drain();
    eprintln!("first give-up {:?}", h.m.gave_up());
    h.at(60_000);
    h.m.revive(h.now);
    h.drain();
    let c = h.last_conn();
    h.m.handle_connect_failed(h.now, c, ConnectFailure::Refused);
    h.drain();
    h.tick(60_100);
    let c = h.last_conn();
    h.m.handle_connect_failed(h.now, c, ConnectFailure::Refused);
    h.drain();
    h.m.assert_ok();
    assert_eq!(h.m.state(), State::Failed);
    let why = h.m.gave_up().expect("gave up again");
    // Counted from the revive (60 s), not from the loss at 1 s.
    assert_eq!(why.since_loss, ms(100));
}
