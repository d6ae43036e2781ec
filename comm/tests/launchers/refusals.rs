//! What must be refused, each a clear error within seconds.

use super::*;

/// A copy of this binary with one more byte: runs the same, hashes differently.
pub(crate) struct OtherBuild {
    dir: PathBuf,
    exe: PathBuf,
}

impl OtherBuild {
    fn new() -> OtherBuild {
        let dir = std::env::temp_dir().join(format!("atoll-other-build-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let exe = dir.join("other");
        let mut bytes = std::fs::read(this_exe()).expect("reading this binary");
        bytes.extend_from_slice(b"another build");
        std::fs::write(&exe, bytes).expect("writing the copy");
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&exe, mode).expect("making it executable");
        OtherBuild { dir, exe }
    }

    fn path(&self) -> &Path {
        &self.exe
    }
}

impl Drop for OtherBuild {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const ANOTHER_BUILD: &str = "runs a different build of the program";

pub(crate) fn another_build_mpirun() -> Result<(), Failed> {
    let other = OtherBuild::new();
    let mut c = mpirun(2);
    c.arg(this_exe()).args([":", "-np", "2"]).arg(other.path());
    expect_refused(&run(c)?, ANOTHER_BUILD)
}

pub(crate) fn another_build_hydra() -> Result<(), Failed> {
    let other = OtherBuild::new();
    let mut c = command("mpiexec.mpich");
    c.args(["-n", "2"])
        .arg(this_exe())
        .args([":", "-n", "2"])
        .arg(other.path());
    expect_refused(&run(c)?, ANOTHER_BUILD)
}

pub(crate) fn another_build_env() -> Result<(), Failed> {
    let other = OtherBuild::new();
    let outs = env_job(
        2,
        |rank| {
            if rank == 0 {
                this_exe()
            } else {
                other.path().to_owned()
            }
        },
        &[],
    );
    for out in &outs {
        expect_refused(out, ANOTHER_BUILD)?;
    }
    Ok(())
}

/// One place of this binary started alone with `vars`, with the default timeouts of the
/// bootstrap (`ATOLL_CONNECT_TIMEOUT_S` unset); its output and how long it ran.
pub(crate) fn alone(vars: &[(&str, &str)]) -> Result<(support::JobOutput, Duration), Failed> {
    let mut c = command(this_exe().to_str().expect("a UTF-8 path"));
    c.env_remove("ATOLL_CONNECT_TIMEOUT_S");
    for (k, v) in vars {
        c.env(k, v);
    }
    run_timed(c)
}

/// The place failed by itself within [`REFUSAL_LIMIT`] of its start, and its output says
/// each of `what` (the cause, and what to do).
pub(crate) fn expect_refused_in_time(
    (out, took): &(support::JobOutput, Duration),
    what: &[&str],
) -> Result<(), Failed> {
    if *took >= REFUSAL_LIMIT {
        return Err(format!(
            "the error came {:.1} s after the start, not within {} s\n{}",
            took.as_secs_f64(),
            REFUSAL_LIMIT.as_secs(),
            out.describe()
        )
        .into());
    }
    for w in what {
        expect_refused(out, w)?;
    }
    Ok(())
}

/// A listener on loopback that accepts connections (the kernel's backlog does) and never
/// says a word; its address.
pub(crate) fn silent_listener() -> Result<(TcpListener, String), Failed> {
    let silent = TcpListener::bind("127.0.0.1:0")?;
    let addr = silent.local_addr()?.to_string();
    Ok((silent, addr))
}

pub(crate) fn pmix_without_server() -> Result<(), Failed> {
    let out = alone(&[
        ("PMIX_RANK", "0"),
        ("PMIX_NAMESPACE", "atoll-test"),
        ("PMIX_SERVER_URI41", "atoll-test.0;tcp4://127.0.0.1:1"),
    ])?;
    // Without libpmix.so.2 the error names the library instead.
    if out.0.stderr.contains("cannot be loaded") {
        return expect_refused_in_time(&out, &["libpmix"]);
    }
    expect_refused_in_time(
        &out,
        &["PMIx_Init failed", "is that launcher still running"],
    )
}

pub(crate) fn pmix_server_never_answers() -> Result<(), Failed> {
    let (silent, addr) = silent_listener()?;
    let uri = format!("atoll-test.0;tcp4://{addr}");
    let out = alone(&[
        ("PMIX_RANK", "0"),
        ("PMIX_NAMESPACE", "atoll-test"),
        ("PMIX_SERVER_URI41", &uri),
        ("PMIX_SERVER_URI4", &uri),
    ])?;
    drop(silent);
    if out.0.stderr.contains("cannot be loaded") {
        return expect_refused_in_time(&out, &["libpmix"]);
    }
    // libpmix may notice the silence itself (an error of PMIx_Init), or wait on it (Atoll's
    // time limit on PMIx_Init): either way an error naming the server and what to check.
    expect_refused_in_time(&out, &[&addr, "launcher", "still running"])
}

pub(crate) fn srun_without_pmi() -> Result<(), Failed> {
    let out = alone(&[
        ("SLURM_PROCID", "0"),
        ("SLURM_STEP_ID", "0"),
        ("SLURM_JOB_ID", "1"),
    ])?;
    expect_refused_in_time(&out, &["started by srun", "srun --mpi=pmi2"])
}

pub(crate) fn mpirun_without_pmix() -> Result<(), Failed> {
    let out = alone(&[("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "2")])?;
    expect_refused_in_time(&out, &["without PMIx"])
}

pub(crate) fn coordinator_never_answers() -> Result<(), Failed> {
    // With the default ATOLL_CONNECT_TIMEOUT_S: the bound under test.
    let (silent, addr) = silent_listener()?;
    let out = alone(&[
        ("ATOLL_COORDINATOR", &addr),
        ("ATOLL_ENV_RANK", "1"),
        ("ATOLL_PLACES", "2"),
        ("ATOLL_ENV_SECRET", "0123456789abcdef0123456789abcdef"),
    ])?;
    drop(silent);
    // The cause (which coordinator, silent) and what to do (check place 0 and the address).
    expect_refused_in_time(
        &out,
        &[
            &format!("the coordinator at {addr} (ATOLL_COORDINATOR) did not answer"),
            "is place 0 running",
            "ATOLL_CONNECT_TIMEOUT_S",
        ],
    )
}

pub(crate) fn wrong_secret() -> Result<(), Failed> {
    let addr = free_addr();
    let zero = {
        let mut c = command(this_exe().to_str().expect("a UTF-8 path"));
        c.env("ATOLL_COORDINATOR", &addr)
            .env("ATOLL_ENV_RANK", "0")
            .env("ATOLL_PLACES", "2")
            .env("ATOLL_ENV_SECRET", "0123456789abcdef0123456789abcdef")
            .env("ATOLL_CONNECT_TIMEOUT_S", "3");
        std::thread::spawn(move || support::run_command(c, JOB_LIMIT))
    };
    let one = alone(&[
        ("ATOLL_COORDINATOR", &addr),
        ("ATOLL_ENV_RANK", "1"),
        ("ATOLL_PLACES", "2"),
        ("ATOLL_ENV_SECRET", "ffffffffffffffffffffffffffffffff"),
        ("ATOLL_CONNECT_TIMEOUT_S", "3"),
    ])?;
    expect_refused_in_time(&one, &["wrong secret"])?;
    let zero = zero.join().map_err(|_| "place 0's thread panicked")??;
    expect_refused(&zero, "never connected")
}

pub(crate) fn shm_across_hosts() -> Result<(), Failed> {
    // Place 1 runs in a UTS namespace of its own, under another host name; /dev/shm is
    // still shared, but the bootstrap sees two hosts, and shm must refuse them.
    let addr = free_addr();
    let secret = "0123456789abcdef0123456789abcdef";
    let spawn = |rank: usize| {
        let mut c = command("unshare");
        let exe = this_exe();
        let host = format!("atoll-test-host-{rank}");
        c.args(["-u", "sh", "-c", "hostname \"$0\" && exec \"$1\""])
            .arg(host)
            .arg(exe)
            .env("ATOLL_COORDINATOR", &addr)
            .env("ATOLL_ENV_RANK", rank.to_string())
            .env("ATOLL_PLACES", "2")
            .env("ATOLL_ENV_SECRET", secret);
        std::thread::spawn(move || support::run_command(c, JOB_LIMIT))
    };
    let places = [spawn(0), spawn(1)];
    for place in places {
        let out = place.join().map_err(|_| "a place's thread panicked")??;
        expect_refused(&out, "use ATOLL_PROVIDER=ucx or ATOLL_PROVIDER=ofi")?;
    }
    Ok(())
}
