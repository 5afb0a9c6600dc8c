//! The command line: exit codes and error positions for bad timelines.

use std::process::Command;

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_redial-sim"))
}

/// Writes `text` to a temp file, replays it, returns (exit code, stderr, path).
fn replay(name: &str, text: &str) -> (i32, String, String) {
    let dir = std::env::temp_dir().join(format!("redial-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("temp file");
    let out = sim()
        .args(["replay", path.to_str().expect("utf-8 path")])
        .output()
        .expect("runs");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stderr).to_string(),
        path.display().to_string(),
    )
}

fn assert_bad(name: &str, text: &str, line: usize, col: usize, words: &str) {
    let (code, stderr, path) = replay(name, text);
    assert_eq!(code, 2, "{name}: {stderr}");
    let at = format!("{path}:{line}:{col}: ");
    assert!(stderr.contains(&at), "{name}: expected `{at}` in {stderr}");
    assert!(
        stderr.contains(words),
        "{name}: expected `{words}` in {stderr}"
    );
}

#[test]
fn syntax_error() {
    assert_bad(
        "syntax.toml",
        "seed = 1\n[config\npreset = \"mongoose\"\n",
        2,
        8,
        "",
    );
}

#[test]
fn unknown_key() {
    assert_bad(
        "unknown-key.toml",
        "[config]\npreset = \"mongoose\"\nbuffer_max_entires = 3\n",
        3,
        1,
        "unknown field `buffer_max_entires`",
    );
}

#[test]
fn negative_duration() {
    assert_bad(
        "negative.toml",
        "[[step]]\nat = \"1s\"\nserver = \"down\"\nfor = \"-2s\"\n",
        4,
        7,
        "negative",
    );
    assert_bad(
        "negative-int.toml",
        "[network]\nlatency = -5\n",
        2,
        11,
        "negative",
    );
}

#[test]
fn unknown_endpoint() {
    assert_bad(
        "endpoint.toml",
        "[[endpoint]]\nname = \"db.0\"\n\n[[step]]\nat = \"1s\"\nserver = \"down\"\nendpoint = \"db.9\"\n",
        7,
        12,
        "unknown endpoint `db.9`",
    );
}

#[test]
fn unknown_preset() {
    assert_bad(
        "preset.toml",
        "[config]\npreset = \"mongo\"\n",
        2,
        10,
        "unknown preset `mongo`",
    );
}

#[test]
fn config_error_names_the_field_and_its_line() {
    assert_bad(
        "config.toml",
        "[config]\npreset = \"mongoose\"\nbuffer_max_entries = -3\n",
        3,
        22,
        "buffer_max_entries",
    );
}

#[test]
fn missing_file_is_bad_input() {
    let out = sim()
        .args(["replay", "/nonexistent/redial.toml"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn matrix_prints_six_rows_and_succeeds() {
    let out = sim().arg("matrix").output().expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let rows = text
        .lines()
        .filter(|l| l.starts_with("true ") || l.starts_with("false "))
        .count();
    assert_eq!(rows, 6, "{text}");
}

#[test]
fn help_has_examples() {
    for args in [
        &["--help"][..],
        &["replay", "--help"],
        &["matrix", "--help"],
    ] {
        let out = sim().args(args).output().expect("runs");
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Examples:"),
            "{args:?}"
        );
    }
}

#[test]
fn compare_and_explore_run() {
    let tl = concat!(env!("CARGO_MANIFEST_DIR"), "/timelines/restart-db0.toml");
    let out = sim()
        .args([
            "compare",
            tl,
            "--presets",
            "mongodb-legacy,fail-fast,recommended",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("no_connection") && text.contains("time to recovery"),
        "{text}"
    );
    let out = sim()
        .args(["compare", tl, "--presets", "nope"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let out = sim()
        .args(["explore", "--runs", "300", "--seed", "11"])
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn json_replay_ends_with_the_summary() {
    let tl = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/timelines/mongoose-fail-fast.toml"
    );
    let out = sim()
        .args(["replay", tl, "--format", "json", "--seed", "3"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().expect("a summary line");
    assert!(last.starts_with("{\"type\":\"summary\",\"submitted\":2,\"ok\":1,\"failed\":1,\"pending\":0,\"errors\":{\"no_connection\":1}"), "{last}");
    for line in text.lines() {
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    }
}

#[test]
fn zero_cancel_after_is_refused() {
    assert_bad(
        "cancel.toml",
        "[[step]]\nat = \"1s\"\nsubmit = \"q\"\ncancel_after = \"0ms\"\n",
        3,
        10,
        "`cancel_after` must be greater than zero",
    );
    assert_bad(
        "cancel-server.toml",
        "[[step]]\nat = \"1s\"\nserver = \"down\"\ncancel_after = \"5ms\"\n",
        2,
        6,
        "`cancel_after` only applies to `submit` steps",
    );
}

#[test]
fn replay_through_the_driver_and_diff() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/timelines/app-callers-give-up.toml"
    );
    let fast = sim().args(["replay", file]).output().expect("runs");
    let driver = sim()
        .args(["replay", file, "--through-driver"])
        .output()
        .expect("runs");
    assert_eq!(driver.status.code(), Some(0));
    let lines = |o: &std::process::Output| {
        let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        // Lines stamped with the same instant may interleave differently.
        v.sort();
        v
    };
    assert_eq!(lines(&fast), lines(&driver));
    let diff = sim()
        .args(["replay", file, "--diff"])
        .output()
        .expect("runs");
    assert_eq!(diff.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&diff.stdout).contains("agree"));
}

#[test]
fn explore_through_the_driver() {
    let out = sim()
        .args(["explore", "--runs", "200", "--through-driver"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("the driver agreed with the fast loop on every one"),
        "{stdout}"
    );
}

#[test]
fn backoff_keys_tune_the_presets_shape_or_are_refused() {
    use redial_sim::Timeline;
    use redial_sim::core::{Backoff, Duration};
    // They used to be ignored unless `backoff` was set too.
    let tl = Timeline::parse(
        "[config]\npreset = \"recommended\"\nbackoff_max = \"1s\"\n",
        "t.toml",
    )
    .expect("valid");
    assert_eq!(
        tl.config.backoff(),
        Backoff::Exponential {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_secs(1),
        }
    );
    assert_bad(
        "max-on-constant.toml",
        "[config]\npreset = \"mongodb-legacy\"\nbackoff_max = \"1s\"\n",
        3,
        15,
        "`backoff_max` does not apply to a constant backoff",
    );
    assert_bad(
        "multiplier-on-linear.toml",
        "[config]\nbackoff = \"linear\"\nbackoff_multiplier = 3.0\n",
        3,
        22,
        "`backoff_multiplier` does not apply to a linear backoff",
    );
}

#[test]
fn replay_exits_quietly_on_a_closed_pipe() {
    use std::io::{BufRead, BufReader};
    let dir = std::env::temp_dir().join(format!("redial-sim-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("long.toml");
    // One op per ms for an hour: millions of lines if it kept writing.
    std::fs::write(
        &path,
        "until = \"1h\"\n[[workload]]\nsubmit = \"q\"\nevery = \"1ms\"\nuntil = \"1h\"\n",
    )
    .expect("write");
    let mut child = sim()
        .args(["replay", path.to_str().expect("utf-8")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("a line");
    assert!(first.contains("connected"), "{first}");
    // The reader is gone (as with `| head -1`).
    let out = child.wait_with_output().expect("waits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn names_cannot_forge_transcript_lines_and_big_numbers_are_named() {
    assert_bad(
        "forged.toml",
        "[[step]]\nat = \"1s\"\nsubmit = \"a\\n[   9.999s] Finished forged\"\n",
        3,
        10,
        "a label must not contain control characters",
    );
    assert_bad(
        "forged-endpoint.toml",
        "[[endpoint]]\nname = \"db\\r0\"\n",
        2,
        8,
        "an endpoint name must not contain control characters",
    );
    assert_bad(
        "tries.toml",
        "[config]\nreconnect_tries = 18446744073709551615\n",
        2,
        19,
        "reconnect_tries 18446744073709551615 is out of range",
    );
}

#[test]
fn durations_are_bounded_in_both_forms() {
    assert_bad(
        "huge-int.toml",
        "until = 18446744073709551615\n",
        1,
        9,
        "durations must be at most 100 years",
    );
    assert_bad(
        "huge-str.toml",
        "until = \"1000000h\"\n",
        1,
        9,
        "durations must be at most 100 years",
    );
}

#[test]
fn explore_pins_a_config_from_a_timeline_file() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/timelines/restart-db0.toml");
    let out = sim()
        .args(["explore", "--runs", "300", "--config", file])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("configuration pinned from"), "{stdout}");
    // A bad file is refused with its position, before anything runs.
    let (code, stderr, path) = replay("bad-config.toml", "[config]\nbuffer_max_entries = \"x\"\n");
    assert_eq!(code, 2);
    let out = sim()
        .args(["explore", "--runs", "10", "--config", &path])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{path}:2:")), "{err} / {stderr}");
}

/// `derive-timeline` of a shipped trace is the shipped derived timeline
/// (same trace, same bytes), `compare --config` runs it under the recorded
/// config and presets taken whole, and `replay --config` under another.
#[test]
fn derive_timeline_then_compare_and_replay_under_another_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    let trace = format!("{root}/traces/redis-kill-restart.jsonl");
    let shipped = format!("{root}/traces/redis-kill-restart.derived.toml");
    let out = sim()
        .args(["derive-timeline", &trace])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let derived = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(
        derived,
        std::fs::read_to_string(&shipped).expect("shipped"),
        "regenerate: redial-sim derive-timeline sim/traces/redis-kill-restart.jsonl -o sim/traces/redis-kill-restart.derived.toml"
    );
    let out = sim()
        .args(["compare", &shipped, "--config"])
        .arg(format!("{shipped},fail-fast"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout);
    // Under the recorded config every op succeeds, as it did; fail-fast
    // fails the ops issued while the server was down.
    assert!(table.contains("| 236 ok "), "{table}");
    assert!(table.contains("no_connection"), "{table}");
    let out = sim()
        .args(["replay", &shipped, "--config", "fail-fast"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no_connection"));
    // A bad trace: the error names its line; exit 2.
    let dir = std::env::temp_dir().join(format!("redial-sim-derive-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("bad.jsonl");
    let text = std::fs::read_to_string(&trace).expect("trace");
    let mut lines: Vec<&str> = text.lines().collect();
    lines[2] = "{\"t\":1136,\"in\":\"connected\"}";
    std::fs::write(&bad, lines.join("\n")).expect("write");
    let out = sim()
        .args(["derive-timeline", bad.to_str().expect("utf-8")])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3:"), "{err}");
    // `compare` needs --presets or --config.
    let out = sim().args(["compare", &shipped]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
}
