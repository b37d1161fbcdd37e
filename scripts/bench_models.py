#!/usr/bin/env python3
"""Time onnxruntime and PyTorch (CPU) on the ResNet-18, MobileNetV2 and EfficientNet-B0 ONNX models and the MLP.

For each model and 1 and 2 intra-op threads (the model's input shape, batch 1 for ResNet-18;
onnxruntime: sequential execution, all graph optimizations): W untimed runs, then the median
and minimum of N timed runs. Prints one JSON line per (model, threads, runtime).

PyTorch runs the same networks rebuilt as torch modules (torchvision's ResNet-18 layout,
batch norm separate or folded into the convs as the file has it; the MLP's Gemm/Relu/Gemm/
Softmax) with the weights read from the ONNX file; before timing, its output is checked
against onnxruntime's on a fixed-seed input and the script exits with an error if they
differ. Without torch importable the PyTorch lines are skipped (message on stderr); MobileNetV2
and EfficientNet-B0 have none (onnxruntime and loopforge only). `--only NAME` times one model.

With --loopforge BIN, also runs `BIN bench MODEL --threads T --json [--tuning-log F]` for
the same models and prints its JSON line, so all appear in one run.

    python3 scripts/make_resnet18_onnx.py            # target/models/resnet18.onnx
    python3 scripts/make_mobilenet_v2_onnx.py        # target/models/mobilenet_v2.onnx
    python3 scripts/make_efficientnet_b0_onnx.py     # target/models/efficientnet_b0.onnx
    python3 scripts/bench_models.py [--runs 50] [--warmup 5] [--loopforge target/release/loopforge]
        [--only resnet18|mlp|mobilenet_v2|efficientnet_b0]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODELS = [
    ("resnet18", os.path.join(ROOT, "target", "models", "resnet18.onnx")),
    ("mlp", os.path.join(ROOT, "tests", "onnx", "mlp.onnx")),
    ("mobilenet_v2", os.path.join(ROOT, "target", "models", "mobilenet_v2.onnx")),
    ("efficientnet_b0", os.path.join(ROOT, "target", "models", "efficientnet_b0.onnx")),
]
# The models `torch_model` rebuilds as torch modules (the others: onnxruntime and loopforge).
TORCH_MODELS = ("resnet18", "mlp")


def bench_ort(path, threads, warmup, runs):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = fixed_input(inp.shape)
    t = timed(lambda: sess.run(None, {inp.name: x}), warmup, runs)
    return summary("onnxruntime", ort.__version__, threads, t)


def fixed_input(shape):
    shape = [d if isinstance(d, int) else 1 for d in shape]
    return np.random.default_rng(1).standard_normal(shape).astype(np.float32)


def timed(fn, warmup, runs):
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(runs):
        s = time.perf_counter()
        fn()
        t.append((time.perf_counter() - s) * 1e3)
    return t


def summary(runtime, version, threads, t):
    return {
        "runtime": runtime,
        "version": version,
        "threads": threads,
        "runs": len(t),
        "p50_ms": statistics.median(t),
        "min_ms": min(t),
    }


def torch_model(name, path):
    """The ONNX model as a torch module in eval mode, with the file's weights.

    Walks the graph's Conv, BatchNormalization and Gemm nodes in order and hands their
    weights to the module's Conv2d, BatchNorm2d and Linear layers in definition order
    (both follow the forward pass), checking every shape."""
    import onnx
    import torch
    from onnx import helper, numpy_helper
    from torch import nn

    class BasicBlock(nn.Module):
        # Two 3x3 convs with batch norm (or a conv bias, when folded); the shortcut is a
        # strided 1x1 conv when the shape changes.
        def __init__(self, c_in, c_out, stride, folded):
            super().__init__()
            bn = (lambda c: nn.Identity()) if folded else nn.BatchNorm2d
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=folded)
            self.bn1 = bn(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=folded)
            self.bn2 = bn(c_out)
            self.downsample = None
            if stride != 1 or c_in != c_out:
                self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=folded), bn(c_out))

        def forward(self, x):
            y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(y + (x if self.downsample is None else self.downsample(x)))

    class ResNet18(nn.Module):
        # Stem (7x7/2 conv, 3x3/2 max pool), four stages of two blocks (64..512 channels,
        # stride 2 from the second stage on), global average pool, 1000-way linear layer.
        def __init__(self, folded):
            super().__init__()
            bn = (lambda c: nn.Identity()) if folded else nn.BatchNorm2d
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=folded)
            self.bn1 = bn(64)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            blocks, c = [], 64
            for i, o in enumerate([64, 128, 256, 512]):
                blocks += [BasicBlock(c, o, 2 if i else 1, folded), BasicBlock(o, o, 1, folded)]
                c = o
            self.layers = nn.Sequential(*blocks)
            self.fc = nn.Linear(512, 1000)

        def forward(self, x):
            x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
            x = self.layers(x).mean((2, 3))
            return self.fc(x)

    g = onnx.load(path).graph
    vals = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            vals[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    params = []  # (kind, [arrays], attributes) in graph order
    for n in g.node:
        if n.op_type in ("Conv", "BatchNormalization", "Gemm"):
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            params.append((n.op_type, [vals[i] for i in n.input[1:] if i], attrs))

    if name == "mlp":
        model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10), nn.Softmax(-1))
    else:
        model = ResNet18(folded=not any(k == "BatchNormalization" for k, _, _ in params))
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
    kinds = {nn.Conv2d: "Conv", nn.BatchNorm2d: "BatchNormalization", nn.Linear: "Gemm"}
    if [kinds[type(m)] for m in layers] != [k for k, _, _ in params]:
        sys.exit("%s: %s's layers do not match the torch model's" % (name, path))
    for m, (kind, arrays, attrs) in zip(layers, params):
        if kind == "Gemm":
            assert attrs.get("transA", 0) == 0 and attrs.get("alpha", 1.0) == attrs.get("beta", 1.0) == 1.0
            if not attrs.get("transB", 0):
                arrays[0] = arrays[0].T
        if kind == "BatchNormalization":
            m.eps = attrs.get("epsilon", 1e-5)
            targets = [m.weight, m.bias, m.running_mean, m.running_var]
        else:
            targets = [m.weight, m.bias][: len(arrays)]
        for t, a in zip(targets, arrays):
            assert t.shape == a.shape, (name, kind, t.shape, a.shape)
            t.data.copy_(torch.tensor(a))
    return model.eval()


def check_torch(name, path, model):
    """Exit with an error unless torch's output matches onnxruntime's on a fixed-seed input;
    return the input's shape."""
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = fixed_input(sess.get_inputs()[0].shape)
    (ref,) = sess.run(None, {sess.get_inputs()[0].name: x})
    with torch.inference_mode():
        y = model(torch.from_numpy(x)).numpy()
    diff = float(np.abs(y - ref).max()) if y.shape == ref.shape else float("inf")
    scale = float(np.abs(ref).max())
    print("%s: pytorch vs onnxruntime max abs diff %.3g (output max abs %.3g)" % (name, diff, scale),
          file=sys.stderr)
    if not diff <= 1e-3 * scale:
        sys.exit("%s: pytorch output differs from onnxruntime's (max abs diff %g, scale %g)" % (name, diff, scale))
    return x.shape


def bench_torch(model, shape, threads, warmup, runs):
    import torch

    torch.set_num_threads(threads)
    x = torch.from_numpy(fixed_input(shape))
    with torch.inference_mode():
        t = timed(lambda: model(x), warmup, runs)
    return summary("pytorch", torch.__version__, threads, t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--loopforge", help="path of the loopforge binary to time as well")
    ap.add_argument("--tuning-log", help="passed to `loopforge bench` (a log of `loopforge tune`)")
    ap.add_argument("--only", choices=[n for n, _ in MODELS], help="time this model only")
    a = ap.parse_args()
    try:
        import torch  # noqa: F401
    except ImportError as e:
        torch = None
        print("pytorch: skipped (%s)" % e, file=sys.stderr)
    for name, path in MODELS:
        if a.only and name != a.only:
            continue
        if not os.path.exists(path):
            print(json.dumps({"model": name, "path": path,
                              "error": "missing (run scripts/make_%s_onnx.py)" % name}))
            continue
        with_torch = torch is not None and name in TORCH_MODELS
        if with_torch:
            model = torch_model(name, path)
            shape = check_torch(name, path, model)
        for threads in (1, 2):
            r = bench_ort(path, threads, a.warmup, a.runs)
            r["model"] = name
            print(json.dumps(r), flush=True)
            if with_torch:
                r = bench_torch(model, shape, threads, a.warmup, a.runs)
                r["model"] = name
                print(json.dumps(r), flush=True)
            if a.loopforge:
                out = subprocess.run(
                    [a.loopforge, "bench", path, "--threads", str(threads), "--json",
                     "--warmup", str(a.warmup), "--repeat", str(a.runs)]
                    + (["--tuning-log", a.tuning_log] if a.tuning_log else []),
                    capture_output=True, text=True)
                if out.returncode != 0:
                    print(json.dumps({"model": name, "runtime": "loopforge", "threads": threads,
                                      "error": out.stderr.strip()[-500:]}))
                else:
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    r.update({"runtime": "loopforge", "model": name})
                    print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
