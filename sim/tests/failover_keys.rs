//! The failover, pushback and give-up keys of the timeline format:
//! `require_primary`, `give_up`, `cool_down`, `[[endpoint]] loading`,
//! `server = "busy"` with `for` and `retry_after`, `client = "revive"` —
//! what they parse to, and the `file:line:col` errors that name the key.

use core::time::Duration;

use redial_sim::core::GiveUp;
use redial_sim::{
    ClientAction, Format, RunOptions, ServerAction, StepAction, Timeline, run_formatted,
    run_through_driver_formatted,
};

fn parse(text: &str) -> Timeline {
    Timeline::parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// `text` is refused at `line:col` with a message containing `what`.
fn bad(text: &str, line: usize, col: usize, what: &str) {
    let e = Timeline::parse(text, "bad.toml").expect_err(text);
    assert_eq!((e.line, e.column), (line, col), "{e}");
    assert!(e.message.contains(what), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("bad.toml:{line}:{col}: "))
    );
}

#[test]
fn require_primary_and_the_give_up_policy_parse() {
    let tl = parse("[config]\nrequire_primary = true\n");
    assert!(tl.config.require_primary());
    assert_eq!(tl.config.give_up(), GiveUp::Terminal);
    // On in the recommended preset, and a key turns it off.
    assert!(
        parse("[config]\npreset = \"recommended\"\n")
            .config
            .require_primary()
    );
    let off = parse("[config]\npreset = \"recommended\"\nrequire_primary = false\n");
    assert!(!off.config.require_primary());
    assert!(!parse("").config.require_primary());

    let cool = parse("[config]\ncool_down = \"30s\"\n");
    assert_eq!(
        cool.config.give_up(),
        GiveUp::CoolDown(Duration::from_secs(30))
    );
    let both = parse("[config]\ngive_up = \"cool-down\"\ncool_down = \"1.5s\"\n");
    assert_eq!(
        both.config.give_up(),
        GiveUp::CoolDown(Duration::from_millis(1500))
    );
    let terminal = parse("[config]\ngive_up = \"terminal\"\n");
    assert_eq!(terminal.config.give_up(), GiveUp::Terminal);
}

#[test]
fn bad_config_values_name_their_key() {
    bad(
        "[config]\nrequire_primary = \"yes\"\n",
        2,
        19,
        "expected a boolean",
    );
    bad(
        "[config]\ngive_up = \"sometimes\"\n",
        2,
        11,
        "unknown give_up `sometimes`: expected terminal or cool-down",
    );
    bad(
        "[config]\ngive_up = \"cool-down\"\n",
        2,
        11,
        "`give_up = \"cool-down\"` needs `cool_down",
    );
    bad(
        "[config]\ngive_up = \"terminal\"\ncool_down = \"5s\"\n",
        3,
        13,
        "`cool_down` does not apply to `give_up = \"terminal\"`",
    );
    bad(
        "[config]\ncool_down = \"0ms\"\n",
        2,
        13,
        "`cool_down` must be greater than zero",
    );
    bad("[config]\ncool_down = \"-1s\"\n", 2, 13, "negative");
    bad("[config]\ncool_down = \"101y\"\n", 2, 13, "unknown unit");
    bad("[config]\ncool_down = \"1000000h\"\n", 2, 13, "too large");
}

#[test]
fn loading_busy_and_revive_parse() {
    let tl = parse(concat!(
        "[[endpoint]]\nname = \"db.0\"\nloading = \"1500ms\"\n",
        "[[endpoint]]\nname = \"db.1\"\n",
        "[[step]]\nat = \"1s\"\nserver = \"busy\"\nendpoint = \"db.1\"\nfor = \"2s\"\nretry_after = \"250ms\"\n",
        "[[step]]\nat = \"2s\"\nserver = \"busy\"\nfor = \"1s\"\n",
        "[[step]]\nat = \"3s\"\nclient = \"revive\"\n",
    ));
    assert_eq!(tl.endpoints[0].loading, Duration::from_millis(1500));
    assert_eq!(tl.endpoints[1].loading, Duration::ZERO);
    assert_eq!(
        tl.steps[0].action,
        StepAction::Server {
            action: ServerAction::Busy {
                retry_after: Some(Duration::from_millis(250))
            },
            endpoint: 1,
            for_: Some(Duration::from_secs(2)),
        }
    );
    assert_eq!(
        tl.steps[1].action,
        StepAction::Server {
            action: ServerAction::Busy { retry_after: None },
            endpoint: 0,
            for_: Some(Duration::from_secs(1)),
        }
    );
    assert_eq!(tl.steps[2].action, StepAction::Client(ClientAction::Revive));
}

#[test]
fn bad_steps_and_endpoints_name_their_key() {
    bad(
        "[[step]]\nat = \"1s\"\nserver = \"busy\"\n",
        3,
        10,
        "`server = \"busy\"` needs `for`",
    );
    bad(
        "[[step]]\nat = \"1s\"\nserver = \"down\"\nretry_after = \"1s\"\n",
        4,
        15,
        "`retry_after` only applies to `server = \"busy\"` steps",
    );
    bad(
        "[[step]]\nat = \"1s\"\nsubmit = \"q\"\nretry_after = \"1s\"\n",
        4,
        15,
        "`retry_after` only applies to `server = \"busy\"` steps",
    );
    bad(
        "[[step]]\nat = \"1s\"\nserver = \"busy\"\nfor = \"1s\"\nretry_after = \"-5ms\"\n",
        5,
        15,
        "negative",
    );
    bad(
        "[[step]]\nat = \"1s\"\nserver = \"overloaded\"\n",
        3,
        10,
        "expected up, down, crash, blackhole, pause, promote, demote or busy",
    );
    bad(
        "[[step]]\nat = \"1s\"\nclient = \"restart\"\n",
        3,
        10,
        "unknown client action `restart`: expected close or revive",
    );
    bad(
        "[[step]]\nat = \"1s\"\nclient = \"revive\"\nfor = \"1s\"\n",
        2,
        6,
        "a `client` step takes no other key than `at`",
    );
    bad(
        "[[endpoint]]\nname = \"db.0\"\nloading = \"-1s\"\n",
        3,
        11,
        "negative",
    );
    bad(
        "[[endpoint]]\nname = \"db.0\"\nloading = \"1000000h\"\n",
        3,
        11,
        "too large",
    );
}

/// Both loops, text transcript.
fn both(text: &str) -> (String, String) {
    let tl = parse(text);
    let opts = RunOptions::default();
    let (fast, s) = run_formatted(&tl, &opts, Format::Text);
    assert!(s.violations.is_empty(), "{:?}\n{fast}", s.violations);
    let (drv, s) = run_through_driver_formatted(&tl, &opts, Format::Text);
    assert!(s.violations.is_empty(), "{:?}\n{drv}", s.violations);
    let d = redial_sim::compare_with_fast_loop(&tl, &opts);
    assert!(d.is_empty(), "{d:?}");
    (fast, drv)
}

#[test]
fn a_secondary_is_refused_on_connect_only_when_the_primary_is_required() {
    let world = "[[endpoint]]\nname = \"db.0\"\nrole = \"secondary\"\n\
                 [[endpoint]]\nname = \"db.1\"\n\
                 [[step]]\nat = \"1s\"\nsubmit = \"w\"\n";
    let (on, _) = both(&format!(
        "[config]\nreconnect_interval = \"100ms\"\ninitial_connect = \"retry\"\nrequire_primary = true\n{world}"
    ));
    assert!(
        on.contains("reconnecting: attempt 1 to db.1 in 100 ms (last attempt not_primary)"),
        "{on}"
    );
    assert!(
        on.contains("Finished w #1 (submitted at 1.000s): ok on db.1 (attempts 1)"),
        "{on}"
    );
    // Off: connected to the secondary; the op is refused there (READONLY)
    // and sent again on the primary.
    let (off, _) = both(&format!(
        "[config]\nreconnect_interval = \"100ms\"\nrequire_primary = false\n{world}"
    ));
    assert!(off.contains("connected to db.0 (conn#1)"), "{off}");
    assert!(
        off.contains("lost connection to db.0 (conn#1: not primary)"),
        "{off}"
    );
    assert!(off.contains("ok on db.1 (attempts 2)"), "{off}");
}

#[test]
fn loading_applies_to_restarts_only_and_busy_ends_on_its_own() {
    let (t, _) = both(concat!(
        "[config]\npreset = \"recommended\"\n",
        "[[endpoint]]\nname = \"db.0\"\nloading = \"300ms\"\n",
        // Up at t = 0: loaded already.
        "[[step]]\nat = \"100ms\"\nsubmit = \"a\"\n",
        // A blackhole is not a restart.
        "[[step]]\nat = \"200ms\"\nserver = \"blackhole\"\nfor = \"100ms\"\n",
        "[[step]]\nat = \"400ms\"\nsubmit = \"b\"\n",
        "[[step]]\nat = \"1s\"\nserver = \"busy\"\nfor = \"500ms\"\nretry_after = \"200ms\"\n",
        // A crash ends a busy spell (and its end line).
        "[[step]]\nat = \"1100ms\"\nserver = \"crash\"\nfor = \"50ms\"\n",
        "[[step]]\nat = \"1200ms\"\nsubmit = \"c\"\n",
    ));
    assert!(
        t.contains("Finished a #1 (submitted at 0.100s): ok on db.0 (attempts 1)"),
        "{t}"
    );
    assert!(t.contains("== server db.0 up\n"), "{t}");
    assert!(
        t.contains("Finished b #2 (submitted at 0.400s): ok on db.0 (attempts 1)"),
        "{t}"
    );
    assert!(
        t.contains("== server db.0 busy for 500 ms (retry after 200 ms)"),
        "{t}"
    );
    assert!(t.contains("== server db.0 up (loading for 300 ms)"), "{t}");
    assert!(!t.contains("no longer busy"), "{t}");
    assert!(t.contains("summary: 3 submitted, 3 ok, 0 failed"), "{t}");
}

/// Explore seed 13773, shrunk: a pushback probe in flight passes its
/// deadline; the machine re-arms the next probe for that same instant
/// (left due by `handle_timeout`). The driver fires it before the
/// application's follow-up submit at that instant; the fast loop must too
/// (it used to take the submit first: the same fates, but a different
/// buffer peak).
#[test]
fn a_probe_rearmed_by_a_timer_step_fires_before_the_next_input() {
    let text = concat!(
        "seed = 81\nuntil = \"24916ms\"\n",
        "[network]\nlatency = \"4ms\"\nservice_time = \"222ms\"\njitter = \"2ms\"\n",
        "[config]\nreconnect_tries = 4\nreconnect_interval = \"773ms\"\nop_deadline = \"880ms\"\n",
        "[[step]]\nat = \"220ms\"\nsubmit = \"op\"\nthen = \"followup\"\n",
        "[[step]]\nat = \"1036ms\"\nsubmit = \"op\"\nretryable = true\n",
        "[[step]]\nat = \"118ms\"\nserver = \"busy\"\nfor = \"4469ms\"\n",
        "[[step]]\nat = \"478ms\"\nserver = \"busy\"\nfor = \"519ms\"\n",
    );
    let (fast, drv) = both(text);
    assert!(fast.contains("max buffered 1;"), "{fast}");
    assert_eq!(fast.lines().last(), drv.lines().last());
}
