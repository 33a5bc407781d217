//! openraft's async runtime: tokio, with a random number generator the simulator can seed.
//!
//! openraft draws each election timeout from `AsyncRuntime::thread_rng()`. With tokio's own
//! runtime that is an OS-seeded generator, and a simulated run could not be replayed. Here it
//! is a per-thread SplitMix64: seeded by [`seed_thread_rng`] (the simulator's current-thread
//! runtime), from the OS otherwise.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use openraft::async_runtime::TokioOneShotSender;
use openraft::{AsyncRuntime, OptionalSend, TokioInstant};
use openraft_rand_core::{Error as RngError, RngCore};

thread_local! {
    static SEEDED: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Make this thread's openraft randomness a function of `seed` (for a simulation).
pub fn seed_thread_rng(seed: u64) {
    SEEDED.with(|s| s.set(Some(seed)));
}

/// Back to OS randomness on this thread.
pub fn unseed_thread_rng() {
    SEEDED.with(|s| s.set(None));
}

/// The generator openraft sees.
#[derive(Debug, Clone, Copy, Default)]
pub struct MeshRng;

fn splitmix64(state: u64) -> (u64, u64) {
    let next = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = next;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (next, z ^ (z >> 31))
}

impl RngCore for MeshRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        SEEDED.with(|s| match s.get() {
            Some(state) => {
                let (next, out) = splitmix64(state);
                s.set(Some(next));
                out
            }
            None => rand::random(),
        })
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RngError> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// tokio for everything but randomness.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MeshRuntime;

impl AsyncRuntime for MeshRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = tokio::task::JoinHandle<T>;
    type Sleep = tokio::time::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = tokio::time::error::Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = tokio::time::Timeout<T>;
    type ThreadLocalRng = MeshRng;
    type OneshotSender<T: OptionalSend> = TokioOneShotSender<T>;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        tokio::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        tokio::time::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(duration: Duration, future: F) -> Self::Timeout<R, F> {
        tokio::time::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F> {
        tokio::time::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        MeshRng
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (TokioOneShotSender(tx), rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_and_threads_are_independent() {
        seed_thread_rng(42);
        let a: Vec<u64> = (0..4).map(|_| MeshRng.next_u64()).collect();
        seed_thread_rng(42);
        let b: Vec<u64> = (0..4).map(|_| MeshRng.next_u64()).collect();
        assert_eq!(a, b);
        let other = std::thread::spawn(|| MeshRng.next_u64()).join().unwrap();
        assert!(!a.contains(&other), "an unseeded thread draws from the OS");
        unseed_thread_rng();
    }
}
