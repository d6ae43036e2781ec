//! Allreduce.
//!
//! - **Recursive doubling** (any value; slices below [`SEGMENTED_MIN_BYTES`]): in round k
//!   each member exchanges its partial result with the member whose rank differs in bit k
//!   and combines, lower ranks on the left, so both compute the same value bit for bit.
//!   Cost: ⌈log₂ p⌉ (α + nβ + nγ).
//! - **Rabenseifner** (slices of numbers from [`SEGMENTED_MIN_BYTES`]): a reduce-scatter by
//!   recursive halving (lowest bit first, which keeps rank order), then an allgather by
//!   recursive doubling. Cost:
//!   2⌈log₂ p⌉ α + 2 (p−1)/p nβ + (p−1)/p nγ: each member moves about 2n bytes instead of
//!   n log₂ p.
//!
//! For p not a power of two, both first fold the first 2r members pairwise (r = p − p′, p′
//! the largest power of two ≤ p): each even one sends its value to the odd one after it and
//! sits out; the odd ones and the members from 2r on (p′ in all, renumbered 0..p′ in rank
//! order) run the algorithm; then each odd one sends the result to the even one it stood for.
//! This adds 2 (α + nβ) + nγ.

use super::{fold_elements, Accumulator};
use crate::data::{elements, Element};
use crate::op::Reduction;
use crate::team::Call;
use crate::Result;

/// Slices of at least this many bytes use Rabenseifner's algorithm.
pub(crate) const SEGMENTED_MIN_BYTES: usize = 16 * 1024;

const FOLD_IN: u32 = 0;
const FOLD_OUT: u32 = 1;
const ROUND: u32 = 2;
const GATHER_ROUND: u32 = 64;

/// The pairwise fold of a team whose size is not a power of two.
struct Fold {
    /// The power of two that runs the algorithm, and how many members sit out.
    active: usize,
    spare: usize,
}

impl Fold {
    fn of(size: usize) -> Fold {
        let active = 1 << (usize::BITS - 1 - size.leading_zeros());
        Fold {
            active,
            spare: size - active,
        }
    }

    /// This rank's number among the active members, if it is one.
    fn active_rank(&self, rank: usize) -> Option<usize> {
        if rank < 2 * self.spare {
            (rank % 2 == 1).then_some(rank / 2)
        } else {
            Some(rank - self.spare)
        }
    }

    /// The team rank of active member `active`.
    fn team_rank(&self, active: usize) -> usize {
        if active < self.spare {
            2 * active + 1
        } else {
            active + self.spare
        }
    }
}

/// Recursive doubling: every member's accumulator reduced, at every member.
pub(crate) async fn recursive_doubling<A: Accumulator>(call: &Call, mut acc: A) -> Result<A> {
    let (size, rank) = (call.size(), call.rank());
    if size == 1 {
        return Ok(acc);
    }
    let fold = Fold::of(size);
    let Some(me) = fold_in(call, &fold, &mut acc).await? else {
        return fold_out_receive(call, acc).await;
    };
    let (mut mask, mut round) = (1, ROUND);
    while mask < fold.active {
        let partner_active = me ^ mask;
        let partner = fold.team_rank(partner_active);
        call.send(partner, round, &acc.encoded()?)?;
        let incoming = call.receive(partner, round).await?;
        acc.fold(&incoming, partner_active < me)
            .map_err(|reason| call.invalid(partner, reason))?;
        mask <<= 1;
        round += 1;
    }
    if rank < 2 * fold.spare {
        call.send(rank - 1, FOLD_OUT, &acc.encoded()?)?;
    }
    Ok(acc)
}

/// The members below 2r fold pairwise: returns this member's active number, or `None` if it
/// sat out (having sent its value).
async fn fold_in<A: Accumulator>(call: &Call, fold: &Fold, acc: &mut A) -> Result<Option<usize>> {
    let rank = call.rank();
    if rank < 2 * fold.spare {
        if rank % 2 == 0 {
            call.send(rank + 1, FOLD_IN, &acc.encoded()?)?;
        } else {
            let incoming = call.receive(rank - 1, FOLD_IN).await?;
            acc.fold(&incoming, true)
                .map_err(|reason| call.invalid(rank - 1, reason))?;
        }
    }
    Ok(fold.active_rank(rank))
}

/// A member that sat out: the result, from the odd member it folded into.
async fn fold_out_receive<A: Accumulator>(call: &Call, acc: A) -> Result<A> {
    let from = call.rank() + 1;
    let incoming = call.receive(from, FOLD_OUT).await?;
    acc.decoded(&incoming)
        .map_err(|reason| call.invalid(from, reason))
}

/// Rabenseifner's allreduce of a slice, element-wise.
pub(crate) async fn segmented<E: Element, O: Reduction<E>>(
    call: &Call,
    data: Vec<E>,
    op: &O,
) -> Result<Vec<E>> {
    let (size, rank) = (call.size(), call.rank());
    let mut acc = super::SliceAccumulator { data, op };
    if size == 1 {
        return Ok(acc.data);
    }
    let fold = Fold::of(size);
    let Some(me) = fold_in(call, &fold, &mut acc).await? else {
        return Ok(fold_out_receive(call, acc).await?.data);
    };
    let mut data = acc.data;
    let len = data.len();
    // Block b of the p' blocks is data[start(b)..start(b + 1)].
    let start = |block: usize| block * len / fold.active;
    // Reduce-scatter by recursive halving, lowest bit first (so that each partial covers a
    // contiguous block of ranks, and the lower block goes on the left): keep the half of the
    // blocks that this member's bit selects, send the other half.
    let (mut low, mut high) = (0, fold.active);
    let (mut mask, mut round) = (1, ROUND);
    while mask < fold.active {
        let partner_active = me ^ mask;
        let partner = fold.team_rank(partner_active);
        let middle = (low + high) / 2;
        let (keep, give) = if me & mask == 0 {
            (low..middle, middle..high)
        } else {
            (middle..high, low..middle)
        };
        call.send(
            partner,
            round,
            block_bytes(&data, start(give.start)..start(give.end)),
        )?;
        let incoming = call.receive(partner, round).await?;
        fold_elements(
            op,
            &mut data[start(keep.start)..start(keep.end)],
            &incoming,
            partner_active < me,
        )
        .map_err(|reason| call.invalid(partner, reason))?;
        (low, high) = (keep.start, keep.end);
        mask <<= 1;
        round += 1;
    }
    // Allgather by recursive doubling, in the opposite order: swap the finished blocks with
    // the partner's (the other half of the range they were split from).
    let (mut mask, mut round) = (fold.active / 2, GATHER_ROUND);
    while mask > 0 {
        let partner_active = me ^ mask;
        let partner = fold.team_rank(partner_active);
        let width = high - low;
        let theirs = (low ^ width)..(low ^ width) + width;
        call.send(partner, round, block_bytes(&data, start(low)..start(high)))?;
        let incoming = call.receive(partner, round).await?;
        let target = &mut data[start(theirs.start)..start(theirs.end)];
        let values = elements::<E>(&incoming)
            .filter(|values| values.len() == target.len())
            .ok_or_else(|| {
                call.invalid(
                    partner,
                    format!("{} bytes for {} elements", incoming.len(), target.len()),
                )
            })?;
        target.copy_from_slice(&values);
        (low, high) = (low.min(theirs.start), high.max(theirs.end));
        mask >>= 1;
        round += 1;
    }
    if rank < 2 * fold.spare {
        call.send(rank - 1, FOLD_OUT, bytemuck::cast_slice(&data))?;
    }
    Ok(data)
}

fn block_bytes<E: Element>(data: &[E], elements: std::ops::Range<usize>) -> &[u8] {
    bytemuck::cast_slice(&data[elements])
}
