//! The per-function code generator state ([`FnGen`]): the Cranelift builder, the scopes of
//! variables and buffers, helper-call plumbing, and [`build_function`], which creates, fills,
//! finalizes and defines one Cranelift function in the module.

use super::jit::ModuleCtx;
use super::promote::Promoted;
use super::repr::Val;
use crate::error::{internal, Error, Result};
use crate::lower::ir::{LoweredFunc, Stmt};
use crate::te::{DType, Var};
use cranelift::codegen::ir::{AliasRegion, FuncRef, Function, UserFuncName};
use cranelift::codegen::Context;
use cranelift::prelude::*;
use cranelift_module::{FuncId, Linkage, Module, ModuleError};
use std::collections::{HashMap, HashSet};

/// What a variable is bound to while its scope is being lowered.
#[derive(Clone, Copy)]
pub(crate) enum Binding {
    /// A loop variable: a Cranelift `Variable` (redefined on every iteration).
    Loop(Variable, DType),
    /// A let variable, shape variable or captured value: an SSA value.
    Value(Val),
}

/// State of the lowering of one Cranelift function.
pub(crate) struct FnGen<'a, 'f> {
    /// The Cranelift builder.
    pub b: FunctionBuilder<'f>,
    /// The module and its helper imports.
    pub cx: &'a mut ModuleCtx,
    /// The function being compiled (for error messages).
    pub src: &'a LoweredFunc,
    /// Variables in scope, by id.
    vars: HashMap<u64, Binding>,
    /// Buffer base pointers in scope, by name.
    bufs: HashMap<String, Value>,
    /// Whether this is an outlined parallel body (nested parallel loops run serially).
    pub in_parallel: bool,
    /// Helper functions imported into this function.
    func_refs: HashMap<&'static str, FuncRef>,
    /// Bytes of stack slots handed to `Allocate`s so far in this function.
    pub stack_bytes: u64,
    /// Buffers promoted to variables, by name.
    pub promoted: HashMap<String, Promoted>,
    /// The alias region of each buffer accessed so far, by name.
    pub regions: HashMap<String, AliasRegion>,
    /// Loop depth at which each variable in scope was bound.
    depths: HashMap<u64, u32>,
    /// Number of `if` statements enclosing the current position in this function.
    pub cond_depth: u32,
    /// Heap-allocated buffers whose every store is behind the current position: the
    /// children of their allocation's body after the last one that writes them
    /// (`FnGen::gen_heap_body`). Their loads are movable as a read-only parameter's are.
    pub frozen: HashSet<String>,
    /// Whether the function's body contains an intrinsic call: no vector register
    /// survives the call (System V x86-64), so vector constants inside loops are read
    /// from memory where they are used (`FnGen::splat`).
    pub calls_intrinsics: bool,
    /// The counter and end of each serial loop around the current position (their
    /// number is the loop depth).
    pub loop_ends: Vec<(Variable, Value)>,
    /// Strided loads of the current sequence already loaded as columns of a 4 x 4 block,
    /// by key (`transpose_loads.rs`).
    pub transposed: HashMap<String, Val>,
}

impl<'a, 'f> FnGen<'a, 'f> {
    /// Number of (serial) loops enclosing the current position.
    pub fn loop_depth(&self) -> u32 {
        self.loop_ends.len() as u32
    }
    /// Bind `v` for a scope; returns the previous binding to restore with [`FnGen::unbind_var`].
    pub fn bind_var(&mut self, v: &Var, b: Binding) -> Option<Binding> {
        self.depths.insert(v.id(), self.loop_depth());
        self.vars.insert(v.id(), b)
    }
    /// The loop depth `v` varies at (the current depth for unknown variables).
    pub fn var_depth(&self, v: &Var) -> u32 {
        self.depths
            .get(&v.id())
            .copied()
            .unwrap_or(self.loop_depth())
    }
    /// End the scope of `v`, restoring `prev`.
    pub fn unbind_var(&mut self, v: &Var, prev: Option<Binding>) {
        match prev {
            Some(p) => {
                self.vars.insert(v.id(), p);
            }
            None => {
                self.vars.remove(&v.id());
                self.depths.remove(&v.id());
            }
        }
    }
    /// Whether `v` is in scope.
    pub fn has_var(&self, v: &Var) -> bool {
        self.vars.contains_key(&v.id())
    }
    /// The current value of variable `v`.
    pub fn var_value(&mut self, v: &Var) -> Result<Val> {
        match self.vars.get(&v.id()).copied() {
            Some(Binding::Loop(var, dt)) => Ok(Val::scalar(self.b.use_var(var), dt)),
            Some(Binding::Value(val)) => Ok(val),
            None => Err(internal(
                format!(
                    "variable `{}` (id {}) is used outside its scope in the CPU backend",
                    v.name(),
                    v.id()
                ),
                self.src,
            )),
        }
    }
    /// Bind buffer `name` to base pointer `ptr`; returns the previous pointer.
    pub fn bind_buf(&mut self, name: &str, ptr: Value) -> Option<Value> {
        self.bufs.insert(name.to_string(), ptr)
    }
    /// End the scope of buffer `name`, restoring `prev`.
    pub fn unbind_buf(&mut self, name: &str, prev: Option<Value>) {
        match prev {
            Some(p) => {
                self.bufs.insert(name.to_string(), p);
            }
            None => {
                self.bufs.remove(name);
            }
        }
    }
    /// The base pointer of buffer `name`, if in scope.
    pub fn buf_ptr(&self, name: &str) -> Option<Value> {
        self.bufs.get(name).copied()
    }
    /// The base pointer of buffer `name`, or an internal error.
    pub fn buf_ptr_or_err(&self, name: &str) -> Result<Value> {
        self.buf_ptr(name).ok_or_else(|| {
            internal(
                format!(
                    "buffer `{}` is accessed but is neither a parameter nor allocated",
                    name
                ),
                self.src,
            )
        })
    }

    /// `flags` for a load of `buf` here, marked `readonly` and `can_move` where that is
    /// true: `buf` is never written by the kernel, or is a heap buffer all of whose
    /// stores are behind this point ([`FnGen::frozen`]) (so no store can be moved across), and
    /// no `if` encloses this point (so wherever Cranelift places the load, its index is
    /// one the kernel reads: loops run at least once when their pre-header does, and
    /// guards only sit in `if`s). Cranelift then treats the load as a pure value: it
    /// is placed next to its first use instead of in program order (the register tile
    /// of a matmul no longer holds every load of an iteration at once, and a broadcast
    /// load folds into `vbroadcastss`), shared with equal loads, and hoisted out of the
    /// loops its index does not depend on.
    pub fn movable_load_flags(&self, buf: &str, flags: MemFlagsData) -> MemFlagsData {
        if (self.cond_depth == 0 && self.cx.read_only.contains(buf)) || self.frozen_here(buf) {
            flags.with_readonly().with_can_move()
        } else {
            flags
        }
    }

    /// Whether `buf` is frozen ([`FnGen::frozen`]) and no `if` encloses this point: its
    /// loads here are movable.
    pub fn frozen_here(&self, buf: &str) -> bool {
        self.cond_depth == 0 && self.frozen.contains(buf)
    }

    /// Lower `body`, the statement this function computes (after its parameters are bound).
    pub fn gen_body(&mut self, body: &Stmt) -> Result<()> {
        let mut calls = false;
        body.visit(&mut |s| calls |= matches!(s, Stmt::Intrinsic(_)));
        self.calls_intrinsics = calls;
        self.gen_stmt(body)
    }

    /// Call runtime helper `name` with `args`; returns its result, if any.
    pub fn call_helper(&mut self, name: &'static str, args: &[Value]) -> Result<Option<Value>> {
        let fr = match self.func_refs.get(name) {
            Some(f) => *f,
            None => {
                let id = self.cx.helper(name)?;
                let fr = self.cx.module.declare_func_in_func(id, self.b.func);
                self.func_refs.insert(name, fr);
                fr
            }
        };
        let inst = self.b.ins().call(fr, args);
        Ok(self.b.inst_results(inst).first().copied())
    }
}

/// Create function `name` with signature `params -> ()`, fill it with `fill` (given the entry
/// block's parameters), finalize it and define it in the module.
pub(crate) fn build_function(
    cx: &mut ModuleCtx,
    src: &LoweredFunc,
    name: &str,
    params: &[Type],
    linkage: Linkage,
    in_parallel: bool,
    fill: impl FnOnce(&mut FnGen, &[Value]) -> Result<()>,
) -> Result<FuncId> {
    let mut sig = cx.module.make_signature();
    sig.params.extend(params.iter().map(|t| AbiParam::new(*t)));
    let id = cx
        .module
        .declare_function(name, linkage, &sig)
        .map_err(|e| internal(format!("cannot declare function {}: {}", name, e), src))?;
    let mut func = Function::with_name_signature(UserFuncName::user(0, id.as_u32()), sig);
    let mut fctx = FunctionBuilderContext::new();
    {
        let b = FunctionBuilder::new(&mut func, &mut fctx);
        let mut g = FnGen {
            b,
            cx: &mut *cx,
            src,
            vars: HashMap::new(),
            bufs: HashMap::new(),
            in_parallel,
            func_refs: HashMap::new(),
            stack_bytes: 0,
            promoted: HashMap::new(),
            loop_ends: Vec::new(),
            regions: HashMap::new(),
            depths: HashMap::new(),
            cond_depth: 0,
            frozen: HashSet::new(),
            calls_intrinsics: false,
            transposed: HashMap::new(),
        };
        let entry = g.b.create_block();
        g.b.append_block_params_for_function_params(entry);
        g.b.switch_to_block(entry);
        g.b.seal_block(entry);
        let args: Vec<Value> = g.b.block_params(entry).to_vec();
        fill(&mut g, &args)?;
        g.b.ins().return_(&[]);
        g.b.seal_all_blocks();
        let tc = g.cx.module.target_config();
        g.b.finalize(tc);
    }
    let mut ctx = Context::for_function(func);
    let dump = dump_requested();
    if dump {
        ctx.set_disasm(true);
    }
    cx.module
        .define_function(id, &mut ctx)
        .map_err(|e| match e {
            ModuleError::Compilation(ce) => internal(
                format!(
                    "Cranelift rejected function {}: {}",
                    name,
                    cranelift::codegen::print_errors::pretty_error(&ctx.func, ce)
                ),
                src,
            ),
            e => internal(format!("cannot define function {}: {}", name, e), src),
        })?;
    if dump {
        if let Some(code) = ctx.compiled_code() {
            eprintln!(
                "=== {} ({}) ===\n{}",
                name,
                src.name,
                code.vcode.as_deref().unwrap_or("")
            );
        }
    }
    Ok(id)
}

/// Whether `LOOPFORGE_DUMP_ASM` is set: then the machine code of every function is printed
/// to stderr as it is compiled.
fn dump_requested() -> bool {
    static DUMP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DUMP.get_or_init(|| std::env::var_os("LOOPFORGE_DUMP_ASM").is_some())
}

/// The error for a construct the CPU backend does not support.
pub(crate) fn unsupported(msg: impl Into<String>) -> Error {
    Error::Target(msg.into())
}
