//! PMI servers for the unit tests, on the other end of a socket pair: one answering PMI-1
//! lines as a closure says (Slurm's way in [`slurm`]), one speaking PMI-2 as Slurm does.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

use super::connection::{Connection, Stream};
use super::wire::{Line, LineReader, Read1};
use crate::bootstrap::chunks;

/// A client connection whose other end `serve` runs on a thread of its own.
fn socket_pair(timeout: Duration, serve: impl FnOnce(UnixStream) + Send + 'static) -> Connection {
    let (client, theirs) = UnixStream::pair().unwrap();
    thread::spawn(move || serve(theirs));
    Connection::new(
        Stream::Unix(client),
        timeout,
        "the test server".into(),
        "a hint",
    )
}

/// A PMI server on the other end of a socket pair, answering each request line with
/// `answer` (no answer: `None`); it ends when the client closes.
pub(super) fn server(
    answer: impl Fn(&Line, &mut HashMap<String, String>) -> Option<String> + Send + 'static,
    timeout: Duration,
) -> Connection {
    socket_pair(timeout, move |mut theirs| {
        let mut lines = LineReader::default();
        let mut kvs = HashMap::new();
        while let Ok(Read1::Line(text)) = lines.read_line(&mut theirs) {
            let line = Line::parse(&text).unwrap();
            if let Some(reply) = answer(&line, &mut kvs) {
                if theirs.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        }
    })
}

/// Answers as Slurm's pmi2 plugin does to PMI-1 lines (rc on every reply, appnum=-1,
/// kvsname `job.step`), with place 1's blob already in the store.
pub(super) fn slurm(line: &Line, kvs: &mut HashMap<String, String>) -> Option<String> {
    Some(match line.cmd.as_str() {
        "init" => "cmd=response_to_init rc=0 pmi_version=1 pmi_subversion=1\n".into(),
        "get_maxes" => "cmd=maxes rc=0 kvsname_max=256 keylen_max=64 vallen_max=1024\n".into(),
        "get_my_kvsname" => "cmd=my_kvsname rc=0 kvsname=3.0\n".into(),
        "get_appnum" => "cmd=appnum rc=0 appnum=-1\n".into(),
        "put" => {
            kvs.insert(line.get("key")?.into(), line.get("value")?.into());
            "cmd=put_result rc=0\n".into()
        }
        "barrier_in" => {
            for (i, value) in chunks::split(&[9; 5000], 200).iter().enumerate() {
                kvs.insert(format!("atoll-1-1-{i}"), value.clone());
            }
            "cmd=barrier_out rc=0\n".into()
        }
        "get" => match kvs.get(line.get("key")?) {
            Some(v) => format!("cmd=get_result rc=0 value={v}\n"),
            None => "cmd=get_result rc=1\n".into(),
        },
        "finalize" => "cmd=finalize_ack rc=0\n".into(),
        _ => return None,
    })
}

/// A PMI-2 server as Slurm's: PMI-1 `init`, then PMI-2 messages; its fence is a barrier
/// of one place here, and place 1's values are already stored.
pub(super) fn slurm_v2(timeout: Duration) -> Connection {
    socket_pair(timeout, move |mut theirs| {
        let mut lines = LineReader::default();
        let Ok(Read1::Line(_init)) = lines.read_line(&mut theirs) else {
            return;
        };
        let reply = "cmd=response_to_init pmi_version=2 pmi_subversion=0 rc=0\n";
        theirs.write_all(reply.as_bytes()).unwrap();
        let mut kvs: HashMap<String, String> = HashMap::new();
        for (i, value) in chunks::split(&[7; 2500], 1000).iter().enumerate() {
            kvs.insert(format!("atoll-1-1-{i}"), value.clone());
        }
        while let Ok(Read1::Line(body)) = lines.read_v2(&mut theirs) {
            let req = Line::parse_v2(&body).unwrap();
            let reply = match req.cmd.as_str() {
                "fullinit" => Line::format_v2(
                    "fullinit-response",
                    &[("rc", "0"), ("rank", "0"), ("size", "2"), ("appnum", "0")],
                ),
                "job-getid" => {
                    Line::format_v2("job-getid-response", &[("jobid", "7.0"), ("rc", "0")])
                }
                "kvs-put" => {
                    kvs.insert(
                        req.require("key").unwrap().into(),
                        req.require("value").unwrap().into(),
                    );
                    Line::format_v2("kvs-put-response", &[("rc", "0")])
                }
                "kvs-fence" => Line::format_v2("kvs-fence-response", &[("rc", "0")]),
                "kvs-get" => match kvs.get(req.require("key").unwrap()) {
                    Some(v) => Line::format_v2(
                        "kvs-get-response",
                        &[("found", "TRUE"), ("value", v), ("rc", "0")],
                    ),
                    None => Line::format_v2("kvs-get-response", &[("found", "FALSE"), ("rc", "0")]),
                },
                "finalize" => Line::format_v2("finalize-response", &[("rc", "0")]),
                _ => return,
            };
            if theirs.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    })
}
