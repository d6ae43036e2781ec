//! Where collective messages wait for the collective step that takes them.
//!
//! Every message names its team, the collective's sequence number on that team and a step
//! tag (in a 32-byte prefix); together with the sending place (which the transport vouches
//! for, so a peer cannot speak for another), that is the key the receiving step asks for.
//! Messages of back-to-back collectives, and of collectives on different teams running at
//! once, therefore never mix, and a message that arrives before its step (or before this
//! place has even made the team) waits here.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use atoll_comm::{Comm, Message, Place};
use rkyv::util::AlignedVec;

/// The prefix of every collective message.
pub(crate) const PREFIX: usize = 32;

/// What a message is part of, and who sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) team: u64,
    pub(crate) seq: u64,
    pub(crate) tag: u32,
    pub(crate) from: Place,
}

impl Key {
    /// The prefix a message with this key carries (the sender is not in it).
    pub(crate) fn prefix(&self) -> [u8; PREFIX] {
        let mut prefix = [0u8; PREFIX];
        prefix[0..8].copy_from_slice(&self.team.to_le_bytes());
        prefix[8..16].copy_from_slice(&self.seq.to_le_bytes());
        prefix[16..20].copy_from_slice(&self.tag.to_le_bytes());
        prefix
    }

    fn decode(prefix: &[u8], from: Place) -> Key {
        let word = |range: std::ops::Range<usize>| {
            let mut bytes = [0u8; 8];
            bytes[..range.len()].copy_from_slice(&prefix[range]);
            u64::from_le_bytes(bytes)
        };
        Key {
            team: word(0..8),
            seq: word(8..16),
            tag: word(16..20) as u32,
            from,
        }
    }
}

enum Slot {
    Arrived(AlignedVec),
    Waiting(Waker),
}

/// The step tag of an abort: a member found a place dead during the collective and tells the
/// other members, so that none waits for a member that gave up (payload: the dead place's
/// index, 4 bytes little-endian).
pub(crate) const ABORT: u32 = u32::MAX;

/// The hasher of keys: a multiply-rotate over the key's words, several times cheaper than the
/// default SipHash on this hot path. (A peer that floods colliding keys can only slow this
/// place's collectives down; it cannot make them wrong.)
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u32(&mut self, word: u32) {
        self.write_u64(u64::from(word));
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }
}

type KeyMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

#[derive(Default)]
struct State {
    slots: KeyMap<Key, Slot>,
    /// Collectives (team, sequence number) aborted because this place died.
    aborted: KeyMap<(u64, u64), Place>,
}

/// The messages that arrived and the steps that wait, by key.
#[derive(Default)]
pub(crate) struct Mailbox {
    state: Mutex<State>,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        let slots = &state.slots;
        let waiting = slots
            .values()
            .filter(|s| matches!(s, Slot::Waiting(_)))
            .count();
        f.debug_struct("Mailbox")
            .field("arrived", &(slots.len() - waiting))
            .field("waiting", &waiting)
            .finish()
    }
}

impl Mailbox {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The handler of collective messages: keeps the message's bytes (copied out of the
    /// transport, 16-byte aligned) and wakes the step that waits for it.
    pub(crate) fn deliver(&self, comm: &Comm, message: Message<'_>) -> atoll_comm::Result<()> {
        let bad = |reason: &str| atoll_comm::Error::Handler {
            from: message.from(),
            handler: message.handler().get(),
            message: reason.to_string(),
        };
        let (prefix, payload) = message
            .split_prefix(PREFIX)
            .ok_or_else(|| bad("a collective message shorter than its prefix"))?;
        let key = Key::decode(prefix, message.from());
        if key.tag == ABORT {
            let dead = <[u8; 4]>::try_from(payload.bytes())
                .ok()
                .map(u32::from_le_bytes)
                .filter(|&index| (index as usize) < comm.len())
                .ok_or_else(|| bad("an abort that names no place of the job"))?;
            self.abort(key.team, key.seq, Place::new(dead as usize));
            return Ok(());
        }
        let mut bytes = AlignedVec::with_capacity(payload.bytes().len());
        bytes.extend_from_slice(payload.bytes());
        let waker = {
            let mut state = self.state();
            let slots = &mut state.slots;
            match slots.insert(key, Slot::Arrived(bytes)) {
                None => None,
                Some(Slot::Waiting(waker)) => Some(waker),
                Some(Slot::Arrived(first)) => {
                    // Keep the first; the duplicate is the peer's error.
                    slots.insert(key, Slot::Arrived(first));
                    return Err(bad(&format!(
                        "a second message for step {} of collective {} on team {:#x}",
                        key.tag, key.seq, key.team
                    )));
                }
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Marks collective `seq` of `team` aborted because `dead` died, and wakes its waiting
    /// steps.
    pub(crate) fn abort(&self, team: u64, seq: u64, dead: Place) {
        let wakers: Vec<Waker> = {
            let mut state = self.state();
            state.aborted.entry((team, seq)).or_insert(dead);
            state
                .slots
                .iter()
                .filter_map(|(key, slot)| match slot {
                    Slot::Waiting(waker) if (key.team, key.seq) == (team, seq) => {
                        Some(waker.clone())
                    }
                    _ => None,
                })
                .collect()
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Wakes every waiting step, so that each looks again (at whether its peer died).
    pub(crate) fn wake_all(&self) {
        let wakers: Vec<Waker> = self
            .state()
            .slots
            .values()
            .filter_map(|slot| match slot {
                Slot::Waiting(waker) => Some(waker.clone()),
                Slot::Arrived(_) => None,
            })
            .collect();
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// The message with `key`, once it has arrived; [`Received::PlaceFailed`] if its sender dies
/// first.
pub(crate) struct Receive {
    mailbox: Arc<Mailbox>,
    comm: Comm,
    key: Key,
    done: bool,
}

pub(crate) enum Received {
    Bytes(AlignedVec),
    /// The sender died.
    PlaceFailed,
    /// Another member aborted the collective because this place died.
    Aborted(Place),
}

impl Receive {
    pub(crate) fn new(mailbox: Arc<Mailbox>, comm: Comm, key: Key) -> Receive {
        Receive {
            mailbox,
            comm,
            key,
            done: false,
        }
    }
}

impl Future for Receive {
    type Output = Received;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Received> {
        let key = self.key;
        let mut state = self.mailbox.state();
        if let Some(&dead) = state.aborted.get(&(key.team, key.seq)) {
            if !matches!(state.slots.get(&key), Some(Slot::Arrived(_))) {
                state.slots.remove(&key);
                drop(state);
                self.done = true;
                return Poll::Ready(Received::Aborted(dead));
            }
        }
        let slots = &mut state.slots;
        match slots.remove(&key) {
            Some(Slot::Arrived(bytes)) => {
                drop(state);
                self.done = true;
                return Poll::Ready(Received::Bytes(bytes));
            }
            Some(Slot::Waiting(_)) | None => {
                if self.comm.is_failed(key.from) {
                    drop(state);
                    self.done = true;
                    return Poll::Ready(Received::PlaceFailed);
                }
                slots.insert(key, Slot::Waiting(cx.waker().clone()));
            }
        }
        Poll::Pending
    }
}

impl Drop for Receive {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.mailbox.state();
        if let Some(Slot::Waiting(_)) = state.slots.get(&self.key) {
            state.slots.remove(&self.key);
        }
    }
}
