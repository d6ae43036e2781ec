//! Registered memory and one-sided operations: regions, and `put`, `get`, `fetch_add` and
//! `compare_swap` as libfabric RMA and atomics staged through registered buffers, each waited
//! for by polling the completion queue (no handler runs meanwhile).

use std::any::Any;
use std::ffi::c_void;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{fabric, lock, OfiProvider, OP_DONE, OP_FAILED, OP_FREE, OP_PENDING};
use crate::rma::{Region, RemoteKey};
use crate::{Error, Place, Result};

/// Polls of a waiting operation before it starts yielding the core.
const SPINS: u32 = 64;

impl OfiProvider {
    pub(crate) fn alloc_region(&self, len: usize) -> Result<Region> {
        let mapping: Arc<dyn Any + Send + Sync> = self.mapping.clone();
        // SAFETY: this heap's area starts at the mapping's base; the region holds the
        // mapping, so the memory outlives it.
        unsafe {
            Region::alloc(
                Place::new(self.here),
                self.mapping.base(),
                len,
                &self.heap,
                mapping,
            )
        }
    }

    /// A buffer of `len` bytes of this place's registered memory.
    pub(super) fn stage(&self, len: usize) -> Result<Range<usize>> {
        self.heap.alloc_registered(Place::new(self.here), len)
    }

    /// The place and offset (in its registered memory) of `key`'s bytes `offset..offset+len`.
    fn locate(&self, key: &RemoteKey, offset: usize, len: usize) -> Result<(usize, usize)> {
        let place = key.place_in(self.places)?;
        let registered = usize::try_from(self.routes.to(place).memory.len).unwrap_or(usize::MAX);
        Ok((place, key.locate(offset, len, registered)?))
    }

    pub(crate) fn put(&self, key: &RemoteKey, offset: usize, data: &[u8]) -> Result<()> {
        let (to, at) = self.locate(key, offset, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        let chunk = data.len().min(self.max_transfer);
        let staging = self.stage(chunk)?;
        let path = self.routes.to(to);
        for (index, piece) in data.chunks(chunk).enumerate() {
            let local = self.at(staging.start);
            // SAFETY: the staging buffer holds `chunk >= piece.len()` bytes and is not lent to
            // libfabric between operations (each is waited for below).
            unsafe { std::ptr::copy_nonoverlapping(piece.as_ptr(), local, piece.len()) };
            let remote = path.memory.addr(at + index * chunk);
            let result = self.run(to, "fi_write", |context| {
                // SAFETY: the staging buffer is registered and stays allocated until the
                // completion (`finish` leaks it if the wait is given up).
                unsafe {
                    path.endpoint.write(
                        local,
                        piece.len(),
                        path.addr,
                        remote,
                        path.memory.key,
                        context,
                    )
                }
            });
            if let Err(error) = result {
                return Err(self.finish(staging, error));
            }
        }
        self.heap.free(staging);
        Ok(())
    }

    pub(crate) fn get(&self, key: &RemoteKey, offset: usize, dst: &mut [u8]) -> Result<()> {
        let (from, at) = self.locate(key, offset, dst.len())?;
        if dst.is_empty() {
            return Ok(());
        }
        let chunk = dst.len().min(self.max_transfer);
        let staging = self.stage(chunk)?;
        for (index, piece) in dst.chunks_mut(chunk).enumerate() {
            if let Err(error) = self.read_into(from, at + index * chunk, staging.start, piece.len())
            {
                return Err(self.finish(staging, error));
            }
            // SAFETY: the read completed into the staging buffer's first `piece.len()` bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.at(staging.start),
                    piece.as_mut_ptr(),
                    piece.len(),
                )
            };
        }
        self.heap.free(staging);
        Ok(())
    }

    /// Reads `len` bytes at offset `remote` of `from`'s registered memory into offset `local`
    /// of this place's, in transfers of at most `max_transfer` bytes. On
    /// [`Error::PlaceFailed`] the local bytes may still be written by libfabric: the caller
    /// must not reuse them.
    pub(super) fn read_into(
        &self,
        from: usize,
        remote: usize,
        local: usize,
        len: usize,
    ) -> Result<()> {
        let path = self.routes.to(from);
        let mut done = 0;
        while done < len {
            let n = (len - done).min(self.max_transfer);
            let buffer = self.at(local + done);
            let addr = path.memory.addr(remote + done);
            self.run(from, "fi_read", |context| {
                // SAFETY: the local bytes are registered memory owned by the caller, who keeps
                // them allocated until the completion (or leaks them).
                unsafe {
                    path.endpoint
                        .read(buffer, n, path.addr, addr, path.memory.key, context)
                }
            })?;
            done += n;
        }
        Ok(())
    }

    fn atomic_target(&self, key: &RemoteKey, offset: usize) -> Result<(usize, u64)> {
        if offset % 8 != 0 || key.offset() % 8 != 0 {
            return Err(Error::Misaligned { offset, align: 8 });
        }
        let (to, at) = self.locate(key, offset, 8)?;
        Ok((to, self.routes.to(to).memory.addr(at)))
    }

    pub(crate) fn fetch_add(&self, key: &RemoteKey, offset: usize, value: u64) -> Result<u64> {
        let (to, addr) = self.atomic_target(key, offset)?;
        let staging = self.stage(16)?;
        let operand = self.at(staging.start).cast::<u64>();
        // SAFETY: the staging buffer is 64-aligned, 64 bytes, ours alone: word 0 the operand,
        // word 1 the result.
        let result = unsafe {
            operand.write(value);
            operand.add(1)
        };
        let path = self.routes.to(to);
        let outcome = self.run(to, "fi_fetch_atomic", |context| {
            // SAFETY: both words are registered and stay allocated until the completion.
            unsafe {
                path.endpoint.fetch_atomic(
                    operand,
                    result,
                    path.addr,
                    addr,
                    path.memory.key,
                    context,
                )
            }
        });
        if let Err(error) = outcome {
            return Err(self.finish(staging, error));
        }
        // SAFETY: the operation completed: the result word holds the previous value.
        let previous = unsafe { result.read() };
        self.heap.free(staging);
        Ok(previous)
    }

    pub(crate) fn compare_swap(
        &self,
        key: &RemoteKey,
        offset: usize,
        expected: u64,
        new: u64,
    ) -> Result<u64> {
        let (to, addr) = self.atomic_target(key, offset)?;
        let staging = self.stage(24)?;
        let words = self.at(staging.start).cast::<u64>();
        // SAFETY: the staging buffer is 64-aligned, 64 bytes, ours alone: the new value, the
        // expected one, the result.
        let (new_at, expected_at, result) = unsafe {
            words.write(new);
            words.add(1).write(expected);
            (words, words.add(1), words.add(2))
        };
        let path = self.routes.to(to);
        let outcome = self.run(to, "fi_compare_atomic", |context| {
            // SAFETY: the three words are registered and stay allocated until the completion.
            unsafe {
                path.endpoint.compare_atomic(
                    new_at,
                    expected_at,
                    result,
                    path.addr,
                    addr,
                    path.memory.key,
                    context,
                )
            }
        });
        if let Err(error) = outcome {
            return Err(self.finish(staging, error));
        }
        // SAFETY: the operation completed: the result word holds the previous value.
        let previous = unsafe { result.read() };
        self.heap.free(staging);
        Ok(previous)
    }

    /// Frees a staging buffer after a failed operation, unless libfabric may still write it
    /// (the wait was given up because the peer died): then it is leaked.
    fn finish(&self, staging: Range<usize>, error: Error) -> Error {
        if !matches!(error, Error::PlaceFailed(_)) {
            self.heap.free(staging);
        }
        error
    }

    /// Posts one operation with a fresh context (`post`), and waits for its completion while
    /// polling the completion queue. Gives up with [`Error::PlaceFailed`] when `peer` dies;
    /// the operation's context and buffers then stay lent (leaked), never reused.
    fn run(&self, peer: usize, what: &str, post: impl Fn(*mut c_void) -> isize) -> Result<()> {
        let op = self.take_op(peer)?;
        let context = self.context(self.recv_count + self.send_count + op);
        self.op_state[op].store(OP_PENDING, Ordering::Release);
        let mut idle = 0u32;
        loop {
            let rc = post(context);
            if rc >= 0 {
                break;
            }
            if rc != fabric::EAGAIN {
                self.release_op(op);
                return fabric::check(rc, what);
            }
            if self.failures.is_failed(Place::new(peer)) {
                self.release_op(op);
                return Err(Error::PlaceFailed(Place::new(peer)));
            }
            self.poll_completions();
            backoff(&mut idle);
        }
        idle = 0;
        loop {
            match self.op_state[op].load(Ordering::Acquire) {
                OP_DONE => {
                    self.release_op(op);
                    return Ok(());
                }
                OP_FAILED => {
                    let code = self.op_error[op].load(Ordering::Relaxed);
                    self.release_op(op);
                    return Err(fabric::error(code, what));
                }
                _ => {}
            }
            if self.poll_completions() == 0 {
                if self.failures.is_failed(Place::new(peer)) {
                    return Err(Error::PlaceFailed(Place::new(peer)));
                }
                backoff(&mut idle);
            }
        }
    }

    fn take_op(&self, peer: usize) -> Result<usize> {
        let mut idle = 0u32;
        loop {
            if let Some(op) = lock(&self.free_ops).pop() {
                return Ok(op as usize);
            }
            if self.failures.is_failed(Place::new(peer)) {
                return Err(Error::PlaceFailed(Place::new(peer)));
            }
            self.poll_completions();
            backoff(&mut idle);
        }
    }

    fn release_op(&self, op: usize) {
        self.op_state[op].store(OP_FREE, Ordering::Release);
        lock(&self.free_ops).push(op as u32);
    }
}

/// Spins, then yields the core (8 places may share 2 cores, and a peer must run for the
/// operation to complete).
fn backoff(idle: &mut u32) {
    *idle = idle.saturating_add(1);
    if *idle < SPINS {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}
