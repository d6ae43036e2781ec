//! Which bootstrap the environment asks for.
//!
//! In order: `ATOLL_BOOTSTRAP`; the local launcher's `ATOLL_RANK`; PMIx (`PMIX_RANK` and
//! `PMIX_NAMESPACE`); PMI (`PMI_FD` or `PMI_PORT`); the env bootstrap (`ATOLL_COORDINATOR`).
//! Then the signs of a launcher that gives no PMI are an error that says what was found and
//! what to do, because becoming the local launcher there would start `ATOLL_PLACES` copies
//! in every one of the launcher's tasks. Otherwise the process becomes the local launcher.

use crate::config::{BOOTSTRAP, COORDINATOR, RANK};
use crate::{Error, Result};

/// The bootstrap to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Choice {
    /// A place of Atoll's local launcher.
    Local,
    /// No launcher: become the local launcher.
    Launch,
    /// PMIx (Open MPI's `mpirun`, `srun --mpi=pmix`).
    Pmix,
    /// PMI-1 wire (hydra's `mpiexec`, `srun --mpi=pmi2`).
    Pmi,
    /// Rank, size and coordinator from `ATOLL_*` variables.
    Env,
}

/// Picks the bootstrap from the variables `var` reads (the process's environment in use).
pub(crate) fn choose(var: impl Fn(&str) -> Option<String>) -> Result<Choice> {
    let set = |name: &str| var(name).is_some();
    if let Some(asked) = var(BOOTSTRAP) {
        return match asked.as_str() {
            "local" if set(RANK) => Ok(Choice::Local),
            "local" => Ok(Choice::Launch),
            "pmix" => Ok(Choice::Pmix),
            "pmi" => Ok(Choice::Pmi),
            "env" => Ok(Choice::Env),
            _ => Err(Error::Config {
                var: BOOTSTRAP,
                value: asked,
                expected: "one of local, env, pmi, pmix",
            }),
        };
    }
    if set(RANK) {
        return Ok(Choice::Local);
    }
    if set("PMIX_RANK") && set("PMIX_NAMESPACE") {
        return Ok(Choice::Pmix);
    }
    if set("PMI_FD") || set("PMI_PORT") {
        return Ok(Choice::Pmi);
    }
    if set(COORDINATOR) {
        return Ok(Choice::Env);
    }
    if set("SLURM_PROCID") && set("SLURM_STEP_ID") {
        return Err(Error::LauncherWithoutPmi {
            found: format!(
                "this process was started by srun (SLURM_PROCID={}, SLURM_STEP_ID={})",
                var("SLURM_PROCID").unwrap_or_default(),
                var("SLURM_STEP_ID").unwrap_or_default()
            ),
            fix: "run `srun --mpi=pmi2 ...` or `srun --mpi=pmix ...` (or set MpiDefault in slurm.conf)",
        });
    }
    if set("OMPI_COMM_WORLD_RANK") {
        return Err(Error::LauncherWithoutPmi {
            found: format!(
                "this process was started by Open MPI's mpirun (OMPI_COMM_WORLD_RANK={}) \
                 without PMIx variables (PMIX_RANK, PMIX_NAMESPACE)",
                var("OMPI_COMM_WORLD_RANK").unwrap_or_default()
            ),
            fix: "use an Open MPI built with PMIx (Open MPI 4 and later), or launch with \
                  `mpiexec.mpich` or `srun --mpi=pmix`",
        });
    }
    if set("PMI_RANK") || set("PMI_SIZE") {
        return Err(Error::LauncherWithoutPmi {
            found: format!(
                "PMI_RANK={:?} and PMI_SIZE={:?} are set but neither PMI_FD nor PMI_PORT is",
                var("PMI_RANK").unwrap_or_default(),
                var("PMI_SIZE").unwrap_or_default()
            ),
            fix: "launch with a PMI-1/PMI-2 server (`mpiexec.mpich`, `srun --mpi=pmi2`), or \
                  unset PMI_RANK and PMI_SIZE",
        });
    }
    if set("PMIX_RANK") || set("PMIX_NAMESPACE") {
        return Err(Error::LauncherWithoutPmi {
            found: "only one of PMIX_RANK and PMIX_NAMESPACE is set".to_owned(),
            fix: "launch with a PMIx server (`mpirun`, `srun --mpi=pmix`), or unset the other",
        });
    }
    Ok(Choice::Launch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Choice> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        choose(move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn follows_the_documented_order() {
        assert_eq!(with(&[]).unwrap(), Choice::Launch);
        assert_eq!(with(&[("ATOLL_RANK", "1")]).unwrap(), Choice::Local);
        let pmix = [("PMIX_RANK", "0"), ("PMIX_NAMESPACE", "ns")];
        assert_eq!(with(&pmix).unwrap(), Choice::Pmix);
        // Open MPI sets both: PMIx wins.
        let ompi = [pmix[0], pmix[1], ("OMPI_COMM_WORLD_RANK", "0")];
        assert_eq!(with(&ompi).unwrap(), Choice::Pmix);
        let hydra = [("PMI_FD", "6"), ("PMI_RANK", "0"), ("PMI_SIZE", "2")];
        assert_eq!(with(&hydra).unwrap(), Choice::Pmi);
        assert_eq!(
            with(&[("PMI_PORT", "vm:1"), ("PMI_ID", "0")]).unwrap(),
            Choice::Pmi
        );
        // srun --mpi=pmi2 sets PMI_FD beside the Slurm variables.
        let srun_pmi2 = [
            ("PMI_FD", "11"),
            ("SLURM_PROCID", "0"),
            ("SLURM_STEP_ID", "0"),
        ];
        assert_eq!(with(&srun_pmi2).unwrap(), Choice::Pmi);
        assert_eq!(with(&[("ATOLL_COORDINATOR", "h:1")]).unwrap(), Choice::Env);
        assert_eq!(
            with(&[("ATOLL_BOOTSTRAP", "env"), ("PMI_FD", "3")]).unwrap(),
            Choice::Env
        );
        assert_eq!(
            with(&[("ATOLL_BOOTSTRAP", "local")]).unwrap(),
            Choice::Launch
        );
        assert!(with(&[("ATOLL_BOOTSTRAP", "mpi")]).is_err());
    }

    #[test]
    fn launchers_without_pmi_are_clear_errors() {
        let srun = with(&[("SLURM_PROCID", "0"), ("SLURM_STEP_ID", "3")]).unwrap_err();
        assert!(srun.to_string().contains("--mpi=pmi2"), "{srun}");
        let ompi = with(&[("OMPI_COMM_WORLD_RANK", "0")]).unwrap_err();
        assert!(ompi.to_string().contains("PMIx"), "{ompi}");
        let pmi = with(&[("PMI_RANK", "0")]).unwrap_err();
        assert!(pmi.to_string().contains("PMI_FD"), "{pmi}");
        assert!(with(&[("PMIX_RANK", "0")]).is_err());
        // A batch script of Slurm (no step) still becomes the local launcher.
        assert_eq!(with(&[("SLURM_JOB_ID", "5")]).unwrap(), Choice::Launch);
    }
}
