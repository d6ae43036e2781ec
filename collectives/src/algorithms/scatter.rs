//! Scatter: a binomial tree rooted at the root; each member receives its subtree's blocks
//! from its parent in one message and passes each child its subtree's share.
//! Cost: ⌈log₂ p⌉ α + (p−1)/p · total·β at the root.

use crate::bundle::{self, Block, Entry};
use crate::team::Call;
use crate::Result;

/// This member's block of the root's `blocks` (one per rank, given at the root only).
pub(crate) async fn scatter(call: &Call, root: usize, blocks: Option<Vec<Block>>) -> Result<Block> {
    let (size, rank) = (call.size(), call.rank());
    let relative = (rank + size - root) % size;
    // held[i] is the block of relative rank relative + i.
    let mut held: Vec<Entry>;
    let mut mask = 1;
    match blocks {
        Some(blocks) => {
            held = blocks.into_iter().enumerate().collect();
            held.rotate_left(root);
            while mask < size {
                mask <<= 1;
            }
        }
        None => {
            while relative & mask == 0 {
                mask <<= 1;
            }
            let parent = (relative - mask + root) % size;
            let incoming = call.receive(parent, 0).await?;
            held = bundle::decode(incoming, size).map_err(|reason| call.invalid(parent, reason))?;
            let expected = mask.min(size - relative);
            let expected_ranks = (0..expected).map(|i| (relative + i + root) % size);
            if held.len() != expected || !held.iter().map(|(r, _)| *r).eq(expected_ranks) {
                return Err(call.invalid(parent, "a scatter bundle for the wrong ranks"));
            }
        }
    }
    mask >>= 1;
    while mask > 0 {
        if relative + mask < size {
            let child = (relative + mask + root) % size;
            let share = &held[mask..held.len().min(2 * mask)];
            call.send(child, 0, &bundle::encode(share.iter()))?;
            held.truncate(mask);
        }
        mask >>= 1;
    }
    let (_, mine) = held.swap_remove(0);
    Ok(mine)
}
