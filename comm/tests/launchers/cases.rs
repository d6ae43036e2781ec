//! Jobs under each launcher: the place program and the conformance suite.

use super::*;

pub(crate) fn pmix_mpirun() -> Result<(), Failed> {
    let mut c = mpirun(4);
    c.arg(this_exe());
    expect_places_ok(&run(c)?, 4, "pmix")
}

pub(crate) fn pmix_conformance() -> Result<(), Failed> {
    let mut c = mpirun(4);
    c.env("ATOLL_CONFORMANCE_CASE", "all")
        .arg(conformance_binary().ok_or("no conformance binary")?);
    expect_conformance_ok(&run(c)?, 4)
}

pub(crate) fn hydra_fd() -> Result<(), Failed> {
    let mut c = command("mpiexec.mpich");
    c.args(["-n", "4"]).arg(this_exe());
    expect_places_ok(&run(c)?, 4, "pmi")
}

pub(crate) fn hydra_port() -> Result<(), Failed> {
    let mut c = command("mpiexec.mpich");
    c.args(["-pmi-port", "-n", "4"]).arg(this_exe());
    expect_places_ok(&run(c)?, 4, "pmi")
}

pub(crate) fn hydra_pmi2() -> Result<(), Failed> {
    let mut c = command("mpiexec.mpich");
    c.env("ATOLL_PMI_VERSION", "2")
        .args(["-n", "4"])
        .arg(this_exe());
    expect_places_ok(&run(c)?, 4, "pmi2")
}

pub(crate) fn hydra_conformance() -> Result<(), Failed> {
    let mut c = command("mpiexec.mpich");
    c.env("ATOLL_CONFORMANCE_CASE", "all")
        .args(["-n", "4"])
        .arg(conformance_binary().ok_or("no conformance binary")?);
    expect_conformance_ok(&run(c)?, 4)
}

pub(crate) fn srun(mpi: &str) -> Command {
    let mut c = command("srun");
    c.args([mpi, "-n", "4", "--overcommit"]);
    c
}

pub(crate) fn srun_pmi2() -> Result<(), Failed> {
    let mut c = srun("--mpi=pmi2");
    c.arg(this_exe());
    expect_places_ok(&run(c)?, 4, "pmi")
}

pub(crate) fn srun_pmi2_wire2() -> Result<(), Failed> {
    let mut c = srun("--mpi=pmi2");
    c.env("ATOLL_PMI_VERSION", "2").arg(this_exe());
    expect_places_ok(&run(c)?, 4, "pmi2")
}

pub(crate) fn srun_pmix() -> Result<(), Failed> {
    let mut c = srun("--mpi=pmix");
    c.arg(this_exe());
    expect_places_ok(&run(c)?, 4, "pmix")
}

pub(crate) fn srun_conformance() -> Result<(), Failed> {
    let mut c = srun("--mpi=pmix");
    c.env("ATOLL_CONFORMANCE_CASE", "all")
        .arg(conformance_binary().ok_or("no conformance binary")?);
    expect_conformance_ok(&run(c)?, 4)
}

pub(crate) fn srun_plain() -> Result<(), Failed> {
    let mut c = srun("--mpi=none");
    c.env_remove("ATOLL_CONNECT_TIMEOUT_S").arg(this_exe());
    expect_refused_in_time(&run_timed(c)?, &["started by srun", "srun --mpi=pmi2"])
}

/// A loopback address with a port that was free a moment ago.
pub(crate) fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    l.local_addr().expect("its address").to_string()
}

/// Starts `n` places of `exe` by hand with the env bootstrap; returns each one's output.
pub(crate) fn env_job(
    n: usize,
    exe: impl Fn(usize) -> PathBuf,
    extra: &[(&str, &str)],
) -> Vec<support::JobOutput> {
    let addr = free_addr();
    let secret = "0123456789abcdef0123456789abcdef";
    let places: Vec<_> = (0..n)
        .map(|rank| {
            let mut c = command(exe(rank).to_str().expect("a UTF-8 path"));
            c.env("ATOLL_COORDINATOR", &addr)
                .env("ATOLL_ENV_RANK", rank.to_string())
                .env("ATOLL_PLACES", n.to_string())
                .env("ATOLL_ENV_SECRET", secret);
            for (k, v) in extra {
                c.env(k, v);
            }
            std::thread::spawn(move || support::run_command(c, JOB_LIMIT))
        })
        .collect();
    places
        .into_iter()
        .map(|p| match p.join() {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => panic!("a place did not finish: {e}"),
            Err(_) => panic!("a place's thread panicked"),
        })
        .collect()
}

pub(crate) fn env_loopback() -> Result<(), Failed> {
    let outs = env_job(4, |_| this_exe(), &[]);
    for out in &outs {
        if !out.status.success() || !out.stdout.contains("ok bootstrap=env job=env-") {
            return Err(format!("a place failed\n{}", out.describe()).into());
        }
    }
    Ok(())
}

pub(crate) fn env_conformance() -> Result<(), Failed> {
    let exe = conformance_binary().ok_or("no conformance binary")?;
    let outs = env_job(4, |_| exe.clone(), &[("ATOLL_CONFORMANCE_CASE", "all")]);
    for out in &outs {
        expect_conformance_ok(out, 1)?;
    }
    Ok(())
}
