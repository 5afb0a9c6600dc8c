//! redial-sim (work in progress).

pub use redial_core as core;
