//! Times the soak timeline and reports events per second and peak memory.
//!
//! `cargo run --release -p redial-sim --example soak -- [HOURS] [OPS] [OUTAGES] [--check]`

use std::time::Instant;

use redial_sim::{RunOptions, Timeline, run, soak_timeline};

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.iter().any(|a| a == "--check");
    let nums: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let (hours, ops, outages) = (
        nums.first().copied().unwrap_or(24),
        nums.get(1).copied().unwrap_or(1_000_000),
        nums.get(2).copied().unwrap_or(1000),
    );
    let text = soak_timeline(hours, ops, outages);
    let tl = Timeline::parse(&text, "soak").expect("valid soak timeline");
    let opts = RunOptions {
        check,
        ..RunOptions::default()
    };
    let started = Instant::now();
    let mut lines = 0u64;
    let s = run(&tl, &opts, |_| lines += 1);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{hours} h, {ops} ops, {outages} outages (checker {}): {:.3} s wall, {} events ({:.2} M events/s), {} lines, {} ok, {} failed, {} pending, {} violations, peak RSS {} KiB",
        if check { "on" } else { "off" },
        secs,
        s.events,
        s.events as f64 / secs / 1e6,
        lines,
        s.ok,
        s.failed,
        s.pending,
        s.violations.len(),
        peak_rss_kib().map_or("?".into(), |k| k.to_string())
    );
}
