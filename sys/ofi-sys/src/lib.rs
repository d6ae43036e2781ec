//! Raw bindings to libfabric, found by pkg-config (`libfabric`, 1.17 or newer) or under
//! `ATOLL_OFI_DIR`.
//!
//! This crate only binds: the safe wrappers live in `atoll-comm`'s `ofi` provider.
//!
//! - Functions, types and constants of the headers (`fi_*`, `fid_*`, `FI_*`) come from bindgen.
//!   Status codes (`FI_EAGAIN`, ...) and enumerations (`fi_op`, `fi_datatype`, ...) are plain
//!   integer constants, never Rust enums.
//! - libfabric's object and data-path calls (`fi_domain`, `fi_send`, `fi_cq_read`, ...) are
//!   `static inline` in its headers, so there is no symbol to bind: each is reached through a
//!   one-line C wrapper named `atoll_fi_<name>` (`src/shim.c`), compiled with `cc`.
//! - Why not the official `ofi-libfabric-sys` crate (0.2.0, tried against Debian 12's
//!   libfabric 1.17.0 through pkg-config, without its `vendored` feature): its C wrapper
//!   includes `fi_profile.h`, a header libfabric gained after 1.17, so the build stops there;
//!   its build script also asserts that pkg-config reports exactly one include directory, which
//!   fails where that directory is the system's (pkg-config omits `/usr/include`).
//! - `FI_ADDR_UNSPEC`, a cast macro bindgen cannot evaluate, is written out below with its C
//!   definition beside it.

#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    missing_docs,
    unreachable_pub,
    clippy::missing_safety_doc,
    clippy::useless_transmute,
    clippy::too_many_arguments,
    clippy::ptr_offset_with_cast,
    clippy::unnecessary_cast,
    clippy::type_complexity
)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// `#define FI_ADDR_UNSPEC ((uint64_t) -1)`
pub const FI_ADDR_UNSPEC_VALUE: fi_addr_t = u64::MAX;
