//! Tensor intrinsics: a small computation declared in TE (its semantics) together with
//! implementations per target (TVM's `TensorIntrin`). `Schedule::tensorize(stage, axis,
//! intrin)` replaces the loop nest under `axis` by a call when the nest computes exactly
//! what the declaration says.
//!
//! - The declaration is a `compute` over placeholders: its data axes, then its reduce
//!   axes, correspond in order to the loops of the tensorized nest; each placeholder to a
//!   tensor the stage reads; the output to the stage's buffer.
//! - A call passes, per operand (the inputs in declaration order, then the output), the
//!   address of the tile's first element and the stride in elements of each of the
//!   declaration's dimensions; the tile is a strided view of the buffer.
//! - The reference interpreter executes the declaration itself on those views (the
//!   oracle); the CPU backend calls the registered host function; a target without an
//!   implementation is a typed error.
//! - A reduction intrinsic is called in mode `Compute` (0) when the nest covers the
//!   whole reduction, and in mode `Update` (1) when the reduction started before the
//!   tensorized nest (the output holds partial sums). There, a CPU intrinsic's calls at
//!   the first iteration of every reduce loop outside the nest are in mode `Compute`
//!   (no init nest); any other intrinsic's init nest calls it in mode `Init` (2), with
//!   the output as only operand.
//!
//! Built in: [`gemm_f32`] (`C[i, j] += A[i, k] * B[k, j]`, an MR x NR x KC register-tile
//! update with an AVX-512F or AVX2+FMA micro-kernel chosen at run time and a portable
//! fallback), [`gemm_f32_panels`] (the same kernels under BLIS's macro-kernel: a whole
//! block of packed panels in one call),
//! [`dot_f32`], [`reduce_sum_f32`] and [`reduce_max_f32`] (a length-`n` reduction into
//! one element, e.g. a row's sum or maximum), [`exp_f32`] (a vectorized elementwise
//! `exp`, within 1 ulp) and [`exp_sub_f32`] (`exp(x - s)`, a softmax row's numerators), each with
//! AVX-512F and AVX2+FMA paths chosen at run time ([`CpuPath::best`]) and a portable one
//! (the `*_eval` functions run any path this CPU has on slices, for tests),
//! [`activation_f32`] (sigmoid, tanh, GELU, erf, exp or SiLU over a tile of rows;
//! AVX-512F and AVX2+FMA paths, and a portable one), and the tensor-core intrinsics [`wmma_load_a`], [`wmma_load_b`], [`wmma_mma`] and
//! [`wmma_store`] (CUDA, warp-collective, on `wmma.*` fragment buffers).

pub(crate) mod activation;
mod dot;
pub(crate) mod exp;
mod gemm;
mod gemm_panels;
mod reduce_max;
mod reference;
#[cfg(target_arch = "x86_64")]
mod transpose;
mod wmma;

pub use activation::{activation_f32, activation_f32_eval, Activation};
pub use dot::{dot_f32, dot_f32_eval, reduce_sum_f32, reduce_sum_f32_eval};
pub use exp::{exp_f32, exp_f32_eval, exp_sub_f32, exp_sub_f32_eval};
pub use gemm::{gemm_f32, gemm_f32_k3};
pub use gemm_panels::gemm_f32_panels;
pub use reduce_max::{reduce_max_f32, reduce_max_f32_eval};
pub(crate) use reference::reference_stmt;
pub use wmma::{wmma_load_a, wmma_load_b, wmma_mma, wmma_store};
#[cfg(target_arch = "x86_64")]
#[doc(hidden)]
pub use {
    activation::activation_f32_avx512_entry,
    dot::{dot_f32_avx512_entry, reduce_sum_f32_avx512_entry},
    exp::{exp_f32_avx512_entry, exp_sub_f32_avx512_entry},
    gemm::gemm_f32_k3_avx512_entry,
    reduce_max::reduce_max_f32_avx512_entry,
};

use crate::error::{Error, Result};
use crate::te::{OpKind, Tensor};

/// A length-`n` intrinsic's length check: `what(n)` needs `n >= 1` (a typed error).
pub(crate) fn check_len(what: &str, n: i64) -> Result<()> {
    if n < 1 {
        return Err(Error::InvalidExpr(format!(
            "{}({}): the length must be at least 1",
            what, n
        )));
    }
    Ok(())
}

/// An `*_eval` function's view check: `n` elements `stride` apart must lie inside a slice
/// of `len` (a typed error naming `what` otherwise, also where the extent overflows).
pub(crate) fn check_view(what: &str, len: usize, stride: usize, n: usize) -> Result<()> {
    let fits = n == 0
        || (stride > 0
            && isize::try_from(stride).is_ok()
            && (n - 1).checked_mul(stride).is_some_and(|end| end < len));
    if !fits {
        return Err(Error::Argument(format!(
            "{}: {} elements with stride {} do not fit in a slice of {}",
            what, n, stride, len
        )));
    }
    Ok(())
}
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The host function of a CPU implementation. It receives one array of 64-bit words:
/// the mode (0 compute, 1 update, 2 init: then the only operand is the output), the
/// operand addresses (inputs in declaration order, then the output), each operand's
/// strides (one per dimension of its placeholder, in elements), then the extents of the
/// declaration's axes (data, then reduce).
pub type CpuIntrinFn = extern "C" fn(args: *const i64);

/// A code path of a CPU implementation (host functions pick the best one the CPU has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CpuPath {
    /// 512-bit AVX-512F (x86-64, detected at run time: [`has_avx512f`]).
    Avx512,
    /// 256-bit AVX2 with FMA (x86-64, detected at run time).
    Avx2Fma,
    /// Plain Rust, any CPU.
    Portable,
}

/// Whether this CPU has AVX2 and FMA (detected once; false off x86-64).
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the AVX-512 micro-kernels run on this CPU: AVX-512F detected (once; false off
/// x86-64), unless the environment variable `LOOPFORGE_NO_AVX512` is set, to any value
/// (which keeps the AVX2 ones, and the schedules' AVX2 tiles).
pub fn has_avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| {
            is_x86_feature_detected!("avx512f") && std::env::var_os("LOOPFORGE_NO_AVX512").is_none()
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU is an AMD Zen 4: an AMD core of family 0x19 (Zen 3 and Zen 4) with
/// AVX-512 ([`has_avx512f`], so not with `LOOPFORGE_NO_AVX512` set). Detected once; false
/// off x86-64. For tunings measured on that core only.
pub fn is_zen4() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static ZEN4: OnceLock<bool> = OnceLock::new();
        *ZEN4.get_or_init(|| {
            use std::arch::x86_64::__cpuid;
            // Safety: CPUID exists on every x86-64 CPU.
            #[allow(unused_unsafe)]
            let (vendor, sig) = unsafe { (__cpuid(0), __cpuid(1).eax) };
            let amd =
                (vendor.ebx, vendor.edx, vendor.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163);
            let base = (sig >> 8) & 0xf;
            let family = if base == 0xf {
                base + ((sig >> 20) & 0xff)
            } else {
                base
            };
            amd && family == 0x19 && has_avx512f()
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl CpuPath {
    /// The best path this CPU runs.
    pub fn best() -> CpuPath {
        if has_avx512f() {
            CpuPath::Avx512
        } else if has_avx2_fma() {
            CpuPath::Avx2Fma
        } else {
            CpuPath::Portable
        }
    }

    /// Whether this CPU runs `self`, else a typed error saying what it lacks (for the
    /// `*_eval` functions).
    pub fn check(self) -> Result<()> {
        let (ok, lacks) = match self {
            CpuPath::Avx512 => (has_avx512f(), "AVX-512F (or LOOPFORGE_NO_AVX512 is set)"),
            CpuPath::Avx2Fma => (has_avx2_fma(), "AVX2 or FMA"),
            CpuPath::Portable => (true, ""),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Target(format!(
                "this CPU lacks {}: the {:?} path cannot run here",
                lacks, self
            )))
        }
    }
}

/// A CPU implementation: a host function the JIT calls by `symbol`. A reduction's
/// function must handle all three modes: `Compute` (0) overwrites the tile, also as the
/// first of several calls that then `Update` (1) it; `Init` (2) is only reached where a
/// reduce loop outside the call has a symbolic extent.
#[derive(Clone, Copy)]
pub struct CpuImpl {
    /// Symbol under which the JIT imports it (unique per intrinsic).
    pub symbol: &'static str,
    /// The function.
    pub func: CpuIntrinFn,
}

impl std::fmt::Debug for CpuImpl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CpuImpl({})", self.symbol)
    }
}

/// One operand of a CUDA intrinsic call, as C text.
#[derive(Debug, Clone)]
pub struct CudaOperand {
    /// Address of the tile's first element (for a fragment: of its tile's registers).
    pub ptr: String,
    /// Leading dimension (elements between rows) as an `int` expression; empty for a
    /// fragment.
    pub ld: String,
}

/// A CUDA implementation: device functions and the statement that calls them.
#[derive(Clone, Copy)]
pub struct CudaImpl {
    /// Device functions the call needs (emitted once per kernel, before it).
    pub source: &'static str,
    /// The call statement for a mode and the operands (inputs, then the output; the
    /// output alone in mode `Init`).
    pub call: fn(crate::lower::ir::IntrinMode, &[CudaOperand]) -> String,
    /// Whether the 32 threads of a warp execute it together with equal operands (the
    /// interpreter runs it once per warp, in its first thread).
    pub warp_collective: bool,
}

impl std::fmt::Debug for CudaImpl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaImpl(warp_collective: {})", self.warp_collective)
    }
}

/// A declared tensor intrinsic.
#[derive(Debug)]
pub struct TensorIntrin {
    /// Unique name (schedules refer to it by name in traces).
    pub name: String,
    /// The declaration's output: a `compute` whose body reads only `inputs`.
    pub output: Tensor,
    /// The declaration's placeholders, in operand order.
    pub inputs: Vec<Tensor>,
    /// The CPU implementation, if any.
    pub cpu: Option<CpuImpl>,
    /// The CUDA implementation, if any.
    pub cuda: Option<CudaImpl>,
    /// Whether a call may cover a partial tile: each data axis's extent is then passed at
    /// run time (at most the declared one), so a loop split by a factor that does not
    /// divide its extent can still be tensorized (see [`partial_tiles`](Self::partial_tiles)).
    pub partial: bool,
}

impl TensorIntrin {
    /// Declare an intrinsic computing `output` from the placeholders `inputs` (every
    /// placeholder `output` reads must be listed, and every extent must be constant).
    pub fn new(
        name: &str,
        output: &Tensor,
        inputs: &[Tensor],
        cpu: Option<CpuImpl>,
    ) -> Result<Arc<TensorIntrin>> {
        Self::with_impls(name, output, inputs, cpu, None)
    }

    /// [`new`](Self::new) with a CUDA implementation too.
    pub fn with_impls(
        name: &str,
        output: &Tensor,
        inputs: &[Tensor],
        cpu: Option<CpuImpl>,
        cuda: Option<CudaImpl>,
    ) -> Result<Arc<TensorIntrin>> {
        let bad = |m: String| Err(Error::InvalidExpr(format!("intrinsic {}: {}", name, m)));
        let OpKind::Compute { axis, .. } = &output.op.kind else {
            return bad("the declaration's output must be a compute".into());
        };
        for a in axis.iter().chain(output.op.reduce_axis().iter()) {
            if a.extent.as_int().is_none() || a.min.as_int() != Some(0) {
                return bad(format!(
                    "axis {} must start at 0 and have a constant extent",
                    a.var.name()
                ));
            }
        }
        for t in output.op.input_tensors() {
            if !inputs.iter().any(|i| Arc::ptr_eq(&i.op, &t.op)) {
                return bad(format!(
                    "it reads {}, which is not among its inputs",
                    t.name()
                ));
            }
        }
        for t in inputs {
            if !matches!(t.op.kind, OpKind::Placeholder { .. }) {
                return bad(format!("input {} must be a placeholder", t.name()));
            }
        }
        Ok(Arc::new(TensorIntrin {
            name: name.to_string(),
            output: output.clone(),
            inputs: inputs.to_vec(),
            cpu,
            cuda,
            partial: false,
        }))
    }

    /// The same intrinsic, declared to take partial tiles: its implementations read each
    /// data axis's extent from the call (the CPU one from the call's words), and the
    /// extent may be smaller than declared (down to 0: nothing to do). Tensorize then
    /// accepts data loops guarded by a non-dividing split and passes
    /// `max(0, min(declared, what the guard allows))`. No CUDA implementation may take
    /// partial tiles (the CUDA code generator refuses such calls).
    pub fn partial_tiles(self: Arc<Self>) -> Arc<TensorIntrin> {
        Arc::new(TensorIntrin {
            name: self.name.clone(),
            output: self.output.clone(),
            inputs: self.inputs.clone(),
            cpu: self.cpu,
            cuda: self.cuda,
            partial: true,
        })
    }

    /// The extents of the declaration's axes: data axes, then reduce axes.
    pub fn extents(&self) -> Vec<i64> {
        let OpKind::Compute { axis, .. } = &self.output.op.kind else {
            unreachable!("checked in new")
        };
        axis.iter()
            .chain(self.output.op.reduce_axis().iter())
            .map(|a| a.extent.as_int().expect("checked in new"))
            .collect()
    }
}

fn registry() -> &'static Mutex<HashMap<String, Arc<TensorIntrin>>> {
    static R: OnceLock<Mutex<HashMap<String, Arc<TensorIntrin>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Make `intrin` known by name (trace replay looks intrinsics up here; `tensorize`
/// registers the intrinsics it is given). Registering another intrinsic under a name
/// already taken is an error.
pub fn register(intrin: &Arc<TensorIntrin>) -> Result<()> {
    let mut r = registry().lock().expect("intrinsic registry");
    match r.get(&intrin.name) {
        Some(old) if !Arc::ptr_eq(old, intrin) => Err(Error::InvalidExpr(format!(
            "another intrinsic is already registered as {}; give each intrinsic its own name",
            intrin.name
        ))),
        _ => {
            r.insert(intrin.name.clone(), intrin.clone());
            Ok(())
        }
    }
}

/// The intrinsic registered as `name`, declaring and registering it with `make` the first
/// time (the built-in intrinsics are one object per name).
pub(crate) fn register_once(
    name: &str,
    make: impl FnOnce() -> Result<Arc<TensorIntrin>>,
) -> Result<Arc<TensorIntrin>> {
    if let Some(i) = registered(name) {
        return Ok(i);
    }
    let i = make()?;
    // Another thread may have declared the same built-in meanwhile: the first one
    // registered wins, and every caller gets that one.
    let mut r = registry().lock().expect("intrinsic registry");
    Ok(r.entry(name.to_string()).or_insert(i).clone())
}

fn registered(name: &str) -> Option<Arc<TensorIntrin>> {
    registry()
        .lock()
        .expect("intrinsic registry")
        .get(name)
        .cloned()
}

/// The intrinsic registered as `name`, or the built-in one of that name (declared and
/// registered now), so that a trace naming a built-in intrinsic replays in a process
/// that has not declared it yet (a saved model loaded afresh).
pub fn lookup(name: &str) -> Option<Arc<TensorIntrin>> {
    registered(name).or_else(|| builtin(name))
}

/// The built-in intrinsic named `name`: `gemm_f32_{mr}x{nr}x{kc}`,
/// `gemm_f32_{mr}x{nr}x{k0}x{k1}x{k2}`, `gemm_f32_panels_{mc}x{nc}x{kc}_{mr}x{nr}`,
/// `dot_f32_{n}`, `reduce_sum_f32_{n}`, `reduce_max_f32_{n}`, `exp_f32_{n}`, `exp_sub_f32_{n}`,
/// `{activation}_f32_{rows}x{cols}` and
/// the four `wmma_*` ones.
fn builtin(name: &str) -> Option<Arc<TensorIntrin>> {
    let sizes =
        |rest: &str| -> Option<Vec<i64>> { rest.split('x').map(|p| p.parse().ok()).collect() };
    let one = |prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|r| r.parse::<i64>().ok())
    };
    let made = if let Some(rest) = name.strip_prefix("gemm_f32_panels_") {
        let (block, panel) = rest.split_once('_')?;
        match (sizes(block)?.as_slice(), sizes(panel)?.as_slice()) {
            (&[mc, nc, kc], &[mr, nr]) => gemm_f32_panels(mc, nc, kc, mr, nr),
            _ => return None,
        }
    } else if let Some(rest) = name.strip_prefix("gemm_f32_") {
        match *sizes(rest)?.as_slice() {
            [m, n, k] => gemm_f32(m, n, k),
            [m, n, k0, k1, k2] => gemm_f32_k3(m, n, [k0, k1, k2]),
            _ => return None,
        }
    } else if let Some(n) = one("dot_f32_") {
        dot_f32(n)
    } else if let Some(n) = one("reduce_sum_f32_") {
        reduce_sum_f32(n)
    } else if let Some(n) = one("reduce_max_f32_") {
        reduce_max_f32(n)
    } else if let Some(n) = one("exp_f32_") {
        exp_f32(n)
    } else if let Some(n) = one("exp_sub_f32_") {
        exp_sub_f32(n)
    } else if let Some((f, rest)) = Activation::ALL.iter().find_map(|f| {
        name.strip_prefix(&format!("{}_f32_", f.name()))
            .map(|r| (*f, r))
    }) {
        match *sizes(rest)?.as_slice() {
            [rows, cols] => activation_f32(f, rows, cols),
            _ => return None,
        }
    } else {
        match name {
            "wmma_load_a_f16" => wmma_load_a(),
            "wmma_load_b_f16" => wmma_load_b(),
            "wmma_mma_f16_f32" => wmma_mma(),
            "wmma_store_f32" => wmma_store(),
            _ => return None,
        }
    };
    made.ok()
}

/// Every registered intrinsic with a CPU implementation (the JIT imports their symbols).
pub(crate) fn cpu_impls() -> Vec<CpuImpl> {
    registry()
        .lock()
        .expect("intrinsic registry")
        .values()
        .filter_map(|i| i.cpu)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::builtin;

    #[test]
    fn built_in_names_declare_their_intrinsics() {
        // What trace replay in a fresh process relies on: each built-in family's name
        // declares the intrinsic again (and only well-formed names do).
        for name in [
            "gemm_f32_6x16x8",
            "gemm_f32_6x16x3x3x4",
            "gemm_f32_panels_12x32x8_6x16",
            "gemm_f32_panels_24x64x100_12x32",
            "dot_f32_7",
        ] {
            assert_eq!(builtin(name).map(|i| i.name.clone()).as_deref(), Some(name));
        }
        for name in [
            "gemm_f32_panels_12x32_6x16",
            "gemm_f32_panels_12x32x8",
            "gemm_f32_panels_12x32x8_5x16",
            "gemm_f32_6x16",
        ] {
            assert!(builtin(name).is_none(), "{}", name);
        }
    }
}
