//! The `env` bootstrap: rank, size and a coordinator's `host:port` from environment
//! variables, for schedulers without PMI, containers, and tests across hosts.
//!
//! Every place is started by hand (or by any tool) with `ATOLL_COORDINATOR=host:port`,
//! `ATOLL_ENV_RANK=r`, `ATOLL_PLACES=n` and the job's `ATOLL_ENV_SECRET` (32 hex digits).
//! Place 0 runs the [`coordinator`] on threads, listening on that address; every place,
//! place 0 included, connects to it, presents the secret, and then speaks PMI-1 to it (the
//! same client as under hydra, [`super::pmi`]).

pub(crate) mod coordinator;

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::pmi::wire::Line;
use super::pmi::{Connection, PmiClient, Stream};
use crate::config::{self, COORDINATOR, ENV_RANK, ENV_SECRET, PLACES};
use crate::launch::ident::{self, JobSecret};
use crate::{Error, Result};
use coordinator::Coordinator;

/// A place of an `env` job: its PMI-1 client, and at place 0 the coordinator.
#[derive(Debug)]
pub struct EnvClient {
    // Dropped first: the client finalizes, then place 0's coordinator waits for the others.
    pub(crate) client: PmiClient,
    /// Place 0's coordinator, until this place leaves the job (its `Drop` waits for the
    /// others to leave).
    coordinator: Mutex<Option<Coordinator>>,
}

impl EnvClient {
    /// Joins the job the environment describes.
    pub(crate) fn from_env(timeout: Duration) -> Result<EnvClient> {
        let addr = config::var(COORDINATOR).ok_or_else(|| missing(COORDINATOR))?;
        let rank = config::parse::<usize>(ENV_RANK, "this place's rank, below ATOLL_PLACES")?
            .ok_or_else(|| missing(ENV_RANK))?;
        let size = config::parse::<usize>(PLACES, "the number of places of the job, at least 1")?
            .ok_or_else(|| missing(PLACES))?;
        let secret = config::var(ENV_SECRET).ok_or_else(|| missing(ENV_SECRET))?;
        let secret = JobSecret::from_hex(&secret).ok_or_else(|| Error::Config {
            var: ENV_SECRET,
            value: "(not shown)".into(),
            expected:
                "32 hexadecimal digits, the same at every place (e.g. `openssl rand -hex 16`)",
        })?;
        if size == 0 || rank >= size {
            return Err(Error::Config {
                var: ENV_RANK,
                value: rank.to_string(),
                expected: "a rank below ATOLL_PLACES",
            });
        }
        EnvClient::join(&addr, rank, size, secret, timeout)
    }

    /// Joins the job of coordinator `addr` as place `rank` of `size`; place 0 starts the
    /// coordinator first.
    pub(crate) fn join(
        addr: &str,
        rank: usize,
        size: usize,
        secret: JobSecret,
        timeout: Duration,
    ) -> Result<EnvClient> {
        let coordinator = if rank == 0 {
            let job_id = format!("env-{}", ident::new_job_id()?);
            Some(Coordinator::start(
                addr,
                size,
                secret.clone(),
                job_id,
                timeout,
            )?)
        } else {
            None
        };
        let target = match &coordinator {
            // Place 0 reaches its own coordinator at the address it bound (a wildcard address
            // such as 0.0.0.0 is reached through loopback).
            Some(c) if c.addr().ip().is_unspecified() => {
                SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), c.addr().port()).to_string()
            }
            Some(c) => c.addr().to_string(),
            None => addr.to_owned(),
        };
        let stream = connect(&target, timeout)?;
        let mut conn = Connection::new(
            Stream::Tcp(stream),
            timeout,
            format!("the coordinator at {target} (ATOLL_COORDINATOR)"),
            "is place 0 running and reachable from this host, and is ATOLL_COORDINATOR the \
             address place 0 listens on?",
        );
        conn.send(
            "atoll_join",
            &[
                ("secret", &secret.to_hex()),
                ("rank", &rank.to_string()),
                ("size", &size.to_string()),
            ],
        )?;
        let welcome = conn.receive("atoll_join", false)?;
        if welcome.cmd != "atoll_welcome" || welcome.get("rc") != Some("0") {
            return Err(Error::bootstrap(format!(
                "the coordinator at {target} refused place {rank}: {}",
                refusal(&welcome)
            )));
        }
        Ok(EnvClient {
            client: PmiClient::start(conn, rank, size)?,
            coordinator: Mutex::new(coordinator),
        })
    }
}

impl EnvClient {
    /// Leaves the job: finalizes, then (at place 0) waits for the others to leave and stops
    /// the coordinator.
    pub(crate) fn finalize(&self) -> Result<()> {
        let finalized = self.client.finalize();
        drop(
            self.coordinator
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        finalized
    }
}

fn refusal(line: &Line) -> String {
    match line.get("msg") {
        Some(msg) => msg.replace('_', " "),
        None => format!("it answered cmd={}", line.cmd),
    }
}

fn missing(var: &str) -> Error {
    Error::bootstrap(format!(
        "the env bootstrap needs {COORDINATOR}, {ENV_RANK}, {PLACES} and {ENV_SECRET} at every \
         place, but {var} is not set"
    ))
}

/// Connects to `addr`, trying again until `timeout` has passed: place 0 may start its
/// coordinator after the others start.
fn connect(addr: &str, timeout: Duration) -> Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        let addrs: Vec<SocketAddr> = match addr.to_socket_addrs() {
            Ok(addrs) => addrs.collect(),
            Err(e) => {
                last = Some(e);
                Vec::new()
            }
        };
        for a in &addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            match TcpStream::connect_timeout(a, left.max(Duration::from_millis(10))) {
                Ok(stream) => {
                    stream
                        .set_nodelay(true)
                        .map_err(|e| Error::io("setting TCP_NODELAY", e))?;
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::bootstrap(format!(
                "no coordinator answered at {addr} (ATOLL_COORDINATOR) within {} s ({}): is \
                 place 0 (ATOLL_ENV_RANK=0) running, and is the address reachable from here?",
                timeout.as_secs_f64(),
                last.map_or_else(|| "no address".to_owned(), |e| e.to_string())
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    fn secret() -> JobSecret {
        JobSecret::random().unwrap()
    }

    /// A free port on loopback (bound, read, released).
    fn free_addr() -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }

    #[test]
    fn places_gather_and_meet_in_barriers() {
        let addr = free_addr();
        let secret = secret();
        let timeout = Duration::from_secs(10);
        let places: Vec<_> = (0..4)
            .map(|rank| {
                let (addr, secret) = (addr.clone(), secret.clone());
                thread::spawn(move || {
                    let env = EnvClient::join(&addr, rank, 4, secret, timeout).unwrap();
                    let blob = vec![rank as u8; 3000 * rank];
                    let all = env.client.allgather(&blob).unwrap();
                    let again = env.client.allgather(b"x").unwrap();
                    env.client.barrier().unwrap();
                    (env.client.kvsname().to_owned(), all, again)
                })
            })
            .collect();
        let results: Vec<_> = places.into_iter().map(|p| p.join().unwrap()).collect();
        for (kvs, all, again) in &results {
            assert_eq!(kvs, &results[0].0);
            assert!(kvs.starts_with("env-") && ident::is_valid_job_id(kvs));
            for (rank, blob) in all.iter().enumerate() {
                assert_eq!(blob, &vec![rank as u8; 3000 * rank]);
            }
            assert_eq!(again, &vec![b"x".to_vec(); 4]);
        }
    }

    #[test]
    fn a_wrong_secret_is_refused() {
        let addr = free_addr();
        let timeout = Duration::from_secs(5);
        let good = secret();
        let zero = {
            let (addr, good) = (addr.clone(), good.clone());
            thread::spawn(move || EnvClient::join(&addr, 0, 2, good, timeout))
        };
        let err = EnvClient::join(&addr, 1, 2, secret(), timeout).unwrap_err();
        assert!(err.to_string().contains("wrong secret"), "{err}");
        // Place 0 is left alone: its first collective fails when place 1 never joins.
        let zero = zero.join().unwrap().unwrap();
        let err = zero.client.barrier().unwrap_err();
        assert!(err.to_string().contains("never connected"), "{err}");
    }

    #[test]
    fn a_coordinator_that_never_answers_times_out() {
        // Accepts connections (the kernel's backlog does) but never answers.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        let timeout = Duration::from_millis(500);
        let err = EnvClient::join(&addr, 1, 2, secret(), timeout).unwrap_err();
        assert!(err.to_string().contains("did not answer"), "{err}");
        // Nobody listens at all.
        drop(silent);
        let err = EnvClient::join(&addr, 1, 2, secret(), timeout).unwrap_err();
        assert!(err.to_string().contains("no coordinator answered"), "{err}");
    }

    #[test]
    fn a_place_that_leaves_fails_the_others_barrier() {
        let addr = free_addr();
        let timeout = Duration::from_secs(10);
        let s = secret();
        let zero = {
            let (addr, s) = (addr.clone(), s.clone());
            thread::spawn(move || {
                let env = EnvClient::join(&addr, 0, 2, s, timeout).unwrap();
                env.client.barrier().unwrap();
                env.client.barrier()
            })
        };
        let one = EnvClient::join(&addr, 1, 2, s, timeout).unwrap();
        one.client.barrier().unwrap();
        drop(one);
        let err = zero.join().unwrap().unwrap_err();
        assert!(err.to_string().contains("place 1"), "{err}");
    }
}
