//! Random timelines checked against the invariants, with shrinking.
//!
//! Each run `i` draws a scenario from `StdRng::seed_from_u64(seed + i)`,
//! renders it as timeline TOML, parses it like any file and replays it
//! (every 16th run twice, to check determinism). A failing scenario is
//! shrunk — steps, workloads and config keys removed one at a time while it
//! still fails — and handed back as TOML that `redial-sim replay`
//! reproduces.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::output::Format;
use crate::run::{RunOptions, run, run_formatted};
use crate::timeline::Timeline;

/// A random scenario, kept as TOML fragments so it can be shrunk and printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// The run seed it was drawn from.
    pub seed: u64,
    /// `[network]` and top-level lines.
    pub header: Vec<String>,
    /// `[config]` lines (`key = value`).
    pub config: Vec<String>,
    /// `[[endpoint]]` bodies.
    pub endpoints: Vec<String>,
    /// `[[step]]` bodies.
    pub steps: Vec<String>,
    /// `[[workload]]` bodies.
    pub workloads: Vec<String>,
}

impl Scenario {
    /// Draws a scenario from `seed` whose `[config]` is `config` (lines
    /// `key = value`, e.g. from [`config_lines`]): the world (network,
    /// endpoints, faults, ops, callers that give up) is the one
    /// [`random`](Self::random) draws for the same seed; only the
    /// configuration is pinned.
    pub fn random_with_config(seed: u64, config: &[String]) -> Scenario {
        let mut s = Scenario::random(seed);
        s.config = config.to_vec();
        s
    }

    /// Draws a scenario from `seed`.
    pub fn random(seed: u64) -> Scenario {
        let mut r = StdRng::seed_from_u64(seed);
        let mut header = vec![
            format!("name = \"explore seed {seed}\""),
            format!("seed = {}", r.random_range(0..1000u32)),
            format!("until = \"{}ms\"", r.random_range(15_000..40_000u32)),
        ];
        header.push(String::new());
        header.push("[network]".into());
        header.push(format!("latency = \"{}ms\"", r.random_range(0..20u32)));
        header.push(format!(
            "service_time = \"{}ms\"",
            r.random_range(0..300u32)
        ));
        header.push(format!("jitter = \"{}ms\"", r.random_range(0..5u32)));

        let presets = ["mongodb-legacy", "mongoose", "fail-fast", "recommended"];
        let mut config = vec![format!(
            "preset = \"{}\"",
            presets[r.random_range(0..presets.len())]
        )];
        let mut maybe = |r: &mut StdRng, line: String| {
            if r.random_bool(0.35) {
                config.push(line);
            }
        };
        let b = r.random_bool(0.5);
        maybe(&mut r, format!("auto_reconnect = {b}"));
        let n = r.random_range(-1..6i64);
        maybe(&mut r, format!("buffer_max_entries = {n}"));
        let tries = r.random_range(0..6u32);
        let unlimited = r.random_bool(0.3);
        let interval = r.random_range(1..800u32);
        // Keep the pair valid: an unlimited budget needs a non-zero delay.
        maybe(
            &mut r,
            if unlimited {
                format!("reconnect_tries = \"unlimited\"\nreconnect_interval = \"{interval}ms\"")
            } else {
                format!(
                    "reconnect_tries = {tries}\nreconnect_interval = \"{}ms\"",
                    interval - 1
                )
            },
        );
        let jitters = redial_core::Jitter::ALL;
        let j = jitters[r.random_range(0..jitters.len())];
        maybe(&mut r, format!("jitter = \"{j}\""));
        let init = r.random_range(10..300u32);
        let cap = init + r.random_range(0..3000u32);
        let shape = r.random_range(0..2u32);
        let mult = r.random_range(1..3u32);
        let step = r.random_range(0..200u32);
        maybe(
            &mut r,
            if shape == 0 {
                format!(
                    "backoff = \"exponential\"\nbackoff_initial = \"{init}ms\"\nbackoff_max = \"{cap}ms\"\nbackoff_multiplier = {mult}.5"
                )
            } else {
                format!(
                    "backoff = \"linear\"\nbackoff_initial = \"{init}ms\"\nbackoff_step = \"{step}ms\"\nbackoff_max = \"{cap}ms\""
                )
            },
        );
        let ic = if r.random_bool(0.5) {
            redial_core::InitialConnect::Retry
        } else {
            redial_core::InitialConnect::FailFast
        };
        maybe(&mut r, format!("initial_connect = \"{ic}\""));
        for key in [
            "connect_timeout",
            "socket_timeout",
            "heartbeat_interval",
            "heartbeat_timeout",
            "response_timeout",
            "buffer_timeout",
            "op_deadline",
        ] {
            let v = r.random_range(0..3000u32);
            maybe(&mut r, format!("{key} = \"{v}ms\""));
        }
        let a = r.random_range(1..6u32);
        maybe(&mut r, format!("max_op_attempts = {a}"));
        let t = r.random_range(0..8u32);
        maybe(&mut r, format!("retry_budget_tokens = {t}"));

        let n_endpoints = r.random_range(1..4usize);
        let mut endpoints = Vec::new();
        for i in 0..n_endpoints {
            let role = if i == 0 || r.random_bool(0.2) {
                "primary"
            } else {
                "secondary"
            };
            let listed = i == 0 || r.random_bool(0.7);
            let up = i == 0 || r.random_bool(0.9);
            endpoints.push(format!(
                "name = \"db.{i}\"\nrole = \"{role}\"\nlisted = {listed}\nup = {up}"
            ));
        }

        let mut steps = Vec::new();
        for _ in 0..r.random_range(0..40u32) {
            let at = r.random_range(0..15_000u32);
            let step = match r.random_range(0..10u32) {
                0..=3 => {
                    let actions = ["up", "down", "crash", "blackhole", "promote", "demote"];
                    let a = actions[r.random_range(0..actions.len())];
                    let mut s = format!(
                        "at = \"{at}ms\"\nserver = \"{a}\"\nendpoint = \"db.{}\"",
                        r.random_range(0..n_endpoints)
                    );
                    if r.random_bool(0.6) {
                        s.push_str(&format!("\nfor = \"{}ms\"", r.random_range(0..8000u32)));
                    }
                    s
                }
                4..=8 => {
                    let mut s = format!("at = \"{at}ms\"\nsubmit = \"op\"");
                    if r.random_bool(0.4) {
                        s.push_str("\nretryable = true");
                    }
                    if r.random_bool(0.2) {
                        s.push_str(&format!(
                            "\ndeadline = \"{}ms\"",
                            r.random_range(1..5000u32)
                        ));
                    }
                    if r.random_bool(0.2) {
                        s.push_str(&format!("\nmax_attempts = {}", r.random_range(1..6u32)));
                    }
                    if r.random_bool(0.3) {
                        s.push_str(&format!("\ncount = {}", r.random_range(1..8u32)));
                    }
                    if r.random_bool(0.1) {
                        s.push_str("\nserver_error = true");
                    }
                    if r.random_bool(0.1) {
                        s.push_str("\nthen = \"followup\"");
                    }
                    if r.random_bool(0.15) {
                        s.push_str(&format!(
                            "\ncancel_after = \"{}ms\"",
                            r.random_range(1..3000u32)
                        ));
                    }
                    s
                }
                _ => format!("at = \"{at}ms\"\nclient = \"close\""),
            };
            steps.push(step);
        }
        let mut workloads = Vec::new();
        if r.random_bool(0.5) {
            let from = r.random_range(0..5000u32);
            workloads.push(format!(
                "submit = \"tick\"\nevery = \"{}ms\"\nfrom = \"{from}ms\"\nuntil = \"{}ms\"{}",
                r.random_range(20..1000u32),
                from + r.random_range(0..20_000u32),
                if r.random_bool(0.3) {
                    "\nretryable = true"
                } else {
                    ""
                }
            ));
        }
        Scenario {
            seed,
            header,
            config,
            endpoints,
            steps,
            workloads,
        }
    }

    /// The timeline TOML.
    pub fn to_toml(&self) -> String {
        let mut s = self.header.join("\n");
        s.push_str("\n\n[config]\n");
        for c in &self.config {
            s.push_str(c);
            s.push('\n');
        }
        for (table, items) in [
            ("endpoint", &self.endpoints),
            ("step", &self.steps),
            ("workload", &self.workloads),
        ] {
            for i in items {
                s.push_str(&format!("\n[[{table}]]\n{i}\n"));
            }
        }
        s
    }
}

/// What a scenario did: `None` if its config was refused (not a bug:
/// some random combinations are invalid), else the violations.
pub fn check(text: &str) -> Option<Vec<String>> {
    let tl = Timeline::parse(text, "<explore>").ok()?;
    Some(run(&tl, &RunOptions::default(), |_| {}).violations)
}

fn check_determinism(text: &str) -> Option<Vec<String>> {
    let tl = Timeline::parse(text, "<explore>").ok()?;
    let (a, s) = run_formatted(&tl, &RunOptions::default(), Format::Json);
    let (b, _) = run_formatted(&tl, &RunOptions::default(), Format::Json);
    let mut v = s.violations;
    if a != b {
        v.push("invariant 8: the same timeline and seed gave different outputs".into());
    }
    Some(v)
}

/// Shrinks a failing scenario: drops steps, workloads and config keys one
/// at a time while it still fails.
pub fn shrink(s: Scenario) -> Scenario {
    shrink_by(s, |s| check(&s.to_toml()).is_some_and(|v| !v.is_empty()))
}

/// Shrinks `s` while `fails` holds (see [`shrink`]).
pub fn shrink_by(s: Scenario, fails: impl Fn(&Scenario) -> bool) -> Scenario {
    shrink_fields(s, 3, fails)
}

/// The `[config]` table of a timeline file, as `key = value` lines for
/// [`Scenario::random_with_config`]. The file is parsed and validated
/// first: a bad file gets the usual `file:line:col` error.
pub fn config_lines(text: &str, path: &str) -> Result<Vec<String>, String> {
    Timeline::parse(text, path).map_err(|e| e.to_string())?;
    let table: toml::Table = toml::from_str(text).map_err(|e| format!("{path}: {e}"))?;
    Ok(match table.get("config") {
        Some(toml::Value::Table(c)) => c.iter().map(|(k, v)| format!("{k} = {v}")).collect(),
        _ => Vec::new(),
    })
}

/// Checks that every invariant holds for `config` (lines `key = value`, as
/// [`config_lines`] gives) over `runs` random worlds (seeds `seed..`), in
/// `mode`. The failure, if any, is shrunk with the configuration kept.
///
/// Property-test *your* configuration from a plain `#[test]`:
///
/// ```
/// use redial_sim::explore::{Mode, check_config};
///
/// let mine = vec![
///     "preset = \"recommended\"".to_string(),
///     "connect_timeout = \"2s\"".to_string(),
///     "buffer_max_entries = 100".to_string(),
/// ];
/// let e = check_config(&mine, 200, 0, Mode::Fast);
/// assert!(e.failures.is_empty(), "{:?}", e.failures);
/// ```
pub fn check_config(config: &[String], runs: u64, seed: u64, mode: Mode) -> Exploration {
    explore_scenarios(runs, seed, mode, Some(config), |_| {})
}

/// A proptest strategy of random worlds around `config` (feature
/// `proptest`): property-test your configuration with your own runner.
///
/// ```
/// use proptest::prelude::*;
/// use redial_sim::explore::{check, strategy};
///
/// let mine = vec!["preset = \"mongoose\"".to_string(), "buffer_max_entries = 5".to_string()];
/// proptest!(ProptestConfig::with_cases(50), |(s in strategy(mine.clone()))| {
///     let violations = check(&s.to_toml()).expect("the config is valid");
///     prop_assert!(violations.is_empty(), "{}\n{violations:?}", s.to_toml());
/// });
/// ```
#[cfg(feature = "proptest")]
pub fn strategy(config: Vec<String>) -> impl proptest::strategy::Strategy<Value = Scenario> {
    use proptest::strategy::Strategy;
    proptest::arbitrary::any::<u64>()
        .prop_map(move |seed| Scenario::random_with_config(seed, &config))
}

/// Fuzz *your* configuration: `data` is read as a timeline file (the
/// world: endpoints, network, faults, ops, callers), its own `[config]`
/// replaced by `config`; the run (bounded to 20,000 events) must hold every
/// invariant, and with `through_driver` the real driver must agree with the
/// fast loop. `None` when `data` is not a timeline the configuration fits
/// (a fuzzer's everyday input); else the violations (empty: all held).
///
/// The body of a cargo-fuzz target (`fuzz/fuzz_targets/your_config.rs` is
/// a complete one):
///
/// ```
/// use redial_sim::core::Config;
/// use redial_sim::explore::fuzz_config;
///
/// let mine = Config::recommended();
/// let data = b"[[step]]\nat = \"1s\"\nserver = \"crash\"\nfor = \"2s\"\n[[step]]\nat = \"1500ms\"\nsubmit = \"q\"\n";
/// let v = fuzz_config(data, &mine, true).expect("a timeline");
/// assert!(v.is_empty(), "{v:?}");
/// ```
pub fn fuzz_config(
    data: &[u8],
    config: &redial_core::Config,
    through_driver: bool,
) -> Option<Vec<String>> {
    let text = std::str::from_utf8(data).ok()?;
    let mut tl = Timeline::parse(text, "fuzz.toml").ok()?;
    tl.config = config
        .to_builder()
        .endpoints(tl.config.endpoints())
        .build()
        .ok()?;
    let opts = RunOptions {
        max_events: Some(20_000),
        max_time: core::time::Duration::from_secs(600),
        ..RunOptions::default()
    };
    Some(if through_driver {
        let d = crate::compare_with_fast_loop(&tl, &opts);
        d.differences.into_iter().chain(d.violations).collect()
    } else {
        run(&tl, &opts, |_| {}).violations
    })
}

/// Shrinks `s` while `fails` holds, over its first `fields` parts (steps,
/// workloads, then config keys).
fn shrink_fields(mut s: Scenario, fields: usize, fails: impl Fn(&Scenario) -> bool) -> Scenario {
    loop {
        let mut progressed = false;
        for field in 0..fields {
            let mut i = 0;
            loop {
                let len = match field {
                    0 => s.steps.len(),
                    1 => s.workloads.len(),
                    _ => s.config.len(),
                };
                if i >= len {
                    break;
                }
                let mut t = s.clone();
                match field {
                    0 => {
                        t.steps.remove(i);
                    }
                    1 => {
                        t.workloads.remove(i);
                    }
                    _ => {
                        t.config.remove(i);
                    }
                }
                if fails(&t) {
                    s = t;
                    progressed = true;
                } else {
                    i += 1;
                }
            }
        }
        if !progressed {
            return s;
        }
    }
}

/// The result of an exploration.
#[derive(Clone, Debug, Default)]
pub struct Exploration {
    /// Scenarios run.
    pub runs: u64,
    /// Scenarios skipped because their random config was invalid.
    pub skipped: u64,
    /// Failing scenarios: (run seed, violations, shrunk TOML).
    pub failures: Vec<(u64, Vec<String>, String)>,
}

/// What a scenario did through the real driver, compared with the fast
/// loop: `None` if its config was refused, else the differences and the
/// violations of either run (empty: they agree and all invariants held).
pub fn check_through_driver(text: &str) -> Option<Vec<String>> {
    let tl = Timeline::parse(text, "<explore>").ok()?;
    let d = crate::compare_with_fast_loop(&tl, &RunOptions::default());
    Some(d.differences.into_iter().chain(d.violations).collect())
}

/// How [`explore_with`] runs each scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// The fast loop, with the invariant checker (every 16th run twice, for
    /// determinism).
    Fast,
    /// The fast loop and the real driver ([`crate::run_through_driver`]),
    /// each with the checker; they must agree on every op's fate and the
    /// event sequence ([`crate::compare_with_fast_loop`]).
    ThroughDriver,
}

/// Runs `runs` random scenarios with seeds `seed, seed + 1, …` through the
/// fast loop; stops at the first failure (shrunk).
pub fn explore(runs: u64, seed: u64, progress: impl FnMut(u64)) -> Exploration {
    explore_with(runs, seed, Mode::Fast, progress)
}

/// As [`explore`], in `mode`.
pub fn explore_with(runs: u64, seed: u64, mode: Mode, progress: impl FnMut(u64)) -> Exploration {
    explore_scenarios(runs, seed, mode, None, progress)
}

/// As [`explore_with`], every scenario with `config` pinned (see
/// [`Scenario::random_with_config`]).
pub fn explore_config(
    runs: u64,
    seed: u64,
    mode: Mode,
    config: &[String],
    progress: impl FnMut(u64),
) -> Exploration {
    explore_scenarios(runs, seed, mode, Some(config), progress)
}

fn explore_scenarios(
    runs: u64,
    seed: u64,
    mode: Mode,
    config: Option<&[String]>,
    mut progress: impl FnMut(u64),
) -> Exploration {
    let mut e = Exploration::default();
    let step = if mode == Mode::Fast { 10_000 } else { 1_000 };
    // A pinned configuration is the user's: shrinking keeps it whole.
    let fields = if config.is_some() { 2 } else { 3 };
    for i in 0..runs {
        let s = match config {
            Some(c) => Scenario::random_with_config(seed.wrapping_add(i), c),
            None => Scenario::random(seed.wrapping_add(i)),
        };
        let text = s.to_toml();
        let result = match mode {
            Mode::ThroughDriver => check_through_driver(&text),
            _ if i % 16 == 0 => check_determinism(&text),
            _ => check(&text),
        };
        e.runs += 1;
        match result {
            None => e.skipped += 1,
            Some(v) if v.is_empty() => {}
            Some(v) => {
                let small = match mode {
                    Mode::ThroughDriver => shrink_fields(s, fields, |s| {
                        check_through_driver(&s.to_toml()).is_some_and(|v| !v.is_empty())
                    }),
                    _ => shrink_fields(s, fields, |s| {
                        check(&s.to_toml()).is_some_and(|v| !v.is_empty())
                    }),
                };
                e.failures.push((seed.wrapping_add(i), v, small.to_toml()));
                return e;
            }
        }
        if (i + 1) % step == 0 {
            progress(i + 1);
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_parse_and_run() {
        let mut parsed = 0;
        for seed in 0..200 {
            let text = Scenario::random(seed).to_toml();
            if let Ok(tl) = Timeline::parse(&text, "x") {
                parsed += 1;
                let s = run(&tl, &RunOptions::default(), |_| {});
                assert!(s.violations.is_empty(), "{text}\n{:?}", s.violations);
            }
        }
        assert!(parsed > 150, "only {parsed} of 200 random timelines parsed");
        // Shrinking keeps only what the failure needs.
        let big = (0..)
            .map(Scenario::random)
            .find(|s| s.steps.len() > 10 && s.steps.iter().any(|x| x.contains("client")))
            .expect("some scenario closes the client");
        let small = shrink_by(big, |s| {
            s.steps.iter().any(|x| x.contains("client = \"close\""))
        });
        assert_eq!(small.steps.len(), 1);
        assert!(small.workloads.is_empty() && small.config.is_empty());
        assert!(Timeline::parse(&small.to_toml(), "small").is_ok());
        if std::env::var_os("REDIAL_SHOW").is_some() {
            let text = Scenario::random(3).to_toml();
            println!("{text}");
            let tl = Timeline::parse(&text, "x").expect("valid");
            println!("{}", crate::run_to_string(&tl, &RunOptions::default()).0);
        }
    }
}
