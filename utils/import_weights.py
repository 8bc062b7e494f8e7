"""Import another project's published PyTorch weights as one of our checkpoints, without torch.

    python utils/import_weights.py pretrain/LipNet_overlap_....pt checkpoint/lipnet_pytorch_overlap

SOURCE is a file that ``torch.save`` wrote (the zip layout of torch 1.6 and later or the legacy one of
earlier versions), read by an unpickler that rebuilds only tensors and the dicts around them and refuses
any other global the pickle names, so nothing in the file runs (utils/weights/torch_file.py). Which
network it holds is recognised from its parameter names (``kind=auto``) or forced with ``kind``:

* ``lipnet_pytorch``: LipNet-PyTorch's GRID checkpoints (model/lipnet_pytorch.py);
* ``tcn``: the LRW word models of "Lipreading using Temporal Convolutional Networks" (``lrw_resnet18_mstcn``,
  model/tcn_weights.py), whose classes are named by ``words`` (the reference's labels/500WordsSortedList.txt).

OUT becomes a checkpoint folder like a training run's (meta.json with the config, alphabet,
normalisation, crop framing, frame rate, checksums and where the weights came from), which infer.py,
utils/export_onnx.py and main.py (fine_tune=true) take. Exit status: 0 written; 2 the file is refused
(a pickle asking for anything else, not a torch file, damaged, not a known network: unknown keys, missing
keys and wrong shapes named) or OUT cannot be written; nothing is written then.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

import argparse
from types import ModuleType

from utils.runtime.cli import parse_args, str2bool

# The kinds of file this imports, each by a module of model/ (see ``importers``).
KINDS = ("lipnet_pytorch", "tcn")


def importers() -> dict[str, ModuleType]:
    """Each kind's module: its ``recognises(state)`` says whether a state dict is its network's, its
    ``import_checkpoint(state, source, out, layout, **options)`` writes the checkpoint, taking the flags its
    ``OPTIONS`` names (if any). Imported when a file is imported, so that ``--help`` needs no MXNet."""
    from model import lipnet_pytorch, tcn_weights

    return {module.KIND: module for module in (lipnet_pytorch, tcn_weights)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="the .pt / .pth / .pth.tar file torch.save wrote (no default)")
    parser.add_argument("out", help="the checkpoint folder to write (no default)")
    parser.add_argument("--kind", default="auto", choices=("auto", *KINDS),
                        help="which network the file holds; auto recognises it from its parameter names "
                             "(default: %(default)s)")
    parser.add_argument("--words", default=None,
                        help="kind tcn: the class names, a file of one word per line in class order (the reference's "
                             "labels/500WordsSortedList.txt, LRW's 500 words sorted) or an LRW-layout folder, whose "
                             "sorted word folders name the classes (default: asset/lrw500_words.txt, LRW's 500 "
                             "words sorted, for a 500-class model; required for any other)")
    parser.add_argument("--relu_type", default="auto", choices=("auto", "relu", "prelu", "swish"),
                        help="kind tcn: the activation, which a file without PReLU slopes cannot tell; auto: prelu "
                             "when it has slopes, else swish, the published lrw_resnet18_mstcn's "
                             "(default: %(default)s)")
    parser.add_argument("--force", type=str2bool, default=False,
                        help="replace OUT when it already exists (default: false: refuse)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    from utils.runtime.atomic import NotWritableError, ensure_writable_dir
    from utils.weights.torch_file import TorchFileError, file_layout, find_state_dict, read_torch_file

    source, out = Path(args.source), Path(args.out)
    if out.exists() and not args.force:
        print(f"error: {out} already exists; give force=true to replace it", file=sys.stderr)
        return 2
    try:
        ensure_writable_dir(out.parent)
        saved = read_torch_file(source)
        key, state = find_state_dict(saved, source)
    except NotWritableError as err:
        print(f"error: cannot write {out}: {err}", file=sys.stderr)
        return 2
    except (TorchFileError, OSError) as err:
        print(f"error: {err}" if isinstance(err, TorchFileError) else f"error: {source}: cannot read ({err})",
              file=sys.stderr)
        return 2
    kind, modules = args.kind, importers()
    if kind == "auto":
        kind = next((name for name in KINDS if modules[name].recognises(state)), None)
        if kind is None:
            print(f"error: {source}: a state dict of {len(state)} tensors ({', '.join(list(state)[:4])}, ...) "
                  f"that none of {', '.join(KINDS)} recognises; give kind= to see what differs", file=sys.stderr)
            return 2
    try:
        options = {name: getattr(args, name) for name in getattr(modules[kind], "OPTIONS", ())}
        folder = modules[kind].import_checkpoint(state, source, out, file_layout(source), **options)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    where = f"'{key}' of " if key else ""
    print(f"wrote {folder}: {kind} weights ({len(state)} tensors) from {where}{source}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
