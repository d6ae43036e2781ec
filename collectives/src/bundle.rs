//! Several ranks' blocks in one message, for the collectives that move many places' data
//! through a tree or a Bruck exchange (gather, allgather, scatter, alltoall) and forward it
//! without looking inside.
//!
//! The format: a 16-byte header (the number of blocks, then zeros), one 16-byte entry per
//! block (its team rank, zero, its length), then the blocks, each starting 16-byte aligned so
//! that a block that is an rkyv archive can be validated in place. [`decode`] checks all of it
//! against the message's length and the team's size before anything is read.

use std::ops::Range;
use std::sync::Arc;

use rkyv::util::AlignedVec;

const ALIGN: usize = 16;
const HEADER: usize = 16;
const ENTRY: usize = 16;

fn padded(len: usize) -> usize {
    len.div_ceil(ALIGN) * ALIGN
}

/// One rank's block: bytes of its own, or a range of a message that arrived.
#[derive(Clone, Debug)]
pub(crate) enum Block {
    Owned(Arc<AlignedVec>),
    Within(Arc<AlignedVec>, Range<usize>),
}

impl Block {
    pub(crate) fn owned(bytes: AlignedVec) -> Block {
        Block::Owned(Arc::new(bytes))
    }

    pub(crate) fn from_slice(bytes: &[u8]) -> Block {
        let mut owned = AlignedVec::with_capacity(bytes.len());
        owned.extend_from_slice(bytes);
        Block::owned(owned)
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Block::Owned(bytes) => bytes,
            Block::Within(bytes, range) => &bytes[range.clone()],
        }
    }
}

/// A rank and its block.
pub(crate) type Entry = (usize, Block);

/// One message holding `entries`.
pub(crate) fn encode<'a>(entries: impl Iterator<Item = &'a Entry> + Clone) -> AlignedVec {
    let count = entries.clone().count();
    let body: usize = entries.clone().map(|(_, b)| padded(b.bytes().len())).sum();
    let mut out = AlignedVec::with_capacity(HEADER + count * ENTRY + body);
    out.extend_from_slice(&(count as u64).to_le_bytes());
    out.extend_from_slice(&[0u8; 8]);
    for (rank, block) in entries.clone() {
        out.extend_from_slice(&(*rank as u64).to_le_bytes());
        out.extend_from_slice(&(block.bytes().len() as u64).to_le_bytes());
    }
    for (_, block) in entries {
        let bytes = block.bytes();
        out.extend_from_slice(bytes);
        out.extend_from_slice(&[0u8; ALIGN][..padded(bytes.len()) - bytes.len()]);
    }
    out
}

/// The entries of a message from a team of `size`, validated: every rank below `size`,
/// no rank twice, every block inside the message. The blocks point into `message`.
pub(crate) fn decode(message: AlignedVec, size: usize) -> Result<Vec<Entry>, String> {
    let message = Arc::new(message);
    let word = |at: usize| -> Result<u64, String> {
        message
            .get(at..at + 8)
            .map(|b| {
                let mut word = [0u8; 8];
                word.copy_from_slice(b);
                u64::from_le_bytes(word)
            })
            .ok_or_else(|| format!("a bundle of {} bytes is cut short", message.len()))
    };
    let count = usize::try_from(word(0)?).map_err(|_| "a block count beyond usize".to_string())?;
    if count > size {
        return Err(format!("a bundle of {count} blocks for a team of {size}"));
    }
    let mut entries = Vec::with_capacity(count);
    let mut seen = vec![false; size];
    let mut start = HEADER + count * ENTRY;
    for i in 0..count {
        let rank = word(HEADER + i * ENTRY)?;
        let len = word(HEADER + i * ENTRY + 8)?;
        let rank = usize::try_from(rank)
            .ok()
            .filter(|&r| r < size)
            .ok_or_else(|| format!("a block for rank {rank} in a team of {size}"))?;
        if std::mem::replace(&mut seen[rank], true) {
            return Err(format!("two blocks for rank {rank}"));
        }
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| start.checked_add(len))
            .filter(|&end| end <= message.len())
            .ok_or_else(|| format!("block {i} ({len} bytes) runs past the message"))?;
        entries.push((rank, Block::Within(message.clone(), start..end)));
        start = padded(end);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let entries: Vec<Entry> = vec![
            (2, Block::from_slice(b"hello")),
            (0, Block::from_slice(b"")),
            (5, Block::from_slice(&[7u8; 33])),
        ];
        let decoded = decode(encode(entries.iter()), 6).unwrap();
        assert_eq!(decoded.len(), 3);
        for ((r1, b1), (r2, b2)) in entries.iter().zip(&decoded) {
            assert_eq!(r1, r2);
            assert_eq!(b1.bytes(), b2.bytes());
            assert_eq!(b2.bytes().as_ptr() as usize % ALIGN, 0);
        }
    }

    #[test]
    fn rejects_bad_bundles() {
        let entries: Vec<Entry> = vec![(3, Block::from_slice(b"abc"))];
        let good = encode(entries.iter());
        assert!(decode(good.clone(), 3).unwrap_err().contains("rank 3"));
        let mut cut = AlignedVec::new();
        cut.extend_from_slice(&good[..good.len() - 16]);
        assert!(decode(cut, 4).unwrap_err().contains("past the message"));
        let twice: Vec<Entry> = vec![(1, Block::from_slice(b"a")), (1, Block::from_slice(b"b"))];
        assert!(decode(encode(twice.iter()), 4)
            .unwrap_err()
            .contains("two blocks"));
        let mut huge = AlignedVec::new();
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        huge.extend_from_slice(&[0u8; 8]);
        assert!(decode(huge, 4).unwrap_err().contains("blocks for a team"));
        assert!(decode(AlignedVec::new(), 4)
            .unwrap_err()
            .contains("cut short"));
    }
}
