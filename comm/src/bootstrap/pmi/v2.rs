//! PMI-2 specifics: the start (a PMI-1 `init` asking for version 2, then PMI-2 `fullinit` and
//! `job-getid`) and PMI-2's limits. Hydra and Slurm's `--mpi=pmi2` plugin answer it
//! (`ATOLL_PMI_VERSION=2`, over `PMI_FD`).

use std::sync::Mutex;

use super::connection::Connection;
use super::{wire, Inner, PmiClient, Version};
use crate::{Error, Result};

/// PMI-2's limits on keys and values (MPICH's `PMI2_MAX_KEYLEN` and `PMI2_MAX_VALLEN`).
const PMI2_MAX_KEY: usize = 64;
const PMI2_MAX_VALUE: usize = 1024;

impl PmiClient {
    /// Runs the PMI-2 start on `conn`: a PMI-1 `init` asking for version 2, then PMI-2
    /// `fullinit` (rank, size, appnum) and `job-getid`. `pmi_id` is this process's
    /// `PMI_ID` or `PMI_RANK`; `job` its `PMI_JOBID`, which Slurm requires.
    pub(crate) fn start_v2(
        mut conn: Connection,
        pmi_id: &str,
        job: Option<&str>,
    ) -> Result<PmiClient> {
        if !wire::is_word(pmi_id) || !job.is_none_or(wire::is_word) {
            return Err(Error::bootstrap(format!(
                "PMI_RANK={pmi_id:?} or PMI_JOBID={job:?} is not a PMI word"
            )));
        }
        let init = conn.call(
            "init",
            &[("pmi_version", "2"), ("pmi_subversion", "0")],
            "response_to_init",
        )?;
        if init.get("pmi_version") != Some("2") {
            return Err(Error::bootstrap(format!(
                "the PMI server does not speak PMI-2 (it answered pmi_version={:?}); unset \
                 ATOLL_PMI_VERSION to use PMI-1",
                init.get("pmi_version")
            )));
        }
        conn.switch_to_v2();
        let mut fields = vec![("pmirank", pmi_id), ("threaded", "FALSE")];
        if let Some(job) = job {
            fields.insert(0, ("pmijobid", job));
        }
        let full = conn.call("fullinit", &fields, "fullinit-response")?;
        let (rank, size) = (full.number("rank")?, full.number("size")?);
        let appnum = match full.get("appnum") {
            None | Some("-1") => None,
            Some(_) => Some(full.number("appnum")?),
        };
        let kvsname = conn
            .call("job-getid", &[], "job-getid-response")?
            .require("jobid")?
            .to_owned();
        if !wire::is_word(&kvsname) {
            return Err(Error::bootstrap(format!(
                "the PMI server's job id {kvsname:?} cannot be sent back in a PMI message"
            )));
        }
        if rank >= size {
            return Err(Error::bootstrap(format!(
                "the PMI server gave rank {rank} in a job of {size}"
            )));
        }
        Ok(PmiClient {
            version: Version::Two,
            rank,
            size,
            kvsname,
            appnum,
            max_key: PMI2_MAX_KEY,
            // A margin below the limit: servers count the terminating NUL differently.
            max_value: PMI2_MAX_VALUE - 16,
            inner: Mutex::new(Inner {
                conn,
                round: 0,
                finalized: false,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::test_server::{server, slurm, slurm_v2};
    use super::*;

    #[test]
    fn gathers_through_a_pmi2_server() {
        let client =
            PmiClient::start_v2(slurm_v2(Duration::from_secs(10)), "0", Some("7.0")).unwrap();
        assert_eq!(
            (client.rank(), client.size(), client.kvsname()),
            (0, 2, "7.0")
        );
        assert_eq!((client.version(), client.appnum()), (Version::Two, Some(0)));
        let all = client.allgather(&[3; 4000]).unwrap();
        assert_eq!(all, vec![vec![3; 4000], vec![7; 2500]]);
        // The next round's values of place 1 were never put: found=FALSE is an error.
        assert!(client.allgather(b"x").is_err());
        client.finalize().unwrap();
        // A PMI-1 server refuses version 2 in its own words.
        let err =
            PmiClient::start_v2(server(slurm, Duration::from_secs(10)), "0", None).unwrap_err();
        assert!(err.to_string().contains("does not speak PMI-2"), "{err}");
    }
}
