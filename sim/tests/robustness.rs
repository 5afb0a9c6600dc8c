//! Mangled timelines never panic the parser or the runner: they parse and
//! run, or give an error with a position.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redial_sim::{RunOptions, Timeline, run};

#[test]
fn mutated_timelines_parse_or_fail_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("timelines");
    let mut sources: Vec<String> = std::fs::read_dir(dir)
        .expect("timelines dir")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("readable"))
        .collect();
    sources.sort();
    let pieces = [
        "\"",
        "=",
        "[",
        "]",
        "\n",
        "-1",
        "99999999999999999999",
        "\"-5s\"",
        "0",
        "\"1.5\"",
        "\"unlimited\"",
        "[[step]]\nat = 0\n",
        "for = \"1h\"\n",
        "count = 4294967295\n",
        "é",
        "\"0.0000001s\"",
        "every = 0\n",
        "\"blackhole\"",
        "true",
    ];
    let mut rng = StdRng::seed_from_u64(2024);
    let opts = RunOptions {
        max_events: Some(20_000),
        ..RunOptions::default()
    };
    let (mut ok, mut bad) = (0, 0);
    let n: usize = std::env::var("REDIAL_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    for i in 0..n {
        let mut text = sources[i % sources.len()].clone();
        for _ in 0..rng.random_range(1..4) {
            let mut at = rng.random_range(0..=text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            if rng.random_bool(0.5) {
                text.insert_str(at, pieces[rng.random_range(0..pieces.len())]);
            } else {
                let mut end = (at + rng.random_range(0..8)).min(text.len());
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.replace_range(at..end, "");
            }
        }
        match Timeline::parse(&text, "m.toml") {
            Ok(tl) => {
                ok += 1;
                let s = run(&tl, &opts, |_| {});
                assert!(s.violations.is_empty(), "{text}\n{:?}", s.violations);
            }
            Err(e) => {
                bad += 1;
                assert!(e.line >= 1 && e.column >= 1, "{e}");
                assert!(e.line <= text.lines().count().max(1) + 1, "{e}\n{text}");
            }
        }
    }
    assert!(ok > 100 && bad > 100, "ok {ok}, bad {bad}");
}
