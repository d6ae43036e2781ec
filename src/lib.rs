#![doc = include_str!("../README.md")]

pub use atoll_collectives as collectives;
pub use atoll_collectives::{op, Collectives, Parts, Team};
pub use atoll_comm as comm;
pub use atoll_comm::{CommBuilder, HandlerId, Message, Region, RemoteKey};
pub use atoll_macros::{main, remote};
/// Typed channels between two places, with backpressure: [`channel::Sender`],
/// [`channel::Receiver`].
pub use atoll_runtime::channel;
pub use atoll_runtime::{
    async_at, at, finish, here, num_places, places, run, world, Error, Failure, FinishError,
    GlobalRef, ObjectId, Place, PlaceLocal, Result,
};

/// What programs written against Atoll use: `use atoll::prelude::*;`.
pub mod prelude {
    pub use crate::{
        async_at, at, finish, here, num_places, op, places, remote, world, Collectives, GlobalRef,
        Parts, Place, PlaceLocal, Team,
    };
}

/// What `#[atoll::remote]` and `#[atoll::main]` expand to. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use atoll_runtime::__private::inventory;
    pub use atoll_runtime::{
        call_at, fn_id, run as run_main, spawn_at, BoxFuture, RemoteEntry, RemoteFn, Wire,
    };
}
