//! The local launcher over real processes.
//!
//! This binary is both sides. Run by `cargo test`, it is the driver: each trial starts this
//! same executable with `ATOLL_LAUNCH_CASE=<case>`, which makes it a program of Atoll: it
//! calls `Bootstrap::join_or_launch`, becomes the launcher, and re-executes itself as the
//! places, which run the case. The driver checks the launcher's exit status and output,
//! bounds every job in time, and checks that nothing of the job is left: no process, no
//! file in `/dev/shm`.

use std::error::Error as StdError;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use atoll_comm::bootstrap::Bootstrap;
use atoll_comm::config::{self, Config};
use atoll_comm::{Error, Place};
use libtest_mimic::{Arguments, Failed, Trial};
use wait_timeout::ChildExt;

/// Names the case this process runs as an Atoll program; unset in the driver.
const CASE: &str = "ATOLL_LAUNCH_CASE";
/// No job of these tests takes nearly this long; past it the launcher is killed.
const JOB_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a place that should be ended by the launcher waits for that to happen.
const LINGER: Duration = Duration::from_secs(120);

type BoxResult<T> = Result<T, Box<dyn StdError>>;

fn main() -> ExitCode {
    if let Ok(case) = std::env::var(CASE) {
        return match program::run(&case) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("case {case} failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut trials: Vec<Trial> = [2, 3, 8]
        .into_iter()
        .map(|n| Trial::test(format!("allgather_{n}_places"), move || allgather(n)))
        .collect();
    trials.extend([
        Trial::test(
            "exit_status_is_reported_and_others_ended",
            exit_status_is_reported,
        ),
        Trial::test("sigkill_is_reported", sigkill_is_reported),
        Trial::test(
            "shm_segments_are_removed_after_a_crash",
            shm_segments_are_removed,
        ),
        Trial::test(
            "connect_timeout_names_the_place",
            connect_timeout_names_the_place,
        ),
        Trial::test(
            "continue_lets_survivors_see_the_failure",
            continue_after_failure,
        ),
        Trial::test("untagged_output", untagged_output),
        Trial::test(
            "sigterm_to_the_launcher_ends_every_place",
            sigterm_ends_every_place,
        ),
    ]);
    libtest_mimic::run(&Arguments::from_args(), trials).exit_code()
}

/// The place side: what each case does once it is a place.
mod program {
    use super::*;

    pub(super) fn run(case: &str) -> BoxResult<ExitCode> {
        let rank = std::env::var(config::RANK).ok();
        if case == "connect_timeout" && rank.as_deref() == Some("1") {
            // Reach the bootstrap far too late.
            thread::sleep(LINGER);
        }
        // In the launcher, this never returns.
        let boot = Bootstrap::join_or_launch(&Config::from_env()?)?;
        let rank = boot.rank();
        if rank == 0 {
            println!("job {}", boot.job_id());
        }
        match case {
            "allgather" => allgather(&boot)?,
            "exit_status" => {
                boot.barrier()?;
                if rank == 1 {
                    return Ok(ExitCode::from(3));
                }
                linger();
            }
            "sigkill" => {
                boot.barrier()?;
                if rank == 1 {
                    die();
                }
                linger();
            }
            "shm_cleanup" => {
                if rank == 0 {
                    // The name scheme of `shm::segment_names`: /dev/shm/atoll-<job>-<what>.
                    std::fs::File::create(format!("/dev/shm/atoll-{}-probe", boot.job_id()))?;
                }
                boot.barrier()?;
                if rank == 0 {
                    die();
                }
                linger();
            }
            "connect_timeout" => boot.barrier()?,
            "continue" => {
                boot.barrier()?;
                if rank == 1 {
                    die();
                }
                see_place_1_fail(&boot)?;
                println!("place {rank} saw place 1 fail");
            }
            "untagged" => {
                println!("untagged line from {rank}");
                boot.barrier()?;
            }
            "sigterm" => {
                boot.barrier()?;
                if rank == 0 {
                    println!("ready");
                }
                linger();
            }
            other => return Err(format!("unknown case {other}").into()),
        }
        Ok(ExitCode::SUCCESS)
    }

    fn allgather(boot: &Bootstrap) -> BoxResult<()> {
        let (rank, size) = (boot.rank(), boot.size());
        let blob = |r: usize| format!("blob of place {r};").repeat(r + 1).into_bytes();
        let blobs = boot.allgather(&blob(rank))?;
        if blobs.len() != size || (0..size).any(|r| blobs[r] != blob(r)) {
            return Err(format!("place {rank} gathered wrong blobs: {blobs:?}").into());
        }
        // A large blob from place 0, empty ones from the others.
        let big = |r: usize| {
            if r == 0 {
                (0..1 << 20).map(|i| i as u8).collect()
            } else {
                Vec::new()
            }
        };
        let blobs = boot.allgather(&big(rank))?;
        if (0..size).any(|r| blobs[r] != big(r)) {
            return Err(format!("place {rank} gathered wrong large blobs").into());
        }
        boot.barrier()?;
        println!("place {rank} gathered {size} blobs");
        eprintln!("stderr line of place {rank}");
        if rank == 0 {
            print!("no newline at the end");
        }
        Ok(())
    }

    /// The next all-gather fails on place 1, and the launcher reports it dead.
    fn see_place_1_fail(boot: &Bootstrap) -> BoxResult<()> {
        let dead = Place::new(1);
        match boot.barrier() {
            Err(Error::PlaceFailed(place)) if place == dead => {}
            other => return Err(format!("a barrier without place 1 returned {other:?}").into()),
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while !boot.failed_places().contains(&dead) {
            if Instant::now() > deadline {
                return Err("the launcher never reported place 1 dead".into());
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Waits to be ended by the launcher.
    fn linger() {
        thread::sleep(LINGER);
    }

    fn die() -> ! {
        // SAFETY: `raise` has no memory-safety obligations; SIGKILL ends the process here.
        unsafe { libc::raise(libc::SIGKILL) };
        unreachable!("SIGKILL returned");
    }
}

/// A job started by the driver: the launcher process, and its output as it comes.
struct Job {
    launcher: Child,
    started: Instant,
    stdout_lines: Receiver<String>,
    stdout: Vec<String>,
    stderr: JoinHandle<String>,
}

/// A finished job.
struct Finished {
    status: ExitStatus,
    elapsed: Duration,
    stdout: Vec<String>,
    stderr: String,
    job_id: String,
}

impl Job {
    fn start(case: &str, places: usize, env: &[(&str, &str)]) -> BoxResult<Job> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .env(CASE, case)
            .env(config::PLACES, places.to_string());
        for var in [
            config::RANK,
            config::JOB_ID,
            config::LAUNCHER_SOCKET,
            config::JOB_SECRET,
            config::TAG_OUTPUT,
            config::ON_PLACE_FAILURE,
            config::CONNECT_TIMEOUT_S,
        ] {
            command.env_remove(var);
        }
        command.envs(env.iter().copied());
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut launcher = command.spawn()?;
        let stdout = launcher.stdout.take().ok_or("no stdout pipe")?;
        let mut stderr = launcher.stderr.take().ok_or("no stderr pipe")?;
        let (tx, stdout_lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            // A read error only shortens what the assertions see.
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Ok(Job {
            launcher,
            started,
            stdout_lines,
            stdout: Vec::new(),
            stderr,
        })
    }

    /// Waits until the launcher prints `line` on stdout.
    fn wait_for_line(&mut self, line: &str) -> Result<(), Failed> {
        let deadline = self.started + JOB_TIMEOUT;
        while !self.stdout.iter().any(|l| l == line) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout_lines.recv_timeout(left) {
                Ok(l) => self.stdout.push(l),
                Err(_) => return Err(format!("no line {line:?} in {:?}", self.stdout).into()),
            }
        }
        Ok(())
    }

    fn pid(&self) -> libc::pid_t {
        self.launcher.id() as libc::pid_t
    }

    /// Waits for the launcher (killing it after [`JOB_TIMEOUT`]) and checks that the job
    /// left nothing behind.
    fn finish(mut self) -> Result<Finished, Failed> {
        let left = JOB_TIMEOUT.saturating_sub(self.started.elapsed());
        let status = match self
            .launcher
            .wait_timeout(left)
            .map_err(|e| e.to_string())?
        {
            Some(status) => Some(status),
            None => {
                // The places die with the launcher (PR_SET_PDEATHSIG).
                self.launcher.kill().map_err(|e| e.to_string())?;
                self.launcher.wait().map_err(|e| e.to_string())?;
                None
            }
        };
        let elapsed = self.started.elapsed();
        // Every writer of the pipes is gone once the launcher is: it reaps every place.
        self.stdout.extend(self.stdout_lines.iter());
        let stderr = self
            .stderr
            .join()
            .map_err(|_| "the stderr reader panicked")?;
        let Some(status) = status else {
            return Err(format!(
                "the job did not end within {JOB_TIMEOUT:?}\nstdout: {:#?}\nstderr: {stderr}",
                self.stdout
            )
            .into());
        };
        let job_id = self
            .stdout
            .iter()
            .find_map(|l| {
                l.strip_prefix("[place 0] job ")
                    .or_else(|| l.strip_prefix("job "))
            })
            .ok_or_else(|| format!("no job id in stdout {:#?}\nstderr: {stderr}", self.stdout))?
            .to_owned();
        let finished = Finished {
            status,
            elapsed,
            stdout: self.stdout,
            stderr,
            job_id,
        };
        finished.check_no_leftovers()?;
        Ok(finished)
    }
}

impl Finished {
    fn check(&self, ok: bool, what: &str) -> Result<(), Failed> {
        if ok {
            return Ok(());
        }
        Err(format!(
            "{what}\nstatus: {:?}, after {:?}\nstdout: {:#?}\nstderr:\n{}",
            self.status, self.elapsed, self.stdout, self.stderr
        )
        .into())
    }

    fn has_stdout(&self, line: &str) -> bool {
        self.stdout.iter().any(|l| l == line)
    }

    /// No file of the job in /dev/shm, no process with the job's id in its environment.
    fn check_no_leftovers(&self) -> Result<(), Failed> {
        let prefix = format!("atoll-{}-", self.job_id);
        let files: Vec<String> = std::fs::read_dir("/dev/shm")
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(&prefix))
            .collect();
        self.check(files.is_empty(), &format!("left in /dev/shm: {files:?}"))?;

        let marker = format!("{}={}\0", config::JOB_ID, self.job_id);
        let processes: Vec<String> = std::fs::read_dir("/proc")
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .filter(|e| {
                std::fs::read(e.path().join("environ"))
                    .is_ok_and(|env| env.windows(marker.len()).any(|w| w == marker.as_bytes()))
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        self.check(
            processes.is_empty(),
            &format!("processes of the job left: {processes:?}"),
        )
    }
}

fn run(case: &str, places: usize, env: &[(&str, &str)]) -> Result<Finished, Failed> {
    Job::start(case, places, env)
        .map_err(|e| e.to_string())?
        .finish()
}

fn allgather(places: usize) -> Result<(), Failed> {
    let job = run("allgather", places, &[])?;
    job.check(job.status.success(), "the job failed")?;
    for rank in 0..places {
        let line = format!("[place {rank}] place {rank} gathered {places} blobs");
        job.check(job.has_stdout(&line), &format!("no line {line:?}"))?;
        let line = format!("[place {rank}] stderr line of place {rank}");
        job.check(
            job.stderr.lines().any(|l| l == line),
            &format!("no line {line:?} on stderr"),
        )?;
    }
    job.check(
        job.has_stdout("[place 0] no newline at the end"),
        "the last line without newline was lost",
    )?;
    job.check(
        job.stdout.iter().all(|l| l.starts_with("[place ")),
        "an untagged line on stdout",
    )?;
    job.check(
        !job.stderr.contains("atoll:"),
        "the launcher reported a problem",
    )
}

fn exit_status_is_reported() -> Result<(), Failed> {
    let job = run("exit_status", 3, &[])?;
    job.check(
        job.status.code() == Some(3),
        "the job's status is not place 1's",
    )?;
    job.check(
        job.stderr.contains("atoll: place 1 exited with status 3"),
        "place 1's status was not reported",
    )?;
    for rank in [0, 2] {
        let line =
            format!("atoll: place {rank} was ended by the launcher with signal 15 (SIGTERM)");
        job.check(
            job.stderr.contains(&line),
            &format!("place {rank} was not ended"),
        )?;
    }
    job.check(
        job.elapsed < LINGER / 4,
        "the other places were not ended promptly",
    )
}

fn sigkill_is_reported() -> Result<(), Failed> {
    let job = run("sigkill", 2, &[])?;
    job.check(
        job.status.code() == Some(128 + 9),
        "the job's status is not 128 + SIGKILL",
    )?;
    job.check(
        job.stderr
            .contains("atoll: place 1 was killed by signal 9 (SIGKILL)"),
        "place 1's death was not reported",
    )
}

fn shm_segments_are_removed() -> Result<(), Failed> {
    // `finish` checks that /dev/shm holds nothing of the job.
    let job = run("shm_cleanup", 2, &[])?;
    job.check(
        job.stderr
            .contains("atoll: place 0 was killed by signal 9 (SIGKILL)"),
        "place 0 did not die after creating its segment",
    )
}

fn connect_timeout_names_the_place() -> Result<(), Failed> {
    let job = run("connect_timeout", 2, &[(config::CONNECT_TIMEOUT_S, "2")])?;
    job.check(!job.status.success(), "the job succeeded")?;
    job.check(
        job.stderr
            .contains("atoll: place 1 did not reach the bootstrap within 2 s"),
        "place 1 was not named",
    )?;
    job.check(
        !job.stderr.contains("place 0 did not reach"),
        "place 0 was named",
    )?;
    job.check(
        job.elapsed < Duration::from_secs(20),
        "the timeout took too long",
    )
}

fn continue_after_failure() -> Result<(), Failed> {
    let job = run("continue", 3, &[(config::ON_PLACE_FAILURE, "continue")])?;
    job.check(
        job.status.code() == Some(128 + 9),
        "the job's status is not place 1's",
    )?;
    job.check(
        job.stderr
            .contains("atoll: place 1 was killed by signal 9 (SIGKILL)"),
        "place 1's death was not reported",
    )?;
    for rank in [0, 2] {
        let line = format!("[place {rank}] place {rank} saw place 1 fail");
        job.check(job.has_stdout(&line), &format!("no line {line:?}"))?;
        let report = format!("place {rank} ");
        job.check(
            !job.stderr
                .lines()
                .any(|l| l.starts_with("atoll:") && l.contains(&report)),
            &format!("place {rank} did not exit cleanly"),
        )?;
    }
    Ok(())
}

fn untagged_output() -> Result<(), Failed> {
    let job = run("untagged", 2, &[(config::TAG_OUTPUT, "0")])?;
    job.check(job.status.success(), "the job failed")?;
    for rank in 0..2 {
        let line = format!("untagged line from {rank}");
        job.check(job.has_stdout(&line), &format!("no line {line:?}"))?;
    }
    job.check(
        !job.stdout.iter().any(|l| l.starts_with("[place")),
        "a tagged line",
    )
}

fn sigterm_ends_every_place() -> Result<(), Failed> {
    let mut job = Job::start("sigterm", 3, &[]).map_err(|e| e.to_string())?;
    job.wait_for_line("[place 0] ready")?;
    // SAFETY: `kill` has no memory-safety obligations; the pid is our unreaped child's.
    if unsafe { libc::kill(job.pid(), libc::SIGTERM) } != 0 {
        return Err(std::io::Error::last_os_error().to_string().into());
    }
    let job = job.finish()?;
    job.check(
        job.status.code() == Some(128 + 15),
        "the job's status is not 128 + SIGTERM",
    )?;
    job.check(
        job.stderr
            .contains("atoll: received signal 15 (SIGTERM): ending every place"),
        "the signal was not reported",
    )?;
    job.check(
        job.elapsed < LINGER / 4,
        "the places were not ended promptly",
    )
}
