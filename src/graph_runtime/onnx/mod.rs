//! ONNX import: a `.onnx` file (default operator set, opset 11 to 21) read into a
//! [`Graph`] with its initializers as parameters.
//!
//! ```no_run
//! use loopforge::graph_runtime::{self, onnx};
//! use loopforge::{NdArray, Target};
//! use loopforge::te::DType;
//! let (graph, params) = onnx::load("model.onnx").unwrap();
//! let model = graph_runtime::build(&graph, Target::cpu(), &params, 1).unwrap();
//! let mut ex = model.executor();
//! ex.set_input("input", NdArray::random(&[1, 3, 8, 8], DType::F32, 0)).unwrap();
//! ex.run().unwrap();
//! let y = ex.get_output(0).unwrap();
//! ```
//!
//! The protobuf messages are hand-written `prost` structs (`proto.rs`, the subset of
//! `onnx.proto` that is read), so building needs no `protoc`. Graph inputs keep their ONNX
//! names and need static shapes; the outputs are the ONNX graph outputs in order. f32
//! initializers and `Constant`s that feed data inputs become parameters named after the
//! initializer; int64 constants are read where an operator needs a static value (the
//! shape of `Reshape`, the bounds of `Clip`).
//!
//! Operators (ONNX semantics, attributes with the spec's defaults): `Conv` (2-D; `pads`,
//! `strides`, `dilations`, `group`; `auto_pad` `NOTSET` or `VALID`; the bias becomes an
//! add), `Gemm` (`alpha = beta = 1`, `transA` through a transpose, `transB = 1` as dense,
//! `transB = 0` as matmul), `MatMul` (2-D), `BatchNormalization` (inference), `Add`,
//! `Sub`, `Mul`, `Div` (broadcasting), `Relu`, `Clip` (bounds from constant inputs),
//! `Sigmoid`, `Tanh`, `Gelu` (`approximate = "none"`), `Erf`, `Exp`, `MaxPool`,
//! `AveragePool` (`count_include_pad = 0`, or no padding), `GlobalAveragePool`, `Flatten`, `Reshape`
//! (constant shape; `0` copies the input dimension, `-1` is inferred), `Transpose`,
//! `Concat`, `Softmax` (opset 13 semantics from opset 13; before, over the flattened
//! trailing axes), `LayerNormalization` (last axis), `Identity`, `Dropout` (inference:
//! identity) and `Constant`.
//!
//! Every failure is an [`Error`]: bytes that do not decode are [`Error::Model`], as is a
//! model with unsupported operators — the message lists every unsupported operator type
//! with the names of its nodes; an operator whose attributes or inputs cannot be mapped is
//! an [`Error::Graph`] naming the node.

mod proto;

use self::proto::{attr_type, data_type, AttributeProto, ModelProto, NodeProto, TensorProto};
use super::{Conv2dAttrs, Graph, Pool2dAttrs, ValueId};
use crate::error::{graph_err, Error, Result};
use crate::runtime::NdArray;
use crate::te::DType;
use prost::Message;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// The ONNX operator types the importer maps (default domain).
pub const SUPPORTED_OPS: &[&str] = &[
    "Conv",
    "Gemm",
    "MatMul",
    "BatchNormalization",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Relu",
    "Clip",
    "Sigmoid",
    "Tanh",
    "Gelu",
    "Erf",
    "Exp",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Flatten",
    "Reshape",
    "Transpose",
    "Concat",
    "Softmax",
    "LayerNormalization",
    "Identity",
    "Dropout",
    "Constant",
];

/// The lowest and highest default-domain opset versions accepted.
pub const OPSET_RANGE: (i64, i64) = (11, 21);

/// Read the `.onnx` file at `path` into a [`Graph`] and its parameters (see the module
/// documentation for what is supported). The parameters map goes to
/// [`build`](super::build) as is.
pub fn load(path: impl AsRef<Path>) -> Result<(Graph, HashMap<String, NdArray>)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Model(format!("cannot read {}: {}", path.display(), e)))?;
    load_bytes(&bytes)
}

/// [`load`] from the bytes of a serialized `ModelProto`.
pub fn load_bytes(bytes: &[u8]) -> Result<(Graph, HashMap<String, NdArray>)> {
    let model = ModelProto::decode(bytes).map_err(|e| {
        Error::Model(format!(
            "the {} bytes are not a valid ONNX ModelProto (truncated or not an ONNX file?): {}",
            bytes.len(),
            e
        ))
    })?;
    Importer::new(&model)?.run()
}

// ------------------------------------------------------------------ constants

/// A constant's elements.
#[derive(Clone, Debug)]
enum ConstData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// An initializer or `Constant` output.
#[derive(Clone, Debug)]
struct Const {
    dims: Vec<usize>,
    data: ConstData,
}

impl Const {
    fn numel(&self) -> usize {
        self.dims.iter().product()
    }
    /// The elements as integers (int64 and int32 tensors; `None` for floats).
    fn ints(&self) -> Option<Vec<i64>> {
        match &self.data {
            ConstData::I64(v) => Some(v.clone()),
            ConstData::F32(_) => None,
        }
    }
    /// The elements as f64.
    fn floats(&self) -> Vec<f64> {
        match &self.data {
            ConstData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            ConstData::I64(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }
}

fn dims_of(t: &TensorProto, what: &str) -> Result<Vec<usize>> {
    let mut dims = Vec::with_capacity(t.dims.len());
    let mut n: usize = 1;
    for &d in &t.dims {
        if d < 0 {
            return Err(Error::Model(format!(
                "tensor {}: negative dimension {} in {:?}",
                what, d, t.dims
            )));
        }
        n = n.checked_mul(d as usize).ok_or_else(|| {
            Error::Model(format!("tensor {}: dimensions {:?} overflow", what, t.dims))
        })?;
        dims.push(d as usize);
    }
    Ok(dims)
}

fn tensor_to_const(t: &TensorProto, what: &str) -> Result<Const> {
    if t.data_location == 1 {
        return Err(Error::Model(format!(
            "tensor {}: external data is not supported (save the model with the weights inside the file)",
            what
        )));
    }
    let dims = dims_of(t, what)?;
    let n: usize = dims.iter().product();
    let count_err = |got: usize| {
        Error::Model(format!(
            "tensor {}: shape {:?} needs {} elements but the file holds {}",
            what, dims, n, got
        ))
    };
    // `raw_data` (little-endian, `W` bytes an element) when present, else the typed field.
    fn decode<const W: usize, T>(
        raw: &[u8],
        n: usize,
        typed: impl FnOnce() -> Vec<T>,
        f: fn([u8; W]) -> T,
    ) -> std::result::Result<Vec<T>, usize> {
        if raw.is_empty() {
            return Ok(typed());
        }
        if raw.len() != n * W {
            return Err(raw.len() / W);
        }
        Ok(raw
            .chunks_exact(W)
            .map(|c| f(c.try_into().expect("chunks of W bytes")))
            .collect())
    }
    let raw = &t.raw_data;
    let data = match t.data_type {
        data_type::FLOAT => ConstData::F32(
            decode(raw, n, || t.float_data.clone(), f32::from_le_bytes).map_err(count_err)?,
        ),
        data_type::DOUBLE => ConstData::F32(
            decode(
                raw,
                n,
                || t.double_data.iter().map(|&x| x as f32).collect(),
                |c| f64::from_le_bytes(c) as f32,
            )
            .map_err(count_err)?,
        ),
        data_type::INT64 => ConstData::I64(
            decode(raw, n, || t.int64_data.clone(), i64::from_le_bytes).map_err(count_err)?,
        ),
        data_type::INT32 => ConstData::I64(
            decode(
                raw,
                n,
                || t.int32_data.iter().map(|&x| x as i64).collect(),
                |c| i32::from_le_bytes(c) as i64,
            )
            .map_err(count_err)?,
        ),
        other => {
            return Err(Error::Model(format!(
                "tensor {}: element type {} is not supported (float, double, int32 and int64 are)",
                what, other
            )))
        }
    };
    let got = match &data {
        ConstData::F32(v) => v.len(),
        ConstData::I64(v) => v.len(),
    };
    if got != n {
        return Err(count_err(got));
    }
    Ok(Const { dims, data })
}

// ------------------------------------------------------------------ attributes

/// A node's attributes by name, with typed getters that apply the spec's defaults.
struct Attrs<'a> {
    node: &'a str,
    op: &'a str,
    map: HashMap<&'a str, &'a AttributeProto>,
}

impl<'a> Attrs<'a> {
    fn new(node: &'a str, n: &'a NodeProto) -> Attrs<'a> {
        Attrs {
            node,
            op: &n.op_type,
            map: n.attribute.iter().map(|a| (a.name.as_str(), a)).collect(),
        }
    }
    fn err(&self, msg: String) -> Error {
        graph_err(self.node, format!("{}: {}", self.op, msg))
    }
    fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }
    fn int(&self, name: &str, default: i64) -> Result<i64> {
        match self.map.get(name) {
            None => Ok(default),
            Some(a) if a.r#type == attr_type::INT || a.r#type == 0 => Ok(a.i),
            Some(a) => Err(self.err(format!(
                "attribute {} should be an int (type {}), not type {}",
                name,
                attr_type::INT,
                a.r#type
            ))),
        }
    }
    fn float(&self, name: &str, default: f64) -> Result<f64> {
        match self.map.get(name) {
            None => Ok(default),
            Some(a) if a.r#type == attr_type::FLOAT || a.r#type == 0 => Ok(a.f as f64),
            Some(a) => Err(self.err(format!(
                "attribute {} should be a float, not type {}",
                name, a.r#type
            ))),
        }
    }
    fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.map.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == attr_type::INTS || a.r#type == 0 => Ok(Some(a.ints.clone())),
            Some(a) => Err(self.err(format!(
                "attribute {} should be a list of ints, not type {}",
                name, a.r#type
            ))),
        }
    }
    fn string(&self, name: &str, default: &str) -> Result<String> {
        match self.map.get(name) {
            None => Ok(default.to_string()),
            Some(a) if a.r#type == attr_type::STRING || a.r#type == 0 => {
                Ok(String::from_utf8_lossy(&a.s).into_owned())
            }
            Some(a) => Err(self.err(format!(
                "attribute {} should be a string, not type {}",
                name, a.r#type
            ))),
        }
    }
}

// ------------------------------------------------------------------ importer

/// What an ONNX value name refers to.
#[derive(Clone, Debug)]
enum Val {
    /// A value of the graph being built.
    Value(ValueId),
    /// A constant (initializer or `Constant`), turned into a parameter on first data use.
    Const(String),
    /// A graph input of a non-float element type (usable by nothing).
    NonFloat(i32),
}

struct Importer<'m> {
    model: &'m ModelProto,
    opset: i64,
    g: Graph,
    params: HashMap<String, NdArray>,
    vals: HashMap<String, Val>,
    consts: HashMap<String, Const>,
    /// Parameters already made from a constant, by (constant name, shape).
    const_params: HashMap<(String, Vec<usize>), ValueId>,
    used_names: HashSet<String>,
    /// Every value name some node reads or the graph outputs.
    consumed: HashSet<String>,
}

fn sanitize(name: &str) -> String {
    if name.is_empty() {
        "_".to_string()
    } else {
        name.to_string()
    }
}

impl<'m> Importer<'m> {
    fn new(model: &'m ModelProto) -> Result<Importer<'m>> {
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| Error::Model("the model has no graph".to_string()))?;
        let opset = model
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .ok_or_else(|| {
                Error::Model(
                    "the model imports no default-domain operator set (opset_import is empty or lists only other domains)"
                        .to_string(),
                )
            })?;
        if opset < OPSET_RANGE.0 || opset > OPSET_RANGE.1 {
            return Err(Error::Model(format!(
                "opset {} is not supported: the importer reads opsets {} to {} (convert the model with onnx.version_converter)",
                opset, OPSET_RANGE.0, OPSET_RANGE.1
            )));
        }
        let mut consumed: HashSet<String> = graph
            .node
            .iter()
            .flat_map(|n| n.input.iter().cloned())
            .collect();
        consumed.extend(graph.output.iter().map(|o| o.name.clone()));
        Ok(Importer {
            model,
            opset,
            g: Graph::new(),
            params: HashMap::new(),
            vals: HashMap::new(),
            consts: HashMap::new(),
            const_params: HashMap::new(),
            used_names: HashSet::new(),
            consumed,
        })
    }

    /// A name not yet used by an input, parameter or node.
    fn fresh(&mut self, base: &str) -> String {
        let base = sanitize(base);
        let mut name = base.clone();
        let mut i = 1;
        while self.used_names.contains(&name) {
            name = format!("{}_{}", base, i);
            i += 1;
        }
        self.used_names.insert(name.clone());
        name
    }

    fn run(mut self) -> Result<(Graph, HashMap<String, NdArray>)> {
        let graph = self.model.graph.as_ref().unwrap();

        // Every unsupported operator, reported at once.
        let mut unsupported: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (i, n) in graph.node.iter().enumerate() {
            let default_domain = n.domain.is_empty() || n.domain == "ai.onnx";
            if !default_domain || !SUPPORTED_OPS.contains(&n.op_type.as_str()) {
                let key = if default_domain {
                    n.op_type.clone()
                } else {
                    format!("{}::{}", n.domain, n.op_type)
                };
                unsupported.entry(key).or_default().push(node_label(n, i));
            }
        }
        if !unsupported.is_empty() {
            let list: Vec<String> = unsupported
                .iter()
                .map(|(op, nodes)| format!("{} (nodes: {})", op, nodes.join(", ")))
                .collect();
            return Err(Error::Model(format!(
                "{} unsupported operator type(s): {}; supported: {}",
                unsupported.len(),
                list.join("; "),
                SUPPORTED_OPS.join(", ")
            )));
        }

        // Constants.
        for t in &graph.initializer {
            let c = tensor_to_const(t, &t.name)?;
            self.consts.insert(t.name.clone(), c);
            self.vals.insert(t.name.clone(), Val::Const(t.name.clone()));
        }

        // Graph inputs (those that are not initializers), with their ONNX names.
        for vi in &graph.input {
            if self.consts.contains_key(&vi.name) {
                continue;
            }
            let tt = vi
                .r#type
                .as_ref()
                .and_then(|t| t.tensor_type.as_ref())
                .ok_or_else(|| graph_err(&vi.name, "graph input is not a tensor"))?;
            if tt.elem_type != data_type::FLOAT {
                // Only an error where a node reads it as data.
                self.vals
                    .insert(vi.name.clone(), Val::NonFloat(tt.elem_type));
                continue;
            }
            let shape = tt
                .shape
                .as_ref()
                .ok_or_else(|| graph_err(&vi.name, "graph input has no shape"))?;
            let mut dims = Vec::new();
            for d in &shape.dim {
                match (d.dim_value, &d.dim_param) {
                    (Some(v), _) if v > 0 => dims.push(v as usize),
                    (_, Some(p)) if !p.is_empty() => {
                        return Err(graph_err(
                            &vi.name,
                            format!(
                                "dimension {:?} is symbolic; the graph runtime needs static shapes (fix the input shapes, e.g. with onnx.tools.update_model_dims)",
                                p
                            ),
                        ))
                    }
                    _ => {
                        return Err(graph_err(
                            &vi.name,
                            format!("dimension {:?} is not a positive static size", d.dim_value),
                        ))
                    }
                }
            }
            if vi.name.is_empty() || self.used_names.contains(&vi.name) {
                return Err(graph_err(
                    &vi.name,
                    "graph input names must be non-empty and unique",
                ));
            }
            self.used_names.insert(vi.name.clone());
            let id = self.g.input(&vi.name, &dims, DType::F32)?;
            self.vals.insert(vi.name.clone(), Val::Value(id));
        }
        for (i, n) in graph.node.iter().enumerate() {
            let label = node_label(n, i);
            self.node(n, &label)?;
        }

        for o in &graph.output {
            let id = match self.vals.get(&o.name) {
                Some(Val::Value(id)) => *id,
                Some(Val::Const(c)) => {
                    let c = c.clone();
                    self.const_value(&c, &o.name, None)?
                }
                Some(Val::NonFloat(_)) | None => {
                    return Err(graph_err(
                        &o.name,
                        "graph output is not produced by any node, input or initializer",
                    ))
                }
            };
            self.g.output(id)?;
        }
        Ok((self.g, self.params))
    }

    /// The parameter holding constant `cname` (reshaped to `shape` when given; same
    /// number of elements), created on first use.
    fn const_value(&mut self, cname: &str, node: &str, shape: Option<&[usize]>) -> Result<ValueId> {
        let c = self.consts[cname].clone();
        let shape = shape.map(|s| s.to_vec()).unwrap_or_else(|| c.dims.clone());
        if shape.iter().product::<usize>() != c.numel() {
            return Err(graph_err(
                node,
                format!(
                    "constant {} of shape {:?} cannot be viewed as {:?}",
                    cname, c.dims, shape
                ),
            ));
        }
        let key = (cname.to_string(), shape.clone());
        if let Some(&id) = self.const_params.get(&key) {
            return Ok(id);
        }
        let data = match &c.data {
            ConstData::F32(v) => v.clone(),
            ConstData::I64(_) => {
                return Err(graph_err(
                    node,
                    format!(
                        "integer constant {} is used as data; only float32 tensors flow through the graph",
                        cname
                    ),
                ))
            }
        };
        let pname = self.fresh(cname);
        let id = self.g.param(&pname, &shape)?;
        self.params.insert(pname, NdArray::from_vec(&shape, data)?);
        self.const_params.insert(key, id);
        Ok(id)
    }

    /// The graph value for ONNX value `name` (constants become parameters).
    fn value(&mut self, name: &str, node: &str) -> Result<ValueId> {
        match self.vals.get(name) {
            Some(Val::Value(id)) => Ok(*id),
            Some(Val::Const(c)) => {
                let c = c.clone();
                self.const_value(&c, node, None)
            }
            Some(Val::NonFloat(t)) => Err(graph_err(
                node,
                format!(
                    "input {:?} has element type {}; only float32 values flow through the graph",
                    name, t
                ),
            )),
            None => Err(graph_err(
                node,
                format!(
                    "input {:?} is not a graph input, initializer or earlier node output (nodes must be in topological order)",
                    name
                ),
            )),
        }
    }

    /// The constant behind ONNX value `name`, or an error saying it must be one.
    fn constant(&self, name: &str, node: &str, what: &str) -> Result<&Const> {
        match self.vals.get(name) {
            Some(Val::Const(c)) => Ok(&self.consts[c]),
            _ => Err(graph_err(
                node,
                format!(
                    "{} ({:?}) must be a constant (an initializer or a Constant node); computed values are not supported",
                    what, name
                ),
            )),
        }
    }

    fn shape(&self, v: ValueId) -> Vec<usize> {
        self.g.shape(v).to_vec()
    }

    fn node(&mut self, n: &NodeProto, label: &str) -> Result<()> {
        let a = Attrs::new(label, n);
        let input = |i: usize| -> Option<&str> {
            n.input.get(i).map(|s| s.as_str()).filter(|s| !s.is_empty())
        };
        let need = |i: usize| -> Result<&str> {
            input(i)
                .ok_or_else(|| graph_err(label, format!("{}: input {} is missing", n.op_type, i)))
        };
        let out_name = n
            .output
            .first()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| graph_err(label, format!("{} has no output", n.op_type)))?
            .clone();
        // Extra outputs (BatchNormalization statistics, Dropout mask, MaxPool indices)
        // are only an error when something reads them.
        for extra in n.output.iter().skip(1) {
            if !extra.is_empty() && self.consumed.contains(extra) {
                return Err(graph_err(
                    label,
                    format!(
                        "{}: output {} ({:?}) is used but only the first output is supported (inference)",
                        n.op_type,
                        n.output.iter().position(|o| o == extra).unwrap(),
                        extra
                    ),
                ));
            }
        }
        let nm = |s: &mut Self| s.fresh(&n.name.clone().if_empty(&out_name));

        let y: Val = match n.op_type.as_str() {
            "Identity" | "Dropout" => {
                let x = need(0)?;
                if n.op_type == "Dropout" {
                    if let Some(t) = input(2) {
                        let c = self.constant(t, label, "Dropout's training_mode")?;
                        if c.floats().iter().any(|&v| v != 0.0) {
                            return Err(graph_err(
                                label,
                                "Dropout with training_mode = true is not supported (inference only)",
                            ));
                        }
                    }
                }
                self.vals
                    .get(x)
                    .cloned()
                    .ok_or_else(|| graph_err(label, format!("input {:?} is undefined", x)))?
            }
            "Constant" => {
                let c = if let Some(at) = a.map.get("value") {
                    let t = at.t.as_ref().ok_or_else(|| {
                        graph_err(label, "Constant: attribute value holds no tensor")
                    })?;
                    tensor_to_const(t, &out_name)?
                } else if a.has("value_float") {
                    Const {
                        dims: vec![],
                        data: ConstData::F32(vec![a.float("value_float", 0.0)? as f32]),
                    }
                } else if let Some(at) = a.map.get("value_floats") {
                    Const {
                        dims: vec![at.floats.len()],
                        data: ConstData::F32(at.floats.clone()),
                    }
                } else if a.has("value_int") {
                    Const {
                        dims: vec![],
                        data: ConstData::I64(vec![a.int("value_int", 0)?]),
                    }
                } else if let Some(v) = a.ints("value_ints")? {
                    Const {
                        dims: vec![v.len()],
                        data: ConstData::I64(v),
                    }
                } else {
                    return Err(graph_err(
                        label,
                        "Constant: only the value, value_float(s) and value_int(s) attributes are supported",
                    ));
                };
                let key = out_name.clone();
                self.consts.insert(key.clone(), c);
                Val::Const(key)
            }
            "Conv" => {
                let x = self.value(need(0)?, label)?;
                let w = self.value(need(1)?, label)?;
                let xs = self.shape(x);
                let ws = self.shape(w);
                if xs.len() != 4 || ws.len() != 4 {
                    return Err(graph_err(
                        label,
                        format!(
                            "Conv: only 2-D convolutions (4-D input and weight) are supported, got input {:?} and weight {:?}",
                            xs, ws
                        ),
                    ));
                }
                let auto_pad = a.string("auto_pad", "NOTSET")?;
                let strides = pair(&a, "strides", 1)?;
                let dilations = pair(&a, "dilations", 1)?;
                let pads = match auto_pad.as_str() {
                    "NOTSET" => pads4(&a)?,
                    "VALID" => [0; 4],
                    other => {
                        return Err(graph_err(
                            label,
                            format!(
                                "Conv: auto_pad {} is not supported (NOTSET with explicit pads, or VALID)",
                                other
                            ),
                        ))
                    }
                };
                if let Some(k) = a.ints("kernel_shape")? {
                    if k.len() != 2 || k[0] as usize != ws[2] || k[1] as usize != ws[3] {
                        return Err(graph_err(
                            label,
                            format!(
                                "Conv: kernel_shape {:?} does not match the weight's {:?}",
                                k, ws
                            ),
                        ));
                    }
                }
                let group = a.int("group", 1)?;
                if group < 1 {
                    return Err(graph_err(label, format!("Conv: group {} < 1", group)));
                }
                let attrs = Conv2dAttrs {
                    stride: strides,
                    padding: pads,
                    dilation: dilations,
                    groups: group as usize,
                    ..Conv2dAttrs::default()
                };
                let name = nm(self);
                let mut y = self.g.conv2d(&name, x, w, attrs)?;
                if let Some(b) = input(2) {
                    let o = ws[0];
                    let b = self.channel_vector(b, label, o, &[o, 1, 1])?;
                    let name = self.fresh(&format!("{}_bias", name));
                    y = self.g.add(&name, y, b)?;
                }
                Val::Value(y)
            }
            "Gemm" => {
                let alpha = a.float("alpha", 1.0)?;
                let beta = a.float("beta", 1.0)?;
                let trans_a = a.int("transA", 0)?;
                let trans_b = a.int("transB", 0)?;
                if alpha != 1.0 || (beta != 1.0 && input(2).is_some()) {
                    return Err(graph_err(
                        label,
                        format!(
                            "Gemm: alpha = {} and beta = {} are not supported (only alpha = beta = 1)",
                            alpha, beta
                        ),
                    ));
                }
                let mut xa = self.value(need(0)?, label)?;
                let name = nm(self);
                if trans_a != 0 {
                    let tn = self.fresh(&format!("{}_transA", name));
                    xa = self.g.transpose(&tn, xa, &[1, 0])?;
                }
                let b = self.value(need(1)?, label)?;
                let bs = self.shape(b);
                if bs.len() != 2 {
                    return Err(graph_err(
                        label,
                        format!("Gemm: B must be 2-D, got {:?}", bs),
                    ));
                }
                let n_out = if trans_b != 0 { bs[0] } else { bs[1] };
                // A bias that is a constant row vector folds into dense.
                let c = input(2);
                let const_row = c.and_then(|c| match self.vals.get(c) {
                    Some(Val::Const(k)) => {
                        let k = &self.consts[k];
                        (k.numel() == n_out && k.dims.last().copied().unwrap_or(1) == n_out
                            || k.numel() == n_out && n_out == 1)
                            .then(|| c.to_string())
                    }
                    _ => None,
                });
                let y = if trans_b != 0 {
                    let bias = match &const_row {
                        Some(cn) => {
                            let cname = self.const_name(cn);
                            Some(self.const_value(&cname, label, Some(&[n_out]))?)
                        }
                        None => None,
                    };
                    let mut y = self.g.dense(&name, xa, b, bias)?;
                    if let (Some(cv), None) = (c, &const_row) {
                        let cv = self.value(cv, label)?;
                        let an = self.fresh(&format!("{}_bias", name));
                        y = self.g.add(&an, y, cv)?;
                    }
                    y
                } else {
                    let mut y = self.g.matmul(&name, xa, b)?;
                    if let Some(cv) = c {
                        let cv = self.value(cv, label)?;
                        let an = self.fresh(&format!("{}_bias", name));
                        y = self.g.add(&an, y, cv)?;
                    }
                    y
                };
                Val::Value(y)
            }
            "MatMul" => {
                let x = self.value(need(0)?, label)?;
                let w = self.value(need(1)?, label)?;
                if self.g.shape(x).len() != 2 || self.g.shape(w).len() != 2 {
                    return Err(graph_err(
                        label,
                        format!(
                            "MatMul: only 2-D operands are supported, got {:?} and {:?}",
                            self.g.shape(x),
                            self.g.shape(w)
                        ),
                    ));
                }
                let name = nm(self);
                Val::Value(self.g.matmul(&name, x, w)?)
            }
            "BatchNormalization" => {
                if a.int("training_mode", 0)? != 0 {
                    return Err(graph_err(
                        label,
                        "BatchNormalization: training_mode = 1 is not supported (inference only)",
                    ));
                }
                let eps = a.float("epsilon", 1e-5)?;
                let x = self.value(need(0)?, label)?;
                let c = *self.g.shape(x).get(1).ok_or_else(|| {
                    graph_err(label, "BatchNormalization: the input needs a channel axis")
                })?;
                let mut v = Vec::new();
                for i in 1..5 {
                    let s = need(i)?;
                    v.push(self.channel_vector(s, label, c, &[c])?);
                }
                let name = nm(self);
                Val::Value(self.g.batch_norm(&name, x, v[0], v[1], v[2], v[3], eps)?)
            }
            "Add" | "Sub" | "Mul" | "Div" => {
                let x = self.value(need(0)?, label)?;
                let z = self.value(need(1)?, label)?;
                let name = nm(self);
                Val::Value(match n.op_type.as_str() {
                    "Add" => self.g.add(&name, x, z)?,
                    "Sub" => self.g.sub(&name, x, z)?,
                    "Mul" => self.g.mul(&name, x, z)?,
                    _ => self.g.div(&name, x, z)?,
                })
            }
            "Relu" | "Sigmoid" | "Tanh" | "Erf" | "Exp" => {
                let x = self.value(need(0)?, label)?;
                let name = nm(self);
                Val::Value(match n.op_type.as_str() {
                    "Relu" => self.g.relu(&name, x)?,
                    "Sigmoid" => self.g.sigmoid(&name, x)?,
                    "Erf" => self.g.erf(&name, x)?,
                    "Exp" => self.g.exp(&name, x)?,
                    "Tanh" => self.g.tanh(&name, x)?,
                    other => unreachable!("{} is not one of the arm's operators", other),
                })
            }
            "Gelu" => {
                let approx = a.string("approximate", "none")?;
                if approx != "none" {
                    return Err(graph_err(
                        label,
                        format!(
                            "Gelu: approximate = {:?} is not supported (only \"none\", the erf form)",
                            approx
                        ),
                    ));
                }
                let x = self.value(need(0)?, label)?;
                let name = nm(self);
                Val::Value(self.g.gelu(&name, x)?)
            }
            "Clip" => {
                let x = self.value(need(0)?, label)?;
                let bound = |i: usize, what: &str, default: f64| -> Result<f64> {
                    match input(i) {
                        None => Ok(default),
                        Some(s) => {
                            let c = self.constant(s, label, what)?;
                            if c.numel() != 1 {
                                return Err(graph_err(
                                    label,
                                    format!(
                                        "Clip: {} must be a scalar, got shape {:?}",
                                        what, c.dims
                                    ),
                                ));
                            }
                            Ok(c.floats()[0])
                        }
                    }
                };
                let lo = bound(1, "min", f32::MIN as f64)?;
                let hi = bound(2, "max", f32::MAX as f64)?;
                let name = nm(self);
                Val::Value(self.g.clip(&name, x, lo, hi)?)
            }
            "MaxPool" | "AveragePool" => {
                let x = self.value(need(0)?, label)?;
                if self.g.shape(x).len() != 4 {
                    return Err(graph_err(
                        label,
                        format!(
                            "{}: only 2-D pooling (4-D input) is supported, got {:?}",
                            n.op_type,
                            self.g.shape(x)
                        ),
                    ));
                }
                let k = a.ints("kernel_shape")?.ok_or_else(|| {
                    graph_err(label, format!("{}: kernel_shape is required", n.op_type))
                })?;
                if k.len() != 2 || k.iter().any(|&v| v < 1) {
                    return Err(graph_err(
                        label,
                        format!("{}: kernel_shape {:?} is not 2-D", n.op_type, k),
                    ));
                }
                if a.int("ceil_mode", 0)? != 0 {
                    return Err(graph_err(
                        label,
                        format!("{}: ceil_mode = 1 is not supported", n.op_type),
                    ));
                }
                if pair(&a, "dilations", 1)? != [1, 1] {
                    return Err(graph_err(
                        label,
                        format!("{}: dilations other than 1 are not supported", n.op_type),
                    ));
                }
                if a.int("storage_order", 0)? != 0 {
                    return Err(graph_err(
                        label,
                        "MaxPool: storage_order = 1 is not supported",
                    ));
                }
                let auto_pad = a.string("auto_pad", "NOTSET")?;
                let padding = match auto_pad.as_str() {
                    "NOTSET" => pads4(&a)?,
                    "VALID" => [0; 4],
                    other => {
                        return Err(graph_err(
                            label,
                            format!(
                                "{}: auto_pad {} is not supported (NOTSET with explicit pads, or VALID)",
                                n.op_type, other
                            ),
                        ))
                    }
                };
                let attrs = Pool2dAttrs {
                    kernel: [k[0] as usize, k[1] as usize],
                    stride: pair(&a, "strides", 1)?,
                    padding,
                };
                let name = nm(self);
                Val::Value(if n.op_type == "MaxPool" {
                    self.g.max_pool2d(&name, x, attrs)?
                } else {
                    if a.int("count_include_pad", 0)? != 0 && padding != [0; 4] {
                        return Err(graph_err(
                            label,
                            "AveragePool: count_include_pad = 1 with padding is not supported (only count_include_pad = 0)",
                        ));
                    }
                    self.g.avg_pool2d(&name, x, attrs)?
                })
            }
            "GlobalAveragePool" => {
                let x = self.value(need(0)?, label)?;
                let name = nm(self);
                Val::Value(self.g.global_avg_pool(&name, x)?)
            }
            "Flatten" => {
                let x = self.value(need(0)?, label)?;
                let s = self.shape(x);
                let axis = norm_axis(a.int("axis", 1)?, s.len() + 1, label, "Flatten")?;
                let name = nm(self);
                Val::Value(if axis == 1 {
                    self.g.flatten(&name, x)?
                } else {
                    let outer: usize = s[..axis].iter().product();
                    let inner: usize = s[axis..].iter().product();
                    self.g.reshape(&name, x, &[outer, inner])?
                })
            }
            "Reshape" => {
                let x = self.value(need(0)?, label)?;
                let spec = self
                    .constant(need(1)?, label, "Reshape's shape")?
                    .ints()
                    .ok_or_else(|| {
                        graph_err(label, "Reshape: the shape must be an int64 tensor")
                    })?;
                let allowzero = a.int("allowzero", 0)? != 0;
                let s = self.shape(x);
                let shape = reshape_target(&s, &spec, allowzero)
                    .map_err(|m| graph_err(label, format!("Reshape: {}", m)))?;
                let name = nm(self);
                Val::Value(self.g.reshape(&name, x, &shape)?)
            }
            "Transpose" => {
                let x = self.value(need(0)?, label)?;
                let r = self.g.shape(x).len();
                let perm: Vec<usize> = match a.ints("perm")? {
                    Some(p) => p
                        .iter()
                        .map(|&v| norm_axis(v, r, label, "Transpose"))
                        .collect::<Result<_>>()?,
                    None => (0..r).rev().collect(),
                };
                let name = nm(self);
                Val::Value(self.g.transpose(&name, x, &perm)?)
            }
            "Concat" => {
                let mut xs = Vec::new();
                for s in n.input.iter().filter(|s| !s.is_empty()) {
                    xs.push(self.value(s, label)?);
                }
                let r = xs
                    .first()
                    .map(|&v| self.g.shape(v).len())
                    .ok_or_else(|| graph_err(label, "Concat needs at least one input"))?;
                if !a.has("axis") {
                    return Err(graph_err(label, "Concat: the axis attribute is required"));
                }
                let axis = norm_axis(a.int("axis", 0)?, r, label, "Concat")?;
                let name = nm(self);
                Val::Value(self.g.concat(&name, &xs, axis)?)
            }
            "Softmax" => {
                let x = self.value(need(0)?, label)?;
                let s = self.shape(x);
                let default = if self.opset >= 13 { -1 } else { 1 };
                let axis = norm_axis(a.int("axis", default)?, s.len(), label, "Softmax")?;
                let name = nm(self);
                Val::Value(if self.opset >= 13 || axis + 1 == s.len() {
                    self.g.softmax(&name, x, axis)?
                } else {
                    // Opset < 13: softmax over the input coerced to 2-D at `axis`.
                    let outer: usize = s[..axis].iter().product();
                    let inner: usize = s[axis..].iter().product();
                    let r1 = self.fresh(&format!("{}_2d", name));
                    let v = self.g.reshape(&r1, x, &[outer, inner])?;
                    let sm = self.fresh(&format!("{}_softmax", name));
                    let v = self.g.softmax(&sm, v, 1)?;
                    self.g.reshape(&name, v, &s)?
                })
            }
            "LayerNormalization" => {
                let x = self.value(need(0)?, label)?;
                let s = self.shape(x);
                let axis = norm_axis(a.int("axis", -1)?, s.len(), label, "LayerNormalization")?;
                if axis + 1 != s.len() {
                    return Err(graph_err(
                        label,
                        format!(
                            "LayerNormalization: only normalization over the last axis is supported (axis = -1), got axis {} of a rank-{} input",
                            axis,
                            s.len()
                        ),
                    ));
                }
                let eps = a.float("epsilon", 1e-5)?;
                let d = s[axis];
                let gamma = self.channel_vector(need(1)?, label, d, &[d])?;
                let beta = match input(2) {
                    Some(b) => self.channel_vector(b, label, d, &[d])?,
                    None => {
                        let pn = self.fresh(&format!("{}_zero_bias", out_name));
                        let id = self.g.param(&pn, &[d])?;
                        self.params.insert(pn, NdArray::zeros(&[d], DType::F32));
                        id
                    }
                };
                let name = nm(self);
                Val::Value(self.g.layer_norm(&name, x, gamma, beta, eps)?)
            }
            other => {
                return Err(graph_err(
                    label,
                    format!("operator {} is not supported", other),
                ))
            }
        };
        self.vals.insert(out_name, y);
        Ok(())
    }

    /// The name of the constant behind ONNX value `name` (which is known to be one).
    fn const_name(&self, name: &str) -> String {
        match &self.vals[name] {
            Val::Const(c) => c.clone(),
            _ => unreachable!("const_name of a non-constant"),
        }
    }

    /// A per-channel vector of `c` elements viewed as `shape`: a constant with `c`
    /// elements is reshaped, a computed value must already have that shape.
    fn channel_vector(
        &mut self,
        name: &str,
        node: &str,
        c: usize,
        shape: &[usize],
    ) -> Result<ValueId> {
        match self.vals.get(name) {
            Some(Val::Const(k)) => {
                let k = k.clone();
                if self.consts[&k].numel() != c {
                    return Err(graph_err(
                        node,
                        format!(
                            "{:?} has shape {:?} but {} elements (one per channel) are needed",
                            name, self.consts[&k].dims, c
                        ),
                    ));
                }
                self.const_value(&k, node, Some(shape))
            }
            _ => {
                let v = self.value(name, node)?;
                if self.g.shape(v) != shape {
                    let rn = self.fresh(&format!("{}_view", name));
                    return self.g.reshape(&rn, v, shape);
                }
                Ok(v)
            }
        }
    }
}

trait IfEmpty {
    fn if_empty(self, other: &str) -> String;
}
impl IfEmpty for String {
    fn if_empty(self, other: &str) -> String {
        if self.is_empty() {
            other.to_string()
        } else {
            self
        }
    }
}

/// How a node is named in messages: its name, or `op_type#index` when it has none.
fn node_label(n: &NodeProto, i: usize) -> String {
    if n.name.is_empty() {
        format!("{}#{}", n.op_type, i)
    } else {
        n.name.clone()
    }
}

fn norm_axis(axis: i64, rank: usize, node: &str, op: &str) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(graph_err(
            node,
            format!("{}: axis {} is out of range for rank {}", op, axis, rank),
        ));
    }
    Ok(a as usize)
}

/// A 2-element int attribute (`strides`, `dilations`), default `d` for both.
fn pair(a: &Attrs, name: &str, d: usize) -> Result<[usize; 2]> {
    match a.ints(name)? {
        None => Ok([d, d]),
        Some(v) if v.len() == 2 && v.iter().all(|&x| x >= 1) => Ok([v[0] as usize, v[1] as usize]),
        Some(v) => Err(a.err(format!(
            "{} {:?} must be two positive integers (2-D operators only)",
            name, v
        ))),
    }
}

/// ONNX `pads` `[top, left, bottom, right]` (begin values, then end values).
fn pads4(a: &Attrs) -> Result<[usize; 4]> {
    match a.ints("pads")? {
        None => Ok([0; 4]),
        Some(v) if v.len() == 4 && v.iter().all(|&x| x >= 0) => {
            Ok([v[0] as usize, v[1] as usize, v[2] as usize, v[3] as usize])
        }
        Some(v) => Err(a.err(format!(
            "pads {:?} must be four non-negative integers (2-D operators only)",
            v
        ))),
    }
}

/// The static target shape of an ONNX `Reshape` of `input` by `spec`: `0` copies the
/// input's dimension (unless `allowzero`), one `-1` is inferred.
fn reshape_target(
    input: &[usize],
    spec: &[i64],
    allowzero: bool,
) -> std::result::Result<Vec<usize>, String> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            0 if !allowzero => out.push(
                *input
                    .get(i)
                    .ok_or_else(|| format!("0 at position {} has no input dimension to copy", i))?,
            ),
            -1 => {
                if infer.is_some() {
                    return Err(format!("more than one -1 in {:?}", spec));
                }
                infer = Some(i);
                out.push(1);
            }
            d if d >= 0 => out.push(d as usize),
            d => return Err(format!("invalid dimension {} in {:?}", d, spec)),
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!(
                "cannot infer the -1 in {:?} for an input of shape {:?}",
                spec, input
            ));
        }
        out[i] = total / known;
    }
    if out.iter().product::<usize>() != total {
        return Err(format!(
            "shape {:?} (from {:?}) does not hold the {} elements of {:?}",
            out, spec, total, input
        ));
    }
    Ok(out)
}
