//! Constant convolution weights packed, at build time, into the layout the CPU
//! micro-kernel reads (TVM's `alter_op_layout` followed by constant folding).
//!
//! Requires: a well-formed graph whose parameters are bound; run only for CPU schedules
//! (the CUDA schedules read OIHW).
//! Ensures: every f32 conv2d with one group, output channels a multiple of 16 and a
//! constant OIHW weight reads instead a new parameter `{weight}.packed` holding the same
//! numbers laid out [`WeightLayout::Ohwi16o`] (`[O / 16][KH][KW][C][16]`), and says so in
//! its attributes; the convolution's value is unchanged (the same products summed in the
//! same order), so the node keeps its name. A weight read by several convolutions is
//! packed once; the OIHW parameter stays only where something else still reads it.
//! Without this pass the schedule packs the weight inside the kernel at every run.

use super::{Params, Rewriter};
use crate::error::Result;
use crate::graph_runtime::graph::{Graph, Op, WeightLayout};
use crate::runtime::NdArray;
use crate::te::DType;
use std::collections::HashMap;

/// Run the pass (see the module doc).
pub fn run(src: &Graph, params: Params) -> Result<(Graph, Params)> {
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
            && ws[0].is_multiple_of(16);
        let Some(oihw) = rw.constant(w).filter(|_| eligible) else {
            rw.copy(n)?;
            continue;
        };
        let pw = match packed.get(&w.0) {
            Some(&pw) => pw,
            None => {
                let array = pack_ohwi16o(oihw)?;
                let pw = rw.new_param(&format!("{}.packed", src.value_name(w)), array)?;
                packed.insert(w.0, pw);
                pw
            }
        };
        let x = rw.value(n.inputs[0])?;
        let attrs = crate::graph_runtime::Conv2dAttrs {
            weight_layout: WeightLayout::Ohwi16o,
            ..*a
        };
        let nv = rw.add(&n.name, Op::Conv2d(attrs), &[x, pw])?;
        rw.set(n.output, nv);
    }
    rw.finish()
}

/// An f32 OIHW weight `[O, C, KH, KW]` (`O` a multiple of 16) laid out
/// `[O / 16][KH][KW][C][16]`.
pub fn pack_ohwi16o(w: &NdArray) -> Result<NdArray> {
    let s = w.shape();
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
