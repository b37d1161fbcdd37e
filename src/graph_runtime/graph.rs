//! The typed operator graph and its builder: shapes and dtypes are inferred (and checked)
//! as nodes are added, so a [`Graph`] that was built is well formed.

use crate::error::{graph_err, Result};
use crate::te::DType;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// A value of the graph: a graph input, a parameter or the output of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub usize);

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueKind {
    /// A graph input, set per run with `set_input(name, ..)`.
    Input(String),
    /// A named parameter (weights), given once to `build`.
    Param(String),
    /// The output of node `nodes[i]`.
    Node(usize),
}

/// Shape, dtype and origin of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueInfo {
    /// Static shape.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
    /// Where it comes from.
    pub kind: ValueKind,
}

/// How a conv2d's weight is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum WeightLayout {
    /// `[O, C / groups, KH, KW]`: ONNX's and PyTorch's layout.
    #[default]
    Oihw,
    /// `[O / 16, KH, KW, C, 16]` (one group only): for each block of 16 output channels
    /// and each kernel tap, a `C x 16` panel with the 16 channels contiguous, the panel the
    /// CPU micro-kernel reads (TVM calls such layouts `OHWI16o`). The build packs constant
    /// weights into it for CPU schedules (`passes::pack_conv_weights`).
    Ohwi16o,
    /// `[16, O / 16, C, 16]` (3x3 kernels, stride and dilation 1, one group): the weight
    /// transformed for Winograd's F(2x2, 3x3) (`G g G^T` for each channel pair; see
    /// [`ops::winograd_weights_f23`](crate::graph_runtime::ops::winograd_weights_f23)).
    /// The convolution is then computed by Winograd's algorithm
    /// ([`ops::conv2d_winograd`](crate::graph_runtime::ops::conv2d_winograd)). The build
    /// transforms constant weights of eligible convolutions into it for CPU schedules.
    Winograd23,
}

impl WeightLayout {
    /// The `OHWI16o` shape of an OIHW weight shape `[o, c, kh, kw]`.
    pub fn ohwi16o_shape(oihw: &[usize]) -> Vec<usize> {
        vec![oihw[0] / 16, oihw[2], oihw[3], oihw[1], 16]
    }

    /// The `[O, C / groups, KH, KW]` sizes of a weight of shape `s` in this layout.
    pub fn oihw(self, s: &[usize]) -> [usize; 4] {
        match self {
            WeightLayout::Oihw => [s[0], s[1], s[2], s[3]],
            WeightLayout::Ohwi16o => [s[0] * s[4], s[3], s[1], s[2]],
            WeightLayout::Winograd23 => [s[1] * s[3], s[2], 3, 3],
        }
    }
}

/// Attributes of a 2-D convolution (NCHW input, OIHW weight unless `weight_layout` says
/// otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv2dAttrs {
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// Zero padding: top, left, bottom, right.
    pub padding: [usize; 4],
    /// Dilation along height and width.
    pub dilation: [usize; 2],
    /// Number of groups: input and output channels are split into `groups` independent
    /// convolutions (`groups == in_channels` is a depthwise convolution).
    pub groups: usize,
    /// The weight's layout ([`WeightLayout::Oihw`] unless a build pass packed it).
    #[serde(default)]
    pub weight_layout: WeightLayout,
}

impl Default for Conv2dAttrs {
    fn default() -> Self {
        Conv2dAttrs {
            stride: [1, 1],
            padding: [0; 4],
            dilation: [1, 1],
            groups: 1,
            weight_layout: WeightLayout::Oihw,
        }
    }
}

impl Conv2dAttrs {
    /// Symmetric padding `p` on every side, the given stride, no dilation, one group.
    pub fn same(stride: usize, pad: usize) -> Conv2dAttrs {
        Conv2dAttrs {
            stride: [stride, stride],
            padding: [pad; 4],
            ..Conv2dAttrs::default()
        }
    }

    /// Whether a convolution with these attributes and an OIHW weight of shape
    /// `weight` is pointwise: a 1x1 kernel, stride 1, no padding, one group (a matrix
    /// product over the channels, [`crate::schedules::conv2d_pointwise_cpu`]'s form).
    pub fn is_pointwise(&self, weight: &[usize]) -> bool {
        weight.len() == 4
            && weight[2] == 1
            && weight[3] == 1
            && self.stride == [1, 1]
            && self.padding == [0; 4]
            && self.groups == 1
    }
}

/// Attributes of 2-D max and average pooling (NCHW). The output size rounds down (ONNX's
/// `ceil_mode = 0`); average pooling divides by the number of elements inside the unpadded
/// input (ONNX's `count_include_pad = 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool2dAttrs {
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// Padding: top, left, bottom, right (padded elements never win a max and are not
    /// counted by an average).
    pub padding: [usize; 4],
}

impl Pool2dAttrs {
    /// A `k x k` window with stride `s` and symmetric padding `p`.
    pub fn new(k: usize, s: usize, p: usize) -> Pool2dAttrs {
        Pool2dAttrs {
            kernel: [k, k],
            stride: [s, s],
            padding: [p; 4],
        }
    }
}

/// Elementwise binary operators (numpy broadcasting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`
    Div,
}

/// Elementwise unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum UnaryOp {
    /// `max(x, 0)`
    Relu,
    /// `min(max(x, min), max)` (relu6 is `Clip { min: 0, max: 6 }`).
    Clip {
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
    },
    /// `1 / (1 + e^-x)`
    Sigmoid,
    /// `tanh(x)`
    Tanh,
    /// `0.5 x (1 + erf(x / sqrt 2))` (the exact, erf form).
    Gelu,
    /// The error function `erf(x)` (GELU as exported before ONNX's `Gelu`: `Div`, `Erf`,
    /// `Add`, `Mul`).
    Erf,
    /// `e^x`.
    Exp,
}

impl UnaryOp {
    /// Whether the operator is a comparison or clamp (relu, clip), not a transcendental
    /// function.
    pub fn is_cheap(self) -> bool {
        matches!(self, UnaryOp::Relu | UnaryOp::Clip { .. })
    }

    /// The vectorized activation it is, if one ([`crate::intrinsics::activation_f32`]).
    pub fn activation(self) -> Option<crate::intrinsics::Activation> {
        use crate::intrinsics::Activation;
        match self {
            UnaryOp::Sigmoid => Some(Activation::Sigmoid),
            UnaryOp::Tanh => Some(Activation::Tanh),
            UnaryOp::Gelu => Some(Activation::Gelu),
            UnaryOp::Erf => Some(Activation::Erf),
            UnaryOp::Exp => Some(Activation::Exp),
            UnaryOp::Relu | UnaryOp::Clip { .. } => None,
        }
    }
}

/// An operator with its attributes. The inputs of each are listed in its builder method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// 2-D convolution: inputs `x [N, C, H, W]`, `w [O, C / groups, KH, KW]`.
    Conv2d(Conv2dAttrs),
    /// Fully connected: `x [M, K]`, `w [N, K]`, optional `bias [N]`: `x · wᵀ + bias`.
    Dense,
    /// Matrix product `a [M, K] · b [K, N]`.
    MatMul,
    /// Batch normalization (inference): `x [N, C, ...]`, `gamma, beta, mean, var [C]`.
    BatchNorm {
        /// Added to the variance.
        eps: f64,
    },
    /// Elementwise binary operator with numpy broadcasting.
    Binary(BinaryOp),
    /// Elementwise unary operator.
    Unary(UnaryOp),
    /// 2-D max pooling.
    MaxPool2d(Pool2dAttrs),
    /// 2-D average pooling (`count_include_pad = 0`).
    AvgPool2d(Pool2dAttrs),
    /// Mean over H and W: `[N, C, H, W] -> [N, C, 1, 1]`.
    GlobalAvgPool,
    /// `[N, d1, d2, ...] -> [N, d1 * d2 * ...]`.
    Flatten,
    /// Row-major reshape to the given shape (same number of elements).
    Reshape {
        /// The new shape.
        shape: Vec<usize>,
    },
    /// Permute the dimensions: output dimension `i` is input dimension `perm[i]`.
    Transpose {
        /// The permutation.
        perm: Vec<usize>,
    },
    /// Concatenate the inputs along `axis`.
    Concat {
        /// The axis.
        axis: usize,
    },
    /// Softmax along `axis` (max-subtracted).
    Softmax {
        /// The axis.
        axis: usize,
    },
    /// Layer normalization over the last axis: `x [..., D]`, `gamma, beta [D]`.
    LayerNorm {
        /// Added to the variance.
        eps: f64,
    },
    /// A fused group (made by the fusion pass, see [`FusedOp`]): an anchor operator and a
    /// chain of elementwise operators applied to its output, computed by one kernel.
    Fused(FusedOp),
}

/// One elementwise step of a fused group's epilogue, applied to the running value (the
/// anchor's output, then each step's result). Input indices refer to the fused node's
/// inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EpilogueStep {
    /// `f(value)`.
    Unary(UnaryOp),
    /// `value op other` (or `other op value` when `value_left` is false), `other` being
    /// node input `input`, broadcast to the value's shape.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// The other operand (a node input index).
        input: usize,
        /// Whether the running value is the left operand.
        value_left: bool,
    },
    /// `value op earlier` (or `earlier op value` when `value_left` is false), `earlier`
    /// being the group's value after its first `at` steps (0: the anchor's output): the
    /// join of a diamond such as SiLU, `x * sigmoid(x)`.
    BinaryEarlier {
        /// The operator.
        op: BinaryOp,
        /// Whether the running value is the left operand.
        value_left: bool,
        /// How many steps in the other operand is taken (at most this step's index).
        at: usize,
    },
    /// Inference batch normalization with the channel vectors `gamma, beta, mean, var`
    /// (node input indices).
    BatchNorm {
        /// Added to the variance.
        eps: f64,
        /// `gamma, beta, mean, var`.
        inputs: [usize; 4],
    },
}

/// A fused group: `anchor` applied to the first `anchor_inputs` inputs of the node, then
/// the `epilogue` steps, elementwise, on its output (same shape all along). The fusion
/// pass makes these; a fused node is named after the last node of the group, and
/// `members` names the original nodes it computes (anchor first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FusedOp {
    /// The operator whose output the chain starts from (never itself `Fused`).
    pub anchor: Box<Op>,
    /// How many of the node's inputs (the first ones) are the anchor's.
    pub anchor_inputs: usize,
    /// The elementwise steps, in order.
    pub epilogue: Vec<EpilogueStep>,
    /// The names of the nodes of the source graph this group computes, anchor first.
    pub members: Vec<String>,
}

impl Op {
    /// Whether the operator is elementwise on its first input (same shape out, each output
    /// element a function of the same element of the input and of broadcast operands):
    /// binary and unary operators and batch normalization, what fusion can chain.
    pub fn is_elementwise(&self) -> bool {
        matches!(self, Op::Binary(_) | Op::Unary(_) | Op::BatchNorm { .. })
    }
}

impl Op {
    /// A short lower-case name of the operator (`"conv2d"`, `"add"`...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Op::Conv2d(_) => "conv2d",
            Op::Dense => "dense",
            Op::MatMul => "matmul",
            Op::BatchNorm { .. } => "batch_norm",
            Op::Binary(BinaryOp::Add) => "add",
            Op::Binary(BinaryOp::Sub) => "sub",
            Op::Binary(BinaryOp::Mul) => "mul",
            Op::Binary(BinaryOp::Div) => "div",
            Op::Unary(UnaryOp::Relu) => "relu",
            Op::Unary(UnaryOp::Clip { .. }) => "clip",
            Op::Unary(UnaryOp::Sigmoid) => "sigmoid",
            Op::Unary(UnaryOp::Tanh) => "tanh",
            Op::Unary(UnaryOp::Gelu) => "gelu",
            Op::Unary(UnaryOp::Erf) => "erf",
            Op::Unary(UnaryOp::Exp) => "exp",
            Op::MaxPool2d(_) => "max_pool2d",
            Op::AvgPool2d(_) => "avg_pool2d",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::Flatten => "flatten",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Concat { .. } => "concat",
            Op::Softmax { .. } => "softmax",
            Op::LayerNorm { .. } => "layer_norm",
            Op::Fused(_) => "fused",
        }
    }
}

/// One operator application.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Unique name (among nodes, inputs and parameters).
    pub name: String,
    /// The operator.
    pub op: Op,
    /// The values it reads, in the operator's order.
    pub inputs: Vec<ValueId>,
    /// The value it produces.
    pub output: ValueId,
}

/// A typed operator graph, built in topological order with the builder methods
/// ([`Graph::input`], [`Graph::param`], [`Graph::conv2d`]...), each of which infers and
/// checks shapes and dtypes.
///
/// ```
/// use loopforge::graph_runtime::{Graph, Conv2dAttrs};
/// use loopforge::te::DType;
/// let mut g = Graph::new();
/// let x = g.input("x", &[1, 3, 8, 8], DType::F32).unwrap();
/// let w = g.param("w", &[4, 3, 3, 3]).unwrap();
/// let y = g.conv2d("conv", x, w, Conv2dAttrs::same(1, 1)).unwrap();
/// let y = g.relu("relu", y).unwrap();
/// g.output(y).unwrap();
/// assert_eq!(g.shape(y), &[1, 4, 8, 8]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Graph {
    values: Vec<ValueInfo>,
    inputs: Vec<ValueId>,
    params: Vec<ValueId>,
    nodes: Vec<Node>,
    outputs: Vec<ValueId>,
    names: HashSet<String>,
}

fn shape_str(s: &[usize]) -> String {
    format!("{:?}", s)
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    // ------------------------------------------------------------ accessors

    /// Every value (indexed by `ValueId.0`).
    pub fn values(&self) -> &[ValueInfo] {
        &self.values
    }
    /// The value `v`.
    pub fn value(&self, v: ValueId) -> &ValueInfo {
        &self.values[v.0]
    }
    /// The shape of `v`.
    pub fn shape(&self, v: ValueId) -> &[usize] {
        &self.values[v.0].shape
    }
    /// The dtype of `v`.
    pub fn dtype(&self, v: ValueId) -> DType {
        self.values[v.0].dtype
    }
    /// The graph inputs, in declaration order.
    pub fn inputs(&self) -> &[ValueId] {
        &self.inputs
    }
    /// The parameters, in declaration order.
    pub fn params(&self) -> &[ValueId] {
        &self.params
    }
    /// The nodes, in topological (construction) order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
    /// The graph outputs, in the order [`Graph::output`] marked them.
    pub fn outputs(&self) -> &[ValueId] {
        &self.outputs
    }
    /// Whether `name` is taken by an input, parameter or node.
    pub fn has_name(&self, name: &str) -> bool {
        self.names.contains(name)
    }
    /// The name of a value: its input, parameter or node name.
    pub fn value_name(&self, v: ValueId) -> &str {
        match &self.values[v.0].kind {
            ValueKind::Input(n) | ValueKind::Param(n) => n,
            ValueKind::Node(i) => &self.nodes[*i].name,
        }
    }

    // ------------------------------------------------------------ sources

    fn claim(&mut self, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(graph_err(
                "<empty>",
                "names of inputs, parameters and nodes must not be empty",
            ));
        }
        if !self.names.insert(name.to_string()) {
            return Err(graph_err(
                name,
                "the name is already used by another input, parameter or node; names must be unique",
            ));
        }
        Ok(())
    }

    fn check_value(&self, node: &str, v: ValueId) -> Result<()> {
        if v.0 >= self.values.len() {
            return Err(graph_err(
                node,
                format!(
                    "value id {} does not belong to this graph ({} values)",
                    v.0,
                    self.values.len()
                ),
            ));
        }
        Ok(())
    }

    /// A graph input of the given shape and dtype.
    pub fn input(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<ValueId> {
        self.claim(name)?;
        let id = ValueId(self.values.len());
        self.values.push(ValueInfo {
            shape: shape.to_vec(),
            dtype,
            kind: ValueKind::Input(name.to_string()),
        });
        self.inputs.push(id);
        Ok(id)
    }

    /// A named f32 parameter (weights), bound at `build` time.
    pub fn param(&mut self, name: &str, shape: &[usize]) -> Result<ValueId> {
        self.param_typed(name, shape, DType::F32)
    }

    /// A named parameter of the given dtype.
    pub fn param_typed(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<ValueId> {
        self.claim(name)?;
        let id = ValueId(self.values.len());
        self.values.push(ValueInfo {
            shape: shape.to_vec(),
            dtype,
            kind: ValueKind::Param(name.to_string()),
        });
        self.params.push(id);
        Ok(id)
    }

    /// Mark `v` as a graph output (outputs are numbered in marking order).
    pub fn output(&mut self, v: ValueId) -> Result<usize> {
        self.check_value("<output>", v)?;
        self.outputs.push(v);
        Ok(self.outputs.len() - 1)
    }

    /// Add a node with any operator (the typed builder methods call this). Checks the
    /// inputs and infers the output's shape and dtype.
    pub fn add_node(&mut self, name: &str, op: Op, inputs: &[ValueId]) -> Result<ValueId> {
        for &v in inputs {
            self.check_value(name, v)?;
        }
        let (shape, dtype) = self.infer(name, &op, inputs)?;
        self.claim(name)?;
        let id = ValueId(self.values.len());
        self.values.push(ValueInfo {
            shape,
            dtype,
            kind: ValueKind::Node(self.nodes.len()),
        });
        self.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs: inputs.to_vec(),
            output: id,
        });
        Ok(id)
    }

    // ------------------------------------------------------------ builders

    /// 2-D convolution of `x [N, C, H, W]` with `w [O, C / groups, KH, KW]`.
    pub fn conv2d(
        &mut self,
        name: &str,
        x: ValueId,
        w: ValueId,
        a: Conv2dAttrs,
    ) -> Result<ValueId> {
        self.add_node(name, Op::Conv2d(a), &[x, w])
    }
    /// `x [M, K] · w[N, K]ᵀ (+ bias [N])`.
    pub fn dense(
        &mut self,
        name: &str,
        x: ValueId,
        w: ValueId,
        bias: Option<ValueId>,
    ) -> Result<ValueId> {
        let mut ins = vec![x, w];
        ins.extend(bias);
        self.add_node(name, Op::Dense, &ins)
    }
    /// `a [M, K] · b [K, N]`.
    pub fn matmul(&mut self, name: &str, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.add_node(name, Op::MatMul, &[a, b])
    }
    /// Inference batch normalization of `x [N, C, ...]` with per-channel `gamma`, `beta`,
    /// `mean`, `var`.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &mut self,
        name: &str,
        x: ValueId,
        gamma: ValueId,
        beta: ValueId,
        mean: ValueId,
        var: ValueId,
        eps: f64,
    ) -> Result<ValueId> {
        self.add_node(name, Op::BatchNorm { eps }, &[x, gamma, beta, mean, var])
    }
    /// `a + b` (broadcasting).
    pub fn add(&mut self, name: &str, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.add_node(name, Op::Binary(BinaryOp::Add), &[a, b])
    }
    /// `a - b` (broadcasting).
    pub fn sub(&mut self, name: &str, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.add_node(name, Op::Binary(BinaryOp::Sub), &[a, b])
    }
    /// `a * b` (broadcasting).
    pub fn mul(&mut self, name: &str, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.add_node(name, Op::Binary(BinaryOp::Mul), &[a, b])
    }
    /// `a / b` (broadcasting).
    pub fn div(&mut self, name: &str, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.add_node(name, Op::Binary(BinaryOp::Div), &[a, b])
    }
    /// `max(x, 0)`.
    pub fn relu(&mut self, name: &str, x: ValueId) -> Result<ValueId> {
        self.add_node(name, Op::Unary(UnaryOp::Relu), &[x])
    }
    /// `min(max(x, min), max)`.
    pub fn clip(&mut self, name: &str, x: ValueId, min: f64, max: f64) -> Result<ValueId> {
        self.add_node(name, Op::Unary(UnaryOp::Clip { min, max }), &[x])
    }
    /// `min(max(x, 0), 6)`.
    pub fn relu6(&mut self, name: &str, x: ValueId) -> Result<ValueId> {
        self.clip(name, x, 0.0, 6.0)
    }
    /// Logistic sigmoid.
    pub fn sigmoid(&mut self, name: &str, x: ValueId) -> Result<ValueId> {
        self.add_node(name, Op::Unary(UnaryOp::Sigmoid), &[x])
    }
    /// Hyperbolic tangent.
    pub fn tanh(&mut self, name: &str, x: ValueId) -> Result<ValueId> {
        self.add_node(name, Op::Unary(UnaryOp::Tanh), &[x])
    }
    /// GELU, erf form.
    pub fn gelu(&mut self, name: &str, x: ValueId) -> Result<ValueId> {
        self.add_node(name, Op::Unary(UnaryOp::Gelu), &[x])
    }
    /// The error function.
    pub fn erf(&mut self, name: &str, x: ValueId) -> Result<ValueId> {
        self.add_node(name, Op::Unary(UnaryOp::Erf), &[x])
    }
    /// `e^x`.
    pub fn exp(&mut self, name: &str, x: ValueId) -> Result<ValueId> {
        self.add_node(name, Op::Unary(UnaryOp::Exp), &[x])
    }
    /// 2-D max pooling.
    pub fn max_pool2d(&mut self, name: &str, x: ValueId, a: Pool2dAttrs) -> Result<ValueId> {
        self.add_node(name, Op::MaxPool2d(a), &[x])
    }
    /// 2-D average pooling (padding not counted).
    pub fn avg_pool2d(&mut self, name: &str, x: ValueId, a: Pool2dAttrs) -> Result<ValueId> {
        self.add_node(name, Op::AvgPool2d(a), &[x])
    }
    /// Mean over H and W.
    pub fn global_avg_pool(&mut self, name: &str, x: ValueId) -> Result<ValueId> {
        self.add_node(name, Op::GlobalAvgPool, &[x])
    }
    /// Flatten all dimensions after the first.
    pub fn flatten(&mut self, name: &str, x: ValueId) -> Result<ValueId> {
        self.add_node(name, Op::Flatten, &[x])
    }
    /// Reshape (row-major).
    pub fn reshape(&mut self, name: &str, x: ValueId, shape: &[usize]) -> Result<ValueId> {
        self.add_node(
            name,
            Op::Reshape {
                shape: shape.to_vec(),
            },
            &[x],
        )
    }
    /// Permute dimensions.
    pub fn transpose(&mut self, name: &str, x: ValueId, perm: &[usize]) -> Result<ValueId> {
        self.add_node(
            name,
            Op::Transpose {
                perm: perm.to_vec(),
            },
            &[x],
        )
    }
    /// Concatenate along `axis`.
    pub fn concat(&mut self, name: &str, xs: &[ValueId], axis: usize) -> Result<ValueId> {
        self.add_node(name, Op::Concat { axis }, xs)
    }
    /// Softmax along `axis`.
    pub fn softmax(&mut self, name: &str, x: ValueId, axis: usize) -> Result<ValueId> {
        self.add_node(name, Op::Softmax { axis }, &[x])
    }
    /// Layer normalization over the last axis.
    pub fn layer_norm(
        &mut self,
        name: &str,
        x: ValueId,
        gamma: ValueId,
        beta: ValueId,
        eps: f64,
    ) -> Result<ValueId> {
        self.add_node(name, Op::LayerNorm { eps }, &[x, gamma, beta])
    }

    // ------------------------------------------------------------ inference

    fn infer(&self, name: &str, op: &Op, inputs: &[ValueId]) -> Result<(Vec<usize>, DType)> {
        let kind = op.kind_name();
        let arity_err = |want: &str| {
            graph_err(
                name,
                format!("{} takes {} but {} were given", kind, want, inputs.len()),
            )
        };
        let arity = |n: usize| -> Result<()> {
            if inputs.len() != n {
                Err(arity_err(&format!("{} inputs", n)))
            } else {
                Ok(())
            }
        };
        match op {
            Op::Dense => {
                if inputs.len() != 2 && inputs.len() != 3 {
                    return Err(arity_err("2 or 3 inputs (x, w, optional bias)"));
                }
            }
            Op::Concat { .. } => {
                if inputs.is_empty() {
                    return Err(arity_err("at least one input"));
                }
            }
            Op::Fused(f) => return self.infer_fused(name, f, inputs),
            Op::Conv2d(_) | Op::MatMul | Op::Binary(_) => arity(2)?,
            Op::BatchNorm { .. } => arity(5)?,
            Op::LayerNorm { .. } => arity(3)?,
            _ => arity(1)?,
        }
        let dt = self.dtype(inputs[0]);
        if !dt.is_float() {
            return Err(graph_err(
                name,
                format!(
                    "{} takes float tensors but its first input has dtype {}",
                    kind, dt
                ),
            ));
        }
        for (i, &v) in inputs.iter().enumerate() {
            if self.dtype(v) != dt {
                return Err(graph_err(
                    name,
                    format!(
                        "input {} ({}) has dtype {} but input 0 has {}; all inputs of {} must share one dtype",
                        i,
                        self.value_name(v),
                        self.dtype(v),
                        dt,
                        kind
                    ),
                ));
            }
        }
        let s: Vec<&[usize]> = inputs.iter().map(|&v| self.shape(v)).collect();
        let err = |m: String| Err(graph_err(name, m));
        let rank = |i: usize, r: usize, what: &str| -> Result<()> {
            if s[i].len() != r {
                return Err(graph_err(
                    name,
                    format!(
                        "{} expects {} of rank {} but {} has shape {}",
                        kind,
                        what,
                        r,
                        self.value_name(inputs[i]),
                        shape_str(s[i])
                    ),
                ));
            }
            Ok(())
        };
        let shape = match op {
            Op::Conv2d(a) => {
                rank(0, 4, "an NCHW input")?;
                match a.weight_layout {
                    WeightLayout::Oihw => rank(1, 4, "an OIHW weight")?,
                    WeightLayout::Ohwi16o => {
                        rank(1, 5, "an OHWI16o weight [O/16, KH, KW, C, 16]")?;
                        if s[1][4] != 16 || a.groups != 1 {
                            return err(format!(
                                "an OHWI16o weight must have 16 as its last size and one group, not {} and {} groups",
                                shape_str(s[1]),
                                a.groups
                            ));
                        }
                    }
                    WeightLayout::Winograd23 => {
                        rank(1, 4, "a Winograd F(2x2, 3x3) weight [16, O/16, C, 16]")?;
                        if s[1][0] != 16
                            || s[1][3] != 16
                            || a.groups != 1
                            || a.stride != [1, 1]
                            || a.dilation != [1, 1]
                        {
                            return err(format!(
                                "a Winograd F(2x2, 3x3) weight must have shape [16, O/16, C, 16] (not {}), one group (not {}), strides and dilations 1 (not {:?} and {:?})",
                                shape_str(s[1]),
                                a.groups,
                                a.stride,
                                a.dilation
                            ));
                        }
                    }
                }
                let (n, c, h, w) = (s[0][0], s[0][1], s[0][2], s[0][3]);
                let [o, ci, kh, kw] = a.weight_layout.oihw(s[1]);
                let g = a.groups;
                if g == 0 || a.stride.contains(&0) || a.dilation.contains(&0) {
                    return err(format!(
                        "groups ({}), strides {:?} and dilations {:?} must be at least 1",
                        g, a.stride, a.dilation
                    ));
                }
                if c % g != 0 || o % g != 0 {
                    return err(format!(
                        "groups {} must divide the input channels {} and the output channels {}",
                        g, c, o
                    ));
                }
                if ci * g != c {
                    return err(format!(
                        "input channels {} do not match the weight's {} (groups {}): the weight must have shape [O, {}, KH, KW]",
                        c, ci, g, c / g
                    ));
                }
                let oh = pooled(h, a.padding[0] + a.padding[2], a.dilation[0] * (kh.max(1) - 1) + 1, a.stride[0]);
                let ow = pooled(w, a.padding[1] + a.padding[3], a.dilation[1] * (kw.max(1) - 1) + 1, a.stride[1]);
                match (oh, ow) {
                    (Some(oh), Some(ow)) if kh > 0 && kw > 0 => vec![n, o, oh, ow],
                    _ => {
                        return err(format!(
                            "the dilated kernel {}x{} does not fit the padded input {}x{}",
                            a.dilation[0] * (kh.max(1) - 1) + 1,
                            a.dilation[1] * (kw.max(1) - 1) + 1,
                            h + a.padding[0] + a.padding[2],
                            w + a.padding[1] + a.padding[3]
                        ))
                    }
                }
            }
            Op::Dense => {
                rank(0, 2, "an input [M, K]")?;
                rank(1, 2, "a weight [N, K]")?;
                if s[0][1] != s[1][1] {
                    return err(format!(
                        "input features {} do not match the weight's {} (the weight is [N, K] with K = {})",
                        s[0][1], s[1][1], s[0][1]
                    ));
                }
                if inputs.len() == 3 && s[2] != [s[1][0]] {
                    return err(format!(
                        "the bias must have shape [{}] but has {}",
                        s[1][0],
                        shape_str(s[2])
                    ));
                }
                vec![s[0][0], s[1][0]]
            }
            Op::MatMul => {
                rank(0, 2, "a left operand [M, K]")?;
                rank(1, 2, "a right operand [K, N]")?;
                if s[0][1] != s[1][0] {
                    return err(format!(
                        "inner dimensions differ: {} · {} (the left's columns must equal the right's rows)",
                        shape_str(s[0]),
                        shape_str(s[1])
                    ));
                }
                vec![s[0][0], s[1][1]]
            }
            Op::BatchNorm { .. } => {
                if s[0].len() < 2 {
                    return err(format!(
                        "batch_norm expects an input [N, C, ...] of rank at least 2 but has {}",
                        shape_str(s[0])
                    ));
                }
                let c = s[0][1];
                for (i, nm) in ["gamma", "beta", "mean", "var"].iter().enumerate() {
                    if s[i + 1] != [c] {
                        return err(format!(
                            "{} ({}) must have shape [{}] (the input's channels) but has {}",
                            nm,
                            self.value_name(inputs[i + 1]),
                            c,
                            shape_str(s[i + 1])
                        ));
                    }
                }
                s[0].to_vec()
            }
            Op::Binary(_) => match broadcast_shape(s[0], s[1]) {
                Some(sh) => sh,
                None => {
                    return err(format!(
                        "shapes {} and {} do not broadcast (aligned from the right, each pair of dimensions must be equal or one of them 1)",
                        shape_str(s[0]),
                        shape_str(s[1])
                    ))
                }
            },
            Op::Unary(_) => s[0].to_vec(),
            Op::MaxPool2d(a) | Op::AvgPool2d(a) => {
                rank(0, 4, "an NCHW input")?;
                if a.kernel.contains(&0) || a.stride.contains(&0) {
                    return err(format!(
                        "kernel {:?} and stride {:?} must be at least 1",
                        a.kernel, a.stride
                    ));
                }
                if a.padding[0].max(a.padding[2]) >= a.kernel[0] || a.padding[1].max(a.padding[3]) >= a.kernel[1] {
                    return err(format!(
                        "padding {:?} must be smaller than the kernel {:?} (a window would see only padding)",
                        a.padding, a.kernel
                    ));
                }
                let oh = pooled(s[0][2], a.padding[0] + a.padding[2], a.kernel[0], a.stride[0]);
                let ow = pooled(s[0][3], a.padding[1] + a.padding[3], a.kernel[1], a.stride[1]);
                match (oh, ow) {
                    (Some(oh), Some(ow)) => vec![s[0][0], s[0][1], oh, ow],
                    _ => {
                        return err(format!(
                            "the window {:?} does not fit the padded input {}x{}",
                            a.kernel,
                            s[0][2] + a.padding[0] + a.padding[2],
                            s[0][3] + a.padding[1] + a.padding[3]
                        ))
                    }
                }
            }
            Op::GlobalAvgPool => {
                rank(0, 4, "an NCHW input")?;
                vec![s[0][0], s[0][1], 1, 1]
            }
            Op::Flatten => {
                if s[0].is_empty() {
                    return err("flatten needs an input of rank at least 1".into());
                }
                vec![s[0][0], s[0][1..].iter().product()]
            }
            Op::Reshape { shape } => {
                let (a, b): (usize, usize) = (s[0].iter().product(), shape.iter().product());
                if a != b {
                    return err(format!(
                        "cannot reshape {} ({} elements) to {} ({} elements)",
                        shape_str(s[0]),
                        a,
                        shape_str(shape),
                        b
                    ));
                }
                shape.clone()
            }
            Op::Transpose { perm } => {
                let mut seen = perm.clone();
                seen.sort_unstable();
                if seen != (0..s[0].len()).collect::<Vec<_>>() {
                    return err(format!(
                        "perm {:?} is not a permutation of 0..{} (the input's rank)",
                        perm,
                        s[0].len()
                    ));
                }
                perm.iter().map(|&p| s[0][p]).collect()
            }
            Op::Concat { axis } => {
                let r = s[0].len();
                if *axis >= r {
                    return err(format!("axis {} is out of range for rank {}", axis, r));
                }
                let mut out = s[0].to_vec();
                for (i, sh) in s.iter().enumerate().skip(1) {
                    let ok = sh.len() == r
                        && (0..r).all(|d| d == *axis || sh[d] == s[0][d]);
                    if !ok {
                        return err(format!(
                            "input {} has shape {} but input 0 has {}; all dimensions except axis {} must match",
                            i,
                            shape_str(sh),
                            shape_str(s[0]),
                            axis
                        ));
                    }
                    out[*axis] += sh[*axis];
                }
                out
            }
            Op::Softmax { axis } => {
                if *axis >= s[0].len() {
                    return err(format!(
                        "axis {} is out of range for shape {}",
                        axis,
                        shape_str(s[0])
                    ));
                }
                s[0].to_vec()
            }
            Op::Fused(_) => unreachable!("handled above"),
            Op::LayerNorm { .. } => {
                let d = match s[0].last() {
                    Some(d) => *d,
                    None => return err("layer_norm needs an input of rank at least 1".into()),
                };
                for (i, nm) in [(1, "gamma"), (2, "beta")] {
                    if s[i] != [d] {
                        return err(format!(
                            "{} must have shape [{}] (the input's last dimension) but has {}",
                            nm,
                            d,
                            shape_str(s[i])
                        ));
                    }
                }
                s[0].to_vec()
            }
        };
        Ok((shape, dt))
    }
}

impl Graph {
    /// Shape inference of a fused group: the anchor's, then every epilogue step must keep
    /// the shape (its other operands broadcast to it).
    fn infer_fused(
        &self,
        name: &str,
        f: &FusedOp,
        inputs: &[ValueId],
    ) -> Result<(Vec<usize>, DType)> {
        let err = |m: String| Err(graph_err(name, m));
        if matches!(*f.anchor, Op::Fused(_)) {
            return err("a fused group's anchor cannot itself be a fused group".into());
        }
        if f.anchor_inputs > inputs.len() {
            return err(format!(
                "the anchor takes {} inputs but the fused node has {}",
                f.anchor_inputs,
                inputs.len()
            ));
        }
        let (shape, dt) = self.infer(name, &f.anchor, &inputs[..f.anchor_inputs])?;
        let get = |i: usize| -> Result<ValueId> {
            inputs.get(i).copied().ok_or_else(|| {
                graph_err(
                    name,
                    format!(
                        "an epilogue step reads input {} but the fused node has {} inputs",
                        i,
                        inputs.len()
                    ),
                )
            })
        };
        for (k, step) in f.epilogue.iter().enumerate() {
            if let EpilogueStep::BinaryEarlier { at, .. } = step {
                if *at > k {
                    return err(format!(
                        "epilogue step {} reads the value after step {}, which comes later",
                        k, at
                    ));
                }
            }
            let others: Vec<usize> = match step {
                EpilogueStep::Unary(_) | EpilogueStep::BinaryEarlier { .. } => vec![],
                EpilogueStep::Binary { input, .. } => vec![*input],
                EpilogueStep::BatchNorm { inputs, .. } => inputs.to_vec(),
            };
            for i in others {
                let v = get(i)?;
                if self.dtype(v) != dt {
                    return err(format!(
                        "epilogue input {} ({}) has dtype {} but the group computes {}",
                        i,
                        self.value_name(v),
                        self.dtype(v),
                        dt
                    ));
                }
                let s = self.shape(v);
                let ok = match step {
                    EpilogueStep::BatchNorm { .. } => shape.len() >= 2 && s == [shape[1]],
                    _ => broadcast_shape(&shape, s).as_deref() == Some(shape.as_slice()),
                };
                if !ok {
                    return err(format!(
                        "epilogue input {} ({}) of shape {} does not broadcast to the group's shape {}",
                        i,
                        self.value_name(v),
                        shape_str(s),
                        shape_str(&shape)
                    ));
                }
            }
        }
        Ok((shape, dt))
    }
}

/// Output size of a sliding window: `(n + pad - window) / stride + 1`, `None` when the
/// window does not fit.
fn pooled(n: usize, pad: usize, window: usize, stride: usize) -> Option<usize> {
    (n + pad).checked_sub(window).map(|r| r / stride + 1)
}

/// The numpy broadcast of two shapes, `None` when they do not broadcast.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for (d, o) in out.iter_mut().enumerate() {
        let x = if d + a.len() >= r {
            a[d + a.len() - r]
        } else {
            1
        };
        let y = if d + b.len() >= r {
            b[d + b.len() - r]
        } else {
            1
        };
        *o = if x == y || y == 1 {
            x
        } else if x == 1 {
            y
        } else {
            return None;
        };
    }
    Some(out)
}
