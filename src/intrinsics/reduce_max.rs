//! `reduce_max_f32(n)`: the maximum of `n` elements into one, `C = max_k A[k]` (a softmax
//! row's maximum in one call instead of partial maxima in generated 4-lane vectors and a
//! scalar chain that combines them). The output is 0-dimensional, as `reduce_sum_f32`'s:
//! a row maximum `M[i] = max_k X[i, k]` is tensorized at its `k` loop; with `k` split, the
//! first slice's call computes and the others take the maximum with what is there
//! (`Update`); mode init writes `-inf`, the reduction's identity.
//!
//! NaN propagates, as in the declaration (the interpreter's `max`): any NaN among the
//! elements makes the result NaN. The scalar steps are the declaration's own `max`
//! (`te::arith::fmax32`); of two zeros the vector maxima may return either (the
//! declaration returns `+0.0` for `max(-0.0, +0.0)`; equal as numbers).
//!
//! CPU implementation, for unit strides: with AVX-512F (detected at run time), four 16-wide
//! running maxima (64 elements per step), then 16 at a time, the tail loaded through a
//! mask with `-inf` in the other lanes; with AVX2, four 8-wide ones, then 8 at a time and
//! a scalar tail; NaNs are tracked apart (an unordered comparison ORed into a mask), since
//! the vector maximum returns its second operand when either is NaN. Otherwise (no AVX2,
//! or a strided operand) one scalar running maximum.

use super::{check_len, check_view, CpuImpl, CpuPath, TensorIntrin};
use crate::error::Result;
use crate::te::arith::fmax32;
use crate::te::{compute, max_reduce, placeholder, reduce_axis, DType};
use std::sync::Arc;

const SYMBOL: &str = "loopforge_intrin_reduce_max_f32";

/// The intrinsic `reduce_max_f32_{n}`: `C = max_{k < n} A[k]` (registered; one object per
/// length). Operands: `A` (`n`, any stride), then `C` (0-d).
pub fn reduce_max_f32(n: i64) -> Result<Arc<TensorIntrin>> {
    check_len("reduce_max_f32", n)?;
    let name = format!("reduce_max_f32_{}", n);
    super::register_once(&name, || {
        let a = placeholder(&[n.into()], DType::F32, "A");
        let k = reduce_axis(0, n, "k");
        let c = compute(&[], "C", |_| max_reduce(a.at(&[k.x()]), &[k.clone()]));
        TensorIntrin::new(
            &name,
            &c,
            &[a],
            Some(CpuImpl {
                symbol: SYMBOL,
                func: entry,
            }),
        )
    })
}

extern "C" fn entry(args: *const i64) {
    // Safety: the JIT passes [mode, c, n] in mode init and [mode, a, c, sa, n] otherwise,
    // for views that bounds inference keeps inside their buffers.
    unsafe { words(args, CpuPath::best()) }
}

/// The host function on `path`.
///
/// # Safety
/// As `entry`'s words; the CPU must run `path`.
unsafe fn words(args: *const i64, path: CpuPath) {
    let max = |a, sa, n| unsafe { reduce_max(a, sa, n, path) };
    // Update: the maximum with what is there, NaN-propagating as the declaration.
    unsafe { super::dot::reduction_words(args, f32::NEG_INFINITY, max, fmax32) }
}

/// `reduce_max_f32`'s host function on the AVX-512 path, without feature detection: for
/// tests that run it under an emulator where the CPU lacks AVX-512.
///
/// # Safety
/// As the host function's words; the CPU (or emulator) must have AVX-512F.
#[doc(hidden)]
#[cfg(target_arch = "x86_64")]
pub unsafe extern "C" fn reduce_max_f32_avx512_entry(args: *const i64) {
    unsafe { words(args, CpuPath::Avx512) }
}

/// `max_k a[k * sa]` (`-inf` for no elements).
///
/// # Safety
/// The view must be valid for `n` elements; the CPU must run `path`.
unsafe fn reduce_max(a: *const f32, sa: isize, n: usize, path: CpuPath) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if sa == 1 && path == CpuPath::Avx512 {
        return unsafe { max_avx512(a, n) };
    }
    #[cfg(target_arch = "x86_64")]
    if sa == 1 && path == CpuPath::Avx2Fma {
        return unsafe { max_avx2(a, n) };
    }
    let _ = path;
    (0..n as isize).fold(f32::NEG_INFINITY, |m, k| {
        fmax32(m, unsafe { *a.offset(k * sa) })
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn max_avx2(a: *const f32, n: usize) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(f32::NEG_INFINITY); 4];
    let mut nan = _mm256_setzero_ps();
    let mut k = 0;
    while k + 32 <= n {
        for (j, m) in acc.iter_mut().enumerate() {
            let x = unsafe { _mm256_loadu_ps(a.add(k + 8 * j)) };
            nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x));
            *m = _mm256_max_ps(*m, x);
        }
        k += 32;
    }
    while k + 8 <= n {
        let x = unsafe { _mm256_loadu_ps(a.add(k)) };
        nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x));
        acc[0] = _mm256_max_ps(acc[0], x);
        k += 8;
    }
    let v = _mm256_max_ps(_mm256_max_ps(acc[0], acc[1]), _mm256_max_ps(acc[2], acc[3]));
    let h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    let h = _mm_max_ss(h, _mm_shuffle_ps::<1>(h, h));
    let mut m = _mm_cvtss_f32(h);
    if _mm256_movemask_ps(nan) != 0 {
        m = f32::NAN;
    }
    for j in k..n {
        m = fmax32(m, unsafe { *a.add(j) });
    }
    m
}

/// As `max_avx2` with four 16-wide running maxima (64 elements per step), then one
/// 16-wide step at a time, the last 1 to 15 elements through a mask (`-inf` elsewhere).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn max_avx512(a: *const f32, n: usize) -> f32 {
    use std::arch::x86_64::*;
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut acc = [ninf; 4];
    let mut nan: __mmask16 = 0;
    let mut k = 0;
    while k + 64 <= n {
        for (j, m) in acc.iter_mut().enumerate() {
            let x = unsafe { _mm512_loadu_ps(a.add(k + 16 * j)) };
            nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
            *m = _mm512_max_ps(*m, x);
        }
        k += 64;
    }
    while k < n {
        let lanes = ((1u32 << (n - k).min(16)) - 1) as __mmask16;
        let x = unsafe { _mm512_mask_loadu_ps(ninf, lanes, a.add(k)) };
        nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
        acc[0] = _mm512_max_ps(acc[0], x);
        k += 16;
    }
    if nan != 0 {
        return f32::NAN;
    }
    let v = _mm512_max_ps(_mm512_max_ps(acc[0], acc[1]), _mm512_max_ps(acc[2], acc[3]));
    _mm512_reduce_max_ps(v)
}

/// The host function's computation of `reduce_max_f32` on a slice (`n` elements with
/// stride `sa`) through the chosen code path; what the tests compare with the
/// declaration. A path this CPU does not run is an error.
pub fn reduce_max_f32_eval(a: &[f32], sa: usize, n: usize, path: CpuPath) -> Result<f32> {
    path.check()?;
    check_view("reduce_max_f32_eval: a", a.len(), sa, n)?;
    // Safety: the view was checked; the path is supported.
    Ok(unsafe { reduce_max(a.as_ptr(), sa as isize, n, path) })
}
