//! Bootstrap: who am I, how many are we, and an all-gather of small blobs.
//!
//! Providers use the bootstrap once, at start, to exchange what they need to reach each
//! other (segment names, endpoint addresses, remote keys) and to agree that every place has
//! done so. It is not on any data path.
//!
//! Implementations form a closed set, picked from the environment at start:
//! - `local`: the program was started by Atoll's own local launcher,
//!   which re-executes the binary `ATOLL_PLACES` times and serves the all-gather over a
//!   Unix socket guarded by a per-job secret. When no launcher of any kind is around, the
//!   process *becomes* that launcher.
//! - PMI (`mpirun`, `mpiexec`, `srun`) and `env` arrive with the launch issue.

pub(crate) mod local;

use crate::config::Config;
use crate::{Place, Result};

/// The bootstrap of this place: rank, size, and an all-gather of small blobs.
#[derive(Debug)]
#[non_exhaustive]
pub enum Bootstrap {
    /// Started by Atoll's local launcher.
    Local(local::LocalBootstrap),
}

impl Bootstrap {
    /// Joins the job described by the environment. When the process runs outside any
    /// launcher, it becomes the local launcher instead: it starts `config.places` copies of
    /// itself, forwards their output, and exits the process with the job's status (this call
    /// then never returns).
    pub fn join_or_launch(config: &Config) -> Result<Bootstrap> {
        match local::LocalBootstrap::from_env()? {
            Some(local) => Ok(Bootstrap::Local(local)),
            None => crate::launch::run_job(config),
        }
    }

    /// This place's index.
    pub fn rank(&self) -> usize {
        match self {
            Bootstrap::Local(b) => b.rank(),
        }
    }

    /// This place's index among the places of its node, and how many share the node.
    pub fn local_rank(&self) -> (usize, usize) {
        match self {
            // The local launcher starts every place on its own node.
            Bootstrap::Local(b) => (b.rank(), b.size()),
        }
    }

    /// The number of places.
    pub fn size(&self) -> usize {
        match self {
            Bootstrap::Local(b) => b.size(),
        }
    }

    /// The job's id: letters, digits and `-` only; it names the job's shared-memory segments.
    pub fn job_id(&self) -> &str {
        match self {
            Bootstrap::Local(b) => b.job_id(),
        }
    }

    /// Every place contributes `blob`; every place receives all blobs, indexed by rank.
    /// Collective: every place must call it, in the same order as every other collective call.
    pub fn allgather(&self, blob: &[u8]) -> Result<Vec<Vec<u8>>> {
        match self {
            Bootstrap::Local(b) => b.allgather(blob),
        }
    }

    /// Returns when every place has called it. Collective.
    pub fn barrier(&self) -> Result<()> {
        self.allgather(&[]).map(|_| ())
    }

    /// Whether `place` is known to have died (cheap while no place has: no lock).
    pub fn is_failed(&self, place: Place) -> bool {
        match self {
            Bootstrap::Local(b) => b.is_failed(place),
        }
    }

    /// A shareable [`Bootstrap::is_failed`], for a provider that waits on a peer inside an
    /// operation (an RMA completion) and must not wait forever on a dead one.
    #[cfg(feature = "ofi")]
    pub(crate) fn failure_probe(&self) -> FailureProbe {
        match self {
            Bootstrap::Local(b) => b.failure_probe(),
        }
    }

    /// Places the launcher has reported dead so far (cheap; no blocking).
    pub fn failed_places(&self) -> Vec<Place> {
        match self {
            Bootstrap::Local(b) => b.failed_places(),
        }
    }
}

/// Whether a place is known to have died: a cheap test a provider can keep.
#[cfg(feature = "ofi")]
#[derive(Clone)]
pub(crate) struct FailureProbe(std::sync::Arc<dyn Fn(Place) -> bool + Send + Sync>);

#[cfg(feature = "ofi")]
impl FailureProbe {
    pub(crate) fn new(test: impl Fn(Place) -> bool + Send + Sync + 'static) -> FailureProbe {
        FailureProbe(std::sync::Arc::new(test))
    }

    /// Whether `place` is known to have died.
    pub(crate) fn is_failed(&self, place: Place) -> bool {
        (self.0)(place)
    }
}

#[cfg(feature = "ofi")]
impl std::fmt::Debug for FailureProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FailureProbe")
    }
}
