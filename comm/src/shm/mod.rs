//! The built-in shared-memory provider.

pub(crate) mod segment_names;
