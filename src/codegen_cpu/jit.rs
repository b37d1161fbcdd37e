//! The Cranelift JIT setup: the host ISA (built once per process), a fresh `JITModule` per
//! kernel with every runtime helper registered, and lazy import declarations of helpers.

use super::helpers::helper_table;
use crate::error::{Error, Result};
use cranelift::prelude::*;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module};
use std::collections::HashMap;
use std::sync::OnceLock;

/// The host ISA with loopforge's flags (speed, non-PIC, verifier only in debug builds).
pub(crate) fn host_isa() -> Result<isa::OwnedTargetIsa> {
    static ISA: OnceLock<std::result::Result<isa::OwnedTargetIsa, String>> = OnceLock::new();
    ISA.get_or_init(|| {
        let mut fb = settings::builder();
        let set = |fb: &mut settings::Builder, k: &str, v: &str| {
            fb.set(k, v).map_err(|e| format!("{}={}: {}", k, v, e))
        };
        set(&mut fb, "opt_level", "speed")?;
        set(&mut fb, "is_pic", "false")?;
        set(&mut fb, "use_colocated_libcalls", "false")?;
        set(
            &mut fb,
            "enable_verifier",
            if cfg!(debug_assertions) {
                "true"
            } else {
                "false"
            },
        )?;
        let ib = cranelift_native::builder()
            .map_err(|e| format!("host machine not supported by Cranelift: {}", e))?;
        ib.finish(settings::Flags::new(fb))
            .map_err(|e| format!("cannot configure the host ISA: {}", e))
    })
    .clone()
    .map_err(Error::Target)
}

/// Whether generated code for `isa` contracts `a * b + c` into a fused multiply-add: the
/// instruction is native (AVX + FMA on x86) and `LOOPFORGE_FMA=0` does not turn it off.
pub(crate) fn contracts_fma(isa: &dyn isa::TargetIsa) -> bool {
    isa.has_native_fma() && std::env::var("LOOPFORGE_FMA").map_or(true, |v| v != "0")
}

/// A new JIT module for the host with every helper symbol registered.
pub(crate) fn new_module(isa: isa::OwnedTargetIsa) -> JITModule {
    let mut jb = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    for h in helper_table() {
        jb.symbol(h.name, h.ptr);
    }
    JITModule::new(jb)
}

/// Per-module state shared by all functions of one kernel: the module and the helper
/// functions declared in it so far.
pub(crate) struct ModuleCtx {
    /// The module being filled.
    pub module: JITModule,
    helpers: HashMap<&'static str, FuncId>,
    /// Whether `fma` lowers to a native instruction (AVX + FMA on x86).
    pub fma: bool,
    /// Whether `floor`/`ceil` lower to native instructions (SSE4.1 on x86).
    pub round: bool,
    /// Counter for naming outlined functions.
    pub next_task: usize,
    /// The kernel's parameters it never writes (no store, no intrinsic output): their
    /// loads may be marked read-only and movable (`FnGen::movable_load_flags`), in the
    /// entry function and in every outlined one.
    pub read_only: std::collections::HashSet<String>,
    /// Vector constants read from memory inside loops (see `FnGen::splat`), one slot per
    /// use site; they must live as long as the machine code (moved into the kernel).
    #[allow(clippy::vec_box)] // the code holds each slot's address: slots must not move
    pub consts: Vec<Box<ConstSlot>>,
    /// Loads (one per access lowered) made movable because their heap buffer was frozen
    /// (`FnGen::frozen`).
    pub frozen_loads: usize,
}

/// A 16-byte-aligned vector constant in memory.
#[repr(C, align(16))]
pub(crate) struct ConstSlot(pub [u8; 16]);

impl ModuleCtx {
    /// Wrap a fresh module for the kernel `func`.
    pub fn new(module: JITModule, func: &crate::lower::ir::LoweredFunc) -> ModuleCtx {
        // `LOOPFORGE_FMA=0` disables fusion (for experiments and A/B timings).
        let fma = contracts_fma(module.isa());
        let round = module.isa().has_round();
        ModuleCtx {
            module,
            helpers: HashMap::new(),
            fma,
            round,
            next_task: 0,
            consts: Vec::new(),
            frozen_loads: 0,
            read_only: {
                let written = func.body.written_buffers();
                func.params
                    .iter()
                    .map(|b| b.name().to_string())
                    .filter(|n| !written.contains(n))
                    .collect()
            },
        }
    }

    /// The module-level id of helper `name`, declaring the import on first use.
    pub fn helper(&mut self, name: &'static str) -> Result<FuncId> {
        if let Some(id) = self.helpers.get(name) {
            return Ok(*id);
        }
        let table = helper_table();
        let h = table
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| Error::Target(format!("no runtime helper named {}", name)))?;
        let mut sig = self.module.make_signature();
        sig.params
            .extend(h.params.iter().map(|t| AbiParam::new(*t)));
        sig.returns.extend(h.rets.iter().map(|t| AbiParam::new(*t)));
        let id = self
            .module
            .declare_function(name, Linkage::Import, &sig)
            .map_err(|e| Error::Target(format!("cannot declare helper {}: {}", name, e)))?;
        self.helpers.insert(name, id);
        Ok(id)
    }
}
