//! Resource bounds of the checker (found by a hostile review): made-up
//! ids cannot make its table grow, and wild ids are kept apart correctly.
use redial_check::Checker;
use redial_core::*;

fn rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: f64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096.0 / 1e6
}

#[test]
fn made_up_ids_walk_the_table_up() {
    let mut c = Checker::new(&Config::mongoose());
    let before = rss_mb();
    let t = std::time::Instant::now();
    // Each id's slot is just inside the SLACK window of the table's current length.
    let mut slot: u64 = 0;
    for _ in 0..200 {
        slot += (1 << 16) - 1;
        c.on_submit(
            Instant::ZERO,
            OpId::from_raw(1 << 32 | slot),
            &OpOptions::new(),
            State::Connecting,
        );
    }
    let after = rss_mb();
    eprintln!(
        "200 made-up ids: RSS {before:.1} MB -> {after:.1} MB in {:?}; open {}",
        t.elapsed(),
        c.open_ops()
    );
    assert!(
        after - before < 100.0,
        "200 ids cost {:.0} MB",
        after - before
    );
}

#[test]
fn wild_id_then_table_grows_past_it() {
    let mut c = Checker::new(&Config::mongoose());
    let now = Instant::ZERO;
    let w = OpId::from_raw(1 << 32 | 70_000);
    c.on_submit(now, w, &OpOptions::new(), State::Connecting);
    for s in 0..=70_001u64 {
        c.on_submit(
            now,
            OpId::from_raw(2 << 32 | s),
            &OpOptions::new(),
            State::Connecting,
        );
    }
    assert!(c.is_ok(), "{:?}", c.violations());
    assert_eq!(c.open_ops(), 70_003);
    let fail = |id| {
        Output::<()>::Complete(Completion {
            id,
            payload: (),
            result: Err(OpError::new(ErrorKind::Cancelled, false, 0)),
        })
    };
    c.on_output(now, &fail(w));
    c.on_output(now, &fail(OpId::from_raw(2 << 32 | 70_000)));
    assert!(c.is_ok(), "{:?}", c.violations());
    c.on_output(now, &fail(w));
    let k: Vec<_> = c.violations().iter().map(|v| v.kind.name()).collect();
    assert_eq!(k, ["double_outcome"]);
    // the same wild id submitted again
    c.on_submit(now, w, &OpOptions::new(), State::Connecting);
    let k: Vec<_> = c.violations().iter().map(|v| v.kind.name()).collect();
    assert_eq!(k, ["double_outcome", "duplicate_id"]);
    for s in 0..=70_001u64 {
        if s != 70_000 {
            c.on_output(now, &fail(OpId::from_raw(2 << 32 | s)));
        }
    }
    assert_eq!(c.open_ops(), 0);
    c.finish();
    assert_eq!(c.violations().len(), 2);
}
