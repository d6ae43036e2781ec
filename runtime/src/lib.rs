//! Atoll's APGAS runtime: remote functions, `at!`, `async_at!`, `finish`, worker pools.
//!
//! Users add the facade crate `atoll` and write against `atoll::prelude::*`; this crate is
//! what it re-exports. See the facade's documentation for the model and examples.
//!
//! # Layers
//! - [`remote`](crate::RemoteFn): the registry of `#[atoll::remote]` functions, by stable id.
//! - `call`: `at!` ([`call_at`]) and `async_at!` ([`spawn_at`]), and their receiving side.
//! - `finish`: [`finish`] and its termination protocol (credit recovery; see its docs).
//! - `scheduler`: one work-stealing pool per place; idle workers drive the transport.
//! - [`channel`]: typed channels between two places, with backpressure (`Sender`, `Receiver`).
//! - `runtime`: start-up ([`run`]), the runtime's messages, shutdown; and, for the benchmark
//!   only, an echo handler pair (ids 5 and 6) that measures the bare active-message round
//!   trip under the runtime (`__private::__bench_echo_round_trip`).

mod activity;
mod affinity;
mod call;
pub mod channel;
mod data;
mod error;
mod finish;
mod remote;
mod runtime;
mod scheduler;
mod wire;

pub use atoll_comm::Place;
pub use call::{call_at, spawn_at};
pub use data::{ArchivedObjectId, GlobalRef, ObjectId, PlaceLocal};
pub use error::{Error, Failure, FinishError, Result};
pub use finish::finish;
pub use remote::{fn_id, BoxFuture, RemoteEntry, RemoteFn, Wire};
pub use runtime::{here, num_places, places, run, world};

/// Runs a remote function at a place and returns a future of its result:
/// `at!(place, f(a, b)).await` is a `Result<T, atoll::Error>`.
///
/// `f` must be an `#[atoll::remote] async fn` (any path to it, any number of arguments). At
/// [`here()`] it runs in the calling activity, without serialization; elsewhere its arguments
/// are serialized once into the message, and activities it starts join the caller's finish.
///
/// ```
/// use atoll::prelude::*;
///
/// #[atoll::remote]
/// async fn scale(values: Vec<u64>, factor: u64) -> Vec<u64> {
///     values.into_iter().map(|v| v * factor).collect()
/// }
///
/// #[atoll::main]
/// async fn main() -> atoll::Result<()> {
///     let next = Place::new((here().index() + 1) % num_places());
///     // Two calls in flight at once; each is a future of `Result<Vec<u64>>`.
///     let (remote, local) = futures::join!(
///         at!(next, scale(vec![1, 2], 10)),
///         at!(here(), scale(vec![3], 2)),
///     );
///     assert_eq!(remote?, vec![10, 20]);
///     assert_eq!(local?, vec![6]);
///     Ok(())
/// }
/// ```
#[macro_export]
macro_rules! at {
    ($place:expr, $($function:ident)::+ ( $($arg:expr),* $(,)? )) => {
        $crate::call_at::<$($function)::+::Remote>($place, ($($arg,)*))
    };
}

/// Starts a remote function at a place without waiting: `async_at!(place, f(a, b));`. The
/// new activity belongs to the enclosing [`finish`], which waits for it (and for whatever it
/// starts, transitively) and reports its panic or failure.
///
/// ```
/// use atoll::prelude::*;
///
/// #[atoll::remote]
/// async fn spread(depth: u32) {
///     if depth > 0 {
///         let next = Place::new((here().index() + 1) % num_places());
///         async_at!(next, spread(depth - 1)); // joins the same finish, from another place
///     }
/// }
///
/// #[atoll::main]
/// async fn main() -> atoll::Result<()> {
///     finish(async {
///         async_at!(here(), spread(10));
///     })
///     .await?; // all 11 activities have ended
///     Ok(())
/// }
/// ```
#[macro_export]
macro_rules! async_at {
    ($place:expr, $($function:ident)::+ ( $($arg:expr),* $(,)? )) => {
        $crate::spawn_at::<$($function)::+::Remote>($place, ($($arg,)*))
    };
}

/// What the facade's macros expand to. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::runtime::bench_echo_round_trip as __bench_echo_round_trip;
    pub use inventory;
}
