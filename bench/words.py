"""Speed of the word-level network (ResNet-18 + MS-TCN, ``lrw_resnet18_mstcn``) on this machine.

``python bench/words.py`` prints a JSON object as its last line with ``params`` (trainable
parameters), ``train_step_s`` (forward, cross-entropy, backward and AdamW update of a batch of 8
clips of 1x29x88x88, as ``trainer.py`` runs it: hybridized with static memory, dropout reseeded
for the batch), ``infer_ms`` (one clip, batch 1, as ``infer.py`` runs it) and ``onnx_ms`` (the same clip
through the network's ONNX export on onnxruntime, as ``infer.py model_path=words.onnx`` reads it), each the
median of several timed repetitions after warm-up. The reference PyTorch implementation took 3.34 s and
129 ms on the same 2-core CPU (``shared/reference/tcn_reference.md``).
"""
from __future__ import annotations

import argparse
import json
import sys

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401



import numpy as np

import model.adamw  # noqa: F401 (registers "adamw")
from bench.timing import median_time
from model.backend import autograd, gluon, mx
from model.training.loop import batch_seed
from model.word_net import WordNet, WordNetConfig, count_trainable, prepare_word_net
from utils.runtime.cli import parse_args, positive_int, str2bool


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--batch_size", type=positive_int, default=8, help="clips per training step")
    parser.add_argument("--num_classes", type=positive_int, default=500, help="words the classifier tells apart")
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed repetitions (after 2 warm-up runs)")
    parser.add_argument("--train", type=str2bool, default=True, help="time the training step")
    parser.add_argument("--infer", type=str2bool, default=True, help="time the batch-1 forward pass")
    parser.add_argument("--onnx", type=str2bool, default=True,
                        help="time the batch-1 forward pass of the ONNX export on onnxruntime")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)

    mx.random.seed(0)
    config = WordNetConfig(num_classes=args.num_classes)
    data = mx.nd.random.normal(shape=(args.batch_size, 1, 29, 88, 88))
    lengths = mx.nd.full((args.batch_size,), 29)
    labels = mx.nd.array([i % args.num_classes for i in range(args.batch_size)])
    step_s = infer_ms = onnx_ms = float("nan")
    params = 0
    if args.train:
        net = WordNet(config)
        net.initialize()
        params = count_trainable(net)
        net.hybridize(static_alloc=True, static_shape=True)
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        trainer = gluon.Trainer(net.collect_params(), "adamw", {"learning_rate": 3e-4, "wd": 1e-4})
        step = {"n": 0}

        def train_step() -> None:
            step["n"] += 1
            mx.random.seed(batch_seed(0, 0, step["n"]))  # as the trainer reseeds dropout for every batch
            with autograd.record():
                loss = loss_fn(net(data, lengths), labels)
            loss.backward()
            trainer.step(args.batch_size)
            mx.nd.waitall()

        for _ in range(2):
            train_step()
        step_s = median_time(train_step, args.repeats)
        print(f"training step, batch {args.batch_size}: {step_s:.2f} s ({args.batch_size / step_s:.1f} samples/s)")
        del net, trainer
    if args.infer:
        one = mx.nd.random.normal(shape=(1, 1, 29, 88, 88))
        one_length = mx.nd.full((1,), 29)
        infer_net = WordNet(config)
        infer_net.initialize()
        params = count_trainable(infer_net)
        prepare_word_net(infer_net, [mx.cpu()])  # as infer.py runs it

        def infer() -> None:
            infer_net(one, one_length).wait_to_read()

        for _ in range(2):
            infer()
        infer_ms = median_time(infer, args.repeats * 4) * 1000
        print(f"inference, one clip: {infer_ms:.0f} ms")
    if args.onnx:
        onnx_ms = time_onnx(config)
        params = params or count_trainable(WordNet(config))
        print(f"inference, one clip, onnxruntime: {onnx_ms:.0f} ms")
    print(json.dumps({"params": params, "train_step_s": round(step_s, 3), "infer_ms": round(infer_ms, 1),
                      "onnx_ms": round(onnx_ms, 1)}))
    return 0


def time_onnx(config: WordNetConfig, repeats: int = 20) -> float:
    """Milliseconds of a batch-1 forward pass of a fresh network's ONNX export on onnxruntime (median)."""
    from model.word_onnx import build_word_model
    from utils.reading.onnx_words import OnnxWordClassifier

    net = WordNet(config)
    net.initialize()
    arrays = {name: param.data().asnumpy() for name, param in net._collect_params_with_prefix().items()}
    metadata = {"lipnet.version": "1", "lipnet.network": "word_net", "lipnet.config": config.to_dict(),
                "lipnet.words": [str(i) for i in range(config.num_classes)],
                "lipnet.normalisation": {"mean": [0.0], "std": [1.0]}}
    classifier = OnnxWordClassifier(build_word_model(config, arrays, metadata).SerializeToString())
    one = np.random.default_rng(0).standard_normal((1, 1, config.frames, config.size, config.size), np.float32)
    for _ in range(2):
        classifier(one)
    return median_time(lambda: classifier(one), repeats) * 1000


if __name__ == "__main__":
    sys.exit(main())
