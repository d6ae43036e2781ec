//! Atoll's collectives: barrier, broadcast, reduce, allreduce, gather, allgather, scatter,
//! all-to-all (each with its `v` form for per-place sizes), inclusive and exclusive scans, on
//! any [`Team`] of places. Every one is async: it returns a future that can be awaited inside
//! an activity and inside a `finish` without blocking a worker, so collectives and remote
//! activities mix freely.
//!
//! Users reach them through the `atoll` facade (`atoll::world()` and
//! `use atoll::prelude::*`); this crate sits on the transport (`atoll-comm`) alone, so code
//! that drives the transport itself can use it too ([`Engine`], [`block_on`]).
//!
//! # Teams
//! The world team holds every place. [`Team::split`] makes sub-teams as `MPI_Comm_split`
//! does (by color, ranked by key), [`Team::split_by_node`] the team of the places on one
//! node. A team's id is computed identically at each member from its parent's id, the split's
//! sequence number and the color: no place serves ids. Every message carries its team's id,
//! the collective's sequence number on the team and its step, so concurrent collectives on
//! different teams and back-to-back collectives on one team never mix their messages.
//!
//! # Algorithms
//! α is a message's latency, β the time per byte moved, γ the time per byte combined, p the
//! team's size and n the bytes per member. Every algorithm works for any p (no power of two
//! needed), and every reduction combines in rank order, so operations need to be associative
//! but not commutative.
//!
//! | collective | algorithm | cost |
//! |---|---|---|
//! | barrier | dissemination | ⌈log₂ p⌉ α |
//! | broadcast | binomial tree | ⌈log₂ p⌉ (α + nβ) |
//! | reduce | binomial tree (rank order), then to the root | ⌈log₂ p⌉ (α + nβ + nγ) (+ α + nβ if the root is not rank 0) |
//! | allreduce, values and slices < 16 KiB | recursive doubling, pairwise fold-in/out for p ≠ 2^k | ⌈log₂ p⌉ (α + nβ + nγ) (+ 2(α + nβ) + nγ) |
//! | allreduce, slices ≥ 16 KiB | Rabenseifner: reduce-scatter by recursive halving, allgather by recursive doubling | 2⌈log₂ p⌉ α + 2nβ + nγ (+ the fold) |
//! | gather | binomial tree | ⌈log₂ p⌉ α + (p−1) nβ |
//! | allgather | Bruck | ⌈log₂ p⌉ α + (p−1) nβ |
//! | scatter | binomial tree | ⌈log₂ p⌉ α + (p−1) nβ |
//! | alltoall | pairwise exchange | (p−1) (α + nβ) |
//! | scan, exscan | recursive doubling | ⌈log₂ p⌉ (α + nβ + nγ) |
//!
//! # Data
//! Values are any rkyv type ([`Data`]), serialized once where they enter a collective,
//! forwarded as bytes by the places that relay them, and validated where they are read.
//! Slices of plain numbers ([`Element`]: integers, floats, `Pod` structs) take the `_slice`,
//! `_into` and `v` forms, which move the slice's bytes as they are (no per-element
//! serialization) and reduce element-wise in place. A peer's bytes are untrusted: a message
//! that does not validate, or does not match the collective (another size, another
//! collective), fails the collective with [`Error::InvalidMessage`] naming the sender.
//!
//! # Failures
//! A collective that waits for a place that died fails with [`Error::PlaceFailed`] instead of
//! hanging (the runtime wakes waiting collectives when it notices a death; [`block_on`]
//! looks by itself).

mod algorithms;
mod block;
mod bundle;
mod collectives;
mod data;
mod error;
mod mailbox;
pub mod op;
mod team;

pub use block::block_on;
pub use collectives::Collectives;
pub use data::{Data, Element, Parts};
pub use error::{Error, Result};
pub use team::{Engine, Team, HANDLER};
