//! The key-value exchange: each all-gather puts this place's blob under keys of its round and
//! rank (split into values the server accepts, [`chunks`]), enters the barrier (PMI-2: the
//! fence), then gets every other place's values. Every reply is checked; the barrier and a
//! PMI-2 get wait without a time limit (a slower place holds them), everything else within the
//! connection's timeout.

use super::connection::Connection;
use super::{lock, PmiClient, Version};
use crate::bootstrap::chunks;
use crate::{Error, Result};

impl PmiClient {
    /// Contributes `blob`; returns every place's, indexed by rank.
    pub(crate) fn allgather(&self, blob: &[u8]) -> Result<Vec<Vec<u8>>> {
        if blob.len() > chunks::MAX_BLOB {
            return Err(Error::PayloadTooLarge {
                len: blob.len(),
                limit: chunks::MAX_BLOB,
            });
        }
        let mut inner = lock(&self.inner);
        inner.conn()?;
        inner.round += 1;
        let round = inner.round;
        let key = |rank: usize, piece: usize| format!("atoll-{round}-{rank}-{piece}");
        let kvs = self.kvsname.as_str();
        let conn = &mut inner.conn;
        for (piece, value) in chunks::split(blob, self.max_value).iter().enumerate() {
            let key = key(self.rank, piece);
            if key.len() > self.max_key {
                return Err(Error::bootstrap(format!(
                    "the PMI key {key} is longer than the server's {} bytes",
                    self.max_key
                )));
            }
            put(conn, self.version, kvs, &key, value)?;
        }
        barrier(conn, self.version)?;
        let mut blobs = Vec::with_capacity(self.size);
        for rank in 0..self.size {
            if rank == self.rank {
                blobs.push(blob.to_vec());
                continue;
            }
            let version = self.version;
            blobs.push(chunks::read(|piece| {
                get(conn, version, kvs, rank, &key(rank, piece))
            })?);
        }
        Ok(blobs)
    }

    /// Returns when every place has entered the barrier. Under PMI-2 the fence is not a
    /// barrier (hydra answers it at once; gets wait for the values instead), so the barrier
    /// is an all-gather of nothing there.
    pub(crate) fn barrier(&self) -> Result<()> {
        match self.version {
            Version::One => barrier(lock(&self.inner).conn()?, self.version),
            Version::Two => self.allgather(&[]).map(drop),
        }
    }
}

/// Enters the barrier (PMI-2: the fence) and waits, without a time limit, for its end: after
/// it, every value put before it can be read (PMI-1: at once; PMI-2: a get may wait).
fn barrier(conn: &mut Connection, version: Version) -> Result<()> {
    let (cmd, reply) = match version {
        Version::One => ("barrier_in", "barrier_out"),
        Version::Two => ("kvs-fence", "kvs-fence-response"),
    };
    conn.send(cmd, &[])?;
    conn.receive(cmd, true)?.expect(reply)?;
    Ok(())
}

fn put(conn: &mut Connection, version: Version, kvs: &str, key: &str, value: &str) -> Result<()> {
    match version {
        Version::One => conn.call(
            "put",
            &[("kvsname", kvs), ("key", key), ("value", value)],
            "put_result",
        ),
        Version::Two => conn.call(
            "kvs-put",
            &[("key", key), ("value", value)],
            "kvs-put-response",
        ),
    }
    .map(drop)
}

/// The value of `key`, which place `rank` put.
fn get(
    conn: &mut Connection,
    version: Version,
    kvs: &str,
    rank: usize,
    key: &str,
) -> Result<String> {
    let line = match version {
        Version::One => conn.call("get", &[("kvsname", kvs), ("key", key)], "get_result")?,
        Version::Two => {
            // Hydra holds a get until the value is put (its fence does not wait): a place
            // slower than this one delays the answer, so it has no time limit.
            let fields = [("jobid", kvs), ("srcid", &rank.to_string()), ("key", key)];
            conn.send("kvs-get", &fields)?;
            let line = conn.receive("kvs-get", true)?.expect("kvs-get-response")?;
            if line.get("found") != Some("TRUE") {
                return Err(Error::bootstrap(format!(
                    "the PMI server has no value {key} of place {rank}"
                )));
            }
            line
        }
    };
    Ok(line.require("value")?.to_owned())
}
