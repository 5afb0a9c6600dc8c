//! Benchmarks of the core machine (issue 6, part 1).
//!
//! - `op_cycle`: one op's full cycle in steady state: submit → dispatch →
//!   complete, outputs drained;
//! - `outage_10k`: a connection loss with 10,000 ops then buffered, and the
//!   reconnect that flushes (dispatches) them all.
//!
//! Bytes per buffered op and the zero-allocation steady state are measured
//! by `core/tests/alloc.rs` (a counting allocator), not here.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use redial_core::{
    BufferPolicy, Config, ConnId, Duration, Instant, LossKind, Machine, OpOptions, OpResult, Output,
};

fn connected(config: Config) -> (Machine<u64>, ConnId) {
    let mut m = Machine::new(config, 1, Instant::ZERO);
    let Some(Output::Connect { conn, .. }) = m.poll_output() else {
        unreachable!("a new machine asks for a connection first")
    };
    m.handle_connected(Instant::ZERO, conn);
    while m.poll_output().is_some() {}
    (m, conn)
}

fn cycle(m: &mut Machine<u64>, conn: ConnId, now: Instant, opts: OpOptions) {
    let id = m.submit(now, 7, opts);
    while let Some(out) = m.poll_output() {
        black_box(&out);
    }
    m.handle_op_result(now, id, conn, OpResult::Ok);
    while let Some(out) = m.poll_output() {
        black_box(&out);
    }
}

fn op_cycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("op_cycle");
    for (name, config, opts) in [
        ("recommended", Config::recommended(), OpOptions::new()),
        (
            "recommended_with_deadline",
            Config::recommended(),
            OpOptions::new().deadline(Duration::from_secs(5)),
        ),
        ("mongodb_legacy", Config::mongodb_legacy(), OpOptions::new()),
    ] {
        let (mut m, conn) = connected(config);
        let mut t = 0u64;
        // Warm the slab, queues and heap so the loop measures steady state.
        for _ in 0..1000 {
            t += 1;
            cycle(&mut m, conn, Instant::from_micros(t), opts);
        }
        g.bench_function(name, |b| {
            b.iter(|| {
                t += 1;
                cycle(&mut m, conn, Instant::from_micros(t), opts);
            })
        });
    }
    g.finish();
}

fn outage_10k(c: &mut Criterion) {
    let config = Config::mongodb_legacy()
        .to_builder()
        .buffer(BufferPolicy::Unbounded)
        .build()
        .expect("valid");
    c.bench_function("outage_10k_buffered_then_flush", |b| {
        b.iter_batched(
            || connected(config.clone()),
            |(mut m, conn)| {
                let mut now = Instant::from_secs(1);
                m.handle_connection_lost(now, conn, LossKind::Reset);
                for i in 0..10_000u64 {
                    m.submit(now, i, OpOptions::new());
                }
                while m.poll_output().is_some() {}
                now = m.poll_timeout().expect("a reconnect is scheduled").0;
                m.handle_timeout(now);
                let Some(Output::Connect { conn, .. }) = m.poll_output() else {
                    unreachable!("the reconnect starts an attempt")
                };
                m.handle_connected(now, conn);
                let mut dispatched = 0;
                while let Some(out) = m.poll_output() {
                    dispatched += usize::from(matches!(out, Output::Dispatch { .. }));
                }
                assert_eq!(dispatched, 10_000);
                m
            },
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, op_cycle, outage_10k);
criterion_main!(benches);
