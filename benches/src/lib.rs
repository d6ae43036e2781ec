//! Shared pieces of Atoll's benchmarks: the floor probes every latency is printed beside (and
//! their driver for runtime benchmarks), robust statistics, the table printer, and Open MPI as
//! a peer measured in the same run.

pub mod comm_micro;
pub mod floor;
pub mod mpi_peer;
pub mod probe;
pub mod stats;
pub mod table;
pub mod transport_tools;
