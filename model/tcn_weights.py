"""The published word models of "Lipreading using Temporal Convolutional Networks" as our word checkpoints.

The reference (``mpc001/Lipreading_using_Temporal_Convolutional_Networks``) saves its ``Lipreading`` module's
``state_dict``: PyTorch names and layouts, which ``reference_arrays`` maps one by one onto ``model/word_net.py``'s
parameters for the ResNet-18 + multi-scale TCN configuration (``lrw_resnet18_mstcn``):

- ``frontend3D.{0,1,2}``: the 3-D convolution, its batch norm and (PReLU) slope;
- ``trunk.layer{1-4}.{0,1}.*``: the BasicBlocks, ``relu1``/``relu2`` their PReLU slopes;
- ``tcn.mb_ms_tcn.network.{level}.cbcr{0,1}_{k}.{conv,batchnorm,non_lin}``: a branch's Conv1d (kernel ``(O, I, k)``,
  ours ``(O, I, k, 1)``: the TCN runs as ``(k, 1)`` 2-D convolutions), batch norm and slope;
  ``.downsample`` the 1x1 shortcut, ``.relu_final`` the block's last slope;
- ``tcn.tcn_output``, the linear layer to the words (``tcn_output`` at the top in the reference's earliest
  version, which also kept an unused ``tcn.tcn_output``: the top one is the one it applied).

PyTorch's batch norm names its scale and shift ``weight`` and ``bias`` (ours ``gamma`` and ``beta``), PReLU its
slopes ``weight`` (ours ``alpha``); ``num_batches_tracked`` counts training steps and is not needed. Swish and
ReLU have no weights, so a file cannot tell them apart: the published ``lrw_resnet18_mstcn`` uses swish.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from model.backend import mx
from model.checkpoint import file_record, save_checkpoint, set_parameters
from model.word_net import TCN_HIDDEN, TRUNK_CHANNELS, WordNet, WordNetConfig
from utils.data.word_clips import WORD_CROP, WORD_FPS, WORD_MEAN, WORD_STD, list_words
from utils.video.word_crops import WORD_CROP_SIZE
from utils.weights.torch_file import state_mismatches

KIND = "tcn"
OPTIONS = ("words", "relu_type")  # utils/import_weights.py's flags this importer takes
REPOSITORY = "https://github.com/mpc001/Lipreading_using_Temporal_Convolutional_Networks"
LICENCE = ("the repository's README: the code only for comparative or benchmarking purposes, under its LICENSE "
           "for non-commercial purposes")
WORD_LIST = "labels/500WordsSortedList.txt"  # the reference's class names, in its repository
# The same 500 words (LRW's, sorted), shipped: a 500-class model takes them when no word list is given.
LRW_WORDS = Path(__file__).resolve().parent.parent / "asset" / "lrw500_words.txt"
DEFAULT_RELU = "swish"  # configs/lrw_resnet18_mstcn.json's relu_type; a file without PReLU slopes holds no hint
_OLD_OUTPUT = "tcn_output."  # the earliest version's top-level classifier
_IGNORED = re.compile(r"(^|\.)num_batches_tracked$")
_PARAM = {"gamma": "weight", "beta": "bias", "alpha": "weight"}
SHOWN = 20  # names listed of each kind of mismatch (all are counted)


class TcnWeightsError(ValueError):
    """A state dict that is not the reference's ``lrw_resnet18_mstcn``: every unknown key, missing key and
    wrong shape at once."""


def reference_name(name: str) -> str:
    """The reference's ``state_dict`` key of one of our ``WordNet`` parameters (``_collect_params_with_prefix``)."""
    head, _, param = name.rpartition(".")
    param = _PARAM.get(param, param)
    if head.startswith("frontend_"):
        return f"frontend3D.{['conv', 'bn', 'act'].index(head.removeprefix('frontend_'))}.{param}"
    if head == "output":
        return f"tcn.tcn_output.{param}"
    match = re.fullmatch(r"trunk\.(\d+)\.(.+)", head)
    if match:
        block, rest = int(match.group(1)), match.group(2)
        rest = {"act1": "relu1", "act2": "relu2"}.get(rest, rest)
        return f"trunk.layer{block // 2 + 1}.{block % 2}.{rest}.{param}"
    match = re.fullmatch(r"tcn\.(\d+)\.branches(\d)\.branches\.(\d+)\.(\d)", head)
    if match:
        level, half, branch, layer = match.groups()
        part = ("conv", "batchnorm", "non_lin")[int(layer)]
        return f"tcn.mb_ms_tcn.network.{level}.cbcr{half}_{branch}.{part}.{param}"
    match = re.fullmatch(r"tcn\.(\d+)\.(downsample|act)", head)
    if match:
        level, part = match.groups()
        return f"tcn.mb_ms_tcn.network.{level}.{'relu_final' if part == 'act' else part}.{param}"
    raise ValueError(f"no reference name for {name!r}")


def _reference_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The reference's shape of our parameter ``name``: its TCN convolutions are 1-D, ours (k, 1) 2-D."""
    return shape[:-1] if name.startswith("tcn.") and len(shape) == 4 else shape


def our_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Our shape of the parameter ``name`` whose reference shape is ``shape`` (``_reference_shape``'s inverse)."""
    return (*shape, 1) if name.startswith("tcn.") and len(shape) == 3 else shape


def expected_names(config: WordNetConfig) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Each reference key of a ``WordNet`` of ``config``: our parameter's name and the reference's shape."""
    params = WordNet(config)._collect_params_with_prefix()  # shapes are known without initialising
    return {reference_name(name): (name, _reference_shape(name, tuple(p.shape))) for name, p in params.items()}


def clean_state(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``state`` without DataParallel's ``module.`` prefix, batch counts and the earliest version's unused
    ``tcn.tcn_output`` (its top-level ``tcn_output`` is the classifier it applied)."""
    names = list(state)
    prefix = "module." if names and all(n.startswith("module.") for n in names) else ""
    out = {n[len(prefix):]: np.asarray(a) for n, a in state.items() if not _IGNORED.search(n)}
    if any(n.startswith(_OLD_OUTPUT) for n in out):
        out = {("tcn." + n if n.startswith(_OLD_OUTPUT) else n): a for n, a in out.items()
               if not n.startswith("tcn." + _OLD_OUTPUT)}
    return out


def _shape(state: Mapping[str, np.ndarray], name: str, dims: int) -> tuple[int, ...]:
    if name not in state:
        raise TcnWeightsError(f"not a lrw_resnet18_mstcn state dict of the TCN reference: no {name!r}")
    shape = tuple(np.shape(state[name]))
    if len(shape) != dims:
        raise TcnWeightsError(f"{name} has shape {shape}, expected {dims} dimensions")
    return shape


def config_from_state(state: Mapping[str, np.ndarray], relu_type: str | None = None) -> WordNetConfig:
    """The ``WordNetConfig`` whose shapes a cleaned reference state dict (``clean_state``) has.

    Widths, kernel sizes, levels and classes come from the shapes; ``relu_type`` from PReLU slopes when the file
    has them, else the caller's (default swish, the published model's). A depthwise-separable TCN (``dwpw``)
    or a ShuffleNet trunk is not the network ``WordNet`` rebuilds and is refused by name.
    """
    if any(".conv.0.weight" in n for n in state):
        raise TcnWeightsError("a depthwise-separable TCN (tcn_dwpw, as the ShuffleNet models use) is not supported: "
                              "only lrw_resnet18_mstcn")
    if not any(n.startswith("trunk.layer1.") for n in state):
        raise TcnWeightsError("no ResNet-18 trunk (trunk.layer1...): only lrw_resnet18_mstcn is supported")
    front = _shape(state, "frontend3D.0.weight", 5)
    levels = 0
    while f"tcn.mb_ms_tcn.network.{levels}.cbcr0_0.conv.weight" in state:
        levels += 1
    kernels = []
    while f"tcn.mb_ms_tcn.network.0.cbcr0_{len(kernels)}.conv.weight" in state:
        kernels.append(_shape(state, f"tcn.mb_ms_tcn.network.0.cbcr0_{len(kernels)}.conv.weight", 3)[2])
    if not levels or not kernels:
        raise TcnWeightsError("no multi-scale TCN (tcn.mb_ms_tcn.network.0.cbcr0_0.conv.weight): only "
                              "lrw_resnet18_mstcn is supported")
    branch = _shape(state, "tcn.mb_ms_tcn.network.0.cbcr0_0.conv.weight", 3)[0]
    classes = _shape(state, "tcn.tcn_output.weight", 2)[0]
    has_slopes = "frontend3D.2.weight" in state
    if has_slopes and relu_type not in (None, "prelu"):
        raise TcnWeightsError(f"the file has PReLU slopes (frontend3D.2.weight), not {relu_type}")
    relu = "prelu" if has_slopes else relu_type or DEFAULT_RELU
    if relu == "prelu" and not has_slopes:
        raise TcnWeightsError("relu_type prelu, but the file has no PReLU slopes (frontend3D.2.weight)")
    try:
        return WordNetConfig(num_classes=classes, relu_type=relu, width_mult=front[0] / TRUNK_CHANNELS[0],
                             tcn_kernel_size=tuple(kernels), tcn_num_layers=levels,
                             tcn_width_mult=branch / TCN_HIDDEN)
    except ValueError as err:
        raise TcnWeightsError(str(err)) from None


def reference_arrays(state: Mapping[str, np.ndarray], config: WordNetConfig) -> dict[str, np.ndarray]:
    """Our ``WordNet`` parameters (name -> float32 array) from a cleaned reference state dict.

    Every key of ``state`` must be used and every parameter found with its shape; otherwise one TcnWeightsError
    lists the unknown keys, the missing keys and the wrong shapes (reference name, its shape, the one expected).
    """
    expected = expected_names(config)
    unknown, missing, mismatched = state_mismatches(state, expected)
    wrong = [f"{ref} {shape} (expected {needed})" for ref, shape, needed in mismatched]
    if unknown or missing or wrong:
        parts = [f"{label} ({len(items)}): {', '.join(items[:SHOWN])}{', ...' if len(items) > SHOWN else ''}"
                 for label, items in
                 (("unknown keys", unknown), ("missing keys", missing), ("wrong shapes", wrong)) if items]
        raise TcnWeightsError("does not match lrw_resnet18_mstcn as WordNet rebuilds it "
                              f"({config.to_dict()}): " + "; ".join(parts))
    out = {}
    for ref, (name, shape) in expected.items():
        array = np.asarray(state[ref], np.float32)
        bad = int((~np.isfinite(array)).sum())
        if bad:
            raise TcnWeightsError(f"{ref} holds {bad} NaN or infinite values")
        out[name] = array.reshape(our_shape(name, shape))
    return out


def recognises(state: Mapping[str, np.ndarray]) -> bool:
    """Whether a state dict is the TCN reference's (its front-end and TCN names), whatever its widths."""
    names = clean_state(state)
    return "frontend3D.0.weight" in names and any(n.startswith("tcn.mb_ms_tcn.") for n in names)


def read_words(path: str | Path) -> list[str]:
    """A class list: a text file of one word per line (the reference's ``labels/500WordsSortedList.txt``), or an
    LRW-layout folder, whose sorted word folders are its classes. ValueError naming the file and the reason."""
    path = Path(path)
    if path.is_dir():
        words = list_words(path)
    else:
        try:
            words = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: cannot read the word list ({err})") from None
    odd = [w for w in words if len(w.split()) != 1]
    if odd:
        raise ValueError(f"{path}: a word list holds one word per line; {odd[0]!r} is not one word")
    repeated = sorted({w for w in words if words.count(w) > 1})
    if repeated:
        raise ValueError(f"{path}: words listed twice: {', '.join(repeated[:5])}")
    return words


def import_checkpoint(state: Mapping[str, np.ndarray], source: Path, out: str | Path, layout: str,
                      words: str | Path | None = None, relu_type: str | None = None) -> Path:
    """Write ``out`` as our word checkpoint of the TCN reference's state dict ``state`` read from ``source``
    (``layout``: the torch file layout it was read from, ``zip`` or ``legacy``). Its classes keep their order and
    take the names of ``words`` (a word-list file or an LRW-layout folder), which must have as many; without
    ``words``, a 500-class model's are LRW's sorted words (``LRW_WORDS``); returns the folder."""
    try:
        cleaned = clean_state(state)
        config = config_from_state(cleaned, None if relu_type in (None, "auto") else relu_type)
        arrays = reference_arrays(cleaned, config)
    except TcnWeightsError as err:
        raise TcnWeightsError(f"{source}: {err}") from None
    if words is None and config.num_classes != 500:
        raise ValueError(f"{source} has {config.num_classes} classes, not LRW's 500: give words= a file of one word "
                         "per line in class order, or an LRW-layout folder")
    words = LRW_WORDS if words is None else words
    names = read_words(words)
    if len(names) != config.num_classes:
        raise ValueError(f"{words}: {len(names)} words, but {source} has {config.num_classes} classes")
    net = WordNet(config)
    set_parameters(net, {name: mx.nd.array(array) for name, array in arrays.items()}, source, mx.cpu())
    meta = {
        "normalisation": {"mean": [WORD_MEAN], "std": [WORD_STD]},  # the reference loader's, as ours
        "words": names,
        "region": WORD_CROP_SIZE,  # 96x96 grey mouth regions, as the reference's preprocessing makes them
        "crop": {"framing": KIND, "colour": "grey", "scale": "pixel / 255", "region": WORD_CROP_SIZE,
                 "size": WORD_CROP, "reading": "centred"},
        "frame_rate": WORD_FPS,
        "metrics": {},  # nothing measured here
        "imported_from": {"kind": KIND, "file": source.name, **file_record(source), "layout": layout,
                          "repository": REPOSITORY, "licence": LICENCE, "relu_type": config.relu_type,
                          "words": str(words), "class_order": "theirs, unchanged"},
    }
    return save_checkpoint(out, net, None, meta)
