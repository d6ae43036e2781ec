//! PMI-1 "simple" specifics: the start (`init`, `get_maxes`, `get_my_kvsname`, `get_appnum`)
//! and the `PMI_PORT` handshake (`initack`). Hydra, Slurm's `--mpi=pmi2` plugin and the `env`
//! coordinator answer it.

use std::sync::Mutex;

use super::connection::Connection;
use super::{wire, Inner, PmiClient, Version};
use crate::{Error, Result};

/// The longest line MPICH's simple PMI client and server take.
const PMI_LINE_MAX: usize = 1024;

impl PmiClient {
    /// Runs the PMI-1 start (`init`, `get_maxes`, `get_my_kvsname`, `get_appnum`) on `conn`,
    /// for the place `rank` of `size` (which the caller learned from the environment, or from
    /// the `PMI_PORT` handshake).
    pub(crate) fn start(mut conn: Connection, rank: usize, size: usize) -> Result<PmiClient> {
        conn.call(
            "init",
            &[("pmi_version", "1"), ("pmi_subversion", "1")],
            "response_to_init",
        )?;
        let maxes = conn.call("get_maxes", &[], "maxes")?;
        let max_key = maxes.number("keylen_max")?;
        let max_value = maxes.number("vallen_max")?;
        let kvsname = conn
            .call("get_my_kvsname", &[], "my_kvsname")?
            .require("kvsname")?
            .to_owned();
        if !wire::is_word(&kvsname) {
            return Err(Error::bootstrap(format!(
                "the PMI server's kvsname {kvsname:?} cannot be sent back on a PMI line"
            )));
        }
        // Slurm answers appnum=-1 when it cannot tell (a `--multi-prog` step).
        let appnum = conn.call("get_appnum", &[], "appnum")?;
        let appnum = match appnum.require("appnum")? {
            "-1" => None,
            _ => Some(appnum.number("appnum")?),
        };
        // Room for a key of the form atoll-<round>-<rank>-<piece>.
        if max_key < 32 {
            return Err(Error::bootstrap(format!(
                "the PMI server allows keys of {max_key} bytes only; Atoll needs 32"
            )));
        }
        // A put line must fit in MPICH's 1024-byte line, whatever vallen_max says.
        let overhead = "cmd=put kvsname= key= value=\n".len() + kvsname.len() + 32;
        let max_value = max_value.min(PMI_LINE_MAX.saturating_sub(overhead));
        if max_value < 16 {
            return Err(Error::bootstrap(format!(
                "the PMI server allows values of {max_value} bytes only (with kvsname \
                 {kvsname:?}); Atoll needs 16"
            )));
        }
        if rank >= size {
            return Err(Error::bootstrap(format!(
                "the PMI server gave rank {rank} in a job of {size}"
            )));
        }
        Ok(PmiClient {
            version: Version::One,
            rank,
            size,
            kvsname,
            appnum,
            max_key,
            max_value,
            inner: Mutex::new(Inner {
                conn,
                round: 0,
                finalized: false,
            }),
        })
    }
}

/// The `PMI_PORT` handshake: `cmd=initack pmiid=ID`, answered by `initack`, then the rank,
/// size and debug flag as `cmd=set` lines. Returns (rank, size).
pub(crate) fn port_handshake(conn: &mut Connection, pmi_id: &str) -> Result<(usize, usize)> {
    if !wire::is_word(pmi_id) {
        return Err(Error::bootstrap(format!(
            "PMI_ID={pmi_id:?} is not a PMI word"
        )));
    }
    conn.call("initack", &[("pmiid", pmi_id)], "initack")?;
    let (mut rank, mut size) = (None, None);
    for _ in 0..3 {
        let set = conn.receive("initack", false)?.expect("set")?;
        if set.get("size").is_some() {
            size = Some(set.number("size")?);
        } else if set.get("rank").is_some() {
            rank = Some(set.number("rank")?);
        }
    }
    match (rank, size) {
        (Some(rank), Some(size)) if rank < size => Ok((rank, size)),
        _ => Err(Error::bootstrap(format!(
            "the PMI server's answer to initack gave rank {rank:?} and size {size:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use super::super::connection::Stream;
    use super::super::test_server::{server, slurm};
    use super::*;
    use crate::bootstrap::pmi::wire::Line;

    #[test]
    fn gathers_through_a_slurm_style_server() {
        let client = PmiClient::start(server(slurm, Duration::from_secs(10)), 0, 2).unwrap();
        assert_eq!(
            (client.rank(), client.size(), client.kvsname()),
            (0, 2, "3.0")
        );
        assert_eq!(client.appnum(), None);
        let all = client.allgather(&[1; 3000]).unwrap();
        assert_eq!(all, vec![vec![1; 3000], vec![9; 5000]]);
        client.finalize().unwrap();
        assert!(
            client.allgather(b"late").is_err(),
            "a collective after finalize"
        );
    }

    #[test]
    fn malformed_or_missing_answers_are_errors() {
        let t = Duration::from_secs(10);
        let garbage = |line: &Line, _: &mut HashMap<String, String>| {
            (line.cmd == "init").then(|| "garbage\n".to_owned())
        };
        assert!(PmiClient::start(server(garbage, t), 0, 1).is_err());
        let bad_maxes = |line: &Line, kvs: &mut HashMap<String, String>| match line.cmd.as_str() {
            "get_maxes" => Some("cmd=maxes keylen_max=64 vallen_max=lots\n".into()),
            _ => slurm(line, kvs),
        };
        assert!(PmiClient::start(server(bad_maxes, t), 0, 1).is_err());
        let wrong_reply = |line: &Line, kvs: &mut HashMap<String, String>| match line.cmd.as_str() {
            "get_my_kvsname" => Some("cmd=barrier_out\n".into()),
            _ => slurm(line, kvs),
        };
        assert!(PmiClient::start(server(wrong_reply, t), 0, 1).is_err());
        // A blob header that lies about its count, and a value that is not base64.
        for bad in ["99999999.AAAA", "2.AA", "1.!!!!"] {
            let liar = move |line: &Line, kvs: &mut HashMap<String, String>| match line.cmd.as_str()
            {
                "get" if line.get("key") == Some("atoll-1-1-0") => {
                    Some(format!("cmd=get_result rc=0 value={bad}\n"))
                }
                _ => slurm(line, kvs),
            };
            let client = PmiClient::start(server(liar, t), 0, 2).unwrap();
            assert!(client.allgather(b"x").is_err(), "{bad}");
        }
        let failing_barrier =
            |line: &Line, kvs: &mut HashMap<String, String>| match line.cmd.as_str() {
                "barrier_in" => Some("cmd=barrier_out rc=1 msg=place_1_left\n".into()),
                _ => slurm(line, kvs),
            };
        let client = PmiClient::start(server(failing_barrier, t), 0, 2).unwrap();
        let err = client.barrier().unwrap_err().to_string();
        assert!(err.contains("place 1 left"), "{err}");
        assert!(
            PmiClient::start(server(slurm, t), 2, 2).is_err(),
            "rank outside the job"
        );
    }

    #[test]
    fn a_server_that_does_not_answer_times_out() {
        let silent = |_: &Line, _: &mut HashMap<String, String>| None;
        let err = PmiClient::start(server(silent, Duration::from_millis(300)), 0, 1).unwrap_err();
        assert!(
            err.to_string().contains("did not answer `cmd=init`"),
            "{err}"
        );
        let (client, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        let conn = Connection::new(
            Stream::Unix(client),
            Duration::from_secs(5),
            "gone".into(),
            "",
        );
        assert!(PmiClient::start(conn, 0, 1).is_err());
    }

    #[test]
    fn the_port_handshake_reads_rank_and_size() {
        let t = Duration::from_secs(10);
        let hydra = |line: &Line, _: &mut HashMap<String, String>| {
            (line.cmd == "initack").then(|| {
                "cmd=initack\ncmd=set size=4\ncmd=set rank=2\ncmd=set debug=0\n".to_owned()
            })
        };
        assert_eq!(port_handshake(&mut server(hydra, t), "2").unwrap(), (2, 4));
        let bad = |line: &Line, _: &mut HashMap<String, String>| {
            (line.cmd == "initack").then(|| {
                "cmd=initack\ncmd=set size=2\ncmd=set rank=5\ncmd=set debug=0\n".to_owned()
            })
        };
        assert!(port_handshake(&mut server(bad, t), "5").is_err());
        assert!(port_handshake(&mut server(hydra, t), "a b").is_err());
    }
}
