//! Shared pieces of Atoll's benchmarks: the floor probes every latency is printed beside,
//! robust statistics, the table printer, and peers built with Open MPI.

pub mod floor;
pub mod mpi_peer;
pub mod stats;
pub mod table;
