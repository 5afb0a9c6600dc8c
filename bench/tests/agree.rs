//! One short scenario per peer (every client connection killed 1 s into
//! a 2 s workload) through the agreement harness: every op gets exactly
//! one class on both sides and its executions are counted. Not an
//! agreement assertion: agreement is a measurement (`cargo run --release
//! --bin agree`).
//!
//! Starts its own private `redis-server` on a free loopback port (SKIPPED
//! when the binary is missing; with `REDIAL_REQUIRE_SERVERS=1` it fails
//! instead) and kills only that pid.

use redial_bench::Redis;
use redial_bench::agree::{self, Class, IOREDIS_PEERS, PEERS, Peer, Reported, SERVER_ARGS};

#[test]
fn connection_kill_gives_every_op_one_class_and_counts_executions() {
    connection_kill_checks(&PEERS);
}

/// The same with the real ioredis (Node.js): only with
/// `REDIAL_AGREE_IOREDIS=1` (needs `node` and `cd bench/agree && npm
/// ci`); otherwise it passes without running, whatever
/// `REDIAL_REQUIRE_SERVERS` says.
#[test]
fn connection_kill_under_ioredis_when_asked() {
    if std::env::var("REDIAL_AGREE_IOREDIS").as_deref() != Ok("1") {
        eprintln!("SKIPPED: ioredis agreement (set REDIAL_AGREE_IOREDIS=1 to run it)");
        return;
    }
    if let Err(e) = agree::ioredis_available() {
        panic!("REDIAL_AGREE_IOREDIS=1 but {e}: run `cd bench/agree && npm ci`");
    }
    connection_kill_checks(&IOREDIS_PEERS);
}

fn connection_kill_checks(peers: &[Peer]) {
    let Some(mut server) = Redis::start_with(&SERVER_ARGS) else {
        return;
    };
    let schedule = agree::quick_connection_kill();
    let tag = format!("test-{}", std::process::id());
    let result = agree::run_scenario(&mut server, &schedule, peers, &tag).expect("scenario runs");
    assert_eq!(result.rows.len(), peers.len());
    assert!(
        result.marks.killed >= 1,
        "CLIENT KILL closed the peers' connections"
    );
    for (row, detail) in result.rows.iter().zip(&result.detail) {
        let n = schedule.ops;
        assert_eq!(detail.real.len() as u64, n, "{}", row.peer);
        assert_eq!(detail.sim.len() as u64, n, "{}", row.peer);
        assert_eq!(row.total, n);
        for c in [&row.real, &row.sim] {
            assert_eq!(
                c.ok + c.failed + c.hung + c.duplicated,
                n,
                "{}: {c:?}",
                row.peer
            );
            assert!(c.failed_ran <= c.failed);
        }
        assert_eq!(detail.strays, 0, "{}: entries that are no op", row.peer);
        // The server stayed up and fsyncs every write: whatever was
        // acknowledged ran, and nothing ran that was not submitted.
        assert_eq!(row.acked_missing, 0, "{}", row.peer);
        for (i, op) in detail.real.iter().enumerate() {
            match op.class() {
                Class::Ok => assert_eq!(op.executions, 1, "{} op {i}", row.peer),
                Class::Duplicated => assert!(op.executions >= 2),
                Class::Failed | Class::Hung => assert!(op.executions <= 1),
            }
            assert_eq!(
                op.took_us.is_none(),
                op.reported == Reported::Hung,
                "{} op {i}",
                row.peer
            );
        }
        let diffs: u64 = row.differences.iter().map(|d| d.count).sum();
        assert_eq!(row.agree + diffs, n, "{}", row.peer);
        assert!(
            row.violations.is_empty(),
            "{}: {:?}",
            row.peer,
            row.violations
        );
    }
    let md = agree::render_markdown(&[result]);
    assert_eq!(md.matches("| connection-kill-short |").count(), peers.len());
    println!("{md}");
}

#[test]
fn the_timeline_of_a_schedule_parses_under_every_preset() {
    let marks = agree::Marks {
        sent_us: 2_000_000,
        fault_us: 2_000_100,
        kill_us: 3_000_100,
        back_us: 4_010_000,
        killed: 0,
    };
    for s in agree::schedules()
        .iter()
        .chain([&agree::quick_connection_kill()])
    {
        for p in PEERS.iter().chain(&IOREDIS_PEERS) {
            let (ops, violations) = agree::run_sim(s, p.preset, &marks).expect("parses");
            assert_eq!(ops.len() as u64, s.ops);
            assert!(violations.is_empty(), "{violations:?}");
            // Deterministic: the same timeline gives the same fates.
            assert_eq!(agree::run_sim(s, p.preset, &marks).expect("parses").0, ops);
        }
    }
    assert!(agree::run_sim(&agree::quick_connection_kill(), "no-such-preset", &marks).is_err());
}
