//! The 3x3, stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin and
//! Gray, 2015): each 2x2 block of outputs of a channel is computed from a 4x4 tile of the
//! input through 16 independent products instead of 36 multiply-adds per input channel,
//! so the channel reduction costs 2.25x fewer multiply-adds than direct convolution.
//!
//! With `d` a 4x4 input tile, `g` a 3x3 kernel and
//!
//! ```text
//! B^T = | 1  0 -1  0 |    G = | 1    0    0   |    A^T = | 1  1  1  0 |
//!       | 0  1  1  0 |        | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
//!       | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
//!       | 0  1  0 -1 |        | 0    0    1   |
//! ```
//!
//! the 2x2 output block is `A^T [ sum_c (G g_c G^T) .* (B^T d_c B) ] A`. The stages:
//! - `pad`: the input padded to whole tiles (`2 * tiles + 2` rows and columns, zeros);
//! - `wino.v[t, n, c, ty, tx]`: the input transform `B^T d B` of tile `(ty, tx)`, its 16
//!   elements along `t = 4 * e + nu` (each a signed sum of four inputs);
//! - `wino.m[t, n, ty, tx, o] = sum_c wino.v[t, n, c, ty, tx] * u[t, o / 16, c, o % 16]`:
//!   16 independent matrix products over the channels (`u`, the weights transformed by
//!   [`winograd_weights_f23`], a constant of the graph build);
//! - `out[n, o, y, x]`: the output transform `A^T m A`, element `(y % 2, x % 2)` of the
//!   block of tile `(y / 2, x / 2)` (each a signed sum of four to nine products).
//!
//! In f32 the results differ from direct convolution by rounding only (the transforms of
//! F(2x2, 3x3) have entries 0, 1/2 and 1).

use super::{ci, pad};
use crate::error::{Error, Result};
use crate::runtime::NdArray;
use crate::te::{compute, eq, reduce_axis, select, sum, Expr, Tensor};

/// Tile positions per side of F(2x2, 3x3)'s input tile.
const ALPHA: usize = 4;

/// The rows of `B^T` as (input row, sign) pairs: row `e` of `B^T d` is the signed sum of
/// these rows of `d`.
const BT: [[(usize, f32); 2]; 4] = [
    [(0, 1.0), (2, -1.0)],
    [(1, 1.0), (2, 1.0)],
    [(2, 1.0), (1, -1.0)],
    [(1, 1.0), (3, -1.0)],
];

/// The rows of `A^T` as (row of the product, sign) triples (the second row has three).
const AT: [&[(usize, f32)]; 2] = [
    &[(0, 1.0), (1, 1.0), (2, 1.0)],
    &[(1, 1.0), (2, -1.0), (3, -1.0)],
];

/// `G` (4 x 3).
const G: [[f32; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// The shape of the transformed weight of an `[o, c, 3, 3]` kernel: `[16, o / 16, c, 16]`.
pub fn winograd_weight_shape(o: usize, c: usize) -> Vec<usize> {
    vec![ALPHA * ALPHA, o / 16, c, 16]
}

/// The weight transform `G g G^T` of every (output, input) channel pair of an f32 OIHW
/// `[O, C, 3, 3]` weight (`O` a multiple of 16), laid out `[16][O / 16][C][16]`: for each
/// of the 16 products, `C x 16` panels of 16 output channels, the panel the CPU
/// micro-kernel reads.
pub fn winograd_weights_f23(w: &NdArray) -> Result<NdArray> {
    let s = w.shape();
    if s.len() != 4 || s[2] != 3 || s[3] != 3 || !s[0].is_multiple_of(16) {
        return Err(Error::InvalidExpr(format!(
            "winograd_weights_f23: the weight has shape {:?}; it takes [O, C, 3, 3] with O a multiple of 16",
            s
        )));
    }
    let (o, c) = (s[0], s[1]);
    let src = w.as_slice::<f32>()?;
    let mut dst = vec![0.0f32; ALPHA * ALPHA * o * c];
    for oc in 0..o {
        for ic in 0..c {
            let g = &src[(oc * c + ic) * 9..][..9];
            // G g (4 x 3), then (G g) G^T (4 x 4).
            let mut gg = [[0.0f32; 3]; ALPHA];
            for (r, row) in gg.iter_mut().enumerate() {
                for (k, v) in row.iter_mut().enumerate() {
                    *v = (0..3).map(|j| G[r][j] * g[j * 3 + k]).sum();
                }
            }
            for (e, row) in gg.iter().enumerate() {
                for (nu, g_nu) in G.iter().enumerate() {
                    let u: f32 = (0..3).map(|k| row[k] * g_nu[k]).sum();
                    let t = e * ALPHA + nu;
                    dst[((t * (o / 16) + oc / 16) * c + ic) * 16 + oc % 16] = u;
                }
            }
        }
    }
    NdArray::from_vec(&winograd_weight_shape(o, c), dst)
}

/// A chain of `select(t == k, parts[k], ...)` over `k` (the last part unconditional).
fn by_index(t: &Expr, parts: Vec<Expr>) -> Expr {
    let mut it = parts.into_iter().enumerate().rev();
    let (_, mut e) = it.next().expect("at least one part");
    for (k, p) in it {
        e = select(eq(t.clone(), ci(k)), p, e);
    }
    e
}

/// `sum_k sign_k * x_k` (signs +-1) as additions and subtractions.
fn signed_sum(terms: Vec<(Expr, f32)>) -> Expr {
    let mut it = terms.into_iter();
    let (first, s0) = it.next().expect("at least one term");
    let mut e = if s0 > 0.0 { first } else { -first };
    for (x, s) in it {
        e = if s > 0.0 { e + x } else { e - x };
    }
    e
}

/// The Winograd F(2x2, 3x3) convolution (module doc) of `x` (`[N, C, H, W]`, f32) with
/// the transformed weight `u` (`[16, O / 16, C, 16]`, see [`winograd_weights_f23`]) and
/// `padding` `[top, left, bottom, right]`; stride and dilation 1. Returns `out`
/// (`[N, O, H + top + bottom - 2, W + left + right - 2]`).
pub fn conv2d_winograd(
    x: &Tensor,
    xs: &[usize],
    u: &Tensor,
    us: &[usize],
    padding: [usize; 4],
) -> Tensor {
    let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let o = us[1] * 16;
    let (ho, wo) = (
        h + padding[0] + padding[2] - 2,
        w + padding[1] + padding[3] - 2,
    );
    let (th, tw) = (ho.div_ceil(2), wo.div_ceil(2));
    let (hp, wp) = (2 * th + 2, 2 * tw + 2);
    let xp = pad(
        x,
        xs,
        &[
            (0, 0),
            (0, 0),
            (padding[0], hp - h - padding[0]),
            (padding[1], wp - w - padding[1]),
        ],
        Expr::float_of(0.0, x.dtype()),
        "pad",
    );
    let t16 = (ALPHA * ALPHA) as i64;
    let v = compute(&[t16.into(), ci(n), ci(c), ci(th), ci(tw)], "wino.v", |i| {
        let d = |r: usize, q: usize| {
            xp.at(&[
                i[1].clone(),
                i[2].clone(),
                &i[3] * ci(2) + ci(r),
                &i[4] * ci(2) + ci(q),
            ])
        };
        let parts = (0..ALPHA * ALPHA)
            .map(|t| {
                let (e, nu) = (t / ALPHA, t % ALPHA);
                let terms = BT[e]
                    .iter()
                    .flat_map(|&(r, sr)| BT[nu].iter().map(move |&(q, sq)| (r, q, sr * sq)))
                    .map(|(r, q, s)| (d(r, q), s))
                    .collect();
                signed_sum(terms)
            })
            .collect();
        by_index(&i[0], parts)
    });
    let rc = reduce_axis(0, c as i64, "rc");
    let m = compute(&[t16.into(), ci(n), ci(th), ci(tw), ci(o)], "wino.m", |i| {
        sum(
            v.at(&[
                i[0].clone(),
                i[1].clone(),
                rc.x(),
                i[2].clone(),
                i[3].clone(),
            ]) * u.at(&[i[0].clone(), &i[4] / ci(16), rc.x(), &i[4] % ci(16)]),
            &[rc.clone()],
        )
    });
    compute(&[ci(n), ci(o), ci(ho), ci(wo)], "out", |i| {
        let (y, xx) = (&i[2], &i[3]);
        let mt = |t: usize| m.at(&[ci(t), i[0].clone(), y / ci(2), xx / ci(2), i[1].clone()]);
        let block = |a: usize, b: usize| {
            let terms = AT[a]
                .iter()
                .flat_map(|&(e, se)| AT[b].iter().map(move |&(nu, sn)| (e * ALPHA + nu, se * sn)))
                .map(|(t, s)| (mt(t), s))
                .collect();
            signed_sum(terms)
        };
        let (yo, xo) = (y % ci(2), xx % ci(2));
        select(
            eq(yo.clone(), ci(0)),
            select(eq(xo.clone(), ci(0)), block(0, 0), block(0, 1)),
            select(eq(xo, ci(0)), block(1, 0), block(1, 1)),
        )
    })
}
