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
    /// Of all these, the ops sent again after a loss in flight: each may
    /// have run twice (in JSON only when not zero).
    #[serde(skip_serializing_if = "is_zero")]
    pub may_have_run_twice: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
    /// Each op's fate, by submission number (for [`fate_diff`]; not in
    /// the column's JSON).
    #[serde(skip)]
    pub ops: BTreeMap<u64, OpFate>,
}

/// What became of one op in one run, as [`fate_diff`] compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpFate {
    /// The op's label.
    pub label: String,
    /// Its fate, without times: `ok`, `buffered, then ok`, `failed
    /// no_connection (not run)`, `failed connection_lost (may have run)`,
    /// `buffered, then failed buffer_timeout (not run)`, or `pending`.
    pub fate: String,
    /// From its submission to its outcome, µs (`None`: pending at the end).
    pub took_us: Option<u64>,
}

impl OpFate {
    fn of(o: &crate::output::OpLine) -> OpFate {
        // Buffered: not sent at once (sent later, or never sent and
        // answered later).
        let waited = o.first_dispatch_us.unwrap_or(o.t_us) > o.submitted_us;
        let then = if waited { "buffered, then " } else { "" };
        let twice = if o.runs >= 2 {
            ", sent twice: may have run twice"
        } else {
            ""
        };
        let fate = match &o.result {
            Ok(_) if o.runs >= 2 => format!("{then}ok (sent twice: may have run twice)"),
            Ok(_) => format!("{then}ok"),
            Err((kind, _)) if o.runs >= 2 => format!("{then}failed {kind} (may have run{twice})"),
            Err((kind, _)) => format!(
                "{then}failed {kind} ({})",
                if o.maybe_executed {
                    "may have run"
                } else {
                    "not run"
                }
            ),
        };
        OpFate {
            label: o.label.clone(),
            fate,
            took_us: Some(o.t_us.saturating_sub(o.submitted_us)),
        }
    }
}

/// Ops whose fate differs between two columns, grouped: `count` ops
/// labelled `label` went `from` in the first column and `to` in the
/// second, after the given times (from submission to outcome).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FateChange {
    /// The first column's name.
    pub from_column: String,
    /// The second column's name.
    pub to_column: String,
    /// The ops' label.
    pub label: String,
    /// How many ops.
    pub count: u64,
    /// Their fate in the first column.
    pub from: String,
    /// Their fate in the second column.
    pub to: String,
    /// Shortest and longest time to the outcome in the first column, µs
    /// (`None`: pending at the end, or not submitted there).
    pub from_us: Option<(u64, u64)>,
    /// The same in the second column.
    pub to_us: Option<(u64, u64)>,
    /// The first few ops' submission numbers (`#n` in `replay`'s
    /// transcript), at most 5.
    pub examples: Vec<u64>,
}

/// The ops whose fate differs between columns `a` and `b` (paired by
/// submission number: the same timeline submits the same ops in the same
/// order, except ops a run's own outcomes trigger), grouped by label and
/// by the pair of fates, largest group first. An op one run submitted and
/// the other did not is `not submitted` there; an op without an outcome
/// when the run ended is `pending`.
pub fn fate_diff(a: &Column, b: &Column) -> Vec<FateChange> {
    let missing = |label: &str| OpFate {
        label: label.to_string(),
        fate: "not submitted".into(),
        took_us: None,
    };
    let ids: std::collections::BTreeSet<u64> = a.ops.keys().chain(b.ops.keys()).copied().collect();
    // (label, from, to) -> (count, from range, to range, examples)
    type Acc = (u64, Option<(u64, u64)>, Option<(u64, u64)>, Vec<u64>);
    let mut groups: BTreeMap<(String, String, String), Acc> = BTreeMap::new();
    let widen = |r: &mut Option<(u64, u64)>, t: Option<u64>| {
        if let Some(t) = t {
            *r = Some(r.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))));
        }
    };
    for id in ids {
        let label = a
            .ops
            .get(&id)
            .or(b.ops.get(&id))
            .map_or("", |f| f.label.as_str());
        let fa = a.ops.get(&id).cloned().unwrap_or_else(|| missing(label));
        let fb = b.ops.get(&id).cloned().unwrap_or_else(|| missing(label));
        if fa.fate == fb.fate {
            continue;
        }
        let g = groups
            .entry((fa.label.clone(), fa.fate.clone(), fb.fate.clone()))
            .or_insert((0, None, None, Vec::new()));
        g.0 += 1;
        widen(&mut g.1, fa.took_us);
        widen(&mut g.2, fb.took_us);
        if g.3.len() < 5 {
            g.3.push(id);
        }
    }
    let mut out: Vec<FateChange> = groups
        .into_iter()
        .map(
            |((label, from, to), (count, fr, tr, examples))| FateChange {
                from_column: a.preset.clone(),
                to_column: b.preset.clone(),
                label,
                count,
                from,
                to,
                from_us: fr,
                to_us: tr,
                examples,
            },
        )
        .collect();
    // Largest first; the BTreeMap's order breaks ties, so the output is
    // the same for the same runs.
    out.sort_by_key(|c| std::cmp::Reverse(c.count));
    out
}

/// [`fate_diff`] as text: one line per group, e.g. `412 op ops: buffered,
/// then ok after 120–480 ms → failed no_connection (not run) after 0 ms`.
pub fn render_diff(changes: &[FateChange], a: &Column, b: &Column) -> String {
    let mut out = format!("ops whose fate differs, {} → {}:\n", a.preset, b.preset);
    if changes.is_empty() {
        out.push_str("  none: every op had the same fate\n");
    }
    let span = |r: Option<(u64, u64)>| match r.map(|(lo, hi)| (lo / 1000, hi / 1000)) {
        None => String::new(),
        Some((lo, hi)) if lo == hi => format!(" after {lo} ms"),
        Some((lo, hi)) => format!(" after {lo}–{hi} ms"),
    };
    for c in changes {
        let ex: Vec<String> = c.examples.iter().map(|n| format!("#{n}")).collect();
        out.push_str(&format!(
            "  {} `{}` op{}: {}{} → {}{} (e.g. {})\n",
            c.count,
            c.label,
            if c.count == 1 { "" } else { "s" },
            c.from,
            span(c.from_us),
            c.to,
            span(c.to_us),
            ex.join(" ")
        ));
    }
    out
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
        let mut ops = BTreeMap::new();
        let summary = run(t, opts, |line| match line {
            Line::Op(o) => {
                ops.insert(o.id, OpFate::of(o));
                let c = labels.entry(o.label.clone()).or_default();
                if o.runs >= 2 {
                    c.may_have_run_twice += 1;
                }
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
            ops,
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
                    if n.may_have_run_twice > 0 {
                        parts.push(format!("{} sent twice", n.may_have_run_twice));
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
        let twice: u64 = c.labels.values().map(|n| n.may_have_run_twice).sum();
        if twice > 0 {
            out.push_str(&format!(
                "WARNING [{}] {twice} {} sent again after a loss in flight: each may have run twice (\"sent twice\"); safe only for idempotent ops\n",
                c.preset,
                if twice == 1 { "op was" } else { "ops were" }
            ));
        }
    }
    for c in cols {
        for v in &c.violations {
            out.push_str(&format!("VIOLATION [{}] {v}\n", c.preset));
        }
    }
    out
}
