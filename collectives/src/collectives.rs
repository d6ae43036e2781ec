//! The collectives of a team, as one trait in the style of rsmpi's `CommunicatorCollectives`:
//! `use atoll::prelude::*` and call them on any [`Team`].

use std::future::Future;

use crate::algorithms::allreduce::{self, SEGMENTED_MIN_BYTES};
use crate::algorithms::gather::decode_blocks;
use crate::algorithms::{
    alltoall, barrier, broadcast, encode_value, gather, reduce, scan, scatter, SliceAccumulator,
    ValueAccumulator,
};
use crate::bundle::Block;
use crate::data::{elements, Data, Element, Parts};
use crate::op::Reduction;
use crate::team::{Call, Team};
use crate::{Error, Result};

/// The collectives every team runs. Each is a collective call: every member of the team calls
/// it, in the same order as the team's other collectives, with matching arguments (the same
/// root; per-member sizes where a `v` variant says so). Each returns a future at once — the
/// collective's place in the team's order is fixed by the call, not by the first poll — that
/// completes when this member's part is done; awaiting it inside an activity or a `finish`
/// leaves the place's workers free (nothing blocks a thread).
///
/// Values are any rkyv type ([`Data`]); the `_slice`, `_into` and `v` forms move slices of
/// plain numbers ([`Element`]) as their bytes. Reductions take an operation from
/// [`crate::op`] or any closure `Fn(T, T) -> T`; they combine in rank order.
///
/// ```no_run
/// use atoll_collectives::{block_on, op, Collectives, Engine};
///
/// let engine = Engine::new();
/// let comm = engine.register(atoll_comm::CommBuilder::new()).init()?;
/// let world = engine.world(&comm);
/// let me = world.rank() as u64;
/// block_on(&comm, async {
///     world.barrier().await?;
///     let sum = world.allreduce(me, op::Sum).await?;
///     let all: Vec<u64> = world.allgather(&me).await?;
///     let greeting = world.broadcast(0, (me == 0).then(|| "hello".to_string())).await?;
///     let prefix = world.scan(me, op::Sum).await?;
///     let norms = world.allreduce_slice(&[1.0f64, me as f64], op::Max).await?;
///     assert_eq!(all.iter().sum::<u64>(), sum);
///     assert_eq!(prefix, (0..=me).sum::<u64>());
///     assert_eq!(greeting, "hello");
///     assert_eq!(norms[1], (world.size() - 1) as f64);
///     Ok::<(), atoll_collectives::Error>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Collectives {
    /// Completes once every member has called it.
    fn barrier(&self) -> impl Future<Output = Result<()>> + Send + 'static;

    /// The root's value, at every member: the root passes `Some(value)`, the others `None`
    /// (their value, if any, is ignored).
    fn broadcast<T: Data>(
        &self,
        root: usize,
        value: Option<T>,
    ) -> impl Future<Output = Result<T>> + Send + 'static;

    /// Overwrites `buffer` at every member with the root's: every member passes a buffer of
    /// the same length (as `MPI_Bcast` does).
    fn broadcast_into<'a, E: Element>(
        &self,
        root: usize,
        buffer: &'a mut [E],
    ) -> impl Future<Output = Result<()>> + Send + 'a;

    /// Every member's value combined with `op`, in rank order, at the root (`None`
    /// elsewhere).
    fn reduce<T: Data, O: Reduction<T> + 'static>(
        &self,
        root: usize,
        value: T,
        op: O,
    ) -> impl Future<Output = Result<Option<T>>> + Send + 'static;

    /// Element-wise [`Collectives::reduce`] of slices of the same length.
    fn reduce_slice<'a, E: Element, O: Reduction<E> + 'a>(
        &self,
        root: usize,
        data: &'a [E],
        op: O,
    ) -> impl Future<Output = Result<Option<Vec<E>>>> + Send + 'a;

    /// Every member's value combined with `op`, in rank order, at every member.
    fn allreduce<T: Data, O: Reduction<T> + 'static>(
        &self,
        value: T,
        op: O,
    ) -> impl Future<Output = Result<T>> + Send + 'static;

    /// Element-wise [`Collectives::allreduce`] of slices of the same length.
    fn allreduce_slice<'a, E: Element, O: Reduction<E> + 'a>(
        &self,
        data: &'a [E],
        op: O,
    ) -> impl Future<Output = Result<Vec<E>>> + Send + 'a;

    /// Every member's value, by rank, at the root (`None` elsewhere). Values may differ in
    /// size (a `Vec` per member is `MPI_Gatherv`).
    fn gather<T: Data>(
        &self,
        root: usize,
        value: &T,
    ) -> impl Future<Output = Result<Option<Vec<T>>>> + Send + 'static;

    /// Every member's slice (of any length), by rank, at the root (`None` elsewhere).
    fn gatherv<'a, E: Element>(
        &self,
        root: usize,
        data: &'a [E],
    ) -> impl Future<Output = Result<Option<Parts<E>>>> + Send + 'a;

    /// Every member's value, by rank, at every member.
    fn allgather<T: Data>(
        &self,
        value: &T,
    ) -> impl Future<Output = Result<Vec<T>>> + Send + 'static;

    /// Every member's slice (of any length), by rank, at every member.
    fn allgatherv<'a, E: Element>(
        &self,
        data: &'a [E],
    ) -> impl Future<Output = Result<Parts<E>>> + Send + 'a;

    /// The root's `values[rank]` at each member: the root passes `Some` of one value per
    /// member, the others `None`.
    fn scatter<T: Data>(
        &self,
        root: usize,
        values: Option<Vec<T>>,
    ) -> impl Future<Output = Result<T>> + Send + 'static;

    /// The root's part `rank` at each member: the root passes `Some` of one part per member
    /// (of any lengths), the others `None`.
    fn scatterv<'a, E: Element>(
        &self,
        root: usize,
        parts: Option<&'a Parts<E>>,
    ) -> impl Future<Output = Result<Vec<E>>> + Send + 'a;

    /// `values[j]` goes to rank `j`; returns the value each rank sent to this one, by rank.
    fn alltoall<T: Data>(
        &self,
        values: Vec<T>,
    ) -> impl Future<Output = Result<Vec<T>>> + Send + 'static;

    /// Part `j` of `parts` goes to rank `j` (parts of any lengths); returns the part each
    /// rank sent to this one, by rank.
    fn alltoallv<'a, E: Element>(
        &self,
        parts: &'a Parts<E>,
    ) -> impl Future<Output = Result<Parts<E>>> + Send + 'a;

    /// The values of ranks `0..=rank` combined with `op`, in rank order (inclusive scan).
    fn scan<T: Data, O: Reduction<T> + 'static>(
        &self,
        value: T,
        op: O,
    ) -> impl Future<Output = Result<T>> + Send + 'static;

    /// The values of ranks `0..rank` combined with `op`, in rank order (exclusive scan);
    /// `None` at rank 0.
    fn exscan<T: Data, O: Reduction<T> + 'static>(
        &self,
        value: T,
        op: O,
    ) -> impl Future<Output = Result<Option<T>>> + Send + 'static;

    /// Element-wise [`Collectives::scan`] of slices of the same length.
    fn scan_slice<'a, E: Element, O: Reduction<E> + 'a>(
        &self,
        data: &'a [E],
        op: O,
    ) -> impl Future<Output = Result<Vec<E>>> + Send + 'a;

    /// Element-wise [`Collectives::exscan`] of slices of the same length; `None` at rank 0.
    fn exscan_slice<'a, E: Element, O: Reduction<E> + 'a>(
        &self,
        data: &'a [E],
        op: O,
    ) -> impl Future<Output = Result<Option<Vec<E>>>> + Send + 'a;
}

impl Collectives for Team {
    fn barrier(&self) -> impl Future<Output = Result<()>> + Send + 'static {
        let call = self.begin();
        async move { barrier::barrier(&call).await }
    }

    fn broadcast<T: Data>(
        &self,
        root: usize,
        value: Option<T>,
    ) -> impl Future<Output = Result<T>> + Send + 'static {
        let call = self.begin();
        async move {
            call.check_rank("the broadcast's root", root)?;
            if call.rank() == root {
                let value = value.ok_or(Error::RootWithoutValue {
                    collective: "broadcast",
                    root,
                })?;
                let bytes = encode_value(&value)?;
                broadcast::broadcast(&call, root, Some(&bytes)).await?;
                Ok(value)
            } else {
                let bytes = broadcast::broadcast(&call, root, None)
                    .await?
                    .unwrap_or_default();
                T::decode(&bytes).map_err(|error| {
                    call.invalid(root, format!("a value that does not validate: {error}"))
                })
            }
        }
    }

    fn broadcast_into<'a, E: Element>(
        &self,
        root: usize,
        buffer: &'a mut [E],
    ) -> impl Future<Output = Result<()>> + Send + 'a {
        let call = self.begin();
        async move {
            call.check_rank("the broadcast's root", root)?;
            broadcast::broadcast_into(&call, root, bytemuck::cast_slice_mut(buffer)).await
        }
    }

    fn reduce<T: Data, O: Reduction<T> + 'static>(
        &self,
        root: usize,
        value: T,
        op: O,
    ) -> impl Future<Output = Result<Option<T>>> + Send + 'static {
        let call = self.begin();
        async move {
            call.check_rank("the reduction's root", root)?;
            let acc = ValueAccumulator::new(value, &op);
            let result = reduce::reduce(&call, root, acc).await?;
            Ok(result.and_then(ValueAccumulator::into_value))
        }
    }

    fn reduce_slice<'a, E: Element, O: Reduction<E> + 'a>(
        &self,
        root: usize,
        data: &'a [E],
        op: O,
    ) -> impl Future<Output = Result<Option<Vec<E>>>> + Send + 'a {
        let call = self.begin();
        async move {
            call.check_rank("the reduction's root", root)?;
            let acc = SliceAccumulator::new(data, &op);
            Ok(reduce::reduce(&call, root, acc).await?.map(|acc| acc.data))
        }
    }

    fn allreduce<T: Data, O: Reduction<T> + 'static>(
        &self,
        value: T,
        op: O,
    ) -> impl Future<Output = Result<T>> + Send + 'static {
        let call = self.begin();
        async move {
            let acc = ValueAccumulator::new(value, &op);
            let result = allreduce::recursive_doubling(&call, acc).await?;
            result.into_value().ok_or(Error::Serialize {
                reason: "a reduction lost its value to a panicking operation".into(),
            })
        }
    }

    fn allreduce_slice<'a, E: Element, O: Reduction<E> + 'a>(
        &self,
        data: &'a [E],
        op: O,
    ) -> impl Future<Output = Result<Vec<E>>> + Send + 'a {
        let call = self.begin();
        async move {
            if std::mem::size_of_val(data) >= SEGMENTED_MIN_BYTES {
                return allreduce::segmented(&call, data.to_vec(), &op).await;
            }
            let acc = SliceAccumulator::new(data, &op);
            Ok(allreduce::recursive_doubling(&call, acc).await?.data)
        }
    }

    fn gather<T: Data>(
        &self,
        root: usize,
        value: &T,
    ) -> impl Future<Output = Result<Option<Vec<T>>>> + Send + 'static {
        let call = self.begin();
        let mine = encode_value(value);
        async move {
            call.check_rank("the gather's root", root)?;
            let blocks = gather::gather(&call, root, Block::owned(mine?)).await?;
            blocks
                .map(|blocks| decode_blocks(&call, blocks))
                .transpose()
        }
    }

    fn gatherv<'a, E: Element>(
        &self,
        root: usize,
        data: &'a [E],
    ) -> impl Future<Output = Result<Option<Parts<E>>>> + Send + 'a {
        let call = self.begin();
        async move {
            call.check_rank("the gather's root", root)?;
            let mine = Block::from_slice(bytemuck::cast_slice(data));
            let blocks = gather::gather(&call, root, mine).await?;
            blocks.map(|blocks| parts_of(&call, &blocks)).transpose()
        }
    }

    fn allgather<T: Data>(
        &self,
        value: &T,
    ) -> impl Future<Output = Result<Vec<T>>> + Send + 'static {
        let call = self.begin();
        let mine = encode_value(value);
        async move {
            let blocks = gather::allgather(&call, Block::owned(mine?)).await?;
            decode_blocks(&call, blocks)
        }
    }

    fn allgatherv<'a, E: Element>(
        &self,
        data: &'a [E],
    ) -> impl Future<Output = Result<Parts<E>>> + Send + 'a {
        let call = self.begin();
        async move {
            let mine = Block::from_slice(bytemuck::cast_slice(data));
            let blocks = gather::allgather(&call, mine).await?;
            parts_of(&call, &blocks)
        }
    }

    fn scatter<T: Data>(
        &self,
        root: usize,
        values: Option<Vec<T>>,
    ) -> impl Future<Output = Result<T>> + Send + 'static {
        let call = self.begin();
        async move {
            call.check_rank("the scatter's root", root)?;
            let blocks = if call.rank() == root {
                let values = values.ok_or(Error::RootWithoutValue {
                    collective: "scatter",
                    root,
                })?;
                check_len(
                    &call,
                    "scatter: the root's values, one per member",
                    values.len(),
                )?;
                let blocks = values
                    .iter()
                    .map(|v| encode_value(v).map(Block::owned))
                    .collect::<Result<Vec<_>>>()?;
                Some(blocks)
            } else {
                None
            };
            let mine = scatter::scatter(&call, root, blocks).await?;
            T::decode(mine.bytes()).map_err(|error| {
                call.invalid(root, format!("a value that does not validate: {error}"))
            })
        }
    }

    fn scatterv<'a, E: Element>(
        &self,
        root: usize,
        parts: Option<&'a Parts<E>>,
    ) -> impl Future<Output = Result<Vec<E>>> + Send + 'a {
        let call = self.begin();
        async move {
            call.check_rank("the scatter's root", root)?;
            let blocks = if call.rank() == root {
                let parts = parts.ok_or(Error::RootWithoutValue {
                    collective: "scatterv",
                    root,
                })?;
                check_len(
                    &call,
                    "scatterv: the root's parts, one per member",
                    parts.len(),
                )?;
                Some(
                    parts
                        .iter()
                        .map(|part| Block::from_slice(bytemuck::cast_slice(part)))
                        .collect(),
                )
            } else {
                None
            };
            let mine = scatter::scatter(&call, root, blocks).await?;
            elements::<E>(mine.bytes())
                .map(|values| values.into_owned())
                .ok_or_else(|| call.invalid(root, "a part that is not whole elements"))
        }
    }

    fn alltoall<T: Data>(
        &self,
        values: Vec<T>,
    ) -> impl Future<Output = Result<Vec<T>>> + Send + 'static {
        let call = self.begin();
        async move {
            check_len(&call, "alltoall: the values, one per member", values.len())?;
            let blocks = values
                .iter()
                .map(|v| encode_value(v).map(Block::owned))
                .collect::<Result<Vec<_>>>()?;
            let received = alltoall::alltoall(&call, blocks).await?;
            decode_blocks(&call, received)
        }
    }

    fn alltoallv<'a, E: Element>(
        &self,
        parts: &'a Parts<E>,
    ) -> impl Future<Output = Result<Parts<E>>> + Send + 'a {
        let call = self.begin();
        async move {
            check_len(&call, "alltoallv: the parts, one per member", parts.len())?;
            let blocks = parts
                .iter()
                .map(|part| Block::from_slice(bytemuck::cast_slice(part)))
                .collect();
            let received = alltoall::alltoall(&call, blocks).await?;
            parts_of(&call, &received)
        }
    }

    fn scan<T: Data, O: Reduction<T> + 'static>(
        &self,
        value: T,
        op: O,
    ) -> impl Future<Output = Result<T>> + Send + 'static {
        let call = self.begin();
        async move {
            let acc = ValueAccumulator::new(value, &op);
            scan::scan(&call, acc, true)
                .await?
                .and_then(ValueAccumulator::into_value)
                .ok_or(Error::Serialize {
                    reason: "a scan lost its value to a panicking operation".into(),
                })
        }
    }

    fn exscan<T: Data, O: Reduction<T> + 'static>(
        &self,
        value: T,
        op: O,
    ) -> impl Future<Output = Result<Option<T>>> + Send + 'static {
        let call = self.begin();
        async move {
            let acc = ValueAccumulator::new(value, &op);
            Ok(scan::scan(&call, acc, false)
                .await?
                .and_then(ValueAccumulator::into_value))
        }
    }

    fn scan_slice<'a, E: Element, O: Reduction<E> + 'a>(
        &self,
        data: &'a [E],
        op: O,
    ) -> impl Future<Output = Result<Vec<E>>> + Send + 'a {
        let call = self.begin();
        async move {
            let acc = SliceAccumulator::new(data, &op);
            let result = scan::scan(&call, acc, true).await?;
            Ok(result.map(|acc| acc.data).unwrap_or_default())
        }
    }

    fn exscan_slice<'a, E: Element, O: Reduction<E> + 'a>(
        &self,
        data: &'a [E],
        op: O,
    ) -> impl Future<Output = Result<Option<Vec<E>>>> + Send + 'a {
        let call = self.begin();
        async move {
            let acc = SliceAccumulator::new(data, &op);
            Ok(scan::scan(&call, acc, false).await?.map(|acc| acc.data))
        }
    }
}

/// Checks that an argument has one entry per member.
fn check_len(call: &Call, what: &'static str, got: usize) -> Result<()> {
    if got == call.size() {
        Ok(())
    } else {
        Err(Error::WrongLength {
            what,
            expected: call.size(),
            got,
        })
    }
}

/// Blocks of elements from every rank, as parts.
fn parts_of<E: Element>(call: &Call, blocks: &[Block]) -> Result<Parts<E>> {
    let mut data = Vec::new();
    let mut counts = Vec::with_capacity(blocks.len());
    for (rank, block) in blocks.iter().enumerate() {
        let values = elements::<E>(block.bytes())
            .ok_or_else(|| call.invalid(rank, "a part that is not whole elements"))?;
        counts.push(values.len());
        data.extend_from_slice(&values);
    }
    Parts::new(data, counts).ok_or_else(|| call.invalid(0, "parts that do not add up"))
}
