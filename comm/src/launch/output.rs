//! Forwarding of the places' stdout and stderr, each line tagged `[place k] `.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// A line longer than this is forwarded in pieces, each tagged, so that a place printing
/// without newlines cannot make the launcher buffer without bound.
const MAX_LINE: usize = 64 << 10;

/// Which of the launcher's streams a pipe forwards to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// One place's stdout or stderr pipe, read by the launcher's poll loop.
#[derive(Debug)]
pub(crate) struct OutputPipe {
    pipe: File,
    target: Stream,
    tagger: LineTagger,
}

impl OutputPipe {
    pub(crate) fn new(rank: usize, pipe: impl Into<OwnedFd>, target: Stream) -> OutputPipe {
        OutputPipe {
            pipe: File::from(pipe.into()),
            target,
            tagger: LineTagger::new(rank),
        }
    }

    /// Writes the last line, if it lacked a newline (once the place is gone).
    pub(crate) fn finish(&mut self) {
        self.forward_bytes(&[]);
    }

    /// Reads once (the caller knows the pipe is readable, so this does not block) and forwards
    /// every complete line. Returns `false` at end of file, after flushing a last partial line.
    pub(crate) fn forward(&mut self, buf: &mut [u8]) -> bool {
        let n = loop {
            match self.pipe.read(buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("reading a place's output failed: {e}");
                    break 0;
                }
            }
        };
        self.forward_bytes(&buf[..n]);
        n > 0
    }

    /// Forwards `bytes`; no bytes means end of file.
    fn forward_bytes(&mut self, bytes: &[u8]) {
        let result = match self.target {
            Stream::Stdout => self.write(bytes, &mut io::stdout().lock()),
            Stream::Stderr => self.write(bytes, &mut io::stderr().lock()),
        };
        if let Err(e) = result {
            // The launcher's own stdout or stderr is gone (a closed pipe): keep draining the
            // place's pipe so that it never blocks, and drop what it says.
            tracing::debug!("forwarding a place's output failed: {e}");
        }
    }

    fn write(&mut self, bytes: &[u8], out: &mut impl Write) -> io::Result<()> {
        if bytes.is_empty() {
            self.tagger.finish(out)?;
        } else {
            self.tagger.push(bytes, out)?;
        }
        out.flush()
    }
}

impl AsFd for OutputPipe {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.pipe.as_fd()
    }
}

/// Splits a byte stream into lines and writes each with the place's tag.
///
/// Bytes are forwarded as they are: a place's output need not be UTF-8.
#[derive(Debug)]
pub(crate) struct LineTagger {
    tag: Vec<u8>,
    partial: Vec<u8>,
}

impl LineTagger {
    pub(crate) fn new(rank: usize) -> LineTagger {
        LineTagger {
            tag: format!("[place {rank}] ").into_bytes(),
            partial: Vec::new(),
        }
    }

    /// Writes every line `bytes` completes; keeps the rest for the next call.
    pub(crate) fn push(&mut self, mut bytes: &[u8], out: &mut impl Write) -> io::Result<()> {
        let mut tagged = Vec::with_capacity(bytes.len() + self.tag.len());
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            let (line, rest) = bytes.split_at(end + 1);
            tagged.extend_from_slice(&self.tag);
            tagged.append(&mut self.partial);
            tagged.extend_from_slice(line);
            bytes = rest;
        }
        self.partial.extend_from_slice(bytes);
        if self.partial.len() >= MAX_LINE {
            self.flush_partial(&mut tagged);
        }
        out.write_all(&tagged)
    }

    /// Writes the last line if it did not end with a newline (adding one).
    pub(crate) fn finish(&mut self, out: &mut impl Write) -> io::Result<()> {
        let mut tagged = Vec::new();
        self.flush_partial(&mut tagged);
        out.write_all(&tagged)
    }

    fn flush_partial(&mut self, tagged: &mut Vec<u8>) {
        if !self.partial.is_empty() {
            tagged.extend_from_slice(&self.tag);
            tagged.append(&mut self.partial);
            tagged.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(chunks: &[&[u8]]) -> String {
        let mut tagger = LineTagger::new(3);
        let mut out = Vec::new();
        for chunk in chunks {
            tagger.push(chunk, &mut out).unwrap();
        }
        tagger.finish(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_are_tagged_across_chunks() {
        assert_eq!(
            tag(&[b"a\nb", b"c\n\nd"]),
            "[place 3] a\n[place 3] bc\n[place 3] \n[place 3] d\n"
        );
        assert_eq!(tag(&[b"", b"x\n"]), "[place 3] x\n");
        assert_eq!(tag(&[]), "");
    }

    #[test]
    fn overlong_lines_are_cut() {
        let long = vec![b'x'; MAX_LINE + 10];
        let out = tag(&[&long, b"y\n"]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), "[place 3] ".len() + MAX_LINE + 10);
        assert_eq!(lines[1], "[place 3] y");
    }
}
