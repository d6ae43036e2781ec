//! The bootstraps under real launchers: Open MPI's `mpirun` (PMIx), MPICH's `mpiexec.mpich`
//! (hydra, PMI-1 over `PMI_FD` and `PMI_PORT`), and the env bootstrap with places started by
//! hand on loopback; then the failures that must be clear errors within seconds.
//!
//! The test binary is both the driver and the place program (`ATOLL_LAUNCHERS_PLACE=1`). A
//! launcher that is not installed makes its tests ignored, with the reason printed. The comm
//! conformance suite also runs under each launcher: the driver finds the `conformance` test
//! binary built beside this one.

mod cases;
mod jobs;
mod refusals;

use atoll_testkit as support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atoll_comm::{CommBuilder, HandlerId, Place};
use libtest_mimic::{Arguments, Failed, Trial};

use cases::*;
use jobs::*;
use refusals::*;

const PLACE_VAR: &str = "ATOLL_LAUNCHERS_PLACE";
const COUNT: HandlerId = HandlerId::new(1);
/// Messages each place sends every other place.
const MESSAGES: usize = 200;
/// Bytes of each place's all-gather blob: many PMI values of 1 KiB.
const BLOB: usize = 50_000;
/// The most any job may take (launchers and places together).
const JOB_LIMIT: Duration = Duration::from_secs(90);
/// How soon a place must fail with a clear error when its launcher, PMI server or
/// coordinator gives no answer (a bound on hang detection, not a performance figure).
const REFUSAL_LIMIT: Duration = Duration::from_secs(10);

fn main() {
    if std::env::var_os(PLACE_VAR).is_some() {
        std::process::exit(match place_main() {
            Ok(()) => 0,
            Err(message) => {
                eprintln!("launchers place failed: {message}");
                1
            }
        });
    }
    let mut args = Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = Some(1); // each job already oversubscribes the machine
    }
    let ompi = open_mpi();
    let hydra = program_runs("mpiexec.mpich", &["--version"]);
    let conformance = conformance_binary();
    let slurm = slurm_up();
    let mut trials = Vec::new();
    let mut add = |name: &str, missing: Option<String>, test: fn() -> Result<(), Failed>| {
        let trial = Trial::test(name, test);
        trials.push(match missing {
            Some(why) => {
                eprintln!("launchers::{name}: ignored: {why}");
                trial.with_ignored_flag(true)
            }
            None => trial,
        });
    };
    let need = |found: bool, what: &str| (!found).then(|| format!("{what} is not installed"));
    let need_conf = |found: bool, what: &str| {
        need(found, what).or_else(|| {
            conformance
                .is_none()
                .then(|| "the conformance test binary is not built beside this one".to_owned())
        })
    };
    add(
        "pmix::mpirun_np4",
        need(ompi, "Open MPI's mpirun"),
        pmix_mpirun,
    );
    add(
        "pmix::mpirun_conformance_np4",
        need_conf(ompi, "Open MPI's mpirun"),
        pmix_conformance,
    );
    add("pmi::hydra_fd_np4", need(hydra, "mpiexec.mpich"), hydra_fd);
    add(
        "pmi::hydra_port_np4",
        need(hydra, "mpiexec.mpich"),
        hydra_port,
    );
    add(
        "pmi::hydra_fd_pmi2_np4",
        need(hydra, "mpiexec.mpich"),
        hydra_pmi2,
    );
    add(
        "pmi::hydra_conformance_np4",
        need_conf(hydra, "mpiexec.mpich"),
        hydra_conformance,
    );
    let no_slurm = || slurm.clone().err();
    add("pmi::srun_pmi2_np4", no_slurm(), srun_pmi2);
    add("pmi::srun_pmi2_wire2_np4", no_slurm(), srun_pmi2_wire2);
    add("pmix::srun_pmix_np4", no_slurm(), srun_pmix);
    add(
        "pmix::srun_pmix_conformance_np4",
        no_slurm().or_else(|| need_conf(true, "")),
        srun_conformance,
    );
    add("refused::srun_plain", no_slurm(), srun_plain);
    add("env::loopback_np4", None, env_loopback);
    add(
        "env::loopback_conformance_np4",
        need_conf(true, ""),
        env_conformance,
    );
    add(
        "refused::another_build_mpirun",
        need(ompi, "Open MPI's mpirun"),
        another_build_mpirun,
    );
    add(
        "refused::another_build_hydra",
        need(hydra, "mpiexec.mpich"),
        another_build_hydra,
    );
    add("refused::another_build_env", None, another_build_env);
    add("refused::pmix_without_server", None, pmix_without_server);
    add(
        "refused::pmix_server_never_answers",
        None,
        pmix_server_never_answers,
    );
    add("refused::srun_without_pmi", None, srun_without_pmi);
    add("refused::mpirun_without_pmix", None, mpirun_without_pmix);
    add(
        "refused::coordinator_never_answers",
        None,
        coordinator_never_answers,
    );
    add("refused::wrong_secret", None, wrong_secret);
    let unshare = (unsafe_is_root() && program_runs("unshare", &["-u", "true"]))
        .then_some(())
        .ok_or_else(|| "needs root and unshare -u (a UTS namespace)".to_owned())
        .err();
    add("refused::shm_across_hosts", unshare, shm_across_hosts);
    libtest_mimic::run(&args, trials).exit();
}

// ------------------------------------------------------------------------------------------
// The place program

fn place_main() -> Result<(), String> {
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let comm = CommBuilder::new()
        .handler(COUNT, move |_, msg| {
            let _value = msg.access::<u64>()?;
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .init()
        .map_err(|e| e.to_string())?;
    let (here, n) = (comm.here().index(), comm.len());
    // A large all-gather: split into many values under PMI-1.
    let blob: Vec<u8> = (0..BLOB).map(|i| (i * 7 + here) as u8).collect();
    let all = comm.bootstrap_allgather(&blob).map_err(|e| e.to_string())?;
    for (rank, got) in all.iter().enumerate() {
        let want: Vec<u8> = (0..BLOB).map(|i| (i * 7 + rank) as u8).collect();
        if *got != want {
            return Err(format!("the blob of place {rank} arrived altered"));
        }
    }
    // Every place agrees on the job id and the hosts.
    let ids = comm
        .bootstrap_allgather(comm.job_id().as_bytes())
        .map_err(|e| e.to_string())?;
    if ids.iter().any(|id| id != comm.job_id().as_bytes()) {
        return Err("places disagree on the job id".into());
    }
    let (local, local_size) = comm.local_rank();
    if comm.hosts().len() != 1 || local != here || local_size != n {
        return Err(format!(
            "one host expected: hosts {:?}, local rank {local} of {local_size}",
            comm.hosts()
        ));
    }
    for to in 0..n {
        if to != here {
            for i in 0..MESSAGES {
                comm.send(Place::new(to), COUNT, &(i as u64))
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    let expected = MESSAGES * (n - 1);
    comm.wait_until(|| received.load(Ordering::Relaxed) == expected)
        .map_err(|e| e.to_string())?;
    comm.flush().map_err(|e| e.to_string())?;
    comm.bootstrap_barrier().map_err(|e| e.to_string())?;
    println!(
        "launchers place {here} of {n}: ok bootstrap={} job={}",
        comm.bootstrap_kind(),
        comm.job_id()
    );
    Ok(())
}
