//! Statement lowering: serial loops (tested at the top from 16 iterations, else at the
//! bottom), conditionals, sequences, stores, allocations
//! (aligned stack slots for small constant sizes, the heap otherwise), lets and the markers
//! with no code. Parallel loops are handed to `parallel.rs`.

use super::fngen::{unsupported, Binding, FnGen};
use super::helpers::{ALLOC, FREE};
use super::repr::{scalar_type, Val};
use crate::error::Result;
use crate::lower::ir::{Buffer, For, ForKind, Stmt};
use crate::te::DType;
use cranelift::prelude::*;

/// Loops of at least this many iterations (or of a number not known at compile time) test
/// their condition at the top; shorter ones at the bottom (see `gen_for`).
const TOP_TEST_MIN: i64 = 16;

/// Largest constant-size allocation placed on the stack, in bytes.
pub(crate) const STACK_ALLOC_MAX: u64 = 64 * 1024;
/// Most stack bytes one function gives to allocations (rayon workers have small stacks).
pub(crate) const STACK_TOTAL_MAX: u64 = 256 * 1024;

impl<'a, 'f> FnGen<'a, 'f> {
    /// Lower a statement at the current position.
    pub fn gen_stmt(&mut self, s: &Stmt) -> Result<()> {
        match s {
            Stmt::For(f) => self.gen_for(f),
            Stmt::If { cond, then, els } => self.gen_if(cond, then, els.as_deref()),
            Stmt::Seq(v) => self.gen_seq(v),
            Stmt::Store { buf, indices, value } => self.gen_store(buf, indices, value),
            Stmt::Allocate { buf, body } => self.gen_allocate(buf, body),
            Stmt::Let { var, value, body } => {
                let mut val = self.gen_expr(value)?;
                if val.lanes == 1 && val.dt != var.dtype() {
                    val = self.cast(val, var.dtype())?;
                }
                let prev = self.bind_var(var, Binding::Value(val));
                let r = self.gen_stmt(body);
                self.unbind_var(var, prev);
                r
            }
            Stmt::Produce { body, .. } => self.gen_stmt(body),
            Stmt::Evaluate(e) => self.gen_expr(e).map(|_| ()),
            Stmt::Intrinsic(c) => self.gen_intrinsic(c),
            Stmt::Barrier => Err(unsupported(
                "a thread barrier (__syncthreads) has no meaning on the CPU: the schedule uses GPU-only \
                 features; use Target::cuda",
            )),
            Stmt::NoOp => Ok(()),
        }
    }

    /// A scalar integer of the loop variable's type.
    fn loop_bound(&mut self, e: &crate::te::Expr, dt: DType) -> Result<Value> {
        let v = self.gen_expr(e)?;
        if v.is_vec() {
            return Err(crate::error::internal(
                format!("vector loop bound {}", e),
                self.src,
            ));
        }
        Ok(self.cast(v, dt)?.v)
    }

    fn gen_for(&mut self, f: &For) -> Result<()> {
        match &f.kind {
            ForKind::ThreadBinding(t) => {
                return Err(unsupported(format!(
                    "loop {} is bound to GPU thread axis {}; the CPU backend cannot run it: use Target::cuda \
                     (or remove the bind from the schedule)",
                    f.var.name(),
                    t
                )))
            }
            ForKind::Parallel if !self.in_parallel => return self.gen_parallel(f),
            _ => {}
        }
        let dt = if f.var.dtype() == DType::I32 {
            DType::I32
        } else {
            DType::I64
        };
        let ext_c = f.extent.as_int();
        if matches!(ext_c, Some(n) if n <= 0) {
            return Ok(());
        }
        let min = self.loop_bound(&f.min, dt)?;
        if ext_c == Some(1) {
            // A single iteration: no loop at all.
            let prev = self.bind_var(&f.var, Binding::Value(Val::scalar(min, dt)));
            let r = self.gen_stmt(&f.body);
            self.unbind_var(&f.var, prev);
            return r;
        }
        let ext = self.loop_bound(&f.extent, dt)?;
        let end = if f.min.as_int() == Some(0) {
            ext
        } else {
            self.b.ins().iadd(min, ext)
        };
        let ty = scalar_type(dt);
        let var = self.b.declare_var(ty);
        self.b.def_var(var, min);
        let body = self.b.create_block();
        let exit = self.b.create_block();
        // The guard of a loop whose extent is not known precedes a pre-header, which runs
        // only when the loop does: code Cranelift hoists there never runs for an empty
        // loop.
        if ext_c.is_none() {
            let pre = self.b.create_block();
            let c = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, ext, 0);
            self.b.ins().brif(c, pre, &[], exit, &[]);
            self.b.switch_to_block(pre);
            self.b.seal_block(pre);
        }
        // Loops of `TOP_TEST_MIN` or more iterations (or an unknown number) test at the
        // top: a header branches into the body or out, the body jumps back. The values
        // the body leaves for the next iteration are then used once, by that jump, and
        // the code after the loop reads the header's: a body that branches back to
        // itself would also pass them out of the loop, a second use, which keeps
        // Cranelift from folding a load into the instruction that uses it (a broadcast
        // load into `vbroadcastss` from memory). Shorter loops (a padded row, a window)
        // branch back from the bottom: one branch per iteration instead of two, which
        // costs less than the fold gains there (a 7x7 depthwise layer ran 1.3-2.5x
        // slower with every loop testing at the top).
        let top_test = ext_c.is_none_or(|n| n >= TOP_TEST_MIN);
        let header = if top_test {
            let header = self.b.create_block();
            self.b.ins().jump(header, &[]);
            self.b.switch_to_block(header);
            let iv = self.b.use_var(var);
            // The exit first: Cranelift's block order then puts the body right after the
            // header (the branch out falls through while the loop runs).
            let done = self.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, iv, end);
            self.b.ins().brif(done, exit, &[], body, &[]);
            Some(header)
        } else {
            self.b.ins().jump(body, &[]);
            None
        };
        self.b.switch_to_block(body);
        if top_test {
            self.b.seal_block(body);
        }
        self.loop_ends.push((var, end));
        let prev = self.bind_var(&f.var, Binding::Loop(var, dt));
        let r = self.gen_stmt(&f.body);
        self.unbind_var(&f.var, prev);
        self.loop_ends.pop();
        r?;
        let iv = self.b.use_var(var);
        let next = self.b.ins().iadd_imm_s(iv, 1);
        self.b.def_var(var, next);
        match header {
            Some(header) => {
                self.b.ins().jump(header, &[]);
                self.b.seal_block(header);
            }
            None => {
                let more = self.b.ins().icmp(IntCC::SignedLessThan, next, end);
                self.b.ins().brif(more, body, &[], exit, &[]);
                self.b.seal_block(body);
            }
        }
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
        Ok(())
    }

    fn gen_if(&mut self, cond: &crate::te::Expr, then: &Stmt, els: Option<&Stmt>) -> Result<()> {
        let c = self.gen_expr(cond)?;
        if c.is_vec() {
            return Err(crate::error::internal(
                format!("vector condition in if statement: {}", cond),
                self.src,
            ));
        }
        let c = self.cast(c, DType::Bool)?;
        let then_b = self.b.create_block();
        let merge = self.b.create_block();
        let else_b = if els.is_some() {
            self.b.create_block()
        } else {
            merge
        };
        self.b.ins().brif(c.v, then_b, &[], else_b, &[]);
        self.cond_depth += 1;
        let r = self.gen_branches(then, els, then_b, else_b, merge);
        self.cond_depth -= 1;
        r?;
        self.b.switch_to_block(merge);
        self.b.seal_block(merge);
        Ok(())
    }

    fn gen_branches(
        &mut self,
        then: &Stmt,
        els: Option<&Stmt>,
        then_b: Block,
        else_b: Block,
        merge: Block,
    ) -> Result<()> {
        self.b.switch_to_block(then_b);
        self.b.seal_block(then_b);
        self.gen_stmt(then)?;
        self.b.ins().jump(merge, &[]);
        if let Some(e) = els {
            self.b.switch_to_block(else_b);
            self.b.seal_block(else_b);
            self.gen_stmt(e)?;
            self.b.ins().jump(merge, &[]);
        }
        Ok(())
    }

    fn gen_allocate(&mut self, buf: &Buffer, body: &Stmt) -> Result<()> {
        // A buffer of the same name allocated outside is shadowed here: its frozen state
        // is not this one's (restored when the scope ends). Writers are found by name,
        // so a frozen statement cannot hold a written buffer of that name; this keeps an
        // unwritten one from inheriting the state all the same.
        let shadowed_frozen = self.frozen.remove(buf.name());
        let r = self.gen_allocate_scope(buf, body);
        if shadowed_frozen {
            self.frozen.insert(buf.name().to_string());
        }
        r
    }

    fn gen_allocate_scope(&mut self, buf: &Buffer, body: &Stmt) -> Result<()> {
        let elem = buf.dtype().bytes() as u64;
        let const_elems: Option<u64> = buf.shape().iter().try_fold(1u64, |acc, d| {
            d.as_int()
                .and_then(|v| u64::try_from(v).ok())
                .and_then(|v| acc.checked_mul(v))
        });
        if let Some(lanes) = super::promote::plan(buf, body, !self.in_parallel) {
            let p = self.promote_buffer(buf, lanes)?;
            let prev = self.promoted.insert(buf.name().to_string(), p);
            let r = self.gen_stmt(body);
            match prev {
                Some(p) => self.promoted.insert(buf.name().to_string(), p),
                None => self.promoted.remove(buf.name()),
            };
            return r;
        }
        let const_bytes = const_elems.and_then(|n| n.checked_mul(elem));
        if let Some(bytes) = const_bytes {
            if bytes <= STACK_ALLOC_MAX && self.stack_bytes + bytes <= STACK_TOTAL_MAX {
                self.stack_bytes += bytes;
                // 16-byte alignment (what the frame guarantees) keeps the address a plain
                // `stack_addr`, which Cranelift rematerializes as one `lea` inside loops;
                // vector accesses do not need more (they are unaligned loads/stores).
                let ss = self.b.create_sized_stack_slot(StackSlotData::new(
                    StackSlotKind::ExplicitSlot,
                    bytes.max(1) as u32,
                    4,
                ));
                let ptr = self.b.ins().stack_addr(types::I64, ss, 0);
                let prev = self.bind_buf(buf.name(), ptr);
                let r = self.gen_stmt(body);
                self.unbind_buf(buf.name(), prev);
                return r;
            }
        }
        // Heap path: symbolic or large sizes.
        let mut n = self.b.ins().iconst(types::I64, elem as i64);
        for d in buf.shape() {
            let v = self.gen_expr(d)?;
            let v = self.cast(v, DType::I64)?;
            n = self.b.ins().imul(n, v.v);
        }
        let zero = self.b.ins().iconst(types::I64, 0);
        let bytes = self.b.ins().smax(n, zero);
        let ptr = self
            .call_helper(ALLOC, &[bytes])?
            .expect("alloc returns a pointer");
        let prev = self.bind_buf(buf.name(), ptr);
        let r = self.gen_heap_body(buf.name(), body);
        self.unbind_buf(buf.name(), prev);
        r?;
        self.call_helper(FREE, &[ptr, bytes])?;
        Ok(())
    }

    /// The body of a heap allocation of `name`: where it is a sequence (a producer, then
    /// its consumers), the statements after the last one that writes the buffer read it
    /// as frozen ([`FnGen::frozen`]), so their loads are movable. That is sound because
    /// - the base pointer is the allocation call's result: no load of it can be hoisted
    ///   out of a loop around the allocation, above the producer;
    /// - no store follows in the allocation's scope: none can be crossed by a load moved
    ///   later, or a later load merged with an earlier one;
    /// - no loaded value is used after the buffer is freed: Cranelift places a movable
    ///   load just before its first use, and a value can only leave the scope through a
    ///   register-promoted buffer allocated outside it (a variable read after the free,
    ///   or at an outer loop's back edge), so nothing is frozen where the statements
    ///   after the last store write such a buffer;
    /// - loops run at least once wherever a load is hoisted to, as for the read-only
    ///   parameters.
    fn gen_heap_body(&mut self, name: &str, body: &Stmt) -> Result<()> {
        let Stmt::Seq(v) = body else {
            return self.gen_stmt(body);
        };
        let writes = |x: &Stmt| x.written_buffers().contains(name);
        let mut first_frozen = v.iter().rposition(writes).map_or(0, |i| i + 1);
        let escapes = v[first_frozen..].iter().any(|x| {
            x.written_buffers()
                .iter()
                .any(|b| self.promoted.contains_key(b))
        });
        if escapes {
            first_frozen = v.len();
        }
        for (i, x) in v.iter().enumerate() {
            if i == first_frozen {
                self.frozen.insert(name.to_string());
            }
            self.gen_stmt(x)?;
        }
        self.frozen.remove(name);
        Ok(())
    }
}

impl FnGen<'_, '_> {
    /// A tensor intrinsic: its host function called with one array of words (the mode,
    /// operand addresses, operand strides, the declaration's extents; see
    /// `intrinsics`), built in a stack slot.
    pub fn gen_intrinsic(&mut self, c: &crate::lower::ir::IntrinsicCall) -> Result<()> {
        let imp = c.intrin.cpu.ok_or_else(|| {
            crate::error::Error::Target(format!(
                "intrinsic {} has no CPU implementation",
                c.intrin.name
            ))
        })?;
        let mut words = vec![self.b.ins().iconst(types::I64, c.mode.code())];
        for o in &c.operands {
            let base = self.buf_ptr_or_err(o.buf.name())?;
            let idx = self.scalar_index(&o.index[0])?;
            words.push(self.elem_addr(base, idx, o.buf.dtype()));
        }
        for o in &c.operands {
            for s in &o.strides {
                let v = self.scalar_index(s)?;
                words.push(v);
            }
        }
        for e in &c.extents {
            let v = self.scalar_index(e)?;
            words.push(v);
        }
        let ss = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            8 * words.len() as u32,
            3,
        ));
        let flags = MemFlagsData::trusted();
        let addr = self.b.ins().stack_addr(types::I64, ss, 0);
        for (i, w) in words.iter().enumerate() {
            self.b.ins().store(flags, *w, addr, 8 * i as i32);
        }
        self.call_helper(imp.symbol, &[addr])?;
        Ok(())
    }
}
