//! `server = "pause"` (a process under SIGSTOP until SIGCONT): nothing is
//! closed, nothing answered meanwhile, and nothing lost — what reached the
//! server is answered when it resumes; and a killed connection (`CLIENT
//! KILL`) is `down` for 1 µs.

use redial_sim::{Line, RunOptions, Timeline, compare_with_fast_loop, run};

fn ops(text: &str) -> Vec<redial_sim::OpLine> {
    let tl = Timeline::parse(text, "pause.toml").unwrap_or_else(|e| panic!("{e}"));
    let mut ops = Vec::new();
    let s = run(&tl, &RunOptions::default(), |l| {
        if let Line::Op(o) = l {
            ops.push(o.clone());
        }
    });
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    let d = compare_with_fast_loop(&tl, &RunOptions::default());
    assert!(d.is_empty(), "the driver disagrees: {d:?}");
    ops.sort_by_key(|o| o.id);
    ops
}

const WORKLOAD: &str = r#"
[network]
latency = "50us"
service_time = "20us"

[[workload]]
submit = "op"
every = "20ms"
from = "10ms"
until = "2s"
"#;

#[test]
fn a_paused_server_answers_what_it_received_when_it_resumes() {
    let text = format!(
        "[config]\npreset = \"recommended\"\n{WORKLOAD}\n[[step]]\nat = \"500ms\"\nserver = \"pause\"\nfor = \"1s\"\n"
    );
    let ops = ops(&text);
    assert_eq!(ops.len(), 100);
    for o in &ops {
        assert!(o.result.is_ok(), "#{}: {:?}", o.id, o.result);
        assert_eq!(o.attempts, 1, "#{}: sent once", o.id);
        if (500_000..1_500_000).contains(&o.submitted_us) {
            // Answered after the resume: taken up at 1.5 s, then service
            // and the way back.
            assert!(
                o.t_us >= 1_500_020 && o.t_us < 1_501_000,
                "#{}: {}",
                o.id,
                o.t_us
            );
        } else {
            assert!(o.t_us - o.submitted_us < 1_000, "#{}", o.id);
        }
    }
    // The blackhole of the same length loses them instead.
    let lost = ops_no_driver(&text.replace("\"pause\"", "\"blackhole\""));
    assert!(lost.iter().any(|o| o.result.is_err()));
}

fn ops_no_driver(text: &str) -> Vec<redial_sim::OpLine> {
    let tl = Timeline::parse(text, "pause.toml").unwrap_or_else(|e| panic!("{e}"));
    let mut ops = Vec::new();
    run(&tl, &RunOptions::default(), |l| {
        if let Line::Op(o) = l {
            ops.push(o.clone());
        }
    });
    ops
}

#[test]
fn a_response_timeout_shorter_than_the_pause_gives_up_and_reconnects_after_it() {
    // The connection is declared unresponsive during the pause; the new
    // connect is accepted by the (paused) server's kernel and answered on
    // resume, within the connect timeout.
    let text = format!(
        "[config]\npreset = \"recommended\"\nresponse_timeout = \"300ms\"\n{WORKLOAD}\n[[step]]\nat = \"500ms\"\nserver = \"pause\"\nfor = \"1s\"\n"
    );
    let ops = ops(&text);
    assert_eq!(ops.len(), 100);
    assert!(
        ops.iter().any(|o| o.result.is_err()),
        "some op was in flight at the timeout"
    );
    let last = ops.last().expect("ops");
    assert!(last.result.is_ok(), "{last:?}");
}

#[test]
fn pause_needs_for() {
    let e = Timeline::parse("[[step]]\nat = \"1s\"\nserver = \"pause\"\n", "p.toml")
        .expect_err("refused");
    assert!(e.message.contains("needs `for`"), "{e}");
}

#[test]
fn a_killed_connection_is_down_for_one_microsecond() {
    // Every connection closed, the server back before the client can see
    // the loss: nothing refused, every op ok (none in flight at 1.5 s; the
    // connection was up over 1 s, so `recommended` reconnects at once).
    let text = format!(
        "[config]\npreset = \"recommended\"\n{WORKLOAD}\n[[step]]\nat = \"1500ms\"\nserver = \"down\"\nfor = \"1us\"\n"
    );
    let ops = ops(&text);
    assert_eq!(ops.len(), 100);
    assert!(ops.iter().all(|o| o.result.is_ok()));
    // With `for = "1ms"` the quick reconnect (at once, one latency after
    // the close) is refused and waits for a probe instead.
    let slow = ops_no_driver(&text.replace("\"1us\"", "\"1ms\""));
    let worst = |v: &[redial_sim::OpLine]| v.iter().map(|o| o.t_us - o.submitted_us).max();
    assert!(
        worst(&slow) > worst(&ops),
        "{:?} vs {:?}",
        worst(&slow),
        worst(&ops)
    );
}
