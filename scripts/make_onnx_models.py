#!/usr/bin/env python3
"""Generate the ONNX test models of tests/onnx_import.rs and their expected outputs.

Writes tests/onnx/<name>.onnx, <name>.input.npy (fixed-seed input) and <name>.output.npy
(computed by onnxruntime), plus the error-case models. Not run by CI (CI has neither onnx
nor onnxruntime): the files are committed. Regenerate with

    pip install onnx==1.17.0 onnxruntime numpy
    python3 scripts/make_onnx_models.py
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "onnx")
OPSET = 17
rng = np.random.default_rng(1234)


def w(name, *shape, scale=0.5):
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def i64(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def f32(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.float32), name)


def model(nodes, inputs, outputs, inits, opset=OPSET, name="g"):
    g = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="loopforge")
    m.ir_version = 8
    return m


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def save(name, m, x_shape, check=True):
    os.makedirs(OUT, exist_ok=True)
    if check:
        onnx.checker.check_model(m, full_check=True)
    path = os.path.join(OUT, name + ".onnx")
    onnx.save(m, path)
    if x_shape is None:
        return
    import onnxruntime as ort

    x = rng.standard_normal(x_shape).astype(np.float32)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {m.graph.input[0].name: x})
    np.save(os.path.join(OUT, name + ".input.npy"), np.ascontiguousarray(x))
    np.save(os.path.join(OUT, name + ".output.npy"), np.ascontiguousarray(y.astype(np.float32)))
    print(name, x.shape, "->", y.shape, os.path.getsize(path), "bytes")


def mlp():
    n = helper.make_node
    nodes = [
        n("Gemm", ["x", "fc1.w", "fc1.b"], ["h"], name="fc1", transB=1),
        n("Relu", ["h"], ["hr"], name="relu1"),
        n("Gemm", ["hr", "fc2.w", "fc2.b"], ["logits"], name="fc2", transB=1),
        n("Softmax", ["logits"], ["y"], name="softmax", axis=-1),
    ]
    inits = [w("fc1.w", 32, 16), w("fc1.b", 32), w("fc2.w", 10, 32), w("fc2.b", 10)]
    save("mlp", model(nodes, [vi("x", [4, 16])], [vi("y", [4, 10])], inits), (4, 16))


def cnn():
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "c1.w", "c1.b"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[1, 1]),
        n("BatchNormalization", ["c1", "bn.s", "bn.b", "bn.m", "bn.v"], ["b1"], name="bn1", epsilon=1e-3),
        n("Relu", ["b1"], ["r1"], name="relu1"),
        n("MaxPool", ["r1"], ["p1"], name="maxpool", kernel_shape=[2, 2], strides=[2, 2]),
        # grouped, strided, asymmetric padding
        n("Conv", ["p1", "c2.w"], ["c2"], name="conv2", pads=[0, 1, 1, 0], strides=[2, 2], group=2),
        n("Clip", ["c2", "clip.min", "clip.max"], ["k2"], name="clip6"),
        n("AveragePool", ["p1"], ["a1"], name="avgpool", kernel_shape=[3, 3], strides=[2, 2],
          pads=[1, 1, 0, 0], count_include_pad=0),
        n("Sigmoid", ["a1"], ["s1"], name="sigmoid"),
        n("Concat", ["k2", "s1"], ["cat"], name="concat", axis=1),
        n("Transpose", ["cat"], ["t"], name="to_nhwc", perm=[0, 2, 3, 1]),
        n("Add", ["t", "chan_bias"], ["tb"], name="add_bias"),
        n("Transpose", ["tb"], ["t2"], name="to_nchw", perm=[0, 3, 1, 2]),
        n("GlobalAveragePool", ["t2"], ["gap"], name="gap"),
        n("Flatten", ["gap"], ["f"], name="flatten", axis=1),
        n("Gemm", ["f", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
        n("Reshape", ["logits", "shape"], ["lr"], name="reshape"),
        n("Softmax", ["lr"], ["y"], name="softmax", axis=-1),
    ]
    inits = [
        w("c1.w", 8, 3, 3, 3),
        w("c1.b", 8),
        w("bn.s", 8),
        w("bn.b", 8),
        w("bn.m", 8, scale=0.1),
        numpy_helper.from_array((rng.random(8) + 0.5).astype(np.float32), "bn.v"),
        w("c2.w", 8, 4, 3, 3),
        f32("clip.min", 0.0),
        f32("clip.max", 6.0),
        w("chan_bias", 16),
        w("fc.w", 6, 16),
        w("fc.b", 6),
        i64("shape", [0, 2, -1]),
    ]
    save("cnn", model(nodes, [vi("x", [2, 3, 16, 16])], [vi("y", [2, 2, 3])], inits), (2, 3, 16, 16))


def residual():
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "a.w", "a.b"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
        n("BatchNormalization", ["a", "bna.s", "bna.b", "bna.m", "bna.v"], ["an"], name="bn_a"),
        n("Relu", ["an"], ["ar"], name="relu_a"),
        n("Conv", ["ar", "b.w"], ["b"], name="conv_b", pads=[1, 1, 1, 1]),
        n("BatchNormalization", ["b", "bnb.s", "bnb.b", "bnb.m", "bnb.v"], ["bn"], name="bn_b"),
        n("Identity", ["x"], ["skip"], name="skip"),
        n("Add", ["bn", "skip"], ["sum"], name="residual_add"),
        n("Relu", ["sum"], ["y"], name="relu_out"),
    ]
    inits = [w("a.w", 8, 8, 3, 3, scale=0.2), w("a.b", 8), w("b.w", 8, 8, 3, 3, scale=0.2)]
    for p in ("bna", "bnb"):
        inits += [w(p + ".s", 8), w(p + ".b", 8), w(p + ".m", 8, scale=0.1),
                  numpy_helper.from_array((rng.random(8) + 0.5).astype(np.float32), p + ".v")]
    save("residual", model(nodes, [vi("x", [1, 8, 8, 8])], [vi("y", [1, 8, 8, 8])], inits), (1, 8, 8, 8))


def transformer_bits():
    """MatMul, LayerNormalization, Gelu (opset 20), Div/Sub/Mul, Dropout, Constant, Tanh."""
    n = helper.make_node
    nodes = [
        n("MatMul", ["x", "w1"], ["h"], name="proj"),
        n("LayerNormalization", ["h", "ln.g", "ln.b"], ["hn"], name="ln", axis=-1, epsilon=1e-5),
        n("Gelu", ["hn"], ["g"], name="gelu"),
        n("Constant", [], ["two"], name="const_two", value=numpy_helper.from_array(np.array(2.0, np.float32))),
        n("Div", ["g", "two"], ["gd"], name="div"),
        n("Sub", ["gd", "shift"], ["gs"], name="sub"),
        n("Mul", ["gs", "scale"], ["gm"], name="mul"),
        n("Dropout", ["gm"], ["gdrop"], name="dropout"),
        n("Tanh", ["gdrop"], ["y"], name="tanh"),
    ]
    inits = [w("w1", 12, 24), w("ln.g", 24), w("ln.b", 24), w("shift", 24), w("scale", 1, 24)]
    save("transformer_bits", model(nodes, [vi("x", [5, 12])], [vi("y", [5, 24])], inits, opset=20), (5, 12))


def decomposed_gelu():
    """GELU as exporters write it before opset 20's Gelu (Div, Erf, Add, Mul, Mul), then Exp."""
    n = helper.make_node
    nodes = [
        n("MatMul", ["x", "w1"], ["h"], name="proj"),
        n("Div", ["h", "sqrt2"], ["hd"], name="div"),
        n("Erf", ["hd"], ["e"], name="erf"),
        n("Add", ["e", "one"], ["e1"], name="add"),
        n("Mul", ["h", "e1"], ["he"], name="mul"),
        n("Mul", ["he", "half"], ["gelu"], name="mul_half"),
        n("Mul", ["gelu", "neg_quarter"], ["q"], name="scale"),
        n("Exp", ["q"], ["y"], name="exp"),
    ]
    inits = [w("w1", 12, 24, scale=1.0), f32("sqrt2", [1.4142135]), f32("one", [1.0]),
             f32("half", [0.5]), f32("neg_quarter", [-0.25])]
    save("decomposed_gelu", model(nodes, [vi("x", [6, 12])], [vi("y", [6, 24])], inits), (6, 12))


def errors():
    n = helper.make_node
    # Two unsupported operators (LSTM and Resize), plus a supported one.
    nodes = [
        n("Relu", ["x"], ["r"], name="relu"),
        n("Resize", ["r", "", "scales"], ["rs"], name="upsample", mode="nearest"),
        n("Reshape", ["rs", "seq_shape"], ["seq"], name="to_seq"),
        n("LSTM", ["seq", "W", "R"], ["y"], name="lstm", hidden_size=4),
    ]
    inits = [f32("scales", [1, 1, 2, 2]), i64("seq_shape", [4, 1, 8]),
             w("W", 1, 16, 8), w("R", 1, 16, 4)]
    m = model(nodes, [vi("x", [1, 2, 2, 2])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    save("unsupported", m, None, check=False)

    # Reshape whose shape is computed (a graph input), not a constant.
    nodes = [n("Reshape", ["x", "shape_in"], ["y"], name="dyn_reshape")]
    m = model(nodes, [vi("x", [2, 6]), helper.make_tensor_value_info("shape_in", TensorProto.INT64, [2])],
              [vi("y", [3, 4])], [])
    save("dynamic_reshape", m, None)


if __name__ == "__main__":
    mlp()
    cnn()
    residual()
    transformer_bits()
    errors()
    decomposed_gelu()
