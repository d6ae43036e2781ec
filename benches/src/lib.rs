//! Shared pieces of Atoll's benchmarks: the floor probes every latency is printed beside,
//! robust statistics, and the table printer.

pub mod floor;
pub mod stats;
pub mod table;
