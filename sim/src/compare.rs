//! The same timeline under several presets, side by side.

use std::collections::BTreeMap;

use redial_core::Preset;
use serde::Serialize;

use crate::output::Line;
use crate::run::{RunOptions, run};
use crate::timeline::{Timeline, TimelineError};

/// Per-label counts of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LabelCounts {
    /// Succeeded.
    pub ok: u64,
    /// Failed, by error kind.
    pub failed: BTreeMap<String, u64>,
    /// No outcome when the run ended.
    pub pending: u64,
}

/// What one preset did with the timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Column {
    /// The preset's name (or the `--config` it ran under).
    pub preset: String,
    /// Counts per op label.
    pub labels: BTreeMap<String, LabelCounts>,
    /// Longest time from a `disconnected` event to the next
    /// `reconnected` (ms); `None` if there was no loss.
    pub max_recovery_ms: Option<u64>,
    /// Losses never followed by a reconnect before the end.
    pub unrecovered: u64,
    /// Invariant violations.
    pub violations: Vec<String>,
}

/// Runs `tl` under each preset (the file's other config keys still apply).
pub fn compare(
    tl: &Timeline,
    presets: &[Preset],
    opts: &RunOptions,
) -> Result<Vec<Column>, TimelineError> {
    let mut runs = Vec::new();
    for &p in presets {
        runs.push((p.name().to_string(), tl.with_preset(p)?));
    }
    Ok(compare_timelines(&runs, opts))
}

/// Runs each (column name, timeline) — the same world under several
/// configurations, e.g. [`Timeline::with_config`] — side by side.
pub fn compare_timelines(runs: &[(String, Timeline)], opts: &RunOptions) -> Vec<Column> {
    let mut cols = Vec::new();
    for (name, t) in runs {
        let mut labels: BTreeMap<String, LabelCounts> = BTreeMap::new();
        let mut lost_at: Option<u64> = None;
        let mut max_recovery: Option<u64> = None;
        let summary = run(t, opts, |line| match line {
            Line::Op(o) => {
                let c = labels.entry(o.label.clone()).or_default();
                match &o.result {
                    Ok(_) => c.ok += 1,
                    Err((k, _)) => *c.failed.entry(k.clone()).or_default() += 1,
                }
            }
            Line::Event { t_us, event, .. } => match *event {
                "disconnected" => {
                    lost_at.get_or_insert(*t_us);
                }
                "reconnected" => {
                    if let Some(at) = lost_at.take() {
                        let d = (t_us - at) / 1000;
                        max_recovery = Some(max_recovery.map_or(d, |m: u64| m.max(d)));
                    }
                }
                _ => {}
            },
            Line::World { .. } => {}
        });
        if summary.pending > 0 {
            labels
                .entry("(pending, any label)".into())
                .or_default()
                .pending = summary.pending;
        }
        cols.push(Column {
            preset: name.clone(),
            labels,
            max_recovery_ms: max_recovery,
            unrecovered: u64::from(lost_at.is_some()),
            violations: summary.violations,
        });
    }
    cols
}

/// The comparison as a text table: one row per label, one column per preset.
pub fn render_text(cols: &[Column]) -> String {
    let mut labels: Vec<&String> = cols.iter().flat_map(|c| c.labels.keys()).collect();
    labels.sort();
    labels.dedup();
    let width = 34;
    let mut out = format!("{:<20}", "label");
    for c in cols {
        out.push_str(&format!(" | {:<width$}", c.preset));
    }
    out.push('\n');
    for l in labels {
        out.push_str(&format!("{:<20}", l));
        for c in cols {
            let cell = match c.labels.get(l) {
                None => "-".to_string(),
                Some(n) => {
                    let mut parts = vec![format!("{} ok", n.ok)];
                    for (k, v) in &n.failed {
                        parts.push(format!("{v} {k}"));
                    }
                    if n.pending > 0 {
                        parts.push(format!("{} pending", n.pending));
                    }
                    parts.join(", ")
                }
            };
            out.push_str(&format!(" | {cell:<width$}"));
        }
        out.push('\n');
    }
    out.push_str(&format!("{:<20}", "time to recovery"));
    for c in cols {
        let cell = match (c.max_recovery_ms, c.unrecovered) {
            (_, 1) => "not recovered".to_string(),
            (Some(ms), _) => format!("{ms} ms (longest)"),
            (None, _) => "no loss".to_string(),
        };
        out.push_str(&format!(" | {cell:<width$}"));
    }
    out.push('\n');
    for c in cols {
        for v in &c.violations {
            out.push_str(&format!("VIOLATION [{}] {v}\n", c.preset));
        }
    }
    out
}
