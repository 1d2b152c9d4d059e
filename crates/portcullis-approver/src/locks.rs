//! The approver's one answer to a poisoned lock: it is taken over.
//!
//! A lock is poisoned when a thread panicked while holding it. Everything the approver keeps
//! under a std lock (the catalog in force, the signing key, the `Live` mirror, the deadlines,
//! the waiters, refusal and command budgets) is whole after each statement that changes it, so
//! what a panic leaves is usable. The other answers are worse: skipping the update (`if let
//! Ok`, `.ok()`) leaves the mirror or the deadlines behind what was committed, reading a
//! default instead shows an empty list or refuses a user for nothing, and failing takes the
//! daemon down for a panic elsewhere. Every lock in this crate goes through these three.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_taken_over_with_what_it_holds() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let l = std::sync::Arc::new(RwLock::new(1));
        let (m2, l2) = (m.clone(), l.clone());
        let _ = std::thread::spawn(move || {
            let _m = lock(&m2);
            let _l = write(&l2);
            panic!("poison both");
        })
        .join();
        assert!(m.is_poisoned() && l.is_poisoned());
        *lock(&m) += 1;
        *write(&l) += 1;
        assert_eq!((*lock(&m), *read(&l)), (2, 2));
    }
}
