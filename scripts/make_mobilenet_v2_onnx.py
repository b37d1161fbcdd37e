#!/usr/bin/env python3
"""Write a MobileNetV2 (width 1.0, random weights from a fixed seed) as ONNX.

The network of Sandler et al. (torchvision's `mobilenet_v2` layout), built with the onnx
helper API at opset 13, batch norm folded into the convolutions as PyTorch's exporter
does: a 3x3 stride-2 stem to 32 channels; inverted residual blocks (expansion t, output
channels c, repeats n, first stride s) (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2)
(6,96,3,1) (6,160,3,2) (6,320,1,1), each a 1x1 expansion (where t > 1), a 3x3
depthwise convolution and a linear 1x1 projection, with ReLU6 (Clip 0..6) after the
first two and a residual Add where the stride is 1 and the channels do not change; a
1x1 convolution to 1280 channels, global average pooling, Flatten and a Gemm to 1000
classes. onnx.checker validates the model and, where onnxruntime is importable, the
script runs it once on a fixed-seed input.

    python3 scripts/make_mobilenet_v2_onnx.py [--out target/models/mobilenet_v2.onnx]
        [--size 224]

Then: `loopforge bench target/models/mobilenet_v2.onnx --threads 2` and
`python3 scripts/bench_models.py`.
"""

import numpy as np

from onnx_net import Net, main

SEED = 11
BLOCKS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1)]


def build(path, size):
    net = Net(SEED)

    def conv(x, c_in, c_out, k, stride, groups, name):
        # Weights scaled so activations keep their size through the depth.
        return net.conv(x, c_in, c_out, k, stride, groups, name, gain=3.0)

    zero = net.init("clip.min", np.array(0.0))
    six = net.init("clip.max", np.array(6.0))

    def relu6(x):
        return net.node("Clip", [x, zero, six], "relu6")

    h = relu6(conv("input", 3, 32, 3, 2, 1, "features.0"))
    c = 32
    idx = 1
    for t, o, n, s in BLOCKS:
        for i in range(n):
            stride = s if i == 0 else 1
            name = "features.%d" % idx
            hidden = c * t
            x = h
            if t != 1:
                x = relu6(conv(x, c, hidden, 1, 1, 1, name + ".expand"))
            x = relu6(conv(x, hidden, hidden, 3, stride, hidden, name + ".dw"))
            x = conv(x, hidden, o, 1, 1, 1, name + ".project")
            if stride == 1 and c == o:
                x = net.node("Add", [h, x], name + ".add")
            h, c = x, o
            idx += 1
    h = relu6(conv(h, c, 1280, 1, 1, 1, "features.%d" % idx))
    net.classifier(h, 1280)
    net.save(path, "mobilenet_v2", size)


if __name__ == "__main__":
    main(__doc__, "mobilenet_v2.onnx", "MobileNetV2", build)
