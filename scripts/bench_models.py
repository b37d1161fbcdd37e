#!/usr/bin/env python3
"""Time onnxruntime on the ResNet-18 ONNX model and the MLP test model.

For each model and 1 and 2 intra-op threads (batch 1, sequential execution, all graph
optimizations): W untimed runs, then the median of N timed runs. Prints one JSON line per
(model, threads). With --loopforge BIN, also runs `BIN bench MODEL --threads T --json`
for the same models and prints its JSON line, so both appear in one run.

    python3 scripts/make_resnet18_onnx.py            # target/models/resnet18.onnx
    python3 scripts/bench_models.py [--runs 50] [--warmup 5] [--loopforge target/release/loopforge]
"""

import argparse
import json
import os
import statistics
import subprocess
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODELS = [
    ("resnet18", os.path.join(ROOT, "target", "models", "resnet18.onnx")),
    ("mlp", os.path.join(ROOT, "tests", "onnx", "mlp.onnx")),
]


def bench_ort(path, threads, warmup, runs):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    for _ in range(warmup):
        sess.run(None, {inp.name: x})
    t = []
    for _ in range(runs):
        s = time.perf_counter()
        sess.run(None, {inp.name: x})
        t.append((time.perf_counter() - s) * 1e3)
    return {
        "runtime": "onnxruntime",
        "version": ort.__version__,
        "threads": threads,
        "runs": runs,
        "p50_ms": statistics.median(t),
        "min_ms": min(t),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--loopforge", help="path of the loopforge binary to time as well")
    a = ap.parse_args()
    for name, path in MODELS:
        if not os.path.exists(path):
            print(json.dumps({"model": name, "path": path, "error": "missing (run scripts/make_resnet18_onnx.py)"}))
            continue
        for threads in (1, 2):
            r = bench_ort(path, threads, a.warmup, a.runs)
            r["model"] = name
            print(json.dumps(r), flush=True)
            if a.loopforge:
                out = subprocess.run(
                    [a.loopforge, "bench", path, "--threads", str(threads), "--json",
                     "--warmup", str(a.warmup), "--repeat", str(a.runs)],
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
