//! The heap of generated code: `loopforge_alloc` / `loopforge_free` for buffers too large
//! (or too variable) for the stack, with freed blocks of 64 KiB and up kept for reuse.
//!
//! A kernel allocates its large temporaries (a padded copy of the input, packed panels)
//! at every run; handing each back to the system and mapping it again costs a page fault
//! per 4 KiB page at the next run, which several threads then take in turn. Freed blocks
//! stay in a small cache instead (at most [`CACHE_BLOCKS`] blocks and [`CACHE_BYTES`]
//! bytes), and an allocation of the same size takes one back. Every allocation is zeroed
//! either way.

use std::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use std::sync::Mutex;

/// Alignment of memory from [`loopforge_alloc`].
pub(crate) const HEAP_ALIGN: usize = 64;

/// Blocks at least this large are cached when freed.
const CACHE_MIN: usize = 64 << 10;
/// At most this many cached blocks...
const CACHE_BLOCKS: usize = 32;
/// ...holding at most this many bytes together.
const CACHE_BYTES: usize = 128 << 20;

/// Freed blocks: (size, address).
static CACHE: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

fn layout(bytes: usize) -> Layout {
    Layout::from_size_align(bytes, HEAP_ALIGN).expect("allocation too large")
}

/// Allocate `bytes` zeroed bytes aligned to [`HEAP_ALIGN`] (a dangling aligned pointer
/// for 0): a cached block of that size when there is one.
pub(crate) extern "C" fn loopforge_alloc(bytes: i64) -> *mut u8 {
    if bytes <= 0 {
        return HEAP_ALIGN as *mut u8;
    }
    let bytes = bytes as usize;
    if bytes >= CACHE_MIN {
        let hit = {
            let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
            c.iter()
                .position(|&(n, _)| n == bytes)
                .map(|i| c.swap_remove(i).1)
        };
        if let Some(p) = hit {
            let p = p as *mut u8;
            // Safety: a block of `bytes` bytes that nothing else holds.
            unsafe { std::ptr::write_bytes(p, 0, bytes) };
            return p;
        }
    }
    let l = layout(bytes);
    // Safety: non-zero size, power-of-two alignment.
    let p = unsafe { alloc_zeroed(l) };
    if p.is_null() {
        handle_alloc_error(l);
    }
    p
}

/// Free memory from [`loopforge_alloc`] of the same size (kept in the cache when it is
/// large and the cache has room).
///
/// # Safety
/// `p` must come from `loopforge_alloc(bytes)` and not have been freed.
pub(crate) unsafe extern "C" fn loopforge_free(p: *mut u8, bytes: i64) {
    if bytes <= 0 {
        return;
    }
    let bytes = bytes as usize;
    if bytes >= CACHE_MIN {
        let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        let held: usize = c.iter().map(|&(n, _)| n).sum();
        if c.len() < CACHE_BLOCKS && held + bytes <= CACHE_BYTES {
            c.push((bytes, p as usize));
            return;
        }
    }
    // Safety: `p` was allocated with this layout (the caller's contract).
    unsafe { dealloc(p, layout(bytes)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_are_reused_and_zeroed() {
        // A size no other test allocates, so the cache entry is this test's.
        let n = (CACHE_MIN + 4096 * 7 + 64) as i64;
        let p = loopforge_alloc(n);
        assert_eq!(p as usize % HEAP_ALIGN, 0);
        // Safety: `n` bytes from loopforge_alloc.
        unsafe {
            std::ptr::write_bytes(p, 0xab, n as usize);
            loopforge_free(p, n);
        }
        let q = loopforge_alloc(n);
        assert_eq!(q, p, "the freed block comes back");
        // Safety: as above.
        let s = unsafe { std::slice::from_raw_parts(q, n as usize) };
        assert!(s.iter().all(|&b| b == 0), "a reused block is zeroed");
        unsafe { loopforge_free(q, n) };
        // Small blocks are not cached (nothing to check but that they round-trip).
        let r = loopforge_alloc(100);
        unsafe { loopforge_free(r, 100) };
        assert_eq!(loopforge_alloc(0) as usize, HEAP_ALIGN);
    }
}
