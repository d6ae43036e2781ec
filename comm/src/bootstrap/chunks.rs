//! Binary blobs as key-value-store values: base64 (URL alphabet, no padding), split into
//! pieces that respect the store's value length limit.
//!
//! PMI-1 values cannot hold spaces, `=` or newlines, and hydra and Slurm limit them to
//! `vallen_max` (1024) bytes. A blob travels as `n` values: the first is `n.` followed by the
//! first piece of its encoding, the others are the following pieces. The count and every
//! piece are a peer's bytes: they are checked before use.

use crate::{Error, Result};

/// The largest blob one place may contribute (as with the local launcher).
pub(crate) const MAX_BLOB: usize = 16 << 20;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Encodes `bytes` in base64 with the URL alphabet, without padding.
pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..=group.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

/// Decodes [`encode`]'s output; anything else is an error.
pub(crate) fn decode(text: &str) -> Result<Vec<u8>> {
    let bad = |why: &str| Error::bootstrap(format!("a peer's blob is not valid base64: {why}"));
    if text.len() % 4 == 1 {
        return Err(bad("its length leaves a lone character"));
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    for group in text.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, &c) in group.iter().enumerate() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'-' => 62,
                b'_' => 63,
                _ => return Err(bad("a character outside the alphabet")),
            };
            n |= u32::from(v) << (18 - 6 * i);
        }
        let bytes = group.len() - 1;
        // Bits below the last whole byte must be zero, as `encode` writes them.
        if n & ((1 << (24 - 8 * bytes)) - 1) != 0 {
            return Err(bad("stray bits in its last character"));
        }
        out.extend((0..bytes).map(|i| (n >> (16 - 8 * i)) as u8));
    }
    Ok(out)
}

/// Splits `blob` into values of at most `max_value` bytes (at least 16).
pub(crate) fn split(blob: &[u8], max_value: usize) -> Vec<String> {
    let encoded = encode(blob);
    // The first value also carries the count: `n.`, at most 11 characters.
    let piece = max_value.max(16) - 12;
    let count = encoded.len().div_ceil(piece).max(1);
    let mut values = Vec::with_capacity(count);
    for i in 0..count {
        let part = &encoded[(i * piece).min(encoded.len())..((i + 1) * piece).min(encoded.len())];
        values.push(if i == 0 {
            format!("{count}.{part}")
        } else {
            part.to_owned()
        });
    }
    values
}

/// Reads one blob back from its values, `get(i)` giving the `i`th value ([`split`]'s
/// output): the count from the first, then the others, joined and decoded. A count, piece or
/// total a peer could not have written is an error, before any further value is read.
pub(crate) fn read(mut get: impl FnMut(usize) -> Result<String>) -> Result<Vec<u8>> {
    let first_value = get(0)?;
    let (count, head) = first(&first_value)?;
    // `count` is a peer's claim (checked against the largest blob only): the vector grows
    // with the pieces that do arrive instead of reserving for all of them at once.
    let mut pieces = Vec::with_capacity(count.min(64));
    pieces.push(head.to_owned());
    for piece in 1..count {
        pieces.push(get(piece)?);
    }
    join(&pieces)
}

/// Reads the count of values off the first value of a blob: `(count, first piece)`.
fn first(value: &str) -> Result<(usize, &str)> {
    let bad = || {
        Error::bootstrap(format!(
            "a peer's blob header {:?} is not `count.piece`",
            value.chars().take(40).collect::<String>()
        ))
    };
    let (count, piece) = value.split_once('.').ok_or_else(bad)?;
    let count: usize = count.parse().map_err(|_| bad())?;
    // Every value holds at least 4 characters of encoding, except possibly the last.
    if count == 0 || count > MAX_BLOB / 3 + 1 {
        return Err(bad());
    }
    Ok((count, piece))
}

/// Joins the pieces of one blob and decodes them.
fn join(pieces: &[String]) -> Result<Vec<u8>> {
    let total: usize = pieces.iter().map(String::len).sum();
    if total > MAX_BLOB.div_ceil(3) * 4 {
        return Err(Error::PayloadTooLarge {
            len: total / 4 * 3,
            limit: MAX_BLOB,
        });
    }
    decode(&pieces.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length() {
        let mut rng = fastrand::Rng::with_seed(5);
        for len in (0..70).chain([1000, 4096, 10_000]) {
            let blob: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let text = encode(&blob);
            assert!(text.bytes().all(|b| ALPHABET.contains(&b)));
            assert_eq!(decode(&text).unwrap(), blob, "len {len}");
            for max in [16, 100, 1000] {
                let values = split(&blob, max);
                assert!(values
                    .iter()
                    .all(|v| v.len() <= max && super::super::pmi::wire::is_word(v)));
                let (count, head) = first(&values[0]).unwrap();
                assert_eq!(count, values.len());
                let mut pieces = vec![head.to_owned()];
                pieces.extend(values[1..].iter().cloned());
                assert_eq!(join(&pieces).unwrap(), blob, "len {len} max {max}");
                let got = read(|i| Ok(values[i].clone())).unwrap();
                assert_eq!(got, blob, "len {len} max {max}");
            }
        }
        assert_eq!(encode(b"Man"), "TWFu");
        assert_eq!(encode(b"Ma"), "TWE");
    }

    #[test]
    fn malformed_blobs_are_errors() {
        // "TWF": non-zero bits below its last whole byte.
        for bad in ["A", "TWF=", "TW F", "TWE\n", "TWF", "TWFuA"] {
            assert!(decode(bad).is_err(), "{bad:?} decoded");
        }
        for bad in ["", "x.A", "0.", ".AAAA", "99999999999999999999.A", "-1.AA"] {
            assert!(first(bad).is_err(), "{bad:?} accepted");
        }
    }
}
