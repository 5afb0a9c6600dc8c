//! Pictures of runs: `replay` and `compare` as SVG.
//!
//! A picture has a title (the timeline file, its name, the configuration),
//! the servers' bands (up, down or crashed, blackholed, paused, loading or busy,
//! and their role below), then one group per run (`replay`: one; `compare`:
//! one per column) with the client's state as the core reports it, its
//! connections, its events and every op as a bar from its submission to its
//! outcome, coloured by fate (faded while it waited unsent, solid once
//! sent). A shared time axis and a legend close it; every bar, band and
//! marker carries its details as a tooltip.
//!
//! The same run gives the same bytes: no hashed collections, and every
//! coordinate is integer arithmetic printed with one decimal.
//!
//! **Many ops.** Ops are packed greedily into lanes in pixel space (an op
//! takes the first lane free at its start, so ops shorter than a pixel do
//! not hide each other). At most [`MAX_OP_LANES`] lanes are drawn per run;
//! the ops that do not fit are summed into a density strip below them (per
//! 2 px, how many were open, coloured by their most common fate). A run
//! therefore draws at most about 40 × 290 op bars however many ops it had:
//! the file grows linearly with the ops up to that, then only with the
//! events and state changes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use redial_core::State;

use crate::output::{Field, Line, Summary};
use crate::run::{Observed, RunOptions, run_observed};
use crate::timeline::{Role, Timeline};

/// The most op lanes drawn per run; further ops go to the density strip.
pub const MAX_OP_LANES: usize = 40;
const MAX_CONN_LANES: usize = 3;
const WIDTH: u64 = 1200;
/// Left edge of the plot (labels to its left) and its width, px.
const LEFT: u64 = 165;
const PLOT: u64 = 1005;
/// Minimum drawn width of a bar, and the gap kept after it in its lane,
/// in 0.1 px (all x coordinates are).
const MIN_W: u64 = 25;
const GAP: u64 = 10;
/// Density strip bin width.
const BIN: u64 = 20;

const STYLE: &str = "text{font-family:DejaVu Sans,Verdana,sans-serif;font-size:11px;fill:#222}\
.t{font-size:16px;font-weight:bold}.s{fill:#555}.h{font-size:12px;font-weight:bold}\
.in{font-size:9px;fill:#111}.inw{font-size:9px;fill:#fff}.tk{font-size:10px;fill:#555}\
.grid{stroke:#e4e4e4}.axis{stroke:#444}\
.up{fill:#d9ead3}.down{fill:#e06666}.blackhole{fill:#3c3c3c}.spaused{fill:#5b6b7f}.pushback{fill:#f6b26b}\
.primary{fill:#3d85c6}.secondary{fill:#b4a7d6}\
.connecting{fill:#9fc5e8}.connected{fill:#6aa84f}.draining{fill:#76a5af}.paused{fill:#f6b26b}\
.backoff{fill:#ffd966}.cdown{fill:#999}.failed{fill:#c00}.closed{fill:#666}.other{fill:#ccc}\
.conn{fill:#a2c4c9;stroke:#45818e;stroke-width:.5}\
.ok rect,rect.ok{fill:#6aa84f}.notrun rect,rect.notrun{fill:#e69138}\
.mayrun rect,rect.mayrun{fill:#900}.twice rect{stroke:#000;stroke-width:1}rect.twice{fill:#fff;stroke:#000}.hung rect,rect.hung{fill:#8e7cc3}.w{fill-opacity:.4}\
.ev{stroke-width:1.2}.e-up{fill:#38761d;stroke:#38761d}.e-lost{fill:#c00;stroke:#c00}\
.e-retry{fill:#999;stroke:#999}.e-fail{fill:#000;stroke:#000}.e-other{fill:#a64d79;stroke:#a64d79}\
.hl{stroke-dasharray:3,3;stroke-opacity:.5}";

/// The end of the tooltip of an op that may have run twice.
const TWICE: &str = ", sent again after a loss in flight: may have run twice";

/// What became of an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Ok,
    NotRun,
    MayRun,
    Hung,
}

const FATES: [Fate; 4] = [Fate::Ok, Fate::NotRun, Fate::MayRun, Fate::Hung];

impl Fate {
    fn class(self) -> &'static str {
        match self {
            Fate::Ok => "ok",
            Fate::NotRun => "notrun",
            Fate::MayRun => "mayrun",
            Fate::Hung => "hung",
        }
    }
}

#[derive(Clone, Debug)]
struct OpBar {
    id: u64,
    start: u64,
    sent: Option<u64>,
    end: u64,
    fate: Fate,
    /// Sent again after a loss in flight: may have run twice.
    twice: bool,
    /// Interned "label: what became of it", for the tooltip.
    what: u32,
}

/// One run, as a picture needs it: fed the run's transcript lines
/// ([`Track::line`]), then its summary and what [`run_observed`] saw
/// ([`Track::finish`]). Ops are kept compactly (about 40 bytes each).
#[derive(Clone, Debug, Default)]
pub struct Track {
    name: String,
    ops: Vec<OpBar>,
    strings: Vec<String>,
    interned: BTreeMap<String, u32>,
    events: Vec<(u64, &'static str, String)>,
    open_conns: BTreeMap<u64, (u64, String)>,
    conns: Vec<(u64, u64, String)>,
    world: Vec<(u64, String)>,
    states: Vec<(u64, State)>,
    summary: Summary,
    end_us: u64,
}

impl Track {
    /// An empty track for the run called `name` (a preset, a `--config`).
    pub fn new(name: impl Into<String>) -> Track {
        Track {
            name: name.into(),
            ..Track::default()
        }
    }

    fn intern(&mut self, s: String) -> u32 {
        if let Some(&i) = self.interned.get(&s) {
            return i;
        }
        let i = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
        self.strings.push(s.clone());
        self.interned.insert(s, i);
        i
    }

    fn op(&mut self, id: u64, span: (u64, Option<u64>, u64), fate: Fate, what: String) {
        let twice = what.ends_with(TWICE);
        let what = self.intern(what);
        let (start, sent, end) = span;
        self.ops.push(OpBar {
            id,
            start,
            sent,
            end,
            fate,
            twice,
            what,
        });
    }

    /// Takes one transcript line of the run (in order).
    pub fn line(&mut self, l: &Line) {
        match l {
            Line::Op(o) => {
                let (fate, what) = match &o.result {
                    Ok(ep) => (Fate::Ok, format!("ok on {ep}")),
                    Err((k, _)) if o.maybe_executed => {
                        (Fate::MayRun, format!("{k} (may have run)"))
                    }
                    Err((k, _)) => (Fate::NotRun, format!("{k} (not run)")),
                };
                let span = (o.submitted_us, o.first_dispatch_us, o.t_us);
                let twice = if o.runs >= 2 { TWICE } else { "" };
                self.op(o.id, span, fate, format!("{}: {what}{twice}", o.label));
            }
            Line::Event {
                t_us,
                event,
                fields,
                text,
            } => {
                let field = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, f)| f);
                match (*event, field("conn")) {
                    ("connected" | "reconnected", Some(Field::Num(c))) => {
                        let ep = match field("endpoint") {
                            Some(Field::Str(s)) => s.as_str(),
                            _ => "",
                        };
                        let label = format!("conn#{c} {ep}");
                        self.open_conns.entry(*c).or_insert((*t_us, label));
                    }
                    ("disconnected", Some(Field::Num(c))) => self.close_conns(Some(*c), *t_us),
                    ("closed", _) => self.close_conns(None, *t_us),
                    _ => {}
                }
                self.events.push((*t_us, event, text.clone()));
            }
            Line::World { t_us, text } => {
                if text == "client revive" {
                    self.events.push((
                        *t_us,
                        "revive",
                        "the application revives the client".into(),
                    ));
                }
                self.world.push((*t_us, text.clone()));
            }
        }
    }

    /// Ends connection `conn` (`None`: all) at `end`.
    fn close_conns(&mut self, conn: Option<u64>, end: u64) {
        let ids: Vec<u64> = self
            .open_conns
            .keys()
            .copied()
            .filter(|c| conn.is_none_or(|x| x == *c))
            .collect();
        for c in ids {
            if let Some((start, text)) = self.open_conns.remove(&c) {
                self.conns.push((start, end, text));
            }
        }
    }

    /// Takes the run's summary and what [`run_observed`] saw (after the
    /// last line).
    pub fn finish(&mut self, summary: &Summary, obs: &Observed) {
        self.summary = summary.clone();
        self.states = obs.states.clone();
        let last = self.ops.iter().map(|o| o.end).max().unwrap_or(0);
        self.end_us = obs.end_us.max(last);
        for p in &obs.pending {
            let span = (p.submitted_us, p.first_dispatch_us, self.end_us);
            self.op(
                p.id,
                span,
                Fate::Hung,
                format!("{}: pending at the end (hung)", p.label),
            );
        }
        self.close_conns(None, self.end_us);
        self.ops.sort_by_key(|o| (o.start, o.id));
        self.conns.sort_by_key(|c| c.0);
    }
}

/// Runs `tl` (the fast loop) and gathers its track, called `name`.
pub fn record(name: &str, tl: &Timeline, opts: &RunOptions) -> (Track, Summary) {
    let mut track = Track::new(name);
    let mut obs = Observed::default();
    let summary = run_observed(tl, opts, |l| track.line(l), &mut obs);
    track.finish(&summary, &obs);
    (track, summary)
}

/// `replay --format svg`: runs `tl` under its own configuration (named by
/// [`config_name`] in the title) and returns the picture and the summary.
pub fn replay_svg(tl: &Timeline, opts: &RunOptions) -> (String, Summary) {
    let name = config_name(tl);
    let (track, summary) = record(&name, tl, opts);
    (render(tl, &format!("config: {name}"), &[track]), summary)
}

/// `compare --format svg`: each (column name, timeline) run, one group per
/// column, stacked over the servers' bands and time axis of `tl` (the
/// timeline the columns vary).
pub fn compare_svg(tl: &Timeline, runs: &[(String, Timeline)], opts: &RunOptions) -> String {
    let tracks: Vec<Track> = runs.iter().map(|(n, t)| record(n, t, opts).0).collect();
    let names: Vec<&str> = runs.iter().map(|(n, _)| n.as_str()).collect();
    render(tl, &format!("compare: {}", names.join(" vs ")), &tracks)
}

/// How a replay's title names the configuration of `tl`: its preset, and
/// whether the file's `[config]` changes it.
pub fn config_name(tl: &Timeline) -> String {
    if tl.preset.builder().build().ok().as_ref() == Some(&tl.config) {
        tl.preset.name().to_string()
    } else {
        format!("{} + the file's [config] keys", tl.preset.name())
    }
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// Tenths of a pixel as text with one decimal.
fn d(x10: u64) -> String {
    format!("{}.{}", x10 / 10, x10 % 10)
}

/// A duration in µs for people: `850 ms`, `3.1 s`, `2.5 min`, `24.0 h`.
fn dur(us: u64) -> String {
    match us {
        0..1_000_000 => format!("{} ms", us / 1000),
        1_000_000..120_000_000 => format!("{}.{} s", us / 1_000_000, us / 100_000 % 10),
        120_000_000..7_200_000_000 => format!("{}.{} min", us / 60_000_000, us / 6_000_000 % 10),
        _ => format!("{}.{} h", us / 3_600_000_000, us / 360_000_000 % 10),
    }
}

/// A time in µs with ms precision: `2.500 s`.
fn at(us: u64) -> String {
    format!("{}.{:03} s", us / 1_000_000, us / 1000 % 1000)
}

/// Rough width of `s` at `px` (DejaVu Sans), 0.1 px.
fn text_w(s: &str, px: u64) -> u64 {
    s.chars().count() as u64 * px * 6
}

/// A `<rect>` (x and width in 0.1 px) with `tip` as its tooltip if any.
fn rect(out: &mut String, class: &str, x10: u64, y: u64, w10: u64, h: u64, tip: &str) {
    let (x, w) = (d(x10), d(w10));
    let _ = write!(
        out,
        r#"<rect class="{class}" x="{x}" y="{y}" width="{w}" height="{h}""#
    );
    if tip.is_empty() {
        out.push_str("/>");
    } else {
        let _ = write!(out, "><title>{}</title></rect>", esc(tip));
    }
}

/// A `<text>` at x (0.1 px), baseline y.
fn text(out: &mut String, class: &str, x10: u64, y: u64, s: &str) {
    let _ = write!(
        out,
        r#"<text class="{class}" x="{}" y="{y}">{}</text>"#,
        d(x10),
        esc(s)
    );
}

/// The shared time axis: 0 to `end` µs across the plot.
struct Axis {
    end: u64,
}

impl Axis {
    /// Where time `t` is, 0.1 px.
    fn x(&self, t: u64) -> u64 {
        let off = u128::from(t.min(self.end)) * u128::from(PLOT * 10) / u128::from(self.end);
        LEFT * 10 + u64::try_from(off).unwrap_or(0)
    }

    /// Tick step and label unit (µs, name): the unit by the span (ms up
    /// to 2 s, s up to 2 min, min up to 2 h, then h), at most 10 ticks, each
    /// label a whole or one-decimal number of the unit.
    fn ticks(&self) -> (u64, u64, &'static str) {
        let (unit, name) = match self.end {
            0..=2_000_000 => (1_000, "ms"),
            2_000_001..=120_000_000 => (1_000_000, "s"),
            120_000_001..=7_200_000_000 => (60_000_000, "min"),
            _ => (3_600_000_000, "h"),
        };
        let mut steps: Vec<u64> = (0..12)
            .flat_map(|k| [1, 2, 5].map(|m| m * 10u64.pow(k)))
            .collect();
        steps.extend([30, 60, 120, 300, 600, 1800, 3600, 10_800, 21_600].map(|s| s * 1_000_000));
        steps.sort_unstable();
        let ok = |s: &u64| (s * 10) % unit == 0 && self.end / s <= 10;
        let step = steps.into_iter().find(ok).unwrap_or(self.end);
        (step, unit, name)
    }
}

fn tick_label(t: u64, unit: u64, name: &str) -> String {
    match t * 10 / unit {
        0 => "0".into(),
        v if v % 10 == 0 => format!("{} {name}", v / 10),
        v => format!("{}.{} {name}", v / 10, v % 10),
    }
}

/// One server's bands, rebuilt from the run's world lines (`server db.0
/// down for 3000 ms`, `server db.0 up (loading for 1500 ms)`, `server db.0
/// no longer busy`, …).
struct EpBands {
    name: String,
    /// (from, class, words).
    health: Vec<(u64, &'static str, &'static str)>,
    role: Vec<(u64, &'static str, &'static str)>,
    /// Loading or busy spells: (from, to, words).
    pushback: Vec<(u64, u64, &'static str)>,
    open_push: Option<(u64, u64, &'static str)>,
}

impl EpBands {
    fn end_push(&mut self, t: u64) {
        if let Some((s, e, k)) = self.open_push.take() {
            self.pushback.push((s, e.min(t), k));
        }
    }

    /// Applies `rest` (a world line after `server <name> `) at `t`, as
    /// `world.rs` applies the step.
    fn apply(&mut self, t: u64, rest: &str) {
        let up = self.health.last().is_some_and(|h| h.1 == "up");
        match rest.split(' ').next().unwrap_or("") {
            "up" => {
                self.health.push((t, "up", "up"));
                if let Some(n) = rest.split("(loading for ").nth(1) {
                    let ms: u64 = n
                        .split(' ')
                        .next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    self.end_push(t);
                    self.open_push = Some((t, t + ms * 1000, "loading"));
                }
            }
            w @ ("down" | "crash") => {
                self.end_push(t);
                self.health
                    .push((t, "down", if w == "down" { "down" } else { "crashed" }));
            }
            "blackhole" if up => self.health.push((t, "blackhole", "blackholed")),
            "pause" if up => self.health.push((t, "spaused", "paused (SIGSTOP)")),
            "promote" => self.role.push((t, "primary", "primary")),
            "demote" => self.role.push((t, "secondary", "secondary")),
            "busy" => {
                self.end_push(t);
                self.open_push = Some((t, u64::MAX, "busy"));
            }
            "no" => self.end_push(t),
            _ => {}
        }
    }
}

fn endpoint_bands(tl: &Timeline, world: &[(u64, String)]) -> Vec<EpBands> {
    let mut eps: Vec<EpBands> = tl
        .endpoints
        .iter()
        .map(|e| EpBands {
            name: e.name.clone(),
            health: vec![if e.up {
                (0, "up", "up")
            } else {
                (0, "down", "down")
            }],
            role: vec![match e.role {
                Role::Primary => (0, "primary", "primary"),
                Role::Secondary => (0, "secondary", "secondary"),
            }],
            pushback: Vec::new(),
            open_push: None,
        })
        .collect();
    // Longest names first: `db.10 down` is not about `db.1`.
    let mut order: Vec<usize> = (0..eps.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(eps[i].name.len()));
    for (t, line) in world {
        let Some(rest) = line.strip_prefix("server ") else {
            continue;
        };
        let found = order.iter().find_map(|&i| {
            let r = rest.strip_prefix(eps[i].name.as_str())?.strip_prefix(' ')?;
            Some((i, r))
        });
        if let Some((i, r)) = found {
            eps[i].apply(*t, r);
        }
    }
    for e in &mut eps {
        e.end_push(u64::MAX);
    }
    eps
}

fn state_class(s: State) -> &'static str {
    match s {
        State::Connecting => "connecting",
        State::Connected => "connected",
        State::Draining => "draining",
        State::Paused => "paused",
        State::Backoff => "backoff",
        State::Down => "cdown",
        State::Failed => "failed",
        State::Closed => "closed",
        _ => "other",
    }
}

/// An event's marker (class, shape) and the word written under it, if any.
fn event_look(name: &str) -> (&'static str, &'static str, Option<&'static str>) {
    match name {
        "connected" => ("e-up", "up", Some("connected")),
        "reconnected" => ("e-up", "up", Some("reconnected")),
        "disconnected" => ("e-lost", "down", Some("lost")),
        "reconnecting" => ("e-retry", "tick", None),
        "reconnect_failed" => ("e-fail", "x", Some("gave up")),
        "closed" => ("e-fail", "square", Some("closed")),
        "buffer_overflow" => ("e-lost", "diamond", Some("overflow")),
        "unresponsive" => ("e-lost", "down", Some("unresponsive")),
        "revive" => ("e-up", "circle", Some("revive")),
        _ => ("e-other", "circle", None),
    }
}

fn marker(out: &mut String, shape: &str, class: &str, x10: u64, cy: u64) {
    let x = d(x10);
    let p = |out: &mut String, dy: u64, path: &str| {
        let _ = write!(
            out,
            r#"<path class="ev {class}" d="M{x} {}{path}"/>"#,
            cy - 4 + dy
        );
    };
    match shape {
        "up" => p(out, 0, "l4 7h-8z"),
        "down" => p(out, 8, "l4 -7h-8z"),
        "tick" => p(out, 1, "v6"),
        "x" => p(out, 1, "m-3.5 0l7 7m0 -7l-7 7"),
        "square" => p(out, 1, "m-3.5 0h7v7h-7z"),
        "diamond" => p(out, 0, "l4 4l-4 4l-4 -4z"),
        _ => {
            let _ = write!(
                out,
                r#"<circle class="ev {class}" cx="{x}" cy="{cy}" r="3.5"/>"#
            );
        }
    }
}

/// A segmented band: `segs` are (from µs, class, words) up to `end`, each
/// with its words inside when they fit. Segments under 0.1 px are skipped,
/// so a band draws at most one rect per 0.1 px.
fn band(out: &mut String, ax: &Axis, y: u64, h: u64, segs: &[(u64, &str, &str)], end: u64) {
    for (i, &(t, class, words)) in segs.iter().enumerate() {
        let stop = segs.get(i + 1).map_or(end, |s| s.0).min(end);
        let (x0, x1) = (ax.x(t), ax.x(stop));
        if x1 <= x0 {
            continue;
        }
        rect(
            out,
            class,
            x0,
            y,
            x1 - x0,
            h,
            &format!("{words} from {} to {}", at(t), at(stop)),
        );
        if x1 - x0 >= text_w(words, 9) + 40 {
            let dark = matches!(
                class,
                "blackhole" | "spaused" | "failed" | "closed" | "primary"
            );
            text(
                out,
                if dark { "inw" } else { "in" },
                x0 + 30,
                y + h / 2 + 3,
                words,
            );
        }
    }
}

/// Greedy interval packing (0.1 px): each (x0, x1), in order, takes the
/// first of at most `cap` lanes free at x0. Returns each one's lane
/// (`None`: no room) and the number of lanes used.
fn pack(spans: impl Iterator<Item = (u64, u64)>, cap: usize) -> (Vec<Option<usize>>, usize) {
    let mut ends: Vec<u64> = Vec::new();
    let lanes = spans
        .map(|(x0, x1)| {
            let stop = x1.max(x0 + MIN_W) + GAP;
            if let Some(l) = ends.iter().position(|&e| e <= x0) {
                ends[l] = stop;
                Some(l)
            } else if ends.len() < cap {
                ends.push(stop);
                Some(ends.len() - 1)
            } else {
                None
            }
        })
        .collect();
    (lanes, ends.len())
}

/// Renders the tracks of runs of `tl` (or of variants of it under other
/// configurations: the world is the same) as one SVG document; `subtitle`
/// names the configuration(s).
pub fn render(tl: &Timeline, subtitle: &str, tracks: &[Track]) -> String {
    let end = tracks.iter().map(|t| t.end_us).max().unwrap_or(0).max(1000);
    let ax = Axis { end };
    let longest = tracks.iter().max_by_key(|t| t.end_us);
    let eps = endpoint_bands(tl, longest.map_or(&[][..], |t| &t.world[..]));
    let mut body = String::new();
    let top = 56;
    text(&mut body, "h", 80, top + 10, "servers");
    let mut y = top + 16;
    for e in &eps {
        text(&mut body, "", 160, y + 11, &e.name);
        band(&mut body, &ax, y, 14, &e.health, end);
        for &(s, stop, words) in &e.pushback {
            band(
                &mut body,
                &ax,
                y,
                14,
                &[(s, "pushback", words)],
                stop.min(end),
            );
        }
        band(&mut body, &ax, y + 15, 9, &e.role, end);
        y += 30;
    }
    let _ = write!(body, r#"<path class="grid" d="M{LEFT} {y}h{PLOT}"/>"#);
    for tr in tracks {
        y = group(&mut body, &ax, tr, y + 8);
    }
    let bottom = y + 4;
    let (step, unit, uname) = ax.ticks();
    let mut grid = String::new();
    for t in (0..=end).step_by(usize::try_from(step).unwrap_or(usize::MAX)) {
        let x = d(ax.x(t));
        let _ = write!(grid, r#"<path class="grid" d="M{x} {top}V{bottom}"/>"#);
        let _ = write!(body, r#"<path class="axis" d="M{x} {bottom}v5"/>"#);
        let label = tick_label(t, unit, uname);
        let _ = write!(
            body,
            r#"<text class="tk" x="{x}" y="{}" text-anchor="middle">{label}</text>"#,
            bottom + 17
        );
    }
    let _ = write!(body, r#"<path class="axis" d="M{LEFT} {bottom}h{PLOT}"/>"#);
    text(&mut body, "tk", 80, bottom + 17, &format!("time ({uname})"));
    let (legend, height) = legend(bottom + 36);
    let mut out = String::with_capacity(body.len() + grid.len() + legend.len() + 2048);
    let _ = write!(
        out,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}">
<style>{STYLE}</style>
<rect width="100%" height="100%" fill="#fff"/>
"##
    );
    let file = tl.path.rsplit(['/', '\\']).next().unwrap_or(&tl.path);
    let title = tl.name.as_ref().map(|n| format!("{file} — {n}"));
    text(&mut out, "t", 80, 24, title.as_deref().unwrap_or(file));
    let (seed, span) = (tl.seed, dur(end));
    let sub = format!("{subtitle} · seed {seed} · virtual time 0 to {span}");
    text(&mut out, "s", 80, 42, &sub);
    out.push('\n');
    for part in [grid, body, legend] {
        out.push_str(&part);
        out.push('\n');
    }
    out.push_str("</svg>\n");
    out
}

/// The header of a run's group: its counts and longest recovery.
fn headline(tr: &Track) -> String {
    let s = &tr.summary;
    let mut head = format!("{} ok · {} failed", s.ok, s.failed);
    if !s.errors.is_empty() {
        let e: Vec<String> = s.errors.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let _ = write!(head, " ({})", e.join(", "));
    }
    if s.may_have_run_twice > 0 {
        let _ = write!(head, " · {} may have run twice", s.may_have_run_twice);
    }
    let (pending, tries) = (s.pending, s.connect_attempts);
    let _ = write!(
        head,
        " · {pending} pending at the end · {tries} connect attempts"
    );
    let (mut lost, mut longest) = (None, None);
    for &(t, e, _) in &tr.events {
        match e {
            "disconnected" => _ = lost.get_or_insert(t),
            "reconnected" | "connected" => {
                if let Some(l) = lost.take() {
                    longest = Some(longest.unwrap_or(0).max(t - l));
                }
            }
            _ => {}
        }
    }
    match (lost, longest) {
        (Some(_), _) => head.push_str(" · not recovered at the end"),
        (None, Some(l)) => _ = write!(head, " · longest recovery {}", dur(l)),
        (None, None) => {}
    }
    if !s.violations.is_empty() {
        let _ = write!(head, " · {} INVARIANT VIOLATIONS", s.violations.len());
    }
    head
}

/// One run's group from `y`; returns the y below it.
fn group(out: &mut String, ax: &Axis, tr: &Track, mut y: u64) -> u64 {
    out.push_str("\n<g class=\"group\">");
    text(out, "h", 80, y + 12, &tr.name);
    let hx = (LEFT * 10).max(80 + text_w(&tr.name, 13) + 120);
    text(out, "s", hx, y + 12, &headline(tr));
    y += 20;
    let g_top = y;
    text(out, "", 160, y + 12, "client state");
    let segs: Vec<_> = tr
        .states
        .iter()
        .map(|&(t, s)| (t, state_class(s), s.name()))
        .collect();
    band(out, ax, y, 16, &segs, tr.end_us);
    y += 22;
    // Connections.
    let spans = tr.conns.iter().map(|c| (ax.x(c.0), ax.x(c.1)));
    let (lanes, n) = pack(spans, MAX_CONN_LANES);
    let dropped = lanes.iter().filter(|l| l.is_none()).count();
    let label = match dropped {
        0 => "connections".to_string(),
        n => format!("connections (+{n} short)"),
    };
    text(out, "", 160, y + 10, &label);
    for ((start, stop, words), lane) in tr.conns.iter().zip(&lanes) {
        let Some(lane) = lane else { continue };
        let x0 = ax.x(*start);
        let w = ax.x(*stop).saturating_sub(x0).max(MIN_W);
        let cy = y + *lane as u64 * 13;
        let tip = format!("{words} from {} to {}", at(*start), at(*stop));
        rect(out, "conn", x0, cy, w, 11, &tip);
        if w >= text_w(words, 9) + 40 {
            text(out, "in", x0 + 30, cy + 9, words);
        }
    }
    y += 13 * n.max(1) as u64 + 5;
    // Events: one marker per kind per 2 px.
    text(out, "", 160, y + 11, "events");
    let cy = y + 5;
    let (mut last, mut words_end) = (BTreeMap::new(), 0);
    let (mut lines, mut words) = (String::new(), String::new());
    for (t, name, what) in &tr.events {
        let x = ax.x(*t);
        if last.get(name).is_some_and(|&l| x < l + 20) {
            continue;
        }
        last.insert(name, x);
        let (class, shape, word) = event_look(name);
        let _ = write!(out, "<g><title>{} {}</title>", at(*t), esc(what));
        marker(out, shape, class, x, cy);
        out.push_str("</g>");
        // Worded where there is room, with a dashed line down the group.
        if let Some(word) = word.filter(|_| x.saturating_sub(10) >= words_end) {
            text(&mut words, "in", x.saturating_sub(10), cy + 14, word);
            words_end = x + text_w(word, 9) + 30;
            let x = d(x);
            let _ = write!(lines, r#"<path class="hl {class}" d="M{x} {g_top}V@@"/>"#);
        }
    }
    out.push_str(&words);
    y += 26;
    // Ops.
    let spans = tr.ops.iter().map(|o| (ax.x(o.start), ax.x(o.end)));
    let (lanes, n) = pack(spans, MAX_OP_LANES);
    text(out, "", 160, y + 8, &format!("ops ({})", tr.ops.len()));
    if n > 1 {
        text(out, "tk", 160, y + 20, &format!("{n} lanes"));
    }
    for (o, lane) in tr.ops.iter().zip(&lanes) {
        let Some(lane) = lane else { continue };
        let (x0, x1) = (ax.x(o.start), ax.x(o.end.max(o.start)));
        let oy = y + *lane as u64 * 9;
        let what = tr.strings.get(o.what as usize).map_or("", String::as_str);
        let sent = o
            .sent
            .map_or(String::new(), |s| format!(", sent at {}", at(s)));
        let (id, from, to, took) = (o.id, at(o.start), at(o.end), dur(o.end - o.start));
        let tip =
            format!("#{id} {what}; submitted at {from}{sent}, outcome at {to} (after {took})");
        let (fate, twice) = (o.fate.class(), if o.twice { " twice" } else { "" });
        let _ = write!(
            out,
            r#"<g class="op {fate}{twice}"><title>{}</title>"#,
            esc(&tip)
        );
        if x1 - x0 <= MIN_W {
            rect(out, "", x0, oy, MIN_W, 7, "");
        } else {
            rect(out, "w", x0, oy, x1 - x0, 7, "");
            // Solid from the first send; a hung op ends in a solid cap.
            let xs = o.sent.map_or(x1, |s| ax.x(s).min(x1));
            let xs = xs.min(if o.fate == Fate::Hung { x1 - MIN_W } else { x1 });
            if xs < x1 {
                rect(out, "", xs, oy, (x1 - xs).max(MIN_W), 7, "");
            }
        }
        out.push_str("</g>");
    }
    y += 9 * n.max(1) as u64 + 2;
    if lanes.iter().any(Option::is_none) {
        y = density(out, ax, tr, &lanes, y);
    }
    out.push_str(&lines.replace("@@", &y.to_string()));
    out.push_str("</g>\n");
    y + 6
}

/// The density strip of the ops that found no lane, from `y`; returns
/// the y below it.
fn density(out: &mut String, ax: &Axis, tr: &Track, lanes: &[Option<usize>], y: u64) -> u64 {
    let bins = (PLOT * 10 / BIN + 1) as usize;
    let bin = |t: u64| (((ax.x(t) - LEFT * 10) / BIN) as usize).min(bins - 1);
    // Per bin and fate: the ops opening there minus those closed before.
    let mut diff = vec![[0i64; 4]; bins + 1];
    let over: Vec<&OpBar> = tr
        .ops
        .iter()
        .zip(lanes)
        .filter(|(_, l)| l.is_none())
        .map(|(o, _)| o)
        .collect();
    for o in &over {
        diff[bin(o.start)][o.fate as usize] += 1;
        diff[bin(o.end) + 1][o.fate as usize] -= 1;
    }
    let mut open = [0i64; 4];
    let counts: Vec<[i64; 4]> = diff[..bins]
        .iter()
        .map(|row| {
            open.iter_mut().zip(row).for_each(|(o, r)| *o += r);
            open
        })
        .collect();
    let max = counts
        .iter()
        .map(|c| c.iter().sum::<i64>())
        .max()
        .unwrap_or(1)
        .max(1);
    let n = over.len();
    let tip = format!(
        "{n} ops beyond {MAX_OP_LANES} lanes: how many were open, by their most common fate"
    );
    let _ = write!(out, r#"<g class="density"><title>{tip}</title>"#);
    text(out, "", 160, y + 9, &format!("+{n} more ops"));
    text(
        out,
        "tk",
        160,
        y + 21,
        &format!("density, at most {max} open"),
    );
    let mut i = 0;
    while i < bins {
        let j = (i..bins).find(|&j| counts[j] != counts[i]).unwrap_or(bins);
        let total: i64 = counts[i].iter().sum();
        if total > 0 {
            let f = (0..4).rev().max_by_key(|&f| counts[i][f]).unwrap_or(0);
            let x0 = LEFT * 10 + i as u64 * BIN;
            let (x, w) = (
                d(x0),
                d(((j - i) as u64 * BIN).min((LEFT + PLOT) * 10 - x0)),
            );
            let opacity = match 2 + 8 * total / max {
                10 => "1".to_string(),
                o => format!("0.{o}"),
            };
            let class = FATES[f].class();
            let _ = write!(
                out,
                r#"<rect class="{class}" x="{x}" y="{y}" width="{w}" height="12" fill-opacity="{opacity}"/>"#
            );
        }
        i = j;
    }
    out.push_str("</g>");
    y + 26
}

/// The legend: per row, its title and (class or event name, words).
#[rustfmt::skip]
const LEGEND: [(&str, &[(&str, &str)]); 4] = [
    ("servers", &[("up", "up"), ("down", "down / crashed"), ("blackhole", "blackholed (silent)"), ("spaused", "paused (SIGSTOP)"),
        ("pushback", "loading / busy (pushback)"), ("primary", "role: primary"),
        ("secondary", "role: secondary")]),
    ("client", &[("connecting", "connecting"), ("connected", "connected"), ("draining", "draining"),
        ("paused", "paused"), ("backoff", "backoff"), ("cdown", "down (no reconnect)"),
        ("failed", "failed"), ("closed", "closed"), ("conn", "a connection")]),
    ("ops", &[("ok", "ok"), ("notrun", "failed, certainly not run"),
        ("mayrun", "failed, may have run"), ("hung", "pending at the end (hung)"),
        ("twice", "outlined: may have run twice"),
        ("wait", "faded: waiting unsent (buffered), solid: sent")]),
    ("events", &[("connected", "connected / reconnected"), ("disconnected", "lost"),
        ("reconnecting", "reconnecting (an attempt)"), ("reconnect_failed", "gave up (reconnect_failed)"),
        ("closed", "closed"), ("buffer_overflow", "buffer overflow"), ("revive", "revive"),
        ("", "other")]),
];

/// The legend from `y`; returns it and the picture's total height.
fn legend(y: u64) -> (String, u64) {
    let mut out = String::from(r#"<g id="legend">"#);
    text(&mut out, "h", 80, y, "legend");
    let mut y = y + 10;
    for (title, items) in LEGEND {
        text(&mut out, "", 160, y + 9, title);
        let mut x = LEFT * 10;
        for &(class, words) in items {
            let w = 300 + text_w(words, 11);
            if x + w > (WIDTH - 10) * 10 {
                (x, y) = (LEFT * 10, y + 17);
            }
            match title {
                "events" => {
                    let (c, shape, _) = event_look(class);
                    marker(&mut out, shape, c, x + 60, y + 5);
                }
                _ if class == "wait" => {
                    out.push_str(r#"<g class="ok">"#);
                    rect(&mut out, "w", x, y + 1, 100, 9, "");
                    rect(&mut out, "", x + 100, y + 1, 40, 9, "");
                    out.push_str("</g>");
                }
                _ => rect(&mut out, class, x, y + 1, 140, 9, ""),
            }
            text(&mut out, "", x + 180, y + 9, words);
            x += w;
        }
        y += 17;
    }
    let note = format!(
        "Ops: at most {MAX_OP_LANES} lanes per run, the rest in a density strip. Hover for details."
    );
    text(&mut out, "tk", 160, y + 9, &note);
    out.push_str("</g>\n");
    (out, y + 20)
}
