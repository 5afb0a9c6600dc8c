//! The generator's random runs under plain `cargo test`: proptest chooses
//! the bytes, [`redial_check::harness::run_bytes`] decodes and runs them —
//! the very function the `machine` fuzz target calls. Every step is checked
//! by both oracles; inside the reference model's reach the model must agree
//! on every outcome; every op gets exactly one outcome after close; a second
//! run gives the same outputs.
//!
//! Case counts are modest so `cargo test --workspace` stays fast; raise them
//! with `PROPTEST_CASES=100000 cargo test -p redial-check --release --test random_runs`.

use proptest::prelude::*;
use redial_check::harness::{RunInput, run, run_bytes};

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(600),
        ..ProptestConfig::default()
    }
}

/// Bytes with the first one fixed: its low bit chooses any configuration
/// (0) or one in the reference model's reach (1).
fn input(kind: u8) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..2048).prop_map(move |mut v| {
        v.insert(0, kind);
        v
    })
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn any_configuration_keeps_every_invariant_and_the_contract(data in input(0)) {
        run_bytes(&data);
    }

    #[test]
    fn the_machine_agrees_with_the_reference_model(data in input(1)) {
        run_bytes(&data);
    }
}

#[test]
fn both_kinds_of_run_decode() {
    use arbitrary::{Arbitrary, Unstructured};
    let any = RunInput::arbitrary(&mut Unstructured::new(&[0, 1, 2, 3])).unwrap();
    assert!(matches!(any, RunInput::Any(_)), "{any:?}");
    let modelled = RunInput::arbitrary(&mut Unstructured::new(&[1, 1, 2, 3])).unwrap();
    assert!(matches!(modelled, RunInput::Modelled(_)), "{modelled:?}");
    run(&any);
    run(&modelled);
}
