//! Fuzz targets for redial, as plain library functions so that they build
//! and run under ordinary `cargo test` on the stable toolchain (the corpus
//! replay in `tests/replay_corpus.rs`); the `fuzz_targets/*.rs` binaries are
//! one-liners calling them.
//!
//! - [`machine`]: the one generator of random machine runs
//!   ([`redial_check::harness`]): any configuration (or one in the
//!   reference model's reach) and any input sequence; both oracles after
//!   every step, the reference model where it reaches; close, drain, one
//!   outcome per op; determinism.
//! - [`timeline`]: any bytes as a simulator timeline file; when they parse,
//!   a bounded replay. Never a panic: bad input is an error value.
//! - [`driver`]: bytes decoded by the simulator's world generator (the one
//!   `explore` uses) into a configuration and a world, replayed through the
//!   fast loop *and* the real driver (`redial::Client` on the virtual
//!   runtime): both must hold every invariant and give the same op fates
//!   and events.

/// Most simulated events one `timeline` input may cause.
pub const TIMELINE_MAX_EVENTS: u64 = 20_000;

/// The `machine` target: [`redial_check::harness::run_bytes`].
pub fn machine(data: &[u8]) {
    redial_check::harness::run_bytes(data);
}

/// The `timeline` target: `data` as the text of a timeline file; when it
/// parses, a replay bounded to [`TIMELINE_MAX_EVENTS`] events, rendered as
/// JSON lines (which walks the output code too).
pub fn timeline(data: &[u8]) {
    if let Some((tl, opts)) = bounded_timeline(data) {
        let _ = redial_sim::run_formatted(&tl, &opts, redial_sim::Format::Json);
    }
}

/// `data` as a timeline file, and run options bounded to
/// [`TIMELINE_MAX_EVENTS`] events; `None` when it does not parse.
fn bounded_timeline(data: &[u8]) -> Option<(redial_sim::Timeline, redial_sim::RunOptions)> {
    let text = std::str::from_utf8(data).ok()?;
    let tl = redial_sim::Timeline::parse(text, "fuzz.toml").ok()?;
    let opts = redial_sim::RunOptions {
        max_events: Some(TIMELINE_MAX_EVENTS),
        max_time: redial_core::Duration::from_secs(600),
        ..redial_sim::RunOptions::default()
    };
    Some((tl, opts))
}

/// The `driver` target: `data` decoded by the simulator's world generator
/// ([`redial_sim::explore::fuzz_world`] — the same generator `explore` and
/// the proptest strategy use) into a configuration and a world; the fast
/// loop and the real driver replay it (bounded to 20,000 events each) and
/// must agree, with every invariant and the policy contract held in both.
///
/// # Panics
///
/// On a disagreement or a violation (that is the finding).
pub fn driver(data: &[u8]) {
    if let Some(found) = redial_sim::explore::fuzz_world(data, None, true) {
        assert!(
            found.is_empty(),
            "driver and fast loop disagree, or a violation:\n{}",
            found.join("\n")
        );
    }
}
