//! `gemm_f32(mr, nr, kc)`: the f32 register-tile update `C[i, j] += sum_k A[i, k] * B[k, j]`
//! over an `mr x nr` tile of `C` and `kc` steps of the reduction; `gemm_f32_k3(mr, nr,
//! [k0, k1, k2])` the same with the reduction spread over three axes, each with its own
//! strides (`C[i, j] += sum_{k0, k1, k2} A[i, k0, k1, k2] * B[k0, k1, k2, j]`: a
//! convolution's channels and kernel taps in one call, the tile staying in registers).
//!
//! CPU implementation, chosen at run time by the features the CPU has (where `B`'s rows
//! are contiguous; a `C` whose columns are not is updated through a row-major copy of the
//! tile, copied across in registers where `C`'s rows are contiguous instead):
//! - AVX-512F: columns in blocks of 32 (two 512-bit accumulators per row; a last block
//!   of at most 16 in one), rows in as few blocks of at most 12 as cover them, of even
//!   sizes, partial column blocks through mask
//!   registers; a whole 12 x 32 block of a packed `A` (unit row stride) takes a kernel
//!   with constant offsets that adds `C` after the reduction, as the AVX2 one does.
//!   Tested against the declared semantics natively or, on CPUs without AVX-512 (or with
//!   `LOOPFORGE_EMULATE_AVX512` set), under Bochs's emulator (`tests/avx512_emulated.rs`).
//!   `LOOPFORGE_NO_AVX512=1` keeps the AVX2 kernels.
//! - AVX2 and FMA: rows of `C` in blocks of 6 (the last 1 to 5 rows in one smaller
//!   block) and columns in blocks of 16 in up to twelve 256-bit accumulators while `k`
//!   runs (a last block of at most 8 columns: rows in blocks of 12, one accumulator each);
//!   a last partial block of columns is read and written through masks. A whole 16-column
//!   block that updates `C` prefetches its rows at the start and adds them after the `k`
//!   loop (the first FMAs do not wait for rows of `C` that are far apart).
//! - Anything else (`B` strided, neither feature set) takes the portable loop.
//!
//! All take partial tiles
//! ([`TensorIntrin::partial_tiles`]): the call's row and column counts may be below `mr`
//! and `nr` (the last rows of a matrix whose row count `mr` does not divide).

use super::{CpuImpl, CpuPath, TensorIntrin};
use crate::error::Result;
use crate::te::{compute_named, placeholder, reduce_axis, sum, DType};
use std::sync::Arc;

/// Symbol of the CPU implementation (shared by every tile size: the sizes are passed).
const SYMBOL: &str = "loopforge_intrin_gemm_f32";

/// The intrinsic `gemm_f32_{mr}x{nr}x{kc}` (registered, and the same object on every call
/// with the same sizes). Its operands: `A` (`mr x kc`), `B` (`kc x nr`), then `C`
/// (`mr x nr`), any strides.
pub fn gemm_f32(mr: i64, nr: i64, kc: i64) -> Result<Arc<TensorIntrin>> {
    check_sizes("gemm_f32", &[mr, nr, kc])?;
    let name = format!("gemm_f32_{}x{}x{}", mr, nr, kc);
    super::register_once(&name, || {
        let a = placeholder(&[mr.into(), kc.into()], DType::F32, "A");
        let b = placeholder(&[kc.into(), nr.into()], DType::F32, "B");
        let k = reduce_axis(0, kc, "k");
        let c = compute_named(&[mr.into(), nr.into()], "C", &["i", "j"], |i| {
            sum(
                a.at(&[i[0].clone(), k.x()]) * b.at(&[k.x(), i[1].clone()]),
                &[k.clone()],
            )
        });
        TensorIntrin::new(
            &name,
            &c,
            &[a, b],
            Some(CpuImpl {
                symbol: SYMBOL,
                func: gemm_f32_entry,
            }),
        )
        .map(TensorIntrin::partial_tiles)
    })
}

/// Every tile size at least 1, else a typed error naming the intrinsic.
pub(super) fn check_sizes(what: &str, sizes: &[i64]) -> Result<()> {
    if sizes.iter().any(|&s| s < 1) {
        return Err(crate::error::Error::InvalidExpr(format!(
            "{}{:?}: every tile size must be at least 1",
            what, sizes
        )));
    }
    Ok(())
}

/// Symbol of the three-axis reduction's CPU implementation.
const SYMBOL_K3: &str = "loopforge_intrin_gemm_f32_k3";

/// The intrinsic `gemm_f32_{mr}x{nr}x{k0}x{k1}x{k2}`: `C[i, j] += sum_{k0, k1, k2} A[i,
/// k0, k1, k2] * B[k0, k1, k2, j]` (registered once per sizes). Its operands: `A` (`mr x
/// k0 x k1 x k2`), `B` (`k0 x k1 x k2 x nr`), then `C` (`mr x nr`), any strides. The
/// micro-kernel runs `k2` innermost.
pub fn gemm_f32_k3(mr: i64, nr: i64, k: [i64; 3]) -> Result<Arc<TensorIntrin>> {
    check_sizes("gemm_f32_k3", &[mr, nr, k[0], k[1], k[2]])?;
    let name = format!("gemm_f32_{}x{}x{}x{}x{}", mr, nr, k[0], k[1], k[2]);
    super::register_once(&name, || {
        let a = placeholder(
            &[mr.into(), k[0].into(), k[1].into(), k[2].into()],
            DType::F32,
            "A",
        );
        let b = placeholder(
            &[k[0].into(), k[1].into(), k[2].into(), nr.into()],
            DType::F32,
            "B",
        );
        let r: Vec<_> = (0..3)
            .map(|d| reduce_axis(0, k[d], &format!("k{}", d)))
            .collect();
        let c = compute_named(&[mr.into(), nr.into()], "C", &["i", "j"], |i| {
            let ks: Vec<_> = r.iter().map(|x| x.x()).collect();
            sum(
                a.at(&[i[0].clone(), ks[0].clone(), ks[1].clone(), ks[2].clone()])
                    * b.at(&[ks[0].clone(), ks[1].clone(), ks[2].clone(), i[1].clone()]),
                &r,
            )
        });
        TensorIntrin::new(
            &name,
            &c,
            &[a, b],
            Some(CpuImpl {
                symbol: SYMBOL_K3,
                func: gemm_f32_k3_entry,
            }),
        )
        .map(TensorIntrin::partial_tiles)
    })
}

/// The operands of one call, decoded; the reduction always as three axes (`gemm_f32`'s
/// one axis is the innermost, the others of extent 1).
#[derive(Clone, Copy)]
pub(super) struct Call {
    pub(super) a: *const f32,
    pub(super) b: *const f32,
    pub(super) c: *mut f32,
    /// `A`'s strides: row, then the reduction axes `k0, k1, k2`.
    pub(super) sa: [isize; 4],
    /// `B`'s strides: the reduction axes `k0, k1, k2`, then column.
    pub(super) sb: [isize; 4],
    pub(super) sc: [isize; 2],
    pub(super) m: usize,
    pub(super) n: usize,
    pub(super) k: [usize; 3],
    pub(super) accumulate: bool,
}

/// Mode 2 (init): zero the `C` tile described by words `c, sc0, sc1, m, n` after the mode.
pub(super) fn init_tile(args: *const i64) {
    // Safety: in mode init the JIT passes the mode, the output's address and two
    // strides, then the extents (rows and columns first).
    let w = unsafe { std::slice::from_raw_parts(args, 6) };
    let (c, s0, s1) = (w[1] as *mut f32, w[2] as isize, w[3] as isize);
    for i in 0..w[4] as isize {
        if s1 == 1 {
            // A contiguous row: one fill (vector stores).
            unsafe { std::slice::from_raw_parts_mut(c.offset(i * s0), w[5] as usize) }.fill(0.0);
            continue;
        }
        for j in 0..w[5] as isize {
            unsafe { *c.offset(i * s0 + j * s1) = 0.0 };
        }
    }
}

extern "C" fn gemm_f32_entry(args: *const i64) {
    // Safety: the JIT passes the words the module doc of `intrinsics` describes (7 in
    // mode init, 13 otherwise), for tiles that bounds inference keeps inside their
    // buffers.
    let mode = unsafe { *args };
    if mode == 2 {
        return init_tile(args);
    }
    let w = unsafe { std::slice::from_raw_parts(args, 13) };
    let call = Call {
        a: w[1] as *const f32,
        b: w[2] as *const f32,
        c: w[3] as *mut f32,
        sa: [w[4] as isize, 0, 0, w[5] as isize],
        sb: [0, 0, w[6] as isize, w[7] as isize],
        sc: [w[8] as isize, w[9] as isize],
        m: w[10] as usize,
        n: w[11] as usize,
        k: [1, 1, w[12] as usize],
        accumulate: mode == 1,
    };
    unsafe { run_tile(&call, CpuPath::best()) }
}

/// [`run`], except that a whole tile of packed panels (a 6-row panel of `A`, a 16-column
/// panel of `B`, row-major `C`) on AVX2 goes straight to its kernel, past the general
/// dispatch (the BLIS tiles of `gemm_f32` and `gemm_f32_panels`).
///
/// # Safety
/// As [`run`].
#[inline(always)]
pub(super) unsafe fn run_tile(c: &Call, path: CpuPath) {
    #[cfg(target_arch = "x86_64")]
    if c.m == 6
        && c.n == 16
        && c.sa[0] == 1
        && c.sb[3] == 1
        && c.sc[1] == 1
        && path == CpuPath::Avx2Fma
    {
        return unsafe { kernel_rx16::<6, true, false>(c, 0, 0, 16) };
    }
    unsafe { run(c, path) }
}

extern "C" fn gemm_f32_k3_entry(args: *const i64) {
    // Safety: as `gemm_f32_entry`, with 4 strides for `A` and `B` and 5 extents (9 words
    // in mode init, 19 otherwise).
    let mode = unsafe { *args };
    if mode == 2 {
        return init_tile(args);
    }
    unsafe { run(&k3_call(args), CpuPath::best()) }
}

/// The call `gemm_f32_k3`'s 19 words describe (modes compute and update).
///
/// # Safety
/// `args` must point to 19 words.
unsafe fn k3_call(args: *const i64) -> Call {
    let w = unsafe { std::slice::from_raw_parts(args, 19) };
    let i = |x: usize| w[x] as isize;
    Call {
        a: w[1] as *const f32,
        b: w[2] as *const f32,
        c: w[3] as *mut f32,
        sa: [i(4), i(5), i(6), i(7)],
        sb: [i(8), i(9), i(10), i(11)],
        sc: [i(12), i(13)],
        m: w[14] as usize,
        n: w[15] as usize,
        k: [w[16] as usize, w[17] as usize, w[18] as usize],
        accumulate: w[0] == 1,
    }
}

/// The call on `path`'s kernels (the vector ones need `B`'s rows contiguous; anything
/// else takes the portable loop).
///
/// # Safety
/// The views must be valid for the tile sizes; the CPU must run `path`.
unsafe fn run(c: &Call, path: CpuPath) {
    #[cfg(target_arch = "x86_64")]
    if c.sb[3] == 1 {
        match path {
            CpuPath::Avx512 => return unsafe { with_row_major_c(c, run_avx512) },
            CpuPath::Avx2Fma => return unsafe { with_row_major_c(c, run_avx2) },
            _ => {}
        }
    }
    let _ = path;
    unsafe { portable(c, 0, c.m, 0, c.n) };
}

/// Run `kernel` (which needs unit column strides of `C`) on `c`: directly where `C`'s
/// columns are contiguous, else on a row-major copy of the tile, written back after. A
/// `C` whose rows are contiguous instead (an NCHW convolution's accumulator laid out
/// `[channel][position]`, the tile being positions x channels) is copied across in
/// registers ([`super::transpose`]); any other strides one element at a time.
///
/// # Safety
/// As [`run`]; `kernel` must be safe to call on the CPU, which must have AVX (both
/// vector paths do).
#[cfg(target_arch = "x86_64")]
unsafe fn with_row_major_c(c: &Call, kernel: unsafe fn(&Call)) {
    if c.sc[1] == 1 {
        return unsafe { kernel(c) };
    }
    let mut stack = std::mem::MaybeUninit::<[f32; 1024]>::uninit();
    let mut heap = vec![];
    // On the stack: left uninitialized (mode compute overwrites it, mode update first
    // copies `C` in); a larger tile on the heap, zero-filled.
    let tile: *mut f32 = if c.m * c.n <= 1024 {
        stack.as_mut_ptr().cast()
    } else {
        heap.resize(c.m * c.n, 0.0);
        heap.as_mut_ptr()
    };
    // `C`'s leading dimension where its rows are contiguous (`C[i, j]` at `i + j * ldc`).
    let ldc = (c.sc[0] == 1 && c.sc[1] >= c.m as isize).then_some(c.sc[1] as usize);
    let at = |i: usize, j: usize| i as isize * c.sc[0] + j as isize * c.sc[1];
    if c.accumulate {
        if let Some(ldc) = ldc {
            // C's column `j` (contiguous over rows) becomes the tile's column `j`.
            unsafe { super::transpose::transpose(c.c, ldc, tile, c.n, c.n, c.m) };
        } else {
            for i in 0..c.m {
                for j in 0..c.n {
                    unsafe { *tile.add(i * c.n + j) = *c.c.offset(at(i, j)) };
                }
            }
        }
    }
    let local = Call {
        c: tile,
        sc: [c.n as isize, 1],
        ..*c
    };
    unsafe { kernel(&local) };
    if let Some(ldc) = ldc {
        return unsafe { super::transpose::transpose(tile, c.n, c.c, ldc, c.m, c.n) };
    }
    for i in 0..c.m {
        for j in 0..c.n {
            unsafe { *c.c.offset(at(i, j)) = *tile.add(i * c.n + j) };
        }
    }
}

/// Rows in blocks of 6, the last 1 to 5 rows in one block, columns in blocks of 16 (a
/// last partial block of 9 to 15 columns through masked loads and stores); a last block
/// of at most 8 columns (an NCHW8c convolution's whole tile) in one vector per row, rows
/// in blocks of 12. Needs unit column strides of `B` and `C`.
#[cfg(target_arch = "x86_64")]
unsafe fn run_avx2(c: &Call) {
    // Column blocks outside: one block's `k x 16` panel of `B` stays in L1 while every
    // row block reads it.
    let mut j = 0;
    while j < c.n {
        let cols = (c.n - j).min(16);
        let narrow = cols <= 8;
        let mut i = 0;
        while i < c.m {
            let rows = (c.m - i).min(if narrow { 12 } else { 6 });
            unsafe {
                match (narrow, cols) {
                    (true, 8) => block8::<false>(c, i, j, rows, cols),
                    (true, _) => block8::<true>(c, i, j, rows, cols),
                    (false, 16) => block::<false>(c, i, j, rows, cols),
                    (false, _) => block::<true>(c, i, j, rows, cols),
                }
            }
            i += rows;
        }
        j += cols;
    }
}

/// `$kernel::<R, $other...>$args` with `R` the row count `$rows` (1 to 12) as a constant.
#[cfg(target_arch = "x86_64")]
macro_rules! by_rows {
    ($rows:expr, $kernel:ident, [$($other:tt)*], $args:tt) => {
        match $rows {
            12 => by_rows!(@call $kernel, 12, [$($other)*], $args),
            11 => by_rows!(@call $kernel, 11, [$($other)*], $args),
            10 => by_rows!(@call $kernel, 10, [$($other)*], $args),
            9 => by_rows!(@call $kernel, 9, [$($other)*], $args),
            8 => by_rows!(@call $kernel, 8, [$($other)*], $args),
            7 => by_rows!(@call $kernel, 7, [$($other)*], $args),
            6 => by_rows!(@call $kernel, 6, [$($other)*], $args),
            5 => by_rows!(@call $kernel, 5, [$($other)*], $args),
            4 => by_rows!(@call $kernel, 4, [$($other)*], $args),
            3 => by_rows!(@call $kernel, 3, [$($other)*], $args),
            2 => by_rows!(@call $kernel, 2, [$($other)*], $args),
            _ => by_rows!(@call $kernel, 1, [$($other)*], $args),
        }
    };
    (@call $kernel:ident, $r:literal, [$($other:tt)*], ($($a:expr),*)) => {
        $kernel::<$r, $($other)*>($($a),*)
    };
}

/// The `rows` x 8 block at (`i`, `j`) (`cols` of its columns, below 8 with `MASKED`) by
/// the one-vector-per-row kernel for its row count (1 to 12).
#[cfg(target_arch = "x86_64")]
unsafe fn block8<const MASKED: bool>(c: &Call, i: usize, j: usize, rows: usize, cols: usize) {
    unsafe { by_rows!(rows, kernel_rx8, [MASKED], (c, i, j, cols)) }
}

/// The `R` x 8 block at (`i0`, `j0`): `R` 8-wide accumulators (12 at most: with the
/// broadcast and the row of `B`, 14 of the 16 registers), one broadcast of `A` per row
/// and one load of `B` per step. `MASKED`: only the first `cols` (below 8) columns exist.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_rx8<const R: usize, const MASKED: bool>(
    c: &Call,
    i0: usize,
    j0: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    let m = if MASKED {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(cols as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    } else {
        _mm256_setzero_si256()
    };
    let load = |p: *const f32| unsafe {
        if MASKED {
            _mm256_maskload_ps(p, m)
        } else {
            _mm256_loadu_ps(p)
        }
    };
    let pc = |r: usize| unsafe { c.c.offset((i0 + r) as isize * c.sc[0] + j0 as isize) };
    let mut acc = [_mm256_setzero_ps(); R];
    if c.accumulate {
        for (r, v) in acc.iter_mut().enumerate() {
            *v = load(pc(r));
        }
    }
    for k0 in 0..c.k[0] as isize {
        for k1 in 0..c.k[1] as isize {
            let pa = unsafe {
                c.a.offset(i0 as isize * c.sa[0] + k0 * c.sa[1] + k1 * c.sa[2])
            };
            let pb = unsafe { c.b.offset(j0 as isize + k0 * c.sb[0] + k1 * c.sb[1]) };
            for k in 0..c.k[2] as isize {
                let b = load(unsafe { pb.offset(k * c.sb[2]) });
                let ak = unsafe { pa.offset(k * c.sa[3]) };
                for (r, v) in acc.iter_mut().enumerate() {
                    let x = _mm256_set1_ps(unsafe { *ak.offset(r as isize * c.sa[0]) });
                    *v = _mm256_fmadd_ps(x, b, *v);
                }
            }
        }
    }
    for (r, v) in acc.iter().enumerate() {
        if MASKED {
            unsafe { _mm256_maskstore_ps(pc(r), m, *v) };
        } else {
            unsafe { _mm256_storeu_ps(pc(r), *v) };
        }
    }
}

/// Rows `i0..i1`, columns `j0..j1`, plain loops.
unsafe fn portable(c: &Call, i0: usize, i1: usize, j0: usize, j1: usize) {
    for i in i0..i1 {
        for j in j0..j1 {
            let pc = unsafe { c.c.offset(i as isize * c.sc[0] + j as isize * c.sc[1]) };
            let mut acc = if c.accumulate { unsafe { *pc } } else { 0.0f32 };
            for k0 in 0..c.k[0] as isize {
                for k1 in 0..c.k[1] as isize {
                    for k2 in 0..c.k[2] as isize {
                        let (ka, kb) = (
                            k0 * c.sa[1] + k1 * c.sa[2] + k2 * c.sa[3],
                            k0 * c.sb[0] + k1 * c.sb[1] + k2 * c.sb[2],
                        );
                        let x = unsafe { *c.a.offset(i as isize * c.sa[0] + ka) };
                        let y = unsafe { *c.b.offset(kb + j as isize * c.sb[3]) };
                        acc += x * y;
                    }
                }
            }
            unsafe { *pc = acc };
        }
    }
}

/// The `rows` x 16 block at (`i`, `j`) (`cols` of its columns, below 16 with `MASKED`)
/// by the kernel for its row count; an `A` packed with its rows side by side (unit row
/// stride) takes the kernels with constant offsets (whole column blocks only).
#[cfg(target_arch = "x86_64")]
unsafe fn block<const MASKED: bool>(c: &Call, i: usize, j: usize, rows: usize, cols: usize) {
    unsafe {
        match (rows, c.sa[0] == 1 && !MASKED) {
            (6, true) => kernel_rx16::<6, true, MASKED>(c, i, j, cols),
            (6, false) => kernel_rx16::<6, false, MASKED>(c, i, j, cols),
            (5, _) => kernel_rx16::<5, false, MASKED>(c, i, j, cols),
            (4, true) => kernel_rx16::<4, true, MASKED>(c, i, j, cols),
            (4, false) => kernel_rx16::<4, false, MASKED>(c, i, j, cols),
            (3, _) => kernel_rx16::<3, false, MASKED>(c, i, j, cols),
            (2, _) => kernel_rx16::<2, false, MASKED>(c, i, j, cols),
            _ => kernel_rx16::<1, false, MASKED>(c, i, j, cols),
        }
    }
}

/// The `R` x 16 block at (`i0`, `j0`): `2R` 8-wide accumulators, one broadcast of `A` per
/// row and two loads of `B` per step. `UNIT_A`: `A`'s row stride is 1 (a packed panel).
/// `MASKED`: only the first `cols` (below 16) columns exist; `B` and `C` are read and
/// written through masks, nothing past them touched.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_rx16<const R: usize, const UNIT_A: bool, const MASKED: bool>(
    c: &Call,
    i0: usize,
    j0: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    let lane = |first: i32| {
        let l = _mm256_setr_epi32(
            first,
            first + 1,
            first + 2,
            first + 3,
            first + 4,
            first + 5,
            first + 6,
            first + 7,
        );
        _mm256_cmpgt_epi32(_mm256_set1_epi32(cols as i32), l)
    };
    // Masks only where they are used: the whole-block kernels stay free of them.
    let (m0, m1) = if MASKED {
        (lane(0), lane(8))
    } else {
        (_mm256_setzero_si256(), _mm256_setzero_si256())
    };
    let load = |p: *const f32, m: __m256i| unsafe {
        if MASKED {
            _mm256_maskload_ps(p, m)
        } else {
            _mm256_loadu_ps(p)
        }
    };
    let store = |p: *mut f32, m: __m256i, v: __m256| unsafe {
        if MASKED {
            _mm256_maskstore_ps(p, m, v)
        } else {
            _mm256_storeu_ps(p, v)
        }
    };
    let pc = |r: usize| unsafe { c.c.offset((i0 + r) as isize * c.sc[0] + j0 as isize) };
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    // A whole tile adds `C` after the reduction (its lines prefetched now): the first
    // steps' FMAs do not wait for `C`, whose rows are often far apart and out of cache.
    let late = !MASKED && c.accumulate;
    if c.accumulate && !late {
        for (r, row) in acc.iter_mut().enumerate() {
            row[0] = load(pc(r), m0);
            row[1] = load(unsafe { pc(r).add(8) }, m1);
        }
    }
    if late {
        for r in 0..R {
            _mm_prefetch::<_MM_HINT_T0>(pc(r) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(unsafe { pc(r).add(15) } as *const i8);
        }
    }
    for k0 in 0..c.k[0] as isize {
        for k1 in 0..c.k[1] as isize {
            let pa = unsafe {
                c.a.offset(i0 as isize * c.sa[0] + k0 * c.sa[1] + k1 * c.sa[2])
            };
            let pb = unsafe { c.b.offset(j0 as isize + k0 * c.sb[0] + k1 * c.sb[1]) };
            for k in 0..c.k[2] as isize {
                let brow = unsafe { pb.offset(k * c.sb[2]) };
                let b0 = load(brow, m0);
                let b1 = load(unsafe { brow.add(8) }, m1);
                let ak = unsafe { pa.offset(k * c.sa[3]) };
                for (r, row) in acc.iter_mut().enumerate() {
                    let off = if UNIT_A {
                        r as isize
                    } else {
                        r as isize * c.sa[0]
                    };
                    let x = _mm256_set1_ps(unsafe { *ak.offset(off) });
                    row[0] = _mm256_fmadd_ps(x, b0, row[0]);
                    row[1] = _mm256_fmadd_ps(x, b1, row[1]);
                }
            }
        }
    }
    if late {
        for (r, row) in acc.iter_mut().enumerate() {
            row[0] = _mm256_add_ps(row[0], load(pc(r), m0));
            row[1] = _mm256_add_ps(row[1], load(unsafe { pc(r).add(8) }, m1));
        }
    }
    for (r, row) in acc.iter().enumerate() {
        store(pc(r), m0, row[0]);
        store(unsafe { pc(r).add(8) }, m1, row[1]);
    }
}

/// The AVX-512 tiling: columns in blocks of 32 (two 512-bit vectors per row; a last block
/// of at most 16 in one), rows in as few blocks of at most 12 as cover them, of even sizes
/// (28 rows: 10, 9, 9): up to 24 accumulators of the 32 registers. Partial column blocks load and store through
/// masks (masked-off lanes are never touched). Needs unit column strides of `B` and `C`.
///
/// # Safety
/// The views must be valid for the tile sizes, and the CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512(c: &Call) {
    let mut j = 0;
    while j < c.n {
        let cols = (c.n - j).min(32);
        // Rows in as few blocks of at most 12 as cover them, of even sizes (28 rows: 10,
        // 9, 9 rather than 12, 12, 4): a block of few rows has too few independent
        // accumulators to keep both FMA pipes busy.
        let blocks = c.m.div_ceil(12);
        let mut i = 0;
        for b in 0..blocks {
            let rows = c.m / blocks + usize::from(b < c.m % blocks);
            unsafe {
                if cols > 16 {
                    block512::<2>(c, i, j, rows, cols)
                } else {
                    block512::<1>(c, i, j, rows, cols)
                }
            }
            i += rows;
        }
        j += cols;
    }
}

/// The `rows` x `16 W` block at (`i`, `j`) by the kernel for its row count (1 to 12).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block512<const W: usize>(c: &Call, i: usize, j: usize, rows: usize, cols: usize) {
    unsafe {
        if rows == 12 && cols == 16 * W && c.sa[0] == 1 {
            return kernel512::<12, W, true>(c, i, j, cols);
        }
        by_rows!(rows, kernel512, [W, false], (c, i, j, cols))
    }
}

/// The `R` x `16 W` block at (`i0`, `j0`), `cols` of its columns existing: `R * W`
/// accumulators, one broadcast of `A` per row and `W` loads of `B` per step of the
/// reduction. Every load and store of `B` and `C` is masked to the existing columns, but
/// with `PACKED`: a whole block (`cols == 16 W`) of an `A` whose rows are side by side (unit
/// row stride, a packed panel): `A`'s offsets are constants, and `C` is added after the
/// reduction (its lines prefetched first), so the first steps do not wait for it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel512<const R: usize, const W: usize, const PACKED: bool>(
    c: &Call,
    i0: usize,
    j0: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    // Lanes `16 w ..` of the block that exist, as a mask (all 16, some, or none).
    let mut masks = [0 as __mmask16; W];
    for (w, m) in masks.iter_mut().enumerate() {
        let lanes = cols.saturating_sub(16 * w).min(16) as u32;
        *m = ((1u32 << lanes) - 1) as __mmask16;
    }
    let pc = |r: usize| unsafe { c.c.offset((i0 + r) as isize * c.sc[0] + j0 as isize) };
    let load_c = |r: usize, w: usize| unsafe { _mm512_maskz_loadu_ps(masks[w], pc(r).add(16 * w)) };
    let mut acc = [[_mm512_setzero_ps(); W]; R];
    if c.accumulate {
        for (r, row) in acc.iter_mut().enumerate() {
            if PACKED {
                for w in 0..W {
                    _mm_prefetch::<_MM_HINT_T0>(unsafe { pc(r).add(16 * w) } as *const i8);
                }
            } else {
                for (w, v) in row.iter_mut().enumerate() {
                    *v = load_c(r, w);
                }
            }
        }
    }
    for k0 in 0..c.k[0] as isize {
        for k1 in 0..c.k[1] as isize {
            let pa = unsafe {
                c.a.offset(i0 as isize * c.sa[0] + k0 * c.sa[1] + k1 * c.sa[2])
            };
            let pb = unsafe { c.b.offset(j0 as isize + k0 * c.sb[0] + k1 * c.sb[1]) };
            for k in 0..c.k[2] as isize {
                let brow = unsafe { pb.offset(k * c.sb[2]) };
                let mut b = [_mm512_setzero_ps(); W];
                for (w, v) in b.iter_mut().enumerate() {
                    *v = unsafe {
                        if PACKED {
                            _mm512_loadu_ps(brow.add(16 * w))
                        } else {
                            _mm512_maskz_loadu_ps(masks[w], brow.add(16 * w))
                        }
                    };
                }
                let ak = unsafe { pa.offset(k * c.sa[3]) };
                for (r, row) in acc.iter_mut().enumerate() {
                    let off = if PACKED {
                        r as isize
                    } else {
                        r as isize * c.sa[0]
                    };
                    let x = _mm512_set1_ps(unsafe { *ak.offset(off) });
                    for (w, v) in row.iter_mut().enumerate() {
                        *v = _mm512_fmadd_ps(x, b[w], *v);
                    }
                }
            }
        }
    }
    for (r, row) in acc.iter_mut().enumerate() {
        for (w, v) in row.iter_mut().enumerate() {
            if PACKED {
                if c.accumulate {
                    *v = _mm512_add_ps(*v, unsafe { _mm512_loadu_ps(pc(r).add(16 * w)) });
                }
                unsafe { _mm512_storeu_ps(pc(r).add(16 * w), *v) };
            } else {
                unsafe { _mm512_mask_storeu_ps(pc(r).add(16 * w), masks[w], *v) };
            }
        }
    }
}

/// The AVX-512 path of `gemm_f32_k3` alone, without feature detection, for tests that run
/// it where the CPU lacks AVX-512 (under an emulator): the words of `gemm_f32_k3`'s
/// modes compute and update (19 of them).
///
/// # Safety
/// As the intrinsic's entry; the CPU (or emulator) must have AVX-512F.
#[doc(hidden)]
#[cfg(target_arch = "x86_64")]
pub unsafe extern "C" fn gemm_f32_k3_avx512_entry(args: *const i64) {
    unsafe { run(&k3_call(args), CpuPath::Avx512) }
}
