//! The UCP context and worker: creation, address, progress, wake-up, destruction.
//!
//! One context and one worker per place. The worker is created in
//! `UCS_THREAD_MODE_SERIALIZED`: the provider serialises every call on it behind one mutex
//! (see [`super::UcxProvider`]), except `ucp_worker_signal`, which UCX documents as safe
//! from any thread.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Arc;

use ucx_sys as sys;

use super::status::check;
use crate::{Error, Result};

/// A UCP context.
///
/// Invariant: `raw` is a live context from `ucp_init_version`, cleaned up exactly once, when
/// the last `Arc<Context>` (held by the worker and the memory mapping) drops.
#[derive(Debug)]
pub(crate) struct Context {
    raw: NonNull<sys::ucp_context>,
}

// SAFETY: the context is only used for set-up (`ucp_mem_map`, `ucp_rkey_pack`, worker
// creation) and teardown, which the provider performs from one thread at a time.
unsafe impl Send for Context {}
// SAFETY: as for `Send`: no method mutates through `&Context` concurrently with another.
unsafe impl Sync for Context {}

impl Context {
    /// `ucp_init` with the features the provider uses: active messages, RMA, 64-bit atomics,
    /// wake-up. UCX reads its own `UCX_*` environment variables here.
    pub(crate) fn new() -> Result<Arc<Context>> {
        let mut config: *mut sys::ucp_config_t = std::ptr::null_mut();
        // SAFETY: null prefix and file mean "UCX_" and no file; `config` is a valid out-pointer.
        check("ucp_config_read", unsafe {
            sys::ucp_config_read(std::ptr::null(), std::ptr::null(), &mut config)
        })?;
        let params = sys::ucp_params_t {
            field_mask: u64::from(sys::UCP_PARAM_FIELD_FEATURES),
            features: u64::from(
                sys::UCP_FEATURE_AM
                    | sys::UCP_FEATURE_RMA
                    | sys::UCP_FEATURE_AMO64
                    | sys::UCP_FEATURE_WAKEUP,
            ),
            ..Default::default()
        };
        let mut raw: sys::ucp_context_h = std::ptr::null_mut();
        // SAFETY: `ucp_init` is a static inline wrapper of `ucp_init_version` with the header's
        // API version, which this is; `params` and `config` are valid for the call.
        let status = unsafe {
            sys::ucp_init_version(
                sys::UCP_API_MAJOR,
                sys::UCP_API_MINOR,
                &params,
                config,
                &mut raw,
            )
        };
        // SAFETY: `config` came from `ucp_config_read` and is released exactly once.
        unsafe { sys::ucp_config_release(config) };
        check("ucp_init", status)?;
        let raw = NonNull::new(raw).ok_or_else(|| Error::Ucx {
            op: "ucp_init",
            code: 0,
            message: "returned a null context".into(),
        })?;
        Ok(Arc::new(Context { raw }))
    }

    pub(crate) fn raw(&self) -> sys::ucp_context_h {
        self.raw.as_ptr()
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: every worker and memory handle of this context holds an `Arc` to it, so
        // they are gone; the context is cleaned up once (type invariant).
        unsafe { sys::ucp_cleanup(self.raw.as_ptr()) };
    }
}

/// The place's UCP worker.
///
/// Invariant: `raw` is a live worker of `context`, destroyed exactly once on drop; every
/// method but [`Worker::signal`] is called with the provider's worker lock held.
#[derive(Debug)]
pub(crate) struct Worker {
    raw: NonNull<sys::ucp_worker>,
    efd: i32,
    _context: Arc<Context>,
}

// SAFETY: a serialized-mode worker may be used from any thread as long as calls do not
// overlap, which the provider's worker lock guarantees.
unsafe impl Send for Worker {}
// SAFETY: `&Worker` only exposes `signal` (thread-safe by UCX's documentation) and `raw`,
// whose users hold the worker lock.
unsafe impl Sync for Worker {}

impl Worker {
    /// A serialized-mode worker whose active-message data is aligned for rkyv.
    pub(crate) fn new(context: &Arc<Context>) -> Result<Worker> {
        let params = sys::ucp_worker_params_t {
            field_mask: u64::from(
                sys::UCP_WORKER_PARAM_FIELD_THREAD_MODE | sys::UCP_WORKER_PARAM_FIELD_AM_ALIGNMENT,
            ),
            thread_mode: sys::UCS_THREAD_MODE_SERIALIZED,
            am_alignment: 16,
            ..Default::default()
        };
        let mut raw: sys::ucp_worker_h = std::ptr::null_mut();
        // SAFETY: the context is live (held by the Arc); `params` and `raw` are valid.
        check("ucp_worker_create", unsafe {
            sys::ucp_worker_create(context.raw(), &params, &mut raw)
        })?;
        let raw = NonNull::new(raw).ok_or_else(|| Error::Ucx {
            op: "ucp_worker_create",
            code: 0,
            message: "returned a null worker".into(),
        })?;
        let mut worker = Worker {
            raw,
            efd: -1,
            _context: context.clone(),
        };
        let mut efd = -1;
        // SAFETY: live worker created with UCP_FEATURE_WAKEUP; `efd` is a valid out-pointer.
        check("ucp_worker_get_efd", unsafe {
            sys::ucp_worker_get_efd(worker.raw(), &mut efd)
        })?;
        worker.efd = efd;
        Ok(worker)
    }

    pub(crate) fn raw(&self) -> sys::ucp_worker_h {
        self.raw.as_ptr()
    }

    /// The worker's address, for peers to connect to.
    pub(crate) fn address(&self) -> Result<Vec<u8>> {
        let mut address: *mut sys::ucp_address_t = std::ptr::null_mut();
        let mut len = 0usize;
        // SAFETY: live worker; valid out-pointers.
        check("ucp_worker_get_address", unsafe {
            sys::ucp_worker_get_address(self.raw(), &mut address, &mut len)
        })?;
        // SAFETY: UCX returned `len` readable bytes at `address`, released right after.
        let bytes = unsafe { std::slice::from_raw_parts(address.cast::<u8>(), len) }.to_vec();
        // SAFETY: `address` came from `ucp_worker_get_address` of this worker, released once.
        unsafe { sys::ucp_worker_release_address(self.raw(), address) };
        Ok(bytes)
    }

    /// Runs UCX's progress once; how many events it handled.
    pub(crate) fn progress(&self) -> u32 {
        // SAFETY: live worker, called under the worker lock (type invariant).
        unsafe { sys::ucp_worker_progress(self.raw()) }
    }

    /// Arms the wake-up descriptor; `false` when events are pending (progress instead).
    pub(crate) fn arm(&self) -> Result<bool> {
        // SAFETY: live worker, under the worker lock.
        let status = unsafe { sys::ucp_worker_arm(self.raw()) };
        if status == sys::ucs_status_t::UCS_ERR_BUSY {
            return Ok(false);
        }
        check("ucp_worker_arm", status).map(|()| true)
    }

    /// The file descriptor that becomes readable when the armed worker has events.
    pub(crate) fn efd(&self) -> i32 {
        self.efd
    }

    /// Frees a request UCX handed out (its operation completed or will complete on its own).
    ///
    /// # Safety
    /// `request` must be a live request of this worker, not freed before.
    pub(crate) unsafe fn free_request(&self, request: *mut c_void) {
        // SAFETY: the caller's contract.
        unsafe { sys::ucp_request_free(request) };
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // SAFETY: the provider closed the endpoints and released held data before dropping
        // the worker; the worker is destroyed once (type invariant).
        unsafe { sys::ucp_worker_destroy(self.raw()) };
    }
}
