//! Calls into the host's C library for host-mode daemons (the only place
//! outside `unikernel/` that makes them).

/// Gives the free memory of the C heap back to the host: glibc's allocator
/// returns a heap's free top on its own, but not free pages below memory
/// still in use (`malloc_trim(0)` does, with `MADV_DONTNEED`). Costs a walk
/// of the heap: call it after a burst was freed, not per request. A no-op
/// where the C library is not glibc. Returns whether memory was released.
pub fn release_free_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointer and only rearranges the
        // allocator's own free lists; it is thread-safe (it takes each
        // arena's lock).
        unsafe { libc::malloc_trim(0) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
