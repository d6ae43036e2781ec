//! A PMIx client (Open MPI's `mpirun`, Slurm's `srun --mpi=pmix`): `PMIx_Init`, `Put` and
//! `Commit`, `Fence` with data collection, `Get`, `Finalize`.
//!
//! The library is loaded at run time ([`ffi`] says why). An all-gather puts this place's
//! blob under a key of the round (`atoll.ag.N`), commits, fences over the whole namespace
//! collecting the data, then gets every other place's value: with data collected, each get
//! is answered from the local PMIx store.
//!
//! `PMIx_Init` runs on a helper thread with a time limit: a client whose server is gone may
//! otherwise wait on it, and a place must fail within seconds instead.

mod ffi;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use super::chunks::MAX_BLOB;
use crate::{Error, Result};
use ffi::{Api, Proc};

/// A place's PMIx session, finalized on drop.
pub struct PmixClient {
    api: Api,
    me: Proc,
    size: usize,
    nspace: String,
    round: Mutex<u64>,
    finalized: AtomicBool,
}

impl std::fmt::Debug for PmixClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PmixClient")
            .field("nspace", &self.nspace)
            .field("rank", &self.me.rank)
            .field("size", &self.size)
            .finish()
    }
}

impl PmixClient {
    /// Initializes PMIx (within `timeout`) and reads the job's size.
    pub(crate) fn start(timeout: Duration) -> Result<PmixClient> {
        let api = ffi::api()?;
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("atoll-pmix-init".into())
            .spawn(move || {
                // The receiver may have given up; then nobody needs the answer.
                let _ignored = tx.send(api.init());
            })
            .map_err(|e| Error::io("starting the PMIx_Init thread", e))?;
        let server = std::env::var("PMIX_SERVER_URI41")
            .or_else(|_| std::env::var("PMIX_SERVER_URI4"))
            .unwrap_or_else(|_| "none named: no PMIX_SERVER_URI4 variable".into());
        let me = match rx.recv_timeout(timeout) {
            Ok(Ok(me)) => me,
            Ok(Err(e)) => {
                let e = match e {
                    Error::Bootstrap { reason } => reason,
                    other => other.to_string(),
                };
                return Err(Error::bootstrap(format!(
                    "PMIx variables are set (PMIX_NAMESPACE={}), but {e}: the PMIx server \
                     ({server}) is not reachable; was this process started by `mpirun` or \
                     `srun --mpi=pmix`, and is that launcher still running?",
                    std::env::var("PMIX_NAMESPACE").unwrap_or_default()
                )));
            }
            Err(_) => {
                return Err(Error::bootstrap(format!(
                    "PMIx_Init did not return within {} s (ATOLL_CONNECT_TIMEOUT_S): the PMIx \
                     server ({server}) does not answer; is the launcher (`mpirun`, `srun \
                     --mpi=pmix`) that started this process still running, and are the PMIX_* \
                     variables its own (not inherited from another job)?",
                    timeout.as_secs_f64()
                )))
            }
        };
        let nspace = me
            .nspace()
            .ok_or_else(|| Error::bootstrap("PMIx_Init gave a namespace that is not text"))?;
        let job = me.with_rank(ffi::RANK_WILDCARD);
        let size = api.get_u32(&job, &ffi::key("pmix.job.size")?)? as usize;
        if me.rank as usize >= size {
            return Err(Error::bootstrap(format!(
                "PMIx gave rank {} in a job of {size}",
                me.rank
            )));
        }
        Ok(PmixClient {
            api,
            me,
            size,
            nspace,
            round: Mutex::new(0),
            finalized: AtomicBool::new(false),
        })
    }

    pub(crate) fn rank(&self) -> usize {
        self.me.rank as usize
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// The job's namespace.
    pub(crate) fn nspace(&self) -> &str {
        &self.nspace
    }

    /// Contributes `blob`; returns every place's, indexed by rank.
    pub(crate) fn allgather(&self, blob: &[u8]) -> Result<Vec<Vec<u8>>> {
        if blob.len() > MAX_BLOB {
            return Err(Error::PayloadTooLarge {
                len: blob.len(),
                limit: MAX_BLOB,
            });
        }
        // One collective at a time, in the same order at every place.
        let mut round = self.round.lock().unwrap_or_else(PoisonError::into_inner);
        self.check_joined()?;
        *round += 1;
        let key = ffi::key(&format!("atoll.ag.{round}"))?;
        // A leading byte keeps the byte object non-empty (an empty one may come back as NULL).
        let mut tagged = Vec::with_capacity(blob.len() + 1);
        tagged.push(1);
        tagged.extend_from_slice(blob);
        self.api.put_bytes(&key, &tagged)?;
        self.api.commit()?;
        self.api.fence(&self.me.with_rank(ffi::RANK_WILDCARD))?;
        (0..self.size)
            .map(|rank| {
                if rank == self.rank() {
                    return Ok(blob.to_vec());
                }
                let peer = self.me.with_rank(rank as u32);
                let mut got = self.api.get_bytes(&peer, &key, MAX_BLOB + 1)?;
                if got.first() != Some(&1) {
                    return Err(Error::bootstrap(format!(
                        "place {rank}'s all-gather value lacks Atoll's leading byte"
                    )));
                }
                got.remove(0);
                Ok(got)
            })
            .collect()
    }

    /// Returns when every place has entered: a fence that collects data (nothing new is
    /// committed), because a fence without data collection does not wait for the places of
    /// other nodes under Slurm's `srun --mpi=pmix` ([`ffi::Api::fence`]).
    pub(crate) fn barrier(&self) -> Result<()> {
        let _serialized = self.round.lock().unwrap_or_else(PoisonError::into_inner);
        self.check_joined()?;
        self.api.fence(&self.me.with_rank(ffi::RANK_WILDCARD))
    }
}

impl PmixClient {
    /// Leaves the job (`PMIx_Finalize`), once; later collectives are errors.
    pub(crate) fn finalize(&self) -> Result<()> {
        let _serialized = self.round.lock().unwrap_or_else(PoisonError::into_inner);
        if self.finalized.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.api.finalize()
    }

    fn check_joined(&self) -> Result<()> {
        if self.finalized.load(Ordering::Acquire) {
            return Err(Error::bootstrap(
                "this place has already left the job (PMIx_Finalize)",
            ));
        }
        Ok(())
    }
}

impl Drop for PmixClient {
    fn drop(&mut self) {
        if let Err(e) = self.finalize() {
            tracing::debug!("{e}");
        }
    }
}
