//! `activation_f32(f, rows, cols)`: an elementwise activation `Y[i, j] = f(X[i, j])` over a
//! `rows x cols` tile (any strides), for `f` one of [`Activation`]: the sigmoid `1 / (1 +
//! e^(0 - x))`, `tanh`, the erf form of GELU `0.5 x (1 + erf(x / sqrt 2))`, `erf`, `exp`
//! and SiLU `x * sigmoid(x)`, declared
//! as the graph runtime writes them ([`Activation::expr`]), so that its kernels can hand a
//! plane or rows of an activation to the call.
//!
//! The generated code computes these functions on 128-bit vectors (`codegen_cpu::vmath`,
//! all Cranelift emits); here they run on 256-bit ones, four vectors per step (four
//! independent dependency chains of about 65 cycles each, which the out-of-order core
//! overlaps). The algorithms are `vmath`'s, with the operations in its order (`exp` is the
//! `exp_f32` intrinsic's `exp8`), so on a CPU with FMA the results equal the generated
//! code's bit for bit; their accuracy is `vmath`'s (sigmoid 2 ulp where the result is
//! normal, tanh 1, erf 2, exp 1). GELU rounds `0.5 x` and `1 + erf(x / sqrt 2)` before their
//! product, as the graph's expression does.
//!
//! CPU implementation: with AVX2 and FMA (detected at run time) eight lanes at a time,
//! rows stored one after another on both sides as one run, strided operands and the last
//! 1 to 7 elements of a run through a lane buffer; with AVX-512F sixteen lanes at a time,
//! the same operations (the AVX2 path's results bit for bit), the last 1 to 15 elements
//! through a mask; otherwise the same algorithms in scalar code (multiplies and adds
//! unfused).

use super::exp::{exp_scalar, poly};
use super::{CpuImpl, CpuPath, TensorIntrin};
use crate::error::{Error, Result};
use crate::te::{compute, erf, exp, placeholder, tanh, DType, Expr};
use std::sync::Arc;

/// Cephes `tanhf`'s polynomial for `|x| < 0.625` (its coefficients rounded to f32),
/// highest degree first (`tanh(x) ~ x + x^3 q(x^2)`).
pub(crate) const TANH_Q: [f32; 5] = [
    -5.704_988_7e-3,
    2.063_908_8e-2,
    -5.373_971_6e-2,
    1.333_144_2e-1,
    -3.333_328e-1,
];
/// `erf(x) ~ x a(x^2)` for `|x| < 1`, highest degree first (a least-squares fit of
/// relative error, `scripts/fit_erf.py`).
#[allow(clippy::approx_constant)] // the fit's constant term, 1 ulp below f32 2 / sqrt(pi)
pub(crate) const ERF_A: [f32; 7] = [
    7.861_308_4e-5,
    -8.012_343_3e-4,
    5.188_559_6e-3,
    -2.685_392_6e-2,
    1.128_358_8e-1,
    -3.761_262_6e-1,
    1.128_379_1,
];
/// `erfc(x) e^(x^2) ~ b(1 / x)` for `1 <= x <= 4` (beyond, `erf` is 1 in f32), highest
/// degree first (`scripts/fit_erf.py`).
pub(crate) const ERF_B: [f32; 9] = [
    -1.149_885_4e-2,
    3.857_34e-2,
    2.904_717_3e-3,
    -2.178_592_8e-1,
    4.801_553e-1,
    -4.643_553e-1,
    4.008_560_3e-2,
    5.593_254e-1,
    2.525_771_6e-4,
];
/// Where `tanh` switches from its polynomial to the `exp` form.
pub(crate) const TANH_SMALL: f32 = 0.625;

/// An activation [`activation_f32`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Activation {
    /// `1 / (1 + e^(0 - x))`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `0.5 x (1 + erf(x / sqrt 2))`.
    Gelu,
    /// `erf(x)`.
    Erf,
    /// `e^x` (the `exp_f32` intrinsic's algorithm).
    Exp,
    /// SiLU (swish) `x * sigmoid(x)`, as exporters write it (`Sigmoid`, then `Mul`).
    Silu,
}

impl Activation {
    /// Every activation, in declaration order (`ALL[f as usize] == f`).
    pub const ALL: [Activation; 6] = [
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Gelu,
        Activation::Erf,
        Activation::Exp,
        Activation::Silu,
    ];

    /// Its lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Gelu => "gelu",
            Activation::Erf => "erf",
            Activation::Exp => "exp",
            Activation::Silu => "silu",
        }
    }

    /// `f(v)` as an expression of `v`'s dtype: the declaration's body, and what the graph
    /// runtime builds for the operator (so `tensorize` matches its stages).
    pub fn expr(self, v: Expr) -> Expr {
        let dt = v.dtype();
        let c = |f: f64| Expr::float_of(f, dt);
        match self {
            Activation::Sigmoid => c(1.0) / (c(1.0) + exp(c(0.0) - v)),
            Activation::Tanh => tanh(v),
            Activation::Gelu => {
                c(0.5) * v.clone() * (c(1.0) + erf(v * c(std::f64::consts::FRAC_1_SQRT_2)))
            }
            Activation::Erf => erf(v),
            Activation::Exp => exp(v),
            Activation::Silu => v.clone() * Activation::Sigmoid.expr(v),
        }
    }

    /// `f(x)` in scalar f32 (the portable path).
    pub fn scalar(self, x: f32) -> f32 {
        match self {
            Activation::Sigmoid => 1.0 / (1.0 + exp_scalar(0.0 - x)),
            Activation::Tanh => tanh_scalar(x),
            Activation::Gelu => 0.5 * x * (1.0 + erf_scalar(x * std::f32::consts::FRAC_1_SQRT_2)),
            Activation::Erf => erf_scalar(x),
            Activation::Exp => exp_scalar(x),
            Activation::Silu => x * Activation::Sigmoid.scalar(x),
        }
    }
}

/// The intrinsic `{f}_f32_{rows}x{cols}`: `Y[i, j] = f(X[i, j])` (operands `X`, then `Y`,
/// any strides).
pub fn activation_f32(f: Activation, rows: i64, cols: i64) -> Result<Arc<TensorIntrin>> {
    if rows < 1 || cols < 1 {
        return Err(Error::InvalidExpr(format!(
            "{}_f32({}, {}): the tile must have at least one row and one column",
            f.name(),
            rows,
            cols
        )));
    }
    let name = format!("{}_f32_{}x{}", f.name(), rows, cols);
    super::register_once(&name, || {
        let x = placeholder(&[rows.into(), cols.into()], DType::F32, "X");
        let y = compute(&[rows.into(), cols.into()], "Y", |i| {
            f.expr(x.at(&[i[0].clone(), i[1].clone()]))
        });
        let Host { symbol, entry, .. } = host(f);
        TensorIntrin::new(
            &name,
            &y,
            &[x],
            Some(CpuImpl {
                symbol,
                func: entry,
            }),
        )
    })
}

/// An activation's host code: its JIT symbol, the host function, and its row loop (each
/// monomorphized for the activation, `Activation as u8`).
struct Host {
    symbol: &'static str,
    entry: super::CpuIntrinFn,
    row: unsafe fn(*const f32, isize, *mut f32, isize, usize, CpuPath),
}

fn host(f: Activation) -> Host {
    macro_rules! host {
        ($symbol:literal, $f:expr) => {
            Host {
                symbol: $symbol,
                entry: entry::<{ $f as u8 }>,
                row: run_row::<{ $f as u8 }>,
            }
        };
    }
    match f {
        Activation::Sigmoid => host!("loopforge_intrin_sigmoid_f32", Activation::Sigmoid),
        Activation::Tanh => host!("loopforge_intrin_tanh_f32", Activation::Tanh),
        Activation::Gelu => host!("loopforge_intrin_gelu_f32", Activation::Gelu),
        Activation::Erf => host!("loopforge_intrin_erf_f32", Activation::Erf),
        Activation::Exp => host!("loopforge_intrin_exp_f32_tile", Activation::Exp),
        Activation::Silu => host!("loopforge_intrin_silu_f32", Activation::Silu),
    }
}

/// The host function. Words: mode (always compute), `X`, `Y`, `X`'s two strides, `Y`'s,
/// then the rows and the columns. Rows stored one after another on both sides are one
/// run (the short rows of a 7x7 plane then fill whole vectors).
extern "C" fn entry<const F: u8>(args: *const i64) {
    // Safety: the JIT passes the words above for views that bounds inference keeps
    // inside their buffers.
    unsafe { words::<F>(args, CpuPath::best()) }
}

/// The host function of `f` on the AVX-512 path, without feature detection: for tests
/// that run it under an emulator where the CPU lacks AVX-512.
#[doc(hidden)]
#[cfg(target_arch = "x86_64")]
pub fn activation_f32_avx512_entry(f: Activation) -> unsafe extern "C" fn(*const i64) {
    /// # Safety
    /// As the host function's words; the CPU (or emulator) must have AVX-512F.
    unsafe extern "C" fn avx512<const F: u8>(args: *const i64) {
        unsafe { words::<F>(args, CpuPath::Avx512) }
    }
    match f {
        Activation::Sigmoid => avx512::<{ Activation::Sigmoid as u8 }>,
        Activation::Tanh => avx512::<{ Activation::Tanh as u8 }>,
        Activation::Gelu => avx512::<{ Activation::Gelu as u8 }>,
        Activation::Erf => avx512::<{ Activation::Erf as u8 }>,
        Activation::Exp => avx512::<{ Activation::Exp as u8 }>,
        Activation::Silu => avx512::<{ Activation::Silu as u8 }>,
    }
}

/// The host function's words (see [`entry`]) on `path`.
///
/// # Safety
/// As [`entry`]'s words; the CPU must run `path`.
unsafe fn words<const F: u8>(args: *const i64, path: CpuPath) {
    unsafe {
        let w = std::slice::from_raw_parts(args, 9);
        let (x, y) = (w[1] as *const f32, w[2] as *mut f32);
        let (rows, cols) = (w[7], w[8]);
        // Contiguous rows on both sides (a plane of a tensor): one run over all of them.
        if w[4] == 1 && w[6] == 1 && w[3] == cols && w[5] == cols {
            run_row::<F>(x, 1, y, 1, (rows * cols) as usize, path);
            return;
        }
        for r in 0..rows as isize {
            run_row::<F>(
                x.offset(r * w[3] as isize),
                w[4] as isize,
                y.offset(r * w[5] as isize),
                w[6] as isize,
                w[8] as usize,
                path,
            );
        }
    }
}

/// `n` elements of one row of the activation `ALL[F]` on `path` (any path without
/// AVX-512 or AVX2 and FMA the portable one).
///
/// # Safety
/// The views must be valid for `n` elements; the CPU must run `path`.
unsafe fn run_row<const F: u8>(
    x: *const f32,
    sx: isize,
    y: *mut f32,
    sy: isize,
    n: usize,
    path: CpuPath,
) {
    #[cfg(target_arch = "x86_64")]
    if path == CpuPath::Avx512 {
        unsafe { avx512::row::<F>(x, sx, y, sy, n) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if path != CpuPath::Portable && super::has_avx2_fma() {
        unsafe { avx2::row::<F>(x, sx, y, sy, n) };
        return;
    }
    let _ = path;
    let f = Activation::ALL[F as usize];
    for i in 0..n as isize {
        unsafe { *y.offset(i * sy) = f.scalar(*x.offset(i * sx)) };
    }
}

/// `f` over `x` into `y` (contiguous, the same length) on `path`: the host function's
/// computation, for tests. A path this CPU does not run, or slices of different lengths,
/// are errors.
pub fn activation_f32_eval(f: Activation, x: &[f32], y: &mut [f32], path: CpuPath) -> Result<()> {
    path.check()?;
    if x.len() != y.len() {
        return Err(Error::Argument(format!(
            "activation_f32_eval: x has {} elements, y {}",
            x.len(),
            y.len()
        )));
    }
    let (xp, yp, n) = (x.as_ptr(), y.as_mut_ptr(), x.len());
    // Safety: both slices hold n elements; the path was checked.
    unsafe { (host(f).row)(xp, 1, yp, 1, n, path) };
    Ok(())
}

/// `|x|` and `x`'s sign bit.
fn abs_and_sign(x: f32) -> (f32, u32) {
    (
        f32::from_bits(x.to_bits() & !(1 << 31)),
        x.to_bits() & (1 << 31),
    )
}

fn with_sign(r: f32, sign: u32) -> f32 {
    f32::from_bits(r.to_bits() | sign)
}

/// `vmath`'s `tanh` in scalar f32.
fn tanh_scalar(x: f32) -> f32 {
    let (z, sign) = abs_and_sign(x);
    let large = 1.0 - 2.0 / (exp_scalar(z + z) + 1.0);
    let z2 = z * z;
    let small = poly(&TANH_Q, z2) * z2 * z + z;
    with_sign(if z < TANH_SMALL { small } else { large }, sign)
}

/// `vmath`'s `erf` in scalar f32.
fn erf_scalar(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let (z, sign) = abs_and_sign(x);
    let z2 = z * z;
    let small = poly(&ERF_A, z2) * z;
    let large = 1.0 - exp_scalar(-z2) * poly(&ERF_B, 1.0 / z);
    with_sign(if z < 1.0 { small } else { large }, sign)
}

/// One-line vector operations of a module's lane type `V`, each `#[inline]` with the
/// module's target features (so they inline into its other functions).
#[cfg(target_arch = "x86_64")]
macro_rules! lanes {
    ($feature:literal; $($name:ident($($arg:ident: $t:ty),*) = $body:expr;)*) => {$(
        #[inline]
        #[target_feature(enable = $feature)]
        fn $name($($arg: $t),*) -> V {
            $body
        }
    )*};
}

/// The activations on a module's vectors, written once over its lane type `V`, mask type
/// `M` and operations (`splat`, `add`, `sub`, `mul`, `div`, `fmadd`, `and`, `andnot`,
/// `or`, `xor`, `exp`, `lt`, `unord`, `blend`): the AVX2 and the AVX-512 path run the
/// same operations, so their results are equal bit for bit, and equal to `vmath`'s
/// generated code where the JIT fuses multiply-adds.
#[cfg(target_arch = "x86_64")]
macro_rules! vector_math {
    ($feature:literal) => {
        #[inline]
        #[target_feature(enable = $feature)]
        fn apply<const F: u8>(x: V) -> V {
            // `F` is a constant: the match folds away.
            match Activation::ALL[F as usize] {
                Activation::Sigmoid => sigmoid(x),
                Activation::Silu => mul(x, sigmoid(x)),
                Activation::Tanh => tanh(x),
                Activation::Gelu => {
                    let h = mul(splat(0.5), x);
                    let s = mul(x, splat(std::f32::consts::FRAC_1_SQRT_2));
                    mul(h, add(splat(1.0), erf(s)))
                }
                Activation::Erf => erf(x),
                Activation::Exp => exp(x),
            }
        }

        /// `1 / (1 + exp(0 - x))`.
        #[inline]
        #[target_feature(enable = $feature)]
        fn sigmoid(x: V) -> V {
            let one = splat(1.0);
            div(one, add(one, exp(sub(splat(0.0), x))))
        }

        /// The polynomial with coefficients `c` (highest degree first) at `x`, by Horner
        /// with fused multiply-adds.
        #[inline]
        #[target_feature(enable = $feature)]
        fn poly(c: &[f32], x: V) -> V {
            let mut p = splat(c[0]);
            for v in &c[1..] {
                p = fmadd(p, x, splat(*v));
            }
            p
        }

        /// `|x|` and the sign bits of `x`.
        #[inline]
        #[target_feature(enable = $feature)]
        fn abs_and_sign(x: V) -> (V, V) {
            let s = splat(-0.0);
            (andnot(s, x), and(x, s))
        }

        #[inline]
        #[target_feature(enable = $feature)]
        fn tanh(x: V) -> V {
            let (z, sign) = abs_and_sign(x);
            let (one, two) = (splat(1.0), splat(2.0));
            let e = exp(add(z, z));
            let large = sub(one, div(two, add(e, one)));
            let z2 = mul(z, z);
            let pz2 = mul(poly(&TANH_Q, z2), z2);
            let small = fmadd(pz2, z, z);
            or(blend(lt(z, splat(TANH_SMALL)), large, small), sign)
        }

        #[inline]
        #[target_feature(enable = $feature)]
        fn erf(x: V) -> V {
            let (z, sign) = abs_and_sign(x);
            let one = splat(1.0);
            let z2 = mul(z, z);
            let small = mul(poly(&ERF_A, z2), z);
            let b = poly(&ERF_B, div(one, z));
            let e = exp(xor(z2, splat(-0.0)));
            let large = sub(one, mul(e, b));
            let r = or(blend(lt(z, one), large, small), sign);
            blend(unord(x), r, x)
        }
    };
}

/// The AVX-512 path: the AVX2 path's operations on 16 lanes (so its results, bit for bit;
/// the bitwise float operations through integer vectors, which AVX-512F has), four
/// vectors per step, a last partial vector through a mask.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::exp::{exp16, through_lanes};
    use super::{Activation, ERF_A, ERF_B, TANH_Q, TANH_SMALL};
    use std::arch::x86_64::*;

    /// `n` elements: 64 at a time (four independent vectors) where both strides are 1,
    /// then 16 at a time, the last 1 to 15 through a mask; strided views through a lane
    /// buffer.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn row<const F: u8>(
        x: *const f32,
        sx: isize,
        y: *mut f32,
        sy: isize,
        n: usize,
    ) {
        if sx != 1 || sy != 1 {
            let lanes = |l: &mut [f32; 16]| unsafe {
                _mm512_storeu_ps(l.as_mut_ptr(), apply::<F>(_mm512_loadu_ps(l.as_ptr())))
            };
            return unsafe { through_lanes(x, sx, y, sy, 0, n, lanes) };
        }
        let mut i = 0;
        while i + 64 <= n {
            unsafe {
                let a = _mm512_loadu_ps(x.add(i));
                let b = _mm512_loadu_ps(x.add(i + 16));
                let c = _mm512_loadu_ps(x.add(i + 32));
                let d = _mm512_loadu_ps(x.add(i + 48));
                _mm512_storeu_ps(y.add(i), apply::<F>(a));
                _mm512_storeu_ps(y.add(i + 16), apply::<F>(b));
                _mm512_storeu_ps(y.add(i + 32), apply::<F>(c));
                _mm512_storeu_ps(y.add(i + 48), apply::<F>(d));
            }
            i += 64;
        }
        while i < n {
            let m = ((1u32 << (n - i).min(16)) - 1) as __mmask16;
            unsafe {
                let v = apply::<F>(_mm512_maskz_loadu_ps(m, x.add(i)));
                _mm512_mask_storeu_ps(y.add(i), m, v);
            }
            i += 16;
        }
    }

    type V = __m512;
    type M = __mmask16;
    /// The bits of `v` as an integer vector.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn int(v: V) -> __m512i {
        _mm512_castps_si512(v)
    }
    lanes! { "avx512f";
        splat(v: f32) = _mm512_set1_ps(v);
        add(a: V, b: V) = _mm512_add_ps(a, b);
        sub(a: V, b: V) = _mm512_sub_ps(a, b);
        mul(a: V, b: V) = _mm512_mul_ps(a, b);
        div(a: V, b: V) = _mm512_div_ps(a, b);
        fmadd(a: V, b: V, c: V) = _mm512_fmadd_ps(a, b, c);
        // The bitwise float operations, on AVX-512F's integer vectors.
        and(a: V, b: V) = _mm512_castsi512_ps(_mm512_and_si512(int(a), int(b)));
        andnot(a: V, b: V) = _mm512_castsi512_ps(_mm512_andnot_si512(int(a), int(b)));
        or(a: V, b: V) = _mm512_castsi512_ps(_mm512_or_si512(int(a), int(b)));
        xor(a: V, b: V) = _mm512_castsi512_ps(_mm512_xor_si512(int(a), int(b)));
        exp(x: V) = unsafe { exp16(x) };
    }
    /// `a < b` (ordered) per lane.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn lt(a: V, b: V) -> M {
        _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b)
    }
    /// The NaN lanes of `x`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn unord(x: V) -> M {
        _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x)
    }
    /// `t` where `m` is set, `f` elsewhere.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn blend(m: M, f: V, t: V) -> V {
        _mm512_mask_blend_ps(m, f, t)
    }
    vector_math!("avx512f");
}

/// The AVX2 + FMA path.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::super::exp::{exp8, through_lanes};
    use super::{Activation, ERF_A, ERF_B, TANH_Q, TANH_SMALL};
    use std::arch::x86_64::*;

    /// `n` elements: 32 at a time (four independent vectors) where both strides are 1,
    /// then 16, then 8, the rest through a lane buffer.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn row<const F: u8>(
        x: *const f32,
        sx: isize,
        y: *mut f32,
        sy: isize,
        n: usize,
    ) {
        let mut i = 0;
        if sx == 1 && sy == 1 {
            while i + 32 <= n {
                unsafe {
                    let a = _mm256_loadu_ps(x.add(i));
                    let b = _mm256_loadu_ps(x.add(i + 8));
                    let c = _mm256_loadu_ps(x.add(i + 16));
                    let d = _mm256_loadu_ps(x.add(i + 24));
                    _mm256_storeu_ps(y.add(i), apply::<F>(a));
                    _mm256_storeu_ps(y.add(i + 8), apply::<F>(b));
                    _mm256_storeu_ps(y.add(i + 16), apply::<F>(c));
                    _mm256_storeu_ps(y.add(i + 24), apply::<F>(d));
                }
                i += 32;
            }
            while i + 16 <= n {
                unsafe {
                    let a = _mm256_loadu_ps(x.add(i));
                    let b = _mm256_loadu_ps(x.add(i + 8));
                    _mm256_storeu_ps(y.add(i), apply::<F>(a));
                    _mm256_storeu_ps(y.add(i + 8), apply::<F>(b));
                }
                i += 16;
            }
            while i + 8 <= n {
                unsafe { _mm256_storeu_ps(y.add(i), apply::<F>(_mm256_loadu_ps(x.add(i)))) };
                i += 8;
            }
        }
        let lanes = |l: &mut [f32; 8]| unsafe {
            _mm256_storeu_ps(l.as_mut_ptr(), apply::<F>(_mm256_loadu_ps(l.as_ptr())))
        };
        unsafe { through_lanes(x, sx, y, sy, i, n, lanes) };
    }

    type V = __m256;
    type M = __m256;
    lanes! { "avx2,fma";
        splat(v: f32) = _mm256_set1_ps(v);
        add(a: V, b: V) = _mm256_add_ps(a, b);
        sub(a: V, b: V) = _mm256_sub_ps(a, b);
        mul(a: V, b: V) = _mm256_mul_ps(a, b);
        div(a: V, b: V) = _mm256_div_ps(a, b);
        fmadd(a: V, b: V, c: V) = _mm256_fmadd_ps(a, b, c);
        and(a: V, b: V) = _mm256_and_ps(a, b);
        andnot(a: V, b: V) = _mm256_andnot_ps(a, b);
        or(a: V, b: V) = _mm256_or_ps(a, b);
        xor(a: V, b: V) = _mm256_xor_ps(a, b);
        exp(x: V) = unsafe { exp8(x) };
    }
    /// `a < b` (ordered) per lane.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn lt(a: V, b: V) -> M {
        _mm256_cmp_ps::<_CMP_LT_OQ>(a, b)
    }
    /// The NaN lanes of `x`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn unord(x: V) -> M {
        _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x)
    }
    /// `t` where `m` is set, `f` elsewhere.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn blend(m: M, f: V, t: V) -> V {
        _mm256_blendv_ps(f, t, m)
    }
    vector_math!("avx2,fma");
}
