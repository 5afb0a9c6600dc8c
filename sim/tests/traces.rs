//! Flight recorder traces: recorded through the real driver under the
//! simulated world, they replay exactly; broken ones are reported with
//! their line, never a panic.

use redial_sim::{RunOptions, Timeline, record_through_driver, trace};

fn timelines() -> Vec<(String, Timeline)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/timelines");
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let tl = Timeline::parse(&text, &name).unwrap();
            (name, tl)
        })
        .collect()
}

fn recorded(tl: &Timeline) -> String {
    let opts = RunOptions {
        check: false,
        ..RunOptions::default()
    };
    record_through_driver(tl, &opts).1
}

#[test]
fn every_shipped_timeline_replays_exactly_through_the_driver() {
    for (name, tl) in timelines() {
        let text = recorded(&tl);
        let lines = text.lines().count();
        assert!(lines > 2, "{name}: only {lines} lines");
        let r = trace::replay(&text).unwrap_or_else(|m| panic!("{name}: {m}"));
        assert_eq!(r.records.len() + 1, lines, "{name}");
        let (transcript, summary) = trace::transcript(&r).unwrap();
        // The trace's op outcomes are the driver run's.
        let (_, run) = redial_sim::run_through_driver_formatted(
            &tl,
            &RunOptions::default(),
            redial_sim::Format::Text,
        );
        assert_eq!(
            (
                summary.submitted,
                summary.ok,
                summary.failed,
                &summary.errors
            ),
            (run.submitted, run.ok, run.failed, &run.errors),
            "{name}"
        );
        assert!(!transcript.is_empty(), "{name}");
    }
}

#[test]
fn broken_traces_name_their_line() {
    let (_, tl) = timelines()
        .into_iter()
        .find(|(n, _)| n == "restart-db0.toml")
        .unwrap();
    let text = recorded(&tl);
    let lines: Vec<&str> = text.lines().collect();
    // Truncated: the outputs of the last input are missing.
    let cut = lines.iter().rposition(|l| l.contains("\"in\"")).unwrap();
    let truncated = lines[..=cut].join("\n");
    let m = trace::replay(&truncated).unwrap_err();
    assert_eq!(m.line, cut + 2, "{m}");
    // Edited: a connect's timeout changed.
    let i = lines
        .iter()
        .position(|l| l.contains("\"dispatch\""))
        .unwrap();
    let mut edited: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    edited[i] = edited[i].replace("\"dispatch\"", "\"heartbeat\"");
    let m = trace::replay(&edited.join("\n")).unwrap_err();
    assert_eq!(m.line, i + 1, "{m}");
    // Another format version.
    let other = text.replacen("\"redial_trace\":1", "\"redial_trace\":2", 1);
    let m = trace::replay(&other).unwrap_err();
    assert_eq!(m.line, 1);
    assert!(m.to_string().contains("version 2"), "{m}");
    // Garbage.
    for g in ["", "hello", "{}", "[1,2]", "{\"redial_trace\":1}"] {
        let m = trace::replay(g).unwrap_err();
        assert_eq!(m.line, 1, "{g:?}: {m}");
    }
}

#[test]
fn random_byte_edits_never_panic_and_are_caught() {
    let (_, tl) = timelines()
        .into_iter()
        .find(|(n, _)| n == "pg-reset.toml")
        .unwrap();
    let text = recorded(&tl);
    let bytes = text.as_bytes();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut caught = 0;
    for _ in 0..400 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut b = bytes.to_vec();
        let at = (x % b.len() as u64) as usize;
        let new = b"0123456789{}\":,x\n"[(x >> 32) as usize % 17];
        if b[at] == new {
            continue;
        }
        b[at] = new;
        let edited = String::from_utf8_lossy(&b);
        // Never a panic; almost every edit is caught (one that turns a
        // digit of the header's seed into another still replays if the
        // run never draws jitter, for instance).
        if trace::replay(&edited).is_err() {
            caught += 1;
        }
    }
    assert!(caught > 300, "only {caught} of 400 edits caught");
}

/// The derived timeline of every shipped timeline's driver trace, replayed
/// under the recorded config, against the trace's outcomes. Here the
/// world is known (it is the timeline), so the figure measures the
/// derivation: all 283 ops agree today; each shipped timeline must agree
/// on at least 80% of its ops, and all of them together on at least 98%
/// (a margin for a timing race a future change of the world might bring,
/// not for a derivation bug).
#[test]
fn derived_timelines_predict_the_recorded_outcomes() {
    let (mut agree, mut all) = (0, 0);
    for (name, tl) in timelines() {
        let text = recorded(&tl);
        let toml = redial_sim::derive::timeline_from_trace(&text)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // Deterministic, and a timeline the simulator reads.
        assert_eq!(
            redial_sim::derive::timeline_from_trace(&text).unwrap(),
            toml,
            "{name}"
        );
        Timeline::parse(&toml, &name).unwrap_or_else(|e| panic!("{name}: {e}\n{toml}"));
        let f = redial_sim::derive::fidelity(&text).unwrap();
        println!("fidelity {name}: {f}");
        for d in &f.disagreements {
            println!("  {d}");
        }
        assert!(f.violations.is_empty(), "{name}: {:?}", f.violations);
        assert!(f.ops > 0, "{name}: no op");
        assert!(
            f.agree * 10 >= f.ops * 8,
            "{name}: {f}\n{}",
            f.disagreements.join("\n")
        );
        agree += f.agree;
        all += f.ops;
    }
    println!("fidelity, all shipped timelines: {agree}/{all}");
    assert!(agree * 100 >= all * 98, "{agree}/{all}");
}

#[test]
fn derive_names_the_bad_line_and_never_panics() {
    let (_, tl) = timelines()
        .into_iter()
        .find(|(n, _)| n == "restart-db0.toml")
        .unwrap();
    let text = recorded(&tl);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[4] = "{\"t\":99999999999,\"in\":\"bogus\"}".into();
    let e = redial_sim::derive::timeline_from_trace(&lines.join("\n")).unwrap_err();
    assert_eq!(e.line, 5, "{e}");
    assert!(e.to_string().contains("bogus"), "{e}");
    for g in ["", "hello", "{}", "{\"redial_trace\":1}"] {
        let e = redial_sim::derive::timeline_from_trace(g).unwrap_err();
        assert_eq!(e.line, 1, "{g:?}: {e}");
    }
    // Random byte edits: an error or a timeline that parses, never a panic.
    let bytes = text.as_bytes();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut b = bytes.to_vec();
        let at = (x % b.len() as u64) as usize;
        b[at] = b"0123456789{}\":,x\n"[(x >> 32) as usize % 17];
        let edited = String::from_utf8_lossy(&b);
        if let Ok(toml) = redial_sim::derive::timeline_from_trace(&edited) {
            Timeline::parse(&toml, "edited").unwrap_or_else(|e| panic!("{e}\n{toml}"));
        }
    }
}

/// The traces shipped in `sim/traces/` were recorded before the config
/// gained `retry_lost`, `fail_buffered_after`, `extra_jitter` and
/// `fail_unreachable_deadlines`: their headers lack those keys, and they
/// must still replay exactly (the keys read as the behaviour of their time).
#[test]
fn shipped_traces_recorded_before_the_newer_keys_still_replay_exactly() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/traces");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "jsonl") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            !text.contains("\"retry_lost\""),
            "{}: re-recorded?",
            p.display()
        );
        let r = trace::replay(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(trace::check(&r).unwrap().is_empty(), "{}", p.display());
        n += 1;
    }
    assert!(n >= 2);
    // A header that gives a newer key is read with it (this trace's ops
    // all say `retryable: false`, so it still replays), and a bad value is
    // refused at line 1.
    let first = std::fs::read_to_string(format!("{dir}/redis-kill-restart.jsonl")).unwrap();
    let with = |kv: &str| {
        first.replacen(
            "\"max_op_attempts\"",
            &format!("{kv},\"max_op_attempts\""),
            1,
        )
    };
    let edited = with("\"retry_lost\":true");
    assert_ne!(edited, first);
    let r = trace::replay(&edited).map_err(|e| e.to_string()).unwrap();
    assert_eq!(r.header.config.retry_lost, Some(true));
    let Err(e) = trace::replay(&with("\"fail_buffered_after\":\"soon\"")) else {
        panic!("a bad fail_buffered_after was read");
    };
    let e = e.to_string();
    assert!(
        e.contains("line 1") && e.contains("fail_buffered_after"),
        "{e}"
    );
}
