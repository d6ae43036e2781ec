//! Atoll
