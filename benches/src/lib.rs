//! Shared pieces of Atoll's benchmarks: the floor probes every latency is printed beside (and
//! their driver for runtime benchmarks), a run's set-up (full or smoke sizes, the measurements
//! asked for, the host's load), robust statistics, the table printer, and Open MPI as a peer
//! measured in the same run.

pub mod comm_micro;
pub mod floor;
pub mod mpi_peer;
pub mod probe;
pub mod setup;
pub mod stats;
pub mod table;
pub mod transport_tools;
