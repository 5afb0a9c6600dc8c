//! Every shipped timeline, replayed through the real driver (`redial::Client`
//! on a virtual clock against the simulated world), gives the fast loop's op
//! fates, events and world lines, with the invariant checker on in both.

use redial_sim::{RunOptions, Timeline, compare_with_fast_loop};

#[test]
fn shipped_timelines_give_identical_fates_through_the_driver() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/timelines");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("timelines dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 14, "the shipped timelines are here");
    let mut failures = Vec::new();
    for p in &paths {
        let text = std::fs::read_to_string(p).expect("read");
        let tl = Timeline::parse(&text, &p.display().to_string()).expect("valid timeline");
        let d = compare_with_fast_loop(&tl, &RunOptions::default());
        if !d.is_empty() {
            failures.push(format!(
                "{}:\n  {}\n  {}",
                p.display(),
                d.differences.join("\n  "),
                d.violations.join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
