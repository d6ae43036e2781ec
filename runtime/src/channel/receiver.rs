//! [`Receiver`]: the receiving end of a channel, a `futures::Stream` of the values in the
//! order they were sent.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use atoll_comm::{Message, Place};
use futures::future::FusedFuture;
use futures::stream::FusedStream;
use futures::Stream;
use rkyv::rancor::{Fallible, Source};

use super::arrivals::Arrivals;
use super::block::block_on;
use super::table::Deliver;
use super::wire::{
    ArchivedEndpointToken, ChannelId, Closing, DataPrefix, EndpointToken, EndpointTokenResolver,
};
use crate::remote::Wire;
use crate::runtime::{runtime_ref, Runtime};
use crate::{Error, Result};

/// The receiving state of a channel whose `Receiver` is at this place.
///
/// Lock order: a value dropped under the inbox's lock may drop channel ends, which take the
/// table's lock; so the table never takes an inbox's lock while it holds its own.
pub(crate) struct Inbox<T> {
    state: Mutex<InboxState<T>>,
    /// The sender has closed (mirrors the arrivals', readable without the lock).
    closed: AtomicBool,
}

struct InboxState<T> {
    arrivals: Arrivals<T>,
    waker: Option<Waker>,
}

/// What a look into the inbox found.
enum Look<T> {
    /// The next value, and the credit to send back, if due.
    Value(T, Option<u64>),
    /// Nothing yet (the waker is registered).
    Empty,
    /// The sender closed and every value was taken.
    Finished,
    /// The sender broke the protocol (after the values before the breach were taken).
    Broken(String),
}

impl<T> Inbox<T> {
    pub(crate) fn new(arrivals: Arrivals<T>) -> Inbox<T> {
        Inbox {
            closed: AtomicBool::new(arrivals.is_closed()),
            state: Mutex::new(InboxState {
                arrivals,
                waker: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, InboxState<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn look(&self, cx: &mut Context<'_>) -> Look<T> {
        let mut state = self.lock();
        if let Some(value) = state.arrivals.take() {
            let credit = state.arrivals.credit_due();
            return Look::Value(value, credit);
        }
        if let Some(reason) = state.arrivals.error() {
            return Look::Broken(reason.to_owned());
        }
        if state.arrivals.is_finished() {
            return Look::Finished;
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Look::Empty
    }

    /// Runs `change` on the arrivals, then wakes the receiver.
    fn change(
        &self,
        change: impl FnOnce(&mut Arrivals<T>) -> std::result::Result<(), String>,
    ) -> std::result::Result<(), String> {
        let (result, waker) = {
            let mut state = self.lock();
            let result = change(&mut state.arrivals);
            (result, state.waker.take())
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        result
    }
}

impl<T: Wire> Deliver for Inbox<T> {
    fn deliver(
        &self,
        prefix: &DataPrefix,
        message: &Message<'_>,
    ) -> std::result::Result<(), String> {
        // Validated and deserialized straight from the transport's buffer, before the lock.
        match T::decode(message) {
            Ok(value) => self.change(|arrivals| arrivals.arrive(prefix, value)),
            Err(error) => {
                let reason = format!("value #{} failed validation: {error}", prefix.seq);
                self.change(|arrivals| {
                    arrivals.refuse(reason.clone());
                    Err(reason)
                })
            }
        }
    }

    fn close(&self, sent: u64) -> std::result::Result<(), String> {
        self.change(|arrivals| arrivals.close(sent))?;
        self.closed.store(true, Ordering::Release);
        Ok(())
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn wake(&self) {
        let waker = self.lock().waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The receiving end of a channel: values come out in the order the [`Sender`] sent them.
///
/// [`Receiver::recv`] waits for the next value: `Ok(Some(value))`, or `Ok(None)` once the
/// sender was dropped (or closed) and every value it sent has been taken. If the sending place
/// dies first, `recv` returns the values that arrived, then `Err(Error::PlaceFailed)`, never
/// a hang. A `Receiver` is also a [`futures::Stream`] of `Result<T>` (ending after `None` or
/// the first error), so `StreamExt` combinators, `futures::select!` and `forward` into a
/// [`Sender`] work on it; [`RecvFuture::block`] waits outside async code.
///
/// Values that arrive before the `Receiver` exists (a named channel opened later at this place,
/// or a `Receiver` still travelling here inside `at!` arguments) are kept, within the sender's
/// window. Dropping the `Receiver` discards what it did not take and makes the sender's next
/// send fail with [`Error::ReceiverDropped`].
///
/// A `Receiver` receives only at the channel's receiving place. Made elsewhere (by
/// [`channel`](super::channel)), it travels there inside `at!`/`async_at!` arguments, before
/// its first use.
///
/// ```
/// use atoll::prelude::*;
/// use atoll::channel::{Receiver, Sender};
///
/// #[atoll::remote]
/// async fn count_to(n: u64) -> Result<(), String> {
///     let mut tx = Sender::<u64>::new(Place::new(0), 9).map_err(|e| e.to_string())?;
///     for i in 1..=n {
///         tx.send(i).await.map_err(|e| e.to_string())?;
///     }
///     Ok(())
/// }
///
/// #[atoll::main]
/// async fn main() -> atoll::Result<()> {
///     let from = Place::new(num_places() - 1);
///     let mut rx = Receiver::<u64>::new(from, 9)?;
///     async_at!(from, count_to(100));
///     // Blocking, on a thread of the program's own (in async code, `.await` instead).
///     let sum = std::thread::spawn(move || {
///         let mut sum = 0;
///         while let Some(i) = rx.recv().block()? {
///             sum += i;
///         }
///         Ok::<u64, atoll::Error>(sum)
///     })
///     .join()
///     .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
///     assert_eq!(sum, 5050);
///     Ok(())
/// }
/// ```
///
/// [`Sender`]: super::Sender
pub struct Receiver<T> {
    channel: ChannelId,
    inbox: Option<Arc<Inbox<T>>>,
    /// `recv` has returned `None` or an error.
    done: bool,
    /// This handle was serialized: its copy at the destination is the end now.
    moved: AtomicBool,
    _values: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("channel", &self.channel)
            .field("attached", &self.inbox.is_some())
            .field("done", &self.done)
            .finish()
    }
}

impl<T: Wire> Receiver<T> {
    /// The receiving end of named channel `id` from place `from`, at this place.
    ///
    /// The k-th `Receiver::new(from, id)` made at a place is the peer of the k-th
    /// `Sender::new(to, id)` made at `from` (`to` being this place): both ends may be made in
    /// any order, and an id may be used again once its channel is done.
    pub fn new(from: Place, id: u64) -> Result<Receiver<T>> {
        let rt = runtime_ref("Receiver::new")?;
        super::check_place(rt, from)?;
        let here = rt.comm.here();
        let channel = rt.channels.open_named(from, here, here, id);
        let mut receiver = Receiver::unattached(channel);
        receiver.attach(rt)?;
        Ok(receiver)
    }

    /// Waits for the next value: `Ok(Some(value))`; `Ok(None)` once the sender is done and
    /// everything it sent has been taken; `Err(..)` if the sending place died
    /// ([`Error::PlaceFailed`]), the end is not at its place, or the sender broke the protocol.
    pub fn recv(&mut self) -> RecvFuture<'_, T> {
        RecvFuture {
            receiver: self,
            finished: false,
        }
    }

    /// The next value if one has arrived: `Ok(Some(value))`; `Ok(None)` if the channel is done
    /// (as [`Receiver::recv`] says); `Err(TryRecvError::Empty)` if nothing is there yet.
    pub fn try_recv(&mut self) -> std::result::Result<Option<T>, super::TryRecvError> {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        match self.poll_recv(&mut cx) {
            Poll::Ready(Ok(value)) => Ok(value),
            Poll::Ready(Err(error)) => Err(super::TryRecvError::Failed(error)),
            Poll::Pending => Err(super::TryRecvError::Empty),
        }
    }

    /// The receiving state, made this end's at its first use (at the receiving place only).
    pub(crate) fn attach(&mut self, rt: &Runtime) -> Result<&Arc<Inbox<T>>> {
        let inbox = match self.inbox.take() {
            Some(inbox) => inbox,
            None => {
                let here = rt.comm.here();
                if here != self.channel.receiver {
                    return Err(Error::ChannelElsewhere {
                        end: "Receiver",
                        channel: self.channel,
                        belongs: self.channel.receiver,
                        here,
                    });
                }
                super::check_place(rt, self.channel.sender)?;
                rt.channels.attach_receiver::<T>(self.channel)?
            }
        };
        Ok(self.inbox.insert(inbox))
    }

    /// [`Receiver::recv`] as a poll.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<T>>> {
        if self.done {
            return Poll::Ready(Ok(None));
        }
        let outcome = self.look(cx);
        if !matches!(outcome, Poll::Pending | Poll::Ready(Ok(Some(_)))) {
            self.done = true;
        }
        outcome
    }

    fn look(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<T>>> {
        let rt = runtime_ref("Receiver::recv")?;
        let channel = self.channel;
        let look = self.attach(rt)?.look(cx);
        match look {
            Look::Value(value, credit) => {
                if let Some(taken) = credit {
                    rt.channels.send_credit(rt, channel, taken, false);
                }
                Poll::Ready(Ok(Some(value)))
            }
            Look::Finished => Poll::Ready(Ok(None)),
            Look::Broken(reason) => Poll::Ready(Err(Error::ChannelProtocol {
                channel,
                from: channel.sender,
                reason,
            })),
            // The waker is registered: a failure found after this look wakes it.
            Look::Empty if rt.comm.is_failed(channel.sender) => {
                Poll::Ready(Err(Error::PlaceFailed(channel.sender)))
            }
            Look::Empty => Poll::Pending,
        }
    }
}

impl<T> Receiver<T> {
    pub(crate) fn unattached(channel: ChannelId) -> Receiver<T> {
        Receiver {
            channel,
            inbox: None,
            done: false,
            moved: AtomicBool::new(false),
            _values: PhantomData,
        }
    }

    /// The channel.
    pub fn channel(&self) -> ChannelId {
        self.channel
    }

    /// Values that have arrived and wait to be taken (never more than the sender's window).
    pub fn queued(&self) -> usize {
        self.inbox
            .as_ref()
            .map_or(0, |inbox| inbox.lock().arrivals.buffered())
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if self.moved.load(Ordering::Acquire) {
            return;
        }
        let Ok(rt) = runtime_ref("Receiver::drop") else {
            return;
        };
        if rt.comm.here() == self.channel.receiver {
            rt.channels.receiver_dropped(rt, self.channel);
        } else {
            rt.channels.send_close(rt, self.channel, Closing::Receiver);
        }
    }
}

impl<T: Wire> Stream for Receiver<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        self.get_mut().poll_recv(cx).map(Result::transpose)
    }
}

impl<T: Wire> FusedStream for Receiver<T> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

/// The future of [`Receiver::recv`]; [`RecvFuture::block`] waits for it outside async code.
#[derive(Debug)]
#[must_use = "a future does nothing unless awaited (or blocked on)"]
pub struct RecvFuture<'a, T> {
    receiver: &'a mut Receiver<T>,
    finished: bool,
}

impl<T: Wire> RecvFuture<'_, T> {
    /// Waits for the value on this thread, delivering this place's messages meanwhile: for
    /// code outside async (a plain thread, a synchronous function). It runs no other activity
    /// of this place while it waits, so do not use it where one must run for the value to come.
    pub fn block(self) -> Result<Option<T>> {
        let sender = self.receiver.channel.sender;
        block_on("RecvFuture::block", sender, self)
    }
}

impl<T: Wire> Future for RecvFuture<'_, T> {
    type Output = Result<Option<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let outcome = this.receiver.poll_recv(cx);
        if outcome.is_ready() {
            this.finished = true;
        }
        outcome
    }
}

impl<T: Wire> FusedFuture for RecvFuture<'_, T> {
    fn is_terminated(&self) -> bool {
        self.finished
    }
}

// A `Receiver` travels inside `at!`/`async_at!` arguments as its channel's token; the copy that
// arrives is the end from then on.

impl<T> rkyv::Archive for Receiver<T> {
    type Archived = ArchivedEndpointToken;
    type Resolver = EndpointTokenResolver;

    fn resolve(&self, resolver: Self::Resolver, out: rkyv::Place<Self::Archived>) {
        rkyv::Archive::resolve(&EndpointToken::new(self.channel, 0), resolver, out);
    }
}

impl<T, S> rkyv::Serialize<S> for Receiver<T>
where
    S: Fallible + ?Sized,
    S::Error: Source,
    EndpointToken: rkyv::Serialize<S>,
{
    fn serialize(&self, serializer: &mut S) -> std::result::Result<Self::Resolver, S::Error> {
        if self.inbox.is_some() {
            return Err(S::Error::new(Error::ChannelEndInUse {
                end: "Receiver",
                channel: self.channel,
                place: self.channel.receiver,
            }));
        }
        self.moved.store(true, Ordering::Release);
        rkyv::Serialize::serialize(&EndpointToken::new(self.channel, 0), serializer)
    }
}

impl<T, D: Fallible + ?Sized> rkyv::Deserialize<Receiver<T>, D> for ArchivedEndpointToken {
    fn deserialize(&self, _: &mut D) -> std::result::Result<Receiver<T>, D::Error> {
        Ok(Receiver::unattached(self.to_token().channel()))
    }
}
