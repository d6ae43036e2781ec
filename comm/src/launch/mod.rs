//! The local launcher: the process a program becomes when it runs outside any launcher.
//!
//! It starts `ATOLL_PLACES` copies of its own executable (the places), serves their
//! bootstrap over a Unix socket guarded by a per-job secret ([`server`], protocol in
//! [`wire`]), forwards their output with a `[place k]` tag ([`output`]), and waits for them:
//! it reports every abnormal exit, ends the job when a place fails (unless
//! `ATOLL_ON_PLACE_FAILURE=continue`), a place does not reach the bootstrap in time, or the
//! launcher is interrupted, and exits with the job's status ([`report`]).
//!
//! Everything runs on the calling thread, in one `poll(2)` loop ([`job`]): there is no
//! state shared between threads and no lock.
//!
//! # Resource cleanup
//! Places die with the launcher (`PR_SET_PDEATHSIG`), even when it is killed. The
//! bootstrap socket lives in the abstract namespace, so it leaves no file. After the last
//! place is reaped, the launcher removes every shared-memory segment of the job still in
//! `/dev/shm`, whatever the places left behind when they crashed.

pub(crate) mod ident;
mod job;
mod output;
mod poll;
mod process;
mod report;
mod server;
pub(crate) mod wire;

use crate::bootstrap::Bootstrap;
use crate::config::Config;
use crate::Result;

/// Becomes the launcher of a job of `config.places` places. When the job could be started,
/// this never returns: it exits the process with the job's status once every place is gone
/// (0, or the status of the first place that failed, or 128 + a signal). It returns an error
/// only when the job could not start; no place is left running then.
pub(crate) fn run_job(config: &Config) -> Result<Bootstrap> {
    let status = job::Job::start(config)?.run();
    std::process::exit(status)
}
