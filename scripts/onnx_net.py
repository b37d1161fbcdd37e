"""Shared by the scripts that write convolutional networks as ONNX with the onnx helper
API (`make_mobilenet_v2_onnx.py`, `make_efficientnet_b0_onnx.py`): a builder of nodes and
initializers with random weights from a fixed seed, convolutions with batch norm folded
in, the classifier head, saving with the checker, and the command line that writes the
file and runs it once in onnxruntime where that is importable.
"""

import argparse
import os

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OPSET = 13


class Net:
    """Nodes and initializers of a network under construction; weights from `seed`."""

    def __init__(self, seed):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits = [], []
        self.counter = 0

    def fresh(self, base):
        """A new value name: `base` and a running number."""
        self.counter += 1
        return "%s_%d" % (base, self.counter)

    def init(self, name, a):
        """An f32 initializer named `name` holding `a`; returns the name."""
        self.inits.append(
            self.numpy_helper.from_array(np.ascontiguousarray(a.astype(np.float32)), name))
        return name

    def node(self, op, inputs, base, **attrs):
        """A node `op` of `inputs` with one output named after `base`; returns it."""
        y = self.fresh(base)
        self.nodes.append(self.helper.make_node(op, inputs, [y], **attrs))
        return y

    def conv(self, x, c_in, c_out, k, stride, groups, name, gain):
        """A k x k convolution with padding k // 2 and a bias (a folded batch norm's
        shift): weights uniform with variance `gain / 3 / fan-in` (3: the size-keeping
        scale for ReLU-like nets; 6: He's 2 / fan-in), biases within 0.05."""
        fan_in = (c_in // groups) * k * k
        w = self.rng.uniform(-1, 1, (c_out, c_in // groups, k, k)) * np.sqrt(gain / fan_in)
        b = 0.05 * self.rng.uniform(-1, 1, c_out)
        y = self.fresh(name)
        self.nodes.append(self.helper.make_node(
            "Conv", [x, self.init(name + ".weight", w), self.init(name + ".bias", b)], [y],
            name=name, kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4,
            group=groups))
        return y

    def classifier(self, h, c):
        """Global average pooling, Flatten and a Gemm from `c` features to 1000 `logits`."""
        gap = self.node("GlobalAveragePool", [h], "avgpool")
        flat = self.node("Flatten", [gap], "flatten", axis=1)
        fcw = self.init("classifier.weight",
                        self.rng.uniform(-1, 1, (1000, c)) * np.sqrt(3.0 / c))
        fcb = self.init("classifier.bias", 0.05 * self.rng.uniform(-1, 1, 1000))
        self.nodes.append(self.helper.make_node(
            "Gemm", [flat, fcw, fcb], ["logits"], alpha=1.0, beta=1.0, transB=1))

    def save(self, path, graph_name, size):
        """The model (input `input` of `[1, 3, size, size]`, output `logits`), checked and
        written to `path`."""
        import onnx
        from onnx import TensorProto

        helper = self.helper
        g = helper.make_graph(
            self.nodes, graph_name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])],
            initializer=self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="loopforge")
        m.ir_version = 7
        onnx.checker.check_model(m)
        onnx.save(m, path)


def main(doc, file_name, label, build):
    """The scripts' command line: `--out` (default `target/models/<file_name>`) and
    `--size`; `build(path, size)` writes the model, then onnxruntime runs it once on a
    fixed-seed input where it is importable."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "models", file_name))
    ap.add_argument("--size", type=int, default=224)
    a = ap.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    build(a.out, a.size)
    msg = "wrote %s (%s, %dx%d)" % (a.out, label, a.size, a.size)
    try:
        import onnxruntime as ort
    except ImportError:
        print(msg)
        return
    sess = ort.InferenceSession(a.out, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((1, 3, a.size, a.size)).astype(np.float32)
    y = sess.run(None, {"input": x})[0]
    print("%s; onnxruntime: logits %s, mean |y| %.3g" % (msg, y.shape, float(np.abs(y).mean())))
