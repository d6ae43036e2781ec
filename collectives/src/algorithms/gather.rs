//! Gather and allgather, of byte blocks (one per member, any sizes).
//!
//! - **Gather**: a binomial tree rooted at the root; each member sends its subtree's blocks
//!   to its parent in one message. Cost: ⌈log₂ p⌉ α + (p−1) nβ.
//! - **Allgather**: Bruck's algorithm, for any p: in round k each member sends the blocks it
//!   holds (up to 2^k) to the member 2^k ranks behind and receives as many from the one 2^k
//!   ahead. Cost: ⌈log₂ p⌉ α + (p−1) nβ.

use crate::bundle::{self, Block, Entry};
use crate::data::Data;
use crate::team::Call;
use crate::Result;

/// Every member's block, by rank, at `root` (`None` elsewhere).
pub(crate) async fn gather(call: &Call, root: usize, mine: Block) -> Result<Option<Vec<Block>>> {
    let (size, rank) = (call.size(), call.rank());
    let relative = (rank + size - root) % size;
    let mut held: Vec<Entry> = vec![(rank, mine)];
    let mut mask = 1;
    while mask < size {
        if relative & mask != 0 {
            let parent = (relative - mask + root) % size;
            call.send(parent, 0, &bundle::encode(held.iter()))?;
            return Ok(None);
        }
        if relative + mask < size {
            let child = (relative + mask + root) % size;
            let incoming = call.receive(child, 0).await?;
            let entries =
                bundle::decode(incoming, size).map_err(|reason| call.invalid(child, reason))?;
            // The child's subtree: relative ranks relative+mask .. relative+2·mask.
            let expected = mask.min(size - relative - mask);
            let in_subtree = |r: usize| {
                let rel = (r + size - root) % size;
                rel >= relative + mask && rel < relative + mask + expected
            };
            if entries.len() != expected || !entries.iter().all(|(r, _)| in_subtree(*r)) {
                return Err(call.invalid(child, "a gather bundle for the wrong ranks"));
            }
            held.extend(entries);
        }
        mask <<= 1;
    }
    held.sort_by_key(|(r, _)| *r);
    Ok(Some(held.into_iter().map(|(_, block)| block).collect()))
}

/// Every member's block, by rank, at every member.
pub(crate) async fn allgather(call: &Call, mine: Block) -> Result<Vec<Block>> {
    let (size, rank) = (call.size(), call.rank());
    // held[i] is the block of rank (rank + i) % size.
    let mut held: Vec<Entry> = vec![(rank, mine)];
    let (mut distance, mut round) = (1, 0u32);
    while distance < size {
        let count = distance.min(size - distance);
        call.send(
            (rank + size - distance) % size,
            round,
            &bundle::encode(held[..count].iter()),
        )?;
        let from = (rank + distance) % size;
        let incoming = call.receive(from, round).await?;
        let entries =
            bundle::decode(incoming, size).map_err(|reason| call.invalid(from, reason))?;
        let expected_ranks = (0..count).map(|i| (from + i) % size);
        if entries.len() != count || !entries.iter().map(|(r, _)| *r).eq(expected_ranks) {
            return Err(call.invalid(from, "an allgather bundle for the wrong ranks"));
        }
        held.extend(entries);
        distance <<= 1;
        round += 1;
    }
    held.rotate_right(rank);
    Ok(held.into_iter().map(|(_, block)| block).collect())
}

/// Every member's `value`, by rank, at every member.
pub(crate) async fn allgather_values<T: Data>(call: &Call, value: &T) -> Result<Vec<T>> {
    let mine = Block::owned(super::encode_value(value)?);
    let blocks = allgather(call, mine).await?;
    decode_blocks(call, blocks)
}

/// Blocks from every rank, validated and deserialized.
pub(crate) fn decode_blocks<T: Data>(call: &Call, blocks: Vec<Block>) -> Result<Vec<T>> {
    blocks
        .iter()
        .enumerate()
        .map(|(rank, block)| {
            T::decode(block.bytes()).map_err(|error| {
                call.invalid(rank, format!("a value that does not validate: {error}"))
            })
        })
        .collect()
}
