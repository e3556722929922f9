//! glibc's malloc tuned to keep freed memory for the next tensor (BENCHMARKS.md, "Native CPU,
//! glibc keeping freed memory").
//!
//! By default glibc serves each allocation over 128 KiB-32 MiB with a fresh `mmap` and gives it
//! back on free, so every step's activations are new pages that the kernel must zero: 27% of a
//! training step at batch 16 on burn flex went to `clear_page_erms`.

/// Serve tensors from the heap and keep what is freed (the peak stays what it was).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() {}
