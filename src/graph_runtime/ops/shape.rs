//! Data movement: reshape (and flatten), transpose, concat.

use super::{ci, clamp, dims};
use crate::te::{compute, lt, select, Expr, Tensor};

/// Row-major reshape of `x [s]` to `out_shape`: the output index is flattened and
/// unflattened into the input's shape.
pub fn reshape(x: &Tensor, s: &[usize], out_shape: &[usize]) -> Tensor {
    compute(&dims(out_shape), "out", |i| {
        if s == out_shape {
            return x.at(i);
        }
        let mut flat = ci(0);
        for (d, e) in i.iter().enumerate() {
            flat = if d == 0 {
                e.clone()
            } else {
                flat * ci(out_shape[d]) + e.clone()
            };
        }
        let mut idx = vec![ci(0); s.len()];
        let mut stride = 1usize;
        for d in (0..s.len()).rev() {
            let q = if stride == 1 {
                flat.clone()
            } else {
                &flat / ci(stride)
            };
            idx[d] = if d == 0 { q } else { q % ci(s[d]) };
            stride *= s[d];
        }
        x.at(&idx)
    })
}

/// `out[i] = x[i permuted back]`: output dimension `d` is input dimension `perm[d]`.
pub fn transpose(x: &Tensor, perm: &[usize], out_shape: &[usize]) -> Tensor {
    compute(&dims(out_shape), "out", |i| {
        let mut idx = vec![ci(0); perm.len()];
        for (d, &p) in perm.iter().enumerate() {
            idx[p] = i[d].clone();
        }
        x.at(&idx)
    })
}

/// The inputs side by side along `axis`: a chain of `select`s on the axis index, each
/// read clamped into its input (`select` evaluates both branches).
pub fn concat(xs: &[Tensor], shapes: &[&[usize]], axis: usize, out_shape: &[usize]) -> Tensor {
    compute(&dims(out_shape), "out", |i| {
        let mut offsets = vec![];
        let mut off = 0usize;
        for s in shapes {
            offsets.push(off);
            off += s[axis];
        }
        let read = |k: usize| -> Expr {
            let mut idx = i.to_vec();
            let local = &i[axis] - ci(offsets[k]);
            idx[axis] = if k == 0 && xs.len() == 1 {
                local
            } else {
                clamp(local, 0, shapes[k][axis] as i64 - 1)
            };
            xs[k].at(&idx)
        };
        let last = xs.len() - 1;
        let mut e = read(last);
        for k in (0..last).rev() {
            e = select(lt(i[axis].clone(), ci(offsets[k + 1])), read(k), e);
        }
        e
    })
}
