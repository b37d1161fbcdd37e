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

from onnx_net import Net, main

SEED = 11
BLOCKS = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]


def build(path, size):
    net = Net(SEED)

    def conv(x, c_in, c_out, k, stride, groups, name):
        # He-like weights (variance 2 / fan-in) so activations keep their size through the
        # depth; the folded batch norm's shift (or the conv's own bias) as the bias.
        return net.conv(x, c_in, c_out, k, stride, groups, name, gain=6.0)

    def sigmoid(x):
        return net.node("Sigmoid", [x], "sigmoid")

    def mul(a, b, base):
        return net.node("Mul", [a, b], base)

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
            gap = net.node("GlobalAveragePool", [x], name + ".se.avgpool")
            se = silu(conv(gap, hidden, sq, 1, 1, 1, name + ".se.fc1"))
            se = sigmoid(conv(se, sq, hidden, 1, 1, 1, name + ".se.fc2"))
            x = mul(x, se, name + ".se.scale")
            x = conv(x, hidden, o, 1, 1, 1, name + ".project")
            if stride == 1 and c == o:
                x = net.node("Add", [h, x], name + ".add")
            h, c = x, o
    h = silu(conv(h, c, 1280, 1, 1, 1, "features.%d" % (len(BLOCKS) + 1)))
    net.classifier(h, 1280)
    net.save(path, "efficientnet_b0", size)


if __name__ == "__main__":
    main(__doc__, "efficientnet_b0.onnx", "EfficientNet-B0", build)
