//! Simulation of a GPU kernel launch: blocks one after another, and inside a block every
//! thread, scheduled deterministically so that missing barriers show.
//!
//! The launch dimensions are the largest extent of the loops bound to each axis
//! (evaluated when the kernel starts). Each thread of a block executes the whole kernel
//! body; a loop bound to an axis binds its variable to the thread's (or block's) index
//! there, and is skipped by threads whose index is not below its extent. Code outside the
//! `threadIdx` loops is therefore run by every thread, as on a GPU.
//!
//! Scheduling: thread 0 runs until it reaches a barrier (or finishes), then thread 1, and
//! so on (threads numbered x fastest); when every thread waits at the same barrier they
//! all continue, in the same order. A thread thus runs as far ahead of the others as
//! the barriers allow: a read of another thread's data that no barrier separates from
//! its write sees it too early or too late, so a missing barrier changes the result. A
//! barrier that only some threads reach (others finished, or wait at a different
//! barrier) is an error.

use super::exec::{Machine, Stop};
use super::memory::Buf;
use super::program::{Axis, KernelInfo};
use super::value::{Value, R};

/// Largest number of threads per block the simulation accepts.
const MAX_THREADS: i64 = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Waiting,
    Done,
}

/// A simulated thread: where it is, its variables and its private (`local`) buffers.
struct Thread {
    pc: usize,
    env: Vec<Value>,
    bufs: Vec<Option<Buf>>,
    idx: [i64; 3],
    state: State,
}

impl<'p> Machine<'p> {
    /// Run the kernel whose code starts at `start`.
    pub(crate) fn launch(&mut self, k: &KernelInfo, start: usize) -> R<()> {
        let mut grid: [Option<i64>; 3] = [None; 3];
        let mut block: [Option<i64>; 3] = [None; 3];
        for (axis, tag, e) in &k.dims {
            let v = self.eval_int(e, "thread extent").map_err(|m| {
                format!(
                    "cannot compute the launch extent of {} when the kernel starts: {}",
                    tag, m
                )
            })?;
            let slot = match axis {
                Axis::Block(d) => &mut grid[*d],
                Axis::Thread(d) => &mut block[*d],
            };
            *slot = Some(slot.map_or(v, |o| o.max(v)));
        }
        let grid = grid.map(|x| x.unwrap_or(1).max(0));
        let block = block.map(|x| x.unwrap_or(1).max(0));
        let nthreads = block
            .iter()
            .try_fold(1i64, |a, &b| a.checked_mul(b))
            .unwrap_or(i64::MAX);
        if nthreads > MAX_THREADS {
            return Err(format!(
                "kernel launch with {:?} threads per block (more than {})",
                block, MAX_THREADS
            ));
        }
        let r = self.run_grid(k, start, grid, block);
        for &s in &k.block_bufs {
            self.bufs[s] = None;
        }
        r
    }

    fn run_grid(&mut self, k: &KernelInfo, start: usize, grid: [i64; 3], block: [i64; 3]) -> R<()> {
        for bz in 0..grid[2] {
            for by in 0..grid[1] {
                for bx in 0..grid[0] {
                    for &s in &k.block_bufs {
                        self.bufs[s] = None;
                    }
                    self.block_idx = [bx, by, bz];
                    self.run_block(k, start, block)?;
                }
            }
        }
        Ok(())
    }

    /// Exchange the machine's environment and private buffers with the thread's.
    fn swap(&mut self, t: &mut Thread, k: &KernelInfo) {
        std::mem::swap(&mut self.env, &mut t.env);
        for (j, &s) in k.thread_bufs.iter().enumerate() {
            std::mem::swap(&mut self.bufs[s], &mut t.bufs[j]);
        }
    }

    fn run_block(&mut self, k: &KernelInfo, start: usize, dims: [i64; 3]) -> R<()> {
        let n = dims[0] * dims[1] * dims[2];
        self.block_dim = dims;
        let mut threads: Vec<Thread> = (0..n)
            .map(|lin| Thread {
                pc: start,
                env: self.env.clone(),
                bufs: k.thread_bufs.iter().map(|_| None).collect(),
                idx: [
                    lin % dims[0],
                    (lin / dims[0]) % dims[1],
                    lin / (dims[0] * dims[1]),
                ],
                state: State::Running,
            })
            .collect();
        loop {
            for t in threads.iter_mut().filter(|t| t.state == State::Running) {
                self.swap(t, k);
                self.thread_idx = t.idx;
                let r = self.exec(t.pc);
                self.swap(t, k);
                match r.map_err(|m| {
                    format!("{} (block {:?}, thread {:?})", m, self.block_idx, t.idx)
                })? {
                    Stop::Barrier(pc) => {
                        t.pc = pc;
                        t.state = State::Waiting;
                    }
                    Stop::End => t.state = State::Done,
                }
            }
            let waiting: Vec<&Thread> = threads
                .iter()
                .filter(|t| t.state == State::Waiting)
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if waiting.len() as i64 != n {
                let done: Vec<[i64; 3]> = threads
                    .iter()
                    .filter(|t| t.state == State::Done)
                    .take(4)
                    .map(|t| t.idx)
                    .collect();
                return Err(format!(
                    "barrier divergence in block {:?}: {} of {} threads wait at a barrier that threads {:?}... never reach",
                    self.block_idx,
                    waiting.len(),
                    n,
                    done
                ));
            }
            if waiting.iter().any(|t| t.pc != waiting[0].pc) {
                let other = waiting
                    .iter()
                    .find(|t| t.pc != waiting[0].pc)
                    .map(|t| t.idx);
                return Err(format!(
                    "barrier divergence in block {:?}: threads {:?} and {:?} wait at different barriers",
                    self.block_idx,
                    waiting[0].idx,
                    other.unwrap_or_default()
                ));
            }
            for t in threads.iter_mut() {
                t.state = State::Running;
            }
        }
    }
}
