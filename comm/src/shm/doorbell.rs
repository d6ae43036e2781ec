//! Cross-process sleep and wake-up on a word of shared memory (Linux futex, *not* the
//! process-private flavour, so that a sender in another process can wake a sleeper), and the
//! asymmetric fence that keeps the sender's side of that handshake free of a memory barrier.
//!
//! The handshake is Dekker's: the sleeper announces itself (`sleepers += 1`) and then looks at
//! its rings; the sender publishes a record and then looks at `sleepers`. Each side needs a
//! full barrier between its store and its load, or both may miss the other. A barrier on the
//! sender costs a cross-core cache miss on every message (it waits for the record's store to
//! drain), so the sleeper, which is on the slow path anyway, pays for both sides:
//! `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` runs a full barrier on every CPU that is
//! executing a registered process, which orders the sender's store before its load as a
//! fence would. Where the kernel lacks it, senders fall back to a real fence.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Sleeps while `word` holds `expected`, for at most `timeout` (spurious wake-ups allowed).
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call (it lives in a
    // mapping the caller keeps alive); FUTEX_WAIT only reads it; `ts` outlives the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        );
    }
}

/// Wakes every thread sleeping on `word`, in any process.
pub(crate) fn wake_all(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned u32 in a live mapping; FUTEX_WAKE does not access
    // user memory beyond hashing the address.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_long = 1 << 1;
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_long = 1 << 2;

/// Registers this process for expedited global membarriers; whether that worked (and the
/// sender side may therefore skip its fence).
pub(crate) fn register_asymmetric_fence() -> bool {
    // SAFETY: the membarrier syscall takes plain integers and touches no user memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED,
            0 as libc::c_long,
            0 as libc::c_long,
        )
    };
    rc == 0
}

/// The sleeper's half of the asymmetric fence: a full barrier on every CPU running a
/// registered process (this one included).
pub(crate) fn heavy_fence() {
    // SAFETY: as in `register_asymmetric_fence`.
    unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_GLOBAL_EXPEDITED,
            0 as libc::c_long,
            0 as libc::c_long,
        );
    }
}
