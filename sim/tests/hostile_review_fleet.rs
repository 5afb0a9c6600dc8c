//! Hostile review of `redial-sim fleet`: defects found (each test fails).

use std::time::Duration;

use redial_sim::core::Config;
use redial_sim::fleet::{FleetFault, FleetOptions, run_fleet};

/// `--fault restart --outage 0s` (or `FleetFault::Restart { outage: 0 }`)
/// is accepted, and the report says the server was "back at" the fault
/// instant, but `FaultEnd` is only scheduled for a non-zero outage: the
/// server stays down for the rest of the run, every attempt is refused and
/// no client recovers. Same for `Blackhole { outage: 0 }`.
/// CLI: `redial-sim fleet --fault restart --outage 0s --clients 100`
/// prints `not recovered: 100`.
#[test]
fn a_zero_outage_restart_brings_the_server_back() {
    for fault in [
        FleetFault::Restart {
            outage: Duration::ZERO,
        },
        FleetFault::Blackhole {
            outage: Duration::ZERO,
        },
    ] {
        let o = FleetOptions {
            clients: 50,
            fault,
            until: Duration::from_secs(30),
            ..FleetOptions::new(Config::recommended())
        };
        let r = run_fleet(&o).expect("accepted options");
        assert_eq!(
            r.not_recovered, 0,
            "{fault:?}: the server is 'back at' {:?} but no client ever reconnected \
             (it stays down for good)",
            r.back_at
        );
    }
}

/// The report keeps one row per second of virtual time up to the last
/// second that saw an attempt, so memory (and the JSON output) grows with
/// the fault instant, not with the clients or the work: one client with
/// `--at 1000h` keeps 3.6 million rows; `--at 20000h` takes 2.2 GB (2.9 GB
/// and a 72-million-row JSON with `--format json`); `--at 800000h` (the
/// parser allows up to 100 years) aborts with
/// `memory allocation of 92160000064 bytes failed`:
/// `redial-sim fleet --at 800000h --until 800001h --clients 1 --preset mongodb-legacy --op-every off`
#[test]
fn fleet_memory_does_not_grow_with_the_fault_instant() {
    let o = FleetOptions {
        clients: 1,
        fault_at: Duration::from_secs(1000 * 3600),
        until: Duration::from_secs(1000 * 3600 + 30),
        op_every: None,
        ..FleetOptions::new(Config::mongodb_legacy())
    };
    let r = run_fleet(&o).expect("accepted options");
    let rows = r.seconds.len();
    assert!(
        rows < 10_000,
        "one client, a handful of attempts, {rows} per-second rows kept"
    );
}
