//! `compare --diff`: the ops whose fate differs between two columns,
//! grouped, against an independent count of the same runs.

use redial_core::Preset;
use redial_sim::compare::{compare_timelines, fate_diff, render_diff};
use redial_sim::{RunOptions, Timeline};

fn columns(file: &str, presets: &[Preset]) -> Vec<redial_sim::compare::Column> {
    let path = format!("{}/timelines/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("timeline");
    let tl = Timeline::parse(&text, &path).expect("parses");
    let runs: Vec<_> = presets
        .iter()
        .map(|p| (p.name().to_string(), tl.with_preset(*p).expect("preset")))
        .collect();
    compare_timelines(&runs, &RunOptions::default())
}

#[test]
fn the_diff_groups_exactly_the_ops_whose_fate_differs() {
    for file in [
        "restart-db0.toml",
        "mongoose-buffer-until-reconnect.toml",
        "failover-seed-list.toml",
        "pg-transaction-retry.toml",
    ] {
        let cols = columns(
            file,
            &[Preset::Recommended, Preset::FailFast, Preset::MongodbLegacy],
        );
        for b in &cols[1..] {
            let a = &cols[0];
            let diff = fate_diff(a, b);
            // An independent count: ids in either run whose fate differs.
            let ids: std::collections::BTreeSet<_> = a.ops.keys().chain(b.ops.keys()).collect();
            let differing = ids
                .iter()
                .filter(|id| a.ops.get(id).map(|f| &f.fate) != b.ops.get(id).map(|f| &f.fate))
                .count() as u64;
            assert_eq!(
                diff.iter().map(|c| c.count).sum::<u64>(),
                differing,
                "{file}: {} → {}",
                a.preset,
                b.preset
            );
            for c in &diff {
                assert_ne!(c.from, c.to, "{file}: a group with no change");
                assert!(!c.examples.is_empty() && c.examples.len() <= 5);
            }
            // Largest group first.
            assert!(diff.windows(2).all(|w| w[0].count >= w[1].count));
            // Deterministic.
            assert_eq!(
                render_diff(&diff, a, b),
                render_diff(&fate_diff(a, b), a, b)
            );
        }
        // A column against itself: nothing differs.
        assert!(fate_diff(&cols[0], &cols[0]).is_empty(), "{file}");
    }
}

#[test]
fn buffered_ops_under_recommended_fail_at_once_under_fail_fast() {
    let cols = columns("restart-db0.toml", &[Preset::Recommended, Preset::FailFast]);
    let diff = fate_diff(&cols[0], &cols[1]);
    let g = diff
        .iter()
        .find(|c| c.from == "buffered, then ok" && c.to == "failed no_connection (not run)")
        .unwrap_or_else(|| panic!("{diff:?}"));
    assert!(g.count > 0);
    // Failed at once: no time in the buffer under fail-fast.
    assert_eq!(g.to_us.map(|(_, hi)| hi), Some(0), "{g:?}");
    let text = render_diff(&diff, &cols[0], &cols[1]);
    assert!(
        text.contains("buffered, then ok after")
            && text.contains("→ failed no_connection (not run) after 0 ms"),
        "{text}"
    );
}
