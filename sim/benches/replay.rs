//! Simulator throughput: events per second on a seed timeline, and the
//! 24-hour / one-million-op / thousand-outage soak timeline.

use criterion::{Criterion, criterion_group, criterion_main};
use redial_sim::{Line, RunOptions, Timeline, run, soak_timeline};

fn seed_timeline(c: &mut Criterion) {
    let text = include_str!("../timelines/driver-defaults.toml");
    let tl = Timeline::parse(text, "driver-defaults.toml").expect("valid");
    c.bench_function("replay driver-defaults.toml (checked)", |b| {
        b.iter(|| run(&tl, &RunOptions::default(), |_| {}))
    });
}

fn soak(c: &mut Criterion) {
    let text = soak_timeline(24, 1_000_000, 1000);
    let tl = Timeline::parse(&text, "soak").expect("valid");
    let mut g = c.benchmark_group("soak 24h 1M ops 1000 outages");
    g.sample_size(10);
    for check in [false, true] {
        let opts = RunOptions {
            check,
            ..RunOptions::default()
        };
        let name = if check { "checked" } else { "unchecked" };
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut lines = 0u64;
                let s = run(&tl, &opts, |l: &Line| {
                    lines += u64::from(!matches!(l, Line::World { .. }));
                });
                assert_eq!(s.submitted, 1_000_000);
                lines
            })
        });
    }
    g.finish();
}

criterion_group!(benches, seed_timeline, soak);
criterion_main!(benches);
