#!/usr/bin/env python3
"""Write an EfficientNet-B0 (width and depth 1.0, random weights from a fixed seed) as ONNX.

The network of Tan and Le (torchvision's `efficientnet_b0` layout), built with the onnx
helper API at opset 13, batch norm folded into the convolutions as PyTorch's exporter
does: a 3x3 stride-2 stem to 32 channels; MBConv blocks (expansion t, kernel k, first
stride s, output channels c, repeats n) (1,3,1,16,1) (6,3,2,24,2) (6,5,2,40,2)
(6,3,2,80,3) (6,5,1,112,3) (6,5,2,192,4) (6,3,1,320,1), each a 1x1 expansion (where
t > 1), a kxk depthwise convolution (padding k//2), squeeze-and-excitation (global
average pooling, a 1x1 convolution to a quarter of the block's input channels, SiLU, a
1x1 convolution back, Sigmoid, and a Mul with the depthwise output) and a linear 1x1
projection, with SiLU after the first two and a residual Add where the stride is 1 and
the channels do not change (no stochastic depth at inference); a 1x1 convolution to 1280
channels with SiLU, global average pooling, Flatten and a Gemm to 1000 classes. SiLU is
written as exporters do at opset 13, Sigmoid(x) then Mul(x, sigmoid). onnx.checker
validates the model and, where onnxruntime is importable, the script runs it once on a
fixed-seed input.

    python3 scripts/make_efficientnet_b0_onnx.py [--out target/models/efficientnet_b0.onnx]
        [--size 224]

Then: `loopforge bench target/models/efficientnet_b0.onnx --threads 2` and
`python3 scripts/bench_models.py`.
"""

import argparse
import os

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OPSET = 13
SEED = 11
BLOCKS = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]


def build(path, size):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(SEED)
    nodes, inits = [], []
    counter = [0]

    def fresh(base):
        counter[0] += 1
        return "%s_%d" % (base, counter[0])

    def init(name, a):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(a.astype(np.float32)), name))
        return name

    def conv(x, c_in, c_out, k, stride, groups, name):
        # He-like weights (variance 2 / fan-in) so activations keep their size through the
        # depth; the folded batch norm's shift (or the conv's own bias) as the bias.
        fan_in = (c_in // groups) * k * k
        w = rng.uniform(-1, 1, (c_out, c_in // groups, k, k)) * np.sqrt(6.0 / fan_in)
        b = 0.05 * rng.uniform(-1, 1, c_out)
        y = fresh(name)
        nodes.append(helper.make_node(
            "Conv", [x, init(name + ".weight", w), init(name + ".bias", b)], [y], name=name,
            kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4, group=groups))
        return y

    def sigmoid(x):
        y = fresh("sigmoid")
        nodes.append(helper.make_node("Sigmoid", [x], [y]))
        return y

    def mul(a, b, base):
        y = fresh(base)
        nodes.append(helper.make_node("Mul", [a, b], [y]))
        return y

    def silu(x):
        return mul(x, sigmoid(x), "silu")

    h = silu(conv("input", 3, 32, 3, 2, 1, "features.0"))
    c = 32
    for stage, (t, k, s, o, n) in enumerate(BLOCKS, start=1):
        for i in range(n):
            stride = s if i == 0 else 1
            name = "features.%d.%d" % (stage, i)
            hidden = c * t
            x = h
            if t != 1:
                x = silu(conv(x, c, hidden, 1, 1, 1, name + ".expand"))
            x = silu(conv(x, hidden, hidden, k, stride, hidden, name + ".dw"))
            # Squeeze-and-excitation: per-channel scales from the pooled depthwise output,
            # broadcast over H and W.
            sq = max(1, c // 4)
            gap = fresh(name + ".se.avgpool")
            nodes.append(helper.make_node("GlobalAveragePool", [x], [gap]))
            se = silu(conv(gap, hidden, sq, 1, 1, 1, name + ".se.fc1"))
            se = sigmoid(conv(se, sq, hidden, 1, 1, 1, name + ".se.fc2"))
            x = mul(x, se, name + ".se.scale")
            x = conv(x, hidden, o, 1, 1, 1, name + ".project")
            if stride == 1 and c == o:
                y = fresh(name + ".add")
                nodes.append(helper.make_node("Add", [h, x], [y]))
                x = y
            h, c = x, o
    h = silu(conv(h, c, 1280, 1, 1, 1, "features.%d" % (len(BLOCKS) + 1)))
    gap = fresh("avgpool")
    nodes.append(helper.make_node("GlobalAveragePool", [h], [gap]))
    flat = fresh("flatten")
    nodes.append(helper.make_node("Flatten", [gap], [flat], axis=1))
    fcw = init("classifier.weight", rng.uniform(-1, 1, (1000, 1280)) * np.sqrt(3.0 / 1280))
    fcb = init("classifier.bias", 0.05 * rng.uniform(-1, 1, 1000))
    nodes.append(helper.make_node("Gemm", [flat, fcw, fcb], ["logits"], alpha=1.0, beta=1.0,
                                  transB=1))
    g = helper.make_graph(
        nodes, "efficientnet_b0",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])],
        initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                          producer_name="loopforge")
    m.ir_version = 7
    onnx.checker.check_model(m)
    onnx.save(m, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "models", "efficientnet_b0.onnx"))
    ap.add_argument("--size", type=int, default=224)
    a = ap.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    build(a.out, a.size)
    msg = "wrote %s (EfficientNet-B0, %dx%d)" % (a.out, a.size, a.size)
    try:
        import onnxruntime as ort
    except ImportError:
        print(msg)
        return
    sess = ort.InferenceSession(a.out, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((1, 3, a.size, a.size)).astype(np.float32)
    y = sess.run(None, {"input": x})[0]
    print("%s; onnxruntime: logits %s, mean |y| %.3g" % (msg, y.shape, float(np.abs(y).mean())))


if __name__ == "__main__":
    main()
