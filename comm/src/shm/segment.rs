//! POSIX shared-memory segments: create, map, unlink. The only file of the provider that
//! calls `shm_open` and `mmap`.

use std::ffi::CString;
use std::io;
use std::ptr::NonNull;

use crate::{Error, Result};

/// A shared mapping of one place's segment.
///
/// Invariant: `base` points to a live `MAP_SHARED` mapping of exactly `len` bytes, readable
/// and writable, that stays mapped until this value is dropped. Other processes of the job
/// map the same memory; every access to it goes through atomics or through byte copies whose
/// exclusivity the ring and heap protocols establish.
#[derive(Debug)]
pub(crate) struct Segment {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory shared between processes; `Segment` hands out only raw
// pointers, and every user of those pointers synchronises through atomics in the mapping.
unsafe impl Send for Segment {}
// SAFETY: as for `Send`: `&Segment` gives access to raw pointers only.
unsafe impl Sync for Segment {}

impl Segment {
    /// Creates the segment `name` (which must not exist yet) with `len` zeroed bytes, owner
    /// read/write only, and maps it.
    pub(crate) fn create(name: &str, len: usize) -> Result<Segment> {
        let fd = open(name, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR)?;
        // SAFETY: `fd` is an open descriptor owned by this function; ftruncate has no memory
        // effects on this process.
        let rc = unsafe { libc::ftruncate(fd, len as libc::off_t) };
        if rc != 0 {
            let source = io::Error::last_os_error();
            close(fd);
            unlink(name);
            return Err(Error::SharedMemory {
                op: "ftruncate",
                name: name.to_owned(),
                source,
            });
        }
        let mapped = map(fd, name, len);
        close(fd);
        if mapped.is_err() {
            unlink(name);
        }
        mapped
    }

    /// Opens and maps the existing segment `name`, which must be exactly `len` bytes long.
    pub(crate) fn open(name: &str, len: usize) -> Result<Segment> {
        let fd = open(name, libc::O_RDWR)?;
        // SAFETY: `stat` is plain data for which all-zero bytes are a valid value.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is open and `stat` is a valid, writable `struct stat`.
        let rc = unsafe { libc::fstat(fd, &mut stat) };
        if rc != 0 || stat.st_size as u64 != len as u64 {
            let source = if rc != 0 {
                io::Error::last_os_error()
            } else {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("segment has {} bytes, expected {len}", stat.st_size),
                )
            };
            close(fd);
            return Err(Error::SharedMemory {
                op: "fstat",
                name: name.to_owned(),
                source,
            });
        }
        let mapped = map(fd, name, len);
        close(fd);
        mapped
    }

    /// The first byte of the mapping.
    pub(crate) fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// The mapping's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` describe a mapping this value owns (type invariant); after this
        // nothing dereferences `base` (the value is gone).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// Removes the name `name` from /dev/shm; mappings stay valid. Errors are ignored: the name
/// may already be gone (another place, or the launcher, removed it).
pub(crate) fn unlink(name: &str) {
    if let Ok(c_name) = CString::new(name) {
        // SAFETY: `c_name` is a valid NUL-terminated string for the duration of the call.
        unsafe {
            libc::shm_unlink(c_name.as_ptr());
        }
    }
}

fn open(name: &str, flags: libc::c_int) -> Result<libc::c_int> {
    let c_name = CString::new(name).map_err(|_| Error::SharedMemory {
        op: "shm_open",
        name: name.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"),
    })?;
    // SAFETY: `c_name` is a valid NUL-terminated string; the mode is a plain integer.
    let fd = unsafe { libc::shm_open(c_name.as_ptr(), flags, 0o600 as libc::mode_t) };
    if fd < 0 {
        return Err(Error::SharedMemory {
            op: "shm_open",
            name: name.to_owned(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(fd)
}

fn close(fd: libc::c_int) {
    // SAFETY: `fd` is an open descriptor owned by the caller, closed exactly once here.
    unsafe {
        libc::close(fd);
    }
}

fn map(fd: libc::c_int, name: &str, len: usize) -> Result<Segment> {
    // SAFETY: a fresh shared mapping of an open descriptor at an address the kernel picks; it
    // aliases no Rust object. MAP_NORESERVE: pages are only committed when touched.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_NORESERVE,
            fd,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(Error::SharedMemory {
            op: "mmap",
            name: name.to_owned(),
            source: io::Error::last_os_error(),
        });
    }
    let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| Error::SharedMemory {
        op: "mmap",
        name: name.to_owned(),
        source: io::Error::other("mmap returned a null mapping"),
    })?;
    Ok(Segment { base, len })
}
