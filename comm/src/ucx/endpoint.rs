//! Endpoints: one per place (this place's own included, over UCX's `self` transport), created
//! from the worker addresses exchanged through the bootstrap, with peer-failure handling;
//! closed at teardown.

use std::ffi::c_void;

use ucx_sys as sys;

use super::context::Worker;
use super::shared::Shared;
use super::status::{check, started, Started};
use crate::{Error, Result};

/// What the endpoint error callback of one peer needs.
#[derive(Debug)]
pub(crate) struct ErrorArg {
    pub(crate) shared: *const Shared,
    pub(crate) place: usize,
}

/// Connects to the worker whose address is `address`; `arg` lives (boxed, owned by the
/// provider) as long as the endpoint.
///
/// With `*peer_failure`, asks for peer-failure handling (UCX then fails the requests of a dead
/// peer and calls the error callback). Transports without it (UCX 1.13's shared-memory ones,
/// `self`) refuse that, once, with an error line of UCX's own; the endpoint is then made
/// without it, and so are the following ones (`*peer_failure` is cleared): the bootstrap
/// still reports deaths.
pub(crate) fn create(
    worker: &Worker,
    address: &[u8],
    arg: *mut ErrorArg,
    peer_failure: &mut bool,
) -> Result<sys::ucp_ep_h> {
    if *peer_failure {
        match create_with(worker, address, arg, sys::UCP_ERR_HANDLING_MODE_PEER) {
            Err(Error::Ucx { code, .. }) if code == sys::ucs_status_t::UCS_ERR_UNREACHABLE.0 => {
                tracing::debug!(
                    "UCX transports without peer-failure handling: endpoints without it"
                );
                *peer_failure = false;
            }
            other => return other,
        }
    }
    create_with(worker, address, arg, sys::UCP_ERR_HANDLING_MODE_NONE)
}

fn create_with(
    worker: &Worker,
    address: &[u8],
    arg: *mut ErrorArg,
    err_mode: sys::ucp_err_handling_mode_t,
) -> Result<sys::ucp_ep_h> {
    let params = sys::ucp_ep_params_t {
        field_mask: u64::from(
            sys::UCP_EP_PARAM_FIELD_REMOTE_ADDRESS
                | sys::UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE
                | sys::UCP_EP_PARAM_FIELD_ERR_HANDLER,
        ),
        address: address.as_ptr().cast(),
        err_mode,
        err_handler: sys::ucp_err_handler_t {
            cb: Some(on_error),
            arg: arg.cast(),
        },
        ..Default::default()
    };
    let mut ep: sys::ucp_ep_h = std::ptr::null_mut();
    // SAFETY: live worker under its lock (the caller's); `address` is a worker address a peer
    // published (UCX parses and checks it), readable for the call; valid out-pointer.
    check("ucp_ep_create", unsafe {
        sys::ucp_ep_create(worker.raw(), &params, &mut ep)
    })?;
    Ok(ep)
}

/// Marks the peer failed; UCX completes its outstanding requests with errors.
unsafe extern "C" fn on_error(arg: *mut c_void, _ep: sys::ucp_ep_h, status: sys::ucs_status_t) {
    // SAFETY: `arg` is the `ErrorArg` given at creation, alive while the endpoint is.
    let arg = unsafe { &*arg.cast::<ErrorArg>() };
    // SAFETY: `Shared` outlives the worker, and this runs inside the worker's progress.
    let shared = unsafe { &*arg.shared };
    tracing::debug!(place = arg.place, status = status.0, "UCX endpoint failed");
    shared.mark_failed(arg.place);
}

/// Starts closing `ep`: flushing its operations, or at once (`force`) when its peer failed.
pub(crate) fn close(ep: sys::ucp_ep_h, force: bool) -> Result<Started> {
    let params = sys::ucp_request_param_t {
        op_attr_mask: sys::UCP_OP_ATTR_FIELD_FLAGS,
        flags: if force {
            sys::UCP_EP_CLOSE_FLAG_FORCE
        } else {
            0
        },
        ..Default::default()
    };
    // SAFETY: `ep` is live and never used after this call (the caller forgets it); under the
    // worker lock.
    started("ucp_ep_close_nbx", unsafe {
        sys::ucp_ep_close_nbx(ep, &params)
    })
}
