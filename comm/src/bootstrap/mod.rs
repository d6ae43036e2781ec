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
//! - `pmix`: PMIx, as Open MPI's `mpirun` and `srun --mpi=pmix` give it (module `pmix`).
//! - `pmi`: the PMI-1 wire protocol over `PMI_FD` or `PMI_PORT` (or PMI-2 over `PMI_FD` with
//!   `ATOLL_PMI_VERSION=2`), as MPICH's hydra (`mpiexec`) and `srun --mpi=pmi2` give it
//!   (module `pmi`).
//! - `env`: rank, size and a coordinator's `host:port` from environment variables; place 0
//!   runs the coordinator (module `env`).
//!
//! The order of detection is in the module `detect`; `ATOLL_BOOTSTRAP` overrides it. Every external
//! bootstrap starts with an all-gather of build ids and host names (module `members`): a place of
//! another build is refused at every place, and [`Bootstrap::local_rank`] and
//! [`Bootstrap::hosts`] come from the host names.
//!
//! # Failure detection
//! Under an external launcher the launcher ends the job when a place dies; Atoll's
//! [`Bootstrap::is_failed`] stays `false` there. A collective waiting on a place that died
//! ends with an error when the launcher (or the env coordinator) ends the connection.

mod chunks;
mod detect;
mod env;
mod external;
pub(crate) mod local;
mod members;
mod pmi;
mod pmix;

use crate::config::Config;
use crate::{Place, Result};
use detect::Choice;
use external::External;

/// The bootstrap of this place: rank, size, and an all-gather of small blobs.
#[derive(Debug)]
#[non_exhaustive]
pub enum Bootstrap {
    /// Started by Atoll's local launcher.
    Local(local::LocalBootstrap),
    /// Started by a PMIx launcher (`mpirun`, `srun --mpi=pmix`).
    Pmix(External<pmix::PmixClient>),
    /// Started by a PMI-1 launcher (`mpiexec` of MPICH, `srun --mpi=pmi2`).
    Pmi(External<pmi::PmiClient>),
    /// Started by hand, with a coordinator (`ATOLL_COORDINATOR`).
    Env(External<env::EnvClient>),
}

/// Dispatches `$body` over the external variants, `$b` bound to the `External`.
macro_rules! external {
    ($self:expr, $b:ident => $body:expr, Local($l:ident) => $local:expr) => {
        match $self {
            Bootstrap::Local($l) => $local,
            Bootstrap::Pmix($b) => $body,
            Bootstrap::Pmi($b) => $body,
            Bootstrap::Env($b) => $body,
        }
    };
}

impl Bootstrap {
    /// Joins the job described by the environment. When the process runs outside any
    /// launcher, it becomes the local launcher instead: it starts `config.places` copies of
    /// itself, forwards their output, and exits the process with the job's status (this call
    /// then never returns).
    ///
    /// Which bootstrap is detected from the environment (order: [`crate::config`]); a launcher that
    /// gives no PMI (plain `srun`, ...) is [`crate::Error::LauncherWithoutPmi`].
    pub fn join_or_launch(config: &Config) -> Result<Bootstrap> {
        match detect::choose(crate::config::var)? {
            Choice::Local | Choice::Launch => match local::LocalBootstrap::from_env()? {
                Some(local) => Ok(Bootstrap::Local(local)),
                None => crate::launch::run_job(config),
            },
            Choice::Pmix => external::pmix().map(Bootstrap::Pmix),
            Choice::Pmi => external::pmi().map(Bootstrap::Pmi),
            Choice::Env => external::env().map(Bootstrap::Env),
        }
    }

    /// The bootstrap's name: `local`, `pmix`, `pmi` (PMI-1 wire), `pmi2` (PMI-2 wire) or
    /// `env`.
    pub fn kind(&self) -> &'static str {
        match self {
            Bootstrap::Local(_) => "local",
            Bootstrap::Pmix(_) => "pmix",
            Bootstrap::Pmi(b) if b.client.version() == pmi::Version::Two => "pmi2",
            Bootstrap::Pmi(_) => "pmi",
            Bootstrap::Env(_) => "env",
        }
    }

    /// The names of the hosts the places run on (one name per host, in order of their
    /// lowest place).
    pub fn hosts(&self) -> Vec<String> {
        external!(self, b => b.hosts().to_vec(), Local(_l) => vec![
            // The local launcher starts every place on its own host.
            members::hostname().unwrap_or_else(|_| "localhost".to_owned())
        ])
    }

    /// For each place, the index in [`Bootstrap::hosts`] of the host it runs on: places with
    /// the same index share a host (and can share memory).
    pub fn host_of_places(&self) -> Vec<usize> {
        external!(self, b => b.host_of().to_vec(), Local(b) => vec![0; b.size()])
    }

    /// This place's index.
    pub fn rank(&self) -> usize {
        external!(self, b => b.rank(), Local(b) => b.rank())
    }

    /// This place's index among the places of its node, and how many share the node.
    pub fn local_rank(&self) -> (usize, usize) {
        // The local launcher starts every place on its own node.
        external!(self, b => b.local_rank(), Local(b) => (b.rank(), b.size()))
    }

    /// The number of places.
    pub fn size(&self) -> usize {
        external!(self, b => b.size(), Local(b) => b.size())
    }

    /// The job's id: letters, digits and `-` only; it names the job's shared-memory segments.
    pub fn job_id(&self) -> &str {
        external!(self, b => b.job_id(), Local(b) => b.job_id())
    }

    /// Every place contributes `blob`; every place receives all blobs, indexed by rank.
    /// Collective: every place must call it, in the same order as every other collective call.
    pub fn allgather(&self, blob: &[u8]) -> Result<Vec<Vec<u8>>> {
        external!(self, b => b.allgather(blob), Local(b) => b.allgather(blob))
    }

    /// Returns when every place has called it. Collective.
    pub fn barrier(&self) -> Result<()> {
        external!(self, b => b.barrier(), Local(b) => b.allgather(&[]).map(|_| ()))
    }

    /// Leaves the job: tells an external launcher that this place ends normally (PMIx or
    /// PMI finalize; at place 0 of an env job, waits for the others to leave first). Call it
    /// once, after the last collective; later collectives fail. Dropping the bootstrap does it
    /// too; the local launcher needs nothing.
    pub fn finalize(&self) -> Result<()> {
        external!(self, b => b.finalize(), Local(_l) => Ok(()))
    }

    /// Whether `place` is known to have died (cheap while no place has: no lock). Always
    /// `false` under an external launcher, which ends the job when a place dies.
    pub fn is_failed(&self, place: Place) -> bool {
        match self {
            Bootstrap::Local(b) => b.is_failed(place),
            _ => false,
        }
    }

    /// A shareable [`Bootstrap::is_failed`], for a provider that waits on a peer inside an
    /// operation (an RMA completion) and must not wait forever on a dead one, or that closes
    /// its connection to a dead one at once instead of flushing it.
    #[cfg(any(feature = "ofi", feature = "ucx"))]
    pub(crate) fn failure_probe(&self) -> FailureProbe {
        match self {
            Bootstrap::Local(b) => b.failure_probe(),
            // An external launcher ends the job when a place dies; no notice comes first.
            _ => FailureProbe::new(|_| false),
        }
    }

    /// Places the launcher has reported dead so far (cheap; no blocking). Always empty under
    /// an external launcher.
    pub fn failed_places(&self) -> Vec<Place> {
        match self {
            Bootstrap::Local(b) => b.failed_places(),
            _ => Vec::new(),
        }
    }
}

/// Whether a place is known to have died: a cheap test a provider can keep.
#[cfg(any(feature = "ofi", feature = "ucx"))]
#[derive(Clone)]
pub(crate) struct FailureProbe(std::sync::Arc<dyn Fn(Place) -> bool + Send + Sync>);

#[cfg(any(feature = "ofi", feature = "ucx"))]
impl FailureProbe {
    pub(crate) fn new(test: impl Fn(Place) -> bool + Send + Sync + 'static) -> FailureProbe {
        FailureProbe(std::sync::Arc::new(test))
    }

    /// Whether `place` is known to have died.
    pub(crate) fn is_failed(&self, place: Place) -> bool {
        (self.0)(place)
    }
}

#[cfg(any(feature = "ofi", feature = "ucx"))]
impl std::fmt::Debug for FailureProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FailureProbe")
    }
}
