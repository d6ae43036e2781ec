//! The launcher's event loop: places, their output, the bootstrap server and signals, all
//! driven by one `poll(2)` on the launcher's thread.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;

use super::ident::{self, JobSecret};
use super::output::{OutputPipe, Stream};
use super::poll::{Interest, PollSet};
use super::process::{JobEnv, PlaceProcess};
use super::report::{describe, report, Outcome, Signal, LAUNCHER_FAILURE};
use super::server::{ConnId, Notice, Server};
use crate::config::{Config, OnPlaceFailure};
use crate::shm::segment_names::remove_job_segments;
use crate::{Error, Result};

/// How long places get to exit after SIGTERM before they get SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long the launcher keeps forwarding output once every place is reaped (a process the
/// places started may still hold their pipes).
const DRAIN_LIMIT: Duration = Duration::from_millis(500);
/// The signals the launcher handles; every other keeps its default action.
const SIGNALS: [libc::c_int; 4] = [libc::SIGCHLD, libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// What a ready descriptor of the loop belongs to.
#[derive(Clone, Copy, Debug)]
enum Token {
    Signals,
    Listener,
    Conn(ConnId),
    Output(usize),
}

/// How far the launcher is in ending the job.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// Every place got SIGTERM; SIGKILL follows at this instant.
    Terminating { kill_at: Instant },
    /// Every place got SIGKILL.
    Killing,
}

/// A running job, seen from its launcher.
#[derive(Debug)]
pub(super) struct Job {
    job_id: String,
    on_failure: OnPlaceFailure,
    connect_timeout_s: u64,
    places: Vec<PlaceProcess>,
    /// Each place's stdout and stderr while open (none when output is not tagged).
    outputs: Vec<Option<OutputPipe>>,
    server: Server,
    signals: SignalDelivery<UnixStream, SignalOnly>,
    /// Until every running place has joined the bootstrap.
    connect_deadline: Option<Instant>,
    ending: Option<Ending>,
    /// A place may have exited: set by SIGCHLD (and at start, for places that ended before
    /// the handler was installed).
    reap_pending: bool,
    /// The launcher got SIGINT, SIGTERM or SIGHUP (a second one kills at once).
    interrupted: bool,
    /// The job's exit status, set by its first failure.
    status: Option<i32>,
}

impl Job {
    /// Starts every place. On error, no place is left running.
    pub(super) fn start(config: &Config) -> Result<Job> {
        let job_id = ident::new_job_id()?;
        let secret = JobSecret::random()?;
        let server = Server::bind(&job_id, config.places, secret.clone(), ident::build_id()?)?;
        let env = JobEnv {
            places: config.places,
            job_id: job_id.clone(),
            socket: server.address().to_owned(),
            secret_hex: secret.to_hex(),
        };
        tracing::debug!(job = %job_id, places = config.places, "starting the job");
        let mut places = Vec::with_capacity(config.places);
        for rank in 0..config.places {
            match PlaceProcess::spawn(rank, &env, config.tag_output) {
                Ok(place) => places.push(place),
                Err(e) => {
                    abort(&mut places, &job_id);
                    return Err(Error::io(
                        format!("starting place {rank} of {}", config.places),
                        e,
                    ));
                }
            }
        }
        // Installed only now, so that a failed start leaves the program's signal dispositions
        // as they were. A place that ended before is reaped by the loop's first pass.
        let signals = UnixStream::pair()
            .and_then(|(read, write)| SignalDelivery::with_pipe(read, write, SignalOnly, SIGNALS));
        let signals = match signals {
            Ok(signals) => signals,
            Err(e) => {
                abort(&mut places, &job_id);
                return Err(Error::io("installing the launcher's signal handlers", e));
            }
        };
        let outputs = places
            .iter_mut()
            .flat_map(|place| {
                let rank = place.rank;
                let (stdout, stderr) = place.take_output();
                [
                    stdout.map(|pipe| OutputPipe::new(rank, pipe, Stream::Stdout)),
                    stderr.map(|pipe| OutputPipe::new(rank, pipe, Stream::Stderr)),
                ]
            })
            .filter(Option::is_some)
            .collect();
        Ok(Job {
            job_id,
            on_failure: config.on_place_failure,
            connect_timeout_s: config.connect_timeout_s,
            places,
            outputs,
            server,
            signals,
            connect_deadline: Some(Instant::now() + Duration::from_secs(config.connect_timeout_s)),
            ending: None,
            reap_pending: true,
            interrupted: false,
            status: None,
        })
    }

    /// Runs the job until every place is reaped; returns the job's exit status.
    pub(super) fn run(mut self) -> i32 {
        let mut set = PollSet::new();
        let mut buf = vec![0; 64 << 10];
        loop {
            if std::mem::take(&mut self.reap_pending) {
                self.reap();
            }
            if self.places.iter().all(|p| !p.is_running()) {
                break;
            }
            let now = Instant::now();
            self.check_deadlines(now);

            set.clear();
            set.add(self.signals.get_read(), Token::Signals, Interest::Read);
            self.server.register(&mut set, Token::Listener, Token::Conn);
            for (i, output) in self.outputs.iter().enumerate() {
                if let Some(output) = output {
                    set.add(output, Token::Output(i), Interest::Read);
                }
            }
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(now));
            if let Err(e) = set.wait(timeout) {
                report(format_args!(
                    "waiting for the places failed: {e}; killing every place"
                ));
                self.fail(LAUNCHER_FAILURE);
                self.places.iter_mut().for_each(PlaceProcess::kill_and_reap);
                break;
            }
            for (token, ready) in set.ready() {
                match token {
                    Token::Signals => self.on_signals(),
                    Token::Listener => self.server.accept(),
                    Token::Conn(id) => self.server.on_ready(id, ready),
                    Token::Output(i) => self.forward(i, &mut buf),
                }
            }
            self.server.sweep();
            for notice in self.server.take_notices() {
                self.on_notice(notice);
            }
        }
        self.drain_outputs(&mut buf);
        self.finish()
    }

    fn reap(&mut self) {
        for i in 0..self.places.len() {
            if let Some(outcome) = self.places[i].try_reap() {
                self.on_exit(self.places[i].rank, outcome);
            }
        }
    }

    fn on_exit(&mut self, rank: usize, outcome: Outcome) {
        tracing::debug!(rank, ?outcome, "place reaped");
        if !outcome.is_failure() {
            self.server.place_gone(rank);
            return;
        }
        self.server.place_died(rank);
        match (self.ending, outcome) {
            (Some(_), Outcome::Signaled { signal, .. })
                if signal == libc::SIGTERM || signal == libc::SIGKILL =>
            {
                report(format_args!(
                    "place {rank} was ended by the launcher with signal {}",
                    Signal(signal)
                ));
            }
            _ => {
                report(describe(rank, outcome));
                self.fail(outcome.job_status());
                if self.on_failure == OnPlaceFailure::Kill {
                    self.end_job();
                }
            }
        }
    }

    fn on_signals(&mut self) {
        let signals: Vec<libc::c_int> = self.signals.pending().collect();
        for signal in signals {
            if signal == libc::SIGCHLD {
                // Reaped at the top of the loop.
                self.reap_pending = true;
            } else if self.interrupted {
                report(format_args!(
                    "received signal {} again: killing every place",
                    Signal(signal)
                ));
                self.kill_all();
            } else {
                report(format_args!(
                    "received signal {}: ending every place",
                    Signal(signal)
                ));
                self.interrupted = true;
                self.fail(128 + signal);
                self.end_job();
            }
        }
    }

    fn on_notice(&mut self, notice: Notice) {
        match notice {
            Notice::WrongBinary { rank } => {
                report(format_args!("place {rank} runs a different binary"))
            }
            Notice::Dropped { reason } => report(format_args!(
                "warning: dropped a bootstrap connection: {reason}"
            )),
        }
    }

    fn check_deadlines(&mut self, now: Instant) {
        if let Some(deadline) = self.connect_deadline {
            let missing: Vec<usize> = self
                .places
                .iter()
                .filter(|p| p.is_running() && !self.server.has_joined(p.rank))
                .map(|p| p.rank)
                .collect();
            if missing.is_empty() || self.ending.is_some() {
                self.connect_deadline = None;
            } else if now >= deadline {
                for rank in missing {
                    report(format_args!(
                        "place {rank} did not reach the bootstrap within {} s",
                        self.connect_timeout_s
                    ));
                }
                self.connect_deadline = None;
                self.fail(LAUNCHER_FAILURE);
                self.end_job();
            }
        }
        if let Some(Ending::Terminating { kill_at }) = self.ending {
            if now >= kill_at {
                self.kill_all();
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let kill_at = match self.ending {
            Some(Ending::Terminating { kill_at }) => Some(kill_at),
            _ => None,
        };
        [self.connect_deadline, kill_at].into_iter().flatten().min()
    }

    /// Records the job's status, unless an earlier failure did.
    fn fail(&mut self, status: i32) {
        self.status.get_or_insert(status);
    }

    /// Sends SIGTERM to every running place, and SIGKILL after [`TERM_GRACE`].
    fn end_job(&mut self) {
        if self.ending.is_none() {
            self.ending = Some(Ending::Terminating {
                kill_at: Instant::now() + TERM_GRACE,
            });
            self.places.iter().for_each(|p| p.signal(libc::SIGTERM));
        }
    }

    fn kill_all(&mut self) {
        self.ending = Some(Ending::Killing);
        self.places.iter().for_each(|p| p.signal(libc::SIGKILL));
    }

    fn forward(&mut self, i: usize, buf: &mut [u8]) {
        if let Some(output) = &mut self.outputs[i] {
            if !output.forward(buf) {
                self.outputs[i] = None;
            }
        }
    }

    /// Forwards what the places wrote before they exited, then their unfinished last lines.
    fn drain_outputs(&mut self, buf: &mut [u8]) {
        let deadline = Instant::now() + DRAIN_LIMIT;
        let mut set = PollSet::new();
        while Instant::now() < deadline {
            set.clear();
            for (i, output) in self.outputs.iter().enumerate() {
                if let Some(output) = output {
                    set.add(output, i, Interest::Read);
                }
            }
            if set.wait(Some(Duration::ZERO)).is_err() {
                break;
            }
            let ready: Vec<usize> = set.ready().map(|(i, _)| i).collect();
            if ready.is_empty() {
                break;
            }
            ready.into_iter().for_each(|i| self.forward(i, buf));
        }
        self.outputs
            .iter_mut()
            .flatten()
            .for_each(OutputPipe::finish);
    }

    /// Removes what the job left behind; returns the job's exit status.
    fn finish(self) -> i32 {
        drop(self.server);
        let removed = remove_job_segments(&self.job_id);
        if removed > 0 {
            tracing::debug!(job = %self.job_id, removed, "removed shared-memory segments left by the job");
        }
        // Whatever could not be written has nowhere else to go.
        let _ = io::stdout().flush();
        self.status.unwrap_or(0)
    }
}

/// Kills and reaps the places started so far, and removes what they may have created.
fn abort(places: &mut [PlaceProcess], job_id: &str) {
    places.iter_mut().for_each(PlaceProcess::kill_and_reap);
    remove_job_segments(job_id);
}
