//! What the external bootstraps (PMIx, PMI, env) share: starting each from the
//! environment, the first all-gather ([`members`]), and the job id.
//!
//! Under an external launcher, Atoll neither tags nor redirects output (the launcher does),
//! and a place reports failure through its exit status. Failure detection is the launcher's:
//! it ends the job when a place dies, so [`super::Bootstrap::is_failed`] stays `false`.

use std::net::TcpStream;
use std::time::Duration;

use super::env::EnvClient;
use super::members::{self, Members};
use super::pmi::{self, Connection, PmiClient, Stream};
use super::pmix::PmixClient;
use crate::config::{self, CONNECT_TIMEOUT_S, PMI_VERSION};
use crate::launch::ident;
use crate::{Error, Result};

/// A client of an external bootstrap, with what the first all-gather told it.
#[derive(Debug)]
pub struct External<C> {
    pub(crate) client: C,
    job_id: String,
    members: Members,
}

/// What an external client offers.
pub trait Exchange {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    fn allgather(&self, blob: &[u8]) -> Result<Vec<Vec<u8>>>;
    fn barrier(&self) -> Result<()>;
    fn finalize(&self) -> Result<()>;
}

impl<C: Exchange> External<C> {
    /// Runs the first all-gather (build ids, host names) and keeps `job_id`.
    fn new(client: C, job_id: String) -> Result<External<C>> {
        let members = members::gather(client.rank(), |blob| client.allgather(blob))?;
        tracing::debug!(
            rank = client.rank(),
            size = client.size(),
            job = %job_id,
            hosts = members.hosts.len(),
            "joined the job"
        );
        Ok(External {
            client,
            job_id,
            members,
        })
    }

    pub(crate) fn rank(&self) -> usize {
        self.client.rank()
    }

    pub(crate) fn size(&self) -> usize {
        self.client.size()
    }

    pub(crate) fn job_id(&self) -> &str {
        &self.job_id
    }

    pub(crate) fn local_rank(&self) -> (usize, usize) {
        (self.members.local_rank, self.members.local_size)
    }

    pub(crate) fn hosts(&self) -> &[String] {
        &self.members.hosts
    }

    pub(crate) fn host_of(&self) -> &[usize] {
        &self.members.host_of
    }

    pub(crate) fn allgather(&self, blob: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.client.allgather(blob)
    }

    pub(crate) fn barrier(&self) -> Result<()> {
        self.client.barrier()
    }

    pub(crate) fn finalize(&self) -> Result<()> {
        self.client.finalize()
    }
}

impl Exchange for PmixClient {
    fn rank(&self) -> usize {
        PmixClient::rank(self)
    }
    fn size(&self) -> usize {
        PmixClient::size(self)
    }
    fn allgather(&self, blob: &[u8]) -> Result<Vec<Vec<u8>>> {
        PmixClient::allgather(self, blob)
    }
    fn barrier(&self) -> Result<()> {
        PmixClient::barrier(self)
    }
    fn finalize(&self) -> Result<()> {
        PmixClient::finalize(self)
    }
}

impl Exchange for PmiClient {
    fn rank(&self) -> usize {
        PmiClient::rank(self)
    }
    fn size(&self) -> usize {
        PmiClient::size(self)
    }
    fn allgather(&self, blob: &[u8]) -> Result<Vec<Vec<u8>>> {
        PmiClient::allgather(self, blob)
    }
    fn barrier(&self) -> Result<()> {
        PmiClient::barrier(self)
    }
    fn finalize(&self) -> Result<()> {
        PmiClient::finalize(self)
    }
}

impl Exchange for EnvClient {
    fn rank(&self) -> usize {
        self.client.rank()
    }
    fn size(&self) -> usize {
        self.client.size()
    }
    fn allgather(&self, blob: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.client.allgather(blob)
    }
    fn barrier(&self) -> Result<()> {
        self.client.barrier()
    }
    fn finalize(&self) -> Result<()> {
        EnvClient::finalize(self)
    }
}

/// `ATOLL_CONNECT_TIMEOUT_S`, [`config::EXTERNAL_CONNECT_TIMEOUT_S`] (8 s) by default for
/// external bootstraps: the bound of every wait that should end at once (see [`crate::config`]).
pub(crate) fn timeout() -> Result<Duration> {
    let s = config::parse::<f64>(CONNECT_TIMEOUT_S, "seconds, more than 0")?
        .unwrap_or(config::EXTERNAL_CONNECT_TIMEOUT_S as f64);
    if !(s > 0.0 && s < 1e9) {
        return Err(Error::Config {
            var: CONNECT_TIMEOUT_S,
            value: s.to_string(),
            expected: "seconds, more than 0",
        });
    }
    Ok(Duration::from_secs_f64(s))
}

/// A job id from a launcher's name for the job: `prefix-` and the name with every
/// character other than a letter or digit made `-`, or a hash of it when that is too long.
pub(crate) fn job_id(prefix: &str, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let id = format!("{prefix}-{clean}");
    if ident::is_valid_job_id(&id) {
        id
    } else {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut h);
        format!("{prefix}-{:016x}", h.finish())
    }
}

/// Joins a PMIx job.
pub(crate) fn pmix() -> Result<External<PmixClient>> {
    let client = PmixClient::start(timeout()?)?;
    let id = job_id("pmix", client.nspace());
    External::new(client, id)
}

/// Joins a PMI job over `PMI_FD` (PMI-1, or PMI-2 with `ATOLL_PMI_VERSION=2`) or
/// `PMI_PORT` (PMI-1).
pub(crate) fn pmi() -> Result<External<PmiClient>> {
    let timeout = timeout()?;
    let v2 = match config::var(PMI_VERSION).as_deref() {
        None | Some("1") => false,
        Some("2") => true,
        Some(other) => {
            return Err(Error::Config {
                var: PMI_VERSION,
                value: other.to_owned(),
                expected: "1 or 2",
            })
        }
    };
    let hint = "is the launcher (mpiexec, srun --mpi=pmi2) still running? With \
                ATOLL_PMI_VERSION=2, does it speak PMI-2 (unset the variable to use PMI-1)?";
    let client = if let Some(fd) = config::var("PMI_FD") {
        let fd: i32 = fd.trim().parse().map_err(|_| Error::Config {
            var: "PMI_FD",
            value: fd.clone(),
            expected: "a file descriptor number",
        })?;
        let rank = pmi_number("PMI_RANK")?;
        let stream = Stream::Unix(pmi::fd::take(fd)?);
        let conn = Connection::new(
            stream,
            timeout,
            format!("the PMI server (PMI_FD={fd})"),
            hint,
        );
        if v2 {
            let id = config::var("PMI_ID").unwrap_or_else(|| rank.to_string());
            let job = config::var("PMI_JOBID");
            PmiClient::start_v2(conn, &id, job.as_deref())?
        } else {
            PmiClient::start(conn, rank, pmi_number("PMI_SIZE")?)?
        }
    } else if let (Some(port), true) = (config::var("PMI_PORT"), v2) {
        return Err(Error::Config {
            var: PMI_VERSION,
            value: format!("2 (with PMI_PORT={port})"),
            expected: "1 over PMI_PORT: PMI-2 is spoken over PMI_FD only",
        });
    } else if let Some(port) = config::var("PMI_PORT") {
        let id = config::var("PMI_ID").ok_or_else(|| {
            Error::bootstrap("PMI_PORT is set but PMI_ID is not: the launcher gave no PMI id")
        })?;
        let stream = connect(&port, timeout)?;
        let mut conn = Connection::new(
            Stream::Tcp(stream),
            timeout,
            format!("the PMI server at PMI_PORT={port}"),
            hint,
        );
        let (rank, size) = pmi::port_handshake(&mut conn, &id)?;
        PmiClient::start(conn, rank, size)?
    } else {
        return Err(Error::bootstrap(
            "ATOLL_BOOTSTRAP=pmi, but neither PMI_FD nor PMI_PORT is set: start the program \
             with mpiexec or srun --mpi=pmi2",
        ));
    };
    tracing::debug!(appnum = ?client.appnum(), version = ?client.version(), "PMI client started");
    let id = job_id("pmi", client.kvsname());
    External::new(client, id)
}

/// Joins an env job.
pub(crate) fn env() -> Result<External<EnvClient>> {
    let client = EnvClient::from_env(timeout()?)?;
    let id = client.client.kvsname().to_owned();
    External::new(client, id)
}

fn pmi_number(var: &'static str) -> Result<usize> {
    config::parse::<usize>(var, "a whole number")?.ok_or_else(|| {
        Error::bootstrap(format!(
            "PMI_FD is set but {var} is not: the launcher gave no {var}"
        ))
    })
}

fn connect(addr: &str, timeout: Duration) -> Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let what = || format!("connecting to the PMI server at PMI_PORT={addr}");
    let addrs = addr.to_socket_addrs().map_err(|e| Error::io(what(), e))?;
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::io(
        what(),
        last.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_from_launcher_names_are_segment_safe() {
        assert_eq!(job_id("pmi", "kvs_1234_0"), "pmi-kvs-1234-0");
        assert_eq!(job_id("pmix", "slurm.pmix.4.0"), "pmix-slurm-pmix-4-0");
        let long = job_id("pmix", &"x".repeat(100));
        assert!(ident::is_valid_job_id(&long) && long.starts_with("pmix-"));
        assert!(ident::is_valid_job_id(&job_id("pmi", "é/ü")));
    }
}
