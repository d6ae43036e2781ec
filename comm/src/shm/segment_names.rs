//! Names of the job's POSIX shared-memory segments, shared by the provider (which creates and
//! unlinks them) and the launcher (which removes whatever a crash left behind).

use std::path::Path;

/// Prefix of every segment of job `job_id` (`/atoll-<job>-...`).
pub(crate) fn job_prefix(job_id: &str) -> String {
    format!("atoll-{job_id}-")
}

/// The POSIX name (`/atoll-<job>-<what>`) of one segment of the job.
pub(crate) fn segment_name(job_id: &str, what: &str) -> String {
    format!("/{}{what}", job_prefix(job_id))
}

/// Removes every segment of the job still present in `/dev/shm` (after a crash: a clean run
/// has unlinked them all). Returns how many it removed.
pub(crate) fn remove_job_segments(job_id: &str) -> usize {
    let prefix = job_prefix(job_id);
    let Ok(dir) = std::fs::read_dir(Path::new("/dev/shm")) else {
        return 0;
    };
    dir.filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .filter(|entry| std::fs::remove_file(entry.path()).is_ok())
        .count()
}
