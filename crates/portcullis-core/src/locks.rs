//! One policy for a poisoned lock, for every `std::sync` lock portcullis takes: take it over.
//!
//! A lock is poisoned when a thread panicked while holding it. The alternatives are worse for
//! an enforcement point: skipping the update (`if let Ok(..) = m.lock()`) silently drops a
//! revocation, a catalog swap or a host-key verdict and so fails open; unwrapping spreads one
//! task's panic to every task that touches the lock and takes enforcement down for everyone.
//! Taking the guard over is sound because every lock these helpers guard holds plain values
//! (tables, counters, an `Option`) whose every single update leaves them consistent: a panic
//! elsewhere in the holder's code cannot leave one half-written.
//!
//! Async locks (`tokio::sync`) are not poisoned and need none of this.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Lock `m`, taking it over if a panic poisoned it.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-lock `l`, taking it over if a panic poisoned it.
pub fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-lock `l`, taking it over if a panic poisoned it.
pub fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_lock_is_taken_over_with_its_last_value() {
        let m = Arc::new(Mutex::new(1));
        let l = Arc::new(RwLock::new(1));
        let (m2, l2) = (m.clone(), l.clone());
        let _ = std::thread::spawn(move || {
            *lock(&m2) = 2;
            *write(&l2) = 2;
            let _held = (lock(&m2), write(&l2));
            panic!("poison both");
        })
        .join();
        assert!(m.is_poisoned() && l.is_poisoned());
        *lock(&m) += 1;
        *write(&l) += 1;
        assert_eq!((*lock(&m), *read(&l)), (3, 3));
    }
}
