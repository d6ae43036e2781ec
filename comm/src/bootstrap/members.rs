//! What every external bootstrap learns in its first all-gather: that every place runs the
//! same build, and which places share a host.
//!
//! Each place contributes its build id (`u64`, little-endian) and its host name (from
//! `/proc/sys/kernel/hostname`, the name of its UTS namespace). A peer's bytes are checked;
//! a different build id at any place is [`Error::BuildMismatch`] at every place.

use crate::launch::ident;
use crate::{Error, Place, Result};

/// The longest host name accepted (Linux allows 64 bytes; DNS names 255).
const MAX_HOST: usize = 255;

/// This place's position among the places of its host, and the job's hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Members {
    /// This place's index among the places of its host.
    pub(crate) local_rank: usize,
    /// How many places share its host.
    pub(crate) local_size: usize,
    /// The job's distinct host names, in order of their lowest place.
    pub(crate) hosts: Vec<String>,
    /// For each place, the index in `hosts` of its host.
    pub(crate) host_of: Vec<usize>,
}

/// This process's host name.
pub(crate) fn hostname() -> Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_err(|e| Error::io("reading this host's name (/proc/sys/kernel/hostname)", e))?;
    Ok(name.trim().to_owned())
}

/// This place's contribution.
pub(crate) fn contribution(build_id: u64, host: &str) -> Vec<u8> {
    let mut blob = build_id.to_le_bytes().to_vec();
    blob.extend_from_slice(host.as_bytes());
    blob
}

/// Gathers every place's build id and host through `allgather`, and checks them.
pub(crate) fn gather(
    rank: usize,
    allgather: impl FnOnce(&[u8]) -> Result<Vec<Vec<u8>>>,
) -> Result<Members> {
    let ours = ident::build_id()?;
    let blobs = allgather(&contribution(ours, &hostname()?))?;
    check(rank, ours, &blobs)
}

/// Checks the gathered contributions against this place's build id.
pub(crate) fn check(rank: usize, ours: u64, blobs: &[Vec<u8>]) -> Result<Members> {
    let mut names = Vec::with_capacity(blobs.len());
    for (place, blob) in blobs.iter().enumerate() {
        let (id, host) = blob.split_first_chunk::<8>().ok_or_else(|| {
            Error::bootstrap(format!(
                "place {place} sent a membership blob of {} bytes",
                blob.len()
            ))
        })?;
        let theirs = u64::from_le_bytes(*id);
        if theirs != ours {
            return Err(Error::BuildMismatch {
                place: Place::new(place),
                ours,
                theirs,
            });
        }
        let host = std::str::from_utf8(host)
            .ok()
            .filter(|h| !h.is_empty() && h.len() <= MAX_HOST)
            .ok_or_else(|| Error::bootstrap(format!("place {place} sent an unusable host name")))?;
        names.push(host);
    }
    let mine = names
        .get(rank)
        .ok_or_else(|| Error::bootstrap(format!("the all-gather has no place {rank}")))?;
    let local_rank = names[..rank].iter().filter(|h| *h == mine).count();
    let local_size = names.iter().filter(|h| *h == mine).count();
    let mut hosts: Vec<String> = Vec::new();
    let mut host_of = Vec::with_capacity(names.len());
    for name in &names {
        let index = match hosts.iter().position(|h| h == name) {
            Some(index) => index,
            None => {
                hosts.push((*name).to_owned());
                hosts.len() - 1
            }
        };
        host_of.push(index);
    }
    Ok(Members {
        local_rank,
        local_size,
        hosts,
        host_of,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_grouped_by_host() {
        let blobs: Vec<_> = ["a", "b", "a", "a", "b"]
            .iter()
            .map(|h| contribution(7, h))
            .collect();
        let m = check(3, 7, &blobs).unwrap();
        assert_eq!((m.local_rank, m.local_size), (2, 3));
        assert_eq!(m.hosts, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(m.host_of, vec![0, 1, 0, 0, 1]);
        let m = check(1, 7, &blobs).unwrap();
        assert_eq!((m.local_rank, m.local_size), (0, 2));
    }

    #[test]
    fn another_build_or_bad_bytes_are_refused() {
        let blobs = vec![contribution(7, "a"), contribution(8, "a")];
        assert!(matches!(
            check(0, 7, &blobs),
            Err(Error::BuildMismatch { place, ours: 7, theirs: 8 }) if place == Place::new(1)
        ));
        for bad in [vec![1, 2, 3], contribution(7, ""), {
            let mut b = contribution(7, "a");
            b.push(0xff);
            b
        }] {
            assert!(check(0, 7, &[contribution(7, "a"), bad]).is_err());
        }
        assert!(check(5, 7, &[contribution(7, "a")]).is_err());
        assert!(!hostname().unwrap().is_empty());
    }
}
