//! Typed channels between two places, with backpressure: the message-passing style (of
//! Constellation, of Erlang, of MPI point-to-point) on the same places and transports as
//! `at!` and `finish`.
//!
//! A channel has one [`Sender<T>`] at its sending place and one [`Receiver<T>`] at its
//! receiving place, for any rkyv type `T` (any type `at!` arguments can be). There are two ways
//! to make one:
//!
//! - **Named** (the common case: each side opens its end where it runs, nothing travels):
//!   `Sender::<T>::new(to, id)` at the sending place and `Receiver::<T>::new(from, id)` at the
//!   receiving place, with the same `id: u64`. The two may be made in any order: values sent
//!   before the receiver exists are kept for it. An id can be used again once its channel is
//!   done (the k-th `Sender::new(to, id)` of a place pairs with the k-th
//!   `Receiver::new(from, id)` at `to`).
//! - **As a pair** made at any place, for channels made on the fly (a parent handing each child
//!   a channel back to it): [`channel::<T>(from, to)`](channel) returns both ends; an end
//!   made away from its place travels there inside `at!`/`async_at!` arguments (it is an rkyv
//!   type), before its first use. An end used at the wrong place is
//!   [`Error::ChannelElsewhere`]; an end that has been used cannot move
//!   ([`Error::ChannelEndInUse`]).
//!
//! ```
//! use atoll::prelude::*;
//! use atoll::channel::{channel, Receiver, Sender};
//!
//! /// Runs at another place; `out` came inside the arguments.
//! #[atoll::remote]
//! async fn squares(n: u64, mut out: Sender<u64>) {
//!     for i in 0..n {
//!         if out.send(i * i).await.is_err() {
//!             return; // the receiver is gone, or its place died
//!         }
//!     }
//! } // dropping `out` ends the channel
//!
//! /// A named channel: this end is opened where it runs.
//! #[atoll::remote]
//! async fn greet(to: Place) -> Result<(), String> {
//!     let mut tx = Sender::<String>::new(to, 7).map_err(|e| e.to_string())?;
//!     tx.send(format!("hello from {}", here())).await.map_err(|e| e.to_string())
//! }
//!
//! #[atoll::main]
//! async fn main() -> atoll::Result<()> {
//!     let worker = Place::new(num_places() - 1);
//!     let (tx, mut rx) = channel::<u64>(worker, here())?;
//!     async_at!(worker, squares(4, tx));
//!     let mut got = Vec::new();
//!     while let Some(square) = rx.recv().await? {
//!         got.push(square);
//!     }
//!     assert_eq!(got, [0, 1, 4, 9]);
//!
//!     let mut greetings = Receiver::<String>::new(worker, 7)?;
//!     assert_eq!(at!(worker, greet(here())).await?, Ok(()));
//!     assert_eq!(greetings.recv().await?, Some(format!("hello from {worker}")));
//!     Ok(())
//! }
//! ```
//!
//! # Sending and receiving
//!
//! - `sender.send(value).await` serializes `value` once, straight into the transport's buffer
//!   (by rendezvous above the eager threshold); the receiving place validates and deserializes
//!   it in the handler that takes it from the transport, so `recv` only moves it out.
//! - `receiver.recv().await` is `Ok(Some(value))`, then `Ok(None)` once the sender was dropped
//!   (or closed) and everything it sent has been taken. [`Receiver::try_recv`] does not wait.
//! - For code outside async, [`SendFuture::block`] and [`RecvFuture::block`]:
//!   `tx.send(v).block()?`, `rx.recv().block()?`.
//! - A `Receiver<T>` is a [`futures::Stream`] of `Result<T>` and a `Sender<T>` a
//!   [`futures::Sink<T>`], so `futures::select!`, `join!`, `StreamExt` and `SinkExt` work:
//!   one pipeline stage is `rx.map_ok(f).forward(tx).await`.
//!
//! # Backpressure
//!
//! Each channel has a window, its capacity ([`DEFAULT_CAPACITY`] values unless made with
//! [`Sender::with_capacity`] or [`channel_with_capacity`]): at most that many values are on
//! their way or waiting at the receiver. The receiver returns credit as it takes values (one
//! small message per quarter window); `send` waits when the window is full. So a fast sender
//! never makes the transport or the receiving place buffer without bound, and a receiver
//! checks every arrival against the window (a peer that overruns it is a protocol error).
//!
//! # Order, delivery, failure
//!
//! - FIFO per channel: values are numbered, and the receiver hands them out in that order.
//! - Everything sent before a place exits is delivered: a send hands the value to the
//!   transport, and at shutdown every place takes what the others sent before any of them
//!   exits (the runtime's shutdown waits for that), whether or not a `Receiver` ever reads it.
//! - A peer place that dies surfaces as [`Error::PlaceFailed`]: a `recv` gets the values that
//!   arrived first, then the error; a `send` waiting for room fails. Nothing hangs.
//! - A bad message from a peer (a value that fails validation, of another type, out of
//!   sequence, beyond the window) is [`Error::ChannelProtocol`] at the receiver after the values
//!   before it, never a panic.
//!
//! # Thread safety
//! Both ends are `Send`: an activity can hold one across `.await`, and an end can move between
//! threads of its place. Each is used through `&mut`: one task at a time sends (or receives) on
//! a channel.
//!
//! # Resource cleanup
//! Dropping the `Sender` closes the channel (the receiver sees `None` after the values sent
//! before). Dropping the `Receiver` discards the values not taken and makes later sends fail
//! with [`Error::ReceiverDropped`]. Values of a named channel whose `Receiver` is never opened
//! stay at the receiving place (at most one window) until the job ends.

mod arrivals;
mod block;
mod receiver;
mod sender;
pub(crate) mod table;
mod wire;

pub use crate::remote::Wire;
pub use receiver::{Receiver, RecvFuture};
pub use sender::{SendFuture, Sender};
pub use wire::ChannelId;
// What the ends travel as (their `rkyv::Archive` types); not used by programs.
#[doc(hidden)]
pub use wire::{ArchivedEndpointToken, EndpointToken, EndpointTokenResolver};

use atoll_comm::Place;

use crate::runtime::{runtime_ref, Runtime};
use crate::{Error, Result};

/// The window of a channel made without a capacity: values on their way or waiting at the
/// receiver at most.
pub const DEFAULT_CAPACITY: usize = 64;

/// The largest window a channel may have.
pub const MAX_CAPACITY: usize = 1 << 24;

/// Why [`Receiver::try_recv`] returned no value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TryRecvError {
    /// No value has arrived yet (the channel is not done).
    #[error("no value has arrived yet")]
    Empty,
    /// The channel failed: see the error (`recv` would have returned it).
    #[error(transparent)]
    Failed(Error),
}

/// A channel from place `from` to place `to`, made here, with a window of
/// [`DEFAULT_CAPACITY`] values: its [`Sender`] sends from `from`, its [`Receiver`] receives at
/// `to`. An end made away from its place travels there inside `at!`/`async_at!` arguments
/// before its first use; an end made at its place is ready at once.
///
/// ```
/// use atoll::prelude::*;
/// use atoll::channel::{channel, Sender};
///
/// #[atoll::remote]
/// async fn answer(mut reply: Sender<u64>) {
///     let _ = reply.send(42).await;
/// }
///
/// #[atoll::main]
/// async fn main() -> atoll::Result<()> {
///     let other = Place::new(num_places() - 1);
///     let (tx, mut rx) = channel::<u64>(other, here())?;
///     async_at!(other, answer(tx));
///     assert_eq!(rx.recv().await?, Some(42));
///     assert_eq!(rx.recv().await?, None); // the sender was dropped
///     Ok(())
/// }
/// ```
pub fn channel<T: Wire>(from: Place, to: Place) -> Result<(Sender<T>, Receiver<T>)> {
    channel_with_capacity(from, to, DEFAULT_CAPACITY)
}

/// [`channel`] with a window of `capacity` values (`1..=MAX_CAPACITY`).
pub fn channel_with_capacity<T: Wire>(
    from: Place,
    to: Place,
    capacity: usize,
) -> Result<(Sender<T>, Receiver<T>)> {
    let capacity = check_capacity(capacity)?;
    let rt = runtime_ref("channel")?;
    check_place(rt, from)?;
    check_place(rt, to)?;
    let here = rt.comm.here();
    let id = rt.channels.open_pair(here, from, to);
    let mut sender = Sender::unattached(id, capacity);
    let mut receiver = Receiver::unattached(id);
    if here == from {
        sender.attach(rt)?;
    }
    if here == to {
        receiver.attach(rt)?;
    }
    Ok((sender, receiver))
}

/// `capacity` as a window, if it is one.
pub(crate) fn check_capacity(capacity: usize) -> Result<u32> {
    match u32::try_from(capacity) {
        Ok(window) if (1..=MAX_CAPACITY).contains(&capacity) => Ok(window),
        _ => Err(Error::ChannelCapacity {
            capacity,
            max: MAX_CAPACITY,
        }),
    }
}

/// `place`, if it is one of the job's.
pub(crate) fn check_place(rt: &Runtime, place: Place) -> Result<()> {
    if place.index() < rt.comm.len() {
        Ok(())
    } else {
        Err(Error::Comm(atoll_comm::Error::NoSuchPlace {
            place,
            places: rt.comm.len(),
        }))
    }
}
