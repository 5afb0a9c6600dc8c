//! Feature `tracing`: a tiny in-test subscriber collects every event the
//! client logs through a scripted outage (a refused first connect, a lost
//! connection with refused reconnects, a failed op, a give-up) and checks
//! the connection events, each op's submitted → completed events with its
//! kind and may_have_run, the targets, levels and the client's span.
//!
//! The runtime is tokio's current-thread one, so the driver task runs on
//! the test thread, where the subscriber is the default.

#![cfg(all(feature = "tokio", feature = "tracing"))]

mod support;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redial::CallOptions;
use redial::core::{ErrorKind, Tries};
use support::flaky::{Flaky, client, config};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record as SpanRecord};
use tracing::{Event, Level, Metadata, Subscriber};

/// One event as collected.
#[derive(Clone, Debug)]
struct Logged {
    target: String,
    level: Level,
    message: String,
    fields: BTreeMap<String, String>,
    /// Inside a `redial.client` span.
    in_client_span: bool,
}

impl Logged {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
}

/// Collects every event; knows which span ids are `redial.client` spans
/// and how deep inside them the (single) thread is.
#[derive(Clone, Default)]
struct Collect {
    events: Arc<Mutex<Vec<Logged>>>,
    client_spans: Arc<Mutex<Vec<(u64, String)>>>,
    next: Arc<AtomicU64>,
    depth: Arc<AtomicUsize>,
}

impl Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        if attrs.metadata().name() == "redial.client" {
            let mut f = Fields::default();
            attrs.record(&mut f);
            let client = f.0.get("client").cloned().unwrap_or_default();
            self.client_spans.lock().unwrap().push((id, client));
        }
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &SpanRecord<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let message = f.0.remove("message").unwrap_or_default();
        self.events.lock().unwrap().push(Logged {
            target: event.metadata().target().into(),
            level: *event.metadata().level(),
            message,
            fields: f.0,
            in_client_span: self.depth.load(Ordering::SeqCst) > 0,
        });
    }
    fn enter(&self, id: &Id) {
        if self.is_client(id) {
            self.depth.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn exit(&self, id: &Id) {
        if self.is_client(id) {
            self.depth.fetch_sub(1, Ordering::SeqCst);
        }
    }
    fn clone_span(&self, id: &Id) -> Id {
        id.clone()
    }
    fn try_close(&self, _: Id) -> bool {
        false
    }
}

impl Collect {
    fn is_client(&self, id: &Id) -> bool {
        self.client_spans
            .lock()
            .unwrap()
            .iter()
            .any(|(s, _)| *s == id.into_u64())
    }
}

/// Runs `f` on a current-thread tokio runtime with `collect` as the
/// default subscriber.
fn run_collected(collect: &Collect, f: impl std::future::Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    tracing::subscriber::with_default(collect.clone(), || {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), f)
                .await
                .expect("the scenario finishes");
        });
    });
}

/// The index of the first event at or after `from` with this message whose
/// fields include every `(name, value)` of `with`; panics with the log.
fn find(log: &[Logged], from: usize, message: &str, with: &[(&str, &str)]) -> usize {
    log.iter()
        .enumerate()
        .skip(from)
        .find(|(_, e)| e.message == message && with.iter().all(|(k, v)| e.field(k) == Some(*v)))
        .map(|(i, _)| i)
        .unwrap_or_else(|| {
            let lines: Vec<String> = log
                .iter()
                .enumerate()
                .map(|(i, e)| format!("{i}: {} {} {} {:?}", e.level, e.target, e.message, e.fields))
                .collect();
            panic!(
                "no `{message}` with {with:?} from event {from}:\n{}",
                lines.join("\n")
            )
        })
}

/// The `n`th (from 0) `op submitted` event: its index and op id.
fn submitted(log: &[Logged], n: usize) -> (usize, String) {
    let (i, e) = log
        .iter()
        .enumerate()
        .filter(|(_, e)| e.message == "op submitted")
        .nth(n)
        .unwrap_or_else(|| panic!("no op submitted #{n}: {log:?}"));
    (i, e.field("op").expect("an op id").to_string())
}

#[test]
fn an_outage_logs_its_connection_events_and_each_op_its_lifecycle() {
    let collect = Collect::default();
    run_collected(&collect, async {
        let flaky = Flaky::default();
        let script = flaky.script.clone();
        // The first connect is refused: op 1 is submitted while connecting
        // and waits in the buffer.
        script.refuse.store(1, Ordering::SeqCst);
        let client = client(flaky, config());
        assert_eq!(client.call(1).await.expect("op 1"), 1);
        // Op 2's run loses the connection; two reconnects are refused; it
        // is retried on the new connection.
        script.refuse.store(2, Ordering::SeqCst);
        script.lose_next.store(true, Ordering::SeqCst);
        let retried = CallOptions::new().retryable(true).max_attempts(3);
        assert_eq!(client.call_with(2, retried).await.expect("op 2"), 2);
        // Op 3 is not retryable: its lost run fails it, maybe executed.
        script.lose_next.store(true, Ordering::SeqCst);
        let e = client.call(3).await.expect_err("op 3 fails");
        assert_eq!(e.kind(), ErrorKind::ConnectionLost);
        client.close().await;
    });
    let log = collect.events.lock().unwrap().clone();

    // Every event is the client's, on the two targets, in its span.
    let spans = collect.client_spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 1, "one span per client: {spans:?}");
    for e in &log {
        assert!(
            e.target == "redial::op" || e.target == "redial::conn",
            "{e:?}"
        );
        assert!(e.in_client_span, "outside the client's span: {e:?}");
        if e.target == "redial::op" && e.message.starts_with("op ") {
            assert_eq!(e.level, Level::DEBUG, "{e:?}");
        }
    }

    // The refused first connect, then the connection.
    let attempt = find(
        &log,
        0,
        "connect attempt",
        &[("conn", "1"), ("endpoint", "0")],
    );
    assert_eq!(log[attempt].level, Level::INFO);
    let failed = find(
        &log,
        attempt,
        "connect failed",
        &[("conn", "1"), ("failure", "refused")],
    );
    assert_eq!(log[failed].level, Level::INFO);
    assert!(
        log[failed]
            .field("error")
            .is_some_and(|w| w.contains("refused")),
        "the connector's words: {:?}",
        log[failed]
    );
    let reconnecting = find(&log, failed, "reconnecting", &[("attempt", "1")]);
    assert_eq!(log[reconnecting].level, Level::INFO);
    // Op 1: submitted while connecting, buffered, dispatched, completed.
    let (sub1, op1) = submitted(&log, 0);
    let op1 = op1.as_str();
    assert_eq!(log[sub1].field("retryable"), Some("false"));
    assert_eq!(log[sub1].field("state"), Some("connecting"));
    let buf1 = find(&log, sub1, "op buffered", &[("op", op1)]);
    let connected = find(
        &log,
        failed,
        "connected",
        &[("conn", "2"), ("role", "unknown")],
    );
    assert_eq!(log[connected].level, Level::INFO);
    let disp1 = find(
        &log,
        buf1.max(connected),
        "op dispatched",
        &[("op", op1), ("attempt", "1")],
    );
    find(
        &log,
        disp1,
        "op completed",
        &[
            ("op", op1),
            ("kind", "ok"),
            ("may_have_run", "true"),
            ("attempts", "1"),
        ],
    );

    // Op 2: dispatched, the connection lost (warn), re-queued, two
    // refused reconnects, reconnected, retried, completed ok.
    let (sub2, op2) = submitted(&log, 1);
    let op2 = op2.as_str();
    assert_eq!(log[sub2].field("retryable"), Some("true"));
    assert_eq!(log[sub2].field("max_attempts"), Some("Some(3)"));
    let disp2 = find(&log, sub2, "op dispatched", &[("op", op2), ("conn", "2")]);
    let lost = find(&log, disp2, "connection lost", &[("conn", "2")]);
    assert_eq!(log[lost].level, Level::WARN);
    let requeued = find(&log, disp2, "op re-queued", &[("op", op2), ("conn", "2")]);
    let mut at = lost;
    for conn in ["3", "4"] {
        let a = find(&log, at, "connect attempt", &[("conn", conn)]);
        at = find(
            &log,
            a,
            "connect failed",
            &[("conn", conn), ("failure", "refused")],
        );
    }
    let reconnected = find(&log, at, "reconnected", &[("conn", "5")]);
    assert_eq!(log[reconnected].level, Level::INFO);
    let retry = find(
        &log,
        reconnected.max(requeued),
        "op retried",
        &[("op", op2), ("conn", "5"), ("attempt", "2")],
    );
    find(
        &log,
        retry,
        "op completed",
        &[("op", op2), ("kind", "ok"), ("attempts", "2")],
    );

    // Op 3: lost with its connection, not retryable.
    let (sub3, op3) = submitted(&log, 2);
    let op3 = op3.as_str();
    find(
        &log,
        sub3,
        "op completed",
        &[
            ("op", op3),
            ("kind", "connection_lost"),
            ("may_have_run", "true"),
            ("attempts", "1"),
        ],
    );
    find(&log, sub3, "client closed", &[]);
}

#[test]
fn a_give_up_is_a_warning() {
    let collect = Collect::default();
    run_collected(&collect, async {
        let flaky = Flaky::default();
        flaky.script.refuse.store(u32::MAX, Ordering::SeqCst);
        let client = client(flaky, config().reconnect_tries(Tries::Limited(2)));
        let e = client.call(1).await.expect_err("no server");
        assert_eq!(e.kind(), ErrorKind::ReconnectFailed);
        client.close().await;
    });
    let log = collect.events.lock().unwrap().clone();
    let (_, op1) = submitted(&log, 0);
    let gave_up = find(&log, 0, "gave up reconnecting", &[("attempts", "2")]);
    assert_eq!(log[gave_up].level, Level::WARN);
    assert_eq!(log[gave_up].target, "redial::conn");
    assert_eq!(log[gave_up].field("error"), Some("Some(Refused)"));
    find(
        &log,
        gave_up,
        "op completed",
        &[
            ("op", op1.as_str()),
            ("kind", "reconnect_failed"),
            ("may_have_run", "false"),
        ],
    );
}
