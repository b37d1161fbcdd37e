//! Reductions of length `n` into one element: `dot_f32(n)` (`C = sum_k A[k] * B[k]`) and
//! `reduce_sum_f32(n)` (`C = sum_k A[k]`). The output is 0-dimensional, so a row
//! reduction `S[i] = sum_k X[i, k]` is tensorized at its `k` loop (the row index stays
//! fixed in the tile); with `k` split, the first slice's call computes and the others
//! accumulate (`Update`).
//!
//! CPU implementation, for unit strides: with AVX-512F (detected at run time), four 16-wide
//! accumulators (64 elements per step), then 16 at a time, the tail through a mask; with
//! AVX2 and FMA, four 8-wide accumulators (32 elements per step), then one 8-wide step at
//! a time and a scalar tail; otherwise (no AVX2, or strided operands) eight scalar partial sums for unit
//! strides and one running sum for strided ones. Either way the summation order differs
//! from the declaration's sequential one: results agree to rounding, not bit for bit.

use super::{check_len, check_view, CpuImpl, CpuPath, TensorIntrin};
use crate::error::Result;
use crate::te::{compute, placeholder, reduce_axis, sum, DType};
use std::sync::Arc;

const DOT_SYMBOL: &str = "loopforge_intrin_dot_f32";
const SUM_SYMBOL: &str = "loopforge_intrin_reduce_sum_f32";

/// The intrinsic `dot_f32_{n}`: `C = sum_{k < n} A[k] * B[k]` (registered; one object per
/// length). Operands: `A` (`n`), `B` (`n`), any strides, then `C` (0-d).
pub fn dot_f32(n: i64) -> Result<Arc<TensorIntrin>> {
    check_len("dot_f32", n)?;
    let name = format!("dot_f32_{}", n);
    super::register_once(&name, || {
        let a = placeholder(&[n.into()], DType::F32, "A");
        let b = placeholder(&[n.into()], DType::F32, "B");
        let k = reduce_axis(0, n, "k");
        let c = compute(&[], "C", |_| {
            sum(a.at(&[k.x()]) * b.at(&[k.x()]), &[k.clone()])
        });
        TensorIntrin::new(
            &name,
            &c,
            &[a, b],
            Some(CpuImpl {
                symbol: DOT_SYMBOL,
                func: dot_entry,
            }),
        )
    })
}

/// The intrinsic `reduce_sum_f32_{n}`: `C = sum_{k < n} A[k]` (registered; one object per
/// length). Operands: `A` (`n`, any stride), then `C` (0-d).
pub fn reduce_sum_f32(n: i64) -> Result<Arc<TensorIntrin>> {
    check_len("reduce_sum_f32", n)?;
    let name = format!("reduce_sum_f32_{}", n);
    super::register_once(&name, || {
        let a = placeholder(&[n.into()], DType::F32, "A");
        let k = reduce_axis(0, n, "k");
        let c = compute(&[], "C", |_| sum(a.at(&[k.x()]), &[k.clone()]));
        TensorIntrin::new(
            &name,
            &c,
            &[a],
            Some(CpuImpl {
                symbol: SUM_SYMBOL,
                func: sum_entry,
            }),
        )
    })
}

/// Store a reduction's result: `Update` (1) adds to the output, `Compute` (0) replaces it.
///
/// # Safety
/// `c` must be valid for a read and a write.
unsafe fn finish(mode: i64, c: *mut f32, v: f32) {
    unsafe { *c = if mode == 1 { *c + v } else { v } };
}

extern "C" fn dot_entry(args: *const i64) {
    // Safety: the JIT passes [mode, c, n] in mode init and [mode, a, b, c, sa, sb, n]
    // otherwise, for views that bounds inference keeps inside their buffers.
    unsafe { dot_words(args, CpuPath::best()) }
}

/// `dot_f32`'s host function on `path`.
///
/// # Safety
/// As `dot_entry`'s words; the CPU must run `path`.
unsafe fn dot_words(args: *const i64, path: CpuPath) {
    let mode = unsafe { *args };
    if mode == 2 {
        let w = unsafe { std::slice::from_raw_parts(args, 3) };
        unsafe { *(w[1] as *mut f32) = 0.0 };
        return;
    }
    let w = unsafe { std::slice::from_raw_parts(args, 7) };
    let (a, b, c) = (w[1] as *const f32, w[2] as *const f32, w[3] as *mut f32);
    let v = unsafe { dot(a, w[4] as isize, b, w[5] as isize, w[6] as usize, path) };
    unsafe { finish(mode, c, v) };
}

extern "C" fn sum_entry(args: *const i64) {
    // Safety: [mode, c, n] in mode init, [mode, a, c, sa, n] otherwise.
    unsafe { sum_words(args, CpuPath::best()) }
}

/// `reduce_sum_f32`'s host function on `path`.
///
/// # Safety
/// As `sum_entry`'s words; the CPU must run `path`.
unsafe fn sum_words(args: *const i64, path: CpuPath) {
    let sum = |a, sa, n| unsafe { dot(a, sa, std::ptr::null(), 0, n, path) };
    unsafe { reduction_words(args, 0.0, sum, |c, v| c + v) }
}

/// The host function of a reduction of one operand into a 0-d output, from its words:
/// `[mode, c, n]` in mode init (the output set to `identity`), `[mode, a, c, sa, n]`
/// otherwise, where `reduce(a, sa, n)` is the reduction of the `n` elements and mode
/// update (1) stores `combine(c, that)` instead of it.
///
/// # Safety
/// The words must describe views valid for `n` elements and the output.
pub(super) unsafe fn reduction_words(
    args: *const i64,
    identity: f32,
    reduce: impl Fn(*const f32, isize, usize) -> f32,
    combine: impl Fn(f32, f32) -> f32,
) {
    let mode = unsafe { *args };
    if mode == 2 {
        let w = unsafe { std::slice::from_raw_parts(args, 3) };
        unsafe { *(w[1] as *mut f32) = identity };
        return;
    }
    let w = unsafe { std::slice::from_raw_parts(args, 5) };
    let (a, c) = (w[1] as *const f32, w[2] as *mut f32);
    let v = reduce(a, w[3] as isize, w[4] as usize);
    unsafe { *c = if mode == 1 { combine(*c, v) } else { v } };
}

/// `dot_f32`'s host function on the AVX-512 path, without feature detection: for tests
/// that run it under an emulator where the CPU lacks AVX-512.
///
/// # Safety
/// As the host function's words; the CPU (or emulator) must have AVX-512F.
#[doc(hidden)]
#[cfg(target_arch = "x86_64")]
pub unsafe extern "C" fn dot_f32_avx512_entry(args: *const i64) {
    unsafe { dot_words(args, CpuPath::Avx512) }
}

/// `reduce_sum_f32`'s host function on the AVX-512 path (see [`dot_f32_avx512_entry`]).
///
/// # Safety
/// As [`dot_f32_avx512_entry`].
#[doc(hidden)]
#[cfg(target_arch = "x86_64")]
pub unsafe extern "C" fn reduce_sum_f32_avx512_entry(args: *const i64) {
    unsafe { sum_words(args, CpuPath::Avx512) }
}

/// `sum_k a[k * sa] * b[k * sb]`, or `sum_k a[k * sa]` when `b` is null.
///
/// # Safety
/// The views must be valid for `n` elements; the CPU must run `path`.
unsafe fn dot(a: *const f32, sa: isize, b: *const f32, sb: isize, n: usize, path: CpuPath) -> f32 {
    let unit = sa == 1 && (b.is_null() || sb == 1);
    #[cfg(target_arch = "x86_64")]
    if unit && path == CpuPath::Avx512 {
        return unsafe { dot_avx512(a, b, n) };
    }
    #[cfg(target_arch = "x86_64")]
    if unit && path == CpuPath::Avx2Fma {
        return unsafe { dot_avx2(a, b, n) };
    }
    let _ = path;
    let at = |k: usize| unsafe {
        let x = *a.offset(k as isize * sa);
        if b.is_null() {
            x
        } else {
            x * *b.offset(k as isize * sb)
        }
    };
    if unit {
        // Eight partial sums: independent chains the compiler can keep in one vector.
        let mut acc = [0f32; 8];
        let mut k = 0;
        while k + 8 <= n {
            for (l, s) in acc.iter_mut().enumerate() {
                *s += at(k + l);
            }
            k += 8;
        }
        let mut total = acc.iter().sum::<f32>();
        for j in k..n {
            total += at(j);
        }
        total
    } else {
        (0..n).map(at).sum()
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: *const f32, b: *const f32, n: usize) -> f32 {
    use std::arch::x86_64::*;
    // Without `b` (a plain sum) the right-hand side is eight ones, read in place.
    let ones = [1f32; 8];
    let (pb, step) = if b.is_null() {
        (ones.as_ptr(), 0)
    } else {
        (b, 1)
    };
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut k = 0;
    while k + 32 <= n {
        for (j, s) in acc.iter_mut().enumerate() {
            let x = unsafe { _mm256_loadu_ps(a.add(k + 8 * j)) };
            let y = unsafe { _mm256_loadu_ps(pb.add((k + 8 * j) * step)) };
            *s = _mm256_fmadd_ps(x, y, *s);
        }
        k += 32;
    }
    while k + 8 <= n {
        let x = unsafe { _mm256_loadu_ps(a.add(k)) };
        let y = unsafe { _mm256_loadu_ps(pb.add(k * step)) };
        acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
        k += 8;
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    let h = _mm_add_ss(h, _mm_shuffle_ps::<1>(h, h));
    let mut total = _mm_cvtss_f32(h);
    for j in k..n {
        total += unsafe { *a.add(j) * *pb.add(j * step) };
    }
    total
}

/// As `dot_avx2` with four 16-wide accumulators (64 elements per step), then one 16-wide
/// step at a time, the last 1 to 15 elements through a mask.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(a: *const f32, b: *const f32, n: usize) -> f32 {
    use std::arch::x86_64::*;
    // Without `b`, the right-hand side is a vector of ones (no memory read).
    let load_b = |k: usize, m: __mmask16| unsafe {
        if b.is_null() {
            _mm512_maskz_mov_ps(m, _mm512_set1_ps(1.0))
        } else {
            _mm512_maskz_loadu_ps(m, b.add(k))
        }
    };
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut k = 0;
    while k + 64 <= n {
        for (j, s) in acc.iter_mut().enumerate() {
            let x = unsafe { _mm512_loadu_ps(a.add(k + 16 * j)) };
            *s = _mm512_fmadd_ps(x, load_b(k + 16 * j, 0xFFFF), *s);
        }
        k += 64;
    }
    while k < n {
        let m = ((1u32 << (n - k).min(16)) - 1) as __mmask16;
        let x = unsafe { _mm512_maskz_loadu_ps(m, a.add(k)) };
        acc[0] = _mm512_fmadd_ps(x, load_b(k, m), acc[0]);
        k += 16;
    }
    let v = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    _mm512_reduce_add_ps(v)
}

/// The host function's computation of `dot_f32` on slices (`n` elements of each, with the
/// given strides) through the chosen code path; what the tests compare with the
/// declaration. A path this CPU does not run is an error.
pub fn dot_f32_eval(
    a: &[f32],
    sa: usize,
    b: &[f32],
    sb: usize,
    n: usize,
    path: CpuPath,
) -> Result<f32> {
    path.check()?;
    check_view("dot_f32_eval: a", a.len(), sa, n)?;
    check_view("dot_f32_eval: b", b.len(), sb, n)?;
    // Safety: the views were checked; the path is supported.
    Ok(unsafe { dot(a.as_ptr(), sa as isize, b.as_ptr(), sb as isize, n, path) })
}

/// The host function's computation of `reduce_sum_f32` on a slice (see [`dot_f32_eval`]).
pub fn reduce_sum_f32_eval(a: &[f32], sa: usize, n: usize, path: CpuPath) -> Result<f32> {
    path.check()?;
    check_view("reduce_sum_f32_eval: a", a.len(), sa, n)?;
    // Safety: as above.
    Ok(unsafe { dot(a.as_ptr(), sa as isize, std::ptr::null(), 0, n, path) })
}
