//! Hostile review of the peer knobs (`retry_lost`, `fail_buffered_after`,
//! `extra_jitter`, `fail_unreachable_deadlines`), the peer presets, the
//! "may have run twice" marking and the pictures: regression tests for the
//! defects it found.

use std::process::Command;

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_redial-sim"))
}

fn dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "redial-sim-hostile-knobs-{tag}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

const TIMELINE: &str = r#"[config]
preset = "ioredis-v5"

[[step]]
at = "0ms"
submit = "get"

[[step]]
at = "100ms"
server = "crash"
for = "200ms"
"#;

/// `--svg FILE` creates (truncates) its file before the run. Given the
/// timeline itself (or a `--config` file), it used to replace the user's
/// timeline with the picture, silently, exit 0. It is refused now (exit 2),
/// and the input is left as it was.
#[test]
fn svg_never_overwrites_an_input_file() {
    let d = dir("self");
    let file = d.join("t.toml");
    let file = file.to_str().unwrap();
    let cfg = d.join("c.toml");
    let cfg = cfg.to_str().unwrap();
    std::fs::write(file, TIMELINE).unwrap();
    std::fs::write(cfg, "[config]\npreset = \"lettuce\"\n").unwrap();
    // The same file spelt another way still counts.
    let dotted = format!("{}/./t.toml", d.to_str().unwrap());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["replay", file, "--svg", file], file),
        (vec!["replay", file, "--svg", &dotted], file),
        (vec!["replay", file, "--config", cfg, "--svg", cfg], cfg),
        (
            vec!["compare", file, "--presets", "ioredis-v5", "--svg", file],
            file,
        ),
        (
            vec!["compare", file, "--config", cfg, "--diff", "--svg", cfg],
            cfg,
        ),
    ];
    for (args, victim) in cases {
        let before = std::fs::read_to_string(victim).unwrap();
        let out = sim().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("refusing to overwrite"),
            "{args:?}: {stderr}"
        );
        assert_eq!(
            std::fs::read_to_string(victim).unwrap(),
            before,
            "{args:?} clobbered {victim}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: nothing ran");
    }
    // Another file beside them is written as before.
    let pic = d.join("p.svg");
    let out = sim()
        .args(["replay", file, "--svg", pic.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(std::fs::read_to_string(&pic).unwrap().starts_with("<?xml"));
    let _ = std::fs::remove_dir_all(&d);
}

/// `explore` drew its base from the four original presets only and never
/// an op that opts out of `retry_lost` (`retryable = false`): the peer
/// presets (unlimited blind resends, `fail_buffered_after = 20`, extra
/// jitter, deadlines left to wait, redis-rs's 1 ms cool-down) were never
/// explored unless pinned with `--config`. Every preset is drawn now, and
/// ops that say no to the resend.
#[test]
fn explore_draws_the_peer_presets_and_ops_that_opt_out() {
    use redial_sim::core::Preset;
    use redial_sim::explore::Scenario;
    let scenarios: Vec<Scenario> = (0..3000).map(Scenario::random).collect();
    for p in Preset::ALL {
        let line = format!("preset = \"{}\"", p.name());
        assert!(
            scenarios.iter().any(|s| s.config.first() == Some(&line)),
            "no scenario drew {line}"
        );
    }
    assert!(
        scenarios
            .iter()
            .any(|s| s.steps.iter().any(|t| t.contains("retryable = false"))),
        "no op opts out of retry_lost"
    );
    // And what it draws still runs clean (a sample; `explore` runs more).
    let e = redial_sim::explore::explore(3000, 0, |_| {});
    assert!(e.failures.is_empty(), "{:?}", e.failures);
    assert!(e.skipped < 300, "{} of 3000 configs refused", e.skipped);
}
