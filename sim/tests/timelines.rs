//! Every shipped timeline replays byte-identically twice and matches its
//! golden transcript (text and JSON). `REDIAL_BLESS=1 cargo test -p
//! redial-sim --test timelines` rewrites the goldens.

use std::path::{Path, PathBuf};

use redial_sim::{Format, RunOptions, Timeline, run_formatted};

fn timelines() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("timelines");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("sim/timelines exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn shipped_timelines_match_their_goldens_and_replay_identically() {
    let bless = std::env::var_os("REDIAL_BLESS").is_some_and(|v| v == "1");
    let golden_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let files = timelines();
    assert!(
        files.len() >= 14,
        "expected the seed scenarios, found {files:?}"
    );
    let mut mismatches = Vec::new();
    for file in files {
        let stem = file
            .file_stem()
            .expect("a file name")
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(&file).expect("readable timeline");
        let rel = format!("sim/timelines/{stem}.toml");
        let tl = Timeline::parse(&text, &rel).unwrap_or_else(|e| panic!("{e}"));
        for (format, ext) in [(Format::Text, "txt"), (Format::Json, "jsonl")] {
            let (first, summary) = run_formatted(&tl, &RunOptions::default(), format);
            let (second, _) = run_formatted(&tl, &RunOptions::default(), format);
            assert_eq!(first, second, "{rel} ({ext}) is not deterministic");
            assert!(
                summary.violations.is_empty(),
                "{rel}: invariant violations: {:?}",
                summary.violations
            );
            let golden = golden_dir.join(format!("{stem}.{ext}"));
            if bless {
                std::fs::write(&golden, &first).expect("writable golden");
                continue;
            }
            match std::fs::read_to_string(&golden) {
                Ok(expected) if expected == first => {}
                Ok(_) => mismatches.push(format!("{} differs", golden.display())),
                Err(_) => mismatches.push(format!("{} is missing", golden.display())),
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{mismatches:#?}\nrun `REDIAL_BLESS=1 cargo test -p redial-sim --test timelines` and review the diff"
    );
}

#[test]
fn seed_changes_jittered_runs_only() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("timelines/restart-db0.toml");
    let text = std::fs::read_to_string(file).expect("readable timeline");
    let tl = Timeline::parse(&text, "restart-db0.toml").expect("valid");
    let a = run_formatted(&tl, &RunOptions::default(), Format::Json).0;
    let b = run_formatted(
        &tl,
        &RunOptions {
            seed: Some(99),
            ..RunOptions::default()
        },
        Format::Json,
    )
    .0;
    assert_ne!(a, b, "full jitter must depend on the seed");
}
