//! Parallel loops: the body is outlined into its own function `fn(ctx: *const i64, iv: i64)`;
//! the caller packs the loop's minimum, every buffer pointer and every in-scope variable the
//! body mentions into a stack-slot context and calls the rayon driver
//! `loopforge_parallel_for(task, ctx, extent)`. Inside the outlined body parallel loops run
//! serially.

use super::capture::mentions;
use super::fngen::{build_function, Binding, FnGen};
use super::helpers::PARALLEL_FOR;
use super::repr::{val_type, Val};
use crate::error::Result;
use crate::lower::ir::For;
use crate::te::{DType, Var};
use cranelift::prelude::*;
use cranelift_module::{Linkage, Module};

/// One captured variable: where it sits in the context and how to reload it.
struct CapturedVar {
    var: Var,
    dt: DType,
    lanes: u32,
    offset: i32,
}

impl<'a, 'f> FnGen<'a, 'f> {
    /// Lower a parallel loop by outlining its body.
    pub fn gen_parallel(&mut self, f: &For) -> Result<()> {
        let dt = if f.var.dtype() == DType::I32 {
            DType::I32
        } else {
            DType::I64
        };
        if matches!(f.extent.as_int(), Some(n) if n <= 0) {
            return Ok(());
        }
        let min = self.gen_expr(&f.min)?;
        let min = self.cast(min, DType::I64)?.v;
        let ext = self.gen_expr(&f.extent)?;
        let ext = self.cast(ext, DType::I64)?.v;

        // Context layout: [min: 8][buffer pointers: 8 each][variables: 16 each, 16-aligned].
        let m = mentions(&f.body);
        let bufs: Vec<(String, Value)> = m
            .bufs
            .iter()
            .filter_map(|n| self.buf_ptr(n).map(|p| (n.clone(), p)))
            .collect();
        let mut off = 8 * (1 + bufs.len() as i32);
        off = (off + 15) & !15;
        let mut vars = Vec::new();
        let mut var_vals = Vec::new();
        let in_scope: Vec<Var> = m
            .vars
            .iter()
            .filter(|v| **v != f.var && self.has_var(v))
            .cloned()
            .collect();
        for v in &in_scope {
            let val = self.var_value(v)?;
            vars.push(CapturedVar {
                var: v.clone(),
                dt: val.dt,
                lanes: val.lanes,
                offset: off,
            });
            var_vals.push(val.v);
            off += 16;
        }
        let size = off.max(16) as u32;
        let ss = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            size,
            4,
        ));
        let ctx = self.b.ins().stack_addr(types::I64, ss, 0);
        let flags = MemFlagsData::trusted();
        self.b.ins().store(flags, min, ctx, 0);
        for (i, (_, p)) in bufs.iter().enumerate() {
            self.b.ins().store(flags, *p, ctx, 8 * (1 + i as i32));
        }
        for (c, v) in vars.iter().zip(&var_vals) {
            self.b.ins().store(flags, *v, ctx, c.offset);
        }

        let name = format!("lf_parallel_{}", self.cx.next_task);
        self.cx.next_task += 1;
        let body = &f.body;
        let loop_var = &f.var;
        // Buffers frozen here stay so in the task (it runs inside this statement).
        let frozen: Vec<String> = bufs
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| self.frozen.contains(n))
            .collect();
        let task = build_function(
            &mut *self.cx,
            self.src,
            &name,
            &[types::I64, types::I64],
            Linkage::Local,
            true,
            |g, p| {
                let (ctx, iv) = (p[0], p[1]);
                let flags = MemFlagsData::trusted();
                let min = g.b.ins().load(types::I64, flags, ctx, 0);
                for (i, (n, _)) in bufs.iter().enumerate() {
                    let ptr = g.b.ins().load(types::I64, flags, ctx, 8 * (1 + i as i32));
                    g.bind_buf(n, ptr);
                }
                g.frozen.extend(frozen.iter().cloned());
                for c in &vars {
                    let ty = val_type(c.dt, c.lanes)?;
                    let v = g.b.ins().load(ty, flags, ctx, c.offset);
                    g.bind_var(
                        &c.var,
                        Binding::Value(Val {
                            v,
                            dt: c.dt,
                            lanes: c.lanes,
                        }),
                    );
                }
                let i = g.b.ins().iadd(iv, min);
                let i = if dt == DType::I32 {
                    g.b.ins().ireduce(types::I32, i)
                } else {
                    i
                };
                g.bind_var(loop_var, Binding::Value(Val::scalar(i, dt)));
                g.gen_body(body)
            },
        )?;
        let fr = self.cx.module.declare_func_in_func(task, self.b.func);
        // Not colocated: the address is a 64-bit absolute relocation, not a 32-bit
        // PC-relative one. The JIT maps each piece of code separately, and in a process
        // whose address space is crowded (a CUDA driver reserves terabytes) the task and
        // its caller can land more than 2 GiB apart.
        self.b.func.dfg.ext_funcs[fr].colocated = false;
        let fp = self.b.ins().func_addr(types::I64, fr);
        self.call_helper(PARALLEL_FOR, &[fp, ctx, ext])?;
        Ok(())
    }
}
