//! Template: fuzz *your* configuration. Copy this file into your own
//! cargo-fuzz crate (depending on `redial-sim`), put your `Config` below,
//! and run `cargo fuzz run your_config` (with `-dict` pointing at redial's
//! `fuzz/timeline.dict`, and `fuzz/corpus/timeline` as a starting corpus).
//! Each input is a world (endpoints, network, faults, ops, callers that
//! give up) around your configuration; every invariant must hold, and the
//! real driver must agree with the fast loop.
#![no_main]

use redial_sim::core::Config;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Your configuration here.
    let mine = Config::recommended();
    if let Some(violations) = redial_sim::explore::fuzz_config(data, &mine, true) {
        assert!(violations.is_empty(), "{violations:#?}");
    }
});
