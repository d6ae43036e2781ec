//! UCX's status codes and status-carrying pointers, turned into typed errors in one funnel.
//!
//! `ucs_status_t` is a newtype over a C `int8_t` (never a Rust enum: UCX's codes are open
//! ranges). `UCS_PTR_IS_ERR`, `UCS_PTR_IS_PTR` and `UCS_PTR_STATUS` are C macros, rewritten
//! here as small functions with the macro quoted beside each.

use std::ffi::{c_void, CStr};

use ucx_sys::ucs_status_t;

use crate::Error;

/// What a non-blocking UCX call returned.
#[derive(Debug)]
pub(crate) enum Started {
    /// The operation completed at once (a null status pointer).
    Done,
    /// The operation is in flight; the request completes it.
    Pending(*mut c_void),
}

/// `#define UCS_PTR_IS_ERR(_ptr) (((uintptr_t)(_ptr)) >= ((uintptr_t)UCS_ERR_LAST))`
pub(crate) fn ptr_is_err(ptr: *mut c_void) -> bool {
    ptr as usize >= (ucs_status_t::UCS_ERR_LAST.0 as isize) as usize
}

/// `#define UCS_PTR_IS_PTR(_ptr) (((uintptr_t)(_ptr) - 1) < ((uintptr_t)UCS_ERR_LAST - 1))`
pub(crate) fn ptr_is_ptr(ptr: *mut c_void) -> bool {
    (ptr as usize).wrapping_sub(1) < ((ucs_status_t::UCS_ERR_LAST.0 as isize) as usize) - 1
}

/// `#define UCS_PTR_STATUS(_ptr) ((ucs_status_t)(intptr_t)(_ptr))`
pub(crate) fn ptr_status(ptr: *mut c_void) -> ucs_status_t {
    ucs_status_t(ptr as isize as i8)
}

/// The funnel for a `ucs_status_ptr_t`: done, pending, or the typed error of `op`.
pub(crate) fn started(op: &'static str, ptr: *mut c_void) -> Result<Started, Error> {
    if ptr.is_null() {
        Ok(Started::Done)
    } else if ptr_is_ptr(ptr) {
        Ok(Started::Pending(ptr))
    } else {
        debug_assert!(ptr_is_err(ptr));
        Err(error(op, ptr_status(ptr)))
    }
}

/// The funnel for a `ucs_status_t`: `UCS_OK` is `Ok`, anything else the typed error of `op`.
pub(crate) fn check(op: &'static str, status: ucs_status_t) -> Result<(), Error> {
    if status == ucs_status_t::UCS_OK {
        Ok(())
    } else {
        Err(error(op, status))
    }
}

/// The typed error for `status`, returned by `op`.
pub(crate) fn error(op: &'static str, status: ucs_status_t) -> Error {
    Error::Ucx {
        op,
        code: status.0,
        message: message(status),
    }
}

/// UCX's own words for `status`.
fn message(status: ucs_status_t) -> String {
    // SAFETY: `ucs_status_string` accepts any value (unknown codes give a generic string) and
    // returns a pointer to a static NUL-terminated string, or null.
    let text = unsafe { ucx_sys::ucs_status_string(status) };
    if text.is_null() {
        return format!("status {}", status.0);
    }
    // SAFETY: non-null, NUL-terminated and static (UCX's string table).
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_pointers_decode_as_the_c_macros_do() {
        let err = ucs_status_t::UCS_ERR_NO_MEMORY.0 as isize as *mut c_void;
        assert!(ptr_is_err(err));
        assert!(!ptr_is_ptr(err));
        assert_eq!(ptr_status(err), ucs_status_t::UCS_ERR_NO_MEMORY);
        let real = 0x1000 as *mut c_void;
        assert!(ptr_is_ptr(real));
        assert!(!ptr_is_err(real));
        assert!(!ptr_is_ptr(std::ptr::null_mut()));
        assert!(matches!(
            started("x", std::ptr::null_mut()),
            Ok(Started::Done)
        ));
        assert!(matches!(
            started("ucp_am_send_nbx", err),
            Err(Error::Ucx { code, .. }) if code == ucs_status_t::UCS_ERR_NO_MEMORY.0
        ));
        assert!(check("x", ucs_status_t::UCS_OK).is_ok());
        let text = check("ucp_init", ucs_status_t::UCS_ERR_NO_DEVICE)
            .unwrap_err()
            .to_string();
        assert!(text.contains("ucp_init"), "{text}");
    }
}
