//! Where a place's workers run: the cores this process may use, split between the places of
//! the node by local rank (never all pinned to the same core), one worker per core, and the
//! NUMA node of each core, read from `/sys` (the `hwloc` feature, which reads the same through
//! hwloc on machines where `/sys` does not tell the whole story, is a later addition).

use std::collections::BTreeMap;
use std::io;

/// The CPUs this process may run on (its affinity mask), in order.
pub(crate) fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable `cpu_set_t` of the size passed; pid 0 is this thread.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return (0..std::thread::available_parallelism().map_or(1, usize::from)).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu < CPU_SETSIZE`, the bound `CPU_ISSET` requires.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Pins the calling thread to `cpu`.
pub(crate) fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: as in `allowed_cpus`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` comes from `allowed_cpus`, hence below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed; pid 0 is this thread.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The NUMA node of every CPU, from `/sys/devices/system/node/node*/cpulist` (empty when the
/// kernel does not say: then every CPU counts as one node).
pub(crate) fn numa_nodes() -> BTreeMap<usize, usize> {
    let mut nodes = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/sys/devices/system/node") else {
        return nodes;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(node) = name
            .to_str()
            .and_then(|n| n.strip_prefix("node"))
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        if let Ok(list) = std::fs::read_to_string(entry.path().join("cpulist")) {
            for cpu in parse_cpu_list(&list) {
                nodes.insert(cpu, node);
            }
        }
    }
    nodes
}

/// Parses a kernel CPU list such as `0-3,8,10-11`.
pub(crate) fn parse_cpu_list(list: &str) -> Vec<usize> {
    list.trim()
        .split(',')
        .filter(|part| !part.is_empty())
        .flat_map(|part| match part.split_once('-') {
            Some((lo, hi)) => match (lo.parse::<usize>(), hi.parse::<usize>()) {
                (Ok(lo), Ok(hi)) if lo <= hi => (lo..=hi).collect(),
                _ => Vec::new(),
            },
            None => part.parse().map(|cpu| vec![cpu]).unwrap_or_default(),
        })
        .collect()
}

/// The core of each of `workers` workers of the place with local rank `local_rank` among
/// `local_size` places on this node, from `cpus`: the place takes its share of the cores,
/// and its workers take them in turn. `None` everywhere when places outnumber cores: then the
/// operating system balances the oversubscribed threads better than any fixed assignment.
pub(crate) fn plan(
    cpus: &[usize],
    local_rank: usize,
    local_size: usize,
    workers: usize,
) -> Vec<Option<usize>> {
    if cpus.is_empty() || local_size == 0 || local_size > cpus.len() {
        return vec![None; workers];
    }
    let start = local_rank * cpus.len() / local_size;
    let end = (local_rank + 1) * cpus.len() / local_size;
    let share = &cpus[start..end.max(start + 1)];
    (0..workers).map(|w| Some(share[w % share.len()])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list(""), Vec::<usize>::new());
        assert_eq!(parse_cpu_list("5-2,x"), Vec::<usize>::new());
    }

    #[test]
    fn places_split_the_cores() {
        let cpus: Vec<usize> = (0..16).collect();
        assert_eq!(
            plan(&cpus, 0, 4, 4),
            vec![Some(0), Some(1), Some(2), Some(3)]
        );
        assert_eq!(plan(&cpus, 3, 4, 2), vec![Some(12), Some(13)]);
        // More workers than the place's cores: they share them in turn.
        assert_eq!(plan(&cpus[..2], 1, 2, 2), vec![Some(1), Some(1)]);
        // Oversubscribed: no pinning.
        assert_eq!(plan(&cpus[..2], 0, 4, 1), vec![None]);
    }
}
