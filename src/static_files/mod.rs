//! Static mounts.
