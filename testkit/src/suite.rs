//! The driver's side: a test binary's cases as libtest-mimic trials, each one a job of the
//! binary itself (its place program) through the local launcher.

use std::process::ExitCode;
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};

use crate::job::{run_job, JobOutput};

/// How long a job in which places die may take.
const FAILURE_TIMEOUT: Duration = Duration::from_secs(60);

/// Which places of a job print `CASE: ok`.
#[derive(Clone, Copy, Debug)]
enum Reporting {
    /// Place 0 alone (a runtime program: its main runs there).
    PlaceZero,
    /// Every place (a program on the comm layer, which every place runs).
    EveryPlace,
}

/// What the jobs of a test binary share: the variable that names the case its place program
/// runs, the chaos seed, the time limit and which places print `CASE: ok`.
///
/// Built in a `const`, for example `Suite::runtime("ATOLL_RT_CASE").chaos_seed("11")`.
#[derive(Clone, Copy, Debug)]
pub struct Suite {
    case_var: &'static str,
    chaos_seed: &'static str,
    timeout: Duration,
    reporting: Reporting,
}

impl Suite {
    /// A suite whose place program runs under Atoll's runtime, the case named in the
    /// environment variable `case_var`: its main runs at place 0, which alone must print
    /// `CASE: ok`. A job may take 120 s; chaos jobs set `ATOLL_CHAOS=1` unless
    /// [`Suite::chaos_seed`] says otherwise.
    pub const fn runtime(case_var: &'static str) -> Suite {
        Suite {
            case_var,
            chaos_seed: "1",
            timeout: Duration::from_secs(120),
            reporting: Reporting::PlaceZero,
        }
    }

    /// A suite whose place program every place runs alike (on the comm layer), the case named
    /// in the environment variable `case_var`: every place must print `CASE: ok`. A job may
    /// take 180 s; chaos jobs set `ATOLL_CHAOS=1` unless [`Suite::chaos_seed`] says otherwise.
    pub const fn spmd(case_var: &'static str) -> Suite {
        Suite {
            timeout: Duration::from_secs(180),
            reporting: Reporting::EveryPlace,
            ..Suite::runtime(case_var)
        }
    }

    /// Chaos jobs set `ATOLL_CHAOS` to `seed`.
    pub const fn chaos_seed(self, seed: &'static str) -> Suite {
        Suite {
            chaos_seed: seed,
            ..self
        }
    }

    /// The test binary's `main`. With the case variable set, this process is a place: it
    /// runs `place` with the case's name and exits with its status. Otherwise it is the
    /// driver: it runs the `trials` (one at a time unless `--test-threads` says otherwise, as
    /// each job already oversubscribes the machine).
    pub fn main(
        self,
        place: impl FnOnce(String) -> ExitCode,
        trials: impl FnOnce() -> Vec<Trial>,
    ) -> ExitCode {
        if let Ok(case) = std::env::var(self.case_var) {
            return place(case);
        }
        let mut args = Arguments::from_args();
        if args.test_threads.is_none() {
            args.test_threads = Some(1);
        }
        libtest_mimic::run(&args, trials()).exit_code()
    }

    /// The trial `np{places}::{case}` (`np{places}::chaos::{case}` with `chaos`, which sets
    /// `ATOLL_CHAOS` to the suite's seed): `case` as a job of `places` places, which must
    /// succeed with `CASE: ok` from the places that report, and without an error or warning
    /// line of UCX (under `ATOLL_PROVIDER=ucx`; [`JobOutput::ucx_complaints`]).
    pub fn trial(self, case: &'static str, places: usize, chaos: bool) -> Trial {
        if chaos {
            let env = vec![("ATOLL_CHAOS", self.chaos_seed.to_string())];
            self.job_trial(format!("np{places}::chaos::{case}"), case, places, env)
        } else {
            self.job_trial(format!("np{places}::{case}"), case, places, Vec::new())
        }
    }

    /// The trial `np{places}::{label}::{case}`: as [`Suite::trial`], with the variables of
    /// `env` set in the job.
    pub fn trial_with(
        self,
        label: &str,
        case: &'static str,
        places: usize,
        env: &[(&'static str, &str)],
    ) -> Trial {
        let env = env.iter().map(|&(k, v)| (k, v.to_string())).collect();
        self.job_trial(format!("np{places}::{label}::{case}"), case, places, env)
    }

    /// The trial `np{places}::{case}` of a case in which places die: the job runs with
    /// `ATOLL_ON_PLACE_FAILURE=continue` for at most 60 s. It passes when the job fails,
    /// places `0..reporting` print `CASE: ok`, and its stderr contains each of `reports`.
    pub fn failure_trial(
        self,
        case: &'static str,
        places: usize,
        reporting: usize,
        reports: &'static [&'static str],
    ) -> Trial {
        Trial::test(format!("np{places}::{case}"), move || {
            let env = vec![("ATOLL_ON_PLACE_FAILURE", "continue".to_string())];
            let out = self.job(case, places, env, FAILURE_TIMEOUT)?;
            let reported = out.reported(case, reporting);
            let named = reports.iter().all(|r| out.stderr.contains(r));
            if out.status.success() || reported != reporting || !named {
                let named = match reports {
                    [] => String::new(),
                    _ => format!(" and its stderr to contain {reports:?}"),
                };
                return Err(format!(
                    "expected the job to fail and {reporting} place(s) to print `{case}: ok` \
                     ({reported} did){named}\n{}",
                    out.describe()
                )
                .into());
            }
            Ok(())
        })
    }

    /// A trial named `name` that runs `case` with `env` and checks its places' reports and
    /// that UCX complained of nothing.
    fn job_trial(
        self,
        name: String,
        case: &'static str,
        places: usize,
        env: Vec<(&'static str, String)>,
    ) -> Trial {
        Trial::test(name, move || {
            let out = self.job(case, places, env, self.timeout)?;
            let reporting = match self.reporting {
                Reporting::PlaceZero => 1,
                Reporting::EveryPlace => places,
            };
            let reported = out.reported(case, reporting);
            if !out.status.success() || reported != reporting {
                return Err(format!(
                    "job failed: {reported} of {reporting} place(s) printed `{case}: ok`\n{}",
                    out.describe()
                )
                .into());
            }
            let complaints = out.ucx_complaints();
            if !complaints.is_empty() {
                return Err(format!(
                    "UCX reported errors in a run without any:\n{}\n{}",
                    complaints.join("\n"),
                    out.describe()
                )
                .into());
            }
            Ok(())
        })
    }

    /// Runs `case` as a job of `places` places with `env` set too, killed after `timeout`.
    fn job(
        self,
        case: &str,
        places: usize,
        mut env: Vec<(&'static str, String)>,
        timeout: Duration,
    ) -> Result<JobOutput, Failed> {
        env.insert(0, (self.case_var, case.to_string()));
        Ok(run_job(places, &env, timeout)?)
    }
}
