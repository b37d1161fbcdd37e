//! `gemm_f32_panels(mc, nc, kc, mr, nr)`: BLIS's macro-kernel as one intrinsic. It updates
//! a whole `mc x nc` block of `C` over a `kc`-long slice of the reduction from `A`'s
//! block packed as `mr`-row panels (`[mc / mr][kc][mr]`) and `B`'s packed as `nr`-column
//! micro-panels (`[nc / nr][kc][nr]`): `C[i, j] += sum_k A[i / mr, k, i % mr] * B[j / nr,
//! k, j % nr]`.
//!
//! One call covers what [`gemm_f32`](super::gemm_f32) does in `(mc / mr) * (nc / nr)`
//! calls: the host function walks the micro-panels itself (the columns outside, so one
//! micro-panel of `B` stays in L1 while every row panel of `A` passes), calling the same
//! register-tile kernels; the per-tile call from the JIT code (its words, the dispatch)
//! is gone. Rows and columns may be partial ([`TensorIntrin::partial_tiles`]): the last
//! panels then run with the rows and columns that remain.
//!
//! The panel sizes are part of the layout, so each `(mr, nr)` has its own host function
//! (compiled for that pair); the supported pairs are the register tiles of
//! [`GemmBlocking`](crate::schedules::GemmBlocking): 4, 6 or 12 rows by 16 or 32
//! columns.

use super::gemm::{check_sizes, init_tile, run_tile, Call};
use super::{CpuImpl, CpuIntrinFn, CpuPath, TensorIntrin};
use crate::error::{Error, Result};
use crate::te::{compute_named, floordiv, floormod, placeholder, reduce_axis, sum, DType};
use std::sync::Arc;

/// The intrinsic `gemm_f32_panels_{mc}x{nc}x{kc}_{mr}x{nr}` (registered once per sizes).
/// Its operands: `A` (`mc / mr x kc x mr`), `B` (`nc / nr x kc x nr`), then `C` (`mc x
/// nc`), any strides. `mr` must divide `mc` and `nr` divide `nc`; `(mr, nr)` one of the
/// supported register tiles (typed errors otherwise).
pub fn gemm_f32_panels(mc: i64, nc: i64, kc: i64, mr: i64, nr: i64) -> Result<Arc<TensorIntrin>> {
    check_sizes("gemm_f32_panels", &[mc, nc, kc, mr, nr])?;
    if mc % mr != 0 || nc % nr != 0 {
        return Err(Error::InvalidExpr(format!(
            "gemm_f32_panels{:?}: the panel sizes must divide the block (mr = {} into mc = {}, nr = {} into nc = {})",
            [mc, nc, kc, mr, nr],
            mr,
            mc,
            nr,
            nc
        )));
    }
    let Some((symbol, func)) = host_function(mr, nr) else {
        return Err(Error::InvalidExpr(format!(
            "gemm_f32_panels{:?}: panels of {} rows by {} columns have no host function; supported: 4, 6 or 12 rows by 16 or 32 columns",
            [mc, nc, kc, mr, nr],
            mr,
            nr
        )));
    };
    let name = format!("gemm_f32_panels_{}x{}x{}_{}x{}", mc, nc, kc, mr, nr);
    super::register_once(&name, || {
        let a = placeholder(&[(mc / mr).into(), kc.into(), mr.into()], DType::F32, "A");
        let b = placeholder(&[(nc / nr).into(), kc.into(), nr.into()], DType::F32, "B");
        let k = reduce_axis(0, kc, "k");
        let c = compute_named(&[mc.into(), nc.into()], "C", &["i", "j"], |i| {
            let (row, col) = (i[0].clone(), i[1].clone());
            sum(
                a.at(&[floordiv(row.clone(), mr), k.x(), floormod(row, mr)])
                    * b.at(&[floordiv(col.clone(), nr), k.x(), floormod(col, nr)]),
                &[k.clone()],
            )
        });
        TensorIntrin::new(&name, &c, &[a, b], Some(CpuImpl { symbol, func }))
            .map(TensorIntrin::partial_tiles)
    })
}

/// The host function (and its JIT symbol) for panels of `mr` rows and `nr` columns.
fn host_function(mr: i64, nr: i64) -> Option<(&'static str, CpuIntrinFn)> {
    Some(match (mr, nr) {
        (4, 16) => ("loopforge_intrin_gemm_f32_panels_4x16", entry::<4, 16>),
        (6, 16) => ("loopforge_intrin_gemm_f32_panels_6x16", entry::<6, 16>),
        (12, 16) => ("loopforge_intrin_gemm_f32_panels_12x16", entry::<12, 16>),
        (4, 32) => ("loopforge_intrin_gemm_f32_panels_4x32", entry::<4, 32>),
        (6, 32) => ("loopforge_intrin_gemm_f32_panels_6x32", entry::<6, 32>),
        (12, 32) => ("loopforge_intrin_gemm_f32_panels_12x32", entry::<12, 32>),
        _ => return None,
    })
}

/// The host function for `MR x NR` panels. Words: the mode, the addresses of `A`, `B`,
/// `C`, `A`'s strides (panel, step, row), `B`'s (panel, step, column), `C`'s (row,
/// column), then the extents: rows, columns, steps (15 words; in mode init, the mode, `C`,
/// its strides and the extents).
extern "C" fn entry<const MR: usize, const NR: usize>(args: *const i64) {
    // Safety: the JIT passes the words above for blocks that bounds inference keeps
    // inside their buffers.
    let mode = unsafe { *args };
    if mode == 2 {
        return init_tile(args);
    }
    let w = unsafe { std::slice::from_raw_parts(args, 15) };
    let i = |x: usize| w[x] as isize;
    let block = Block {
        a: w[1] as *const f32,
        b: w[2] as *const f32,
        c: w[3] as *mut f32,
        sa: [i(4), i(5), i(6)],
        sb: [i(7), i(8), i(9)],
        sc: [i(10), i(11)],
        m: w[12] as usize,
        n: w[13] as usize,
        k: w[14] as usize,
        accumulate: mode == 1,
    };
    unsafe { block.run::<MR, NR>(CpuPath::best()) }
}

/// One call's operands, decoded.
struct Block {
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    /// `A`'s strides: panel, reduction step, row within the panel.
    sa: [isize; 3],
    /// `B`'s strides: panel, reduction step, column within the panel.
    sb: [isize; 3],
    sc: [isize; 2],
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
}

impl Block {
    /// The register tile of row panel `p` and column panel `q` as a [`Call`] of the
    /// one-tile kernels.
    fn tile<const MR: usize, const NR: usize>(&self, p: usize, q: usize) -> Call {
        let (i, j) = (p * MR, q * NR);
        Call {
            // Safety (of the offsets): the panels are inside the views (`p * MR < m`,
            // `q * NR < n`).
            a: unsafe { self.a.offset(p as isize * self.sa[0]) },
            b: unsafe { self.b.offset(q as isize * self.sb[0]) },
            c: unsafe {
                self.c
                    .offset(i as isize * self.sc[0] + j as isize * self.sc[1])
            },
            sa: [self.sa[2], 0, 0, self.sa[1]],
            sb: [0, 0, self.sb[1], self.sb[2]],
            sc: self.sc,
            m: (self.m - i).min(MR),
            n: (self.n - j).min(NR),
            k: [1, 1, self.k],
            accumulate: self.accumulate,
        }
    }

    /// Every tile, the column panels outside (one micro-panel of `B` stays in L1 while
    /// every row panel of `A` passes).
    ///
    /// # Safety
    /// The views must be valid for the extents; the CPU must run `path`.
    unsafe fn run<const MR: usize, const NR: usize>(&self, path: CpuPath) {
        #[cfg(target_arch = "x86_64")]
        if path == CpuPath::Avx2Fma {
            return unsafe { self.run_avx2::<MR, NR>() };
        }
        unsafe { self.each_tile::<MR, NR>(path) }
    }

    /// [`run`](Self::run) compiled for AVX2, so that the 6-row kernel that whole 6 x 16
    /// tiles go to is inlined into the loop (a call per tile measured about 2% slower).
    ///
    /// # Safety
    /// As [`run`](Self::run), on an AVX2+FMA CPU.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2<const MR: usize, const NR: usize>(&self) {
        unsafe { self.each_tile::<MR, NR>(CpuPath::Avx2Fma) }
    }

    /// The loops of [`run`](Self::run).
    ///
    /// # Safety
    /// As [`run`](Self::run).
    #[inline(always)]
    unsafe fn each_tile<const MR: usize, const NR: usize>(&self, path: CpuPath) {
        for q in 0..self.n.div_ceil(NR) {
            for p in 0..self.m.div_ceil(MR) {
                unsafe { run_tile(&self.tile::<MR, NR>(p, q), path) };
            }
        }
    }
}
