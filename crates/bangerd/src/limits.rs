//! What one daemon lets its clients hold, so that a runaway or hostile client of the same
//! user cannot take its memory or its connections:
//!
//! - at most [`Limits::max_connections`] connections served at once; one more waits up to
//!   [`Limits::slot_wait`] for a slot (at most as many wait), then is answered with an
//!   error naming the limit and closed (the accept loop never blocks on it);
//! - at most [`Limits::max_buffered_bytes`] of request lines buffered across all
//!   connections, beyond the first [`Limits::free_bytes_per_line`] of each line (so an
//!   ordinary request is never refused because others are large); a line that would pass
//!   the budget is answered with an error and its connection closed;
//! - a connection that sent part of a line and then nothing for
//!   [`Limits::partial_frame_timeout`] is answered with an error and closed.
//!
//! [`Budget`] is the shared byte count; a [`Charge`] gives its bytes back when dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The daemon's limits on its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    /// How long a connection past the cap waits for a slot before it is refused.
    pub slot_wait: Duration,
    pub max_buffered_bytes: usize,
    pub free_bytes_per_line: usize,
    pub partial_frame_timeout: Duration,
    /// Complete lines kept from a pipelining client while its earlier request runs; the
    /// socket is not read further until they are answered.
    pub max_pending_lines: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 512,
            slot_wait: Duration::from_secs(2),
            max_buffered_bytes: 16 << 20,
            free_bytes_per_line: 64 << 10,
            partial_frame_timeout: Duration::from_secs(10),
            max_pending_lines: 16,
        }
    }
}

/// Bytes of request lines buffered across connections, against a cap.
#[derive(Debug, Clone)]
pub struct Budget {
    used: Arc<AtomicUsize>,
    cap: usize,
}

impl Budget {
    pub fn new(cap: usize) -> Budget {
        Budget {
            used: Arc::new(AtomicUsize::new(0)),
            cap,
        }
    }

    /// Takes `bytes` from the budget, or nothing when that would pass the cap.
    pub fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.cap)
            })
            .is_ok()
    }

    /// Gives back `bytes` taken earlier.
    pub fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes currently taken.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub fn cap(&self) -> usize {
        self.cap
    }
}

/// Bytes held from a [`Budget`]; given back on drop.
#[derive(Debug, Default)]
pub struct Charge {
    budget: Option<Budget>,
    bytes: usize,
}

impl Charge {
    pub fn new(budget: Option<Budget>) -> Charge {
        Charge { budget, bytes: 0 }
    }

    /// Grows the charge to `bytes` in total; false (and unchanged) when the budget cannot
    /// give that much.
    pub fn grow_to(&mut self, bytes: usize) -> bool {
        let Some(budget) = &self.budget else {
            return true;
        };
        if bytes <= self.bytes {
            return true;
        }
        if !budget.try_take(bytes - self.bytes) {
            return false;
        }
        self.bytes = bytes;
        true
    }

    /// Moves the charge out, leaving an empty one on the same budget.
    pub fn take(&mut self) -> Charge {
        Charge {
            budget: self.budget.clone(),
            bytes: std::mem::take(&mut self.bytes),
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget
            && self.bytes > 0
        {
            budget.give_back(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_past_its_cap_and_charges_give_back_on_drop() {
        let budget = Budget::new(100);
        let mut a = Charge::new(Some(budget.clone()));
        assert!(a.grow_to(60));
        let mut b = Charge::new(Some(budget.clone()));
        assert!(!b.grow_to(41), "60 + 41 > 100");
        assert_eq!(b.bytes(), 0);
        assert!(b.grow_to(40));
        assert_eq!(budget.used(), 100);
        let moved = a.take();
        assert_eq!((a.bytes(), moved.bytes()), (0, 60));
        drop(moved);
        assert_eq!(budget.used(), 40);
        drop(b);
        assert_eq!(budget.used(), 0);
        assert!(Charge::new(None).grow_to(usize::MAX), "no budget, no limit");
    }
}
