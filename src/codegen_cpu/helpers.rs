//! Host functions the generated code calls: math functions that have no native instruction,
//! conversions between f32 and the bits of `float16`/`bfloat16`, the rayon-backed
//! parallel-for driver, and the heap allocator for large temporaries. Each is registered with
//! the JIT by name (see [`helper_table`]).

use crate::te::arith::{half_bits_from_f32, half_bits_to_f32, math_f32, math_f64};
use crate::te::{DType, MathFn};
use cranelift::prelude::types;
use cranelift::prelude::Type;
use rayon::prelude::*;

use super::heap::{loopforge_alloc, loopforge_free};

/// One host function: its symbol, address and Cranelift signature.
pub(crate) struct Helper {
    /// Symbol name the generated code imports.
    pub name: &'static str,
    /// Address of the Rust function.
    pub ptr: *const u8,
    /// Parameter types.
    pub params: &'static [Type],
    /// Return types.
    pub rets: &'static [Type],
}

/// Name of the parallel-for driver: `fn(task: fn(*const i64, i64), ctx: *const i64, n: i64)`.
pub(crate) const PARALLEL_FOR: &str = "loopforge_parallel_for";
/// Name of the zeroing, 64-byte-aligned allocator: `fn(bytes: i64) -> *mut u8`.
pub(crate) const ALLOC: &str = "loopforge_alloc";
/// Name of the matching deallocator: `fn(ptr: *mut u8, bytes: i64)`.
pub(crate) const FREE: &str = "loopforge_free";

/// The helper symbol implementing `f` (or float `%` when `f` is `None`) for `dt`, if `f` is
/// computed by a helper rather than an instruction.
pub(crate) fn math_helper_name(f: Option<MathFn>, dt: DType) -> Option<&'static str> {
    let f32 = match dt {
        DType::F32 => true,
        DType::F64 => false,
        _ => return None,
    };
    let pick = |a: &'static str, b: &'static str| Some(if f32 { a } else { b });
    match f {
        None => pick("loopforge_fmod_f32", "loopforge_fmod_f64"),
        Some(MathFn::Exp) => pick("loopforge_exp_f32", "loopforge_exp_f64"),
        Some(MathFn::Log) => pick("loopforge_log_f32", "loopforge_log_f64"),
        Some(MathFn::Log1p) => pick("loopforge_log1p_f32", "loopforge_log1p_f64"),
        Some(MathFn::Tanh) => pick("loopforge_tanh_f32", "loopforge_tanh_f64"),
        Some(MathFn::Sigmoid) => pick("loopforge_sigmoid_f32", "loopforge_sigmoid_f64"),
        Some(MathFn::Erf) => pick("loopforge_erf_f32", "loopforge_erf_f64"),
        Some(MathFn::Pow) => pick("loopforge_pow_f32", "loopforge_pow_f64"),
        Some(MathFn::Floor) => pick("loopforge_floor_f32", "loopforge_floor_f64"),
        Some(MathFn::Ceil) => pick("loopforge_ceil_f32", "loopforge_ceil_f64"),
        Some(MathFn::Sqrt) | Some(MathFn::Abs) => None,
    }
}

/// The helper converting the bits of half type `dt` (zero-extended to 32 bits) to f32:
/// `fn(bits: i32) -> f32`.
pub(crate) fn half_to_f32_helper(dt: DType) -> &'static str {
    if dt == DType::BF16 {
        "loopforge_bf16_to_f32"
    } else {
        "loopforge_f16_to_f32"
    }
}

/// The helper rounding an f32 to half type `dt` (nearest even), returning its bits in the
/// low 16 bits of an i32: `fn(x: f32) -> i32`.
pub(crate) fn f32_to_half_helper(dt: DType) -> &'static str {
    if dt == DType::BF16 {
        "loopforge_f32_to_bf16"
    } else {
        "loopforge_f32_to_f16"
    }
}

// The semantics live in te::arith, shared with the interpreter. The half conversions take
// and return 32-bit integers: Cranelift does not extend narrower arguments by itself.
extern "C" fn f16_to_f32(bits: u32) -> f32 {
    half_bits_to_f32(DType::F16, bits as u16)
}
extern "C" fn f32_to_f16(x: f32) -> u32 {
    half_bits_from_f32(DType::F16, x) as u32
}
extern "C" fn bf16_to_f32(bits: u32) -> f32 {
    half_bits_to_f32(DType::BF16, bits as u16)
}
extern "C" fn f32_to_bf16(x: f32) -> u32 {
    half_bits_from_f32(DType::BF16, x) as u32
}
extern "C" fn exp_f32(x: f32) -> f32 {
    math_f32(MathFn::Exp, x, 0.0)
}
extern "C" fn exp_f64(x: f64) -> f64 {
    math_f64(MathFn::Exp, x, 0.0)
}
extern "C" fn log_f32(x: f32) -> f32 {
    math_f32(MathFn::Log, x, 0.0)
}
extern "C" fn log_f64(x: f64) -> f64 {
    math_f64(MathFn::Log, x, 0.0)
}
extern "C" fn log1p_f32(x: f32) -> f32 {
    math_f32(MathFn::Log1p, x, 0.0)
}
extern "C" fn log1p_f64(x: f64) -> f64 {
    math_f64(MathFn::Log1p, x, 0.0)
}
extern "C" fn tanh_f32(x: f32) -> f32 {
    math_f32(MathFn::Tanh, x, 0.0)
}
extern "C" fn tanh_f64(x: f64) -> f64 {
    math_f64(MathFn::Tanh, x, 0.0)
}
extern "C" fn sigmoid_f32(x: f32) -> f32 {
    math_f32(MathFn::Sigmoid, x, 0.0)
}
extern "C" fn sigmoid_f64(x: f64) -> f64 {
    math_f64(MathFn::Sigmoid, x, 0.0)
}
extern "C" fn erf_f32(x: f32) -> f32 {
    math_f32(MathFn::Erf, x, 0.0)
}
extern "C" fn erf_f64(x: f64) -> f64 {
    math_f64(MathFn::Erf, x, 0.0)
}
extern "C" fn pow_f32(x: f32, y: f32) -> f32 {
    math_f32(MathFn::Pow, x, y)
}
extern "C" fn pow_f64(x: f64, y: f64) -> f64 {
    math_f64(MathFn::Pow, x, y)
}
extern "C" fn fmod_f32(x: f32, y: f32) -> f32 {
    x % y
}
extern "C" fn fmod_f64(x: f64, y: f64) -> f64 {
    x % y
}
extern "C" fn floor_f32(x: f32) -> f32 {
    math_f32(MathFn::Floor, x, 0.0)
}
extern "C" fn floor_f64(x: f64) -> f64 {
    math_f64(MathFn::Floor, x, 0.0)
}
extern "C" fn ceil_f32(x: f32) -> f32 {
    math_f32(MathFn::Ceil, x, 0.0)
}
extern "C" fn ceil_f64(x: f64) -> f64 {
    math_f64(MathFn::Ceil, x, 0.0)
}

/// The signature of an outlined parallel loop body: `fn(ctx, iteration)`.
pub(crate) type TaskFn = unsafe extern "C" fn(*const i64, i64);

/// Run `task(ctx, i)` for `i` in `0..n` on the rayon pool.
///
/// # Safety
/// `task` must be safe to call concurrently with `ctx` for every `i` in `0..n`.
unsafe extern "C" fn loopforge_parallel_for(task: TaskFn, ctx: *const i64, n: i64) {
    if n <= 0 {
        return;
    }
    if n == 1 {
        task(ctx, 0);
        return;
    }
    let ctx = ctx as usize; // raw pointers are not Send; the context outlives the call
    (0..n)
        .into_par_iter()
        .for_each(|i| unsafe { task(ctx as *const i64, i) });
}

/// Every helper, for registration with the JIT and for declaring imports.
pub(crate) fn helper_table() -> Vec<Helper> {
    use types::{F32, F64, I32, I64};
    macro_rules! h {
        ($name:expr, $f:expr, [$($p:expr),*], [$($r:expr),*]) => {
            Helper { name: $name, ptr: $f as *const u8, params: &[$($p),*], rets: &[$($r),*] }
        };
    }
    let mut table = vec![
        h!(
            "loopforge_f16_to_f32",
            f16_to_f32 as extern "C" fn(u32) -> f32,
            [I32],
            [F32]
        ),
        h!(
            "loopforge_f32_to_f16",
            f32_to_f16 as extern "C" fn(f32) -> u32,
            [F32],
            [I32]
        ),
        h!(
            "loopforge_bf16_to_f32",
            bf16_to_f32 as extern "C" fn(u32) -> f32,
            [I32],
            [F32]
        ),
        h!(
            "loopforge_f32_to_bf16",
            f32_to_bf16 as extern "C" fn(f32) -> u32,
            [F32],
            [I32]
        ),
        h!(
            "loopforge_exp_f32",
            exp_f32 as extern "C" fn(f32) -> f32,
            [F32],
            [F32]
        ),
        h!(
            "loopforge_exp_f64",
            exp_f64 as extern "C" fn(f64) -> f64,
            [F64],
            [F64]
        ),
        h!(
            "loopforge_log_f32",
            log_f32 as extern "C" fn(f32) -> f32,
            [F32],
            [F32]
        ),
        h!(
            "loopforge_log_f64",
            log_f64 as extern "C" fn(f64) -> f64,
            [F64],
            [F64]
        ),
        h!(
            "loopforge_log1p_f32",
            log1p_f32 as extern "C" fn(f32) -> f32,
            [F32],
            [F32]
        ),
        h!(
            "loopforge_log1p_f64",
            log1p_f64 as extern "C" fn(f64) -> f64,
            [F64],
            [F64]
        ),
        h!(
            "loopforge_tanh_f32",
            tanh_f32 as extern "C" fn(f32) -> f32,
            [F32],
            [F32]
        ),
        h!(
            "loopforge_tanh_f64",
            tanh_f64 as extern "C" fn(f64) -> f64,
            [F64],
            [F64]
        ),
        h!(
            "loopforge_sigmoid_f32",
            sigmoid_f32 as extern "C" fn(f32) -> f32,
            [F32],
            [F32]
        ),
        h!(
            "loopforge_sigmoid_f64",
            sigmoid_f64 as extern "C" fn(f64) -> f64,
            [F64],
            [F64]
        ),
        h!(
            "loopforge_erf_f32",
            erf_f32 as extern "C" fn(f32) -> f32,
            [F32],
            [F32]
        ),
        h!(
            "loopforge_erf_f64",
            erf_f64 as extern "C" fn(f64) -> f64,
            [F64],
            [F64]
        ),
        h!(
            "loopforge_floor_f32",
            floor_f32 as extern "C" fn(f32) -> f32,
            [F32],
            [F32]
        ),
        h!(
            "loopforge_floor_f64",
            floor_f64 as extern "C" fn(f64) -> f64,
            [F64],
            [F64]
        ),
        h!(
            "loopforge_ceil_f32",
            ceil_f32 as extern "C" fn(f32) -> f32,
            [F32],
            [F32]
        ),
        h!(
            "loopforge_ceil_f64",
            ceil_f64 as extern "C" fn(f64) -> f64,
            [F64],
            [F64]
        ),
        h!(
            "loopforge_pow_f32",
            pow_f32 as extern "C" fn(f32, f32) -> f32,
            [F32, F32],
            [F32]
        ),
        h!(
            "loopforge_pow_f64",
            pow_f64 as extern "C" fn(f64, f64) -> f64,
            [F64, F64],
            [F64]
        ),
        h!(
            "loopforge_fmod_f32",
            fmod_f32 as extern "C" fn(f32, f32) -> f32,
            [F32, F32],
            [F32]
        ),
        h!(
            "loopforge_fmod_f64",
            fmod_f64 as extern "C" fn(f64, f64) -> f64,
            [F64, F64],
            [F64]
        ),
        h!(
            PARALLEL_FOR,
            loopforge_parallel_for as unsafe extern "C" fn(TaskFn, *const i64, i64),
            [I64, I64, I64],
            []
        ),
        h!(
            ALLOC,
            loopforge_alloc as extern "C" fn(i64) -> *mut u8,
            [I64],
            [I64]
        ),
        h!(
            FREE,
            loopforge_free as unsafe extern "C" fn(*mut u8, i64),
            [I64, I64],
            []
        ),
    ];
    // Tensor intrinsics with a CPU implementation: `fn(args: *const i64)`.
    let mut seen = std::collections::HashSet::new();
    for imp in crate::intrinsics::cpu_impls() {
        if seen.insert(imp.symbol) {
            table.push(Helper {
                name: imp.symbol,
                ptr: imp.func as *const u8,
                params: &[I64],
                rets: &[],
            });
        }
    }
    table
}
