//! The fleet simulator: determinism, accounting, and what each fault and
//! policy does to a small fleet.

use std::process::Command;
use std::time::Duration;

use redial_sim::core::{Config, QuickReconnect, Tries};
use redial_sim::fleet::{FleetFault, FleetOptions, FleetReport, run_fleet};

fn small(config: Config, fault: FleetFault) -> FleetOptions {
    FleetOptions {
        clients: 300,
        fault,
        until: Duration::from_secs(30),
        ..FleetOptions::new(config)
    }
}

fn restart(ms: u64) -> FleetFault {
    FleetFault::Restart {
        outage: Duration::from_millis(ms),
    }
}

fn run(o: &FleetOptions) -> FleetReport {
    run_fleet(o).expect("valid options")
}

#[test]
fn same_seed_same_report_and_another_seed_another() {
    let o = small(Config::recommended(), restart(2000));
    let a = run(&o);
    assert_eq!(a, run(&o));
    assert_eq!(a.to_json(), run(&o).to_json());
    let b = run(&FleetOptions { seed: 1, ..o });
    assert_ne!(
        a.recovery, b.recovery,
        "the seed feeds every client's jitter"
    );
}

#[test]
fn every_op_gets_exactly_one_fate() {
    for fault in [
        restart(2000),
        FleetFault::KillConnections,
        FleetFault::Blackhole {
            outage: Duration::from_secs(8),
        },
    ] {
        for config in [
            Config::recommended(),
            Config::mongodb_legacy(),
            Config::fail_fast(),
        ] {
            let r = run(&small(config, fault));
            let fates: u64 = r.fates.values().sum();
            assert_eq!(fates, r.ops, "{fault:?}: {:?}", r.fates);
            assert_eq!(r.ops, 300 * 30, "one op per client per second");
        }
    }
}

#[test]
fn quick_reconnects_find_a_restarted_server_within_one_probe() {
    // recommended(): refusals are probed every 50-100 ms, so every client
    // is back within about 100 ms (plus a round trip) of the return.
    let r = run(&small(Config::recommended(), restart(2000)));
    assert_eq!(r.not_recovered, 0);
    let max = r.recovery_quantile(1.0).unwrap();
    assert!(max <= Duration::from_millis(102), "max recovery {max:?}");
    // The listening server received each client once after its return
    // (the refusals went to its host while it was down).
    assert_eq!(r.peak_at_return(), 300);
    let refused: u64 = r.seconds.values().map(|s| s.refused).sum();
    assert!(refused > 300 * 10, "2 s of probing: {refused} refusals");
}

#[test]
fn full_jitter_alone_spreads_the_return_over_seconds() {
    let cfg = Config::recommended()
        .to_builder()
        .quick_reconnect(None)
        .build()
        .unwrap();
    let r = run(&small(cfg, restart(10_000)));
    assert_eq!(r.not_recovered, 0);
    let max = r.recovery_quantile(1.0).unwrap();
    assert!(max > Duration::from_secs(1), "max recovery {max:?}");
    assert!(max <= Duration::from_millis(5002), "capped at 5 s: {max:?}");
    assert!(r.peak_at_return() < 300);
}

#[test]
fn a_killed_connection_is_retried_at_once() {
    let r = run(&small(Config::recommended(), FleetFault::KillConnections));
    assert_eq!(r.not_recovered, 0);
    // Reset seen half a round trip after the kill, a connect of one round
    // trip: 1.5 ms.
    assert_eq!(r.recovery_quantile(1.0), Some(Duration::from_micros(1500)));
    // The legacy constant interval waits its second.
    let legacy = run(&small(
        Config::mongodb_legacy(),
        FleetFault::KillConnections,
    ));
    assert!(legacy.recovery_quantile(0.5).unwrap() >= Duration::from_secs(1));
}

#[test]
fn a_young_connection_is_not_retried_at_once() {
    // A second kill 0.5 s after the first: the connections that came back
    // were up for less than QuickReconnect::MIN_UPTIME, so the backoff
    // paces them (no hot loop against a server that drops at once).
    let cfg = Config::recommended();
    let first = run(&small(cfg.clone(), FleetFault::KillConnections));
    let o = FleetOptions {
        fault_at: Duration::from_millis(1500),
        ..small(cfg, FleetFault::KillConnections)
    };
    // The fleet connects at 1 ms; at 1.5 s every connection is older than
    // a second: retried at once.
    assert_eq!(run(&o).recovery_quantile(1.0), first.recovery_quantile(1.0));
    let young = FleetOptions {
        fault_at: Duration::from_millis(500),
        ..o
    };
    let r = run(&young);
    assert!(
        r.recovery_quantile(0.5).unwrap() > Duration::from_millis(5),
        "{:?}",
        r.recovery_quantile(0.5)
    );
}

#[test]
fn a_blackhole_holds_traffic_until_it_heals() {
    let r = run(&small(
        Config::recommended(),
        FleetFault::Blackhole {
            outage: Duration::from_secs(2),
        },
    ));
    // Nothing was lost: TCP delivers what was sent once the path heals.
    assert_eq!(r.not_recovered, 0);
    assert_eq!(
        r.fates.get("ok").copied(),
        Some(r.ops - count(&r, "closed"))
    );
}

fn count(r: &FleetReport, fate: &str) -> u64 {
    r.fates
        .iter()
        .filter(|(k, _)| k.starts_with(fate))
        .map(|(_, n)| *n)
        .sum()
}

#[test]
fn an_accept_limit_turns_clients_away_and_they_back_off() {
    let o = FleetOptions {
        accept_rate: Some(1000),
        clients: 3000,
        ..small(Config::recommended(), restart(2000))
    };
    let r = run(&o);
    let turned: u64 = r.seconds.values().map(|s| s.turned_away).sum();
    assert!(turned > 0);
    // No second accepts more than the limit (plus the bucket's burst).
    assert!(r.seconds.values().all(|s| s.accepted <= 1000 + 100));
    assert_eq!(r.not_recovered, 0);
    // 3,000 clients at 1,000/s: the last cannot be back before ~2 s.
    assert!(r.recovery_quantile(1.0).unwrap() > Duration::from_millis(1800));
}

#[test]
fn options_out_of_range_are_refused_by_name() {
    let base = small(Config::recommended(), restart(2000));
    for (o, word) in [
        (
            FleetOptions {
                clients: 0,
                ..base.clone()
            },
            "clients",
        ),
        (
            FleetOptions {
                rtt: Duration::ZERO,
                ..base.clone()
            },
            "rtt",
        ),
        (
            FleetOptions {
                op_every: Some(Duration::ZERO),
                ..base.clone()
            },
            "op_every",
        ),
        (
            FleetOptions {
                accept_rate: Some(0),
                ..base.clone()
            },
            "accept_rate",
        ),
        (
            FleetOptions {
                until: Duration::from_secs(11),
                ..base.clone()
            },
            "until",
        ),
    ] {
        let e = run_fleet(&o).unwrap_err();
        assert!(e.contains(word), "{e}");
    }
}

#[test]
fn legacy_presets_keep_their_pacing() {
    // mongodb-legacy: a constant second between attempts, no quick
    // reconnects. The loss is seen at 10.0005 s; each refused attempt
    // takes a 1 ms round trip before the next second starts: attempts at
    // 11.0005, 12.0015 and 13.0025 s, connected at 13.0035 s, 503.5 ms
    // after the return at 12.5 s.
    let cfg = Config::mongodb_legacy()
        .to_builder()
        .reconnect_tries(Tries::Unlimited)
        .build()
        .unwrap();
    assert_eq!(cfg.quick_reconnect(), None);
    let r = run(&small(cfg, restart(2500)));
    assert_eq!(r.recovery_quantile(0.0), r.recovery_quantile(1.0));
    assert_eq!(
        r.recovery_quantile(0.5),
        Some(Duration::from_micros(503_500))
    );
}

#[test]
fn the_probe_pace_is_the_recovery_bound() {
    let slow = Config::recommended()
        .to_builder()
        .quick_reconnect(Some(QuickReconnect {
            probe: Duration::from_millis(400),
            probe_for: Duration::from_secs(30),
        }))
        .build()
        .unwrap();
    let r = run(&small(slow, restart(2000)));
    let max = r.recovery_quantile(1.0).unwrap();
    assert!(max > Duration::from_millis(200) && max <= Duration::from_millis(402));
}

#[test]
fn the_command_line_runs_a_fleet_and_names_a_bad_option() {
    let bin = env!("CARGO_BIN_EXE_redial-sim");
    let out = Command::new(bin)
        .args([
            "fleet",
            "--clients",
            "50",
            "--until",
            "20s",
            "--format",
            "json",
        ])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["clients"], 50);
    assert_eq!(json["not_recovered"], 0);
    let out = Command::new(bin)
        .args(["fleet", "--outage", "soon"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--outage"));
    let out = Command::new(bin)
        .args(["fleet", "--preset", "fastest"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--preset"));
}

#[test]
fn a_fault_at_the_start_counts_no_connection_made_before_it() {
    // The fleet's first connects, made at 0 s and answered after the
    // server died at 0 s, are not recoveries: every client recovers after
    // the server's return.
    let o = FleetOptions {
        fault_at: Duration::ZERO,
        ..small(Config::recommended(), restart(2000))
    };
    let r = run(&o);
    assert_eq!(r.not_recovered, 0);
    assert!(
        r.recovery_quantile(0.0).unwrap() > Duration::ZERO,
        "{:?}",
        r.recovery_quantile(0.0)
    );
}
