//! The launcher's side of the bootstrap: one listening socket, one connection per place,
//! all-gather rounds and failure notices.
//!
//! The server never blocks: every socket is non-blocking, and the launcher's poll loop calls
//! [`Server::accept`] and [`Server::on_ready`] when the kernel says there is work. Blobs of a
//! completed round are encoded once and shared by every connection's queue.
//!
//! A round completes when every place has contributed; it fails as soon as a place that has
//! not contributed is gone (its connection closed, or it was reaped): the contributors get a
//! `RoundFailed` naming it, and so does everyone who contributes later, since that place can
//! never contribute again.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::Arc;

use super::ident::JobSecret;
use super::poll::{Interest, PollSet, Ready};
use super::wire::{FrameReader, Hello, Kind, Progress, Sender, ToPlace};
use crate::{Error, Result};

/// Connections that have not yet presented a secret; past this, the oldest is dropped, so that
/// a local process opening connections cannot exhaust the launcher's descriptors.
const MAX_UNAUTHENTICATED: usize = 64;

/// Something the launcher must report or act on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Notice {
    /// A process presented the job's secret but runs a different binary; it was refused (and
    /// its `join` fails with that reason, which normally ends the place and so the job).
    WrongBinary { rank: usize },
    /// A connection was dropped: wrong secret, malformed frames, a duplicate rank.
    Dropped { reason: String },
}

/// Index of a connection, valid from [`Server::register`] to the next [`Server::sweep`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnId(usize);

/// The bootstrap server of one job.
#[derive(Debug)]
pub(crate) struct Server {
    listener: UnixListener,
    address: String,
    secret: JobSecret,
    build_id: u64,
    conns: Vec<Conn>,
    /// Per rank: a connection presented it (once set, it stays set).
    joined: Vec<bool>,
    /// Per rank: it can no longer contribute (its connection closed, or it was reaped).
    gone: Vec<bool>,
    /// Per rank: it died abnormally (a subset of `gone` once reaped).
    died: Vec<bool>,
    /// The current round: each rank's encoded `Blob` frame, once it has contributed.
    round: Vec<Option<Arc<[u8]>>>,
    contributed: usize,
    notices: Vec<Notice>,
}

#[derive(Debug)]
struct Conn {
    stream: UnixStream,
    /// The rank it presented, once its `Hello` was accepted.
    rank: Option<usize>,
    reader: FrameReader,
    outbox: VecDeque<Arc<[u8]>>,
    /// Bytes of `outbox.front()` already written.
    written: usize,
    /// Refused: close once the outbox is written, read nothing more.
    closing: bool,
    closed: bool,
}

impl Server {
    /// Listens on the abstract Unix socket `@atoll-<job_id>` (no file to clean up; the
    /// kernel frees the name with the socket) for a job of `size` places.
    pub(crate) fn bind(
        job_id: &str,
        size: usize,
        secret: JobSecret,
        build_id: u64,
    ) -> Result<Server> {
        let name = format!("atoll-{job_id}");
        let listener = SocketAddr::from_abstract_name(&name)
            .and_then(|addr| UnixListener::bind_addr(&addr))
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
            .map_err(|e| Error::io(format!("binding the bootstrap socket @{name}"), e))?;
        Ok(Server {
            listener,
            address: format!("@{name}"),
            secret,
            build_id,
            conns: Vec::new(),
            joined: vec![false; size],
            gone: vec![false; size],
            died: vec![false; size],
            round: vec![None; size],
            contributed: 0,
            notices: Vec::new(),
        })
    }

    /// The address places connect to, as `ATOLL_LAUNCHER_SOCKET` carries it.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// Whether `rank` has joined (presented the secret, its rank and the same build id).
    pub(crate) fn has_joined(&self, rank: usize) -> bool {
        self.joined[rank]
    }

    /// Adds the listener and every connection to `set`.
    pub(crate) fn register<T: Copy>(
        &self,
        set: &mut PollSet<T>,
        listener: T,
        conn: impl Fn(ConnId) -> T,
    ) {
        set.add(&self.listener, listener, Interest::Read);
        for (i, c) in self.conns.iter().enumerate() {
            let interest = match (c.closing, c.outbox.is_empty()) {
                (true, _) => Interest::Write,
                (false, true) => Interest::Read,
                (false, false) => Interest::ReadWrite,
            };
            if !c.closed {
                set.add(c, conn(ConnId(i)), interest);
            }
        }
    }

    /// Accepts every pending connection.
    pub(crate) fn accept(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("accepting a bootstrap connection failed: {e}");
                    return;
                }
            };
            if let Err(e) = stream.set_nonblocking(true) {
                tracing::warn!("a bootstrap connection cannot be made non-blocking: {e}");
                continue;
            }
            let unauthenticated = |c: &Conn| !c.closed && c.rank.is_none();
            if self.conns.iter().filter(|c| unauthenticated(c)).count() >= MAX_UNAUTHENTICATED {
                if let Some(oldest) = self.conns.iter_mut().find(|c| unauthenticated(c)) {
                    oldest.closed = true;
                    self.notices.push(Notice::Dropped {
                        reason: "too many bootstrap connections without a secret".into(),
                    });
                }
            }
            let mut reader = FrameReader::new(Sender::Place);
            reader.expect_only(Some(Kind::Hello));
            self.conns.push(Conn {
                stream,
                rank: None,
                reader,
                outbox: VecDeque::new(),
                written: 0,
                closing: false,
                closed: false,
            });
        }
    }

    /// Reads and writes what connection `id` is ready for.
    pub(crate) fn on_ready(&mut self, id: ConnId, ready: Ready) {
        let i = id.0;
        if ready.writable {
            self.flush(i);
        }
        while ready.readable && !self.conns[i].closed && !self.conns[i].closing {
            let conn = &mut self.conns[i];
            match conn.reader.read_from(&mut conn.stream) {
                Ok(Progress::Frame(frame)) => match frame.kind {
                    Kind::Hello => match Hello::decode(&frame.payload) {
                        Ok(hello) => self.hello(i, hello),
                        Err(e) => self.drop_conn(i, e.to_string()),
                    },
                    _ => self.contribute(i, frame.payload),
                },
                Ok(Progress::Pending) => break,
                Ok(Progress::Closed) => self.close(i),
                // The peer died or the connection broke: nothing to report here, a place's
                // death is reported with its exit status.
                Err(e @ Error::Io { .. }) => {
                    tracing::debug!("bootstrap connection lost: {e}");
                    self.close(i);
                }
                Err(e) => self.drop_conn(i, e.to_string()),
            }
        }
    }

    /// Forgets closed connections; invalidates every [`ConnId`].
    pub(crate) fn sweep(&mut self) {
        self.conns.retain(|c| !c.closed);
    }

    /// What happened since the last call.
    pub(crate) fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Tells every other place that `rank` died, then treats it as gone.
    pub(crate) fn place_died(&mut self, rank: usize) {
        let frame: Arc<[u8]> = ToPlace::PlaceDied { rank: rank as u32 }.encode().into();
        for conn in &mut self.conns {
            if conn.rank.is_some_and(|r| r != rank) && !conn.closed {
                conn.outbox.push_back(Arc::clone(&frame));
            }
        }
        self.died[rank] = true;
        self.place_gone(rank);
    }

    /// `rank` will never contribute again: fails the current round if it was still awaited.
    pub(crate) fn place_gone(&mut self, rank: usize) {
        if std::mem::replace(&mut self.gone[rank], true) {
            return;
        }
        if self.contributed > 0 && self.round[rank].is_none() {
            let frame: Arc<[u8]> = ToPlace::RoundFailed { rank: rank as u32 }.encode().into();
            for conn in &mut self.conns {
                if conn.rank.is_some_and(|r| self.round[r].is_some()) && !conn.closed {
                    conn.outbox.push_back(Arc::clone(&frame));
                }
            }
            self.round.fill(None);
            self.contributed = 0;
        }
    }

    fn hello(&mut self, i: usize, hello: Hello) {
        if !self.secret.matches(&hello.secret) {
            return self.drop_conn(i, "a connection presented a wrong job secret".into());
        }
        let rank = hello.rank as usize;
        let size = self.joined.len();
        // The build id before duplicates: a stray process of another binary that inherited a
        // place's environment is reported as what it is.
        let refusal = if rank >= size {
            let reason = format!("rank {rank} is out of range for a job of {size} places");
            Some((reason.clone(), Notice::Dropped { reason }))
        } else if hello.build_id != self.build_id {
            let reason = format!(
                "place {rank} runs a different binary than the launcher (build id {:016x}, \
                 the launcher's {:016x}): every place of a job must be the same executable",
                hello.build_id, self.build_id
            );
            Some((reason, Notice::WrongBinary { rank }))
        } else if self.joined[rank] || self.gone[rank] {
            let reason = format!("place {rank} has already joined this job");
            Some((reason.clone(), Notice::Dropped { reason }))
        } else {
            None
        };
        let conn = &mut self.conns[i];
        match refusal {
            Some((reason, notice)) => {
                conn.outbox
                    .push_back(ToPlace::Refused { reason }.encode().into());
                conn.closing = true;
                self.notices.push(notice);
            }
            None => {
                conn.rank = Some(rank);
                conn.reader.expect_only(Some(Kind::Contribute));
                conn.outbox
                    .push_back(ToPlace::Welcome { size: size as u32 }.encode().into());
                self.joined[rank] = true;
            }
        }
    }

    fn contribute(&mut self, i: usize, blob: Vec<u8>) {
        let Some(rank) = self.conns[i].rank else {
            return self.drop_conn(i, "a connection contributed before it said Hello".into());
        };
        if self.round[rank].is_some() {
            return self.drop_conn(
                i,
                format!("place {rank} contributed twice to one all-gather"),
            );
        }
        // Blame a place that died rather than one that merely left: the death is the cause.
        let absent = |r: &usize| self.gone[*r] && self.round[*r].is_none();
        let dead = (0..self.round.len()).filter(absent).find(|&r| self.died[r]);
        if let Some(absent) = dead.or_else(|| (0..self.round.len()).find(absent)) {
            let frame = ToPlace::RoundFailed {
                rank: absent as u32,
            }
            .encode();
            self.conns[i].outbox.push_back(frame.into());
            return;
        }
        let frame = ToPlace::Blob {
            rank: rank as u32,
            blob,
        }
        .encode();
        self.round[rank] = Some(frame.into());
        self.contributed += 1;
        if self.contributed == self.round.len() {
            let frames: Vec<Arc<[u8]>> = self.round.iter_mut().filter_map(Option::take).collect();
            self.contributed = 0;
            for conn in self
                .conns
                .iter_mut()
                .filter(|c| c.rank.is_some() && !c.closed)
            {
                conn.outbox.extend(frames.iter().cloned());
            }
        }
    }

    /// Writes as much of connection `i`'s queue as the socket takes.
    fn flush(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        while let Some(frame) = conn.outbox.front() {
            match conn.stream.write(&frame[conn.written..]) {
                Ok(n) => {
                    conn.written += n;
                    if conn.written == frame.len() {
                        conn.outbox.pop_front();
                        conn.written = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!("writing to a bootstrap connection failed: {e}");
                    return self.close(i);
                }
            }
        }
        if conn.closing {
            self.close(i);
        }
    }

    fn drop_conn(&mut self, i: usize, reason: String) {
        self.notices.push(Notice::Dropped { reason });
        self.close(i);
    }

    fn close(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        conn.closed = true;
        conn.outbox.clear();
        if let Some(rank) = conn.rank {
            self.place_gone(rank);
        }
    }
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::thread::{self, JoinHandle};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::launch::ident;

    const BUILD: u64 = 0xb1d;

    fn server(size: usize) -> (Server, JobSecret) {
        let secret = JobSecret::random().unwrap();
        let job = ident::new_job_id().unwrap();
        (
            Server::bind(&job, size, secret.clone(), BUILD).unwrap(),
            secret,
        )
    }

    /// Drives the server until every client thread has finished (5 s at most).
    fn serve<T>(server: &mut Server, clients: Vec<JoinHandle<T>>) -> Vec<T> {
        #[derive(Clone, Copy)]
        enum Token {
            Listener,
            Conn(ConnId),
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut set = PollSet::new();
        while !clients.iter().all(JoinHandle::is_finished) {
            assert!(Instant::now() < deadline, "clients did not finish");
            set.clear();
            server.register(&mut set, Token::Listener, Token::Conn);
            set.wait(Some(Duration::from_millis(10))).unwrap();
            for (token, ready) in set.ready() {
                match token {
                    Token::Listener => server.accept(),
                    Token::Conn(id) => server.on_ready(id, ready),
                }
            }
            server.sweep();
        }
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    }

    struct Client {
        stream: UnixStream,
        frames: FrameReader,
    }

    impl Client {
        fn connect(server: &Server) -> Client {
            let name = server.address().strip_prefix('@').unwrap();
            let addr = SocketAddr::from_abstract_name(name).unwrap();
            Client {
                stream: UnixStream::connect_addr(&addr).unwrap(),
                frames: FrameReader::new(Sender::Launcher),
            }
        }

        fn send(&mut self, frame: &[u8]) {
            self.stream.write_all(frame).unwrap();
        }

        fn hello(&mut self, secret: &JobSecret, rank: u32, build_id: u64) {
            self.send(
                &Hello {
                    secret: *secret.as_bytes(),
                    rank,
                    build_id,
                }
                .encode(),
            );
        }

        fn contribute(&mut self, blob: &[u8]) {
            self.send(&crate::launch::wire::encode(Kind::Contribute, &[blob]));
        }

        /// The next message, `None` when the server closed the connection.
        fn next(&mut self) -> Option<ToPlace> {
            match self.frames.read_from(&mut self.stream).unwrap() {
                Progress::Frame(frame) => Some(ToPlace::decode(frame).unwrap()),
                Progress::Closed => None,
                Progress::Pending => unreachable!("blocking stream"),
            }
        }
    }

    fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
        thread::spawn(f)
    }

    #[test]
    fn rounds_complete_and_fail() {
        let (mut server, secret) = server(3);
        let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(&server)).collect();
        let handles = clients
            .drain(..)
            .enumerate()
            .map(|(rank, mut c)| {
                let secret = secret.clone();
                spawn(move || {
                    c.hello(&secret, rank as u32, BUILD);
                    assert_eq!(c.next(), Some(ToPlace::Welcome { size: 3 }));
                    c.contribute(&[rank as u8; 3]);
                    let mut got: Vec<ToPlace> = (0..3).map(|_| c.next().unwrap()).collect();
                    got.sort_by_key(|m| match m {
                        ToPlace::Blob { rank, .. } => *rank,
                        _ => u32::MAX,
                    });
                    let want: Vec<ToPlace> = (0..3)
                        .map(|r| ToPlace::Blob {
                            rank: r,
                            blob: vec![r as u8; 3],
                        })
                        .collect();
                    assert_eq!(got, want);
                    c
                })
            })
            .collect();
        let mut clients = serve(&mut server, handles);

        // Place 2 leaves; the next round fails for both who contribute, before or after.
        drop(clients.pop());
        let mut first = clients.remove(0);
        let mut second = clients.remove(0);
        let handle = spawn(move || {
            first.contribute(b"a");
            (first.next(), first)
        });
        let (answer, _first) = serve(&mut server, vec![handle]).remove(0);
        assert_eq!(answer, Some(ToPlace::RoundFailed { rank: 2 }));
        let handle = spawn(move || {
            second.contribute(b"b");
            second.next()
        });
        assert_eq!(
            serve(&mut server, vec![handle]),
            [Some(ToPlace::RoundFailed { rank: 2 })]
        );
        assert!(server.take_notices().is_empty());
    }

    #[test]
    fn deaths_are_announced_and_fail_the_round() {
        let (mut server, secret) = server(2);
        let mut c = Client::connect(&server);
        let handle = spawn(move || {
            c.hello(&secret, 0, BUILD);
            assert_eq!(c.next(), Some(ToPlace::Welcome { size: 2 }));
            c.contribute(b"x");
            c
        });
        let mut c = serve(&mut server, vec![handle]).remove(0);
        server.place_died(1);
        let handle = spawn(move || [c.next(), c.next()]);
        assert_eq!(
            serve(&mut server, vec![handle]),
            [[
                Some(ToPlace::PlaceDied { rank: 1 }),
                Some(ToPlace::RoundFailed { rank: 1 })
            ]]
        );
    }

    #[test]
    fn strangers_are_turned_away() {
        let (mut server, secret) = server(2);
        let wrong = JobSecret::random().unwrap();
        let mut stranger = Client::connect(&server);
        let mut other_binary = Client::connect(&server);
        let mut out_of_range = Client::connect(&server);
        let (first_secret, second_secret) = (secret.clone(), secret.clone());
        let handles = vec![
            spawn(move || {
                stranger.hello(&wrong, 0, BUILD);
                stranger.next()
            }),
            spawn(move || {
                other_binary.hello(&first_secret, 1, BUILD + 1);
                other_binary.next()
            }),
            spawn(move || {
                out_of_range.hello(&second_secret, 7, BUILD);
                out_of_range.next()
            }),
        ];
        let answers = serve(&mut server, handles);
        assert_eq!(answers[0], None);
        let Some(ToPlace::Refused { reason }) = &answers[1] else {
            panic!("{:?}", answers[1]);
        };
        assert!(
            reason.contains("place 1 runs a different binary"),
            "{reason}"
        );
        let Some(ToPlace::Refused { reason }) = &answers[2] else {
            panic!("{:?}", answers[2]);
        };
        assert!(reason.contains("out of range"), "{reason}");

        let notices = server.take_notices();
        assert!(
            notices.contains(&Notice::WrongBinary { rank: 1 }),
            "{notices:?}"
        );
        assert!(notices.iter().any(
            |n| matches!(n, Notice::Dropped { reason } if reason.contains("wrong job secret"))
        ));
        assert!(!server.has_joined(0) && !server.has_joined(1));

        // A duplicate rank, and a frame before Hello.
        let mut first = Client::connect(&server);
        let mut second = Client::connect(&server);
        let mut rude = Client::connect(&server);
        let handles = vec![spawn(move || {
            first.hello(&secret, 0, BUILD);
            assert_eq!(first.next(), Some(ToPlace::Welcome { size: 2 }));
            second.hello(&secret, 0, BUILD);
            rude.contribute(b"me first");
            (second.next(), rude.next(), first)
        })];
        let (duplicate, rude, _first) = serve(&mut server, handles).remove(0);
        assert!(
            matches!(duplicate, Some(ToPlace::Refused { reason }) if reason.contains("already joined"))
        );
        assert_eq!(rude, None);
    }
}
