//! One-sided operations on peers' registered heaps: put (with an endpoint flush, so that the
//! data is in place at the target when it returns), get, fetch-and-add, compare-and-swap.
//!
//! Each operation is waited for before the call returns, driving the worker meanwhile: the
//! caller's buffers are lent to UCX only for the duration of the call, so no dropped future
//! can leave UCX reading or writing freed memory.

use std::ffi::c_void;

use ucx_sys as sys;

use super::status::{check, started, Started};
use super::{UcxProvider, WorkerState};
use crate::rma::RemoteKey;
use crate::{Error, Result};

/// Wait-loop rounds between yields of the CPU (oversubscribed runs need the peer to run).
const SPINS_PER_YIELD: u32 = 64;

/// `#define ucp_dt_make_contig(_elem_size) (((ucp_datatype_t)(_elem_size) << UCP_DATATYPE_SHIFT) | UCP_DATATYPE_CONTIG)`
fn dt_make_contig(elem_size: usize) -> sys::ucp_datatype_t {
    ((elem_size as sys::ucp_datatype_t) << sys::UCP_DATATYPE_SHIFT)
        | sys::ucp_datatype_t::from(sys::UCP_DATATYPE_CONTIG)
}

impl UcxProvider {
    /// The place and remote address of `key`'s bytes `offset..offset + len`, checked.
    fn target(&self, key: &RemoteKey, offset: usize, len: usize) -> Result<(usize, u64)> {
        let place = key.place_in(self.places())?;
        let at = key.locate(offset, len, self.mapping.len())?;
        Ok((place, at as u64))
    }

    pub(crate) fn put(&self, key: &RemoteKey, offset: usize, data: &[u8]) -> Result<()> {
        let (to, at) = self.target(key, offset, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        let mut state = self.lock_worker();
        let (ep, memory) = state.remote(to)?;
        let params = sys::ucp_request_param_t::default();
        // SAFETY: live endpoint and key under the worker lock; `data` stays borrowed (and so
        // valid) until `wait` below has seen the put complete; the remote range was checked
        // against the peer's registered heap.
        let put = started("ucp_put_nbx", unsafe {
            sys::ucp_put_nbx(
                ep,
                data.as_ptr().cast(),
                data.len(),
                memory.base + at,
                memory.rkey,
                &params,
            )
        });
        // SAFETY: live endpoint under the worker lock.
        let flush = started("ucp_ep_flush_nbx", unsafe {
            sys::ucp_ep_flush_nbx(ep, &params)
        });
        let put = wait(&mut state, put);
        let flush = wait(&mut state, flush);
        put.and(flush)
    }

    pub(crate) fn get(&self, key: &RemoteKey, offset: usize, dst: &mut [u8]) -> Result<()> {
        let (from, at) = self.target(key, offset, dst.len())?;
        if dst.is_empty() {
            return Ok(());
        }
        let mut state = self.lock_worker();
        let (ep, memory) = state.remote(from)?;
        let params = sys::ucp_request_param_t::default();
        // SAFETY: as in `put`; `dst` is exclusively borrowed until the get completed.
        let get = started("ucp_get_nbx", unsafe {
            sys::ucp_get_nbx(
                ep,
                dst.as_mut_ptr().cast(),
                dst.len(),
                memory.base + at,
                memory.rkey,
                &params,
            )
        });
        wait(&mut state, get)
    }

    pub(crate) fn fetch_add(&self, key: &RemoteKey, offset: usize, value: u64) -> Result<u64> {
        let mut reply = 0u64;
        self.atomic(key, offset, sys::UCP_ATOMIC_OP_ADD, value, &mut reply)?;
        Ok(reply)
    }

    pub(crate) fn compare_swap(
        &self,
        key: &RemoteKey,
        offset: usize,
        expected: u64,
        new: u64,
    ) -> Result<u64> {
        // CSWAP: the remote word is compared with `buffer` and replaced by the reply buffer's
        // value, which receives the old one.
        let mut reply = new;
        self.atomic(key, offset, sys::UCP_ATOMIC_OP_CSWAP, expected, &mut reply)?;
        Ok(reply)
    }

    fn atomic(
        &self,
        key: &RemoteKey,
        offset: usize,
        op: sys::ucp_atomic_op_t,
        operand: u64,
        reply: &mut u64,
    ) -> Result<()> {
        if offset % 8 != 0 || key.offset() % 8 != 0 {
            return Err(Error::Misaligned { offset, align: 8 });
        }
        let (to, at) = self.target(key, offset, 8)?;
        let mut state = self.lock_worker();
        let (ep, memory) = state.remote(to)?;
        let params = sys::ucp_request_param_t {
            op_attr_mask: sys::UCP_OP_ATTR_FIELD_DATATYPE | sys::UCP_OP_ATTR_FIELD_REPLY_BUFFER,
            datatype: dt_make_contig(8),
            reply_buffer: (reply as *mut u64).cast(),
            ..Default::default()
        };
        // SAFETY: live endpoint and key under the worker lock; `operand` and `reply` live on
        // this frame until `wait` has seen the operation complete; the remote word is inside
        // the peer's heap (checked) and 8-aligned (heap offsets are).
        let started = started("ucp_atomic_op_nbx", unsafe {
            sys::ucp_atomic_op_nbx(
                ep,
                op,
                (&operand as *const u64).cast(),
                1,
                memory.base + at,
                memory.rkey,
                &params,
            )
        });
        wait(&mut state, started)
    }
}

/// Drives the worker until the operation completes; returns its status.
fn wait(state: &mut WorkerState, started: Result<Started>) -> Result<()> {
    let request: *mut c_void = match started? {
        Started::Done => return Ok(()),
        Started::Pending(request) => request,
    };
    let mut spins = 0u32;
    loop {
        // SAFETY: a live request of this worker, under the worker lock.
        let status = unsafe { sys::ucp_request_check_status(request) };
        if status != sys::ucs_status_t::UCS_INPROGRESS {
            // SAFETY: completed; freed once, here.
            unsafe { state.worker.free_request(request) };
            return check("RMA operation", status);
        }
        if state.worker.progress() == 0 {
            spins += 1;
            if spins % SPINS_PER_YIELD == 0 {
                std::thread::yield_now();
            }
        }
    }
}
