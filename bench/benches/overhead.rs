//! Adapter overhead: the same closed-loop workload (4 concurrent callers on
//! one shared connection) through a raw connection and through redial.
//!
//! ```sh
//! cd bench
//! cargo bench --bench overhead                                   # criterion, then the summary table
//! REDIAL_BENCH_SUMMARY_ONLY=1 cargo bench --bench overhead       # the summary table only
//! REDIAL_BENCH_SUMMARY_ONLY=1 REDIAL_BENCH_ONLY=redis cargo bench --bench overhead
//! cargo clippy --all-targets -- -D warnings && cargo test        # what CI runs here
//! ```
//!
//! - `echo/<runtime>/{raw,redial}`: an in-process TCP echo server; the raw
//!   side is a pipelined line client, and redial drives that very client
//!   through a `Connector`, on tokio, smol and async-std.
//! - `redis/<runtime>/{raw,redial,redial+deadline+hb,connection-manager}`:
//!   `INCR` against a private redis-server with the `redis` crate's
//!   multiplexed connection, redial's `RedisConnector` (which runs that
//!   same connection) with `Config::recommended()` and with
//!   `recommended()` plus a 5 s `op_deadline` and a 1 s / 500 ms
//!   heartbeat, and the crate's own `ConnectionManager`, on tokio and smol
//!   (the `redis` crate picks smol when not inside tokio; it is built here
//!   with `smol-comp`). Not on async-std: the crate would then pick
//!   async-std's executor for smol too, and async-std is discontinued
//!   upstream.
//!
//! - `mem/tokio/{raw,redial}`: an in-memory connector that answers at once
//!   (no IO, no yield), one caller on a current-thread tokio runtime: the
//!   raw side calls the connector's `run` directly, redial's is the whole
//!   per-op path through the client (submit, dispatch, run, report,
//!   complete). Built with `--features tracing` (redial's `tracing`
//!   feature, no subscriber installed), the variant is named
//!   `tokio/redial+tracing`: the two builds, run one after the other,
//!   show what the instrumentation costs when nobody listens:
//!
//!   ```sh
//!   REDIAL_BENCH_ONLY=mem cargo bench --bench overhead
//!   REDIAL_BENCH_ONLY=mem cargo bench --bench overhead --features tracing
//!   ```
//!
//! criterion measures each variant's throughput; afterwards a summary pass
//! runs every variant in interleaved rounds (so drift hits all alike) and
//! prints the table in BENCHMARKS.md: median throughput, p50/p99 latency,
//! and each variant's ratio to raw taken in the same run.
//!
//! `REDIAL_BENCH_SUMMARY_ONLY=1` skips the criterion part;
//! `REDIAL_BENCH_ONLY=echo/tokio` keeps the variants whose
//! `workload/variant` name contains that text (for profiling one path).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use redial::core::{Config, Heartbeat};
use redial::redis::RedisConnector;
use redial::runtime::{AsyncStdRuntime, SmolRuntime, TokioRuntime};
use redial::{Client, Runtime};
use redial_bench::{
    AsyncStdNet, Batch, EchoServer, MemConnector, Net, Pipe, PipeConnector, Redis, SmolNet,
    TokioNet, micros, quantile, run_batch,
};

const CALLERS: usize = 4;
const LINE: &[u8] = b"redial-bench-0123456789\n";
/// Ops per criterion iteration and per summary round.
const OPS: usize = 2000;
const ROUNDS: usize = 40;

type Runner = Box<dyn FnMut(usize) -> Batch>;

struct Variant {
    group: &'static str,
    name: String,
    /// True for the baseline the group's other variants are compared with.
    baseline: bool,
    run: Runner,
}

fn tokio_rt() -> Arc<tokio::runtime::Runtime> {
    Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime"),
    )
}

/// A block_on for each runtime, so one generic builder serves all three.
trait BlockOn: Clone + 'static {
    fn block_on<F: Future>(&self, f: F) -> F::Output;
    fn redial_runtime(&self) -> Arc<dyn Runtime>;
}

#[derive(Clone)]
struct OnTokio(Arc<tokio::runtime::Runtime>);
#[derive(Clone)]
struct OnSmol;
#[derive(Clone)]
struct OnAsyncStd;

impl BlockOn for OnTokio {
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.0.block_on(f)
    }
    fn redial_runtime(&self) -> Arc<dyn Runtime> {
        Arc::new(TokioRuntime)
    }
}
impl BlockOn for OnSmol {
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        smol::block_on(f)
    }
    fn redial_runtime(&self) -> Arc<dyn Runtime> {
        Arc::new(SmolRuntime)
    }
}
impl BlockOn for OnAsyncStd {
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        async_std::task::block_on(f)
    }
    fn redial_runtime(&self) -> Arc<dyn Runtime> {
        Arc::new(AsyncStdRuntime)
    }
}

fn echo_variants<N: Net, B: BlockOn>(on: B, addr: SocketAddr, out: &mut Vec<Variant>) {
    let pipe: Pipe = on
        .block_on(N::connect(addr))
        .expect("connect to echo server");
    let raw_on = on.clone();
    out.push(Variant {
        group: "echo",
        name: format!("{}/raw", N::NAME),
        baseline: true,
        run: Box::new(move |n| raw_on.block_on(run_batch(CALLERS, n, || pipe.call(LINE)))),
    });

    let client = on.block_on(async {
        let client = Client::builder(PipeConnector::<N>::new(addr))
            .config(Config::recommended())
            .seed(1)
            .runtime(on.redial_runtime())
            .build()
            .expect("client");
        client.call(LINE.to_vec()).await.expect("redial warm-up");
        client
    });
    out.push(Variant {
        group: "echo",
        name: format!("{}/redial", N::NAME),
        baseline: false,
        run: Box::new(move |n| on.block_on(run_batch(CALLERS, n, || client.call(LINE.to_vec())))),
    });
}

/// The name of redial's `mem` variant: says which build it is.
const MEM_REDIAL: &str = if cfg!(feature = "tracing") {
    "tokio/redial+tracing"
} else {
    "tokio/redial"
};

fn mem_variants(out: &mut Vec<Variant>) {
    use redial::Connector;
    let on = OnTokio(tokio_rt());
    let raw_on = on.clone();
    let raw = Arc::new(MemConnector);
    out.push(Variant {
        group: "mem",
        name: "tokio/raw".into(),
        baseline: true,
        run: Box::new(move |n| raw_on.block_on(run_batch(1, n, || raw.run(&(), &7)))),
    });
    let client = on.block_on(async {
        let client = Client::builder(MemConnector)
            .config(Config::recommended())
            .seed(1)
            .runtime(on.redial_runtime())
            .build()
            .expect("client");
        client.call(7).await.expect("redial warm-up");
        client
    });
    out.push(Variant {
        group: "mem",
        name: MEM_REDIAL.into(),
        baseline: false,
        run: Box::new(move |n| on.block_on(run_batch(1, n, || client.call(7)))),
    });
}

fn incr(key: &'static str) -> redis::Cmd {
    let mut c = redis::cmd("INCR");
    c.arg(key);
    c
}

fn redis_variants<B: BlockOn>(on: B, rt: &'static str, server: &Redis, out: &mut Vec<Variant>) {
    let url = server.url();
    let client = redis::Client::open(url.as_str()).expect("redis url");

    // As redial's connector opens it: no response timeout of the crate's
    // own (redis 1.x sets 500 ms by default, a timer per command), so the
    // difference between the two is redial's cost.
    let raw = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mux = on
        .block_on(client.get_multiplexed_async_connection_with_config(&raw))
        .expect("redis connect");
    out.push(redis_crate_variant(
        on.clone(),
        format!("{rt}/raw"),
        true,
        mux,
        "bench:raw",
    ));

    out.push(redial_variant(
        on.clone(),
        format!("{rt}/redial"),
        &url,
        Config::recommended(),
        "bench:redial",
    ));
    out.push(redial_variant(
        on.clone(),
        format!("{rt}/redial+deadline+hb"),
        &url,
        deadline_heartbeat(),
        "bench:redial-dh",
    ));

    let manager = on
        .block_on(client.get_connection_manager())
        .expect("connection manager");
    out.push(redis_crate_variant(
        on,
        format!("{rt}/connection-manager"),
        false,
        manager,
        "bench:manager",
    ));
}

/// `Config::recommended()` with a 5 s deadline on every op (so every op
/// also goes through the core's deadline heap) and a heartbeat every 1 s
/// answered within 500 ms (instead of 5 s / 3 s).
fn deadline_heartbeat() -> Config {
    Config::builder()
        .op_deadline(Some(Duration::from_secs(5)))
        .heartbeat(Some(Heartbeat {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
        }))
        .build()
        .expect("recommended + deadline + heartbeat")
}

/// `INCR key` through a redial client over `RedisConnector` with `config`.
fn redial_variant<B: BlockOn>(
    on: B,
    name: String,
    url: &str,
    config: Config,
    key: &'static str,
) -> Variant {
    let redial = on.block_on(async {
        let c = Client::builder(RedisConnector::new([url]).expect("redis url"))
            .config(config)
            .seed(1)
            .runtime(on.redial_runtime())
            .build()
            .expect("client");
        c.call(incr(key)).await.expect("redial warm-up");
        c
    });
    Variant {
        group: "redis",
        name,
        baseline: false,
        run: Box::new(move |n| on.block_on(run_batch(CALLERS, n, || redial.call(incr(key))))),
    }
}

/// `INCR key` through one of the `redis` crate's own connection types
/// (the multiplexed connection, or the `ConnectionManager` around one).
fn redis_crate_variant<B, C>(
    on: B,
    name: String,
    baseline: bool,
    conn: C,
    key: &'static str,
) -> Variant
where
    B: BlockOn,
    C: redis::aio::ConnectionLike + Clone + 'static,
{
    Variant {
        group: "redis",
        name,
        baseline,
        run: Box::new(move |n| {
            on.block_on(run_batch(CALLERS, n, || {
                let mut c = conn.clone();
                async move { incr(key).query_async::<i64>(&mut c).await }
            }))
        }),
    }
}

struct Summary {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn main() {
    let echo = EchoServer::start().expect("echo server");
    let redis = Redis::start();
    let mut variants = Vec::new();
    mem_variants(&mut variants);
    echo_variants::<TokioNet, _>(OnTokio(tokio_rt()), echo.addr(), &mut variants);
    echo_variants::<SmolNet, _>(OnSmol, echo.addr(), &mut variants);
    echo_variants::<AsyncStdNet, _>(OnAsyncStd, echo.addr(), &mut variants);
    if let Some(server) = &redis {
        redis_variants(OnTokio(tokio_rt()), "tokio", server, &mut variants);
        redis_variants(OnSmol, "smol", server, &mut variants);
    }

    if let Ok(only) = std::env::var("REDIAL_BENCH_ONLY") {
        variants.retain(|v| format!("{}/{}", v.group, v.name).contains(&only));
    }

    if std::env::var("REDIAL_BENCH_SUMMARY_ONLY").as_deref() != Ok("1") {
        let mut c = Criterion::default()
            .sample_size(20)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .configure_from_args();
        for v in &mut variants {
            let mut g = c.benchmark_group(v.group);
            g.throughput(Throughput::Elements(OPS as u64));
            g.bench_function(v.name.as_str(), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| (v.run)(OPS).elapsed).sum())
            });
            g.finish();
        }
        c.final_summary();
    }

    // Interleaved rounds: every variant runs one round in turn, ROUNDS times.
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut lats: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    for v in &mut variants {
        let _ = (v.run)(OPS); // warm-up
    }
    for _ in 0..ROUNDS {
        for (i, v) in variants.iter_mut().enumerate() {
            let b = (v.run)(OPS);
            rates[i].push(b.latencies.len() as f64 / b.elapsed.as_secs_f64());
            lats[i].extend(b.latencies);
        }
    }
    let summaries: Vec<Summary> = rates
        .iter_mut()
        .zip(lats.iter_mut())
        .map(|(r, l)| {
            l.sort_unstable();
            Summary {
                ops_per_sec: redial_bench::median(r),
                p50: quantile(l, 0.50),
                p99: quantile(l, 0.99),
            }
        })
        .collect();

    println!(
        "\n## Adapter overhead ({CALLERS} callers, one shared connection, {ROUNDS} interleaved rounds of {OPS} ops)\n"
    );
    println!(
        "| workload | variant | throughput (median, ops/s) | p50 | p99 | throughput vs raw | p99 vs raw |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, v) in variants.iter().enumerate() {
        let s = &summaries[i];
        let base = variants
            .iter()
            .position(|b| {
                b.baseline
                    && b.group == v.group
                    && b.name.split('/').next() == v.name.split('/').next()
            })
            .map(|j| &summaries[j]);
        let (tput, p99) = match base {
            Some(b) if !v.baseline => (
                format!("{:+.1}%", (s.ops_per_sec / b.ops_per_sec - 1.0) * 100.0),
                format!("{:+.1}%", (micros(s.p99) / micros(b.p99) - 1.0) * 100.0),
            ),
            _ => ("baseline".into(), "baseline".into()),
        };
        println!(
            "| {} | {} | {:.0} | {:.1} µs | {:.1} µs | {} | {} |",
            v.group,
            v.name,
            s.ops_per_sec,
            micros(s.p50),
            micros(s.p99),
            tput,
            p99
        );
    }
    drop(variants);
    drop(redis);
}
