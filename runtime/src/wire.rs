//! The fixed prefixes of the runtime's messages (raw little-endian words before the rkyv
//! archive of the payload; see `Comm::send_framed`). Every prefix is 32 bytes, so that the
//! archive after it stays aligned.

use atoll_comm::Place;

/// Bytes of every prefix.
pub(crate) const PREFIX: usize = 32;

/// No finish: the call belongs to none (an `at!` made outside any activity).
pub(crate) const NO_FINISH: u64 = u64::MAX;

/// The finish an activity belongs to, and the credit it carries (`2^-exponent`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Credit {
    pub(crate) home: Place,
    pub(crate) finish: u64,
    pub(crate) exponent: u32,
}

/// A remote call: which function, where its reply goes (call id 0: none, for `async_at!`),
/// and its finish credit. Payload: the archived argument tuple.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallPrefix {
    pub(crate) function: u64,
    pub(crate) call: u64,
    pub(crate) credit: Credit,
}

/// A reply: which call, whether it succeeded (payload: the archived result) or failed
/// (payload: an archived `Failure`), and the credit of the callee's activity when its finish
/// lives at the caller's place (`exponent == u32::MAX`: none carried).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReplyPrefix {
    pub(crate) call: u64,
    pub(crate) ok: bool,
    pub(crate) credit: Option<(u64, u32)>,
}

/// Credit returned to a finish's home. Payload: an archived `CreditReturn` (the shares and the
/// failures of the activities that held them).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CreditPrefix {
    pub(crate) finish: u64,
}

/// The little-endian `u64` at `at` of `bytes` (a prefix of [`PREFIX`] bytes).
pub(crate) fn word(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The little-endian `u32` at `at` of `bytes` (a prefix of [`PREFIX`] bytes).
pub(crate) fn half(bytes: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(w)
}

impl CallPrefix {
    pub(crate) fn encode(&self) -> [u8; PREFIX] {
        let mut b = [0u8; PREFIX];
        b[0..8].copy_from_slice(&self.function.to_le_bytes());
        b[8..16].copy_from_slice(&self.call.to_le_bytes());
        b[16..24].copy_from_slice(&self.credit.finish.to_le_bytes());
        b[24..28].copy_from_slice(&(self.credit.home.index() as u32).to_le_bytes());
        b[28..32].copy_from_slice(&self.credit.exponent.to_le_bytes());
        b
    }

    /// Decodes a peer's prefix; `places` bounds the home place it names.
    pub(crate) fn decode(b: &[u8], places: usize) -> Result<CallPrefix, String> {
        let home = half(b, 24) as usize;
        let finish = word(b, 16);
        if finish != NO_FINISH && home >= places {
            return Err(format!(
                "call names a finish at place {home}, outside 0..{places}"
            ));
        }
        Ok(CallPrefix {
            function: word(b, 0),
            call: word(b, 8),
            credit: Credit {
                home: Place::new(home.min(places.saturating_sub(1))),
                finish,
                exponent: half(b, 28),
            },
        })
    }
}

impl ReplyPrefix {
    pub(crate) fn encode(&self) -> [u8; PREFIX] {
        let mut b = [0u8; PREFIX];
        b[0..8].copy_from_slice(&self.call.to_le_bytes());
        b[8] = u8::from(self.ok);
        let (finish, exponent) = self.credit.unwrap_or((NO_FINISH, u32::MAX));
        b[16..24].copy_from_slice(&finish.to_le_bytes());
        b[24..28].copy_from_slice(&exponent.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> ReplyPrefix {
        let (finish, exponent) = (word(b, 16), half(b, 24));
        ReplyPrefix {
            call: word(b, 0),
            ok: b[8] == 1,
            credit: (exponent != u32::MAX && finish != NO_FINISH).then_some((finish, exponent)),
        }
    }
}

impl CreditPrefix {
    pub(crate) fn encode(&self) -> [u8; PREFIX] {
        let mut b = [0u8; PREFIX];
        b[0..8].copy_from_slice(&self.finish.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> CreditPrefix {
        CreditPrefix { finish: word(b, 0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_round_trip() {
        let call = CallPrefix {
            function: 0xDEAD_BEEF,
            call: 7,
            credit: Credit {
                home: Place::new(3),
                finish: 9,
                exponent: 4,
            },
        };
        let back = CallPrefix::decode(&call.encode(), 4).expect("valid");
        assert_eq!(
            (back.function, back.call, back.credit),
            (call.function, call.call, call.credit)
        );
        assert!(
            CallPrefix::decode(&call.encode(), 2).is_err(),
            "home outside the job"
        );
        let reply = ReplyPrefix {
            call: 5,
            ok: true,
            credit: Some((2, 3)),
        };
        let back = ReplyPrefix::decode(&reply.encode());
        assert_eq!((back.call, back.ok, back.credit), (5, true, Some((2, 3))));
        let none = ReplyPrefix::decode(
            &ReplyPrefix {
                call: 5,
                ok: false,
                credit: None,
            }
            .encode(),
        );
        assert_eq!(none.credit, None);
    }
}
