//! argon2id with OWASP's current parameters (m = 19456 KiB, t = 2, p = 1).
//!
//! Hashing is deliberately slow and memory-hungry, so it runs on the blocking pool and a
//! semaphore caps how many run at once: a burst of logins queues instead of allocating
//! 19 MiB per request until the pod is OOM-killed. The slot travels with the blocking task
//! (a client hanging up does not free it while its hash still runs), and the queue is bounded
//! too: beyond it a hash is refused at once ([`HashError::Busy`], a 503 with `Retry-After`).
//!
//! Each hash runs on a thread of its own at a lower CPU priority (nice +10) than the async
//! runtime: hashes take the CPU nothing else wants, so a flood of logins that keeps every slot
//! busy does not starve `/health`, `/ready` and the API's other requests on the same cores
//! (in a pod, within the same CPU quota). A thread per hash costs tens of microseconds against
//! a hash's tens of milliseconds, and the slots bound how many exist.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::{PasswordHash, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use rand::RngCore;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::domain::Password;

/// OWASP Password Storage Cheat Sheet, argon2id, first recommended configuration.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("OWASP argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A hash of a random password nobody knows (thrown away after hashing), verified against
/// when the user does not exist or has no usable hash, so that "no such user" costs the same
/// time as "wrong password". A constant rather than computed at start-up: hashing costs tens
/// of milliseconds and 19 MiB before the first request could be served. Its parameters must
/// be those of [`argon2`] (a test checks).
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$JrMeNIToGcuyrRiz1yF1ww$KO0EBzUzJuNhDZ5+lvrh6czpcWbKuMSQQ7QnOvNvL0k";

fn hash_blocking(password: &str) -> Result<String, argon2::password_hash::Error> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt)?;
    use argon2::password_hash::PasswordHasher as _;
    Ok(argon2()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// The outcome of a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The password matches the stored hash.
    Match,
    /// It does not, or there was no usable hash: the caller cannot tell which, on purpose.
    Mismatch,
}

/// Why a hash did not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HashError {
    /// Every slot is busy and the queue of waiting hashes is full: retry later.
    #[error("too many password hashes are waiting")]
    Busy,
    /// The hash itself failed (or its blocking task did).
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// What the hasher is doing, for the metrics: shared handles, read at each scrape.
#[derive(Clone, Default)]
pub(crate) struct HashStats {
    /// Hashes waiting for a slot.
    pub queued: Gauge,
    /// Hashes running on the blocking pool (whether or not their client still waits).
    pub in_flight: Gauge,
    /// Hashes refused because the queue was full.
    pub rejected: Counter,
}

/// Counts one waiting hash while it lives: dropped when it gets its slot, or when its request
/// is abandoned while still waiting.
struct Queued<'a> {
    hasher: &'a PasswordHasher,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.hasher.waiting.fetch_sub(1, Ordering::SeqCst);
        self.hasher.stats.queued.dec();
    }
}

/// A slot and the in-flight count of one running hash. It moves into the blocking task, so
/// the slot is given back when the hash ends, never when the request that asked is dropped:
/// however many clients hang up, at most `concurrency` hashes run.
struct Running {
    _permit: OwnedSemaphorePermit,
    in_flight: Gauge,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
}

/// Hashes and verifies passwords off the async runtime, a bounded number at a time, with a
/// bounded number waiting.
#[derive(Clone)]
pub(crate) struct PasswordHasher {
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    queue: usize,
    stats: HashStats,
}

impl PasswordHasher {
    /// A hasher running at most `concurrency` hashes at once, with room for many waiting
    /// (unit tests; the server always bounds the queue).
    #[cfg(test)]
    pub(crate) fn new(concurrency: usize) -> Self {
        PasswordHasher::bounded(concurrency, usize::MAX)
    }

    /// A hasher running at most `concurrency` hashes at once and letting at most `queue`
    /// more wait; any further one is refused with [`HashError::Busy`] at once.
    pub(crate) fn bounded(concurrency: usize, queue: usize) -> Self {
        PasswordHasher {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
            queue,
            stats: HashStats::default(),
        }
    }

    /// The hasher's metrics.
    pub(crate) fn stats(&self) -> &HashStats {
        &self.stats
    }

    /// A slot for one hash: at once if one is free, after waiting in the bounded queue
    /// otherwise.
    async fn slot(&self) -> Result<Running, HashError> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => unreachable!("the semaphore is never closed"),
            Err(TryAcquireError::NoPermits) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    self.stats.rejected.inc();
                    return Err(HashError::Busy);
                }
                self.stats.queued.inc();
                let _queued = Queued { hasher: self };
                self.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(anyhow::Error::from)?
            }
        };
        self.stats.in_flight.inc();
        Ok(Running {
            _permit: permit,
            in_flight: self.stats.in_flight.clone(),
        })
    }

    /// A PHC-format argon2id hash of `password` with a fresh random salt.
    pub(crate) async fn hash(&self, password: Password) -> Result<String, HashError> {
        let running = self.slot().await?;
        let hash = run_hash(running, move || hash_blocking(password.expose()))
            .await?
            .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))?;
        Ok(hash)
    }

    /// Checks `password` against `stored`. A missing or unusable stored hash (the seed's
    /// sample users have `!locked`) is checked against the dummy hash and is a mismatch.
    pub(crate) async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<Verdict, HashError> {
        let password = zeroize::Zeroizing::new(password);
        let running = self.slot().await?;
        let verdict = run_hash(running, move || {
            let usable = stored.as_deref().and_then(|s| PasswordHash::new(s).ok());
            match usable {
                Some(hash) => match argon2().verify_password(password.as_bytes(), &hash) {
                    Ok(()) => Verdict::Match,
                    Err(_) => Verdict::Mismatch,
                },
                None => {
                    let dummy = PasswordHash::new(DUMMY_HASH).expect("the dummy hash parses");
                    let _ = argon2().verify_password(password.as_bytes(), &dummy);
                    Verdict::Mismatch
                }
            }
        })
        .await?;
        Ok(verdict)
    }
}

/// How much lower than the runtime's threads a hash runs (a nice value: +10 gives it about a
/// tenth of the CPU weight of a normal thread when both want the CPU).
const HASH_NICENESS: libc::c_int = 10;

/// Runs `work` on a new low-priority thread that owns `running` (the slot is given back when
/// the work ends, whether or not anyone still awaits the result).
async fn run_hash<T: Send + 'static>(
    running: Running,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HashError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("argon2".into())
        .spawn(move || {
            let _running = running;
            lower_priority();
            // The requester may have gone (a client hung up): the result is dropped.
            let _ = tx.send(work());
        })
        .map_err(|e| anyhow::anyhow!("cannot start a password-hashing thread: {e}"))?;
    rx.await
        .map_err(|_| anyhow::anyhow!("the password-hashing thread ended without a result").into())
}

/// Lowers the calling thread's CPU priority (on Linux, nice applies per thread). Raising
/// niceness needs no privilege; should it fail anyway, the hash runs at normal priority.
/// Elsewhere (a laptop's `app serve`) nice would apply to the whole process: left alone.
#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: setpriority only reads its arguments; `0` names the calling thread on Linux.
    let done = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, HASH_NICENESS) };
    if done != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "cannot lower the hashing thread's priority"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashes_run_below_the_runtime_priority_and_give_their_slot_back() {
        // SAFETY: getpriority only reads; 0 is the calling thread.
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let ours = nice();
        let hasher = PasswordHasher::new(1);
        let theirs = run_hash(hasher.slot().await.unwrap(), nice).await.unwrap();
        assert_eq!(theirs, (ours + HASH_NICENESS).min(19));
        assert_eq!(nice(), ours, "the caller's own priority is untouched");
        // The slot came back with the thread: a second hash gets it.
        let again = tokio::time::timeout(std::time::Duration::from_secs(5), hasher.slot()).await;
        assert!(again.is_ok(), "the slot was not given back");
    }

    #[test]
    fn dummy_hash_has_the_parameters_real_hashes_get() {
        let params = argon2().params().clone();
        let prefix = format!(
            "$argon2id$v=19$m={},t={},p={}$",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        );
        assert!(DUMMY_HASH.starts_with(&prefix), "{DUMMY_HASH} vs {prefix}");
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[tokio::test]
    async fn hashes_with_owasp_parameters_and_verifies() {
        let hasher = PasswordHasher::new(2);
        let pw = || Password::parse("password", "correct horse battery").unwrap();
        let hash = hasher.hash(pw()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert_eq!(
            hasher
                .verify("correct horse battery".into(), Some(hash.clone()))
                .await
                .unwrap(),
            Verdict::Match
        );
        assert_eq!(
            hasher
                .verify("wrong horse battery".into(), Some(hash))
                .await
                .unwrap(),
            Verdict::Mismatch
        );
        assert_eq!(
            hasher
                .verify("anything".into(), Some("!locked".into()))
                .await
                .unwrap(),
            Verdict::Mismatch
        );
        assert_eq!(
            hasher.verify("anything".into(), None).await.unwrap(),
            Verdict::Mismatch
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_an_abandoned_wait_leaves_it() {
        let hasher = PasswordHasher::bounded(1, 1);
        let held = hasher.slot().await.unwrap();
        let waiting = hasher.verify("x".into(), None);
        let mut waiting = Box::pin(waiting);
        assert!(poll_once(&mut waiting).await.is_none(), "it waits");
        assert_eq!(hasher.stats().queued.get(), 1);
        assert!(matches!(
            hasher.verify("x".into(), None).await,
            Err(HashError::Busy)
        ));
        assert_eq!(hasher.stats().rejected.get(), 1);
        drop(waiting);
        assert_eq!(
            hasher.stats().queued.get(),
            0,
            "an abandoned wait leaves the queue"
        );
        assert_eq!(hasher.stats().in_flight.get(), 1);
        drop(held);
        assert_eq!(hasher.stats().in_flight.get(), 0);
        assert_eq!(
            hasher.verify("x".into(), None).await.unwrap(),
            Verdict::Mismatch
        );
    }

    /// Polls a future once: its output if it is ready at once.
    async fn poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut *f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
