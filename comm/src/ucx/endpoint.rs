//! Endpoints: one per place (this place's own included, over UCX's `self` transport), created
//! from the worker addresses exchanged through the bootstrap; closed at teardown.
//!
//! # Peer-failure handling
//! An endpoint to a place of another host asks for `UCP_ERR_HANDLING_MODE_PEER`: UCX then
//! fails the requests of a dead peer and calls [`on_error`]. An endpoint to a place of this
//! host (and to this place itself) does not: UCX reaches those over shared memory, and its
//! shared-memory transports (UCX 1.13: `posix`, `sysv`, `cma`, and `self`) offer no peer-failure
//! handling, so asking for it would make UCX refuse them with an error line of its own (when no
//! other transport reaches the peer) or pass them over for a network transport (when one does,
//! as `tcp` with `UCX_TLS=sm,tcp,self`). Without `sm` in `UCX_TLS`, places of one host talk
//! over a network transport, still without the handling. The death of a place of this host is
//! reported by the local launcher through the bootstrap (the provider then neither flushes
//! towards it nor waits on its endpoint at teardown), or ends the job under an external
//! launcher.

use std::ffi::c_void;

use ucx_sys as sys;

use super::context::Worker;
use super::shared::Shared;
use super::status::{check, started, Started};
use crate::{Error, Place, Result};

/// What the endpoint error callback of one peer needs.
#[derive(Debug)]
pub(crate) struct ErrorArg {
    pub(crate) shared: *const Shared,
    pub(crate) place: usize,
}

/// Where a place is, seen from this one (from the bootstrap's hosts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// This place (UCX's `self` transport).
    Itself,
    /// Another place of this host (shared memory, when `UCX_TLS` allows it).
    SameHost,
    /// A place of another host (a network transport).
    OtherHost,
}

/// Connects to the worker of `place` whose address is `address`; `arg` lives (boxed, owned by
/// the provider) as long as the endpoint. Returns the endpoint and whether it has
/// peer-failure handling.
///
/// A place of another host gets peer-failure handling while `*peer_failure` holds. If UCX
/// refuses it (no transport that reaches the place offers it, which UCX reports with an error
/// line of its own), the endpoint is made without it and so are the following ones
/// (`*peer_failure` is cleared): the bootstrap or the launcher still reports deaths.
pub(crate) fn create(
    worker: &Worker,
    place: usize,
    reach: Reach,
    address: &[u8],
    arg: *mut ErrorArg,
    peer_failure: &mut bool,
) -> Result<(sys::ucp_ep_h, bool)> {
    if reach == Reach::OtherHost && *peer_failure {
        match create_with(worker, address, arg, sys::UCP_ERR_HANDLING_MODE_PEER) {
            Err(Error::Ucx { code, .. }) if code == sys::ucs_status_t::UCS_ERR_UNREACHABLE.0 => {
                tracing::debug!(
                    place,
                    "no UCX transport to this place offers peer-failure handling: endpoints \
                     without it"
                );
                *peer_failure = false;
            }
            other => return other.map(|ep| (ep, true)),
        }
    }
    match create_with(worker, address, arg, sys::UCP_ERR_HANDLING_MODE_NONE) {
        Ok(ep) => Ok((ep, false)),
        Err(Error::Ucx { op, code, message })
            if code == sys::ucs_status_t::UCS_ERR_UNREACHABLE.0 =>
        {
            Err(Error::Ucx {
                op,
                code,
                message: format!("{message}: {}", unreachable(place, reach)),
            })
        }
        Err(other) => Err(other),
    }
}

/// Why no UCX transport reaches `place`, and what to set.
fn unreachable(place: usize, reach: Reach) -> String {
    let tls = std::env::var("UCX_TLS").unwrap_or_else(|_| "(unset: all)".to_owned());
    let fix = match reach {
        Reach::Itself => "UCX_TLS needs `self`",
        Reach::SameHost => {
            "it runs on this host: UCX_TLS needs a shared-memory transport (`sm`) or a \
             network one whose device (UCX_NET_DEVICES) this host has"
        }
        Reach::OtherHost => {
            "it runs on another host: UCX_TLS needs a network transport (`tcp`, or `rc`, `ud`, \
             `dc` on InfiniBand) and UCX_NET_DEVICES a device that reaches that host"
        }
    };
    format!(
        "no transport of UCX_TLS={tls} reaches {}; {fix}",
        Place::new(place)
    )
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
