//! Medians of repeated samples.

use std::time::{Duration, Instant};

/// The median of `samples` (which it sorts); `NaN` when empty.
pub fn median(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2.0
    }
}

/// Runs `batch` `samples` times; each run performs `per_batch` operations. Returns the median
/// time per operation in nanoseconds.
pub fn median_ns_per_op(samples: usize, per_batch: u64, mut batch: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            batch();
            start.elapsed().as_nanos() as f64 / per_batch as f64
        })
        .collect();
    median(&mut times)
}

/// Seconds in a duration, as `f64`.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
