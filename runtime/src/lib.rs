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
//! - `runtime`: start-up ([`run`]), the runtime's messages, shutdown; and, for the benchmark
//!   only, an echo handler pair (ids 5 and 6) that measures the bare active-message round
//!   trip under the runtime (`__private::__bench_echo_round_trip`).

mod activity;
mod call;
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
pub use runtime::{here, num_places, places, run};

/// Runs a remote function at a place and returns a future of its result:
/// `at!(place, f(a, b)).await` is a `Result<T, atoll::Error>`.
///
/// `f` must be an `#[atoll::remote] async fn`. At [`here()`] it runs in the calling activity,
/// without serialization.
#[macro_export]
macro_rules! at {
    ($place:expr, $($function:ident)::+ ( $($arg:expr),* $(,)? )) => {
        $crate::call_at::<$($function)::+::Remote>($place, ($($arg,)*))
    };
}

/// Starts a remote function at a place without waiting: `async_at!(place, f(a, b));`. The
/// new activity belongs to the enclosing [`finish`], which reports its panic or failure.
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
