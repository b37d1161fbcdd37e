//! Convolutions in the blocked layout `NCHW[c]c` (TVM's `conv2d_NCHWc`): the channels of an
//! activation split into blocks of `c`, the block index outside the image and the `c`
//! channels of a block innermost, `[N][C / c][H][W][c]`; a weight `[O / ob][C / cb][KH][KW]
//! [cb][ob]` (`OIHW[cb]i[ob]o`). A convolution's inner product over a block of input
//! channels into a block of output channels then reads and writes whole contiguous rows
//! of `c` channels: the micro-kernel's tile of output positions x output channels is a
//! block of the output itself, and a depthwise convolution's taps are vectors of
//! channels at any stride. The functions here build those computations and the layout
//! transforms to and from them; the schedules are
//! [`conv2d_nchwc_cpu`](crate::schedules::conv2d_nchwc_cpu) and
//! [`depthwise_conv2d_nchwc_cpu`](crate::schedules::depthwise_conv2d_nchwc_cpu).

use super::{ci, dims, pad};
use crate::error::{Error, Result};
use crate::te::{compute, compute_named, reduce_axis, sum, Expr, IterVar, Tensor};

fn bad(what: &str, msg: String) -> Error {
    Error::InvalidExpr(format!("{}: {}", what, msg))
}

/// `t`'s sizes are `shape` (where they are constants), else the typed error of `what`
/// naming the tensor: the sizes passed beside a tensor decide the computation's loops.
/// `shape`, given for `t`, as `N` sizes in layout `layout` (e.g. "NCHW"), checked against
/// `t`'s own ([`check_shape`]): a typed error naming `t` otherwise.
fn sizes<const N: usize>(
    what: &str,
    t: &Tensor,
    shape: &[usize],
    layout: &str,
) -> Result<[usize; N]> {
    let sizes: [usize; N] = shape.try_into().map_err(|_| {
        bad(
            what,
            format!(
                "{} has {} dimensions, not {} ({})",
                t.name(),
                shape.len(),
                N,
                layout
            ),
        )
    })?;
    check_shape(what, t, shape)?;
    Ok(sizes)
}

fn check_shape(what: &str, t: &Tensor, shape: &[usize]) -> Result<()> {
    let dims = t.shape();
    let agree = dims.len() == shape.len()
        && dims
            .iter()
            .zip(shape)
            .all(|(d, &n)| d.as_int().is_none_or(|v| v == n as i64));
    if !agree {
        let have: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        return Err(bad(
            what,
            format!(
                "{} has shape [{}], but the shape given for it is {:?}",
                t.name(),
                have.join(", "),
                shape
            ),
        ));
    }
    Ok(())
}

/// A size divides another, else the typed error of `what` naming both.
fn check_block(what: &str, name: &str, size: usize, block: usize) -> Result<()> {
    if block == 0 || !size.is_multiple_of(block) {
        return Err(bad(
            what,
            format!(
                "the block of {} channels does not divide {}'s {} channels; pick a divisor",
                block, name, size
            ),
        ));
    }
    Ok(())
}

/// `[N, C, H, W]` -> `[N, C / c, H, W, c]`: `y[n, cb, h, w, ci] = x[n, cb * c + ci, h,
/// w]`. A typed error unless `c` divides `C`.
pub fn nchw_to_nchwc(x: &Tensor, xs: &[usize], c: usize, name: &str) -> Result<Tensor> {
    let [n, ch, h, w] = sizes("nchw_to_nchwc", x, xs, "NCHW")?;
    check_block("nchw_to_nchwc", &x.name(), ch, c)?;
    Ok(compute_named(
        &dims(&[n, ch / c, h, w, c]),
        name,
        &["n", "cb", "h", "w", "ci"],
        |i| {
            x.at(&[
                i[0].clone(),
                &i[1] * ci(c) + i[4].clone(),
                i[2].clone(),
                i[3].clone(),
            ])
        },
    ))
}

/// `[N, C / c, H, W, c]` -> `[N, C, H, W]`, the inverse of [`nchw_to_nchwc`].
pub fn nchwc_to_nchw(x: &Tensor, xs: &[usize], name: &str) -> Result<Tensor> {
    let [n, cb, h, w, c] = sizes("nchwc_to_nchw", x, xs, "NCHW[c]c")?;
    Ok(compute(&dims(&[n, cb * c, h, w]), name, |i| {
        x.at(&[
            i[0].clone(),
            &i[1] / ci(c),
            i[2].clone(),
            i[3].clone(),
            &i[1] % ci(c),
        ])
    }))
}

/// An `OIHW` weight `[O, C, KH, KW]` as `[O / ob, C / cb, KH, KW, cb, ob]`. A typed error
/// unless `ob` divides `O` and `cb` divides `C`.
pub fn oihw_to_blocked(
    w: &Tensor,
    ws: &[usize],
    cb: usize,
    ob: usize,
    name: &str,
) -> Result<Tensor> {
    let [o, c, kh, kw] = sizes("oihw_to_blocked", w, ws, "OIHW")?;
    check_block("oihw_to_blocked", &w.name(), o, ob)?;
    check_block("oihw_to_blocked", &w.name(), c, cb)?;
    Ok(compute(
        &dims(&[o / ob, c / cb, kh, kw, cb, ob]),
        name,
        |i| {
            w.at(&[
                &i[0] * ci(ob) + i[5].clone(),
                &i[1] * ci(cb) + i[4].clone(),
                i[2].clone(),
                i[3].clone(),
            ])
        },
    ))
}

/// A depthwise `OIHW` weight `[C, 1, KH, KW]` as `[C / c, KH, KW, c]`. A typed error
/// unless `c` divides `C` and the weight has one input channel per group.
pub fn depthwise_weight_to_blocked(
    w: &Tensor,
    ws: &[usize],
    c: usize,
    name: &str,
) -> Result<Tensor> {
    let &[ch, 1, kh, kw] = ws else {
        return Err(bad(
            "depthwise_weight_to_blocked",
            format!(
                "{} is {:?}, not a depthwise weight [C, 1, KH, KW]",
                w.name(),
                ws
            ),
        ));
    };
    check_shape("depthwise_weight_to_blocked", w, ws)?;
    check_block("depthwise_weight_to_blocked", &w.name(), ch, c)?;
    Ok(compute(&dims(&[ch / c, kh, kw, c]), name, |i| {
        w.at(&[
            &i[0] * ci(c) + i[3].clone(),
            ci(0),
            i[1].clone(),
            i[2].clone(),
        ])
    }))
}

/// Stride, padding (top, left, bottom, right) and dilation of a blocked convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockedConv {
    /// Rows, columns.
    pub stride: [usize; 2],
    /// Top, left, bottom, right.
    pub padding: [usize; 4],
    /// Rows, columns.
    pub dilation: [usize; 2],
}

impl Default for BlockedConv {
    fn default() -> Self {
        BlockedConv {
            stride: [1, 1],
            padding: [0; 4],
            dilation: [1, 1],
        }
    }
}

impl BlockedConv {
    /// The output's height and width for an `h x w` image and a `kh x kw` window, or the
    /// typed error of `what` when the window does not fit.
    fn out_size(&self, what: &str, h: usize, w: usize, kh: usize, kw: usize) -> Result<[usize; 2]> {
        let [pt, pl, pb, pr] = self.padding;
        if kh == 0 || kw == 0 {
            return Err(bad(
                what,
                format!("the window is {}x{}; it must be at least 1x1", kh, kw),
            ));
        }
        if self.stride.contains(&0) || self.dilation.contains(&0) {
            return Err(bad(what, "strides and dilations must be at least 1".into()));
        }
        let too_large = || {
            bad(
                what,
                "the padded image or the dilated window is too large".into(),
            )
        };
        let extent = |k: usize, d: usize| (k - 1).checked_mul(d).and_then(|e| e.checked_add(1));
        let (eh, ew) = (
            extent(kh, self.dilation[0]).ok_or_else(too_large)?,
            extent(kw, self.dilation[1]).ok_or_else(too_large)?,
        );
        let (ph, pw) = (
            h.checked_add(pt)
                .and_then(|v| v.checked_add(pb))
                .ok_or_else(too_large)?,
            w.checked_add(pl)
                .and_then(|v| v.checked_add(pr))
                .ok_or_else(too_large)?,
        );
        if ph < eh || pw < ew {
            return Err(bad(
                what,
                format!(
                    "the {}x{} window (dilated) does not fit the padded {}x{} image",
                    eh, ew, ph, pw
                ),
            ));
        }
        Ok([
            (ph - eh) / self.stride[0] + 1,
            (pw - ew) / self.stride[1] + 1,
        ])
    }

    /// The padding stage `pad` of a 5-d blocked input (`x` itself without padding).
    fn pad(&self, x: &Tensor, xs: &[usize]) -> Tensor {
        let [pt, pl, pb, pr] = self.padding;
        pad(
            x,
            xs,
            &[(0, 0), (0, 0), (pt, pb), (pl, pr), (0, 0)],
            Expr::float_of(0.0, x.dtype()),
            "pad",
        )
    }
}

/// What both blocked convolutions build before their reduction: the padded input and
/// the window's reduce axes, the output's size.
struct Window {
    attrs: BlockedConv,
    /// The padding stage (the input itself without padding).
    xp: Tensor,
    ry: IterVar,
    rx: IterVar,
    oh: usize,
    ow: usize,
}

impl Window {
    /// The window of a `kh x kw` kernel over the blocked input `x` (`xs = [N, blocks, H,
    /// W, block]`) whose weight `w` (shape `ws`) holds `w_blocks[0]` blocks of
    /// `w_blocks[1]` input channels; the typed error of `what` when a tensor's sizes are
    /// not the ones given, the blocks differ from the input's or the window does not fit.
    fn new(
        what: &str,
        attrs: &BlockedConv,
        (x, xs): (&Tensor, &[usize]),
        (w, ws, w_blocks): (&Tensor, &[usize], [usize; 2]),
        [kh, kw]: [usize; 2],
    ) -> Result<Window> {
        check_shape(what, x, xs)?;
        check_shape(what, w, ws)?;
        if w_blocks != [xs[1], xs[4]] {
            return Err(bad(
                what,
                format!(
                    "the weight {} reads {} blocks of {} input channels, the input {} has {} blocks of {}",
                    w.name(),
                    w_blocks[0],
                    w_blocks[1],
                    x.name(),
                    xs[1],
                    xs[4]
                ),
            ));
        }
        let [oh, ow] = attrs.out_size(what, xs[2], xs[3], kh, kw)?;
        Ok(Window {
            attrs: *attrs,
            xp: attrs.pad(x, xs),
            ry: reduce_axis(0, kh as i64, "ry"),
            rx: reduce_axis(0, kw as i64, "rx"),
            oh,
            ow,
        })
    }

    /// The padded input's row and column that output position `(y, x)` reads at the
    /// window's tap `(ry, rx)`.
    fn input_at(&self, y: &Expr, x: &Expr) -> (Expr, Expr) {
        let ([sh, sw], [dh, dw]) = (self.attrs.stride, self.attrs.dilation);
        (
            y * ci(sh) + self.ry.x() * ci(dh),
            x * ci(sw) + self.rx.x() * ci(dw),
        )
    }
}

/// The convolution `out[n, ob, y, x, oi] = sum_{rco, ry, rx, rci} pad(x)[n, rco, y * sh +
/// ry * dh, x * sw + rx * dw, rci] * w[ob, rco, ry, rx, rci, oi]` of a blocked input `x`
/// (`xs = [N, C / cb, H, W, cb]`) with a blocked weight `w` (`ws = [O / ob, C / cb, KH,
/// KW, cb, ob]`, see [`oihw_to_blocked`]), one group; the output `[N, O / ob, OH, OW,
/// ob]` is named `out`. The reduction runs over input channel blocks `rco`, the window
/// `ry, rx` and the channels of a block `rci`, in that order. A typed error when the
/// shapes disagree.
pub fn conv2d_nchwc(
    x: &Tensor,
    w: &Tensor,
    xs: &[usize],
    ws: &[usize],
    attrs: &BlockedConv,
) -> Result<Tensor> {
    const WHAT: &str = "conv2d_nchwc";
    let (&[n, cb_count, _, _, cb], &[ob_count, wcb_count, kh, kw, wcb, ob]) = (xs, ws) else {
        return Err(bad(
            WHAT,
            format!(
                "the input {} must be 5-d [N, C/cb, H, W, cb] and the weight {} 6-d [O/ob, C/cb, KH, KW, cb, ob]; they are {:?} and {:?}",
                x.name(),
                w.name(),
                xs,
                ws
            ),
        ));
    };
    let win = Window::new(WHAT, attrs, (x, xs), (w, ws, [wcb_count, wcb]), [kh, kw])?;
    let rco = reduce_axis(0, cb_count as i64, "rco");
    let rci = reduce_axis(0, cb as i64, "rci");
    let (ry, rx) = (&win.ry, &win.rx);
    Ok(compute_named(
        &dims(&[n, ob_count, win.oh, win.ow, ob]),
        "out",
        &["n", "ob", "y", "x", "oi"],
        |i| {
            let (yy, xx) = win.input_at(&i[2], &i[3]);
            sum(
                win.xp.at(&[i[0].clone(), rco.x(), yy, xx, rci.x()])
                    * w.at(&[i[1].clone(), rco.x(), ry.x(), rx.x(), rci.x(), i[4].clone()]),
                &[rco.clone(), ry.clone(), rx.clone(), rci.clone()],
            )
        },
    ))
}

/// The depthwise convolution `out[n, cb, y, x, ci] = sum_{ry, rx} pad(x)[n, cb, y * sh +
/// ry * dh, x * sw + rx * dw, ci] * w[cb, ry, rx, ci]` of a blocked input `x` (`xs = [N,
/// C / c, H, W, c]`) with a blocked depthwise weight `w` (`ws = [C / c, KH, KW, c]`, see
/// [`depthwise_weight_to_blocked`]); the output `[N, C / c, OH, OW, c]` is named `out`.
/// A typed error when the shapes disagree.
pub fn depthwise_conv2d_nchwc(
    x: &Tensor,
    w: &Tensor,
    xs: &[usize],
    ws: &[usize],
    attrs: &BlockedConv,
) -> Result<Tensor> {
    const WHAT: &str = "depthwise_conv2d_nchwc";
    let (&[n, cb_count, _, _, c], &[wcb_count, kh, kw, wc]) = (xs, ws) else {
        return Err(bad(
            WHAT,
            format!(
                "the input {} must be 5-d [N, C/c, H, W, c] and the weight {} 4-d [C/c, KH, KW, c]; they are {:?} and {:?}",
                x.name(),
                w.name(),
                xs,
                ws
            ),
        ));
    };
    let win = Window::new(WHAT, attrs, (x, xs), (w, ws, [wcb_count, wc]), [kh, kw])?;
    let (ry, rx) = (&win.ry, &win.rx);
    Ok(compute_named(
        &dims(&[n, cb_count, win.oh, win.ow, c]),
        "out",
        &["n", "cb", "y", "x", "ci"],
        |i| {
            let (yy, xx) = win.input_at(&i[2], &i[3]);
            sum(
                win.xp
                    .at(&[i[0].clone(), i[1].clone(), yy, xx, i[4].clone()])
                    * w.at(&[i[1].clone(), ry.x(), rx.x(), i[4].clone()]),
                &[ry.clone(), rx.clone()],
            )
        },
    ))
}
