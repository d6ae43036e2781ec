//! The bootstrap protocol between the local launcher and its places.
//!
//! One Unix stream socket per place carries frames: a `u32` payload length (little-endian),
//! a `u8` kind, then the payload. Every length is checked against its kind's bound before
//! anything is allocated, and a frame of a kind the reading side does not expect is an error.
//!
//! | kind | from | payload |
//! |---|---|---|
//! | `Hello` (1) | place, first frame | job secret (16 bytes), rank `u32`, build id `u64` |
//! | `Contribute` (2) | place | this place's all-gather blob, at most [`MAX_BLOB`] bytes |
//! | `Welcome` (16) | launcher, answers `Hello` | the job's size `u32` |
//! | `Refused` (17) | launcher, answers `Hello`, then closes | the reason, UTF-8 |
//! | `Blob` (18) | launcher | rank `u32`, that rank's blob; one per rank, in any order, completes a round |
//! | `RoundFailed` (19) | launcher, ends a round | rank `u32` of a place gone before it contributed |
//! | `PlaceDied` (20) | launcher, at any time | rank `u32` of a place that died abnormally |
//!
//! A place sends one `Contribute` per all-gather and waits for the round to end (`size`
//! `Blob`s or one `RoundFailed`) before its next, so the launcher never holds more than one
//! round.

use std::io::{self, Read};

use super::ident::SECRET_LEN;
use crate::{Error, Result};

/// The largest all-gather blob one place may contribute.
pub(crate) const MAX_BLOB: usize = 16 << 20;
/// The longest reason a `Refused` frame may carry.
const MAX_REASON: usize = 1024;
/// Length prefix plus kind.
const HEADER_LEN: usize = 5;
const HELLO_LEN: usize = SECRET_LEN + 4 + 8;

/// What a frame is; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Hello = 1,
    Contribute = 2,
    Welcome = 16,
    Refused = 17,
    Blob = 18,
    RoundFailed = 19,
    PlaceDied = 20,
}

/// Which end of the socket sent a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sender {
    Place,
    Launcher,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Hello,
            2 => Kind::Contribute,
            16 => Kind::Welcome,
            17 => Kind::Refused,
            18 => Kind::Blob,
            19 => Kind::RoundFailed,
            20 => Kind::PlaceDied,
            _ => return None,
        })
    }

    fn sender(self) -> Sender {
        match self {
            Kind::Hello | Kind::Contribute => Sender::Place,
            _ => Sender::Launcher,
        }
    }

    /// The shortest and longest payload a frame of this kind may have.
    fn payload_bounds(self) -> (usize, usize) {
        match self {
            Kind::Hello => (HELLO_LEN, HELLO_LEN),
            Kind::Contribute => (0, MAX_BLOB),
            Kind::Welcome | Kind::RoundFailed | Kind::PlaceDied => (4, 4),
            Kind::Refused => (0, MAX_REASON),
            Kind::Blob => (4, 4 + MAX_BLOB),
        }
    }
}

/// One frame as read from the socket, its length already checked against its kind.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) kind: Kind,
    pub(crate) payload: Vec<u8>,
}

/// Encodes one frame.
///
/// # Panics
/// If the payload is longer than its kind allows: callers bound what they send.
pub(crate) fn encode(kind: Kind, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut frame = Vec::with_capacity(HEADER_LEN + len);
    frame.extend_from_slice(&header(kind, len));
    for part in parts {
        frame.extend_from_slice(part);
    }
    frame
}

/// The header of a frame of `kind` whose payload is `len` bytes.
///
/// # Panics
/// If `len` is outside the kind's bounds: callers bound what they send.
pub(crate) fn header(kind: Kind, len: usize) -> [u8; HEADER_LEN] {
    let (min, max) = kind.payload_bounds();
    assert!((min..=max).contains(&len), "{kind:?} frame of {len} bytes");
    let mut header = [0; HEADER_LEN];
    // `len <= MAX_BLOB + 4`, which fits in a u32.
    header[..4].copy_from_slice(&(len as u32).to_le_bytes());
    header[4] = kind as u8;
    header
}

const TRUNCATED: &str = "the peer closed its connection in the middle of a frame";

/// What one call of [`FrameReader::read_from`] found.
#[derive(Debug)]
pub(crate) enum Progress {
    /// A whole frame.
    Frame(Frame),
    /// The stream has no more bytes for now (non-blocking streams only).
    Pending,
    /// The peer closed the stream between two frames.
    Closed,
}

/// Reads frames sent by one side, incrementally, from a blocking or non-blocking stream.
#[derive(Debug)]
pub(crate) struct FrameReader {
    from: Sender,
    only: Option<Kind>,
    header: [u8; HEADER_LEN],
    header_len: usize,
    kind: Option<Kind>,
    payload: Vec<u8>,
    filled: usize,
}

impl FrameReader {
    /// A reader of frames sent by `from`.
    pub(crate) fn new(from: Sender) -> FrameReader {
        FrameReader {
            from,
            only: None,
            header: [0; HEADER_LEN],
            header_len: 0,
            kind: None,
            payload: Vec::new(),
            filled: 0,
        }
    }

    /// Accepts frames of `kind` only (`None`: any kind `from` sends), so that a frame the
    /// protocol does not allow at this point is refused before its payload is read.
    pub(crate) fn expect_only(&mut self, kind: Option<Kind>) {
        self.only = kind;
    }

    /// Reads until a frame is complete, the stream would block, or it ends. A connection that
    /// fails, or ends in the middle of a frame, is an [`Error::Io`]; bytes that break the
    /// protocol are an [`Error::Bootstrap`].
    pub(crate) fn read_from(&mut self, stream: &mut impl Read) -> Result<Progress> {
        loop {
            if let Some(kind) = self.kind {
                if self.filled == self.payload.len() {
                    self.kind = None;
                    self.header_len = 0;
                    let payload = std::mem::take(&mut self.payload);
                    return Ok(Progress::Frame(Frame { kind, payload }));
                }
            }
            let buf = match self.kind {
                None => &mut self.header[self.header_len..],
                Some(_) => &mut self.payload[self.filled..],
            };
            let at_boundary = self.header_len == 0;
            let n = match stream.read(buf) {
                Ok(0) if at_boundary => return Ok(Progress::Closed),
                Ok(0) => return Err(Error::io(TRUNCATED, io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Progress::Pending),
                // A peer that dies with bytes unread in its socket resets the connection.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset && at_boundary => {
                    return Ok(Progress::Closed)
                }
                Err(e) => return Err(Error::io("reading from the bootstrap socket", e)),
            };
            match self.kind {
                Some(_) => self.filled += n,
                None => {
                    self.header_len += n;
                    if self.header_len == HEADER_LEN {
                        self.start_payload()?;
                    }
                }
            }
        }
    }

    fn start_payload(&mut self) -> Result<()> {
        let kind_byte = self.header[4];
        let kind = Kind::from_byte(kind_byte)
            .filter(|kind| kind.sender() == self.from && self.only.is_none_or(|only| only == *kind))
            .ok_or_else(|| Error::bootstrap(format!("unexpected frame kind {kind_byte}")))?;
        let len = u32::from_le_bytes([
            self.header[0],
            self.header[1],
            self.header[2],
            self.header[3],
        ]);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let (min, max) = kind.payload_bounds();
        if !(min..=max).contains(&len) {
            return Err(Error::bootstrap(format!(
                "{kind:?} frame of {len} bytes (allowed: {min} to {max})"
            )));
        }
        self.kind = Some(kind);
        self.payload = vec![0; len];
        self.filled = 0;
        Ok(())
    }
}

/// The first frame of every place.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Hello {
    pub(crate) secret: [u8; SECRET_LEN],
    pub(crate) rank: u32,
    pub(crate) build_id: u64,
}

impl Hello {
    pub(crate) fn encode(&self) -> Vec<u8> {
        encode(
            Kind::Hello,
            &[
                &self.secret,
                &self.rank.to_le_bytes(),
                &self.build_id.to_le_bytes(),
            ],
        )
    }

    /// Decodes a payload of the exact length [`FrameReader`] lets through for `Hello`.
    pub(crate) fn decode(payload: &[u8]) -> Result<Hello> {
        let malformed = || Error::bootstrap(format!("Hello frame of {} bytes", payload.len()));
        let (secret, rest) = payload
            .split_first_chunk::<SECRET_LEN>()
            .ok_or_else(malformed)?;
        let (rank, rest) = rest.split_first_chunk::<4>().ok_or_else(malformed)?;
        let build_id: &[u8; 8] = rest.try_into().map_err(|_| malformed())?;
        Ok(Hello {
            secret: *secret,
            rank: u32::from_le_bytes(*rank),
            build_id: u64::from_le_bytes(*build_id),
        })
    }
}

/// What the launcher tells a place.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ToPlace {
    Welcome { size: u32 },
    Refused { reason: String },
    Blob { rank: u32, blob: Vec<u8> },
    RoundFailed { rank: u32 },
    PlaceDied { rank: u32 },
}

impl ToPlace {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            ToPlace::Welcome { size } => encode(Kind::Welcome, &[&size.to_le_bytes()]),
            ToPlace::Refused { reason } => {
                let mut end = reason.len().min(MAX_REASON);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                encode(Kind::Refused, &[&reason.as_bytes()[..end]])
            }
            ToPlace::Blob { rank, blob } => encode(Kind::Blob, &[&rank.to_le_bytes(), blob]),
            ToPlace::RoundFailed { rank } => encode(Kind::RoundFailed, &[&rank.to_le_bytes()]),
            ToPlace::PlaceDied { rank } => encode(Kind::PlaceDied, &[&rank.to_le_bytes()]),
        }
    }

    /// Decodes a frame sent by the launcher.
    pub(crate) fn decode(frame: Frame) -> Result<ToPlace> {
        let Frame { kind, mut payload } = frame;
        let rank = |payload: &[u8]| {
            payload
                .first_chunk::<4>()
                .map(|b| u32::from_le_bytes(*b))
                .ok_or_else(|| {
                    Error::bootstrap(format!("{kind:?} frame of {} bytes", payload.len()))
                })
        };
        Ok(match kind {
            Kind::Welcome => ToPlace::Welcome {
                size: rank(&payload)?,
            },
            Kind::Refused => ToPlace::Refused {
                reason: String::from_utf8_lossy(&payload).into_owned(),
            },
            Kind::Blob => {
                let rank = rank(&payload)?;
                payload.drain(..4);
                ToPlace::Blob {
                    rank,
                    blob: payload,
                }
            }
            Kind::RoundFailed => ToPlace::RoundFailed {
                rank: rank(&payload)?,
            },
            Kind::PlaceDied => ToPlace::PlaceDied {
                rank: rank(&payload)?,
            },
            Kind::Hello | Kind::Contribute => {
                return Err(Error::bootstrap(format!(
                    "a place's {kind:?} frame sent to a place"
                )))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(from: Sender, mut bytes: &[u8]) -> Result<Vec<Frame>> {
        let mut reader = FrameReader::new(from);
        let mut frames = Vec::new();
        loop {
            match reader.read_from(&mut bytes)? {
                Progress::Frame(frame) => frames.push(frame),
                Progress::Closed => return Ok(frames),
                Progress::Pending => unreachable!("slices never block"),
            }
        }
    }

    /// A reader that hands out one byte per call, then `WouldBlock`, alternately.
    struct Trickle<'a> {
        bytes: &'a [u8],
        block: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.block = !self.block;
            if self.block && !self.bytes.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = self.bytes.len().min(buf.len()).min(1);
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn messages_round_trip() {
        let messages = [
            ToPlace::Welcome { size: 8 },
            ToPlace::Refused {
                reason: "no".into(),
            },
            ToPlace::Blob {
                rank: 3,
                blob: vec![1, 2, 3],
            },
            ToPlace::Blob {
                rank: 0,
                blob: vec![],
            },
            ToPlace::RoundFailed { rank: 1 },
            ToPlace::PlaceDied { rank: 2 },
        ];
        let bytes: Vec<u8> = messages.iter().flat_map(ToPlace::encode).collect();
        let decoded: Vec<ToPlace> = read_all(Sender::Launcher, &bytes)
            .unwrap()
            .into_iter()
            .map(|f| ToPlace::decode(f).unwrap())
            .collect();
        assert_eq!(decoded, messages);

        let hello = Hello {
            secret: [7; SECRET_LEN],
            rank: 5,
            build_id: u64::MAX - 1,
        };
        let frames = read_all(Sender::Place, &hello.encode()).unwrap();
        assert_eq!(frames[0].kind, Kind::Hello);
        assert_eq!(Hello::decode(&frames[0].payload).unwrap(), hello);
    }

    #[test]
    fn frames_arrive_in_pieces() {
        let bytes = [
            ToPlace::Blob {
                rank: 1,
                blob: vec![9; 10],
            }
            .encode(),
            ToPlace::Welcome { size: 2 }.encode(),
        ]
        .concat();
        let mut stream = Trickle {
            bytes: &bytes,
            block: false,
        };
        let mut reader = FrameReader::new(Sender::Launcher);
        let mut frames = Vec::new();
        loop {
            match reader.read_from(&mut stream).unwrap() {
                Progress::Frame(frame) => frames.push(ToPlace::decode(frame).unwrap()),
                Progress::Pending => {}
                Progress::Closed => break,
            }
        }
        assert_eq!(
            frames,
            [
                ToPlace::Blob {
                    rank: 1,
                    blob: vec![9; 10]
                },
                ToPlace::Welcome { size: 2 }
            ]
        );
    }

    #[test]
    fn bad_frames_are_rejected_before_allocation() {
        // A Contribute frame claiming 4 GiB.
        let huge = [0xff, 0xff, 0xff, 0xff, Kind::Contribute as u8];
        assert!(read_all(Sender::Place, &huge).is_err());
        // A Hello of the wrong length.
        let short = [1, 0, 0, 0, Kind::Hello as u8, 0];
        assert!(read_all(Sender::Place, &short).is_err());
        // An unknown kind, and a kind from the wrong side.
        assert!(read_all(Sender::Place, &[0, 0, 0, 0, 99]).is_err());
        assert!(read_all(Sender::Place, &ToPlace::Welcome { size: 1 }.encode()).is_err());
        assert!(read_all(Sender::Launcher, &encode(Kind::Contribute, &[b"x"])).is_err());
        // Truncated in the header and in the payload.
        assert!(read_all(Sender::Launcher, &[4, 0]).is_err());
        assert!(read_all(Sender::Launcher, &[4, 0, 0, 0, Kind::PlaceDied as u8, 1]).is_err());
    }

    #[test]
    fn long_reasons_are_cut_at_a_char_boundary() {
        let reason = "é".repeat(MAX_REASON);
        let frame = ToPlace::Refused { reason }.encode();
        let frames = read_all(Sender::Launcher, &frame).unwrap();
        let ToPlace::Refused { reason } =
            ToPlace::decode(frames.into_iter().next().unwrap()).unwrap()
        else {
            panic!("not a Refused frame");
        };
        assert_eq!(reason.chars().count(), MAX_REASON / 2);
    }
}
