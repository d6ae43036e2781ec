//! A PMI client in pure Rust, over the socket of `PMI_FD`, a TCP connection to `PMI_PORT`,
//! or a TCP connection to the `env` bootstrap's coordinator (which serves PMI-1).
//!
//! Two wire protocols ([`wire`]): PMI-1 "simple" lines, the default, which hydra, Slurm's
//! `--mpi=pmi2` plugin and the coordinator all answer; and PMI-2 length-prefixed messages
//! (`ATOLL_PMI_VERSION=2`, over `PMI_FD`), which hydra and Slurm answer too. Under PMI-2
//! the fence is not a barrier at hydra (a get waits for its value instead), so a barrier
//! there is an all-gather of nothing.
//!
//! The all-gather is a key-value exchange: each place puts its blob (split into values that
//! respect the server's `vallen_max`, see [`super::chunks`]) under keys of the round and its
//! rank, enters the barrier, then gets every other place's values. Every reply is checked
//! ([`wire`]); a server that does not answer a request within the timeout is an error. The
//! barrier has no time limit: it ends when the slowest place enters it, or with an error when
//! the server ends the job or reports a place gone.
//!
//! - [`connection`]: the socket or TCP stream, requests and replies within the timeout.
//! - [`wire`]: the bytes of PMI-1 lines and PMI-2 messages.
//! - [`v1`], [`v2`]: what differs between the protocols at start (the handshakes, the limits);
//!   [`v1`] also holds the `PMI_PORT` handshake.
//! - [`kvs`]: put, get and fence (barrier), and the all-gather over them.
//! - [`fd`]: taking the launcher's `PMI_FD`.
//! - This module: [`PmiClient`], what the start told it, and leaving the job.

pub(crate) mod fd;
pub(crate) mod wire;

mod connection;
mod kvs;
#[cfg(test)]
mod test_server;
mod v1;
mod v2;

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::{Error, Result};

pub(crate) use connection::{Connection, Stream};
pub(crate) use v1::port_handshake;

/// The wire protocol a [`PmiClient`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    /// PMI-1 "simple": lines (hydra, `srun --mpi=pmi2`, the env coordinator).
    One,
    /// PMI-2: length-prefixed messages (hydra, `srun --mpi=pmi2`).
    Two,
}

/// What a PMI server told this process at start.
#[derive(Debug)]
pub struct PmiClient {
    version: Version,
    rank: usize,
    size: usize,
    kvsname: String,
    appnum: Option<usize>,
    max_key: usize,
    max_value: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    conn: Connection,
    round: u64,
    finalized: bool,
}

impl Inner {
    /// The connection, unless this place has finalized.
    fn conn(&mut self) -> Result<&mut Connection> {
        if self.finalized {
            return Err(Error::bootstrap(
                "this place has already left the job (PMI finalize)",
            ));
        }
        Ok(&mut self.conn)
    }
}

impl PmiClient {
    /// The wire protocol in use.
    pub(crate) fn version(&self) -> Version {
        self.version
    }

    pub(crate) fn rank(&self) -> usize {
        self.rank
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// The key-value space's name, which names the job.
    pub(crate) fn kvsname(&self) -> &str {
        &self.kvsname
    }

    /// The application's index in an MPMD launch (`a : b`), when the server knows it.
    pub(crate) fn appnum(&self) -> Option<usize> {
        self.appnum
    }

    /// Leaves the job (`cmd=finalize`), once; later collectives are errors. The launcher
    /// takes a process that exits without it for one that failed.
    pub(crate) fn finalize(&self) -> Result<()> {
        let mut inner = lock(&self.inner);
        if std::mem::replace(&mut inner.finalized, true) {
            return Ok(());
        }
        let reply = match self.version {
            Version::One => "finalize_ack",
            Version::Two => "finalize-response",
        };
        inner.conn.call("finalize", &[], reply).map(drop)
    }
}

impl Drop for PmiClient {
    fn drop(&mut self) {
        if let Err(e) = self.finalize() {
            tracing::debug!("PMI finalize: {e}");
        }
    }
}

/// The connection's state is plain data that a panic cannot leave half-updated.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
