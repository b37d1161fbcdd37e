#!/usr/bin/env python3
"""Write a ResNet-18 (torchvision's architecture, random weights from a fixed seed) as ONNX.

With torch and torchvision importable: torchvision.models.resnet18(weights=None) with
weights re-drawn from a fixed seed, eval mode, exported with torch.onnx.export at opset 13
(the exporter folds batch norm into the convolutions and adds Identity/Constant/Flatten
nodes around them). Otherwise the same network is built directly with the onnx helper API
(Conv, BatchNormalization — or folded into the Conv with --fold-bn, as PyTorch's exporter
does —, Relu, MaxPool, Add, GlobalAveragePool, Flatten, Gemm), with an Identity and a
Constant node as the exporter would emit. Either way onnx.checker validates the model and,
where onnxruntime is importable, the script runs it once on a fixed-seed input.

    python3 scripts/make_resnet18_onnx.py [--out target/models/resnet18.onnx] [--size 224]
        [--fold-bn] [--no-torch]

Then: `loopforge bench target/models/resnet18.onnx --threads 2` and
`python3 scripts/bench_models.py`.
"""

import argparse
import os
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OPSET = 13
SEED = 7


def with_torch(path, size):
    import torch
    import torchvision

    torch.manual_seed(SEED)
    m = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        for name, p in m.state_dict().items():
            if name.endswith("running_var"):
                p.copy_(torch.rand_like(p) * 0.5 + 0.75)
            elif name.endswith("running_mean") or name.endswith(".bias"):
                p.copy_(torch.randn_like(p) * 0.1)
            elif p.dtype.is_floating_point and p.dim() > 1:
                fan_in = p[0].numel()
                p.copy_((torch.rand_like(p) * 2 - 1) * (6.0 / fan_in) ** 0.5)
    m.eval()
    x = torch.randn(1, 3, size, size)
    torch.onnx.export(m, x, path, opset_version=OPSET, input_names=["input"], output_names=["logits"])


def with_helper(path, size, fold_bn):
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

    def conv_bn(x, c_in, c_out, k, stride, name):
        fan_in = c_in * k * k
        w = rng.uniform(-1, 1, (c_out, c_in, k, k)) * np.sqrt(6.0 / fan_in)
        gamma = 1 + 0.1 * rng.uniform(-1, 1, c_out)
        beta = 0.1 * rng.uniform(-1, 1, c_out)
        mean = 0.1 * rng.uniform(-1, 1, c_out)
        var = 1 + 0.25 * rng.uniform(-1, 1, c_out)
        attrs = dict(kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)
        y = fresh(name)
        if fold_bn:
            s = gamma / np.sqrt(var + 1e-5)
            wf = init(name + ".weight", w * s[:, None, None, None])
            bf = init(name + ".bias", beta - mean * s)
            nodes.append(helper.make_node("Conv", [x, wf, bf], [y], name=name, **attrs))
            return y
        c = fresh(name + "_conv")
        nodes.append(helper.make_node("Conv", [x, init(name + ".weight", w)], [c], name=name, **attrs))
        bn = [init(name + ".bn." + n, a) for n, a in
              (("weight", gamma), ("bias", beta), ("running_mean", mean), ("running_var", var))]
        nodes.append(helper.make_node("BatchNormalization", [c] + bn, [y], name=name + ".bn", epsilon=1e-5))
        return y

    def relu(x):
        y = fresh("relu")
        nodes.append(helper.make_node("Relu", [x], [y]))
        return y

    x = "input"
    h = relu(conv_bn(x, 3, 64, 7, 2, "conv1"))
    p = fresh("maxpool")
    nodes.append(helper.make_node("MaxPool", [h], [p], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    h, c = p, 64
    for stage, o in enumerate([64, 128, 256, 512]):
        for blk in range(2):
            stride = 2 if stage > 0 and blk == 0 else 1
            name = "layer%d.%d" % (stage + 1, blk)
            t = relu(conv_bn(h, c, o, 3, stride, name + ".conv1"))
            t = conv_bn(t, o, o, 3, 1, name + ".conv2")
            ident = conv_bn(h, c, o, 1, stride, name + ".downsample") if (stride != 1 or c != o) else h
            s = fresh(name + ".add")
            nodes.append(helper.make_node("Add", [t, ident], [s]))
            h, c = relu(s), o
    gap = fresh("avgpool")
    nodes.append(helper.make_node("GlobalAveragePool", [h], [gap]))
    flat = fresh("flatten")
    nodes.append(helper.make_node("Flatten", [gap], [flat], axis=1))
    ident = fresh("identity")
    nodes.append(helper.make_node("Identity", [flat], [ident]))
    fcw = init("fc.weight", rng.uniform(-1, 1, (1000, 512)) * np.sqrt(6.0 / 512))
    bias = fresh("fc.bias")
    nodes.append(helper.make_node(
        "Constant", [], [bias],
        value=numpy_helper.from_array((0.1 * rng.uniform(-1, 1, 1000)).astype(np.float32), "fc.bias")))
    nodes.append(helper.make_node("Gemm", [ident, fcw, bias], ["logits"], alpha=1.0, beta=1.0, transB=1))
    g = helper.make_graph(
        nodes, "resnet18",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])],
        initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="loopforge")
    m.ir_version = 7
    onnx.save(m, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "models", "resnet18.onnx"))
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--fold-bn", action="store_true", help="helper path: fold batch norm into the convs")
    ap.add_argument("--no-torch", action="store_true", help="use the onnx helper API even if torch is importable")
    a = ap.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    how = "onnx helper API"
    try:
        if a.no_torch:
            raise ImportError("--no-torch")
        with_torch(a.out, a.size)
        how = "torch.onnx.export"
    except ImportError:
        with_helper(a.out, a.size, a.fold_bn)
    import onnx

    onnx.checker.check_model(onnx.load(a.out), full_check=True)
    print("wrote %s (%s, opset %d)" % (a.out, how, OPSET), file=sys.stderr)
    try:
        import onnxruntime as ort
    except ImportError:
        return
    sess = ort.InferenceSession(a.out, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((1, 3, a.size, a.size)).astype(np.float32)
    (y,) = sess.run(None, {sess.get_inputs()[0].name: x})
    print("onnxruntime: output %s, |y| max %.3f" % (y.shape, float(np.abs(y).max())), file=sys.stderr)


if __name__ == "__main__":
    main()
