#![doc = include_str!("../README.md")]

pub use atoll_comm as comm;
pub use atoll_comm::{
    Comm, CommBuilder, Error, HandlerId, Message, Place, Region, RemoteKey, Result,
};
