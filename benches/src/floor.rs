//! The floor: what the hardware itself costs between the two places of a run, measured in the
//! same run as the figure it is printed beside.
//!
//! - [`FloorProbe::round_trip_ns`]: a cache-line ping-pong between the two processes over a
//!   shared mapping (the least any message round trip between them can cost). This machine
//!   flips between a ~50 ns and a ~400 ns state over seconds to minutes, so every latency is
//!   printed with a probe taken just before and just after it.
//! - [`memcpy_gbps`]: single-threaded `memcpy` bandwidth, the floor of a shared-memory put.

use std::ffi::CString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use atoll_comm::{Comm, Region};

use crate::stats::median;

const LINE: usize = 64;

/// A cache line shared by places 0 and 1 of the job, in a POSIX shared-memory object named
/// after the job (so the launcher removes it if the run crashes).
///
/// Invariant: `line` points to a live shared mapping of `LINE` bytes, 64-aligned, accessed
/// only atomically, and unmapped in `Drop`.
#[derive(Debug)]
pub struct FloorProbe {
    line: *mut u8,
    here: usize,
    /// The value of the line when no probe runs: both places advance it in step.
    rest: std::cell::Cell<u64>,
}

// SAFETY: the mapping is valid in every thread of the process, and a probe is used by one
// thread at a time (`Cell` keeps it `!Sync`), so it may move to another thread.
unsafe impl Send for FloorProbe {}

impl FloorProbe {
    /// Collective over places 0 and 1 (others just take part in the barriers): maps the shared
    /// line. Needs at least 2 places.
    pub fn open(comm: &Comm) -> Result<FloorProbe, String> {
        let name = FloorProbe::name(comm.job_id());
        let here = comm.here().index();
        if here == 0 {
            FloorProbe::create(&name)?;
        }
        comm.bootstrap_barrier().map_err(|e| e.to_string())?;
        let probe = FloorProbe::attach(&name, here)?;
        comm.bootstrap_barrier().map_err(|e| e.to_string())?;
        if here == 0 {
            FloorProbe::unlink(&name);
        }
        Ok(probe)
    }

    /// The name of the probe's shared-memory object for job `job_id` (under the job's prefix,
    /// so that the launcher removes it if the run crashes).
    pub fn name(job_id: &str) -> String {
        format!("/atoll-{job_id}-floor")
    }

    /// Place 0's first step of opening the probe, for programs that order the two places'
    /// steps themselves instead of by bootstrap barriers ([`FloorProbe::open`] is `create` at
    /// place 0, then `attach` at places 0 and 1, then `unlink` at place 0): creates the shared
    /// line `name`.
    pub fn create(name: &str) -> Result<(), String> {
        let c_name = c_name(name)?;
        // SAFETY: valid NUL-terminated name; plain flags.
        let fd = unsafe {
            libc::shm_open(
                c_name.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
                0o600,
            )
        };
        if fd < 0 {
            return Err(format!(
                "shm_open {name}: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: `fd` is open; sizes the object to one line.
        let rc = unsafe { libc::ftruncate(fd, LINE as libc::off_t) };
        // SAFETY: closes the descriptor opened above, once.
        unsafe { libc::close(fd) };
        if rc != 0 {
            return Err(format!(
                "ftruncate {name}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// Maps the line `name` (made by [`FloorProbe::create`]) as the probe of place `here`.
    pub fn attach(name: &str, here: usize) -> Result<FloorProbe, String> {
        Ok(FloorProbe {
            line: map(&c_name(name)?, name)?,
            here,
            rest: std::cell::Cell::new(0),
        })
    }

    /// Removes the name of the line once both places have attached (their mappings stay).
    pub fn unlink(name: &str) {
        if let Ok(c_name) = c_name(name) {
            // SAFETY: valid NUL-terminated name.
            unsafe { libc::shm_unlink(c_name.as_ptr()) };
        }
    }

    fn word(&self) -> &AtomicU64 {
        // SAFETY: the mapping is live, 64-aligned and only accessed atomically (invariant).
        unsafe { AtomicU64::from_ptr(self.line.cast()) }
    }

    /// Collective over places 0 and 1: `round_trips` ping-pongs of the shared line, in
    /// batches; returns the median round trip in ns at place 0 (0.0 elsewhere). Other places
    /// return at once.
    pub fn round_trip_ns(&self, round_trips: u64) -> f64 {
        const BATCH: u64 = 1000;
        let word = self.word();
        let batches = round_trips.div_ceil(BATCH);
        let mut value = self.rest.get();
        if self.here <= 1 {
            self.rest.set(value + 2 * batches * BATCH);
        }
        match self.here {
            0 => {
                let mut samples = Vec::with_capacity(batches as usize);
                for _ in 0..batches {
                    let start = Instant::now();
                    for _ in 0..BATCH {
                        value += 1;
                        word.store(value, Ordering::Release);
                        value += 1;
                        while word.load(Ordering::Acquire) != value {
                            std::hint::spin_loop();
                        }
                    }
                    samples.push(start.elapsed().as_nanos() as f64 / BATCH as f64);
                }
                median(&mut samples)
            }
            1 => {
                for _ in 0..batches * BATCH {
                    value += 1;
                    while word.load(Ordering::Acquire) != value {
                        std::hint::spin_loop();
                    }
                    value += 1;
                    word.store(value, Ordering::Release);
                }
                0.0
            }
            _ => 0.0,
        }
    }
}

impl Drop for FloorProbe {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping this probe owns (invariant); nothing uses it afterwards.
        unsafe { libc::munmap(self.line.cast(), LINE) };
    }
}

fn c_name(name: &str) -> Result<CString, String> {
    CString::new(name).map_err(|e| e.to_string())
}

fn map(c_name: &CString, name: &str) -> Result<*mut u8, String> {
    // SAFETY: valid NUL-terminated name.
    let fd = unsafe { libc::shm_open(c_name.as_ptr(), libc::O_RDWR, 0o600) };
    if fd < 0 {
        return Err(format!(
            "shm_open {name}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: a fresh shared mapping of one line of an open object; aliases no Rust memory.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            LINE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    // SAFETY: closes the descriptor opened above, once; the mapping stays valid.
    unsafe { libc::close(fd) };
    if ptr == libc::MAP_FAILED {
        return Err(format!("mmap {name}: {}", std::io::Error::last_os_error()));
    }
    Ok(ptr.cast())
}

/// Median single-threaded `memcpy` bandwidth (bytes/s) of copying `data` into `dst` (memory
/// of the same kind a put writes), about `total` bytes per sample.
pub fn memcpy_gbps(dst: &Region, data: &[u8], total: usize, samples: usize) -> f64 {
    let reps = (total / data.len().max(1)).max(1);
    let mut rates: Vec<f64> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..reps {
                if dst.write(0, std::hint::black_box(data)).is_err() {
                    return 0.0;
                }
            }
            (data.len() * reps) as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    median(&mut rates)
}
