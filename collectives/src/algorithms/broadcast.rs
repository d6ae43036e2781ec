//! Broadcast: a binomial tree rooted at the root. Each member receives the root's bytes once
//! from its parent and forwards them, unopened, to its children (largest subtree first).
//! Cost: ⌈log₂ p⌉ (α + nβ).

use rkyv::util::AlignedVec;

use crate::team::Call;
use crate::Result;

/// The root's bytes at every member: `None` at the root (which has them), the bytes
/// elsewhere.
pub(crate) async fn broadcast(
    call: &Call,
    root: usize,
    root_bytes: Option<&[u8]>,
) -> Result<Option<AlignedVec>> {
    let (size, rank) = (call.size(), call.rank());
    let relative = (rank + size - root) % size;
    let mut received = None;
    let mut mask = 1;
    while mask < size {
        if relative & mask != 0 {
            let parent = (relative - mask + root) % size;
            received = Some(call.receive(parent, 0).await?);
            break;
        }
        mask <<= 1;
    }
    let bytes: &[u8] = match (&received, root_bytes) {
        (Some(bytes), _) => bytes,
        (None, Some(bytes)) => bytes,
        (None, None) => &[],
    };
    mask >>= 1;
    while mask > 0 {
        if relative + mask < size {
            call.send((relative + mask + root) % size, 0, bytes)?;
        }
        mask >>= 1;
    }
    Ok(received)
}
