//! The allocator behind every sandbox: Rust's, with the run's memory limit enforced here rather
//! than by QuickJS, so the runner knows for certain that the limit was hit. A script can catch
//! the out-of-memory error (it sees `null`); the run is failed anyway.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rquickjs::allocator::{Allocator, RustAllocator};

pub struct LimitedAllocator {
    limit: usize,
    used: usize,
    exceeded: Arc<AtomicBool>,
}

impl LimitedAllocator {
    /// The allocator, and a flag that turns true once an allocation was refused.
    pub fn new(limit: usize) -> (Self, Arc<AtomicBool>) {
        let exceeded = Arc::new(AtomicBool::new(false));
        (
            Self {
                limit,
                used: 0,
                exceeded: exceeded.clone(),
            },
            exceeded,
        )
    }

    fn admit(&mut self, size: usize) -> bool {
        if self.used.saturating_add(size) > self.limit {
            self.exceeded.store(true, Ordering::Release);
            false
        } else {
            true
        }
    }
}

// SAFETY: every pointer handed out comes from RustAllocator and goes back to it; the byte count
// only decides whether to ask it at all.
unsafe impl Allocator for LimitedAllocator {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        if !self.admit(size) {
            return std::ptr::null_mut();
        }
        let ptr = RustAllocator.alloc(size);
        if !ptr.is_null() {
            self.used += unsafe { RustAllocator::usable_size(ptr) };
        }
        ptr
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        if !self.admit(count.saturating_mul(size)) {
            return std::ptr::null_mut();
        }
        let ptr = RustAllocator.calloc(count, size);
        if !ptr.is_null() {
            self.used += unsafe { RustAllocator::usable_size(ptr) };
        }
        ptr
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        self.used -= unsafe { RustAllocator::usable_size(ptr) };
        unsafe { RustAllocator.dealloc(ptr) }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        if ptr.is_null() {
            return self.alloc(new_size);
        }
        let old = unsafe { RustAllocator::usable_size(ptr) };
        if new_size > old && !self.admit(new_size - old) {
            return std::ptr::null_mut();
        }
        let res = unsafe { RustAllocator.realloc(ptr, new_size) };
        if !res.is_null() {
            self.used = self.used - old + unsafe { RustAllocator::usable_size(res) };
        }
        res
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        unsafe { RustAllocator::usable_size(ptr) }
    }
}
