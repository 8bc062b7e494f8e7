"""Export a trained LipNet or word classifier to ONNX, for reading without MXNet (infer.py, onnxruntime, any Python).

    python utils/export_onnx.py model_path=checkpoint/best out=lipnet.onnx

``model_path`` is whatever infer.py takes: one of our checkpoints (a run folder, whose best/ is
used, a checkpoint folder or its model.params) or the original example's parameter file. The file
holds the network (input ``frames`` (N, 3, T, H, W) float32 normalised, output ``log_probs``
(N, T, classes); batch and time dynamic) and, as metadata, the input size, normalisation, frame
rate, alphabet and default decoder, so that reading needs nothing else. A word checkpoint (``task=words``, or one
of utils/import_weights.py) becomes a graph of input ``frames`` (N, 1, T, 88, 88) float32 normalised grey crops
(and ``lengths``), output ``log_probs`` (N, words), batch norms in inference mode, with the word list,
normalisation, mouth-region side and frame rate as metadata (model/word_onnx.py). Before it is written the
graph passes ``onnx.checker`` with shape inference, and with ``check=true`` (the default) its
log-probabilities on a random clip are compared with MXNet's. Exit status: 0 written, 2 the
checkpoint is unusable or the check failed.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

import argparse

import numpy as np

from utils.runtime.cli import parse_args, str2bool
from utils.runtime.paths import CHECKPOINT_DIR

CHECK_TOLERANCE = 1e-4  # largest absolute difference of log-probabilities allowed against MXNet


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_path", default=str(CHECKPOINT_DIR),
                        help="checkpoint: run folder (best/ preferred), checkpoint folder or its model.params, "
                             "or the original example's parameter file (default: %(default)s)")
    parser.add_argument("--out", default="lipnet.onnx", help="the ONNX file to write (default: %(default)s)")
    parser.add_argument("--lengths", type=str2bool, default=True,
                        help="give the graph a second input 'lengths' (N,) int32, each clip's frame count: the "
                             "GRUs stop at each clip's end and padding is masked out of the convolutions and "
                             "instance norm, as MXNet reads a padded batch; a word classifier averages over each "
                             "clip's frames only (default: true; false: a graph over every frame, as the network "
                             "runs on full-length clips)")
    parser.add_argument("--check", type=str2bool, default=True,
                        help=f"compare onnxruntime's log-probabilities with MXNet's on a random clip (largest "
                             f"difference at most {CHECK_TOLERANCE:g}; default: true)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    from model.checkpoint import read_checkpoint
    from model.onnx_export import build_model, reading_metadata
    from model.word_net import WordNetConfig
    from model.word_onnx import build_word_model, word_metadata
    from utils.runtime.atomic import write_bytes_atomic

    try:
        contents = read_checkpoint(args.model_path)
    except (OSError, ValueError) as err:
        print(f"error: cannot load the model: {err}", file=sys.stderr)
        return 2
    source = str(contents.folder or contents.source)
    arrays = {name: array.asnumpy() for name, array in contents.arrays.items()}
    words = isinstance(contents.config, WordNetConfig)
    try:
        if words:
            metadata = word_metadata(contents.config, contents.mean, contents.std, contents.meta, source)
            model = build_word_model(contents.config, arrays, metadata, with_lengths=args.lengths)
        else:
            metadata = reading_metadata(contents.config, contents.mean, contents.std, contents.meta, source)
            model = build_model(contents.config, arrays, metadata, with_lengths=args.lengths)
    except ValueError as err:
        print(f"error: {source}: cannot export: {err}", file=sys.stderr)
        return 2
    data = model.SerializeToString()
    if args.check:
        compare = compare_words_with_mxnet if words else compare_with_mxnet
        difference = compare(args.model_path, data, args.lengths)
        print(f"largest difference from MXNet's log-probabilities: {difference:.2e}", file=sys.stderr)
        if not difference <= CHECK_TOLERANCE:
            print(f"error: the exported graph differs from MXNet by {difference:.2e} (> {CHECK_TOLERANCE:g}); "
                  f"nothing written", file=sys.stderr)
            return 2
    out = Path(args.out)
    try:
        write_bytes_atomic(out, data)
    except OSError as err:
        print(f"error: cannot write {out}: {err}", file=sys.stderr)
        return 2
    config = contents.config
    what = (f"word classifier of {config.num_classes} words, input {config.size}x{config.size}" if words else
            f"{config.variant} LipNet, norm {config.norm}, input {config.width}x{config.height}")
    print(f"wrote {out} ({len(data) / 1e6:.2f} MB): {what}, from {source}", file=sys.stderr)
    return 0


def compare_with_mxnet(model_path: str, onnx_bytes: bytes, lengths: bool, frames: int = 40) -> float:
    """Largest absolute difference between both backends' log-probabilities on random clips: one of
    ``frames`` frames and, for a graph that takes lengths, a shorter one padded beside it (compared
    over its real frames)."""
    from model.mxnet_network import MXNetLipNet
    from utils.reading.onnx_network import OnnxLipNet

    mxnet_net = MXNetLipNet.load(model_path, num_gpus=0)
    onnx_net = OnnxLipNet(onnx_bytes)
    clip_lengths = np.array([frames, frames - frames // 3] if lengths else [frames], np.int32)
    shape = (len(clip_lengths), 3, frames, onnx_net.height, onnx_net.width)
    batch = np.random.default_rng(0).standard_normal(shape, np.float32)
    expected = mxnet_net.log_probs(batch, clip_lengths)
    got = onnx_net.log_probs(batch, clip_lengths if lengths else None)
    return max(float(np.abs(expected[i, :n] - got[i, :n]).max()) for i, n in enumerate(clip_lengths))


def compare_words_with_mxnet(model_path: str, onnx_bytes: bytes, lengths: bool) -> float:
    """Largest absolute difference between both backends' word log-probabilities on two random clips of the
    network's length, the second, for a graph that takes lengths, with its last third as padding."""
    from model.backend import mx
    from model.word_classifier import WordClassifier
    from utils.reading.onnx_words import OnnxWordClassifier

    classifier = WordClassifier.load(model_path, num_gpus=0)
    onnx_net = OnnxWordClassifier(onnx_bytes)
    frames = classifier.net.config.frames
    clip_lengths = np.array([frames, frames - frames // 3] if lengths else [frames, frames], np.int32)
    batch = np.random.default_rng(0).standard_normal((2, 1, frames, onnx_net.crop, onnx_net.crop), np.float32)
    scores = classifier.net(mx.nd.array(batch), mx.nd.array(clip_lengths))
    expected = mx.nd.log_softmax(scores).asnumpy()
    got = onnx_net(batch, clip_lengths if lengths else None)
    return float(np.abs(expected - got).max())


if __name__ == "__main__":
    sys.exit(main())
