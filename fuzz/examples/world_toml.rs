//! Prints the world (timeline TOML) a `driver` input decodes to:
//! `cargo run --release --example world_toml -- artifacts/driver/crash-<hash>`.
fn main() {
    let path = std::env::args().nth(1).expect("usage: world_toml <file>");
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let s = redial_sim::explore::Scenario::from_unstructured(
        &mut arbitrary::Unstructured::new(&data),
        0,
    );
    print!("{}", s.to_toml());
}
