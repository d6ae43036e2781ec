//! What channels put on the wire: the 32-byte prefixes of their three messages (raw
//! little-endian words before the rkyv archive, as the runtime's own messages have), the
//! identity of a channel, and the token a channel end travels as.

use std::fmt;

use atoll_comm::Place;

use crate::wire::{half, word, PREFIX};

/// The tag of a channel made by [`crate::channel::channel`] (named channels carry their
/// incarnation in the tag instead, always below this).
pub(crate) const PAIR: u32 = u32::MAX;

/// One channel: its sending place, its receiving place, and which of their channels it is.
///
/// Named channels (`Sender::new(to, id)` / `Receiver::new(from, id)`) are told apart by the
/// user's `id` and their incarnation (the k-th `Sender::new(to, id)` at a place pairs with the
/// k-th `Receiver::new(from, id)` at `to`); channels made by `channel` by a job-wide number.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelId {
    pub(crate) sender: Place,
    pub(crate) receiver: Place,
    pub(crate) tag: u32,
    pub(crate) id: u64,
}

impl ChannelId {
    /// The place that sends on it.
    pub fn sender(&self) -> Place {
        self.sender
    }

    /// The place that receives from it.
    pub fn receiver(&self) -> Place {
        self.receiver
    }

    /// The user's id of a named channel; `None` for one made by `channel`.
    pub fn named_id(&self) -> Option<u64> {
        (self.tag != PAIR).then_some(self.id)
    }

    /// The channel a message names by `key`, received at or sent from `other`.
    fn from_key(key: Key, receiver: Place) -> ChannelId {
        ChannelId {
            sender: key.sender,
            receiver,
            tag: key.tag,
            id: key.id,
        }
    }

    fn key(&self) -> Key {
        Key {
            sender: self.sender,
            tag: self.tag,
            id: self.id,
        }
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tag == PAIR {
            write!(
                f,
                "channel #{} made at place {} ({} to {})",
                self.id & ((1 << 40) - 1),
                self.id >> 40,
                self.sender,
                self.receiver
            )
        } else {
            write!(
                f,
                "channel {} ({} to {}, opening {})",
                self.id, self.sender, self.receiver, self.tag
            )
        }
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelId({self})")
    }
}

/// The part of a [`ChannelId`] a message carries (the receiving place is implied: it is the
/// message's destination for data and close, its source for credit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    sender: Place,
    tag: u32,
    id: u64,
}

impl Key {
    fn encode(&self, b: &mut [u8; PREFIX]) {
        b[0..4].copy_from_slice(&(self.sender.index() as u32).to_le_bytes());
        b[4..8].copy_from_slice(&self.tag.to_le_bytes());
        b[8..16].copy_from_slice(&self.id.to_le_bytes());
    }

    /// Decodes a peer's key; `places` bounds the sending place it names.
    fn decode(b: &[u8], places: usize) -> Result<Key, String> {
        let sender = half(b, 0) as usize;
        if sender >= places {
            return Err(format!(
                "a channel message names sending place {sender}, outside 0..{places}"
            ));
        }
        Ok(Key {
            sender: Place::new(sender),
            tag: half(b, 4),
            id: word(b, 8),
        })
    }
}

/// A value on its way (handler `CHANNEL_DATA`, sender to receiver). Payload: the archived
/// value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DataPrefix {
    pub(crate) channel: ChannelId,
    /// The value's number in the channel, from 0.
    pub(crate) seq: u64,
    /// [`type_hash`] of the value's type at the sender.
    pub(crate) type_hash: u32,
    /// The sender's window.
    pub(crate) capacity: u32,
}

impl DataPrefix {
    pub(crate) fn encode(&self) -> [u8; PREFIX] {
        let mut b = [0u8; PREFIX];
        self.channel.key().encode(&mut b);
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..28].copy_from_slice(&self.type_hash.to_le_bytes());
        b[28..32].copy_from_slice(&self.capacity.to_le_bytes());
        b
    }

    /// Decodes the prefix of data that arrived at `here`.
    pub(crate) fn decode(b: &[u8], here: Place, places: usize) -> Result<DataPrefix, String> {
        Ok(DataPrefix {
            channel: ChannelId::from_key(Key::decode(b, places)?, here),
            seq: word(b, 16),
            type_hash: half(b, 24),
            capacity: half(b, 28),
        })
    }
}

/// Values taken by the receiver (handler `CHANNEL_CREDIT`, receiver to sender): the window
/// moves on. Payload: `()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CreditPrefix {
    pub(crate) channel: ChannelId,
    /// How many values the receiver has taken in all (a running total: a credit message that
    /// comes late never moves the window back).
    pub(crate) taken: u64,
    /// The receiver was dropped: the sender's next send fails.
    pub(crate) gone: bool,
}

impl CreditPrefix {
    pub(crate) fn encode(&self) -> [u8; PREFIX] {
        let mut b = [0u8; PREFIX];
        self.channel.key().encode(&mut b);
        b[16..24].copy_from_slice(&self.taken.to_le_bytes());
        b[24] = u8::from(self.gone);
        b
    }

    /// Decodes the prefix of credit that arrived from `receiver`.
    pub(crate) fn decode(b: &[u8], receiver: Place, places: usize) -> Result<CreditPrefix, String> {
        Ok(CreditPrefix {
            channel: ChannelId::from_key(Key::decode(b, places)?, receiver),
            taken: word(b, 16),
            gone: b[24] == 1,
        })
    }
}

/// An end of a channel went away (handler `CHANNEL_CLOSE`, to the receiving place).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Closing {
    /// The sender is done, after sending this many values.
    Sender { sent: u64 },
    /// The receiver was dropped away from its place, unused.
    Receiver,
}

/// The prefix of a `CHANNEL_CLOSE` message. Payload: `()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClosePrefix {
    pub(crate) channel: ChannelId,
    pub(crate) closing: Closing,
}

impl ClosePrefix {
    pub(crate) fn encode(&self) -> [u8; PREFIX] {
        let mut b = [0u8; PREFIX];
        self.channel.key().encode(&mut b);
        let (kind, sent) = match self.closing {
            Closing::Sender { sent } => (1u32, sent),
            Closing::Receiver => (2, 0),
        };
        b[16..24].copy_from_slice(&sent.to_le_bytes());
        b[24..28].copy_from_slice(&kind.to_le_bytes());
        b
    }

    /// Decodes the prefix of a close that arrived at `here`.
    pub(crate) fn decode(b: &[u8], here: Place, places: usize) -> Result<ClosePrefix, String> {
        let closing = match half(b, 24) {
            1 => Closing::Sender { sent: word(b, 16) },
            2 => Closing::Receiver,
            other => return Err(format!("unknown kind of channel close {other}")),
        };
        Ok(ClosePrefix {
            channel: ChannelId::from_key(Key::decode(b, places)?, here),
            closing,
        })
    }
}

/// What a `Sender` or `Receiver` travels as inside `at!`/`async_at!` arguments (their archived
/// form): the channel and the sender's window. Not made by programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct EndpointToken {
    sender: Place,
    receiver: Place,
    tag: u32,
    id: u64,
    capacity: u32,
}

impl EndpointToken {
    pub(crate) fn new(channel: ChannelId, capacity: u32) -> EndpointToken {
        EndpointToken {
            sender: channel.sender,
            receiver: channel.receiver,
            tag: channel.tag,
            id: channel.id,
            capacity,
        }
    }

    pub(crate) fn channel(&self) -> ChannelId {
        ChannelId {
            sender: self.sender,
            receiver: self.receiver,
            tag: self.tag,
            id: self.id,
        }
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.capacity
    }
}

impl ArchivedEndpointToken {
    /// The token this archive holds (its places not yet checked against the job's size).
    pub(crate) fn to_token(&self) -> EndpointToken {
        EndpointToken {
            sender: self.sender.to_place(),
            receiver: self.receiver.to_place(),
            tag: self.tag.to_native(),
            id: self.id.to_native(),
            capacity: self.capacity.to_native(),
        }
    }
}

/// A fingerprint of `T` (all places run the same binary, so the same type has the same name
/// everywhere): a receiver refuses values of another type with a clear error instead of
/// failing validation, or worse, passing it.
pub(crate) fn type_hash<T: ?Sized>() -> u32 {
    let hash = crate::remote::fn_id(std::any::type_name::<T>(), "channel value");
    (hash ^ (hash >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(tag: u32) -> ChannelId {
        ChannelId {
            sender: Place::new(2),
            receiver: Place::new(1),
            tag,
            id: 0xDEAD_BEEF_0001,
        }
    }

    #[test]
    fn prefixes_round_trip() {
        let data = DataPrefix {
            channel: channel(3),
            seq: 41,
            type_hash: type_hash::<u64>(),
            capacity: 64,
        };
        assert_eq!(
            DataPrefix::decode(&data.encode(), Place::new(1), 4),
            Ok(data)
        );
        let credit = CreditPrefix {
            channel: channel(PAIR),
            taken: 1 << 40,
            gone: true,
        };
        assert_eq!(
            CreditPrefix::decode(&credit.encode(), Place::new(1), 4),
            Ok(credit)
        );
        for closing in [Closing::Sender { sent: 9 }, Closing::Receiver] {
            let close = ClosePrefix {
                channel: channel(0),
                closing,
            };
            assert_eq!(
                ClosePrefix::decode(&close.encode(), Place::new(1), 4),
                Ok(close)
            );
        }
    }

    #[test]
    fn bad_prefixes_are_errors() {
        let data = DataPrefix {
            channel: channel(0),
            seq: 0,
            type_hash: 0,
            capacity: 1,
        };
        // Sending place 2 in a job of 2 places.
        assert!(DataPrefix::decode(&data.encode(), Place::new(1), 2).is_err());
        let mut close = ClosePrefix {
            channel: channel(0),
            closing: Closing::Receiver,
        }
        .encode();
        close[24] = 7;
        assert!(ClosePrefix::decode(&close, Place::new(1), 4).is_err());
    }

    #[test]
    fn types_differ() {
        assert_ne!(type_hash::<u64>(), type_hash::<u32>());
        assert_ne!(type_hash::<Vec<u8>>(), type_hash::<String>());
        assert_eq!(type_hash::<String>(), type_hash::<String>());
    }
}
