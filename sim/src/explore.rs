//! Random timelines checked against the invariants, with shrinking.
//!
//! One generator draws every random world: [`Scenario::from_unstructured`]
//! reads its choices from an [`arbitrary::Unstructured`] byte source. Its
//! three consumers only differ in where the bytes come from:
//!
//! - `redial-sim explore` (and [`explore`], [`check_config`], …): run `i`
//!   decodes [`SCENARIO_BYTES`] bytes of `StdRng::seed_from_u64(seed + i)`
//!   ([`Scenario::random`]);
//! - proptest ([`strategy`], feature `proptest`): a byte vector drawn and
//!   shrunk by proptest;
//! - cargo-fuzz ([`fuzz_world`], [`fuzz_config`]): the fuzzer's input.
//!
//! Each scenario is rendered as timeline TOML, parsed like any file and
//! replayed (in `explore`, every 16th run twice, to check determinism). A
//! failing scenario is shrunk — steps, workloads and config keys removed one
//! at a time while it still fails — and handed back as TOML that
//! `redial-sim replay` reproduces.

use arbitrary::Unstructured;
use arbitrary::unstructured::Int;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::output::Format;
use crate::run::{RunOptions, run, run_formatted};
use crate::timeline::Timeline;

/// How many bytes [`Scenario::random`] (and [`strategy`]) decode into one
/// world. The generator reads at most about 800 bytes (39 steps of at most
/// 17 bytes each, plus the header, config, endpoints and workload: 732; then
/// at most 52 for the failover, pushback and give-up draws), so a buffer
/// this long never runs dry; shorter inputs (a fuzzer's) are fine
/// too: once the bytes run out every draw takes its smallest value and every
/// optional part is left out.
pub const SCENARIO_BYTES: usize = 2048;

/// A random scenario, kept as TOML fragments so it can be shrunk and printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// The seed it was drawn from (for [`Scenario::random`]), or the label
    /// given to [`Scenario::from_unstructured`]; it is also in the name.
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

/// The generator's draws from an [`Unstructured`]. None fails: once the
/// bytes run out, an integer is the start of its range, a choice the first
/// one and a chance `false` — the smallest world.
struct Draw<'u, 'a> {
    u: &'u mut Unstructured<'a>,
}

impl Draw<'_, '_> {
    /// An integer in `range` (inclusive).
    fn int<T: Int>(&mut self, range: core::ops::RangeInclusive<T>) -> T {
        let start = *range.start();
        self.u.int_in_range(range).unwrap_or(start)
    }

    /// `true` with probability `p` (to 1/256); `false` once out of bytes.
    fn chance(&mut self, p: f64) -> bool {
        let threshold = (p * 256.0).round().clamp(0.0, 256.0) as u16;
        u16::from(self.int(0..=u8::MAX)) >= 256 - threshold
    }

    /// One of `items` (not empty).
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.int(0..=items.len() - 1)]
    }
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

    /// Draws a scenario from `seed`: [`SCENARIO_BYTES`] bytes of
    /// `StdRng::seed_from_u64(seed)`, decoded by
    /// [`from_unstructured`](Self::from_unstructured).
    pub fn random(seed: u64) -> Scenario {
        let mut bytes = vec![0u8; SCENARIO_BYTES];
        StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
        Scenario::from_unstructured(&mut Unstructured::new(&bytes), seed)
    }

    /// The generator: draws a scenario from the bytes of `u`, labelled
    /// `seed` (its name and [`seed`](Self::seed) field; nothing is drawn
    /// from it). Any bytes give a scenario, with at most 3 endpoints, 43
    /// steps (39, then up to 4 busy servers and revives) and one workload;
    /// once `u` runs dry every further choice is the smallest (no bytes at
    /// all: one endpoint, no step, no workload, the `mongodb-legacy`
    /// preset). Its random `[config]` may still be one the timeline parser
    /// refuses (some combinations are invalid). The failover, pushback and
    /// give-up parts (`require_primary`, `give_up`/`cool_down`, `loading`,
    /// `busy` steps with or without `retry_after`, `client = "revive"`)
    /// are drawn last, from the bytes after the rest of the world.
    ///
    /// ```
    /// use arbitrary::Unstructured;
    /// use redial_sim::Timeline;
    /// use redial_sim::explore::Scenario;
    ///
    /// let s = Scenario::from_unstructured(&mut Unstructured::new(b"any bytes at all"), 0);
    /// let tl = Timeline::parse(&s.to_toml(), "fuzz.toml");
    /// # let _ = tl;
    /// let empty = Scenario::from_unstructured(&mut Unstructured::new(&[]), 0);
    /// assert!(empty.steps.is_empty() && Timeline::parse(&empty.to_toml(), "x").is_ok());
    /// ```
    pub fn from_unstructured(u: &mut Unstructured<'_>, seed: u64) -> Scenario {
        let mut d = Draw { u };
        let mut header = vec![
            format!("name = \"explore seed {seed}\""),
            format!("seed = {}", d.int(0..=999u32)),
            format!("until = \"{}ms\"", d.int(15_000..=39_999u32)),
        ];
        header.push(String::new());
        header.push("[network]".into());
        // At least 1 ms: with no latency at all, a connect attempt made at
        // an instant (a quick reconnect's zero delay) succeeds at that very
        // instant, and the order of same-instant callers then differs
        // between the fast loop and the driver's tasks (see
        // fuzz/known/README.md): a world no network gives.
        header.push(format!("latency = \"{}ms\"", d.int(1..=19u32)));
        header.push(format!("service_time = \"{}ms\"", d.int(0..=299u32)));
        header.push(format!("jitter = \"{}ms\"", d.int(0..=4u32)));

        // Every preset, the peer presets included (their knobs:
        // `retry_lost` with unlimited attempts, `fail_buffered_after`,
        // `extra_jitter`, deadlines left to wait).
        let preset = d.pick(redial_core::Preset::ALL);
        let mut config = vec![format!("preset = \"{}\"", preset.name())];
        // Each other key is set with probability 0.35; its value is drawn
        // only then.
        let maybe = |d: &mut Draw<'_, '_>| d.chance(0.35);
        if maybe(&mut d) {
            let b = d.chance(0.5);
            config.push(format!("auto_reconnect = {b}"));
        }
        if maybe(&mut d) {
            let n = d.int(-1..=5i64);
            config.push(format!("buffer_max_entries = {n}"));
        }
        if maybe(&mut d) {
            // Keep the pair valid: an unlimited budget needs a non-zero delay.
            config.push(if d.chance(0.3) {
                let interval = d.int(1..=799u32);
                format!("reconnect_tries = \"unlimited\"\nreconnect_interval = \"{interval}ms\"")
            } else {
                let tries = d.int(0..=5u32);
                let interval = d.int(0..=798u32);
                format!("reconnect_tries = {tries}\nreconnect_interval = \"{interval}ms\"")
            });
        }
        if maybe(&mut d) {
            let j = d.pick(redial_core::Jitter::ALL);
            config.push(format!("jitter = \"{j}\""));
        }
        if maybe(&mut d) {
            let init = d.int(10..=299u32);
            let cap = init + d.int(0..=2999u32);
            config.push(if d.chance(0.5) {
                let step = d.int(0..=199u32);
                format!(
                    "backoff = \"linear\"\nbackoff_initial = \"{init}ms\"\nbackoff_step = \"{step}ms\"\nbackoff_max = \"{cap}ms\""
                )
            } else {
                let mult = d.int(1..=2u32);
                format!(
                    "backoff = \"exponential\"\nbackoff_initial = \"{init}ms\"\nbackoff_max = \"{cap}ms\"\nbackoff_multiplier = {mult}.5"
                )
            });
        }
        if maybe(&mut d) {
            let ic = if d.chance(0.5) {
                redial_core::InitialConnect::Retry
            } else {
                redial_core::InitialConnect::FailFast
            };
            config.push(format!("initial_connect = \"{ic}\""));
        }
        for key in [
            "connect_timeout",
            "socket_timeout",
            "heartbeat_interval",
            "heartbeat_timeout",
            "response_timeout",
            "buffer_timeout",
            "op_deadline",
        ] {
            if maybe(&mut d) {
                let v = d.int(0..=2999u32);
                config.push(format!("{key} = \"{v}ms\""));
            }
        }
        if maybe(&mut d) {
            let a = d.int(1..=5u32);
            config.push(format!("max_op_attempts = {a}"));
        }
        if maybe(&mut d) {
            let t = d.int(0..=7u32);
            config.push(format!("retry_budget_tokens = {t}"));
        }
        if maybe(&mut d) {
            config.push("retry_lost = true".into());
        }
        if maybe(&mut d) {
            let k = d.int(0..=4u32);
            config.push(format!("fail_buffered_after = {k}"));
        }
        if maybe(&mut d) {
            let j = d.int(1..=300u32);
            config.push(format!("extra_jitter = \"{j}ms\""));
        }
        if maybe(&mut d) {
            config.push("fail_unreachable_deadlines = false".into());
        }

        let n_endpoints = d.int(1..=3usize);
        let mut endpoints = Vec::new();
        for i in 0..n_endpoints {
            let role = if i == 0 || d.chance(0.2) {
                "primary"
            } else {
                "secondary"
            };
            // Out of bytes, an extra endpoint is a listed one that is up.
            let listed = i == 0 || !d.chance(0.3);
            let up = i == 0 || !d.chance(0.1);
            endpoints.push(format!(
                "name = \"db.{i}\"\nrole = \"{role}\"\nlisted = {listed}\nup = {up}"
            ));
        }

        let mut steps = Vec::new();
        for _ in 0..d.int(0..=39u32) {
            let at = d.int(0..=14_999u32);
            let step = match d.int(0..=9u32) {
                0..=3 => {
                    let actions = ["up", "down", "crash", "blackhole", "promote", "demote"];
                    let a = d.pick(&actions);
                    let mut s = format!(
                        "at = \"{at}ms\"\nserver = \"{a}\"\nendpoint = \"db.{}\"",
                        d.int(0..=n_endpoints - 1)
                    );
                    if d.chance(0.6) {
                        s.push_str(&format!("\nfor = \"{}ms\"", d.int(0..=7999u32)));
                    }
                    s
                }
                4..=8 => {
                    let mut s = format!("at = \"{at}ms\"\nsubmit = \"op\"");
                    if d.chance(0.4) {
                        s.push_str("\nretryable = true");
                    } else if d.chance(0.2) {
                        // Opted out of the config's `retry_lost`.
                        s.push_str("\nretryable = false");
                    }
                    if d.chance(0.2) {
                        s.push_str(&format!("\ndeadline = \"{}ms\"", d.int(1..=4999u32)));
                    }
                    if d.chance(0.2) {
                        s.push_str(&format!("\nmax_attempts = {}", d.int(1..=5u32)));
                    }
                    if d.chance(0.3) {
                        s.push_str(&format!("\ncount = {}", d.int(1..=7u32)));
                    }
                    if d.chance(0.1) {
                        s.push_str("\nserver_error = true");
                    }
                    if d.chance(0.1) {
                        s.push_str("\nthen = \"followup\"");
                    }
                    if d.chance(0.15) {
                        s.push_str(&format!("\ncancel_after = \"{}ms\"", d.int(1..=2999u32)));
                    }
                    s
                }
                _ => format!("at = \"{at}ms\"\nclient = \"close\""),
            };
            steps.push(step);
        }
        let mut workloads = Vec::new();
        if d.chance(0.5) {
            let from = d.int(0..=4999u32);
            let every = d.int(20..=999u32);
            let until = from + d.int(0..=19_999u32);
            let retryable = if d.chance(0.3) {
                "\nretryable = true"
            } else {
                ""
            };
            workloads.push(format!(
                "submit = \"tick\"\nevery = \"{every}ms\"\nfrom = \"{from}ms\"\nuntil = \"{until}ms\"{retryable}"
            ));
        }
        draw_failover(&mut d, &mut config, &mut endpoints, &mut steps);
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

/// The failover, pushback and give-up parts of a world, drawn after the
/// rest (so the bytes of everything above decode as they did before these
/// draws existed, and older fuzz inputs keep their meaning): the role
/// check (`require_primary`), the give-up policy (`give_up`, `cool_down`),
/// servers that load after a restart (`loading`), and up to
/// [`MAX_EXTRA_STEPS`] steps that make a server busy (with or without a
/// `retry_after` hint) or revive the client. At most 52 bytes.
fn draw_failover(
    d: &mut Draw<'_, '_>,
    config: &mut Vec<String>,
    endpoints: &mut [String],
    steps: &mut Vec<String>,
) {
    if d.chance(0.3) {
        let on = d.chance(0.5);
        config.push(format!("require_primary = {on}"));
    }
    if d.chance(0.2) {
        // One entry each, so the shrinker never splits a pair.
        let pause = d.int(1..=4999u32);
        config.push(match d.int(0..=2u32) {
            0 => "give_up = \"terminal\"".to_string(),
            1 => format!("cool_down = \"{pause}ms\""),
            _ => format!("give_up = \"cool-down\"\ncool_down = \"{pause}ms\""),
        });
    }
    for e in endpoints.iter_mut() {
        if d.chance(0.25) {
            e.push_str(&format!("\nloading = \"{}ms\"", d.int(1..=2999u32)));
        }
    }
    let n = endpoints.len();
    for _ in 0..d.int(0..=MAX_EXTRA_STEPS) {
        let at = d.int(0..=14_999u32);
        steps.push(if d.int(0..=2u32) < 2 {
            let mut s = format!(
                "at = \"{at}ms\"\nserver = \"busy\"\nendpoint = \"db.{}\"\nfor = \"{}ms\"",
                d.int(0..=n - 1),
                d.int(0..=5999u32)
            );
            if d.chance(0.5) {
                s.push_str(&format!("\nretry_after = \"{}ms\"", d.int(0..=1499u32)));
            }
            s
        } else {
            format!("at = \"{at}ms\"\nclient = \"revive\"")
        });
    }
}

/// The most steps [`draw_failover`] adds (busy servers, revives) to the
/// 39 of the main draw.
const MAX_EXTRA_STEPS: u32 = 4;

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
/// Each case is [`SCENARIO_BYTES`] bytes drawn by proptest and decoded by
/// the same generator as [`Scenario::random`] (so the worlds are those of
/// `redial-sim explore`), with `config` pinned. On failure proptest shrinks
/// the bytes towards zero, which leaves optional parts of the world out.
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
    proptest::collection::vec(proptest::arbitrary::any::<u8>(), SCENARIO_BYTES).prop_map(
        move |bytes| {
            let mut s = Scenario::from_unstructured(&mut Unstructured::new(&bytes), 0);
            s.config = config.clone();
            s
        },
    )
}

/// Fuzz the simulator's worlds: `data` (any bytes, e.g. a cargo-fuzz
/// input) is decoded by the generator ([`Scenario::from_unstructured`])
/// into a world — endpoints, network, faults, ops, callers that give up —
/// and run, bounded to 20,000 events and 600 s of virtual time; every
/// invariant must hold, and with `through_driver` the real driver must
/// agree with the fast loop ([`crate::compare_with_fast_loop`]).
///
/// With `config`, that configuration is pinned (the number of endpoints it
/// is built for is the world's listed ones) and the drawn `[config]` is
/// ignored; without, the drawn one is used. `None` when the configuration
/// does not fit the world (a drawn one the parser refuses, or a pinned one
/// that does not build for the world's endpoints); else the violations and
/// differences (empty: all held). The same bytes give the same world with
/// or without `config`.
///
/// ```
/// use redial_sim::explore::fuzz_world;
///
/// for data in [&b""[..], b"\xff\xff\xff\xff", b"some fuzzer input"] {
///     if let Some(v) = fuzz_world(data, None, true) {
///         assert!(v.is_empty(), "{v:?}");
///     }
/// }
/// ```
pub fn fuzz_world(
    data: &[u8],
    config: Option<&redial_core::Config>,
    through_driver: bool,
) -> Option<Vec<String>> {
    let mut s = Scenario::from_unstructured(&mut Unstructured::new(data), 0);
    if config.is_some() {
        // The defaults: a world always parses with them.
        s.config.clear();
    }
    let mut tl = Timeline::parse(&s.to_toml(), "fuzz.toml").ok()?;
    if let Some(config) = config {
        tl.config = config
            .to_builder()
            .endpoints(tl.config.endpoints())
            .build()
            .ok()?;
    }
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

/// Fuzz *your* configuration: [`fuzz_world`] with `config` pinned. `data`
/// is any bytes — the fuzzer's input, decoded into a world around your
/// configuration (not a timeline file); the run must hold every invariant,
/// and with `through_driver` the real driver must agree with the fast loop.
/// `None` only when `config` does not build for the world's listed
/// endpoints; else the violations (empty: all held).
///
/// The body of a cargo-fuzz target (`fuzz/fuzz_targets/your_config.rs` is
/// a complete one):
///
/// ```
/// use redial_sim::core::Config;
/// use redial_sim::explore::fuzz_config;
///
/// let mine = Config::recommended();
/// for data in [&b""[..], b"\x00\x01\x02\x03", &[0xff; 64], b"any bytes are a world"] {
///     let v = fuzz_config(data, &mine, true).expect("the config fits");
///     assert!(v.is_empty(), "{v:?}");
/// }
/// ```
pub fn fuzz_config(
    data: &[u8],
    config: &redial_core::Config,
    through_driver: bool,
) -> Option<Vec<String>> {
    fuzz_world(data, Some(config), through_driver)
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

    /// Bytes from `StdRng::seed_from_u64(seed)`, `len` of them.
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        StdRng::seed_from_u64(seed).fill_bytes(&mut b);
        b
    }

    #[test]
    fn a_seed_is_one_scenario() {
        for seed in [0, 1, 42, u64::MAX] {
            let a = Scenario::random(seed).to_toml();
            assert_eq!(a, Scenario::random(seed).to_toml());
            assert_ne!(a, Scenario::random(seed.wrapping_add(1)).to_toml());
            assert!(a.starts_with(&format!("name = \"explore seed {seed}\"")));
        }
        // `random` is the generator over the seed's bytes.
        let b = bytes(7, SCENARIO_BYTES);
        assert_eq!(
            Scenario::random(7),
            Scenario::from_unstructured(&mut Unstructured::new(&b), 7)
        );
        let pinned = vec!["preset = \"fail-fast\"".to_string()];
        let s = Scenario::random_with_config(7, &pinned);
        assert_eq!(s.config, pinned);
        assert_eq!((s.header, s.endpoints, s.steps, s.workloads), {
            let r = Scenario::random(7);
            (r.header, r.endpoints, r.steps, r.workloads)
        });
    }

    #[test]
    fn any_bytes_decode_into_a_small_world() {
        let mut inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            vec![0],
            vec![0xff],
            vec![0xff; 3],
            vec![0xff; 64],
            vec![0xff; SCENARIO_BYTES],
            vec![0; SCENARIO_BYTES],
            vec![0x80; 100],
            (0..=255).collect(),
            b"[[step]]\nat = \"1s\"\nserver = \"crash\"\n".to_vec(),
        ];
        for seed in 0..300 {
            inputs.push(bytes(seed, (seed as usize * 7) % 900));
        }
        let mut parsed = 0;
        for data in &inputs {
            let mut u = Unstructured::new(data);
            let s = Scenario::from_unstructured(&mut u, 0);
            // The bound SCENARIO_BYTES is sized for.
            assert!(data.len() - u.len() <= 745, "{}", data.len() - u.len());
            assert!(!s.endpoints.is_empty() && s.endpoints.len() <= 3);
            assert!(s.steps.len() <= 43 && s.workloads.len() <= 1);
            assert!(s.to_toml().len() < 16_000);
            // The drawn config may be one the parser refuses; the world
            // itself always parses.
            if Timeline::parse(&s.to_toml(), "x").is_ok() {
                parsed += 1;
            }
            let mut world = s.clone();
            world.config.clear();
            let text = world.to_toml();
            if let Err(e) = Timeline::parse(&text, "x") {
                panic!("{e}\n{text}");
            }
        }
        assert!(
            parsed * 4 > inputs.len() * 3,
            "{parsed} of {}",
            inputs.len()
        );
        // No bytes (or all zeros): the smallest world, which parses as is.
        let empty = Scenario::from_unstructured(&mut Unstructured::new(&[]), 0);
        assert_eq!(
            empty,
            Scenario::from_unstructured(&mut Unstructured::new(&[0; 64]), 0)
        );
        assert_eq!(empty.config, ["preset = \"mongodb-legacy\""]);
        assert_eq!(empty.endpoints.len(), 1);
        assert!(empty.steps.is_empty() && empty.workloads.is_empty());
        assert!(Timeline::parse(&empty.to_toml(), "x").is_ok());
        // Random full buffers never run dry.
        for seed in 0..2000 {
            let b = bytes(seed, SCENARIO_BYTES);
            let mut u = Unstructured::new(&b);
            Scenario::from_unstructured(&mut u, seed);
            assert!(SCENARIO_BYTES - u.len() <= 745);
        }
    }

    #[test]
    fn fuzz_inputs_hold_every_invariant() {
        let mine = redial_core::Config::recommended();
        let mut fits = 0;
        for seed in 0..60 {
            let data = bytes(seed, (seed as usize * 37) % 1000);
            let through_driver = seed % 6 == 0;
            if let Some(v) = fuzz_world(&data, None, through_driver) {
                fits += 1;
                assert!(v.is_empty(), "{v:?}");
            }
            let v = fuzz_config(&data, &mine, through_driver).expect("recommended fits");
            assert!(v.is_empty(), "{v:?}");
        }
        assert!(fits > 40, "{fits}");
        assert_eq!(fuzz_world(&[], None, true), Some(Vec::new()));
    }

    #[test]
    fn the_generator_draws_failover_pushback_and_give_up() {
        let mut seen = std::collections::BTreeMap::<&str, u32>::new();
        let keys = [
            "require_primary = true",
            "require_primary = false",
            "give_up = \"terminal\"",
            "give_up = \"cool-down\"",
            "cool_down = ",
            "loading = ",
            "server = \"busy\"",
            "retry_after = ",
            "client = \"revive\"",
        ];
        let mut parsed = 0;
        for seed in 0..400 {
            let s = Scenario::random(seed);
            let text = s.to_toml();
            for k in keys {
                if text.contains(k) {
                    *seen.entry(k).or_default() += 1;
                }
            }
            // Busy steps never lack their `for`.
            let busy = s.steps.iter().filter(|x| x.contains("\"busy\"")).count();
            let with_for = s
                .steps
                .iter()
                .filter(|x| x.contains("\"busy\"") && x.contains("for = "))
                .count();
            assert_eq!(busy, with_for);
            if Timeline::parse(&text, "x").is_ok() {
                parsed += 1;
            }
        }
        for k in keys {
            assert!(seen.get(k).copied().unwrap_or(0) >= 10, "{k}: {seen:?}");
        }
        assert!(parsed > 300, "{parsed}");
    }

    #[test]
    fn seeds_explore_clean() {
        let e = explore(300, 1_000, |_| {});
        assert_eq!(e.runs, 300);
        assert!(e.failures.is_empty(), "{:?}", e.failures);
        assert!(e.skipped < 100, "{}", e.skipped);
    }
}

/// Bytes one machine run is drawn from (the generator reads fewer).
pub const MACHINE_RUN_BYTES: usize = 4096;

/// The bytes of machine run `seed` (see [`explore_machine`]).
pub fn machine_run_bytes(seed: u64) -> Vec<u8> {
    let mut bytes = vec![0; MACHINE_RUN_BYTES];
    StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

/// A failing machine run: its seed, its bytes (the input the `machine`
/// fuzz target and `redial_check::harness::run_bytes` reproduce it from)
/// and the panic message.
#[derive(Clone, Debug)]
pub struct MachineFailure {
    /// The run's seed.
    pub seed: u64,
    /// Its input bytes.
    pub bytes: Vec<u8>,
    /// What failed.
    pub message: String,
}

/// Random *machine* runs, below the world: `runs` inputs (seeds
/// `seed..`) of [`MACHINE_RUN_BYTES`] random bytes each, decoded and run
/// by redial-check's one generator and harness
/// ([`redial_check::harness::run_bytes`], the `machine` fuzz target's
/// body: any configuration, any input sequence, both oracles on every
/// step, the reference model where it reaches). Stops at the first
/// failure. `progress` is called every 10,000 runs.
pub fn explore_machine(
    runs: u64,
    seed: u64,
    mut progress: impl FnMut(u64),
) -> Result<u64, MachineFailure> {
    for i in 0..runs {
        let s = seed.wrapping_add(i);
        let bytes = machine_run_bytes(s);
        let run = std::panic::catch_unwind(|| redial_check::harness::run_bytes(&bytes));
        if let Err(panic) = run {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            return Err(MachineFailure {
                seed: s,
                bytes,
                message,
            });
        }
        if (i + 1) % 10_000 == 0 && i + 1 < runs {
            progress(i + 1);
        }
    }
    Ok(runs)
}
