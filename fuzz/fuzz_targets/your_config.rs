//! Template: fuzz *your* configuration. Copy this file into your own
//! cargo-fuzz crate (depending on `redial-sim`), put your `Config` below,
//! and run `cargo fuzz run your_config` (an empty corpus is a fine start).
//! Each input's bytes are decoded by the simulator's world generator (the
//! one `redial-sim explore` uses) into a world — endpoints, network,
//! faults, ops, callers that give up — around your configuration
//! (`redial_sim::explore::fuzz_config`); every invariant and the policy
//! contract must hold, and the real driver must agree with the fast loop.
#![no_main]

use redial_sim::core::Config;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Your configuration here.
    let mine = Config::recommended();
    if let Some(violations) = redial_sim::explore::fuzz_config(data, &mine, true) {
        assert!(violations.is_empty(), "{violations:#?}");
    }
});
