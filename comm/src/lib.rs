//! Atoll's transport layer: places, active messages, registered memory and one-sided RMA,
//! progress, bootstrap and local launch.
//!
//! # Quick start
//!
//! ```
//! use atoll_comm::{CommBuilder, HandlerId, Place};
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//!
//! const ADD: HandlerId = HandlerId::new(1);
//!
//! fn main() -> atoll_comm::Result<()> {
//!     let total = Arc::new(AtomicU64::new(0));
//!     let sum = total.clone();
//!     // Outside any launcher this starts ATOLL_PLACES (default 2) copies of the program.
//!     let comm = CommBuilder::new()
//!         .handler(ADD, move |_comm, msg| {
//!             let archived = msg.access::<Vec<u64>>()?; // validated in place
//!             sum.fetch_add(archived.iter().map(|v| v.to_native()).sum(), Ordering::Relaxed);
//!             Ok(())
//!         })
//!         .init()?;
//!     let next = Place::new((comm.here().index() + 1) % comm.len());
//!     comm.send(next, ADD, &vec![1u64, 2, 3])?;
//!     comm.wait_until(|| total.load(Ordering::Relaxed) == 6)?;
//!     comm.flush()?;
//!     comm.bootstrap_barrier()?;
//!     Ok(())
//! }
//! ```
//!
//! # The contract every provider meets
//!
//! - **Places** are `0..N`, fixed for the job ([`Comm::here`], [`Comm::len`]).
//! - **Active messages**: [`Comm::send`] serializes the payload with rkyv once, directly into
//!   provider-owned memory (a ring slot for shm). The handler registered under the message's
//!   [`HandlerId`] receives the bytes in place and aligned, and validates them
//!   ([`Message::access`]) before use. Payloads above `ATOLL_EAGER_MAX` go by rendezvous:
//!   they stay in the sender's registered memory and the receiver pulls them with a get.
//! - **Registered memory**: [`Comm::alloc_region`] gives a [`Region`] whose [`RemoteKey`] can be
//!   sent anywhere; [`Comm::put`], [`Comm::get`], [`Comm::fetch_add`] and
//!   [`Comm::compare_swap`] act on (key, offset) and complete as an [`RmaFuture`].
//! - **Progress** is explicit: [`Comm::progress`] is cheap and delivers what arrived; no
//!   thread runs in the background. [`Comm::wait_until`] spins, yields, then sleeps until a
//!   sender wakes the place.
//! - **Order**: FIFO from one place to another; nothing across senders. `ATOLL_CHAOS=seed`
//!   delays and reorders deliveries between senders to prove code does not depend on it.
//! - **Bad input** is a typed [`Error`] naming the cause; the offending message is discarded
//!   and nothing else is lost. (A record whose framing is corrupt, so that its length cannot
//!   be trusted, costs the records its sender had published up to then: the receiver skips to
//!   that sender's published tail.)
//! - **Completion and order**: an RMA operation has completed at the target when its
//!   [`RmaFuture`] completes; a message sent after that is delivered after the data is in
//!   place (the put-then-notify pattern needs no extra fence).
//!
//! The providers form a closed set (an `enum`, dispatched by `match`): the built-in `shm`
//! (default), and UCX and libfabric behind the cargo features `ucx` and `ofi`, chosen at run
//! time with `ATOLL_PROVIDER`. A closed set keeps the data path free of dynamic dispatch and
//! lets every provider be tested by one conformance suite.
//!
//! # Cargo features
//! None by default: the shared-memory provider needs only Rust and a C compiler.
//! - `ucx`: the UCX provider (`ATOLL_PROVIDER=ucx`), through the `ucx-sys` bindings (needs
//!   Debian's `libucx-dev` and, for bindgen, `libclang-dev`).
//! - `ofi`: the libfabric provider (`ATOLL_PROVIDER=ofi`; libfabric's own `FI_PROVIDER` picks
//!   the fabric: `shm`, `tcp;ofi_rxm`, ...). Needs libfabric 1.17 or newer with its headers
//!   (Debian: `libfabric-dev`) and libclang (`libclang-dev`) to build.
//!
//! Asking at run time for a provider the build lacks is [`Error::ProviderNotCompiled`].
//!
//! # Thread safety
//! [`Comm`] is `Send + Sync` and cheap to clone; handlers run on whichever thread calls
//! `progress`.
//!
//! # Resource cleanup
//! Shared-memory segments are unlinked once every place has mapped them, during
//! [`CommBuilder::init`]; the local launcher removes whatever a crash before that point left.
//! Children of the local launcher die with it.
//!
//! # Launchers
//! [`CommBuilder::init`] joins the job its environment describes ([`bootstrap`]): Atoll's
//! local launcher, PMIx (`mpirun`, `srun --mpi=pmix`; `libpmix.so.2` is loaded at run time),
//! the PMI-1 wire protocol (`mpiexec` of MPICH, `srun --mpi=pmi2`), or the `env` bootstrap
//! (a coordinator run by place 0). Outside any launcher the process becomes the local
//! launcher. Under an external launcher, the launcher ends the job when a place dies, so
//! [`Comm::is_failed`] may stay `false`.
//!
//! # Configuration
//! Every environment variable is listed, with its default, in [`config`].

pub mod bootstrap;
mod chaos;
mod comm;
pub mod config;
mod error;
mod handler;
mod heap;
pub(crate) mod launch;
mod log;
#[cfg(feature = "ofi")]
mod ofi;
mod payload;
mod place;
mod provider;
mod rma;
pub(crate) mod shm;
#[cfg(feature = "ucx")]
mod ucx;

pub use comm::{Comm, CommBuilder, RawRecord, SendBatch};
pub use error::{Error, Result};
pub use handler::{Handler, HandlerId};
pub use payload::{CheckedArchive, Message, MessageWriter, Payload, PayloadSerializer};
pub use place::{ArchivedPlace, Place};
pub use rma::{ArchivedRemoteKey, Region, RemoteKey, RmaFuture};
