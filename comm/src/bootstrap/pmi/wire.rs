//! The PMI wire protocols. PMI-1 "simple": one line per message, `cmd=NAME key=value ...\n`.
//! PMI-2: a 6-byte decimal length, then `cmd=NAME;key=value;...;` (`;;` is a `;` in a value);
//! a PMI-2 client starts with the PMI-1 line `cmd=init pmi_version=2 pmi_subversion=0`,
//! then speaks PMI-2 (`fullinit`, `job-getid`, `kvs-put`, `kvs-fence`, `kvs-get`,
//! `finalize`).
//!
//! MPICH's hydra (`mpiexec`), Slurm's `srun --mpi=pmi2` (whose server also answers PMI-1
//! lines) and Atoll's own `env` coordinator speak it. A line is split on spaces; each word
//! is `key=value`, split at its first `=`; the first word is `cmd=`. Replies are a peer's
//! bytes: a line that does not have this form, is too long, or is not UTF-8 is an error,
//! never a panic.
//!
//! | request | reply |
//! |---|---|
//! | `cmd=initack pmiid=N` (over `PMI_PORT` only, first) | `cmd=initack`, then `cmd=set size=`, `cmd=set rank=`, `cmd=set debug=` |
//! | `cmd=init pmi_version=1 pmi_subversion=1` | `cmd=response_to_init ... rc=0` |
//! | `cmd=get_maxes` | `cmd=maxes kvsname_max= keylen_max= vallen_max=` |
//! | `cmd=get_appnum` | `cmd=appnum appnum=` |
//! | `cmd=get_my_kvsname` | `cmd=my_kvsname kvsname=` |
//! | `cmd=put kvsname= key= value=` | `cmd=put_result rc=0` |
//! | `cmd=barrier_in` | `cmd=barrier_out` (when every process has entered) |
//! | `cmd=get kvsname= key=` | `cmd=get_result rc=0 value=` |
//! | `cmd=finalize` | `cmd=finalize_ack` |

use std::io::{self, Read};

use crate::{Error, Result};

/// The longest line accepted from a peer (MPICH's own limit is 1024 bytes).
pub(crate) const MAX_LINE: usize = 64 << 10;
/// The length prefix of a PMI-2 message: a decimal number, padded with spaces to 6 bytes.
const V2_PREFIX: usize = 6;

/// One parsed line: its command and its other fields, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) cmd: String,
    pub(crate) fields: Vec<(String, String)>,
}

impl Line {
    /// Parses one line (without its `\n`).
    pub(crate) fn parse(text: &str) -> Result<Line> {
        Line::from_words(text, text.split(' ').filter(|w| !w.is_empty()))
    }

    /// Parses the body of a PMI-2 message: `cmd=NAME;key=value;...;`, where `;;` stands for
    /// a `;` inside a value.
    pub(crate) fn parse_v2(text: &str) -> Result<Line> {
        let mut words = Vec::new();
        let mut word = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                ';' if chars.peek() == Some(&';') => {
                    chars.next();
                    word.push(';');
                }
                ';' => words.push(std::mem::take(&mut word)),
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            words.push(word);
        }
        Line::from_words(text, words.iter().map(String::as_str))
    }

    /// A line from its words: `cmd=NAME` first, then `key=value` words.
    fn from_words<'a>(text: &str, mut words: impl Iterator<Item = &'a str>) -> Result<Line> {
        let malformed = |why: &str| {
            Error::bootstrap(format!(
                "malformed PMI message {:?}: {why}",
                text.chars().take(200).collect::<String>()
            ))
        };
        let first = words.next().ok_or_else(|| malformed("it is empty"))?;
        let cmd = first
            .strip_prefix("cmd=")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| malformed("it does not start with cmd=NAME"))?;
        let mut fields = Vec::new();
        for word in words {
            let (key, value) = word
                .split_once('=')
                .ok_or_else(|| malformed("a word is not key=value"))?;
            if key.is_empty() {
                return Err(malformed("a field has an empty key"));
            }
            fields.push((key.to_owned(), value.to_owned()));
        }
        Ok(Line {
            cmd: cmd.to_owned(),
            fields,
        })
    }

    /// Formats a PMI-2 request: the 6-byte length prefix, then `cmd=NAME;key=value;...;`.
    pub(crate) fn format_v2(cmd: &str, fields: &[(&str, &str)]) -> String {
        let mut body = format!("cmd={cmd};");
        for (key, value) in fields {
            debug_assert!(is_word(key) && is_word(value), "{key}={value}");
            body.push_str(key);
            body.push('=');
            body.push_str(value);
            body.push(';');
        }
        format!("{:>6}{body}", body.len())
    }

    /// Formats a request. Keys and values are Atoll's own (checked by the callers to hold no
    /// space, `=` or newline); the line ends with `\n`.
    pub(crate) fn format(cmd: &str, fields: &[(&str, &str)]) -> String {
        let mut line = format!("cmd={cmd}");
        for (key, value) in fields {
            debug_assert!(is_word(key) && is_word(value), "{key}={value}");
            line.push(' ');
            line.push_str(key);
            line.push('=');
            line.push_str(value);
        }
        line.push('\n');
        line
    }

    /// The value of field `key`, if present.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of field `key`, or an error naming the reply.
    pub(crate) fn require(&self, key: &str) -> Result<&str> {
        self.get(key).ok_or_else(|| {
            Error::bootstrap(format!(
                "the PMI server's `cmd={}` reply has no `{key}=` field",
                self.cmd
            ))
        })
    }

    /// The value of field `key` as a number.
    pub(crate) fn number(&self, key: &str) -> Result<usize> {
        let value = self.require(key)?;
        value.parse().map_err(|_| {
            Error::bootstrap(format!(
                "the PMI server's `cmd={}` reply has {key}={value:?}, not a whole number",
                self.cmd
            ))
        })
    }

    /// Checks that this is a reply `cmd=expected` whose `rc` (when present) is 0.
    pub(crate) fn expect(self, expected: &str) -> Result<Line> {
        if self.cmd != expected {
            return Err(Error::bootstrap(format!(
                "the PMI server answered `cmd={}` where `cmd={expected}` was due",
                self.cmd
            )));
        }
        match self.get("rc") {
            None | Some("0") => Ok(self),
            Some(rc) => Err(Error::bootstrap(format!(
                "the PMI server answered `cmd={expected}` with rc={rc} ({})",
                // Servers write messages with `_` for spaces (a value cannot hold one).
                self.get("msg").unwrap_or("no message").replace('_', " ")
            ))),
        }
    }
}

/// Whether `s` can be a key or value on a line: not empty, no space, `=`, `;` or control
/// character (`;` is the separator of PMI-2's wire; keeping it out keeps values portable).
pub(crate) fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'=' && b != b';')
}

/// Reads `\n`-terminated lines from a stream, at most [`MAX_LINE`] bytes each.
#[derive(Debug, Default)]
pub(crate) struct LineReader {
    buf: Vec<u8>,
}

/// What reading a line found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read1 {
    /// A whole line, without its `\n`.
    Line(String),
    /// The peer closed the stream (between lines).
    Closed,
    /// The read timed out (the stream's read timeout).
    TimedOut,
}

impl LineReader {
    /// Reads until a whole line has arrived, the stream ends, or its read timeout passes.
    pub(crate) fn read_line(&mut self, stream: &mut impl Read) -> Result<Read1> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return text(line).map(Read1::Line);
            }
            if let Some(end) = self.fill(stream)? {
                return Ok(end);
            }
        }
    }

    /// Reads one PMI-2 message (a 6-character decimal length, then that many bytes), until
    /// it has arrived, the stream ends, or its read timeout passes. Returns its body.
    pub(crate) fn read_v2(&mut self, stream: &mut impl Read) -> Result<Read1> {
        loop {
            if self.buf.len() >= V2_PREFIX {
                let prefix = std::str::from_utf8(&self.buf[..V2_PREFIX]).ok();
                let len: usize = prefix
                    .and_then(|p| p.trim().parse().ok())
                    .filter(|&len| len <= MAX_LINE)
                    .ok_or_else(|| {
                        Error::bootstrap(format!(
                            "the PMI peer sent a PMI-2 length prefix {:?}, not a length up to \
                             {MAX_LINE}",
                            String::from_utf8_lossy(&self.buf[..V2_PREFIX])
                        ))
                    })?;
                if self.buf.len() >= V2_PREFIX + len {
                    let message: Vec<u8> =
                        self.buf.drain(..V2_PREFIX + len).skip(V2_PREFIX).collect();
                    return text(message).map(Read1::Line);
                }
            }
            if let Some(end) = self.fill(stream)? {
                return Ok(end);
            }
        }
    }

    /// Reads once more from the stream: `None` when bytes arrived, or how the read ended.
    fn fill(&mut self, stream: &mut impl Read) -> Result<Option<Read1>> {
        if self.buf.len() > MAX_LINE + V2_PREFIX {
            return Err(Error::bootstrap(format!(
                "the PMI peer sent a line longer than {MAX_LINE} bytes"
            )));
        }
        let mut chunk = [0; 4096];
        loop {
            return match stream.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => Ok(Some(Read1::Closed)),
                Ok(0) => Err(Error::bootstrap(
                    "the PMI peer closed the connection in the middle of a message",
                )),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    Ok(None)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    Ok(Some(Read1::TimedOut))
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset && self.buf.is_empty() => {
                    Ok(Some(Read1::Closed))
                }
                Err(e) => Err(Error::io("reading from the PMI connection", e)),
            };
        }
    }
}

fn text(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes)
        .map_err(|_| Error::bootstrap("the PMI peer sent a message that is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replies_of_hydra_and_slurm() {
        let l = Line::parse("cmd=maxes kvsname_max=256 keylen_max=64 vallen_max=1024").unwrap();
        assert_eq!(l.cmd, "maxes");
        assert_eq!(l.number("vallen_max").unwrap(), 1024);
        let l = Line::parse("cmd=get_result rc=0 msg=success value=(vector,(0,1,4))").unwrap();
        assert_eq!(
            l.clone().expect("get_result").unwrap().get("value"),
            Some("(vector,(0,1,4))")
        );
        // Values may hold `=` after the first one; extra spaces are ignored.
        let l = Line::parse("cmd=set  size=4 x=a=b ").unwrap();
        assert_eq!(l.get("x"), Some("a=b"));
        assert_eq!(l.number("size").unwrap(), 4);
        assert_eq!(Line::parse("cmd=barrier_out").unwrap().fields, vec![]);
    }

    #[test]
    fn malformed_replies_are_errors() {
        for bad in [
            "",
            "   ",
            "hello",
            "cmd=",
            "size=4 cmd=set",
            "cmd=set size",
            "cmd=set =4",
        ] {
            assert!(Line::parse(bad).is_err(), "{bad:?} parsed");
        }
        let l = Line::parse("cmd=maxes vallen_max=-3").unwrap();
        assert!(l.number("vallen_max").is_err());
        assert!(l.number("keylen_max").is_err());
        assert!(Line::parse("cmd=put_result rc=1 msg=duplicate")
            .unwrap()
            .expect("put_result")
            .is_err());
        assert!(Line::parse("cmd=barrier_out")
            .unwrap()
            .expect("get_result")
            .is_err());
    }

    #[test]
    fn formats_requests() {
        assert_eq!(
            Line::format(
                "put",
                &[("kvsname", "kvs_1_0"), ("key", "k"), ("value", "v")]
            ),
            "cmd=put kvsname=kvs_1_0 key=k value=v\n"
        );
        let parsed = Line::parse(Line::format("get_maxes", &[]).trim_end()).unwrap();
        assert_eq!(parsed.cmd, "get_maxes");
        assert!(is_word("a-b_C9"));
        assert!(!is_word("a b") && !is_word("a=b") && !is_word("") && !is_word("a;b"));
    }

    #[test]
    fn pmi2_messages_round_trip_and_malformed_ones_are_errors() {
        let wire = Line::format_v2("kvs-get", &[("jobid", "3.0"), ("srcid", "1"), ("key", "k")]);
        assert_eq!(wire, "    36cmd=kvs-get;jobid=3.0;srcid=1;key=k;");
        let mut input = wire.as_bytes();
        let mut reader = LineReader::default();
        let Read1::Line(body) = reader.read_v2(&mut input).unwrap() else {
            panic!("no message")
        };
        let line = Line::parse_v2(&body).unwrap();
        assert_eq!(
            (line.cmd.as_str(), line.get("srcid")),
            ("kvs-get", Some("1"))
        );
        let l = Line::parse_v2("cmd=kvs-get-response;rc=0;found=TRUE;value=a;;b c;").unwrap();
        assert_eq!(l.get("value"), Some("a;b c"));
        for bad in ["", ";", "key=v;", "cmd=;", "cmd=x;novalue;", "cmd=x;=v;"] {
            assert!(Line::parse_v2(bad).is_err(), "{bad:?} parsed");
        }
        for bad in [
            &b"abcdefcmd=x;"[..],
            b"   -1cmd",
            b"999999cmd=x;",
            b"     9cmd=x",
        ] {
            let mut input = bad;
            assert!(
                LineReader::default().read_v2(&mut input).is_err(),
                "{bad:?} read"
            );
        }
    }

    #[test]
    fn line_reader_splits_bounds_and_ends() {
        let mut input: &[u8] = b"cmd=a\ncmd=b\r\ncmd=c";
        let mut reader = LineReader::default();
        assert_eq!(
            reader.read_line(&mut input).unwrap(),
            Read1::Line("cmd=a".into())
        );
        assert_eq!(
            reader.read_line(&mut input).unwrap(),
            Read1::Line("cmd=b".into())
        );
        assert!(
            reader.read_line(&mut input).is_err(),
            "a line cut by the end"
        );

        let mut empty: &[u8] = b"";
        assert_eq!(
            LineReader::default().read_line(&mut empty).unwrap(),
            Read1::Closed
        );

        let long = vec![b'x'; MAX_LINE + 10];
        assert!(LineReader::default()
            .read_line(&mut long.as_slice())
            .is_err());

        let mut not_utf8: &[u8] = b"cmd=\xff\n";
        assert!(LineReader::default().read_line(&mut not_utf8).is_err());
    }
}
