//! Test support for Atoll: run a test binary as a job of several places through the local
//! launcher (or any command), bounded in time, with its output captured; and drive the test
//! binaries that are their own place program.
//!
//! Such a binary is both the driver (run by `cargo test`: one job per case through the local
//! launcher, each a [libtest-mimic](libtest_mimic) trial) and the place program (with its
//! case variable set). A [`Suite`], built in a `const`, holds what its jobs share (the case
//! variable, the chaos seed, the time limit, which places report); [`Suite::main`] is the
//! binary's `main`, and the `Suite`'s trial builders make the trials that run and check the
//! jobs. The binary supplies the place program: [`runtime_place!`] for one that runs under
//! Atoll's runtime, or its own function (on the comm layer) ending with [`exit_code`].

mod job;
mod place;
mod suite;

pub use job::{run_command, run_job, JobOutput};
pub use place::{exit_code, report};
pub use suite::Suite;
