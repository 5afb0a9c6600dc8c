//! Legal but unusual driving of `Checked` (found by a hostile review):
//! every run here is a correct machine driven correctly, so the oracles
//! must stay silent.
use redial_check::Checked;
use redial_core::*;

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}
fn drain(m: &mut Checked<u32>) -> Vec<Output<u32>> {
    let mut v = Vec::new();
    while let Some(o) = m.poll_output() {
        v.push(o);
    }
    v
}
fn report(m: &Checked<u32>) -> Vec<String> {
    m.violations().map(|v| v.to_string()).collect()
}

fn connected(cfg: Config) -> (Checked<u32>, ConnId) {
    let mut m: Checked<u32> = Checked::new(cfg, 1, Instant::ZERO);
    let Some(Output::Connect { conn, .. }) = drain(&mut m).into_iter().next() else {
        panic!()
    };
    m.handle_connected(Instant::ZERO, conn);
    drain(&mut m);
    assert!(m.is_ok(), "{:?}", report(&m));
    (m, conn)
}

#[test]
fn no_drain_at_all_between_inputs() {
    let mut m: Checked<u32> = Checked::new(Config::mongoose(), 1, Instant::ZERO);
    let Some(Output::Connect { conn, .. }) = m.poll_output() else {
        panic!()
    };
    m.handle_connected(ms(1), conn); // previous drain never saw None
    // do not drain: submit right away
    let a = m.submit(ms(2), 1, OpOptions::new());
    drain(&mut m);
    m.handle_op_result(ms(3), a, conn, OpResult::Ok);
    drain(&mut m);
    m.close(ms(4));
    drain(&mut m);
    m.finish();
    assert!(m.is_ok(), "{:#?}", report(&m));
}

#[test]
fn drain_cut_short_after_one_output() {
    let (mut m, conn) = connected(Config::mongoose());
    m.handle_connection_lost(ms(1), conn, LossKind::Reset);
    let _first = m.poll_output(); // Close; Disconnected + Reconnecting remain
    m.handle_timeout(ms(2));
    drain(&mut m);
    m.close(ms(3));
    drain(&mut m);
    m.finish();
    assert!(m.is_ok(), "{:#?}", report(&m));
}

#[test]
fn timeout_twice_and_time_backwards() {
    let cfg = Config::mongoose()
        .to_builder()
        .op_deadline(Some(Duration::from_millis(10)))
        .build()
        .unwrap();
    let (mut m, conn) = connected(cfg);
    let a = m.submit(ms(5), 1, OpOptions::new());
    drain(&mut m);
    m.handle_timeout(ms(15));
    drain(&mut m);
    m.handle_timeout(ms(15));
    drain(&mut m);
    m.handle_timeout(ms(3));
    drain(&mut m); // backwards
    let b = m.submit(ms(1), 2, OpOptions::new()); // backwards submit
    drain(&mut m);
    m.handle_op_result(ms(0), a, conn, OpResult::Ok);
    drain(&mut m);
    m.handle_timeout(ms(14));
    drain(&mut m);
    m.handle_timeout(ms(25));
    drain(&mut m);
    let _ = b;
    m.close(ms(2));
    drain(&mut m);
    m.close(ms(2));
    drain(&mut m);
    m.finish();
    assert!(m.is_ok(), "{:#?}", report(&m));
}

#[test]
fn unknown_ids_and_after_close() {
    let (mut m, conn) = connected(Config::mongoose());
    m.handle_op_result(ms(1), OpId::from_raw(u64::MAX), conn, OpResult::Ok);
    drain(&mut m);
    m.handle_op_result(
        ms(1),
        OpId::from_raw(1 << 32),
        ConnId::from_raw(99),
        OpResult::WrongServer,
    );
    drain(&mut m);
    m.cancel(ms(1), OpId::from_raw(12345));
    drain(&mut m);
    m.handle_connected(ms(1), ConnId::from_raw(0));
    drain(&mut m);
    m.handle_connected(ms(1), ConnId::from_raw(999));
    drain(&mut m);
    m.handle_connected(ms(1), conn);
    drain(&mut m);
    m.handle_connect_failed(ms(1), conn, ConnectFailure::Rejected);
    drain(&mut m);
    m.handle_heartbeat(ms(1), ConnId::from_raw(5), OpResult::ConnectionLost);
    drain(&mut m);
    m.handle_connection_lost(ms(1), ConnId::from_raw(5), LossKind::Reset);
    drain(&mut m);
    let a = m.submit(ms(2), 1, OpOptions::new());
    drain(&mut m);
    m.cancel(ms(3), a);
    drain(&mut m); // in flight
    m.handle_op_result(ms(4), a, conn, OpResult::Ok);
    drain(&mut m); // late
    m.cancel(ms(4), a);
    drain(&mut m);
    m.close(ms(5));
    drain(&mut m);
    let b = m.submit(ms(6), 2, OpOptions::new());
    drain(&mut m);
    m.cancel(ms(6), b);
    drain(&mut m);
    m.handle_connected(ms(7), conn);
    drain(&mut m);
    m.handle_timeout(ms(100_000));
    drain(&mut m);
    m.close(ms(8));
    drain(&mut m);
    m.finish();
    assert!(m.is_ok(), "{:#?}", report(&m));
}

#[test]
fn many_in_flight_then_loss_and_wrong_server() {
    let cfg = Config::mongoose()
        .to_builder()
        .endpoints(3)
        .max_op_attempts(3)
        .build()
        .unwrap();
    let (mut m, conn) = connected(cfg);
    let mut ids = Vec::new();
    for i in 0..1000u32 {
        ids.push(m.submit(ms(1), i, OpOptions::new().retryable(i % 2 == 0)));
        drain(&mut m);
    }
    drain(&mut m);
    // Answer a middle one wrong-server.
    m.handle_op_result(ms(2), ids[501], conn, OpResult::WrongServer);
    drain(&mut m);
    // Reconnect and wrong-server again repeatedly.
    for round in 0..5u64 {
        m.handle_timeout(ms(10_000 * (round + 1)));
        let outs = drain(&mut m);
        let c = outs.iter().find_map(|o| match o {
            Output::Connect { conn, .. } => Some(*conn),
            _ => None,
        });
        let Some(c) = c else { continue };
        m.handle_connected(ms(10_000 * (round + 1)), c);
        let outs = drain(&mut m);
        let first = outs.iter().find_map(|o| match o {
            Output::Dispatch { op, .. } => Some(*op),
            _ => None,
        });
        if let Some(op) = first {
            m.handle_op_result(ms(10_000 * (round + 1) + 1), op, c, OpResult::WrongServer);
            drain(&mut m);
        }
    }
    m.close(ms(1_000_000));
    drain(&mut m);
    m.finish();
    assert!(m.is_ok(), "{:#?}", report(&m));
}

#[test]
fn long_run_on_one_connection_compacts_lanes() {
    let (mut m, conn) = connected(Config::mongoose());
    let mut open = std::collections::VecDeque::new();
    for i in 0..200_000u32 {
        open.push_back(m.submit(ms(1), i, OpOptions::new()));
        drain(&mut m);
        // keep ~50 in flight, answer out of order sometimes
        if open.len() > 50 {
            let idx = (i as usize * 7) % open.len();
            let op = open.remove(idx).unwrap();
            if i % 3 == 0 {
                m.cancel(ms(1), op);
            } else {
                m.handle_op_result(ms(1), op, conn, OpResult::Ok);
            }
            drain(&mut m);
        }
    }
    m.handle_connection_lost(ms(2), conn, LossKind::Reset);
    drain(&mut m);
    m.close(ms(3));
    drain(&mut m);
    m.finish();
    assert!(
        m.is_ok(),
        "{:#?}",
        report(&m).iter().take(5).collect::<Vec<_>>()
    );
}

#[test]
fn end_of_clock() {
    let cfg = Config::mongoose()
        .to_builder()
        .op_deadline(Some(Duration::from_millis(10)))
        .build()
        .unwrap();
    let (mut m, conn) = connected(cfg);
    let late = Instant::from_micros(u64::MAX - 5);
    m.handle_timeout(late);
    drain(&mut m);
    let _a = m.submit(late, 1, OpOptions::new());
    drain(&mut m);
    m.handle_connection_lost(late, conn, LossKind::Reset);
    drain(&mut m);
    m.handle_timeout(Instant::MAX);
    drain(&mut m);
    m.close(Instant::MAX);
    drain(&mut m);
    m.finish();
    assert!(m.is_ok(), "{:#?}", report(&m));
}

#[test]
fn heartbeat_and_timeouts_config() {
    let cfg = Config::recommended();
    let (mut m, conn) = connected(cfg.clone());
    let mut t = 0u64;
    for i in 0..2000u32 {
        t += 137;
        let now = ms(t);
        match i % 7 {
            0 => {
                m.submit(now, i, OpOptions::new().retryable(i % 2 == 0));
            }
            1 => {
                m.handle_timeout(now);
            }
            2 => {
                if let Some(c) = m.connection() {
                    m.handle_heartbeat_ok(now, c.0);
                }
            }
            3 => {
                m.handle_timeout(ms(t + 5000));
                t += 5000;
            }
            4 => {
                m.handle_heartbeat(now, conn, OpResult::WrongServer);
            }
            _ => {
                m.handle_timeout(now);
            }
        }
        for o in drain(&mut m) {
            if let Output::Connect { conn, .. } = o {
                if i % 3 == 0 {
                    m.handle_connected(now, conn)
                } else {
                    m.handle_connect_failed(now, conn, ConnectFailure::TimedOut)
                };
                drain(&mut m);
            }
        }
    }
    m.close(ms(t));
    drain(&mut m);
    m.finish();
    assert!(
        m.is_ok(),
        "{:#?}",
        report(&m).iter().take(5).collect::<Vec<_>>()
    );
}

#[test]
fn watcher_fed_the_inputs_now_after_time_went_back() {
    use redial_check::Watcher;
    let cfg = Config::mongoose();
    let mut w = Watcher::new(&cfg);
    let mut m: Machine<u32> = Machine::new(cfg.clone(), 1, Instant::ZERO);
    let step = |w: &mut Watcher, m: &mut Machine<u32>| {
        let mut v = Vec::new();
        while let Some(o) = m.poll_output() {
            w.on_output(m.now(), &o);
            v.push(o);
        }
        w.after_step(m);
        v
    };
    let outs = step(&mut w, &mut m);
    let Some(Output::Connect { conn, .. }) = outs.first().cloned() else {
        panic!()
    };
    m.handle_connected(ms(100), conn);
    step(&mut w, &mut m);
    // The driver's clock goes back (allowed); the hook gets the machine's
    // clock after the call, as its docs say.
    let now = ms(50);
    let before = m.state();
    let opts = OpOptions::new().deadline(Duration::from_millis(60));
    let id = m.submit(now, 1, opts);
    w.on_submit(m.now(), id, &opts, before);
    step(&mut w, &mut m);
    w.on_timeout(ms(115));
    m.handle_timeout(ms(115));
    step(&mut w, &mut m);
    let v: Vec<String> = w.violations().map(|v| v.to_string()).collect();
    assert!(v.is_empty(), "{v:#?}");
}

#[test]
fn two_submits_then_one_drain() {
    let (mut m, conn) = connected(Config::mongoose());
    let a = m.submit(ms(1), 1, OpOptions::new());
    let b = m.submit(ms(1), 2, OpOptions::new());
    drain(&mut m);
    m.handle_op_result(ms(2), a, conn, OpResult::Ok);
    m.handle_op_result(ms(2), b, conn, OpResult::Ok);
    drain(&mut m);
    m.close(ms(3));
    drain(&mut m);
    m.finish();
    assert!(m.is_ok(), "{:#?}", report(&m));
}
