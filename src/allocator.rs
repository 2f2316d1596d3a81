//! The global allocator: mimalloc, asked for plain blocks whenever plain
//! blocks are aligned enough.
//!
//! The `mimalloc` crate's allocator passes every request to
//! `mi_malloc_aligned`, even for byte buffers. mimalloc takes its fast path
//! there only for blocks of up to 1 KiB; a larger one (hyper's 8 KiB read
//! buffer, a task, a boxed connection future) goes through its
//! over-allocating fallback, and may land in the next size class up. Plain
//! `mi_malloc` has no such detour, so ordinary layouts go there, as Rust's
//! `System` allocator sends them to `malloc`.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every mimalloc block has without asking: 16 bytes for
/// blocks of 16 bytes or more, 8 for smaller ones (its `MI_MAX_ALIGN_SIZE`
/// with two-word minimal alignment on 64-bit targets).
const PLAIN_ALIGN: usize = 16;

/// mimalloc as Rust's global allocator (see the module notes for why not
/// the `mimalloc` crate's own).
#[derive(Debug, Clone, Copy, Default)]
pub struct Allocator;

/// Whether a plain block of `size` bytes is aligned enough for `align`. A
/// block smaller than 16 bytes is only 8-aligned, hence the `size` check,
/// which is also `System`'s rule.
fn plain(size: usize, align: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: each method hands mimalloc a layout it accepts and returns its
// block (or null on failure) unchanged; every block, plain or aligned, is
// freed with `mi_free`, which takes both kinds.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl's note.
        unsafe {
            if plain(layout.size(), layout.align()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl's note.
        unsafe {
            if plain(layout.size(), layout.align()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the caller's promise).
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator; mimalloc's realloc moves
        // a block of either kind into one of the kind asked for here.
        unsafe {
            if plain(new_size, layout.align()) {
                mi::mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allocates, fills, grows and frees blocks of many sizes and
    /// alignments, checking each pointer's alignment and that contents
    /// survive a realloc.
    #[test]
    fn blocks_are_aligned_as_asked_and_keep_their_contents() {
        let a = Allocator;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [1, 3, 8, 15, 16, 24, 100, 1000, 1025, 3000, 8192, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: the layouts are valid and non-zero in size; each
                // block is used within its size and freed once.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    std::ptr::write_bytes(p, 0xa5, size);
                    let q = a.realloc(p, layout, size * 3);
                    assert_eq!(q as usize % align, 0, "grown {size} align {align}");
                    assert!((0..size).all(|i| *q.add(i) == 0xa5));
                    // Shrinking may cross from plain to aligned (24 -> 8 at
                    // 16, say).
                    let small = (size / 3).max(1);
                    let grown = Layout::from_size_align(size * 3, align).unwrap();
                    let s = a.realloc(q, grown, small);
                    assert_eq!(s as usize % align, 0, "shrunk {size} align {align}");
                    assert!((0..small).all(|i| *s.add(i) == 0xa5));
                    a.dealloc(s, Layout::from_size_align(small, align).unwrap());
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
