"""PyTorch's batch-1 ResNet-18 latency on GPU 0, for scripts/gpu_check.sh to print next to
loopforge's (examples/gpu_bench.rs). torchvision's architecture, random weights, float32,
eval mode; the input starts on the host and the output ends there, as in loopforge's
graph executor. Wall clock, median of 20 runs after 3 warm-ups."""
import statistics
import time

import torch
import torchvision

model = torchvision.models.resnet18(weights=None).eval().cuda()
x = torch.randn(1, 3, 224, 224)


def once():
    with torch.no_grad():
        return model(x.cuda()).cpu()


for _ in range(3):
    once()
times = []
for _ in range(20):
    torch.cuda.synchronize()
    start = time.perf_counter()
    once()
    times.append((time.perf_counter() - start) * 1e3)
print(
    "torch %s resnet18 batch 1 on %s: latency %.3f ms (wall clock, median of 20)"
    % (torch.__version__, torch.cuda.get_device_name(0), statistics.median(times))
)
