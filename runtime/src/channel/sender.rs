//! [`Sender`]: the sending end of a channel, a `futures::Sink` held to its window.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use atoll_comm::Place;
use futures::future::FusedFuture;
use futures::Sink;
use rkyv::rancor::{Fallible, Source};

use super::block::block_on;
use super::table::Outbound;
use super::wire::{
    type_hash, ArchivedEndpointToken, ChannelId, Closing, DataPrefix, EndpointToken,
    EndpointTokenResolver,
};
use crate::remote::Wire;
use crate::runtime::{runtime_ref, Runtime, CHANNEL_DATA};
use crate::{Error, Result};

/// The sending end of a channel: [`Sender::send`] serializes a value once, straight into the
/// transport's buffer to the receiving place.
///
/// At most the channel's *capacity* (its window, [`DEFAULT_CAPACITY`] unless set) of values
/// are on their way or waiting at the receiver at any time: `send` waits for room, which the
/// receiver makes by taking values (it returns credit every quarter window). A fast sender
/// therefore never makes either place buffer without bound.
///
/// Dropping the `Sender` (or closing it, `SinkExt::close`) ends the channel: the receiver gets
/// every value sent before, then `None`. `send` fails with [`Error::ReceiverDropped`] once the
/// receiver is gone, and with [`Error::PlaceFailed`] if the receiving place died. A `Sender` is
/// also a [`futures::Sink`], so `SinkExt::send`/`feed` and `StreamExt::forward` work on it;
/// [`SendFuture::block`] waits outside async code.
///
/// A `Sender` sends only from the channel's sending place. Made elsewhere (by
/// [`channel`](super::channel)), it travels there inside `at!`/`async_at!` arguments, before
/// its first use.
///
/// ```
/// use atoll::prelude::*;
/// use atoll::channel::{Receiver, Sender};
/// use futures::{SinkExt, StreamExt, TryStreamExt};
///
/// /// A stage at place 1: doubles what place 0 sends on channel 1, back to place 0 on channel 2.
/// #[atoll::remote]
/// async fn double() -> Result<(), String> {
///     let input = Receiver::<u64>::new(Place::new(0), 1).map_err(|e| e.to_string())?;
///     let output = Sender::<u64>::with_capacity(Place::new(0), 2, 16).map_err(|e| e.to_string())?;
///     input.map_ok(|x| 2 * x).forward(output).await.map_err(|e| e.to_string())
/// }
///
/// #[atoll::main]
/// async fn main() -> atoll::Result<()> {
///     let stage = Place::new(1);
///     let mut to_stage = Sender::<u64>::new(stage, 1)?;
///     let from_stage = Receiver::<u64>::new(stage, 2)?;
///     let feed = async move {
///         to_stage.send_all(&mut futures::stream::iter(1..=3).map(Ok)).await?;
///         to_stage.close().await // or drop it
///     };
///     let (fed, stage, doubled) = futures::join!(
///         feed,
///         at!(stage, double()),
///         from_stage.try_collect::<Vec<u64>>(),
///     );
///     fed?;
///     assert_eq!(stage?, Ok(()));
///     assert_eq!(doubled?, [2, 4, 6]);
///     Ok(())
/// }
/// ```
///
/// [`DEFAULT_CAPACITY`]: super::DEFAULT_CAPACITY
pub struct Sender<T> {
    channel: ChannelId,
    capacity: u32,
    type_hash: u32,
    /// The window, once in use at the sending place.
    window: Option<Arc<Outbound>>,
    /// Values sent.
    sent: u64,
    /// The close has been sent (or was not needed).
    closed: bool,
    /// This handle was serialized: its copy at the destination is the end now.
    moved: AtomicBool,
    _values: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("channel", &self.channel)
            .field("capacity", &self.capacity)
            .field("sent", &self.sent)
            .field("attached", &self.window.is_some())
            .field("closed", &self.closed)
            .finish()
    }
}

impl<T: Wire> Sender<T> {
    /// The sending end of named channel `id` to place `to`, at this place, with a window of
    /// [`DEFAULT_CAPACITY`](super::DEFAULT_CAPACITY) values.
    ///
    /// The k-th `Sender::new(to, id)` made at a place is the peer of the k-th
    /// `Receiver::new(from, id)` made at `to` (`from` being this place): both ends may be made
    /// in any order, and an id may be used again once its channel is done.
    pub fn new(to: Place, id: u64) -> Result<Sender<T>> {
        Sender::with_capacity(to, id, super::DEFAULT_CAPACITY)
    }

    /// [`Sender::new`] with a window of `capacity` values (`1..=MAX_CAPACITY`).
    pub fn with_capacity(to: Place, id: u64, capacity: usize) -> Result<Sender<T>> {
        let capacity = super::check_capacity(capacity)?;
        let rt = runtime_ref("Sender::new")?;
        super::check_place(rt, to)?;
        let here = rt.comm.here();
        let channel = rt.channels.open_named(here, to, here, id);
        let mut sender = Sender::unattached(channel, capacity);
        sender.attach(rt)?;
        Ok(sender)
    }

    /// Sends `value`, once the window has room: the future completes when the value is in the
    /// transport's hands (not when it is received).
    pub fn send(&mut self, value: T) -> SendFuture<'_, T> {
        SendFuture {
            sender: self,
            value: Some(value),
        }
    }

    /// Waits until the window has room for one more value (what `Sink::poll_ready` does).
    pub fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let rt = runtime_ref("Sender::send")?;
        self.poll_room_in(rt, cx)
    }

    fn poll_room_in(&mut self, rt: &Runtime, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let capacity = u64::from(self.capacity);
        let (channel, sent) = (self.channel, self.sent);
        let window = self.attach(rt)?;
        let look = |window: &Outbound| -> Option<Result<()>> {
            if window.gone.load(Ordering::Acquire) {
                Some(Err(Error::ReceiverDropped(channel)))
            } else if sent - window.taken.load(Ordering::Acquire) < capacity {
                Some(Ok(()))
            } else if rt.comm.is_failed(channel.receiver) {
                Some(Err(Error::PlaceFailed(channel.receiver)))
            } else {
                None
            }
        };
        if let Some(ready) = look(window) {
            return Poll::Ready(ready);
        }
        window.waker.register(cx.waker());
        // Credit (or a failure) that came between the first look and the registration.
        match look(window) {
            Some(ready) => Poll::Ready(ready),
            None => Poll::Pending,
        }
    }

    /// Sends `value` now; the window must have room (after [`Sender::poll_room`]).
    fn send_now(&mut self, rt: &Runtime, value: &T) -> Result<()> {
        let (sent, capacity) = (self.sent, u64::from(self.capacity));
        let window = self.attach(rt)?;
        if sent - window.taken.load(Ordering::Acquire) >= capacity {
            return Err(Error::ChannelNotReady(self.channel));
        }
        self.send_unchecked(rt, value)
    }

    /// Sends `value`, the window being known to have room.
    fn send_unchecked(&mut self, rt: &Runtime, value: &T) -> Result<()> {
        if rt.comm.is_failed(self.channel.receiver) {
            return Err(Error::PlaceFailed(self.channel.receiver));
        }
        let prefix = DataPrefix {
            channel: self.channel,
            seq: self.sent,
            type_hash: self.type_hash,
            capacity: self.capacity,
        };
        rt.comm
            .send_framed(self.channel.receiver, CHANNEL_DATA, &prefix.encode(), value)?;
        self.sent += 1;
        Ok(())
    }
}

impl<T> Sender<T> {
    pub(crate) fn unattached(channel: ChannelId, capacity: u32) -> Sender<T> {
        Sender {
            channel,
            capacity,
            type_hash: type_hash::<T>(),
            window: None,
            sent: 0,
            closed: false,
            moved: AtomicBool::new(false),
            _values: PhantomData,
        }
    }

    /// The window, made this end's at its first use (at the sending place only).
    pub(crate) fn attach(&mut self, rt: &Runtime) -> Result<&Arc<Outbound>> {
        if self.closed {
            return Err(Error::SenderClosed(self.channel));
        }
        let window = match self.window.take() {
            Some(window) => window,
            None => {
                let here = rt.comm.here();
                if here != self.channel.sender {
                    return Err(Error::ChannelElsewhere {
                        end: "Sender",
                        channel: self.channel,
                        belongs: self.channel.sender,
                        here,
                    });
                }
                super::check_place(rt, self.channel.receiver)?;
                // A token from a peer carries the window: check it as the constructors do.
                super::check_capacity(self.capacity as usize)?;
                rt.channels.attach_sender(self.channel)?
            }
        };
        Ok(self.window.insert(window))
    }

    /// The channel.
    pub fn channel(&self) -> ChannelId {
        self.channel
    }

    /// The window: values that may be unreceived at once.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Values sent whose credit has not come back yet (at most the capacity).
    pub fn in_flight(&self) -> usize {
        let taken = self
            .window
            .as_ref()
            .map_or(0, |window| window.taken.load(Ordering::Acquire));
        (self.sent - taken.min(self.sent)) as usize
    }

    /// Ends the channel: the receiver gets `None` after the values sent before. What dropping
    /// the `Sender` does; done by `SinkExt::close` too.
    fn close(&mut self) {
        if std::mem::replace(&mut self.closed, true) || self.moved.load(Ordering::Acquire) {
            return;
        }
        let Ok(rt) = runtime_ref("Sender::close") else {
            return;
        };
        if self.window.take().is_some() {
            rt.channels.detach_sender(self.channel);
        }
        // Only an end in use at the sending place has sent anything; one dropped unused
        // anywhere closes the channel empty. The receiver knows the count, so a close can
        // never overtake a value.
        rt.channels
            .send_close(rt, self.channel, Closing::Sender { sent: self.sent });
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<T: Wire> Sink<T> for Sender<T> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_room(cx)
    }

    fn start_send(self: Pin<&mut Self>, value: T) -> Result<()> {
        let rt = runtime_ref("Sender::start_send")?;
        self.get_mut().send_now(rt, &value)
    }

    /// Values are in the transport's hands once `start_send` returns: nothing to flush.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().close();
        Poll::Ready(Ok(()))
    }
}

/// The future of [`Sender::send`]; [`SendFuture::block`] waits for it outside async code.
#[derive(Debug)]
#[must_use = "a future does nothing unless awaited (or blocked on)"]
pub struct SendFuture<'a, T> {
    sender: &'a mut Sender<T>,
    value: Option<T>,
}

// The value is never pinned: it is moved out (by reference into the serializer) when sent.
impl<T> Unpin for SendFuture<'_, T> {}

impl<T: Wire> SendFuture<'_, T> {
    /// Sends on this thread, delivering this place's messages while it waits for room: for
    /// code outside async (a plain thread, a synchronous function). It runs no other activity
    /// of this place while it waits, so do not use it where one must run for room to come.
    pub fn block(self) -> Result<()> {
        let receiver = self.sender.channel.receiver;
        block_on("SendFuture::block", receiver, self)
    }
}

impl<T: Wire> Future for SendFuture<'_, T> {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if this.value.is_none() {
            return Poll::Ready(Ok(()));
        }
        let rt = runtime_ref("Sender::send")?;
        match this.sender.poll_room_in(rt, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => {
                this.value = None;
                Poll::Ready(Err(error))
            }
            Poll::Ready(Ok(())) => {
                match this.value.take() {
                    // `poll_room_in` has just seen room, and the receiver alive.
                    Some(value) => Poll::Ready(this.sender.send_unchecked(rt, &value)),
                    None => Poll::Ready(Ok(())),
                }
            }
        }
    }
}

impl<T: Wire> FusedFuture for SendFuture<'_, T> {
    fn is_terminated(&self) -> bool {
        self.value.is_none()
    }
}

// A `Sender` travels inside `at!`/`async_at!` arguments as its channel's token (with its
// window); the copy that arrives is the end from then on.

impl<T> rkyv::Archive for Sender<T> {
    type Archived = ArchivedEndpointToken;
    type Resolver = EndpointTokenResolver;

    fn resolve(&self, resolver: Self::Resolver, out: rkyv::Place<Self::Archived>) {
        rkyv::Archive::resolve(
            &EndpointToken::new(self.channel, self.capacity),
            resolver,
            out,
        );
    }
}

impl<T, S> rkyv::Serialize<S> for Sender<T>
where
    S: Fallible + ?Sized,
    S::Error: Source,
    EndpointToken: rkyv::Serialize<S>,
{
    fn serialize(&self, serializer: &mut S) -> std::result::Result<Self::Resolver, S::Error> {
        if self.window.is_some() {
            return Err(S::Error::new(Error::ChannelEndInUse {
                end: "Sender",
                channel: self.channel,
                place: self.channel.sender,
            }));
        }
        if self.closed {
            return Err(S::Error::new(Error::SenderClosed(self.channel)));
        }
        self.moved.store(true, Ordering::Release);
        rkyv::Serialize::serialize(&EndpointToken::new(self.channel, self.capacity), serializer)
    }
}

impl<T, D: Fallible + ?Sized> rkyv::Deserialize<Sender<T>, D> for ArchivedEndpointToken {
    fn deserialize(&self, _: &mut D) -> std::result::Result<Sender<T>, D::Error> {
        let token = self.to_token();
        Ok(Sender::unattached(token.channel(), token.capacity()))
    }
}
