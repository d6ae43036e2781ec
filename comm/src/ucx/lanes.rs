//! What UCX chose for an endpoint: its lanes (transport/device, and what each carries), for
//! the debug line Atoll writes per endpoint (`ATOLL_LOG=atoll_comm::ucx=debug`).
//!
//! UCX 1.13 has no query for an endpoint's transports (`ucp_ep_query` gained them in 1.14);
//! `ucp_ep_print_info` writes them as text, one `lane[N]: ...` line each, which is captured in
//! memory (`open_memstream`) and shortened. Only called when that debug line is enabled.

use std::ffi::c_char;

use ucx_sys as sys;

/// The lanes of `ep`, as `tl/dev[what,...]` joined by `+` (e.g.
/// `posix/memory[rma_bw#0,amo#0]+cma/memory[am,am_bw#0]`), or why they could not be read.
///
/// The caller holds the worker lock (`ucp_ep_print_info` reads the endpoint's state).
pub(crate) fn describe(ep: sys::ucp_ep_h) -> String {
    match print_info(ep) {
        Some(text) => summarize(&text),
        None => "(unknown: open_memstream failed)".to_owned(),
    }
}

/// `ucp_ep_print_info`'s text.
fn print_info(ep: sys::ucp_ep_h) -> Option<String> {
    let mut buf: *mut c_char = std::ptr::null_mut();
    let mut len: libc::size_t = 0;
    // SAFETY: valid out-pointers, which the stream updates until it is closed below.
    let stream = unsafe { libc::open_memstream(&mut buf, &mut len) };
    if stream.is_null() {
        return None;
    }
    // SAFETY: `ep` is a live endpoint (the caller's), used under the worker lock; `stream` is
    // an open stream (UCX's `FILE` is the C library's, declared opaque by bindgen).
    unsafe { sys::ucp_ep_print_info(ep, stream.cast()) };
    // SAFETY: `stream` is open and closed once; closing sets `buf` and `len` to the text.
    let closed = unsafe { libc::fclose(stream) };
    if buf.is_null() {
        return None;
    }
    // SAFETY: after `fclose`, `buf` holds `len` bytes written by the stream (plus a NUL).
    let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) };
    let text = String::from_utf8_lossy(bytes).into_owned();
    // SAFETY: `buf` was allocated by `open_memstream` (malloc) and is freed once.
    unsafe { libc::free(buf.cast()) };
    (closed == 0).then_some(text)
}

/// `tl/dev[what,...]` for each `lane[N]:` line of `ucp_ep_print_info`'s text, such as
/// `#  lane[0]:  3:posix/memory.0 md[2]  -> md[2]/posix/sysdev[255] rma_bw#0 amo#0`.
/// A line of another form is kept whole, so that nothing is hidden.
fn summarize(text: &str) -> String {
    let lanes: Vec<String> = text
        .lines()
        .filter_map(|line| {
            let line = line.trim_start_matches('#').trim();
            let rest = line.strip_prefix("lane[")?;
            Some(lane(rest).unwrap_or_else(|| line.to_owned()))
        })
        .collect();
    if lanes.is_empty() {
        return "(no lanes)".to_owned();
    }
    lanes.join("+")
}

/// One lane line after `lane[`: `0]:  3:posix/memory.0 md[2]  -> md[2]/posix/sysdev[255] am`.
fn lane(rest: &str) -> Option<String> {
    let (_, rest) = rest.split_once("]:")?;
    let (resource, rest) = rest.trim_start().split_once(char::is_whitespace)?;
    // `3:posix/memory.0`: resource index, `tl/dev`, path index.
    let (_, tl_dev) = resource.split_once(':')?;
    let tl_dev = tl_dev.rsplit_once('.').map_or(tl_dev, |(name, _)| name);
    let (_, target) = rest.split_once("->")?;
    let roles: Vec<&str> = target.split_whitespace().skip(1).collect();
    if roles.is_empty() {
        // An RMA lane below the bandwidth lanes: no role of its own in the text.
        return Some(tl_dev.to_owned());
    }
    Some(format!("{tl_dev}[{}]", roles.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarizes_ucx_1_13_lane_lines() {
        let text = "#\n# UCP endpoint \n#\n#               peer: <no debug data>\n\
            #                 lane[0]:  2:sysv/memory.0 md[1]        -> md[1]/sysv/sysdev[255] rma_bw#0 amo#0\n\
            #                 lane[1]:  4:cma/memory.0 md[3]         -> md[3]/cma/sysdev[255] am am_bw#0\n\
            #\n#                am_send: 0..<egr/short>..8185..<egr/bcopy>..inf\n";
        assert_eq!(
            summarize(text),
            "sysv/memory[rma_bw#0,amo#0]+cma/memory[am,am_bw#0]"
        );
        let tcp = "#  lane[0]:  5:tcp/atoll0.0 md[4]  -> md[4]/tcp/sysdev[255] rma_bw#0 amo#0 am am_bw#0 keepalive wireup\n";
        assert_eq!(
            summarize(tcp),
            "tcp/atoll0[rma_bw#0,amo#0,am,am_bw#0,keepalive,wireup]"
        );
        let bare = "#  lane[2]:  1:posix/memory.0 md[1]  -> md[1]/posix/sysdev[255]\n";
        assert_eq!(summarize(bare), "posix/memory");
        // Another form is kept whole; no lane at all is said.
        assert_eq!(summarize("# lane[0]: cm lane"), "lane[0]: cm lane");
        assert_eq!(summarize("#\n"), "(no lanes)");
    }
}
