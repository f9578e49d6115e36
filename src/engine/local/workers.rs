//! A persistent team of threads for the native GGUF path's parallel steps. A token's
//! forward pass has a few hundred of them (every product, every attention), each a few
//! microseconds of work: a rayon fork-join wakes sleeping threads for each, where
//! llama.cpp's threads spin between steps. Here the helpers spin on a generation counter
//! for a while after each step, then sleep on a condition variable until the next one.
//!
//! Parts are claimed from a shared counter, so how work is split never changes what a
//! part computes: each output is written by exactly one part.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle helper spins before it sleeps: longer than the serial work between
/// two steps of a token (norms, RoPE, sampling), short enough not to burn a core when
/// generation stops.
const SPIN: Duration = Duration::from_millis(2);

/// `f(i, part)` for the `chunk`-long parts of `out` (the last may be shorter), spread over
/// the team; returns when all are done.
pub fn for_each_chunk_mut<T: Send>(
    out: &mut [T],
    chunk: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let chunk = chunk.max(1);
    let len = out.len();
    let base = SharedPtr(out.as_mut_ptr());
    run(len.div_ceil(chunk), &|i| {
        let start = i * chunk;
        let end = (start + chunk).min(len);
        // SAFETY: part i covers start..end only, parts are disjoint and each is claimed
        // once, and `out` stays borrowed until `run` returns after every part is done.
        let part = unsafe { std::slice::from_raw_parts_mut(base.get().add(start), end - start) };
        f(i, part);
    });
}

/// The number of threads that work on a step (the caller and its helpers).
pub fn threads() -> usize {
    team().helpers + 1
}

struct SharedPtr<T>(*mut T);
// SAFETY: only used to hand disjoint parts of one slice to the team (above).
unsafe impl<T: Send> Sync for SharedPtr<T> {}
impl<T> SharedPtr<T> {
    fn get(&self) -> *mut T {
        self.0
    }
}

type Job<'a> = dyn Fn(usize) + Sync + 'a;

struct Team {
    helpers: usize,
    shared: Arc<Shared>,
    /// One step at a time: generators on different threads take turns.
    step: Mutex<()>,
}

struct Shared {
    generation: AtomicUsize,
    /// The current step's job, its lifetime erased; valid while a step is running.
    job: Mutex<Option<JobPtr>>,
    parts: AtomicUsize,
    next: AtomicUsize,
    /// Helpers that have not finished the current step.
    busy: AtomicUsize,
    panicked: AtomicBool,
    sleepers: AtomicUsize,
    wake: (Mutex<()>, Condvar),
}

#[derive(Clone, Copy)]
struct JobPtr(*const Job<'static>);
// SAFETY: the pointee is `Sync` and outlives every use (see `run`).
unsafe impl Send for JobPtr {}

fn team() -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(|| {
        // `--threads` reaches here through RAYON_NUM_THREADS, like candle's pool.
        let helpers = rayon::current_num_threads().saturating_sub(1);
        let shared = Arc::new(Shared {
            generation: AtomicUsize::new(0),
            job: Mutex::new(None),
            parts: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            wake: (Mutex::new(()), Condvar::new()),
        });
        for i in 0..helpers {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("assay-gguf-{i}"))
                .spawn(move || helper(&shared))
                .expect("cannot start a compute thread");
        }
        Team {
            helpers,
            shared,
            step: Mutex::new(()),
        }
    })
}

/// Runs `f(0..parts)` on the caller and the helpers.
fn run(parts: usize, f: &Job<'_>) {
    let team = team();
    if team.helpers == 0 || parts <= 1 {
        (0..parts).for_each(f);
        return;
    }
    let _turn = team.step.lock().unwrap_or_else(|e| e.into_inner());
    let s = &team.shared;
    // SAFETY (lifetime erasure): helpers use the job only between seeing the new
    // generation and decrementing `busy`, and this function waits for `busy` to reach 0
    // before returning, so `f` outlives every use.
    let erased: *const Job<'static> =
        unsafe { std::mem::transmute::<&Job<'_>, &'static Job<'static>>(f) };
    *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(JobPtr(erased));
    s.parts.store(parts, SeqCst);
    s.next.store(0, SeqCst);
    s.busy.store(team.helpers, SeqCst);
    s.generation.fetch_add(1, SeqCst);
    if s.sleepers.load(SeqCst) > 0 {
        let _g = s.wake.0.lock().unwrap_or_else(|e| e.into_inner());
        s.wake.1.notify_all();
    }
    claim_parts(s, f);
    while s.busy.load(SeqCst) > 0 {
        std::hint::spin_loop();
    }
    *s.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
    if s.panicked.swap(false, SeqCst) {
        panic!("a compute thread panicked");
    }
}

fn claim_parts(s: &Shared, f: &Job<'_>) {
    let parts = s.parts.load(SeqCst);
    loop {
        let i = s.next.fetch_add(1, SeqCst);
        if i >= parts {
            return;
        }
        f(i);
    }
}

fn helper(s: &Shared) {
    let mut seen = 0;
    loop {
        wait_for_step(s, seen);
        seen = s.generation.load(SeqCst);
        let job = *s.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(JobPtr(f)) = job {
            // SAFETY: see `run`: the job stays alive until `busy` reaches 0.
            let f = unsafe { &*f };
            if catch_unwind(AssertUnwindSafe(|| claim_parts(s, f))).is_err() {
                s.panicked.store(true, SeqCst);
            }
        }
        s.busy.fetch_sub(1, SeqCst);
    }
}

/// Spins until the generation moves past `seen`, then sleeps if it does not soon.
fn wait_for_step(s: &Shared, seen: usize) {
    let start = Instant::now();
    let mut spins = 0u32;
    while s.generation.load(SeqCst) == seen {
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1024) && start.elapsed() > SPIN {
            let mut guard = s.wake.0.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, SeqCst);
            while s.generation.load(SeqCst) == seen {
                guard = s.wake.1.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
            s.sleepers.fetch_sub(1, SeqCst);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_runs_once_and_sees_its_own_slice() {
        for len in [0usize, 1, 5, 64, 1000] {
            let mut out = vec![0usize; len];
            for_each_chunk_mut(&mut out, 7, |i, part| {
                for (j, v) in part.iter_mut().enumerate() {
                    *v += i * 7 + j + 1;
                }
            });
            assert_eq!(out, (1..=len).collect::<Vec<_>>());
        }
    }

    #[test]
    fn steps_from_several_threads_take_turns() {
        std::thread::scope(|scope| {
            for t in 0..3 {
                scope.spawn(move || {
                    for _ in 0..200 {
                        let mut out = vec![t; 100];
                        for_each_chunk_mut(&mut out, 3, |_, part| {
                            part.iter_mut().for_each(|v| *v += 1)
                        });
                        assert!(out.iter().all(|&v| v == t + 1));
                    }
                });
            }
        });
    }
}
