//! The CPU matmul schedule: a register-blocked micro-kernel (TVM's "blocking" schedule
//! with a local accumulator that the CPU backend keeps in registers), vectorized along `j`,
//! unrolled over the register tile, with `B`'s column panel packed contiguously and,
//! optionally, `A` packed in row panels and the columns in blocks (the default); and the
//! BLIS-style schedule whose packed blocks go to the `gemm_f32_panels` macro-kernel
//! (`matmul_cpu_tensorized`).

use crate::error::Result;
use crate::schedule::{create_schedule, LayoutDim, Schedule};
use crate::te::Tensor;

/// Knobs of [`matmul_cpu_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct MatmulConfig {
    /// Rows of the register tile.
    pub mr: i64,
    /// Columns of the register tile (a multiple of 4: whole f32x4 vectors).
    pub nr: i64,
    /// Copy the `K x nr` panel of `B` that one column block reads into a contiguous buffer.
    pub pack_b: bool,
    /// Unroll the reduction by this factor (1: no unrolling).
    pub k_unroll: i64,
    /// Parallelize the column blocks when above 1.
    pub threads: usize,
    /// Copy `A` once, before the product, into panels of `mr` rows with the rows of one
    /// step of the reduction side by side (`[m / mr][k][mr]`): a tile's broadcasts then
    /// read one contiguous run instead of `mr` rows a whole row of `A` apart (which
    /// share an L1 set when that stride is a multiple of 4 KiB).
    #[serde(default)]
    pub pack_a: bool,
    /// Columns per block (a multiple of `nr`; 0: blocks of `nr`). Above `nr`, the loops
    /// are `j.outer` (blocks of `nc`), `i.outer`, then the tiles of the block, so a
    /// row panel of `A` is read by `nc / nr` tiles in a row while it is in cache, and
    /// `B`'s `K x nc` block is packed as `nc / nr` contiguous `K x nr` micro-panels.
    #[serde(default)]
    pub nc: i64,
}

impl Default for MatmulConfig {
    fn default() -> Self {
        MatmulConfig {
            mr: 4,
            nr: 8,
            pack_b: true,
            k_unroll: 1,
            threads: 1,
            pack_a: false,
            nc: 0,
        }
    }
}

/// The default CPU schedule of `c = sum_k a[i, k] * b[k, j]` (see [`matmul_cpu_with`]),
/// with [`matmul_cpu_config`] for this CPU (its 6 x 8 tile on a Zen 4,
/// [`crate::intrinsics::is_zen4`]).
pub fn matmul_cpu(c: &Tensor, threads: usize) -> Result<Schedule> {
    matmul_cpu_with(
        c,
        matmul_cpu_config(c, threads, crate::intrinsics::is_zen4()),
    )
}

/// [`matmul_cpu`]'s configuration, with the 6 x 8 tile (`six_by_eight`) or the 12 x 4
/// one: `A` packed in panels of `mr` rows, the reduction unrolled by `default_k_unroll`
/// (2 for an even reduction, else 1), and
///
/// - 12 x 4 (the default): twelve accumulators, more independent FMA chains than the FMA
///   latency times its throughput needs; each broadcast of `A` used by one FMA, so it is
///   a load folded into `vbroadcastss` and the FMA's tied operand costs no copy; columns
///   in blocks of 64. On the 2-vCPU Zen 3 machine, at 1024: 0.78–0.80 of the 128-bit FMA
///   peak at the fastest of alternated runs (0.71–0.74 the same way without, before the
///   CPU backend lowered the tile step by step, `codegen_cpu/tile_steps.rs`), 8 x 4
///   0.72–0.77 (then), the former unpacked 4 x 8 0.41–0.66; on a Zen 5 core 0.87–0.92.
/// - 6 x 8 (where measured faster: Zen 4): twelve accumulators too, but two vectors of
///   `B` and six broadcasts per step instead of one and twelve (each broadcast feeds two
///   FMAs and takes a register copy, which that core's renamer absorbs); columns in
///   blocks of up to 256, at least two per thread (rounded up to 16 columns: whole
///   groups for `B`'s copy), 256 where the width is not a constant. On a 2-vCPU Zen 4,
///   alternated: 2048 one thread 49-50 -> 54-55 GFLOP/s (0.94 of its 58.2 GFLOP/s
///   128-bit peak), two threads 91-93 -> 106-108; 1024 50 -> 54.5 and 94-95 -> 103.
pub fn matmul_cpu_config(c: &Tensor, threads: usize, six_by_eight: bool) -> MatmulConfig {
    let base = MatmulConfig {
        threads,
        k_unroll: default_k_unroll(c),
        pack_a: true,
        ..MatmulConfig::default()
    };
    if !six_by_eight {
        return MatmulConfig {
            mr: 12,
            nr: 4,
            nc: 64,
            ..base
        };
    }
    let nc = match c.shape().get(1).and_then(|d| d.as_int()) {
        Some(n) => {
            let per_block = (n.max(1) as u64).div_ceil(2 * threads.max(1) as u64);
            (per_block.div_ceil(16) * 16).clamp(16, 256) as i64
        }
        None => 256,
    };
    MatmulConfig {
        mr: 6,
        nr: 8,
        nc,
        ..base
    }
}

/// The default unrolling of the register tile of `mm` (a reduction over `k`): 2 where its
/// (first) reduction is an even constant (an even number of steps lets the CPU backend
/// keep each accumulator in its register across the back edge, `codegen_cpu/tile_steps.rs`;
/// a 4 x 8 tile at 1024 went from 0.60 to 0.66 of the 128-bit FMA peak even before
/// that), else 1 (no guard inside the loop).
pub(crate) fn default_k_unroll(mm: &Tensor) -> i64 {
    match mm.op.reduce_axis().first().and_then(|r| r.extent.as_int()) {
        Some(k) if k >= 2 && k % 2 == 0 => 2,
        _ => 1,
    }
}

/// Schedule `c = sum_k a[i, k] * b[k, j]` for the CPU.
///
/// Loop order: `j.outer, i.outer, k (split by k_unroll, the inner part unrolled),
/// i.inner (unrolled), j.inner (vectorized)`; the
/// `mr x nr` block of `C` accumulates in `C.local`, computed at `i.outer`; the packed
/// panel `B.global` is computed at `j.outer`. With `nc` above `nr`: `j.outer` (blocks
/// of `nc`), `i.outer`, `j` tiles, then the same tile, `B.global` packed per block as
/// `nc / nr` micro-panels. With `pack_a`: `A.global`, `A` in panels of `mr` rows, is
/// computed first (its panels in parallel when `threads > 1`).
pub fn matmul_cpu_with(c: &Tensor, cfg: MatmulConfig) -> Result<Schedule> {
    let bad = |what: String| {
        Err(crate::error::Error::InvalidExpr(format!(
            "matmul_cpu_with({}): {}",
            c.name(),
            what
        )))
    };
    if cfg.mr < 1 || cfg.nr < 1 {
        return bad(format!(
            "mr = {} and nr = {} must be at least 1",
            cfg.mr, cfg.nr
        ));
    }
    if cfg.nc != 0 && (cfg.nc < cfg.nr || cfg.nc % cfg.nr != 0) {
        return bad(format!(
            "nc = {} must be 0 or a multiple of nr = {}",
            cfg.nc, cfg.nr
        ));
    }
    let mut s = create_schedule(&[c.clone()])?;
    let cl = s.cache_write(c, "local")?;
    let input = |n: usize| {
        c.op.input_tensors()
            .into_iter()
            .nth(n)
            .expect("matmul reads two tensors")
    };
    let bp = if cfg.pack_b {
        Some(s.cache_read(&input(1), "global", &[&cl])?)
    } else {
        None
    };
    if cfg.pack_a {
        let ap = s.cache_read(&input(0), "global", &[&cl])?;
        panels(&mut s, &ap, 0, cfg.mr)?;
        if cfg.threads > 1 {
            let [panel, _, _] = s.axes3(&ap)?;
            s.parallel(&ap, &panel)?;
        }
    }
    let [i, j] = s.axes2(c)?;
    let (ii, ji) = if cfg.nc > cfg.nr {
        let (jc, jrest) = s.split(c, &j, cfg.nc)?;
        let (jr, ji) = s.split(c, &jrest, cfg.nr)?;
        let (io, ii) = s.split(c, &i, cfg.mr)?;
        s.reorder(c, &[&jc, &io, &jr, &ii, &ji])?;
        if cfg.threads > 1 {
            s.parallel(c, &jc)?;
        }
        s.compute_at(&cl, c, &jr)?;
        if let Some(bp) = &bp {
            panels(&mut s, bp, 1, cfg.nr)?;
            s.compute_at(bp, c, &jc)?;
            // One step of a micro-panel is `nr` contiguous values on both sides: vector
            // copies (the 1024 matmul ran 2-3% faster on one thread than with scalar ones).
            // Panels are copied in groups that read whole 64-byte lines of `B`, each row
            // of the group once (a row per panel missed the cache up to 64 / (4 nr)
            // times: the rows are a row of `B` apart; 1024 one thread: minima 54.26 ->
            // 52.91 ms, B's copy 3.4% -> 2.2% of the samples).
            let [panel, k, step] = s.axes3(bp)?;
            let group = 16 / cfg.nr;
            if group > 1 && (cfg.nc / cfg.nr) % group == 0 {
                let (pg, pi) = s.split(bp, &panel, group)?;
                s.reorder(bp, &[&pg, &k, &pi, &step])?;
                s.unroll(bp, &pi)?;
            }
            s.vectorize(bp, &step)?;
        }
        (ii, ji)
    } else {
        let (io, jo, ii, ji) = s.tile(c, &i, &j, cfg.mr, cfg.nr)?;
        s.reorder(c, &[&jo, &io, &ii, &ji])?;
        if cfg.threads > 1 {
            s.parallel(c, &jo)?;
        }
        s.compute_at(&cl, c, &io)?;
        if let Some(bp) = &bp {
            s.compute_at(bp, c, &jo)?;
        }
        (ii, ji)
    };
    register_tile(&mut s, &cl, cfg.k_unroll)?;
    s.vectorize(c, &ji)?;
    s.unroll(c, &ii)?;
    Ok(s)
}

/// Lay the packed 2-D copy `t` out as panels `width` wide along `dim` (0: rows, 1:
/// columns): `[extent / width][the other dimension][width]`, each panel one contiguous
/// run in which one step of the other dimension's `width` values sit side by side.
fn panels(s: &mut Schedule, t: &Tensor, dim: usize, width: i64) -> Result<()> {
    panel_layout(s, t, dim, width)?;
    if dim == 0 {
        // Row panels gather `width` rows, one scalar each per step: unrolled, a step is
        // straight-line loads and stores (a loop of 6 around one copy cost the tensorized
        // 1024 matmul about 1.5% on one thread).
        let [_, _, inner] = s.axes3(t)?;
        s.unroll(t, &inner)?;
    }
    Ok(())
}

/// The layout of [`panels`] alone.
fn panel_layout(s: &mut Schedule, t: &Tensor, dim: usize, width: i64) -> Result<()> {
    s.transform_layout(
        t,
        &[
            LayoutDim::outer(dim, width),
            LayoutDim::dim(1 - dim),
            LayoutDim::inner(dim, width),
        ],
    )?;
    Ok(())
}

/// `A`'s row panels (`[mc / mr][kc][mr]`, `mr` and `kc` multiples of 4) packed in 4 x 4
/// blocks: four rows by four steps, the rows' 4-wide runs loaded and transposed in
/// registers (`codegen_cpu/transpose_loads.rs`), then stored as four vectors of a step's
/// four rows; instead of one scalar load and store per element.
fn transposed_row_panels(s: &mut Schedule, ap: &Tensor, mr: i64) -> Result<()> {
    panel_layout(s, ap, 0, mr)?;
    let [_, k, r] = s.axes3(ap)?;
    let (ko, ki) = s.split(ap, &k, 4)?;
    let (ro, ri) = s.split(ap, &r, 4)?;
    s.reorder(ap, &[&ko, &ro, &ki, &ri])?;
    s.unroll(ap, &ro)?;
    s.unroll(ap, &ki)?;
    s.vectorize(ap, &ri)
}

/// The register tile `cl[i, j] += a[i, k] * b[k, j]` (an accumulator computed inside the
/// tile loops): the reduction outermost (split by `k_unroll` with its inner part
/// unrolled when above 1), the rows unrolled, the columns vectorized.
pub(crate) fn register_tile(s: &mut Schedule, cl: &Tensor, k_unroll: i64) -> Result<()> {
    let [ci, cj] = s.axes2(cl)?;
    let k = s.reduce_axes(cl)?.remove(0);
    if k_unroll > 1 {
        let (ko, ki) = s.split(cl, &k, k_unroll)?;
        s.reorder(cl, &[&ko, &ki, &ci, &cj])?;
        s.unroll(cl, &ki)?;
    } else {
        s.reorder(cl, &[&k, &ci, &cj])?;
    }
    s.unroll(cl, &ci)?;
    s.vectorize(cl, &cj)
}

/// Cache blocking of [`matmul_cpu_tensorized_with`] (BLIS's names): `C` is computed in
/// `mc x nc` blocks over `kc`-long slices of the reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmBlocking {
    /// Rows of the register tile (4 or 6 for the AVX2 micro-kernel, 12 for AVX-512).
    pub mr: i64,
    /// Columns of the register tile: 16 (AVX2) or 32 (AVX-512), the width of `B`'s packed
    /// micro-panels.
    pub nr: i64,
    /// Rows of `A` packed together (a multiple of `mr`; the `mc x kc` block stays in L2).
    pub mc: i64,
    /// Columns of `B` packed together (a multiple of `nr`; the `kc x nc` panel stays in L3).
    pub nc: i64,
    /// Length of a reduction slice (one `kc x nr` micro-panel of `B` stays in L1).
    pub kc: i64,
    /// Threads of the parallel loop (1: serial).
    pub threads: usize,
    /// Which loop runs in parallel when `threads > 1`: the row blocks (`ic`, BLIS's
    /// choice: each thread packs only its own rows of `A`, and the packed panel of `B` is
    /// shared, packed by all threads together) or, when false, the column blocks (`jc`:
    /// each thread packs the whole of `A` for its columns).
    pub parallel_rows: bool,
}

impl GemmBlocking {
    /// The blocking used by [`matmul_cpu_tensorized`] for an `m x n` result over a
    /// reduction of `k`, on `threads` threads, for this CPU
    /// ([`GemmBlocking::for_shape_on`] with AVX-512 where
    /// [`has_avx512f`](crate::intrinsics::has_avx512f)).
    pub fn for_shape(m: i64, n: i64, k: i64, threads: usize) -> Option<GemmBlocking> {
        GemmBlocking::for_shape_on(m, n, k, threads, crate::intrinsics::has_avx512f())
    }

    /// The blocking for an `m x n` result over a reduction of `k`, on `threads` threads:
    /// the register tile `mr x nr` 6 x 16 (the AVX2 micro-kernel's widest), or with
    /// `avx512` where 32 divides `n`, 12 x 32 (twelve rows of two 512-bit vectors); `kc`
    /// the largest divisor of `k` up to `4096 / nr` (a `kc x nr` micro-panel of `B` in 16
    /// KiB of L1) for 16 columns, up to 512 for 32 (its 64 KiB micro-panel read from L2),
    /// `nc` the largest multiple of `nr` dividing `n` up to 4096, and `mc`:
    /// - on one thread, the largest multiple of `mr` up to 144 that divides `m` (else 144,
    ///   or `m` rounded up to whole tiles if smaller: the last row block and its last tile
    ///   are then partial);
    /// - on several, of two sizes (multiples of `mr`) the one whose row blocks, dealt out
    ///   to the threads, give the busiest thread fewer rows (the first on a tie): from 96
    ///   to 288 rows, the one nearest 144 among those within 1% of the fewest rows such
    ///   blocks can give it; from 48 (fewer when there are not enough rows) to 144 rows,
    ///   the largest within 5% of an even share (else the one that gives it the fewest
    ///   rows). The
    ///   row blocks run in parallel (`parallel_rows`) when there are at least as many as
    ///   threads, else the column blocks do, `nc` then at most `n / threads`.
    ///
    /// `None` when `n` is not a multiple of 16.
    pub fn for_shape_on(
        m: i64,
        n: i64,
        k: i64,
        threads: usize,
        avx512: bool,
    ) -> Option<GemmBlocking> {
        if n % 16 != 0 || k < 1 || m < 1 {
            return None;
        }
        let (mr, nr) = if avx512 && n % 32 == 0 {
            (12, 32)
        } else {
            (6, 16)
        };
        let largest = |limit: i64, step: i64, of: i64| {
            (1..=limit / step)
                .rev()
                .map(|q| q * step)
                .find(|d| of % d == 0)
        };
        // AVX-512 runs a step of the 12 x 32 tile in 12 cycles: `C` (read and written once
        // per slice) needs longer slices to be amortized, and the `kc x 32` micro-panel of
        // `B` (64 KiB at 512) is read from L2 as fast as the kernel uses it. Measured on a
        // Zen 5 core, 1024 / 2048 on one thread: 128 -> 512 gave 187 -> 194 / 131 -> 188
        // GFLOP/s; two threads, 2048: 204-215 -> 313-322.
        let kc_limit = if nr == 32 { 512 } else { 4096 / nr };
        let kc = largest(kc_limit.min(k), 1, k).unwrap_or(1);
        // Whole row blocks where a multiple of `mr` divides `m`; else 144 rows (or all of
        // them, rounded up to whole tiles), the last block partial.
        let serial_mc =
            largest(144.min(m), mr, m).unwrap_or_else(|| 144.min((m + mr - 1) / mr * mr));
        let t = threads.max(1) as i64;
        // The busiest thread's rows when blocks of `mc` rows are dealt out to `t` threads.
        let busiest = |mc: i64| ((m + mc - 1) / mc + t - 1) / t * mc;
        let blocks_of = |lo: i64, hi: i64| -> Vec<i64> {
            (1..=hi / mr)
                .rev()
                .map(|q| q * mr)
                .filter(|&mc| mc >= lo && (m + mc - 1) / mc >= t)
                .collect()
        };
        // Blocks of 48 to 144 rows (of fewer where there are not enough rows for those):
        // the largest that gives the busiest thread at most 5% more than an even share,
        // else the one that gives it the fewest rows.
        let small = Some(blocks_of(48, 144))
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| blocks_of(1, 144));
        let share = (m + t - 1) / t;
        let small_pick = small
            .iter()
            .copied()
            .find(|&mc| busiest(mc) * 20 <= share * 21)
            .or_else(|| small.iter().copied().min_by_key(|&mc| busiest(mc)));
        // Blocks of 96 to 288 rows (a 288 x 256 block of `A` is 288 KiB, within a 512 KiB
        // L2; smaller ones stream the packed panel of `B` through more often): among those
        // that leave the busiest thread within 1% of the fewest rows such blocks can give
        // it, the one nearest 144 rows (the larger on a tie).
        let large = blocks_of(96, 288);
        let large_pick = large.iter().map(|&mc| busiest(mc)).min().and_then(|f| {
            large
                .iter()
                .copied()
                .filter(|&mc| busiest(mc) * 100 <= f * 101)
                .min_by_key(|&mc| ((mc - 144).abs(), -mc))
        });
        // The better balanced of the two, the large one on a tie: 1024 rows on two threads
        // take 4 blocks of 258 (516 and 508 rows) rather than 8 of 132 (528 and 496),
        // 12.26 -> 11.91 ms alternated.
        let balanced = match (large_pick, small_pick) {
            (Some(l), Some(s)) if busiest(s) < busiest(l) => Some(s),
            (Some(l), _) => Some(l),
            (None, s) => s,
        };
        let (mc, parallel_rows) = match balanced {
            Some(mc) if t > 1 => (mc, true),
            _ => (serial_mc, false),
        };
        let per_thread = if parallel_rows { n } else { (n / t).max(nr) };
        let nc = largest(per_thread.min(4096), nr, n).unwrap_or(nr);
        Some(GemmBlocking {
            mr,
            nr,
            mc,
            nc,
            kc,
            threads,
            parallel_rows,
        })
    }
}

/// The CPU matmul schedule cache-blocked as BLIS does, each packed block tensorized by
/// [`gemm_f32_panels`](crate::intrinsics::gemm_f32_panels) (around an AVX-512 or
/// AVX2+FMA register-tile kernel where the CPU has one), with the blocking of [`GemmBlocking::for_shape`].
/// Needs the columns to be a multiple of 16 (a typed error otherwise); any row count.
pub fn matmul_cpu_tensorized(c: &Tensor, threads: usize) -> Result<Schedule> {
    let (m, n, k) = matmul_sizes(c)?;
    let blocking = GemmBlocking::for_shape(m, n, k, threads).ok_or_else(|| {
        tensorized_err(format!(
            "{} is {} x {}: need columns a multiple of 16",
            c.name(),
            m,
            n
        ))
    })?;
    matmul_cpu_tensorized_with(c, blocking)
}

fn tensorized_err(m: String) -> crate::error::Error {
    crate::error::Error::InvalidExpr(format!("matmul_cpu_tensorized: {}", m))
}

/// `(m, n, k)` of `c = sum_k a[i, k] * b[k, j]`, all constant.
fn matmul_sizes(c: &Tensor) -> Result<(i64, i64, i64)> {
    let dim = |d: usize| {
        c.shape()
            .get(d)
            .and_then(|e| e.as_int())
            .ok_or_else(|| tensorized_err(format!("{} needs two constant dimensions", c.name())))
    };
    let (m, n) = (dim(0)?, dim(1)?);
    let red = c.op.reduce_axis();
    let k = match red.as_slice() {
        [r] => r
            .extent
            .as_int()
            .ok_or_else(|| tensorized_err("the reduction needs a constant size".into()))?,
        _ => {
            return Err(tensorized_err(format!(
                "{} is not a one-axis reduction",
                c.name()
            )))
        }
    };
    Ok((m, n, k))
}

/// [`matmul_cpu_tensorized`] with explicit blocking. Loops, outermost first (the outer
/// three of BLIS's five loops around the micro-kernel): `jc` (column blocks of `nc`,
/// parallel when `threads > 1` and not `parallel_rows`), `pc` (reduction slices of `kc`;
/// `B`'s `kc x nc` panel packed into `B.global` here, as `nc / nr` contiguous `kc x nr`
/// micro-panels, those in parallel with `parallel_rows`), `ic` (row blocks of `mc`,
/// parallel with `parallel_rows`; `A`'s `mc x kc` block packed into `A.global`, `mr`
/// rows interleaved), then the `mc x nc x kc` block, tensorized by
/// [`gemm_f32_panels`](crate::intrinsics::gemm_f32_panels), whose host function runs the
/// inner two (`jr` over the micro-panels of `B`, `ir` over the row panels of `A`) around
/// the `mr x nr` register-tile kernel. `nc` and `kc` must divide their extents (`nr |
/// nc`) and `mc` be a multiple of `mr`; neither need divide the rows: the last row block
/// is then partial, `A.global` padded with zero rows, and the block called with the rows
/// that remain.
pub fn matmul_cpu_tensorized_with(c: &Tensor, g: GemmBlocking) -> Result<Schedule> {
    let (_, n, k) = matmul_sizes(c)?;
    let check = |what: &str, v: i64, of: i64, unit: i64| {
        if v < unit || v % unit != 0 || of % v != 0 {
            Err(tensorized_err(format!(
                "{} = {} must be a multiple of {} that divides {}",
                what, v, unit, of
            )))
        } else {
            Ok(())
        }
    };
    if ![4, 6, 12].contains(&g.mr) || ![16, 32].contains(&g.nr) {
        return Err(tensorized_err(format!(
            "mr = {}, nr = {}: the register tiles are 4, 6 or 12 rows of 16 or 32 columns",
            g.mr, g.nr
        )));
    }
    if g.mc < g.mr || g.mc % g.mr != 0 {
        return Err(tensorized_err(format!(
            "mc = {} must be a multiple of mr = {}",
            g.mc, g.mr
        )));
    }
    check("nc", g.nc, n, g.nr)?;
    check("kc", g.kc, k, 1)?;
    let mut s = create_schedule(&[c.clone()])?;
    gemm_blis(&mut s, c, g, false)?;
    Ok(s)
}

/// The schedule of [`matmul_cpu_tensorized_with`] applied to the stage `c` of `s` (a
/// product `c[i, j] = sum_k a[i, k] * b[k, j]` of two tensors, the blocking already
/// checked against its sizes). `b_transposed`: `b` reads its source along columns (a
/// dense layer's inlined weight transpose), so `B`'s packing copies a step's `nr` values
/// one by one (unrolled) instead of as vectors.
pub(crate) fn gemm_blis(
    s: &mut Schedule,
    c: &Tensor,
    g: GemmBlocking,
    b_transposed: bool,
) -> Result<()> {
    let n = matmul_sizes(c)?.1;
    let inputs = c.op.input_tensors();
    let (a, b) = match inputs.as_slice() {
        [a, b] => (a.clone(), b.clone()),
        _ => {
            return Err(tensorized_err(format!(
                "{} must read two tensors",
                c.name()
            )))
        }
    };
    let ap = s.cache_read(&a, "global", &[c])?;
    let bp = s.cache_read(&b, "global", &[c])?;
    let [i, j] = s.axes2(c)?;
    let kx = s.reduce_axes(c)?.remove(0);
    let (jc, jrest) = s.split(c, &j, g.nc)?;
    let (ic, irest) = s.split(c, &i, g.mc)?;
    let (pc, ki) = s.split(c, &kx, g.kc)?;
    s.reorder(c, &[&jc, &pc, &ic, &irest, &jrest, &ki])?;
    if g.threads > 1 {
        if g.parallel_rows {
            s.parallel(c, &ic)?;
        } else if n / g.nc > 1 {
            s.parallel(c, &jc)?;
        }
    }
    // Packed layouts: A's block as [mc / mr][kc][mr] (the mr values of one step of the
    // reduction side by side), B's panel as [nc / nr][kc][nr] (each micro-panel one
    // contiguous run).
    if g.mr % 4 == 0 && g.kc % 4 == 0 {
        transposed_row_panels(s, &ap, g.mr)?;
    } else {
        panels(s, &ap, 0, g.mr)?;
    }
    panels(s, &bp, 1, g.nr)?;
    s.compute_at(&bp, c, &pc)?;
    s.compute_at(&ap, c, &ic)?;
    let [b_panels, _, b_step] = s.axes3(&bp)?;
    if b_transposed {
        s.unroll(&bp, &b_step)?;
    } else {
        s.vectorize(&bp, &b_step)?;
    }
    if g.threads > 1 && g.parallel_rows {
        // The shared panel of B, packed by every thread (its micro-panels in parallel).
        s.parallel(&bp, &b_panels)?;
    }
    // The whole `mc x nc x kc` block in one call: the macro-kernel walks the micro-panels
    // (`jr`, then `ir`) itself.
    s.tensorize(
        c,
        &irest,
        &crate::intrinsics::gemm_f32_panels(g.mc, g.nc, g.kc, g.mr, g.nr)?,
    )
}
