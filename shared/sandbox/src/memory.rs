//! A run's memory: what its QuickJS heap allocates and what the host holds for it (a provider
//! answer being read, JSON on its way into or out of the sandbox), under one limit. The heap's
//! allocator is Rust's, with the limit enforced here rather than by QuickJS, so the runner
//! knows for certain that the limit was hit. A script can catch the out-of-memory error (it
//! sees `null`); the run is failed anyway. A host buffer that would pass the limit is refused
//! before it is allocated, as a script error the script may handle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rquickjs::allocator::{Allocator, RustAllocator};

/// The bytes one run holds, heap and host buffers together.
pub struct Memory {
    limit: usize,
    used: AtomicUsize,
    /// True once the heap's allocator refused an allocation.
    exceeded: AtomicBool,
}

impl Memory {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
            exceeded: AtomicBool::new(false),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now, heap and host buffers.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether the heap was refused an allocation.
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Acquire)
    }

    /// Takes `bytes` if they fit under the limit.
    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Room for a host buffer of `bytes`, held until the reservation is dropped; `None` when
    /// it does not fit.
    pub fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        let mut reservation = Reservation {
            memory: self.clone(),
            bytes: 0,
        };
        reservation.grow(bytes).then_some(reservation)
    }
}

/// Host memory held for a run; given back when dropped.
pub struct Reservation {
    memory: Arc<Memory>,
    bytes: usize,
}

impl Reservation {
    /// Takes `bytes` more; false (and nothing taken) when they do not fit.
    pub fn grow(&mut self, bytes: usize) -> bool {
        let fits = self.memory.take(bytes);
        if fits {
            self.bytes += bytes;
        }
        fits
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.memory.give_back(self.bytes);
    }
}

/// The allocator behind a run's QuickJS heap, counting into the run's [`Memory`].
pub struct LimitedAllocator {
    memory: Arc<Memory>,
}

impl LimitedAllocator {
    pub fn new(memory: Arc<Memory>) -> Self {
        Self { memory }
    }

    fn admit(&self, size: usize) -> bool {
        let fits = self
            .memory
            .used()
            .checked_add(size)
            .is_some_and(|total| total <= self.memory.limit);
        if !fits {
            self.memory.exceeded.store(true, Ordering::Release);
        }
        fits
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
            self.memory
                .used
                .fetch_add(unsafe { RustAllocator::usable_size(ptr) }, Ordering::AcqRel);
        }
        ptr
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        if !self.admit(count.saturating_mul(size)) {
            return std::ptr::null_mut();
        }
        let ptr = RustAllocator.calloc(count, size);
        if !ptr.is_null() {
            self.memory
                .used
                .fetch_add(unsafe { RustAllocator::usable_size(ptr) }, Ordering::AcqRel);
        }
        ptr
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        self.memory
            .give_back(unsafe { RustAllocator::usable_size(ptr) });
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
            let new = unsafe { RustAllocator::usable_size(res) };
            if new >= old {
                self.memory.used.fetch_add(new - old, Ordering::AcqRel);
            } else {
                self.memory.give_back(old - new);
            }
        }
        res
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        unsafe { RustAllocator::usable_size(ptr) }
    }
}
