"""Run a narrow LipNet (3-D convolutions, bidirectional GRUs, CTC) forward and backward on each device.

    python -m model.gpu_probe 0 1     # GPUs 0 and 1; "cpu" probes the CPU

One JSON line per device on stdout as soon as it is done: ``{"device": 0, "ok": true, "seconds": 1.2,
"free_bytes": ..., "total_bytes": ...}``, or ``"ok": false`` with MXNet's ``"error"`` text.
``utils/runtime/gpu_preflight.py`` runs this in its own process, so that a device which brings MXNet down
still leaves the lines of the devices before it, and the GPU memory is handed back when it ends.
The network is the trainer's, hybridized as the trainer does it, so the check runs the kernels a
training step runs (cuDNN convolutions and GRU, MXNet's CTC, and pointwise operators fused and
compiled with NVRTC at run time), on a batch of 2 clips of 16 frames at 32x64.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from model.backend import autograd, gluon, mx
from model.lipnet import LipNet, LipNetConfig

PROBE_SHAPE = (2, 3, 16, 32, 64)  # N, C, T, H, W


def probe(ctx: mx.Context) -> float:
    """Seconds one forward and backward pass took on ``ctx`` (the first, so with cuDNN's set-up);
    raises MXNet's error where a kernel cannot run there."""
    start = time.perf_counter()
    mx.random.seed(0)
    config = LipNetConfig(channels=(8, 8, 8), hidden=16, height=PROBE_SHAPE[3], width=PROBE_SHAPE[4])
    net = LipNet(config)
    net.initialize(mx.init.Xavier(), ctx=ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    loss_fn = gluon.loss.CTCLoss(layout="NTC", label_layout="NT")
    data = mx.nd.array(np.random.default_rng(0).random(PROBE_SHAPE, np.float32), ctx=ctx)
    label = mx.nd.array([[2, 0, 1, 13], [7, 4, 11, 11]], ctx=ctx)
    with autograd.record():
        loss = loss_fn(net(data), label)
    loss.backward()
    gradients = [p.grad(ctx) for p in net.collect_params().values() if p.grad_req != "null"]
    total = sum(float(g.abs().sum().asscalar()) for g in gradients)
    if not np.isfinite(total) or not np.isfinite(loss.asnumpy()).all():
        raise RuntimeError("the check's loss or gradients are not finite")
    return time.perf_counter() - start


def main(devices: list[str]) -> int:
    os.environ.setdefault("MXNET_CUDNN_AUTOTUNE_DEFAULT", "0")  # a tiny batch: the search is not worth it
    failed = 0
    for device in devices:
        ctx = mx.cpu() if device == "cpu" else mx.gpu(int(device))
        result: dict = {"device": device if device == "cpu" else int(device)}
        try:
            result.update(ok=True, seconds=round(probe(ctx), 3))
            if device != "cpu":
                result["free_bytes"], result["total_bytes"] = mx.context.gpu_memory_info(int(device))
        except Exception as err:  # MXNetError, or whatever a broken device makes MXNet raise: reported, not fatal
            failed += 1
            result.update(ok=False, error=str(err)[-4000:])
        print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
