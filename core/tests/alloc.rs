//! Allocation accounting with a counting global allocator (dhat, testing
//! mode): the steady-state op cycle allocates nothing, and the heap cost of
//! a buffered op is measured and printed (a figure for BENCHMARKS.md, not a
//! timing).

use redial_core::{
    BufferPolicy, Config, ConnId, Duration, Instant, LossKind, Machine, OpOptions, OpResult, Output,
};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn connected(config: Config) -> (Machine<u64>, ConnId) {
    let mut m = Machine::new(config, 1, Instant::ZERO);
    let Some(Output::Connect { conn, .. }) = m.poll_output() else {
        panic!("a new machine asks for a connection first")
    };
    m.handle_connected(Instant::ZERO, conn);
    while m.poll_output().is_some() {}
    (m, conn)
}

fn cycles(m: &mut Machine<u64>, conn: ConnId, from: u64, n: u64, opts: OpOptions) -> u64 {
    let mut ok = 0;
    for t in from..from + n {
        let now = Instant::from_millis(t); // one op per virtual millisecond
        let id = m.submit(now, t, opts);
        while m.poll_output().is_some() {}
        m.handle_op_result(now, id, conn, OpResult::Ok);
        while let Some(out) = m.poll_output() {
            ok += u64::from(matches!(out, Output::Complete(c) if c.result.is_ok()));
        }
        // Heartbeats keep coming in steady state: answer them.
        m.handle_timeout(now);
        while let Some(out) = m.poll_output() {
            if let Output::Heartbeat { conn } = out {
                m.handle_heartbeat_ok(now, conn);
            }
        }
    }
    ok
}

// One test function: dhat's testing profiler is process-global.
#[test]
fn steady_state_allocates_nothing_and_buffered_op_cost_is_measured() {
    let _profiler = dhat::Profiler::builder().testing().build();

    for (name, config, opts) in [
        ("recommended", Config::recommended(), OpOptions::new()),
        (
            "recommended+deadline",
            Config::recommended(),
            OpOptions::new().deadline(Duration::from_secs(5)),
        ),
        ("mongodb_legacy", Config::mongodb_legacy(), OpOptions::new()),
    ] {
        let (mut m, conn) = connected(config);
        // Warm up: slab, output queue, deadline heap reach their working size.
        assert_eq!(cycles(&mut m, conn, 1, 10_000, opts), 10_000);
        let before = dhat::HeapStats::get();
        // 10 more virtual seconds of ops, heartbeats included.
        assert_eq!(cycles(&mut m, conn, 10_001, 10_000, opts), 10_000);
        let after = dhat::HeapStats::get();
        assert_eq!(
            after.total_blocks - before.total_blocks,
            0,
            "{name}: the steady-state cycle allocated"
        );
    }

    // Heap bytes per buffered op (payload u64), unbounded buffer.
    let config = Config::mongodb_legacy()
        .to_builder()
        .buffer(BufferPolicy::Unbounded)
        .build()
        .expect("valid");
    let (mut m, conn) = connected(config);
    m.handle_connection_lost(Instant::from_secs(1), conn, LossKind::Reset);
    while m.poll_output().is_some() {}
    let before = dhat::HeapStats::get().curr_bytes;
    let n = 100_000u64;
    for i in 0..n {
        m.submit(Instant::from_secs(1), i, OpOptions::new());
    }
    assert_eq!(m.buffered() as u64, n);
    let per_op = (dhat::HeapStats::get().curr_bytes - before) as f64 / n as f64;
    println!("heap bytes per buffered op (u64 payload, 100k ops): {per_op:.1}");
    assert!(per_op > 0.0, "buffered ops live on the heap");
}
