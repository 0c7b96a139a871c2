//! What one run may use, shared by its sandbox and the host serving it, so one tenant's run
//! cannot starve the other tasks of its runner: memory (the QuickJS heap and the host's
//! buffers under one limit), host calls in flight, log bytes and the size of one provider
//! answer. Each limit, when reached, is a script error naming its setting.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value as Json;

use crate::HostError;
use crate::Limits;
pub use crate::memory::{Memory, Reservation};

const MIB: usize = 1024 * 1024;

/// `16 MiB`, or the bytes when they are not whole MiB.
fn size(bytes: usize) -> String {
    if bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

pub struct RunBudget {
    limits: Limits,
    memory: Arc<Memory>,
    calls: AtomicUsize,
    logged: AtomicUsize,
}

impl RunBudget {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            memory: Memory::new(limits.memory_bytes),
            calls: AtomicUsize::new(0),
            logged: AtomicUsize::new(0),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn memory(&self) -> &Arc<Memory> {
        &self.memory
    }

    /// Room for a host buffer of `bytes` (`what` names it in the error), held until the
    /// reservation is dropped.
    pub fn reserve(&self, what: &str, bytes: usize) -> Result<Reservation, HostError> {
        self.memory
            .reserve(bytes)
            .ok_or_else(|| self.out_of_memory(what))
    }

    /// Grows `reservation` by `bytes`, or the error [`RunBudget::reserve`] gives.
    pub fn grow(
        &self,
        reservation: &mut Reservation,
        what: &str,
        bytes: usize,
    ) -> Result<(), HostError> {
        if reservation.grow(bytes) {
            Ok(())
        } else {
            Err(self.out_of_memory(what))
        }
    }

    fn out_of_memory(&self, what: &str) -> HostError {
        HostError::new(format!(
            "{what} would pass the run's memory limit of {} (LASSO_SCRIPT_MEMORY_MB), which the script's own values and what the host holds for it share; ask for less at a time",
            size(self.limits.memory_bytes)
        ))
    }

    /// Checks that a provider answer of `bytes` so far is within the one-answer limit.
    pub fn check_response(&self, what: &str, bytes: usize) -> Result<(), HostError> {
        if bytes > self.limits.max_response_bytes {
            return Err(HostError::new(format!(
                "{what} is larger than {}, the most one call may read (LASSO_SCRIPT_RESPONSE_MB); use pagination",
                size(self.limits.max_response_bytes)
            )));
        }
        Ok(())
    }

    /// A slot for one host call, given back when dropped; an error when the run already has
    /// as many in flight as it may.
    pub fn start_call(self: &Arc<Self>) -> Result<CallSlot, HostError> {
        let max = self.limits.max_concurrent_calls;
        let taken = self
            .calls
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            return Err(HostError::new(format!(
                "at most {max} nango calls may be in flight at once in a run (LASSO_SCRIPT_MAX_CONCURRENT_CALLS); await some before starting more"
            )));
        }
        Ok(CallSlot {
            budget: self.clone(),
        })
    }

    /// Counts a log line of `bytes`; an error once the run's lines pass the log limit.
    pub fn log(&self, bytes: usize) -> Result<(), String> {
        let max = self.limits.max_log_bytes;
        let before = self.logged.fetch_add(bytes, Ordering::AcqRel);
        if before.saturating_add(bytes) > max {
            return Err(format!(
                "nango.log: the run has logged more than {} (LASSO_SCRIPT_LOG_MB); log less",
                size(max)
            ));
        }
        Ok(())
    }
}

/// One host call in flight.
pub struct CallSlot {
    budget: Arc<RunBudget>,
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        self.budget.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

/// About how many bytes `value` takes on the host: its text plus a node's overhead per value.
pub fn json_size(value: &Json) -> usize {
    const NODE: usize = 32;
    NODE + match value {
        Json::Null | Json::Bool(_) | Json::Number(_) => 0,
        Json::String(s) => s.len(),
        Json::Array(items) => items.iter().map(json_size).sum(),
        Json::Object(fields) => fields.iter().map(|(k, v)| k.len() + json_size(v)).sum(),
    }
}
