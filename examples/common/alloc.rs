//! The examples' allocator: mimalloc, told to keep freed memory mapped.
//!
//! Training allocates and frees large tensors every step. By default mimalloc returns freed
//! pages to the OS after 10 ms (`purge_delay`), and the next step faults them back in and the
//! kernel zeroes them: ~18% of a training step in a profile. With purging off, freed pages are
//! reused directly; the peak memory does not grow, since the same sizes are allocated each step.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    fn mi_option_get(option: std::os::raw::c_int) -> std::os::raw::c_long;
    fn mi_option_set(option: std::os::raw::c_int, value: std::os::raw::c_long);
}

/// `mi_option_purge_delay` in the `mi_option_t` of mimalloc v2 and v3 (libmimalloc-sys 0.1.49).
const PURGE_DELAY: std::os::raw::c_int = 15;
/// Its defaults (v2: 10 ms, v3: 1000 ms), used to check that the index is right before
/// changing anything.
const PURGE_DELAY_DEFAULTS: [std::os::raw::c_long; 2] = [10, 1000];

/// Turns purging off unless the user set `MIMALLOC_PURGE_DELAY` themselves.
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: mimalloc's option API is thread-safe and takes plain integers; the option index
    // is verified by its default value first, so a different mimalloc layout is left alone.
    unsafe {
        if PURGE_DELAY_DEFAULTS.contains(&mi_option_get(PURGE_DELAY)) {
            mi_option_set(PURGE_DELAY, -1);
        }
    }
}
