//! The `env` bootstrap's coordinator: a small PMI-1 key-value server over TCP that place 0
//! runs on threads for the life of the job.
//!
//! A client's first line is `cmd=atoll_join secret=HEX rank=R size=N`; a wrong
//! secret, a rank outside the job, a rank already joined or another size is refused
//! (`cmd=atoll_welcome rc=1 msg=...`) and the connection closed. Then the client speaks PMI-1
//! ([`crate::bootstrap::pmi::wire`]): `init`, `get_maxes`, `get_my_kvsname` (the job id),
//! `get_appnum`, `put`, `get`, `barrier_in`, `finalize`.
//!
//! A barrier fails (`cmd=barrier_out rc=1 msg=...`) rather than hang when a place's
//! connection ends before it entered, or when not every place joined within the timeout.
//! One thread per connection; a connection that does not present the secret within the
//! timeout is closed. A place whose host vanishes without closing its connection (no TCP
//! keepalive is set) holds the barriers it has not entered until place 0 is ended.

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::bootstrap::pmi::wire::{self, Line, LineReader, Read1};
use crate::launch::ident::JobSecret;
use crate::{Error, Result};

/// The value length the coordinator announces (clients keep lines under 1024 bytes anyway).
const VALLEN_MAX: usize = 1024;
/// The most bytes of keys and values one job may store (a bound on a client's demands).
const MAX_STORED: usize = 1 << 30;

/// A running coordinator. Dropping it waits (up to the timeout) for every place to leave,
/// so that place 0 does not end the job under places still finishing their last barrier.
#[derive(Debug)]
pub(crate) struct Coordinator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    secret: JobSecret,
    job_id: String,
    size: usize,
    timeout: Duration,
    started: Instant,
    stopping: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// Per rank: whether it joined, and whether its connection has ended.
    joined: Vec<bool>,
    ended: Vec<bool>,
    kvs: HashMap<String, String>,
    stored: usize,
    /// Barriers completed so far, and places in the current one.
    generation: u64,
    arrived: usize,
    /// Why barriers fail from now on.
    broken: Option<String>,
}

impl Coordinator {
    /// Listens on `addr` and serves a job of `size` places whose id is `job_id`.
    pub(crate) fn start(
        addr: &str,
        size: usize,
        secret: JobSecret,
        job_id: String,
        timeout: Duration,
    ) -> Result<Coordinator> {
        let listener = TcpListener::bind(addr).map_err(|e| {
            Error::io(
                format!(
                    "place 0 cannot listen on ATOLL_COORDINATOR={addr} (is the address one of \
                     this host's, and the port free?)"
                ),
                e,
            )
        })?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("reading the coordinator's address", e))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                joined: vec![false; size],
                ended: vec![false; size],
                ..State::default()
            }),
            changed: Condvar::new(),
            secret,
            job_id,
            size,
            timeout,
            started: Instant::now(),
            stopping: AtomicBool::new(false),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("atoll-coordinator".into())
                .spawn(move || accept(&listener, &shared))
                .map_err(|e| Error::io("starting the coordinator thread", e))?
        };
        Ok(Coordinator {
            shared,
            addr: local,
            acceptor: Some(acceptor),
        })
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let deadline = Instant::now() + self.shared.timeout;
        let mut state = lock(&self.shared.state);
        while state
            .joined
            .iter()
            .zip(&state.ended)
            .any(|(&j, &e)| j && !e)
        {
            let now = Instant::now();
            if now >= deadline {
                tracing::debug!("the coordinator ends with places still connected");
                break;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(state);
        self.shared.stopping.store(true, Ordering::Release);
        // Wakes the acceptor, blocked in `accept`, so that it sees `stopping` and returns.
        if TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok() {
            if let Some(acceptor) = self.acceptor.take() {
                if acceptor.join().is_err() {
                    tracing::debug!("the coordinator's acceptor panicked");
                }
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn accept(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!("the coordinator's accept failed: {e}");
                continue;
            }
        };
        let shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("atoll-coordinator-conn".into())
            .spawn(move || serve(stream, &shared));
        if let Err(e) = spawned {
            tracing::debug!("the coordinator cannot start a connection thread: {e}");
        }
    }
}

/// Serves one connection until it ends; records the end.
fn serve(mut stream: TcpStream, shared: &Shared) {
    let mut lines = LineReader::default();
    let rank = match join(&mut stream, &mut lines, shared) {
        Ok(rank) => rank,
        Err(reason) => {
            tracing::debug!("the coordinator refused a connection: {reason}");
            let msg = reason.replace(|c: char| !c.is_ascii_graphic() || c == '=' || c == ';', "_");
            // Best effort: the peer may be gone, or not a client at all.
            let _ignored = stream
                .write_all(Line::format("atoll_welcome", &[("rc", "1"), ("msg", &msg)]).as_bytes());
            return;
        }
    };
    let why = match requests(&mut stream, &mut lines, shared, rank) {
        Ok(true) => None,
        Ok(false) => Some(format!("place {rank} left the job (its connection to the coordinator ended before it finalized)")),
        Err(e) => Some(format!("place {rank}'s connection to the coordinator failed: {e}")),
    };
    let mut state = lock(&shared.state);
    state.ended[rank] = true;
    // A place gone can enter no later barrier: every barrier not yet complete fails.
    if state.broken.is_none() {
        state.broken = Some(why.unwrap_or_else(|| format!("place {rank} has finalized")));
    }
    drop(state);
    shared.changed.notify_all();
}

/// Reads and checks the `atoll_join` line; returns the rank, or why it was refused.
fn join(stream: &mut TcpStream, lines: &mut LineReader, shared: &Shared) -> Result<usize, String> {
    stream
        .set_read_timeout(Some(shared.timeout))
        .map_err(|e| format!("setting a read timeout: {e}"))?;
    let line = match lines.read_line(stream) {
        Ok(Read1::Line(text)) => Line::parse(&text).map_err(|e| e.to_string())?,
        Ok(Read1::Closed) => return Err("the peer closed the connection".into()),
        Ok(Read1::TimedOut) => return Err("the peer presented nothing in time".into()),
        Err(e) => return Err(e.to_string()),
    };
    if line.cmd != "atoll_join" {
        return Err(format!(
            "the first line is cmd={}, not cmd=atoll_join",
            line.cmd
        ));
    }
    let secret = line
        .get("secret")
        .and_then(JobSecret::from_hex)
        .ok_or("no secret of 32 hex digits")?;
    if !shared.secret.matches(secret.as_bytes()) {
        return Err("wrong secret: the place's ATOLL_ENV_SECRET differs from place 0's".into());
    }
    let number = |key: &str| line.number(key).map_err(|e| e.to_string());
    let (rank, size) = (number("rank")?, number("size")?);
    if size != shared.size {
        return Err(format!(
            "the place says ATOLL_PLACES={size}, place 0 says {}",
            shared.size
        ));
    }
    if rank >= size {
        return Err(format!("rank {rank} is outside the job of {size}"));
    }
    {
        let mut state = lock(&shared.state);
        if std::mem::replace(&mut state.joined[rank], true) {
            return Err(format!(
                "rank {rank} has already joined (two places with one ATOLL_ENV_RANK?)"
            ));
        }
    }
    shared.changed.notify_all();
    stream
        .write_all(Line::format("atoll_welcome", &[("rc", "0")]).as_bytes())
        .map_err(|e| format!("answering: {e}"))?;
    stream
        .set_read_timeout(None)
        .map_err(|e| format!("clearing the read timeout: {e}"))?;
    Ok(rank)
}

/// Answers PMI-1 requests; `Ok(true)` after `finalize`, `Ok(false)` when the peer just closed.
fn requests(
    stream: &mut TcpStream,
    lines: &mut LineReader,
    shared: &Shared,
    rank: usize,
) -> Result<bool> {
    loop {
        let line = match lines.read_line(stream)? {
            Read1::Line(text) => Line::parse(&text)?,
            Read1::Closed | Read1::TimedOut => return Ok(false),
        };
        let reply = match line.cmd.as_str() {
            "init" => Line::format(
                "response_to_init",
                &[("pmi_version", "1"), ("pmi_subversion", "1"), ("rc", "0")],
            ),
            "get_maxes" => Line::format(
                "maxes",
                &[
                    ("kvsname_max", "256"),
                    ("keylen_max", "64"),
                    ("vallen_max", &VALLEN_MAX.to_string()),
                ],
            ),
            "get_my_kvsname" => Line::format("my_kvsname", &[("kvsname", &shared.job_id)]),
            "get_appnum" => Line::format("appnum", &[("appnum", "0")]),
            "put" => put(shared, &line),
            "get" => get(shared, &line),
            "barrier_in" => barrier(shared, rank),
            "finalize" => {
                stream
                    .write_all(Line::format("finalize_ack", &[]).as_bytes())
                    .map_err(|e| Error::io("answering finalize", e))?;
                return Ok(true);
            }
            other => {
                return Err(Error::bootstrap(format!(
                    "place {rank} sent an unknown command {other:?}"
                )))
            }
        };
        stream
            .write_all(reply.as_bytes())
            .map_err(|e| Error::io(format!("answering place {rank}"), e))?;
    }
}

fn put(shared: &Shared, line: &Line) -> String {
    let (Some(key), Some(value)) = (line.get("key"), line.get("value")) else {
        return Line::format(
            "put_result",
            &[("rc", "1"), ("msg", "key_and_value_needed")],
        );
    };
    if line.get("kvsname") != Some(shared.job_id.as_str())
        || !wire::is_word(key)
        || !wire::is_word(value)
    {
        return Line::format(
            "put_result",
            &[("rc", "1"), ("msg", "bad_kvsname_key_or_value")],
        );
    }
    let mut state = lock(&shared.state);
    if state.stored + key.len() + value.len() > MAX_STORED {
        return Line::format(
            "put_result",
            &[("rc", "1"), ("msg", "the_job_stored_too_much")],
        );
    }
    if state.kvs.contains_key(key) {
        return Line::format("put_result", &[("rc", "1"), ("msg", "duplicate_key")]);
    }
    state.stored += key.len() + value.len();
    state.kvs.insert(key.to_owned(), value.to_owned());
    Line::format("put_result", &[("rc", "0"), ("msg", "success")])
}

fn get(shared: &Shared, line: &Line) -> String {
    let state = lock(&shared.state);
    match line.get("key").and_then(|key| state.kvs.get(key)) {
        Some(value) => Line::format(
            "get_result",
            &[("rc", "0"), ("msg", "success"), ("value", value)],
        ),
        None => Line::format("get_result", &[("rc", "1"), ("msg", "key_not_found")]),
    }
}

/// Waits until every place has entered (`barrier_out rc=0`) or the job broke (`rc=1`).
fn barrier(shared: &Shared, rank: usize) -> String {
    let failed = |why: &str| {
        let msg = why.replace(|c: char| !c.is_ascii_graphic() || c == '=' || c == ';', "_");
        Line::format("barrier_out", &[("rc", "1"), ("msg", &msg)])
    };
    let mut state = lock(&shared.state);
    if let Some(why) = &state.broken {
        return failed(why);
    }
    let generation = state.generation;
    state.arrived += 1;
    if state.arrived == shared.size {
        state.arrived = 0;
        state.generation += 1;
        drop(state);
        shared.changed.notify_all();
        return Line::format("barrier_out", &[("rc", "0")]);
    }
    loop {
        if state.generation != generation {
            return Line::format("barrier_out", &[("rc", "0")]);
        }
        if let Some(why) = &state.broken {
            return failed(why);
        }
        let join_deadline = shared.started + shared.timeout;
        let missing: Vec<usize> = (0..shared.size).filter(|&r| !state.joined[r]).collect();
        if !missing.is_empty() && Instant::now() >= join_deadline {
            let why = format!(
                "places {missing:?} never connected to the coordinator within {} s of its start \
                 (are they running, with ATOLL_COORDINATOR pointing at place 0?)",
                shared.timeout.as_secs_f64()
            );
            state.broken = Some(why.clone());
            drop(state);
            shared.changed.notify_all();
            tracing::debug!(rank, "{why}");
            return failed(&why);
        }
        let wait = if missing.is_empty() {
            Duration::from_secs(3600)
        } else {
            join_deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(1)
        };
        state = shared
            .changed
            .wait_timeout(state, wait)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}
