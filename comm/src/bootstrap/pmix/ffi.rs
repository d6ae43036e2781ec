//! PMIx's client calls, loaded from `libpmix.so.2` at run time, behind a safe interface.
//!
//! Why at run time rather than a bindgen crate: the same executable then works under
//! `mpirun` and `srun --mpi=pmix` and without any PMIx installed, a default build needs only
//! Rust and a C compiler, and no cargo feature has to be remembered for `mpirun ./app` to
//! work. The price is that the few types below are written by hand: they follow the PMIx
//! standard's ABI (`pmix_common.h`, stable for the `libpmix.so.2` soname since PMIx 2), and
//! a test compiles a C program against the installed headers to check every size and
//! offset (`tests::layout_matches_the_headers`).

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

use crate::{Error, Result};

/// `PMIX_MAX_NSLEN + 1`.
pub(crate) const NSPACE_LEN: usize = 256;
/// `PMIX_MAX_KEYLEN + 1`.
const KEY_LEN: usize = 512;
/// `PMIX_SUCCESS`.
pub(crate) const SUCCESS: c_int = 0;
/// `PMIX_RANK_WILDCARD`.
pub(crate) const RANK_WILDCARD: u32 = u32::MAX - 1;
/// `PMIX_BOOL`, `PMIX_UINT32`, `PMIX_BYTE_OBJECT` (`pmix_data_type_t` values).
const TYPE_BOOL: u16 = 1;
pub(crate) const TYPE_UINT32: u16 = 14;
pub(crate) const TYPE_BYTE_OBJECT: u16 = 27;
/// `PMIX_GLOBAL` (`pmix_scope_t`).
const SCOPE_GLOBAL: u8 = 3;

/// `pmix_proc_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Proc {
    pub(crate) nspace: [c_char; NSPACE_LEN],
    pub(crate) rank: u32,
}

/// `pmix_byte_object_t`.
#[repr(C)]
#[derive(Clone, Copy)]
struct ByteObject {
    bytes: *mut c_char,
    size: usize,
}

/// The union of `pmix_value_t`: the members Atoll reads or writes, and its size (its
/// largest member, `pmix_envar_t`, is two pointers and a `char`: 24 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
union ValueData {
    flag: bool,
    uint32: u32,
    bo: ByteObject,
    _envar: [u64; 3],
}

/// `pmix_value_t`.
#[repr(C)]
struct Value {
    kind: u16,
    data: ValueData,
}

/// `pmix_info_t`.
#[repr(C)]
struct Info {
    key: [c_char; KEY_LEN],
    flags: u32,
    value: Value,
}

type InitFn = unsafe extern "C" fn(*mut Proc, *mut Info, usize) -> c_int;
type FinalizeFn = unsafe extern "C" fn(*const Info, usize) -> c_int;
type PutFn = unsafe extern "C" fn(u8, *const c_char, *mut Value) -> c_int;
type CommitFn = unsafe extern "C" fn() -> c_int;
type FenceFn = unsafe extern "C" fn(*const Proc, usize, *const Info, usize) -> c_int;
type GetFn =
    unsafe extern "C" fn(*const Proc, *const c_char, *const Info, usize, *mut *mut Value) -> c_int;
type ValueDestructFn = unsafe extern "C" fn(*mut Value);
type ErrorStringFn = unsafe extern "C" fn(c_int) -> *const c_char;

/// The PMIx client functions of the loaded library.
///
/// Invariant: every pointer was resolved by `dlsym` from `libpmix.so.2` under the name of the
/// function whose C prototype its type transcribes, and the library is never unloaded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Api {
    init: InitFn,
    finalize: FinalizeFn,
    put: PutFn,
    commit: CommitFn,
    fence: FenceFn,
    get: GetFn,
    value_destruct: ValueDestructFn,
    error_string: ErrorStringFn,
}

/// Loads `libpmix.so.2` once per process (it stays loaded: PMIx runs threads of its own).
pub(crate) fn api() -> Result<Api> {
    static API: OnceLock<std::result::Result<Api, String>> = OnceLock::new();
    API.get_or_init(load).clone().map_err(|why| {
        Error::bootstrap(format!(
            "PMIx variables are set (PMIX_RANK, PMIX_NAMESPACE), but the PMIx library cannot \
             be loaded: {why}; install the PMIx client library (Debian: libpmix2, or \
             libpmix-dev), or unset ATOLL_BOOTSTRAP=pmix"
        ))
    })
}

fn load() -> std::result::Result<Api, String> {
    let name = c"libpmix.so.2";
    // SAFETY: `name` is a NUL-terminated string; dlopen has no other precondition. Loading
    // runs the library's initializers, which PMIx keeps free of side effects on the process
    // beyond its own state.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        return Err(dl_error());
    }
    let symbol = |name: &CStr| -> std::result::Result<*mut c_void, String> {
        // SAFETY: `handle` is a live handle from dlopen (never closed), `name` is
        // NUL-terminated.
        let ptr = unsafe { libc::dlsym(handle, name.as_ptr()) };
        if ptr.is_null() {
            Err(format!("libpmix.so.2 has no {}", name.to_string_lossy()))
        } else {
            Ok(ptr)
        }
    };
    // SAFETY: for each transmute, the symbol is the PMIx function of that name, whose C
    // prototype (pmix.h, PMIx 2 to 5) is the function-pointer type it becomes; a data
    // pointer and a function pointer have the same size and representation on Linux.
    unsafe {
        Ok(Api {
            init: std::mem::transmute::<*mut c_void, InitFn>(symbol(c"PMIx_Init")?),
            finalize: std::mem::transmute::<*mut c_void, FinalizeFn>(symbol(c"PMIx_Finalize")?),
            put: std::mem::transmute::<*mut c_void, PutFn>(symbol(c"PMIx_Put")?),
            commit: std::mem::transmute::<*mut c_void, CommitFn>(symbol(c"PMIx_Commit")?),
            fence: std::mem::transmute::<*mut c_void, FenceFn>(symbol(c"PMIx_Fence")?),
            get: std::mem::transmute::<*mut c_void, GetFn>(symbol(c"PMIx_Get")?),
            value_destruct: std::mem::transmute::<*mut c_void, ValueDestructFn>(symbol(
                c"PMIx_Value_destruct",
            )?),
            error_string: std::mem::transmute::<*mut c_void, ErrorStringFn>(symbol(
                c"PMIx_Error_string",
            )?),
        })
    }
}

fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string valid until the next dl call
    // of this thread, and it is copied at once.
    let msg = unsafe { libc::dlerror() };
    if msg.is_null() {
        "dlopen failed".to_owned()
    } else {
        // SAFETY: non-null, NUL-terminated (above).
        unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Proc {
    /// A process of namespace `nspace` (the bytes of a `Proc` from `init`).
    pub(crate) fn with_rank(&self, rank: u32) -> Proc {
        Proc { rank, ..*self }
    }

    /// The namespace as text; `None` when it is not NUL-terminated UTF-8.
    pub(crate) fn nspace(&self) -> Option<String> {
        let bytes: Vec<u8> = self.nspace.iter().map(|&c| c as u8).collect();
        CStr::from_bytes_until_nul(&bytes)
            .ok()
            .and_then(|s| s.to_str().ok())
            .map(str::to_owned)
    }
}

impl Api {
    /// `PMIx_Error_string`.
    pub(crate) fn error_string(&self, status: c_int) -> String {
        // SAFETY: PMIx_Error_string takes any status and returns a static NUL-terminated
        // string (or NULL, checked).
        let s = unsafe { (self.error_string)(status) };
        if s.is_null() {
            format!("PMIx status {status}")
        } else {
            // SAFETY: non-null, NUL-terminated, static.
            unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
        }
    }

    fn check(&self, what: &str, status: c_int) -> Result<()> {
        if status == SUCCESS {
            Ok(())
        } else {
            Err(Error::bootstrap(format!(
                "{what} failed: {} ({status})",
                self.error_string(status)
            )))
        }
    }

    /// `PMIx_Init` with no attributes: this process's namespace and rank.
    pub(crate) fn init(&self) -> Result<Proc> {
        let mut me = Proc {
            nspace: [0; NSPACE_LEN],
            rank: 0,
        };
        // SAFETY: `me` is a writable pmix_proc_t; no info array is passed (NULL, 0).
        let status = unsafe { (self.init)(&mut me, std::ptr::null_mut(), 0) };
        self.check("PMIx_Init", status)?;
        Ok(me)
    }

    /// `PMIx_Finalize` with no attributes.
    pub(crate) fn finalize(&self) -> Result<()> {
        // SAFETY: no info array (NULL, 0); called once, after `init` succeeded.
        let status = unsafe { (self.finalize)(std::ptr::null(), 0) };
        self.check("PMIx_Finalize", status)
    }

    /// `PMIx_Put(PMIX_GLOBAL, key, byte object)`; PMIx copies the bytes.
    pub(crate) fn put_bytes(&self, key: &CStr, bytes: &[u8]) -> Result<()> {
        let mut value = Value {
            kind: TYPE_BYTE_OBJECT,
            data: ValueData {
                bo: ByteObject {
                    bytes: bytes.as_ptr().cast_mut().cast(),
                    size: bytes.len(),
                },
            },
        };
        // SAFETY: `key` is NUL-terminated and shorter than PMIX_MAX_KEYLEN (the callers' keys
        // are short); `value` is a valid byte object whose bytes stay alive for the call,
        // and PMIx_Put copies them (it does not write through the pointer).
        let status = unsafe { (self.put)(SCOPE_GLOBAL, key.as_ptr(), &mut value) };
        self.check("PMIx_Put", status)
    }

    /// `PMIx_Commit`.
    pub(crate) fn commit(&self) -> Result<()> {
        // SAFETY: no arguments; after init.
        let status = unsafe { (self.commit)() };
        self.check("PMIx_Commit", status)
    }

    /// `PMIx_Fence` over every process of `job` (a wildcard proc), always with
    /// `PMIX_COLLECT_DATA`.
    ///
    /// A fence without data collection is not a barrier under every server: Slurm's `mpi/pmix`
    /// (22.05, with PMIx 4.2) completes it as soon as the places of the caller's node have
    /// entered, without waiting for the other nodes. Collecting the data makes every server
    /// wait for every place's contribution, so the fence synchronizes the whole job.
    pub(crate) fn fence(&self, job: &Proc) -> Result<()> {
        let mut info = Info {
            key: [0; KEY_LEN],
            flags: 0,
            value: Value {
                kind: TYPE_BOOL,
                data: ValueData { flag: true },
            },
        };
        for (dst, &src) in info.key.iter_mut().zip(b"pmix.collect") {
            *dst = src as c_char;
        }
        // SAFETY: `job` points to one valid pmix_proc_t; `info` is one valid pmix_info_t
        // (NUL-terminated key, a bool value); both outlive the call.
        let status = unsafe { (self.fence)(job, 1, &info, 1) };
        self.check("PMIx_Fence", status)
    }

    /// `PMIx_Get(proc, key)` of a `uint32` value.
    pub(crate) fn get_u32(&self, proc: &Proc, key: &CStr) -> Result<u32> {
        self.get(proc, key, |value| {
            // The union member is read only once `kind` says which it is.
            if value.kind == TYPE_UINT32 {
                // SAFETY: the kind says the union holds a uint32, which PMIx initialized.
                Some(unsafe { value.data.uint32 })
            } else {
                None
            }
        })
    }

    /// `PMIx_Get(proc, key)` of a byte object, copied out.
    pub(crate) fn get_bytes(&self, proc: &Proc, key: &CStr, max: usize) -> Result<Vec<u8>> {
        self.get(proc, key, |value| {
            if value.kind != TYPE_BYTE_OBJECT {
                return None;
            }
            // SAFETY: the kind says the union holds a byte object.
            let bo = unsafe { value.data.bo };
            if bo.size > max || (bo.bytes.is_null() && bo.size != 0) {
                return None;
            }
            if bo.size == 0 {
                return Some(Vec::new());
            }
            // SAFETY: PMIx returned a byte object of `size` bytes at `bytes` (non-null),
            // owned by `value`, which stays alive until after this copy.
            Some(unsafe { std::slice::from_raw_parts(bo.bytes.cast::<u8>(), bo.size) }.to_vec())
        })
    }

    fn get<T>(&self, proc: &Proc, key: &CStr, read: impl FnOnce(&Value) -> Option<T>) -> Result<T> {
        let mut value: *mut Value = std::ptr::null_mut();
        // SAFETY: `proc` is a valid pmix_proc_t, `key` NUL-terminated, no info (NULL, 0),
        // `value` a writable pointer that PMIx sets to a value it allocates.
        let status = unsafe { (self.get)(proc, key.as_ptr(), std::ptr::null(), 0, &mut value) };
        let key_text = key.to_string_lossy();
        self.check(
            &format!("PMIx_Get({key_text}) of rank {}", proc.rank),
            status,
        )?;
        if value.is_null() {
            return Err(Error::bootstrap(format!(
                "PMIx_Get({key_text}) returned no value"
            )));
        }
        // SAFETY: PMIx_Get succeeded and set `value` to a valid, initialized pmix_value_t.
        let read = read(unsafe { &*value });
        // SAFETY: the value was allocated by PMIx with malloc (PMIX_VALUE_RELEASE is
        // PMIx_Value_destruct then free) and nothing refers to it any more.
        unsafe {
            (self.value_destruct)(value);
            libc::free(value.cast());
        }
        read.ok_or_else(|| {
            Error::bootstrap(format!(
                "PMIx_Get({key_text}) of rank {} returned a value of another type or size",
                proc.rank
            ))
        })
    }
}

/// A key as PMIx takes it.
pub(crate) fn key(text: &str) -> Result<CString> {
    CString::new(text).map_err(|_| Error::bootstrap(format!("PMIx key {text:?} holds a NUL")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use std::process::Command;

    /// Compiles a C program against the installed PMIx headers and compares its sizes and
    /// offsets with the Rust types. Skipped (with a printed reason) without the headers.
    #[test]
    fn layout_matches_the_headers() {
        let Ok(flags) = Command::new("pkg-config")
            .args(["--cflags", "pmix"])
            .output()
        else {
            println!("skipped: no pkg-config");
            return;
        };
        if !flags.status.success() {
            println!("skipped: pkg-config finds no pmix (install libpmix-dev)");
            return;
        }
        let dir = std::env::temp_dir().join(format!("atoll-pmix-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("layout.c");
        std::fs::write(
            &src,
            r#"#include <stdio.h>
#include <stddef.h>
#include <pmix.h>
int main(void) {
  printf("%zu %zu %zu %zu %zu %zu %zu %zu %zu %d %d %d %d\n",
    sizeof(pmix_proc_t), offsetof(pmix_proc_t, rank),
    sizeof(pmix_value_t), offsetof(pmix_value_t, data),
    sizeof(pmix_info_t), offsetof(pmix_info_t, flags), offsetof(pmix_info_t, value),
    sizeof(pmix_byte_object_t), offsetof(pmix_byte_object_t, size),
    PMIX_BOOL, PMIX_UINT32, PMIX_BYTE_OBJECT, PMIX_GLOBAL);
  return 0;
}
"#,
        )
        .unwrap();
        let exe = dir.join("layout");
        let cflags = String::from_utf8(flags.stdout).unwrap();
        let status = Command::new("cc")
            .arg(&src)
            .arg("-o")
            .arg(&exe)
            .args(cflags.split_whitespace())
            .status()
            .unwrap();
        assert!(status.success(), "compiling the layout probe failed");
        let out = Command::new(&exe).output().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let c: Vec<usize> = String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        let rust = vec![
            size_of::<Proc>(),
            offset_of!(Proc, rank),
            size_of::<Value>(),
            offset_of!(Value, data),
            size_of::<Info>(),
            offset_of!(Info, flags),
            offset_of!(Info, value),
            size_of::<ByteObject>(),
            offset_of!(ByteObject, size),
            usize::from(TYPE_BOOL),
            usize::from(TYPE_UINT32),
            usize::from(TYPE_BYTE_OBJECT),
            usize::from(SCOPE_GLOBAL),
        ];
        assert_eq!(rust, c, "Rust layout vs pmix.h");
    }
}
