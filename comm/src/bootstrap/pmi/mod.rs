//! A PMI client in pure Rust, over the socket of `PMI_FD`, a TCP connection to `PMI_PORT`,
//! or a TCP connection to the `env` bootstrap's coordinator (which serves PMI-1).
//!
//! Two wire protocols ([`wire`]): PMI-1 "simple" lines, the default, which hydra, Slurm's
//! `--mpi=pmi2` plugin and the coordinator all answer; and PMI-2 length-prefixed messages
//! (`ATOLL_PMI_VERSION=2`, over `PMI_FD`), which hydra and Slurm answer too. Under PMI-2
//! the fence is not a barrier at hydra (a get waits for its value instead), so a barrier
//! there is an all-gather of nothing.
//!
//! The all-gather is a key-value exchange: each place puts its blob (split into values that
//! respect the server's `vallen_max`, see [`super::chunks`]) under keys of the round and its
//! rank, enters the barrier, then gets every other place's values. Every reply is checked
//! ([`wire`]); a server that does not answer a request within the timeout is an error. The
//! barrier has no time limit: it ends when the slowest place enters it, or with an error when
//! the server ends the job or reports a place gone.

pub(crate) mod fd;
pub(crate) mod wire;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::chunks;
use crate::{Error, Result};
use wire::{Line, LineReader, Read1};

/// The longest line MPICH's simple PMI client and server take.
const PMI_LINE_MAX: usize = 1024;

/// The connection to a PMI server.
#[derive(Debug)]
pub(crate) enum Stream {
    /// The socket of `PMI_FD`.
    Unix(UnixStream),
    /// A TCP connection (`PMI_PORT`, or the `env` coordinator).
    Tcp(TcpStream),
}

impl Stream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(timeout),
            Stream::Tcp(s) => s.set_read_timeout(timeout),
        }
    }
}

impl std::io::Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A connection that speaks PMI-1 lines or PMI-2 messages, with a timeout on every answer
/// that is due at once.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: Stream,
    /// Whether PMI-2 messages are in use (after the PMI-1 `init` that asked for version 2).
    v2: bool,
    lines: LineReader,
    timeout: Duration,
    /// Names the server in errors, e.g. "the PMI server (PMI_FD=6)".
    server: String,
    /// What to check when the server does not answer.
    hint: &'static str,
}

impl Connection {
    pub(crate) fn new(
        stream: Stream,
        timeout: Duration,
        server: String,
        hint: &'static str,
    ) -> Connection {
        Connection {
            stream,
            v2: false,
            lines: LineReader::default(),
            timeout,
            server,
            hint,
        }
    }

    /// Sends `cmd` with `fields`.
    pub(crate) fn send(&mut self, cmd: &str, fields: &[(&str, &str)]) -> Result<()> {
        let line = if self.v2 {
            Line::format_v2(cmd, fields)
        } else {
            Line::format(cmd, fields)
        };
        self.stream.write_all(line.as_bytes()).map_err(|e| {
            Error::io(
                format!(
                    "sending `cmd={cmd}` to {} (did the launcher end the job?)",
                    self.server
                ),
                e,
            )
        })
    }

    /// Receives the reply to `cmd`, within the timeout (`wait_long`: without a time limit).
    pub(crate) fn receive(&mut self, cmd: &str, wait_long: bool) -> Result<Line> {
        let timeout = (!wait_long).then_some(self.timeout);
        self.stream
            .set_read_timeout(timeout)
            .map_err(|e| Error::io(format!("setting a read timeout on {}", self.server), e))?;
        let read = if self.v2 {
            self.lines.read_v2(&mut self.stream)?
        } else {
            self.lines.read_line(&mut self.stream)?
        };
        match read {
            Read1::Line(text) if self.v2 => Line::parse_v2(&text),
            Read1::Line(text) => Line::parse(&text),
            Read1::Closed => Err(Error::bootstrap(format!(
                "{} closed the connection instead of answering `cmd={cmd}` (did the launcher \
                 end the job, or another place fail?)",
                self.server
            ))),
            Read1::TimedOut => Err(Error::bootstrap(format!(
                "{} did not answer `cmd={cmd}` within {} s (ATOLL_CONNECT_TIMEOUT_S): {}",
                self.server,
                self.timeout.as_secs_f64(),
                self.hint
            ))),
        }
    }

    /// Sends a request and returns its reply `cmd=reply` (with `rc` 0 when it has one).
    pub(crate) fn call(&mut self, cmd: &str, fields: &[(&str, &str)], reply: &str) -> Result<Line> {
        self.send(cmd, fields)?;
        self.receive(cmd, false)?.expect(reply)
    }
}

/// The wire protocol a [`PmiClient`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    /// PMI-1 "simple": lines (hydra, `srun --mpi=pmi2`, the env coordinator).
    One,
    /// PMI-2: length-prefixed messages (hydra, `srun --mpi=pmi2`).
    Two,
}

/// PMI-2's limits on keys and values (MPICH's `PMI2_MAX_KEYLEN` and `PMI2_MAX_VALLEN`).
const PMI2_MAX_KEY: usize = 64;
const PMI2_MAX_VALUE: usize = 1024;

/// What a PMI server told this process at start.
#[derive(Debug)]
pub struct PmiClient {
    version: Version,
    rank: usize,
    size: usize,
    kvsname: String,
    appnum: Option<usize>,
    max_key: usize,
    max_value: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    conn: Connection,
    round: u64,
    finalized: bool,
}

impl Inner {
    /// The connection, unless this place has finalized.
    fn conn(&mut self) -> Result<&mut Connection> {
        if self.finalized {
            return Err(Error::bootstrap(
                "this place has already left the job (PMI finalize)",
            ));
        }
        Ok(&mut self.conn)
    }
}

impl PmiClient {
    /// Runs the PMI-1 start (`init`, `get_maxes`, `get_my_kvsname`, `get_appnum`) on `conn`,
    /// for the place `rank` of `size` (which the caller learned from the environment, or from
    /// the `PMI_PORT` handshake).
    pub(crate) fn start(mut conn: Connection, rank: usize, size: usize) -> Result<PmiClient> {
        conn.call(
            "init",
            &[("pmi_version", "1"), ("pmi_subversion", "1")],
            "response_to_init",
        )?;
        let maxes = conn.call("get_maxes", &[], "maxes")?;
        let max_key = maxes.number("keylen_max")?;
        let max_value = maxes.number("vallen_max")?;
        let kvsname = conn
            .call("get_my_kvsname", &[], "my_kvsname")?
            .require("kvsname")?
            .to_owned();
        if !wire::is_word(&kvsname) {
            return Err(Error::bootstrap(format!(
                "the PMI server's kvsname {kvsname:?} cannot be sent back on a PMI line"
            )));
        }
        // Slurm answers appnum=-1 when it cannot tell (a `--multi-prog` step).
        let appnum = conn.call("get_appnum", &[], "appnum")?;
        let appnum = match appnum.require("appnum")? {
            "-1" => None,
            _ => Some(appnum.number("appnum")?),
        };
        // Room for a key of the form atoll-<round>-<rank>-<piece>.
        if max_key < 32 {
            return Err(Error::bootstrap(format!(
                "the PMI server allows keys of {max_key} bytes only; Atoll needs 32"
            )));
        }
        // A put line must fit in MPICH's 1024-byte line, whatever vallen_max says.
        let overhead = "cmd=put kvsname= key= value=\n".len() + kvsname.len() + 32;
        let max_value = max_value.min(PMI_LINE_MAX.saturating_sub(overhead));
        if max_value < 16 {
            return Err(Error::bootstrap(format!(
                "the PMI server allows values of {max_value} bytes only (with kvsname \
                 {kvsname:?}); Atoll needs 16"
            )));
        }
        if rank >= size {
            return Err(Error::bootstrap(format!(
                "the PMI server gave rank {rank} in a job of {size}"
            )));
        }
        Ok(PmiClient {
            version: Version::One,
            rank,
            size,
            kvsname,
            appnum,
            max_key,
            max_value,
            inner: Mutex::new(Inner {
                conn,
                round: 0,
                finalized: false,
            }),
        })
    }

    /// Runs the PMI-2 start on `conn`: a PMI-1 `init` asking for version 2, then PMI-2
    /// `fullinit` (rank, size, appnum) and `job-getid`. `pmi_id` is this process's
    /// `PMI_ID` or `PMI_RANK`; `job` its `PMI_JOBID`, which Slurm requires.
    pub(crate) fn start_v2(
        mut conn: Connection,
        pmi_id: &str,
        job: Option<&str>,
    ) -> Result<PmiClient> {
        if !wire::is_word(pmi_id) || !job.is_none_or(wire::is_word) {
            return Err(Error::bootstrap(format!(
                "PMI_RANK={pmi_id:?} or PMI_JOBID={job:?} is not a PMI word"
            )));
        }
        let init = conn.call(
            "init",
            &[("pmi_version", "2"), ("pmi_subversion", "0")],
            "response_to_init",
        )?;
        if init.get("pmi_version") != Some("2") {
            return Err(Error::bootstrap(format!(
                "the PMI server does not speak PMI-2 (it answered pmi_version={:?}); unset \
                 ATOLL_PMI_VERSION to use PMI-1",
                init.get("pmi_version")
            )));
        }
        conn.v2 = true;
        let mut fields = vec![("pmirank", pmi_id), ("threaded", "FALSE")];
        if let Some(job) = job {
            fields.insert(0, ("pmijobid", job));
        }
        let full = conn.call("fullinit", &fields, "fullinit-response")?;
        let (rank, size) = (full.number("rank")?, full.number("size")?);
        let appnum = match full.get("appnum") {
            None | Some("-1") => None,
            Some(_) => Some(full.number("appnum")?),
        };
        let kvsname = conn
            .call("job-getid", &[], "job-getid-response")?
            .require("jobid")?
            .to_owned();
        if !wire::is_word(&kvsname) {
            return Err(Error::bootstrap(format!(
                "the PMI server's job id {kvsname:?} cannot be sent back in a PMI message"
            )));
        }
        if rank >= size {
            return Err(Error::bootstrap(format!(
                "the PMI server gave rank {rank} in a job of {size}"
            )));
        }
        Ok(PmiClient {
            version: Version::Two,
            rank,
            size,
            kvsname,
            appnum,
            max_key: PMI2_MAX_KEY,
            // A margin below the limit: servers count the terminating NUL differently.
            max_value: PMI2_MAX_VALUE - 16,
            inner: Mutex::new(Inner {
                conn,
                round: 0,
                finalized: false,
            }),
        })
    }

    /// The wire protocol in use.
    pub(crate) fn version(&self) -> Version {
        self.version
    }

    pub(crate) fn rank(&self) -> usize {
        self.rank
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// The key-value space's name, which names the job.
    pub(crate) fn kvsname(&self) -> &str {
        &self.kvsname
    }

    /// The application's index in an MPMD launch (`a : b`), when the server knows it.
    pub(crate) fn appnum(&self) -> Option<usize> {
        self.appnum
    }

    /// Contributes `blob`; returns every place's, indexed by rank.
    pub(crate) fn allgather(&self, blob: &[u8]) -> Result<Vec<Vec<u8>>> {
        if blob.len() > chunks::MAX_BLOB {
            return Err(Error::PayloadTooLarge {
                len: blob.len(),
                limit: chunks::MAX_BLOB,
            });
        }
        let mut inner = lock(&self.inner);
        inner.conn()?;
        inner.round += 1;
        let round = inner.round;
        let key = |rank: usize, piece: usize| format!("atoll-{round}-{rank}-{piece}");
        let kvs = self.kvsname.as_str();
        let conn = &mut inner.conn;
        for (piece, value) in chunks::split(blob, self.max_value).iter().enumerate() {
            let key = key(self.rank, piece);
            if key.len() > self.max_key {
                return Err(Error::bootstrap(format!(
                    "the PMI key {key} is longer than the server's {} bytes",
                    self.max_key
                )));
            }
            put(conn, self.version, kvs, &key, value)?;
        }
        barrier(conn, self.version)?;
        let mut blobs = Vec::with_capacity(self.size);
        for rank in 0..self.size {
            if rank == self.rank {
                blobs.push(blob.to_vec());
                continue;
            }
            let version = self.version;
            let mut get =
                |piece| -> Result<String> { get(conn, version, kvs, rank, &key(rank, piece)) };
            let first = get(0)?;
            let (count, head) = chunks::first(&first)?;
            let mut pieces = Vec::with_capacity(count);
            pieces.push(head.to_owned());
            for piece in 1..count {
                pieces.push(get(piece)?);
            }
            blobs.push(chunks::join(&pieces)?);
        }
        Ok(blobs)
    }

    /// Returns when every place has entered the barrier. Under PMI-2 the fence is not a
    /// barrier (hydra answers it at once; gets wait for the values instead), so the barrier
    /// is an all-gather of nothing there.
    pub(crate) fn barrier(&self) -> Result<()> {
        match self.version {
            Version::One => barrier(lock(&self.inner).conn()?, self.version),
            Version::Two => self.allgather(&[]).map(drop),
        }
    }

    /// Leaves the job (`cmd=finalize`), once; later collectives are errors. The launcher
    /// takes a process that exits without it for one that failed.
    pub(crate) fn finalize(&self) -> Result<()> {
        let mut inner = lock(&self.inner);
        if std::mem::replace(&mut inner.finalized, true) {
            return Ok(());
        }
        let reply = match self.version {
            Version::One => "finalize_ack",
            Version::Two => "finalize-response",
        };
        inner.conn.call("finalize", &[], reply).map(drop)
    }
}

/// Enters the barrier (PMI-2: the fence) and waits, without a time limit, for its end: after
/// it, every value put before it can be read (PMI-1: at once; PMI-2: a get may wait).
fn barrier(conn: &mut Connection, version: Version) -> Result<()> {
    let (cmd, reply) = match version {
        Version::One => ("barrier_in", "barrier_out"),
        Version::Two => ("kvs-fence", "kvs-fence-response"),
    };
    conn.send(cmd, &[])?;
    conn.receive(cmd, true)?.expect(reply)?;
    Ok(())
}

fn put(conn: &mut Connection, version: Version, kvs: &str, key: &str, value: &str) -> Result<()> {
    match version {
        Version::One => conn.call(
            "put",
            &[("kvsname", kvs), ("key", key), ("value", value)],
            "put_result",
        ),
        Version::Two => conn.call(
            "kvs-put",
            &[("key", key), ("value", value)],
            "kvs-put-response",
        ),
    }
    .map(drop)
}

/// The value of `key`, which place `rank` put.
fn get(
    conn: &mut Connection,
    version: Version,
    kvs: &str,
    rank: usize,
    key: &str,
) -> Result<String> {
    let line = match version {
        Version::One => conn.call("get", &[("kvsname", kvs), ("key", key)], "get_result")?,
        Version::Two => {
            // Hydra holds a get until the value is put (its fence does not wait): a place
            // slower than this one delays the answer, so it has no time limit.
            let fields = [("jobid", kvs), ("srcid", &rank.to_string()), ("key", key)];
            conn.send("kvs-get", &fields)?;
            let line = conn.receive("kvs-get", true)?.expect("kvs-get-response")?;
            if line.get("found") != Some("TRUE") {
                return Err(Error::bootstrap(format!(
                    "the PMI server has no value {key} of place {rank}"
                )));
            }
            line
        }
    };
    Ok(line.require("value")?.to_owned())
}

impl Drop for PmiClient {
    fn drop(&mut self) {
        if let Err(e) = self.finalize() {
            tracing::debug!("PMI finalize: {e}");
        }
    }
}

/// The connection's state is plain data that a panic cannot leave half-updated.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `PMI_PORT` handshake: `cmd=initack pmiid=ID`, answered by `initack`, then the rank,
/// size and debug flag as `cmd=set` lines. Returns (rank, size).
pub(crate) fn port_handshake(conn: &mut Connection, pmi_id: &str) -> Result<(usize, usize)> {
    if !wire::is_word(pmi_id) {
        return Err(Error::bootstrap(format!(
            "PMI_ID={pmi_id:?} is not a PMI word"
        )));
    }
    conn.call("initack", &[("pmiid", pmi_id)], "initack")?;
    let (mut rank, mut size) = (None, None);
    for _ in 0..3 {
        let set = conn.receive("initack", false)?.expect("set")?;
        if set.get("size").is_some() {
            size = Some(set.number("size")?);
        } else if set.get("rank").is_some() {
            rank = Some(set.number("rank")?);
        }
    }
    match (rank, size) {
        (Some(rank), Some(size)) if rank < size => Ok((rank, size)),
        _ => Err(Error::bootstrap(format!(
            "the PMI server's answer to initack gave rank {rank:?} and size {size:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::thread;

    /// A PMI server on the other end of a socket pair, answering each request line with
    /// `answer` (no answer: `None`); it ends when the client closes.
    fn server(
        answer: impl Fn(&Line, &mut HashMap<String, String>) -> Option<String> + Send + 'static,
        timeout: Duration,
    ) -> Connection {
        let (client, mut theirs) = UnixStream::pair().unwrap();
        thread::spawn(move || {
            let mut lines = LineReader::default();
            let mut kvs = HashMap::new();
            while let Ok(Read1::Line(text)) = lines.read_line(&mut theirs) {
                let line = Line::parse(&text).unwrap();
                if let Some(reply) = answer(&line, &mut kvs) {
                    if theirs.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            }
        });
        Connection::new(
            Stream::Unix(client),
            timeout,
            "the test server".into(),
            "a hint",
        )
    }

    /// Answers as Slurm's pmi2 plugin does to PMI-1 lines (rc on every reply, appnum=-1,
    /// kvsname `job.step`), with place 1's blob already in the store.
    fn slurm(line: &Line, kvs: &mut HashMap<String, String>) -> Option<String> {
        Some(match line.cmd.as_str() {
            "init" => "cmd=response_to_init rc=0 pmi_version=1 pmi_subversion=1\n".into(),
            "get_maxes" => "cmd=maxes rc=0 kvsname_max=256 keylen_max=64 vallen_max=1024\n".into(),
            "get_my_kvsname" => "cmd=my_kvsname rc=0 kvsname=3.0\n".into(),
            "get_appnum" => "cmd=appnum rc=0 appnum=-1\n".into(),
            "put" => {
                kvs.insert(line.get("key")?.into(), line.get("value")?.into());
                "cmd=put_result rc=0\n".into()
            }
            "barrier_in" => {
                for (i, value) in chunks::split(&[9; 5000], 200).iter().enumerate() {
                    kvs.insert(format!("atoll-1-1-{i}"), value.clone());
                }
                "cmd=barrier_out rc=0\n".into()
            }
            "get" => match kvs.get(line.get("key")?) {
                Some(v) => format!("cmd=get_result rc=0 value={v}\n"),
                None => "cmd=get_result rc=1\n".into(),
            },
            "finalize" => "cmd=finalize_ack rc=0\n".into(),
            _ => return None,
        })
    }

    #[test]
    fn gathers_through_a_slurm_style_server() {
        let client = PmiClient::start(server(slurm, Duration::from_secs(10)), 0, 2).unwrap();
        assert_eq!(
            (client.rank(), client.size(), client.kvsname()),
            (0, 2, "3.0")
        );
        assert_eq!(client.appnum(), None);
        let all = client.allgather(&[1; 3000]).unwrap();
        assert_eq!(all, vec![vec![1; 3000], vec![9; 5000]]);
        client.finalize().unwrap();
        assert!(
            client.allgather(b"late").is_err(),
            "a collective after finalize"
        );
    }

    #[test]
    fn malformed_or_missing_answers_are_errors() {
        let t = Duration::from_secs(10);
        let garbage = |line: &Line, _: &mut HashMap<String, String>| {
            (line.cmd == "init").then(|| "garbage\n".to_owned())
        };
        assert!(PmiClient::start(server(garbage, t), 0, 1).is_err());
        let bad_maxes = |line: &Line, kvs: &mut HashMap<String, String>| match line.cmd.as_str() {
            "get_maxes" => Some("cmd=maxes keylen_max=64 vallen_max=lots\n".into()),
            _ => slurm(line, kvs),
        };
        assert!(PmiClient::start(server(bad_maxes, t), 0, 1).is_err());
        let wrong_reply = |line: &Line, kvs: &mut HashMap<String, String>| match line.cmd.as_str() {
            "get_my_kvsname" => Some("cmd=barrier_out\n".into()),
            _ => slurm(line, kvs),
        };
        assert!(PmiClient::start(server(wrong_reply, t), 0, 1).is_err());
        // A blob header that lies about its count, and a value that is not base64.
        for bad in ["99999999.AAAA", "2.AA", "1.!!!!"] {
            let liar = move |line: &Line, kvs: &mut HashMap<String, String>| match line.cmd.as_str()
            {
                "get" if line.get("key") == Some("atoll-1-1-0") => {
                    Some(format!("cmd=get_result rc=0 value={bad}\n"))
                }
                _ => slurm(line, kvs),
            };
            let client = PmiClient::start(server(liar, t), 0, 2).unwrap();
            assert!(client.allgather(b"x").is_err(), "{bad}");
        }
        let failing_barrier =
            |line: &Line, kvs: &mut HashMap<String, String>| match line.cmd.as_str() {
                "barrier_in" => Some("cmd=barrier_out rc=1 msg=place_1_left\n".into()),
                _ => slurm(line, kvs),
            };
        let client = PmiClient::start(server(failing_barrier, t), 0, 2).unwrap();
        let err = client.barrier().unwrap_err().to_string();
        assert!(err.contains("place 1 left"), "{err}");
        assert!(
            PmiClient::start(server(slurm, t), 2, 2).is_err(),
            "rank outside the job"
        );
    }

    #[test]
    fn a_server_that_does_not_answer_times_out() {
        let silent = |_: &Line, _: &mut HashMap<String, String>| None;
        let err = PmiClient::start(server(silent, Duration::from_millis(300)), 0, 1).unwrap_err();
        assert!(
            err.to_string().contains("did not answer `cmd=init`"),
            "{err}"
        );
        let (client, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        let conn = Connection::new(
            Stream::Unix(client),
            Duration::from_secs(5),
            "gone".into(),
            "",
        );
        assert!(PmiClient::start(conn, 0, 1).is_err());
    }

    /// A PMI-2 server as Slurm's: PMI-1 `init`, then PMI-2 messages; its fence is a barrier
    /// of one place here, and place 1's values are already stored.
    fn slurm_v2(timeout: Duration) -> Connection {
        let (client, mut theirs) = UnixStream::pair().unwrap();
        thread::spawn(move || {
            let mut lines = LineReader::default();
            let Ok(Read1::Line(_init)) = lines.read_line(&mut theirs) else {
                return;
            };
            let reply = "cmd=response_to_init pmi_version=2 pmi_subversion=0 rc=0\n";
            theirs.write_all(reply.as_bytes()).unwrap();
            let mut kvs: HashMap<String, String> = HashMap::new();
            for (i, value) in chunks::split(&[7; 2500], 1000).iter().enumerate() {
                kvs.insert(format!("atoll-1-1-{i}"), value.clone());
            }
            while let Ok(Read1::Line(body)) = lines.read_v2(&mut theirs) {
                let req = Line::parse_v2(&body).unwrap();
                let reply = match req.cmd.as_str() {
                    "fullinit" => Line::format_v2(
                        "fullinit-response",
                        &[("rc", "0"), ("rank", "0"), ("size", "2"), ("appnum", "0")],
                    ),
                    "job-getid" => {
                        Line::format_v2("job-getid-response", &[("jobid", "7.0"), ("rc", "0")])
                    }
                    "kvs-put" => {
                        kvs.insert(
                            req.require("key").unwrap().into(),
                            req.require("value").unwrap().into(),
                        );
                        Line::format_v2("kvs-put-response", &[("rc", "0")])
                    }
                    "kvs-fence" => Line::format_v2("kvs-fence-response", &[("rc", "0")]),
                    "kvs-get" => match kvs.get(req.require("key").unwrap()) {
                        Some(v) => Line::format_v2(
                            "kvs-get-response",
                            &[("found", "TRUE"), ("value", v), ("rc", "0")],
                        ),
                        None => {
                            Line::format_v2("kvs-get-response", &[("found", "FALSE"), ("rc", "0")])
                        }
                    },
                    "finalize" => Line::format_v2("finalize-response", &[("rc", "0")]),
                    _ => return,
                };
                if theirs.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        });
        Connection::new(
            Stream::Unix(client),
            timeout,
            "the test server".into(),
            "a hint",
        )
    }

    #[test]
    fn gathers_through_a_pmi2_server() {
        let client =
            PmiClient::start_v2(slurm_v2(Duration::from_secs(10)), "0", Some("7.0")).unwrap();
        assert_eq!(
            (client.rank(), client.size(), client.kvsname()),
            (0, 2, "7.0")
        );
        assert_eq!((client.version(), client.appnum()), (Version::Two, Some(0)));
        let all = client.allgather(&[3; 4000]).unwrap();
        assert_eq!(all, vec![vec![3; 4000], vec![7; 2500]]);
        // The next round's values of place 1 were never put: found=FALSE is an error.
        assert!(client.allgather(b"x").is_err());
        client.finalize().unwrap();
        // A PMI-1 server refuses version 2 in its own words.
        let err =
            PmiClient::start_v2(server(slurm, Duration::from_secs(10)), "0", None).unwrap_err();
        assert!(err.to_string().contains("does not speak PMI-2"), "{err}");
    }

    #[test]
    fn the_port_handshake_reads_rank_and_size() {
        let t = Duration::from_secs(10);
        let hydra = |line: &Line, _: &mut HashMap<String, String>| {
            (line.cmd == "initack").then(|| {
                "cmd=initack\ncmd=set size=4\ncmd=set rank=2\ncmd=set debug=0\n".to_owned()
            })
        };
        assert_eq!(port_handshake(&mut server(hydra, t), "2").unwrap(), (2, 4));
        let bad = |line: &Line, _: &mut HashMap<String, String>| {
            (line.cmd == "initack").then(|| {
                "cmd=initack\ncmd=set size=2\ncmd=set rank=5\ncmd=set debug=0\n".to_owned()
            })
        };
        assert!(port_handshake(&mut server(bad, t), "5").is_err());
        assert!(port_handshake(&mut server(hydra, t), "a b").is_err());
    }
}
