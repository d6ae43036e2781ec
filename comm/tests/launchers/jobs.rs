//! The launchers found on this machine, and running jobs under them.

use super::*;

pub(crate) fn program_runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success())
}

pub(crate) fn open_mpi() -> bool {
    Command::new("mpirun")
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("Open MPI"))
}

/// Whether Slurm's daemons answer (`sinfo` within 5 s shows a usable node); the reason
/// otherwise. `SLURM_CONF` from the environment picks the cluster.
pub(crate) fn slurm_up() -> Result<(), String> {
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

pub(crate) fn unsafe_is_root() -> bool {
    // The effective uid, from /proc (no unsafe call): the line `Uid: real effective ...`.
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// The `conformance` test binary of this build: the newest `conformance-*` beside this one.
pub(crate) fn conformance_binary() -> Option<PathBuf> {
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

pub(crate) fn this_exe() -> PathBuf {
    std::env::current_exe().expect("the test binary's path")
}

// ------------------------------------------------------------------------------------------
// Running jobs

/// A launcher command with the place environment set and Atoll's own launcher variables
/// removed (this driver may itself run under `cargo test` in a job).
pub(crate) fn command(program: &str) -> Command {
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

pub(crate) fn mpirun(np: usize) -> Command {
    let mut c = command("mpirun");
    c.args(["--oversubscribe", "--allow-run-as-root", "-x", PLACE_VAR])
        .args(["-x", "ATOLL_CONFORMANCE_CASE", "-np", &np.to_string()]);
    c
}

pub(crate) fn run(command: Command) -> Result<support::JobOutput, Failed> {
    support::run_command(command, JOB_LIMIT).map_err(Failed::from)
}

/// [`run`], and how long the job ran.
pub(crate) fn run_timed(command: Command) -> Result<(support::JobOutput, Duration), Failed> {
    let started = Instant::now();
    let out = run(command)?;
    Ok((out, started.elapsed()))
}

/// The job succeeded and every place of `n` printed its success line.
pub(crate) fn expect_places_ok(
    out: &support::JobOutput,
    n: usize,
    bootstrap: &str,
) -> Result<(), Failed> {
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
pub(crate) fn expect_conformance_ok(out: &support::JobOutput, n: usize) -> Result<(), Failed> {
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
pub(crate) fn conformance_cases() -> usize {
    let source = include_str!("../conformance.rs");
    source
        .split_once("const CASES: &[&str] = &[")
        .and_then(|(_, rest)| rest.split_once("];"))
        .map_or(0, |(list, _)| list.matches('"').count() / 2)
}

/// The job failed, and its output says `what`.
pub(crate) fn expect_refused(out: &support::JobOutput, what: &str) -> Result<(), Failed> {
    if out.status.success() {
        return Err(format!("the job succeeded\n{}", out.describe()).into());
    }
    if !out.stderr.contains(what) && !out.stdout.contains(what) {
        return Err(format!("the output lacks {what:?}\n{}", out.describe()).into());
    }
    Ok(())
}
