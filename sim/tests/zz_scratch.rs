#[test]
fn dump() {
    for n in ["mongoose-buffer-until-reconnect"] {
        let p = format!("{}/timelines/{n}.toml", env!("CARGO_MANIFEST_DIR"));
        let tl = redial_sim::Timeline::parse(&std::fs::read_to_string(&p).unwrap(), &p).unwrap();
        let o = redial_sim::RunOptions {
            check: false,
            ..Default::default()
        };
        let t = redial_sim::record_through_driver(&tl, &o).1;
        std::fs::write(format!("/tmp/tr-{n}.jsonl"), &t).unwrap();
        std::fs::write(
            format!("/tmp/dd-{n}.toml"),
            redial_sim::derive::timeline_from_trace(&t).unwrap(),
        )
        .unwrap();
    }
}
