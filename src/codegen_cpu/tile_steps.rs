//! Step boundaries of an unrolled register tile: keeps the accumulators of a tile in the
//! same registers from one iteration of the loop around it to the next.
//!
//! A tile's update after unrolling is a flat sequence of stores to promoted variables
//! (`promote.rs`), `acc[r] = fma(a[r], b, acc[r])` for each row `r`, repeated for each
//! unrolled step of the reduction. Cranelift's mid-end places every pure value lazily,
//! where it is first used, elaborating an instruction's arguments in order; x86's FMA
//! writes its result over one of the multiplicands. The loop's back edge, the only use
//! of the tile's final values, then elaborates row by row, each row's *last* step first
//! (its broadcast before the chain of earlier steps): a broadcast lands in the register
//! the previous row's accumulator just freed, every result sits one register over from
//! where it started, and the back edge rotates all accumulators with one move each (12
//! moves per iteration of a 12 x 4 tile, about 5% of its FMA rate).
//!
//! Here a jump after each step passes the tile's variables to a new block, so each step
//! is elaborated before the next, and the direction alternates: the rows forward after
//! even steps, backward after odd ones. A forward step shifts every accumulator one
//! register over; the backward step after it shifts them back, so after an even number of
//! steps each accumulator is back in its own register. This is what Cranelift 0.135's
//! elaboration and register allocator were seen to do on the matmul's 12 x 4 tile (no
//! move left on the back edge), not something Cranelift promises: a later version may
//! need another order.
//!
//! Cranelift removes block parameters that receive one value only, so the jump is a
//! branch on a condition that always holds inside the loop (its counter below its end)
//! with a cold second edge. It runs where the sequence is made of whole stores of the
//! variables of promoted f32 or f64 buffers only, with FMA contraction on (elsewhere no
//! instruction ties its result to a multiplicand, and the branch would only cost), inside
//! a serial loop, the same set of at most [`MAX_TILE_VARS`] variables stored in each of an
//! even number of steps (2 or more): the register tiles of `cache_write("local")` +
//! unroll + vectorize with the reduction unrolled by an even factor.
//!
//! Requires: the promoted buffers of the position in `FnGen::promoted`, the loops around
//! it in `FnGen::loop_ends`. Ensures: the same values as lowering the stores one after
//! another.

use super::fngen::FnGen;
use crate::error::Result;
use crate::lower::ir::Stmt;
use crate::te::{DType, ExprNode};
use cranelift::codegen::ir::BlockArg;
use cranelift::prelude::*;

/// Most variables a tile may have for its steps to be separated (x86-64 has 16 vector
/// registers: a larger tile spills anyway).
pub(crate) const MAX_TILE_VARS: usize = 16;

#[cfg(test)]
thread_local! {
    /// Sequences split into steps on this thread (read by the tests).
    pub(crate) static SPLIT_TILES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl<'a, 'f> FnGen<'a, 'f> {
    /// Lower the sequence `v`: with a branch after each step where `v` is an unrolled
    /// register tile (the module doc), else statement by statement.
    ///
    /// Statements after the last one that writes a promoted buffer, where they read it
    /// through strided loads (a tile computed in registers, then copied out transposed),
    /// are lowered as a sequence of their own, so that those loads may be transposed in
    /// registers.
    pub(crate) fn gen_seq(&mut self, v: &[Stmt]) -> Result<()> {
        let split = self.copy_out_start(v);
        if split > 0 && split < v.len() {
            self.gen_seq(&v[..split])?;
            return self.gen_seq(&v[split..]);
        }
        let outer = std::mem::take(&mut self.transposed);
        self.prepare_transposed_loads(v)?;
        let done = self.gen_seq_steps(v);
        self.transposed = outer;
        done
    }

    /// The index after the last statement of `v` that writes a promoted buffer, if the
    /// statements after it read a promoted buffer through a strided load; else 0.
    fn copy_out_start(&self, v: &[Stmt]) -> usize {
        if self.promoted.is_empty() {
            return 0;
        }
        let writes_promoted = |s: &Stmt| {
            s.written_buffers()
                .iter()
                .any(|b| self.promoted.contains_key(b.as_str()))
        };
        let Some(last) = v.iter().rposition(writes_promoted) else {
            return 0;
        };
        let mut strided = false;
        for s in &v[last + 1..] {
            s.visit_exprs(&mut |e| {
                e.visit(&mut |x| {
                    if let ExprNode::Load(b, idx) = x.node() {
                        strided |=
                            self.promoted.contains_key(b.name()) && super::promote::is_strided(idx);
                    }
                    !strided
                })
            });
        }
        if strided {
            last + 1
        } else {
            0
        }
    }

    /// [`FnGen::gen_seq`] once the sequence's transposed loads are prepared.
    fn gen_seq_steps(&mut self, v: &[Stmt]) -> Result<()> {
        let Some(tile) = self.tile_steps(v) else {
            for x in v {
                self.gen_stmt(x)?;
            }
            return Ok(());
        };
        #[cfg(test)]
        SPLIT_TILES.with(|n| n.set(n.get() + 1));
        for (n, step) in v.chunks(tile.vars.len()).enumerate() {
            for x in step {
                self.gen_stmt(x)?;
            }
            self.step_boundary(&tile.vars, n % 2 == 1, tile.loop_end);
        }
        Ok(())
    }

    /// The steps of `v` if it is an unrolled register tile.
    fn tile_steps(&self, v: &[Stmt]) -> Option<TileSteps> {
        if !enabled() || !self.cx.fma {
            return None;
        }
        let loop_end = *self.loop_ends.last()?;
        let targets: Vec<Variable> = v
            .iter()
            .map(|x| match x {
                Stmt::Store { buf, .. }
                    if matches!(
                        self.promoted.get(buf.name()).map(|p| p.dt),
                        Some(DType::F32 | DType::F64)
                    ) =>
                {
                    self.promoted_store_var(x)
                }
                _ => None,
            })
            .collect::<Option<_>>()?;
        // A step ends where a variable is stored a second time.
        let step_len = (1..targets.len()).find(|&i| targets[..i].contains(&targets[i]))?;
        let steps = targets.len() / step_len;
        if step_len > MAX_TILE_VARS
            || !targets.len().is_multiple_of(step_len)
            || !steps.is_multiple_of(2)
        {
            return None;
        }
        // Every step stores the first one's variables, each once.
        let sorted = |step: &[Variable]| {
            let mut s = step.to_vec();
            s.sort_by_key(|v| v.as_u32());
            s
        };
        let first = sorted(&targets[..step_len]);
        let same = targets.chunks(step_len).all(|step| sorted(step) == first);
        same.then(|| TileSteps {
            vars: targets[..step_len].to_vec(),
            loop_end,
        })
    }

    /// End a step: pass `vars` (reversed with `backward`) to a new block, through a
    /// branch whose other edge, never taken, is cold.
    fn step_boundary(
        &mut self,
        vars: &[Variable],
        backward: bool,
        (counter, end): (Variable, Value),
    ) {
        let mut order: Vec<Variable> = vars.to_vec();
        if backward {
            order.reverse();
        }
        let next = self.b.create_block();
        let cold = self.b.create_block();
        self.b.set_cold_block(cold);
        let args: Vec<Value> = order.iter().map(|&v| self.b.use_var(v)).collect();
        let types: Vec<Type> = args
            .iter()
            .map(|&a| self.b.func.dfg.value_type(a))
            .collect();
        for &ty in &types {
            self.b.append_block_param(next, ty);
        }
        let args: Vec<BlockArg> = args.into_iter().map(BlockArg::Value).collect();
        // Inside the loop's body its counter is below its end.
        let iv = self.b.use_var(counter);
        let inside = self.b.ins().icmp(IntCC::SignedLessThan, iv, end);
        self.b.ins().brif(inside, next, &args, cold, &[]);
        self.b.switch_to_block(cold);
        self.b.seal_block(cold);
        // The values on the cold edge are never used. They are not the tile's (a second
        // use of a step's results would keep its loads from folding into the
        // instructions that use them) nor constants (Cranelift would hoist those out of
        // the loop and hold them in registers): values of the counter's bits, computed
        // on the cold edge only.
        let filler: Vec<BlockArg> = types
            .iter()
            .map(|&ty| BlockArg::Value(self.filler(ty, iv)))
            .collect();
        self.b.ins().jump(next, &filler);
        self.b.switch_to_block(next);
        self.b.seal_block(next);
        let params = self.b.block_params(next).to_vec();
        for (&v, p) in order.iter().zip(params) {
            self.b.def_var(v, p);
        }
    }

    /// A value of type `ty` made from the bits of the integer `iv`.
    fn filler(&mut self, ty: Type, iv: Value) -> Value {
        let lane = ty.lane_type();
        let from = self.b.func.dfg.value_type(iv);
        let int = Type::int_with_byte_size(lane.bytes() as u16)
            .expect("promoted variables have lanes of 1, 2, 4 or 8 bytes");
        let bits = match int.bits().cmp(&from.bits()) {
            std::cmp::Ordering::Less => self.b.ins().ireduce(int, iv),
            std::cmp::Ordering::Greater => self.b.ins().uextend(int, iv),
            std::cmp::Ordering::Equal => iv,
        };
        let scalar = if lane.is_float() {
            self.b.ins().bitcast(lane, MemFlagsData::new(), bits)
        } else {
            bits
        };
        if ty.is_vector() {
            self.b.ins().splat(ty, scalar)
        } else {
            scalar
        }
    }
}

/// Whether tiles are split into steps: unless `LOOPFORGE_TILE_STEPS=0` (for A/B timings;
/// read once per process).
pub(crate) fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("LOOPFORGE_TILE_STEPS").map_or(true, |v| v != "0"))
}

/// How an unrolled tile splits into steps.
struct TileSteps {
    /// The variables one step stores, in its order (as many as its stores).
    vars: Vec<Variable>,
    /// The innermost loop's counter and end.
    loop_end: (Variable, Value),
}
