//! Runs one input file through a target on the stable toolchain and shows
//! the panic message in full (decoded steps, step outputs, violations):
//!
//! ```sh
//! cargo run --release --example replay -- machine artifacts/machine/crash-<hash>
//! ```

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(target), Some(path)) = (args.next(), args.next()) else {
        eprintln!("usage: replay <machine|timeline|driver> <file>");
        std::process::exit(2);
    };
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    match target.as_str() {
        "machine" => redial_fuzz::machine(&data),
        "timeline" => redial_fuzz::timeline(&data),
        "driver" => redial_fuzz::driver(&data),
        other => panic!("unknown target {other}"),
    }
    println!("{target} {path}: ok");
}
