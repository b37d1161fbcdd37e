//! `exp_f32(n)`: the elementwise exponential `Y[i] = exp(X[i])` over `n` elements, each
//! operand contiguous or strided; `exp_sub_f32(n)`: `Y[i] = exp(X[i] - S)` for one value
//! `S` (a softmax row's exponentials of the row minus its maximum, in one pass instead of
//! a pass that writes the difference and one that reads it).
//!
//! Algorithm (Cephes `expf`, as in most SIMD math libraries): the argument is clamped to
//! `[-104, 89]` (beyond which the result is 0 or infinity anyway), `n = round(x log2 e)`,
//! `r = x - n ln 2` in two parts (Cody-Waite: `ln 2 = 0.693359375 - 2.12194440e-4`, the
//! first part exact in 9 bits so `n * 0.693359375` is exact), `exp(r)` on
//! `|r| <= ln 2 / 2` by a degree-7 polynomial (`1 + r + r^2 (p0 r^5 + ... + p5)`), and the
//! result scaled by `2^n` as two factors `2^(n>>1) 2^(n - n>>1)`, so that results in the
//! subnormal range are rounded once, by the last multiplication, and `x > ln(FLT_MAX)`
//! overflows to infinity by itself. NaN is passed through.
//!
//! Accuracy (measured by `tests/intrinsics.rs` over about a million points of
//! `[-104, 89]` against `f64::exp` rounded to f32): at most 1 ulp for every result,
//! normal or subnormal; relative error at most 8.3e-8 where the result is normal (8.2e-8
//! on the AVX2+FMA path, 8.0e-8 on the portable one); `exp(x)` is infinity for
//! `x > 88.7228` (ln of the largest f32), 0 below about -103.97, NaN for NaN.
//!
//! CPU implementation: with AVX-512F (detected at run time) sixteen lanes at a time (the
//! tail of unit-stride operands through a mask), else with AVX2 and FMA eight (strided
//! operands gathered and scattered through a lane buffer, the tail padded), so every
//! element takes the same vector path (the same operations on every path: the AVX-512
//! one gives the AVX2 one's results bit for bit); otherwise the same algorithm in scalar code
//! (plain multiply and add).

use super::{check_len, check_view, CpuImpl, CpuPath, TensorIntrin};
use crate::error::Result;
use crate::te::{compute, exp, placeholder, DType};
use std::sync::Arc;

const SYMBOL: &str = "loopforge_intrin_exp_f32";
const SUB_SYMBOL: &str = "loopforge_intrin_exp_sub_f32";

// The algorithm's constants, shared with the generated code's inline `exp`
// (`codegen_cpu::vmath`), which must compute the same results.
/// The argument's clamp: `exp` is infinity above and 0 below anyway.
pub(crate) const HI: f32 = 89.0;
pub(crate) const LO: f32 = -104.0;
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` in two parts (Cody-Waite): `n * LN2_HI` is exact.
pub(crate) const LN2_HI: f32 = 0.693_359_4; // 0.693359375 exactly
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes `expf`'s polynomial, highest degree first (`exp(r) ~ 1 + r + r^2 p(r)`).
pub(crate) const P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_2e-3, // Cephes' 1.3981999507e-3 is one f32 ulp lower; measured as it is
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5, // Cephes 5.0000001201e-1 rounds to 0.5 in f32
];

/// The intrinsic `exp_f32_{n}`: `Y[i] = exp(X[i])` for `i < n` (registered; one object per
/// length). Operands: `X` (`n`), then `Y` (`n`), any strides.
pub fn exp_f32(n: i64) -> Result<Arc<TensorIntrin>> {
    check_len("exp_f32", n)?;
    let name = format!("exp_f32_{}", n);
    super::register_once(&name, || {
        let x = placeholder(&[n.into()], DType::F32, "X");
        let y = compute(&[n.into()], "Y", |i| exp(x.at(&[i[0].clone()])));
        TensorIntrin::new(
            &name,
            &y,
            &[x],
            Some(CpuImpl {
                symbol: SYMBOL,
                func: exp_entry,
            }),
        )
    })
}

/// The intrinsic `exp_sub_f32_{n}`: `Y[i] = exp(X[i] - S)` for `i < n` (registered; one
/// object per length), the difference rounded to f32 first, then `exp_f32`'s algorithm.
/// Operands: `X` (`n`, any stride), `S` (0-d), then `Y` (`n`, any stride).
pub fn exp_sub_f32(n: i64) -> Result<Arc<TensorIntrin>> {
    check_len("exp_sub_f32", n)?;
    let name = format!("exp_sub_f32_{}", n);
    super::register_once(&name, || {
        let x = placeholder(&[n.into()], DType::F32, "X");
        let sh = placeholder(&[], DType::F32, "S");
        let y = compute(
            &[n.into()],
            "Y",
            |i| exp(x.at(&[i[0].clone()]) - sh.at(&[])),
        );
        TensorIntrin::new(
            &name,
            &y,
            &[x, sh],
            Some(CpuImpl {
                symbol: SUB_SYMBOL,
                func: exp_sub_entry,
            }),
        )
    })
}

extern "C" fn exp_entry(args: *const i64) {
    // Safety: the JIT passes [mode, x, y, sx, sy, n] (mode is always compute: no
    // reduction), for views that bounds inference keeps inside their buffers.
    unsafe { exp_words::<false>(args, CpuPath::best()) }
}

extern "C" fn exp_sub_entry(args: *const i64) {
    // Safety: the JIT passes [mode, x, s, y, sx, sy, n] (mode compute), for views that
    // bounds inference keeps inside their buffers.
    unsafe { exp_words::<true>(args, CpuPath::best()) }
}

/// `exp_f32`'s host function (`exp_sub_f32`'s with `SUB`, whose words hold the address
/// of `S` after `X`'s) on `path`.
///
/// # Safety
/// As the entries' words; the CPU must run `path`.
unsafe fn exp_words<const SUB: bool>(args: *const i64, path: CpuPath) {
    let o = usize::from(SUB);
    let w = unsafe { std::slice::from_raw_parts(args, 6 + o) };
    let shift = if SUB {
        unsafe { *(w[2] as *const f32) }
    } else {
        0.0
    };
    unsafe {
        exp_views(
            w[1] as *const f32,
            w[3 + o] as isize,
            w[2 + o] as *mut f32,
            w[4 + o] as isize,
            w[5 + o] as usize,
            shift,
            path,
        )
    };
}

/// `exp_f32`'s host function on the AVX-512 path, without feature detection: for tests
/// that run it under an emulator where the CPU lacks AVX-512.
///
/// # Safety
/// As the host function's words; the CPU (or emulator) must have AVX-512F.
#[doc(hidden)]
#[cfg(target_arch = "x86_64")]
pub unsafe extern "C" fn exp_f32_avx512_entry(args: *const i64) {
    unsafe { exp_words::<false>(args, CpuPath::Avx512) }
}

/// `exp_sub_f32`'s host function on the AVX-512 path, without feature detection (as
/// [`exp_f32_avx512_entry`]).
///
/// # Safety
/// As the host function's words; the CPU (or emulator) must have AVX-512F.
#[doc(hidden)]
#[cfg(target_arch = "x86_64")]
pub unsafe extern "C" fn exp_sub_f32_avx512_entry(args: *const i64) {
    unsafe { exp_words::<true>(args, CpuPath::Avx512) }
}

/// `y[i] = exp(x[i] - shift)` (`shift` 0 for `exp_f32`: `x - 0` is `x`, bit for bit, but
/// for a signalling NaN, which comes out quiet).
///
/// # Safety
/// The views must be valid for `n` elements; the CPU must run `path`.
unsafe fn exp_views(
    x: *const f32,
    sx: isize,
    y: *mut f32,
    sy: isize,
    n: usize,
    shift: f32,
    path: CpuPath,
) {
    #[cfg(target_arch = "x86_64")]
    if path == CpuPath::Avx512 {
        unsafe { exp_avx512(x, sx, y, sy, n, shift) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if path == CpuPath::Avx2Fma {
        unsafe { exp_avx2(x, sx, y, sy, n, shift) };
        return;
    }
    let _ = path;
    for i in 0..n as isize {
        unsafe { *y.offset(i * sy) = exp_scalar(*x.offset(i * sx) - shift) };
    }
}

/// The polynomial with coefficients `c` (highest degree first) at `x`, by Horner, in
/// scalar f32 (multiplies and adds unfused).
pub(super) fn poly(c: &[f32], x: f32) -> f32 {
    c[1..].iter().fold(c[0], |p, c| p * x + c)
}

/// The portable path: the algorithm of the module doc in scalar f32 arithmetic.
pub(super) fn exp_scalar(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let xc = x.clamp(LO, HI);
    let n = (xc * LOG2E).round_ties_even();
    let r = xc - n * LN2_HI;
    let r = r - n * LN2_LO;
    let z = r * r;
    let e = poly(&P, r) * z + r + 1.0;
    let ni = n as i32;
    let (n1, n2) = (ni >> 1, ni - (ni >> 1));
    let s = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
    e * s(n1) * s(n2)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn exp8(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x);
    let xc = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(HI)), _mm256_set1_ps(LO));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        xc,
        _mm256_set1_ps(LOG2E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), xc);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    let z = _mm256_mul_ps(r, r);
    let mut p = _mm256_set1_ps(P[0]);
    for c in &P[1..] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
    }
    let e = _mm256_add_ps(_mm256_fmadd_ps(p, z, r), _mm256_set1_ps(1.0));
    let ni = _mm256_cvtps_epi32(n);
    let n1 = _mm256_srai_epi32::<1>(ni);
    let n2 = _mm256_sub_epi32(ni, n1);
    let bias = _mm256_set1_epi32(127);
    let s1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n1, bias)));
    let s2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n2, bias)));
    let out = _mm256_mul_ps(_mm256_mul_ps(e, s1), s2);
    _mm256_blendv_ps(out, x, nan)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_avx2(x: *const f32, sx: isize, y: *mut f32, sy: isize, n: usize, shift: f32) {
    use std::arch::x86_64::*;
    let s = _mm256_set1_ps(shift);
    let mut i = 0;
    if sx == 1 && sy == 1 {
        while i + 8 <= n {
            let v = _mm256_sub_ps(unsafe { _mm256_loadu_ps(x.add(i)) }, s);
            unsafe { _mm256_storeu_ps(y.add(i), exp8(v)) };
            i += 8;
        }
    }
    // Strided operands and the tail (the padding lanes' exp is computed and dropped).
    let exp_lanes = |l: &mut [f32; 8]| unsafe {
        let v = _mm256_sub_ps(_mm256_loadu_ps(l.as_ptr()), s);
        _mm256_storeu_ps(l.as_mut_ptr(), exp8(v))
    };
    unsafe { through_lanes(x, sx, y, sy, i, n, exp_lanes) };
}

/// Elements `i..n` of the views, `L` at a time, gathered into a lane buffer (unused lanes
/// hold 0), transformed in place by `f`, and scattered back.
///
/// # Safety
/// The views must be valid for `n` elements.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn through_lanes<const L: usize>(
    x: *const f32,
    sx: isize,
    y: *mut f32,
    sy: isize,
    mut i: usize,
    n: usize,
    mut f: impl FnMut(&mut [f32; L]),
) {
    let mut lanes = [0f32; L];
    while i < n {
        let m = (n - i).min(L);
        for (l, v) in lanes.iter_mut().enumerate() {
            *v = if l < m {
                unsafe { *x.offset((i + l) as isize * sx) }
            } else {
                0.0
            };
        }
        f(&mut lanes);
        for (l, v) in lanes.iter().enumerate().take(m) {
            unsafe { *y.offset((i + l) as isize * sy) = *v };
        }
        i += m;
    }
}

/// `exp8` on 16 lanes.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn exp16(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
    let xc = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(HI)), _mm512_set1_ps(LO));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(xc, _mm512_set1_ps(LOG2E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), xc);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    let z = _mm512_mul_ps(r, r);
    let mut p = _mm512_set1_ps(P[0]);
    for c in &P[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
    }
    let e = _mm512_add_ps(_mm512_fmadd_ps(p, z, r), _mm512_set1_ps(1.0));
    let ni = _mm512_cvtps_epi32(n);
    let n1 = _mm512_srai_epi32::<1>(ni);
    let n2 = _mm512_sub_epi32(ni, n1);
    let bias = _mm512_set1_epi32(127);
    let s1 = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(n1, bias)));
    let s2 = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(n2, bias)));
    let out = _mm512_mul_ps(_mm512_mul_ps(e, s1), s2);
    _mm512_mask_blend_ps(nan, out, x)
}

/// 16 lanes at a time; unit strides load and store the last 1 to 15 through a mask,
/// strided operands go through a lane buffer (as `exp_avx2`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp_avx512(x: *const f32, sx: isize, y: *mut f32, sy: isize, n: usize, shift: f32) {
    use std::arch::x86_64::*;
    let s = _mm512_set1_ps(shift);
    if sx == 1 && sy == 1 {
        let mut i = 0;
        while i < n {
            let m = ((1u32 << (n - i).min(16)) - 1) as __mmask16;
            let v = _mm512_sub_ps(unsafe { _mm512_maskz_loadu_ps(m, x.add(i)) }, s);
            unsafe { _mm512_mask_storeu_ps(y.add(i), m, exp16(v)) };
            i += 16;
        }
        return;
    }
    let exp_lanes = |l: &mut [f32; 16]| unsafe {
        let v = _mm512_sub_ps(_mm512_loadu_ps(l.as_ptr()), s);
        _mm512_storeu_ps(l.as_mut_ptr(), exp16(v))
    };
    unsafe { through_lanes(x, sx, y, sy, 0, n, exp_lanes) };
}

/// The host function's computation of `exp_f32` on slices (`n` elements with the given
/// strides) through the chosen code path; what the tests measure. A path this CPU does
/// not run is an error.
pub fn exp_f32_eval(
    x: &[f32],
    sx: usize,
    y: &mut [f32],
    sy: usize,
    n: usize,
    path: CpuPath,
) -> Result<()> {
    eval("exp_f32_eval", x, sx, 0.0, y, sy, n, path)
}

/// The host function's computation of `exp_sub_f32` (`y[i] = exp(x[i] - shift)`) on
/// slices, as [`exp_f32_eval`].
pub fn exp_sub_f32_eval(
    x: &[f32],
    sx: usize,
    shift: f32,
    y: &mut [f32],
    sy: usize,
    n: usize,
    path: CpuPath,
) -> Result<()> {
    eval("exp_sub_f32_eval", x, sx, shift, y, sy, n, path)
}

/// The `*_eval` functions' checks (errors naming `what`) and call.
#[allow(clippy::too_many_arguments)]
fn eval(
    what: &str,
    x: &[f32],
    sx: usize,
    shift: f32,
    y: &mut [f32],
    sy: usize,
    n: usize,
    path: CpuPath,
) -> Result<()> {
    path.check()?;
    check_view(&format!("{}: x", what), x.len(), sx, n)?;
    check_view(&format!("{}: y", what), y.len(), sy, n)?;
    // Safety: the views were checked; the path is supported.
    unsafe {
        exp_views(
            x.as_ptr(),
            sx as isize,
            y.as_mut_ptr(),
            sy as isize,
            n,
            shift,
            path,
        )
    };
    Ok(())
}
