//! The bootstraps under real launchers: Open MPI's `mpirun` (PMIx), MPICH's `mpiexec.mpich`
//! (hydra, PMI-1 over `PMI_FD` and `PMI_PORT`), and the env bootstrap with places started by
//! hand on loopback; then the failures that must be clear errors within seconds.
//!
//! The test binary is both the driver and the place program (`ATOLL_LAUNCHERS_PLACE=1`). A
//! launcher that is not installed makes its tests ignored, with the reason printed. The comm
//! conformance suite also runs under each launcher: the driver finds the `conformance` test
//! binary built beside this one.

use atoll_testkit as support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atoll_comm::{CommBuilder, HandlerId, Place};
use libtest_mimic::{Arguments, Failed, Trial};

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

// ------------------------------------------------------------------------------------------
// Launchers found on this machine

fn program_runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success())
}

fn open_mpi() -> bool {
    Command::new("mpirun")
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("Open MPI"))
}

/// Whether Slurm's daemons answer (`sinfo` within 5 s shows a usable node); the reason
/// otherwise. `SLURM_CONF` from the environment picks the cluster.
fn slurm_up() -> Result<(), String> {
    // `srun --version` fails without a readable slurm.conf: only whether it starts counts.
    if Command::new("srun").arg("--version").output().is_err() {
        return Err("Slurm's srun is not installed".into());
    }
    let mut c = Command::new("sinfo");
    c.args(["-h", "-o", "%T"]);
    match support::run_command(c, Duration::from_secs(5)) {
        Ok(out)
            if ["idle", "mix", "alloc"]
                .iter()
                .any(|s| out.stdout.contains(s)) =>
        {
            Ok(())
        }
        Ok(out) => Err(format!(
            "no Slurm node is up (sinfo: {:?})",
            out.stdout.trim()
        )),
        Err(_) => Err("Slurm's daemons do not answer sinfo within 5 s".into()),
    }
}

fn unsafe_is_root() -> bool {
    // The effective uid, from /proc (no unsafe call): the line `Uid: real effective ...`.
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// The `conformance` test binary of this build: the newest `conformance-*` beside this one.
fn conformance_binary() -> Option<PathBuf> {
    let me = std::env::current_exe().ok()?;
    let dir = me.parent()?;
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("conformance-") && !name.contains('.')
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, path)| path)
}

fn this_exe() -> PathBuf {
    std::env::current_exe().expect("the test binary's path")
}

// ------------------------------------------------------------------------------------------
// Running jobs

/// A launcher command with the place environment set and Atoll's own launcher variables
/// removed (this driver may itself run under `cargo test` in a job).
fn command(program: &str) -> Command {
    let mut c = Command::new(program);
    for var in [
        "ATOLL_RANK",
        "ATOLL_PLACES",
        "ATOLL_CHAOS",
        "ATOLL_BOOTSTRAP",
        "ATOLL_COORDINATOR",
        "ATOLL_PMI_VERSION",
    ] {
        c.env_remove(var);
    }
    c.env(PLACE_VAR, "1");
    c
}

fn mpirun(np: usize) -> Command {
    let mut c = command("mpirun");
    c.args(["--oversubscribe", "--allow-run-as-root", "-x", PLACE_VAR])
        .args(["-x", "ATOLL_CONFORMANCE_CASE", "-np", &np.to_string()]);
    c
}

fn run(command: Command) -> Result<support::JobOutput, Failed> {
    support::run_command(command, JOB_LIMIT).map_err(Failed::from)
}

/// [`run`], and how long the job ran.
fn run_timed(command: Command) -> Result<(support::JobOutput, Duration), Failed> {
    let started = Instant::now();
    let out = run(command)?;
    Ok((out, started.elapsed()))
}

/// The job succeeded and every place of `n` printed its success line.
fn expect_places_ok(out: &support::JobOutput, n: usize, bootstrap: &str) -> Result<(), Failed> {
    if !out.status.success() {
        return Err(format!("the job failed\n{}", out.describe()).into());
    }
    for place in 0..n {
        let line = format!("launchers place {place} of {n}: ok bootstrap={bootstrap} ");
        if !out.stdout.contains(&line) {
            return Err(format!("no line {line:?}\n{}", out.describe()).into());
        }
    }
    Ok(())
}

/// The conformance suite's cases all passed at `n` places.
fn expect_conformance_ok(out: &support::JobOutput, n: usize) -> Result<(), Failed> {
    if !out.status.success() {
        return Err(format!("the conformance job failed\n{}", out.describe()).into());
    }
    let oks = out.stdout.lines().filter(|l| l.ends_with(": ok")).count();
    let cases = conformance_cases();
    if cases == 0 || oks != cases * n {
        return Err(format!("{oks} case results of {}\n{}", cases * n, out.describe()).into());
    }
    Ok(())
}

/// How many cases the conformance suite has: the strings of its `CASES` list, read from its
/// source so that a new case needs no change here.
fn conformance_cases() -> usize {
    let source = include_str!("conformance.rs");
    source
        .split_once("const CASES: &[&str] = &[")
        .and_then(|(_, rest)| rest.split_once("];"))
        .map_or(0, |(list, _)| list.matches('"').count() / 2)
}

/// The job failed, and its output says `what`.
fn expect_refused(out: &support::JobOutput, what: &str) -> Result<(), Failed> {
    if out.status.success() {
        return Err(format!("the job succeeded\n{}", out.describe()).into());
    }
    if !out.stderr.contains(what) && !out.stdout.contains(what) {
        return Err(format!("the output lacks {what:?}\n{}", out.describe()).into());
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Launchers

fn pmix_mpirun() -> Result<(), Failed> {
    let mut c = mpirun(4);
    c.arg(this_exe());
    expect_places_ok(&run(c)?, 4, "pmix")
}

fn pmix_conformance() -> Result<(), Failed> {
    let mut c = mpirun(4);
    c.env("ATOLL_CONFORMANCE_CASE", "all")
        .arg(conformance_binary().ok_or("no conformance binary")?);
    expect_conformance_ok(&run(c)?, 4)
}

fn hydra_fd() -> Result<(), Failed> {
    let mut c = command("mpiexec.mpich");
    c.args(["-n", "4"]).arg(this_exe());
    expect_places_ok(&run(c)?, 4, "pmi")
}

fn hydra_port() -> Result<(), Failed> {
    let mut c = command("mpiexec.mpich");
    c.args(["-pmi-port", "-n", "4"]).arg(this_exe());
    expect_places_ok(&run(c)?, 4, "pmi")
}

fn hydra_pmi2() -> Result<(), Failed> {
    let mut c = command("mpiexec.mpich");
    c.env("ATOLL_PMI_VERSION", "2")
        .args(["-n", "4"])
        .arg(this_exe());
    expect_places_ok(&run(c)?, 4, "pmi2")
}

fn hydra_conformance() -> Result<(), Failed> {
    let mut c = command("mpiexec.mpich");
    c.env("ATOLL_CONFORMANCE_CASE", "all")
        .args(["-n", "4"])
        .arg(conformance_binary().ok_or("no conformance binary")?);
    expect_conformance_ok(&run(c)?, 4)
}

fn srun(mpi: &str) -> Command {
    let mut c = command("srun");
    c.args([mpi, "-n", "4", "--overcommit"]);
    c
}

fn srun_pmi2() -> Result<(), Failed> {
    let mut c = srun("--mpi=pmi2");
    c.arg(this_exe());
    expect_places_ok(&run(c)?, 4, "pmi")
}

fn srun_pmi2_wire2() -> Result<(), Failed> {
    let mut c = srun("--mpi=pmi2");
    c.env("ATOLL_PMI_VERSION", "2").arg(this_exe());
    expect_places_ok(&run(c)?, 4, "pmi2")
}

fn srun_pmix() -> Result<(), Failed> {
    let mut c = srun("--mpi=pmix");
    c.arg(this_exe());
    expect_places_ok(&run(c)?, 4, "pmix")
}

fn srun_conformance() -> Result<(), Failed> {
    let mut c = srun("--mpi=pmix");
    c.env("ATOLL_CONFORMANCE_CASE", "all")
        .arg(conformance_binary().ok_or("no conformance binary")?);
    expect_conformance_ok(&run(c)?, 4)
}

fn srun_plain() -> Result<(), Failed> {
    let mut c = srun("--mpi=none");
    c.env_remove("ATOLL_CONNECT_TIMEOUT_S").arg(this_exe());
    expect_refused_in_time(&run_timed(c)?, &["started by srun", "srun --mpi=pmi2"])
}

/// A loopback address with a port that was free a moment ago.
fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    l.local_addr().expect("its address").to_string()
}

/// Starts `n` places of `exe` by hand with the env bootstrap; returns each one's output.
fn env_job(
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

fn env_loopback() -> Result<(), Failed> {
    let outs = env_job(4, |_| this_exe(), &[]);
    for out in &outs {
        if !out.status.success() || !out.stdout.contains("ok bootstrap=env job=env-") {
            return Err(format!("a place failed\n{}", out.describe()).into());
        }
    }
    Ok(())
}

fn env_conformance() -> Result<(), Failed> {
    let exe = conformance_binary().ok_or("no conformance binary")?;
    let outs = env_job(4, |_| exe.clone(), &[("ATOLL_CONFORMANCE_CASE", "all")]);
    for out in &outs {
        expect_conformance_ok(out, 1)?;
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// What must be refused, each a clear error within seconds

/// A copy of this binary with one more byte: runs the same, hashes differently.
struct OtherBuild {
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

fn another_build_mpirun() -> Result<(), Failed> {
    let other = OtherBuild::new();
    let mut c = mpirun(2);
    c.arg(this_exe()).args([":", "-np", "2"]).arg(other.path());
    expect_refused(&run(c)?, ANOTHER_BUILD)
}

fn another_build_hydra() -> Result<(), Failed> {
    let other = OtherBuild::new();
    let mut c = command("mpiexec.mpich");
    c.args(["-n", "2"])
        .arg(this_exe())
        .args([":", "-n", "2"])
        .arg(other.path());
    expect_refused(&run(c)?, ANOTHER_BUILD)
}

fn another_build_env() -> Result<(), Failed> {
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
fn alone(vars: &[(&str, &str)]) -> Result<(support::JobOutput, Duration), Failed> {
    let mut c = command(this_exe().to_str().expect("a UTF-8 path"));
    c.env_remove("ATOLL_CONNECT_TIMEOUT_S");
    for (k, v) in vars {
        c.env(k, v);
    }
    run_timed(c)
}

/// The place failed by itself within [`REFUSAL_LIMIT`] of its start, and its output says
/// each of `what` (the cause, and what to do).
fn expect_refused_in_time(
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
fn silent_listener() -> Result<(TcpListener, String), Failed> {
    let silent = TcpListener::bind("127.0.0.1:0")?;
    let addr = silent.local_addr()?.to_string();
    Ok((silent, addr))
}

fn pmix_without_server() -> Result<(), Failed> {
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

fn pmix_server_never_answers() -> Result<(), Failed> {
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

fn srun_without_pmi() -> Result<(), Failed> {
    let out = alone(&[
        ("SLURM_PROCID", "0"),
        ("SLURM_STEP_ID", "0"),
        ("SLURM_JOB_ID", "1"),
    ])?;
    expect_refused_in_time(&out, &["started by srun", "srun --mpi=pmi2"])
}

fn mpirun_without_pmix() -> Result<(), Failed> {
    let out = alone(&[("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "2")])?;
    expect_refused_in_time(&out, &["without PMIx"])
}

fn coordinator_never_answers() -> Result<(), Failed> {
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

fn wrong_secret() -> Result<(), Failed> {
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

fn shm_across_hosts() -> Result<(), Failed> {
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
