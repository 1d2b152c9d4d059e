//! Giving memory back to the system after a burst of session closes.
//!
//! glibc's malloc returns only the top of its heaps by itself: what thousands of sessions freed
//! in the middle of a heap stays with the process, reused by the next sessions but never given
//! back (docs/benchmarks.md measured 0-1 % returned). `malloc_trim(0)` gives it back (93 % in
//! the same bench). It is the one foreign call in portcullis, audited below, and it runs on the
//! blocking pool once session closes have been quiet for a moment, never on a session's path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// How long closes must have stopped before a trim: a burst ends first.
const QUIET: Duration = Duration::from_secs(2);
/// The longest a trim waits under a steady stream of closes.
const AT_MOST: Duration = Duration::from_secs(10);

/// Debounces session closes into trims.
#[derive(Default)]
pub(crate) struct Trimmer {
    closed: Notify,
    trims: AtomicU64,
}

impl Trimmer {
    /// A session ended (cheap: a notification).
    pub fn session_closed(&self) {
        self.closed.notify_one();
    }

    /// How many trims have run.
    #[cfg(test)]
    pub fn trims(&self) -> u64 {
        self.trims.load(Ordering::Relaxed)
    }

    /// Forever: after a close, wait for closes to stop for [`QUIET`] (at most [`AT_MOST`]),
    /// then trim once.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.closed.notified().await;
            let deadline = tokio::time::Instant::now() + AT_MOST;
            loop {
                let quiet = tokio::time::sleep(QUIET);
                tokio::select! {
                    _ = quiet => break,
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = self.closed.notified() => {}
                }
            }
            let returned = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
            self.trims.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("sessions closed: memory trimmed (released: {returned})");
        }
    }
}

/// Give the allocator's free memory back to the system; whether any was released.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    extern "C" {
        /// glibc, `<malloc.h>`: `int malloc_trim(size_t pad)`.
        fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    }
    // SAFETY: this is glibc's `malloc_trim` (the cfg above restricts the build to Linux with
    // glibc, where the symbol always exists and matches this signature). It takes a plain
    // integer and no pointers, so nothing of ours can be invalid; it works only on malloc's own
    // arenas, under malloc's own locks, and glibc documents it MT-Safe, so calling it from a
    // blocking-pool thread while other threads allocate is allowed. It never frees memory that
    // is still allocated: it only unmaps or `madvise`s pages that are entirely free.
    unsafe { malloc_trim(0) != 0 }
}

/// Elsewhere (musl, macOS) there is no `malloc_trim`; their allocators return memory their
/// own way.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_closes_is_one_trim_once_quiet() {
        let t = Arc::new(Trimmer::default());
        tokio::spawn(t.clone().run());
        for _ in 0..2_000 {
            t.session_closed();
        }
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(t.trims(), 0, "not while the burst may go on");
        // Paused time moves only when every task waits: give the blocking trim real time.
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if t.trims() == 1 {
                break;
            }
        }
        assert_eq!(t.trims(), 1);
        // Quiet afterwards: no more trims.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(t.trims(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_of_closes_still_trims_within_the_bound() {
        let t = Arc::new(Trimmer::default());
        tokio::spawn(t.clone().run());
        for _ in 0..120 {
            t.session_closed();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(t.trims() >= 1, "12 s of closes every 100 ms and no trim");
    }

    #[test]
    fn the_trim_itself_runs() {
        // On glibc this is the real call; it must simply return.
        let _ = trim();
    }
}
