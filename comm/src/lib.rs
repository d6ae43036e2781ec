//! Atoll's transport layer.

pub mod bootstrap;
pub mod config;
mod error;
pub(crate) mod launch;
mod place;
pub(crate) mod shm;

pub use error::{Error, Result};
pub use place::{ArchivedPlace, Place};
