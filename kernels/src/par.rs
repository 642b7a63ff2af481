//! The one door to rayon. Kernels split their outputs into chunks and hand each chunk to a task
//! body. On one thread the body runs in a plain loop, compiled with the kernel (inlined and
//! vectorised as the kernel's own loop); on several, it reaches rayon as `&dyn Fn`, so rayon's
//! machinery (jobs, splitting, joins) is instantiated once per element type rather than once per
//! kernel closure — it was 40% of the code the portable operators compiled to. A call through
//! `dyn` per chunk costs nothing next to a chunk's work.
//!
//! Every function runs on the calling thread, in order, when `parallel` is false, and otherwise on
//! rayon's current pool (the runtime installs its own). Results never depend on which: each task
//! writes only its own chunk.

use rayon::prelude::*;

use crate::KResult;

pub mod trace {
    //! Worker-thread spans for profiles (`ferrite profile`'s per-thread trace tracks): while a
    //! [`record`] guard lives (on any thread), each parallel call records, for every pool thread that ran a share
    //! of it, when its first chunk started and its last ended; the thread that made the call
    //! collects them with [`take`]. Off (the default), a parallel call costs one relaxed atomic
    //! load and each chunk one `Option` test.

    use std::cell::RefCell;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Instant;

    /// Live [`Recording`] guards: profiled runs on any thread.
    static ACTIVE: AtomicUsize = AtomicUsize::new(0);

    /// Spans kept per calling thread until taken (older ones are dropped beyond this).
    const MAX_KEPT: usize = 1 << 14;

    thread_local! {
        static SINK: RefCell<Vec<WorkerSpan>> = const { RefCell::new(Vec::new()) };
    }

    /// One pool thread's share of one parallel call.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct WorkerSpan {
        /// The thread's index in the pool (the pool's size for a thread outside it).
        pub thread: usize,
        /// When its first chunk started.
        pub start: Instant,
        /// When its last chunk ended.
        pub end: Instant,
        /// Chunks it ran.
        pub chunks: usize,
    }

    /// Records while the returned guard lives. Guards nest and overlap: profiled runs on
    /// several threads each hold one, and recording stops when the last is dropped.
    pub fn record() -> Recording {
        ACTIVE.fetch_add(1, Ordering::Relaxed);
        Recording(())
    }

    /// Keeps recording on until dropped (see [`record`]).
    #[derive(Debug)]
    pub struct Recording(());

    impl Drop for Recording {
        fn drop(&mut self) {
            ACTIVE.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether recording is on.
    pub fn enabled() -> bool {
        ACTIVE.load(Ordering::Relaxed) > 0
    }

    /// The spans of the parallel calls this thread made since the last `take`.
    pub fn take() -> Vec<WorkerSpan> {
        SINK.with(|s| std::mem::take(&mut *s.borrow_mut()))
    }

    /// Collects one parallel call's spans.
    pub(crate) struct Recorder {
        slots: Vec<Mutex<Option<WorkerSpan>>>,
    }

    impl Recorder {
        /// A recorder when recording is on.
        pub(crate) fn start() -> Option<Recorder> {
            enabled()
                .then(|| Recorder { slots: (0..=rayon::current_num_threads()).map(|_| Mutex::new(None)).collect() })
        }

        /// Notes a chunk that ran on this thread from `start` until now.
        pub(crate) fn chunk(&self, start: Instant) {
            let end = Instant::now();
            let thread = rayon::current_thread_index().unwrap_or(self.slots.len() - 1).min(self.slots.len() - 1);
            if let Ok(mut slot) = self.slots[thread].lock() {
                let span = slot.get_or_insert(WorkerSpan { thread, start, end, chunks: 0 });
                span.start = span.start.min(start);
                span.end = span.end.max(end);
                span.chunks += 1;
            }
        }

        /// Hands the spans to the calling thread's [`take`].
        pub(crate) fn finish(self) {
            let spans = self.slots.into_iter().filter_map(|m| m.into_inner().ok().flatten());
            SINK.with(|s| {
                let mut s = s.borrow_mut();
                s.extend(spans);
                if s.len() > MAX_KEPT {
                    let extra = s.len() - MAX_KEPT;
                    s.drain(..extra);
                }
            });
        }
    }

    /// Runs `g`, noting it as a chunk when recording.
    #[inline]
    pub(crate) fn chunk<R>(rec: Option<&Recorder>, g: impl FnOnce() -> R) -> R {
        match rec {
            None => g(),
            Some(r) => {
                let t = Instant::now();
                let out = g();
                r.chunk(t);
                out
            }
        }
    }
}

use trace::{chunk, Recorder};

/// Runs a parallel call with its chunks recorded when tracing is on.
fn recorded<R>(body: impl FnOnce(Option<&Recorder>) -> R) -> R {
    let rec = Recorder::start();
    let out = body(rec.as_ref());
    if let Some(r) = rec {
        r.finish();
    }
    out
}

/// The task body of [`chunks_with_input`].
pub type TaskIn<'f, O, I> = &'f (dyn Fn(usize, &mut [O], &[I]) + Sync);
/// The task body of [`chunks2`].
pub type Task2<'f, A, B> = &'f (dyn Fn(usize, &mut [A], &mut [B]) + Sync);
/// The task body of [`try_chunks3`].
pub type Task3<'f, A, B, C> = &'f (dyn Fn(usize, &mut [A], &mut [B], &mut [C]) -> KResult + Sync);

/// Calls `f(i, chunk)` for the `size`-element chunks of `out` (the last may be shorter).
#[inline]
pub fn chunks<O: Send, F: Fn(usize, &mut [O]) + Sync>(out: &mut [O], size: usize, parallel: bool, f: F) {
    let size = size.max(1);
    if parallel {
        chunks_on_pool(out, size, &f);
    } else {
        out.chunks_mut(size).enumerate().for_each(|(i, c)| f(i, c));
    }
}

fn chunks_on_pool<O: Send>(out: &mut [O], size: usize, f: &(dyn Fn(usize, &mut [O]) + Sync)) {
    recorded(|r| out.par_chunks_mut(size).enumerate().for_each(|(i, c)| chunk(r, || f(i, c))));
}

/// Calls `f(i, out_chunk, in_chunk)` for chunk `i` of `out` (`size` elements) and the matching
/// chunk of `input` (`in_size` elements; the shorter split decides how many): both reach the
/// task as arguments, so the compiler knows they do not overlap and vectorises the task's loop.
#[inline]
pub fn chunks_with_input<O: Send, I: Sync, F: Fn(usize, &mut [O], &[I]) + Sync>(
    out: &mut [O],
    size: usize,
    input: &[I],
    in_size: usize,
    parallel: bool,
    f: F,
) {
    let (size, in_size) = (size.max(1), in_size.max(1));
    if parallel {
        chunks_with_input_on_pool(out, size, input, in_size, &f);
    } else {
        out.chunks_mut(size).zip(input.chunks(in_size)).enumerate().for_each(|(i, (o, x))| f(i, o, x));
    }
}

fn chunks_with_input_on_pool<O: Send, I: Sync>(
    out: &mut [O],
    size: usize,
    input: &[I],
    in_size: usize,
    f: TaskIn<'_, O, I>,
) {
    recorded(|r| {
        out.par_chunks_mut(size)
            .zip(input.par_chunks(in_size))
            .enumerate()
            .for_each(|(i, (o, x))| chunk(r, || f(i, o, x)))
    });
}

/// [`chunks`] whose tasks can fail: the first error is returned.
#[inline]
pub fn try_chunks<O: Send, F: Fn(usize, &mut [O]) -> KResult + Sync>(
    out: &mut [O],
    size: usize,
    parallel: bool,
    f: F,
) -> KResult {
    let size = size.max(1);
    if parallel {
        try_chunks_on_pool(out, size, &f)
    } else {
        out.chunks_mut(size).enumerate().try_for_each(|(i, c)| f(i, c))
    }
}

fn try_chunks_on_pool<O: Send>(out: &mut [O], size: usize, f: &(dyn Fn(usize, &mut [O]) -> KResult + Sync)) -> KResult {
    recorded(|r| out.par_chunks_mut(size).enumerate().try_for_each(|(i, c)| chunk(r, || f(i, c))))
}

/// [`try_chunks`] with a scratch value per worker, made by `init` (once per task sequence, not per
/// chunk).
#[inline]
pub fn try_chunks_with<O: Send, S, F: Fn(&mut S, usize, &mut [O]) -> KResult + Sync>(
    out: &mut [O],
    size: usize,
    parallel: bool,
    init: &(dyn Fn() -> S + Sync),
    f: F,
) -> KResult {
    let size = size.max(1);
    if parallel {
        try_chunks_with_on_pool(out, size, init, &f)
    } else {
        let mut s = init();
        out.chunks_mut(size).enumerate().try_for_each(|(i, c)| f(&mut s, i, c))
    }
}

fn try_chunks_with_on_pool<O: Send, S>(
    out: &mut [O],
    size: usize,
    init: &(dyn Fn() -> S + Sync),
    f: &(dyn Fn(&mut S, usize, &mut [O]) -> KResult + Sync),
) -> KResult {
    recorded(|r| out.par_chunks_mut(size).enumerate().try_for_each_init(init, |s, (i, c)| chunk(r, || f(s, i, c))))
}

/// Calls `f(i, a_chunk, b_chunk)` for chunk `i` of two outputs split in step (`sa` and `sb`
/// elements per chunk; as many chunks as the shorter split gives).
#[inline]
pub fn chunks2<A: Send, B: Send, F: Fn(usize, &mut [A], &mut [B]) + Sync>(
    a: &mut [A],
    sa: usize,
    b: &mut [B],
    sb: usize,
    parallel: bool,
    f: F,
) {
    let (sa, sb) = (sa.max(1), sb.max(1));
    if parallel {
        chunks2_on_pool(a, sa, b, sb, &f);
    } else {
        a.chunks_mut(sa).zip(b.chunks_mut(sb)).enumerate().for_each(|(i, (x, y))| f(i, x, y));
    }
}

fn chunks2_on_pool<A: Send, B: Send>(a: &mut [A], sa: usize, b: &mut [B], sb: usize, f: Task2<'_, A, B>) {
    recorded(|r| {
        a.par_chunks_mut(sa).zip(b.par_chunks_mut(sb)).enumerate().for_each(|(i, (x, y))| chunk(r, || f(i, x, y)))
    });
}

/// [`chunks2`] for three outputs, whose tasks can fail.
#[inline]
#[allow(clippy::too_many_arguments)]
pub fn try_chunks3<A: Send, B: Send, C: Send, F: Fn(usize, &mut [A], &mut [B], &mut [C]) -> KResult + Sync>(
    a: &mut [A],
    sa: usize,
    b: &mut [B],
    sb: usize,
    c: &mut [C],
    sc: usize,
    parallel: bool,
    f: F,
) -> KResult {
    let (sa, sb, sc) = (sa.max(1), sb.max(1), sc.max(1));
    if parallel {
        try_chunks3_on_pool(a, sa, b, sb, c, sc, &f)
    } else {
        a.chunks_mut(sa)
            .zip(b.chunks_mut(sb).zip(c.chunks_mut(sc)))
            .enumerate()
            .try_for_each(|(i, (x, (y, z)))| f(i, x, y, z))
    }
}

fn try_chunks3_on_pool<A: Send, B: Send, C: Send>(
    a: &mut [A],
    sa: usize,
    b: &mut [B],
    sb: usize,
    c: &mut [C],
    sc: usize,
    f: Task3<'_, A, B, C>,
) -> KResult {
    recorded(|r| {
        a.par_chunks_mut(sa)
            .zip(b.par_chunks_mut(sb).zip(c.par_chunks_mut(sc)))
            .enumerate()
            .try_for_each(|(i, (x, (y, z)))| chunk(r, || f(i, x, y, z)))
    })
}

/// Calls `f(i)` for `i` in `0..n`, stopping at the first error.
pub fn try_indices(n: usize, parallel: bool, f: &(dyn Fn(usize) -> KResult + Sync)) -> KResult {
    if parallel {
        recorded(|r| (0..n).into_par_iter().try_for_each(|i| chunk(r, || f(i))))
    } else {
        (0..n).try_for_each(f)
    }
}

/// `[f(0), f(1), ..., f(n - 1)]`, computed with a scratch value per worker made by `init`.
pub fn map_indices_with<T: Send, S>(
    n: usize,
    parallel: bool,
    init: &(dyn Fn() -> S + Sync),
    f: &(dyn Fn(&mut S, usize) -> T + Sync),
) -> Vec<T> {
    if parallel {
        recorded(|r| (0..n).into_par_iter().map_init(init, |s, i| chunk(r, || f(s, i))).collect())
    } else {
        let mut s = init();
        (0..n).map(|i| f(&mut s, i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_spans_cover_every_chunk_of_a_traced_call() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
        let mut out = vec![0u32; 64];
        let spans = pool.install(|| {
            trace::take();
            let recording = trace::record();
            chunks(&mut out, 4, true, |i, c| c.iter_mut().for_each(|x| *x = i as u32));
            drop(recording);
            trace::take()
        });
        assert_eq!(spans.iter().map(|s| s.chunks).sum::<usize>(), 16, "{spans:?}");
        assert!(spans.iter().all(|s| s.thread < 2 && s.end >= s.start));
        assert_eq!(out[63], 15);
        // Off: nothing recorded.
        let spans = pool.install(|| {
            chunks(&mut out, 4, true, |_, c| c.iter_mut().for_each(|x| *x = 0));
            trace::take()
        });
        assert!(spans.is_empty());
    }
}
