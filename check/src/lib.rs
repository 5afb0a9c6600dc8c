//! # redial-check
//!
//! The oracles that redial's own tests, simulator and fuzzers use — for
//! *your* configuration, your connector's classification and your own
//! driving code. Add it as a dev-dependency.
//!
//! One oracle per question:
//!
//! - **Do the invariants hold?** The [`Checker`] watches a
//!   [`Machine`](redial_core::Machine) from the outside and reports every
//!   breach of DESIGN.md's numbered invariants (exactly one outcome per op,
//!   dispatch only on the current connection, the buffer bound, attempt
//!   limits, submission order, terminal states, reconnect spacing within
//!   the configured bounds, deadlines) and nothing else. Its cost per step
//!   does not depend on the number of ops open.
//! - **Does the machine do what its configuration says?** The
//!   [`reference`](mod@reference) model: its [`Contract`](reference::Contract) for every
//!   configuration, its exact [`Model`](reference::Model) for the
//!   configurations it covers.
//!
//! [`Checked`] threads both through every input of a machine you drive;
//! [`Watcher`] is the same pair for a machine you only observe (an
//! adapter's driver, through `redial::Observer`). Every breach is a
//! [`Violation`] of one [`ViolationKind`].
//!
//! And one generator: [`harness`] decodes any bytes into a configuration
//! and a sequence of inputs, and runs them through a [`Checked`] machine
//! (and, where the reference model reaches, the model). cargo-fuzz
//! (`fuzz/`), plain `cargo test` (this crate's tests, with proptest
//! choosing the bytes) and your own fuzz targets call the same
//! [`harness::run_bytes`].
//!
//! ## Why a crate of its own
//!
//! The machine (`redial-core`) is `no_std`, allocation-light and has no
//! dependencies; a driver needs nothing more. The oracles keep books
//! (B-trees of open ops), decode fuzz input (`arbitrary`) and are
//! test-time code: behind a feature of the core they would still be
//! compiled into the same crate and tempt the machine to share code with
//! its own judge. As a separate crate they can only use the machine's
//! public API — what any driver sees — and users add them as a
//! dev-dependency only.
//!
//! ```
//! use redial_check::Checked;
//! use redial_core::{Config, Instant, LossKind, OpOptions, Output};
//!
//! // A restart under mongoose's defaults: the op waits in the buffer.
//! let mut m: Checked<u32> = Checked::new(Config::mongoose(), 1, Instant::ZERO);
//! let drain = |m: &mut Checked<u32>| {
//!     let mut outs = Vec::new();
//!     while let Some(o) = m.poll_output() {
//!         outs.push(o);
//!     }
//!     outs
//! };
//! let Some(Output::Connect { conn, .. }) = drain(&mut m).into_iter().next() else { panic!() };
//! m.handle_connected(Instant::ZERO, conn);
//! drain(&mut m);
//! m.handle_connection_lost(Instant::from_millis(5), conn, LossKind::Closed);
//! drain(&mut m);
//! m.submit(Instant::from_millis(6), 7, OpOptions::new());
//! drain(&mut m);
//! assert_eq!(m.buffered(), 1);
//! m.close(Instant::from_millis(7));
//! drain(&mut m);
//! m.finish();
//! m.assert_ok();
//! ```

mod checked;
pub mod harness;
pub mod invariants;
pub mod reference;
mod table;
mod violation;

pub use checked::{Checked, Watcher};
pub use invariants::Checker;
pub use violation::{Violation, ViolationKind};
