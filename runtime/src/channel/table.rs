//! The channels of one place: the receiving state of every channel that ends here (whether
//! or not its `Receiver` exists yet), the window of every `Sender` in use here, and the
//! handlers of the three channel messages.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use atoll_comm::{HandlerId, Message, Place};
use futures::task::AtomicWaker;
use rkyv::util::AlignedVec;

use super::arrivals::Arrivals;
use super::receiver::Inbox;
use super::wire::{type_hash, ChannelId, ClosePrefix, Closing, CreditPrefix, DataPrefix, PAIR};
use crate::remote::Wire;
use crate::runtime::{Runtime, CHANNEL_CLOSE, CHANNEL_CREDIT, CHANNEL_DATA};
use crate::wire::PREFIX;
use crate::{Error, Result};

/// A channel's receiving state, as the handlers see it.
pub(crate) trait Deliver: Send + Sync {
    /// Value `prefix.seq` arrived in `message`: validate, deserialize and keep it; wake the
    /// receiver.
    fn deliver(
        &self,
        prefix: &DataPrefix,
        message: &Message<'_>,
    ) -> std::result::Result<(), String>;
    /// The sender is done after `sent` values; wake the receiver.
    fn close(&self, sent: u64) -> std::result::Result<(), String>;
    /// Whether the sender has closed (without taking the receiver's lock: the table asks while
    /// it holds its own).
    fn is_closed(&self) -> bool;
    /// Wake the receiver (to look at its peer's failure).
    fn wake(&self);
}

/// The receiving side of one channel at this place.
enum Inbound {
    /// No `Receiver` here yet: values are kept as the bytes of their archives.
    Waiting(Arrivals<AlignedVec<16>>),
    /// The `Receiver` is here.
    Attached(Arc<dyn Deliver>),
    /// The `Receiver` was dropped before the sender closed: values are discarded (and each
    /// answered with a notice to the sender) until the sender's close.
    Dropped,
}

/// The window of a `Sender` in use at this place, as the credit handler moves it.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    /// Values the receiver has taken (a running total).
    pub(crate) taken: AtomicU64,
    /// The `Receiver` was dropped.
    pub(crate) gone: AtomicBool,
    /// The sender waiting for room.
    pub(crate) waker: AtomicWaker,
}

/// Hashes [`ChannelId`]s: one multiply per word, seeded per process. Every value that arrives
/// looks its channel up, and SipHash (the standard map's) costs more than the rest of the
/// lookup; a per-process seed keeps a peer from choosing colliding ids in advance.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdHashing {
    seed: u64,
}

impl Default for IdHashing {
    fn default() -> Self {
        use std::hash::BuildHasher;
        IdHashing {
            seed: std::collections::hash_map::RandomState::new().hash_one(0x5EED_u64) | 1,
        }
    }
}

impl std::hash::BuildHasher for IdHashing {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher { state: self.seed }
    }
}

/// The hasher of [`IdHashing`].
pub(crate) struct IdHasher {
    state: u64,
}

impl IdHasher {
    fn mix(&mut self, word: u64) {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        self.state = (self.state ^ word).wrapping_mul(K).rotate_left(29);
    }
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }

    fn write_u32(&mut self, value: u32) {
        self.mix(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.mix(value);
    }

    fn finish(&self) -> u64 {
        let h = self.state;
        (h ^ (h >> 32)).wrapping_mul(0xD6E8_FEB8_6659_FD93)
    }
}

type IdMap<V> = HashMap<ChannelId, V, IdHashing>;

/// This place's channels.
#[derive(Default)]
pub(crate) struct Channels {
    inbound: Mutex<IdMap<Inbound>>,
    outbound: Mutex<IdMap<Arc<Outbound>>>,
    /// Named channels opened here: (sending side?, peer, id) → openings so far.
    openings: Mutex<HashMap<(bool, Place, u64), u32>>,
    next_pair: AtomicU64,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels")
            .field("inbound", &lock(&self.inbound).len())
            .field("outbound", &lock(&self.outbound).len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn handler_error(from: Place, handler: HandlerId, message: String) -> atoll_comm::Error {
    atoll_comm::Error::Handler {
        from,
        handler: handler.get(),
        message,
    }
}

fn split<'a>(message: &Message<'a>) -> atoll_comm::Result<(&'a [u8], Message<'a>)> {
    message.split_prefix(PREFIX).ok_or_else(|| {
        handler_error(
            message.from(),
            message.handler(),
            "message shorter than its prefix".into(),
        )
    })
}

impl Channels {
    /// The channel of the next named end: the k-th `Sender::new(to, id)` at a place is the
    /// k-th `Receiver::new(from, id)` at `to`.
    pub(crate) fn open_named(
        &self,
        sender: Place,
        receiver: Place,
        here: Place,
        id: u64,
    ) -> ChannelId {
        let sending = here == sender;
        let peer = if sending { receiver } else { sender };
        let mut openings = lock(&self.openings);
        let count = openings.entry((sending, peer, id)).or_insert(0);
        let tag = *count;
        // Tags wrap below PAIR (after 4 billion openings of one id the first is long done).
        *count = if *count + 1 == PAIR { 0 } else { *count + 1 };
        ChannelId {
            sender,
            receiver,
            tag,
            id,
        }
    }

    /// A fresh channel made here: the making place in the high bits, a count below.
    pub(crate) fn open_pair(&self, here: Place, sender: Place, receiver: Place) -> ChannelId {
        let count = self.next_pair.fetch_add(1, Ordering::Relaxed);
        ChannelId {
            sender,
            receiver,
            tag: PAIR,
            id: ((here.index() as u64) << 40) | (count & ((1 << 40) - 1)),
        }
    }

    /// Makes the `Receiver` of `channel` (which ends here) the owner of its receiving state:
    /// values that arrived before are deserialized now, in order.
    pub(crate) fn attach_receiver<T: Wire>(&self, channel: ChannelId) -> Result<Arc<Inbox<T>>> {
        let mut inbound = lock(&self.inbound);
        let arrivals = match inbound.remove(&channel) {
            None => Arrivals::expecting(type_hash::<T>()),
            Some(Inbound::Waiting(kept)) => kept.convert(type_hash::<T>(), |bytes| {
                T::decode_bytes(&bytes)
                    .map_err(|error| format!("a value failed validation: {error}"))
            }),
            Some(other) => {
                inbound.insert(channel, other);
                return Err(Error::ChannelTaken {
                    end: "Receiver",
                    channel,
                });
            }
        };
        let inbox = Arc::new(Inbox::new(arrivals));
        inbound.insert(channel, Inbound::Attached(inbox.clone()));
        Ok(inbox)
    }

    /// The `Receiver` of `channel` is gone (dropped here, at its place, or its notice arrived).
    /// If the sender has not closed, it is told, and values still coming are discarded.
    pub(crate) fn receiver_dropped(&self, rt: &Runtime, channel: ChannelId) {
        let notify = {
            let mut inbound = lock(&self.inbound);
            let closed = match inbound.get(&channel) {
                Some(Inbound::Attached(inbox)) => inbox.is_closed(),
                Some(Inbound::Waiting(kept)) => kept.is_closed(),
                Some(Inbound::Dropped) => return,
                None => false,
            };
            if closed {
                inbound.remove(&channel);
                false
            } else {
                inbound.insert(channel, Inbound::Dropped);
                true
            }
        };
        if notify {
            self.send_credit(rt, channel, 0, true);
        }
    }

    /// Registers the window of the `Sender` of `channel`, in use here from now on.
    pub(crate) fn attach_sender(&self, channel: ChannelId) -> Result<Arc<Outbound>> {
        match lock(&self.outbound).entry(channel) {
            Entry::Occupied(_) => Err(Error::ChannelTaken {
                end: "Sender",
                channel,
            }),
            Entry::Vacant(slot) => Ok(slot.insert(Arc::default()).clone()),
        }
    }

    /// The `Sender` of `channel` is done here.
    pub(crate) fn detach_sender(&self, channel: ChannelId) {
        lock(&self.outbound).remove(&channel);
    }

    /// Sends the running total of taken values (and whether the receiver is gone) to the
    /// sender of `channel`. Best effort: a sender's place that died has no use for it.
    pub(crate) fn send_credit(&self, rt: &Runtime, channel: ChannelId, taken: u64, gone: bool) {
        if rt.comm.is_failed(channel.sender) {
            return;
        }
        let prefix = CreditPrefix {
            channel,
            taken,
            gone,
        };
        if let Err(error) =
            rt.comm
                .send_framed(channel.sender, CHANNEL_CREDIT, &prefix.encode(), &())
        {
            tracing::debug!(%error, %channel, "could not return channel credit");
        }
    }

    /// Handler of `CHANNEL_DATA`: a value arrived for a channel that ends here.
    pub(crate) fn on_data(&self, rt: &Runtime, message: Message<'_>) -> atoll_comm::Result<()> {
        let from = message.from();
        let (raw, payload) = split(&message)?;
        let prefix = DataPrefix::decode(raw, rt.comm.here(), rt.comm.len())
            .map_err(|reason| handler_error(from, CHANNEL_DATA, reason))?;
        let channel = prefix.channel;
        if from != channel.sender {
            return Err(handler_error(
                from,
                CHANNEL_DATA,
                format!("a value for {channel} came from {from}, not from its sender"),
            ));
        }
        /// Where the value goes, as the table says.
        enum Target {
            Receiver(Arc<dyn Deliver>),
            Kept(std::result::Result<(), String>),
            Discarded,
        }
        let target = {
            let mut inbound = lock(&self.inbound);
            let entry = inbound
                .entry(channel)
                .or_insert_with(|| Inbound::Waiting(Arrivals::default()));
            match entry {
                // The common case first: the receiver is here.
                Inbound::Attached(inbox) => Target::Receiver(inbox.clone()),
                Inbound::Waiting(kept) => {
                    let mut bytes = AlignedVec::<16>::with_capacity(payload.bytes().len());
                    bytes.extend_from_slice(payload.bytes());
                    Target::Kept(kept.arrive(&prefix, bytes))
                }
                Inbound::Dropped => Target::Discarded,
            }
        };
        // Delivered without the table's lock: deserializing (or dropping a refused value, which
        // may hold channel ends of its own) must be free to use the table.
        let outcome = match target {
            Target::Receiver(inbox) => inbox.deliver(&prefix, &payload).map(|()| true),
            Target::Kept(kept) => kept.map(|()| true),
            Target::Discarded => Ok(false),
        };
        match outcome {
            Ok(true) => Ok(()),
            // Discarded, the receiver being gone: tell the sender (it may not have been in use
            // yet when the receiver was dropped, and so missed the first notice).
            Ok(false) => {
                self.send_credit(rt, channel, 0, true);
                Ok(())
            }
            Err(reason) => Err(handler_error(
                from,
                CHANNEL_DATA,
                format!("{channel}: {reason}"),
            )),
        }
    }

    /// Handler of `CHANNEL_CREDIT`: the receiver of a channel sent from here took values, or
    /// was dropped.
    pub(crate) fn on_credit(&self, rt: &Runtime, message: Message<'_>) -> atoll_comm::Result<()> {
        let from = message.from();
        let (raw, _) = split(&message)?;
        let prefix = CreditPrefix::decode(raw, from, rt.comm.len())
            .map_err(|reason| handler_error(from, CHANNEL_CREDIT, reason))?;
        let channel = prefix.channel;
        if channel.sender != rt.comm.here() {
            return Err(handler_error(
                from,
                CHANNEL_CREDIT,
                format!("credit for {channel} arrived at {}", rt.comm.here()),
            ));
        }
        // A sender no longer in use (or not yet: the receiver was dropped first) needs none.
        let Some(window) = lock(&self.outbound).get(&channel).cloned() else {
            return Ok(());
        };
        window.taken.fetch_max(prefix.taken, Ordering::AcqRel);
        if prefix.gone {
            window.gone.store(true, Ordering::Release);
        }
        window.waker.wake();
        Ok(())
    }

    /// Handler of `CHANNEL_CLOSE`: an end of a channel that ends here went away.
    pub(crate) fn on_close(&self, rt: &Runtime, message: Message<'_>) -> atoll_comm::Result<()> {
        let from = message.from();
        let (raw, _) = split(&message)?;
        let prefix = ClosePrefix::decode(raw, rt.comm.here(), rt.comm.len())
            .map_err(|reason| handler_error(from, CHANNEL_CLOSE, reason))?;
        let channel = prefix.channel;
        match prefix.closing {
            Closing::Receiver => {
                self.receiver_dropped(rt, channel);
                Ok(())
            }
            Closing::Sender { sent } => {
                let refused = {
                    let mut inbound = lock(&self.inbound);
                    match inbound.entry(channel) {
                        Entry::Vacant(slot) => {
                            let mut kept = Arrivals::default();
                            let closed = kept.close(sent);
                            slot.insert(Inbound::Waiting(kept));
                            closed.err()
                        }
                        Entry::Occupied(mut slot) => match slot.get_mut() {
                            Inbound::Waiting(kept) => kept.close(sent).err(),
                            Inbound::Attached(inbox) => inbox.close(sent).err(),
                            Inbound::Dropped => {
                                slot.remove();
                                None
                            }
                        },
                    }
                };
                match refused {
                    None => Ok(()),
                    Some(reason) => Err(handler_error(
                        from,
                        CHANNEL_CLOSE,
                        format!("{channel}: {reason}"),
                    )),
                }
            }
        }
    }

    /// `place` died: wake every end waiting on it (they look at the failure and return
    /// `PlaceFailed`), and forget the dropped receivers that waited for its close.
    pub(crate) fn fail_place(&self, place: Place) {
        let waiting: Vec<Arc<dyn Deliver>> = {
            let mut inbound = lock(&self.inbound);
            inbound.retain(|channel, entry| {
                !(channel.sender == place && matches!(entry, Inbound::Dropped))
            });
            inbound
                .iter()
                .filter(|(channel, _)| channel.sender == place)
                .filter_map(|(_, entry)| match entry {
                    Inbound::Attached(inbox) => Some(inbox.clone()),
                    _ => None,
                })
                .collect()
        };
        waiting.iter().for_each(|inbox| inbox.wake());
        let windows: Vec<Arc<Outbound>> = lock(&self.outbound)
            .iter()
            .filter(|(channel, _)| channel.receiver == place)
            .map(|(_, window)| window.clone())
            .collect();
        windows.iter().for_each(|window| window.waker.wake());
    }

    /// Sends `closing` of `channel` to its receiving place (from wherever the end is).
    pub(crate) fn send_close(&self, rt: &Runtime, channel: ChannelId, closing: Closing) {
        if rt.comm.is_failed(channel.receiver) {
            return;
        }
        let prefix = ClosePrefix { channel, closing };
        if let Err(error) =
            rt.comm
                .send_framed(channel.receiver, CHANNEL_CLOSE, &prefix.encode(), &())
        {
            tracing::debug!(%error, %channel, "could not close a channel");
        }
    }
}
