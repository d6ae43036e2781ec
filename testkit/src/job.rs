//! Run this test binary as a job of several places through the local launcher, or any
//! command, bounded in time, with its output captured.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use wait_timeout::ChildExt;

/// What a finished job left behind.
#[derive(Debug)]
pub struct JobOutput {
    /// How the launcher exited.
    pub status: std::process::ExitStatus,
    /// Everything the job wrote to stdout (tagged `[place k]`).
    pub stdout: String,
    /// Everything the job wrote to stderr.
    pub stderr: String,
}

impl JobOutput {
    /// A description for a failed assertion.
    pub fn describe(&self) -> String {
        format!(
            "exit status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    /// How many of places `0..places` printed `CASE: ok` (tagged `[place k]` by the local
    /// launcher).
    pub(crate) fn reported(&self, case: &str, places: usize) -> usize {
        (0..places)
            .filter(|p| self.stdout.contains(&format!("[place {p}] {case}: ok")))
            .count()
    }

    /// The lines in which UCX reported an error or a warning (its log lines read
    /// `[time] [host:pid:thread] file.c:line UCX  ERROR ...`): a normal run has none.
    pub fn ucx_complaints(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .chain(self.stderr.lines())
            .filter(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                words.windows(3).any(|w| {
                    let source = w[0].rsplit_once(':').is_some_and(|(file, number)| {
                        file.contains('.') && number.bytes().all(|b| b.is_ascii_digit())
                    });
                    source && w[1] == "UCX" && matches!(w[2], "ERROR" | "WARN")
                })
            })
            .collect()
    }
}

/// Runs this test binary with `env` (it becomes the local launcher of `places` places), killing
/// it after `timeout`.
pub fn run_job(
    places: usize,
    env: &[(&str, String)],
    timeout: Duration,
) -> Result<JobOutput, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut command = Command::new(exe);
    command
        .env("ATOLL_PLACES", places.to_string())
        .env_remove("ATOLL_RANK")
        .env_remove("ATOLL_CHAOS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    run_command(command, timeout)
}

/// Runs `command` (its stdout and stderr captured here), killing it after `timeout`.
pub fn run_command(mut command: Command, timeout: Duration) -> Result<JobOutput, String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| format!("spawn: {e}"))?;
    let mut stdout_pipe = child.stdout.take().ok_or("no stdout pipe")?;
    let mut stderr_pipe = child.stderr.take().ok_or("no stderr pipe")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout_pipe.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });
    let status = match child
        .wait_timeout(timeout)
        .map_err(|e| format!("wait: {e}"))?
    {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = out_reader.join().unwrap_or_default();
            let stderr = err_reader.join().unwrap_or_default();
            return Err(format!(
                "job did not finish within {timeout:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
            ));
        }
    };
    Ok(JobOutput {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn ucx_complaints_are_its_error_and_warning_lines() {
        let out = JobOutput {
            status: std::process::ExitStatus::from_raw(0),
            stdout: "[place 0] ok\n".into(),
            stderr: "[place 1] [1795.7] [vm:9870 :0]  select.c:549  UCX  ERROR   no active \
                     messages transport\n[place 1] [1.2] [vm:1:0] parser.c:1916 UCX  INFO  \
                     UCX_* env variables\n[place 0] a UCX ERROR said in prose\n"
                .into(),
        };
        let complaints = out.ucx_complaints();
        assert_eq!(complaints.len(), 1, "{complaints:?}");
        assert!(complaints[0].contains("select.c:549"));
    }
}
