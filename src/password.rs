//! Password hashing: argon2id (OWASP parameters) for new hashes, argon2 and bcrypt accepted.
//!
//! Hashing is CPU-bound for tens of milliseconds, so it runs on a pool of its own: a few
//! threads (one fewer than the cores, by default) at a lower scheduling priority than the
//! proxy's workers, fed by a bounded queue. A storm of sign-ins therefore gets a bounded share
//! of the machine and never slows proxied traffic; when the queue is full, a sign-in is
//! refused at once (503 with `Retry-After`) rather than waiting in an ever longer line. Each
//! argon2id hash holds 19 MiB while it runs, so the pool also bounds memory.
//!
//! By default the threads run under `SCHED_IDLE`, on CPU time nothing else wants: the proxy's
//! own traffic always comes first. So that other programs cannot starve sign-ins for ever, a
//! check that waits while neither its threads nor the proxy got the CPU is run again on a
//! rescue thread at nice 19, which a busy core still gives a small share.

use std::collections::HashMap;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::config::HashPriority;

use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use argon2::{Algorithm, Argon2, Params, Version};

/// Why a password could not be checked or hashed (never: that it was wrong).
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password hashing pool is closed")]
    Closed,
    #[error("every password hashing thread is busy and the queue is full")]
    Busy,
    #[error("a password task failed")]
    Failed,
    #[error("password hashing failed: {0}")]
    Hash(argon2::password_hash::Error),
}

/// The niceness of `HashPriority::Low` hashing threads, and of `Idle` ones where `SCHED_IDLE`
/// cannot be had: nice 19, the lowest, weighs 15 against a nice-0 proxy worker's 1024, so a
/// busy core gives hashing about 1.5 % of its time, never nothing.
const HASHING_NICE: i32 = 19;

/// The time slice of `HashPriority::Low` hashing threads, 0.1 ms, the shortest Linux allows
/// (6.12 and later; older kernels ignore it). Niceness sets how much of a busy core hashing gets,
/// the slice how long it may hold the core once it has it: with the default slice (0.75 ms times
/// a factor for the number of CPUs), each turn of a hashing thread held up the proxy's requests
/// on that core by a millisecond or more, which showed in their p99 during sign-in storms.
const HASHING_SLICE_NS: u64 = 100_000;

/// Longest a check may wait for a hashing thread, queue included: past it the caller gets
/// `Busy` (503), so a machine whose CPUs the proxy keeps busy answers sign-ins rather than
/// holding them.
const MAX_WAIT: Duration = Duration::from_secs(3);

/// How often a waiting check looks at why it is still waiting. A check's own work takes tens of
/// milliseconds; a quarter of a second without an answer means the hashing threads are queued
/// up or kept off the CPU.
const RESCUE_AFTER: Duration = Duration::from_millis(250);

/// A hashing thread's work item. It is shared so that a check held up on a starved `SCHED_IDLE`
/// thread can also be handed to a rescue thread: whichever run finishes first answers.
type Job = Arc<dyn Fn() + Send + Sync>;

/// One check or hash, and the caller waiting for it.
struct Task<T> {
    work: Box<dyn Fn() -> T + Send + Sync>,
    /// Taken by the first run to finish, or dropped by a caller that gave up: a run that finds
    /// it gone skips the work.
    answer: Mutex<Option<tokio::sync::oneshot::Sender<T>>>,
}

impl<T> Task<T> {
    fn run(&self) {
        if lock(&self.answer).is_none() {
            return;
        }
        let value = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.work)()));
        // A run that panicked drops the answer, so that the caller hears of it at once
        // (`PasswordError::Failed`) rather than when its wait runs out.
        let done = lock(&self.answer).take();
        if let (Some(done), Ok(value)) = (done, value) {
            let _ = done.send(value);
        }
    }

    fn abandon(&self) {
        lock(&self.answer).take();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// OWASP's argon2id recommendation: 19 MiB, 2 iterations, 1 lane.
fn argon2id() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn is_supported_hash(hash: &str) -> bool {
    hash.starts_with("$argon2id$")
        || hash.starts_with("$argon2i$")
        || hash.starts_with("$argon2d$")
        || is_bcrypt(hash)
}

fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2x$", "$2y$"]
        .iter()
        .any(|p| hash.starts_with(p))
}

/// bcrypt reads only this many bytes of a password.
pub const BCRYPT_MAX_BYTES: usize = 72;

/// What a hash costs to check is set by its algorithm and parameters, not its salt: the
/// `$argon2id$v=19$m=19456,t=2,p=1$` or `$2b$12$` prefix.
fn hash_class(hash: &str) -> &str {
    let cut = if is_bcrypt(hash) {
        hash.match_indices('$').nth(2).map(|(i, _)| i + 1)
    } else {
        hash.match_indices('$').nth(3).map(|(i, _)| i + 1)
    };
    &hash[..cut.unwrap_or(hash.len())]
}

/// Whether a hash should be replaced by a fresh argon2id one at the next successful sign-in:
/// bcrypt, or argon2 with other parameters than the ones this gateway uses.
pub fn needs_rehash(hash: &str) -> bool {
    hash_class(hash) != OWASP_CLASS
}

const OWASP_CLASS: &str = "$argon2id$v=19$m=19456,t=2,p=1$";

/// Hash a password with argon2id and a fresh random salt (blocking).
pub fn hash_blocking(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon2id()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Check a password against a stored hash (blocking). Any unreadable hash is a mismatch.
///
/// bcrypt only reads the first 72 bytes of a password; a longer one is refused against a bcrypt
/// hash rather than checked on its prefix, so nothing past byte 72 is silently ignored.
pub fn verify_blocking(password: &str, hash: &str) -> bool {
    if is_bcrypt(hash) {
        return password.len() <= BCRYPT_MAX_BYTES
            && bcrypt::verify(password, hash).unwrap_or(false);
    }
    match PasswordHash::new(hash) {
        // The parameters come from the hash itself; Argon2's comparison is constant time.
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// How long a failed check takes, at least, so that every failure looks alike.
///
/// An unknown email is checked against a dummy argon2id hash, and a wrong password against the
/// account's own hash, which may be bcrypt at some cost, or argon2 with other parameters: left
/// alone, the time of the answer tells them apart. Each check's cost is remembered per kind of
/// hash (a moving average), and every failure is held until the slowest kind's cost, with
/// headroom, has passed. Only failures wait; the work itself is not repeated. The cost is the
/// CPU time the check took, so that a check that was kept off the CPU for a while (hashing
/// runs at a low priority) does not hold every later failure up.
struct FailureFloor {
    costs: Mutex<HashMap<String, Duration>>,
}

/// Headroom over the slowest kind's average, so that checks slower than average still finish
/// before the floor: 25 %.
const FLOOR_HEADROOM: f64 = 1.25;

impl FailureFloor {
    fn record(&self, class: &str, took: Duration) {
        let mut costs = lock(&self.costs);
        match costs.get_mut(class) {
            Some(avg) => *avg = avg.mul_f64(0.8) + took.mul_f64(0.2),
            None => {
                costs.insert(class.to_owned(), took);
            }
        }
    }

    fn floor(&self) -> Duration {
        lock(&self.costs)
            .values()
            .max()
            .copied()
            .unwrap_or_default()
            .mul_f64(FLOOR_HEADROOM)
    }
}

pub struct Passwords {
    /// The hashing threads, at the configured priority.
    pool: Pool,
    /// With `HashPriority::Idle`, one thread at `HashPriority::Low`, for checks that other
    /// programs keep the idle threads from running.
    rescue: Option<Pool>,
    /// The cores the gateway may run on.
    cores: usize,
    max_wait: Duration,
    /// Verified against when the email is unknown, so that both failures do the same work.
    dummy_hash: Arc<str>,
    floor: Arc<FailureFloor>,
}

impl Passwords {
    /// `known_hashes` are the hashes the store holds (or a sample): the cost of each kind among
    /// them is measured now, so failures look alike from the first request on.
    pub fn new<'a>(
        threads: usize,
        queue: usize,
        priority: HashPriority,
        known_hashes: impl IntoIterator<Item = &'a str>,
    ) -> Passwords {
        Passwords::with_max_wait(threads, queue, priority, known_hashes, MAX_WAIT)
    }

    fn with_max_wait<'a>(
        threads: usize,
        queue: usize,
        priority: HashPriority,
        known_hashes: impl IntoIterator<Item = &'a str>,
        max_wait: Duration,
    ) -> Passwords {
        let dummy_hash: Arc<str> = hash_blocking("authgate-timing-equalizer")
            .unwrap_or_else(|_| "$argon2id$v=19$m=19456,t=2,p=1$invalid".into())
            .into();
        let floor = Arc::new(FailureFloor {
            costs: Mutex::new(HashMap::new()),
        });
        let mut seen = std::collections::HashSet::new();
        let mut measure = |hash: &str| {
            if seen.insert(hash_class(hash).to_owned()) {
                let cost = CpuCost::start();
                verify_blocking("\u{0}not the password", hash);
                floor.record(hash_class(hash), cost.took());
            }
        };
        measure(&dummy_hash);
        known_hashes.into_iter().for_each(measure);
        let rescue = (priority == HashPriority::Idle && cfg!(target_os = "linux"))
            .then(|| Pool::spawn("authgate-rescue", 1, queue.max(1), HashPriority::Low));
        Passwords {
            pool: Pool::spawn("authgate-hash", threads.max(1), queue.max(1), priority),
            rescue,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            max_wait,
            dummy_hash,
            floor,
        }
    }

    /// Verify `password` against `hash`, or against a dummy hash when there is no user. A
    /// failure, for either reason, answers no sooner than the slowest kind of hash would.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, PasswordError> {
        let known = hash.is_some();
        let hash: Arc<str> = match hash {
            Some(h) => h.into(),
            None => Arc::clone(&self.dummy_hash),
        };
        let password = password.to_owned();
        let floor = Arc::clone(&self.floor);
        let (ok, started) = self
            .run(move || {
                let started = Instant::now();
                let cost = CpuCost::start();
                let ok = verify_blocking(&password, &hash);
                floor.record(hash_class(&hash), cost.took());
                (ok, started)
            })
            .await?;
        let ok = ok && known;
        if !ok {
            // Measured from the start of the work, not of the wait for a thread: queueing
            // depends on other callers, not on this account.
            if let Some(rest) = self.floor.floor().checked_sub(started.elapsed()) {
                tokio::time::sleep(rest).await;
            }
        }
        Ok(ok)
    }

    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = password.to_owned();
        self.run(move || hash_blocking(&password))
            .await?
            .map_err(PasswordError::Hash)
    }

    /// Queue `work` and wait for its answer, for `max_wait` at most. While it waits, every
    /// `RESCUE_AFTER` it looks at where the CPU went: when the idle hashing threads got almost
    /// none of it and this gateway's own work did not take it either, other programs are
    /// starving them, and the work is handed to the rescue thread as well.
    async fn run<T: Send + 'static>(
        &self,
        work: impl Fn() -> T + Send + Sync + 'static,
    ) -> Result<T, PasswordError> {
        let (done, mut answer) = tokio::sync::oneshot::channel();
        let task = Arc::new(Task {
            work: Box::new(work),
            answer: Mutex::new(Some(done)),
        });
        let job: Job = {
            let task = Arc::clone(&task);
            Arc::new(move || task.run())
        };
        let mut last = self.rescue.as_ref().and_then(|_| self.usage());
        self.pool
            .jobs
            .try_send(Arc::clone(&job))
            .map_err(|e| match e {
                TrySendError::Full(_) => PasswordError::Busy,
                TrySendError::Disconnected(_) => PasswordError::Closed,
            })?;
        let deadline = tokio::time::Instant::now() + self.max_wait;
        let mut rescue = self.rescue.as_ref();
        loop {
            let wake = match rescue {
                Some(_) => deadline.min(tokio::time::Instant::now() + RESCUE_AFTER),
                None => deadline,
            };
            if let Ok(value) = tokio::time::timeout_at(wake, &mut answer).await {
                return value.map_err(|_| PasswordError::Failed);
            }
            if wake >= deadline {
                task.abandon();
                return Err(PasswordError::Busy);
            }
            let now = self.usage();
            if let (Some(pool), Some(before), Some(now)) = (rescue, last, now)
                && now.starved_by_others(&before, self.cores)
                && pool.jobs.try_send(Arc::clone(&job)).is_ok()
            {
                crate::metrics::metrics().password_rescued();
                tracing::debug!("a password check waits on other programs: run again at nice 19");
                rescue = None;
            }
            last = now;
        }
    }

    /// CPU time used so far by the process and by its hashing threads, rescue included.
    fn usage(&self) -> Option<Usage> {
        let hashing = (self.pool.clocks.iter())
            .chain(self.rescue.iter().flat_map(|r| r.clocks.iter()))
            .map(|&clock| cpu_time(clock).unwrap_or_default())
            .sum();
        Some(Usage {
            at: Instant::now(),
            process: cpu_time(libc::CLOCK_PROCESS_CPUTIME_ID)?,
            hashing,
        })
    }
}

/// Where the CPU time went, at one moment.
#[derive(Debug, Clone, Copy)]
struct Usage {
    at: Instant,
    /// The whole gateway's.
    process: Duration,
    /// Its hashing threads'.
    hashing: Duration,
}

impl Usage {
    /// Whether, since `before`, the hashing threads were starved by other programs: between them
    /// they ran for less than a quarter of the time, and the rest of the gateway (the proxy's
    /// workers) used less than half of the `cores` it may run on. Kept off the CPU by the
    /// gateway's own traffic, hashing is meant to wait: proxied requests come first, and a
    /// sign-in that waits too long gets a 503. Kept off it by other programs, it must not wait
    /// for ever.
    fn starved_by_others(&self, before: &Usage, cores: usize) -> bool {
        let window = self.at.saturating_duration_since(before.at);
        let hashing = self.hashing.saturating_sub(before.hashing);
        let rest = self
            .process
            .saturating_sub(before.process)
            .saturating_sub(hashing);
        hashing < window / 4 && rest < window.mul_f64(cores as f64 / 2.0)
    }
}

/// The CPU time a thread spends on one piece of work: what a check costs, whether or not it
/// was preempted while it ran.
struct CpuCost {
    wall: Instant,
    cpu: Option<Duration>,
}

impl CpuCost {
    fn start() -> CpuCost {
        CpuCost {
            wall: Instant::now(),
            cpu: cpu_time(libc::CLOCK_THREAD_CPUTIME_ID),
        }
    }

    /// The thread's CPU time since `start`, or the wall time where it cannot be read.
    fn took(&self) -> Duration {
        match (self.cpu, cpu_time(libc::CLOCK_THREAD_CPUTIME_ID)) {
            (Some(start), Some(now)) => now.saturating_sub(start),
            _ => self.wall.elapsed(),
        }
    }
}

/// The time on a CPU-time clock: the process's, the calling thread's or another thread's.
fn cpu_time(clock: libc::clockid_t) -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a clock id and a timespec that outlives the call.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(now.tv_sec).ok()?,
        u32::try_from(now.tv_nsec).ok()?,
    ))
}

/// Hashing threads sharing a bounded queue.
struct Pool {
    /// The threads' queue; `try_send` refuses when it is full.
    jobs: SyncSender<Job>,
    /// Each thread's CPU-time clock.
    clocks: Vec<libc::clockid_t>,
}

impl Pool {
    /// Start `threads` threads named `name-i` at `priority`, sharing a queue of `queue` jobs.
    fn spawn(name: &str, threads: usize, queue: usize, priority: HashPriority) -> Pool {
        let (jobs, queued) = std::sync::mpsc::sync_channel::<Job>(queue);
        let queued = Arc::new(Mutex::new(queued));
        let mut clocks = Vec::with_capacity(threads);
        for i in 0..threads {
            let queued = Arc::clone(&queued);
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    lower_priority(priority);
                    loop {
                        let Ok(job) = lock(&queued).recv() else {
                            return;
                        };
                        // A panicking job loses its own answer, not the thread.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job()));
                    }
                });
            match spawned {
                Ok(thread) => clocks.extend(thread_clock(&thread)),
                Err(e) => tracing::error!("cannot start a password hashing thread: {e}"),
            }
        }
        Pool { jobs, clocks }
    }
}

/// The CPU-time clock of a thread (which outlives the pool's use of the clock: the thread ends
/// only once the pool's queue is dropped).
#[cfg(target_os = "linux")]
fn thread_clock<T>(thread: &std::thread::JoinHandle<T>) -> Option<libc::clockid_t> {
    use std::os::unix::thread::JoinHandleExt;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: the handle of a thread that has not been joined or detached, and an out parameter
    // that outlives the call.
    let rc = unsafe { libc::pthread_getcpuclockid(thread.as_pthread_t(), &mut clock) };
    (rc == 0).then_some(clock)
}

#[cfg(not(target_os = "linux"))]
fn thread_clock<T>(_: &std::thread::JoinHandle<T>) -> Option<libc::clockid_t> {
    None
}

/// Give the calling thread a lower CPU priority than the proxy's: with `Idle`, `SCHED_IDLE`
/// (it runs only on CPU time nothing else wants) and `HASHING_NICE` where that is refused; with
/// `Low`, `HASHING_NICE` and turns of `HASHING_SLICE_NS`. All are per thread on Linux, and
/// lowering one's own priority needs no privilege.
fn lower_priority(priority: HashPriority) {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: the calling thread (0) and a parameter that outlives the call.
        if priority == HashPriority::Idle
            && unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0
        {
            return;
        }
        let attr = libc::sched_attr {
            size: std::mem::size_of::<libc::sched_attr>() as u32,
            sched_policy: libc::SCHED_OTHER as u32,
            sched_flags: 0,
            sched_nice: HASHING_NICE,
            sched_priority: 0,
            sched_runtime: HASHING_SLICE_NS,
            sched_deadline: 0,
            sched_period: 0,
        };
        // SAFETY: the calling thread (0), an attribute struct whose `size` is its own and which
        // outlives the call, and no flags.
        if unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr, 0) } == 0 {
            return;
        }
        // SAFETY: plain system calls on the calling thread's own id, with no pointers.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, HASHING_NICE)
        };
        if rc != 0 {
            tracing::warn!(
                "password hashing runs at normal priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip_with_owasp_params() {
        let h = hash_blocking("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_blocking("correct horse", &h));
        assert!(!verify_blocking("wrong horse", &h));
    }

    #[test]
    fn bcrypt_hashes_are_accepted() {
        let h = bcrypt::hash("iLovePria123", 4).unwrap();
        assert!(is_supported_hash(&h));
        assert!(verify_blocking("iLovePria123", &h));
        assert!(!verify_blocking("iLovePria124", &h));
    }

    #[test]
    fn garbage_hash_never_matches() {
        assert!(!verify_blocking("x", "not a hash"));
        assert!(!verify_blocking("x", "$argon2id$broken"));
    }

    #[test]
    fn long_passwords_are_refused_against_bcrypt_not_truncated() {
        let long = "x".repeat(80);
        let h = bcrypt::hash(&long, 4).unwrap();
        assert!(
            !verify_blocking(&long, &h),
            "bcrypt would have read only 72 bytes"
        );
        assert!(!verify_blocking(&"x".repeat(73), &h));
        let exact = "y".repeat(72);
        let h = bcrypt::hash(&exact, 4).unwrap();
        assert!(verify_blocking(&exact, &h));
    }

    #[test]
    fn classes_and_rehash() {
        let argon = hash_blocking("pw").unwrap();
        assert_eq!(hash_class(&argon), OWASP_CLASS);
        assert!(!needs_rehash(&argon));
        let b = bcrypt::hash("pw", 4).unwrap();
        assert_eq!(hash_class(&b), "$2b$04$");
        assert!(needs_rehash(&b));
        assert!(needs_rehash("$argon2id$v=19$m=4096,t=3,p=1$c2FsdA$aGFzaA"));
    }

    #[tokio::test]
    async fn failures_wait_for_the_slowest_kind_of_hash() {
        let slow = bcrypt::hash("pw", 10).unwrap();
        let p = Passwords::new(2, 8, HashPriority::Idle, [slow.as_str()]);
        let floor = p.floor.floor();
        assert!(floor > Duration::from_millis(20), "{floor:?}");
        let started = Instant::now();
        assert!(!p.verify("pw", None).await.unwrap());
        assert!(
            started.elapsed() >= floor.mul_f64(0.9),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        // One thread and a queue of one: of checks sent at once, at most two are taken (one
        // running, one waiting); the next is refused without waiting for either.
        let p = Arc::new(Passwords::new(1, 1, HashPriority::Idle, []));
        let slow = bcrypt::hash("pw", 12).unwrap();
        let mut taken = Vec::new();
        let refused = loop {
            let (p2, h) = (Arc::clone(&p), slow.clone());
            let (tx, rx) = tokio::sync::oneshot::channel();
            let job = tokio::spawn(async move {
                let outcome = p2.verify("pw", Some(&h));
                tokio::pin!(outcome);
                // Report a refusal as soon as it happens; a taken check runs to the end.
                match futures_util::poll!(&mut outcome) {
                    std::task::Poll::Ready(r) => {
                        let _ = tx.send(matches!(r, Err(PasswordError::Busy)));
                        r
                    }
                    std::task::Poll::Pending => {
                        let _ = tx.send(false);
                        outcome.await
                    }
                }
            });
            if rx.await.unwrap() {
                break job;
            }
            taken.push(job);
            assert!(taken.len() <= 2, "more checks taken than threads + queue");
        };
        assert!(matches!(refused.await.unwrap(), Err(PasswordError::Busy)));
        for job in taken {
            assert!(job.await.unwrap().unwrap(), "taken checks complete");
        }
    }

    /// The scheduling policy and niceness of a thread of `pool`.
    fn thread_priority(pool: &Pool) -> (i32, i32) {
        let (tx, rx) = std::sync::mpsc::channel();
        let job: Job = Arc::new(move || {
            // SAFETY: reads the calling thread's own scheduling policy and niceness.
            let (policy, nice) = unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                (
                    libc::sched_getscheduler(0),
                    libc::getpriority(libc::PRIO_PROCESS, tid),
                )
            };
            let _ = tx.send((policy, nice));
        });
        pool.jobs.try_send(job).unwrap();
        rx.recv().unwrap()
    }

    #[test]
    fn low_priority_hashing_runs_at_nice_19_not_sched_idle() {
        let p = Passwords::new(1, 1, HashPriority::Low, []);
        let (policy, nice) = thread_priority(&p.pool);
        assert_eq!((policy, nice), (libc::SCHED_OTHER, HASHING_NICE));
    }

    /// Linux reports a fair task's time slice as its `sched_runtime` since 6.12.
    fn kernel_has_custom_slices() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release.trim().split(['.', '-']);
        let major: u32 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let minor: u32 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        (major, minor) >= (6, 12)
    }

    #[test]
    fn low_priority_hashing_takes_short_slices() {
        if !kernel_has_custom_slices() {
            eprintln!("kernel older than 6.12: no custom time slices to check");
            return;
        }
        let p = Passwords::new(1, 1, HashPriority::Low, []);
        let (tx, rx) = std::sync::mpsc::channel();
        let job: Job = Arc::new(move || {
            // SAFETY: sched_attr is plain data; the kernel fills at most `size` bytes of it for
            // the calling thread (0).
            let attr = unsafe {
                let mut attr: libc::sched_attr = std::mem::zeroed();
                let size = std::mem::size_of::<libc::sched_attr>() as u32;
                let rc = libc::syscall(libc::SYS_sched_getattr, 0, &mut attr, size, 0);
                assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
                attr
            };
            let _ = tx.send((attr.sched_policy, attr.sched_nice, attr.sched_runtime));
        });
        p.pool.jobs.try_send(job).unwrap();
        assert_eq!(
            rx.recv().unwrap(),
            (libc::SCHED_OTHER as u32, HASHING_NICE, HASHING_SLICE_NS)
        );
    }

    #[test]
    fn hashing_threads_run_at_a_lower_priority() {
        let p = Passwords::new(1, 1, HashPriority::Idle, []);
        let (policy, nice) = thread_priority(&p.pool);
        assert!(
            policy == libc::SCHED_IDLE || nice == HASHING_NICE,
            "policy {policy}, nice {nice}"
        );
    }

    #[tokio::test]
    async fn unknown_user_never_verifies() {
        let p = Passwords::new(2, 8, HashPriority::Idle, []);
        assert!(!p.verify("authgate-timing-equalizer", None).await.unwrap());
    }

    #[test]
    fn hashing_is_starved_by_others_only_when_neither_it_nor_the_proxy_got_the_cpu() {
        let at = Instant::now();
        let ms = Duration::from_millis;
        let before = Usage {
            at,
            process: ms(1_000),
            hashing: ms(400),
        };
        let after = |window: u64, hashing: u64, rest: u64| Usage {
            at: at + ms(window),
            process: before.process + ms(hashing + rest),
            hashing: before.hashing + ms(hashing),
        };
        // Neither hashing nor the proxy ran: other programs had the CPU.
        assert!(after(250, 0, 0).starved_by_others(&before, 2));
        assert!(after(250, 60, 240).starved_by_others(&before, 2));
        // Hashing ran for a quarter of the window or more: busy, not starved.
        assert!(!after(250, 63, 0).starved_by_others(&before, 2));
        assert!(!after(250, 250, 0).starved_by_others(&before, 1));
        // The gateway's own work took half of its cores or more: hashing waits for it.
        assert!(!after(250, 0, 250).starved_by_others(&before, 2));
        assert!(!after(250, 0, 125).starved_by_others(&before, 1));
        assert!(after(250, 0, 124).starved_by_others(&before, 1));
        // Clocks read out of order never underflow.
        assert!(!before.starved_by_others(&after(250, 0, 500), 2));
    }

    #[tokio::test]
    async fn a_check_whose_hashing_threads_get_no_cpu_is_rescued_at_nice_19() {
        let p = Passwords::with_max_wait(1, 4, HashPriority::Idle, [], Duration::from_secs(30));
        // The one idle hashing thread is held, using no CPU, until the check has its answer:
        // over every window the pool gets none of the CPU, and the check can only be answered
        // by the rescue thread.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let held = Mutex::new(held);
        let (started, holding) = std::sync::mpsc::channel();
        let hold: Job = Arc::new(move || {
            let _ = started.send(());
            let _ = lock(&held).recv();
        });
        p.pool.jobs.try_send(hold).unwrap();
        holding.recv().unwrap();
        let ran_on = p
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert_eq!(ran_on.as_deref(), Some("authgate-rescue-0"));
        let _ = release.send(());
    }

    #[test]
    fn only_idle_hashing_has_a_rescue_thread() {
        assert!(
            Passwords::new(1, 1, HashPriority::Idle, [])
                .rescue
                .is_some()
        );
        assert!(Passwords::new(1, 1, HashPriority::Low, []).rescue.is_none());
    }

    #[test]
    fn the_rescue_thread_runs_at_nice_19() {
        let p = Passwords::new(1, 1, HashPriority::Idle, []);
        let rescue = p.rescue.as_ref().unwrap();
        assert_eq!(thread_priority(rescue), (libc::SCHED_OTHER, HASHING_NICE));
    }

    #[test]
    fn a_checks_cost_is_its_cpu_time_not_the_time_it_waited() {
        let cost = CpuCost::start();
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            cost.took() < Duration::from_millis(100),
            "{:?}",
            cost.took()
        );
        // Spin until the thread has had a millisecond of CPU (a busy machine may take a while
        // to give it one), then check the clock saw it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while cost.took() < Duration::from_millis(1) && Instant::now() < deadline {
            std::hint::black_box(0u64);
        }
        assert!(cost.took() >= Duration::from_millis(1), "{:?}", cost.took());
    }

    #[tokio::test]
    async fn a_check_that_panics_fails_at_once() {
        // A long wait, so that a slow machine cannot turn the answer into `Busy`: only a wait
        // that ran out gives that.
        let max_wait = Duration::from_secs(30);
        let p = Passwords::with_max_wait(1, 1, HashPriority::Idle, [], max_wait);
        let started = Instant::now();
        let outcome = p.run(|| -> bool { panic!("a check went wrong") }).await;
        assert!(matches!(outcome, Err(PasswordError::Failed)), "{outcome:?}");
        assert!(started.elapsed() < max_wait, "{:?}", started.elapsed());
    }
}
