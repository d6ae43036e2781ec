//! The client side of the local launcher's bootstrap, in a place the launcher started.
//!
//! The place connects once, at start, to the launcher's socket (`ATOLL_LAUNCHER_SOCKET`),
//! presents the job's secret, its rank and its build id, and keeps the connection for the
//! life of the job (protocol: [`crate::launch::wire`]). A background thread reads everything
//! the launcher sends: the ends of all-gather rounds, handed to the waiting caller through a
//! channel, and failure notices, kept in a list that [`LocalBootstrap::failed_places`] reads
//! without blocking. So a round that waits on a dead place ends with
//! [`Error::PlaceFailed`] instead of hanging, and a launcher that disappears ends it with
//! [`Error::Bootstrap`].

use std::io::Write;
use std::net::Shutdown;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::config::{self, CONNECT_TIMEOUT_S, JOB_ID, JOB_SECRET, LAUNCHER_SOCKET, PLACES, RANK};
use crate::launch::ident::{self, JobSecret};
use crate::launch::wire::{self, FrameReader, Hello, Kind, Progress, ToPlace, MAX_BLOB};
use crate::{Error, Place, Result};

/// This place's membership in a job of the local launcher.
#[derive(Debug)]
pub struct LocalBootstrap {
    rank: usize,
    size: usize,
    job_id: String,
    /// The sending half and the round ends, locked together so that collective calls from
    /// several threads are serialized: one contribution in flight at a time.
    link: Mutex<Link>,
    news: Arc<Notices>,
    reader: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Link {
    stream: UnixStream,
    rounds: Receiver<RoundEnd>,
}

/// What the reader thread learned that is not the end of a round.
#[derive(Debug, Default)]
struct News {
    /// Places the launcher reported dead, in the order it did.
    failed: Vec<Place>,
    /// Why the connection to the launcher ended, once it has.
    lost: Option<String>,
}

/// The news, and how many places died: a count that senders and RMA calls read on every
/// operation without taking the lock.
#[derive(Debug, Default)]
struct Notices {
    news: Mutex<News>,
    deaths: AtomicUsize,
}

/// How the round of an all-gather ended.
#[derive(Debug)]
enum RoundEnd {
    Gathered(Vec<Vec<u8>>),
    Failed(Place),
}

impl LocalBootstrap {
    /// `Some` when the local launcher started this process (`ATOLL_RANK` is set), after
    /// joining the job; `None` otherwise. An inconsistent environment, an unreachable
    /// launcher, or a refusal (another binary than the launcher's) is an error.
    pub(crate) fn from_env() -> Result<Option<LocalBootstrap>> {
        let Some(rank) = config::parse::<usize>(RANK, "a place index below ATOLL_PLACES")? else {
            return Ok(None);
        };
        let size = config::parse::<usize>(PLACES, "the number of places, at least 1")?
            .ok_or_else(|| missing(PLACES))?;
        if rank >= size {
            return Err(Error::Config {
                var: RANK,
                value: rank.to_string(),
                expected: "a place index below ATOLL_PLACES",
            });
        }
        let job_id = config::var(JOB_ID).ok_or_else(|| missing(JOB_ID))?;
        if !ident::is_valid_job_id(&job_id) {
            return Err(Error::Config {
                var: JOB_ID,
                value: job_id,
                expected: "1 to 64 ASCII letters, digits or '-'",
            });
        }
        let socket = config::var(LAUNCHER_SOCKET).ok_or_else(|| missing(LAUNCHER_SOCKET))?;
        let secret = config::var(JOB_SECRET).ok_or_else(|| missing(JOB_SECRET))?;
        let secret = JobSecret::from_hex(&secret).ok_or_else(|| Error::Config {
            var: JOB_SECRET,
            value: "(not shown)".into(),
            expected: "32 hexadecimal digits",
        })?;
        let timeout_s = config::parse::<u64>(CONNECT_TIMEOUT_S, "seconds")?
            .unwrap_or(config::DEFAULT_CONNECT_TIMEOUT_S);

        let stream = connect(&socket)?;
        let frames = handshake(
            &stream,
            rank,
            size,
            &secret,
            Duration::from_secs(timeout_s.max(1)),
        )?;
        let (rounds_tx, rounds) = mpsc::channel();
        let news = Arc::new(Notices::default());
        let reader = {
            let stream = stream
                .try_clone()
                .map_err(|e| Error::io("duplicating the bootstrap socket", e))?;
            let news = Arc::clone(&news);
            thread::Builder::new()
                .name("atoll-bootstrap".into())
                .spawn(move || listen(&stream, frames, size, &rounds_tx, &news))
                .map_err(|e| Error::io("starting the bootstrap reader thread", e))?
        };
        tracing::debug!(rank, size, job = %job_id, "joined the job");
        Ok(Some(LocalBootstrap {
            rank,
            size,
            job_id,
            link: Mutex::new(Link { stream, rounds }),
            news,
            reader: Some(reader),
        }))
    }

    pub(crate) fn rank(&self) -> usize {
        self.rank
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    pub(crate) fn job_id(&self) -> &str {
        &self.job_id
    }

    /// Contributes `blob` (at most 16 MiB) and returns every place's, indexed by rank.
    ///
    /// Fails with [`Error::PlaceFailed`] when a place that has not contributed can no longer
    /// do so: it died, or it left the job (exited, or dropped its bootstrap) before this
    /// collective. A place that died is named in preference to one that left.
    pub(crate) fn allgather(&self, blob: &[u8]) -> Result<Vec<Vec<u8>>> {
        if blob.len() > MAX_BLOB {
            return Err(Error::PayloadTooLarge {
                len: blob.len(),
                limit: MAX_BLOB,
            });
        }
        let link = lock(&self.link);
        let mut stream = &link.stream;
        let sent = stream
            .write_all(&wire::header(Kind::Contribute, blob.len()))
            .and_then(|()| stream.write_all(blob));
        if let Err(e) = sent {
            return Err(self
                .lost()
                .unwrap_or_else(|| Error::io("sending an all-gather contribution", e)));
        }
        match link.rounds.recv() {
            Ok(RoundEnd::Gathered(blobs)) => Ok(blobs),
            Ok(RoundEnd::Failed(place)) => Err(Error::PlaceFailed(place)),
            Err(mpsc::RecvError) => Err(self
                .lost()
                .unwrap_or_else(|| Error::bootstrap("the bootstrap reader thread ended"))),
        }
    }

    /// Whether the launcher has reported `place` dead (no lock while nobody died).
    pub(crate) fn is_failed(&self, place: Place) -> bool {
        self.news.deaths.load(Ordering::Acquire) != 0
            && lock(&self.news.news).failed.contains(&place)
    }

    /// A test of [`LocalBootstrap::is_failed`] that outlives `self`'s borrow.
    #[cfg(any(feature = "ofi", feature = "ucx"))]
    pub(crate) fn failure_probe(&self) -> super::FailureProbe {
        let news = self.news.clone();
        super::FailureProbe::new(move |place| {
            news.deaths.load(Ordering::Acquire) != 0 && lock(&news.news).failed.contains(&place)
        })
    }

    /// Places the launcher has reported dead so far.
    pub(crate) fn failed_places(&self) -> Vec<Place> {
        lock(&self.news.news).failed.clone()
    }

    /// Why the connection to the launcher ended, if it has.
    fn lost(&self) -> Option<Error> {
        lock(&self.news.news).lost.clone().map(Error::bootstrap)
    }
}

impl Drop for LocalBootstrap {
    fn drop(&mut self) {
        // Wakes the reader thread, blocked in a read of the same socket, with end of file.
        if let Err(e) = lock(&self.link).stream.shutdown(Shutdown::Both) {
            tracing::debug!("shutting down the bootstrap socket: {e}");
        }
        if let Some(reader) = self.reader.take() {
            if reader.join().is_err() {
                tracing::debug!("the bootstrap reader thread panicked");
            }
        }
    }
}

/// Both mutexes guard plain data that a panic cannot leave half-updated.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn missing(var: &str) -> Error {
    Error::bootstrap(format!(
        "{RANK} is set but {var} is not: was this place started by Atoll's local launcher \
         of the same version?"
    ))
}

/// Connects to `@name` (the abstract namespace) or to a socket file.
fn connect(socket: &str) -> Result<UnixStream> {
    let what = || format!("connecting to the launcher's bootstrap socket {socket}");
    let addr = match socket.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(socket),
    }
    .map_err(|e| Error::io(what(), e))?;
    UnixStream::connect_addr(&addr).map_err(|e| Error::io(what(), e))
}

/// Presents this place and waits for the launcher's answer; returns the reader to go on with.
fn handshake(
    stream: &UnixStream,
    rank: usize,
    size: usize,
    secret: &JobSecret,
    timeout: Duration,
) -> Result<FrameReader> {
    let hello = Hello {
        secret: *secret.as_bytes(),
        rank: rank as u32,
        build_id: ident::build_id()?,
    };
    let io_err = |e| Error::io("presenting this place to the launcher", e);
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    let mut stream_ref = stream;
    stream_ref.write_all(&hello.encode()).map_err(io_err)?;
    let mut frames = FrameReader::new(wire::Sender::Launcher);
    let answer = match frames.read_from(&mut stream_ref)? {
        Progress::Frame(frame) => ToPlace::decode(frame)?,
        Progress::Closed => {
            return Err(Error::bootstrap(
                "the launcher closed the connection without answering",
            ))
        }
        Progress::Pending => {
            return Err(Error::bootstrap(format!(
                "the launcher did not answer within {} s",
                timeout.as_secs()
            )))
        }
    };
    match answer {
        ToPlace::Welcome { size: theirs } if theirs as usize == size => {}
        ToPlace::Welcome { size: theirs } => {
            return Err(Error::bootstrap(format!(
                "the launcher runs a job of {theirs} places, but {PLACES} says {size}"
            )))
        }
        ToPlace::Refused { reason } => {
            return Err(Error::bootstrap(format!(
                "the launcher refused this place: {reason}"
            )))
        }
        other => {
            return Err(Error::bootstrap(format!(
                "unexpected answer to Hello: {other:?}"
            )))
        }
    }
    stream.set_read_timeout(None).map_err(io_err)?;
    Ok(frames)
}

/// The reader thread: runs until the connection ends, then records why.
fn listen(
    stream: &UnixStream,
    frames: FrameReader,
    size: usize,
    rounds: &Sender<RoundEnd>,
    news: &Notices,
) {
    let why = match receive(stream, frames, size, rounds, news) {
        Ok(()) => "the launcher closed the bootstrap connection".to_owned(),
        Err(e) => format!("the bootstrap connection to the launcher failed: {e}"),
    };
    tracing::debug!("{why}");
    lock(&news.news).lost = Some(why);
    // Returning drops `rounds`, which wakes a caller waiting for a round.
}

fn receive(
    mut stream: &UnixStream,
    mut frames: FrameReader,
    size: usize,
    rounds: &Sender<RoundEnd>,
    news: &Notices,
) -> Result<()> {
    let mut blobs: Vec<Option<Vec<u8>>> = vec![None; size];
    let mut received = 0;
    let place = |rank: u32| {
        if (rank as usize) < size {
            Ok(Place::new(rank as usize))
        } else {
            Err(Error::bootstrap(format!(
                "the launcher named place {rank} in a job of {size}"
            )))
        }
    };
    loop {
        let frame = match frames.read_from(&mut stream)? {
            Progress::Frame(frame) => frame,
            Progress::Closed => return Ok(()),
            Progress::Pending => return Err(Error::bootstrap("a blocking read would block")),
        };
        let end = match ToPlace::decode(frame)? {
            ToPlace::Blob { rank, blob } => {
                let slot = &mut blobs[place(rank)?.index()];
                if slot.replace(blob).is_some() {
                    return Err(Error::bootstrap(format!(
                        "two blobs of place {rank} in one round"
                    )));
                }
                received += 1;
                if received < size {
                    continue;
                }
                received = 0;
                let all = blobs
                    .iter_mut()
                    .map(Option::take)
                    .collect::<Option<Vec<_>>>();
                RoundEnd::Gathered(all.ok_or_else(|| Error::bootstrap("a round ended incomplete"))?)
            }
            ToPlace::RoundFailed { rank } if received == 0 => RoundEnd::Failed(place(rank)?),
            ToPlace::PlaceDied { rank } => {
                let place = place(rank)?;
                let mut known = lock(&news.news);
                if !known.failed.contains(&place) {
                    known.failed.push(place);
                    news.deaths.fetch_add(1, Ordering::Release);
                }
                continue;
            }
            other => {
                return Err(Error::bootstrap(format!(
                    "unexpected frame from the launcher: {other:?}"
                )))
            }
        };
        if rounds.send(end).is_err() {
            // The `LocalBootstrap` is gone: nobody is listening any more.
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<LocalBootstrap>();
    }

    #[test]
    fn not_under_a_launcher_is_none() {
        if std::env::var_os(RANK).is_none() {
            assert!(LocalBootstrap::from_env().unwrap().is_none());
        }
    }
}
