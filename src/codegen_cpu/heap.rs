//! The heap of generated code: `loopforge_alloc` / `loopforge_free` for buffers too large
//! (or too variable) for the stack, with freed blocks of 64 KiB and up kept for reuse.
//!
//! A kernel allocates its large temporaries (a padded copy of the input, packed panels)
//! at every run; handing each back to the system and mapping it again costs a page fault
//! per 4 KiB page at the next run, which several threads then take in turn. Freed blocks
//! stay in a small cache instead (at most [`CACHE_BLOCKS`] blocks and [`CACHE_BYTES`]
//! bytes, the oldest given back first), and an allocation of the same size takes one
//! back.
//!
//! A block's contents are undefined, as for a stack allocation: the IR never reads an
//! element of an `Allocate` before writing it (the interpreter fills new allocations with
//! NaNs, so a schedule that did would fail its numeric tests). Zeroing a reused block at
//! every run cost ResNet-18 about 40 MB of memory writes per inference (its per-task
//! accumulators). Builds with debug assertions fill each block with `0xff` bytes (a NaN
//! in every float type) to catch such reads in compiled code too.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::sync::Mutex;

/// Alignment of memory from [`loopforge_alloc`].
pub(crate) const HEAP_ALIGN: usize = 64;

/// Blocks at least this large are cached when freed.
const CACHE_MIN: usize = 64 << 10;
/// At most this many cached blocks...
const CACHE_BLOCKS: usize = 32;
/// ...holding at most this many bytes together.
const CACHE_BYTES: usize = 128 << 20;

/// Freed blocks, oldest first: (size, address).
struct BlockCache(Vec<(usize, usize)>);

impl BlockCache {
    /// A cached block of exactly `bytes` bytes, if any.
    fn take(&mut self, bytes: usize) -> Option<*mut u8> {
        let i = self.0.iter().position(|&(n, _)| n == bytes)?;
        Some(self.0.remove(i).1 as *mut u8)
    }

    /// Keep `p` (`bytes` long); returns the blocks to give back to the system (`p`
    /// itself when it does not fit, else the oldest ones over the limits).
    fn put(&mut self, p: *mut u8, bytes: usize) -> Vec<(usize, usize)> {
        if !(CACHE_MIN..=CACHE_BYTES).contains(&bytes) {
            return vec![(bytes, p as usize)];
        }
        self.0.push((bytes, p as usize));
        let mut evicted = vec![];
        while self.0.len() > CACHE_BLOCKS
            || self.0.iter().map(|&(n, _)| n).sum::<usize>() > CACHE_BYTES
        {
            evicted.push(self.0.remove(0));
        }
        evicted
    }
}

static CACHE: Mutex<BlockCache> = Mutex::new(BlockCache(Vec::new()));

fn layout(bytes: usize) -> Layout {
    Layout::from_size_align(bytes, HEAP_ALIGN).expect("allocation too large")
}

/// Allocate `bytes` bytes aligned to [`HEAP_ALIGN`], contents undefined (a dangling
/// aligned pointer for 0): a cached block of that size when there is one.
pub(crate) extern "C" fn loopforge_alloc(bytes: i64) -> *mut u8 {
    if bytes <= 0 {
        return HEAP_ALIGN as *mut u8;
    }
    let bytes = bytes as usize;
    let hit = if bytes >= CACHE_MIN {
        CACHE.lock().unwrap_or_else(|e| e.into_inner()).take(bytes)
    } else {
        None
    };
    let p = hit.unwrap_or_else(|| {
        let l = layout(bytes);
        // Safety: non-zero size, power-of-two alignment.
        let p = unsafe { alloc(l) };
        if p.is_null() {
            handle_alloc_error(l);
        }
        p
    });
    if cfg!(debug_assertions) {
        // Safety: a block of `bytes` bytes that nothing else holds.
        unsafe { std::ptr::write_bytes(p, 0xff, bytes) };
    }
    p
}

/// Free memory from [`loopforge_alloc`] of the same size (kept in the cache when it is
/// large enough; the oldest cached blocks over the limits are given back instead).
///
/// # Safety
/// `p` must come from `loopforge_alloc(bytes)` and not have been freed.
pub(crate) unsafe extern "C" fn loopforge_free(p: *mut u8, bytes: i64) {
    if bytes <= 0 {
        return;
    }
    let bytes = bytes as usize;
    if bytes < CACHE_MIN {
        // Safety: `p` came from `loopforge_alloc(bytes)` (the caller's contract).
        unsafe { dealloc(p, layout(bytes)) };
        return;
    }
    let back = CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .put(p, bytes);
    for (n, q) in back {
        // Safety: every block came from `loopforge_alloc(n)` (the caller's contract).
        unsafe { dealloc(q as *mut u8, layout(n)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_are_reused_and_poisoned_in_debug_builds() {
        // Through the process-wide cache: a freed block of a size no other test uses
        // comes back, filled with 0xff where debug assertions are on.
        let n = (CACHE_MIN + 4096 * 7 + 64) as i64;
        let p = loopforge_alloc(n);
        assert_eq!(p as usize % HEAP_ALIGN, 0);
        // Safety: `n` bytes from loopforge_alloc.
        unsafe {
            std::ptr::write_bytes(p, 0xab, n as usize);
            loopforge_free(p, n);
        }
        let q = loopforge_alloc(n);
        assert_eq!(q, p, "the freed block is reused");
        // Safety: as above.
        let s = unsafe { std::slice::from_raw_parts(q, n as usize) };
        let fill = if cfg!(debug_assertions) { 0xff } else { 0xab };
        assert!(s.iter().all(|&b| b == fill), "a reused block is {fill:#x}");
        unsafe { loopforge_free(q, n) };
        // Small blocks are not cached (nothing to check but that they round-trip).
        let r = loopforge_alloc(100);
        unsafe { loopforge_free(r, 100) };
        assert_eq!(loopforge_alloc(0) as usize, HEAP_ALIGN);
    }

    #[test]
    fn the_cache_keeps_recent_blocks_within_its_limits() {
        // A cache of its own (the process-wide one is shared with concurrent tests);
        // addresses are only compared, never dereferenced.
        let mut c = BlockCache(vec![]);
        let block = |k: usize| (k * HEAP_ALIGN) as *mut u8;
        assert_eq!(c.put(block(1), CACHE_MIN), vec![]);
        assert_eq!(
            c.take(CACHE_MIN),
            Some(block(1)),
            "the freed block comes back"
        );
        assert_eq!(c.take(CACHE_MIN), None);
        // Too small or too large: given straight back.
        assert_eq!(c.put(block(2), 100), vec![(100, block(2) as usize)]);
        assert_eq!(
            c.put(block(3), CACHE_BYTES + 1),
            vec![(CACHE_BYTES + 1, block(3) as usize)]
        );
        // Over the block count: the oldest goes.
        for k in 0..CACHE_BLOCKS {
            assert_eq!(c.put(block(10 + k), CACHE_MIN + k), vec![]);
        }
        assert_eq!(
            c.put(block(99), CACHE_MIN + 99),
            vec![(CACHE_MIN, block(10) as usize)]
        );
        assert_eq!(c.take(CACHE_MIN + 99), Some(block(99)));
    }
}
