//! All-to-all: pairwise exchange. In step i (1 ≤ i < p) each member sends its block for
//! the member i ranks ahead and takes the block of the member i ranks behind, so no member is
//! every sender's target at once; sends do not wait, so the steps overlap.
//! Cost: (p−1) (α + nβ) per member, n the bytes per block.

use crate::bundle::Block;
use crate::team::Call;
use crate::Result;

/// `blocks[j]` goes to rank `j`; returns the block from each rank, by rank.
pub(crate) async fn alltoall(call: &Call, mut blocks: Vec<Block>) -> Result<Vec<Block>> {
    let (size, rank) = (call.size(), call.rank());
    for step in 1..size {
        let to = (rank + step) % size;
        call.send(to, 0, blocks[to].bytes())?;
    }
    for step in 1..size {
        let from = (rank + size - step) % size;
        blocks[from] = Block::owned(call.receive(from, 0).await?);
    }
    Ok(blocks)
}
