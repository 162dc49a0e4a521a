//! [`CachePadded`]: keeps a value on cache lines of its own.
//!
//! Two workers writing to different fields that happen to share a 64-byte
//! cache line make that line bounce between their cores at every write
//! ("false sharing"): each write costs a cache miss on the other side. x86
//! CPUs also prefetch lines in adjacent pairs, so the padding is 128 bytes,
//! as in crossbeam-utils and tokio.
//!
//! Measured: padding each worker's `Remote` and the runtime's `Shared`
//! (whose reference count every spawn updates) shortens a million spawns
//! (`docs/decisions.md`, "CachePadded").

use std::ops::Deref;

/// A value aligned (and so padded) to 128 bytes.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> Deref for CachePadded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}
