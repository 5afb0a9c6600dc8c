//! redial: runtime adapters for [`redial_core`] (work in progress).

pub use redial_core as core;
