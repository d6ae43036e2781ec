//! Starting, signalling and reaping the places' processes.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};

use super::report::Outcome;
use crate::config;

/// What every place of a job is told through its environment.
#[derive(Debug)]
pub(crate) struct JobEnv {
    pub(crate) places: usize,
    pub(crate) job_id: String,
    pub(crate) socket: String,
    pub(crate) secret_hex: String,
}

/// One place's process, owned by the launcher's loop: only that loop reaps it, so its pid
/// names this process (or its zombie) for as long as `outcome` is `None`.
#[derive(Debug)]
pub(crate) struct PlaceProcess {
    pub(crate) rank: usize,
    child: Child,
    /// How it ended, once reaped.
    pub(crate) outcome: Option<Outcome>,
}

impl PlaceProcess {
    /// Starts place `rank`: this very executable (`/proc/self/exe`, immune to the file being
    /// replaced on disk meanwhile) with the same arguments and environment, plus the job's
    /// variables. With `piped_output`, its stdout and stderr are pipes for the caller to take.
    pub(crate) fn spawn(rank: usize, env: &JobEnv, piped_output: bool) -> io::Result<PlaceProcess> {
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_else(|| OsString::from("atoll-place"));
        let mut command = Command::new("/proc/self/exe");
        command
            .arg0(arg0)
            .args(args)
            .env(config::RANK, rank.to_string())
            .env(config::PLACES, env.places.to_string())
            .env(config::JOB_ID, &env.job_id)
            .env(config::LAUNCHER_SOCKET, &env.socket)
            .env(config::JOB_SECRET, &env.secret_hex);
        if piped_output {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let launcher = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs in the forked child before `exec`, where only
        // async-signal-safe work is allowed. It makes two raw system calls, `prctl` and
        // `getppid` (both async-signal-safe: no locks, no allocation), and builds an
        // `io::Error` from errno, which stores the code inline without allocating. It touches
        // no memory of the parent but the copied `pid_t`.
        unsafe {
            command.pre_exec(move || {
                // The kernel kills this place when the launcher's thread that forked it exits
                // (the launcher never returns from that thread), so no place outlives it.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                    return Err(io::Error::last_os_error());
                }
                // The launcher may have died between fork and prctl: then nothing would send
                // the signal, so give up now (the fork fails with ESRCH).
                if libc::getppid() != launcher {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        Ok(PlaceProcess {
            rank,
            child,
            outcome: None,
        })
    }

    /// The pipes of a place started with `piped_output` (once; `None` afterwards).
    pub(crate) fn take_output(&mut self) -> (Option<ChildStdout>, Option<ChildStderr>) {
        (self.child.stdout.take(), self.child.stderr.take())
    }

    pub(crate) fn is_running(&self) -> bool {
        self.outcome.is_none()
    }

    /// Reaps the process if it has ended; returns its outcome the first time only.
    pub(crate) fn try_reap(&mut self) -> Option<Outcome> {
        if self.outcome.is_some() {
            return None;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.outcome = Some(Outcome::of(status));
                self.outcome
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("waiting for place {} failed: {e}", self.rank);
                None
            }
        }
    }

    /// Sends `signal` unless the process has been reaped.
    pub(crate) fn signal(&self, signal: libc::c_int) {
        if !self.is_running() {
            return;
        }
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: `kill` has no memory-safety obligations. The pid is this launcher's
        // unreaped child (only `try_reap`, on this same thread, reaps it, and `outcome` is
        // still `None`), so it cannot have been recycled for another process.
        if unsafe { libc::kill(pid, signal) } == -1 {
            tracing::debug!(
                "signal {signal} to place {}: {}",
                self.rank,
                io::Error::last_os_error()
            );
        }
    }

    /// Kills the process and waits for it.
    pub(crate) fn kill_and_reap(&mut self) {
        if self.is_running() {
            match self.child.kill().and_then(|()| self.child.wait()) {
                Ok(status) => self.outcome = Some(Outcome::of(status)),
                Err(e) => tracing::warn!("ending place {} failed: {e}", self.rank),
            }
        }
    }
}
