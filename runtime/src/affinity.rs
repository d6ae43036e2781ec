//! Where a place's workers run: the cores this process may use, split between the places of
//! the node by local rank (never all pinned to the same core), one worker per core, and the
//! NUMA node of each core.
//!
//! With the cargo feature `hwloc`, the topology comes from hwloc (through `hwlocality`, the
//! maintained, sound binding; `hwloc2` has been unmaintained since 2021): one processing unit
//! per physical core, NUMA nodes as hwloc sees them, binding with `hwloc_set_cpubind`. Without
//! it, the cores are the process's affinity mask, the NUMA nodes come from `/sys`, and binding
//! is `sched_setaffinity`.

use std::collections::BTreeMap;
use std::io;

/// The CPUs this process may run on (its affinity mask), in order.
fn sys_allowed_cpus() -> Vec<usize> {
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
fn sys_pin_current_thread(cpu: usize) -> io::Result<()> {
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
fn sys_numa_nodes() -> BTreeMap<usize, usize> {
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

/// The CPUs workers may be pinned to, in order: one per core with hwloc, else every CPU of
/// the process's affinity mask.
pub(crate) fn allowed_cpus() -> Vec<usize> {
    #[cfg(feature = "hwloc")]
    if let Some(cores) = hwloc::cores() {
        return cores;
    }
    sys_allowed_cpus()
}

/// Pins the calling thread to `cpu`.
pub(crate) fn pin_current_thread(cpu: usize) -> io::Result<()> {
    #[cfg(feature = "hwloc")]
    if let Some(result) = hwloc::pin(cpu) {
        return result;
    }
    sys_pin_current_thread(cpu)
}

/// The NUMA node of every CPU (empty when unknown).
pub(crate) fn numa_nodes() -> BTreeMap<usize, usize> {
    #[cfg(feature = "hwloc")]
    if let Some(nodes) = hwloc::numa_nodes() {
        return nodes;
    }
    sys_numa_nodes()
}

/// The hwloc backend: `None` from any function means hwloc could not load the topology, and
/// the caller falls back to `/sys` and `sched_setaffinity`.
#[cfg(feature = "hwloc")]
mod hwloc {
    use std::collections::BTreeMap;
    use std::io;
    use std::sync::OnceLock;

    use hwlocality::cpu::binding::CpuBindingFlags;
    use hwlocality::cpu::cpuset::CpuSet;
    use hwlocality::object::types::ObjectType;
    use hwlocality::Topology;

    fn topology() -> Option<&'static Topology> {
        static TOPOLOGY: OnceLock<Option<Topology>> = OnceLock::new();
        TOPOLOGY
            .get_or_init(|| match Topology::new() {
                Ok(topology) => Some(topology),
                Err(error) => {
                    tracing::warn!(%error, "hwloc could not load the topology; using /sys");
                    None
                }
            })
            .as_ref()
    }

    /// The first processing unit of every core the process may use.
    pub(super) fn cores() -> Option<Vec<usize>> {
        let topology = topology()?;
        let allowed = topology.allowed_cpuset();
        let cores: Vec<usize> = topology
            .objects_with_type(ObjectType::Core)
            .filter_map(|core| core.cpuset())
            .filter_map(|set| (set & &*allowed).first_set())
            .map(usize::from)
            .collect();
        (!cores.is_empty()).then_some(cores)
    }

    pub(super) fn pin(cpu: usize) -> Option<io::Result<()>> {
        let topology = topology()?;
        let mut set = CpuSet::new();
        set.set(cpu);
        Some(
            topology
                .bind_cpu(&set, CpuBindingFlags::THREAD)
                .map_err(|error| io::Error::other(error.to_string())),
        )
    }

    pub(super) fn numa_nodes() -> Option<BTreeMap<usize, usize>> {
        let topology = topology()?;
        let mut nodes = BTreeMap::new();
        for node in topology.objects_with_type(ObjectType::NUMANode) {
            if let Some(set) = node.cpuset() {
                for cpu in set.iter_set() {
                    nodes.insert(usize::from(cpu), node.logical_index());
                }
            }
        }
        Some(nodes)
    }
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
