//! Constant convolution weights packed, at build time, into the layout the CPU
//! schedule reads (TVM's `alter_op_layout` followed by constant folding).
//!
//! Requires: a well-formed graph whose parameters are bound; run only for CPU schedules
//! (the CUDA schedules read OIHW).
//! Ensures: every f32 conv2d with one group, output channels a multiple of 16 and a
//! constant OIHW weight, except the pointwise ones whose schedule reads OIHW
//! ([`prefers_pointwise`](crate::graph_runtime::schedule::prefers_pointwise)), reads
//! instead a new parameter holding that weight
//! - transformed for Winograd's F(2x2, 3x3) (`{weight}.winograd`,
//!   [`WeightLayout::Winograd23`]) when `winograd` is on and the kernel is 3x3 with
//!   stride and dilation 1 and at least [`WINOGRAD_MIN_CHANNELS`] input channels: the
//!   convolution is then computed by Winograd's algorithm, equal to the direct one up to
//!   rounding;
//! - otherwise the same numbers laid out [`WeightLayout::Ohwi16o`] (`{weight}.packed`,
//!   `[O / 16][KH][KW][C][16]`): the convolution's value is unchanged (the same products
//!   summed in the same order);
//!
//! and says so in its attributes; the node keeps its name. A weight read by several
//! convolutions is transformed once; the OIHW parameter stays only where something else
//! still reads it. Without this pass the schedule packs the weight inside the kernel at
//! every run.

use super::{Params, Rewriter};
use crate::error::Result;
use crate::graph_runtime::graph::{Graph, Op, WeightLayout};
use crate::graph_runtime::ops::winograd_weights_f23;
use crate::runtime::NdArray;
use crate::te::DType;
use std::collections::HashMap;

/// Input channels below which a 3x3 convolution stays direct (the channel products of
/// Winograd's algorithm would be too short for the micro-kernel).
pub const WINOGRAD_MIN_CHANNELS: usize = 16;

/// Run the pass (see the module doc); `winograd`: use Winograd's algorithm where it
/// applies.
pub fn run(src: &Graph, params: Params, winograd: bool) -> Result<(Graph, Params)> {
    let mut rw = Rewriter::new(src, params)?;
    let mut packed = HashMap::new();
    for n in src.nodes() {
        let Op::Conv2d(a) = &n.op else {
            rw.copy(n)?;
            continue;
        };
        let w = n.inputs[1];
        let ws = src.shape(w);
        let eligible = a.groups == 1
            && a.weight_layout == WeightLayout::Oihw
            && src.dtype(w) == DType::F32
            && src.dtype(n.inputs[0]) == DType::F32
            && ws[0].is_multiple_of(16)
            && !crate::graph_runtime::schedule::prefers_pointwise(a, ws, src.shape(n.output));
        let Some(oihw) = rw.constant(w).filter(|_| eligible) else {
            rw.copy(n)?;
            continue;
        };
        let layout = if winograd
            && ws[2] == 3
            && ws[3] == 3
            && ws[1] >= WINOGRAD_MIN_CHANNELS
            && a.stride == [1, 1]
            && a.dilation == [1, 1]
        {
            WeightLayout::Winograd23
        } else {
            WeightLayout::Ohwi16o
        };
        let pw = match packed.get(&(w.0, layout)) {
            Some(&pw) => pw,
            None => {
                let (array, suffix) = if layout == WeightLayout::Winograd23 {
                    (winograd_weights_f23(oihw)?, "winograd")
                } else {
                    (pack_ohwi16o(oihw)?, "packed")
                };
                let name = format!("{}.{}", src.value_name(w), suffix);
                let pw = rw.new_param(&name, array)?;
                packed.insert((w.0, layout), pw);
                pw
            }
        };
        let x = rw.value(n.inputs[0])?;
        let attrs = crate::graph_runtime::Conv2dAttrs {
            weight_layout: layout,
            ..*a
        };
        let nv = rw.add(&n.name, Op::Conv2d(attrs), &[x, pw])?;
        rw.set(n.output, nv);
    }
    rw.finish()
}

/// An f32 OIHW weight `[O, C, KH, KW]` (`O` a multiple of 16) laid out
/// `[O / 16][KH][KW][C][16]`; a typed error for another rank or an `O` that 16 does not divide.
pub fn pack_ohwi16o(w: &NdArray) -> Result<NdArray> {
    let s = w.shape();
    if s.len() != 4 || !s[0].is_multiple_of(16) {
        return Err(crate::error::Error::InvalidExpr(format!(
            "pack_ohwi16o: the weight is {:?}; it must be OIHW (4-d) with output channels a multiple of 16",
            s
        )));
    }
    let (o, c, kh, kw) = (s[0], s[1], s[2], s[3]);
    let src = w.as_slice::<f32>()?;
    let mut dst = vec![0.0f32; src.len()];
    for (i, &v) in src.iter().enumerate() {
        let (oc, rest) = (i / (c * kh * kw), i % (c * kh * kw));
        let (ci, tap) = (rest / (kh * kw), rest % (kh * kw));
        let (ky, kx) = (tap / kw, tap % kw);
        dst[(((oc / 16 * kh + ky) * kw + kx) * c + ci) * 16 + oc % 16] = v;
    }
    NdArray::from_vec(&WeightLayout::ohwi16o_shape(&[o, c, kh, kw]), dst)
}

#[cfg(test)]
mod tests {
    use super::pack_ohwi16o;
    use crate::runtime::NdArray;
    use crate::te::DType;

    #[test]
    fn packing_needs_output_channels_a_multiple_of_16() {
        let w = NdArray::random(&[24, 8, 1, 1], DType::F32, 1);
        let e = pack_ohwi16o(&w).unwrap_err().to_string();
        assert!(e.contains("output channels a multiple of 16"), "{}", e);
        let w = NdArray::random(&[32, 2, 3, 3], DType::F32, 1);
        let p = pack_ohwi16o(&w).unwrap();
        assert_eq!(p.shape(), &[2, 3, 3, 2, 16]);
    }
}
