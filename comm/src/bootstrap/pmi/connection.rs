//! The connection to a PMI server: a socket (`PMI_FD`) or a TCP stream (`PMI_PORT`, the `env`
//! coordinator), over which requests go out and replies come back within a timeout.
//!
//! Which bytes a request is ([`super::wire`]) depends on the protocol in use: PMI-1 lines until
//! a PMI-2 start switches the connection to PMI-2 messages ([`Connection::switch_to_v2`]).

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::wire::{Line, LineReader, Read1};
use crate::{Error, Result};

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

    /// From now on, requests and replies are PMI-2 messages (after a PMI-1 `init` that asked
    /// for version 2 and was answered so).
    pub(crate) fn switch_to_v2(&mut self) {
        self.v2 = true;
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
