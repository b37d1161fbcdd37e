//! Model definitions built through the graph API, with random weights from a fixed seed:
//! for tests, examples and benchmarks.

use super::graph::{Conv2dAttrs, Graph, Pool2dAttrs, ValueId};
use crate::error::Result;
use crate::runtime::NdArray;
use crate::te::DType;
use std::collections::HashMap;

/// Builds a graph and its parameters together; weights are uniform in
/// `[-sqrt(6 / fan_in), sqrt(6 / fan_in))` (He initialization), batch-norm statistics
/// near the identity, all from one seed.
struct Builder {
    g: Graph,
    params: HashMap<String, NdArray>,
    seed: u64,
}

impl Builder {
    fn next_seed(&mut self) -> u64 {
        self.seed = self.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.seed
    }

    /// A parameter `r * scale + offset` with `r` uniform in [-1, 1).
    fn param(&mut self, name: &str, shape: &[usize], scale: f32, offset: f32) -> Result<ValueId> {
        let r = NdArray::random(shape, DType::F32, self.next_seed());
        let a = NdArray::from_fn(shape, |i| r.get_f64(i) as f32 * scale + offset);
        let v = self.g.param(name, shape)?;
        self.params.insert(name.to_string(), a);
        Ok(v)
    }

    fn conv(
        &mut self,
        name: &str,
        x: ValueId,
        o: usize,
        k: usize,
        stride: usize,
    ) -> Result<ValueId> {
        let c = self.g.shape(x)[1];
        let fan_in = (c * k * k) as f32;
        let w = self.param(
            &format!("{}.weight", name),
            &[o, c, k, k],
            (6.0 / fan_in).sqrt(),
            0.0,
        )?;
        self.g.conv2d(name, x, w, Conv2dAttrs::same(stride, k / 2))
    }

    fn bn(&mut self, name: &str, x: ValueId) -> Result<ValueId> {
        let c = self.g.shape(x)[1];
        let gamma = self.param(&format!("{}.weight", name), &[c], 0.1, 1.0)?;
        let beta = self.param(&format!("{}.bias", name), &[c], 0.1, 0.0)?;
        let mean = self.param(&format!("{}.running_mean", name), &[c], 0.1, 0.0)?;
        let var = self.param(&format!("{}.running_var", name), &[c], 0.25, 1.0)?;
        self.g.batch_norm(name, x, gamma, beta, mean, var, 1e-5)
    }

    /// torchvision's BasicBlock: conv3x3(stride)-bn-relu-conv3x3-bn, plus the identity
    /// (or a 1x1 conv(stride)-bn downsample), then relu.
    fn basic_block(&mut self, name: &str, x: ValueId, o: usize, stride: usize) -> Result<ValueId> {
        let c = self.g.shape(x)[1];
        let h = self.conv(&format!("{}.conv1", name), x, o, 3, stride)?;
        let h = self.bn(&format!("{}.bn1", name), h)?;
        let h = self.g.relu(&format!("{}.relu1", name), h)?;
        let h = self.conv(&format!("{}.conv2", name), h, o, 3, 1)?;
        let h = self.bn(&format!("{}.bn2", name), h)?;
        let identity = if stride != 1 || c != o {
            let d = self.conv(&format!("{}.downsample.0", name), x, o, 1, stride)?;
            self.bn(&format!("{}.downsample.1", name), d)?
        } else {
            x
        };
        let s = self.g.add(&format!("{}.add", name), h, identity)?;
        self.g.relu(&format!("{}.relu2", name), s)
    }
}

/// ResNet-18 (torchvision's structure) for an `[batch, 3, size, size]` f32 input named
/// `input`: conv 7x7/2 + bn + relu + max pool 3x3/2, four stages of two BasicBlocks (64,
/// 128, 256, 512 channels; the first block of stages 2-4 has stride 2 and a 1x1
/// conv + bn downsample), global average pool, flatten, dense to `classes`. Returns the
/// graph (one output, the logits) and its parameters, named like torchvision's
/// (`layer1.0.conv1.weight`, `fc.bias`...), random from `seed`.
pub fn resnet18(
    batch: usize,
    size: usize,
    classes: usize,
    seed: u64,
) -> Result<(Graph, HashMap<String, NdArray>)> {
    let mut b = Builder {
        g: Graph::new(),
        params: HashMap::new(),
        seed,
    };
    let x = b.g.input("input", &[batch, 3, size, size], DType::F32)?;
    let h = b.conv("conv1", x, 64, 7, 2)?;
    let h = b.bn("bn1", h)?;
    let h = b.g.relu("relu", h)?;
    let mut h = b.g.max_pool2d("maxpool", h, Pool2dAttrs::new(3, 2, 1))?;
    for (stage, &o) in [64, 128, 256, 512].iter().enumerate() {
        for blk in 0..2 {
            let stride = if stage > 0 && blk == 0 { 2 } else { 1 };
            h = b.basic_block(&format!("layer{}.{}", stage + 1, blk), h, o, stride)?;
        }
    }
    let h = b.g.global_avg_pool("avgpool", h)?;
    let h = b.g.flatten("flatten", h)?;
    let w = b.param("fc.weight", &[classes, 512], (6.0f32 / 512.0).sqrt(), 0.0)?;
    let bias = b.param("fc.bias", &[classes], 0.1, 0.0)?;
    let y = b.g.dense("fc", h, w, Some(bias))?;
    b.g.output(y)?;
    Ok((b.g, b.params))
}
