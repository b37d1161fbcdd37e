//! The CUDA (SIMT) matmul schedule: the classic shared-memory / register-tiled GEMM.
//!
//! Each thread block computes a `bm x bn` tile of `C`; its `(bm / tm) x (bn / tn)` threads
//! each accumulate a `tm x tn` sub-tile in registers (`C.local`). At every step of the
//! reduction's outer loop (`bk` wide) the block copies the `A` and `B` tiles it needs into
//! shared memory, cooperatively (each thread copies 16-byte vectors), with barriers
//! around; at every inner step each thread reads its `tm` values of `A` and `tn` values of
//! `B` from shared memory into registers (`*.shared.local`, 16-byte vector loads where the
//! values are contiguous) and does `tm * tn` multiply-adds. With `double_buffer` the tiles
//! of the next step are loaded while the current ones are read.

use crate::error::{Error, Result};
use crate::schedule::{create_schedule, Schedule};
use crate::te::{ExprNode, OpKind, Tensor};

/// Knobs of [`matmul_cuda_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CudaMatmulConfig {
    /// Rows of `C` per thread block.
    pub bm: i64,
    /// Columns of `C` per thread block.
    pub bn: i64,
    /// Reduction step staged in shared memory.
    pub bk: i64,
    /// Rows of `C` per thread.
    pub tm: i64,
    /// Columns of `C` per thread (a multiple of 4: 16-byte vectors).
    pub tn: i64,
    /// Double-buffer the shared tiles (the next step's tiles are loaded while this
    /// step's are read; one barrier per step).
    pub double_buffer: bool,
}

impl Default for CudaMatmulConfig {
    /// 128 x 128 tiles, 8 x 8 per thread (256 threads), 8-deep reduction steps, double
    /// buffered.
    fn default() -> Self {
        CudaMatmulConfig {
            bm: 128,
            bn: 128,
            bk: 8,
            tm: 8,
            tn: 8,
            double_buffer: true,
        }
    }
}

impl CudaMatmulConfig {
    /// Threads per block.
    pub fn threads(&self) -> i64 {
        (self.bm / self.tm) * (self.bn / self.tn)
    }

    fn check(&self) -> Result<()> {
        let bad = |m: String| {
            Err(Error::InvalidExpr(format!(
                "CudaMatmulConfig {:?}: {}",
                self, m
            )))
        };
        if [self.bm, self.bn, self.bk, self.tm, self.tn]
            .iter()
            .any(|&x| x <= 0)
        {
            return bad("every size must be positive".into());
        }
        if self.bm % self.tm != 0 || self.bn % self.tn != 0 {
            return bad("tm must divide bm and tn must divide bn".into());
        }
        if self.tn % 4 != 0 || self.bm % 4 != 0 || self.bn % 4 != 0 || self.bk % 4 != 0 {
            return bad("tn, bm, bn and bk must be multiples of 4 (16-byte vectors)".into());
        }
        let t = self.threads();
        if t > 1024 {
            return bad(format!("{} threads per block; CUDA allows at most 1024", t));
        }
        Ok(())
    }
}

/// The default CUDA schedule of `c = sum_k a[.., ..] * b[.., ..]` (see
/// [`matmul_cuda_with`]).
pub fn matmul_cuda(c: &Tensor) -> Result<Schedule> {
    matmul_cuda_with(c, CudaMatmulConfig::default())
}

/// Which index of each input the reduction runs along, for a 2-D reduction `c` that
/// multiplies two 2-D inputs.
fn reduce_dims(c: &Tensor) -> Result<[(Tensor, usize); 2]> {
    let not_matmul = || {
        Error::InvalidExpr(format!(
            "matmul_cuda: {} is not a matmul: it must be a 2-D sum over one axis k of a[.., ..] * b[.., ..] with k indexing one dimension of each",
            c.name()
        ))
    };
    let OpKind::Compute { body, .. } = &c.op.kind else {
        return Err(not_matmul());
    };
    let ExprNode::Reduce(r) = body[0].node() else {
        return Err(not_matmul());
    };
    if r.axis.len() != 1 || c.shape().len() != 2 {
        return Err(not_matmul());
    }
    let k = r.axis[0].var.id();
    let mut found = Vec::new();
    r.source[0].visit(&mut |e| {
        if let ExprNode::Read(t, idx) = e.node() {
            if idx.len() == 2 {
                let dim = idx
                    .iter()
                    .position(|x| matches!(x.node(), ExprNode::Var(v) if v.id() == k));
                if let Some(d) = dim {
                    found.push((t.clone(), d));
                }
            }
            return false;
        }
        true
    });
    match found.as_slice() {
        [a, b] => Ok([a.clone(), b.clone()]),
        _ => Err(not_matmul()),
    }
}

/// Schedule the matmul `c` (any layout of its two inputs: `a[i, k]` or `a[k, i]`,
/// `b[k, j]` or `b[j, k]`) for a CUDA GPU with the tiling of the module doc.
/// Sizes that the tiles do not divide are handled by guards.
pub fn matmul_cuda_with(c: &Tensor, cfg: CudaMatmulConfig) -> Result<Schedule> {
    cfg.check()?;
    let [(a, ka), (b, kb)] = reduce_dims(c)?;
    let mut s = create_schedule(&[c.clone()])?;
    let cl = s.cache_write(c, "local")?;
    let a_sh = s.cache_read(&a, "shared", &[&cl])?;
    let b_sh = s.cache_read(&b, "shared", &[&cl])?;
    let a_loc = s.cache_read(&a_sh, "local", &[&cl])?;
    let b_loc = s.cache_read(&b_sh, "local", &[&cl])?;

    let tx_n = cfg.bn / cfg.tn;
    // The output: blocks over (i, j), threads over the tiles, tm x tn per thread.
    let [i, j] = s.axes2(c)?;
    let (bi, ii) = s.split(c, &i, cfg.bm)?;
    let (bj, jj) = s.split(c, &j, cfg.bn)?;
    let (ti, ri) = s.split(c, &ii, cfg.tm)?;
    let (tj, rj) = s.split(c, &jj, cfg.tn)?;
    let (rjo, rjv) = s.split(c, &rj, 4)?;
    s.reorder(c, &[&bi, &bj, &ti, &tj, &ri, &rjo, &rjv])?;
    s.bind(c, &bi, "blockIdx.y")?;
    s.bind(c, &bj, "blockIdx.x")?;
    s.bind(c, &ti, "threadIdx.y")?;
    s.bind(c, &tj, "threadIdx.x")?;
    s.unroll(c, &ri)?;
    s.unroll(c, &rjo)?;
    s.vectorize(c, &rjv)?;

    // The accumulator: the reduction split into shared-memory steps.
    s.compute_at(&cl, c, &tj)?;
    let [ci, cj] = s.axes2(&cl)?;
    let k = s.reduce_axes(&cl)?.remove(0);
    let (ko, ki) = s.split(&cl, &k, cfg.bk)?;
    s.reorder(&cl, &[&ko, &ki, &ci, &cj])?;
    s.unroll(&cl, &ki)?;
    s.unroll(&cl, &ci)?;
    s.unroll(&cl, &cj)?;

    // Register copies at every ki step: vectors along a contiguous non-reduction axis.
    for (loc, kdim) in [(&a_loc, ka), (&b_loc, kb)] {
        s.compute_at(loc, &cl, &ki)?;
        let [d0, d1] = s.axes2(loc)?;
        if kdim == 1 {
            // The copy is (t x 1): the values are a column of the shared tile.
            s.unroll(loc, &d0)?;
        } else {
            let (d1o, v) = s.split(loc, &d1, 4)?;
            s.unroll(loc, &d1o)?;
            s.vectorize(loc, &v)?;
        }
    }
    // Shared tiles: fetched at every ko step by all threads, 4 elements each at a time.
    for sh in [&a_sh, &b_sh] {
        s.compute_at(sh, &cl, &ko)?;
        let [d0, d1] = s.axes2(sh)?;
        let (d1o, v) = s.split(sh, &d1, 4)?;
        let f = s.fuse(sh, &[&d0, &d1o])?;
        let (_fo, ft) = s.split(sh, &f, cfg.threads())?;
        let (fy, fx) = s.split(sh, &ft, tx_n)?;
        s.bind(sh, &fy, "threadIdx.y")?;
        s.bind(sh, &fx, "threadIdx.x")?;
        s.vectorize(sh, &v)?;
        if cfg.double_buffer {
            s.double_buffer(sh)?;
        }
    }
    // A k-contiguous shared tile is read down its columns, two rows `tm` apart per warp:
    // an odd row stride puts them in different banks.
    for (sh, kdim) in [(&a_sh, ka), (&b_sh, kb)] {
        if kdim == 1 {
            let [d0, _] = s.axes2(sh)?;
            s.storage_align(sh, &d0, cfg.bk, 1)?;
        }
    }
    Ok(s)
}

/// The tensor-core GEMM schedule of `c = sum_k f32(a[i, k]) * f32(b[k, j])` with float16
/// `a` (`M x K`) and `b` (`K x N`), after TVM's wmma schedule. A block computes a 128x128
/// tile of `C` with 8 warps (2x4, bound to `threadIdx.y/z`), each a 64x32 tile of 4x2
/// 16x16 accumulator fragments (`C.wmma.accumulator`); where `M` or `N` is not a multiple
/// of 128, a 64x64 tile with 4 warps (2x2) of 2x2 fragments. At every 32-deep step of the
/// reduction the block copies its `A` and `B` tiles to shared memory, 16 bytes per thread
/// at a time, double buffered (the next step's tiles are fetched while this step's are
/// read), with each shared row padded by 8 halves (16 bytes) so that the rows a fragment
/// load reads start in different banks; at every 16-deep step each warp loads its
/// fragments (`wmma_load_a/b`) and multiplies (`wmma_mma`); the accumulators are stored
/// with `wmma_store`. Needs `M`, `N` multiples of 64 and `K` of 32 (a typed error
/// otherwise).
pub fn matmul_cuda_tensorcore(c: &Tensor) -> Result<Schedule> {
    use crate::intrinsics::{wmma_load_a, wmma_load_b, wmma_mma, wmma_store};
    let not = |m: String| Error::InvalidExpr(format!("matmul_cuda_tensorcore: {}", m));
    let [(a, ka), (b, kb)] = reduce_dims(c)?;
    if ka != 1 || kb != 0 {
        return Err(not(format!(
            "{} must read a[i, k] * b[k, j] (row-major operands)",
            c.name()
        )));
    }
    let size = |t: &Tensor, d: usize| t.shape()[d].as_int();
    let (m, n, k) = match (size(c, 0), size(c, 1), size(&a, 1)) {
        (Some(m), Some(n), Some(k)) => (m, n, k),
        _ => return Err(not("constant sizes are needed".into())),
    };
    if m % 64 != 0 || n % 64 != 0 || k % 32 != 0 {
        return Err(not(format!(
            "{}x{}x{}: M and N must be multiples of 64 and K of 32",
            m, n, k
        )));
    }
    if a.dtype() != crate::te::DType::F16 || b.dtype() != crate::te::DType::F16 {
        return Err(not("the operands must be float16".into()));
    }
    // Block tile and warps (rows x columns of warps).
    let (bm, bn, wm, wn) = if m % 128 == 0 && n % 128 == 0 {
        (128, 128, 2, 4)
    } else {
        (64, 64, 2, 2)
    };
    const BK: i64 = 32;
    let mut s = create_schedule(&[c.clone()])?;
    let cf = s.cache_write(c, "wmma.accumulator")?;
    let a_sh = s.cache_read(&a, "shared", &[&cf])?;
    let b_sh = s.cache_read(&b, "shared", &[&cf])?;
    let af = s.cache_read(&a_sh, "wmma.matrix_a", &[&cf])?;
    let bf = s.cache_read(&b_sh, "wmma.matrix_b", &[&cf])?;

    // C: blocks of bm x bn, warps of (bm / wm) x (bn / wn), fragments of 16x16 stored by
    // wmma_store.
    let [i, j] = s.axes2(c)?;
    let (bi, ii) = s.split(c, &i, bm)?;
    let (bj, jj) = s.split(c, &j, bn)?;
    let (wi, ri) = s.split(c, &ii, bm / wm)?;
    let (wj, rj) = s.split(c, &jj, bn / wn)?;
    let (fi, i16) = s.split(c, &ri, 16)?;
    let (fj, j16) = s.split(c, &rj, 16)?;
    s.reorder(c, &[&bi, &bj, &wi, &wj, &fi, &fj, &i16, &j16])?;
    // Fragment loops unrolled: each fragment's registers at a constant place.
    s.unroll(c, &fi)?;
    s.unroll(c, &fj)?;
    s.bind(c, &bi, "blockIdx.y")?;
    s.bind(c, &bj, "blockIdx.x")?;
    s.bind(c, &wi, "threadIdx.y")?;
    s.bind(c, &wj, "threadIdx.z")?;
    s.tensorize(c, &i16, &wmma_store()?)?;

    // The accumulators of a warp, over the reduction in steps of 32 and 16.
    s.compute_at(&cf, c, &wj)?;
    let [ci, cj] = s.axes2(&cf)?;
    let kx = s.reduce_axes(&cf)?.remove(0);
    let (ko, kr) = s.split(&cf, &kx, BK)?;
    let (ki, k16) = s.split(&cf, &kr, 16)?;
    let (cfi, ci16) = s.split(&cf, &ci, 16)?;
    let (cfj, cj16) = s.split(&cf, &cj, 16)?;
    s.reorder(&cf, &[&ko, &ki, &cfi, &cfj, &ci16, &cj16, &k16])?;
    s.unroll(&cf, &ki)?;
    s.unroll(&cf, &cfi)?;
    s.unroll(&cf, &cfj)?;
    s.tensorize(&cf, &ci16, &wmma_mma()?)?;

    // Fragments of A and B at every 16-deep step.
    s.compute_at(&af, &cf, &ki)?;
    let [ar, _] = s.axes2(&af)?;
    let (afo, a16) = s.split(&af, &ar, 16)?;
    s.unroll(&af, &afo)?;
    s.tensorize(&af, &a16, &wmma_load_a()?)?;
    s.compute_at(&bf, &cf, &ki)?;
    let [br, bc] = s.axes2(&bf)?;
    let (bfo, b16) = s.split(&bf, &bc, 16)?;
    s.reorder(&bf, &[&bfo, &br, &b16])?;
    s.unroll(&bf, &bfo)?;
    s.tensorize(&bf, &br, &wmma_load_b()?)?;

    // Shared tiles at every 32-deep step, copied by all the block's threads in 16-byte
    // vectors of 8 halves, double buffered; rows padded by 8 halves.
    for (sh, row) in [(&a_sh, BK), (&b_sh, bn)] {
        s.compute_at(sh, &cf, &ko)?;
        let [d0, d1] = s.axes2(sh)?;
        s.storage_align(sh, &d0, row, 8)?;
        let (d1o, v) = s.split(sh, &d1, 8)?;
        let f = s.fuse(sh, &[&d0, &d1o])?;
        let (f1, tx) = s.split(sh, &f, 32)?;
        let (f2, ty) = s.split(sh, &f1, wm)?;
        let (fo, tz) = s.split(sh, &f2, wn)?;
        s.reorder(sh, &[&fo, &tz, &ty, &tx, &v])?;
        s.unroll(sh, &fo)?;
        s.bind(sh, &tz, "threadIdx.z")?;
        s.bind(sh, &ty, "threadIdx.y")?;
        s.bind(sh, &tx, "threadIdx.x")?;
        s.vectorize(sh, &v)?;
        s.double_buffer(sh)?;
    }
    Ok(s)
}

/// A CUDA schedule of a stride-1 NCHW convolution over an already padded input,
/// `out[n, co, h, w] = sum_{ci, rh, rw} data[n, ci, h + rh, w + rw] * weight[co, ci, rh, rw]`
/// (a ResNet 3x3 layer with its padding done by the producer). A block computes one output
/// row of 32 channels: 8 x ceil(W / 4) threads, each 4 channels x 4 columns in registers;
/// at every step of 8 input channels the block copies the input rows and the weights it
/// needs to shared memory. Needs constant sizes with the channels a multiple of 32 and the
/// input channels of 8 (a typed error otherwise).
pub fn conv2d_cuda_nchw(out: &Tensor) -> Result<Schedule> {
    let not = |m: String| Error::InvalidExpr(format!("conv2d_cuda_nchw: {}", m));
    let OpKind::Compute { body, .. } = &out.op.kind else {
        return Err(not(format!("{} is not a compute", out.name())));
    };
    let ExprNode::Reduce(r) = body[0].node() else {
        return Err(not(format!("{} is not a reduction", out.name())));
    };
    let inputs = out.op.input_tensors();
    if out.shape().len() != 4 || r.axis.len() != 3 || inputs.len() != 2 {
        return Err(not(format!(
            "{} must be out[n, co, h, w] = sum over (ci, rh, rw) of data * weight",
            out.name()
        )));
    }
    let dims: Option<Vec<i64>> = out.shape().iter().map(|d| d.as_int()).collect();
    let dims = dims.ok_or_else(|| not("constant sizes are needed".into()))?;
    let ci = r.axis[0].extent.as_int().unwrap_or(0);
    if dims[1] % 32 != 0 || ci % 8 != 0 {
        return Err(not(format!(
            "{} output and {} input channels: need multiples of 32 and 8",
            dims[1], ci
        )));
    }
    let (data, weight) = (inputs[0].clone(), inputs[1].clone());
    let mut s = create_schedule(&[out.clone()])?;
    let ol = s.cache_write(out, "local")?;
    let ds = s.cache_read(&data, "shared", &[&ol])?;
    let ws = s.cache_read(&weight, "shared", &[&ol])?;

    let [n, co, h, w] = <[crate::schedule::Axis; 4]>::try_from(s.axes(out)?)
        .map_err(|_| not("four output axes expected".into()))?;
    let (cob, coi) = s.split(out, &co, 32)?;
    let (tco, vco) = s.split(out, &coi, 4)?;
    let (tw, vw) = s.split(out, &w, 4)?;
    s.reorder(out, &[&n, &cob, &h, &tco, &tw, &vco, &vw])?;
    s.bind(out, &n, "blockIdx.z")?;
    s.bind(out, &cob, "blockIdx.y")?;
    s.bind(out, &h, "blockIdx.x")?;
    s.bind(out, &tco, "threadIdx.y")?;
    s.bind(out, &tw, "threadIdx.x")?;
    s.unroll(out, &vco)?;
    s.unroll(out, &vw)?;

    s.compute_at(&ol, out, &tw)?;
    let axes = s.axes(&ol)?;
    let red = s.reduce_axes(&ol)?;
    let (cio, cii) = s.split(&ol, &red[0], 8)?;
    let order: Vec<&crate::schedule::Axis> = [&cio, &cii, &red[1], &red[2]]
        .into_iter()
        .chain(axes.iter())
        .collect();
    s.reorder(&ol, &order)?;
    s.unroll(&ol, &red[2])?;
    for a in &axes {
        s.unroll(&ol, a)?;
    }
    let threads_x = (dims[3] + 3) / 4;
    for sh in [&ds, &ws] {
        s.compute_at(sh, &ol, &cio)?;
        let all = s.axes(sh)?;
        let refs: Vec<&crate::schedule::Axis> = all.iter().collect();
        let f = s.fuse(sh, &refs)?;
        let (f1, tx) = s.split(sh, &f, threads_x)?;
        let (_fo, ty) = s.split(sh, &f1, 8)?;
        s.bind(sh, &ty, "threadIdx.y")?;
        s.bind(sh, &tx, "threadIdx.x")?;
    }
    Ok(s)
}
