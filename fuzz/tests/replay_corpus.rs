//! Replays the committed corpus of every fuzz target through the same
//! library functions the fuzzer runs, on the stable toolchain, so a bug
//! found once stays found. Then a few thousand pseudo-random inputs, so the
//! targets are exercised even where the corpus is thin.

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("machine", redial_fuzz::machine),
    ("timeline", redial_fuzz::timeline),
    ("driver", redial_fuzz::driver),
];

fn replay(name: &str, target: Target) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for path in &files {
        let data = std::fs::read(path).expect("corpus file");
        let run = std::panic::catch_unwind(|| target(&data));
        assert!(
            run.is_ok(),
            "{name}: corpus input {} fails; reproduce with \
             `RUSTC_BOOTSTRAP=1 cargo fuzz run {name} {}`",
            path.display(),
            path.display()
        );
    }
    files.len()
}

#[test]
fn corpus_replays_cleanly() {
    for (name, target) in TARGETS {
        let n = replay(name, *target);
        assert!(n > 0, "{name}: empty corpus");
        println!("{name}: {n} corpus inputs replayed");
    }
}

/// SplitMix64, so the inputs are the same on every run.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

#[test]
fn pseudo_random_inputs() {
    for (name, target) in TARGETS {
        for seed in 0..2000u64 {
            let data = bytes(seed, 64 + (seed as usize % 1500));
            let run = std::panic::catch_unwind(|| target(&data));
            assert!(
                run.is_ok(),
                "{name}: pseudo-random input {seed} fails: {data:?}"
            );
        }
    }
}
