//! Client side of the local launcher's bootstrap (to be written).
