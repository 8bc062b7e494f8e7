"""The network's time per clip on onnxruntime against MXNet, side by side in one run, at batch 1 and 16.

    python bench/onnx.py [--model_path=checkpoint] [--variant=paper] [--batch_sizes=1,16] [--repeats=10]

Both backends run the same weights on the same batches of 75-frame clips (random normalised input:
the time does not depend on the content): MXNet as infer.py runs it (hybridized, GRUs packed, oneDNN
graph pass on the CPU), onnxruntime on the graph utils/export_onnx.py writes (exported in memory
here). Without ``--model_path`` a freshly initialised full-size LipNet of ``--variant`` is timed.
Each configuration is called once untimed, then ``--repeats`` times, alternating between the
backends so that a busy machine slows both alike; the median and fastest call are given per clip.
The last line printed is a JSON object with every figure.
"""

if __package__ in (None, ""):  # run as a file: find the project's packages (and not this file as onnx)
    import _bootstrap  # noqa: F401

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence

import numpy as np

from utils.runtime.cli import (
    parse_args,
    positive_int,
    positive_ints,
)

TARGET = "onnxruntime at least as fast as MXNet at batch 1"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_path", default=None,
                        help="checkpoint or the example's parameter file (default: a fresh LipNet of --variant)")
    parser.add_argument("--variant", default="paper", choices=("paper", "example"),
                        help="variant of the fresh LipNet (default: %(default)s)")
    parser.add_argument("--batch_sizes", type=positive_ints, default=[1, 16],
                        help="comma-separated batch sizes (default: 1,16)")
    parser.add_argument("--frames", type=positive_int, default=75, help="frames per clip (default: %(default)s)")
    parser.add_argument("--repeats", type=positive_int, default=10, help="timed calls per backend and batch size "
                                                                "(default: %(default)s)")
    return parser


def networks(model_path: str | None, variant: str) -> tuple:
    """The MXNet network and the onnxruntime network of the same weights."""
    from model.checkpoint import EXAMPLE_MEAN, EXAMPLE_STD, LoadedLipNet, read_checkpoint
    from model.devices import contexts
    from model.lipnet import LipNet, LipNetConfig
    from model.mxnet_network import MXNetLipNet
    from model.onnx_export import build_model, reading_metadata
    from utils.reading.onnx_network import OnnxLipNet

    ctxs = contexts(0)
    if model_path:
        contents = read_checkpoint(model_path)
        config, arrays = contents.config, {k: v.asnumpy() for k, v in contents.arrays.items()}
        mxnet_net = MXNetLipNet.load(model_path, num_gpus=0)
        mean, std, meta, source = contents.mean, contents.std, contents.meta, str(contents.source)
    else:
        net = LipNet(LipNetConfig(variant=variant))
        net.initialize(ctx=ctxs)
        config, arrays = net.config, {k: v.data().asnumpy() for k, v in net._collect_params_with_prefix().items()}
        mean, std, meta, source = EXAMPLE_MEAN, EXAMPLE_STD, {}, f"fresh {variant} LipNet"
        mxnet_net = MXNetLipNet(LoadedLipNet(net, mean, std), ctxs)
    onnx_net = OnnxLipNet(build_model(config, arrays, reading_metadata(config, mean, std, meta, source))
                          .SerializeToString())
    return mxnet_net, onnx_net, source


def main(argv: Sequence[str] | None = None) -> dict:
    parser = build_parser()
    args = parse_args(parser, argv)
    mxnet_net, onnx_net, source = networks(args.model_path, args.variant)
    import onnxruntime

    rng = np.random.default_rng(0)
    threads = os.environ.get("OMP_NUM_THREADS")
    print(f"{source}, input {onnx_net.width}x{onnx_net.height}, {args.frames} frames; "
          f"{len(os.sched_getaffinity(0))} CPU cores, OMP_NUM_THREADS={threads}; onnxruntime "
          f"{onnxruntime.__version__}; {args.repeats} timed calls each, ms per clip")
    rows = []
    for size in args.batch_sizes:
        batch = rng.standard_normal((size, 3, args.frames, onnx_net.height, onnx_net.width), np.float32)
        times = {"mxnet": [], "onnxruntime": []}
        backends = {"mxnet": mxnet_net, "onnxruntime": onnx_net}
        for network in backends.values():
            network.log_probs(batch)  # graph building, memory planning
        for _ in range(args.repeats):
            for name, network in backends.items():
                start = time.perf_counter()
                network.log_probs(batch)
                times[name].append((time.perf_counter() - start) * 1e3 / size)
        row = {"batch_size": size}
        for name, values in times.items():
            row[name] = {"median_ms": round(statistics.median(values), 2), "min_ms": round(min(values), 2)}
        row["speedup"] = round(row["mxnet"]["median_ms"] / row["onnxruntime"]["median_ms"], 2)
        rows.append(row)
        print(f"batch {size:3d}: MXNet median {row['mxnet']['median_ms']:7.1f} (min {row['mxnet']['min_ms']:.1f})  "
              f"onnxruntime median {row['onnxruntime']['median_ms']:7.1f} (min {row['onnxruntime']['min_ms']:.1f})"
              f"  -> onnxruntime {row['speedup']:.2f}x MXNet's speed")
    at_one = next((r for r in rows if r["batch_size"] == 1), None)
    figures = {"source": source, "cores": len(os.sched_getaffinity(0)), "omp_threads": threads,
               "onnxruntime": onnxruntime.__version__, "frames": args.frames, "rows": rows,
               "meets_target": None if at_one is None else at_one["speedup"] >= 1.0, "target": TARGET}
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
