//! The local launcher (to be written).
