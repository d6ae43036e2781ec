//! Broadcast.
//!
//! - **Binomial tree** (below [`REGISTERED_MIN_BYTES`]): each member receives the root's
//!   bytes once from its parent and forwards them, unopened, to its children (largest subtree
//!   first). Cost: ⌈log₂ p⌉ (α + nβ).
//! - **Through registered memory** (from [`REGISTERED_MIN_BYTES`]): the root copies the bytes
//!   once into a region of its registered memory and sends the region's key down the binomial
//!   tree; every member reads the bytes with one one-sided get, straight into its destination,
//!   and tells the root it is done, so that the root can reuse the region. Cost: ⌈log₂ p⌉ α +
//!   2nβ (the root's copy and each member's get; the gets run in parallel) + α. A message
//!   through the tree copies the bytes several times per hop (into the transport, out of it,
//!   forwarded): for large broadcasts that dominates.
//!
//! Every message down the tree starts with a 16-byte header saying which of the two it is.

use atoll_comm::{Region, RemoteKey};
use rkyv::util::AlignedVec;

use crate::team::Call;
use crate::{Error, Result};

/// Broadcasts of at least this many bytes go through registered memory.
pub(crate) const REGISTERED_MIN_BYTES: usize = 64 * 1024;

const TREE: u32 = 0;
const DONE: u32 = 1;

const HEADER: usize = 16;
const INLINE: u64 = 0;
const REGISTERED: u64 = 1;

/// What came down the tree.
enum Delivery {
    /// The bytes themselves, after the header.
    Inline(AlignedVec),
    /// The root's region holding `len` bytes.
    Registered(RemoteKey, usize),
}

/// The root's bytes at every member: `None` at the root (which has them), the bytes
/// elsewhere.
pub(crate) async fn broadcast(
    call: &Call,
    root: usize,
    root_bytes: Option<&[u8]>,
) -> Result<Option<AlignedVec>> {
    if call.rank() == root {
        send_from_root(call, root, root_bytes.unwrap_or_default()).await?;
        return Ok(None);
    }
    match receive(call, root).await? {
        Delivery::Inline(message) => {
            let mut bytes: AlignedVec = AlignedVec::with_capacity(message.len() - HEADER);
            bytes.extend_from_slice(&message[HEADER..]);
            Ok(Some(bytes))
        }
        Delivery::Registered(key, len) => {
            let mut bytes: AlignedVec = AlignedVec::with_capacity(len);
            bytes.resize(len, 0);
            get_and_tell_root(call, root, &key, &mut bytes)?;
            Ok(Some(bytes))
        }
    }
}

/// The root's `buffer` into every member's `buffer` (all of the same length).
pub(crate) async fn broadcast_into(call: &Call, root: usize, buffer: &mut [u8]) -> Result<()> {
    if call.rank() == root {
        return send_from_root(call, root, buffer).await;
    }
    let wrong_length = |got: usize| {
        Error::WrongLength {
        what: "broadcast_into: the root's buffer, in bytes (every member's buffer must be as long as the root's)",
        expected: buffer.len(),
        got,
    }
    };
    match receive(call, root).await? {
        Delivery::Inline(message) => {
            let bytes = &message[HEADER..];
            if bytes.len() != buffer.len() {
                return Err(wrong_length(bytes.len()));
            }
            buffer.copy_from_slice(bytes);
        }
        Delivery::Registered(key, len) => {
            if len != buffer.len() {
                // The root waits for every member: tell it, then fail.
                call.send(root, DONE, &[])?;
                return Err(wrong_length(len));
            }
            get_and_tell_root(call, root, &key, buffer)?;
        }
    }
    Ok(())
}

async fn send_from_root(call: &Call, root: usize, bytes: &[u8]) -> Result<()> {
    if call.size() == 1 {
        return Ok(());
    }
    if bytes.len() >= REGISTERED_MIN_BYTES {
        if let Some(region) = call.team.take_scratch(call.comm(), bytes.len()) {
            let result = registered_from_root(call, root, bytes, &region).await;
            call.team.keep_scratch(region);
            return result;
        }
        // No registered memory to spare: through the tree.
    }
    let mut message: AlignedVec = AlignedVec::with_capacity(HEADER + bytes.len());
    message.extend_from_slice(&INLINE.to_le_bytes());
    message.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    message.extend_from_slice(bytes);
    forward(call, root, &message)
}

async fn registered_from_root(
    call: &Call,
    root: usize,
    bytes: &[u8],
    region: &Region,
) -> Result<()> {
    region.write(0, bytes)?;
    let key = rkyv::to_bytes::<rkyv::rancor::BoxedError>(&region.key()).map_err(|error| {
        Error::Serialize {
            reason: error.to_string(),
        }
    })?;
    let mut message: AlignedVec = AlignedVec::with_capacity(HEADER + key.len());
    message.extend_from_slice(&REGISTERED.to_le_bytes());
    message.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    message.extend_from_slice(&key);
    forward(call, root, &message)?;
    // The region is reused: wait until every member has read it.
    for rank in (0..call.size()).filter(|&r| r != root) {
        call.receive(rank, DONE).await?;
    }
    Ok(())
}

/// A non-root's part of the tree: the message from its parent, forwarded to its children.
async fn receive(call: &Call, root: usize) -> Result<Delivery> {
    let (size, rank) = (call.size(), call.rank());
    let relative = (rank + size - root) % size;
    let mut mask = 1;
    while relative & mask == 0 {
        mask <<= 1;
    }
    let parent = (relative - mask + root) % size;
    let message = call.receive(parent, TREE).await?;
    forward(call, root, &message)?;
    let word = |at: usize| {
        message.get(at..at + 8).map(|b| {
            let mut word = [0u8; 8];
            word.copy_from_slice(b);
            u64::from_le_bytes(word)
        })
    };
    match (word(0), word(8).and_then(|len| usize::try_from(len).ok())) {
        (Some(INLINE), Some(len)) if len == message.len() - HEADER => Ok(Delivery::Inline(message)),
        (Some(REGISTERED), Some(len)) => {
            let key = rkyv::from_bytes::<RemoteKey, rkyv::rancor::BoxedError>(&message[HEADER..])
                .map_err(|error| {
                call.invalid(
                    parent,
                    format!("a region key that does not validate: {error}"),
                )
            })?;
            if key.place() != call.team.place(root).unwrap_or(key.place()) || key.len() < len {
                return Err(
                    call.invalid(parent, "a region key that is not the root's, or too short")
                );
            }
            Ok(Delivery::Registered(key, len))
        }
        _ => Err(call.invalid(parent, "a broadcast message with a bad header")),
    }
}

/// Sends `message` to this member's children in the tree rooted at `root`.
fn forward(call: &Call, root: usize, message: &[u8]) -> Result<()> {
    let (size, rank) = (call.size(), call.rank());
    let relative = (rank + size - root) % size;
    let mut mask = 1;
    while mask < size && relative & mask == 0 {
        mask <<= 1;
    }
    mask >>= 1;
    while mask > 0 {
        if relative + mask < size {
            call.send((relative + mask + root) % size, TREE, message)?;
        }
        mask >>= 1;
    }
    Ok(())
}

fn get_and_tell_root(call: &Call, root: usize, key: &RemoteKey, into: &mut [u8]) -> Result<()> {
    call.comm().get_into(key, 0, into)?;
    call.send(root, DONE, &[])
}
