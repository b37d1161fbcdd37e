//! The machine state and the instruction loop that executes a [`Program`].
//!
//! One [`Machine`] runs the host code; a GPU kernel ([`Instr::Launch`]) is handed to the
//! scheduler in `gpu.rs`, which runs each simulated thread on the same machine by
//! swapping its environment and private buffers in and out.

use super::memory::Buf;
use super::program::{Axis, Instr, MemClass, Program};
use super::value::{norm_int, Scalar, Value, R};

/// Why execution stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The code (host) or the kernel (thread) is finished.
    End,
    /// A thread reached a barrier; it resumes at this instruction.
    Barrier(usize),
}

/// Execution state.
pub(crate) struct Machine<'p> {
    /// The program run.
    pub prog: &'p Program,
    /// Variable values by slot (the current thread's inside a kernel).
    pub env: Vec<Value>,
    /// Buffers by slot; `None` outside their allocation.
    pub bufs: Vec<Option<Buf>>,
    /// Index of the current block (x, y, z) inside a kernel.
    pub block_idx: [i64; 3],
    /// Index of the current thread (x, y, z) inside a kernel.
    pub thread_idx: [i64; 3],
    /// Threads per block (x, y, z) inside a kernel.
    pub block_dim: [i64; 3],
}

impl<'p> Machine<'p> {
    /// A machine with every variable 0 and every buffer unallocated.
    pub(crate) fn new(prog: &'p Program) -> Machine<'p> {
        Machine {
            prog,
            env: vec![Value::S(Scalar::I(0)); prog.n_slots],
            bufs: (0..prog.bufs.len()).map(|_| None).collect(),
            block_idx: [0; 3],
            thread_idx: [0; 3],
            block_dim: [1; 3],
        }
    }

    /// Value of an integer slot (loop bookkeeping).
    fn slot_int(&self, s: usize) -> R<i64> {
        self.env[s]
            .as_int()
            .ok_or_else(|| "loop variable slot does not hold an integer".to_string())
    }

    /// Evaluate an integer scalar expression.
    pub(crate) fn eval_int(&mut self, e: &super::program::CExpr, what: &str) -> R<i64> {
        match self.eval(e)? {
            Value::S(Scalar::I(v)) => Ok(v),
            v => Err(format!("{} must be a scalar integer but is {:?}", what, v)),
        }
    }

    /// Run from instruction `pc` until the end of the code, the end of the kernel, or a
    /// barrier.
    pub(crate) fn exec(&mut self, mut pc: usize) -> R<Stop> {
        let prog = self.prog;
        while let Some(ins) = prog.code.get(pc) {
            match ins {
                Instr::Store { acc, value } => {
                    self.store(acc, value)?;
                    pc += 1;
                }
                Instr::Eval(e) => {
                    self.eval(e)?;
                    pc += 1;
                }
                Instr::Let { slot, value } => {
                    self.env[*slot] = self.eval(value)?;
                    pc += 1;
                }
                Instr::LoopInit {
                    var,
                    end,
                    dt,
                    min,
                    extent,
                    exit,
                } => {
                    let m = self.eval_int(min, "loop min")?;
                    let e = self.eval_int(extent, "loop extent")?;
                    if e <= 0 {
                        pc = *exit;
                    } else {
                        self.env[*var] = Value::S(Scalar::I(norm_int(*dt, m)));
                        self.env[*end] = Value::S(Scalar::I(m.saturating_add(e)));
                        pc += 1;
                    }
                }
                Instr::LoopNext { var, end, dt, body } => {
                    let v = self.slot_int(*var)? + 1;
                    if v < self.slot_int(*end)? {
                        self.env[*var] = Value::S(Scalar::I(norm_int(*dt, v)));
                        pc = *body;
                    } else {
                        pc += 1;
                    }
                }
                Instr::WarpLeaderOnly { target } => {
                    let [x, y, z] = self.thread_idx;
                    let [bx, by, _] = self.block_dim;
                    pc = if (x + bx * (y + by * z)) % 32 == 0 {
                        pc + 1
                    } else {
                        *target
                    };
                }
                Instr::JumpIfNot { cond, target } => match self.eval(cond)? {
                    Value::S(c) => {
                        pc = if super::value::truthy(c) {
                            pc + 1
                        } else {
                            *target
                        };
                    }
                    Value::V(v) => {
                        return Err(format!(
                            "if condition has {} lanes (must be scalar)",
                            v.len()
                        ))
                    }
                },
                Instr::Jump(t) => pc = *t,
                Instr::Alloc { buf, class, shape } => {
                    let mut dims = Vec::with_capacity(shape.len());
                    for e in shape {
                        dims.push(self.eval_int(e, "allocation extent")?);
                    }
                    let info = &prog.bufs[*buf];
                    let keep = *class == MemClass::Block
                        && matches!(&self.bufs[*buf], Some(b) if b.dims == dims);
                    if !keep {
                        self.bufs[*buf] = Some(Buf::uninit(info.dtype, dims, &info.name)?);
                    }
                    pc += 1;
                }
                Instr::Free { buf, class } => {
                    // Shared buffers stay until the block ends (other threads use them).
                    if *class != MemClass::Block {
                        self.bufs[*buf] = None;
                    }
                    pc += 1;
                }
                Instr::Launch(k) => {
                    self.launch(k, pc + 1)?;
                    pc = k.end;
                }
                Instr::Bind {
                    var,
                    dt,
                    axis,
                    min,
                    extent,
                    exit,
                } => {
                    let idx = match axis {
                        Axis::Block(d) => self.block_idx[*d],
                        Axis::Thread(d) => self.thread_idx[*d],
                    };
                    let e = self.eval_int(extent, "thread extent")?;
                    if idx >= e {
                        pc = *exit;
                    } else {
                        let m = self.eval_int(min, "loop min")?;
                        self.env[*var] = Value::S(Scalar::I(norm_int(*dt, m.wrapping_add(idx))));
                        pc += 1;
                    }
                }
                Instr::Barrier => return Ok(Stop::Barrier(pc + 1)),
                Instr::KernelEnd => return Ok(Stop::End),
            }
        }
        Ok(Stop::End)
    }
}
