//! The pictures of `replay` and `compare` (`redial_sim::svg`): the same
//! bytes every time, one bar per op coloured by its fate, the legend, a
//! well-formed document, at most 40 lanes of ops with the rest in a density
//! strip, and the command line's `--format svg` / `--svg FILE`.

use std::process::Command;

use redial_sim::{Line, RunOptions, Timeline, run, svg};

fn shipped(name: &str) -> Timeline {
    let path = format!("{}/timelines/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("shipped timeline");
    Timeline::parse(&text, &path).expect("parses")
}

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_redial-sim"))
}

/// Checks that `doc` is well-formed XML (the subset we write: a prolog,
/// elements with double-quoted attributes, text, entities) with one `svg`
/// root; returns the number of elements.
fn well_formed(doc: &str) -> Result<usize, String> {
    let body = doc
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        .ok_or("no XML prolog")?;
    let check_text = |t: &str| -> Result<(), String> {
        for (i, _) in t.match_indices('&') {
            let rest = &t[i..];
            if !["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                .iter()
                .any(|e| rest.starts_with(e))
            {
                return Err(format!("bare & in {:?}", &rest[..rest.len().min(20)]));
            }
        }
        if t.contains('<') {
            return Err(format!("< in {t:?}"));
        }
        Ok(())
    };
    let (mut stack, mut elements, mut rest) = (Vec::<&str>::new(), 0, body);
    let mut roots = 0;
    while let Some(open) = rest.find('<') {
        check_text(&rest[..open])?;
        if !stack.is_empty() || rest[..open].trim().is_empty() {
        } else {
            return Err("text outside the root".into());
        }
        rest = &rest[open + 1..];
        let close = rest.find('>').ok_or("unclosed tag")?;
        let tag = &rest[..close];
        rest = &rest[close + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let top = stack.pop().ok_or(format!("</{name}> with nothing open"))?;
            if top != name {
                return Err(format!("</{name}> closes <{top}>"));
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name_end = tag.find(' ').unwrap_or(tag.len());
        let name = &tag[..name_end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("bad element name {name:?}"));
        }
        // Attributes: ` key="value"` repeated.
        let mut attrs = &tag[name_end..];
        while !attrs.trim().is_empty() {
            attrs = attrs
                .strip_prefix(' ')
                .ok_or(format!("attrs of <{name}>"))?;
            let eq = attrs
                .find("=\"")
                .ok_or(format!("attribute without =\" in <{name}>"))?;
            let key = &attrs[..eq];
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!("bad attribute name {key:?} in <{name}>"));
            }
            attrs = &attrs[eq + 2..];
            let end = attrs
                .find('"')
                .ok_or(format!("unterminated {key} in <{name}>"))?;
            check_text(&attrs[..end])?;
            attrs = &attrs[end + 1..];
        }
        if stack.is_empty() {
            roots += 1;
            if name != "svg" {
                return Err(format!("root <{name}>"));
            }
        }
        elements += 1;
        if !self_closing {
            stack.push(name);
        }
    }
    if !rest.trim().is_empty() {
        return Err("text after the root".into());
    }
    if !stack.is_empty() {
        return Err(format!("left open: {stack:?}"));
    }
    if roots != 1 {
        return Err(format!("{roots} roots"));
    }
    Ok(elements)
}

#[test]
fn the_checker_rejects_broken_documents() {
    let ok = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg a=\"1\"><g><rect x=\"1.5\"/><text>a &amp; b</text></g></svg>\n";
    assert_eq!(well_formed(ok), Ok(4));
    for bad in [
        ok.replace("</g>", ""),
        ok.replace("<rect x=\"1.5\"/>", "<rect x=\"1.5\">"),
        ok.replace("&amp;", "&"),
        ok.replace("a=\"1\"", "a=1"),
        ok.replace("</svg>", "</svg><svg></svg>"),
        ok.replace("<text>a", "<text>a < "),
        ok.replace("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", ""),
    ] {
        assert!(well_formed(&bad).is_err(), "{bad}");
    }
}

/// Op bars drawn, and ops summed in the density strip.
fn drawn(doc: &str) -> (usize, usize) {
    let bars = doc.matches("<g class=\"op ").count();
    let more = doc
        .split(">+")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .map_or(0, |n| n.parse().expect("a count"));
    (bars, more)
}

#[test]
fn the_same_run_draws_the_same_bytes() {
    let tl = shipped("restart-db0.toml");
    let opts = RunOptions::default();
    let (a, _) = svg::replay_svg(&tl, &opts);
    let (b, _) = svg::replay_svg(&tl, &opts);
    assert_eq!(a, b);
    let runs: Vec<(String, Timeline)> = ["mongodb-legacy", "recommended"]
        .iter()
        .map(|p| (p.to_string(), tl.with_preset(p.parse().unwrap()).unwrap()))
        .collect();
    let c = svg::compare_svg(&tl, &runs, &opts);
    assert_eq!(c, svg::compare_svg(&tl, &runs, &opts));
    // Coordinates have one decimal at most: no float noise.
    for attr in [
        " x=\"",
        " y=\"",
        " width=\"",
        " height=\"",
        " cx=\"",
        " cy=\"",
    ] {
        for v in c.split(attr).skip(1).map(|r| r.split('"').next().unwrap()) {
            let frac = v.split_once('.').map_or("", |(_, f)| f);
            assert!(frac.len() <= 1 && !v.contains('e'), "{attr}{v}");
        }
    }
}

#[test]
fn replay_draws_every_op_a_legend_a_title_and_an_axis() {
    let tl = shipped("restart-db0.toml");
    let (doc, summary) = svg::replay_svg(&tl, &RunOptions::default());
    well_formed(&doc).unwrap();
    assert_eq!(drawn(&doc), (summary.submitted as usize, 0));
    assert_eq!(summary.submitted, 15);
    assert!(doc.contains("<g id=\"legend\">"));
    for words in [
        "ok",
        "failed, certainly not run",
        "failed, may have run",
        "pending at the end (hung)",
        "backoff",
        "blackholed (silent)",
    ] {
        assert!(doc.contains(&format!(">{words}</text>")), "legend: {words}");
    }
    assert!(doc.contains("restart-db0.toml — restart db.0 under the recommended preset"));
    assert!(doc.contains("config: recommended"));
    // Axis: 0 to 7.5 s in seconds, with labels on the left.
    for label in [
        ">0<",
        ">1 s<",
        ">7 s<",
        ">time (s)<",
        ">client state<",
        ">events<",
        ">db.0<",
    ] {
        assert!(doc.contains(label), "{label}");
    }
    // The state band shows what the core reported, the server its restart.
    assert!(doc.contains(">backoff from 2."));
    assert!(doc.contains(">down from 2.000 s to 5.000 s<"));
    // Events: lost and reconnected are marked and named.
    assert!(doc.contains(">lost</text>") && doc.contains(">reconnected</text>"));
    assert_eq!(doc.matches("<g class=\"group\">").count(), 1);
}

#[test]
fn every_shipped_timeline_draws_a_well_formed_picture_with_every_op() {
    let dir = format!("{}/timelines", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 20);
    let mut twice_seen = 0;
    for name in names {
        let (doc, summary) = svg::replay_svg(&shipped(&name), &RunOptions::default());
        let n = well_formed(&doc).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(n > 50, "{name}");
        let (bars, more) = drawn(&doc);
        assert_eq!((bars + more) as u64, summary.submitted, "{name}");
        assert_eq!(
            doc.matches("<g class=\"op hung").count() as u64,
            summary.pending,
            "{name}"
        );
        // Sent again after a loss in flight: outlined.
        let twice = doc.matches(" twice\"><title>").count() as u64;
        assert_eq!(twice, summary.may_have_run_twice, "{name}");
        twice_seen += twice;
    }
    assert!(
        twice_seen > 0,
        "some shipped timeline resends an op lost in flight"
    );
}

#[test]
fn fates_are_told_apart() {
    // Cancelled, closed, deadlines: ok, failed not run and failed may have
    // run; counted from the transcript and from the picture.
    let tl = shipped("app-callers-give-up.toml");
    let mut want = [0usize; 3];
    run(&tl, &RunOptions::default(), |l| {
        if let Line::Op(o) = l {
            want[match (&o.result, o.maybe_executed) {
                (Ok(_), _) => 0,
                (Err(_), false) => 1,
                (Err(_), true) => 2,
            }] += 1;
        }
    });
    let (doc, _) = svg::replay_svg(&tl, &RunOptions::default());
    let got =
        ["ok", "notrun", "mayrun"].map(|c| doc.matches(&format!("<g class=\"op {c}")).count());
    assert_eq!(got, want);
    assert!(want[1] > 0 && want[2] > 0, "{want:?}");
    // Autoreconnect off: ops pending at the end are drawn as hung, to the end.
    let tl = shipped("driver-autoreconnect-off.toml");
    let (doc, summary) = svg::replay_svg(&tl, &RunOptions::default());
    assert!(summary.pending > 0);
    assert_eq!(
        doc.matches("<g class=\"op hung").count() as u64,
        summary.pending
    );
    assert!(doc.contains("pending at the end (hung); submitted at"));
    assert!(doc.contains(">down from 3."), "the client's `down` state");
}

fn many_ops(every_ms: u64, secs: u64) -> Timeline {
    let text = format!(
        "name = \"many ops\"\n[config]\npreset = \"mongodb-legacy\"\n\n[[workload]]\nsubmit = \"op\"\nevery = \"{every_ms}ms\"\nuntil = \"{secs}s\"\n\n[[step]]\nat = \"10s\"\nserver = \"down\"\nfor = \"5s\"\n\n[[step]]\nat = \"{}s\"\nserver = \"blackhole\"\nfor = \"8s\"\n",
        secs / 2
    );
    Timeline::parse(&text, "many.toml").unwrap()
}

#[test]
fn many_ops_fill_at_most_40_lanes_and_a_density_strip() {
    let opts = RunOptions::default();
    let (doc, summary) = svg::replay_svg(&many_ops(3, 60), &opts);
    assert_eq!(summary.submitted, 20_000);
    well_formed(&doc).unwrap();
    assert!(doc.contains(">40 lanes<"));
    assert!(doc.contains("<g class=\"density\">"));
    let (bars, more) = drawn(&doc);
    assert_eq!((bars + more) as u64, summary.submitted);
    assert!(bars < 40 * 300, "{bars} bars");
    // No bar below the 40th lane: lane k is at a fixed y step of 9 px.
    let ys: std::collections::BTreeSet<&str> = doc
        .split("<g class=\"op ")
        .skip(1)
        .filter_map(|g| g.split(" y=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(ys.len(), svg::MAX_OP_LANES);
    // The size stops growing with the ops once the lanes are full: four
    // times the ops over the same span, well under four times the bytes.
    let (big, s) = svg::replay_svg(&many_ops(1, 80), &opts);
    assert_eq!(s.submitted, 80_000);
    assert!(big.len() < 2 * doc.len(), "{} vs {}", big.len(), doc.len());
    assert!(big.len() < 3_000_000, "{}", big.len());
}

#[test]
fn axis_unit_follows_the_span() {
    let draw = |until: &str, tick: &str| {
        let text = format!("until = \"{until}\"\n[[step]]\nat = \"100ms\"\nsubmit = \"q\"\n");
        let (doc, _) = svg::replay_svg(
            &Timeline::parse(&text, "t.toml").unwrap(),
            &RunOptions::default(),
        );
        assert!(doc.contains(tick), "{until}: no {tick}");
    };
    draw("800ms", ">200 ms<");
    draw("30s", ">10 s<");
    draw("10m", ">2 min<");
    draw("5h", ">1 h<");
}

#[test]
fn compare_stacks_one_group_per_column_over_shared_servers() {
    let tl = shipped("failover-seed-list.toml");
    let runs: Vec<(String, Timeline)> = ["mongodb-legacy", "fail-fast", "recommended"]
        .iter()
        .map(|p| (p.to_string(), tl.with_preset(p.parse().unwrap()).unwrap()))
        .collect();
    let doc = svg::compare_svg(&tl, &runs, &RunOptions::default());
    well_formed(&doc).unwrap();
    assert_eq!(doc.matches("<g class=\"group\">").count(), 3);
    for (name, _) in &runs {
        assert!(doc.contains(&format!(">{name}</text>")), "{name}");
    }
    // The servers and the axis once; their roles change.
    for ep in ["db.0", "db.1", "db.2"] {
        assert_eq!(doc.matches(&format!(">{ep}</text>")).count(), 1, "{ep}");
    }
    assert_eq!(doc.matches(">time (s)<").count(), 1);
    assert!(doc.contains(">secondary from 2.000 s"));
    assert!(doc.contains(">primary from 3.000 s"));
    assert!(doc.contains("compare: mongodb-legacy vs fail-fast vs recommended"));
}

#[test]
fn cli_writes_the_picture_to_stdout_or_beside_the_transcript() {
    let file = format!("{}/timelines/restart-db0.toml", env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("redial-sim-svg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("r.svg");
    let path = path.to_str().unwrap();
    for cmd in [
        &["replay", &file][..],
        &["compare", &file, "--presets", "mongodb-legacy,recommended"],
    ] {
        let out = sim().args(cmd).args(["--format", "svg"]).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let picture = String::from_utf8(out.stdout).unwrap();
        well_formed(&picture).unwrap();
        let out = sim().args(cmd).args(["--svg", path]).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(std::fs::read_to_string(path).unwrap(), picture, "{cmd:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("summary:") || text.contains("time to recovery"),
            "{text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cli_svg_to_a_bad_path_is_a_clear_error() {
    let file = format!("{}/timelines/restart-db0.toml", env!("CARGO_MANIFEST_DIR"));
    let bad = "/nonexistent-redial-dir/sub/picture.svg";
    for cmd in [
        &["replay", &file][..],
        &["compare", &file, "--presets", "recommended"],
    ] {
        let out = sim().args(cmd).args(["--svg", bad]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {stderr}");
        assert!(
            stderr.contains(&format!("error: --svg {bad}: cannot write")),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(out.stdout.is_empty(), "nothing ran");
    }
    // The picture is of the fast loop's run.
    let out = sim()
        .args(["replay", &file, "--format", "svg", "--through-driver"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = sim()
        .args(["replay", &file, "--svg", "x.svg", "--diff"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `docs/compare-restart.svg`, shown in the README, is what its command
/// draws today (`REDIAL_BLESS=1` rewrites it after an intended change).
#[test]
fn the_readme_pictures_are_current() {
    for (file, presets) in [
        (
            "compare-restart.svg",
            &["mongodb-legacy", "fail-fast", "recommended"][..],
        ),
        (
            "compare-peers.svg",
            &[
                "ioredis-v5",
                "fred-default",
                "redis-rs-connection-manager",
                "recommended",
            ][..],
        ),
    ] {
        let tl = shipped("restart-db0.toml");
        let runs: Vec<(String, Timeline)> = presets
            .iter()
            .map(|p| (p.to_string(), tl.with_preset(p.parse().unwrap()).unwrap()))
            .collect();
        let doc = svg::compare_svg(&tl, &runs, &RunOptions::default());
        let path = format!("{}/../docs/{file}", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("REDIAL_BLESS").is_some() {
            std::fs::write(&path, &doc).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap();
        assert!(
            committed == doc,
            "{path} is stale: REDIAL_BLESS=1 cargo test -p redial-sim --test svg"
        );
    }
}
