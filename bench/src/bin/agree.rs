//! The agreement measurement: the same fault schedules under the real
//! peers (fred, the `redis` crate's `ConnectionManager`, ioredis 5 and 6
//! on Node.js) against a private
//! `redis-server` and under the simulator with the matching preset; per
//! scenario and peer, how the op fates agree (ok / failed / hung /
//! duplicated).
//!
//! ```sh
//! cd bench && cargo run --release --bin agree            # markdown, about 2 min
//! cd bench && cargo run --release --bin agree -- --json  # one JSON document, every op both ways
//! cd bench && cargo run --release --bin agree -- --only sigstop
//! ```
//!
//! Needs `redis-server` on PATH (SKIPPED otherwise; with
//! `REDIAL_REQUIRE_SERVERS=1` it fails instead). The ioredis peers need
//! `node` on PATH and `cd bench/agree && npm ci` (a SKIPPED line and no
//! ioredis rows otherwise, never a failure). See `redial_bench::agree`.

use std::process::ExitCode;

use redial_bench::Redis;
use redial_bench::agree::{self, IOREDIS_PEERS, PEERS, Peer, SERVER_ARGS};

fn usage() -> &'static str {
    "usage: agree [--json] [--only SCENARIO[,SCENARIO...]]"
}

fn main() -> ExitCode {
    let mut json = false;
    let mut only: Option<Vec<String>> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--only" => match args.next() {
                Some(v) => only = Some(v.split(',').map(str::to_string).collect()),
                None => {
                    eprintln!("error: --only needs a scenario name\n{}", usage());
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("{}", usage());
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("error: unknown argument `{other}`\n{}", usage());
                return ExitCode::from(2);
            }
        }
    }
    let mut schedules = agree::schedules();
    if let Some(only) = &only {
        let known: Vec<&str> = schedules.iter().map(|s| s.name).collect();
        if let Some(bad) = only.iter().find(|o| !known.contains(&o.as_str())) {
            eprintln!(
                "error: unknown scenario `{bad}`: expected one of {}",
                known.join(", ")
            );
            return ExitCode::from(2);
        }
        schedules.retain(|s| only.iter().any(|o| o == s.name));
    }
    let Some(mut server) = Redis::start_with(&SERVER_ARGS) else {
        return ExitCode::SUCCESS;
    };
    let mut peers: Vec<Peer> = PEERS.to_vec();
    let node = match agree::ioredis_available() {
        Ok(v) => {
            peers.extend(IOREDIS_PEERS);
            Some(v)
        }
        Err(e) => {
            eprintln!(
                "SKIPPED: ioredis (node or npm module missing: run `cd bench/agree && npm ci`): {e}"
            );
            None
        }
    };
    let version = redial_bench::redis_version(server.port());
    let tag = std::process::id().to_string();
    let started = std::time::Instant::now();
    let mut results = Vec::new();
    for s in &schedules {
        eprintln!("running {} ({}) ...", s.name, s.fault.describe());
        match agree::run_scenario(&mut server, s, &peers, &tag) {
            Ok(r) => results.push(r),
            Err(e) => {
                eprintln!("error: {}: {e}", s.name);
                return ExitCode::FAILURE;
            }
        }
    }
    let took = started.elapsed().as_secs_f64();
    if json {
        let doc = serde_json::json!({
            "redis_server": version,
            "peers": peers,
            "node": node,
            "seconds": took,
            "scenarios": results,
        });
        match serde_json::to_string(&doc) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: JSON: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        println!("redis-server {version}; {took:.0} s");
        match &node {
            Some(v) => println!("{v}\n"),
            None => println!("ioredis SKIPPED (node or npm module missing)\n"),
        }
        for p in &peers {
            println!("- `{}` (sim preset `{}`): {}", p.name, p.preset, p.client);
        }
        println!();
        print!("{}", agree::render_markdown(&results));
    }
    ExitCode::SUCCESS
}
