//! How places ended, in the words the launcher reports to the user, and the job's exit status.

use std::fmt;
use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// The exit status the launcher uses for failures it detects itself (a place that never
/// reached the bootstrap, a place running another binary).
pub(crate) const LAUNCHER_FAILURE: i32 = 1;

/// Writes one of the launcher's report lines to stderr, as `atoll: <line>`.
pub(crate) fn report(line: impl fmt::Display) {
    // A launcher whose stderr is gone has nowhere left to report to; its exit status still
    // tells the job's outcome.
    let _ = writeln!(io::stderr().lock(), "atoll: {line}");
}

/// How one place's process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Exit status 0.
    Success,
    /// A non-zero exit status.
    Exited(i32),
    /// Killed by a signal.
    Signaled { signal: i32, core_dumped: bool },
}

impl Outcome {
    pub(crate) fn of(status: ExitStatus) -> Outcome {
        match (status.code(), status.signal()) {
            (Some(0), _) => Outcome::Success,
            (Some(code), _) => Outcome::Exited(code),
            (None, Some(signal)) => Outcome::Signaled {
                signal,
                core_dumped: status.core_dumped(),
            },
            // Neither exited nor signaled: `wait` reports only terminated children.
            (None, None) => Outcome::Exited(LAUNCHER_FAILURE),
        }
    }

    pub(crate) fn is_failure(self) -> bool {
        self != Outcome::Success
    }

    /// The status the job exits with when this is its first failure: the place's own exit
    /// status, or 128 + the signal, as shells report it.
    pub(crate) fn job_status(self) -> i32 {
        match self {
            Outcome::Success => 0,
            Outcome::Exited(code) => code,
            Outcome::Signaled { signal, .. } => 128 + signal,
        }
    }
}

/// The user-facing line for a place that ended with `outcome` (without the `atoll: ` prefix).
pub(crate) fn describe(rank: usize, outcome: Outcome) -> String {
    match outcome {
        Outcome::Success => format!("place {rank} exited with status 0"),
        Outcome::Exited(code) => format!("place {rank} exited with status {code}"),
        Outcome::Signaled {
            signal,
            core_dumped,
        } => format!(
            "place {rank} was killed by signal {}{}",
            Signal(signal),
            if core_dumped { " (core dumped)" } else { "" }
        ),
    }
}

/// A signal number, shown as `9 (SIGKILL)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Signal(pub(crate) i32);

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match signal_name(self.0) {
            Some(name) => write!(f, "{} ({name})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_described() {
        let exited = Outcome::of(ExitStatus::from_raw(3 << 8));
        assert_eq!(exited, Outcome::Exited(3));
        assert_eq!(describe(2, exited), "place 2 exited with status 3");
        assert_eq!(exited.job_status(), 3);

        let killed = Outcome::of(ExitStatus::from_raw(libc::SIGKILL));
        assert_eq!(
            describe(1, killed),
            "place 1 was killed by signal 9 (SIGKILL)"
        );
        assert_eq!(killed.job_status(), 137);

        let dumped = Outcome::of(ExitStatus::from_raw(libc::SIGSEGV | 0x80));
        assert_eq!(
            describe(0, dumped),
            "place 0 was killed by signal 11 (SIGSEGV) (core dumped)"
        );

        assert!(!Outcome::of(ExitStatus::from_raw(0)).is_failure());
        assert_eq!(Signal(64).to_string(), "64");
    }
}
